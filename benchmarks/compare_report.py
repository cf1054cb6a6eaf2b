"""Writes one `## ...` section of BENCHMARKS.md, leaving the other sections untouched."""

import pathlib
import re

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(title, body, path=BENCHMARKS):
    """Replaces the section `## {title}` (up to the next `## ` heading or `<!--` marker
    line, which belongs to the next section) with `body`, or appends it when absent.
    Creates the file when needed."""
    path = pathlib.Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    heading = f"## {title}\n"
    section = heading + "\n" + body.strip() + "\n"
    match = re.search(rf"^## {re.escape(title)}\n.*?(?=^## |^<!-- |\Z)", text, flags=re.S | re.M)
    if match:
        text = text[: match.start()] + section + "\n" + text[match.end():].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")
    return path

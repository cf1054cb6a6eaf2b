"""Writing result files: whole or not at all, with the user's file mode.

Every result file (a table, a JSON record, a plot, a saved model) is written to a
temporary file beside its target and moved over the target when complete
(`os.replace`, atomic on POSIX): a reader, or a run that was killed halfway, sees the
old file or the new one, never half of one. `atomic_output(path)` gives the temporary
path to any writer (`model.save`, `fig.savefig`); `write_text`, `write_json` and
`write_csv` are the common cases.

Only the standard library: `zoo`, `tuning` and `export` all write through it.
"""

import contextlib
import csv
import json
import os
import pathlib
import tempfile


def _umask():
    try:  # Linux: read it without changing it (no window with another umask)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way to read it is to set it
    os.umask(mask)
    return mask


def new_file_mode():
    """The permission bits a new file gets from `open()`: 0o666 without the umask.

    `tempfile.mkstemp` (used to write a file atomically) creates it 0600; a result
    file is given this mode before it is moved into place, so it reads like any
    other file of the user (0644 with the usual umask 022).
    """
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_output(path, suffix=".tmp"):
    """Yields a temporary path beside `path`; it replaces `path` when the block succeeds.

    Args:
        path: the target file (str or path-like); its directory must exist.
        suffix: the temporary file's suffix, for writers that read it (`".keras"`
            for `model.save`).

    If the block raises, the temporary file is removed and `path` is untouched.
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield pathlib.Path(tmp)
        os.chmod(tmp, new_file_mode())  # mkstemp's 0600 -> the user's umask
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text, *, sync=False):
    """Writes `text` (UTF-8) to `path` atomically; `sync=True` also flushes it to disk
    before the rename (state files that a killed process must find whole)."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())


def write_json(path, payload, *, indent=2, default=str, sort_keys=False):
    """Writes `payload` as JSON to `path` atomically.

    `default` turns values JSON does not know into ones it does (`str` by default).
    """
    write_text(path, json.dumps(payload, indent=indent, default=default,
                                sort_keys=sort_keys))


def write_csv(path, records):
    """Writes dicts as CSV rows to `path` atomically.

    The columns are every key of every record, in the order they first appear; a
    missing or `None` value is an empty cell.
    """
    columns = []
    for record in records:
        columns.extend(key for key in record if key not in columns)
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for record in records:
            writer.writerow({k: "" if record.get(k) is None else record.get(k)
                             for k in columns})


# The image formats the plots are written in, by suffix (matplotlib's own writers; its
# "pgf" needs LaTeX, "raw"/"rgba" are not image files).
PLOT_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg", ".svgz", ".eps", ".ps", ".tif",
                 ".tiff", ".webp")


def check_image_path(path, argument="path"):
    """`path` as a `pathlib.Path` to a new or existing image file in an existing folder,
    its suffix one of `PLOT_SUFFIXES` (it picks the format); else a `ValueError` naming
    `argument`. Used by every function that writes a plot, before a figure is drawn."""
    from zoo.checks import fail

    allowed = (f"an image file path (str or os.PathLike) ending with one of "
               f"{list(PLOT_SUFFIXES)} (the suffix picks the format), in an existing folder")
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        fail(argument, path, allowed)
    raw = path
    path = pathlib.Path(path)
    if path.is_dir():
        fail(argument, raw, f"{allowed}; it is an existing folder")
    if path.suffix.lower() not in PLOT_SUFFIXES:
        fail(argument, raw, allowed)
    folder = path.parent
    if not folder.is_dir():
        # The nearest existing folder or file above it: a file there is the problem.
        nearest = next((p for p in (folder, *folder.parents) if p.exists()), None)
        why = (f"{str(nearest)!r} is a file, not a folder"
               if nearest is not None and not nearest.is_dir()
               else f"the folder {str(folder)!r} does not exist")
        fail(argument, raw, f"{allowed}; {why}")
    return path

"""The import rules between the packages (docs/architecture.md), checked two ways.

- `zoo` imports neither `tuning` nor `export`;
- `export` never imports `tuning`; its library modules take from `zoo` only the custom
  layers (`zoo.layers`, so that Keras finds them when it loads a model), the version
  stamped into each file (`zoo.__version__`) and zoo's small shared helpers (file modes,
  quiet start-up logging), never its model, data or training API; its CLI module also
  loads datasets;
- `tuning` may import `zoo` and `export`;
- the command line (`zoo.cli`) finds `tuning` and `export` through the entry points
  declared in setup.cfg.

At run time: every module of a package is imported in a fresh interpreter, and what that
loaded is read from `sys.modules`. In the source: every import statement of every
module, those inside functions included (imports deferred until first use are still
imports). And the modules docs/architecture.md names must exist.
"""

import ast
import configparser
import importlib
import json
import pathlib
import re
import subprocess
import sys

import pytest
from helpers import child_env

ROOT = pathlib.Path(__file__).resolve().parents[1]

# zoo.compare's optional TFLite-size column imports `export` inside a function, when
# it is installed. It is the one exception, to go when compare's command-line part
# leaves `zoo`; no other may appear.
KNOWN_EXCEPTIONS = {("zoo/compare.py", "export")}

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps({"file": package.__file__, "modules": sorted(sys.modules)}))
"""


@pytest.mark.parametrize("package, forbidden", [
    ("zoo", {"tuning", "export"}),
    ("export", {"tuning"}),
])
def test_importing_every_module_of_a_package_loads_no_forbidden_package(package, forbidden):
    done = subprocess.run([sys.executable, "-c", _IMPORT_ALL, package], cwd=ROOT,
                          env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert pathlib.Path(report["file"]).is_relative_to(ROOT)  # this checkout, not another
    modules = report["modules"]
    assert f"{package}.cli" in modules  # every module was imported, the CLI's too
    loaded = {name.split(".")[0] for name in modules}
    assert not loaded & forbidden, sorted(m for m in modules if m.split(".")[0] in forbidden)


def _imports(package):
    """`(file, imported module, names)` for every import statement in `package`."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=relative)):
            if isinstance(node, ast.Import):
                found += [(relative, alias.name, ()) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.append((relative, node.module, tuple(a.name for a in node.names)))
    return found


def test_zoo_source_imports_neither_tuning_nor_export():
    found = {(path, module.split(".")[0]) for path, module, _ in _imports("zoo")
             if module.split(".")[0] in ("tuning", "export")}
    assert found <= KNOWN_EXCEPTIONS, sorted(found - KNOWN_EXCEPTIONS)


# What `export`'s library modules must not take from `zoo`: its model, data and
# training API and its command line.
ZOO_API = {"zoo.builders", "zoo.datasets", "zoo.loaders", "zoo.training", "zoo.recipes",
           "zoo.presets", "zoo.report", "zoo.compare", "zoo.cli"}


def test_export_source_takes_from_zoo_only_layers_version_and_helpers():
    imports = _imports("export")
    assert not [i for i in imports if i[1].split(".")[0] == "tuning"]
    from_zoo = [i for i in imports if i[1].split(".")[0] == "zoo"]
    assert any(module == "zoo.layers" for _, module, _ in from_zoo)  # reads real imports
    for path, module, names in from_zoo:
        if path == "export/cli.py":
            continue  # the command line loads datasets through `zoo`
        assert module not in ZOO_API, (path, module)
        if module == "zoo":  # `import zoo` (for zoo.__version__) or `from zoo import ...`
            assert set(names) <= {"__version__", "layers"}, (path, names)


def test_the_cli_finds_tuning_and_export_through_entry_points():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    groups = config["options.entry_points"]
    found = {}
    for group in ("gru_zoo.commands", "gru_zoo.run_steps"):
        for line in filter(None, groups[group].splitlines()):
            name, target = (part.strip() for part in line.split("="))
            module, attribute = target.split(":")
            assert callable(getattr(importlib.import_module(module), attribute)), target
            found.setdefault(group, set()).add(module.split(".")[0])
    assert found == {"gru_zoo.commands": {"tuning", "export"},
                     "gru_zoo.run_steps": {"tuning", "export"}}
    # zoo's parser, whose package imports neither, runs their commands.
    from zoo.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["tune", "job.toml"]).func.__module__ == "tuning.cli"
    args = parser.parse_args(["export", "model.keras", "--out", "model.tflite"])
    assert args.func.__module__ == "export.cli"


def test_the_architecture_page_names_modules_that_exist():
    """Every `package/module.py` and `package.module` on docs/architecture.md exists."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"`((?:zoo|tuning|export|benchmarks|tests)/\w+\.py)", text))
    modules = set(re.findall(r"`((?:zoo|tuning|export)\.[a-z_]+)", text))
    assert paths and modules
    for path in paths:
        assert (ROOT / path).is_file(), path
    for module in modules:
        package, name = module.split(".", 1)
        assert (ROOT / package / f"{name}.py").is_file() or hasattr(
            importlib.import_module(package), name), module

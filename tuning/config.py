"""Tuning job configs: a TOML file, validated completely before any training.

A job names the dataset, the hypermodel and its search-space overrides, the
strategy, the budget, the objective and the output directory (see
`tuning/configs/gunpoint.toml` for every key with a comment). `load_config(path)`
returns a `JobConfig`; any unknown key, wrong type or bad value raises a
`ValueError` that names the key (as `[section] key`), the value received and what
is allowed. `check_job(config)` goes further before training: it loads the
dataset and creates the hypermodel, so a bad dataset option or search space fails
in the first second too.
"""

import copy
import dataclasses
import hashlib
import json
import numbers
import pathlib
import tomllib

from tuning.tuners import STRATEGIES, STRATEGY_OPTIONS

# section -> {key: (check, allowed description, default)}
_SECTIONS = ("job", "data", "hypermodel", "search", "objective", "retrain", "distributed")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _any(v):
    return True


_SCHEMA = {
    "job": {
        "name": (lambda v: isinstance(v, str) and v != "", "a non-empty string", "tune"),
        "output_dir": (lambda v: isinstance(v, str) and v != "", "a path string", None),
        "seed": (lambda v: _is_int(v) and v >= 0, "a non-negative int", 0),
        "verbose": (lambda v: _is_int(v) and v in (0, 1, 2), "0, 1 or 2", 0),
    },
    "data": {
        "dataset": (lambda v: isinstance(v, str) and v != "", "a dataset name", "gunpoint"),
        # The user's own file (.ts, .csv, .npz), relative to the config file's folder;
        # `options` then holds the loader's options (e.g. `label`, `window`).
        "path": (lambda v: v is None or (isinstance(v, str) and v != ""),
                 "a path string to a .ts, .csv or .npz file", None),
        "options": (lambda v: isinstance(v, dict), "a table of `load_dataset` options", {}),
        "max_train_samples": (lambda v: v is None or (_is_int(v) and v > 0),
                              "a positive int", None),
    },
    "hypermodel": {
        "variant": (lambda v: isinstance(v, str), "a variant name or 'any'", "stacked"),
        "cells": (lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
                  "a list of cell names", None),
        "space": (lambda v: isinstance(v, dict), "a table of search-space overrides", {}),
        "fixed": (lambda v: isinstance(v, dict), "a table of fixed `build_gru` arguments", {}),
    },
    "search": {
        "strategy": (lambda v: v in STRATEGIES, f"one of {list(STRATEGIES)}", "random"),
        "max_trials": (lambda v: _is_int(v) and v > 0, "a positive int", 10),
        "epochs": (lambda v: _is_int(v) and v > 0, "a positive int", 20),
        "patience": (lambda v: v is None or (_is_int(v) and v >= 0),
                     "a non-negative int (early-stopping patience)", None),
        "max_time": (lambda v: _is_number(v) and v > 0, "a positive number of seconds", None),
        "executions_per_trial": (lambda v: _is_int(v) and v > 0, "a positive int", 1),
        "max_retries_per_trial": (lambda v: _is_int(v) and v >= 0, "a non-negative int", 1),
        "max_consecutive_failed_trials": (lambda v: _is_int(v) and v > 0, "a positive int", 5),
        "options": (lambda v: isinstance(v, dict), "a table of strategy options", {}),
    },
    "objective": {
        "metric": (lambda v: isinstance(v, str) and v != "", "a metric name", "val_loss"),
        "direction": (lambda v: v in ("max", "min"), "'max' or 'min'", None),
        "size_weight": (lambda v: _is_number(v) and v >= 0, "a number >= 0", 0.0),
        "latency_weight": (lambda v: _is_number(v) and v >= 0, "a number >= 0", 0.0),
        "max_size_kb": (lambda v: _is_number(v) and v > 0, "a positive number", None),
        "max_latency_ms": (lambda v: _is_number(v) and v > 0, "a positive number", None),
        "use_export": (lambda v: isinstance(v, bool), "true or false", True),
    },
    "retrain": {
        "enabled": (lambda v: isinstance(v, bool), "true or false", True),
        "compare_default": (lambda v: isinstance(v, bool), "true or false", False),
        "epochs": (lambda v: v is None or (_is_int(v) and v > 0),
                   "a positive int (default: the best trial's best epoch)", None),
    },
    "distributed": {
        "ip": (lambda v: isinstance(v, str) and v != "", "an IP address string", "127.0.0.1"),
        "port": (lambda v: _is_int(v) and 0 < v < 65536, "a port number in 1..65535", 8470),
        "workers": (lambda v: _is_int(v) and v > 0, "a positive int", 2),
        "worker_timeout": (lambda v: _is_number(v) and v > 0,
                           "a positive number of seconds", 60),
    },
}


@dataclasses.dataclass
class JobConfig:
    """A validated tuning job: one dict per section, every key present."""

    path: pathlib.Path
    job: dict
    data: dict
    hypermodel: dict
    search: dict
    objective: dict
    retrain: dict
    distributed: dict

    @property
    def output_dir(self):
        return pathlib.Path(self.job["output_dir"])

    def as_dict(self):
        return {s: copy.deepcopy(getattr(self, s)) for s in _SECTIONS}

    def fingerprint(self):
        """Hash of what decides the trials (not the budget, so it can be raised)."""
        decisive = self.as_dict()
        for key in ("max_trials", "max_time"):
            decisive["search"].pop(key, None)
        decisive.pop("retrain")
        decisive.pop("distributed")
        decisive["job"].pop("verbose", None)
        if self.data.get("path"):
            # The data's content decides the trials too: a changed file is a new job.
            decisive["data"]["sha256"] = hashlib.sha256(
                pathlib.Path(self.data["path"]).read_bytes()).hexdigest()
        text = json.dumps(decisive, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _error(path, section, key, value, allowed):
    where = f"[{section}] {key}" if key else f"[{section}]"
    return ValueError(f"{path}: {where} must be {allowed}. Received: {key or section}={value!r}")


def parse_config(raw, path="<config>", overrides=None):
    """Validates a config dict (as parsed from TOML); returns a `JobConfig`."""
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a config must be a TOML table. Received: {raw!r}")
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; allowed: {list(_SECTIONS)}. "
                         f"Received: {', '.join(f'[{u}]' for u in unknown)}")
    sections = {}
    for section in _SECTIONS:
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise _error(path, section, None, given, "a table")
        schema = _SCHEMA[section]
        bad = sorted(set(given) - set(schema))
        if bad:
            raise ValueError(
                f"{path}: [{section}] unknown key(s) {bad}; allowed: {sorted(schema)}. "
                f"Received: {', '.join(f'{k}={given[k]!r}' for k in bad)}")
        values = {}
        for key, (check, allowed, default) in schema.items():
            if key in given:
                if not check(given[key]):
                    raise _error(path, section, key, given[key], allowed)
                values[key] = copy.deepcopy(given[key])
            else:
                values[key] = copy.deepcopy(default)
        sections[section] = values
    for (section, key), value in (overrides or {}).items():
        check, allowed, _ = _SCHEMA[section][key]
        if not check(value):
            raise _error("command line", section, key, value, allowed)
        sections[section][key] = value
    data = sections["data"]
    if data["path"] is not None:
        if "dataset" in raw.get("data", {}):
            raise ValueError(f"{path}: [data] takes `dataset` (a name) or `path` (a file), not "
                             f"both. Received: dataset={data['dataset']!r}, "
                             f"path={data['path']!r}")
        file = pathlib.Path(data["path"]).expanduser()
        if not file.is_absolute():
            file = pathlib.Path(path).parent / file if pathlib.Path(path).is_file() else file
        if not file.is_file():
            raise FileNotFoundError(f"{path}: [data] path {data['path']!r} is not a file "
                                    f"(looked for {file})")
        data["path"] = str(file.resolve())
        data["dataset"] = None
    if sections["job"]["output_dir"] is None:
        sections["job"]["output_dir"] = str(pathlib.Path("runs") / "tune" / sections["job"]["name"])
    search = sections["search"]
    strategy = search["strategy"]
    search_options = search["options"]
    unknown = sorted(set(search["options"]) - set(STRATEGY_OPTIONS[strategy]))
    if unknown:
        raise ValueError(
            f"{path}: [search.options] unknown key(s) {unknown} for strategy {strategy!r}; "
            f"allowed: {list(STRATEGY_OPTIONS[strategy])}. "
            f"Received: {', '.join(f'{k}={search_options[k]!r}' for k in unknown)}")
    variant = sections["hypermodel"]["variant"]
    from zoo.builders import CELLS, VARIANTS

    if variant != "any" and variant not in VARIANTS:
        raise _error(path, "hypermodel", "variant", variant,
                     f"one of {sorted(VARIANTS)} or 'any'")
    cells = sections["hypermodel"]["cells"]
    if cells is not None and (not cells or any(c not in CELLS for c in cells)):
        raise _error(path, "hypermodel", "cells", cells,
                     f"a non-empty list of cells from {sorted(CELLS)}")
    return JobConfig(path=pathlib.Path(path), **sections)


def load_config(path, overrides=None):
    """Reads and validates a TOML job config. See the module docstring."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a TOML file: byte {error.start} is not UTF-8 text "
                         f"({error.object[error.start:error.start + 1]!r}); a tuning job is a "
                         "TOML text file (see tuning/configs/gunpoint.toml)") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from None
    return parse_config(raw, path=path, overrides=overrides)

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
import pathlib
import tomllib

from tuning.tuners import STRATEGIES, STRATEGY_OPTIONS, option_error
from zoo.checks import is_int, is_number

# section -> {key: (check, allowed description, default)}
_SECTIONS = ("job", "data", "hypermodel", "search", "objective", "retrain", "distributed",
             "cv", "budget")


def _any(v):
    return True


_BUDGET_QUANTIZATIONS = ("int8", "int16x8", "dynamic", "float16", "float32")


def _is_percent(v):
    """A string like '1%' or '2.5%' (a non-negative percentage)."""
    if not isinstance(v, str) or not v.endswith("%"):
        return False
    try:
        return float(v[:-1]) >= 0
    except ValueError:
        return False


def _number_or_auto(v):
    return v == "auto" or (is_number(v) and v >= 0)


_SCHEMA = {
    "job": {
        "name": (lambda v: isinstance(v, str) and v != "", "a non-empty string", "tune"),
        "output_dir": (lambda v: isinstance(v, str) and v != "", "a path string", None),
        "seed": (lambda v: is_int(v) and v >= 0, "a non-negative int", 0),
        "verbose": (lambda v: is_int(v) and v in (0, 1, 2), "0, 1 or 2", 0),
    },
    "data": {
        "dataset": (lambda v: isinstance(v, str) and v != "", "a dataset name", "gunpoint"),
        # The user's own file (.ts, .csv, .npz), relative to the config file's folder;
        # `options` then holds the loader's options (e.g. `label`, `window`).
        "path": (lambda v: v is None or (isinstance(v, str) and v != ""),
                 "a path string to a .ts, .csv or .npz file", None),
        "options": (lambda v: isinstance(v, dict), "a table of `load_dataset` options", {}),
        "max_train_samples": (lambda v: v is None or (is_int(v) and v > 0),
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
        "max_trials": (lambda v: is_int(v) and v > 0, "a positive int", 10),
        "epochs": (lambda v: is_int(v) and v > 0, "a positive int", 20),
        "patience": (lambda v: v is None or (is_int(v) and v >= 0),
                     "a non-negative int (early-stopping patience)", None),
        "max_time": (lambda v: is_number(v) and v > 0, "a positive number of seconds", None),
        "executions_per_trial": (lambda v: is_int(v) and v > 0, "a positive int", 1),
        "max_retries_per_trial": (lambda v: is_int(v) and v >= 0, "a non-negative int", 1),
        "max_consecutive_failed_trials": (lambda v: is_int(v) and v > 0, "a positive int", 5),
        "options": (lambda v: isinstance(v, dict), "a table of strategy options", {}),
    },
    "objective": {
        "metric": (lambda v: isinstance(v, str) and v != "", "a metric name", "val_loss"),
        "direction": (lambda v: v in ("max", "min"), "'max' or 'min'", None),
        "size_weight": (lambda v: is_number(v) and v >= 0, "a number >= 0", 0.0),
        "latency_weight": (lambda v: is_number(v) and v >= 0, "a number >= 0", 0.0),
        "max_size_kb": (lambda v: is_number(v) and v > 0, "a positive number", None),
        "max_latency_ms": (lambda v: is_number(v) and v > 0, "a positive number", None),
        "use_export": (lambda v: isinstance(v, bool), "true or false", True),
    },
    "retrain": {
        "enabled": (lambda v: isinstance(v, bool), "true or false", True),
        "compare_default": (lambda v: isinstance(v, bool), "true or false", False),
        # With [cv]: also train the dataset's recipe model (zoo.recipes) the same way.
        "compare_recipe": (lambda v: isinstance(v, bool), "true or false", False),
        "epochs": (lambda v: v is None or (is_int(v) and v > 0),
                   "a positive int (default: the best trial's best epoch)", None),
    },
    "distributed": {
        "ip": (lambda v: isinstance(v, str) and v != "", "an IP address string", "127.0.0.1"),
        "port": (lambda v: is_int(v) and 0 < v < 65536, "a port number in 1..65535", 8470),
        "workers": (lambda v: is_int(v) and v > 0, "a positive int", 2),
        "worker_timeout": (lambda v: is_number(v) and v > 0,
                           "a positive number of seconds", 60),
    },
    # Cross-validated trials (tuning.cv): on when the section is given.
    "cv": {
        "enabled": (lambda v: isinstance(v, bool), "true or false", None),
        "folds": (lambda v: is_int(v) and v >= 2, "an int >= 2", 5),
        "repeats": (lambda v: is_int(v) and v >= 1,
                    "a positive int (repeated k-fold, reshuffled)", 1),
        "prune": (lambda v: isinstance(v, bool), "true or false", True),
        "prune_after": (lambda v: is_int(v) and v >= 1,
                        "a positive int (folds before a trial may be pruned)", 2),
        "prune_margin": (_number_or_auto, "a number >= 0 (in the objective's units) or "
                         "'auto' (the best trial's fold standard deviation)", "auto"),
        "max_time_s": (lambda v: v is None or (is_number(v) and v > 0),
                       "a positive number of seconds", None),
        "cache": (lambda v: isinstance(v, bool), "true or false", True),
        "epochs": (lambda v: v is None or (is_int(v) and v > 0),
                   "a positive int (default: the recipe's epochs)", None),
        "gap": (lambda v: v == "auto" or (is_int(v) and v >= 0),
                "a non-negative int or 'auto' (forecasting: horizon - 1)", "auto"),
        "min_improvement": (lambda v: v == "auto" or (is_number(v) and v >= 0),
                            "a number >= 0 (how much a trial's CV score must beat the "
                            "default's by) or 'auto' (its paired fold differences must clear "
                            "two standard errors)", "auto"),
        "select": (lambda v: v in ("best", "smallest"),
                   "'best' (the best CV score) or 'smallest' (the smallest model within "
                   "select_within of the default's CV score)", "best"),
        "select_within": (lambda v: (is_number(v) and v >= 0) or _is_percent(v),
                          "a number >= 0 in the objective's units (0.01 = one point of "
                          "accuracy) or a percentage of the reference score ('1%')", 0.01),
    },
    # A device budget (tuning.budget): every trial's model exported in this form and
    # measured before it trains; needs [cv].
    "budget": {
        "flash_kb": (lambda v: is_number(v) and v > 0, "a positive number of KiB", None),
        "ram_kb": (lambda v: is_number(v) and v > 0, "a positive number of KiB", None),
        "latency_ms": (lambda v: is_number(v) and v > 0,
                       "a positive number of milliseconds", None),
        "quantization": (lambda v: v in _BUDGET_QUANTIZATIONS,
                         f"one of {list(_BUDGET_QUANTIZATIONS)}", "int8"),
        "streaming": (lambda v: isinstance(v, bool), "true or false", False),
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
    cv: dict
    budget: dict

    @property
    def device_budget_given(self):
        return any(self.budget[k] is not None for k in ("flash_kb", "ram_kb", "latency_ms"))

    @property
    def device_budget(self):
        """The job's `tuning.budget.DeviceBudget`, or `None` without `[budget]` limits."""
        if not self.device_budget_given:
            return None
        from tuning.budget import DeviceBudget

        return DeviceBudget(**self.budget)

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
        if self.cv["enabled"]:
            decisive["cv"].pop("max_time_s", None)  # a budget: may be raised on resume
            for key in ("select", "select_within", "min_improvement"):
                decisive["cv"].pop(key, None)  # the choice after the search, not the trials
        else:
            decisive.pop("cv")  # non-CV jobs keep the fingerprints they always had
        if not self.device_budget_given:
            decisive.pop("budget")  # jobs without one keep the fingerprints they had
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
    cv = sections["cv"]
    if cv["enabled"] is None:
        cv["enabled"] = "cv" in raw  # a [cv] section turns cross-validation on
    if cv["enabled"]:
        search = sections["search"]
        if search["max_time"] is not None and cv["max_time_s"] is not None:
            raise ValueError(
                f"{path}: give one time budget, [cv] max_time_s or [search] max_time. "
                f"Received: max_time_s={cv['max_time_s']!r}, max_time={search['max_time']!r}")
        if search["executions_per_trial"] != 1:
            raise _error(path, "search", "executions_per_trial",
                         search["executions_per_trial"],
                         "1 with [cv] (use [cv] repeats for repeated k-fold)")
        metric = sections["objective"]["metric"]
        if not metric.startswith("val_"):
            raise _error(path, "objective", "metric", metric,
                         "a held-out metric with [cv] (val_loss, val_accuracy, ...): each "
                         "fold is scored on the data it did not train on")
    budget = sections["budget"]
    if "budget" in raw:
        if all(budget[k] is None for k in ("flash_kb", "ram_kb", "latency_ms")):
            raise _error(path, "budget", None, raw["budget"],
                         "a table with at least one of flash_kb, ram_kb, latency_ms")
        if not cv["enabled"]:
            raise ValueError(
                f"{path}: [budget] needs cross-validated trials: add a [cv] section (the "
                "budget is checked before each trial's folds train). Received: [budget] "
                "without [cv]")
        from tuning.budget import parse_budget

        try:  # the rules between keys (a RAM budget's quantization), before any work
            parse_budget(budget)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
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
    output_dir = pathlib.Path(sections["job"]["output_dir"])
    for folder in (output_dir, *output_dir.parents):  # the first part that exists
        if folder.exists():
            if not folder.is_dir():
                found = (f"{str(folder)!r} is an existing file" if folder == output_dir else
                         f"{str(folder)!r} is a file, so no folder can be made inside it")
                raise _error(path, "job", "output_dir", sections["job"]["output_dir"],
                             f"a directory (created if missing), not a file: {found}")
            break
    search = sections["search"]
    strategy = search["strategy"]
    search_options = search["options"]
    unknown = sorted(set(search["options"]) - set(STRATEGY_OPTIONS[strategy]))
    if unknown:
        raise ValueError(
            f"{path}: [search.options] unknown key(s) {unknown} for strategy {strategy!r}; "
            f"allowed: {list(STRATEGY_OPTIONS[strategy])}. "
            f"Received: {', '.join(f'{k}={search_options[k]!r}' for k in unknown)}")
    bad = option_error(strategy, search_options)
    if bad:
        raise _error(path, "search.options", *bad)
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
    """Reads and validates a TOML job config (see the module docstring); a file without
    a single setting is refused."""
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
    if all(value == {} for value in raw.values()):  # no keys, at most empty tables
        # Every key has a default, but a file without one setting is a mistake (a wrong
        # or unsaved file), not a request for a default job on GunPoint.
        raise ValueError(
            f"{path}: the config has no settings (the file is empty, only comments or only "
            "empty sections). A job needs at least its data, e.g. `[data]` with "
            "`dataset = \"gunpoint\"` or `path = \"my_data.csv\"`; see "
            "tuning/configs/gunpoint.toml for every key. "
            f"Received: {len(text)} bytes, no keys"
            + (f" (sections {', '.join(f'[{k}]' for k in raw)})" if raw else ""))
    return parse_config(raw, path=path, overrides=overrides)

"""Pretrained presets: the best model found for each embedded dataset, shipped in `zoo/presets/`.

A preset is two package files: `<name>.json` (the dataset, the `build_gru` arguments,
the training recipe, the measured test metrics and the exact command that trained it)
and `<name>.weights.h5` (the weights). `load_preset(name)` rebuilds the model with
`build_gru` and loads the weights:

>>> from zoo.presets import load_preset
>>> model = load_preset("gunpoint")
>>> model, info = load_preset("gunpoint", return_metadata=True)
>>> info["test_metrics"]["accuracy"], info["command"]

`save_preset(run_dir, name)` turns a run directory written by `gru-zoo train` (or
`gru-zoo compare`) into a preset; `evaluate_preset(name)` re-measures its test metrics.
"""

import datetime
import importlib.resources
import json
import os
import pathlib
import tempfile

import numpy as np

from zoo.checks import check, is_bool, is_int, is_number

# Published reference numbers: test accuracy of the best deep model in Fawaz et al.
# 2019 (UCR 2015 archive, mean over 10 runs; their companion repository's
# results-uea-avg-std.csv): GunPoint FCN 100.0 +- 0.0, ItalyPowerDemand Encoder
# 96.5 +- 0.5 (ResNet 96.3, FCN 96.1), i.e. 0.97 when rounded to two decimals.
PUBLISHED = {
    "gunpoint": {"accuracy": 1.00,
                 "source": "Fawaz et al. 2019 (UCR, best deep model: FCN 1.000 +- 0.000)"},
    "italy_power_demand": {"accuracy": 0.965,
                           "source": "Fawaz et al. 2019 (UCR, best deep model: Encoder "
                                     "0.965 +- 0.005)"},
}

_METADATA_SUFFIX = ".json"
_WEIGHTS_SUFFIX = ".weights.h5"


def _package_dir():
    return importlib.resources.files("zoo").joinpath("presets")


def _directory(directory):
    if directory is None:
        return _package_dir()
    path = pathlib.Path(directory) if isinstance(directory, (str, os.PathLike)) else None
    if path is None or not path.is_dir():
        why = "" if path is None else " (not a folder)" if path.exists() else " (no such folder)"
        raise ValueError(f"`directory` must be an existing folder of presets (<name>.json and "
                         f"<name>.weights.h5), or None for the packaged presets. "
                         f"Received: directory={directory!r}{why}")
    return path


def list_presets(directory=None):
    """Sorted names of the presets in `directory` (default: the packaged presets): the
    `<name>.json` files (a folder so named is not a preset)."""
    root = _directory(directory)
    return sorted(entry.name[: -len(_METADATA_SUFFIX)] for entry in root.iterdir()
                  if entry.name.endswith(_METADATA_SUFFIX)
                  and len(entry.name) > len(_METADATA_SUFFIX) and entry.is_file())


def _damaged(name, file, problem):
    """The error for a preset whose files cannot be used: names the file and the fault."""
    return ValueError(f"The preset {name!r} cannot be loaded: {file} {problem}. A preset is "
                      f"<name>.json (its metadata) and <name>.weights.h5 (its weights), as "
                      f"`save_preset` writes them.")


def _short(text, limit=300):
    """`text` on one line, cut to `limit` characters (a Keras message lists every layer)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _require(info, key, ok, allowed, name, file):
    """Raises `_damaged` unless the metadata holds `key` and `ok(info[key])`."""
    if key not in info:
        raise _damaged(name, file, f"has no {key!r} entry (it must be {allowed})")
    if not ok(info[key]):
        raise _damaged(name, file, f"has {key}={_short(repr(info[key]), 120)}, which must "
                                   f"be {allowed}")
    return info[key]


def preset_metadata(name, directory=None):
    """The metadata dict of a preset (see the module docstring)."""
    names = list_presets(directory)
    if name not in names:
        raise ValueError(f"`name` must be one of the presets {names}. Received: name={name!r}")
    file = _directory(directory).joinpath(name + _METADATA_SUFFIX)
    try:
        info = json.loads(file.read_bytes())
    except (OSError, ValueError) as error:  # unreadable, not UTF-8, not JSON
        raise _damaged(name, file, f"is not a readable JSON file ({error})") from None
    if not isinstance(info, dict):
        raise _damaged(name, file, f"holds a JSON {type(info).__name__}, not an object "
                                   f"of metadata")
    return info


def _headline(metadata):
    metric = metadata["metric"]
    return metric, metadata["test_metrics"][metric]


def _is_str(value):
    return isinstance(value, str) and bool(value)


def describe_presets(directory=None):
    """Name → one-line description of each preset (used by `gru-zoo list`)."""
    descriptions = {}
    root = _directory(directory)
    for name in list_presets(directory):
        info = preset_metadata(name, directory)
        file = root.joinpath(name + _METADATA_SUFFIX)
        _require(info, "dataset", _is_str, "a dataset name", name, file)
        build = _require(info, "build", lambda b: isinstance(b, dict)
                         and _is_str(b.get("variant")) and _is_str(b.get("cell", "gru")),
                         "a dict of `build_gru` arguments with a 'variant'", name, file)
        _require(info, "params", is_int, "an int", name, file)
        metric = _require(info, "metric", _is_str, "the name of a test metric", name, file)
        _require(info, "test_metrics", lambda t: isinstance(t, dict)
                 and is_number(t.get(metric)),
                 f"a dict of test metrics holding the number {metric!r}", name, file)
        published = info.get("published") or {}
        if not isinstance(published, dict) or not is_number(published.get(metric, 0)):
            raise _damaged(name, file, f"has published={published!r}, which must be None or "
                                       f"a dict holding the published number {metric!r}")
        metric, value = _headline(info)
        reference = (f" (published {published[metric]:.3f})" if metric in published else "")
        shown = "MSE" if metric == "loss" else metric
        descriptions[name] = (
            f"{info['dataset']}: {build['variant']}/{build.get('cell', 'gru')}, "
            f"{info['params']} parameters, test {shown} {value:.4g}{reference}"
        )
    return descriptions


def _is_shape(value):
    return (isinstance(value, list) and bool(value)
            and all(is_int(n) and n > 0 for n in value))


def _load_weights(model, name, weights):
    """Loads `<name>.weights.h5` into `model`: the whole file and nothing but it."""
    import warnings

    import h5py

    if not weights.is_file():
        why = "is not a file" if weights.exists() else "is missing"
        raise _damaged(name, weights, why)
    if not h5py.is_hdf5(weights):
        raise _damaged(name, weights, "is not an HDF5 weights file (damaged, cut off or "
                                      "not written by `save_preset`)")
    try:
        with h5py.File(weights, "r") as handle:
            arrays = []
            handle.visititems(lambda key, item: arrays.append(key)
                              if isinstance(item, h5py.Dataset) else None)
    except (OSError, RuntimeError, KeyError, ValueError) as error:
        raise _damaged(name, weights, f"cannot be read ({_short(error)})") from None
    expected = len(model.weights)
    if len(arrays) != expected:  # Keras loads a file with extra layers without a word
        raise _damaged(name, weights, f"holds {len(arrays)} weight arrays, but the model "
                                      f"its metadata describes has {expected} (the "
                                      f"weights of another model?)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(weights)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as error:
        raise _damaged(name, weights, f"does not fit the model its metadata describes "
                                      f"(the weights of another model? Keras: "
                                      f"{_short(error)})") from None
    for warning in caught:
        if "freshly-initialized" in str(warning.message):  # some layers were not loaded
            raise _damaged(name, weights, f"does not fit the model its metadata describes "
                                          f"(Keras: {_short(warning.message)})")
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)


def load_preset(name, *, return_metadata=False, compile=True, directory=None):
    """Builds a preset's model and loads its trained weights.

    Args:
        name: str, a preset name (`list_presets()`, `gru-zoo list`).
        return_metadata: bool, also return the metadata dict. Defaults to `False`.
        compile: bool, compile the model as `build_gru` does. Defaults to `True`.
        directory: where the preset files are. Defaults to the packaged presets.

    Returns:
        The `keras.Model`, or `(model, metadata)` with `return_metadata=True`. The
        model expects inputs normalized as `metadata["normalization"]` says
        (`zoo.load_dataset(metadata["dataset"])` returns them so).
    """
    check("return_metadata", return_metadata, is_bool(return_metadata), "True or False")
    check("compile", compile, is_bool(compile), "True or False")
    import keras

    from zoo.builders import build_gru, default_loss_and_metrics

    info = preset_metadata(name, directory)
    root = _directory(directory)
    file = root.joinpath(name + _METADATA_SUFFIX)
    build = dict(_require(info, "build", lambda b: isinstance(b, dict)
                          and all(isinstance(k, str) for k in b),
                          "a dict of `build_gru` arguments", name, file))
    _require(info, "input_shape", _is_shape, "a list of positive ints", name, file)
    _require(info, "num_outputs", lambda n: is_int(n) and n > 0, "a positive int", name, file)
    _require(info, "task", _is_str, "a task name", name, file)
    try:
        model = build_gru(input_shape=tuple(info["input_shape"]),
                          num_outputs=info["num_outputs"], task=info["task"], compile=False,
                          **build)
    except (TypeError, ValueError) as error:
        raise _damaged(name, file, f"describes a model that `build_gru` refuses "
                                   f"({_short(error)})") from None
    with importlib.resources.as_file(root.joinpath(name + _WEIGHTS_SUFFIX)) as path:
        _load_weights(model, name, pathlib.Path(path))
    if compile:
        # As `build_gru(..., compile=True)` compiles; after loading, so that the file's
        # (absent) optimizer state is not matched against a fresh optimizer.
        loss, metrics = default_loss_and_metrics(info["task"], info["num_outputs"])
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=build.get("learning_rate", 1e-3),
                                            clipnorm=build.get("clipnorm", 1.0)),
            loss=loss, metrics=metrics)
    return (model, info) if return_metadata else model


def evaluate_preset(name, directory=None):
    """Loads the preset's dataset and returns its metrics on the test split (a dict)."""
    from zoo.datasets import load_dataset

    model, info = load_preset(name, return_metadata=True, directory=directory)
    data = load_dataset(info["dataset"], **info.get("dataset_kwargs", {}))
    metrics = model.evaluate(data.x_test, data.y_test, batch_size=256, verbose=0,
                             return_dict=True)
    return {k: float(v) for k, v in metrics.items()}


def save_preset(run_dir, name=None, *, directory=None, description=None):
    """Turns a training run directory into a preset (`<name>.json` + `<name>.weights.h5`).

    Args:
        run_dir: a directory written by `zoo.train` through `gru-zoo train` or
            `gru-zoo compare` (it holds `model.keras`, `config.json`, `metrics.json`).
        name: the preset name. Defaults to the dataset name.
        directory: where to write. Defaults to the package's `zoo/presets/`.
        description: optional free text stored in the metadata.

    Returns:
        The path of the metadata file. The preset is reloaded with `load_preset` and
        must reproduce the run's predictions before this returns.
    """
    import keras

    import zoo.layers  # noqa: F401  (registers the custom layers for load_model)

    run_dir = pathlib.Path(run_dir)
    missing = [f for f in ("model.keras", "config.json", "metrics.json")
               if not (run_dir / f).exists()]
    if missing:
        raise ValueError(f"`run_dir` must be a training run directory holding model.keras, "
                         f"config.json and metrics.json (missing {missing}). "
                         f"Received: run_dir={str(run_dir)!r}")
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    dataset = config["dataset"]
    name = name or dataset["name"]
    if not name.replace("_", "").isalnum():
        raise ValueError(f"`name` must be letters, digits and underscores. Received: name={name!r}")
    task = dataset["task"]
    metric = "accuracy" if task == "classification" else "loss"
    dataset_kwargs = {}
    if dataset["name"] == "adding":
        dataset_kwargs["length"] = dataset["input_shape"][0]
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    info = {
        "name": name,
        "dataset": dataset["name"],
        "dataset_kwargs": dataset_kwargs,
        "task": task,
        "input_shape": dataset["input_shape"],
        "num_outputs": dataset["num_outputs"],
        "label_names": dataset.get("label_names"),
        "normalization": dataset.get("normalization"),
        "build": config["build"],
        "train": config.get("train"),
        "params": int(model.count_params()),
        "metric": metric,
        "test_metrics": metrics["test"],
        "best_epoch": metrics.get("best_epoch"),
        "epochs_run": metrics.get("epochs_run"),
        "train_seconds": metrics.get("train_seconds"),
        "published": {k: v for k, v in PUBLISHED.get(dataset["name"], {}).items()
                      if k == metric or k == "source"},
        "command": config.get("command"),
        "citation": dataset.get("citation"),
        "description": description,
        "created": datetime.date.today().isoformat(),
        "keras_version": keras.__version__,
    }
    out = pathlib.Path(directory) if directory is not None else pathlib.Path(
        str(_package_dir()))
    out.mkdir(parents=True, exist_ok=True)
    # Both files are written and checked in a staging folder beside their place, then
    # moved in (weights first: the metadata file is what lists a preset), so a failed save
    # leaves an earlier preset of the same name as it was and no half-written files.
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=out) as staging:
        staging = pathlib.Path(staging)
        model.save_weights(staging / (name + _WEIGHTS_SUFFIX))
        (staging / (name + _METADATA_SUFFIX)).write_text(json.dumps(info, indent=2) + "\n")

        # The preset must rebuild the very model that was trained.
        rebuilt = load_preset(name, directory=staging, compile=False)
        probe = np.random.default_rng(0).normal(
            size=(4, *dataset["input_shape"])).astype("float32")
        expected = model.predict(probe, verbose=0)
        got = rebuilt.predict(probe, verbose=0)
        if not np.allclose(expected, got, atol=1e-5):
            raise ValueError(f"The preset {name!r} does not reproduce the run's model "
                             f"(max difference {np.max(np.abs(expected - got)):.3g}); nothing "
                             f"was written. Received: run_dir={str(run_dir)!r}")
        for suffix in (_WEIGHTS_SUFFIX, _METADATA_SUFFIX):
            os.replace(staging / (name + suffix), out / (name + suffix))
    return out / (name + _METADATA_SUFFIX)

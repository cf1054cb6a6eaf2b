"""Shared helpers of the tests: one set of tiny sizes and one call per check.

Imported as `from helpers import ...` (pytest puts `tests/` on the path).

- Tiny models and data: `TINY`, `TIME`, `FEATURES`, `BATCH`, `VOCAB`, `tiny_model`,
  `sample_inputs`, `sequences`, `sample_targets`, `recurrent_layers`.
- `run_model_test`: what every zoo model must do.
- `tflite_vs_keras`: a `.tflite` file run here, apart from `to_tflite`, against Keras.
- Tuning jobs: `STRATEGY_OPTIONS`, `tiny_raw` (a job of a few seconds, run in the test
  process), `child_job` / `write_job` / `child_env` (a small job run by `gru-zoo tune`
  in a child process), `read_csv`.
"""

import csv
import json
import os
import tomllib

import keras
import numpy as np

from zoo import VARIANTS, build_gru
from zoo.builders import SEQUENCE_TASKS

# === Tiny models and data ===

TINY = dict(units=4, num_layers=2, conv_filters=3, conv_kernel_size=3, attention_heads=2,
            embedding_dim=4)
TIME, FEATURES, BATCH, VOCAB = 6, 3, 2, 11

CELL_CLASSES = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM,
                "rnn": keras.layers.SimpleRNN}


def tiny_model(variant="stacked", *, time=TIME, **overrides):
    """A tiny untrained zoo model: quick to train and to convert.

    `TINY` sizes, float inputs `(time, FEATURES)` and 3 classes unless `overrides` say
    otherwise (any `build_gru` argument; `input_shape=(time,)` gives token ids with a
    vocabulary of `VOCAB` unless `vocab_size` is given).
    """
    kwargs = dict(TINY, input_shape=(time, FEATURES), num_outputs=3)
    kwargs.update(overrides)
    if len(kwargs["input_shape"]) == 1:
        kwargs.setdefault("vocab_size", VOCAB)
    return build_gru(variant, **kwargs)


def sample_inputs(input_shape, batch=BATCH, seed=0):
    """Random inputs for `input_shape`: token ids for `(time,)`, normal floats otherwise."""
    rng = np.random.default_rng(seed)
    if len(input_shape) == 1:
        return rng.integers(1, VOCAB, size=(batch, input_shape[0] or TIME)).astype("int32")
    time = input_shape[0] or TIME
    return rng.normal(size=(batch, time) + tuple(input_shape[1:])).astype("float32")


def sequences(count=12, *, time=TIME, features=FEATURES, seed=0):
    """`count` float sequences `(count, time, features)` for the tiny models."""
    return sample_inputs((time, features), batch=count, seed=seed)


def sample_targets(model, task, num_outputs, x, seed=0):
    rng = np.random.default_rng(seed)
    shape = (len(x), x.shape[1]) if task in SEQUENCE_TASKS else (len(x),)
    if task in ("classification", "sequence_labeling"):
        if num_outputs == 1:
            return rng.integers(0, 2, size=shape + (1,)).astype("float32")
        return rng.integers(0, num_outputs, size=shape).astype("int32")
    return rng.normal(size=shape + (num_outputs,)).astype("float32")


def recurrent_layers(model):
    """The recurrent layers of a model, unwrapping Bidirectional."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            found.append(layer.forward_layer)
        elif isinstance(layer, tuple(CELL_CLASSES.values())):
            found.append(layer)
    return found


# === One call per model or layer ===


def run_model_test(variant, *, cell="gru", task="classification", num_outputs=3,
                   input_shape=(TIME, FEATURES), tmp_path, **overrides):
    """Builds a tiny model and checks what every zoo model must do.

    Asserts that the built model is the variant and cell it claims, that one training
    step runs and changes the weights, that predictions have the task's shape, and that
    the model round-trips through `.keras` with identical predictions. Returns the model.
    """
    model = tiny_model(variant, input_shape=input_shape, num_outputs=num_outputs, task=task,
                       cell=cell, **overrides)
    model.run_eagerly = True  # tiny models: eager steps are faster than tracing

    spec = VARIANTS[variant]
    layers = recurrent_layers(model)
    assert len(layers) == dict(TINY, **overrides)["num_layers"]
    assert all(isinstance(layer, CELL_CLASSES[cell]) for layer in layers), layers
    wrapped = [isinstance(layer, keras.layers.Bidirectional) for layer in model.layers]
    assert any(wrapped) == spec.bidirectional
    has_conv = any(isinstance(layer, keras.layers.Conv1D) for layer in model.layers)
    assert has_conv == spec.uses_conv
    attention_names = [layer.name for layer in model.layers if "attention" in layer.name]
    assert bool(attention_names) == spec.uses_attention

    x = sample_inputs(input_shape)
    y = sample_targets(model, task, num_outputs, x)
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    changed = [not np.allclose(a, b) for a, b in zip(before, model.get_weights())]
    assert any(changed)

    predictions = np.asarray(model(x, training=False))
    expected = (BATCH, x.shape[1], num_outputs) if task in SEQUENCE_TASKS else (BATCH, num_outputs)
    assert predictions.shape == expected
    assert np.all(np.isfinite(predictions))
    if task in ("classification", "sequence_labeling") and num_outputs > 1:
        np.testing.assert_allclose(predictions.sum(-1), 1.0, rtol=1e-5)

    path = tmp_path / f"{variant}_{cell}_{task}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), predictions,
                               rtol=1e-6, atol=1e-6)
    assert loaded.get_config()["name"] == model.get_config()["name"]
    return model


# === Export ===


def tflite_vs_keras(path, model, x):
    """Max abs difference between the file (run here, independently) and Keras."""
    from export import LiteModel

    lite = LiteModel(path)
    keras_out = np.asarray(model.predict(x, verbose=0))
    lite_out = lite.predict(x, per_step=keras_out.ndim == 3)
    assert lite_out.shape == keras_out.shape
    return float(np.abs(lite_out - keras_out).max())


# === Tuning jobs ===

# Every search strategy with options that make a 2-trial search meaningful.
STRATEGY_OPTIONS = [
    ("random", {}),
    ("bayesian", {"num_initial_points": 1}),
    ("hyperband", {"factor": 3}),
    ("grid", {}),
    ("genetic", {"population_size": 2}),
    ("pso", {"swarm_size": 2}),
]


def tiny_raw(tmp_path, strategy="random", **sections):
    """A job of a few seconds: 16 ItalyPowerDemand series, units 4-8, 1 epoch."""
    raw = {
        "job": {"name": "tiny", "output_dir": str(tmp_path / "out"), "seed": 0},
        "data": {"dataset": "italy_power_demand", "max_train_samples": 16},
        "hypermodel": {"variant": "stacked",
                       "space": {"units": [4, 8], "num_layers": [1], "batch_size": [8],
                                 "learning_rate": [0.01, 0.003], "dropout": [0.0],
                                 "recurrent_dropout": [0.0]}},
        "search": {"strategy": strategy, "max_trials": 2, "epochs": 1},
        "objective": {"metric": "val_loss"},
        "retrain": {"enabled": True},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def child_job(out_dir, *, name, strategy, max_trials, epochs, units_step, retrain,
              search=None, options=None, distributed=None):
    """A small job for `gru-zoo tune` in a child process: 48 ItalyPowerDemand series,
    one stacked layer of 4 to 8 units (`units_step` apart), batch 8, `val_loss`.

    Args:
        search: extra `[search]` keys; options: `[search.options]`; distributed:
            `[distributed]` (omitted when `None`).

    Returns:
        The job as a dict (write it with `write_job`).
    """
    raw = {
        "job": {"name": name, "output_dir": str(out_dir), "seed": 0},
        "data": {"dataset": "italy_power_demand", "max_train_samples": 48},
        "hypermodel": {"variant": "stacked",
                       "space": {"units": {"min": 4, "max": 8, "step": units_step},
                                 "num_layers": [1], "batch_size": [8]}},
        "search": dict({"strategy": strategy, "max_trials": max_trials, "epochs": epochs},
                       **(search or {})),
        "objective": {"metric": "val_loss"},
        "retrain": {"enabled": retrain},
    }
    if options:
        raw["search"]["options"] = dict(options)
    if distributed:
        raw["distributed"] = dict(distributed)
    return raw


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's quoting and escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"`value` must be a TOML scalar, list or table. Received: {value!r}")


def write_job(path, raw):
    """Writes a job dict as a TOML file and returns `path`.

    Python reads TOML (`tomllib`) but has no TOML writer, and a job for a child
    process must be a file. Sections become tables and a dict inside a section a
    sub-table (`[search.options]`); dicts below that are inline tables. The text is
    read back with `tomllib` and must give `raw` again.
    """
    lines = []
    for section, values in raw.items():
        tables = {key: value for key, value in values.items() if isinstance(value, dict)}
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()
                  if key not in tables]
        for key, table in tables.items():
            lines.append(f"[{section}.{key}]")
            lines += [f"{name} = {_toml_value(value)}" for name, value in table.items()]
        lines.append("")
    text = "\n".join(lines)
    assert tomllib.loads(text) == raw, text
    path.write_text(text)
    return path


def child_env():
    """The environment of a child `gru-zoo` process: quiet TensorFlow, CPU only."""
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))

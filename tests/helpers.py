"""Shared helpers of the tests: one set of tiny sizes and one call per check.

Imported as `from helpers import ...` (pytest puts `tests/` on the path).

- Tiny models and data: `TINY`, `TIME`, `FEATURES`, `BATCH`, `VOCAB`, `tiny_model`,
  `sample_inputs`, `sequences`, `sample_targets`, `recurrent_layers`.
- `run_model_test`: what every zoo model must do; `run_layer_test`: what every custom
  layer must do.
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


def _as_list(value):
    """A list of shapes or tensors: `value` itself if it is a list or a tuple of them."""
    if isinstance(value, list) or (isinstance(value, tuple) and value
                                   and not isinstance(value[0], (int, type(None)))):
        return list(value)
    return [value]


def run_layer_test(layer_class, init_kwargs, *, input_shapes, expected_output_shapes,
                   expected_trainable_weights, tmp_path, seed=0):
    """Checks what every custom layer must do, in the spirit of Keras's `run_layer_test`.

    1. Config: every constructor argument is in `get_config()` with its value, and
       `from_config(get_config())` gives the same config.
    2. Build and call: the built layer has `expected_trainable_weights` trainable
       weights; a symbolic call and an eager call give `expected_output_shapes`, with
       finite values; `compute_output_shape` agrees.
    3. One training step of a model `Dense -> layer` (one `Dense` per input): the loss is
       finite, the `Dense` before the layer learns (gradients flow through the layer) and,
       if the layer has trainable weights, at least one of them changes.
    4. Save/load: the model rebuilt from its config with the same weights, and the model
       saved to and loaded from a `.keras` file, give the same outputs; the loaded layer
       has the same class and config.

    Args:
        layer_class: the layer class.
        init_kwargs: dict, constructor arguments.
        input_shapes: the input shape with the batch axis, e.g. `(2, 5, 4)`, or a list
            of them for a layer called on a list of tensors.
        expected_output_shapes: the output shape with the batch axis, or a list of them
            for a layer that returns several tensors.
        expected_trainable_weights: int, how many trainable weights the built layer has.
        tmp_path: a folder for the `.keras` file.

    Returns:
        The trained model (inputs, one `Dense` per input, the layer).
    """
    # === Config ===
    layer = layer_class(**init_kwargs)
    config = layer.get_config()
    for name, value in init_kwargs.items():
        assert config[name] == value, (name, config[name], value)
    assert layer_class.from_config(config).get_config() == config

    # === Build and call ===
    several_inputs = isinstance(input_shapes, list)
    several_outputs = isinstance(expected_output_shapes, list)
    shapes = _as_list(input_shapes)
    expected = [tuple(shape) for shape in _as_list(expected_output_shapes)]
    rng = np.random.default_rng(seed)
    data = [rng.normal(size=shape).astype("float32") for shape in shapes]
    inputs = [keras.Input(shape[1:]) for shape in shapes]
    # A trainable Dense before the layer: the training step shows that gradients pass.
    pre = [keras.layers.Dense(shape[-1], name=f"pre_{i}")(tensor)
           for i, (tensor, shape) in enumerate(zip(inputs, shapes))]
    layer = layer_class(**init_kwargs)
    outputs = layer(pre if several_inputs else pre[0])
    assert len(layer.trainable_weights) == expected_trainable_weights, layer.trainable_weights
    symbolic = _as_list(outputs)
    assert len(symbolic) == len(expected)
    for tensor, shape in zip(symbolic, expected):
        assert tuple(tensor.shape) == (None,) + shape[1:], (tensor.shape, shape)
    computed = layer.compute_output_shape([tuple(x.shape) for x in _as_list(pre)]
                                          if several_inputs else tuple(pre[0].shape))
    computed = list(computed) if several_outputs else [computed]
    assert [tuple(shape)[1:] for shape in computed] == [shape[1:] for shape in expected]
    eager = _as_list(layer_class(**init_kwargs)(data if several_inputs else data[0]))
    assert [tuple(np.shape(x)) for x in eager] == expected
    assert all(np.all(np.isfinite(np.asarray(x))) for x in eager)

    # === One training step ===
    model = keras.Model(inputs if several_inputs else inputs[0], outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    targets = [rng.normal(size=shape).astype("float32") for shape in expected]
    dense_before = [model.get_layer(f"pre_{i}").get_weights()[0] for i in range(len(shapes))]
    layer_before = [np.array(w) for w in layer.trainable_weights]
    loss = model.train_on_batch(data if several_inputs else data[0],
                                targets if several_outputs else targets[0])
    assert np.all(np.isfinite(loss))
    dense_after = [model.get_layer(f"pre_{i}").get_weights()[0] for i in range(len(shapes))]
    assert any(not np.allclose(a, b) for a, b in zip(dense_before, dense_after))
    if layer_before:
        layer_after = [np.array(w) for w in layer.trainable_weights]
        assert any(not np.allclose(a, b) for a, b in zip(layer_before, layer_after))

    # === Save and load ===
    feed = data if several_inputs else data[0]
    reference = [np.asarray(x) for x in _as_list(model(feed))]
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    path = tmp_path / f"{layer_class.__name__}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for other in (clone, loaded):
        for got, want in zip(_as_list(other(feed)), reference):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    restored = loaded.get_layer(layer.name)
    assert type(restored) is layer_class
    assert restored.get_config() == layer.get_config()
    return model


# === Export ===


def run_litert(content, x):
    """The outputs of a batch-1 file's only signature (`content`: its bytes) for each row
    of `x`, one call per row, with the standalone interpreter (no `LiteModel` guard)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content).get_signature_runner()
    (name,) = runner.get_input_details()
    return np.concatenate([list(runner(**{name: x[i : i + 1]}).values())[0]
                           for i in range(len(x))])


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

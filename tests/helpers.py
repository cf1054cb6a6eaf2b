"""Shared helpers for model tests: tiny sizes, one call per model check."""

import keras
import numpy as np

from zoo import VARIANTS, build_gru
from zoo.builders import SEQUENCE_TASKS

TINY = dict(units=4, num_layers=2, conv_filters=3, conv_kernel_size=3, attention_heads=2,
            embedding_dim=4)
TIME, FEATURES, BATCH, VOCAB = 5, 3, 2, 11

CELL_CLASSES = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM,
                "rnn": keras.layers.SimpleRNN}


def sample_inputs(input_shape, batch=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    if len(input_shape) == 1:
        return rng.integers(1, VOCAB, size=(batch, input_shape[0] or TIME)).astype("int32")
    time = input_shape[0] or TIME
    return rng.normal(size=(batch, time) + tuple(input_shape[1:])).astype("float32")


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


def run_model_test(variant, *, cell="gru", task="classification", num_outputs=3,
                   input_shape=(TIME, FEATURES), tmp_path, **overrides):
    """Builds a tiny model and checks what every zoo model must do.

    Asserts that the built model is the variant and cell it claims, that one training
    step runs and changes the weights, that predictions have the task's shape, and that
    the model round-trips through `.keras` with identical predictions. Returns the model.
    """
    kwargs = dict(TINY, **overrides)
    if input_shape is not None and len(input_shape) == 1:
        kwargs.setdefault("vocab_size", VOCAB)
    model = build_gru(variant, input_shape=input_shape, num_outputs=num_outputs, task=task,
                      cell=cell, **kwargs)
    model.run_eagerly = True  # tiny models: eager steps are faster than tracing

    spec = VARIANTS[variant]
    layers = recurrent_layers(model)
    assert len(layers) == kwargs["num_layers"]
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

"""Shared helpers of the export tests: tiny models and an independent parity check."""

import numpy as np

import zoo
from export import LiteModel

TIME = 6
FEATURES = 3


def tiny_model(variant="stacked", *, cell="gru", task="classification", time=TIME, **kwargs):
    """A tiny untrained zoo model (units 4, 6 steps, 3 features): quick to convert."""
    options = dict(
        input_shape=(time, FEATURES),
        num_outputs=3,
        units=4,
        conv_filters=4,
        attention_heads=2,
        task=task,
        cell=cell,
    )
    options.update(kwargs)
    return zoo.build_gru(variant, **options)


def sequences(count=12, *, time=TIME, features=FEATURES, seed=0):
    return np.random.default_rng(seed).standard_normal((count, time, features)).astype("float32")


def tflite_vs_keras(path, model, x):
    """Max abs difference between the file (run here, independently) and Keras."""
    lite = LiteModel(path)
    keras_out = np.asarray(model.predict(x, verbose=0))
    lite_out = lite.predict(x, per_step=keras_out.ndim == 3)
    assert lite_out.shape == keras_out.shape
    return float(np.abs(lite_out - keras_out).max())

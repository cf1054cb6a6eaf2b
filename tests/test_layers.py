"""The custom layers of `zoo.layers`: one `run_layer_test` per layer and setting, then
what each layer computes (masking, pooling, window statistics) and its bad arguments."""

import inspect

import keras
import numpy as np
import pytest
from helpers import run_layer_test

import zoo.layers
from zoo import (
    AttentionPooling,
    MultiHeadAttentionPooling,
    WindowDenormalization,
    WindowNormalization,
)

# (layer class, constructor arguments, input shapes, output shapes, trainable weights),
# shapes with the batch axis first.
LAYER_CASES = [
    # score Dense (kernel, bias) and score vector (kernel)
    (AttentionPooling, {}, (2, 5, 4), (2, 4), 3),
    (AttentionPooling, {"attention_units": 3}, (2, 5, 4), (2, 4), 3),
    # the query and MultiHeadAttention's query, key, value and output kernels and biases
    (MultiHeadAttentionPooling, {"num_heads": 2, "key_dim": 3}, (2, 5, 4), (2, 4), 9),
    # over more than SCALED_WEIGHTS_ABOVE steps its attention scales the weights
    (MultiHeadAttentionPooling, {"num_heads": 2, "key_dim": 3}, (2, 200, 4), (2, 4), 9),
    (WindowNormalization, {"mode": "mean"}, (2, 5, 2), [(2, 5, 2), (2, 1, 2)], 0),
    (WindowNormalization, {"mode": "meanstd", "epsilon": 1e-3}, (2, 5, 2),
     [(2, 5, 2), (2, 1, 2), (2, 1, 2)], 0),
    # [forecast, mean, std] as WindowNormalization returns them: a (batch, outputs)
    # forecast and a per-step (batch, time, 1) one.
    (WindowDenormalization, {"channel": 1}, [(2, 3), (2, 1, 2), (2, 1, 2)], (2, 3), 0),
    (WindowDenormalization, {"channel": 0}, [(2, 5, 1), (2, 1, 2)], (2, 5, 1), 0),
]


@pytest.mark.parametrize(
    "layer_class, kwargs, input_shapes, output_shapes, weights", LAYER_CASES,
    ids=[f"{case[0].__name__}-{i}" for i, case in enumerate(LAYER_CASES)])
def test_layer(layer_class, kwargs, input_shapes, output_shapes, weights, tmp_path):
    run_layer_test(layer_class, kwargs, input_shapes=input_shapes,
                   expected_output_shapes=output_shapes, expected_trainable_weights=weights,
                   tmp_path=tmp_path)


# Layers with their own test instead of a LAYER_CASES entry: their call takes several
# positional tensors, which `run_layer_test` does not pass.
OWN_TESTS = {zoo.layers.ScaledWeightsMultiHeadAttention}


def test_every_custom_layer_has_a_layer_test():
    defined = {cls for _, cls in inspect.getmembers(zoo.layers, inspect.isclass)
               if issubclass(cls, keras.layers.Layer) and cls.__module__ == "zoo.layers"}
    assert defined == {case[0] for case in LAYER_CASES} | OWN_TESTS


@pytest.mark.parametrize("steps", [100, 200])
def test_scaled_weights_attention_computes_keras_attention(steps):
    """Over more than `SCALED_WEIGHTS_ABOVE` keys the weights are scaled by T and the
    output divided by T (for int8 files): the same outputs as Keras's attention with the
    same weights, with and without a mask, and the same scores when asked for them."""
    assert (steps > zoo.layers.SCALED_WEIGHTS_ABOVE) == (steps == 200)
    rng = np.random.default_rng(0)
    query = rng.normal(size=(2, 1, 4)).astype("float32")
    value = rng.normal(size=(2, steps, 4)).astype("float32")
    mask = np.ones((2, 1, steps), bool)
    mask[1, :, steps // 3:] = False
    scaled = zoo.layers.ScaledWeightsMultiHeadAttention(num_heads=2, key_dim=3)
    plain = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
    for layer in (scaled, plain):
        layer.build(query.shape, value.shape)
    plain.set_weights(scaled.get_weights())
    for attention_mask in (None, mask):
        got, got_scores = scaled(query, value, attention_mask=attention_mask,
                                 return_attention_scores=True)
        want, want_scores = plain(query, value, attention_mask=attention_mask,
                                  return_attention_scores=True)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
        np.testing.assert_allclose(np.asarray(got_scores), np.asarray(want_scores), atol=1e-6)
    config = scaled.get_config()
    assert zoo.layers.ScaledWeightsMultiHeadAttention.from_config(config).get_config() == config


@pytest.mark.parametrize("layer_class", [AttentionPooling, MultiHeadAttentionPooling])
def test_masked_steps_get_no_weight(layer_class):
    layer = layer_class()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 4)).astype("float32")
    mask = np.array([[True] * 4 + [False] * 2] * 2)
    garbage = x.copy()
    garbage[:, 4:] = 100.0  # whatever sits in masked steps must not matter
    masked = np.asarray(layer(garbage, mask=mask))
    np.testing.assert_allclose(masked, np.asarray(layer(x[:, :4])), atol=1e-5)
    assert masked.shape == (2, 4)


def test_additive_pooling_is_a_convex_combination():
    layer = AttentionPooling(attention_units=3)
    x = np.random.default_rng(1).uniform(size=(3, 5, 2)).astype("float32")
    out = np.asarray(layer(x))
    assert np.all(out >= x.min(axis=1) - 1e-6) and np.all(out <= x.max(axis=1) + 1e-6)
    # Constant states pool to that constant whatever the scores.
    constant = np.full((1, 5, 2), 0.7, "float32")
    np.testing.assert_allclose(np.asarray(layer(constant)), 0.7, rtol=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [(lambda: AttentionPooling(attention_units=0), "attention_units=0"),
     (lambda: MultiHeadAttentionPooling(num_heads=0), "num_heads=0"),
     (lambda: MultiHeadAttentionPooling(key_dim=-2), "key_dim=-2")],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_window_normalization_centres_and_scales_each_window():
    x = np.random.default_rng(3).normal(loc=5.0, scale=2.0, size=(4, 9, 2)).astype("float32")
    centred, mean = (np.asarray(t) for t in WindowNormalization("mean")(x))
    np.testing.assert_allclose(mean, x.mean(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(centred, x - x.mean(axis=1, keepdims=True), atol=1e-5)
    scaled, mean, std = (np.asarray(t) for t in WindowNormalization("meanstd")(x))
    np.testing.assert_allclose(std[:, 0], x.std(axis=1), rtol=1e-4)
    np.testing.assert_allclose(scaled.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(axis=1), 1.0, rtol=1e-4)


def test_window_normalization_keeps_its_precision_when_the_spread_is_tiny_beside_the_level():
    # A level of 50 with a spread of 1e-3: averaging the raw values rounds the mean at
    # 50's float32 resolution (4e-6), which the small std then magnifies (7e-4 in the
    # normalized series, measured); averaging the offsets from the first step does not.
    x = (50.0 + 1e-3 * np.random.default_rng(0).standard_normal((8, 64, 1))).astype("float32")
    exact = x.astype("float64") - x.astype("float64").mean(axis=1, keepdims=True)
    exact = exact / np.sqrt((exact ** 2).mean(axis=1, keepdims=True) + 1e-5)
    scaled, mean, _ = (np.asarray(t) for t in WindowNormalization("meanstd")(x))
    assert np.abs(scaled - exact).max() < 1e-6
    np.testing.assert_allclose(mean, x.astype("float64").mean(axis=1, keepdims=True), rtol=1e-6)


@pytest.mark.parametrize("mode", ["mean", "meanstd"])
def test_causal_window_normalization_uses_the_steps_so_far(mode):
    x = np.random.default_rng(6).normal(loc=2.0, scale=3.0, size=(2, 8, 3)).astype("float32")
    causal = [np.asarray(t) for t in WindowNormalization(mode, causal=True)(x)]
    for t in range(1, 9):
        window = [np.asarray(v) for v in WindowNormalization(mode)(x[:, :t])]
        # Step t-1 is normalized exactly as the last step of the window x[:, :t] is.
        for got, expected in zip(causal, window):
            expected = expected[:, -1] if expected.shape[1] == t else expected[:, 0]
            np.testing.assert_allclose(got[:, t - 1], expected, atol=2e-4)


@pytest.mark.parametrize("mode", ["mean", "meanstd"])
def test_window_denormalization_inverts_the_normalization_of_its_channel(mode):
    x = np.random.default_rng(4).normal(loc=-3.0, scale=4.0, size=(3, 7, 2)).astype("float32")
    normalized, *stats = WindowNormalization(mode)(x)
    for channel in (0, 1):
        restore = WindowDenormalization(channel)
        per_step = np.asarray(restore([normalized[..., channel:channel + 1], *stats]))
        np.testing.assert_allclose(per_step[..., 0], x[..., channel], atol=1e-4)
        # A 2-D forecast (batch, outputs) gets the same statistics.
        flat = np.asarray(restore([normalized[:, :, channel], *stats]))
        np.testing.assert_allclose(flat, x[..., channel], atol=1e-4)


def test_window_layers_round_trip_together():
    """Normalization, a head and denormalization in one model survive a `.keras` file."""
    inputs = keras.Input((5, 2))
    normalized, mean, std = WindowNormalization("meanstd", epsilon=1e-3, causal=True)(inputs)
    outputs = WindowDenormalization(1)([keras.layers.Dense(3)(normalized[:, -1]), mean, std])
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(5).normal(size=(2, 5, 2)).astype("float32")
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(model(x)), atol=1e-6)
    assert clone.get_layer(model.layers[1].name).get_config()["epsilon"] == 1e-3
    assert clone.get_layer(model.layers[1].name).causal is True


@pytest.mark.parametrize(
    "make, message",
    [(lambda: WindowNormalization("median"), "mode='median'"),
     (lambda: WindowNormalization(epsilon=0), "epsilon=0"),
     (lambda: WindowNormalization(causal="yes"), "causal='yes'"),
     (lambda: WindowDenormalization(-1), "channel=-1")],
)
def test_window_layers_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()

import keras
import numpy as np
import pytest

from zoo import AttentionPooling, MultiHeadAttentionPooling


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


@pytest.mark.parametrize("layer", [AttentionPooling(attention_units=3),
                                   MultiHeadAttentionPooling(num_heads=2, key_dim=3)])
def test_config_round_trip(layer):
    inputs = keras.Input((5, 4))
    model = keras.Model(inputs, layer(inputs))
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(2).normal(size=(2, 5, 4)).astype("float32")
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(model(x)), atol=1e-6)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


@pytest.mark.parametrize(
    "make, message",
    [(lambda: AttentionPooling(attention_units=0), "attention_units=0"),
     (lambda: MultiHeadAttentionPooling(num_heads=0), "num_heads=0"),
     (lambda: MultiHeadAttentionPooling(key_dim=-2), "key_dim=-2")],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()

"""The recipe models that the converter is given (`export.recipes`), checked in Keras.

Fast: no conversion except one small float32 file that counts the ops per time step.
"""

import collections

import keras
import numpy as np
import pytest

import zoo
from export import converter, recipes
from helpers import sequences, tiny_model

X = np.random.default_rng(0).standard_normal((3, 7, 3)).astype("float32")


def _hoisted_layers(model):
    found = []
    for layer in model.layers:
        for candidate in (layer, getattr(layer, "forward_layer", None),
                          getattr(layer, "backward_layer", None)):
            if isinstance(candidate, recipes.HoistedGRU):
                found.append(candidate)
    return found


def _max_difference(a, b, x):
    return max(float(np.abs(a.predict(x[i : i + 1], verbose=0)
                            - b.predict(x[i : i + 1], verbose=0)).max()) for i in range(len(x)))


@pytest.mark.parametrize("options", [
    {},
    {"reset_after": False},
    {"use_bias": False},
    {"go_backwards": True, "return_sequences": True},
    {"activation": "relu", "recurrent_activation": "hard_sigmoid"},
])
def test_unrolled_recipe_hoisted_gru_matches_keras(options):
    inputs = keras.Input((7, 3))
    model = keras.Model(inputs, keras.layers.GRU(5, **options)(inputs))
    rebuilt = recipes.rebuild(model, unroll=True)
    assert len(_hoisted_layers(rebuilt)) == 1
    assert _max_difference(rebuilt, model, X) <= 1e-6


@pytest.mark.parametrize("variant", sorted(zoo.VARIANTS))
def test_unrolled_recipe_of_every_variant_matches_keras(variant):
    model = tiny_model(variant)
    rebuilt = recipes.rebuild(model, unroll=True)
    assert _hoisted_layers(rebuilt)  # every zoo variant has GRU layers
    assert _max_difference(rebuilt, model, sequences(3)) <= 1e-6


@pytest.mark.parametrize("mode", ["mean", "meanstd"])
def test_unrolled_recipe_computes_a_causal_window_normalization_step_by_step(mode):
    """A causal `WindowNormalization` becomes `UnrolledWindowNormalization` (one ADD per
    step instead of CUMSUM, which has no int16 kernel): the same statistics as Keras's,
    up to float rounding, on a trending series whose level dwarfs its spread."""
    rng = np.random.default_rng(1)
    x = (100.0 + 0.5 * np.arange(20)[None, :, None]
         + rng.standard_normal((4, 20, 2))).astype("float32")
    layer = zoo.WindowNormalization(mode, causal=True)
    unrolled = recipes.UnrolledWindowNormalization.from_config(layer.get_config())
    for expected, got in zip(layer(x), unrolled(x), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)

    model = tiny_model("stacked", window_norm=mode, causal=True)
    rebuilt = recipes.rebuild(model, unroll=True)
    kinds = [type(layer).__name__ for layer in rebuilt.layers]
    assert "UnrolledWindowNormalization" in kinds
    assert _max_difference(rebuilt, model, sequences(3)) <= 1e-6
    # Not the loop form, and not a window normalization over the whole window.
    assert "UnrolledWindowNormalization" not in [
        type(layer).__name__ for layer in recipes.rebuild(model, unroll=False).layers]
    plain = recipes.rebuild(tiny_model("stacked", window_norm=mode), unroll=True)
    assert "UnrolledWindowNormalization" not in [type(layer).__name__ for layer in plain.layers]


def test_loop_recipe_and_other_cells_keep_keras_layers():
    assert not _hoisted_layers(recipes.rebuild(tiny_model("stacked"), unroll=False))
    for cell in ("lstm", "rnn"):
        assert not _hoisted_layers(recipes.rebuild(tiny_model("stacked", cell=cell), unroll=True))


def test_hoisted_gru_with_a_mask_falls_back_to_keras():
    model = tiny_model("stacked", input_shape=(6,), vocab_size=20, embedding_dim=4)
    x = np.random.default_rng(0).integers(1, 20, size=(3, 6)).astype(np.int32)
    x[:2, -2:] = 0  # padded tails: the mask reaches the GRU layers
    rebuilt = recipes.rebuild(model, unroll=True)
    assert _max_difference(rebuilt, model, x) <= 1e-6


def test_hoisted_unrolled_file_has_fewer_ops_per_step():
    """Keras's unrolled GRU: ~17 ops per step; hoisted: 11 (2 FC and the gate math)."""
    model = tiny_model("stacked", num_layers=1, time=12)
    content = converter.convert(recipes.rebuild(model, unroll=True))
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    counts = collections.Counter(flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex)
                                 for op in flat.subgraphs[0].operators)
    # One recurrent step after the first: 2 FULLY_CONNECTED (z|r and h).
    assert counts["FULLY_CONNECTED"] <= 2 * 12 + 1
    assert sum(counts.values()) <= 11 * 12 + 8


def test_recipes_build_inference_graphs_without_recurrent_dropout():
    """GRU dropout left a seed-generator update in the graph (GunPoint 16x8 failed)."""
    model = tiny_model("stacked", dropout=0.2, recurrent_dropout=0.1)
    recurrent = [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]
    assert recurrent and all(layer.dropout > 0 for layer in recurrent)
    x = sequences(4)
    for unroll in (False, True):
        rebuilt = recipes.rebuild(model, unroll=unroll)
        for layer in rebuilt.layers:
            if isinstance(layer, keras.layers.RNN):
                assert layer.dropout == 0 and layer.recurrent_dropout == 0
        np.testing.assert_allclose(rebuilt.predict(x[:1], verbose=0),
                                   model.predict(x[:1], verbose=0), atol=1e-6)
    step = recipes.build_step_model(model)
    cells = [layer for layer in step.layers if hasattr(layer, "recurrent_dropout")]
    assert cells and all(cell.dropout == 0 and cell.recurrent_dropout == 0 for cell in cells)


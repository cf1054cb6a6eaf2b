"""The registry-wide export matrix: every variant x cell x task in every mode that makes sense.

Each case converts a tiny model, runs the file with the LiteRT interpreter here (not only
inside `to_tflite`) and compares it with Keras. Slow (one child-process conversion per
case): `pytest --run-slow tests/test_export_matrix.py`.
"""

import numpy as np
import pytest

import zoo
from export import DEFAULT_TOLERANCES, LiteModel, to_tflite
from helpers import TIME, sequences, tflite_vs_keras, tiny_model

CELL_LAYERS = {"gru": "GRU", "lstm": "LSTM", "rnn": "SimpleRNN"}


def _check(result, model, path, x, quantization, cell):
    layers = [layer.get("wrapped") or layer["class_name"] for layer in result.metadata["layers"]]
    assert CELL_LAYERS[cell] in layers  # the test converts the cell it names
    assert result.flex_ops == [] and result.custom_ops == []
    scale = max(1.0, float(np.abs(model.predict(x, verbose=0)).max()))
    error = tflite_vs_keras(path, model, x)
    assert error <= DEFAULT_TOLERANCES[quantization] * scale


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(zoo.TASKS))
@pytest.mark.parametrize("cell", sorted(zoo.CELLS))
@pytest.mark.parametrize("variant", sorted(zoo.VARIANTS))
def test_every_variant_cell_task_exports_float32(tmp_path, variant, cell, task):
    model = tiny_model(variant, cell=cell, task=task)
    x = sequences(6)
    path = tmp_path / "model.tflite"
    result = to_tflite(model, path, verification_data=x)
    # GRU layers of a fixed length: the chunked form; LSTM and SimpleRNN: Keras's loop.
    assert result.recipe == ("chunked" if cell == "gru" else "loop")
    _check(result, model, path, x, None, cell)


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["float16", "dynamic", "int8", "int16x8"])
@pytest.mark.parametrize("variant", sorted(zoo.VARIANTS))
def test_every_variant_exports_in_every_quantization(tmp_path, variant, quantization):
    model = tiny_model(variant)
    x = sequences(16)
    path = tmp_path / "model.tflite"
    result = to_tflite(model, path, quantization=quantization, representative_data=x)
    assert result.recipe == ("unrolled" if quantization == "int16x8" else "chunked")
    _check(result, model, path, x, quantization, "gru")


@pytest.mark.slow
@pytest.mark.parametrize("cell", sorted(zoo.CELLS))
@pytest.mark.parametrize("variant", sorted(zoo.VARIANTS))
def test_every_variant_and_cell_exports_int8(tmp_path, variant, cell):
    model = tiny_model(variant, cell=cell, task="regression")
    x = sequences(16)
    path = tmp_path / "model.tflite"
    result = to_tflite(model, path, quantization="int8", representative_data=x)
    _check(result, model, path, x, "int8", cell)


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(zoo.VARIANTS))
def test_token_inputs_with_masking_export(tmp_path, variant):
    model = tiny_model(variant, input_shape=(TIME,), vocab_size=20, embedding_dim=4)
    rng = np.random.default_rng(0)
    x = rng.integers(1, 20, size=(6, TIME)).astype(np.int32)
    x[:3, -2:] = 0  # padded tails
    path = tmp_path / "model.tflite"
    result = to_tflite(model, path, verification_data=x)
    assert result.metadata["input"]["dtype"] == "int32"
    _check(result, model, path, x, None, "gru")


@pytest.mark.slow
@pytest.mark.parametrize("quantization", [None, "int8"])
@pytest.mark.parametrize("task", sorted(zoo.TASKS))
@pytest.mark.parametrize("cell", sorted(zoo.CELLS))
def test_streaming_every_cell_and_task(tmp_path, cell, task, quantization):
    model = tiny_model("stacked", cell=cell, task=task)
    x = sequences(12)
    path = tmp_path / "step.tflite"
    result = to_tflite(model, path, streaming=True, quantization=quantization,
                       representative_data=x if quantization else None)
    assert result.recipe == "step"
    assert result.tflm["runs"] is True
    assert result.tflm["max_abs_error"] <= DEFAULT_TOLERANCES[quantization] * max(
        1.0, float(np.abs(model.predict(x, verbose=0)).max()))
    _check(result, model, path, x, quantization, cell)
    states = LiteModel(path).state_names
    assert len(states) == (4 if cell == "lstm" else 2)


@pytest.mark.parametrize(
    "variant", sorted(name for name, v in zoo.VARIANTS.items() if v.bidirectional or v.uses_conv)
)
def test_non_causal_variants_refuse_streaming(tmp_path, variant):
    """Bidirectional layers and centred convolutions see later frames (build conv variants
    with `causal=True` to stream them: tests/test_streaming.py)."""
    with pytest.raises(ValueError, match="streaming=True"):
        to_tflite(tiny_model(variant), tmp_path / "x.tflite", streaming=True)
    assert not (tmp_path / "x.tflite").exists()


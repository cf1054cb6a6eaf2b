"""int16x8 export of the trained presets: converts, matches Keras, keeps accuracy.

Two trained models failed where the tiny untrained test models passed:

- GunPoint cnn_gru (GRU `dropout=0.2`): conversion failed ("Max and min for dynamic
  tensors should be recorded during calibration: ... gru_0_1/Add"): the seed
  generator's int32 update that Keras 3 traces even at inference
  (`export.recipes._drop_dropout`). The GunPoint preset has since been replaced (by a
  GRU-FCN without GRU dropout), so `test_int16x8_export_of_a_gru_with_dropout` keeps
  that case with a model of the old preset's architecture.
- ItalyPowerDemand stacked GRU (two GRU(32) layers): converted but failed verification
  (max error 0.47, test accuracy 0.969 -> 0.849): the recurrent bias shared by all
  unrolled steps was quantized with one step's input scale (`export.quantization`).
  The ItalyPowerDemand preset has since become a one-layer GRU; that trained two-layer
  model stays in `tests/fixtures/presets/` for these regression tests, and the shipped
  preset is checked beside it.

Each preset is converted once per module (a child process, ~10-30 s on a loaded 2-core
machine); the tests read the result and run the file here on the test split.
"""

import pathlib

import numpy as np
import pytest

import zoo
from export import LiteModel, to_tflite
from zoo.datasets import load_dataset

# Keras vs TFLite accuracy on the test split: "within about one point".
ACCURACY_POINTS = 0.01
# |TFLite - Keras| on the softmax outputs over the test split. Before the fix,
# ItalyPowerDemand: max 0.99, mean 0.15. After: max 0.03, mean 2e-4; GunPoint max
# 0.05-0.14, mean 7e-4-1.3e-3. GunPoint's max comes from one test sequence (#94, Keras
# 0.73) that is sensitive to the 8-bit conv weights (its error is 0.05-0.06 right after
# the first conv); without it the mean is 3e-4. Max: the exporter's own 16x8 tolerance.
MAX_ERROR = 0.25
MEAN_ERROR = 0.005
VARIABLE_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"}
# The trained two-layer ItalyPowerDemand GRU that exposed the shared-bias bug.
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "presets"


def _export(name, tmp_path_factory, test_samples=None, directory=None):
    model = zoo.load_preset(name, directory=directory)
    data = load_dataset(name)
    x_test, y_test = data.x_test, data.y_test
    if test_samples is not None:
        x_test, y_test = x_test[:test_samples], y_test[:test_samples]
    path = tmp_path_factory.mktemp(name) / f"{name}_int16x8.tflite"
    result = to_tflite(model, path, quantization="int16x8",
                       representative_data=data.x_train,
                       validation_data=(x_test, y_test))
    return {"model": model, "result": result, "path": path, "x": x_test, "y": y_test}


@pytest.fixture(scope="module")
def gunpoint(tmp_path_factory):
    return _export("gunpoint", tmp_path_factory)


@pytest.fixture(scope="module")
def italy(tmp_path_factory):
    # 400 of the 1029 test sequences keep the file's run here under a second or two.
    return _export("italy_power_demand", tmp_path_factory, test_samples=400,
                   directory=FIXTURES)


def test_italy_power_demand_fixture_is_the_two_layer_model():
    model = zoo.load_preset("italy_power_demand", directory=FIXTURES, compile=False)
    assert [layer.name for layer in model.layers if "gru" in layer.name] == ["gru_0", "gru_1"]


def _check(export):
    result, model, x, y = export["result"], export["model"], export["x"], export["y"]
    assert result.quantization == "int16x8" and result.recipe == "unrolled"
    assert result.flex_ops == [] and result.custom_ops == []
    assert result.max_abs_error <= result.tolerance
    # Run the written file here, independently of `to_tflite`'s own check.
    keras_out = np.asarray(model.predict(x, verbose=0))
    lite_out = LiteModel(export["path"]).predict(x)
    errors = np.abs(lite_out - keras_out).max(axis=-1)
    error = float(errors.max())
    assert error <= MAX_ERROR, f"max |tflite - keras| = {error:.3g} on the test split"
    assert float(errors.mean()) <= MEAN_ERROR, f"mean error {errors.mean():.3g}"
    keras_accuracy = float(np.mean(keras_out.argmax(-1) == y))
    lite_accuracy = float(np.mean(lite_out.argmax(-1) == y))
    assert abs(lite_accuracy - keras_accuracy) <= ACCURACY_POINTS, (keras_accuracy, lite_accuracy)
    assert keras_accuracy >= 0.9  # the trained preset, not a fresh model
    # `to_tflite`'s own evaluation agrees.
    assert result.evaluation["metric"] == "accuracy"
    assert result.evaluation["keras"] == pytest.approx(keras_accuracy)
    assert abs(result.evaluation["change"]) <= ACCURACY_POINTS
    return error


def test_gunpoint_preset_int16x8_converts_and_keeps_accuracy(gunpoint):
    _check(gunpoint)


def test_gunpoint_export_holds_no_seed_generator_variable(gunpoint):
    # GRU dropout left a seed-generator update (int32 ADD on a resource variable) in
    # the graph; the recipes build the inference graph with dropout 0.
    assert not VARIABLE_OPS & set(gunpoint["result"].ops)


def test_int16x8_export_of_a_gru_with_dropout(tmp_path):
    """The old GunPoint preset's architecture (cnn_gru, GRU dropout 0.2), small and
    untrained: before the fix its int16x8 conversion failed on the dropout seed
    generator's int32 ADD."""
    model = zoo.build_gru("cnn_gru", input_shape=(40, 1), num_outputs=2, units=8,
                          dropout=0.2, conv_layers=2, conv_filters=8, conv_batchnorm=True,
                          pool_size=2, head_dropout=0.3, input_noise=0.1)
    assert model.get_layer("gru_0").dropout == 0.2
    x = np.random.default_rng(0).standard_normal((16, 40, 1)).astype("float32")
    result = to_tflite(model, tmp_path / "dropout.tflite", quantization="int16x8",
                       representative_data=x)
    assert result.recipe == "unrolled"
    assert not VARIABLE_OPS & set(result.ops)
    assert result.max_abs_error <= 0.05


def test_italy_power_demand_stacked_int16x8_verifies_and_keeps_accuracy(italy):
    _check(italy)


def test_shipped_italy_power_demand_preset_int16x8_keeps_accuracy(tmp_path_factory):
    _check(_export("italy_power_demand", tmp_path_factory, test_samples=400))


def test_italy_power_demand_shared_recurrent_biases_were_handled(italy):
    notes = " ".join(italy["result"].notes)
    assert "shared" in notes and "int16x8" in notes


def test_requantize_shared_biases_repairs_a_plain_16x8_conversion(tmp_path):
    """The repair that runs when the calibrate-then-quantize path is unavailable.

    A plain 16x8 conversion of Keras's own unrolled ItalyPowerDemand model (in this
    process: the unrolled form does not crash the converter) stores each shared
    recurrent bias with one step's scale; `requantize_shared_biases` gives every step
    its own. (The recipe's `HoistedGRU` graph happens to escape this: its recurrent
    bias also feeds a MUL at the first step, and the quantizer then copies it per op.)
    """
    import tensorflow as tf

    from export import converter, recipes
    from export.quantization import requantize_shared_biases

    model = zoo.load_preset("italy_power_demand", directory=FIXTURES)
    data = load_dataset("italy_power_demand")
    unrolled = recipes.rebuild(model, unroll=True, hoist=False)
    names = converter.save_for_conversion(unrolled, str(tmp_path / "saved"))
    tf_converter = tf.lite.TFLiteConverter.from_saved_model(
        str(tmp_path / "saved"), signature_keys=[converter.SIGNATURE_KEY])
    tf_converter.optimizations = [tf.lite.Optimize.DEFAULT]
    tf_converter.representative_dataset = lambda: (
        {names[0]: data.x_train[i : i + 1]} for i in range(len(data.x_train)))
    tf_converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    plain = tf_converter.convert()

    repaired, info = requantize_shared_biases(plain)
    # Two layers x 23 recurrent steps share two biases; all but (at most) one op per
    # bias had the wrong scale, by up to several times.
    assert info["biases_requantized"] >= 40 and info["max_scale_ratio"] > 1.5
    assert requantize_shared_biases(repaired)[1]["biases_requantized"] == 0

    x, y = data.x_test[:300], data.y_test[:300]
    keras_out = np.asarray(model.predict(x, verbose=0))
    errors = {}
    for label, content in (("plain", plain), ("repaired", repaired)):
        lite_out = LiteModel(content).predict(x)
        errors[label] = float(np.abs(lite_out - keras_out).max())
        if label == "repaired":
            assert abs(np.mean(lite_out.argmax(-1) == y)
                       - np.mean(keras_out.argmax(-1) == y)) <= ACCURACY_POINTS
    assert errors["plain"] > MAX_ERROR  # the bug this guards against is real...
    assert errors["repaired"] <= 0.1  # ...and repaired (measured: 0.03)


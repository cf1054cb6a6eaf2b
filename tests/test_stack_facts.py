"""The TensorFlow / LiteRT / TFLite Micro / keras-tuner facts the code relies on, re-checked.

Each test is named after its fact in `docs/tflite-facts.md` (F1, F2, ...) and fails when
the installed versions stop behaving that way; the code that relies on the fact then
needs another look. Facts already shown by other tests are linked from that page
instead of being tested twice here.

Tiny models, a few seconds each. The conversions here run in this process: each is one
that returns or raises an error on this stack, none of the kind that kills the converter.
"""

import pathlib
import re
import signal
import subprocess
import sys
import textwrap

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils
from helpers import FEATURES, TIME, run_litert, sequences, tiny_model

from export import LiteModel, converter, op_report, recipes
from export.metadata import signature_tensor_indices

BUILTINS = [tf.lite.OpsSet.TFLITE_BUILTINS]


def gru_model(*, batch_size=None, unroll=False, stateful=False, time=TIME, seed=0):
    """One GRU layer and a Dense head, in plain Keras."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((time, FEATURES), batch_size=batch_size)
    x = keras.layers.GRU(4, unroll=unroll, stateful=stateful)(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def convert_keras(model):
    """`TFLiteConverter.from_keras_model` with builtin ops only."""
    lite_converter = tf.lite.TFLiteConverter.from_keras_model(model)
    lite_converter.target_spec.supported_ops = BUILTINS
    return lite_converter.convert()


# === Converting recurrent Keras models ===


def _from_saved_model(model, tmp_path):
    model.export(str(tmp_path / "saved_model"), format="tf_saved_model", verbose=False)
    lite_converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    lite_converter.target_spec.supported_ops = BUILTINS
    return lite_converter.convert()


def _from_concrete_functions(model, tmp_path):
    function = tf.function(lambda x: model(x)).get_concrete_function(
        tf.TensorSpec((None, TIME, FEATURES), tf.float32))
    lite_converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    lite_converter.target_spec.supported_ops = BUILTINS
    return lite_converter.convert()


@pytest.mark.parametrize("route", ["from_keras_model", "from_saved_model",
                                   "from_concrete_functions", "export_archive"])
def test_f1_a_dynamic_batch_gru_does_not_convert_to_builtins(route, tmp_path):
    model = gru_model()
    convert = {"from_keras_model": lambda m, _: convert_keras(m),
               "from_saved_model": _from_saved_model,
               "from_concrete_functions": _from_concrete_functions,
               # export.converter's own route, before a form gives the model a static batch
               "export_archive": lambda m, _: converter.convert(m)}[route]
    with pytest.raises(Exception, match=r"TensorListReserve[\s\S]*element_shape"):
        convert(model, tmp_path)


@pytest.mark.parametrize("variant, options", [
    ("bidirectional", {}),
    ("stacked", {"input_shape": (TIME,), "vocab_size": 20}),  # embedding and mask
])
def test_f1_holds_for_bidirectional_and_masked_models(variant, options):
    with pytest.raises(Exception, match="TensorListReserve"):
        convert_keras(tiny_model(variant, **options))


def test_f2_keras_litert_export_needs_flex_ops_the_interpreter_refuses(tmp_path):
    path = tmp_path / "keras.tflite"
    gru_model().export(str(path), format="litert", verbose=False)
    ops = op_report(path.read_bytes())
    assert ops["flex"] and all(op.startswith("FlexTensorList") for op in ops["flex"])
    with pytest.raises(RuntimeError, match="Select TensorFlow op"):
        Interpreter(model_path=str(path)).allocate_tensors()


def test_f3_a_static_batch_converts_to_a_while_loop_that_matches_keras():
    model = gru_model(batch_size=1)
    content = convert_keras(model)
    ops = op_report(content)
    assert "WHILE" in ops["builtin"] and ops["flex"] == [] and ops["custom"] == []
    x = sequences(1)
    assert np.abs(run_litert(content, x) - np.asarray(model(x))).max() <= 1e-6


def test_f3_weights_left_as_variables_fail_at_run_time():
    """A batch-1 concrete function given the model as its trackable object converts with
    the weights as resource variables, and the file then fails on invoke."""
    model = gru_model()
    function = tf.function(lambda x: model(x)).get_concrete_function(
        tf.TensorSpec((1, TIME, FEATURES), tf.float32))
    lite_converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    lite_converter.target_spec.supported_ops = BUILTINS
    content = lite_converter.convert()
    assert "READ_VARIABLE" in op_report(content)["builtin"]
    with pytest.raises(RuntimeError, match="READ_VARIABLE"):
        run_litert(content, sequences(1))


_F5_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, "tests")
    from helpers import sequences, tiny_model
    from export import converter, recipes

    data = sequences(8)
    converter.convert(recipes.rebuild(tiny_model("stacked"), unroll=False),
                      quantization="int8",
                      representative=[{"inputs": data[i : i + 1]} for i in range(8)])
""")


@pytest.mark.slow
def test_f5_the_converters_calibrator_kills_the_process_on_a_loop():
    """int8 of a Keras GRU `WHILE` loop through the converter's own calibrator: SIGSEGV."""
    root = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _F5_CHILD], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == -signal.SIGSEGV, done.stderr[-2000:]


def test_f4_unrolled_converts_without_a_loop_and_grows_with_the_length():
    x = sequences(1)
    unrolled = gru_model(unroll=True)  # dynamic batch: no loop, so no tensor list
    content = convert_keras(unrolled)
    assert "WHILE" not in op_report(content)["builtin"]
    assert np.abs(run_litert(content, x) - np.asarray(unrolled(x))).max() <= 1e-6
    loop = convert_keras(gru_model(batch_size=1))
    longer = convert_keras(gru_model(unroll=True, time=2 * TIME))
    assert len(loop) < len(content) < len(longer)


# === Streaming step models ===


def _rollout_pairs(step, x):
    """(frame, states) calibration samples from float runs of a batched step model."""
    names = [name for name in step.input if name != "frame"]
    states = {name: np.zeros((len(x), step.input[name].shape[-1]), np.float32)
              for name in names}
    pairs = []
    for t in range(x.shape[1]):
        pairs += [dict({name: value[i:i + 1] for name, value in states.items()},
                       frame=x[i:i + 1, t]) for i in range(len(x))]
        outputs = step({"frame": x[:, t], **states})
        states = {name: np.asarray(outputs[f"new_{name}"]) for name in names}
    return pairs


def test_f7_int8_state_drifts_unless_calibrated_on_rollouts_and_16x8_drifts_less():
    keras.utils.set_random_seed(0)
    model = tiny_model(input_shape=(None, FEATURES), num_outputs=2, units=16, num_layers=1,
                       task="regression")
    x = sequences(8, time=50)
    reference = np.asarray(model.predict(x, verbose=0))
    step = recipes.build_step_model(model)
    rollouts = _rollout_pairs(recipes.build_step_model(model, batch_size=None), x)
    zero_states = [dict(pair, state_0=np.zeros_like(pair["state_0"])) for pair in rollouts]

    def error(quantization, representative):
        content = converter.convert(step, quantization=quantization,
                                    representative=representative)
        return float(np.abs(LiteModel(content).predict(x) - reference).max())

    int8_rollouts = error("int8", rollouts)
    assert error("int8", zero_states) > 3 * int8_rollouts
    assert error("int16x8", rollouts) < int8_rollouts


# === Other traps ===


def test_f8a_a_stateful_gru_converts_but_resetting_variables_keeps_its_state():
    model = gru_model(batch_size=1, stateful=True)
    content = convert_keras(model)
    assert "WHILE" in op_report(content)["builtin"]
    interpreter = Interpreter(model_content=content)
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    x = sequences(1)
    first = next(iter(runner(**{name: x}).values()))
    second = next(iter(runner(**{name: x}).values()))
    assert not np.allclose(first, second)  # the state carried over
    interpreter.reset_all_variables()
    after_reset = next(iter(runner(**{name: x}).values()))
    assert not np.allclose(after_reset, first, atol=1e-4)


def test_f8c_a_saved_tf_module_keeps_variables_and_keras_export_archive_does_not(tmp_path):
    model = gru_model(batch_size=1)

    class Wrapper(tf.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        @tf.function(input_signature=[tf.TensorSpec((1, TIME, FEATURES), tf.float32,
                                                    name="inputs")])
        def serve(self, x):
            return {"output": self.inner(x)}

    wrapper = Wrapper(model)
    tf.saved_model.save(wrapper, str(tmp_path / "module"), signatures=wrapper.serve)
    lite_converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "module"))
    lite_converter.target_spec.supported_ops = BUILTINS
    x = sequences(1)
    with pytest.raises(RuntimeError, match="READ_VARIABLE"):
        run_litert(lite_converter.convert(), x)
    # `keras.export.ExportArchive` (what `export.converter` writes) freezes the weights.
    content = converter.convert(model)
    assert "READ_VARIABLE" not in op_report(content)["builtin"]
    assert np.abs(LiteModel(content).predict(x) - np.asarray(model(x))).max() <= 1e-6


# === TFLite for Microcontrollers ===

_TFLM_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(),
                                                 arena_size=1 << 20)
    interpreter.set_input(np.load(sys.argv[2]), 0)
    interpreter.invoke()
    np.save(sys.argv[3], interpreter.get_output(0))
""")


def test_f9_tflm_runs_the_step_file_but_not_the_loop_file(tmp_path):
    from tflite_micro.python.tflite_micro import runtime

    model = tiny_model()
    x = sequences(1)
    reference = np.asarray(model.predict(x, verbose=0))

    # The full-sequence WHILE file, in a child process (it hung there on earlier builds).
    loop_path = tmp_path / "loop.tflite"
    loop_path.write_bytes(converter.convert(recipes.rebuild(model, unroll=False)))
    np.save(tmp_path / "x.npy", x)
    try:
        done = subprocess.run([sys.executable, "-c", _TFLM_CHILD, str(loop_path),
                               str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                              capture_output=True, text=True, timeout=60)
        loop_works = (done.returncode == 0
                      and np.abs(np.load(tmp_path / "y.npy") - reference).max() <= 1e-3)
    except subprocess.TimeoutExpired:
        loop_works = False
    assert not loop_works

    # The step file runs frame by frame. TFLM's tensor details carry no names: a tensor
    # is its position in the subgraph's inputs or outputs, found through the
    # signature's tensor map (not the signature's own order).
    content = converter.convert(recipes.build_step_model(model))
    interpreter = runtime.Interpreter.from_bytes(content, arena_size=1 << 20)
    assert "name" not in interpreter.get_input_details(0)
    assert "name" not in interpreter.get_output_details(0)
    indices = signature_tensor_indices(content)
    inputs, outputs = dict(indices["inputs"]), dict(indices["outputs"])
    assert set(inputs) == {"frame", "state_0", "state_1"}
    states = {name: np.zeros((1, 4), np.float32) for name in ("state_0", "state_1")}
    for t in range(TIME):
        for name, value in dict(states, frame=x[:, t]).items():
            interpreter.set_input(value, inputs[name])
        interpreter.invoke()
        states = {name: np.asarray(interpreter.get_output(outputs[f"new_{name}"]))
                  for name in states}
    np.testing.assert_allclose(interpreter.get_output(outputs["output"]), reference,
                               atol=1e-5)


def test_f29_tensors_and_ops_may_share_one_copy_of_equal_tables():
    """A file whose tensors and ops point at one copy of each distinct shape,
    quantization table and options table (`export.serialize.model_bytes`) is smaller,
    holds the same model (unpacked and packed again it is byte for byte the file
    packed without sharing), and runs with bit-identical outputs in LiteRT and TFLite
    Micro. An unrolled file repeats its step's ops: the tiny model's, 12 steps, float32,
    without the intermediate tensors' names (as exported)."""
    from tflite_micro.python.tflite_micro import runtime

    from export.metadata import strip_tensor_names
    from export.serialize import model_bytes

    def unpacked(content):
        return flatbuffer_utils.read_model_from_bytearray(bytearray(content))

    model, x = tiny_model(), sequences(3)
    stripped = strip_tensor_names(converter.convert(recipes.rebuild(model, unroll=True)))
    # Unpacked, every tensor and op has its own tables again: packed without sharing.
    plain = bytes(flatbuffer_utils.convert_object_to_bytearray(unpacked(stripped)))
    shared = model_bytes(unpacked(plain))
    assert len(shared) < 0.95 * len(plain)
    assert bytes(flatbuffer_utils.convert_object_to_bytearray(unpacked(shared))) == plain
    assert np.array_equal(run_litert(shared, x), run_litert(plain, x))
    outputs = []
    for content in (plain, shared):
        interpreter = runtime.Interpreter.from_bytes(content, arena_size=1 << 20)
        interpreter.set_input(x[:1], 0)
        interpreter.invoke()
        outputs.append(np.asarray(interpreter.get_output(0)))
    assert np.array_equal(outputs[0], outputs[1])


def _tflm_arena_bytes(content):
    """What TFLM's interpreter says it allocated in its arena for `content`."""
    from tflite_micro.python.tflite_micro import runtime

    from export._worker import tflm_arena_bytes

    return tflm_arena_bytes(runtime.Interpreter.from_bytes(content, arena_size=8 << 20))


def test_f28_tflm_batch_matmul_keeps_a_copy_of_its_constant_weights_in_the_arena():
    """Each `BATCH_MATMUL` by a constant `(2, 64, 128)` float kernel (64 KB) adds at
    least its weights to TFLM's arena; the same products as two `FULLY_CONNECTED` ops
    add almost nothing."""
    units = 64
    kernels = (0.1 * np.random.default_rng(0).standard_normal((2, units, 2 * units))
               ).astype("float32")

    def convert(function, shape):
        concrete = tf.function(function).get_concrete_function(tf.TensorSpec(shape, tf.float32))
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()

    def rows(count):
        def function(h):
            for _ in range(count):
                h = tf.tanh(tf.matmul(h, kernels)[..., :units])
            return h
        return convert(function, (2, 1, units))

    def separate(count):
        def function(h):
            for _ in range(count):
                h = tf.concat([tf.tanh(tf.matmul(h[:1], kernels[0])[:, :units]),
                               tf.tanh(tf.matmul(h[1:], kernels[1])[:, :units])], 0)
            return h
        return convert(function, (2, units))

    assert "BATCH_MATMUL" in op_report(rows(1))["builtin"]
    per_node = (_tflm_arena_bytes(rows(4)) - _tflm_arena_bytes(rows(1))) / 3
    assert per_node >= kernels.nbytes
    per_pair = (_tflm_arena_bytes(separate(4)) - _tflm_arena_bytes(separate(1))) / 3
    assert per_pair < 0.05 * kernels.nbytes


def _int8_softmax(length, tmp_path):
    """An int8 file of one SOFTMAX over `length` values, int8 input and output."""
    @tf.function(input_signature=[tf.TensorSpec((1, length), tf.float32)])
    def softmax(x):
        return tf.nn.softmax(x, axis=-1)

    rng = np.random.default_rng(0)
    lite_converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [softmax.get_concrete_function()], softmax)
    lite_converter.optimizations = [tf.lite.Optimize.DEFAULT]
    lite_converter.representative_dataset = lambda: (
        [rng.standard_normal((1, length)).astype("float32")] for _ in range(8))
    lite_converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    lite_converter.inference_input_type = tf.int8
    lite_converter.inference_output_type = tf.int8
    path = tmp_path / f"softmax_{length}.tflite"
    path.write_bytes(lite_converter.convert())
    # Scores all alike (as an attention's over similar steps): every exponential near 1.
    np.save(tmp_path / "x.npy", np.full((1, length), 5, np.int8))
    return path


def test_f22_tflm_int8_softmax_aborts_from_512_equal_values(tmp_path):
    """LiteRT runs both files; TFLite Micro runs a softmax over 511 equal scores and
    aborts the process on 512 (an attention over 512 or more similar time steps)."""
    codes = {}
    for length in (511, 512):
        path = _int8_softmax(length, tmp_path)
        x = np.load(tmp_path / "x.npy")
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert output.shape == (1, length)
        done = subprocess.run([sys.executable, "-c", _TFLM_CHILD, str(path),
                               str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                              capture_output=True, text=True, timeout=60)
        codes[length] = done.returncode
    assert codes[511] == 0 and codes[512] != 0, codes


def test_f23_int8_softmax_output_steps_are_fixed_at_1_256(monkeypatch):
    """The quantizer writes a SOFTMAX's output at scale 1/256, also after a float
    softmax; a MUL by a constant kept float with it is quantized in its calibrated
    range (what `AttentionPooling`'s scaling by T relies on)."""
    import zoo.layers

    def quantized(scale_above, float_softmax_over):
        monkeypatch.setattr(zoo.layers, "SCALED_WEIGHTS_ABOVE", scale_above)
        inputs = keras.Input((600, 4), name="inputs", batch_size=1)
        pooled = zoo.layers.AttentionPooling()(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
        samples = [{"inputs": np.random.default_rng(i).standard_normal((1, 600, 4))
                    .astype("float32")} for i in range(16)]
        content = converter.convert(model, quantization="int8", representative=samples,
                                    float_softmax_over=float_softmax_over)
        lite = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
        graph = lite.subgraphs[0]
        ops = {}
        for op in graph.operators:
            out = graph.tensors[op.outputs[0]]
            scale = out.quantization.scale if out.quantization is not None else None
            ops.setdefault(flatbuffer_utils.opcode_to_name(lite, op.opcodeIndex), []).append(
                (out.type, None if scale is None or not len(scale) else float(scale[0])))
        return ops

    int8_softmax = quantized(10**6, None)["SOFTMAX"]
    assert int8_softmax == [(9, 1 / 256)]  # INT8, fixed scale
    # Unscaled, a softmax over 600 values stays float (F22's length in TFLM)...
    float_softmax = quantized(10**6, 128)
    assert float_softmax["SOFTMAX"] == [(0, None)]  # FLOAT32
    assert float_softmax["QUANTIZE"][-1] == (9, 1 / 256)  # requantized at the same scale
    scaled = quantized(128, 128)
    assert scaled["SOFTMAX"] == [(0, None)] and (0, None) in scaled["MUL"]
    # The weights times 600 (mean 1) are quantized in their own, finer, range.
    kind, scale = scaled["QUANTIZE"][-1]
    assert kind == 9 and 1 / 256 < scale < 600 / 256


def test_f26_an_int8_tensor_read_by_a_float_max_takes_the_max_s_range():
    """An int8 FULLY_CONNECTED whose output is read (through a DEQUANTIZE) by float ops
    kept float by name, a REDUCE_MAX and a MAXIMUM with a floor, is quantized in the
    MAXIMUM's calibrated range, not its own: values below the floor are clipped (what
    `ChunkedGRU._pool` avoids by computing the score vector in float)."""

    class Stabilized(keras.layers.Layer):
        def call(self, scores):
            import tensorflow as tf

            with tf.name_scope("kept"):
                top = keras.ops.maximum(keras.ops.max(scores, axis=1, keepdims=True), 0.5)
                return keras.ops.exp(scores - top)

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 4), name="inputs", batch_size=1)
    scores = keras.layers.Dense(1, name="scores")(inputs)
    model = keras.Model(inputs, Stabilized(name="stabilized")(keras.ops.squeeze(scores, -1)))
    samples = [{"inputs": np.random.default_rng(i).standard_normal((1, 64, 4))
                .astype("float32")} for i in range(16)]
    lowest = min(float(np.min(model.get_layer("scores")(s["inputs"]))) for s in samples)
    assert lowest < -0.5  # the scores' own calibrated range reaches well below 0
    content = converter.convert(model, quantization="int8", representative=samples,
                                float_layers=["kept"])
    lite = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = lite.subgraphs[0]
    dense = [op for op in graph.operators
             if flatbuffer_utils.opcode_to_name(lite, op.opcodeIndex) == "FULLY_CONNECTED"]
    out = graph.tensors[dense[0].outputs[0]]
    assert out.type == 9  # INT8
    scale, zero = float(out.quantization.scale[0]), int(out.quantization.zeroPoint[0])
    print(f"scores seen down to {lowest:.2f}; int8 range from {scale * (-128 - zero):.2f}")
    assert scale * (-128 - zero) > lowest + 0.4  # clipped: its lowest value is near 0


# === keras-tuner ===


def _tiny_tuner(tmp_path, name, **kwargs):
    def build(hp):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(hp.Int("units", 1, 2))])
        model.compile(optimizer="sgd", loss="mse")
        return model

    return keras_tuner.RandomSearch(build, objective="loss", max_trials=1,
                                    directory=str(tmp_path), project_name=name,
                                    max_consecutive_failed_trials=1, **kwargs)


def test_f11_every_keras_tuner_trial_imports_tensorboard(tmp_path, monkeypatch):
    x, y = np.zeros((4, 3), "float32"), np.zeros((4, 1), "float32")
    with monkeypatch.context() as blocked:
        for module in [m for m in sys.modules if m.split(".")[0] == "tensorboard"]:
            blocked.delitem(sys.modules, module)
        blocked.setitem(sys.modules, "tensorboard", None)  # as if not installed
        with pytest.raises(RuntimeError, match="tensorboard"):
            _tiny_tuner(tmp_path, "without").search(x, y, epochs=1, verbose=0)
    tuner = _tiny_tuner(tmp_path, "with")
    tuner.search(x, y, epochs=1, verbose=0)
    assert [t.status for t in tuner.oracle.trials.values()] == ["COMPLETED"]


def test_f12_a_workers_oracle_client_has_no_trials(monkeypatch):
    from keras_tuner.src.distribute.oracle_client import OracleClient

    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")  # no connection is made here
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="loss", max_trials=1)
    client = OracleClient(oracle)
    assert client.objective == oracle.objective
    assert hasattr(oracle, "trials") and not hasattr(client, "trials")


def test_f13_keras_tuner_cross_validates_only_scikit_learn_models():
    import inspect

    assert "cv" in inspect.signature(keras_tuner.SklearnTuner.__init__).parameters
    for method in (keras_tuner.Tuner.__init__, keras_tuner.Tuner.search,
                   keras_tuner.Tuner.run_trial):
        parameters = set(inspect.signature(method).parameters)
        assert not parameters & {"cv", "folds", "n_splits"}, method


def test_f14_a_list_of_objectives_is_summed():
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=[keras_tuner.Objective("a", "min"), keras_tuner.Objective("b", "max")],
        max_trials=1)
    assert oracle.objective.get_value({"a": 3.0, "b": 1.0, "ignored": 10.0}) == 2.0


def test_f15_run_trial_may_return_a_dict_or_a_float(tmp_path):
    class DictTuner(keras_tuner.Tuner):
        def run_trial(self, trial, *args, **kwargs):
            units = trial.hyperparameters.Int("units", 1, 4)
            return {"score": float(units), "folds": 2.0 * units}

    class FloatTuner(keras_tuner.Tuner):
        def run_trial(self, trial, *args, **kwargs):
            return float(trial.hyperparameters.Int("units", 1, 4))

    for tuner_class in (DictTuner, FloatTuner):
        oracle = keras_tuner.oracles.RandomSearchOracle(
            objective=keras_tuner.Objective("score", "min"), max_trials=2, seed=0)
        tuner = tuner_class(oracle=oracle, directory=str(tmp_path),
                            project_name=tuner_class.__name__)
        tuner.search(verbose=0)
        for trial in oracle.trials.values():
            units = trial.hyperparameters.get("units")
            assert trial.score == float(units)
            if tuner_class is DictTuner:
                assert trial.metrics.get_last_value("folds") == 2.0 * units


# === The facts page ===


def test_the_facts_page_names_tests_and_scripts_that_exist():
    """Every `file.py::test_name` on docs/tflite-facts.md exists, every fact test here is
    named there, and every script it names is in the repository."""
    root = pathlib.Path(__file__).resolve().parents[1]
    text = (root / "docs" / "tflite-facts.md").read_text()
    named = set()
    current = None
    for file, test in re.findall(r"`(test_\w+\.py)?::(test_\w+)`", text):
        current = file or current
        source = (root / "tests" / current).read_text()
        assert re.search(rf"^def {test}\(", source, re.MULTILINE), f"{current}::{test}"
        named.add((current, test))
    here = re.findall(r"^def (test_f\w+)\(", pathlib.Path(__file__).read_text(), re.M)
    assert here and {("test_stack_facts.py", test) for test in here} <= named
    for script in re.findall(r"`(?:python )?(benchmarks/\w+\.py)", text):
        assert (root / script).is_file(), script


# === Quantization ===


def _int8_dense_converter(units):
    """A converter of a one-`Dense` model to a fully int8 file (calibrated on 16 rows)."""
    inputs = keras.Input((FEATURES,), batch_size=1)
    model = keras.Model(inputs, keras.layers.Dense(units)(inputs))
    lite_converter = tf.lite.TFLiteConverter.from_keras_model(model)
    lite_converter.optimizations = [tf.lite.Optimize.DEFAULT]
    data = np.random.default_rng(0).standard_normal((16, 1, FEATURES)).astype("float32")
    lite_converter.representative_dataset = lambda: ([x] for x in data)
    lite_converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return lite_converter


def test_f25_xnnpack_takes_amx_when_the_cpu_has_it(tmp_path):
    """A fresh process that runs an int8 file in LiteRT (XNNPACK, the default delegate)
    holds AMX permission afterwards exactly when the CPU has AMX: XNNPACK asked for it."""
    path = tmp_path / "dense_int8.tflite"
    path.write_bytes(_int8_dense_converter(64).convert())
    script = textwrap.dedent(f"""
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter
        from export.runtime import amx_granted
        before = amx_granted()
        interpreter = Interpreter(model_path={str(path)!r}, num_threads=1)
        runner = interpreter.get_signature_runner()
        name = next(iter(runner.get_input_details()))
        runner(**{{name: np.ones((1, {FEATURES}), np.float32)}})
        print(before, amx_granted())
    """)
    root = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = done.stdout.split()[-2:]
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    import platform

    if sys.platform != "linux" or platform.machine() != "x86_64":
        assert (before, after) == ("None", "None")
    else:
        assert before == "False"
        assert after == str("amx_int8" in flags.split())


def test_f16_the_xnnpack_weight_cache_packs_shared_weights_once(tmp_path):
    """A chunked loop body of 8 steps reads each recurrent kernel from 8 nodes. With
    `CompiledModel`'s XNNPACK weight cache (a file here, to see its size) the packed
    weights take about the file's weights once, not once per node, and the outputs do
    not change."""
    from ai_edge_litert.compiled_model import (CompiledModel, CpuOptions, Environment,
                                               EnvironmentOptions, HardwareAccelerator,
                                               Options)

    import zoo

    keras.utils.set_random_seed(0)
    model = zoo.build_gru("stacked", input_shape=(48, 8), num_outputs=4, units=64,
                          compile=False)
    content = converter.convert(recipes.rebuild_chunked(model, chunk_steps=8))
    path = tmp_path / "chunked.tflite"
    path.write_bytes(content)
    x = sequences(1, time=48, features=8)

    def run(cache):
        compiled = CompiledModel.from_file(
            str(path), environment=Environment.create(options=EnvironmentOptions()),
            options=Options(hardware_accelerators=HardwareAccelerator.CPU,
                            cpu_options=CpuOptions(num_threads=1,
                                                   xnnpack_weight_cache_path=cache)))
        signature = list(compiled.get_signature_list())[0]
        (name,) = compiled.get_input_tensor_details(signature)
        (output, detail), = compiled.get_output_tensor_details(signature).items()
        inputs = {name: compiled.create_input_buffer_by_name(signature, name)}
        outputs = {output: compiled.create_output_buffer_by_name(signature, output)}
        inputs[name].write(x)
        compiled.run_by_name(signature, inputs, outputs)
        return outputs[output].read(int(np.prod(detail["shape"])), np.float32)

    cache = tmp_path / "weights.cache"
    assert np.array_equal(run(""), run(str(cache)))
    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    body = flat.subgraphs[2]  # the loop's body: 8 steps of both layers
    products = [op for op in body.operators
                if flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex) == "FULLY_CONNECTED"
                and list(body.tensors[op.inputs[1]].shape) == [128, 64]]
    assert len(products) >= 2 * 8  # each layer's z/r recurrent kernel, once per step
    # Recurrent kernels read by the body's nodes: 2 layers x 8 steps x (64 x 192) floats.
    per_node = 2 * 8 * 64 * 3 * 64 * 4
    weights = sum(len(b.data) for b in flat.buffers if b.data is not None)
    assert 0 < cache.stat().st_size <= 1.5 * weights < per_node, (cache.stat().st_size,
                                                                  weights)


@pytest.mark.parametrize("disable", [False, True])
def test_f17_a_private_switch_makes_int8_dense_weights_per_tensor(disable):
    """int8 Dense weights are per-channel (one scale per output) unless switched off."""
    keras.utils.set_random_seed(0)
    lite_converter = _int8_dense_converter(6)
    if disable:
        lite_converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    interpreter = Interpreter(model_content=lite_converter.convert())
    kernels = [d for d in interpreter.get_tensor_details()
               if d["dtype"] == np.int8 and len(d["shape"]) == 2 and d["shape"][0] == 6]
    assert kernels, "no int8 2-D weight tensor with 6 output channels"
    scales = kernels[0]["quantization_parameters"]["scales"]
    assert len(scales) == (1 if disable else 6)


def test_f18_an_int8_tensor_clips_at_its_calibrated_range():
    """Inputs beyond the calibration data's range come out clipped, not extrapolated."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((1,), batch_size=1)
    model = keras.Model(inputs, keras.layers.Dense(1, kernel_initializer="ones")(inputs))
    lite_converter = tf.lite.TFLiteConverter.from_keras_model(model)
    lite_converter.optimizations = [tf.lite.Optimize.DEFAULT]
    data = np.linspace(-1, 1, 32, dtype="float32").reshape(-1, 1, 1)
    lite_converter.representative_dataset = lambda: ([x] for x in data)
    lite_converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    content = lite_converter.convert()
    inside = float(run_litert(content, np.array([[0.5]], "float32"))[0, 0])
    beyond = float(run_litert(content, np.array([[3.0]], "float32"))[0, 0])
    assert abs(inside - 0.5) < 0.02
    assert beyond < 1.1  # Keras gives 3.0


def _int16x8_converter(function, data):
    """A `TFLiteConverter` set up for 16x8 of `function` (one `(1, TIME, 1)` input),
    calibrated on `data`."""
    concrete = tf.function(function).get_concrete_function(
        tf.TensorSpec((1, TIME, 1), tf.float32))
    lite_converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    lite_converter.optimizations = [tf.lite.Optimize.DEFAULT]
    lite_converter.representative_dataset = lambda: ([x[None]] for x in data)
    lite_converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return lite_converter


def _int16x8(function, data):
    """A 16x8 file of `function` (one `(1, TIME, 1)` input), calibrated on `data`."""
    return _int16x8_converter(function, data).convert()


def test_f20_int16x8_has_no_squared_difference_nor_cumsum_but_mul_and_rsqrt():
    """A window's spread as square/sqrt/divide fails in 16x8, as products and rsqrt it
    runs; running sums (CUMSUM) are refused by the 16x8 quantizer."""
    data = (np.random.default_rng(0).standard_normal((16, TIME, 1)) * 3 + 5).astype("float32")

    def centred(x):
        return x - tf.reduce_mean(x, axis=1, keepdims=True)

    def square_sqrt_divide(x):
        c = centred(x)
        return c / tf.sqrt(tf.reduce_mean(tf.square(c), axis=1, keepdims=True) + 1e-5)

    def products_rsqrt(x):
        c = centred(x)
        return c * tf.math.rsqrt(tf.reduce_mean(c * c, axis=1, keepdims=True) + 1e-5)

    def run(content, x):
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    with pytest.raises(RuntimeError, match="SquaredDifference"):
        # The converter fuses the square of a difference into SQUARED_DIFFERENCE, whose
        # kernel has no int16 version.
        run(_int16x8(square_sqrt_divide, data), data[:1])
    content = _int16x8(products_rsqrt, data)
    assert "SQUARED_DIFFERENCE" not in op_report(content)["builtin"]
    expected = products_rsqrt(tf.constant(data[:1])).numpy()
    assert np.abs(run(content, data[:1]) - expected).max() < 0.01
    with pytest.raises(Exception, match="CUMSUM"):
        _int16x8(lambda x: tf.cumsum(x, axis=1), data)


_ALLOCATE_CHILD = textwrap.dedent("""
    import sys
    from ai_edge_litert.interpreter import Interpreter

    Interpreter(model_path=sys.argv[1]).allocate_tensors()
""")


def test_f27_an_int16_add_of_a_tensor_calibrated_at_zero_aborts_litert(tmp_path):
    """A tensor that is 0 on every calibration sample is calibrated as [0, FLT_MIN]; an
    int16 ADD writing it gets a scale near 1e-43 and LiteRT aborts the process when it
    prepares the op. `export.quantization.widen_zero_ranges` gives it a usable range."""
    from export.quantization import quantize_int16x8

    data = (np.random.default_rng(0).standard_normal((16, TIME, 1)) * 3 + 5).astype("float32")

    def first_offset(x):
        # The offset of the first step from itself: exactly 0 (as a causal window
        # normalization's first step), then an ADD of it.
        zero = tf.unstack(x - x[:, :1], axis=1)[0]
        return zero + zero * 0.5

    def allocate(content, name):
        path = tmp_path / name
        path.write_bytes(content)
        return subprocess.run([sys.executable, "-c", _ALLOCATE_CHILD, str(path)],
                              capture_output=True, text=True, timeout=120)

    plain = _int16x8(first_offset, data)
    scales = [detail["quantization"][0] for detail in
              Interpreter(model_content=plain).get_tensor_details()
              if detail["dtype"] == np.int16 and detail["quantization"][0] > 0]
    assert min(scales) < 1e-40
    assert allocate(plain, "plain.tflite").returncode == -signal.SIGABRT

    content, notes = quantize_int16x8(_int16x8_converter(first_offset, data),
                                      io_dtype=tf.float32, allow_float=False)
    assert any("0 on every calibration sample" in note for note in notes), notes
    done = allocate(content, "widened.tflite")
    assert done.returncode == 0, done.stderr[-2000:]
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], data[:1])
    interpreter.invoke()
    assert np.abs(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])).max() == 0


def test_f19_the_node_denylist_does_not_reach_ops_that_only_move_data(tmp_path):
    """Every op of the GRUs and the head listed: their arithmetic runs float, but SPLIT
    (of the gates) and UNPACK (of the projected rows) still run int8."""
    from export import to_tflite

    model = tiny_model("stacked")
    data = sequences(24)
    path = tmp_path / "listed.tflite"
    to_tflite(model, path, quantization="int8", representative_data=data, form="unrolled",
              fallback=False, int8_float_layers=["gru_0", "gru_1", "output"])
    interpreter = Interpreter(model_path=str(path))
    kinds = {}
    for op in interpreter._get_ops_details():
        data_input = interpreter._get_tensor_details(op["inputs"][-1 if op["op_name"] ==
                                                                  "SPLIT" else 0], 0)
        kinds.setdefault(op["op_name"], set()).add(data_input["dtype"])
    assert kinds["FULLY_CONNECTED"] == {np.float32} and kinds["TANH"] == {np.float32}
    assert kinds["SPLIT"] == {np.int8} and kinds["UNPACK"] == {np.int8}
    runner = LiteModel(path)
    assert np.abs(runner.predict(data) - model.predict(data, verbose=0)).max() <= 0.05


def test_f21_the_mlir_quantizer_leaves_loop_variables_float(monkeypatch):
    """The quantizer gives an int8 chunked file float `WHILE` operands, converted at every
    iteration; `export.integer_loops` carries them in int8 with the same outputs."""
    from export import calibration, integer_loops

    model = tiny_model("attention")  # a chain returning sequences: an output buffer too
    data = sequences(8)
    rebuilt = recipes.rebuild_chunked(model, chunk_steps=4)
    samples = [{"inputs": data[i : i + 1]} for i in range(len(data))]
    monkeypatch.setattr(calibration, "integer_loop_variables", lambda content: (content, 0))
    raw = converter.convert(rebuilt, quantization="int8", representative=samples,
                            calibrate_loops=True)
    monkeypatch.undo()

    def loop_operands(content):
        interpreter = Interpreter(model_content=content)
        (loop,) = [op for op in interpreter._get_ops_details() if op["op_name"] == "WHILE"]
        return [interpreter._get_tensor_details(i, 0)["dtype"] for i in loop["inputs"]]

    def body_conversions(content):
        """QUANTIZE ops from float and DEQUANTIZE ops in the loop body (subgraph 2)."""
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
        body = model.subgraphs[2]
        names = [flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) for op in body.operators]
        sources = [body.tensors[op.inputs[0]].type for op in body.operators]
        return sum(1 for name, source in zip(names, sources)
                   if name == "DEQUANTIZE" or (name == "QUANTIZE" and source == 0))  # FLOAT32

    assert loop_operands(raw).count(np.float32) == 4  # two states, the buffer, the input
    assert body_conversions(raw) >= 4
    rewritten, count = integer_loops.integer_loop_variables(raw)
    assert count == 4 and np.float32 not in loop_operands(rewritten)
    assert body_conversions(rewritten) == 0
    for x in data[:4]:
        before, after = run_litert(raw, x[None]), run_litert(rewritten, x[None])
        assert np.abs(before - after).max() <= 1 / 128  # one step of the softmax output

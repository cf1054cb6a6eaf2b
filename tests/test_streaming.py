"""Streaming of causal models: one frame at a time equals the whole sequence.

Default suite: the step model (Keras, no conversion) against every prefix of the full
model for each streaming variant and cell, and against the full causal model for
per-step self-attention (its key/value cache); six real conversions (each variant that
streams beyond `stacked` once, each cell once, float32, int8 and int16x8, per-step
self-attention of both attention variants) run in LiteRT and TFLite Micro and compared
frame by frame with Keras, and a float32 and an int8 step file of the stacked model (the
gate math's ops against the cell's); refusals with their reasons. The whole variant x cell x task
matrix and the quantized self-attention files are slow:
`pytest --run-slow tests/test_streaming.py`.
"""

import numpy as np
import pytest

import zoo
from export import DEFAULT_TOLERANCES, LiteModel, read_metadata, to_tflite
from export import exporter, streaming
from helpers import FEATURES, sequences, tiny_model

STREAMING_VARIANTS = sorted(name for name, v in zoo.VARIANTS.items() if not v.bidirectional)
CELL_LAYERS = {"gru": "GRU", "lstm": "LSTM", "rnn": "SimpleRNN"}


def causal_model(variant, *, cell="gru", task="classification", time=None, **kwargs):
    """A tiny `causal=True` model with every streaming feature of its variant: two
    convolutions (kernels 3 and 4, dilation through the stack of shift buffers), batch
    norm with non-trivial statistics, max pooling where the task allows it."""
    options = dict(causal=True, cell=cell, task=task, time=time)
    spec = zoo.VARIANTS[variant]
    if spec.uses_conv:
        options.update(conv_layers=2, conv_filters=4, conv_kernel_size=[3, 4],
                       conv_batchnorm=True)
        if variant != "gru_fcn" and task in ("classification", "regression"):
            options["pool_size"] = 2
    if task in ("regression", "sequence_regression"):
        options["window_norm"] = "mean"
    options.update(kwargs)
    model = tiny_model(variant, **options)
    rng = np.random.default_rng(7)
    for layer in model.layers:  # moving statistics other than 0 and 1
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(size=mean.shape).astype("float32"),
                               rng.uniform(0.5, 2.0, size=variance.shape).astype("float32")])
    return model


def streaming_time(variant, task):
    """The time dimension a streaming model of `variant` and `task` is built with:
    per-step self-attention keeps a cache of a fixed number of frames, so its models
    have a fixed length; the others stream a free one."""
    if zoo.VARIANTS[variant].uses_attention and task.startswith("sequence"):
        return 8
    return None


def per_frame_reference(model, x):
    """The full model's output after each frame: its output on every prefix (or, for
    per-step tasks, its per-step output). Needs a model with a free time dimension."""
    full = np.asarray(model(x))
    if full.ndim == 3:
        return full
    return np.stack([np.asarray(model(x[:, : t + 1])) for t in range(x.shape[1])], axis=1)


def stream_step_model(step, x):
    states = {name: np.zeros((len(x),) + tuple(step.input[name].shape[1:]), np.float32)
              for name in step.input if name != "frame"}
    outputs = []
    for t in range(x.shape[1]):
        result = step({"frame": x[:, t], **states})
        states = {name: np.asarray(result[f"new_{name}"]) for name in states}
        outputs.append(np.asarray(result["output"]))
    return np.stack(outputs, axis=1)


# === The step model in Keras: every prefix, every streaming variant ===


@pytest.mark.parametrize("variant, cell, task, attention", [
    ("stacked", "lstm", "sequence_regression", None),
    ("attention", "gru", "classification", "additive"),
    ("attention", "rnn", "regression", "multihead"),
    ("cnn_gru", "lstm", "classification", None),
    ("cnn_gru", "rnn", "sequence_labeling", None),
    ("cnn_gru_attention", "gru", "classification", "multihead"),
    ("gru_fcn", "rnn", "classification", None),
    ("gru_fcn", "gru", "sequence_regression", None),
])
@pytest.mark.parametrize("gate_math", [False, True])
def test_step_model_equals_the_full_model_after_every_frame(variant, cell, task, attention,
                                                            gate_math):
    kwargs = {"attention": attention} if attention else {}
    model = causal_model(variant, cell=cell, task=task, **kwargs)
    step = streaming.build_step_model(model, batch_size=None, gate_math=gate_math)
    x = sequences(3, time=9)
    np.testing.assert_allclose(stream_step_model(step, x), per_frame_reference(model, x),
                               atol=2e-6)


@pytest.mark.parametrize("settings", [
    {},
    {"reset_after": False},
    {"use_bias": False},
    {"activation": "relu", "recurrent_activation": "hard_sigmoid"},
])
@pytest.mark.parametrize("gate_math", [False, True])
def test_gru_step_follows_every_cell_setting(settings, gate_math):
    """Each GRU setting (gate layout, biases, activations), in the rebuilt cell and in
    the chunked form's gate math, gives the full layer's outputs frame by frame."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, FEATURES))
    hidden = keras.layers.GRU(5, return_sequences=True, **settings)(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GRU(4, **settings)(hidden))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(5)  # biases other than zero
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32")
                       for w in model.get_weights()])
    step = streaming.build_step_model(model, batch_size=None, gate_math=gate_math)
    x = sequences(3, time=7)
    np.testing.assert_allclose(stream_step_model(step, x), per_frame_reference(model, x),
                               atol=2e-6)


def test_float_step_files_compute_a_gru_with_the_gate_math(tmp_path):
    """A float32 step file computes each GRU layer with the chunked form's gate math: one
    LOGISTIC per layer for both gates and no slicing of the recurrent product, fewer ops
    than Keras's cell; an int8 one keeps the cell (`streaming._recurrent_step` says
    why). Both match Keras frame by frame."""
    from ai_edge_litert.tools import flatbuffer_utils

    assert streaming.gate_math_for(None) and streaming.gate_math_for("float16")
    assert not streaming.gate_math_for("int8") and not streaming.gate_math_for("int16x8")
    model = causal_model("stacked")  # two GRU layers
    x = sequences(8, time=8)
    counts = {}
    for quantization in (None, "int8"):
        path = tmp_path / f"{quantization}.tflite"
        result = to_tflite(model, path, streaming=True, quantization=quantization,
                           representative_data=x if quantization else None,
                           verification_data=x)
        assert result.max_abs_error <= (1e-5 if quantization is None else 0.05)
        flat = flatbuffer_utils.read_model(str(path))
        names = [flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex)
                 for op in flat.subgraphs[0].operators]
        counts[quantization] = {name: names.count(name) for name in set(names)}
        counts[quantization]["all"] = len(names)
    assert counts[None]["LOGISTIC"] == 2 and "STRIDED_SLICE" not in counts[None]
    assert counts["int8"]["LOGISTIC"] == 4 and counts["int8"]["STRIDED_SLICE"] == 6
    # int8 adds its conversions at the file's border: 3 inputs, 3 outputs.
    assert counts[None]["all"] <= counts["int8"]["all"] - 6 - 2 * 3, counts


@pytest.mark.parametrize("variant, cell, task, attention", [
    ("attention", "lstm", "sequence_labeling", "additive"),
    ("attention", "rnn", "sequence_regression", "multihead"),
    ("cnn_gru_attention", "gru", "sequence_labeling", "multihead"),
    ("cnn_gru_attention", "lstm", "sequence_regression", "additive"),
])
def test_causal_self_attention_streams_with_a_key_value_cache(variant, cell, task, attention):
    model = causal_model(variant, cell=cell, task=task, attention=attention, time=9)
    specs = {s["name"]: (s["shape"], s["kind"]) for s in streaming.state_specs(model)}
    features = model.get_layer("self_attention").output.shape[-1]
    if attention == "multihead":  # projected keys and values, head-major: 2 heads of 2
        assert specs["state_self_attention_keys"] == ([1, 2, 9, 2], "attention_keys")
        assert specs["state_self_attention_values"] == ([1, 2, 9, 2], "attention_values")
    else:  # additive attention: keys = values = the layer's input frames
        assert "state_self_attention_keys" not in specs
        assert specs["state_self_attention_values"] == ([1, 9, features], "attention_values")
    assert specs["state_self_attention_valid"] == ([1, 9], "attention_valid")
    step = streaming.build_step_model(model, batch_size=None)
    x = sequences(3, time=9)
    # Float32 rounding of two orders of the same sums (a cache of 9 frames against the
    # masked full attention): up to 4e-6 on the seeded multi-head model (tests/conftest.py),
    # so the float32 export tolerance, 1e-5.
    np.testing.assert_allclose(stream_step_model(step, x), np.asarray(model(x)), atol=1e-5)


@pytest.mark.parametrize("score_mode", ["dot", "concat"])
def test_keras_attention_with_its_own_keys_streams(score_mode):
    """`Attention([query, value, key])`: query, value and key from different layers,
    scale weights far from their initial values; the keys get a cache of their own."""
    import keras

    inputs = keras.Input((7, FEATURES))
    x = keras.layers.GRU(4, return_sequences=True)(inputs)
    query, value, key = (keras.layers.Dense(4, name=name)(x) for name in ("q", "v", "k"))
    attention = keras.layers.Attention(use_scale=True, score_mode=score_mode, name="cross")
    x = attention([query, value, key], use_causal_mask=True)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    for weight in attention.weights:
        weight.assign(np.full(weight.shape, 1.7, "float32"))
    kinds = [s["kind"] for s in streaming.state_specs(model) if s["layer"] == "cross"]
    assert kinds == ["attention_keys", "attention_values", "attention_valid"]
    step = streaming.build_step_model(model, batch_size=None)
    x = sequences(2, time=7)
    np.testing.assert_allclose(stream_step_model(step, x), np.asarray(model(x)), atol=2e-6)


def test_sliding_window_attention_streams_any_length_with_a_window_cache():
    """A causal `sliding_window` of 3 frames: the cache keeps 3 frames whatever the
    length (time=None), and frames leave it as in the full model's band."""
    import keras

    inputs = keras.Input((None, FEATURES))
    x = keras.layers.GRU(4, return_sequences=True)(inputs)
    x = keras.layers.MultiHeadAttention(2, 3, value_dim=5, sliding_window=3, name="band")(
        x, x, use_causal_mask=True)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    shapes = {s["kind"]: s["shape"] for s in streaming.state_specs(model)}
    assert shapes["attention_keys"] == [1, 2, 3, 3]
    assert shapes["attention_values"] == [1, 2, 3, 5]
    step = streaming.build_step_model(model, batch_size=None)
    x = sequences(2, time=10)
    np.testing.assert_allclose(stream_step_model(step, x), np.asarray(model(x)), atol=2e-6)


def test_dilated_causal_convolution_keeps_kernel_minus_one_times_dilation_frames():
    import keras

    inputs = keras.Input((None, FEATURES))
    x = keras.layers.Conv1D(4, 3, dilation_rate=2, padding="causal", activation="relu")(inputs)
    x = keras.layers.GRU(4)(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    (state,) = streaming.state_specs(model)[:1]
    assert state["shape"] == [1, 4, FEATURES] and state["kind"] == "conv_frames"
    step = streaming.build_step_model(model, batch_size=None)
    x = sequences(2, time=9)
    np.testing.assert_allclose(stream_step_model(step, x), per_frame_reference(model, x),
                               atol=2e-6)


def test_step_model_of_meanstd_window_normalization():
    model = causal_model("stacked", task="sequence_regression", window_norm="meanstd")
    step = streaming.build_step_model(model, batch_size=None)
    x = sequences(2, time=8) * 3.0 + 50.0  # a level far above the spread
    np.testing.assert_allclose(stream_step_model(step, x), np.asarray(model(x)), rtol=1e-5,
                               atol=1e-4)


def test_state_specs_name_every_state_with_its_shape_and_kind():
    model = causal_model("cnn_gru_attention", cell="lstm", num_layers=1, conv_filters=4)
    specs = {s["name"]: (s["shape"], s["kind"], s["layer"])
             for s in streaming.state_specs(model)}
    assert specs == {
        # kernel 3 keeps 2 input frames (3 features), kernel 4 keeps 3 (4 filters).
        "state_conv1d_0_frames": ([1, 2, FEATURES], "conv_frames", "conv1d_0"),
        "state_conv1d_1_frames": ([1, 3, 4], "conv_frames", "conv1d_1"),
        "state_max_pool_max": ([1, 4], "pool_max", "max_pool"),
        "state_max_pool_phase": ([1, 1], "pool_phase", "max_pool"),
        "state_0_h": ([1, 4], "recurrent", "lstm_0"),
        "state_0_c": ([1, 4], "recurrent", "lstm_0"),
        "state_attention_pooling_value": ([1, 4], "attention_value", "attention_pooling"),
        "state_attention_pooling_max": ([1, 1], "attention_max", "attention_pooling"),
        "state_attention_pooling_denominator": ([1, 1], "attention_denominator",
                                                "attention_pooling"),
    }


# === Real files: LiteRT and TFLite Micro, frame by frame ===


@pytest.mark.parametrize("variant, cell, task, quantization, attention", [
    ("attention", "gru", "classification", None, "additive"),
    ("cnn_gru", "lstm", "classification", "int8", None),
    ("cnn_gru_attention", "rnn", "classification", None, "additive"),
    ("gru_fcn", "gru", "sequence_labeling", "int16x8", None),
    # Per-step self-attention: a key/value cache of the model's 8 frames.
    ("attention", "gru", "sequence_labeling", None, "additive"),
    ("cnn_gru_attention", "lstm", "sequence_labeling", None, "multihead"),
])
def test_streaming_file_matches_keras_in_litert_and_tflm(tmp_path, variant, cell, task,
                                                         quantization, attention):
    kwargs = {"attention": attention} if attention else {}
    model = causal_model(variant, cell=cell, task=task, time=streaming_time(variant, task),
                         **kwargs)
    x = sequences(8, time=8)
    path = tmp_path / "step.tflite"
    result = to_tflite(model, path, streaming=True, quantization=quantization,
                       representative_data=x if quantization else None, verification_data=x)
    assert result.recipe == "step" and "WHILE" not in result.ops
    layers = [layer["class_name"] for layer in result.metadata["layers"]]
    assert CELL_LAYERS[cell] in layers  # the test converts the cell it names
    # The file, run here frame by frame, against the full model on every prefix.
    lite = LiteModel(path)
    reference = per_frame_reference(model, x)
    streamed = np.stack([lite.stream(sequence) for sequence in x])
    error = float(np.abs(streamed - reference).max())
    bound = 1e-5 if quantization is None else 0.05
    assert error <= bound, error
    assert result.max_abs_error <= bound
    # TFLite Micro runs the same file, with its arena reported.
    assert result.tflm["runs"] is True, result.tflm
    assert result.tflm["max_abs_error"] <= bound
    assert 0 < result.tflm["arena_bytes"] < result.tflm["arena_size_given"]
    # The metadata names every state the firmware allocates, as the file's inputs do.
    states = read_metadata(path)["states"]
    assert {s["name"] for s in states} == set(lite.state_names)
    details = lite.input_details()
    for state in states:
        assert list(details[state["name"]]["shape"]) == state["shape"]
    if streaming_time(variant, task):  # the cache: 8 frames, filled one by one
        assert {s["kind"]: s["shape"][-1] for s in states}["attention_valid"] == 8
    if quantization:
        assert {d["dtype"].__name__ for d in details.values()} == {"float32"}
        assert result.quantization == quantization


# === Refusals: the reason, before any work ===


@pytest.fixture
def no_worker(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a conversion was started for a model that cannot stream")

    monkeypatch.setattr(exporter, "_run_worker", refuse)


@pytest.mark.parametrize("variant, kwargs, pattern", [
    ("cnn_gru", {"conv_kernel_size": 5},
     r"conv1d_0.*padding='same'.*sees 2 later frame.*causal=True"),
    ("gru_fcn", {}, r"padding='same'.*causal=True"),
    ("cnn_gru", dict(causal=False, conv_kernel_size=1, pool_size=2),
     r"max_pool.*'same' padding centres its windows.*causal=True"),
    ("bidirectional", {}, r"bidirectional.*backward direction"),
    ("attention", dict(task="sequence_labeling", causal=True, time=None),
     r"self_attention.*cache of a fixed number of frames.*time dimension is None.*"
     r"input_shape=\(time_steps, features\)"),
    ("attention", dict(task="sequence_regression", attention="multihead"),
     r"self_attention.*later ones too.*causal=True"),
    ("stacked", dict(task="regression", window_norm="mean"),
     r"window_norm.*whole window.*causal=True"),
    ("cnn_gru", dict(causal=True, mask_value=0.0), r"outside a layer.*mask"),
])
def test_what_cannot_stream_is_refused_with_the_reason(tmp_path, no_worker, variant, kwargs,
                                                       pattern):
    model = tiny_model(variant, **kwargs)
    with pytest.raises(ValueError, match=f"streaming=True.*{pattern}"):
        to_tflite(model, tmp_path / "x.tflite", streaming=True)
    assert not (tmp_path / "x.tflite").exists()


def test_attention_pooling_streams_without_causal():
    """Attention and average pooling over time read no later frame: they stream as built."""
    model = tiny_model("attention", time=None)
    assert not any(layer.get_config().get("padding") for layer in model.layers)
    step = streaming.build_step_model(model, batch_size=None)
    x = sequences(2, time=7)
    np.testing.assert_allclose(stream_step_model(step, x), per_frame_reference(model, x),
                               atol=2e-6)


@pytest.mark.parametrize("kwargs", [
    dict(mask_value=-5.0), dict(input_shape=(None,), vocab_size=9, embedding_dim=3)])
def test_masked_models_stream_taking_every_frame_as_valid(kwargs):
    """The masks of Masking and Embedding(mask_zero) are left out: a device feeds the
    frames of a sequence, never its padding."""
    model = zoo.build_gru("attention", num_outputs=2, units=4, causal=True,
                          **{"input_shape": (None, FEATURES), **kwargs})
    step = streaming.build_step_model(model, batch_size=None)
    if "vocab_size" in kwargs:
        x = np.random.default_rng(0).integers(1, 9, size=(2, 6)).astype("int32")
    else:
        x = sequences(2, time=6)
    np.testing.assert_allclose(stream_step_model(step, x), per_frame_reference(model, x),
                               atol=2e-6)


# === The whole matrix (slow) ===


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(zoo.TASKS))
@pytest.mark.parametrize("cell", sorted(zoo.CELLS))
@pytest.mark.parametrize("variant", STREAMING_VARIANTS)
def test_every_streaming_variant_cell_and_task(tmp_path, variant, cell, task):
    model = causal_model(variant, cell=cell, task=task, time=streaming_time(variant, task))
    x = sequences(6, time=8)
    path = tmp_path / "step.tflite"
    result = to_tflite(model, path, streaming=True, verification_data=x)
    assert CELL_LAYERS[cell] in [layer["class_name"] for layer in result.metadata["layers"]]
    streamed = np.stack([LiteModel(path).stream(sequence) for sequence in x])
    assert float(np.abs(streamed - per_frame_reference(model, x)).max()) <= 1e-5
    assert result.tflm["runs"] is True and result.tflm["max_abs_error"] <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["int8", "int16x8"])
@pytest.mark.parametrize("variant", STREAMING_VARIANTS)
def test_every_streaming_variant_quantizes(tmp_path, variant, quantization):
    model = causal_model(variant, task="regression", window_norm=None)
    x = sequences(16, time=8)
    path = tmp_path / "step.tflite"
    result = to_tflite(model, path, streaming=True, quantization=quantization,
                       representative_data=x)
    scale = max(1.0, float(np.abs(model.predict(x, verbose=0)).max()))
    streamed = LiteModel(path).predict(x)
    error = float(np.abs(streamed - model.predict(x, verbose=0)).max())
    assert error <= DEFAULT_TOLERANCES[quantization] * scale
    assert result.tflm["runs"] is True


@pytest.mark.slow
@pytest.mark.parametrize("quantization, bound", [("int8", 0.1), ("int16x8", 0.02)])
@pytest.mark.parametrize("attention", ["additive", "multihead"])
@pytest.mark.parametrize("variant", ["attention", "cnn_gru_attention"])
def test_self_attention_step_files_quantize(tmp_path, variant, attention, quantization,
                                            bound):
    """Calibrated from float rollouts, whose caches fill frame by frame. Bounds: the
    errors measured on these tiny models (int8 <= 0.057, int16x8 <= 0.0066 on class
    probabilities over 8 frames, in LiteRT and TFLite Micro), with a margin."""
    import keras

    keras.utils.set_random_seed(0)
    model = causal_model(variant, task="sequence_labeling", attention=attention, time=8)
    x = sequences(16, time=8)
    path = tmp_path / "step.tflite"
    result = to_tflite(model, path, streaming=True, quantization=quantization,
                       representative_data=x, verification_data=x[:8])
    streamed = np.stack([LiteModel(path).stream(sequence) for sequence in x[:8]])
    assert float(np.abs(streamed - np.asarray(model(x[:8]))).max()) <= bound
    assert result.tflm["runs"] is True and result.tflm["max_abs_error"] <= bound

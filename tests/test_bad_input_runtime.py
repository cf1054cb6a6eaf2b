"""Bad input to `export.LiteModel` at run time: `run`, `predict`, `stream`, the states
and the flags.

Every error case asserts the exception type and that the message names the argument
and the value received (`match=` joins the fragments in order). A bad call must leave
the model as it was: the cases that the interpreter used to take (and break on) are
followed by a correct call compared with Keras.

The files (module-scoped, tiny): `m` a float32 full-sequence file of
`build_gru("stacked", input_shape=(8, 2), num_outputs=3, units=4)`, `s` its streaming
step file, `m8` its int8 file with int8 inputs and outputs, `tok` a token-id model
(vocabulary 10), `free` a file with a free time dimension and `seq` a per-step
(sequence labeling) full-sequence file.
"""

import os
import re

import keras
import numpy as np
import pytest

from export import LiteModel, read_metadata, runtime, to_tflite
from zoo import build_gru

TIME, FEATURES = 8, 2
X = np.random.default_rng(0).normal(size=(4, TIME, FEATURES)).astype("float32")
IDS = np.random.default_rng(1).integers(0, 10, size=(3, TIME))


def pattern(*fragments):
    """A `match=` regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(str(f)) for f in fragments)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_runtime")
    keras.utils.set_random_seed(0)
    models = {
        "m": build_gru("stacked", input_shape=(TIME, FEATURES), num_outputs=3, units=4),
        "tok": build_gru("stacked", input_shape=(TIME,), num_outputs=3, units=4,
                         vocab_size=10, embedding_dim=4),
        "free": build_gru("stacked", input_shape=(None, FEATURES), num_outputs=3, units=4),
        "seq": build_gru("stacked", input_shape=(TIME, FEATURES), num_outputs=3, units=4,
                         task="sequence_labeling"),
    }
    paths = {key: root / f"{key}.tflite" for key in ("m", "s", "m8", "tok", "free", "seq")}
    to_tflite(models["m"], paths["m"], check_tflm=False)
    to_tflite(models["m"], paths["s"], streaming=True, check_tflm=False)
    to_tflite(models["m"], paths["m8"], quantization="int8", representative_data=X,
              io_type="int8", check_tflm=False)
    for key in ("tok", "free", "seq"):
        to_tflite(models[key], paths[key], check_tflm=False)
    return paths, models


@pytest.fixture
def lite(files):
    """A fresh `LiteModel` of each file (a test may break one)."""
    paths, _ = files
    return {key: LiteModel(path) for key, path in paths.items()}


def keras_out(files, key, x):
    return np.asarray(files[1][key].predict(x, verbose=0))


# === 1. A refused call leaves the model as it was ===


def test_run_checks_the_shape_and_the_model_still_predicts(files, lite):
    m, s = lite["m"], lite["s"]
    with pytest.raises(ValueError, match=pattern("`inputs` must have shape (1, 8, 2)", "m.tflite",
                                                 "Received: inputs with shape (1, 5, 2)")):
        m.run(inputs=np.zeros((1, 5, FEATURES), "float32"))
    with pytest.raises(ValueError, match=pattern("`inputs` must have shape (1, 8, 2)",
                                                 "inputs with shape (8, 2)")):
        m.run(inputs=X[0])
    assert list(m.input_details()["inputs"]["shape"]) == [1, TIME, FEATURES]
    np.testing.assert_allclose(m.predict(X), keras_out(files, "m", X), atol=1e-5)
    np.testing.assert_allclose(m.run(inputs=X[:1])["output"], keras_out(files, "m", X[:1]),
                               atol=1e-5)
    # A streaming file: a frame of 3 features, then correct streams.
    with pytest.raises(ValueError, match=pattern("`frame` must have shape (1, 2)", "s.tflite",
                                                 "Received: frame with shape (1, 3)")):
        s.run(frame=np.zeros((1, 3)), **s.initial_states())
    with pytest.raises(ValueError, match=pattern("`state_1` must have shape (1, 4)",
                                                 "state_1 with shape (1, 5)")):
        s.run(frame=np.zeros((1, FEATURES)), state_0=np.zeros((1, 4)), state_1=np.zeros((1, 5)))
    np.testing.assert_allclose(s.stream(X[0])[-1], keras_out(files, "m", X[:1])[0], atol=1e-5)
    np.testing.assert_allclose(s.predict(X), keras_out(files, "m", X), atol=1e-5)


def test_a_free_time_file_takes_any_length_and_refuses_other_shapes(files, lite):
    free = lite["free"]
    assert list(free.input_details()["inputs"]["shape_signature"]) == [1, -1, FEATURES]
    for bad, shape in ((np.zeros((1, 5, 3)), "(1, 5, 3)"), (np.zeros((1, 0, FEATURES)),
                                                            "(1, 0, 2)")):
        with pytest.raises(ValueError, match=pattern("`inputs` must have shape (1, time, 2)",
                                                     f"inputs with shape {shape}")):
            free.run(inputs=bad)
    for length in (3, 5):
        np.testing.assert_allclose(free.run(inputs=X[:1, :length])["output"],
                                   keras_out(files, "free", X[:1, :length]), atol=1e-5)
    np.testing.assert_allclose(free.predict(X), keras_out(files, "free", X), atol=1e-5)


def test_a_failure_inside_the_interpreter_reloads_the_file(files, lite):
    """Checked input that the interpreter still fails on (simulated: the runner is fed
    a shape the file cannot take, as unchecked calls did): a `RuntimeError` naming the
    file, and the next correct call runs on a fresh interpreter."""
    m = lite["m"]
    real = m.runner()

    def failing_runner(**feed):
        return real(inputs=np.zeros((1, 5, FEATURES), "float32"))  # LiteRT fails to prepare

    m._runners[m.signature_key] = failing_runner
    with pytest.raises(RuntimeError, match=pattern("m.tflite", "failed to run on inputs with "
                                                   "shape (1, 8, 2)", "reloaded")):
        m.predict(X[:1])
    assert m.runner() is not failing_runner
    np.testing.assert_allclose(m.predict(X), keras_out(files, "m", X), atol=1e-5)


# === 2. run() is batch 1 ===


def test_run_refuses_a_batch(files, lite):
    with pytest.raises(ValueError, match=pattern("`inputs` must have batch 1",
                                                 "the file's input shape is (1, 8, 2)",
                                                 "use predict() for batches",
                                                 "Received: inputs with shape (2, 8, 2)")):
        lite["m"].run(inputs=X[:2])
    with pytest.raises(ValueError, match=pattern("`frame` must have batch 1", "(1, 2)",
                                                 "frame with shape (2, 2)")):
        lite["s"].run(frame=X[0, :2], **lite["s"].initial_states())
    with pytest.raises(ValueError, match=pattern("`inputs` must have batch 1", "(1, time, 2)",
                                                 "inputs with shape (2, 5, 2)")):
        lite["free"].run(inputs=X[:2, :5])
    np.testing.assert_allclose(lite["m"].predict(X[:2]), keras_out(files, "m", X[:2]),
                               atol=1e-5)


# === 3. int8 inputs: integer arrays are values, not quantized codes ===


def test_int8_io_file_scales_integer_inputs_like_floats(files, lite):
    q = lite["m8"]
    assert q.input_details()["inputs"]["dtype"] == np.int8
    ones = np.ones((2, TIME, FEATURES))
    from_int = q.predict(ones.astype("int32"))
    np.testing.assert_array_equal(from_int, q.predict(ones.astype("float32")))
    np.testing.assert_array_equal(q.predict(ones.astype(bool)), from_int)
    assert np.abs(from_int - keras_out(files, "m", ones.astype("float32"))).max() <= 0.1
    # Out of the int8 range: clipped as the float 200.0 is, not wrapped to -56.
    big = np.full((1, TIME, FEATURES), 200)
    np.testing.assert_array_equal(q.predict(big), q.predict(big.astype("float32")))
    assert not np.array_equal(q.predict(big), q.predict(np.full((1, TIME, FEATURES), -56.0)))
    np.testing.assert_array_equal(q.run(inputs=np.ones((1, TIME, FEATURES), "int64"))["output"],
                                  from_int[:1])


# === 4. Non-finite values ===


@pytest.mark.parametrize("key", ["m8", "m", "s"])
def test_nan_and_inf_inputs_are_refused(lite, key):
    model = lite[key]
    x = X.copy()
    x[0, :, :] = np.nan
    with pytest.raises(ValueError, match=pattern("`x` must hold finite values", f"{key}.tflite",
                                                 "Received: x with 16 NaN and 0 inf values")):
        model.predict(x)
    x = X.copy()
    x[1, 2, 0] = -np.inf
    with pytest.raises(ValueError, match=pattern("`x` must hold finite values",
                                                 "x with 0 NaN and 1 inf values")):
        model.predict(x)


def test_nan_in_run_stream_and_states_is_refused(lite):
    with pytest.raises(ValueError, match=pattern("`inputs` must hold finite values",
                                                 "inputs with 1 NaN")):
        lite["m8"].run(inputs=np.where(np.arange(16).reshape(1, TIME, FEATURES) == 3, np.nan,
                                       X[:1]))
    s = lite["s"]
    with pytest.raises(ValueError, match=pattern("`frames` must hold finite values",
                                                 "frames with 2 NaN")):
        s.stream(np.where(np.eye(TIME, FEATURES) == 1, np.nan, X[0]))
    states = dict(s.initial_states(), state_0=np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match=pattern("`states['state_0']` must hold finite values",
                                                 "states['state_0'] with 4 NaN")):
        s.stream(X[0], states=states)
    with pytest.raises(ValueError, match=pattern("`state_0` must hold finite values",
                                                 "state_0 with 4 NaN")):
        s.run(frame=X[0, :1], **states)


# === 5. Token ids ===


def test_token_ids_outside_the_vocabulary_are_refused(files, lite):
    tok = lite["tok"]
    metadata = read_metadata(files[0]["tok"])
    assert "vocab_size" not in metadata and "vocab_size" not in (metadata.get("config") or {})
    for value, shown in ((10, "(10)"), (-1, "(-1)"), (2**32, "(4294967296)")):
        ids = IDS.copy().astype("int64")
        ids[0, :2] = value
        with pytest.raises(ValueError, match=pattern("`x` must hold token ids in [0, 10)",
                                                     "the vocabulary of 10 tokens", "tok.tflite",
                                                     f"Received: x with 2 ids outside it {shown}")):
            tok.predict(ids)
    with pytest.raises(ValueError, match=pattern("`inputs` must hold token ids in [0, 10)",
                                                 "inputs with 3 ids outside it (10, 11, 12)")):
        tok.run(inputs=np.arange(TIME)[None] + 5)
    with pytest.raises(ValueError, match=pattern("`x` must hold integer token ids",
                                                 "x with dtype float64")):
        tok.predict(IDS + 0.5)
    # Valid ids (integer-valued floats too) still match Keras.
    np.testing.assert_allclose(tok.predict(IDS), keras_out(files, "tok", IDS), atol=1e-5)
    np.testing.assert_allclose(tok.predict(IDS.astype(float)), keras_out(files, "tok", IDS),
                               atol=1e-5)


# === 6. Complex arrays ===


def test_complex_arrays_are_refused(lite):
    m, s = lite["m"], lite["s"]
    z = X.astype(complex) + 1j
    with pytest.raises(ValueError, match=pattern("`x` must be a real numeric array",
                                                 "x with dtype complex128")):
        m.predict(z)
    with pytest.raises(ValueError, match=pattern("`x` must be a real numeric array",
                                                 "x with dtype complex128")):
        s.predict(z)
    with pytest.raises(ValueError, match=pattern("`frames` must be a real numeric array",
                                                 "frames with dtype complex64")):
        s.stream(X[0].astype(np.complex64))
    with pytest.raises(ValueError, match=pattern("`inputs` must be a real numeric array",
                                                 "inputs with dtype complex128")):
        m.run(inputs=z[:1])
    states = dict(s.initial_states(), state_1=np.zeros((1, 4), complex))
    with pytest.raises(ValueError, match=pattern("`states['state_1']` must be a real numeric",
                                                 "states['state_1'] with dtype complex128")):
        s.stream(X[0], states=states)


# === 7. Flags ===


def test_flags_are_checked(files, lite):
    m, s, seq = lite["m"], lite["s"], lite["seq"]
    with pytest.raises(ValueError, match=pattern("`per_step` must be a bool or None",
                                                 "per_step='no'")):
        s.predict(X, per_step="no")
    with pytest.raises(ValueError, match=pattern("`return_states` must be a bool",
                                                 "return_states='no'")):
        s.stream(X[0], return_states="no")
    with pytest.raises(ValueError, match=pattern("`guard` must be a bool", "guard='no'")):
        LiteModel(files[0]["m"], guard="no")
    for key in ("", "nope", 0):
        with pytest.raises(ValueError, match=pattern("`signature_key` must be one of "
                                                     "['serving_default']",
                                                     f"signature_key={key!r}")):
            m.runner(key)
    with pytest.raises(ValueError, match=pattern("`signature_key`", "signature_key=''")):
        m.run("", inputs=X[:1])
    # A full-sequence file gives what its output is: per_step must agree.
    with pytest.raises(ValueError, match=pattern("`per_step` must be None or False",
                                                 "no time axis (shape (1, 3))",
                                                 "Received: per_step=True")):
        m.predict(X, per_step=True)
    with pytest.raises(ValueError, match=pattern("`per_step` must be None or True",
                                                 "time axis (shape (1, 8, 3))",
                                                 "Received: per_step=False")):
        seq.predict(X, per_step=False)
    # NumPy bools are bools; what agrees with the file still runs.
    assert m.predict(X, per_step=np.False_).shape == (4, 3)
    np.testing.assert_allclose(seq.predict(X, per_step=np.True_), keras_out(files, "seq", X),
                               atol=1e-5)
    assert s.predict(X, per_step=True).shape == (4, TIME, 3)
    outputs, states = s.stream(X[0], return_states=np.True_)
    assert outputs.shape == (TIME, 3) and set(states) == {"state_0", "state_1"}
    assert isinstance(s.stream(X[0], return_states=False), np.ndarray)
    assert LiteModel(files[0]["m"], guard=np.False_).predict(X[:1]).shape == (1, 3)


# === 8. Text, None and objects ===


def test_text_none_and_object_inputs_name_the_input(lite):
    m, s = lite["m"], lite["s"]
    with pytest.raises(ValueError, match=pattern("`inputs` must be a numeric array of shape "
                                                 "(1, 8, 2)", "Received: inputs with dtype <U1")):
        m.run(inputs=np.full((1, TIME, FEATURES), "a"))
    with pytest.raises(ValueError, match=pattern("`inputs` must be a numeric array",
                                                 "Received: inputs=None")):
        m.run(inputs=None)
    with pytest.raises(ValueError, match=pattern("`inputs` must be a numeric array",
                                                 "inputs with dtype object")):
        m.run(inputs=X[:1].astype(object))
    states = dict(s.initial_states(), state_0=np.full((1, 4), "a"))
    with pytest.raises(ValueError, match=pattern("`states['state_0']` must be a numeric array "
                                                 "of shape (1, 4)",
                                                 "states['state_0'] with dtype <U1")):
        s.stream(X[0], states=states)
    with pytest.raises(ValueError, match=pattern("`state_0` must be a numeric array",
                                                 "state_0 with dtype <U1")):
        s.run(frame=X[0, :1], **states)
    states = dict(s.initial_states(), state_1=np.zeros((1, 4), object))
    with pytest.raises(ValueError, match=pattern("`states['state_1']` must be a numeric array",
                                                 "states['state_1'] with dtype object")):
        s.stream(X[0], states=states)
    with pytest.raises(ValueError, match=pattern("`state_1` must be a numeric array",
                                                 "state_1=None")):
        s.run(frame=X[0, :1], state_0=np.zeros((1, 4)), state_1=None)


# === 9. num_threads ===


def test_num_threads_takes_numpy_ints_and_is_capped(files):
    path = files[0]["m"]
    assert runtime.MAX_THREADS >= (os.cpu_count() or 1)  # every core may be used
    lite = LiteModel(path, num_threads=np.int64(2))
    assert lite.num_threads == 2 and type(lite.num_threads) is int
    np.testing.assert_allclose(lite.predict(X), keras_out(files, "m", X), atol=1e-5)
    for value in (100000, runtime.MAX_THREADS + 1):
        with pytest.raises(ValueError, match=pattern("`num_threads` must be a positive int of "
                                                     f"at most {runtime.MAX_THREADS}",
                                                     f"num_threads={value}")):
            LiteModel(path, num_threads=value)
    for value in (0, True, np.True_, 2.0, "2"):
        with pytest.raises(ValueError, match=pattern("`num_threads`",
                                                     f"num_threads={value!r}")):
            LiteModel(path, num_threads=value)
    # (not run at MAX_THREADS: that many threads depends on the machine's limits)
    assert LiteModel(path, num_threads=4).predict(X[:1]).shape == (1, 3)

"""Bad input to `export`: `to_tflite`'s options and data, damaged files, `LiteModel`.

Every error case asserts the exception type and that the message names the argument
(or the file) and the value received (`match=` joins the fragments in order), and that
nothing was written. Two real exports (a full-sequence and a streaming file of a tiny
model) serve the cases that need a file; they also prove that correct input still
exports, runs and gets the user's umask.
"""

import json
import os
import re
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import zoo
from export import LiteModel, read_metadata, runtime, to_tflite
from export._guard import SIMULATE_ENV
from helpers import FEATURES, TIME, sequences, tflite_vs_keras, tiny_model

X = sequences(8)
Y3 = np.arange(8) % 3


def pattern(*fragments):
    """A `match=` regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(str(f)) for f in fragments)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Saved tiny models, damaged copies and two verified exports."""
    root = tmp_path_factory.mktemp("bad_export")
    zoo.set_seed(0)
    paths = {"classifier": root / "classifier.keras", "regressor": root / "regressor.keras",
             "tokens": root / "tokens.keras"}
    tiny_model("stacked").save(paths["classifier"])
    tiny_model("stacked", task="regression", num_outputs=2).save(paths["regressor"])
    zoo.build_gru(input_shape=(TIME,), num_outputs=2, vocab_size=10, units=4,
                  embedding_dim=4, num_layers=1).save(paths["tokens"])
    keras_bytes = paths["classifier"].read_bytes()
    for name, content in {"empty": b"", "truncated": keras_bytes[: len(keras_bytes) // 2],
                          "random": np.random.default_rng(1).bytes(3000),
                          "text": b'{"not": "a model"}\n'}.items():
        (root / f"{name}.keras").write_bytes(content)
        paths[f"{name}.keras"] = root / f"{name}.keras"
    with zipfile.ZipFile(root / "foreign.keras", "w") as archive:
        archive.writestr("readme.txt", "not a model")
    with zipfile.ZipFile(root / "badjson.keras", "w") as archive:
        archive.writestr("config.json", "{not json")
        archive.writestr("metadata.json", "{}")
    paths["foreign.keras"], paths["badjson.keras"] = root / "foreign.keras", root / "badjson.keras"

    # A full-sequence export over an existing 0600 file, under umask 027: the result
    # must be 0640 (the umask's mode), neither mkstemp's 0600 nor a fixed 0644.
    paths["full"] = root / "full.tflite"
    paths["full"].write_bytes(b"")  # (an existing file of another kind is refused)
    os.chmod(paths["full"], 0o600)
    previous = os.umask(0o027)
    try:
        to_tflite(paths["classifier"], paths["full"], labels=["a", "b", "c"])
    finally:
        os.umask(previous)
    paths["step"] = root / "step.tflite"
    to_tflite(paths["classifier"], paths["step"], streaming=True)
    lite = paths["full"].read_bytes()
    for name, content in {"empty": b"", "truncated": lite[: len(lite) // 2],
                          "random": np.random.default_rng(2).bytes(3000),
                          "text": b"hello, this is text\n" * 20}.items():
        (root / f"{name}.tflite").write_bytes(content)
        paths[f"{name}.tflite"] = root / f"{name}.tflite"
    paths["root"] = root
    return paths


def test_an_export_gets_the_umask_even_over_an_existing_file(files):
    assert os.stat(files["full"]).st_mode & 0o777 == 0o640
    assert read_metadata(files["full"])["labels"] == ["a", "b", "c"]


# (id, model, to_tflite keyword arguments, message fragments)
TO_TFLITE_CASES = [
    # verification cannot be switched off: tolerance is a finite positive number
    ("tolerance_nan", "classifier", dict(tolerance=float("nan")), ["`tolerance`", "finite",
                                                                  "tolerance=nan"]),
    ("tolerance_inf", "classifier", dict(tolerance=float("inf")), ["`tolerance`", "tolerance=inf"]),
    ("tolerance_negative", "classifier", dict(tolerance=-1e-3), ["`tolerance`", "tolerance=-0.001"]),
    ("tolerance_bool", "classifier", dict(tolerance=True), ["`tolerance`", "tolerance=True"]),
    ("tolerance_str", "classifier", dict(tolerance="1e-3"), ["`tolerance`", "tolerance='1e-3'"]),
    ("timeout_negative", "classifier", dict(timeout=-1), ["`timeout`", "positive number of "
                                                         "seconds", "timeout=-1"]),
    ("timeout_zero", "classifier", dict(timeout=0), ["`timeout`", "timeout=0"]),
    ("timeout_str", "classifier", dict(timeout="10"), ["`timeout`", "timeout='10'"]),
    ("timeout_nan", "classifier", dict(timeout=float("nan")), ["`timeout`", "timeout=nan"]),
    ("int8_weights", "classifier", dict(int8_weights="per_row"),
     ["`int8_weights`", "'auto', 'per_channel', 'per_tensor'", "int8_weights='per_row'"]),
    ("int8_float_layers_type", "classifier", dict(int8_float_layers="conv"),
     ["`int8_float_layers`", "'auto' or a list of layer names", "int8_float_layers='conv'"]),
    ("int8_float_layers_unknown", "classifier", dict(int8_float_layers=["nope"]),
     ["`int8_float_layers`", "not layers: ['nope']", "int8_float_layers=['nope']"]),
    # metadata checked against the model before it is written into the file
    ("labels_too_few", "classifier", dict(labels=["a", "b"]),
     ["`labels`", "3 class names", "3 outputs", "labels=['a', 'b']"]),
    ("labels_duplicate", "classifier", dict(labels=["a", "a", "b"]),
     ["`labels`", "distinct", "labels=['a', 'a', 'b']"]),
    ("labels_empty", "classifier", dict(labels=[]), ["`labels`", "labels=[]"]),
    ("labels_regression", "regressor", dict(labels=["a"]),
     ["`labels`", "2 output names", "regression model", "labels=['a']"]),
    ("normalization_features", "classifier", dict(normalization={"mean": [0, 0], "std": [1, 1]}),
     ["`normalization`", "3 input features", "'mean' holds 2", "'mean': [0, 0]"]),
    ("normalization_zero_std", "classifier",
     dict(normalization={"mean": [0, 0, 0], "std": [1, 0, 1]}),
     ["`normalization`", "'std' values are all > 0", "'std': [1, 0, 1]"]),
    ("normalization_nan", "classifier",
     dict(normalization={"mean": [0, float("nan"), 0], "std": [1, 1, 1]}),
     ["`normalization`", "finite 'mean'", "nan"]),
    ("normalization_text", "classifier", dict(normalization={"mean": "a", "std": 1}),
     ["`normalization`", "'mean' is a number or a list of 3 numbers", "'mean': 'a'"]),
    ("normalization_tokens", "tokens", dict(normalization={"mean": [0], "std": [1]}),
     ["`normalization`", "token ids", "normalization={'mean': [0]"]),
    # validation labels against the model's classes and outputs
    ("validation_labels_out_of_range", "classifier", dict(validation_data=(X, np.arange(8))),
     ["`validation_data`", "[0, 3)", "3 classes", "labels from 0 to 7"]),
    ("validation_labels_float", "classifier", dict(validation_data=(X, np.full(8, 0.5))),
     ["`validation_data`", "class indices", "the label 0.5"]),
    ("validation_labels_one_hot", "classifier", dict(validation_data=(X, np.eye(3)[Y3])),
     ["`validation_data`", "shape (8,)", "one-hot", "y of shape (8, 3)"]),
    ("validation_labels_none", "classifier", dict(validation_data=(X, None)),
     ["`validation_data`", "labels y", "(x, None)"]),
    ("validation_labels_text", "classifier", dict(validation_data=(X, np.array(["a"] * 8))),
     ["`validation_data`", "numeric y", "y of dtype <U1"]),
    ("validation_targets_nan", "regressor",
     dict(validation_data=(X, np.full((8, 2), np.nan))),
     ["`validation_data`", "finite targets", "NaN"]),
    ("validation_targets_shape", "regressor", dict(validation_data=(X, np.zeros((8, 3)))),
     ["`validation_data`", "shape (8, 2)", "y of shape (8, 3)"]),
    ("validation_lengths", "classifier", dict(validation_data=(X, Y3[:5])),
     ["`validation_data`", "same number of samples", "x with 8 samples and y of shape (5,)"]),
    # data arguments (already checked before this work; kept so they stay clear)
    ("representative_width", "classifier",
     dict(representative_data=np.zeros((4, TIME, 2), "float32")),
     ["`representative_data`", "(6, 3)", "shape (4, 6, 2)"]),
    ("representative_empty", "classifier",
     dict(representative_data=np.zeros((0, TIME, FEATURES), "float32")),
     ["`representative_data`", "shape (0, 6, 3)"]),
    ("representative_nan", "classifier",
     dict(representative_data=np.full((4, TIME, FEATURES), np.nan, "float32")),
     ["`representative_data`", "finite", "NaN"]),
    # corrupt, truncated and foreign .keras files: one line naming the file
    ("keras_empty", "empty.keras", {}, ["`model`", ".keras file", "the file is empty",
                                       "empty.keras"]),
    ("keras_truncated", "truncated.keras", {}, ["`model`", "not a zip archive (truncated",
                                               "truncated.keras"]),
    ("keras_random", "random.keras", {}, ["`model`", "not a zip archive", "random.keras"]),
    ("keras_text", "text.keras", {}, ["`model`", "not a zip archive", "text.keras"]),
    ("keras_foreign", "foreign.keras", {}, ["`model`", "lacks ['config.json', "
                                           "'metadata.json']", "readme.txt", "foreign.keras"]),
    ("keras_bad_json", "badjson.keras", {}, ["`model`", "Keras cannot load it",
                                            "JSONDecodeError", "badjson.keras"]),
]


@pytest.mark.filterwarnings("ignore:`representative_data` is not used")
@pytest.mark.parametrize("model_key, kwargs, fragments",
                         [case[1:] for case in TO_TFLITE_CASES],
                         ids=[case[0] for case in TO_TFLITE_CASES])
def test_to_tflite_refuses_bad_input_before_any_work(files, model_key, kwargs, fragments):
    out = files["root"] / "out" / "never.tflite"
    started = time.perf_counter()
    with pytest.raises(ValueError, match=pattern(*fragments)):
        to_tflite(files[model_key], out, **kwargs)
    assert not out.exists()
    assert time.perf_counter() - started < 10  # checked up front, not after converting


# (id, to_tflite keyword arguments (`path` relative to the module's folder), error type,
# message fragments)
DESTINATION_CASES = [
    # the trained model given as the destination by mistake: never overwritten
    ("path_is_the_model", dict(path="classifier.keras"), ValueError,
     ["`path`", "not of a Keras model file", "classifier.keras"]),
    ("path_h5", dict(path="weights.h5"), ValueError, ["`path`", "weights.h5"]),
    ("path_other_file", dict(path="notes.txt"), FileExistsError,
     ["`path`", "exists and is not a TFLite model", "notes.txt"]),
    ("path_under_a_file", dict(path="notes.txt/x.tflite"), NotADirectoryError,
     ["`path`", "folders can be made", "notes.txt is a file", "notes.txt/x.tflite"]),
    ("path_deeper_under_a_file", dict(path="notes.txt/a/b/x.tflite"), NotADirectoryError,
     ["`path`", "notes.txt is a file", "notes.txt/a/b/x.tflite"]),
    ("fallback_str", dict(fallback="no"), TypeError, ["`fallback`", "True or False",
                                                      "fallback='no'"]),
    ("allow_custom_ops_int", dict(allow_custom_ops=1), TypeError,
     ["`allow_custom_ops`", "allow_custom_ops=1"]),
    ("strip_tensor_names_str", dict(strip_tensor_names="yes"), TypeError,
     ["`strip_tensor_names`", "strip_tensor_names='yes'"]),
    ("tflm_arena_size_negative", dict(tflm_arena_size=-1), ValueError,
     ["`tflm_arena_size`", "positive int", "tflm_arena_size=-1"]),
    ("tflm_arena_size_float", dict(tflm_arena_size=1e6), ValueError,
     ["`tflm_arena_size`", "tflm_arena_size=1000000.0"]),
    # a word taken for a path would write ./yes and ./yes.h
    ("c_array_word", dict(c_array="yes"), ValueError,
     ["`c_array`", "C++ source file", "'.cc'", "c_array='yes'"]),
    # the array is declared alignas(16): C++, not C
    ("c_array_c", dict(c_array="model.c"), ValueError, ["`c_array`", "c_array='model.c'"]),
    ("c_array_under_a_file", dict(c_array="notes.txt/model.cc"), NotADirectoryError,
     ["`c_array`", "notes.txt is a file", "notes.txt/model.cc"]),
]


@pytest.mark.parametrize("kwargs, error, fragments", [c[1:] for c in DESTINATION_CASES],
                         ids=[c[0] for c in DESTINATION_CASES])
def test_to_tflite_checks_where_it_writes_before_any_work(files, kwargs, error, fragments,
                                                          monkeypatch):
    """No file of another kind is overwritten (a `.keras` model given as `path` was
    replaced by the TFLite file), a missing folder is named as `path`, not as the
    staging file written beside it, and flags are real bools."""
    monkeypatch.chdir(files["root"])
    (files["root"] / "notes.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in files["root"].iterdir() if p.is_file()}
    kwargs = dict(kwargs)
    path = kwargs.pop("path", "never.tflite")
    with pytest.raises(error, match=pattern(*fragments)):
        to_tflite(files["classifier"], path, **kwargs)
    after = {p.name: p.read_bytes() for p in files["root"].iterdir() if p.is_file()}
    assert after == before  # nothing written, nothing replaced


def test_to_tflite_replaces_an_empty_or_tflite_file_and_makes_missing_folders(files,
                                                                              tmp_path):
    """What the destination checks still allow: an existing empty file (a temporary
    file made for the export) and an existing TFLite file are replaced; missing folders
    are made, for the file and for a named C array; NumPy bools count as bools (and
    reach the conversion job as JSON)."""
    empty = tmp_path / "made_by_mkstemp.tflite"
    empty.write_bytes(b"")
    assert to_tflite(files["classifier"], empty).size == empty.stat().st_size > 0
    assert to_tflite(files["classifier"], empty, fallback=np.True_,
                     allow_custom_ops=np.False_, check_tflm=np.False_).size > 0
    result = to_tflite(files["classifier"], tmp_path / "new" / "m.tflite",
                       c_array=tmp_path / "src" / "m.CC", check_tflm=False)
    assert (tmp_path / "new" / "m.tflite").stat().st_size == result.size
    assert (tmp_path / "src" / "m.CC").exists() and (tmp_path / "src" / "m.h").exists()
    # the files written run and give Keras's outputs
    import keras

    model = keras.saving.load_model(files["classifier"])
    for written in (empty, tmp_path / "new" / "m.tflite"):
        assert tflite_vs_keras(written, model, X) <= 1e-5


# (id, file key, message fragments)
DAMAGED_FILES = [
    ("empty", "empty.tflite", ["empty.tflite", "is empty"]),
    ("truncated", "truncated.tflite", ["truncated.tflite", "damaged"]),
    ("random", "random.tflite", ["random.tflite", "not a .tflite file", "'TFL3'"]),
    ("text", "text.tflite", ["text.tflite", "not a .tflite file", "b'hello, t'"]),
]


@pytest.mark.parametrize("key, fragments", [c[1:] for c in DAMAGED_FILES],
                         ids=[c[0] for c in DAMAGED_FILES])
def test_read_metadata_names_a_damaged_file(files, key, fragments):
    with pytest.raises(ValueError, match=pattern(*fragments)):
        read_metadata(files[key])


@pytest.mark.parametrize("key, fragments", [c[1:] for c in DAMAGED_FILES],
                         ids=[c[0] for c in DAMAGED_FILES])
def test_lite_model_names_a_damaged_file(files, key, fragments):
    with pytest.raises(ValueError, match=pattern(*fragments)):
        LiteModel(files[key])


def test_read_metadata_and_lite_model_on_bytes_and_folders(files):
    with pytest.raises(ValueError, match=pattern("the .tflite content (30 bytes)",
                                                 "not a .tflite file", "b'abcabcab'")):
        read_metadata(b"abc" * 10)
    with pytest.raises(ValueError, match=pattern("`model`", "(a directory)")):
        LiteModel(files["root"])
    with pytest.raises(TypeError, match=pattern("`model`", "model=int")):
        LiteModel(3)


# (id, file key, method, argument, message fragments)
LITE_CASES = [
    ("predict_width", "full", "predict", np.zeros((2, TIME, 2), "float32"),
     ["`x` must have shape (batch, 6, 3)", "full.tflite", "x with shape (2, 6, 2)"]),
    ("predict_length", "full", "predict", np.zeros((2, 5, FEATURES), "float32"),
     ["`x` must have shape (batch, 6, 3)", "x with shape (2, 5, 3)"]),
    ("predict_rank", "full", "predict", np.zeros((TIME, FEATURES), "float32"),
     ["`x` must have shape (batch, 6, 3)", "x with shape (6, 3)"]),
    ("predict_no_samples", "full", "predict", np.zeros((0, TIME, FEATURES), "float32"),
     ["`x` must hold at least one sequence", "(batch, 6, 3)", "x with shape (0, 6, 3)"]),
    ("predict_text", "full", "predict", np.full((2, TIME, FEATURES), "a"),
     ["`x` must be a numeric array of shape (batch, 6, 3)", "x with dtype <U1"]),
    ("stream_width", "step", "stream", np.zeros((TIME, 2), "float32"),
     ["`frames` must have shape (time, 3)", "step.tflite", "frames with shape (6, 2)"]),
    ("stream_batch", "step", "stream", np.zeros((2, TIME, FEATURES), "float32"),
     ["`frames` must have shape (time, 3)", "frames with shape (2, 6, 3)"]),
    ("stream_no_frames", "step", "stream", np.zeros((0, FEATURES), "float32"),
     ["`frames` must hold at least one frame", "frames with shape (0, 3)"]),
    ("streaming_predict_width", "step", "predict", np.zeros((2, TIME, 2), "float32"),
     ["`x` must have shape (batch, time, 3)", "x with shape (2, 6, 2)"]),
    ("streaming_predict_no_samples", "step", "predict", np.zeros((0, TIME, FEATURES)),
     ["`x` must hold at least one sequence", "x with shape (0, 6, 3)"]),
]


@pytest.mark.parametrize("key, method, argument, fragments", [c[1:] for c in LITE_CASES],
                         ids=[c[0] for c in LITE_CASES])
def test_lite_model_checks_its_inputs(files, key, method, argument, fragments):
    lite = LiteModel(files[key])
    with pytest.raises(ValueError, match=pattern(*fragments)):
        getattr(lite, method)(argument)


def test_stream_checks_the_states(files):
    lite = LiteModel(files["step"])
    frames = sequences(1)[0]
    assert lite.state_names == ["state_0", "state_1"]  # two GRU layers of 4 units
    with pytest.raises(ValueError, match=pattern("`states`", "['state_0', 'state_1']",
                                                 "states with keys ['bogus']")):
        lite.stream(frames, states={"bogus": np.zeros((1, 4))})
    states = dict(lite.initial_states(), state_1=np.zeros((1, 5)))
    with pytest.raises(ValueError, match=pattern("`states['state_1']` must have shape (1, 4)",
                                                 "with shape (1, 5)")):
        lite.stream(frames, states=states)
    # Valid input still runs: the streamed outputs match the full-sequence file's.
    full = LiteModel(files["full"]).predict(frames[None])[0]
    np.testing.assert_allclose(lite.stream(frames)[-1], full, atol=1e-5)


@pytest.fixture
def untrusted(monkeypatch):
    """No file counts as run before: every `LiteModel` goes through the guard."""
    monkeypatch.setattr(runtime, "_TRUSTED", set())
    return monkeypatch


@pytest.mark.parametrize("simulate, fragments", [
    ("hang", ["did not finish within 2 s", "limits 2 s"]),
    ("crash", ["crashed the interpreter (SIGSEGV)"]),
    ("allocate", ["ran out of memory", "0.2 GiB"]),
])
def test_the_guard_stops_a_file_that_hangs_crashes_or_eats_memory(files, untrusted,
                                                                  simulate, fragments):
    untrusted.setattr(runtime, "GUARD_TIMEOUT_S", 2.0)
    untrusted.setattr(runtime, "GUARD_MEMORY_BYTES", 200 << 20)
    untrusted.setenv(SIMULATE_ENV, simulate)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=pattern("full.tflite", "is damaged or not a model",
                                                 *fragments)):
        LiteModel(files["full"])
    assert time.perf_counter() - started < 2.0 + 5  # the time limit, plus start-up


def test_a_file_with_flipped_bytes_fails_clearly_or_runs_within_the_guard(files, untrusted):
    """Fuzz: two bytes changed at random (fixed seeds) in a small valid file. Each
    mutant must give a `ValueError` naming it, or run and return outputs of the right
    shape, within the guard's limits: never a crash or a hang of this process."""
    untrusted.setattr(runtime, "GUARD_TIMEOUT_S", 10.0)
    untrusted.setattr(runtime, "GUARD_MEMORY_BYTES", 1 << 30)
    content = files["full"].read_bytes()
    rng = np.random.default_rng(12)
    x = sequences(2)
    outcomes = {"error": 0, "ran": 0}
    for _ in range(12):
        mutant = bytearray(content)
        for position in rng.choice(len(content), size=2, replace=False):
            mutant[position] ^= 1 << int(rng.integers(0, 8))
        started = time.perf_counter()
        try:
            outputs = LiteModel(bytes(mutant)).predict(x)
        except ValueError as error:
            assert "the .tflite content" in str(error)
            outcomes["error"] += 1
        else:
            assert outputs.shape == (2, 3)
            outcomes["ran"] += 1
        assert time.perf_counter() - started < 10.0 + 5
    assert sum(outcomes.values()) == 12


def test_a_file_that_crashes_the_interpreter_is_a_clear_error(files, untrusted):
    """A damaged file that passes the flatbuffer verifier but crashes the interpreter in
    its first inference (a SPLIT operator told to make 65539 pieces of 3: the bytes
    differ from the valid file in one place) is a `ValueError`, and this process goes on."""
    from ai_edge_litert.tools import flatbuffer_utils

    content = files["full"].read_bytes()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    # Written again without shared tables (F29), before and after the change, so that
    # the two differ in that one value only.
    valid = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    splits = [op.builtinOptions for subgraph in model.subgraphs for op in subgraph.operators
              if hasattr(op.builtinOptions, "numSplits")]
    assert splits, "the GRU loop holds a SPLIT of its gates"
    splits[0].numSplits += 65536
    damaged = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    assert len(damaged) == len(valid)
    assert sum(a != b for a, b in zip(damaged, valid)) == 1
    assert LiteModel(valid).predict(sequences(1)).shape == (1, 3)
    with pytest.raises(ValueError, match=pattern("the .tflite content", "crashed the "
                                                 "interpreter (SIGSEGV)", "in a child process")):
        LiteModel(damaged)
    assert LiteModel(content).predict(sequences(1)).shape == (1, 3)  # still running


def test_inspect_and_bench_run_without_tensorflow(files):
    """`gru-zoo inspect`, `bench`, `list` and `--help` never import TensorFlow."""
    script = (
        "import sys, contextlib, io\n"
        "from zoo.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['inspect', {str(files['full'])!r}]) == 0\n"
        f"    assert main(['bench', {str(files['step'])!r}, '--runs', '3', '--warmup', '1']) == 0\n"
        "    assert main(['list']) == 0\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"')) == []

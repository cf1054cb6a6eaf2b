"""Bad input to export's tools: `write_c_array`, the metadata functions (`add_metadata`,
`strip_tensor_names`, `op_report`, `list_ops`, `read_metadata`) and `gru-zoo export |
bench`.

Each case asserts the error type (or exit code), that the message names the argument
(for the CLI: the flag) and the value received, and what is on disk afterwards: a
user's file intact, nothing partial left, nothing written for a refused call. One real
export (module-scoped) gives the `.tflite` file the cases need; one CLI export proves
that a float export with `--data` says in one plain line how the data is used.
"""

import os
import re
import shutil
import types

import numpy as np
import pytest

import export.cli
from export import (add_metadata, list_ops, op_report, read_metadata, strip_tensor_names,
                    to_tflite, write_c_array)
from export.metadata import int8_softmax_lengths, signature_tensor_indices
from helpers import FEATURES, TIME, sequences, tiny_model
from zoo.cli import main


def pattern(*fragments):
    """A regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(str(f)) for f in fragments)


def one_line(capsys):
    """The one line a refused command prints on stderr (no traceback)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


def listing(folder):
    return sorted(os.listdir(folder))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny saved model, its verified float32 export and non-TFLite files."""
    root = tmp_path_factory.mktemp("tools")
    model_path = root / "m.keras"
    tiny_model("stacked").save(model_path)
    tflite = root / "m.tflite"
    to_tflite(model_path, tflite)
    content = tflite.read_bytes()
    (root / "empty.bin").write_bytes(b"")
    (root / "text.txt").write_text("hello, not a model\n")
    (root / "truncated.tflite").write_bytes(content[: len(content) // 2])
    return types.SimpleNamespace(root=root, model=model_path, tflite=tflite, content=content)


@pytest.fixture
def work(made, tmp_path):
    """A fresh folder holding a copy of the model and of its export."""
    shutil.copy(made.tflite, tmp_path / "m.tflite")
    shutil.copy(made.model, tmp_path / "m.keras")
    return tmp_path


# === write_c_array: where it writes ===


def test_c_path_equal_to_tflite_path_is_refused_and_the_model_kept(work, made):
    shutil.copy(made.tflite, work / "same.tflite")
    with pytest.raises(ValueError, match=pattern("`c_path`", "C++ source file", "'.cc'",
                                                 "c_path=", "same.tflite")):
        write_c_array(work / "same.tflite", work / "same.tflite")
    assert (work / "same.tflite").read_bytes() == made.content
    # A .tflite file named .cc: its default C path is the file itself.
    shutil.copy(made.tflite, work / "model.cc")
    with pytest.raises(ValueError, match=pattern("`c_path` must be given", "model.cc'",
                                                 "the .tflite file itself", "c_path=None")):
        write_c_array(work / "model.cc")
    assert (work / "model.cc").read_bytes() == made.content
    # Also spelled another way (a link to the model).
    os.symlink(work / "model.cc", work / "link.cc")
    with pytest.raises(ValueError, match=pattern("`c_path`", "other than `tflite_path`")):
        write_c_array(work / "model.cc", work / "link.cc")
    assert (work / "model.cc").read_bytes() == made.content
    assert listing(work) == ["link.cc", "m.keras", "m.tflite", "model.cc", "same.tflite"]


def test_c_path_must_be_cpp_source_not_a_header(work, made):
    for c_path in ("h.h", "m.c", "m.tflite.txt"):
        with pytest.raises(ValueError, match=pattern("`c_path`", "['.cc', '.cpp', '.cxx']",
                                                     f"c_path='{work / c_path}'")):
            write_c_array(work / "m.tflite", str(work / c_path))
    assert listing(work) == ["m.keras", "m.tflite"]


def test_a_header_that_would_replace_the_tflite_file_is_refused(work, made):
    shutil.copy(made.tflite, work / "m2.h")
    for c_path in (None, work / "m2.cc"):
        with pytest.raises(ValueError, match=pattern("`c_path`", "header", "m2.h",
                                                     "not `tflite_path`", "c_path=")):
            write_c_array(work / "m2.h", c_path)
    assert (work / "m2.h").read_bytes() == made.content
    assert not (work / "m2.cc").exists()


@pytest.mark.parametrize("name", ["hand.cc", "hand.h"])
def test_hand_written_c_files_are_not_overwritten(work, name):
    (work / name).write_text("int main() { return 0; }\n")
    with pytest.raises(FileExistsError, match=pattern("`c_path`", name, "gru-zoo did not "
                                                      "write it", "does not overwrite",
                                                      "c_path=", "hand.cc")):
        write_c_array(work / "m.tflite", work / "hand.cc")
    assert (work / name).read_text() == "int main() { return 0; }\n"
    assert listing(work) == sorted(["m.keras", "m.tflite", name])


def test_generated_and_empty_c_files_are_replaced(work, made):
    (work / "empty.cc").write_text("")
    assert write_c_array(work / "m.tflite", work / "empty.cc") == str(work / "empty.cc")
    first = (work / "gen.cc").exists()
    returned = write_c_array(work / "m.tflite", work / "gen.cc", variable_name="g_model")
    assert not first and returned == str(work / "gen.cc")
    write_c_array(work / "m.tflite", work / "gen.cc", variable_name="g_model")  # again
    source = (work / "gen.cc").read_text()
    assert source.startswith("// Generated by gru-zoo from m.tflite")
    assert source.count("0x") == len(made.content) and "alignas(16)" in source
    assert (work / "gen.h").read_text().startswith("// Generated by gru-zoo")
    assert listing(work) == ["empty.cc", "empty.h", "gen.cc", "gen.h", "m.keras", "m.tflite"]
    # The default: beside the model, returned as given.
    assert write_c_array(str(work / "m.tflite")) == str(work / "m.cc")
    # A name that starts with a digit still gets a valid include guard.
    write_c_array(work / "m.tflite", work / "1x.cc")
    guard = re.search(r"#ifndef (\S+)", (work / "1x.h").read_text()).group(1)
    assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", guard), guard


def test_c_path_that_is_a_directory_leaves_nothing_behind(work):
    (work / "adir.cc").mkdir()
    with pytest.raises(ValueError, match=pattern("`c_path` must be a file path (it is a "
                                                 "directory)", "adir.cc")):
        write_c_array(work / "m.tflite", work / "adir.cc")
    (work / "bdir.h").mkdir()
    with pytest.raises(ValueError, match=pattern("`c_path`", "header", "bdir.h",
                                                 "not a directory", "bdir.cc")):
        write_c_array(work / "m.tflite", work / "bdir.cc")
    assert listing(work) == ["adir.cc", "bdir.h", "m.keras", "m.tflite"]
    assert not os.listdir(work / "adir.cc") and not os.listdir(work / "bdir.h")


def test_missing_folders_are_made_as_to_tflite_does_and_a_file_in_the_way_named(work):
    assert write_c_array(work / "m.tflite", work / "src" / "sub" / "x.cc") == str(
        work / "src" / "sub" / "x.cc")
    assert listing(work / "src" / "sub") == ["x.cc", "x.h"]
    (work / "notes.txt").write_text("mine")
    with pytest.raises(NotADirectoryError, match=pattern("`c_path`", "notes.txt is a file",
                                                         "notes.txt/x.cc")):
        write_c_array(work / "m.tflite", str(work / "notes.txt" / "x.cc"))


# === write_c_array: what it reads, and the variable name ===


@pytest.mark.parametrize("source, fragments", [
    ("m.keras", ["`tflite_path`", "m.keras", "is not a .tflite file", "'TFL3'",
                 "starting b'PK"]),
    ("text.txt", ["`tflite_path`", "text.txt", "is not a .tflite file", "'TFL3'"]),
    ("empty.bin", ["`tflite_path`", "empty.bin", "is empty"]),
])
def test_only_tflite_files_become_c_arrays(work, made, source, fragments):
    if source != "m.keras":
        shutil.copy(made.root / source, work / source)
    with pytest.raises(ValueError, match=pattern(*fragments)):
        write_c_array(work / source, work / "out.cc")
    assert not (work / "out.cc").exists() and not (work / "out.h").exists()


def test_tflite_path_a_directory_missing_or_bytes(work, made):
    (work / "tdir").mkdir()
    with pytest.raises(ValueError, match=pattern("`tflite_path` must be a .tflite file",
                                                 "(it is a directory)", "tdir")):
        write_c_array(work / "tdir", work / "o.cc")
    with pytest.raises(FileNotFoundError, match=pattern("`tflite_path`", "no such file",
                                                        "none.tflite")):
        write_c_array(work / "none.tflite", work / "o.cc")
    with pytest.raises(TypeError) as info:
        write_c_array(made.content, work / "o.cc")
    message = str(info.value)
    assert re.search(pattern("`tflite_path`", "bytes are not a path", "Received: "
                             "tflite_path=b'"), message)
    assert len(message) < 400 and f"({len(made.content)} bytes)" in message
    with pytest.raises(TypeError, match=pattern("`c_path`", "bytes are not a path",
                                                "c_path=b'o.cc'")):
        write_c_array(work / "m.tflite", b"o.cc")
    with pytest.raises(TypeError, match=pattern("`tflite_path`", "tflite_path=5")):
        write_c_array(5)
    assert listing(work) == ["m.keras", "m.tflite", "tdir"]


@pytest.mark.parametrize("name, error, fragments", [
    (3, TypeError, ["`variable_name`", "C identifier", "variable_name=3"]),
    ("int", ValueError, ["`variable_name`", "not a C or C++ keyword", "variable_name='int'"]),
    ("class", ValueError, ["keyword", "variable_name='class'"]),
    ("modèle", ValueError, ["`variable_name`", "ASCII", "variable_name='modèle'"]),
    ("2x", ValueError, ["`variable_name`", "variable_name='2x'"]),
])
def test_variable_name_must_be_a_c_identifier(work, name, error, fragments):
    with pytest.raises(error, match=pattern(*fragments)):
        write_c_array(work / "m.tflite", work / "o.cc", variable_name=name)
    assert listing(work) == ["m.keras", "m.tflite"]


# === The metadata functions ===


@pytest.mark.parametrize("function", [list_ops, op_report, int8_softmax_lengths,
                                      signature_tensor_indices])
def test_op_readers_name_a_file_that_is_not_tflite(made, function):
    root = made.root
    cases = [
        (root / "empty.bin", ["empty.bin", "is empty: expected a .tflite file"]),
        (made.model, ["m.keras", "is not a .tflite file", "'TFL3'"]),
        (root / "text.txt", ["text.txt", "is not a .tflite file", "'TFL3'"]),
        (root / "truncated.tflite", ["truncated.tflite", "is a damaged .tflite file",
                                     "truncated or damaged"]),
        (b"", ["the .tflite content (0 bytes) is empty"]),
        (made.content[:200], ["the .tflite content (200 bytes)", "damaged"]),
    ]
    for source, fragments in cases:
        with pytest.raises(ValueError, match=pattern(*fragments)):
            function(source)
    with pytest.raises(TypeError, match=pattern("`model_or_path`", "model_or_path=None")):
        function(None)
    assert function(made.tflite) is not None


def test_read_metadata_names_its_argument():
    with pytest.raises(TypeError, match=pattern("`model_or_path` must be the path of a "
                                                ".tflite file or its bytes",
                                                "model_or_path=None")):
        read_metadata(None)


@pytest.mark.parametrize("function", [add_metadata, strip_tensor_names])
def test_metadata_writers_take_tflite_bytes(made, function):
    call = (lambda x: function(x, {})) if function is add_metadata else function
    with pytest.raises(TypeError, match=pattern("`tflite_bytes`", "bytes or bytearray",
                                                "read the file first",
                                                f"tflite_bytes='{made.tflite}'")):
        call(str(made.tflite))
    with pytest.raises(TypeError, match=pattern("`tflite_bytes`", "tflite_bytes=5")):
        call(5)
    for content, fragments in [
        (b"", ["`tflite_bytes` is empty"]),
        (made.model.read_bytes(), ["`tflite_bytes` is not a .tflite file", "'TFL3'"]),
        (b"just some text", ["`tflite_bytes` is not a .tflite file"]),
        (made.content[: len(made.content) // 2], ["`tflite_bytes` is a damaged .tflite",
                                                   "truncated"]),
    ]:
        with pytest.raises(ValueError, match=pattern(*fragments)):
            call(content)


def test_add_metadata_values(made):
    stored = add_metadata(made.content, {"a": np.float32(0.5), "n": np.int64(3),
                                         "flag": np.bool_(True), "pair": (1, np.int32(2)),
                                         "nested": {"x": [np.float64(1.5)]}})
    meta = read_metadata(stored)
    assert meta == {"a": 0.5, "n": 3, "flag": True, "pair": [1, 2], "nested": {"x": [1.5]}}
    assert type(meta["n"]) is int and type(meta["flag"]) is bool
    with pytest.raises(TypeError, match=pattern("`metadata` must be a dict with str (or int) "
                                                "keys", "the key (1, 2)")):
        add_metadata(made.content, {1: 2, (1, 2): 3})
    with pytest.raises(TypeError, match=pattern("`metadata['a']` must be a dict with str "
                                                "(or int) keys", "the key (1, 2)")):
        add_metadata(made.content, {"a": {(1, 2): 3}})
    # int keys are stored as json.dumps stores them (a class index -> name map), and a key
    # that would then appear twice is refused
    stored = add_metadata(made.content, {"classes": {0: "neg", np.int64(1): "pos"}})
    assert read_metadata(stored)["classes"] == {"0": "neg", "1": "pos"}
    with pytest.raises(ValueError, match=pattern("a key twice", "'1' twice")):
        add_metadata(made.content, {"m": {1: "a", "1": "b"}})
    for value, where in ((float("nan"), "metadata['a']"), ([1.0, float("inf")],
                                                          "metadata['a'][1]")):
        with pytest.raises(ValueError, match=pattern(f"`{where}` must be a finite number",
                                                     f"{where}=")):
            add_metadata(made.content, {"a": value})
    with pytest.raises(TypeError, match=pattern("`metadata['a']` must be JSON-serializable",
                                                ".tolist()", "metadata['a']=array(")):
        add_metadata(made.content, {"a": np.zeros(3)})
    with pytest.raises(TypeError, match=pattern("`metadata` must be a dict", "metadata=5")):
        add_metadata(made.content, 5)
    with pytest.raises(TypeError, match=pattern("`strip_names`", "strip_names='yes'")):
        add_metadata(made.content, {}, strip_names="yes")


# === gru-zoo export ===


def _export(work, *argv):
    return main(["export", str(work / "m.keras"), *[str(a) for a in argv]])


@pytest.mark.parametrize("out", ["out.cc", "outh.h", "o.cpp"])
def test_export_c_array_refuses_an_out_path_of_c_source(work, made, capsys, out):
    assert _export(work, "--out", work / out, "--c-array") == 2
    assert re.search(pattern("gru-zoo export: error: `--out`", "not of C source",
                             "--c-array", f"--out='{work / out}'"), one_line(capsys))
    assert listing(work) == ["m.keras", "m.tflite"]
    # An existing model there is kept.
    shutil.copy(made.tflite, work / out)
    assert _export(work, "--out", work / out, "--c-array") == 2
    assert (work / out).read_bytes() == made.content


@pytest.mark.parametrize("name", ["m.cc", "m.h"])
def test_export_c_array_keeps_hand_written_c_files(work, capsys, name):
    (work / name).write_text("// mine\n")
    assert _export(work, "--out", work / "m.tflite", "--c-array") == 2
    assert re.search(pattern("`--c-array` would overwrite", name, "gru-zoo did not write",
                             "--out=", "m.tflite"), one_line(capsys))
    assert (work / name).read_text() == "// mine\n"
    assert listing(work) == sorted(["m.keras", "m.tflite", name])


@pytest.mark.parametrize("argv, fragments", [
    (["--out", ""], ["`--out`", "(it is empty)", "--out=''"]),
    (["--out", "{work}/newdir/"], ["`--out` must be a file path", "ends in a path separator",
                                   "newdir/'"]),
    (["--out", "{work}/newdir/."], ["`--out` must be a file path", "newdir/.'"]),
    (["--out", "{work}"], ["`--out` must be a file path (it is a directory)", "--out='"]),
    (["--out", "{work}/o.tflite", "--io-type", "int8"],
     ["`--io-type`", "--quantize float32", "needs --quantize int8", "--io-type='int8'"]),
    (["--out", "{work}/o.tflite", "--data", "{work}"],
     ["`--data`", "(it is a directory)", "--data='"]),
    (["--out", "{work}/o.tflite", "--data", "no_such_dataset"],
     ["`--data` must be one of", "gunpoint", "--data='no_such_dataset'"]),
    (["--out", "{work}/o.tflite", "--data", "{work}/bad_shape.npy"],
     ["`--data` must hold inputs of the model's input shape (6, 3)", "bad_shape.npy",
      "shape (7, 2) per sample"]),
    (["--out", "{work}/o.tflite", "--data", "gunpoint"],
     ["`--data` must hold inputs of the model's input shape (6, 3)", "--data='gunpoint'",
      "shape (150, 1) per sample"]),
    (["--out", "{work}/o.tflite", "--data", "{work}/bad_labels.npz"],
     ["`--data` (its test split) must be", "class indices in [0, 3)",
      "--data='", "bad_labels.npz", "(y with labels from 0 to 7)"]),
    (["--out", "{work}/o.tflite", "--quantize", "int8"],
     ["`--data` must be calibration inputs", "Received: no --data"]),
])
def test_export_errors_name_the_flag(work, capsys, argv, fragments):
    assert (TIME, FEATURES) == (6, 3)
    np.save(work / "bad_shape.npy", np.zeros((5, 7, 2), "float32"))
    np.savez(work / "bad_labels.npz", x_train=sequences(8), x_test=sequences(8),
             y_test=np.arange(8))
    before = listing(work)
    argv = [a.replace("{work}", str(work)) for a in argv]
    assert _export(work, *argv) == 2
    assert re.search(pattern("gru-zoo export: error:", *fragments), one_line(capsys))
    assert listing(work) == before  # no file named `newdir`, no o.tflite


def test_export_data_of_other_classes_is_named_as_data(tmp_path, capsys):
    # italy_power_demand: (24, 1) inputs, 2 classes; the model has 3.
    tiny_model("stacked", time=24, input_shape=(24, 1)).save(tmp_path / "m.keras")
    assert _export(tmp_path, "--out", tmp_path / "o.tflite", "--data",
                   "italy_power_demand") == 2
    assert re.search(pattern("gru-zoo export: error: `--data` (its class names) must be",
                             "3 class names", "--data='italy_power_demand'",
                             "(labels=['1', '2'])"), one_line(capsys))
    assert listing(tmp_path) == ["m.keras"]


def test_float_export_with_data_says_in_one_line_how_the_data_is_used(work, capsys):
    np.save(work / "x.npy", sequences(6))
    assert _export(work, "--out", work / "o.tflite", "--data", work / "x.npy", "--c-array",
                   "--no-check-tflm") == 0
    err = capsys.readouterr().err
    assert "UserWarning" not in err and "cli.py" not in err
    assert re.search(pattern("gru-zoo export: note: --data verifies the file",
                             "--quantize float32"), err)
    assert (work / "o.cc").read_text().startswith("// Generated by gru-zoo from o.tflite")
    assert listing(work) == ["m.keras", "m.tflite", "o.cc", "o.h", "o.tflite", "x.npy"]


# === gru-zoo bench ===


def test_bench_threads_are_capped(made, capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", str(made.tflite), "--threads", "100000"])
    assert info.value.code == 2
    assert re.search(pattern("--threads", f"an int from 1 to {export.cli.MAX_THREADS}",
                             "'100000'"), one_line(capsys))
    with pytest.raises(ValueError, match=pattern("`num_threads`", "num_threads=100000")):
        export.cli.bench(made.tflite, num_threads=100000)
    assert export.cli.MAX_THREADS >= 64


def test_bench_p90_is_never_below_the_median(made, monkeypatch):
    clock = iter([0.0, 1e-6, 10.0, 10.0 + 3e-6])  # runs of 1 us and 3 us
    monkeypatch.setattr(export.cli, "time",
                        types.SimpleNamespace(perf_counter=lambda: next(clock)))
    result = export.cli.bench(made.tflite, runs=2, warmup=0)
    assert result["median_us"] == pytest.approx(2.0)
    assert result["p90_us"] == pytest.approx(2.8)  # interpolated: not the faster run
    assert result["min_us"] == pytest.approx(1.0)


# === to_tflite: the same destinations, checked before any work ===


def test_to_tflite_refuses_a_hand_written_c_file_before_converting(work, made, monkeypatch):
    # It used to write the .tflite file, then fail in write_c_array (or, before that
    # check existed, overwrite the user's file).
    import export.exporter

    def no_conversion(*args, **kwargs):
        raise AssertionError("the model was loaded: the check came after the work")

    monkeypatch.setattr(export.exporter, "_load_model", no_conversion)
    (work / "out.cc").write_text("// my own glue code\n")
    before = listing(work)
    with pytest.raises(FileExistsError, match=pattern("`c_array`", "out.cc", "gru-zoo did not "
                                                      "write it", "Received: c_array=True")):
        to_tflite(made.model, work / "out.tflite", c_array=True)
    # the messages name to_tflite's arguments (`path`), not write_c_array's
    with pytest.raises(ValueError, match=pattern(
            "`c_array` must be a C++ source path rather than True, as `path` ends in .cc",
            "Received: c_array=True")):
        to_tflite(made.model, work / "model.cc", c_array=True)
    with pytest.raises(FileExistsError, match=pattern("`c_array`", "out.cc")):
        to_tflite(made.model, work / "other.tflite", c_array=work / "out.cc")
    assert listing(work) == before
    assert (work / "out.cc").read_text() == "// my own glue code\n"


def test_to_tflite_refuses_a_path_ending_in_a_separator(work, made):
    # "newdir/" used to be written as a FILE named newdir (abspath drops the separator).
    with pytest.raises(ValueError, match=pattern("`path`", "ends in a path separator",
                                                 "newdir" + os.sep)):
        to_tflite(made.model, str(work / "newdir") + os.sep)
    assert not (work / "newdir").exists()


def test_to_tflite_refuses_non_finite_metadata_before_converting(work, made):
    # `json.dumps` lets NaN through; the worker's add_metadata refused it after the
    # conversion, failing every form in turn.
    with pytest.raises(ValueError, match=pattern("`metadata['run']['score']`", "finite",
                                                 "nan")):
        to_tflite(made.model, work / "n.tflite", metadata={"run": {"score": float("nan")}})
    assert not (work / "n.tflite").exists()

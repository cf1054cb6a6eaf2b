"""Bad input to `gru-zoo`: one line on stderr, a non-zero exit, no traceback.

Each case asserts the exit code, that stderr is exactly one line without "Traceback",
and that the line names the flag (or argument, or file) and the value received.
"""

import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import zoo.cli
from export import ConversionCrashError
from zoo.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pattern(*fragments):
    """A regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(str(f)) for f in fragments)


def one_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture
def paths(tmp_path):
    with zipfile.ZipFile(tmp_path / "foreign.keras", "w") as archive:
        archive.writestr("readme.txt", "not a model")
    (tmp_path / "pickled.npz").write_bytes(b"not a numpy file")
    (tmp_path / "random.tflite").write_bytes(np.random.default_rng(0).bytes(2000))
    (tmp_path / "empty.tflite").write_bytes(b"")
    return tmp_path


# (id, argv with {tmp} for the folder, message fragments): argparse's errors, exit 2.
PARSER_CASES = [
    ("unknown_flag", ["--bogus"], ["gru-zoo: error:", "--bogus", "`gru-zoo --help`"]),
    ("bench_runs_zero", ["bench", "m.tflite", "--runs", "0"],
     ["gru-zoo bench: error:", "--runs", "an int >= 1", "'0'"]),
    ("bench_warmup_negative", ["bench", "m.tflite", "--warmup", "-1"],
     ["--warmup", "an int >= 0", "'-1'"]),
    ("bench_threads_zero", ["bench", "m.tflite", "--threads", "0"], ["--threads", "'0'"]),
    ("run_skip_typo", ["run", "--skip", "tune,exprot"],
     ["gru-zoo run: error:", "--skip", "['tune', 'export']", "'exprot'"]),
    ("train_units_text", ["train", "--units", "many"], ["--units", "'many'"]),
    ("export_quantize", ["export", "m.keras", "--out", "o.tflite", "--quantize", "int4"],
     ["--quantize", "'int4'"]),
]


@pytest.mark.parametrize("argv, fragments", [c[1:] for c in PARSER_CASES],
                         ids=[c[0] for c in PARSER_CASES])
def test_argument_errors_are_one_line(argv, fragments, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert re.search(pattern(*fragments), one_line(capsys))


# (id, argv with {tmp}, message fragments): errors of the commands, exit 2.
COMMAND_CASES = [
    ("train_length_zero", ["train", "--dataset", "adding", "--length", "0", "--epochs", "1",
                           "--out", "{tmp}/run"],
     ["gru-zoo train: error:", "`length` must be an int >= 2", "length=0"]),
    ("export_data_missing", ["export", "{tmp}/m.keras", "--out", "{tmp}/o.tflite", "--data",
                             "missing.npz"],
     ["gru-zoo export: error:", "`--data` file 'missing.npz' does not exist"]),
    ("export_data_not_numpy", ["export", "{tmp}/m.keras", "--out", "{tmp}/o.tflite",
                               "--data", "{tmp}/pickled.npz"],
     ["`--data` file", "pickled.npz", "must be a .npz archive"]),
    ("export_foreign_keras", ["export", "{tmp}/foreign.keras", "--out", "{tmp}/o.tflite"],
     ["gru-zoo export: error:", "`model` must be a .keras file", "lacks", "foreign.keras"]),
    ("export_missing_keras", ["export", "{tmp}/none.keras", "--out", "{tmp}/o.tflite"],
     ["`model` must be an existing .keras file", "none.keras"]),
    ("inspect_folder", ["inspect", "{tmp}"], ["gru-zoo inspect: error:", "`model` must be a "
                                              ".tflite file", "(a directory)"]),
    ("inspect_random", ["inspect", "{tmp}/random.tflite"],
     ["random.tflite", "is not a .tflite file", "'TFL3'"]),
    ("bench_empty", ["bench", "{tmp}/empty.tflite"], ["gru-zoo bench: error:",
                                                     "empty.tflite", "is empty"]),
    ("tune_missing", ["tune", "{tmp}/none.toml", "--check"], ["none.toml"]),
    ("run_out_is_a_file", ["run", "--out", "{tmp}/random.tflite", "--epochs", "1"],
     ["gru-zoo run: error:", "`--out` must be a directory", "random.tflite", "existing file"]),
]


@pytest.mark.parametrize("argv, fragments", [c[1:] for c in COMMAND_CASES],
                         ids=[c[0] for c in COMMAND_CASES])
def test_command_errors_are_one_line(paths, argv, fragments, capsys):
    argv = [a.replace("{tmp}", str(paths)) for a in argv]
    assert main(argv) == 2
    assert re.search(pattern(*fragments), one_line(capsys))
    assert not (paths / "o.tflite").exists() and not (paths / "run").exists()


# Any exception a command raises is one line: bad input (a path taken, a value) exits 2,
# a failure of the run exits 1 and points at --debug.
@pytest.mark.parametrize("error, code, fragments", [
    (KeyError("config.json"), 1, ["gru-zoo list: failed (KeyError): 'config.json'",
                                  "--debug"]),
    (FileExistsError("runs/x exists"), 2, ["gru-zoo list: error: runs/x exists"]),
    (ConversionCrashError("converting crashed:\nkilled by SIGSEGV"), 1,
     ["failed (ConversionCrashError): converting crashed: killed by SIGSEGV"]),
    (RuntimeError(""), 1, ["failed (RuntimeError): RuntimeError"]),
    (TypeError("unsupported operand"), 1, ["failed (TypeError): unsupported operand"]),
])
def test_any_exception_is_one_line_and_debug_shows_it(monkeypatch, capsys, error, code,
                                                      fragments):
    def fail(args):
        raise error

    monkeypatch.setattr(zoo.cli, "cmd_list", fail)
    assert main(["list"]) == code
    assert re.search(pattern(*fragments), one_line(capsys))
    with pytest.raises(type(error)):
        main(["--debug", "list"])


def _python(script, **kwargs):
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, **kwargs)


def test_help_list_and_argument_errors_do_not_import_tensorflow():
    script = (
        "import sys, contextlib, io\n"
        "from zoo.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    for argv in (['--help'], ['train', '--help'], ['train', '--units', 'x'],\n"
        "                 ['bench', 'm.tflite', '--runs', '0']):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "    assert main(['list']) == 0\n"
        "print([m for m in ('tensorflow', 'keras') if m in sys.modules])\n")
    result = _python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_tensorflow_start_up_logging_is_not_shown(tmp_path):
    """A command that imports TensorFlow prints only its own error line (TensorFlow's
    native libraries print 6-9 log lines while loading)."""
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
    argv = ["-m", "zoo.cli", "export", str(tmp_path / "none.keras"), "--out",
            str(tmp_path / "o.tflite")]
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"gru-zoo export: error: `model` must be an existing .keras file. Received: "
        f"model={str(tmp_path / 'none.keras')!r} (no such file)"]


def test_the_start_up_filter_hides_only_tensorflows_start_up_lines():
    from zoo.quiet import STARTUP_NOISE, strip_startup_noise

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796410600.564298    8733 port.cc:153] oneDNN custom operations are on.",
        "I0000 00:00:1796410600.569459    8733 cudart_stub.cc:31] Could not find cuda drivers",
        "E0000 00:00:1796410611.689464    8733 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
        "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild",
    ]
    kept = ["Traceback (most recent call last):", "ImportError: libcudart.so.12: cannot open",
            "gru-zoo export: error: `model` must be a .keras file",
            "F0000 00:00:1796410611.689464    8733 check.cc:1] Check failed: a fatal error"]
    assert all(STARTUP_NOISE.match(line) for line in noise)
    assert not any(STARTUP_NOISE.match(line) for line in kept)
    assert strip_startup_noise("\n".join(noise + kept)) == "\n".join(kept)

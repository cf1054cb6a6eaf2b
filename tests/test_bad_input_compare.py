"""Bad input to `zoo.compare` and `gru-zoo compare`: refused before any work.

Each case asserts the error names the argument (the flag on the command line) and the
value received, that nothing was trained (every case here must fail first: `zoo.train`
is replaced by a function that fails the test), and that no output folder was made.
The result files are written whole or not at all.
"""

import os
import pathlib
import re

import matplotlib.figure
import pytest

import zoo
from zoo import compare as compare_module
from zoo.cli import main
from zoo.compare import adding_study, compare

# The smallest comparison: one seed, one cell, tiny budget and model.
SMALL = dict(cells="gru", seeds=1, budget="tiny", progress=False, tflite=False, units=4,
             num_layers=1)


@pytest.fixture(autouse=True)
def trained(monkeypatch):
    """The models trained; any training fails the test (the input must be refused first)."""
    names = []

    def refuse(model, data, **kwargs):
        names.append(model.name)
        raise AssertionError(f"{model.name} was trained before the bad input was refused")

    monkeypatch.setattr(zoo, "train", refuse)
    return names


def pattern(*fragments):
    """A regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(str(f)) for f in fragments)


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty working directory (nothing may be written into it)."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def run_compare(capsys, argv):
    """`gru-zoo compare ARGV` in-process: (exit code, its one line on stderr)."""
    code = main(["compare", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return code, lines[0]


# The rest of a fast command line; each case adds the flags under test.
ITALY = ["--dataset", "italy_power_demand", "--budget", "tiny", "--seeds", "1",
         "--no-tflite", "--quiet"]


# === 1. Every model is built (and so checked) before the first is trained ===


def test_every_model_is_built_before_any_is_trained(tmp_path, trained):
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        compare("italy_power_demand", cells="gru", variants="stacked,gru_fcn", seeds=1,
                budget="tiny", out_dir=out, conv_layers=2, progress=False, tflite=False)
    assert re.search(pattern("`conv_filters` must be", "Received: conv_filters=",
                             "(3 values for 2 layers)"), str(info.value))
    assert trained == [] and not out.exists()


def test_cli_every_model_is_built_before_any_is_trained(tmp_path, capsys, trained):
    out = tmp_path / "out"
    code, line = run_compare(capsys, [*ITALY, "--cells", "gru", "--variants",
                                      "stacked,gru_fcn", "--conv-layers", "2",
                                      "--out", str(out)])
    assert code == 2
    assert re.search(pattern("gru-zoo compare: error:", "`conv_filters`",
                             "(3 values for 2 layers)"), line)
    assert trained == [] and not out.exists()


def test_adding_study_checks_every_length_before_training(tmp_path, trained):
    out = tmp_path / "out"
    # The adding recipe's GRU-FCN has one convolution; stacked models ignore the filters.
    with pytest.raises(ValueError, match=pattern("`conv_filters`", "2 values for 1 layers")):
        adding_study([6, 8], cells="gru", variants="stacked,gru_fcn", seeds=1,
                     budget="tiny", out_dir=out, progress=False, conv_filters=[8, 8])
    assert trained == [] and not out.exists()


# === 2. Tables and plots: whole or not at all ===


class DiskFull(OSError):
    pass


@pytest.fixture
def savefig_fails_halfway(monkeypatch):
    """`Figure.savefig` writes a few bytes to its target, then fails (a full disk)."""

    def savefig(self, fname, *args, **kwargs):
        pathlib.Path(fname).write_bytes(b"\x89PNG half")
        raise DiskFull(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)


HISTORIES = {("stacked", "gru"): [{"loss": [1.0, 0.5], "val_loss": [1.1, 0.6],
                                    "accuracy": [0.5, 0.7], "val_accuracy": [0.4, 0.6]}]}


def _row(cell="gru"):
    """An aggregated row as `compare` makes it (classification)."""
    row = {"variant": "stacked", "cell": cell, "params": 100, "seeds": 1}
    for field in ("test_accuracy", "test_loss", "final_loss", "final_val_loss", "best_epoch",
                  "epochs_run", "train_seconds", "seconds_per_epoch"):
        row[f"{field}_mean"], row[f"{field}_std"] = 0.5, 0.0
    return row


def _adding_study(cell="gru"):
    row = {"length": 6, "variant": "stacked", "cell": cell, "params": 100, "seeds": 1,
           "test_mse_mean": 0.1, "test_mse_std": 0.0, "best_epoch_mean": 2.0,
           "best_epoch_std": 0.0, "train_seconds_mean": 1.0, "train_seconds_std": 0.0,
           "baseline_mse": 0.16}
    comparison = compare_module.Comparison(
        dataset="adding", task="regression", metric="mse", runs=[], rows=[row],
        histories={("stacked", cell): [{"loss": [0.2, 0.1], "val_loss": [0.2, 0.15]}]},
        budget={})
    return compare_module.AddingStudy(lengths=[6], comparisons={6: comparison}, rows=[row],
                                      baseline_mse=compare_module.ADDING_BASELINE_MSE)


PLOTS = {
    "curves": lambda path: compare_module.plot_comparison_curves(HISTORIES, path, "accuracy"),
    "metric_vs_time": lambda path: compare_module.plot_metric_vs_time([_row()], path,
                                                                      "accuracy"),
    "adding": lambda path: compare_module.plot_adding_study(_adding_study(), path),
}


@pytest.mark.parametrize("plot", list(PLOTS))
def test_a_failed_plot_leaves_the_previous_file(plot, tmp_path, savefig_fails_halfway):
    path = tmp_path / f"{plot}.png"
    path.write_bytes(b"the previous plot")
    with pytest.raises(DiskFull):
        PLOTS[plot](path)
    assert path.read_bytes() == b"the previous plot"
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind


def test_a_failed_comparison_table_leaves_the_previous_file(tmp_path):
    previous = "| the previous table |\n"
    (tmp_path / "comparison.md").write_text(previous)
    # A name that cannot be encoded fails the write after the file was opened.
    with pytest.raises(UnicodeEncodeError):
        compare_module.write_comparison(tmp_path, runs=[_row("\ud800")], rows=[_row("\ud800")],
                                        histories=HISTORIES, metric="accuracy", title="t")
    assert (tmp_path / "comparison.md").read_text() == previous
    assert os.listdir(tmp_path) == ["comparison.md"]


def test_a_failed_adding_table_leaves_the_previous_file(tmp_path):
    previous = "| the previous study |\n"
    (tmp_path / "adding.md").write_text(previous)
    with pytest.raises(UnicodeEncodeError):
        compare_module.write_adding_study(tmp_path, _adding_study("\ud800"))
    assert (tmp_path / "adding.md").read_text() == previous
    assert os.listdir(tmp_path) == ["adding.md"]


# === 3-5. The command line: empty values, flags named, nothing made before the checks ===

# (id, flags after ITALY (or after `--dataset adding ...` when they give --dataset), the
# message's fragments in order). `{tmp}` is the test's folder.
CLI_CASES = [
    # 3. An empty value is refused, not read as "the default" or "the current folder".
    ("adding_lengths_empty", ["--dataset", "adding", "--lengths", ""],
     ["`--lengths` must be a non-empty list", "Received: --lengths=''"]),
    ("lengths_empty_not_adding", ["--lengths", ""],
     ["`--lengths` must be given only with --dataset adding", "Received: --lengths=''"]),
    ("variants_empty", ["--variants", ""],
     ["`--variants` must be a non-empty list of names", "Received: --variants=''"]),
    ("cells_empty", ["--cells", ""],
     ["`--cells` must be a non-empty list of names", "Received: --cells=''"]),
    ("out_empty", ["--out", ""], ["`--out` must be the path", "Received: --out=''"]),
    # 4. The error names the flag typed.
    ("lengths_and_length", ["--dataset", "adding", "--lengths", "10", "--length", "20"],
     ["`--lengths`", "`--length`", "not both", "--lengths='10'", "--length=20"]),
    ("seed_negative", ["--seed", "-3", "--seeds", "2"],
     ["`--seed` must be an int >= 0", "Received: --seed=-3"]),
    ("seed_with_a_list_of_seeds", ["--seed", "5", "--seeds", "0,4"],
     ["`--seed`", "--seeds='0,4'", "--seed=5"]),
    ("seeds_not_ints", ["--seeds", "a,b"], ["`--seeds` must be", "Received: --seeds='a,b'"]),
    ("out_under_a_file", ["--out", "{tmp}/file.txt/sub"],
     ["`--out` must be a directory", "file.txt/sub", "file.txt is a file"]),
    ("out_is_a_file", ["--out", "{tmp}/file.txt"],
     ["`--out` must be a directory", "file.txt", "an existing file"]),
    ("num_train_not_adding", ["--num-train", "5"],
     ["`--num-train` must be given only with --dataset adding", "Received: --num-train=5"]),
    ("length_not_adding", ["--length", "20"],
     ["`--length` must be given only with --dataset adding", "Received: --length=20"]),
    ("tensorboard", ["--tensorboard"], ["`--tensorboard` must be off for compare"]),
    ("cells_and_cell", ["--cells", "gru", "--cell", "lstm"],
     ["`--cells`", "`--cell`", "not both", "--cells='gru'", "--cell='lstm'"]),
    ("variants_and_variant", ["--variants", "stacked", "--variant", "gru_fcn"],
     ["`--variants`", "`--variant`", "not both", "--variants='stacked'",
      "--variant='gru_fcn'"]),
    ("flag_and_set", ["--units", "4", "--set", "units=8"],
     ["once", "--units=4 and --set units=8"]),
    # 5. Training and model arguments are checked before the output folder is made.
    ("epochs_zero", ["--epochs", "0"], ["`epochs` must be an int >= 1", "epochs=0"]),
    ("epochs_negative", ["--epochs", "-1"], ["`epochs` must be an int >= 1", "epochs=-1"]),
    ("batch_size_zero", ["--batch-size", "0"],
     ["`batch_size` must be an int >= 1", "batch_size=0"]),
    ("patience_negative", ["--patience", "-1"],
     ["`patience` must be an int >= 0", "patience=-1"]),
    ("units_zero", ["--units", "0"], ["`units` must be a positive int", "units=0"]),
    ("set_units_text", ["--set", "units=abc"], ["`units` must be", "units='abc'"]),
]


@pytest.mark.parametrize("flags, fragments", [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_refused_before_any_work(flags, fragments, tmp_path, cwd, capsys,
                                                  trained):
    (tmp_path / "file.txt").write_text("not a folder")
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    argv = [*ITALY, *flags]
    if "--out" not in flags:
        argv += ["--out", str(tmp_path / "out")]
    code, line = run_compare(capsys, argv)
    assert code == 2
    assert line.startswith("gru-zoo compare: error: ")
    assert re.search(pattern(*fragments), line), line
    assert trained == []
    assert sorted(os.listdir(tmp_path)) == ["cwd", "file.txt"]  # no output folder
    assert os.listdir(cwd) == []


# === 5-6. The Python API: every argument checked before the folder is made ===

API_CASES = [
    ("variants_empty_list", dict(variants=[]), ["`variants` must be a non-empty list",
                                                "Received: variants=[]"]),
    ("variants_empty_string", dict(variants=""), ["`variants` must be a non-empty list",
                                                  "Received: variants=''"]),
    ("out_dir_empty", dict(out_dir=""), ["`out_dir` must be the path", "out_dir=''"]),
    ("out_dir_int", dict(out_dir=3), ["`out_dir` must be the path", "Received: out_dir=3"]),
    ("out_dir_under_a_file", dict(out_dir="{tmp}/file.txt/sub"),
     ["`out_dir` must be a directory", "file.txt/sub", "file.txt is a file"]),
    ("dataset_kwargs_list", dict(dataset_kwargs=[1]),
     ["`dataset_kwargs` must be None or a dict", "Received: dataset_kwargs=[1]"]),
    ("progress_text", dict(progress="no"), ["`progress` must be True or False",
                                            "Received: progress='no'"]),
    ("stream_without_write", dict(progress=True, stream=3),
     ["`stream` must be", "Received: stream=3"]),
    ("epochs_zero", dict(epochs=0), ["`epochs` must be an int >= 1", "Received: epochs=0"]),
    ("batch_size_zero", dict(batch_size=0), ["`batch_size` must be an int >= 1",
                                             "batch_size=0"]),
    ("patience_negative", dict(patience=-1), ["`patience` must be an int >= 0",
                                              "patience=-1"]),
    ("lr_decay_unknown", dict(lr_decay="sometimes"), ["`lr_decay` must be one of",
                                                      "lr_decay='sometimes'"]),
    ("fit_on_unknown", dict(fit_on="all"), ["`fit_on` must be one of", "fit_on='all'"]),
    ("class_weight_unknown", dict(class_weight="even"), ["`class_weight` must be",
                                                         "class_weight='even'"]),
    ("units_zero", dict(units=0), ["`units` must be a positive int", "units=0"]),
]


@pytest.mark.parametrize("kwargs, fragments", [c[1:] for c in API_CASES],
                         ids=[c[0] for c in API_CASES])
def test_compare_refuses_bad_input_before_any_work(kwargs, fragments, tmp_path, cwd,
                                                   trained):
    (tmp_path / "file.txt").write_text("not a folder")
    kwargs = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v
              for k, v in kwargs.items()}
    arguments = {**SMALL, "out_dir": tmp_path / "out", **kwargs}
    with pytest.raises(ValueError) as info:
        compare("italy_power_demand", **arguments)
    assert re.search(pattern(*fragments), str(info.value)), str(info.value)
    assert trained == []
    assert sorted(os.listdir(tmp_path)) == ["cwd", "file.txt"]
    assert os.listdir(cwd) == []


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(dataset_kwargs=[1]), ["`dataset_kwargs` must be None or a dict",
                                "Received: dataset_kwargs=[1]"]),
    (dict(out_dir=3), ["`out_dir` must be the path", "Received: out_dir=3"]),
    (dict(progress="no"), ["`progress` must be True or False", "Received: progress='no'"]),
    (dict(epochs=0), ["`epochs` must be an int >= 1", "Received: epochs=0"]),
    (dict(lengths=""), ["`lengths` must be a non-empty list", "Received: lengths=''"]),
], ids=["dataset_kwargs_list", "out_dir_int", "progress_text", "epochs_zero",
        "lengths_empty"])
def test_adding_study_refuses_bad_input_before_any_work(kwargs, fragments, tmp_path, trained):
    arguments = {**SMALL, "lengths": [6, 8], "out_dir": tmp_path / "out", **kwargs}
    del arguments["tflite"]  # the study measures no TFLite size
    with pytest.raises(ValueError) as info:
        adding_study(**arguments)
    assert re.search(pattern(*fragments), str(info.value)), str(info.value)
    assert trained == []
    assert os.listdir(tmp_path) == []


# === The flags still reach `compare` and `adding_study` as before ===


def _listed(value):
    """A list of names or numbers, whether given as a list or a comma-separated string."""
    if isinstance(value, str):
        return [int(v) if v.isdigit() else v for v in value.split(",")]
    return None if value is None else list(value)


@pytest.fixture
def received(monkeypatch):
    """Replaces `compare` and `adding_study` by spies that stop before any work."""
    calls = {}

    def spy(name):
        def record(*args, **kwargs):
            calls[name] = (args, kwargs)
            raise SystemExit(0)
        return record

    monkeypatch.setattr(compare_module, "compare", spy("compare"))
    monkeypatch.setattr(compare_module, "adding_study", spy("adding_study"))
    return calls


@pytest.mark.parametrize("flags, expected", [
    ([], dict(cells=["rnn", "lstm", "gru"], variants=None, seeds=[0])),
    (["--cell", "lstm", "--seed", "2", "--seeds", "2"],
     dict(cells=["lstm"], variants=None, seeds=[2, 3])),
    (["--cells", "gru,rnn", "--variant", "gru_fcn", "--seeds", "0,4"],
     dict(cells=["gru", "rnn"], variants=["gru_fcn"], seeds=[0, 4])),
    (["--variants", "stacked,gru_fcn"], dict(variants=["stacked", "gru_fcn"])),
], ids=["defaults", "cell_and_seed", "cells_variant_seed_list", "variants"])
def test_cli_flags_reach_compare(flags, expected, tmp_path, received):
    with pytest.raises(SystemExit):
        main(["compare", *ITALY, "--out", str(tmp_path / "out"), *flags])
    args, kwargs = received["compare"]
    assert args == ("italy_power_demand",)
    assert {k: _listed(kwargs[k]) for k in expected} == expected
    assert pathlib.Path(kwargs["out_dir"]) == tmp_path / "out"
    assert not (tmp_path / "out").exists()


def test_cli_adding_lengths_reach_the_study(tmp_path, received):
    with pytest.raises(SystemExit):
        main(["compare", "--dataset", "adding", "--lengths", "6,8", "--budget", "tiny",
              "--num-train", "16", "--out", str(tmp_path / "out"), "--quiet"])
    args, kwargs = received["adding_study"]
    assert [_listed(a) for a in args] == [[6, 8]]
    assert _listed(kwargs["variants"]) == ["stacked"]
    assert kwargs["dataset_kwargs"] == {"num_train": 16}
    with pytest.raises(SystemExit):  # --length: one comparison at that length
        main(["compare", "--dataset", "adding", "--length", "6", "--budget", "tiny",
              "--out", str(tmp_path / "out"), "--quiet"])
    args, kwargs = received["compare"]
    assert args == ("adding",) and kwargs["dataset_kwargs"] == {"length": 6}

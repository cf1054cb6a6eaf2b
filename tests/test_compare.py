"""`zoo.compare`: the RNN/LSTM/GRU comparison, the adding-problem study and the CLI."""

import csv
import dataclasses
import pathlib
import types

import matplotlib.image
import numpy as np
import pytest

import zoo
from zoo import compare as compare_module
from zoo.compare import adding_study, compare, parse_seeds

# Tiny models and data: every run is one epoch of a 4-unit, one-layer model.
TINY = dict(units=4, num_layers=1, batch_size=16)


@pytest.fixture(scope="module")
def small_italy():
    data = zoo.load_dataset("italy_power_demand")
    return dataclasses.replace(data, x_train=data.x_train[:32], y_train=data.y_train[:32],
                               x_test=data.x_test[:48], y_test=data.y_test[:48])


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _png_shape(path):
    return matplotlib.image.imread(path).shape


def test_compare_end_to_end_writes_tables_and_plots(small_italy, tmp_path):
    result = compare(small_italy, cells="rnn,gru", variants=["stacked"], seeds=2,
                     budget="tiny", out_dir=tmp_path, progress=False, tflite=False, **TINY)

    assert [(r["variant"], r["cell"]) for r in result.rows] == [("stacked", "rnn"),
                                                              ("stacked", "gru")]
    assert [(r["cell"], r["seed"]) for r in result.runs] == [
        ("rnn", 0), ("rnn", 1), ("gru", 0), ("gru", 1)]
    assert result.metric == "accuracy"
    assert result.budget["epochs"] == 1 and result.budget["test"] == 48
    for run in result.runs:
        assert run["epochs_run"] == 1
        assert 0.0 <= run["test_accuracy"] <= 1.0
        assert run["train_seconds"] > 0
    # The cells reached the builder: a GRU layer has 3x the weights of a SimpleRNN.
    assert result.rows[0]["params"] < result.rows[1]["params"]
    gru_runs = [r for r in result.runs if r["cell"] == "gru"]
    mean = np.mean([r["test_accuracy"] for r in gru_runs])
    assert result.rows[1]["test_accuracy_mean"] == pytest.approx(mean)
    assert result.rows[1]["seeds"] == 2

    rows = _read_csv(tmp_path / "comparison.csv")
    assert [(r["variant"], r["cell"]) for r in rows] == [("stacked", "rnn"), ("stacked", "gru")]
    for column in ("params", "test_accuracy_mean", "test_accuracy_std", "final_loss_mean",
                   "train_seconds_mean", "best_epoch_mean"):
        assert column in rows[0]
    assert len(_read_csv(tmp_path / "runs.csv")) == 4

    markdown = (tmp_path / "comparison.md").read_text().strip().splitlines()
    header = [c.strip() for c in markdown[0].strip("|").split("|")]
    assert header[:5] == ["variant", "cell", "params", "seeds", "test accuracy"]
    assert "train time (s)" in header and "final train loss" in header
    assert "TFLite (KB)" not in header  # tflite=False
    assert len(markdown) == 2 + 2  # header, separator, one line per model
    assert markdown[3].startswith("| stacked | gru |")

    for name in ("curves.png", "metric_vs_time.png"):
        height, width, _ = _png_shape(tmp_path / name)
        assert height > 100 and width > 100
    for cell in ("rnn", "gru"):
        for seed in (0, 1):
            assert (tmp_path / "runs" / f"stacked_{cell}_seed{seed}" / "model.keras").exists()


@pytest.mark.slow  # converts a model in a child process (tens of seconds)
def test_tflite_size_column_when_export_is_installed(small_italy, tmp_path):
    from export import to_tflite

    result = compare(small_italy, cells=["gru"], seeds=[0, 1], budget="tiny",
                     out_dir=tmp_path, progress=False, tflite=to_tflite, **TINY)
    header = (tmp_path / "comparison.md").read_text().splitlines()[0]
    assert "TFLite (KB)" in header
    sizes = {run["tflite_bytes"] for run in result.runs}
    assert len(sizes) == 1  # measured once per model, shared by its seeds
    size = sizes.pop()
    assert size == (tmp_path / "runs" / "stacked_gru_seed0" / "stacked_gru.tflite").stat().st_size
    assert result.rows[0]["tflite_kb"] == pytest.approx(size / 1024)


def test_tflite_size_column_from_the_converter_passed_in(small_italy, tmp_path):
    """`zoo` does not import `export`: the column comes from the converter the caller
    passes, called once per model (its seeds share the size)."""
    calls = []

    def converter(model, path):
        calls.append(pathlib.Path(path))
        pathlib.Path(path).write_bytes(b"x" * 2048)
        return types.SimpleNamespace(size=2048)

    result = compare(small_italy, cells=["gru"], seeds=[0, 1], budget="tiny",
                     out_dir=tmp_path, progress=False, tflite=converter, **TINY)
    assert calls == [tmp_path / "runs" / "stacked_gru_seed0" / "stacked_gru.tflite"]
    assert [run["tflite_bytes"] for run in result.runs] == [2048, 2048]
    assert result.rows[0]["tflite_kb"] == pytest.approx(2.0)
    assert "TFLite (KB)" in (tmp_path / "comparison.md").read_text().splitlines()[0]


@pytest.mark.parametrize("bad", [True, "export", 1])
def test_tflite_must_be_a_converter_or_none(bad):
    with pytest.raises(ValueError, match=r"`tflite`.*to_tflite.*Received: tflite="):
        compare("italy_power_demand", tflite=bad, progress=False)


def test_regression_comparison_reports_mse(tmp_path):
    data = zoo.load_dataset("airline_passengers")
    result = compare(data, cells=["lstm"], seeds=[0], budget="tiny", progress=False,
                     tflite=False, **TINY)
    assert result.metric == "mse"
    run = result.runs[0]
    assert run["test_mse"] == pytest.approx(run["test_loss"])
    assert "test MSE" in result.to_markdown()
    # A forecast comparison shows the forecasts any model must beat.
    seasonal = data.forecast_baselines()["seasonal naive"]
    assert result.budget["baselines"]["seasonal naive"] == seasonal
    assert "seasonal naive MSE" in result.to_markdown()


def test_seeds_make_runs_repeatable(small_italy):
    def once(seeds):
        return compare(small_italy, cells=["gru"], seeds=seeds, budget="tiny",
                       progress=False, tflite=False, **TINY).runs

    first, again, other = once([3]), once([3]), once([4])
    for key in ("test_accuracy", "test_loss", "final_loss"):
        assert first[0][key] == again[0][key]
    assert first[0]["final_loss"] != other[0]["final_loss"]


def test_parse_seeds():
    assert parse_seeds(3) == [0, 1, 2]
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,4") == [0, 4]
    assert parse_seeds([5]) == [5]


@pytest.mark.parametrize("kwargs, argument", [
    (dict(cells="rnn,transformer"), "cells"),
    (dict(cells=[]), "cells"),
    (dict(cells="gru,gru"), "cells"),
    (dict(variants=["deep"]), "variants"),
    (dict(seeds=0), "seeds"),
    (dict(seeds=[1, 1]), "seeds"),
    (dict(seeds="a,b"), "seeds"),
    (dict(budget="huge"), "budget"),
    (dict(budget=None), "budget"),
    (dict(dataset=42), "dataset"),
    (dict(units_per_layer=3), "units_per_layer"),
    (dict(variant="stacked"), "variant"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, argument):
    kwargs = dict(kwargs)
    dataset = kwargs.pop("dataset", "italy_power_demand")
    with pytest.raises(ValueError, match=argument) as info:
        compare(dataset, progress=False, **kwargs)
    assert "Received" in str(info.value)


@pytest.mark.parametrize("lengths", ["100,x", [1], [], [10, 10]])
def test_bad_lengths(lengths):
    with pytest.raises(ValueError, match="lengths"):
        adding_study(lengths, progress=False)


def test_adding_problem_statistics():
    length = 50
    x, y = zoo.adding_problem(20000, length, seed=0)
    assert x.shape == (20000, length, 2) and y.shape == (20000, 1)
    values, markers = x[..., 0], x[..., 1]
    assert np.all((values >= 0) & (values <= 1))
    assert set(np.unique(markers).tolist()) == {0.0, 1.0}
    assert np.all(markers.sum(axis=1) == 2)
    half = length // 2
    assert np.all(markers[:, :half].sum(axis=1) == 1)  # one marker in each half
    assert np.all(markers[:, half:].sum(axis=1) == 1)
    assert np.allclose(y[:, 0], (values * markers).sum(axis=1), atol=1e-6)
    assert np.all((y >= 0) & (y <= 2))
    assert y.mean() == pytest.approx(1.0, abs=0.01)
    # Predicting the mean target 1.0 gives Var(U1 + U2) = 1/6.
    assert np.mean((y - 1.0) ** 2) == pytest.approx(compare_module.ADDING_BASELINE_MSE,
                                                    abs=0.005)
    again, _ = zoo.adding_problem(20000, length, seed=0)
    other, _ = zoo.adding_problem(20000, length, seed=1)
    assert np.array_equal(x, again) and not np.array_equal(x, other)


def test_adding_study_tiny(tmp_path):
    study = adding_study([6, 8], cells=["gru"], seeds=1, budget="tiny", out_dir=tmp_path,
                         progress=False, **TINY)
    assert [(r["length"], r["cell"]) for r in study.rows] == [(6, "gru"), (8, "gru")]
    for row, length in zip(study.rows, (6, 8)):
        y_test = zoo.adding_problem(32, length, seed=2)[1]  # tiny budget: 32 test, seed 0+2
        assert row["baseline_mse"] == pytest.approx(float(np.mean((y_test - 1.0) ** 2)))
        assert study.comparisons[length].budget["length"] == length
    lines = (tmp_path / "adding.md").read_text().splitlines()
    assert lines[0].startswith("| T | variant | cell |")
    assert lines[2].startswith("| 6 | stacked | gru |")
    assert lines[3].startswith("| 8 | stacked | gru |")
    assert len(_read_csv(tmp_path / "adding.csv")) == 2
    assert _png_shape(tmp_path / "adding.png")[1] > 300
    assert (tmp_path / "T6" / "comparison.md").exists()


def test_cli_compare(tmp_path, capsys):
    from zoo.cli import main

    code = main(["compare", "--dataset", "italy_power_demand", "--budget", "tiny",
                 "--cells", "gru", "--seeds", "1", "--units", "4", "--layers", "1",
                 "--no-tflite", "--quiet", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "| stacked | gru |" in out
    assert (tmp_path / "comparison.csv").exists() and (tmp_path / "curves.png").exists()


@pytest.mark.parametrize("flags, converter", [([], "export"), (["--no-tflite"], None)])
def test_cli_compare_passes_exports_converter(monkeypatch, flags, converter):
    """`gru-zoo compare` measures TFLite sizes with the converter `export` registers
    (zoo itself never imports `export`); `--no-tflite` passes none."""
    import export.cli
    from zoo.cli import main

    received = {}

    def spy(dataset, **kwargs):
        received.update(kwargs)
        raise SystemExit(0)  # stop before training: only the wiring is under test

    monkeypatch.setattr(compare_module, "compare", spy)
    with pytest.raises(SystemExit):
        main(["compare", "--dataset", "italy_power_demand", "--quiet", *flags])
    expected = export.cli._compare_converter if converter else None
    assert received["tflite"] is expected


def test_cli_compare_bad_cells(tmp_path, capsys):
    from zoo.cli import main

    code = main(["compare", "--dataset", "italy_power_demand", "--cells", "gru,xyz",
                 "--budget", "tiny", "--out", str(tmp_path)])
    assert code == 2
    assert "cells" in capsys.readouterr().err


def test_parse_settings():
    from zoo.cli import parse_settings

    assert parse_settings(["conv_batchnorm=true", "conv_filters=[8,16]",
                           "attention=additive"]) == {
        "conv_batchnorm": True, "conv_filters": [8, 16], "attention": "additive"}
    with pytest.raises(ValueError, match="set"):
        parse_settings(["no_such_argument=1"])
    with pytest.raises(ValueError, match="set"):
        parse_settings(["conv_batchnorm"])


def test_a_diverged_run_is_recorded_as_failed_and_the_others_are_kept(small_italy, tmp_path,
                                                                      monkeypatch, capsys):
    # One run (rnn, seed 1) diverges; before, its TrainingDivergedError ended the
    # comparison and the runs already trained were never tabulated.
    real_train = zoo.train

    def train(model, data, *, seed, **kwargs):
        if seed == 1 and any("simple_rnn" in w.path for w in model.weights):
            raise zoo.TrainingDivergedError("the loss became nan at epoch 1", quantity="loss",
                                            epoch=1)
        return real_train(model, data, seed=seed, **kwargs)

    monkeypatch.setattr(zoo, "train", train)
    result = compare(small_italy, cells="rnn,gru", variants=["stacked"], seeds=2,
                     budget="tiny", out_dir=tmp_path / "py", progress=False, tflite=False,
                     **TINY)
    assert [(r["cell"], r["seed"], r["status"]) for r in result.runs] == [
        ("rnn", 0, "ok"), ("rnn", 1, "failed: the loss became nan at epoch 1"),
        ("gru", 0, "ok"), ("gru", 1, "ok")]
    rnn, gru = result.rows
    assert (rnn["seeds"], rnn["failed"], gru["seeds"], gru["failed"]) == (1, 1, 2, 0)
    # The mean is the finished run's, not NaN.
    assert rnn["test_accuracy_mean"] == result.runs[0]["test_accuracy"]
    table = (tmp_path / "py" / "comparison.md").read_text()
    assert "| 1 (1 failed) |" in table
    assert "- stacked/rnn: seed 1: the loss became nan at epoch 1" in table
    assert [r["status"] for r in _read_csv(tmp_path / "py" / "runs.csv")][1].startswith("failed")
    assert _png_shape(tmp_path / "py" / "curves.png")[0] > 0

    # The command line writes the same tables and exits 1, naming the failed run.
    from zoo.cli import main

    code = main(["compare", "--dataset", "italy_power_demand", "--budget", "tiny",
                 "--cells", "rnn,gru", "--seeds", "2", "--units", "4", "--quiet",
                 "--no-tflite", "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err
    assert code == 1
    assert "stacked/rnn seed 1 failed: the loss became nan at epoch 1" in err
    assert "1 of 4 runs failed" in err
    assert (tmp_path / "cli" / "comparison.md").exists()


def test_adding_study_with_a_model_failing_at_every_seed(tmp_path, monkeypatch, capsys):
    # Every rnn run diverges at T=8: the study's plot used to crash on the empty curves
    # (after all the training), and adding.md did not name the failed runs.
    real_train = zoo.train

    def train(model, data, **kwargs):
        if data.input_shape[0] == 8 and any("simple_rnn" in w.path for w in model.weights):
            raise zoo.TrainingDivergedError("the loss became nan at epoch 1", quantity="loss",
                                            epoch=1)
        return real_train(model, data, **kwargs)

    monkeypatch.setattr(zoo, "train", train)
    from zoo.cli import main

    code = main(["compare", "--dataset", "adding", "--lengths", "6,8", "--cells", "rnn,gru",
                 "--seeds", "1", "--budget", "tiny", "--units", "4", "--quiet",
                 "--no-tflite", "--out", str(tmp_path)])
    assert code == 1
    assert "1 of 4 runs failed" in capsys.readouterr().err
    table = (tmp_path / "adding.md").read_text()
    assert "| 8 | stacked | rnn |" in table and "0 (1 failed)" in table
    assert "- T=8 stacked/rnn: seed 0: the loss became nan at epoch 1" in table
    assert _png_shape(tmp_path / "adding.png")[1] > 300


def test_tflite_size_is_kept_when_the_first_seed_fails():
    runs = [{"variant": "stacked", "cell": "gru", "seed": 0, "params": 10,
             "status": "failed: diverged", "test_mse": float("nan"),
             **{f: float("nan") for f in compare_module._RUN_FIELDS}},
            {"variant": "stacked", "cell": "gru", "seed": 1, "params": 10, "status": "ok",
             "test_mse": 0.5, "tflite_bytes": 2048,
             **{f: 1.0 for f in compare_module._RUN_FIELDS}}]
    (row,) = compare_module._aggregate(runs, "mse", [("stacked", "gru")])
    assert row["tflite_kb"] == 2.0 and row["seeds"] == 1 and row["failed"] == 1
    assert row["test_mse_mean"] == 0.5


def test_compare_plots_take_the_same_paths_as_plot_curves(tmp_path):
    # A path without an image suffix used to be written by matplotlib as "<path>.png"
    # beside the name given; the comparison plots now follow zoo.plot_curves' rule.
    import matplotlib.pyplot as plt

    rows = [{"variant": "stacked", "cell": "gru", "seeds": 1, "train_seconds_mean": 1.0,
             "train_seconds_std": 0.0, "test_mse_mean": 0.5, "test_mse_std": 0.0}]
    with pytest.raises(ValueError, match=r"`path` must be an image file path.*Received: "
                                         r"path=.*noext"):
        compare_module.plot_metric_vs_time(rows, tmp_path / "noext", "mse")
    assert list(tmp_path.iterdir()) == [] and plt.get_fignums() == []
    compare_module.plot_metric_vs_time(rows, tmp_path / "t.svg", "mse")
    assert (tmp_path / "t.svg").read_text().lstrip().startswith("<?xml")

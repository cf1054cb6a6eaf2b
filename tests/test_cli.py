import json

import pytest

from zoo.cli import main


def test_list_names_every_variant_cell_task_and_dataset(capsys):
    from zoo import CELLS, DATASETS, TASKS, VARIANTS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*VARIANTS, *CELLS, *TASKS, *DATASETS]:
        assert f"  {name} " in out


def test_train_writes_a_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "italy_power_demand", "--variant", "attention",
                 "--cell", "lstm", "--units", "6,4", "--layers", "2", "--epochs", "2",
                 "--batch-size", "32", "--out", str(out), "--quiet"])
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["build"]["variant"] == "attention" and config["build"]["cell"] == "lstm"
    assert config["build"]["units"] == [6, 4]
    assert config["train"]["epochs"] == 2
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2
    assert "Test: " in capsys.readouterr().out


def test_train_airline_uses_its_window_norm_recipe_and_the_flag_overrides_it(tmp_path):
    out = tmp_path / "airline"
    assert main(["train", "--dataset", "airline_passengers", "--epochs", "1", "--units", "4",
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["build"]["window_norm"] == "mean"
    import keras

    model = keras.saving.load_model(out / "model.keras")
    assert type(model.get_layer("window_norm")).__name__ == "WindowNormalization"
    assert main(["train", "--dataset", "airline_passengers", "--epochs", "1", "--units", "4",
                 "--window-norm", "meanstd", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    build = json.loads((tmp_path / "b" / "config.json").read_text())["build"]
    assert build["window_norm"] == "meanstd"


def test_run_main_job_quick(tmp_path, capsys):
    out = tmp_path / "main"
    code = main(["run", "--dataset", "italy_power_demand", "--units", "4", "--epochs", "1",
                 "--out", str(out), "--skip", "tune,export", "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "italy_power_demand"
    assert 0.0 <= summary["train"]["test"]["accuracy"] <= 1.0
    assert (out / "train" / "model.keras").exists()
    assert "tune" not in summary and "export" not in summary
    assert "skipped" in capsys.readouterr().out


def test_a_failed_run_step_is_reported_and_the_next_steps_still_run(tmp_path, capsys,
                                                                    monkeypatch):
    """A step that fails (the tune step on data it cannot cross-validate, say) is
    recorded in summary.json and makes the run exit with 1, but the steps after it
    (export) still run on the trained model."""
    import zoo.cli

    ran = []

    def tune(context):
        raise ValueError("the smallest class has 1 sample")

    def export(context):
        ran.append(context["model_path"].exists())
        return {"float32": {"size": 1}}

    plugins = zoo.cli._plugins
    monkeypatch.setattr(zoo.cli, "_plugins", lambda group: (
        [("20_tune", tune), ("30_export", export)] if group == "gru_zoo.run_steps"
        else plugins(group)))
    out = tmp_path / "main"
    code = main(["run", "--dataset", "italy_power_demand", "--units", "4", "--epochs", "1",
                 "--out", str(out), "--quiet"])
    assert code == 1
    assert ran == [True]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tune"]["error"] == "ValueError: the smallest class has 1 sample"
    assert summary["failed"] == ["tune"] and summary["export"]["float32"] == {"size": 1}
    err = capsys.readouterr().err
    assert "failed: ValueError: the smallest class has 1 sample" in err
    assert "gru-zoo run: error: failed: tune" in err


@pytest.mark.parametrize(
    "argv, message",
    [(["train", "--dataset", "nope", "--epochs", "1"], "name='nope'"),
     (["train", "--dataset", "gunpoint", "--units", "0", "--epochs", "1"], "units=0"),
     (["train", "--dataset", "gunpoint", "--epochs", "0"], "epochs=0"),
     (["train", "--dataset", "gunpoint", "--window-norm", "mean", "--window-norm-channel", "2",
       "--epochs", "1"], "window_norm_channel=2")],
)
def test_bad_input_is_one_clear_line(argv, message, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_flag_values_are_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--units", "many"])
    assert info.value.code == 2
    assert "expected an int or a comma-separated list of ints, got 'many'" in capsys.readouterr().err


def test_a_second_train_or_run_into_a_finished_run_is_refused(tmp_path, capsys):
    # A second `train` into the same folder used to replace the first model silently.
    out = tmp_path / "t"
    argv = ["train", "--dataset", "italy_power_demand", "--epochs", "1", "--units", "4",
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    capsys.readouterr()
    assert main(argv[:-3] + ["--units", "8", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "`--out` holds an earlier run (model.keras, written" in err
    assert "--overwrite" in err and str(out) in err
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before
    # --overwrite replaces it: an 8-unit model now.
    assert main(argv[:-3] + ["--units", "8", "--out", str(out), "--quiet",
                             "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["build"]["units"] == 8

    # `run` refuses a folder with an earlier run's summary before loading any data.
    done = tmp_path / "r"
    (done / "train").mkdir(parents=True)
    (done / "summary.json").write_text("{}")
    assert main(["run", "--dataset", "italy_power_demand", "--out", str(done)]) == 2
    assert "`--out` holds an earlier run (summary.json" in capsys.readouterr().err
    assert sorted(p.name for p in done.iterdir()) == ["summary.json", "train"]

    # A run that stopped before its model was written (interrupted, diverged) may be
    # retried into the same folder without --overwrite.
    stopped = tmp_path / "s"
    stopped.mkdir()
    (stopped / "config.json").write_text("{}")
    (stopped / "model.interrupted.keras").write_bytes(b"")
    assert main(argv[:-3] + ["--out", str(stopped), "--quiet"]) == 0
    assert (stopped / "model.keras").exists()

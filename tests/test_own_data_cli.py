"""The user's own file through the command line: `gru-zoo train/run/export --data PATH`."""

import hashlib
import json

import numpy as np
import pytest

from zoo.cli import main


def _write_ts(path, x, labels, classes):
    """A UCR/UEA .ts file: one case per line, dimensions split by ':', label last."""
    lines = [f"@problemName {path.stem}", "@timeStamps false", "@missing false",
             f"@univariate {'true' if x.shape[2] == 1 else 'false'}",
             f"@dimensions {x.shape[2]}", "@equalLength true", f"@seriesLength {x.shape[1]}",
             f"@classLabel true {' '.join(classes)}", "@data"]
    for series, label in zip(x, labels):
        dims = [",".join(f"{v:.5f}" for v in series[:, d]) for d in range(x.shape[2])]
        lines.append(":".join(dims) + f":{label}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def ts_pair(tmp_path_factory):
    """Two-channel series of length 20 whose class is the sign of a bump."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)

    def make(n):
        labels = np.array(["up", "down"] * (n // 2))
        x = rng.normal(0, 0.3, size=(n, 20, 2)) + 5.0
        bump = np.where(labels == "up", 2.0, -2.0)
        x[:, 8:12, 0] += bump[:, None]
        return x, labels

    _write_ts(root / "Bumps_TRAIN.ts", *make(40), classes=["up", "down"])
    _write_ts(root / "Bumps_TEST.ts", *make(20), classes=["up", "down"])
    return root


def test_train_on_a_ts_pair_records_the_source_and_writes_a_report(ts_pair, tmp_path, capsys):
    out = tmp_path / "train"
    assert main(["train", "--data", str(ts_pair / "Bumps_TRAIN.ts"), "--epochs", "3",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "recipe (rules)" in printed and "one GRU(32) layer" in printed
    config = json.loads((out / "config.json").read_text())
    source = config["dataset"]["source"]
    digest = hashlib.sha256((ts_pair / "Bumps_TRAIN.ts").read_bytes()).hexdigest()
    assert digest in json.dumps(source)
    assert config["dataset"]["label_names"] == ["up", "down"]
    assert config["recipe"]["name"] == "rules" and config["recipe"]["reasons"]
    assert config["build"]["variant"] == "stacked" and config["train"]["epochs"] == 3
    report = (out / "report.md").read_text()
    assert digest in report and "up" in report and "down" in report


def test_run_on_a_ts_pair_end_to_end_exports_verified_files_with_its_labels(ts_pair, tmp_path,
                                                                           capsys):
    from export import read_metadata

    out = tmp_path / "main"
    code = main(["run", "--data", str(ts_pair / "Bumps_TRAIN.ts"), "--quick", "--epochs",
                 "15", "--lr", "0.01", "--units", "8", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == []
    assert summary["train"]["test"]["accuracy"] >= 0.9  # the bump is easy to see
    for name in ("float32", "int8"):
        entry = summary["export"][name]
        assert entry["tflite_accuracy"] >= entry["keras_accuracy"] - 0.1, entry
        meta = read_metadata(out / "export" / f"model_{name}.tflite")
        assert meta["labels"] == ["up", "down"]
        assert len(meta["normalization"]["mean"]) == 2
    report = (out / "report.md").read_text()
    assert "model_int8" in report and "Bumps" in report
    table = [line.split() for line in printed.splitlines()]
    assert ["file", "KB"] == table[[row[:1] for row in table].index(["file"])][:2]
    assert any(row[:1] == ["int8"] and "recipe" in row for row in table)  # not raw JSON


def test_export_without_data_reuses_the_training_file_as_training_loaded_it(ts_pair, tmp_path):
    from export import read_metadata

    out = tmp_path / "train"
    assert main(["train", "--data", str(ts_pair / "Bumps_TRAIN.ts"), "--epochs", "1",
                 "--units", "4", "--out", str(out), "--quiet"]) == 0
    target = tmp_path / "m.tflite"
    assert main(["export", str(out / "model.keras"), "--out", str(target)]) == 0
    meta = read_metadata(target)
    config = json.loads((out / "config.json").read_text())
    assert meta["labels"] == ["up", "down"]
    np.testing.assert_allclose(meta["normalization"]["mean"],
                               config["dataset"]["normalization"]["mean"])


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "missing_TRAIN.ts"], "missing_TRAIN.ts"),
    (["train", "--data", "x.ts", "--dataset", "gunpoint"], "not both"),
    (["train", "--dataset", "gunpoint", "--window", "5"], "--window"),
])
def test_bad_data_flags_are_one_line_and_write_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_broken_file_is_one_line_naming_it_and_nothing_is_written(tmp_path, capsys):
    bad = tmp_path / "Broken_TRAIN.ts"
    bad.write_text("@problemName Broken\n@classLabel true a b\n@data\n1,2,3:a\n1,2:3,4:b\n")
    out = tmp_path / "run"
    assert main(["run", "--data", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Broken_TRAIN.ts" in err and "Traceback" not in err
    assert not out.exists()


def _write_wide_csv(path, x, labels):
    header = "label," + ",".join(f"t{i}" for i in range(x.shape[1]))
    rows = [f"{label}," + ",".join(f"{v:.5f}" for v in series[:, 0])
            for series, label in zip(x, labels)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


def test_tune_job_reads_its_data_path_relative_to_the_toml(tmp_path, capsys):
    rng = np.random.default_rng(1)
    labels = np.array(["a", "b"] * 10)
    x = rng.normal(size=(20, 12, 1))
    _write_wide_csv(tmp_path / "mine.csv", x, labels)
    job = tmp_path / "job.toml"
    job.write_text('[job]\noutput_dir = "out"\n[data]\npath = "mine.csv"\n'
                   '[search]\nmax_trials = 1\nepochs = 1\n')
    assert main(["tune", str(job), "--check"]) == 0
    assert "OK" in capsys.readouterr().out
    from tuning.config import load_config
    from tuning.job import load_job_data

    config = load_config(job)
    assert config.data["path"] == str((tmp_path / "mine.csv").resolve())
    dataset = load_job_data(config)
    assert dataset.label_names == ["a", "b"] and dataset.input_shape == (12, 1)
    fingerprint = config.fingerprint()
    _write_wide_csv(tmp_path / "mine.csv", x[::-1], labels)  # changed data: a new job
    assert load_config(job).fingerprint() != fingerprint
    both = tmp_path / "both.toml"
    both.write_text('[data]\npath = "mine.csv"\ndataset = "gunpoint"\n')
    assert main(["tune", str(both), "--check"]) == 2
    assert "not both" in capsys.readouterr().err
    missing = tmp_path / "missing.toml"
    missing.write_text('[data]\npath = "nope.csv"\n')
    assert main(["tune", str(missing), "--check"]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_compare_takes_a_data_file(tmp_path, capsys):
    rng = np.random.default_rng(2)
    labels = np.array(["a", "b"] * 12)
    _write_wide_csv(tmp_path / "mine.csv", rng.normal(size=(24, 10, 1)), labels)
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(tmp_path / "mine.csv"), "--cells", "gru",
                 "--seeds", "1", "--budget", "tiny", "--no-tflite", "--units", "4",
                 "--out", str(out), "--quiet"]) == 0
    runs = (out / "runs.csv").read_text()
    assert "stacked" in runs and "gru" in runs  # length 10 < 64: the short-series recipe

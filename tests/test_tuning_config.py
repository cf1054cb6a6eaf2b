"""Job configs: the example validates; every bad key or value fails before training."""

import os
import pathlib
import subprocess
import sys

import pytest

from tuning.config import load_config, parse_config
from tuning.job import check_job, run_job

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "tuning" / "configs" / "gunpoint.toml"


def base(tmp_path):
    return {
        "job": {"name": "t", "output_dir": str(tmp_path / "out")},
        "data": {"dataset": "italy_power_demand", "max_train_samples": 16},
        "hypermodel": {"variant": "stacked", "space": {"units": [4]}},
        "search": {"strategy": "random", "max_trials": 1, "epochs": 1},
        "objective": {"metric": "val_accuracy"},
    }


def write(tmp_path, text):
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_example_config_is_valid():
    config = load_config(EXAMPLE)
    assert config.search["strategy"] == "bayesian"
    assert config.hypermodel["variant"] == "cnn_gru"
    dataset, hypermodel, objective = check_job(config)
    assert dataset.name == "gunpoint"
    assert objective.name == "val_loss" and objective.direction == "min"


def test_cli_check_of_the_example(capsys):
    from zoo.cli import main

    assert main(["tune", str(EXAMPLE), "--check"]) == 0
    assert "OK" in capsys.readouterr().out


def test_defaults_filled_in(tmp_path):
    config = parse_config({"job": {"output_dir": str(tmp_path)}})
    assert config.search["strategy"] == "random"
    assert config.objective["metric"] == "val_loss"
    assert config.distributed["ip"] == "127.0.0.1"


@pytest.mark.parametrize("section, key, value, fragment", [
    ("search", "strategy", "annealing", "[search] strategy must be one of"),
    ("search", "max_trials", 0, "Received: max_trials=0"),
    ("search", "epochs", "ten", "Received: epochs='ten'"),
    ("search", "trials", 3, "[search] unknown key(s) ['trials']"),
    ("search", "options", {"population_size": 4}, "[search.options] unknown key(s)"),
    ("job", "seed", -1, "[job] seed must be a non-negative int. Received: seed=-1"),
    ("data", "dataset", "mnist", "`name` must be one of"),
    ("data", "options", {"window": 3}, "Unknown option(s) ['window']"),
    ("data", "options", {"validation_split": 2.0}, "Received: validation_split=2.0"),
    ("hypermodel", "variant", "transformer", "[hypermodel] variant must be one of"),
    ("hypermodel", "cells", ["gru", "tcn"], "[hypermodel] cells must be"),
    ("hypermodel", "space", {"unit": [4]}, "unknown: ['unit']"),
    ("hypermodel", "space", {"units": {"min": 8, "max": 2}}, "space['units']"),
    ("hypermodel", "fixed", {"dropout": 3.0}, "Received: dropout=3.0"),
    ("hypermodel", "fixed", {"input_shape": [3, 1]}, "without 'input_shape'"),
    ("objective", "metric", "val_f1", "[objective] metric must be a metric the trials log"),
    ("objective", "direction", "up", "[objective] direction must be 'max' or 'min'"),
    ("objective", "max_size_kb", -5, "Received: max_size_kb=-5"),
    ("retrain", "enabled", "yes", "[retrain] enabled must be true or false"),
    ("distributed", "port", 70000, "[distributed] port must be a port number"),
])
def test_bad_config_fails_before_training(tmp_path, section, key, value, fragment):
    raw = base(tmp_path)
    raw.setdefault(section, {})[key] = value
    with pytest.raises(ValueError) as info:
        run_job(parse_config(raw))
    assert fragment in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_unknown_section(tmp_path):
    raw = base(tmp_path)
    raw["tuner"] = {}
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['tuner'\]"):
        parse_config(raw)


def test_grid_needs_a_finite_space(tmp_path):
    raw = base(tmp_path)
    raw["search"]["strategy"] = "grid"
    with pytest.raises(ValueError) as info:
        check_job(parse_config(raw))
    assert "learning_rate" in str(info.value) and "strategy='grid'" in str(info.value)


def test_toml_errors_name_the_file(tmp_path):
    path = write(tmp_path, "[search\nstrategy = 'random'\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path):
    path = write(tmp_path, "[search]\nstrategy = 'annealing'\n")
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "tune", str(path)],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 2
    assert "[search] strategy must be one of" in result.stderr and "annealing" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_overrides_are_validated(tmp_path, capsys):
    from zoo.cli import main

    path = write(tmp_path, f"[job]\noutput_dir = '{tmp_path / 'o'}'\n")
    assert main(["tune", str(path), "--max-trials", "0", "--check"]) == 2
    assert "Received: max_trials=0" in capsys.readouterr().err


def test_resume_refuses_a_changed_search(tmp_path):
    raw = base(tmp_path)
    raw["retrain"] = {"enabled": False}
    run_job(parse_config(raw))
    raw["hypermodel"]["space"]["units"] = [8]
    with pytest.raises(ValueError, match="holds a search with different settings"):
        run_job(parse_config(raw))
    # A larger budget is not a different search: it resumes with one more trial.
    raw["hypermodel"]["space"]["units"] = [4]
    raw["search"]["max_trials"] = 2
    summary = run_job(parse_config(raw))
    assert summary["trials"] == summary["completed"] == 2

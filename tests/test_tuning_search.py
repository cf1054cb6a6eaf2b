"""Tiny real searches: every strategy, results files, retrain, size objectives, run step."""

import json

import keras
import keras_tuner
import numpy as np
import pytest
from helpers import STRATEGY_OPTIONS, read_csv, tiny_raw

import zoo
from tuning.config import parse_config
from tuning.job import check_job, run_job
from tuning.objectives import ModelCostCallback, Objective, measure_model, pareto_front


@pytest.mark.parametrize("strategy, options", STRATEGY_OPTIONS)
def test_one_tiny_search_per_strategy(tmp_path, strategy, options):
    search = {"options": options}
    if strategy == "hyperband":
        search["epochs"] = 2  # one bracket of two 2-epoch trials
    # Retraining is the same code for every strategy: test it (and the default
    # configuration comparison) once, with random search.
    retrain = {"enabled": strategy == "random", "compare_default": strategy == "random"}
    config = parse_config(tiny_raw(tmp_path, strategy, search=search, retrain=retrain))
    summary = run_job(config)
    out = config.output_dir
    rows = read_csv(out / "trials.csv")
    assert summary["trials"] == len(rows) == 2
    assert all(row["status"] == "COMPLETED" for row in rows)
    assert all(float(row["val_loss"]) > 0 and float(row["size_bytes"]) > 0 for row in rows)
    assert {row["hp:units_0"] for row in rows} <= {"4", "8"}
    for name in ("trials.json", "summary.md", "search.png", "pareto.csv", "best.json"):
        assert (out / name).stat().st_size > 0, name
    best = json.loads((out / "best.json").read_text())
    assert best["strategy"] == strategy
    assert best["best_score"] == min(float(r["score"]) for r in rows)
    assert "| trial | val_loss |" in (out / "summary.md").read_text()
    if strategy == "random":
        model = keras.saving.load_model(out / "best_model.keras")
        assert model.count_params() == best["retrain"]["params"]
        assert set(best["retrain"]["test"]) == {"loss", "accuracy"}
        check = best["retrain"]["fit_check"]  # against always the most frequent class
        assert check["model"] == pytest.approx(best["retrain"]["test"]["accuracy"], abs=1e-6)
        assert check["failed_fit"] == (check["model"] <= check["baselines"]["most frequent class"])
        assert check["failed_fit"] == ("failed fit" in (out / "summary.md").read_text())
        assert best["default"]["params"] > 0
        assert 0.0 <= best["default"]["test"]["accuracy"] <= 1.0
    else:
        assert not (out / "best_model.keras").exists()


def test_retrain_reproduces_the_best_trial(tmp_path):
    """Same seed, hyperparameters and data: the retrained weights start where the trial's did."""
    config = parse_config(tiny_raw(tmp_path, search={"epochs": 2}, retrain={"enabled": False}))
    run_job(config)
    best = json.loads((config.output_dir / "best.json").read_text())
    dataset, hypermodel, _ = check_job(config)
    hp = keras_tuner.HyperParameters()
    for name, value in best["best_hyperparameters"].items():
        hp.Fixed(name, value)
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, dataset.x_train, dataset.y_train,
                             validation_data=(dataset.x_val, dataset.y_val), epochs=2, verbose=0)
    assert min(history.history["val_loss"]) == pytest.approx(best["best_score"], rel=1e-4)


def test_size_penalty_and_pareto_front(tmp_path):
    raw = tiny_raw(tmp_path, objective={"metric": "val_accuracy", "size_weight": 0.5,
                                        "use_export": False}, retrain={"enabled": False})
    config = parse_config(raw)
    summary = run_job(config)
    assert summary["objective"] == "score"
    rows = read_csv(config.output_dir / "trials.csv")
    for row in rows:
        expected = float(row["val_accuracy"]) - 0.5 * float(row["size_bytes"]) / 1024
        assert float(row["score"]) == pytest.approx(expected, rel=1e-5)
        assert float(row["size_bytes"]) == 4 * float(row["params"])
    front = read_csv(config.output_dir / "pareto.csv")
    assert 1 <= len(front) <= len(rows)


def test_size_limit_fails_large_models_before_training(tmp_path):
    # units 4 -> 1 layer model of ~100 params (0.4 KiB); units 8 -> ~270 params (1.1 KiB).
    raw = tiny_raw(tmp_path, objective={"metric": "val_loss", "max_size_kb": 0.8,
                                        "use_export": False},
                   search={"max_trials": 4, "max_retries_per_trial": 0},
                   retrain={"enabled": False})
    raw["hypermodel"]["space"]["learning_rate"] = [0.01, 0.003]
    summary = run_job(parse_config(raw))
    rows = read_csv(parse_config(raw).output_dir / "trials.csv")
    by_units = {row["hp:units_0"]: row["status"] for row in rows}
    assert by_units.get("8", "FAILED") == "FAILED"
    assert by_units.get("4", "COMPLETED") == "COMPLETED"
    assert summary["failed"] == sum(row["status"] == "FAILED" for row in rows)
    assert all(float(r["size_bytes"]) / 1024 <= 0.8 for r in rows if r["status"] == "COMPLETED")


def _one_epoch_with_costs(objective):
    """One epoch of a tiny model with the cost callback: `(model, logs of the epoch)`."""
    model = zoo.build_gru(input_shape=(6, 1), num_outputs=2, units=4, num_layers=1)
    x = np.zeros((4, 6, 1), "float32")
    y = np.array([0, 1, 0, 1])
    history = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0,
                        callbacks=[ModelCostCallback(objective, use_export=False)])
    return model, {k: v[0] for k, v in history.history.items()}


def test_cost_callback_logs_size_and_score():
    model, logs = _one_epoch_with_costs(Objective(metric="val_accuracy", size_weight=1.0))
    assert logs["size_bytes"] == 4 * model.count_params()
    assert logs["score"] == pytest.approx(logs["val_accuracy"] - logs["size_bytes"] / 1024)


def test_latency_term_enters_the_score():
    objective = Objective(metric="val_loss", latency_weight=2.0)
    assert objective.name == "score" and objective.direction == "min"
    _, logs = _one_epoch_with_costs(objective)
    assert logs["latency_ms"] > 0
    assert logs["score"] == pytest.approx(logs["val_loss"] + 2.0 * logs["latency_ms"])


def test_pareto_front():
    points = [(0.9, 100), (0.8, 50), (0.85, 200), (0.7, 50), (0.95, 400), (None, None)]
    assert pareto_front(points, "max") == [0, 1, 4]
    assert pareto_front([(0.1, 10), (0.2, 5)], "min") == [0, 1]


def test_measure_model_without_export_uses_params():
    model = zoo.build_gru(input_shape=(6, 1), num_outputs=2, units=4, num_layers=1)
    measured = measure_model(model, use_export=False, latency=True)
    assert measured["size_bytes"] == 4 * model.count_params()
    assert measured["size_source"] == "params"
    assert measured["latency_ms"] > 0 and measured["latency_source"] == "keras"


def test_measure_model_uses_the_exported_tflite_file():
    model = zoo.build_gru(input_shape=(6, 1), num_outputs=2, units=4, num_layers=1)
    measured = measure_model(model, use_export=True, latency=True)
    assert measured["size_source"] == "tflite"
    assert measured["size_bytes"] > 4 * model.count_params()  # weights plus the graph
    assert measured["latency_source"] == "litert" and measured["latency_ms"] > 0


def test_run_step_of_the_main_job(tmp_path):
    """A short CV search for a smaller model than the trained one, honestly compared."""
    from tuning.cli import run_step

    dataset = zoo.load_dataset("italy_power_demand")
    dataset.x_train, dataset.y_train = dataset.x_train[:24], dataset.y_train[:24]
    trained = zoo.build_gru(input_shape=dataset.input_shape, num_outputs=2, units=16,
                            num_layers=1)
    (tmp_path / "train").mkdir()
    trained.save(tmp_path / "train" / "model.keras")
    trained_test = {"accuracy": 0.5, "loss": 0.69}
    context = {"run_dir": tmp_path, "model_path": tmp_path / "train" / "model.keras",
               "dataset": dataset, "quick": True, "seed": 0,
               "model_config": {"variant": "stacked", "units": 16, "num_layers": 1,
                                "learning_rate": 0.01},
               "test_metrics": trained_test, "params": int(trained.count_params()),
               "train": {"epochs": 3, "fit_on": "train+val"}}
    result = run_step(context)
    assert 1 <= result["trials"] <= 3
    assert result["default_cv"]["trial_id"] == "0"  # the trained configuration comes first
    rows = read_csv(tmp_path / "tune" / "trials.csv")
    assert rows[0]["hp:units_0"] == "16" and rows[0]["hp:learning_rate"] == "0.01"
    assert {row["hp:units_0"] for row in rows} <= {"16", "8", "4"}  # only narrower models
    assert {row["hp:dropout"] for row in rows} == {"0.0"}  # the recipe is not searched
    chosen = result["chosen"]
    assert result["trained"]["test"] == trained_test
    if chosen["is_trained_config"]:
        assert "the trained model stays" in result["verdict"]
    else:  # smaller, within one point of the trained configuration in CV
        assert chosen["params"] < result["trained"]["params"]
        assert chosen["cv_score"] >= result["default_cv"]["score"] - 0.01
        worse = chosen["test"]["accuracy"] < trained_test["accuracy"]
        assert ("WORSE on test" in result["verdict"]) == worse
    assert 0.0 <= chosen["test"]["accuracy"] <= 1.0
    json.dumps(result)  # a small JSON-able dict for summary.json


def test_run_refuses_a_bad_budget_before_training(tmp_path, capsys):
    from zoo.cli import main

    out = tmp_path / "run"
    assert main(["run", "--dataset", "italy_power_demand", "--flash-kb", "-1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gru-zoo run: error: --flash-kb must be a positive number. "
                   "Received: --flash-kb -1"]
    assert not out.exists()




@pytest.mark.parametrize("variant", ["gru_fcn", "cnn_gru_attention", "attention"])
def test_the_main_jobs_step_searches_only_size(variant):
    """Only widths and depth vary; every other hyperparameter is the trained model's."""
    from tuning.cli import step_space
    from tuning.config import parse_config
    from tuning.hypermodels import GRUHyperModel

    model_config = {"variant": variant, "units": 32, "num_layers": 1, "dropout": 0.1}
    variant, cell, space, fixed = step_space(model_config)
    searched = {name for name, value in space.items() if isinstance(value, list)}
    assert searched <= {"units", "num_layers", "conv_width"}
    assert space["dropout"] == 0.1 and space["learning_rate"] == 1e-3
    config = parse_config({"job": {"name": "x", "output_dir": "/tmp/x"},
                           "data": {"dataset": "italy_power_demand"},
                           "hypermodel": {"variant": variant, "cells": [cell],
                                          "fixed": fixed, "space": space}}, path="step")
    hm = config.hypermodel
    hypermodel = GRUHyperModel(variant, input_shape=(24, 1), num_outputs=2,
                               cells=hm["cells"], space=hm["space"], fixed=hm["fixed"])
    hp = keras_tuner.HyperParameters()
    hypermodel.build_kwargs(hp)
    varying = {h.name.rsplit("_", 1)[0] if h.name[-1].isdigit() else h.name
               for h in hp.space if type(h).__name__ != "Fixed"}
    assert varying <= {"units", "num_layers", "conv_width"}, varying

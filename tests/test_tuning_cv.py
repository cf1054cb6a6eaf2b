"""Cross-validated trials: folds, the protocol, pruning, the cache, time budget, resume."""

import json

import keras_tuner
import numpy as np
import pytest
from helpers import STRATEGY_OPTIONS, read_csv, tiny_raw

from tuning.config import parse_config
from tuning.cv import (
    CrossValidatedTuner,
    FoldCache,
    expanding_window_folds,
    inner_split,
    make_folds,
    recipe_protocol,
    search_data,
    stratified_folds,
)
from tuning.job import check_job, run_job


def cv_raw(tmp_path, strategy="random", cv=None, **sections):
    """A tiny CV job: 24 ItalyPowerDemand series, 2 folds of 1 epoch."""
    raw = tiny_raw(tmp_path, strategy, **sections)
    raw["data"]["max_train_samples"] = 24
    raw["objective"] = {"metric": "val_accuracy"}
    raw["retrain"] = {"enabled": False}
    raw["cv"] = dict({"folds": 2, "epochs": 1}, **(cv or {}))
    return raw


# === Folds ===
def test_stratified_folds_spread_every_class_and_cover_every_sample():
    y = np.array([0] * 9 + [1] * 6 + [2] * 3)
    folds = stratified_folds(y, 3, seed=0, repeats=2)
    assert len(folds) == 6
    for repeat in (0, 1):
        held = [f.held_out for f in folds if f.repeat == repeat]
        assert sorted(np.concatenate(held).tolist()) == list(range(len(y)))  # disjoint, all
        for fold in (f for f in folds if f.repeat == repeat):
            assert set(y[fold.held_out]) == {0, 1, 2}
            assert not set(fold.train) & set(fold.held_out)
    # a repeat reshuffles: not the same held-out sets
    first = {tuple(f.held_out) for f in folds if f.repeat == 0}
    second = {tuple(f.held_out) for f in folds if f.repeat == 1}
    assert first != second
    # deterministic for a seed
    again = stratified_folds(y, 3, seed=0, repeats=2)
    assert all(np.array_equal(a.held_out, b.held_out) for a, b in zip(folds, again))


def test_stratified_folds_refuse_more_folds_than_the_smallest_class():
    y = np.array([0] * 9 + [1] * 2)
    with pytest.raises(ValueError, match=r"`folds` must be an int from 2 to 2 .*folds=3"):
        stratified_folds(y, 3)


def test_expanding_window_folds_train_only_on_the_past_with_a_gap():
    folds = expanding_window_folds(40, 3, gap=2, test_size=6)
    assert [len(f.held_out) for f in folds] == [6, 6, 6]
    assert folds[-1].held_out[-1] == 39  # the last block ends at the last sample
    for fold in folds:
        assert fold.train.max() + 2 < fold.held_out.min()  # gap samples left out
        assert np.array_equal(fold.train, np.arange(fold.train.max() + 1))  # all the past
    assert len(folds[0].train) < len(folds[1].train) < len(folds[2].train)  # expanding


def test_expanding_window_folds_refuse_too_many_folds_for_the_data():
    with pytest.raises(ValueError, match=r"folds=8"):
        expanding_window_folds(20, 8, gap=0, test_size=3)


def test_make_folds_picks_the_kind_and_refuses_repeats_for_time_order():
    y = np.arange(30, dtype="float32")
    regression = make_folds(y, task="regression", folds=3)
    assert sorted(np.concatenate([f.held_out for f in regression]).tolist()) == list(range(30))
    with pytest.raises(ValueError, match=r"`repeats` must be 1 .*repeats=2"):
        make_folds(y, task="regression", time_ordered=True, folds=3, repeats=2)


def test_inner_split_keeps_every_class_and_the_time_order():
    y = np.array([0] * 10 + [1] * 10)
    fold = stratified_folds(y, 2, seed=1)[0]
    fit, stop = inner_split(fold, y, task="classification", time_ordered=False, fraction=0.2)
    assert set(y[stop]) == {0, 1} and set(y[fit]) == {0, 1}
    assert sorted(np.concatenate([fit, stop]).tolist()) == sorted(fold.train.tolist())
    timed = expanding_window_folds(30, 2, test_size=5)[1]
    fit, stop = inner_split(timed, np.arange(30), task="regression", time_ordered=True,
                            fraction=0.2, size=5)
    assert fit.max() < stop.min() and stop.max() < timed.held_out.min()


# === The protocol: the dataset's recipe ===
def test_recipe_protocol_is_the_recipe_with_fewer_epochs():
    import zoo
    from zoo.recipes import choose_recipe

    data = zoo.load_dataset("italy_power_demand")
    protocol = recipe_protocol(data)
    assert protocol == choose_recipe(data).train
    cheap = recipe_protocol(data, epochs=7)
    assert cheap["epochs"] == 7 and cheap["lr_decay"] == protocol["lr_decay"]
    if protocol["fit_on"] == "train+val":
        assert cheap["patience"] == 7  # a fixed schedule: nothing to stop on


def test_the_test_split_never_enters_a_fold(tmp_path):
    config = parse_config(cv_raw(tmp_path))
    dataset, _, _ = check_job(config)
    x, y = search_data(dataset)
    assert len(x) == len(dataset.x_train) + len(dataset.x_val)
    test_rows = {r.tobytes() for r in dataset.x_test}
    assert not any(r.tobytes() in test_rows for r in x)


# === Searches ===
# Every strategy runs a plain search in the default suite (test_tuning_search.py); the
# folds wrap each strategy's trials the same way, so two strategies (keras-tuner's random
# search and gru-zoo's own genetic one) keep the cross-validated search in the default
# suite and the other four run with --run-slow (about 12 s each on a 2-core machine).
CV_STRATEGIES = [pytest.param(strategy, options, marks=() if strategy in ("random", "genetic")
                              else pytest.mark.slow, id=f"{strategy}-options{i}")
                 for i, (strategy, options) in enumerate(STRATEGY_OPTIONS)]


@pytest.mark.parametrize("strategy, options", CV_STRATEGIES)
def test_a_cross_validated_search_per_strategy(tmp_path, strategy, options):
    search = {"options": options}
    cv = {}
    if strategy == "hyperband":
        cv["epochs"] = 2  # one bracket: 2-epoch folds
    config = parse_config(cv_raw(tmp_path, strategy, cv=cv, search=search))
    summary = run_job(config)
    rows = read_csv(config.output_dir / "trials.csv")
    assert len(rows) == summary["trials"] >= 1
    for row in rows:
        assert row["status"] in ("COMPLETED", "PRUNED"), row
        folds = int(float(row["cv_folds"]))
        scores = [float(row[f"cv_fold_{i}"]) for i in range(folds)]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert float(row["score"]) == pytest.approx(np.mean(scores))  # the mean of its folds
    # every strategy but Hyperband measures the default configuration as its first trial
    best = json.loads((config.output_dir / "best.json").read_text())
    if strategy != "hyperband":
        assert best["default_cv"]["trial_id"] == "0"
        assert rows[0]["hp:units_0"] == "4"  # the space's default: its first value
    assert len(best["default_cv"]["folds"]) == 2
    assert best["best_is_default"] == (best["best_trial"] == best["default_cv"]["trial_id"])
    assert "Cross-validation: 2-fold stratified" in (config.output_dir / "summary.md").read_text()


def test_the_cache_trains_a_configuration_once_and_resume_runs_only_missing_folds(tmp_path):
    raw = cv_raw(tmp_path, search={"max_trials": 2})
    config = parse_config(raw)
    run_job(config)
    first = json.loads((config.output_dir / "best.json").read_text())
    assert first["cv"]["trainings"] == 4  # 2 trials x 2 folds, each trained once
    # More trials on the same job: the first two are kept, only new folds are trained.
    raw["search"]["max_trials"] = 3
    config = parse_config(raw)
    run_job(config)
    second = json.loads((config.output_dir / "best.json").read_text())
    assert second["trials"] == 3
    assert second["cv"]["trainings"] == 2
    assert len(FoldCache(config.output_dir / "cv_cache.json")) == 6  # one entry per fold


def test_a_time_budget_stops_between_folds_and_a_resume_finishes(tmp_path, capsys):
    raw = cv_raw(tmp_path, search={"max_trials": 3}, cv={"max_time_s": 0.001})
    config = parse_config(raw)
    summary = run_job(config)
    assert summary["cv"]["stopped_by_time"]
    assert "max_time_s=0.001 spent" in capsys.readouterr().out
    raw["cv"]["max_time_s"] = 3600  # a budget is not part of the job's fingerprint
    config = parse_config(raw)
    summary = run_job(config)
    assert not summary["cv"]["stopped_by_time"]
    assert summary["completed"] + summary["pruned"] == 3


def test_pruning_stops_a_trial_whose_first_folds_are_clearly_worse():
    tuner = CrossValidatedTuner.__new__(CrossValidatedTuner)
    tuner.prune, tuner.prune_after, tuner.prune_margin = True, 2, "auto"
    tuner.objective = type("O", (), {"direction": "max"})()
    reference = [0.9, 0.92, 0.88, 0.9]  # the best finished trial's folds (std 0.014)
    assert tuner._should_prune([0.6, 0.65], reference)
    assert not tuner._should_prune([0.9, 0.91], reference)
    assert not tuner._should_prune([0.5], reference)  # not before prune_after folds
    tuner.prune_margin = 0.5
    assert not tuner._should_prune([0.6, 0.65], reference)


# === Bad [cv] values ===
@pytest.mark.parametrize("cv, match", [
    ({"folds": 1}, r"\[cv\] folds.*folds=1"),
    ({"folds": "5"}, r"folds.*'5'"),
    ({"repeats": 0}, r"repeats.*repeats=0"),
    ({"prune_margin": -1}, r"prune_margin.*-1"),
    ({"max_time_s": 0}, r"max_time_s.*0"),
    ({"epochs": 2.5}, r"epochs.*2.5"),
    ({"gap": -1}, r"gap.*-1"),
    ({"shuffle": True}, r"shuffle"),
])
def test_bad_cv_values_name_the_key_and_the_value(tmp_path, cv, match):
    raw = cv_raw(tmp_path)
    raw["cv"].update(cv)
    with pytest.raises(ValueError, match=match):
        parse_config(raw)


def test_cv_needs_a_held_out_metric_and_enough_series_per_class(tmp_path):
    raw = cv_raw(tmp_path)
    raw["objective"] = {"metric": "loss"}
    with pytest.raises(ValueError, match=r"\[objective\] metric.*held-out.*'loss'"):
        parse_config(raw)
    raw = cv_raw(tmp_path, cv={"folds": 20})
    config = parse_config(raw)
    with pytest.raises(ValueError, match=r"\[cv\] folds .*folds=20"):
        check_job(config)
    raw = cv_raw(tmp_path, cv={"gap": 2})
    with pytest.raises(ValueError, match=r"\[cv\] gap .*gap=2"):
        check_job(parse_config(raw))


def test_a_cross_validated_tuner_refuses_executions_per_trial():
    with pytest.raises(ValueError, match="executions_per_trial"):
        CrossValidatedTuner(keras_tuner.oracles.RandomSearchOracle(max_trials=1), None,
                            objective=None, protocol={}, executions_per_trial=2)


# === Device budgets ===
def budget_raw(tmp_path, units, budget, **retrain):
    raw = cv_raw(tmp_path, "grid")
    raw["hypermodel"]["space"].update(units=units, learning_rate=[0.01])
    raw["search"]["max_trials"] = len(units)
    raw["budget"] = budget
    raw["retrain"] = dict({"enabled": False}, **retrain)
    return raw


@pytest.mark.parametrize("budget, match", [
    ({"flash_kb": -1}, r"\[budget\] flash_kb must be a positive number of KiB. "
                       r"Received: flash_kb=-1"),
    ({"flash_kb": 64, "quantization": "int4"}, r"\[budget\] quantization .*'int4'"),
    ({"ram_kb": "64"}, r"\[budget\] ram_kb .*'64'"),
    ({"flash_kb": 64, "streaming": "yes"}, r"\[budget\] streaming .*'yes'"),
    ({"quantization": "int8"}, r"\[budget\] must be a table with at least one of flash_kb"),
    ({"flash_kb": 64, "flash": 1}, r"\[budget\] unknown key\(s\) \['flash'\]"),
    ({"ram_kb": 64, "quantization": "float16"},
     r"\[budget\] quantization must be one of .* with `ram_kb`.*'float16'"),
])
def test_bad_budget_values_name_the_key_and_the_value(tmp_path, budget, match):
    with pytest.raises(ValueError, match=match):
        parse_config(budget_raw(tmp_path, [4], budget))


def test_a_budget_needs_cross_validation(tmp_path):
    raw = budget_raw(tmp_path, [4], {"flash_kb": 64})
    del raw["cv"]
    with pytest.raises(ValueError, match=r"\[budget\] needs cross-validated trials"):
        parse_config(raw)


def test_device_budget_refuses_bad_arguments():
    from tuning.budget import DeviceBudget

    with pytest.raises(ValueError, match=r"`latency_ms` must be a positive number or None. "
                                         r"Received: latency_ms=nan"):
        DeviceBudget(latency_ms=float("nan"))
    with pytest.raises(ValueError, match=r"at least one of"):
        DeviceBudget()
    for quantization in ("float16", "dynamic"):  # TFLM runs neither (F24)
        with pytest.raises(ValueError, match=r"`quantization` must be one of \['int8', "
                           rf"'int16x8', 'float32'\] with `ram_kb`.*{quantization}"):
            DeviceBudget(ram_kb=64, quantization=quantization)


def test_the_budget_measures_what_the_trained_model_exports_to(tmp_path):
    """Size before training bounds the trained file's; the RAM estimate is a lower bound."""
    import keras

    import zoo
    from export import to_tflite
    from tuning.budget import DeviceBudget, activation_peak_bytes
    from zoo.builders import build_gru

    data = zoo.load_dataset("italy_power_demand")
    kwargs = dict(input_shape=data.input_shape, num_outputs=2, units=4, num_layers=1)
    budget = DeviceBudget(flash_kb=512, quantization="int8", streaming=True)
    keras.utils.set_random_seed(0)
    before = budget.measure(build_gru("stacked", **kwargs), data.x_train[:32])
    keras.utils.set_random_seed(1)
    model = build_gru("stacked", **kwargs)
    zoo.train(model, data, epochs=2, verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    result = to_tflite(model, tmp_path / "trained.tflite", "int8", data.x_train,
                       streaming=True)
    # The file that ships: the same graph, its int8 weights per-tensor or per-channel
    # depending on the trained weights. The budget counts per-channel, the larger in
    # flash and in TFLM's arena (which holds a multiplier and shift per channel).
    assert result.size <= before["flash_bytes"] <= 1.15 * result.size
    assert before["ram_source"] == "tflm"
    assert result.tflm["arena_bytes"] <= before["ram_bytes"] <= 1.15 * result.tflm["arena_bytes"]
    assert activation_peak_bytes(result.path) <= result.tflm["arena_bytes"]
    assert activation_peak_bytes(result.path) > 0
    budget.measure(model, data.x_train[:32])  # measuring leaves the weights alone
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_models_over_the_budget_never_train_and_the_chosen_one_ships(tmp_path):
    # units 4 fits in 60 KiB as an int8 step file; units 128 (50k weights) cannot.
    budget = {"flash_kb": 60, "quantization": "int8", "streaming": True}
    config = parse_config(budget_raw(tmp_path, [128, 4], budget, enabled=True, epochs=1))
    summary = run_job(config)
    rows = {r["hp:units_0"]: r for r in read_csv(config.output_dir / "trials.csv")}
    assert rows["128"]["status"] == "INFEASIBLE"
    assert float(rows["128"]["cv_folds"]) == 0  # never trained
    assert float(rows["128"]["size_bytes"]) > 60 * 1024
    assert rows["4"]["status"] == "COMPLETED" and float(rows["4"]["size_bytes"]) <= 60 * 1024
    assert summary["cv"]["trainings"] == 2  # only the feasible trial's two folds
    assert summary["budget"]["infeasible"] == [rows["128"]["trial_id"]]
    assert not summary["default_cv"]["feasible"]  # the default (128) is over the budget
    assert summary["best_trial"] == rows["4"]["trial_id"]
    exported = summary["retrain"]["export"]
    assert exported["within_budget"] and exported["flash_bytes"] <= 60 * 1024
    from export import LiteModel

    import keras

    dataset, _, _ = check_job(config)
    keras_model = keras.saving.load_model(config.output_dir / "best_model.keras")
    expected = keras_model.predict(dataset.x_test[:1], verbose=0)[0]
    frames = LiteModel(exported["path"]).stream(dataset.x_test[0])  # the shipped file runs
    np.testing.assert_allclose(frames[-1], expected, atol=0.1)  # int8: within quantization
    assert "(over the budget)" in (config.output_dir / "summary.md").read_text()
    check = summary["retrain"]["fit_check"]  # one epoch: whatever it gives, it is said
    assert check["failed_fit"] == ("failed fit" in (config.output_dir / "summary.md").read_text())


def test_a_failed_final_fit_is_said_in_the_summary_and_on_stderr(tmp_path, capsys):
    from tuning.cli import _print_summary

    config = parse_config(budget_raw(tmp_path, [4], {"flash_kb": 64}))
    summary = {"completed": 1, "trials": 1, "failed": 0, "strategy": "grid",
               "retrain": {"test": {"accuracy": 0.5}, "fit_check": {
                   "metric": "accuracy", "model": 0.5, "failed_fit": True,
                   "baselines": {"most frequent class": 0.52},
                   "not_beaten": ["most frequent class"]}}}
    _print_summary(config, summary)
    err = capsys.readouterr().err
    assert "the retrained model is a failed fit: test accuracy 0.5 does not beat most " \
           "frequent class (0.52); do not ship it" in err


def test_no_configuration_within_the_budget_is_a_failure(tmp_path, capsys):
    from tuning.cli import _print_summary

    config = parse_config(budget_raw(tmp_path, [4], {"flash_kb": 1}))
    summary = run_job(config)
    assert summary["budget"]["no_feasible"] and summary["best_trial"] is None
    assert not (config.output_dir / "best_model.keras").exists()
    assert _print_summary(config, summary) == 1
    assert "no configuration fits the budget (flash <= 1 KiB" in capsys.readouterr().err


def test_a_trial_replaces_the_default_only_with_a_clear_paired_win():
    from tuning.cv import clear_win

    default = [0.80, 0.82, 0.81, 0.79]
    assert clear_win([0.90, 0.91, 0.92, 0.90], default)  # better on every fold
    assert not clear_win([0.95, 0.70, 0.90, 0.80], default)  # a higher mean, by chance
    assert not clear_win(default, default)
    assert clear_win([0.10, 0.11, 0.09, 0.10], [0.20, 0.22, 0.19, 0.21], sign=-1.0)  # losses
    assert not clear_win([0.9], [0.8])  # one fold: no spread to judge by


def test_cv_trials_train_with_the_recipes_batch_size_unless_it_is_searched(tmp_path):
    import zoo
    from tuning.job import make_hypermodel
    from zoo.recipes import choose_recipe

    config = parse_config(cv_raw(tmp_path))
    del config.hypermodel["space"]["batch_size"]
    dataset = zoo.load_dataset("italy_power_demand")
    hypermodel = make_hypermodel(config, dataset)
    assert hypermodel.fixed["batch_size"] == choose_recipe(dataset).train["batch_size"] == 8
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    assert "batch_size" not in hp.values  # not a hyperparameter any more
    config = parse_config(cv_raw(tmp_path))  # the space searches it: kept
    assert "batch_size" not in make_hypermodel(config, dataset).fixed


def test_a_ram_budget_measures_full_sequence_files_in_tflite_micro():
    """With `ram_kb` the full-sequence file's RAM is TFLM's arena, not the lower-bound
    estimate, which misses TFLM's own bookkeeping (tiny models: 0.3 vs 5.4 KiB)."""
    import keras

    import zoo
    from tuning.budget import DeviceBudget
    from zoo.builders import build_gru

    data = zoo.load_dataset("italy_power_demand")
    kwargs = dict(input_shape=data.input_shape, num_outputs=2, units=4, num_layers=1)
    keras.utils.set_random_seed(0)
    model = build_gru("stacked", **kwargs)
    flash_only = DeviceBudget(flash_kb=512, quantization="int8").measure(model, data.x_train[:32])
    with_ram = DeviceBudget(ram_kb=8, quantization="int8").measure(model, data.x_train[:32])
    assert flash_only["ram_source"] == "estimate" and with_ram["ram_source"] == "tflm"
    assert with_ram["ram_bytes"] > 4 * flash_only["ram_bytes"]
    assert DeviceBudget(ram_kb=4, quantization="int8").violations(with_ram)  # 4 KiB: over
    assert not DeviceBudget(ram_kb=64, quantization="int8").violations(with_ram)

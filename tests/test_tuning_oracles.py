"""The genetic and particle-swarm oracles on a cheap synthetic objective, and the factory."""

import json

import keras_tuner
import numpy as np
import pytest

from tuning.oracles import GeneticOracle, ParticleSwarmOracle, with_time_budget
from tuning.tuners import STRATEGIES, check_strategy, make_oracle, make_tuner


def space():
    hp = keras_tuner.HyperParameters()
    hp.Float("x", -5.0, 5.0)
    hp.Float("y", -5.0, 5.0)
    hp.Int("k", 1, 10)
    hp.Choice("shape", ["a", "b", "c"])
    return hp


def bowl(values):
    """Minimum 0 at x=1, y=-2, k=7, shape='b'."""
    return ((values["x"] - 1) ** 2 + (values["y"] + 2) ** 2 + 0.5 * (values["k"] - 7) ** 2
            + (0.0 if values["shape"] == "b" else 2.0))


class FunctionTuner(keras_tuner.Tuner):
    """Runs no model: a trial's result is the synthetic objective of its values."""

    def run_trial(self, trial, *args, **kwargs):
        return {"f": bowl(trial.hyperparameters.values)}


def search(strategy, tmp_path, seed=0, max_trials=48, **options):
    oracle = make_oracle(strategy, objective=keras_tuner.Objective("f", "min"),
                         max_trials=max_trials, seed=seed, hyperparameters=space(), **options)
    tuner = FunctionTuner(oracle=oracle, directory=str(tmp_path), project_name=f"{strategy}{seed}")
    tuner.search(verbose=0)
    return [oracle.trials[t] for t in sorted(oracle.trials, key=int)]


@pytest.mark.parametrize("strategy, options", [
    ("genetic", dict(population_size=8)),
    ("pso", dict(swarm_size=8)),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_improves_over_its_first_generation(tmp_path, strategy, options, seed):
    trials = search(strategy, tmp_path, seed=seed, **options)
    scores = [t.score for t in trials]
    assert len(scores) == 48 and all(t.status == "COMPLETED" for t in trials)
    first, last = scores[:8], scores[-8:]
    # The best found beats the best of the random first generation, and the last
    # generation is better on average than the first one.
    assert min(scores[8:]) < min(first)
    assert np.mean(last) < 0.5 * np.mean(first)


@pytest.mark.parametrize("strategy", ["genetic", "pso"])
def test_same_seed_same_trials(tmp_path, strategy):
    a = [t.hyperparameters.values for t in search(strategy, tmp_path / "a", seed=3, max_trials=16)]
    b = [t.hyperparameters.values for t in search(strategy, tmp_path / "b", seed=3, max_trials=16)]
    c = [t.hyperparameters.values for t in search(strategy, tmp_path / "c", seed=4, max_trials=16)]
    assert a == b
    assert a != c


@pytest.mark.parametrize("strategy", ["genetic", "pso"])
def test_state_survives_a_reload(tmp_path, strategy):
    """A resumed oracle proposes what the uninterrupted one would have."""
    whole = search(strategy, tmp_path / "whole", seed=5, max_trials=14)
    part = search(strategy, tmp_path / "part", seed=5, max_trials=10)
    assert len(part) == 10
    # Resume the 10-trial project with a larger budget: same project, new tuner.
    oracle = make_oracle(strategy, objective=keras_tuner.Objective("f", "min"), max_trials=14,
                         seed=5, hyperparameters=space())
    tuner = FunctionTuner(oracle=oracle, directory=str(tmp_path / "part"),
                          project_name=f"{strategy}5")
    assert len(tuner.oracle.trials) == 10
    state = json.loads((tmp_path / "part" / f"{strategy}5" / "oracle.json").read_text())
    assert len(state["positions"]) == 10
    tuner.search(verbose=0)
    resumed = [oracle.trials[t] for t in sorted(oracle.trials, key=int)]
    assert [t.hyperparameters.values for t in resumed] == \
        [t.hyperparameters.values for t in whole]


def test_conditional_parameters_keep_dormant_genes(tmp_path):
    hp = keras_tuner.HyperParameters()
    hp.Choice("kind", ["small", "big"])
    with hp.conditional_scope("kind", ["big"]):
        hp.Int("width", 1, 100)
    oracle = GeneticOracle(objective=keras_tuner.Objective("f", "min"), max_trials=12,
                           population_size=4, seed=0, hyperparameters=hp)

    class Tuner(keras_tuner.Tuner):
        def run_trial(self, trial, *args, **kwargs):
            v = trial.hyperparameters.values
            return {"f": 0.0 + (v["width"] if v["kind"] == "big" else 50.0)}

    Tuner(oracle=oracle, directory=str(tmp_path), project_name="c").search(verbose=0)
    for trial in oracle.trials.values():
        values = trial.hyperparameters.values
        assert ("width" in values) == (values["kind"] == "big")
        assert set(oracle.positions[trial.trial_id]) == {"kind", "width"}


def test_time_budget_stops_the_search(tmp_path):
    oracle = make_oracle("random", objective=keras_tuner.Objective("f", "min"), max_trials=1000,
                         seed=0, hyperparameters=space(), max_time=0.5)

    class SlowTuner(FunctionTuner):
        def run_trial(self, trial, *args, **kwargs):
            import time

            time.sleep(0.2)
            return super().run_trial(trial)

    tuner = SlowTuner(oracle=oracle, directory=str(tmp_path), project_name="t")
    tuner.search(verbose=0)
    assert 1 <= len(oracle.trials) <= 5
    assert oracle.get_state()["search_seconds"] >= 0.5


def test_a_trial_killed_before_the_oracle_saved_it_is_retried(tmp_path, monkeypatch):
    """keras-tuner writes a new trial's trial.json before oracle.json lists it as
    ongoing; a kill between the two must not leave that trial RUNNING and never run."""
    def oracle(max_trials):
        return make_oracle("random", objective=keras_tuner.Objective("f", "min"),
                           max_trials=max_trials, seed=0, hyperparameters=space())

    first = FunctionTuner(oracle=oracle(1), directory=str(tmp_path), project_name="k")
    first.search(verbose=0)  # trial 0 completes; keras-tuner saves it
    assert [t.status for t in first.oracle.trials.values()] == ["COMPLETED"]
    first.oracle.max_trials = 3
    # The kill: trial 1's trial.json is written, oracle.json is not.
    monkeypatch.setattr(type(first.oracle), "save", lambda self: None)
    killed = first.oracle.create_trial("tuner0")
    monkeypatch.undo()
    assert json.loads((tmp_path / "k" / f"trial_{killed.trial_id}" / "trial.json")
                      .read_text())["status"] == "RUNNING"

    resumed = FunctionTuner(oracle=oracle(3), directory=str(tmp_path), project_name="k")
    resumed.search(verbose=0)
    trials = resumed.oracle.trials
    assert len(trials) == 3 and all(t.status == "COMPLETED" for t in trials.values())
    assert trials[killed.trial_id].hyperparameters.values == killed.hyperparameters.values


def test_factory_knows_every_strategy():
    assert STRATEGIES == ("random", "bayesian", "hyperband", "grid", "genetic", "pso")
    for strategy in STRATEGIES:
        oracle = make_oracle(strategy, objective="val_loss", max_trials=3, max_epochs=3, seed=0)
        assert isinstance(oracle, keras_tuner.Oracle)
    assert isinstance(make_oracle("genetic", objective="val_loss", seed=0), GeneticOracle)
    assert isinstance(make_oracle("pso", objective="val_loss", seed=0), ParticleSwarmOracle)
    budgeted = with_time_budget(keras_tuner.oracles.RandomSearchOracle)
    assert issubclass(budgeted, keras_tuner.oracles.RandomSearchOracle)


def test_factory_tuner_runs_hyperband_with_its_tuner(tmp_path):
    tuner = make_tuner("hyperband", lambda hp: None, objective="val_loss", epochs=3,
                       directory=str(tmp_path))
    assert isinstance(tuner, keras_tuner.Hyperband)
    assert isinstance(tuner.oracle, keras_tuner.oracles.HyperbandOracle)
    tuner = make_tuner("pso", lambda hp: None, objective="val_loss", directory=str(tmp_path),
                       project_name="p", swarm_size=3)
    assert isinstance(tuner.oracle, ParticleSwarmOracle) and tuner.oracle.swarm_size == 3


@pytest.mark.parametrize("call, fragment", [
    (lambda: check_strategy("annealing"), "`strategy` must be one of"),
    (lambda: check_strategy("genetic", {"swarm_size": 4}),
     "Unknown option(s) ['swarm_size'] for strategy 'genetic'"),
    (lambda: make_oracle("hyperband", objective="val_loss"), "`max_epochs` must be a positive int"),
    (lambda: GeneticOracle(objective="val_loss", population_size=1), "population_size=1"),
    (lambda: GeneticOracle(objective="val_loss", mutation_rate=1.5), "mutation_rate=1.5"),
    (lambda: ParticleSwarmOracle(objective="val_loss", max_velocity=0), "max_velocity=0"),
    (lambda: ParticleSwarmOracle(objective="val_loss", swarm_size=0), "swarm_size=0"),
    (lambda: make_oracle("random", objective="val_loss", max_time=-1), "max_time=-1"),
])
def test_bad_strategy_arguments(call, fragment):
    with pytest.raises(ValueError) as info:
        call()
    assert fragment in str(info.value)


def test_bayesian_never_repeats_a_trial(tmp_path):
    """keras-tuner's GP oracle alone re-proposes its best point on discrete spaces."""
    hp = keras_tuner.HyperParameters()
    hp.Int("k", 1, 6)
    hp.Choice("shape", ["a", "b"])
    oracle = make_oracle("bayesian", objective=keras_tuner.Objective("f", "min"), max_trials=10,
                         seed=0, hyperparameters=hp, num_initial_points=2)

    class Tuner(keras_tuner.Tuner):
        def run_trial(self, trial, *args, **kwargs):
            v = trial.hyperparameters.values
            return {"f": (v["k"] - 4) ** 2 + (v["shape"] == "a")}

    Tuner(oracle=oracle, directory=str(tmp_path), project_name="b").search(verbose=0)
    values = [json.dumps(t.hyperparameters.values, sort_keys=True)
              for t in oracle.trials.values()]
    assert len(values) == 10 and len(set(values)) == 10


def test_keras_tuner_state_files_are_written_atomically(tmp_path, monkeypatch):
    """A write that dies half-way leaves the previous state file whole."""
    import json
    import os

    import tuning.oracles  # noqa: F401 (installs the atomic writer)
    from keras_tuner.src import utils

    path = tmp_path / "oracle.json"
    utils.save_json(str(path), {"trials": [1, 2]})
    assert json.loads(path.read_text()) == {"trials": [1, 2]}

    def killed(src, dst):
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        utils.save_json(str(path), {"trials": [1, 2, 3]})
    assert json.loads(path.read_text()) == {"trials": [1, 2]}  # the old state, readable

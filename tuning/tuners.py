"""The tuner factory: one name per search strategy, keras-tuner's tuners to run them.

`make_oracle(strategy, ...)` returns the oracle (the part that decides);
`make_tuner(strategy, hypermodel, ...)` wires it to a keras-tuner `Tuner` (the part
that runs trials). Strategies:

- `random`: `keras_tuner.oracles.RandomSearchOracle`; no options.
- `bayesian`: `tuning.oracles.UniqueBayesianOptimizationOracle` (keras-tuner's Gaussian
  process, never repeating a tried configuration); num_initial_points, alpha, beta.
- `hyperband`: `keras_tuner.oracles.HyperbandOracle`; factor, hyperband_iterations.
- `grid`: `keras_tuner.oracles.GridSearchOracle`; no options.
- `genetic`: `tuning.oracles.GeneticOracle`; population_size, mutation_rate,
  mutation_scale, crossover_rate, tournament_size.
- `pso`: `tuning.oracles.ParticleSwarmOracle`; swarm_size, inertia, cognitive, social,
  max_velocity.

Every oracle also takes `max_time` (seconds; see `oracles.with_time_budget`).
Hyperband sizes its own brackets from `max_epochs` and ignores `max_trials`.
"""

import keras_tuner

from tuning.oracles import (
    GeneticOracle,
    ParticleSwarmOracle,
    UniqueBayesianOptimizationOracle,
    with_default_first,
    with_time_budget,
)
from zoo.checks import (
    check,
    is_non_negative_number,
    is_positive_int,
    is_positive_number,
    plain,
)

STRATEGY_OPTIONS = {
    "random": (),
    "bayesian": ("num_initial_points", "alpha", "beta"),
    "hyperband": ("factor", "hyperband_iterations"),
    "grid": (),
    "genetic": ("population_size", "mutation_rate", "mutation_scale", "crossover_rate",
                "tournament_size"),
    "pso": ("swarm_size", "inertia", "cognitive", "social", "max_velocity"),
}
STRATEGIES = tuple(STRATEGY_OPTIONS)


def _is_probability(value):
    return is_non_negative_number(value) and value <= 1


# strategy -> option -> (check, what is allowed): keras-tuner's own limits (Hyperband's
# `factor < 2` error, Bayesian optimization's Gaussian process fitted on no points when
# `num_initial_points` is negative) and those of `GeneticOracle` / `ParticleSwarmOracle`,
# checked before any oracle exists or any file is written.
OPTION_RULES = {
    "bayesian": {
        "num_initial_points": (lambda v: v is None or is_positive_int(v),
                               "a positive int (random trials before the Gaussian process "
                               "proposes) or None (keras-tuner's default, 3 per "
                               "hyperparameter)"),
        "alpha": (is_positive_number, "a positive float (noise added to the kernel)"),
        "beta": (is_non_negative_number, "a float >= 0 (the exploration weight)"),
    },
    "hyperband": {
        "factor": (lambda v: is_positive_int(v) and v >= 2, "an int >= 2"),
        "hyperband_iterations": (is_positive_int, "a positive int"),
    },
    "genetic": {
        "population_size": (lambda v: is_positive_int(v) and v >= 2, "an int >= 2"),
        "mutation_rate": (_is_probability, "a float in [0, 1]"),
        "mutation_scale": (is_positive_number, "a positive float"),
        "crossover_rate": (_is_probability, "a float in [0, 1]"),
        "tournament_size": (is_positive_int, "a positive int"),
    },
    "pso": {
        "swarm_size": (is_positive_int, "a positive int"),
        "inertia": (is_non_negative_number, "a float >= 0"),
        "cognitive": (is_non_negative_number, "a float >= 0"),
        "social": (is_non_negative_number, "a float >= 0"),
        "max_velocity": (is_positive_number, "a positive float"),
    },
}


def option_error(strategy, options):
    """`(name, value, allowed)` of the first bad strategy option value, or `None`."""
    rules = OPTION_RULES.get(strategy, {})
    for name, value in (options or {}).items():
        if name in rules and not rules[name][0](value):
            return name, value, f"{rules[name][1]} for strategy {strategy!r}"
    return None

_ORACLE_CLASSES = {
    "random": keras_tuner.oracles.RandomSearchOracle,
    "bayesian": UniqueBayesianOptimizationOracle,
    "hyperband": keras_tuner.oracles.HyperbandOracle,
    "grid": keras_tuner.oracles.GridSearchOracle,
    "genetic": GeneticOracle,
    "pso": ParticleSwarmOracle,
}
_BUDGETED = {name: with_time_budget(cls) for name, cls in _ORACLE_CLASSES.items()}
# Grid search already starts from the defaults; Hyperband's brackets own every trial.
DEFAULT_FIRST = ("random", "bayesian", "genetic", "pso", "grid")
_DEFAULT_FIRST = {name: with_time_budget(with_default_first(cls))
                  for name, cls in _ORACLE_CLASSES.items() if name not in ("grid", "hyperband")}
_DEFAULT_FIRST["grid"] = _BUDGETED["grid"]


def check_strategy(strategy, options=None):
    """Raises a `ValueError` naming the bad strategy, option or option value."""
    if strategy not in STRATEGY_OPTIONS:
        raise ValueError(
            f"`strategy` must be one of {list(STRATEGIES)}. Received: strategy={strategy!r}")
    unknown = sorted(set(options or {}) - set(STRATEGY_OPTIONS[strategy]))
    if unknown:
        allowed = list(STRATEGY_OPTIONS[strategy]) or "none"
        raise ValueError(
            f"Unknown option(s) {unknown} for strategy {strategy!r}; allowed: {allowed}. "
            f"Received: {', '.join(f'{k}={options[k]!r}' for k in unknown)}")
    bad = option_error(strategy, options)
    if bad:
        name, value, allowed = bad
        check(name, value, False, allowed)


def _logged_metrics(hypermodel):
    """The metrics a `GRUHyperModel`'s trials log (`None` for other hypermodels, or
    one compiled with its own `metrics`)."""
    from tuning.hypermodels import GRUHyperModel
    from zoo.builders import default_loss_and_metrics

    if not isinstance(hypermodel, GRUHyperModel) or "metrics" in hypermodel.fixed:
        return None
    _, metrics = default_loss_and_metrics(hypermodel.task, hypermodel.num_outputs)
    names = ["loss"] + [m if isinstance(m, str) else m.name for m in metrics]
    return names + [f"val_{n}" for n in names]


def check_objective(objective, hypermodel=None):
    """Refuses a metric-name objective keras-tuner cannot infer a direction for.

    keras-tuner only knows whether to minimize or maximize built-in metric names
    (`loss`, `accuracy`, `mae`, ... with or without `val_`); any other name fails deep
    inside it ("Could not infer optimization direction"). This says which argument and
    value, and what is allowed: for a `GRUHyperModel`, the metrics its trials log.
    """
    from keras_tuner.src.engine.metrics_tracking import infer_metric_direction

    names = objective if isinstance(objective, (list, tuple)) else [objective]
    logged = _logged_metrics(hypermodel)
    for name in names:
        if isinstance(name, str) and infer_metric_direction(name) is None:
            known = ("" if logged is None else
                     f"; this hypermodel's trials log {logged}")
            raise ValueError(
                "`objective` must be a metric name whose direction keras-tuner knows "
                "(built-in metrics such as 'loss', 'accuracy', 'mae', with or without a "
                f"'val_' prefix{known}), or a `keras_tuner.Objective(name, direction)` for "
                f"any other metric. Received: objective={objective!r}")


def make_oracle(strategy, *, objective, max_trials=10, max_epochs=None, seed=None,
                max_time=None, hyperparameters=None, max_retries_per_trial=0,
                max_consecutive_failed_trials=3, default_first=False, **options):
    """Returns the oracle of a strategy.

    Args:
        strategy: str, one of `STRATEGIES`.
        objective: a `keras_tuner.Objective` or a metric name.
        max_trials: int, trials at most (not used by Hyperband).
        max_epochs: int, Hyperband's largest training budget (required for it).
        seed: int or `None`.
        max_time: seconds of search at most, or `None`.
        hyperparameters: optional `keras_tuner.HyperParameters` registered first.
        max_retries_per_trial, max_consecutive_failed_trials: as in keras-tuner.
        default_first: bool, make the first trial the default configuration (every
            strategy in `DEFAULT_FIRST`; Hyperband cannot, and raises).
        **options: strategy options (see the module table).
    """
    check_strategy(strategy, options)
    check_objective(objective)
    # NumPy scalars as plain numbers: the oracle's state is JSON.
    options = {k: plain(v) for k, v in options.items()}
    # keras-tuner runs no trial, without a word, for max_trials <= 0.
    check("max_trials", max_trials, is_positive_int(max_trials), "a positive int")
    max_trials = int(max_trials)
    if seed is not None and strategy not in ("genetic", "pso"):
        # keras-tuner's oracles read a seed of 0 as "no seed": shift by one.
        seed = seed + 1
    kwargs = dict(objective=objective, seed=seed, hyperparameters=hyperparameters,
                  max_retries_per_trial=max_retries_per_trial,
                  max_consecutive_failed_trials=max_consecutive_failed_trials,
                  max_time=max_time, **options)
    if strategy == "hyperband":
        check("max_epochs", max_epochs, is_positive_int(max_epochs),
              "a positive int for strategy 'hyperband'")
        kwargs["max_epochs"] = int(max_epochs)
    else:
        kwargs["max_trials"] = max_trials
    if default_first:
        if strategy not in DEFAULT_FIRST:
            raise ValueError(
                f"`default_first=True` works with strategies {list(DEFAULT_FIRST)}: "
                f"Hyperband's brackets choose every trial. Received: strategy={strategy!r}")
        return _DEFAULT_FIRST[strategy](**kwargs)
    return _BUDGETED[strategy](**kwargs)


class HyperbandTuner(keras_tuner.Hyperband):
    """keras-tuner's Hyperband tuner (epoch budgets, warm starts) around a given oracle."""

    def __init__(self, oracle, hypermodel=None, **kwargs):
        # `keras_tuner.Hyperband.__init__` only builds its own oracle; skip to `Tuner`.
        keras_tuner.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)


def make_tuner(strategy, hypermodel, *, objective, max_trials=10, epochs=None, seed=None,
               max_time=None, directory=None, project_name="search", overwrite=False,
               executions_per_trial=1, max_retries_per_trial=0,
               max_consecutive_failed_trials=3, **options):
    """Returns a keras-tuner tuner that runs `hypermodel` with a strategy's oracle.

    Args:
        strategy: str, one of `STRATEGIES`.
        hypermodel: a `keras_tuner.HyperModel` (e.g. `GRUHyperModel`).
        objective: a `keras_tuner.Objective` or a metric name.
        max_trials: int. Defaults to `10`.
        epochs: int, Hyperband's `max_epochs` (other strategies take epochs in
            `tuner.search(..., epochs=...)`).
        seed, max_time, max_retries_per_trial, max_consecutive_failed_trials:
            see `make_oracle`.
        directory, project_name, overwrite, executions_per_trial: as in keras-tuner.
            With `overwrite=False` an existing project is resumed.
        **options: strategy options.

    Returns:
        A `keras_tuner.Tuner` (`HyperbandTuner` for Hyperband).
    """
    check_objective(objective, hypermodel)
    oracle = make_oracle(strategy, objective=objective, max_trials=max_trials,
                         max_epochs=epochs, seed=seed, max_time=max_time,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials,
                         **options)
    tuner_class = HyperbandTuner if strategy == "hyperband" else keras_tuner.Tuner
    return tuner_class(oracle=oracle, hypermodel=hypermodel, directory=directory,
                       project_name=project_name, overwrite=overwrite,
                       executions_per_trial=executions_per_trial)


class GeneticSearch(keras_tuner.Tuner):
    """A genetic-algorithm tuner, like `keras_tuner.RandomSearch` (see `GeneticOracle`)."""

    def __init__(self, hypermodel=None, objective=None, max_trials=20, seed=None,
                 population_size=8, mutation_rate=0.2, mutation_scale=0.15,
                 crossover_rate=0.9, tournament_size=2, hyperparameters=None, **kwargs):
        oracle = GeneticOracle(objective=objective, max_trials=max_trials, seed=seed,
                               population_size=population_size, mutation_rate=mutation_rate,
                               mutation_scale=mutation_scale, crossover_rate=crossover_rate,
                               tournament_size=tournament_size,
                               hyperparameters=hyperparameters)
        super().__init__(oracle, hypermodel, **kwargs)


class ParticleSwarmSearch(keras_tuner.Tuner):
    """A particle-swarm tuner, like `keras_tuner.RandomSearch` (see `ParticleSwarmOracle`)."""

    def __init__(self, hypermodel=None, objective=None, max_trials=20, seed=None,
                 swarm_size=6, inertia=0.6, cognitive=1.5, social=1.5, max_velocity=0.3,
                 hyperparameters=None, **kwargs):
        oracle = ParticleSwarmOracle(objective=objective, max_trials=max_trials, seed=seed,
                                     swarm_size=swarm_size, inertia=inertia,
                                     cognitive=cognitive, social=social,
                                     max_velocity=max_velocity,
                                     hyperparameters=hyperparameters)
        super().__init__(oracle, hypermodel, **kwargs)

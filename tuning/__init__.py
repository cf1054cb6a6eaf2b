"""gru-zoo tuning: keras-tuner searches over the zoo's GRU models.

- `GRUHyperModel`: maps keras-tuner hyperparameters to `zoo.build_gru` arguments
  (one variant, or `variant=None` to search variants and cells too).
- `GeneticOracle`, `ParticleSwarmOracle`: evolutionary and particle-swarm search as
  keras-tuner oracles; `make_oracle` / `make_tuner` for every strategy
  (`STRATEGIES`: random, bayesian, hyperband, grid, genetic, pso).
- `Objective`: a Keras metric, optionally penalized or limited by TFLite size and
  latency; `pareto_front`.
- `load_config` / `run_job`: TOML tuning jobs (results, retrained best model,
  resume, distributed chief/worker); `launch`: a chief and N workers on one machine.
- `CrossValidatedTuner` / `make_cv_tuner`: trials that are k-fold cross-validations
  with the dataset recipe's training protocol (`[cv]` in a job), with pruning, a fold
  cache and a time budget.
- `DeviceBudget`: flash / RAM / latency limits measured on the exported file; over-budget
  models never train (`[budget]` in a job).
"""

import importlib

# Imported on first use, so that `gru-zoo` (which loads `tuning.cli`) starts without
# importing TensorFlow.
_EXPORTS = {
    "JobConfig": "tuning.config", "load_config": "tuning.config",
    "parse_config": "tuning.config",
    "GRUHyperModel": "tuning.hypermodels", "default_hyperparameters": "tuning.hypermodels",
    "check_job": "tuning.job", "run_job": "tuning.job",
    "launch": "tuning.launcher",
    "Objective": "tuning.objectives", "measure_model": "tuning.objectives",
    "pareto_front": "tuning.objectives",
    "GeneticOracle": "tuning.oracles", "ParticleSwarmOracle": "tuning.oracles",
    "with_time_budget": "tuning.oracles",
    "STRATEGIES": "tuning.tuners", "GeneticSearch": "tuning.tuners",
    "HyperbandTuner": "tuning.tuners", "ParticleSwarmSearch": "tuning.tuners",
    "make_oracle": "tuning.tuners", "make_tuner": "tuning.tuners",
    "CrossValidatedTuner": "tuning.cv", "make_cv_tuner": "tuning.cv",
    "make_folds": "tuning.cv", "DeviceBudget": "tuning.budget",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")

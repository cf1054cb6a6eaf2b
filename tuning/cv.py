"""Cross-validated trials: k folds trained with the zoo's recipe, one keras-tuner `Tuner`.

A trial of `CrossValidatedTuner` is not one `model.fit` scored on a small validation
split (which, on GunPoint's 10 or ItalyPowerDemand's 14 validation series, cannot tell
configurations apart) but k trainings, one per fold of train+validation, each with
`zoo.train` and the training protocol of the dataset's recipe (`zoo.recipes.choose_recipe`:
the same epochs, batch size, decay, patience, class weights and `fit_on` rule that
`gru-zoo train` uses). The trial's score is the mean of the held-out folds' scores; the
spread (`<objective>_std`) and every fold's score (`cv_fold_<i>`) are in its metrics.

Folds (`make_folds`):

- classification: stratified k-fold (scikit-learn's `StratifiedKFold`; scikit-learn is
  already a dependency for keras-tuner's Bayesian oracle): every class is spread over
  every fold; `repeats > 1` reshuffles for repeated k-fold, for tiny data;
- forecasting (windows of one series: `zoo.recipes.profile(dataset)["forecasting"]`):
  expanding-window, time-ordered folds (`TimeSeriesSplit`): each fold trains on the
  windows before its held-out block, with `gap` windows left out between them so that
  no training target overlaps a held-out target (`gap="auto"`: horizon - 1);
- other tasks: shuffled k-fold.

The test split is never part of any fold: the tuner only sees what `search(x, y)` gets
(train+validation in `tuning.job`).

Protocol per fold, from the recipe's `fit_on`:

- `"train+val"` (small validation splits): the model trains on the fold's whole training
  part for the fixed number of epochs, keeping the lowest training loss, exactly as
  `zoo.train(..., fit_on="train+val")` does on the full data;
- `"train"`: early stopping needs a validation split that is not the held-out fold (it
  would pick the epoch on the data that scores it), so an inner part of the fold's
  training data stops it: stratified for classification, the last windows for
  forecasting.

Budget:

- pruning (successive halving over folds): after `prune_after` folds, a trial whose
  folds so far are worse than the same folds of the best finished trial by more than
  `prune_margin` (paired comparison; `"auto"`: the best trial's own fold spread) stops.
  It is reported as pruned (`cv_pruned = 1`; the job's results say `PRUNED`), with the
  mean of the folds it ran as its score, so every oracle still learns from it;
- `max_time_s`: no trial starts after the budget (the oracle's `max_time`, carried across
  resumes), and a running trial stops between folds when it runs out; it is left for a
  resume, which reruns only its missing folds;
- a cache (`cv_cache.json` beside the search): one entry per fold, keyed by a hash of the
  model's `build_gru` arguments, the protocol, the fold's indices, the seed and a
  fingerprint of the data, so a configuration is never trained twice: not by a repeated
  proposal, not by a resumed or restarted search, not by a later job on the same data.

Hyperband: keras-tuner's `tuner/epochs` becomes the epochs of every fold (its
`max_epochs` is the protocol's epochs). Folds are trained from scratch at each budget:
a fold's weights cannot warm-start another configuration's fold, so the epochs a lower
rung spent are not reused (they are cached, at that budget).
"""

import contextlib
import hashlib
import json
import math
import os
import pathlib
import time

import keras
import keras_tuner
import numpy as np

from zoo.checks import (
    fail,
    is_bool,
    is_fraction,
    is_non_negative_int,
    is_number,
    is_positive_int,
)
from zoo.fileio import write_json

CACHE_NAME = "cv_cache.json"
# Inputs that calibrate an untrained model's int8 export when a budget measures it.
CALIBRATION_SAMPLES = 32
CV_KEYS = ("enabled", "folds", "repeats", "prune", "prune_after", "prune_margin",
           "max_time_s", "cache", "epochs", "gap", "min_improvement")
# keras-tuner's Hyperband bookkeeping values: not part of a model's configuration.
_TUNER_HPS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round",
              "tuner/trial_id")


# === Folds ===
class Fold:
    """One fold: `train` (indices trained on), `held_out` (indices scored), `repeat`, `index`."""

    def __init__(self, train, held_out, repeat, index):
        self.train = np.asarray(train, dtype=np.int64)
        self.held_out = np.asarray(held_out, dtype=np.int64)
        self.repeat = int(repeat)
        self.index = int(index)

    @property
    def number(self):
        return self.repeat, self.index

    def __repr__(self):
        return (f"Fold(repeat={self.repeat}, index={self.index}, train={len(self.train)}, "
                f"held_out={len(self.held_out)})")


def class_labels(y):
    """Class indices of classification targets (indices, one-hot rows or 0/1 columns)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1).astype(np.int64)
    return np.rint(y.reshape(len(y), -1)[:, 0]).astype(np.int64)


def stratified_folds(y, folds, *, seed=0, repeats=1):
    """Stratified k-fold (repeated `repeats` times, reshuffled): a list of `Fold`s.

    Every class has members in every held-out fold; the held-out folds of one repeat
    are disjoint and cover every sample.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = class_labels(y)
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if len(labels) else 0
    if not is_positive_int(folds) or folds < 2 or folds > smallest:
        fail("folds", folds, f"an int from 2 to {smallest} (the smallest class has "
             f"{smallest} samples, and every fold needs one of each class)")
    result = []
    for repeat in range(repeats):
        splitter = StratifiedKFold(n_splits=folds, shuffle=True,
                                   random_state=int(seed) * 7919 + repeat)
        for index, (train, held_out) in enumerate(splitter.split(np.zeros(len(labels)),
                                                                 labels)):
            result.append(Fold(train, held_out, repeat, index))
    return result


def shuffled_folds(n, folds, *, seed=0, repeats=1):
    """Plain shuffled k-fold for tasks without classes or time order."""
    from sklearn.model_selection import KFold

    if not is_positive_int(folds) or folds < 2 or folds > n:
        fail("folds", folds, f"an int from 2 to {n} (the number of samples)")
    result = []
    for repeat in range(repeats):
        splitter = KFold(n_splits=folds, shuffle=True, random_state=int(seed) * 7919 + repeat)
        for index, (train, held_out) in enumerate(splitter.split(np.zeros(n))):
            result.append(Fold(train, held_out, repeat, index))
    return result


def expanding_window_folds(n, folds, *, gap=0, test_size=None):
    """Time-ordered folds: fold i trains on every sample before its held-out block.

    Held-out blocks of `test_size` samples (default `(n - gap) // (folds + 1)`) end at the
    last sample; `gap` samples between a training part and its block are left out.
    Samples must be in time order (as `zoo` forecasting datasets are).
    """
    from sklearn.model_selection import TimeSeriesSplit

    if not is_non_negative_int(gap):
        fail("gap", gap, "a non-negative int (samples left out before each held-out block)")
    if not is_positive_int(folds) or folds < 2:
        fail("folds", folds, "an int >= 2")
    if test_size is None:
        test_size = (n - gap) // (folds + 1)
    first_train = n - folds * test_size - gap
    if test_size < 1 or first_train < max(2, test_size // 2):
        most = max(1, (n - gap - 2) // max(test_size, 1)) if test_size >= 1 else 0
        raise ValueError(
            f"`folds` must leave the first fold enough training windows: {n} time-ordered "
            f"samples, held-out blocks of {test_size} and a gap of {gap} leave "
            f"{first_train} for the first fold (at least {max(2, test_size // 2)} needed); "
            f"use at most {max(most - 1, 2) if most > 2 else 2} folds or more data. "
            f"Received: folds={folds}")
    splitter = TimeSeriesSplit(n_splits=folds, gap=gap, test_size=test_size)
    return [Fold(train, held_out, 0, index)
            for index, (train, held_out) in enumerate(splitter.split(np.zeros(n)))]


def make_folds(y, *, task="classification", time_ordered=False, folds=5, repeats=1, seed=0,
               gap=0, test_size=None):
    """The folds of `search(x, y)`'s data for a task (see the module docstring)."""
    if not is_positive_int(repeats):
        fail("repeats", repeats, "a positive int")
    n = len(y)
    if time_ordered:
        if repeats != 1:
            fail("repeats", repeats, "1 for time-ordered (forecasting) folds: they are "
                 "fixed by the time order, so a repeat would train the same folds again")
        return expanding_window_folds(n, folds, gap=gap, test_size=test_size)
    if task == "classification":
        return stratified_folds(y, folds, seed=seed, repeats=repeats)
    return shuffled_folds(n, folds, seed=seed, repeats=repeats)


def inner_split(fold, y, *, task, time_ordered, fraction, seed=0, size=None):
    """`(fit, stop)` indices: an early-stopping part of a fold's training data.

    Time-ordered: the last `size` training samples (default `fraction` of them).
    Classification: a stratified `fraction` (at least one per class, never a class's
    last sample). Otherwise a random `fraction`.
    """
    train = fold.train
    if time_ordered:
        size = size or max(1, int(round(len(train) * fraction)))
        size = min(size, len(train) - 1)
        return train[:-size], train[-size:]
    rng = np.random.default_rng([int(seed), fold.repeat, fold.index, 17])
    if task == "classification":
        labels = class_labels(np.asarray(y)[train])
        fit, stop = [], []
        for label in np.unique(labels):
            members = rng.permutation(train[labels == label])
            cut = min(max(1, int(round(len(members) * fraction))), max(len(members) - 1, 0))
            stop.extend(members[:cut])
            fit.extend(members[cut:])
        return np.sort(np.asarray(fit, np.int64)), np.sort(np.asarray(stop, np.int64))
    order = rng.permutation(train)
    cut = min(max(1, int(round(len(train) * fraction))), len(train) - 1)
    return np.sort(order[cut:]), np.sort(order[:cut])


def is_forecasting(dataset):
    """Whether a `zoo.Dataset` holds windows of one series (the recipe's own test)."""
    from zoo.recipes import profile

    return bool(profile(dataset)["forecasting"])


def data_fingerprint(x, y):
    """sha256 (16 hex digits) of the arrays' shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    for array in (x, y):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}|{array.dtype}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _indices_hash(*arrays):
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.asarray(array, np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]


# === The protocol ===
def recipe_protocol(dataset, variant=None, epochs=None):
    """The `zoo.train` arguments of the dataset's recipe (`choose_recipe(...).train`).

    `epochs` replaces the recipe's epochs (a cheaper search); with `fit_on="train+val"`
    the patience follows it (a fixed schedule: nothing to stop on).
    """
    from zoo.recipes import choose_recipe

    recipe = choose_recipe(dataset, variant=variant)
    protocol = dict(recipe.train)
    if epochs is not None:
        protocol["epochs"] = int(epochs)
        if protocol["fit_on"] == "train+val":
            protocol["patience"] = int(epochs)
        else:
            protocol["patience"] = min(int(protocol["patience"]), int(epochs))
    return protocol


_PROTOCOL_KEYS = ("epochs", "batch_size", "patience", "lr_decay", "fit_on", "class_weight")


def _check_protocol(protocol):
    if not isinstance(protocol, dict):
        fail("protocol", protocol, f"a dict of zoo.train arguments {list(_PROTOCOL_KEYS)}")
    unknown = sorted(set(protocol) - set(_PROTOCOL_KEYS))
    if unknown:
        fail("protocol", protocol, f"a dict with keys from {list(_PROTOCOL_KEYS)} "
             f"(unknown: {unknown})")
    full = {"epochs": 100, "batch_size": 32, "patience": 40, "lr_decay": "plateau",
            "fit_on": "train", "class_weight": None}
    try:
        from zoo.recipes import TRAIN_DEFAULTS

        full.update(TRAIN_DEFAULTS)
    except ImportError:  # pragma: no cover
        pass
    full.update(protocol)
    if full["fit_on"] not in ("train", "train+val"):
        fail("protocol['fit_on']", full["fit_on"], "'train' or 'train+val'")
    return full


# === The cache ===
class FoldCache:
    """A JSON file of fold results keyed by hash; safe for several processes.

    Reads see a whole file (writes go to a temporary file and `os.replace`); writes
    re-read the file under an exclusive `fcntl` lock and merge, so distributed workers
    sharing a directory never lose each other's entries.
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.hits = 0
        self.misses = 0

    def _read(self):
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    @contextlib.contextmanager
    def _locked(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(str(self.path) + ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get(self, key):
        value = self._read().get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key, value):
        with self._locked():
            entries = self._read()
            entries[key] = value
            write_json(self.path, entries, indent=1, sort_keys=True)

    def __len__(self):
        return len(self._read())


class _OutOfTime(keras_tuner.errors.FatalError):
    """Raised between folds when `max_time_s` is spent; ends the search, not the job."""


# === The tuner ===
class CrossValidatedTuner(keras_tuner.Tuner):
    """A keras-tuner `Tuner` whose trials are k-fold cross-validations (module docstring).

    Use it like any tuner: `tuner.search(x, y)` with the data to cross-validate
    (train+validation; never the test split). It works with any oracle (every strategy
    of `tuning.tuners.make_oracle`), resumes with `overwrite=False`, and runs in
    keras-tuner's distributed mode (trials go to workers; the fold cache is shared).

    Args:
        oracle: a `keras_tuner.Oracle`; its objective must be `objective`'s.
        hypermodel: a `tuning.GRUHyperModel` (its `build_kwargs(hp)` gives the model).
        objective: a `tuning.Objective` whose metric is a held-out metric (`val_loss`,
            `val_accuracy`, ...; held-out folds play the validation split).
        protocol: dict of `zoo.train` arguments (`recipe_protocol(dataset)`): epochs,
            batch_size, patience, lr_decay, fit_on, class_weight. A trial's
            `batch_size` hyperparameter, when it has one, replaces the protocol's.
        task: the hypermodel's task (for stratification). Defaults to its `task`.
        time_ordered: bool, expanding-window folds (forecasting data).
        folds: int >= 2. Defaults to `5`.
        repeats: int >= 1, repeated k-fold (reshuffled folds, other weight seeds).
        gap: int >= 0, samples left out before each time-ordered held-out block.
        test_size: int or `None`, size of each time-ordered held-out block.
        inner_fraction: float in (0, 1), the early-stopping part of a fold's training
            data when `protocol["fit_on"] == "train"`. Defaults to `0.2`.
        prune: bool, stop clearly worse trials after `prune_after` folds.
        prune_after: int >= 1. Defaults to `2`.
        prune_margin: float >= 0 or `"auto"` (the best trial's fold standard deviation).
        max_time_s: float or `None`: seconds of search; a trial running when it is
            spent stops between folds and is left for a resume.
        cache: bool or a path: the fold cache (`True`: `directory/cv_cache.json`).
        use_export: bool, measure size on the exported TFLite file when the objective
            has a size term or limit (as `ModelCostCallback`).
        seed: int, seeds the folds and every fold's weights and shuffling.
        min_improvement: float >= 0 or `"auto"`: how much better than the default
            configuration's CV score a trial must be to replace it (`choose_best`);
            `"auto"`: its paired fold differences must clear two standard errors
            (`clear_win`).
        budget: a `tuning.budget.DeviceBudget` or `None`. With one, every trial's model
            is exported in the budget's form and measured before it trains; a model over
            the budget is infeasible: it never trains, its trial completes at once with
            a score worse than any feasible one (so every oracle learns to avoid it) and
            `budget_feasible = 0`; `size_bytes` is then the budget form's file size.
        final_protocol: the `zoo.train` arguments of the final training of the chosen
            configuration (`final_fit_protocol`); defaults to `protocol`.
        **kwargs: `keras_tuner.Tuner` arguments (directory, project_name, overwrite).
    """

    def __init__(self, oracle, hypermodel, *, objective, protocol, task=None,
                 time_ordered=False, folds=5, repeats=1, gap=0, test_size=None,
                 inner_fraction=0.2, prune=True, prune_after=2, prune_margin="auto",
                 max_time_s=None, cache=True, use_export=True, seed=0, min_improvement=0.0,
                 budget=None, final_protocol=None, **kwargs):
        self.protocol = _check_protocol(protocol)
        if not is_positive_int(folds) or folds < 2:
            fail("folds", folds, "an int >= 2")
        if not is_positive_int(repeats):
            fail("repeats", repeats, "a positive int")
        if not is_bool(prune):
            fail("prune", prune, "true or false")
        if not is_positive_int(prune_after):
            fail("prune_after", prune_after, "a positive int")
        if not (prune_margin == "auto" or (is_number(prune_margin) and prune_margin >= 0)):
            fail("prune_margin", prune_margin, "a number >= 0 or 'auto'")
        if max_time_s is not None and not (is_number(max_time_s) and max_time_s > 0):
            fail("max_time_s", max_time_s, "a positive number of seconds or None")
        if not is_fraction(inner_fraction):
            fail("inner_fraction", inner_fraction, "a float in (0, 1)")
        if kwargs.get("executions_per_trial", 1) != 1:
            fail("executions_per_trial", kwargs["executions_per_trial"],
                 "1 with cross-validation (use `repeats` for repeated k-fold)")
        super().__init__(oracle, hypermodel, **kwargs)
        self.objective = objective
        self.task = task or getattr(hypermodel, "task", "classification")
        self.time_ordered = bool(time_ordered)
        self.folds = int(folds)
        self.repeats = int(repeats)
        self.gap = int(gap)
        self.test_size = test_size
        self.inner_fraction = float(inner_fraction)
        self.prune = bool(prune)
        self.prune_after = int(prune_after)
        self.prune_margin = prune_margin
        self.max_time_s = max_time_s
        self.use_export = use_export
        self.seed = int(seed)
        self.min_improvement = min_improvement if min_improvement == "auto" \
            else float(min_improvement)
        self.budget = budget
        # The final training's protocol: the recipe's full epochs, when `protocol` is
        # a cheaper one for the search (`[cv] epochs`).
        self.final_protocol = _check_protocol(final_protocol or protocol)
        if cache is True:
            cache = os.path.join(self.directory, CACHE_NAME)
        self.cache = FoldCache(cache) if cache else None
        self.trainings = 0  # folds trained by this process (not from the cache)
        self._clock = time.monotonic()
        self._fingerprints = {}

    # --- time budget ---
    def search_seconds(self):
        """Seconds of search so far: the oracle's count (across resumes) when it has one."""
        elapsed = getattr(self.oracle, "elapsed", None)
        if callable(elapsed):
            return float(elapsed())
        return time.monotonic() - self._clock

    def _out_of_time(self):
        return self.max_time_s is not None and self.search_seconds() >= self.max_time_s

    def search(self, *fit_args, **fit_kwargs):
        """`keras_tuner.Tuner.search`; a spent `max_time_s` ends it cleanly."""
        self.stopped_by_time = False
        try:
            super().search(*fit_args, **fit_kwargs)
        except _OutOfTime as stop:
            self.stopped_by_time = True
            print(f"tuning: {stop}", flush=True)
            self.save()
            return
        # The oracle stops proposing once the budget is spent: say so, it is not the end.
        max_trials = getattr(self.oracle, "max_trials", None)
        if self._out_of_time() and max_trials and len(self.oracle.trials) < max_trials:
            self.stopped_by_time = True
            print(f"tuning: max_time_s={self.max_time_s:g} spent after "
                  f"{self.search_seconds():.0f} s: {len(self.oracle.trials)} of {max_trials} "
                  "trials ran (a resume with a larger budget runs the rest)", flush=True)

    # --- folds ---
    def folds_of(self, y):
        """The folds of this tuner for targets `y` (deterministic: same seed, same folds)."""
        return make_folds(y, task=self.task, time_ordered=self.time_ordered,
                          folds=self.folds, repeats=self.repeats, seed=self.seed,
                          gap=self.gap, test_size=self.test_size)

    def _fingerprint(self, x, y):
        key = (id(x), id(y))
        if key not in self._fingerprints:
            self._fingerprints[key] = data_fingerprint(x, y)
        return self._fingerprints[key]

    def fit_protocol(self, hp):
        """The `zoo.train` arguments of a trial: the protocol, its batch size and epochs."""
        protocol = dict(self.protocol)
        values = hp.values
        if "batch_size" in values:
            protocol["batch_size"] = int(values["batch_size"])
        elif "batch_size" in getattr(self.hypermodel, "fixed", {}):
            protocol["batch_size"] = int(self.hypermodel.fixed["batch_size"])
        if "tuner/epochs" in values:  # Hyperband's budget: the epochs of every fold
            epochs = int(values["tuner/epochs"])
            protocol["epochs"] = epochs
            protocol["patience"] = epochs if protocol["fit_on"] == "train+val" else \
                min(int(protocol["patience"]), epochs)
        return protocol

    def final_fit_protocol(self, hp, epochs=None):
        """The final training's arguments: the trial's batch size with `final_protocol`'s
        epochs and patience (`epochs` replaces them, as `[retrain] epochs` does)."""
        protocol = self.fit_protocol(hp)
        protocol["epochs"] = int(epochs or self.final_protocol["epochs"])
        protocol["patience"] = protocol["epochs"] if protocol["fit_on"] == "train+val" else \
            min(int(self.final_protocol["patience"]), protocol["epochs"])
        return protocol

    def _model_kwargs(self, hp):
        kwargs = self.hypermodel.build_kwargs(hp)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}

    def _fold_key(self, model_kwargs, protocol, fold, stop, fingerprint):
        payload = {
            "model": model_kwargs, "protocol": protocol, "seed": self.seed,
            "fold": [fold.repeat, fold.index, _indices_hash(fold.train, fold.held_out,
                                                            stop if stop is not None else [])],
            "data": fingerprint,
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def _train_fold(self, model_kwargs, protocol, x, y, fold, fit, stop):
        import zoo
        from zoo.builders import build_gru
        from zoo.training import TrainingDivergedError

        weight_seed = self.seed + 1009 * fold.repeat
        keras.utils.set_random_seed(weight_seed)
        model = build_gru(**model_kwargs)
        validation = (x[stop], y[stop]) if stop is not None else None
        lr_decay = protocol["lr_decay"]
        try:
            result = zoo.train(
                model, (x[fit], y[fit]), validation_data=validation,
                epochs=int(protocol["epochs"]), batch_size=int(protocol["batch_size"]),
                patience=int(protocol["patience"]),
                lr_decay=None if lr_decay in (None, "none") else lr_decay,
                fit_on="train", class_weight=protocol["class_weight"],
                seed=weight_seed + fold.index, verbose=0)
        except TrainingDivergedError as error:
            raise keras_tuner.errors.FailedTrialError(
                f"fold {fold.index} (repeat {fold.repeat}) diverged: {error}") from None
        held = model.evaluate(x[fold.held_out], y[fold.held_out],
                              batch_size=max(int(protocol["batch_size"]), 256),
                              return_dict=True, verbose=0)
        self.trainings += 1
        return {"metrics": {f"val_{k}": float(v) for k, v in held.items()},
                "best_epoch": int(result.best_epoch), "epochs_run": int(result.epochs_run),
                "seconds": round(float(result.train_seconds), 3)}

    def _costs(self, model_kwargs, x):
        """Size (and latency) of the trial's model, limits checked before any training.

        Returns `(costs, violations)`: with a device budget, `costs` holds the budget
        form's measurements (`flash_bytes`, `ram_bytes`, ...; `size_bytes` is the
        flash) and `violations` what is over the budget.
        """
        from zoo.builders import build_gru

        from tuning.objectives import ModelCostCallback

        keras.utils.set_random_seed(self.seed)
        model = build_gru(**model_kwargs)
        callback = ModelCostCallback(self.objective, use_export=self.use_export)
        callback.set_model(model)
        callback.on_train_begin()  # raises FailedTrialError over a hard limit
        costs = dict(callback.costs)
        if self.budget is None:
            return costs, []
        measured = self.budget.measure(model, x[:CALIBRATION_SAMPLES])
        costs.update({k: float(v) for k, v in measured.items() if isinstance(v, (int, float))})
        if "flash_bytes" in measured:
            costs["size_bytes"] = float(measured["flash_bytes"])
            costs["size_from_tflite"] = float(measured.get("flash_source") == "tflite")
        violations = self.budget.violations(measured)
        costs["budget_feasible"] = float(not violations)
        costs["budget_overshoot"] = float(self.budget.overshoot(measured))
        return costs, violations

    def _infeasible(self, costs, violations):
        """Metrics of a trial over the device budget: no fold trained, the worst score."""
        name = self.objective.name
        overshoot = costs["budget_overshoot"]
        if self.objective.direction == "max":
            worst = -1.0 - overshoot  # below any accuracy-like score
        else:
            scores = [float(t.score) for t in self.oracle.trials.values()
                      if t.score is not None and finite(t.score)]
            worst = (max([abs(s) for s in scores] + [1.0])) * (2.0 + overshoot)
        print(f"tuning: over the budget ({'; '.join(violations)}): not trained", flush=True)
        return dict(costs, **{name: worst, "cv_folds": 0.0, "cv_pruned": 0.0,
                              "cv_cached": 0.0})

    def _fold_value(self, record, costs):
        metric = self.objective.metric
        metrics = record["metrics"]
        if metric not in metrics:
            raise keras_tuner.errors.FatalValueError(
                f"The objective metric {metric!r} is not a held-out metric of the folds: "
                f"one of {sorted(metrics)}. Received: metric={metric!r}")
        value = float(metrics[metric])
        if self.objective.penalized:
            value = self.objective.score(value, costs["size_bytes"], costs.get("latency_ms"))
        return value

    def _worse(self, a, b):
        return a < b if self.objective.direction == "max" else a > b

    def _reference(self):
        """Fold values of the best trial that ran every fold, or `None`."""
        total = self.folds * self.repeats
        best = None
        for trial in self.oracle.get_best_trials(num_trials=10_000):
            if trial.status != "COMPLETED" or trial.score is None:
                continue
            metrics = trial.metrics
            if not metrics.exists("cv_pruned") or metrics.get_last_value("cv_pruned"):
                continue
            if int(metrics.get_last_value("cv_folds") or 0) != total:
                continue
            values = [metrics.get_last_value(f"cv_fold_{i}") for i in range(total)]
            if any(v is None for v in values):
                continue
            score = float(trial.score)
            if best is None or self._worse(best[0], score):
                best = (score, [float(v) for v in values])
        return None if best is None else best[1]

    def _should_prune(self, values, reference):
        if not self.prune or reference is None or len(values) < self.prune_after:
            return False
        if len(values) >= len(reference):
            return False
        paired = np.asarray(values) - np.asarray(reference[:len(values)])
        margin = float(np.std(reference)) if self.prune_margin == "auto" else \
            float(self.prune_margin)
        mean = float(paired.mean())
        return mean < -margin if self.objective.direction == "max" else mean > margin

    def cross_validate(self, hp, x, y, *, prune=True, label="trial"):
        """Runs (or reads from the cache) every fold of `hp`; returns the trial metrics."""
        x, y = np.asarray(x), np.asarray(y)
        model_kwargs = self._model_kwargs(hp)
        protocol = self.fit_protocol(hp)
        costs, violations = self._costs(model_kwargs, x)
        if violations:
            return self._infeasible(costs, violations)
        fingerprint = self._fingerprint(x, y)
        reference = self._reference() if prune else None
        values, records, cached = [], [], 0
        folds = self.folds_of(y)
        for number, fold in enumerate(folds):
            if protocol["fit_on"] == "train":
                fit, stop = inner_split(fold, y, task=self.task, time_ordered=self.time_ordered,
                                        fraction=self.inner_fraction, seed=self.seed,
                                        size=len(fold.held_out) if self.time_ordered else None)
            else:
                fit, stop = fold.train, None
            key = self._fold_key(model_kwargs, protocol, fold, stop, fingerprint)
            record = self.cache.get(key) if self.cache is not None else None
            if record is None:
                if self._out_of_time():
                    raise _OutOfTime(
                        f"max_time_s={self.max_time_s:g} spent after "
                        f"{self.search_seconds():.0f} s: the {label} stopped after "
                        f"{number} of {len(folds)} folds (cached; a resume runs the rest)")
                record = self._train_fold(model_kwargs, protocol, x, y, fold, fit, stop)
                if self.cache is not None:
                    self.cache.put(key, record)
            else:
                cached += 1
            records.append(record)
            values.append(self._fold_value(record, costs))
            if self._should_prune(values, reference):
                break
        return self._metrics(values, records, costs, protocol, len(folds), cached)

    def _metrics(self, values, records, costs, protocol, total, cached):
        name = self.objective.name
        values = np.asarray(values, dtype=np.float64)
        metrics = {name: float(values.mean()), f"{name}_std": float(values.std()),
                   "cv_folds": float(len(values)), "cv_pruned": float(len(values) < total),
                   "cv_cached": float(cached), "cv_epochs": float(protocol["epochs"]),
                   "cv_batch_size": float(protocol["batch_size"]),
                   "cv_best_epoch": float(np.mean([r["best_epoch"] for r in records])),
                   "cv_seconds": float(sum(r["seconds"] for r in records))}
        for i, value in enumerate(values):
            metrics[f"cv_fold_{i}"] = float(value)
        for key in records[0]["metrics"]:
            column = [r["metrics"][key] for r in records if key in r["metrics"]]
            if key != name:
                metrics[key] = float(np.mean(column))
            metrics[f"{key}_std"] = float(np.std(column))
        metrics.update({k: float(v) for k, v in costs.items()})
        return metrics

    def run_trial(self, trial, x, y, **kwargs):
        """One trial: every fold of `trial.hyperparameters` (see `cross_validate`).

        `search(x, y)`'s other keyword arguments (`epochs`, `callbacks`, `verbose`,
        `validation_data`) are ignored: the protocol decides the training.
        """
        return self.cross_validate(trial.hyperparameters, x, y, label=f"trial {trial.trial_id}")

    # No checkpoints: a CV trial trains k models and keeps none of them (retrain the best).
    def load_model(self, trial):
        raise NotImplementedError("A cross-validated trial keeps no model: retrain its "
                                  "hyperparameters (tuning.job retrains the best).")

    def save_model(self, trial_id, model, step=0):
        return None


def default_values(oracle_or_hp):
    """The default values of every active hyperparameter of a space."""
    space = oracle_or_hp.hyperparameters if hasattr(oracle_or_hp, "hyperparameters") \
        else oracle_or_hp
    hps = keras_tuner.HyperParameters()
    for hp in space.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = hp.default
    return hps.values


def default_hp(hypermodel):
    """`keras_tuner.HyperParameters` holding the hypermodel's default configuration."""
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    return hp


def same_configuration(values, other):
    """Whether two trials' values are the same configuration (Hyperband's keys aside)."""
    strip = lambda v: {k: val for k, val in v.items() if k not in _TUNER_HPS}  # noqa: E731
    return json.dumps(strip(values), sort_keys=True, default=str) == \
        json.dumps(strip(other), sort_keys=True, default=str)


def finite(value):
    return is_number(value) and math.isfinite(value)


def make_cv_tuner(strategy, hypermodel, *, objective, protocol, max_trials=10, seed=0,
                  max_time_s=None, directory=None, project_name="search", overwrite=False,
                  max_retries_per_trial=0, max_consecutive_failed_trials=3,
                  default_first=True, cv_options=None, **options):
    """A `CrossValidatedTuner` with a strategy's oracle (see `tuning.tuners.make_oracle`).

    Args:
        strategy: one of `tuning.tuners.STRATEGIES`.
        hypermodel: a `GRUHyperModel`.
        objective: a `tuning.Objective` (held-out metric).
        protocol: `zoo.train` arguments (`recipe_protocol`).
        max_trials, seed, max_retries_per_trial, max_consecutive_failed_trials: as for
            `make_oracle`. Hyperband's `max_epochs` is the protocol's epochs.
        max_time_s: seconds of search (the oracle's `max_time` and the tuner's
            between-folds stop).
        default_first: the first trial is the default configuration (not Hyperband).
        cv_options: `CrossValidatedTuner` options (folds, repeats, prune, ...).
        **options: strategy options.
    """
    from tuning.tuners import make_oracle

    protocol = _check_protocol(protocol)
    oracle = make_oracle(strategy, objective=objective.keras_tuner_objective(),
                         max_trials=max_trials, max_epochs=int(protocol["epochs"]),
                         seed=seed, max_time=max_time_s,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials,
                         default_first=default_first and strategy != "hyperband", **options)
    return CrossValidatedTuner(oracle, hypermodel, objective=objective, protocol=protocol,
                               max_time_s=max_time_s, seed=seed, directory=directory,
                               project_name=project_name, overwrite=overwrite,
                               **(cv_options or {}))


# === Jobs (`[cv]` in a tuning TOML; used by tuning.job) ===
def _section_error(key, value, allowed):
    return ValueError(f"[cv] {key} must be {allowed}. Received: {key}={value!r}")


def job_settings(config, dataset):
    """The `CrossValidatedTuner` settings of a job with `[cv]`, checked against the data.

    Returns a dict: `protocol` (the recipe's `zoo.train` arguments, `[cv] epochs`
    applied), `time_ordered`, `folds`, `repeats`, `gap`, `test_size`, `inner_fraction`,
    `prune`, `prune_after`, `prune_margin`, `max_time_s`, `cache`, `n` (samples
    cross-validated) and `fold_sizes` (held-out sizes of the first repeat). Every bad
    `[cv]` value raises a `ValueError` naming `[cv] key`, the value and what is allowed.
    """
    cv = config.cv
    variant = config.hypermodel["variant"]
    protocol = recipe_protocol(dataset, variant=None if variant == "any" else variant,
                               epochs=cv["epochs"])
    time_ordered = is_forecasting(dataset)
    gap = cv["gap"]
    if gap == "auto":
        gap = max(int(dataset.num_outputs) - 1, 0) if time_ordered else 0
    elif not time_ordered and gap:
        raise _section_error("gap", gap, "0 or 'auto' for data that is not time-ordered "
                             f"({dataset.name!r} is {dataset.task}, not forecasting windows)")
    n_train, n_val = len(dataset.x_train), len(dataset.x_val)
    n = n_train + n_val
    inner_fraction = float(np.clip(n_val / n if n_val else 0.2, 0.1, 0.5))
    test_size = None
    if time_ordered and n_val and n - cv["folds"] * n_val - gap >= max(2, n_val // 2):
        test_size = n_val  # held-out blocks as long as the validation split
    y = np.concatenate([dataset.y_train, dataset.y_val]) if n_val else dataset.y_train
    try:
        folds = make_folds(y, task=dataset.task, time_ordered=time_ordered,
                           folds=cv["folds"], repeats=cv["repeats"],
                           seed=config.job["seed"], gap=gap, test_size=test_size)
    except ValueError as error:
        text = str(error)
        key = "repeats" if text.startswith("`repeats`") else "folds"
        raise ValueError(f"[cv] {key} {text[text.index(' ') + 1:]} "
                         f"({dataset.name}: {n} train+validation samples)") from None
    if time_ordered and cv["repeats"] != 1:  # pragma: no cover (make_folds refuses)
        raise _section_error("repeats", cv["repeats"], "1 for forecasting data")
    return {
        "protocol": protocol, "time_ordered": time_ordered, "folds": cv["folds"],
        "repeats": cv["repeats"], "gap": int(gap), "test_size": test_size,
        "inner_fraction": inner_fraction, "prune": cv["prune"],
        "prune_after": cv["prune_after"], "prune_margin": cv["prune_margin"],
        "max_time_s": cv["max_time_s"] if cv["max_time_s"] is not None
        else config.search["max_time"],
        "cache": cv["cache"], "n": n,
        "fold_sizes": [len(f.held_out) for f in folds if f.repeat == 0],
        "min_improvement": cv["min_improvement"],
        "budget": config.device_budget,
        "final_protocol": recipe_protocol(dataset, variant=None if variant == "any"
                                          else variant),
    }


def describe_settings(settings):
    """One line for `gru-zoo tune --check`."""
    p = settings["protocol"]
    kind = "expanding-window (time-ordered)" if settings["time_ordered"] else "stratified"
    repeats = f" x {settings['repeats']} repeats" if settings["repeats"] > 1 else ""
    gap = f", gap {settings['gap']}" if settings["time_ordered"] else ""
    prune = (f"prune after {settings['prune_after']} folds (margin {settings['prune_margin']})"
             if settings["prune"] else "no pruning")
    budget = (f"{settings['max_time_s']:g} s" if settings["max_time_s"] is not None
              else "no time limit")
    device = settings.get("budget")
    device = f"; device budget {device.describe()}" if device is not None else ""
    return (f"cv {settings['folds']}-fold {kind}{repeats} over {settings['n']} "
            f"train+validation samples (held-out {settings['fold_sizes']}{gap}); protocol "
            f"epochs {p['epochs']}, batch {p['batch_size']} (a batch_size hyperparameter "
            f"overrides it), patience {p['patience']}, decay {p['lr_decay']}, fit_on "
            f"{p['fit_on']}, class_weight {p['class_weight']}; {prune}; {budget}; cache "
            f"{'on' if settings['cache'] else 'off'}{device}")


def make_job_tuner(config, hypermodel, objective, settings, overwrite=False):
    """The `CrossValidatedTuner` of a job (`[search]` strategy and budget, `[cv]`)."""
    from tuning.job import PROJECT

    search = config.search
    options = {k: settings[k] for k in ("folds", "repeats", "gap", "test_size",
                                        "inner_fraction", "prune", "prune_after",
                                        "prune_margin", "cache", "min_improvement")}
    options["time_ordered"] = settings["time_ordered"]
    options["use_export"] = config.objective["use_export"]
    options["budget"] = settings["budget"]
    options["final_protocol"] = settings["final_protocol"]
    return make_cv_tuner(
        search["strategy"], hypermodel, objective=objective, protocol=settings["protocol"],
        max_trials=search["max_trials"], seed=config.job["seed"],
        max_time_s=settings["max_time_s"], directory=str(config.output_dir),
        project_name=PROJECT, overwrite=overwrite,
        max_retries_per_trial=search["max_retries_per_trial"],
        max_consecutive_failed_trials=search["max_consecutive_failed_trials"],
        cv_options=options, **search["options"])


def search_data(dataset):
    """What a CV search sees: train+validation (in time order for forecasting)."""
    if not len(dataset.x_val):
        return np.asarray(dataset.x_train), np.asarray(dataset.y_train)
    return (np.concatenate([dataset.x_train, dataset.x_val]),
            np.concatenate([dataset.y_train, dataset.y_val]))


def retrain_with_protocol(hypermodel, hp, dataset, protocol, seed=0):
    """The recipe's training of `hp`'s model on the full data; `(model, test, result)`.

    `zoo.train` on the dataset itself with the protocol's `fit_on`: `"train+val"` trains
    on both splits for the fixed epochs, `"train"` early-stops on the validation split.
    """
    import zoo
    from zoo.builders import build_gru

    keras.utils.set_random_seed(seed)
    model = build_gru(**hypermodel.build_kwargs(hp))
    lr_decay = protocol["lr_decay"]
    result = zoo.train(
        model, dataset, epochs=int(protocol["epochs"]), batch_size=int(protocol["batch_size"]),
        patience=int(protocol["patience"]),
        lr_decay=None if lr_decay in (None, "none") else lr_decay,
        fit_on=protocol["fit_on"] if len(dataset.x_val) else "train",
        class_weight=protocol["class_weight"], seed=seed, verbose=0)
    return model, dict(result.test_metrics), result


def _metric(trial, name):
    """A trial's last value of a metric, or `None` when it never logged it."""
    metrics = trial.metrics
    return metrics.get_last_value(name) if metrics.exists(name) else None


def _trial_cv(trial, name):
    total = int(_metric(trial, "cv_folds") or 0)
    return {"score": float(trial.score), "std": _metric(trial, f"{name}_std"),
            "folds": [_metric(trial, f"cv_fold_{i}") for i in range(total)]}


def _trial_info(trial, name):
    size = _metric(trial, "size_bytes")
    return {"hp": trial.hyperparameters, "trial_id": trial.trial_id,
            "size_bytes": None if size is None else float(size),
            "feasible": _metric(trial, "budget_feasible") != 0.0,
            **_trial_cv(trial, name)}


def choose_best(tuner, hypermodel, x, y, *, select="best", within=0.0):
    """The chosen configuration of a finished CV search, against the default one.

    `select="best"`: the trial with the best CV score, when it beats the default's by
    more than `tuner.min_improvement` (`[cv] min_improvement`), else the default.
    `select="smallest"`: the smallest model (`size_bytes`) whose CV score is within
    `within` (objective units, e.g. 0.01 = one point of accuracy) of the default's;
    ties go to the better score. With a device budget only feasible configurations
    count, and when the default is over the budget, the best (or smallest within
    `within` of the best) feasible trial is chosen.

    Returns a dict: `default` and `best` (`hp`, `trial_id` or `None`, `score`, `std`,
    `folds`, `size_bytes`, `feasible`; `best` is `None` when no configuration is
    within the budget), `best_is_default`, and `select`.
    """
    objective = tuner.objective
    name = objective.name
    total = tuner.folds * tuner.repeats
    default = default_hp(hypermodel)
    default_info = None
    finished = []
    for trial in tuner.oracle.trials.values():
        if trial.status != "COMPLETED" or trial.score is None or not finite(trial.score):
            continue
        metrics = trial.metrics
        full_budget = int(trial.hyperparameters.values.get(
            "tuner/epochs", tuner.protocol["epochs"])) == int(tuner.protocol["epochs"])
        is_default = full_budget and same_configuration(trial.hyperparameters.values,
                                                        default.values)
        if _metric(trial, "budget_feasible") == 0.0:
            if is_default and default_info is None:
                default_info = _trial_info(trial, name)
            continue
        if metrics.get_last_value("cv_pruned") or \
                int(metrics.get_last_value("cv_folds") or 0) != total:
            continue
        finished.append(trial)
        if default_info is None and is_default:
            default_info = _trial_info(trial, name)
    if default_info is None:  # Hyperband, or a search stopped before its first trial ended
        metrics = tuner.cross_validate(default, x, y, prune=False, label="default")
        values = [metrics[f"cv_fold_{i}"] for i in range(int(metrics["cv_folds"]))]
        default_info = {"hp": default, "trial_id": None, "score": float(metrics[name]),
                        "std": metrics.get(f"{name}_std"), "folds": values,
                        "size_bytes": metrics.get("size_bytes"),
                        "feasible": metrics.get("budget_feasible") != 0.0}
    sign = 1.0 if objective.direction == "max" else -1.0
    candidates = [_trial_info(t, name) for t in finished
                  if t.trial_id != default_info["trial_id"]]
    if default_info["feasible"]:
        reference = default_info
    else:
        reference = max(candidates, key=lambda c: sign * c["score"], default=None)
    best_info = reference
    if reference is not None and select == "smallest":
        if isinstance(within, str):  # "1%": a share of the reference's score
            within = abs(reference["score"]) * float(within.rstrip("%")) / 100.0
        pool = [c for c in candidates + ([default_info] if default_info["feasible"] else [])
                if sign * (c["score"] - reference["score"]) >= -float(within)]
        best_info = min(pool, key=lambda c: (c["size_bytes"] if c["size_bytes"] is not None
                                             else math.inf, -sign * c["score"]))
    elif reference is not None and candidates:
        margin = getattr(tuner, "min_improvement", 0.0) if reference is default_info else 0.0
        if margin == "auto":
            # Only a clear win replaces the default: with a few folds of a few series,
            # the best of several trials beats the default by chance (measured: on
            # ItalyPowerDemand, trials chosen by a plain higher CV mean lost 0.6-1.2
            # points of test accuracy to the recipe they replaced).
            candidates = [c for c in candidates
                          if clear_win(c["folds"], reference["folds"], sign)]
            margin = 0.0
        top = max(candidates, key=lambda c: sign * c["score"], default=None)
        if top is not None and sign * (top["score"] - reference["score"]) > float(margin):
            best_info = top
    return {"default": default_info, "best": best_info, "select": select,
            "best_is_default": best_info is default_info}


def clear_win(folds, reference_folds, sign=1.0, z=2.0):
    """Whether `folds` beat `reference_folds` fold by fold by more than `z` standard errors.

    The folds are paired (the same splits and weight seeds for every configuration), so
    the test is on the per-fold differences: their mean must exceed `z` times their
    standard error (`std / sqrt(k)`, ddof 1). `sign` is -1 for a metric to minimize.
    """
    a = np.asarray([v for v in folds if v is not None], dtype=np.float64)
    b = np.asarray([v for v in reference_folds if v is not None], dtype=np.float64)
    if len(a) != len(b) or len(a) < 2:
        return False
    diff = sign * (a - b)
    error = float(np.std(diff, ddof=1)) / math.sqrt(len(diff))
    return float(diff.mean()) > z * error and float(diff.mean()) > 0


def _fmt(value):
    return "" if value is None else f"{value:.4g}"


def _row(label, info):
    trained = bool(info["folds"])
    folds = ", ".join(_fmt(v) for v in info["folds"]) if trained else "not trained"
    size = "" if info.get("size_bytes") is None else f"{info['size_bytes'] / 1024.0:.1f}"
    over = "" if info.get("feasible", True) else " (over the budget)"
    return (f"| {label}{over} | {_fmt(info['score']) if trained else ''} | "
            f"{_fmt(info['std']) if trained else ''} | {size} | {folds} |")


def export_in_budget_form(model, budget, dataset, path):
    """Exports a trained model in a budget's form, verified on the test data.

    Returns a dict: `path`, `form`, `flash_bytes`, `ram_bytes` (`ram_source`),
    `latency_ms`, `evaluation` (Keras and TFLite test metrics), `within_budget` and
    `violations`.
    """
    from export import LiteModel, to_tflite

    from tuning.objectives import _litert_latency_ms

    quantization = None if budget.quantization == "float32" else budget.quantization
    x_fit = np.concatenate([dataset.x_train, dataset.x_val]) if len(dataset.x_val) \
        else dataset.x_train
    validation = (dataset.x_test, dataset.y_test) if len(dataset.x_test) else None
    result = to_tflite(model, path, quantization=quantization,
                       representative_data=x_fit if budget.quantization in ("int8", "int16x8")
                       else None, validation_data=validation, streaming=budget.streaming,
                       check_tflm=budget.check_tflm)
    ram, error = budget.ram(result)
    measured = dict({"flash_bytes": int(result.size)}, **ram)
    if error:  # a RAM budget's file that TFLite Micro cannot run does not fit it
        measured["export_error"] = error
    measured["latency_ms"] = _litert_latency_ms(LiteModel, result.path)
    violations = budget.violations(measured)
    return dict(measured, path=str(result.path), form=budget.form,
                evaluation=result.evaluation, within_budget=not violations,
                violations=violations)


def write_cv_results(config, tuner, dataset, hypermodel, objective, summary, lines):
    """The chosen-configuration part of a CV job's results (`tuning.job.write_results`).

    Adds to `summary` (and `summary.md`'s `lines`): `cv` (folds, protocol, pruned
    trials, folds trained, cache size, whether the time budget stopped the search),
    `default_cv` and the chosen configuration's CV score with its spread and folds
    (`best_is_default` when it is the default; `[cv] select` says how it was chosen),
    `budget` (with `[budget]`: the limits, the infeasible trials and `no_feasible`,
    true when nothing fits, in which case no model is chosen), and with `[retrain]`
    the chosen configuration trained by the recipe on the full data
    (`best_model.keras`; with a budget also `best_model.tflite` in its form, verified
    and measured) with its test metrics, beside the default's (`compare_default`) and
    the dataset recipe's (`compare_recipe`), each trained the same way.
    """
    from zoo.training import save_model_atomically

    out = config.output_dir
    x, y = search_data(dataset)
    name = objective.name
    budget = tuner.budget
    summary["cv"] = {
        "folds": tuner.folds, "repeats": tuner.repeats, "time_ordered": tuner.time_ordered,
        "gap": tuner.gap, "protocol": dict(tuner.protocol), "prune": tuner.prune,
        "trainings": tuner.trainings,
        "cache_entries": len(tuner.cache) if tuner.cache is not None else None,
        "stopped_by_time": bool(getattr(tuner, "stopped_by_time", False)),
        "select": config.cv["select"], "select_within": config.cv["select_within"],
    }
    time_budget, tuner.max_time_s = tuner.max_time_s, None  # the default is always measured
    try:
        choice = choose_best(tuner, hypermodel, x, y, select=config.cv["select"],
                             within=config.cv["select_within"])
    finally:
        tuner.max_time_s = time_budget
    default, best = choice["default"], choice["best"]
    summary["default_cv"] = {k: default[k] for k in ("trial_id", "score", "std", "folds",
                                                    "size_bytes", "feasible")}
    if budget is not None:
        infeasible = sorted((t.trial_id for t in tuner.oracle.trials.values()
                             if _metric(t, "budget_feasible") == 0.0), key=int)
        summary["budget"] = dict(budget.to_dict(), form=budget.form, infeasible=infeasible,
                                 no_feasible=best is None)
    kind = "time-ordered expanding-window" if tuner.time_ordered else "stratified"
    protocol = tuner.fit_protocol(best["hp"] if best is not None else default["hp"])
    lines += [
        f"Cross-validation: {tuner.folds}-fold {kind}"
        + (f" x {tuner.repeats} repeats" if tuner.repeats > 1 else "")
        + f" over train+validation ({len(y)} samples); every fold trained by `zoo.train` "
          f"with the recipe's protocol (epochs {protocol['epochs']}, batch "
          f"{protocol['batch_size']}, decay {protocol['lr_decay']}, fit_on "
          f"{protocol['fit_on']}); {summary['pruned']} trials pruned; "
          f"{summary['cv']['trainings']} folds trained by this run, "
          f"{summary['cv']['cache_entries']} in the cache"
        + ("; the time budget ended the search" if summary["cv"]["stopped_by_time"] else "")
        + ".", ""]
    if budget is not None:
        lines += [f"Device budget: {budget.describe()}; "
                  f"{len(summary['budget']['infeasible'])} trials over it, never trained.", ""]
    lines += [f"| configuration | {name} (mean of folds) | std | size KiB | folds |",
              "|---|---|---|---|---|",
              _row("default" + ("" if default["trial_id"] is None
                                else f" (trial {default['trial_id']})"), default)]
    if best is None:
        lines += ["", f"No configuration fits the budget ({budget.describe()}): no model "
                  "is chosen. Widen the budget or search smaller models.", ""]
        summary["best_trial"] = None
        return
    if not choice["best_is_default"]:
        lines.append(_row(f"chosen (trial {best['trial_id']})", best))
    summary["best_is_default"] = choice["best_is_default"]
    summary["best_trial"] = best["trial_id"]
    summary["best_score"] = best["score"]
    summary["best_std"] = best["std"]
    summary["best_fold_scores"] = best["folds"]
    summary["best_size_bytes"] = best["size_bytes"]
    summary["best_hyperparameters"] = {k: v for k, v in best["hp"].values.items()
                                       if k not in _TUNER_HPS}
    summary["best_build_kwargs"] = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in hypermodel.build_kwargs(best["hp"]).items()}
    summary["cv"]["best_protocol"] = protocol
    if config.cv["select"] == "smallest":
        within = config.cv["select_within"]
        within = within if isinstance(within, str) else f"{within:g}"
        why = (f"the smallest configuration within {within} of the "
               f"{'default' if default['feasible'] else 'best feasible'} configuration's "
               "CV score")
    elif choice["best_is_default"]:
        why = ("no trial beat the default configuration's CV score"
               + (" by two standard errors of the paired fold differences"
                  if tuner.min_improvement == "auto" else
                  f" by more than {tuner.min_improvement:g}" if tuner.min_improvement else ""))
    else:
        why = "the best CV score" + ("" if default["feasible"] else
                                     "; the default is over the budget")
    chosen = "the default configuration" if choice["best_is_default"] \
        else f"trial {best['trial_id']}"
    lines += ["", f"Chosen: {chosen} ({why}).", ""]
    if config.retrain["enabled"]:
        protocol = tuner.final_fit_protocol(best["hp"], config.retrain["epochs"])
        seed = config.job["seed"]
        model, test, result = retrain_with_protocol(hypermodel, best["hp"], dataset, protocol,
                                                    seed)
        save_model_atomically(model, out / "best_model.keras")
        summary["retrain"] = {"epochs": protocol["epochs"], "protocol": protocol,
                              "best_epoch": result.best_epoch, "test": test,
                              "params": int(model.count_params()),
                              "model": str(out / "best_model.keras")}
        lines += [f"{'Default' if choice['best_is_default'] else 'Chosen'} configuration "
                  f"trained by the recipe on the full data ({protocol['fit_on']}, "
                  f"{protocol['epochs']} epochs): test "
                  + ", ".join(f"{k}={v:.4g}" for k, v in test.items())
                  + f", {int(model.count_params())} parameters.", ""]
        lines += fit_check_lines(dataset, model, summary["retrain"])
        if budget is not None:
            exported = export_in_budget_form(model, budget, dataset, out / "best_model.tflite")
            summary["retrain"]["export"] = exported
            lines += [_export_line(exported), ""]
        references = []
        if config.retrain["compare_default"]:
            references.append("default")
        if config.retrain["compare_recipe"]:
            references.append("recipe")
        for label in references:
            if label == "default" and choice["best_is_default"]:
                reference_test, params = test, int(model.count_params())
            else:
                reference_test, params = _train_reference(
                    label, default["hp"], hypermodel, dataset, protocol, tuner, config, seed)
                lines += [f"{label.capitalize()} configuration, same training: test "
                          + ", ".join(f"{k}={v:.4g}" for k, v in reference_test.items())
                          + f", {params} parameters.", ""]
            summary[label] = {"epochs": protocol["epochs"], "test": reference_test,
                              "params": params}
            summary["retrain"][f"vs_{label}"] = compare_test(objective, test, reference_test)
            if summary["retrain"][f"vs_{label}"] == "worse":
                lines += [f"**The chosen model scores worse on test than the {label} "
                          "configuration trained the same way**: cross-validation preferred "
                          "it, the test split does not; prefer the " + label + " unless "
                          "the test split is too small to tell them apart.", ""]
            if label == "default":
                summary[label]["cv_score"] = default["score"]
    lines += ["Chosen hyperparameters:", "", "```json",
              json.dumps(summary["best_hyperparameters"], indent=2, default=str), "```", ""]


def fit_check_lines(dataset, model, retrain):
    """Records in `retrain["fit_check"]` whether the retrained model beats predictions
    that learn nothing (`zoo.report.fit_check`); says so in bold when it does not."""
    from zoo.report import fit_check

    check = fit_check(dataset, model)
    if check is None:
        return []
    retrain["fit_check"] = check
    if not check["failed_fit"]:
        return []
    scores = ", ".join(f"{name} {check['baselines'][name]:.4g}"
                       for name in check["not_beaten"])
    return [f"**The retrained model is a failed fit**: test {check['metric']} "
            f"{check['model']:.4g} does not beat {scores}. Retrain it (another `[job] seed`) "
            "or widen the search before shipping it.", ""]


def _export_line(exported):
    evaluation = exported.get("evaluation") or {}
    text = (f"Exported as {exported['form']}: `best_model.tflite`, "
            f"{exported['flash_bytes'] / 1024.0:.1f} KiB flash, "
            f"{exported['ram_bytes'] / 1024.0:.1f} KiB RAM ({exported['ram_source']}), "
            f"{exported['latency_ms']:.3f} ms per inference (LiteRT, one thread)")
    if evaluation:
        text += (f"; test {evaluation['metric']} Keras {evaluation['keras']:.4g}, file "
                 f"{evaluation['tflite']:.4g} (change {evaluation['change']:+.4g})")
    if not exported["within_budget"]:
        text += f"; OVER THE BUDGET after training: {'; '.join(exported['violations'])}"
    return text + "."


def compare_test(objective, test, reference):
    """`"better"`, `"equal"` or `"worse"`: a test metric against a reference's.

    The metric is the objective's without `val_` (`val_accuracy` -> `accuracy`);
    `None` when either side lacks it.
    """
    metric = objective.metric[len("val_"):] if objective.metric.startswith("val_") \
        else objective.metric
    if metric not in test or metric not in reference:
        return None
    sign = 1.0 if objective.direction == "max" else -1.0
    difference = sign * (float(test[metric]) - float(reference[metric]))
    return "better" if difference > 0 else "equal" if difference == 0 else "worse"


def _train_reference(label, hp, hypermodel, dataset, protocol, tuner, config, seed):
    """Trains the default configuration or the dataset's recipe model the same way."""
    if label == "default":
        reference_protocol = tuner.final_fit_protocol(hp, config.retrain["epochs"])
        model, test, _ = retrain_with_protocol(hypermodel, hp, dataset, reference_protocol, seed)
        return test, int(model.count_params())
    import zoo
    from zoo.builders import build_gru
    from zoo.recipes import choose_recipe

    recipe = choose_recipe(dataset)
    keras.utils.set_random_seed(seed)
    model = build_gru(input_shape=dataset.input_shape, num_outputs=dataset.num_outputs,
                      task=dataset.task, **recipe.build)
    train = dict(recipe.train)
    if config.retrain["epochs"]:
        train["epochs"] = protocol["epochs"]
        if train["fit_on"] == "train+val":
            train["patience"] = protocol["epochs"]
    if not len(dataset.x_val):
        train["fit_on"] = "train"
    result = zoo.train(model, dataset, seed=seed, verbose=0, **train)
    return dict(result.test_metrics), int(model.count_params())

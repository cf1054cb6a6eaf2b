"""Objectives: any Keras metric, optionally penalized or constrained by size and latency.

`Objective(metric="val_accuracy", size_weight=..., max_size_kb=..., ...)` describes
what a search optimizes. Without size or latency terms its keras-tuner objective is
the metric itself. With them, `ModelCostCallback` (added to every trial's callbacks)
measures the model once when training starts and writes into each epoch's logs:

- `size_bytes`: the size of the exported float32 TFLite file when the `export`
  package is importable (`export.to_tflite`, run in its guarded child process),
  otherwise (or if the conversion fails) an estimate of 4 bytes per parameter
  (float32 weights; a real file adds some KB of graph and metadata);
  `size_from_tflite` (1 or 0) in the trial results says which. Measurements are
  cached per architecture, since size does not depend on the weights.
- `latency_ms` (only when a latency term is set): median time of one batch-1
  inference, on the LiteRT interpreter when `export` is importable, otherwise of
  the Keras model on this machine's CPU (a proxy, not a device number).
- `score`: the metric minus (for a metric to maximize; plus for one to minimize)
  `size_weight * size_kb + latency_weight * latency_ms`. The search objective is
  then `score`, so keras-tuner's oracles, checkpoints and best-trial choice all use
  the penalized value.

Hard limits (`max_size_kb`, `max_latency_ms`) are checked before the first epoch:
a model over a limit fails its trial (`keras_tuner.errors.FailedTrialError`, as
keras-tuner's own `max_model_size` does) without spending training time.

`pareto_front(points)` returns the trials that no other trial beats on both the
metric and the size.
"""

import dataclasses
import math
import time

import keras
import keras_tuner
import numpy as np

from zoo.checks import check, is_number

# Metric name fragments whose direction is "min"; everything else is maximized.
_MIN_HINTS = ("loss", "error", "mse", "mae", "rmse", "mape", "msle", "hinge",
              "crossentropy", "divergence")


def infer_direction(metric):
    name = metric[len("val_"):] if metric.startswith("val_") else metric
    return "min" if any(h in name for h in _MIN_HINTS) else "max"


@dataclasses.dataclass
class Objective:
    """What a search optimizes.

    Args:
        metric: str, a metric the trials log (`"val_accuracy"`, `"val_loss"`,
            `"val_rmse"`, ...). Defaults to `"val_loss"`.
        direction: `"max"`, `"min"` or `None` (inferred from the name).
        size_weight: float >= 0, penalty per KiB of model size. Defaults to `0`.
        latency_weight: float >= 0, penalty per millisecond of latency.
        max_size_kb: float or `None`, hard limit on the model size in KiB.
        max_latency_ms: float or `None`, hard limit on the latency in ms.
    """

    metric: str = "val_loss"
    direction: str = None
    size_weight: float = 0.0
    latency_weight: float = 0.0
    max_size_kb: float = None
    max_latency_ms: float = None

    def __post_init__(self):
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(
                f"`metric` must be a metric name such as 'val_accuracy'. "
                f"Received: metric={self.metric!r}")
        if self.direction is None:
            self.direction = infer_direction(self.metric)
        if self.direction not in ("max", "min"):
            raise ValueError(
                f"`direction` must be 'max', 'min' or None. Received: direction={self.direction!r}")
        for name in ("size_weight", "latency_weight"):
            value = getattr(self, name)
            check(name, value, is_number(value) and value >= 0, "a float >= 0")
        for name in ("max_size_kb", "max_latency_ms"):
            value = getattr(self, name)
            check(name, value, value is None or (is_number(value) and value > 0),
                  "a positive number or None")

    @property
    def measures_latency(self):
        return bool(self.latency_weight) or self.max_latency_ms is not None

    @property
    def penalized(self):
        return bool(self.size_weight) or bool(self.latency_weight)

    @property
    def constrained(self):
        return self.max_size_kb is not None or self.max_latency_ms is not None

    @property
    def name(self):
        """The name keras-tuner optimizes: the metric, or `score` with penalties."""
        return "score" if self.penalized else self.metric

    def keras_tuner_objective(self):
        return keras_tuner.Objective(self.name, self.direction)

    def score(self, value, size_bytes, latency_ms=None):
        cost = self.size_weight * size_bytes / 1024.0
        if self.latency_weight and latency_ms is not None:
            cost += self.latency_weight * latency_ms
        return value - cost if self.direction == "max" else value + cost


def _export_api():
    """`(to_tflite, LiteModel)` from the export package, or `None` without it."""
    try:
        from export import LiteModel, to_tflite
    except ImportError:
        return None
    return to_tflite, LiteModel


def parameter_size_bytes(model):
    """Estimated float32 model size: 4 bytes per parameter."""
    return 4 * int(model.count_params())


def _keras_latency_ms(model, repeats=20):
    """Median batch-1 inference time of the Keras model on this CPU, in ms (a proxy)."""
    shape = [1] + [d if d is not None else 16 for d in model.input_shape[1:]]
    dtype = "int32" if "int" in str(model.inputs[0].dtype) else "float32"
    x = np.zeros(shape, dtype=dtype)
    model.predict_on_batch(x)  # trace once
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(x)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def _litert_latency_ms(lite_model_class, path, repeats=50):
    """Median time of one inference of a .tflite file on the LiteRT interpreter, in ms."""
    lite = lite_model_class(path, num_threads=1)
    runner = lite.runner()
    feed = {}
    for name, details in runner.get_input_details().items():
        shape = [1 if i == 0 or v < 0 else int(v)
                 for i, v in enumerate(details["shape_signature"])]
        feed[name] = np.ones(shape, dtype=details["dtype"])
    for _ in range(5):
        runner(**feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(**feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


# Architecture (model config) -> measurements: a model's size and speed do not depend
# on its weights, so repeated architectures (Hyperband rounds, GA children) are free.
_MEASURED = {}


def measure_model(model, *, use_export=True, latency=False):
    """Measures a model's deployable size (and latency).

    Returns a dict: `size_bytes` and `size_source` (`"tflite"`: the float32 file
    written by `export.to_tflite`; `"params"`: 4 bytes per parameter, when `export`
    is not importable, `use_export=False`, or the conversion failed), and with
    `latency=True` `latency_ms` and `latency_source` (`"litert"`: one batch-1
    inference of that file on the LiteRT interpreter, one thread; `"keras"`: the
    Keras model on this CPU, a proxy).
    """
    import json
    import os
    import tempfile

    key = (json.dumps(model.get_config(), sort_keys=True, default=str), use_export, latency)
    if key in _MEASURED:
        return dict(_MEASURED[key])
    measured = {"size_bytes": parameter_size_bytes(model), "size_source": "params"}
    api = _export_api() if use_export else None
    if api is not None:
        to_tflite, lite_model_class = api
        try:
            with tempfile.TemporaryDirectory() as tmp:
                result = to_tflite(model, os.path.join(tmp, "model.tflite"))
                measured = {"size_bytes": int(result.size), "size_source": "tflite"}
                if latency:
                    measured["latency_ms"] = _litert_latency_ms(lite_model_class, result.path)
                    measured["latency_source"] = "litert"
        except Exception as error:  # a failed conversion must not stop the search
            print(f"tuning: TFLite export failed ({type(error).__name__}: {error}); "
                  "using the parameter-count size estimate", flush=True)
    if latency and "latency_ms" not in measured:
        measured["latency_ms"] = _keras_latency_ms(model)
        measured["latency_source"] = "keras"
    _MEASURED[key] = dict(measured)
    return measured


class ModelCostCallback(keras.callbacks.Callback):
    """Adds `size_bytes`, `params`, `latency_ms` and `score` to each epoch's logs.

    Must come before any callback that reads the objective (early stopping,
    keras-tuner's checkpointing): `run_search` puts it first.

    Args:
        objective: an `Objective`.
        use_export: bool, measure the exported TFLite size when `export` exists and
            the objective has a size or latency term (otherwise the cheap estimate
            is logged).
    """

    def __init__(self, objective, use_export=True):
        super().__init__()
        self.objective = objective
        self.use_export = use_export
        self.costs = None

    def on_train_begin(self, logs=None):
        # The export costs seconds per architecture: only pay it when size matters.
        objective = self.objective
        use_export = self.use_export and (objective.penalized or objective.constrained)
        measured = measure_model(self.model, use_export=use_export,
                                 latency=objective.measures_latency)
        size, source = measured["size_bytes"], measured["size_source"]
        costs = {"size_bytes": float(size), "params": float(self.model.count_params()),
                 # 1.0: the size of the exported TFLite file; 0.0: the 4 bytes/param estimate
                 "size_from_tflite": float(source == "tflite")}
        if self.objective.measures_latency:
            costs["latency_ms"] = measured["latency_ms"]
        self.costs = costs
        limit = self.objective.max_size_kb
        if limit is not None and size / 1024.0 > limit:
            raise keras_tuner.errors.FailedTrialError(
                f"Model size {size / 1024.0:.1f} KiB ({source}) is over "
                f"max_size_kb={limit}: trial skipped.")
        limit = self.objective.max_latency_ms
        if limit is not None and costs["latency_ms"] > limit:
            raise keras_tuner.errors.FailedTrialError(
                f"Latency {costs['latency_ms']:.2f} ms is over max_latency_ms={limit}: "
                "trial skipped.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.costs is None:
            return
        logs.update(self.costs)
        if self.objective.penalized and self.objective.metric in logs:
            logs["score"] = self.objective.score(
                float(logs[self.objective.metric]), self.costs["size_bytes"],
                self.costs.get("latency_ms"))


def pareto_front(points, metric_direction="max"):
    """Indices of the points not dominated on (metric, size).

    Args:
        points: list of `(metric_value, size_bytes)`.
        metric_direction: `"max"` or `"min"`, for the metric; size is minimized.

    Returns:
        Sorted list of indices of the Pareto-optimal points (ties kept).
    """
    sign = 1.0 if metric_direction == "max" else -1.0
    front = []
    for i, (m_i, s_i) in enumerate(points):
        if m_i is None or s_i is None or not math.isfinite(m_i):
            continue
        dominated = False
        for j, (m_j, s_j) in enumerate(points):
            if j == i or m_j is None or s_j is None or not math.isfinite(m_j):
                continue
            better_or_equal = sign * m_j >= sign * m_i and s_j <= s_i
            strictly = sign * m_j > sign * m_i or s_j < s_i
            if better_or_equal and strictly:
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front

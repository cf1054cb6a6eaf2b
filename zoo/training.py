"""The training recipe: `train(model, data, ...)` wraps `model.fit` with what works.

Early stopping that restores the best weights, learning-rate decay (on plateau or
cosine), gradient clipping (set on the optimizer), optional class weights, seeds, a
progress bar, optional TensorBoard logs, and a run directory holding the model
(`model.keras`), the history (`history.json`), the config (`config.json`), the test
metrics (`metrics.json`) and a PNG of the training curves (`curves.png`).

Bad data is one clear `ValueError` before anything trains (`check_training_data`, per
split); a run whose loss, metrics or weights become NaN or inf raises
`TrainingDivergedError` and writes no `model.keras` or `metrics.json`.
"""

import collections.abc
import dataclasses
import math
import os
import pathlib
import time

import keras
import numpy as np

from zoo.checks import (check, fail, is_bool, is_fraction, is_int, is_non_negative_int,
                        is_non_negative_number)
from zoo.fileio import atomic_output, check_image_path, write_json
from zoo.recipes import TRAIN_DEFAULTS

LR_DECAYS = ("plateau", "cosine", None)
FIT_ON = ("train", "train+val")
SPLITS = {"train": "training", "val": "validation", "test": "test"}

# What the labels of a model with this (single) loss are: class indices ("sparse"), 0/1
# ("binary"), one-hot rows ("categorical") or real values ("regression").
_LABEL_KINDS = {
    "sparse_categorical_crossentropy": "sparse",
    "binary_crossentropy": "binary",
    "binary_focal_crossentropy": "binary",
    "categorical_crossentropy": "categorical",
    "categorical_focal_crossentropy": "categorical",
    **{name: "regression" for name in (
        "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error", "huber", "huber_loss", "log_cosh", "logcosh")},
}


class TrainingDivergedError(ValueError):
    """Raised by `train` when the loss, a metric or the weights become NaN or inf.

    Nothing is written as if the run had succeeded (no `model.keras`, `metrics.json`,
    `history.json` or `curves.png`); the best finite weights seen before, if any, are
    kept in `run_dir/model.diverged.keras`.

    Attributes:
        quantity: str, what became non-finite (`"loss"`, `"val_loss"`, `"the weights"`,
            `"test loss"`, ...).
        epoch: int, the 1-based epoch at which it did.
        batch: int or `None`, the 1-based batch of that epoch (batch-level detection).
        value: float, the non-finite value (`nan`, `inf` or `-inf`).
        saved: `pathlib.Path` of `model.diverged.keras`, or `None` when nothing was kept.
    """

    def __init__(self, message, *, quantity, epoch, batch=None, value=math.nan, saved=None):
        super().__init__(message)
        self.quantity = quantity
        self.epoch = epoch
        self.batch = batch
        self.value = value
        self.saved = saved


class _DivergenceMonitor(keras.callbacks.Callback):
    """Stops `fit` at the first NaN/inf batch loss or epoch-end log value, and records
    which quantity it was, at which epoch and batch.

    Keras' own `TerminateOnNaN` is not enough here: it only sees the batch loss and the
    batch index (`on_batch_end` is not told the epoch), and it either stops quietly so
    that `fit` returns as if training had ended (the old behaviour: a normal
    `TrainResult` with loss nan and a NaN `model.keras`), or, with `raise_error=True`,
    raises a `RuntimeError` naming only the batch and skips the other callbacks'
    `on_train_end` (EarlyStopping's restore of the best weights). `train` reads
    `found` after `fit` and raises `TrainingDivergedError`.
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.found = None  # (quantity, 1-based epoch, 1-based batch or None, value)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.found is None:
            value = _as_float((logs or {}).get("loss"))
            if value is not None and not math.isfinite(value):
                self.found = ("loss", self.epoch + 1, batch + 1, value)
                self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.found is not None:
            return
        for name, value in (logs or {}).items():
            value = _as_float(value)
            if value is not None and not math.isfinite(value):
                self.found = (name, epoch + 1, None, value)
                self.model.stop_training = True
                return


def _as_float(value):
    if value is None:
        return None
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        model: the trained `keras.Model`, holding the best weights.
        history: dict of metric name → list of per-epoch values.
        test_metrics: dict of metric name → value on the test split (empty if none).
        best_epoch: int, 1-based epoch whose weights were kept.
        epochs_run: int, epochs actually trained.
        train_seconds: float, wall time of `fit`.
        run_dir: `pathlib.Path` of the run directory, or `None`.
    """

    model: keras.Model
    history: dict
    test_metrics: dict
    best_epoch: int
    epochs_run: int
    train_seconds: float
    run_dir: pathlib.Path = None


def set_seed(seed):
    """Seeds Python, NumPy and TensorFlow (weights, shuffling, dropout)."""
    check("seed", seed, is_non_negative_int(seed), "a non-negative int")
    keras.utils.set_random_seed(int(seed))


def _describe(value):
    """A short description of a received value for error messages."""
    if value is None:
        return "None"
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, (str, bytes)):
        dtype = getattr(value, "dtype", None)
        return f"an array of shape {tuple(shape)}" + (f" and dtype {dtype}" if dtype else "")
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    text = repr(value)
    return text if len(text) <= 80 else f"a {type(value).__name__}"


def _pair(argument, value, names):
    """`validation_data` / `test_data`: `None` or an `(x, y)` pair with labels."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2 or value[1] is None:
        raise ValueError(
            f"`{argument}` must be None or an `{names}` tuple of inputs and their labels. "
            f"Received: {argument}={_describe(value)}"
        )
    return tuple(value)


def _split_data(data, validation_data, test_data):
    """Accepts a `zoo.Dataset` or `(x, y)` arrays; returns the three splits."""
    if hasattr(data, "x_train"):
        for argument, value in (("validation_data", validation_data), ("test_data", test_data)):
            if value is not None:
                raise ValueError(
                    f"`{argument}` must be None when `data` is a zoo Dataset (the Dataset's "
                    f"own splits are used). Received: {argument}={_describe(value)}"
                )
        return (
            (data.x_train, data.y_train),
            (data.x_val, data.y_val) if len(data.x_val) else None,
            (data.x_test, data.y_test) if len(data.x_test) else None,
        )
    if isinstance(data, (tuple, list)) and len(data) == 2 and data[1] is not None:
        return (tuple(data), _pair("validation_data", validation_data, "(x_val, y_val)"),
                _pair("test_data", test_data, "(x_test, y_test)"))
    raise ValueError(
        "`data` must be a zoo Dataset (from `zoo.load_dataset`) or an `(x, y)` tuple of "
        f"training inputs and labels. Received: data={_describe(data)}"
    )


def _shape_text(dims):
    """`(samples, 150, 1)`: the expected shape, with `time` for a variable length."""
    names = ["samples"] + ["time" if i == 0 and d is None else ("any" if d is None else str(d))
                           for i, d in enumerate(dims)]
    return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"


def _matches(shape, dims):
    return len(shape) == len(dims) and all(d is None or s == d for s, d in zip(shape, dims))


def _loss_name(loss):
    """The canonical name of a compiled (single) loss, or `None`."""
    if loss is None or isinstance(loss, (list, tuple, dict)):
        return None
    if isinstance(loss, str):
        if loss.lower() in ("crossentropy", "ce"):  # Keras infers it from the shapes
            return "crossentropy"
        try:
            loss = keras.losses.get(loss)
        except (ValueError, TypeError):
            return loss
    loss = getattr(loss, "fn", loss)  # a LossFunctionWrapper's function
    return getattr(loss, "name", None) or getattr(loss, "__name__", None)


def _model_spec(model):
    """What the data checks need from a model: shapes, token vocabulary, label kind."""
    spec = dict(input_shape=None, tokens=False, vocab_size=None, output_shape=None,
                loss=None, labels=None)
    try:
        input_shape, output_shape = model.input_shape, model.output_shape
    except (AttributeError, ValueError):  # a subclassed or unbuilt model
        return spec
    if isinstance(input_shape, tuple) and all(d is None or isinstance(d, int)
                                              for d in input_shape):
        spec["input_shape"] = input_shape
        dtype = str(getattr(model.inputs[0], "dtype", "float32"))
        spec["tokens"] = "int" in dtype
        if spec["tokens"]:
            embeddings = [layer for layer in model.layers
                          if isinstance(layer, keras.layers.Embedding)]
            if embeddings:
                spec["vocab_size"] = int(embeddings[0].input_dim)
    if isinstance(output_shape, tuple) and all(d is None or isinstance(d, int)
                                               for d in output_shape):
        spec["output_shape"] = output_shape
        spec["loss"] = _loss_name(getattr(model, "loss", None))
        spec["labels"] = _LABEL_KINDS.get(spec["loss"])
        if spec["loss"] == "crossentropy":
            spec["labels"] = "binary" if output_shape[-1] == 1 else "sparse_or_categorical"
    return spec


def _value_range(values):
    return f"[{_plain_number(values.min())}, {_plain_number(values.max())}]"


def _plain_number(value):
    """A NumPy or Python number for a message: an int when it is whole."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if float(value).is_integer() else value


def _non_finite(name, where, values):
    nan = int(np.count_nonzero(np.isnan(values)))
    inf = int(values.size - np.count_nonzero(np.isfinite(values))) - nan
    raise ValueError(
        f"`{name}` ({where}) must hold only finite values: {nan + inf} of its {values.size} "
        f"values are not finite. Received: {nan} NaN and {inf} inf in an array of shape "
        f"{values.shape}"
    )


def _as_array(name, where, value):
    try:
        array = np.asarray(value)
    except ValueError as error:  # e.g. ragged lists of sequences of different lengths
        raise ValueError(
            f"`{name}` ({where}) must be a numeric array of equal-length samples (pad "
            f"variable-length series and build with `mask_value`). Received: "
            f"{type(value).__name__} that is not a rectangular array ({error})"
        ) from None
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` ({where}) must be a numeric array (float features, int token ids "
            f"or labels; encode strings first, e.g. class names as indices). Received: "
            f"an array of shape {array.shape} and dtype {array.dtype}"
        )
    return array


def check_training_data(model, x, y, split="train"):
    """Checks one split of data against a model before it reaches Keras.

    Cheap numpy checks, no model calls: numeric arrays, at least one sample, the
    shape the model's input expects (any length for `input_shape=(None, F)`), finite
    values, token ids in `[0, vocab_size)` for token models, one label per sample and,
    from the compiled loss, labels of the shape and range the output expects (class
    indices in `[0, num_outputs)` for softmax, 0/1 for a single sigmoid, one value per
    output for regression).

    Args:
        model: the `keras.Model` the data is for.
        x, y: the inputs and labels of the split.
        split: `"train"`, `"val"` or `"test"` (names the arrays `x_train`, `y_val`, ...).

    Returns:
        `(x, y)` as NumPy arrays (lists and other array-likes converted, as `fit` needs
        them); a `tf.data.Dataset` or other non-array `x` comes back unchanged.

    Raises:
        ValueError: naming the array, what the model expects and what was received.
    """
    xn, yn = f"x_{split}", f"y_{split}"
    where = f"the {SPLITS[split]} split"
    if y is None:
        raise ValueError(f"`{yn}` must be the labels of `{xn}` ({where}). Received: {yn}=None")
    if not isinstance(x, (np.ndarray, list, tuple)) and not hasattr(x, "__array__"):
        return x, y  # e.g. a tf.data.Dataset: Keras checks it
    spec = _model_spec(model)
    x = _as_array(xn, where, x)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"`{xn}` ({where}) must hold at least one sample. "
                         f"Received: shape {x.shape}")
    input_shape = spec["input_shape"]
    if input_shape is not None and not _matches(x.shape[1:], input_shape[1:]):
        hint = ""
        if spec["tokens"]:
            hint = " (token ids: one int id per time step)"
        elif x.shape[1:] == input_shape[1:-1] and input_shape[-1] == 1:
            hint = f" (add the feature axis: {xn}[..., None])"
        raise ValueError(
            f"`{xn}` must have shape {_shape_text(input_shape[1:])} to match the model's "
            f"input {input_shape}{hint}. Received: shape {x.shape}"
        )
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        _non_finite(xn, where, x)
    if spec["tokens"]:
        vocab = spec["vocab_size"]
        allowed = f"int token ids in [0, {vocab})" if vocab else "int token ids >= 0"
        if x.dtype.kind == "f" and not np.all(np.mod(x, 1) == 0):
            raise ValueError(f"`{xn}` ({where}) must hold {allowed} for the model's "
                             f"embedding. Received: non-integer values of dtype {x.dtype}")
        outside = (x < 0) | (x >= vocab) if vocab else x < 0
        if outside.any():
            raise ValueError(
                f"`{xn}` ({where}) must hold {allowed} (the model's `vocab_size`). "
                f"Received: ids in {_value_range(x)}, {int(outside.sum())} of {x.size} "
                "outside"
            )

    y = _as_array(yn, where, y)
    if y.ndim == 0 or len(y) != len(x):
        raise ValueError(
            f"`{yn}` must have one label per sample of `{xn}` ({len(x)} samples). "
            f"Received: shape {y.shape}"
        )
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        _non_finite(yn, where, y)
    _check_labels(spec, x, y, yn, where)
    return x, y


def _check_labels(spec, x, y, yn, where):
    out, kind = spec["output_shape"], spec["labels"]
    if out is None or kind is None:
        return
    classes = out[-1]
    mid = list(out[1:-1])
    if mid and mid[0] is None and spec["input_shape"] is not None and \
            spec["input_shape"][1] is None and x.ndim >= 2:
        mid[0] = x.shape[1]  # a variable-length per-step output is as long as the input
    mid = tuple(mid)
    loss = spec["loss"]
    if kind == "sparse_or_categorical":
        kind = "categorical" if _matches(y.shape[1:], mid + (classes,)) else "sparse"
    if kind in ("sparse", "binary"):
        if not (_matches(y.shape[1:], mid) or _matches(y.shape[1:], mid + (1,))):
            looks_one_hot = (kind == "sparse" and classes > 1 and
                             _matches(y.shape[1:], mid + (classes,)) and
                             np.all((y == 0) | (y == 1)) and np.all(y.sum(-1) == 1))
            if looks_one_hot:
                raise ValueError(
                    f"`{yn}` must hold class indices of shape {_shape_text(mid)} for the "
                    f"model's loss {loss!r}, not one-hot labels: pass class indices, e.g. "
                    f"{yn}.argmax(-1). Received: one-hot labels of shape {y.shape}"
                )
            raise ValueError(
                f"`{yn}` must have shape {_shape_text(mid)} or {_shape_text(mid + (1,))} "
                f"of class labels to match the model's output {out} (loss {loss!r}). "
                f"Received: shape {y.shape}"
            )
        if kind == "binary":
            allowed = ("binary labels 0 or 1 for the model's single sigmoid output "
                       "(num_outputs=1)")
        else:
            allowed = (f"integer class indices in [0, {classes}) for the model's "
                       f"{classes} outputs (num_outputs={classes})")
        if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
            example = y[np.mod(y, 1) != 0].flat[0]
            raise ValueError(
                f"`{yn}` ({where}) must hold {allowed}. Received: non-integer labels, e.g. "
                f"{_plain_number(example)} (dtype {y.dtype})"
            )
        limit = 2 if kind == "binary" else classes
        outside = (y < 0) | (y >= limit)
        if outside.any():
            hint = ""
            if kind == "binary" and y.min() >= 0:
                hint = (f"; for {int(y.max()) + 1} classes build the model with "
                        f"num_outputs={int(y.max()) + 1}")
            raise ValueError(
                f"`{yn}` ({where}) must hold {allowed}{hint}. Received: labels in "
                f"{_value_range(y)}, {int(outside.sum())} of {y.size} outside"
            )
    elif kind == "categorical":
        if not _matches(y.shape[1:], mid + (classes,)):
            raise ValueError(
                f"`{yn}` must have shape {_shape_text(mid + (classes,))} (one-hot labels) "
                f"to match the model's output {out} (loss {loss!r}). Received: shape "
                f"{y.shape}"
            )
    elif not (_matches(y.shape[1:], mid + (classes,)) or
              (classes == 1 and _matches(y.shape[1:], mid))):
        alternative = f" (or {_shape_text(mid)})" if classes == 1 else ""
        raise ValueError(
            f"`{yn}` must have shape {_shape_text(mid + (classes,))}{alternative} to match "
            f"the model's output {out} (loss {loss!r}). Received: shape {y.shape}"
        )


def _check_class_weight(class_weight, model, y_train):
    """Returns the class-weight dict for `fit` (`"balanced"` resolved), or `None`."""
    if class_weight is None:
        return None
    if class_weight != "balanced" and not isinstance(class_weight, dict):
        raise ValueError(
            "`class_weight` must be None, 'balanced' or a dict class → weight. "
            f"Received: class_weight={class_weight!r}"
        )
    spec = _model_spec(model)
    kind, out = spec["labels"], spec["output_shape"]
    if kind == "regression":
        raise ValueError(
            "`class_weight` must be None for a regression model: class weights need class "
            f"labels, and the model's loss is {spec['loss']!r}. Received: "
            f"class_weight={class_weight!r}"
        )
    if out is not None and len(out) > 2:
        raise ValueError(
            "`class_weight` must be None for a per-step output: Keras weights whole "
            f"sequences, not time steps, and the model's output is {out}. Received: "
            f"class_weight={class_weight!r}"
        )
    y = np.asarray(y_train)
    if kind == "categorical" or (kind == "sparse_or_categorical" and y.ndim == 2
                                 and y.shape[-1] > 1):
        y = y.argmax(-1)
    if class_weight == "balanced":
        return balanced_class_weight(y)
    if out is not None and kind is not None:
        classes = max(out[-1], 2)
        bad = [k for k in class_weight if not is_int(k) or not 0 <= k < classes]
        if bad:
            raise ValueError(
                f"`class_weight` must map class indices in [0, {classes}) to weights. "
                f"Received: class_weight={class_weight!r} (keys {bad})"
            )
    else:
        bad = [k for k in class_weight if not is_non_negative_int(k)]
        if bad:
            raise ValueError(
                "`class_weight` must map class indices (ints >= 0) to weights. "
                f"Received: class_weight={class_weight!r} (keys {bad})"
            )
    bad = [w for w in class_weight.values() if not is_non_negative_number(w)]
    if bad:
        raise ValueError(
            "`class_weight` must map classes to finite weights >= 0. "
            f"Received: class_weight={class_weight!r} (weights {bad})"
        )
    class_weight = {int(k): float(w) for k, w in class_weight.items()}
    # Keras weighs a class missing from the dict 1.0; all-zero weights train nothing.
    present = [int(c) for c in np.unique(np.round(y))] if kind is not None else class_weight
    if not any(class_weight.get(c, 1.0) > 0 for c in present):
        raise ValueError(
            "`class_weight` must give at least one class of the training labels a weight "
            f"> 0 (a class left out weighs 1.0; classes in the labels: {sorted(present)}). "
            f"Received: class_weight={class_weight!r}"
        )
    return class_weight


def balanced_class_weight(y):
    """Class weights inversely proportional to class frequency (sklearn's "balanced")."""
    y = np.asarray(y).reshape(-1).astype(int)
    counts = np.bincount(y)
    present = counts > 0
    weights = np.zeros(len(counts))
    weights[present] = len(y) / (present.sum() * counts[present])
    return {int(i): float(w) for i, w in enumerate(weights) if present[i]}


_HISTORY_ALLOWED = ("a dict (e.g. TrainResult.history, or the History that `model.fit` "
                    "returns) of metric name -> list of per-epoch numbers, with at least one "
                    "training metric (a name without 'val_', e.g. 'loss') and one value per "
                    "epoch in each")


def _series(history, key):
    """`history[key]` as a list of floats, or `None` when it is not a list of numbers."""
    values = history[key]
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            return None
        values = list(values)
    if not isinstance(values, (list, tuple)):
        return None
    numbers = []
    for value in values:
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]
        if is_bool(value) or not isinstance(value, (int, float, np.integer, np.floating)):
            return None
        numbers.append(float(value))
    return numbers


def _check_history(history):
    """The series `plot_curves` draws: `[(name, train, validation or None)]`."""
    if isinstance(history, (keras.callbacks.History, TrainResult)):
        history = history.history  # what `model.fit` / `train` return: their dict
    text = " ".join(repr(history).split())
    if not isinstance(history, collections.abc.Mapping):
        received = text if len(text) <= 100 else f"a {type(history).__name__}"
        raise ValueError(f"`history` must be {_HISTORY_ALLOWED}. Received: history={received}")
    received = text if len(text) <= 100 else f"a dict with the keys {list(history)}"

    def refuse(problem):
        raise ValueError(f"`history` must be {_HISTORY_ALLOWED}; {problem}. "
                         f"Received: history={received}")

    for key in history:
        if not isinstance(key, str):
            refuse(f"the key {key!r} is not a metric name (a str)")
    names = [k for k in history if not k.startswith("val_") and k != "learning_rate"]
    if not names:
        refuse(f"it holds no training metric (keys {list(history)})")
    series = {}  # what is drawn: the training metrics and their validation values
    for key in names + [f"val_{name}" for name in names if f"val_{name}" in history]:
        series[key] = _series(history, key)
        if series[key] is None:
            shown = " ".join(repr(history[key]).split())
            shown = (_describe(history[key]) if isinstance(history[key], np.ndarray)
                     or len(shown) > 60 else shown)
            refuse(f"{key!r} holds {shown}, not a list of numbers")
    curves = []
    for name in names:
        if not series[name]:
            refuse(f"{name!r} holds no epochs (an empty list)")
        validation = series.get(f"val_{name}")
        if validation is not None and len(validation) != len(series[name]):
            refuse(f"'val_{name}' has {len(validation)} values and {name!r} "
                   f"{len(series[name])}: a validation metric needs one value per epoch of "
                   f"training (not `model.fit(validation_freq=...)`)")
        curves.append((name, series[name], validation))
    return curves


def plot_curves(history, path, title=None):
    """Writes an image of the loss and each metric per epoch (train and validation).

    Args:
        history: dict of metric name -> list of per-epoch numbers (`TrainResult.history`;
            a `TrainResult` or the `History` that `model.fit` returns also do). Each
            training metric (a name without `val_`, except `learning_rate`) gets a panel,
            with `val_<name>` in it when present; other entries (`learning_rate`, a
            `val_` metric without its training metric) are not drawn. The loss is drawn
            on a log scale when all its values are positive.
        path: the image file (str or path-like) in an existing folder; its suffix picks
            the format (`zoo.fileio.PLOT_SUFFIXES`: `.png`, `.pdf`, `.svg`, ...). An existing file is
            replaced only when the new one is complete.
        title: str or `None`, drawn above the panels.

    Returns:
        The `pathlib.Path` written.
    """
    curves = _check_history(history)
    path = check_image_path(path)
    check("title", title, title is None or isinstance(title, str), "a str or None")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.5),
                             squeeze=False)
    try:
        for ax, (name, train, validation) in zip(axes[0], curves):
            epochs = range(1, len(train) + 1)
            ax.plot(epochs, train, label="train")
            if validation is not None:
                ax.plot(epochs, validation, label="validation")
            ax.set_xlabel("epoch")
            ax.set_title(name)
            drawn = [v for v in train + (validation or []) if math.isfinite(v)]
            if name == "loss" and drawn and min(drawn) > 0:
                ax.set_yscale("log")
            ax.legend()
            ax.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        with atomic_output(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=100, format=path.suffix[1:].lower())
    finally:
        plt.close(fig)
    return path


def _json_default(value):
    if isinstance(value, np.generic):  # NumPy ints, floats and bools
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pathlib.Path):
        return str(value)
    return repr(value)


def save_model_atomically(model, path):
    """Saves a `.keras` file through a temporary file so no partial file is left."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=".keras") as tmp:
        model.save(tmp)


def _finite_weights(weights):
    return all(np.isfinite(w).all() for w in weights
               if getattr(w, "dtype", np.dtype("float32")).kind == "f")


def _diverged(model, found, early_stopping, run_dir, after_training=False):
    """Keeps the best finite weights (in the spirit of the Ctrl-C handler) and raises."""
    quantity, epoch, batch, value = found
    best = early_stopping.best_weights
    saved = None
    if best is not None and _finite_weights(best):
        model.set_weights(best)
        if run_dir is not None:
            saved = run_dir / "model.diverged.keras"
            save_model_atomically(model, saved)
    where = f"after training (epoch {epoch})" if after_training else f"at epoch {epoch}"
    if batch is not None:
        where += f", batch {batch}"
    if saved is not None:
        kept = (f"The best finite weights (epoch {(early_stopping.best_epoch or 0) + 1}) "
                f"are in {saved}; model.keras and metrics.json were not written.")
    elif best is not None and _finite_weights(best):
        kept = (f"The model holds the best finite weights (epoch "
                f"{(early_stopping.best_epoch or 0) + 1}).")
    else:
        kept = "No finite weights were kept" + (
            "; model.keras and metrics.json were not written." if run_dir is not None else ".")
    raise TrainingDivergedError(
        f"Training diverged: `{quantity}` became {value} {where}. Lower the learning rate "
        "or clip the gradients (`build_gru(..., learning_rate=1e-3, clipnorm=1.0)`) and "
        f"check the scale of the data. {kept}",
        quantity=quantity, epoch=epoch, batch=batch, value=value, saved=saved,
    )


def _logged_names(model):
    """What `fit` logs for a compiled single-output model: `"loss"` and each compiled
    metric under the name Keras gives it (a metric given by name keeps that name, an
    object its `name`, a function its snake-case name); `None` when that cannot be told
    (several outputs, a trainer without Keras 3's compile record)."""
    if len(getattr(model, "outputs", None) or []) != 1 or \
            not hasattr(model, "_compile_metrics"):
        return None
    compiled = model._compile_metrics
    if compiled is None:
        return ["loss"]
    if compiled.built:
        return ["loss"] + [metric.name for metric in compiled.metrics]
    names = ["loss"]
    for metric in keras.tree.flatten([compiled._user_metrics or [],
                                      compiled._user_weighted_metrics or []]):
        if isinstance(metric, str):
            names.append(metric)
        elif getattr(metric, "name", None):
            names.append(metric.name)
        elif getattr(metric, "__name__", None):
            from keras.src.utils.naming import to_snake_case
            names.append(to_snake_case(metric.__name__))
        else:
            return None
    return names


def _check_monitor(monitor, model):
    """`monitor` names a quantity `fit` logs: the loss or a compiled metric, with or
    without `val_`."""
    names = _logged_names(model)
    if names is None:
        check("monitor", monitor, isinstance(monitor, str),
              "a str naming a logged metric (e.g. 'val_loss')")
        return
    allowed = list(dict.fromkeys(names + [f"val_{name}" for name in names]))
    check("monitor", monitor, isinstance(monitor, str) and monitor in allowed,
          f"a quantity the model logs, one of {allowed} (the loss and the compiled "
          "metrics, `val_` for the validation split)")


def _config_problem(value, path):
    """`(path, key)` of the first dict key that `config.json` cannot hold (JSON keys are
    strings, numbers, bools or null), or `None`. Values of any kind are fine: NumPy
    values and paths are written as numbers and strings, other objects (a Keras loss
    given to the builder, say) as their `repr`."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        value = value.tolist()  # (arrays of numbers or text hold no keys)
    if isinstance(value, collections.abc.Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f"{path} key", key
            problem = _config_problem(item, f"{path}[{key!r}]")
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _config_problem(item, f"{path}[{index}]")
            if problem:
                return problem
    return None


def _check_config(config):
    allowed = ("None or a dict (keys str, numbers, bools or None; NumPy values and paths "
               "are written as numbers, lists and strings, other objects as their repr) "
               "to write as config.json")
    if config is None:
        return
    if not isinstance(config, collections.abc.Mapping):
        fail("config", config, allowed)
    problem = _config_problem(config, "config")
    if problem:
        path, value = problem
        raise ValueError(f"`config` must be {allowed}. Received: {path}={value!r} "
                         f"(a {type(value).__name__})")


def train(
    model,
    data,
    *,
    validation_data=None,
    test_data=None,
    fit_on=TRAIN_DEFAULTS["fit_on"],
    epochs=TRAIN_DEFAULTS["epochs"],
    batch_size=TRAIN_DEFAULTS["batch_size"],
    patience=TRAIN_DEFAULTS["patience"],
    monitor="val_loss",
    lr_decay=TRAIN_DEFAULTS["lr_decay"],
    lr_decay_factor=0.5,
    lr_decay_patience=10,
    min_learning_rate=1e-5,
    class_weight=TRAIN_DEFAULTS["class_weight"],
    seed=0,
    run_dir=None,
    config=None,
    tensorboard=False,
    verbose="auto",
    callbacks=None,
):
    """Trains a compiled model with the zoo recipe.

    Gradient clipping is a property of the optimizer: `build_gru` compiles Adam with
    `clipnorm=1.0` by default (`build_gru(..., clipnorm=...)` changes it).

    Args:
        model: a compiled `keras.Model` (e.g. from `build_gru`).
        data: a `zoo.Dataset`, or an `(x, y)` tuple of training arrays (or lists).
        validation_data: `(x, y)` when `data` is a tuple. Without validation data,
            early stopping and plateau decay watch the training loss.
        test_data: `(x, y)` evaluated after training when `data` is a tuple.
        fit_on: `"train"` (default) or `"train+val"`: for tiny datasets (UCR sets
            with a few dozen series) whose validation split is too small to pick an
            epoch, train on both splits and keep the weights of the lowest training
            loss, the protocol of Fawaz et al. 2019. The test split stays unseen.
        epochs: int, maximum epochs. Defaults to `100` (`zoo.recipes.TRAIN_DEFAULTS`, the
            one set of defaults the CLI and `compare` share).
        batch_size: int. Defaults to `32`.
        patience: int, epochs without improvement before stopping. Defaults to `40`.
        monitor: str, the quantity watched by early stopping: `"loss"` or a compiled
            metric, with `val_` for the validation split. Defaults to `"val_loss"`.
        lr_decay: `"plateau"` (halve on plateau), `"cosine"` (cosine to 1% over
            `epochs`) or `None`. Defaults to `"plateau"`.
        lr_decay_factor, lr_decay_patience, min_learning_rate: plateau settings
            (`min_learning_rate`, a float >= 0, is the floor of the decay: at or above
            the model's rate nothing decays).
        class_weight: `None`, `"balanced"` or a dict class → weight.
        seed: int, seeds shuffling and dropout. Defaults to `0`. (Seed weight
            initialisation by calling `zoo.set_seed` before building the model.)
        run_dir: path (str or `pathlib.Path`) of a directory to write the run into, or
            `None`.
        config: dict of JSON values saved as `config.json` in the run directory (e.g.
            builder args).
        tensorboard: bool, write TensorBoard logs to `run_dir/logs`.
        verbose: Keras verbosity (`"auto"` shows a progress bar). Defaults to `"auto"`.
        callbacks: a list of extra Keras callbacks (`keras.callbacks.Callback`).

    Returns:
        A `TrainResult`.

    Raises:
        ValueError: bad arguments or data (`check_training_data` checks each split).
        TrainingDivergedError: the loss, a metric or the weights became NaN or inf;
            `run_dir` then gets no `model.keras`/`metrics.json`, only the best finite
            weights seen before, in `model.diverged.keras` (if there were any).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            "`model` must be a compiled keras.Model (e.g. from `zoo.build_gru`); to load "
            "a saved file use `keras.saving.load_model(path)`. "
            f"Received: model={_describe(model)} (a {type(model).__name__})"
        )
    for argument, value, minimum in (("epochs", epochs, 1), ("batch_size", batch_size, 1),
                                     ("patience", patience, 0),
                                     ("lr_decay_patience", lr_decay_patience, 0)):
        check(argument, value, is_int(value) and value >= minimum, f"an int >= {minimum}")
    epochs, batch_size = int(epochs), int(batch_size)
    patience, lr_decay_patience = int(patience), int(lr_decay_patience)
    if lr_decay not in LR_DECAYS:
        raise ValueError(
            f"`lr_decay` must be one of {list(LR_DECAYS)}. Received: lr_decay={lr_decay!r}"
        )
    check("lr_decay_factor", lr_decay_factor, is_fraction(lr_decay_factor), "a float in (0, 1)")
    check("min_learning_rate", min_learning_rate, is_non_negative_number(min_learning_rate),
          "a float >= 0")
    check("tensorboard", tensorboard, is_bool(tensorboard), "True or False")
    if run_dir is not None and not isinstance(run_dir, (str, os.PathLike)):
        fail("run_dir", run_dir, "None or the path (a str or pathlib.Path) of a directory "
             "to write the run into")
    if callbacks is not None:
        allowed = "None or a list of keras.callbacks.Callback objects"
        check("callbacks", callbacks, isinstance(callbacks, (list, tuple)), allowed)
        for item in callbacks:
            check("callbacks", callbacks, isinstance(item, keras.callbacks.Callback),
                  f"{allowed} (one is a {type(item).__name__})")
    _check_config(config)
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        raise ValueError(
            "`model` must be compiled (build it with `build_gru(..., compile=True)`). "
            f"Received: an uncompiled model {model.name!r}"
        )
    if tensorboard and run_dir is None:
        raise ValueError("`tensorboard=True` needs a `run_dir`. Received: run_dir=None")
    if fit_on not in FIT_ON:
        raise ValueError(f"`fit_on` must be one of {list(FIT_ON)}. Received: fit_on={fit_on!r}")
    (x_train, y_train), val, test = _split_data(data, validation_data, test_data)
    _check_monitor(monitor, model)
    x_train, y_train = check_training_data(model, x_train, y_train, "train")
    if val is not None:
        val = check_training_data(model, *val, "val")
    if test is not None:
        test = check_training_data(model, *test, "test")
    if fit_on == "train+val" and val is not None:
        if np.shape(x_train)[1:] != np.shape(val[0])[1:] or \
                np.shape(y_train)[1:] != np.shape(val[1])[1:]:
            raise ValueError(
                "`fit_on='train+val'` needs training and validation arrays of the same "
                f"shape per sample to train on both. Received: x_train {np.shape(x_train)}, "
                f"y_train {np.shape(y_train)}, x_val {np.shape(val[0])}, y_val "
                f"{np.shape(val[1])}"
            )
        x_train = np.concatenate([x_train, val[0]])
        y_train = np.concatenate([y_train, val[1]])
        val = None
    if val is None and monitor.startswith("val_"):
        monitor = monitor[len("val_"):]
    class_weight = _check_class_weight(class_weight, model, y_train)
    set_seed(seed)
    run_dir = pathlib.Path(run_dir) if run_dir is not None else None
    if run_dir is not None:
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(
                "`run_dir` must be a directory (created if missing) to write the run into. "
                f"Received: run_dir={str(run_dir)!r}, an existing file"
            )
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(
                "`run_dir` must be a directory that can be created. "
                f"Received: run_dir={str(run_dir)!r} ({error.strerror or error})"
            ) from None

    early_stopping = keras.callbacks.EarlyStopping(
        monitor=monitor, patience=patience, restore_best_weights=True
    )
    divergence = _DivergenceMonitor()
    all_callbacks = [early_stopping, divergence]
    if lr_decay == "plateau":
        all_callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=lr_decay_factor, patience=lr_decay_patience,
                min_lr=min_learning_rate,
            )
        )
    elif lr_decay == "cosine":
        initial = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))

        def cosine(epoch, lr):
            return initial * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * epoch / epochs)))

        all_callbacks.append(keras.callbacks.LearningRateScheduler(cosine))
    if tensorboard:
        all_callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs")))
    all_callbacks.extend(callbacks or [])

    if run_dir is not None and config is not None:
        write_json(run_dir / "config.json", config, default=_json_default)
    start = time.perf_counter()
    try:
        fit = model.fit(
            x_train, y_train,
            validation_data=val,
            epochs=epochs,
            batch_size=batch_size,
            class_weight=class_weight,
            callbacks=all_callbacks,
            shuffle=True,
            verbose=verbose,
        )
    except KeyboardInterrupt:
        # Never lose work: keep the best weights seen so far before re-raising.
        if run_dir is not None:
            if early_stopping.best_weights is not None:
                model.set_weights(early_stopping.best_weights)
            save_model_atomically(model, run_dir / "model.interrupted.keras")
        raise
    seconds = time.perf_counter() - start
    history = {k: [float(v) for v in values] for k, values in fit.history.items()}
    epochs_run = len(history.get("loss", []))
    best_epoch = (early_stopping.best_epoch or 0) + 1
    found = divergence.found
    if found is None and not _finite_weights(model.get_weights()):
        # The last update can break the weights after the last finite loss was logged.
        found = ("the weights", max(epochs_run, 1), None, math.nan)
    if found is not None:
        _diverged(model, found, early_stopping, run_dir)

    test_metrics = {}
    if test is not None:
        test_metrics = model.evaluate(
            test[0], test[1], batch_size=max(batch_size, 64), return_dict=True, verbose=0
        )
        test_metrics = {k: float(v) for k, v in test_metrics.items()}
        for name, value in test_metrics.items():
            if not math.isfinite(value):
                _diverged(model, (f"test {name}", epochs_run, None, value), early_stopping,
                          run_dir, after_training=True)

    if run_dir is not None:
        save_model_atomically(model, run_dir / "model.keras")
        write_json(run_dir / "history.json", history, default=_json_default)
        write_json(
            run_dir / "metrics.json",
            {"test": test_metrics, "best_epoch": best_epoch, "epochs_run": epochs_run,
             "train_seconds": seconds, "params": model.count_params()},
            default=_json_default,
        )
        plot_curves(history, run_dir / "curves.png", title=model.name)
    return TrainResult(
        model=model,
        history=history,
        test_metrics=test_metrics,
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        train_seconds=seconds,
        run_dir=run_dir,
    )

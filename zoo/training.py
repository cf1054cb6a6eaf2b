"""The training recipe: `train(model, data, ...)` wraps `model.fit` with what works.

Early stopping that restores the best weights, learning-rate decay (on plateau or
cosine), gradient clipping (set on the optimizer), optional class weights, seeds, a
progress bar, optional TensorBoard logs, and a run directory holding the model
(`model.keras`), the history (`history.json`), the config (`config.json`), the test
metrics (`metrics.json`) and a PNG of the training curves (`curves.png`).
"""

import dataclasses
import json
import math
import os
import pathlib
import tempfile
import time

import keras
import numpy as np

LR_DECAYS = ("plateau", "cosine", None)
FIT_ON = ("train", "train+val")


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
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int. Received: seed={seed!r}")
    keras.utils.set_random_seed(seed)


def _split_data(data, validation_data, test_data):
    """Accepts a `zoo.Dataset` or `(x, y)` arrays; returns the three splits."""
    if hasattr(data, "x_train"):
        return (
            (data.x_train, data.y_train),
            (data.x_val, data.y_val) if len(data.x_val) else None,
            (data.x_test, data.y_test) if len(data.x_test) else None,
        )
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return tuple(data), validation_data, test_data
    raise ValueError(
        "`data` must be a zoo Dataset (from `zoo.load_dataset`) or an `(x, y)` tuple. "
        f"Received: data of type {type(data).__name__}"
    )


def balanced_class_weight(y):
    """Class weights inversely proportional to class frequency (sklearn's "balanced")."""
    y = np.asarray(y).reshape(-1).astype(int)
    counts = np.bincount(y)
    present = counts > 0
    weights = np.zeros(len(counts))
    weights[present] = len(y) / (present.sum() * counts[present])
    return {int(i): float(w) for i, w in enumerate(weights) if present[i]}


def plot_curves(history, path, title=None):
    """Writes a PNG with loss and each metric per epoch (train and validation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in history if not k.startswith("val_") and k != "learning_rate"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = range(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        if name == "loss":
            ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_json(path, payload):
    tmp = pathlib.Path(f"{path}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pathlib.Path):
        return str(value)
    return repr(value)


def save_model_atomically(model, path):
    """Saves a `.keras` file through a temporary file so no partial file is left."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def train(
    model,
    data,
    *,
    validation_data=None,
    test_data=None,
    fit_on="train",
    epochs=200,
    batch_size=16,
    patience=40,
    monitor="val_loss",
    lr_decay="plateau",
    lr_decay_factor=0.5,
    lr_decay_patience=10,
    min_learning_rate=1e-5,
    class_weight=None,
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
        data: a `zoo.Dataset`, or an `(x, y)` tuple of training arrays.
        validation_data: `(x, y)` when `data` is a tuple. Without validation data,
            early stopping and plateau decay watch the training loss.
        test_data: `(x, y)` evaluated after training when `data` is a tuple.
        fit_on: `"train"` (default) or `"train+val"`: for tiny datasets (UCR sets
            with a few dozen series) whose validation split is too small to pick an
            epoch, train on both splits and keep the weights of the lowest training
            loss, the protocol of Fawaz et al. 2019. The test split stays unseen.
        epochs: int, maximum epochs. Defaults to `200`.
        batch_size: int. Defaults to `16`.
        patience: int, epochs without improvement before stopping. Defaults to `40`.
        monitor: str, the quantity watched by early stopping. Defaults to `"val_loss"`.
        lr_decay: `"plateau"` (halve on plateau), `"cosine"` (cosine to 1% over
            `epochs`) or `None`. Defaults to `"plateau"`.
        lr_decay_factor, lr_decay_patience, min_learning_rate: plateau settings.
        class_weight: `None`, `"balanced"` or a dict class → weight.
        seed: int, seeds shuffling and dropout. Defaults to `0`. (Seed weight
            initialisation by calling `zoo.set_seed` before building the model.)
        run_dir: path of a directory to write the run into, or `None`.
        config: dict saved as `config.json` in the run directory (e.g. builder args).
        tensorboard: bool, write TensorBoard logs to `run_dir/logs`.
        verbose: Keras verbosity (`"auto"` shows a progress bar). Defaults to `"auto"`.
        callbacks: extra Keras callbacks.

    Returns:
        A `TrainResult`.
    """
    for argument, value, minimum in (("epochs", epochs, 1), ("batch_size", batch_size, 1),
                                     ("patience", patience, 0),
                                     ("lr_decay_patience", lr_decay_patience, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(
                f"`{argument}` must be an int >= {minimum}. Received: {argument}={value!r}"
            )
    if lr_decay not in LR_DECAYS:
        raise ValueError(
            f"`lr_decay` must be one of {list(LR_DECAYS)}. Received: lr_decay={lr_decay!r}"
        )
    if not 0 < lr_decay_factor < 1:
        raise ValueError(
            "`lr_decay_factor` must be a float in (0, 1). "
            f"Received: lr_decay_factor={lr_decay_factor!r}"
        )
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
    if fit_on == "train+val" and val is not None:
        x_train = np.concatenate([x_train, val[0]])
        y_train = np.concatenate([y_train, val[1]])
        val = None
    if val is None and monitor.startswith("val_"):
        monitor = monitor[len("val_"):]
    if class_weight == "balanced":
        class_weight = balanced_class_weight(y_train)
    elif class_weight is not None and not isinstance(class_weight, dict):
        raise ValueError(
            "`class_weight` must be None, 'balanced' or a dict class → weight. "
            f"Received: class_weight={class_weight!r}"
        )
    set_seed(seed)
    run_dir = pathlib.Path(run_dir) if run_dir is not None else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)

    early_stopping = keras.callbacks.EarlyStopping(
        monitor=monitor, patience=patience, restore_best_weights=True
    )
    all_callbacks = [early_stopping, keras.callbacks.TerminateOnNaN()]
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
        _write_json(run_dir / "config.json", config)
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

    test_metrics = {}
    if test is not None:
        test_metrics = model.evaluate(
            test[0], test[1], batch_size=max(batch_size, 64), return_dict=True, verbose=0
        )
        test_metrics = {k: float(v) for k, v in test_metrics.items()}

    if run_dir is not None:
        save_model_atomically(model, run_dir / "model.keras")
        _write_json(run_dir / "history.json", history)
        _write_json(
            run_dir / "metrics.json",
            {"test": test_metrics, "best_epoch": best_epoch, "epochs_run": epochs_run,
             "train_seconds": seconds, "params": model.count_params()},
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

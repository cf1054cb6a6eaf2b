"""gru-zoo: GRU models for small sequence tasks, from Keras to a verified TFLite file.

`from zoo import build_gru` is the front door; `zoo.VARIANTS`, `zoo.CELLS` and
`zoo.TASKS` list what it builds, `zoo.load_dataset` gives data (an embedded name or your
own file: `zoo.load_ts`, `zoo.load_csv`, `zoo.load_npz`, or `zoo.Dataset.from_arrays`)
and `zoo.train` the training recipe.

The names below are imported on first use, so that `gru-zoo --help`, `list`, `inspect`
and `bench` (which load `zoo.cli`, inside this package) start without importing
TensorFlow. The custom layers that saved zoo models use are registered with Keras as
soon as any of the Keras-based names is used (or with `import zoo.layers`).
"""

import importlib
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "ATTENTION_TYPES": "zoo.catalog", "CELLS": "zoo.catalog", "TASKS": "zoo.catalog",
    "VARIANTS": "zoo.builders", "Variant": "zoo.builders", "build_gru": "zoo.builders",
    "default_loss_and_metrics": "zoo.builders",
    "DATASETS": "zoo.datasets", "Dataset": "zoo.datasets", "adding_problem": "zoo.datasets",
    "describe_datasets": "zoo.datasets", "load_dataset": "zoo.datasets",
    "load_csv": "zoo.loaders", "load_file": "zoo.loaders", "load_npz": "zoo.loaders",
    "load_ts": "zoo.loaders",
    "AttentionPooling": "zoo.layers", "MultiHeadAttentionPooling": "zoo.layers",
    "WindowDenormalization": "zoo.layers", "WindowNormalization": "zoo.layers",
    "TrainingDivergedError": "zoo.training", "TrainResult": "zoo.training",
    "plot_curves": "zoo.training", "set_seed": "zoo.training", "train": "zoo.training",
    "describe_presets": "zoo.presets", "list_presets": "zoo.presets",
    "load_preset": "zoo.presets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if "keras" in sys.modules:
    # Keras is loaded already, so registering the custom layers costs nothing: a model
    # saved with them then loads with `keras.saving.load_model` right after `import zoo`.
    importlib.import_module("zoo.layers")

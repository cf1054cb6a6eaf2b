"""gru-zoo: GRU models for small sequence tasks, from Keras to a verified TFLite file.

`from zoo import build_gru` is the front door; `zoo.VARIANTS`, `zoo.CELLS` and
`zoo.TASKS` list what it builds, `zoo.load_dataset` gives data (an embedded name or your
own file: `zoo.load_ts`, `zoo.load_csv`, `zoo.load_npz`, or `zoo.Dataset.from_arrays`)
and `zoo.train` the training recipe.
"""

__version__ = "0.1.0"

from zoo.builders import (
    ATTENTION_TYPES,
    CELLS,
    TASKS,
    VARIANTS,
    Variant,
    build_gru,
    default_loss_and_metrics,
)
from zoo.datasets import DATASETS, Dataset, adding_problem, describe_datasets, load_dataset
from zoo.loaders import load_csv, load_file, load_npz, load_ts
from zoo.layers import (
    AttentionPooling,
    MultiHeadAttentionPooling,
    WindowDenormalization,
    WindowNormalization,
)
from zoo.training import TrainingDivergedError, TrainResult, plot_curves, set_seed, train
from zoo.presets import describe_presets, list_presets, load_preset

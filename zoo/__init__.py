"""gru-zoo: GRU models for small sequence tasks, from Keras to a verified TFLite file."""

__version__ = "0.1.0"

from zoo.builders import ATTENTION_TYPES, CELLS, TASKS, VARIANTS, Variant, build_gru
from zoo.layers import AttentionPooling, MultiHeadAttentionPooling

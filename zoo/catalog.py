"""The names `build_gru` knows (variants, cells, tasks, attention types), without Keras.

`zoo.builders` builds its `VARIANTS` registry from `VARIANT_DESCRIPTIONS`, so the two
cannot drift apart. The command line reads its choices and `gru-zoo list` its
descriptions from here: parsing arguments, `--help` and `list` then never import
TensorFlow (seconds of start-up and a screen of its logging).
"""

CELLS = {
    "gru": "Gated recurrent unit (Cho et al. 2014); `reset_after` selects the variant.",
    "lstm": "Long short-term memory (Hochreiter & Schmidhuber 1997), forget bias 1.",
    "rnn": "Vanilla (Elman) recurrent layer with tanh activation.",
}

TASKS = {
    "classification": "One class per sequence: softmax over `num_outputs` classes, or one "
    "sigmoid when `num_outputs=1` (binary).",
    "regression": "`num_outputs` real values per sequence (e.g. a multi-step forecast).",
    "sequence_labeling": "One class per time step (softmax, or sigmoid when `num_outputs=1`).",
    "sequence_regression": "`num_outputs` real values per time step.",
}

ATTENTION_TYPES = ("additive", "multihead")

SEQUENCE_TASKS = ("sequence_labeling", "sequence_regression")

# name -> one-line description, in the order `gru-zoo list` shows them.
VARIANT_DESCRIPTIONS = {
    "stacked": "N recurrent layers stacked, the last one summarises the sequence.",
    "bidirectional": "N bidirectional recurrent layers (forward and backward states "
    "concatenated).",
    "attention": "Recurrent stack whose states are pooled by learned attention (additive "
    "or multi-head).",
    "bidirectional_attention": "Bidirectional recurrent stack with attention pooling "
    "(BiGRU-attention).",
    "cnn_gru": "Conv1D feature extractor (optional max pooling), then the recurrent stack.",
    "cnn_gru_attention": "Conv1D feature extractor, recurrent stack and attention pooling.",
    "gru_fcn": "GRU-FCN: a recurrent branch beside a fully convolutional branch with global "
    "average pooling, concatenated (Elsayed et al. 2018).",
}

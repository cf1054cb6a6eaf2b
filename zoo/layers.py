"""Custom layers of the zoo: attention pooling over recurrent states.

Keras ships attention between a query and a value sequence (`AdditiveAttention`,
`MultiHeadAttention`) but no layer that pools a sequence of states into one vector
with learned attention weights, which is what sequence-level heads need. These two
layers fill that gap; both honour the Keras mask so that padded steps get no weight.
"""

import keras
from keras import ops

PACKAGE = "gru_zoo"


@keras.saving.register_keras_serializable(package=PACKAGE)
class AttentionPooling(keras.layers.Layer):
    """Additive (Bahdanau-style) attention pooling over time.

    score_t = v^T tanh(W h_t + b); weights = softmax over valid steps;
    output = sum_t weights_t * h_t.

    Args:
        attention_units: int, size of the hidden scoring layer. Defaults to `None`,
            which uses the feature size of the input.

    Call arguments:
        inputs: float tensor `(batch, time, features)`.
        mask: optional boolean tensor `(batch, time)`; `False` steps get no weight.

    Returns `(batch, features)`.
    """

    def __init__(self, attention_units=None, **kwargs):
        super().__init__(**kwargs)
        if attention_units is not None and (
            not isinstance(attention_units, int) or attention_units <= 0
        ):
            raise ValueError(
                "`attention_units` must be a positive int or None. "
                f"Received: attention_units={attention_units!r}"
            )
        self.attention_units = attention_units
        self.supports_masking = True

    def build(self, input_shape):
        features = input_shape[-1]
        units = self.attention_units or features
        self.score_dense = keras.layers.Dense(units, activation="tanh", name="score_dense")
        self.score_dense.build(input_shape)
        self.score_vector = keras.layers.Dense(1, use_bias=False, name="score_vector")
        self.score_vector.build(tuple(input_shape[:-1]) + (units,))

    def call(self, inputs, mask=None):
        scores = self.score_vector(self.score_dense(inputs))[..., 0]  # (batch, time)
        if mask is not None:
            scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
        weights = ops.softmax(scores, axis=-1)
        return ops.sum(inputs * weights[..., None], axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"attention_units": self.attention_units})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class MultiHeadAttentionPooling(keras.layers.Layer):
    """Multi-head attention pooling: a learned query attends over all time steps.

    Args:
        num_heads: int, number of attention heads. Defaults to `4`.
        key_dim: int, size of each head. Defaults to `None`, which uses
            `features // num_heads` (at least 1).

    Call arguments:
        inputs: float tensor `(batch, time, features)`.
        mask: optional boolean tensor `(batch, time)`.

    Returns `(batch, features)`.
    """

    def __init__(self, num_heads=4, key_dim=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_heads, int) or num_heads <= 0:
            raise ValueError(
                f"`num_heads` must be a positive int. Received: num_heads={num_heads!r}"
            )
        if key_dim is not None and (not isinstance(key_dim, int) or key_dim <= 0):
            raise ValueError(
                f"`key_dim` must be a positive int or None. Received: key_dim={key_dim!r}"
            )
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.supports_masking = True

    def build(self, input_shape):
        features = input_shape[-1]
        key_dim = self.key_dim or max(1, features // self.num_heads)
        self.query = self.add_weight(
            shape=(1, 1, features), initializer="glorot_uniform", name="query"
        )
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=key_dim, name="attention"
        )
        query_shape = (input_shape[0], 1, features)
        self.attention.build(query_shape, input_shape)

    def call(self, inputs, mask=None):
        batch = ops.shape(inputs)[0]
        query = ops.broadcast_to(self.query, (batch, 1, ops.shape(self.query)[-1]))
        attention_mask = None
        if mask is not None:
            attention_mask = ops.expand_dims(mask, 1)  # (batch, 1, time)
        pooled = self.attention(query, inputs, attention_mask=attention_mask)
        return pooled[:, 0, :]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "key_dim": self.key_dim})
        return config

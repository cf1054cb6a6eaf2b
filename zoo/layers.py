"""Custom layers of the zoo: attention pooling over recurrent states, window normalization.

Keras ships attention between a query and a value sequence (`AdditiveAttention`,
`MultiHeadAttention`) but no layer that pools a sequence of states into one vector
with learned attention weights, which is what sequence-level heads need. These two
layers fill that gap; both honour the Keras mask so that padded steps get no weight.
`WindowNormalization` and `WindowDenormalization` normalize each window by its own
statistics and put them back on the forecast (see their docstrings).
"""

import keras
from keras import ops

from zoo.checks import check, is_bool, is_non_negative_int, is_number, is_positive_int

PACKAGE = "gru_zoo"


# Over more time steps than this, `AttentionPooling` (and the attention inside
# `MultiHeadAttentionPooling`) scales its softmax weights by T and divides the pooled
# output by T. In float it changes nothing (beyond rounding); in an
# int8 file it decides how well the pooling works. The weights then average 1 where
# they averaged 1/T. An int8 softmax writes steps of 1/256, so above T=128 weights of
# about 1/T are less than two steps (each rounded by up to a quarter of itself), and
# above T=256 they round to 0 or 1/256. `export.calibration.INT8_SOFTMAX_MAX_VALUES`
# keeps such a softmax, and the scaling that follows it, in float, and quantizes the
# scaled weights in their calibrated range. Measured on untrained 2 x GRU(64) models,
# max error of the int8 file vs Keras: cnn_gru_attention 0.0098 -> 0.0023 at T=200,
# 0.075 -> 0.0025 at T=1000; no change at T=50 and T=100.
SCALED_WEIGHTS_ABOVE = 128


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
        check("attention_units", attention_units,
              attention_units is None or is_positive_int(attention_units),
              "a positive int or None")
        self.attention_units = None if attention_units is None else int(attention_units)
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
        steps = inputs.shape[1]
        if steps is not None and steps > SCALED_WEIGHTS_ABOVE:
            # Weights times T (mean 1), the weighted sum divided by T: the same in
            # float, but an int8 file can hold them (see SCALED_WEIGHTS_ABOVE).
            weights = weights * float(steps)
            return ops.sum(inputs * weights[..., None], axis=1) / float(steps)
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
class ScaledWeightsMultiHeadAttention(keras.layers.MultiHeadAttention):
    """Keras's `MultiHeadAttention`, with the softmax weights over more than
    `SCALED_WEIGHTS_ABOVE` keys scaled by the number of keys and the output divided by
    it, as `AttentionPooling` does (same numbers in float; an int8 file keeps the scaled
    weights in their calibrated range instead of steps of 1/256).

    Keras documents `_compute_attention` as the method to override for a custom
    attention; it is the only way in: the weights never leave Keras's layer. Shorter
    key sequences, a sequence of unknown length and attention dropout in training take
    Keras's own computation.
    """

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        steps = key.shape[1]
        if (steps is None or steps <= SCALED_WEIGHTS_ABOVE or use_causal_mask
                or (self._dropout > 0.0 and training)):
            return super()._compute_attention(
                query, key, value, attention_mask=attention_mask, training=training,
                return_attention_scores=return_attention_scores,
                use_causal_mask=use_causal_mask)
        # Keras's explicit path (scaled query, dot products, masked softmax), then the
        # weights times T and the weighted sum of the values divided by T.
        query = ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype))
        scores = self._masked_softmax(ops.einsum(self._dot_product_equation, key, query),
                                      attention_mask)
        output = ops.einsum(self._combine_equation, scores * float(steps), value)
        return output / float(steps), (scores if return_attention_scores else None)


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
        check("num_heads", num_heads, is_positive_int(num_heads), "a positive int")
        check("key_dim", key_dim, key_dim is None or is_positive_int(key_dim),
              "a positive int or None")
        self.num_heads = int(num_heads)
        self.key_dim = None if key_dim is None else int(key_dim)
        self.supports_masking = True

    def build(self, input_shape):
        features = input_shape[-1]
        key_dim = self.key_dim or max(1, features // self.num_heads)
        self.query = self.add_weight(
            shape=(1, 1, features), initializer="glorot_uniform", name="query"
        )
        # Weights scaled over long sequences (see SCALED_WEIGHTS_ABOVE): the same
        # weights and numbers as Keras's layer.
        self.attention = ScaledWeightsMultiHeadAttention(
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


WINDOW_NORM_MODES = ("mean", "meanstd")


@keras.saving.register_keras_serializable(package=PACKAGE)
class WindowNormalization(keras.layers.Layer):
    """Normalizes each input window by its own statistics over time.

    Instance normalization of a sequence (the input half of RevIN, Kim et al. 2022):
    each sample's window is centred on its own mean over time, per feature (and, with
    `mode="meanstd"`, divided by its own standard deviation). A forecaster then sees
    the shape of the window rather than its level, so a trending series whose test
    windows lie above every training level (airline passengers) is no longer an
    extrapolation. `keras.layers.Normalization` uses statistics of the whole training
    set, not of each window, which is why this layer exists.
    `WindowDenormalization` puts the statistics back on the forecast.

    With `causal=True` each step is normalized by the statistics of the steps up to and
    including it (a running mean), so a step's output never depends on later steps and
    the layer can run one frame at a time.

    Args:
        mode: `"mean"` (subtract the window mean) or `"meanstd"` (also divide by the
            window standard deviation). Defaults to `"mean"`.
        epsilon: float added to the variance in `"meanstd"` mode. Defaults to `1e-5`.
        causal: bool, statistics of the steps so far instead of the whole window.
            Defaults to `False`.

    Call arguments:
        inputs: float tensor `(batch, time, features)`.

    Returns a tuple: the normalized inputs `(batch, time, features)`, the means
    `(batch, 1, features)` and, in `"meanstd"` mode, the standard deviations
    `(batch, 1, features)`. With `causal=True` the statistics have one entry per step,
    `(batch, time, features)`.
    """

    def __init__(self, mode="mean", epsilon=1e-5, causal=False, **kwargs):
        super().__init__(**kwargs)
        if mode not in WINDOW_NORM_MODES:
            raise ValueError(
                f"`mode` must be one of {list(WINDOW_NORM_MODES)}. Received: mode={mode!r}"
            )
        check("epsilon", epsilon, is_number(epsilon) and epsilon > 0, "a positive float")
        check("causal", causal, is_bool(causal), "True or False")
        self.mode = mode
        self.epsilon = float(epsilon)
        self.causal = bool(causal)

    def call(self, inputs):
        if self.causal:
            return self._call_causal(inputs)
        # Centred on the first step before averaging, as in `_call_causal`: the same
        # values, but the rounding of the mean is that of the offsets, not of the series'
        # level. A window whose spread is tiny beside its level is divided by a small
        # std afterwards, which multiplies that rounding: with the level's rounding,
        # Keras and a TFLite file (summing in another order) gave probabilities 1.7e-4
        # apart on public data (Covid3Month_disc); with the offsets' they agree to float
        # rounding.
        first = inputs[:, :1]
        offsets = inputs - first
        mean_offset = ops.mean(offsets, axis=1, keepdims=True)
        centred = offsets - mean_offset
        mean = first + mean_offset
        if self.mode == "mean":
            return centred, mean
        # Products and rsqrt rather than square, sqrt and a division: LiteRT has no int16
        # kernel for SQUARED_DIFFERENCE (which the converter makes of a square of a
        # difference) nor DIV, so an int16x8 file of that graph failed to run; MUL, MEAN
        # and RSQRT have one (docs/tflite-facts.md F20). Same values up to float rounding.
        variance = ops.mean(centred * centred, axis=1, keepdims=True) + self.epsilon
        inverse_std = ops.rsqrt(variance)
        return centred * inverse_std, mean, variance * inverse_std

    def _call_causal(self, inputs):
        # Statistics of the steps so far, computed on the offsets from the first step:
        # the same values, but the variance (mean of squares minus squared mean) no
        # longer cancels the level of the series, so it keeps its precision (and a
        # running version, one frame at a time, agrees with it to float rounding).
        first = inputs[:, :1]
        offsets = inputs - first
        counts = ops.cumsum(ops.ones_like(inputs[..., :1]), axis=1)  # 1, 2, ..., time
        mean_offset = ops.cumsum(offsets, axis=1) / counts
        centred = offsets - mean_offset
        mean = first + mean_offset
        if self.mode == "mean":
            return centred, mean
        # >= 0 up to rounding, hence the relu. Products and rsqrt, as in `call`; the
        # running sums (CUMSUM) have no int16 kernel either, so the export's unrolled
        # form computes this method step by step (`export.recipes.UnrolledWindowNormalization`).
        variance = ops.relu(ops.cumsum(offsets * offsets, axis=1) / counts
                            - mean_offset * mean_offset) + self.epsilon
        inverse_std = ops.rsqrt(variance)
        return centred * inverse_std, mean, variance * inverse_std

    def compute_output_shape(self, input_shape):
        time = input_shape[1] if self.causal else 1
        stats = (input_shape[0], time, input_shape[-1])
        if self.mode == "mean":
            return tuple(input_shape), stats
        return tuple(input_shape), stats, stats

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "epsilon": self.epsilon, "causal": self.causal})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class WindowDenormalization(keras.layers.Layer):
    """Puts the window statistics of `WindowNormalization` back on a forecast.

    `output * std[channel] + mean[channel]`: the forecast is made in the normalized
    units of input feature `channel` and returned in its original units.

    Args:
        channel: int, the input feature the outputs are forecasts of. Defaults to `0`.

    Call arguments:
        inputs: a list `[outputs, mean]` or `[outputs, mean, std]`: outputs
            `(batch, outputs)` or `(batch, time, outputs)`, statistics
            `(batch, 1, features)` or, from a causal `WindowNormalization`,
            `(batch, time, features)` as `WindowNormalization` returns them. Outputs
            `(batch, outputs)` (one forecast per window) take the statistics of the
            last step.

    Returns a tensor shaped like `outputs`.
    """

    def __init__(self, channel=0, **kwargs):
        super().__init__(**kwargs)
        check("channel", channel, is_non_negative_int(channel), "an int >= 0")
        self.channel = int(channel)

    def call(self, inputs):
        outputs, *stats = inputs

        def pick(statistic):
            statistic = statistic[:, :, self.channel : self.channel + 1]  # (batch, 1 or time, 1)
            return statistic[:, -1, :] if len(outputs.shape) == 2 else statistic

        if len(stats) == 2:
            outputs = outputs * pick(stats[1])
        return outputs + pick(stats[0])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update({"channel": self.channel})
        return config

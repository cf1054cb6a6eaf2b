"""Conversion recipes: the Keras models that the TFLite converter is actually given.

A Keras 3 recurrent model with a dynamic batch does not convert to builtin ops on
TF 2.21 (docs/tflite-facts.md, F1-F6). Each recipe rebuilds the trained model from its
config, with the weights copied, into a form that does:

- `"loop"`: static batch 1; the recurrence stays a `WHILE` loop (smallest file, any
  sequence length when the model's time dimension is `None`).
- `"unrolled"`: static batch 1 and static length, recurrent layers unrolled; no loop.
  The only form that survives calibrated (int8, 16x8) quantization. GRU layers become
  `HoistedGRU`: the input projection of all steps is one op before the steps, so each
  step holds 11 ops instead of Keras's ~17 (smaller files, faster conversion). A causal
  `WindowNormalization` becomes `UnrolledWindowNormalization`: its running statistics
  one step at a time, without `CUMSUM` (which int16x8 files cannot hold).
- `"chunked"`: static batch 1 and static length; each chain of GRU layers becomes one
  `WHILE` loop whose body runs a chunk of time steps of every layer of the chain
  (`export.chunked`). Weights stored once (the file does not grow with T) and packed
  once by XNNPACK; the fast full-sequence form for long sequences.
- `"step"`: one time step: inputs `frame` and every state, outputs `output` and the
  new states. For devices that receive one frame at a time (`export.streaming`).

Only public Keras APIs are used (`get_config`/`from_config`, `get_weights`, a
registered `keras.layers.GRU` subclass). Recurrent dropout is set to 0 in every recipe
(identity at inference; see `_drop_dropout`).
"""

import copy

import keras

import zoo.layers  # noqa: F401  (registers the custom layers for `from_config`)
from export.converter import RECIPES  # noqa: F401  (the recipe names, kept without Keras)

RECURRENT_CLASSES = ("GRU", "LSTM", "SimpleRNN", "HoistedGRU")
HOISTED_GRU_NAME = "gru_zoo_export>HoistedGRU"


@keras.saving.register_keras_serializable(package="gru_zoo_export")
class HoistedGRU(keras.layers.GRU):
    """A Keras `GRU` whose unrolled graph is built for the converter (the `"unrolled"` recipe).

    Same weights, config and outputs as `keras.layers.GRU`; only the unrolled graph
    differs. Keras's unrolled GRU repeats the whole cell at every step (input
    projection, recurrent projection, three gate slices: ~17 ops per step). Here the
    input projection `x @ W + b` of all steps is computed once, before the steps (two
    `FULLY_CONNECTED` ops and two `UNPACK`, with the recurrent z/r biases folded in),
    and each step holds only the recurrent projection and the gate math (11 ops:
    2 `FULLY_CONNECTED`, `ADD`, `LOGISTIC`, `SPLIT`, `MUL`, `ADD`, `TANH`, `SUB`,
    `MUL`, `ADD`). The first step, from the zero state, needs no recurrent product.

    Falls back to Keras's own computation when the layer is not unrolled, is given a
    mask or an initial state, or is stateful.
    """

    def call(self, sequences, initial_state=None, mask=None, training=False):
        steps = sequences.shape[1]
        if (not self.unroll or mask is not None or initial_state is not None
                or self.stateful or steps is None):
            return super().call(sequences, initial_state=initial_state, mask=mask,
                                training=training)
        ops = keras.ops
        cell = self.cell
        units = cell.units
        x = ops.cast(sequences, cell.compute_dtype)
        kernel, recurrent = cell.kernel, cell.recurrent_kernel
        activation, gate_activation = cell.activation, cell.recurrent_activation
        input_bias = recurrent_bias = None
        if cell.use_bias:
            if cell.reset_after:
                input_bias, recurrent_bias = cell.bias[0], cell.bias[1]
            else:
                input_bias = cell.bias
        # Input projections of every step at once: z and r together, h apart.
        x_zr = ops.matmul(x, kernel[:, : 2 * units])
        x_h = ops.matmul(x, kernel[:, 2 * units :])
        if input_bias is not None:
            zr_bias = input_bias[: 2 * units]
            if recurrent_bias is not None:
                zr_bias = zr_bias + recurrent_bias[: 2 * units]
            x_zr = x_zr + zr_bias
            x_h = x_h + input_bias[2 * units :]
        x_zr = ops.unstack(x_zr, axis=1)
        x_h = ops.unstack(x_h, axis=1)
        recurrent_zr = recurrent[:, : 2 * units]
        recurrent_hh = recurrent[:, 2 * units :]
        recurrent_h_bias = recurrent_bias[2 * units :] if recurrent_bias is not None else None
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        h = None
        outputs = []
        for t in order:
            if h is None:  # the zero initial state: no recurrent products
                z, r = ops.split(gate_activation(x_zr[t]), 2, axis=-1)
                pre = x_h[t]
                if recurrent_h_bias is not None:
                    pre = pre + r * recurrent_h_bias
                candidate = activation(pre)
                h = candidate - z * candidate
            else:
                z, r = ops.split(gate_activation(x_zr[t] + ops.matmul(h, recurrent_zr)), 2,
                                 axis=-1)
                if cell.reset_after:
                    projected = ops.matmul(h, recurrent_hh)
                    if recurrent_h_bias is not None:
                        projected = projected + recurrent_h_bias
                    candidate = activation(x_h[t] + r * projected)
                else:
                    candidate = activation(x_h[t] + ops.matmul(r * h, recurrent_hh))
                h = candidate + z * (h - candidate)
            outputs.append(h)
        output = ops.stack(outputs, axis=1) if self.return_sequences else h
        if self.return_state:
            return output, h
        return output


UNROLLED_WINDOW_NORM_NAME = "gru_zoo_export>UnrolledWindowNormalization"


@keras.saving.register_keras_serializable(package="gru_zoo_export")
class UnrolledWindowNormalization(zoo.layers.WindowNormalization):
    """A causal `WindowNormalization` computed step by step (the `"unrolled"` recipe).

    Same config and outputs as `zoo.layers.WindowNormalization` up to float rounding.
    Keras's causal graph computes running sums with `CUMSUM` and divides by the step
    counts; LiteRT has no int16 kernel for either, so the 16x8 quantizer refuses that
    graph (docs/tflite-facts.md F20). Here each step has its own ops, all with int16
    kernels (`ADD`, `SUB`, `MUL`, `RSQRT`, `UNPACK`, `PACK`), so that each step's
    statistics get their own 16-bit scale (F27): stacked first, a step's mean would be
    held at the scale of the largest one, and the spread of the first steps, a
    difference of two much larger numbers, would be lost.

    - Running mean: the sum so far (one `ADD` per step) times the constant `1 / (t + 1)`.
    - Spread (`mode="meanstd"`): Welford's update of the sum of squared deviations,
      `m2 += (x - previous mean) * (x - mean)`. Exact arithmetic gives Keras's mean of
      squares minus squared mean; in 16 bits it keeps the size of the spread instead
      of cancelling two squares of the level.
    - Step 0 is constant: its offset from the first step is 0, so its mean and centred
      value are 0 and its variance is `epsilon`. They are not computed: an int16 `ADD`
      whose output was 0 on every calibration sample gets a zero scale, and LiteRT
      aborts the process when it prepares that op (F27).
    """

    def _call_causal(self, inputs):
        steps = inputs.shape[1]
        if steps is None or steps < 2:  # no static length (or nothing to unroll)
            return super()._call_causal(inputs)
        ops = keras.ops
        first = inputs[:, :1]
        rows = ops.unstack(inputs - first, axis=1)  # offsets from the first step
        zero = rows[0]  # exactly 0, at the offsets' scale
        means, centred, spreads = [zero], [zero], [zero + self.epsilon ** 0.5]
        total = m2 = previous = None
        for t in range(1, steps):
            row = rows[t]
            total = row if t == 1 else total + row
            mean = total * (1.0 / (t + 1))
            deviation = row - mean
            means.append(mean)
            if self.mode == "mean":
                centred.append(deviation)
                continue
            # Step 1: the previous mean is 0 (step 0's offset).
            update = (row if t == 1 else row - previous) * deviation
            m2 = update if t == 1 else m2 + update
            previous = mean
            variance = m2 * (1.0 / (t + 1)) + self.epsilon
            inverse_std = ops.rsqrt(variance)
            centred.append(deviation * inverse_std)
            spreads.append(variance * inverse_std)
        outputs = (ops.stack(centred, axis=1), first + ops.stack(means, axis=1))
        if self.mode == "mean":
            return outputs
        return outputs + (ops.stack(spreads, axis=1),)


def load_model(model):
    """Returns a `keras.Model` from a model object or a `.keras` path."""
    if isinstance(model, keras.Model):
        return model
    return keras.saving.load_model(str(model), compile=False)


def _drop_dropout(layer_config):
    """Sets a recurrent layer's (or cell's) dropout rates to 0, in place.

    Dropout is the identity at inference, but a Keras 3 recurrent layer with
    `dropout > 0` draws its dropout masks on every call, training or not
    (`RNN._maybe_config_dropout_masks`). The masks are unused and pruned, but the
    seed generator's state update stays in the traced graph: `VAR_HANDLE`,
    `READ_VARIABLE`, an int32 `ADD`, `ASSIGN_VARIABLE` and a `CALL_ONCE`. TFLite's
    16x8 quantizer then fails on that int32 `ADD` ("Max and min for dynamic tensors
    should be recorded during calibration: ... gru_0_1/Add", the trained GunPoint
    cnn_gru with `dropout=0.2`). Without dropout the graph computes the same outputs
    and holds no variables.
    """
    for key in ("dropout", "recurrent_dropout"):
        if key in layer_config:
            layer_config[key] = 0.0


def _patch_config(config, *, batch_shape, unroll, hoist=True):
    """Sets the input batch shape and the recurrent settings in a model config, in place."""
    if isinstance(config, dict):
        if config.get("class_name") in RECURRENT_CLASSES and isinstance(config.get("config"), dict):
            layer_config = config["config"]
            if unroll is not None:
                layer_config["unroll"] = unroll
            if unroll and hoist and config["class_name"] == "GRU":
                # The unrolled GRU graph with the input projection hoisted out of the steps.
                config["class_name"] = "HoistedGRU"
                config["module"] = None
                config["registered_name"] = HOISTED_GRU_NAME
            if "use_cudnn" in layer_config:
                # A cuDNN kernel in the traced graph cannot convert (docs/tflite-facts.md, F8b).
                layer_config["use_cudnn"] = False
            _drop_dropout(layer_config)
        if (unroll and hoist and config.get("class_name") == "WindowNormalization"
                and isinstance(config.get("config"), dict) and config["config"].get("causal")):
            # Running sums as one ADD per step, which 16x8 files can hold.
            config["class_name"] = "UnrolledWindowNormalization"
            config["module"] = None
            config["registered_name"] = UNROLLED_WINDOW_NORM_NAME
        if config.get("class_name") == "InputLayer" and isinstance(config.get("config"), dict):
            config["config"]["batch_shape"] = list(batch_shape)
        for value in config.values():
            _patch_config(value, batch_shape=batch_shape, unroll=unroll, hoist=hoist)
    elif isinstance(config, list):
        for value in config:
            _patch_config(value, batch_shape=batch_shape, unroll=unroll, hoist=hoist)


def input_spec(model):
    """`(shape, dtype)` of the model's single input, `shape` without the batch axis."""
    if len(model.inputs) != 1:
        raise ValueError(
            "`model` must have exactly one input (the sequence). "
            f"Received: a model with {len(model.inputs)} inputs"
        )
    tensor = model.inputs[0]
    return tuple(tensor.shape[1:]), str(tensor.dtype)


def rebuild(model, *, unroll, sequence_length=None, hoist=True):
    """Rebuilds `model` with batch 1 (and `sequence_length` steps), weights copied.

    Args:
        model: a functional or Sequential `keras.Model`.
        unroll: bool, unroll every recurrent layer (needs a static length).
        sequence_length: int or `None`, the static time dimension; `None` keeps the
            model's own.
        hoist: bool, with `unroll=True`: GRU layers become `HoistedGRU` (the input
            projection computed once for all steps). `False` keeps Keras's own unrolled
            GRU graph (for comparisons). Defaults to `True`.

    Returns:
        A new `keras.Model` with input shape `(1, time, ...)`.
    """
    shape, _ = input_spec(model)
    time = sequence_length if sequence_length is not None else shape[0]
    if unroll and time is None:
        raise ValueError(
            "The 'unrolled' recipe needs a fixed sequence length, and the model's time "
            f"dimension is None (input shape {shape}). Pass `sequence_length=`."
        )
    config = copy.deepcopy(model.get_config())
    _patch_config(config, batch_shape=(1, time) + tuple(shape[1:]), unroll=unroll, hoist=hoist)
    rebuilt = _from_config(model, config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _from_config(model, config):
    """`type(model).from_config(config)`, a failure reported with the model's class."""
    try:
        return type(model).from_config(config)
    except Exception as error:  # noqa: BLE001 (reported with the model's class)
        raise TypeError(
            "`model` must be a functional or Sequential keras.Model whose config can be "
            f"rebuilt with `from_config`. Received: {type(model).__name__} "
            f"({type(error).__name__}: {error})"
        ) from error


def rebuild_chunked(model, *, sequence_length=None, chunk_steps=8, segment_chunks=1,
                    pooling_in_loop=False, bidirectional_rows=False, prefix_loop=False,
                    project_before=False):
    """Rebuilds `model` with batch 1 and its GRU chains as `ChunkedGRU` loops, weights copied.

    Args:
        model: a functional `keras.Model`.
        sequence_length: int or `None`, the static time dimension; `None` keeps the
            model's own (which must then be fixed).
        chunk_steps: int, time steps per loop iteration (see `export.chunked`).
        segment_chunks: int, chunks per segment of a chain or bidirectional layer
            returning its sequence (1: one loop; see `export.chunked.ChunkedGRU`).
        pooling_in_loop: bool, a chain whose sequence only feeds an `AttentionPooling`
            computes that pooling in its loop (`export.chunked.pooling_plan`; which
            files do: `export.chunked.pools_in_loop`).
        bidirectional_rows: bool, a bidirectional GRU runs its two directions as two
            rows of one batch (`export.chunked.ChunkedBidirectionalGRU`; which files do:
            `export.chunked.rows_in_step`).
        prefix_loop: bool, the steps before each loop run in a loop of their own
            (which files do: `export.chunked.prefix_in_loop`).
        project_before: bool, a loop whose first GRU reads a wide input projects it
            for the whole sequence before the loop (`export.chunked.ChunkedGRU`; which
            files do: `export.chunked.project_before_in`).

    Returns:
        A new `keras.Model` with input shape `(1, time, ...)`.

    Raises:
        ValueError: the model has no GRU chain that the chunked form computes exactly
            (e.g. only bidirectional or LSTM layers, or a mask), or no fixed length.
    """
    from export import chunked

    shape, _ = input_spec(model)
    time = sequence_length if sequence_length is not None else shape[0]
    if time is None:
        raise ValueError(
            "The 'chunked' recipe needs a fixed sequence length, and the model's time "
            f"dimension is None (input shape {shape}). Pass `sequence_length=`."
        )
    chains = chunked.chunk_plan(model)
    bidirectional = chunked.bidirectional_plan(model)
    if not chains and not bidirectional:
        raise ValueError(
            "The 'chunked' recipe needs GRU layers (forward or bidirectional) without a "
            "mask; this model has none (LSTM and SimpleRNN layers and masked inputs use "
            "the 'unrolled' or 'loop' recipe)."
        )
    config = copy.deepcopy(model.get_config())
    _patch_config(config, batch_shape=(1, time) + tuple(shape[1:]), unroll=False, hoist=False)
    poolings = chunked.pooling_plan(model, chains) if pooling_in_loop else {}
    chunked.patch_config_for_chunks(config, chains, chunk_steps, segment_chunks, poolings,
                                    prefix_loop=prefix_loop, project_before=project_before)
    chunked.patch_config_for_bidirectional(config, bidirectional, chunk_steps,
                                           segment_chunks, rows=bidirectional_rows,
                                           prefix_loop=prefix_loop,
                                           project_before=project_before)
    rebuilt = _from_config(model, config)
    chunked.copy_weights(model, rebuilt, chains, poolings)
    return rebuilt


def streaming_plan(model):
    """Checks that `model` can run one frame at a time; returns `[(layer, kind)]`.

    See `export.streaming`: recurrent layers, causal convolutions, pooling and
    attention pooling as running statistics, per-step layers.

    Raises:
        ValueError: naming the layer that cannot stream, before any conversion work.
    """
    from export import streaming

    return streaming.streaming_plan(model)


def state_specs(model):
    """Every state a streaming export carries: `[{"name", "shape", "kind", "layer"}]`."""
    from export import streaming

    return streaming.state_specs(model)


def build_step_model(model, *, batch_size=1, gate_math=False):
    """The one-frame model of a streaming-capable `model` (see `export.streaming`)."""
    from export import streaming

    return streaming.build_step_model(model, batch_size=batch_size, gate_math=gate_math)

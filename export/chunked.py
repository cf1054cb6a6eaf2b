"""The `"chunked"` recipe: GRU layers as a `WHILE` loop over chunks of time steps.

Why a new form (measured on a 2-core AMD EPYC, 2 MB L2 per core, one thread):

- The unrolled form repeats each recurrent `FULLY_CONNECTED` once per time step, all
  sharing one constant weight tensor. LiteRT's default XNNPACK delegate packs the
  weights of every node it takes, without sharing them between nodes that read the
  same tensor: the resident memory of an unrolled 2 x GRU(64) file grows by ~68 KB per
  layer and time step (one packed copy of the 64 x 192 recurrent kernel per node), so
  past a few dozen steps every step streams its own copy from L3 or DRAM and the cost
  per layer-step climbs from ~1.5 µs (T=16) to ~7 µs (T=200). With builtin kernels only
  the cost stays flat, but at ~2.7 µs per layer-step.
- Keras's own loop (`"loop"` recipe) carries the input and output sequences through a
  `WHILE` whose body slices and re-concatenates them at every step: 21-28 small ops per
  step, and copies that grow with T.

This form keeps one loop body of `chunk_steps` unrolled steps for a whole chain of
GRU layers (`ChunkedGRU`): every node of the body is packed once, whatever T is, and the
file holds the weights once (its size does not grow with T). Per chunk, each layer's
input projection is one matmul over the chunk's steps; the chunk's outputs of one
layer feed the next layer inside the body, so no intermediate sequence crosses the
loop. The `T mod chunk_steps` first steps run unrolled before the loop (in float16
files in a loop of one iteration of their own, `prefix_in_loop`).

Two limits shape the loop (measured on the 2-core Intel Xeon with AMX that the
benchmarks ran on last):
- A body holds a packed copy of the recurrent kernels per step, so it stops at
  `BODY_WEIGHT_BYTES` of them (`body_steps_cap`): past the cache the loop falls off a
  cliff (2-3x slower).
- The `WHILE` kernel copies every loop variable at every iteration, an output buffer of
  T rows included, so a loop returning a long sequence runs in segments: an outer loop
  over segments, an inner one over a segment's chunks that fills a segment's buffer
  (`segment_chunks_for`; not in int16x8 files).

A bidirectional GRU (`ChunkedBidirectionalGRU`) runs both directions in one loop, the
backward one from the end; in float files the two directions of each step are two rows of
one batch (`rows_in_step`), half the ops per step.

A chain whose sequence only feeds an additive `zoo.layers.AttentionPooling` needs no
output buffer at all: the loop computes the pooling itself with an online softmax
(`ChunkedGRU(pooling=...)`, `pooling_plan`), carrying the running max of the scores, the
running sum of their exponentials and the running weighted sum of the states. int8 files
do too, with the hidden score layer in int8 and the score vector and online softmax in
float (`pools_in_loop`).

Only public Keras APIs and public TensorFlow ops are used. The layer exists for
conversion: `export.recipes.rebuild(model, form="chunked")` puts it in place of a
chain of GRU layers, with the weights copied.
"""

import copy

import keras

import zoo.layers

# Layers that may sit between two chained GRU layers: the identity at inference.
IDENTITY_AT_INFERENCE = (
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)
CHUNKED_GRU_NAME = "gru_zoo_export>ChunkedGRU"
CHUNKED_BIDIRECTIONAL_NAME = "gru_zoo_export>ChunkedBidirectionalGRU"
# Quantizations whose files compute an attention pooling inside the chain's loop
# (`pooling_plan`). int8 files do too, with the pooling's hidden score layer in int8 and
# its score vector and online softmax (`ONLINE_SOFTMAX_SCOPE`) in float: in int8 the
# running sums would be loop variables of one calibrated range, whose step at T=1000 is
# as large as a whole chunk's contribution. A fully integer int8 file (`int8_float_layers=[]`) therefore keeps the
# buffer and the pooling after the loop, and so do int16x8 files (their quantizer has no
# list of ops to keep float).
POOLING_IN_LOOP_MODES = (None, "float16", "dynamic", "int8")
# The initial running max of the scores: below any score, and finite, so that the first
# chunk's rescaling factor exp(max - new max) is exactly 0 (with -inf it would be nan
# if a score were -inf too).
_NO_SCORE = -1e30
# TensorFlow name scope of the online softmax's ops (score vector, running max,
# exponentials, running sums, the final division): an int8 file keeps them float by this
# name (the quantizer's node denylist, `export.calibration.quantize_int8`), while the
# pooling's hidden score layer, under the pooling layer's own name only, runs in int8.
ONLINE_SOFTMAX_SCOPE = "gru_zoo_online_softmax"


def gru_projection(cell, inputs):
    """Input projections of a GRU cell for all steps of `inputs` `(batch, steps, features)`.

    Returns `(x_zr, x_h)`: `(batch, steps, 2 * units)` with the z/r input and (for
    `reset_after=True`) recurrent biases folded in, and `(batch, steps, units)`.
    """
    kernel_zr, kernel_h, bias_zr, bias_h = projection_weights(cell)
    return _project(inputs, kernel_zr, kernel_h, bias_zr, bias_h)


def projection_weights(cell):
    """A GRU cell's input kernels and biases as `gru_projection` applies them:
    `(kernel_zr, kernel_h, bias_zr, bias_h)`, the biases `None` without `use_bias`."""
    units = cell.units
    kernel = cell.kernel
    bias_zr = bias_h = None
    if cell.use_bias:
        if cell.reset_after:
            input_bias, recurrent_bias = cell.bias[0], cell.bias[1]
            bias_zr = input_bias[: 2 * units] + recurrent_bias[: 2 * units]
        else:
            input_bias = cell.bias
            bias_zr = input_bias[: 2 * units]
        bias_h = input_bias[2 * units :]
    return kernel[:, : 2 * units], kernel[:, 2 * units :], bias_zr, bias_h


def _project(inputs, kernel_zr, kernel_h, bias_zr, bias_h):
    ops = keras.ops
    x_zr = ops.matmul(inputs, kernel_zr)
    x_h = ops.matmul(inputs, kernel_h)
    if bias_zr is not None:
        x_zr = x_zr + bias_zr
        x_h = x_h + bias_h
    return x_zr, x_h


def _project_joined(inputs, kernel_zr, kernel_h, bias_zr, bias_h):
    """`_project`'s two projections as one, `(..., 3 units)`: one product by the joined
    kernels (a constant the converter folds), so no concatenation holds a second copy of
    the projections (`ChunkedBidirectionalGRU`'s rows form, float files only)."""
    ops = keras.ops
    joined = ops.matmul(inputs, ops.concatenate([kernel_zr, kernel_h], axis=-1))
    if bias_zr is not None:
        joined = joined + ops.concatenate([bias_zr, bias_h], axis=-1)
    return joined


def gru_step(cell, x_zr, x_h, h):
    """One GRU step from the projected inputs `(batch, 2 * units)`, `(batch, units)`.

    `h` is the previous state, or `None` for the zero initial state (then the recurrent
    products vanish and are left out).
    """
    units = cell.units
    recurrent = cell.recurrent_kernel
    recurrent_h_bias = None
    if cell.use_bias and cell.reset_after:
        recurrent_h_bias = cell.bias[1][2 * units :]
    return gru_update(x_zr, x_h, h, recurrent[:, : 2 * units], recurrent[:, 2 * units :],
                      recurrent_h_bias, cell)


def gru_update(x_zr, x_h, h, recurrent_zr, recurrent_h, recurrent_h_bias, cell):
    """`gru_step` with the recurrent weights given: `(units, 2 * units)`,
    `(units, units)` and `(units,)` or `None` for one direction, or stacked per row of a
    batch, `(rows, units, ...)` (`ChunkedBidirectionalGRU`'s two directions as two rows:
    the products are then one `BATCH_MATMUL` each). `cell` gives the activations and
    `reset_after`."""
    ops = keras.ops
    activation, gate_activation = cell.activation, cell.recurrent_activation
    if h is None:
        z, r = ops.split(gate_activation(x_zr), 2, axis=-1)
        pre = x_h if recurrent_h_bias is None else x_h + r * recurrent_h_bias
        candidate = activation(pre)
        return candidate - z * candidate
    z, r = ops.split(gate_activation(x_zr + ops.matmul(h, recurrent_zr)), 2, axis=-1)
    if cell.reset_after:
        projected = ops.matmul(h, recurrent_h)
        if recurrent_h_bias is not None:
            projected = projected + recurrent_h_bias
        candidate = activation(x_h + r * projected)
    else:
        candidate = activation(x_h + ops.matmul(r * h, recurrent_h))
    return candidate + z * (h - candidate)


def _check_loop_sizes(chunk_steps, segment_chunks):
    """The chunked layers' `chunk_steps` and `segment_chunks`: positive ints."""
    for name, value in (("chunk_steps", chunk_steps), ("segment_chunks", segment_chunks)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def _nests(segment_chunks, loops):
    """Whether a loop of `loops` iterations runs in segments of `segment_chunks` (more
    than one segment, of more than one chunk each, all alike)."""
    return 1 < segment_chunks < loops and loops % segment_chunks == 0


@keras.saving.register_keras_serializable(package="gru_zoo_export")
class ChunkedGRU(keras.layers.GRU):
    """A chain of GRU layers computed chunk by chunk in one `WHILE` loop (for conversion).

    The layer is the first GRU of the chain (its own config and weights); `followers`
    are the configs of the GRU layers that follow it in the model, each taking the
    previous one's sequence. The output is the last layer's output (its last state, or
    its whole sequence when it returns sequences). Same numbers as the Keras layers.

    Args:
        followers: list of `keras.layers.GRU` configs (may be empty).
        chunk_steps: int, time steps per loop iteration. The first `T mod chunk_steps`
            steps run unrolled before the loop; with `chunk_steps >= T` there is no loop.
        segment_chunks: int, for a chain that returns its sequence: chunks per segment.
            Above 1 (and dividing the number of iterations), an outer loop runs the
            segments and an inner loop the chunks of one segment, which fills a buffer of
            one segment; the outer loop writes it into the sequence's buffer once per
            segment (see `segment_chunks_for`). 1: one loop.
        pooling: optional config of the `zoo.layers.AttentionPooling` layer that reads
            the chain's sequence: the loop computes that pooling chunk by chunk (an online
            softmax: exact, in any order) and the layer returns its `(batch, units)`
            output instead of the sequence. Needs a last layer that returns sequences.
        prefix_loop: bool, the steps before the loop run in a loop of one iteration of
            their own (`prefix_in_loop`: float16 files).
        project_before: bool, an input of at least `PROJECT_BEFORE_LOOP_WIDTH` values
            per unit is projected for the whole sequence before the loop, and the loop
            reads the projections (`project_before_in`: float and int8 files, not for
            TFLite Micro).
        **kwargs: the first GRU's arguments.
    """

    def __init__(self, units, followers=(), chunk_steps=8, segment_chunks=1, pooling=None,
                 prefix_loop=False, project_before=False, **kwargs):
        super().__init__(units, **kwargs)
        _check_loop_sizes(chunk_steps, segment_chunks)
        self.prefix_loop = _check_flag("prefix_loop", prefix_loop)
        self.project_before = _check_flag("project_before", project_before)
        self.follower_configs = [copy.deepcopy(dict(config)) for config in followers]
        self.chunk_steps = chunk_steps
        self.segment_chunks = segment_chunks
        self.followers = [keras.layers.GRU.from_config(config)
                          for config in self.follower_configs]
        self.pooling_config = copy.deepcopy(dict(pooling)) if pooling else None
        self.pooling = None
        if self.pooling_config is not None:
            if not self._last().return_sequences:
                raise ValueError("ChunkedGRU(pooling=...) pools the chain's sequence; its "
                                 "last GRU layer must return sequences. Received: "
                                 "return_sequences=False")
            self.pooling = zoo.layers.AttentionPooling.from_config(self.pooling_config)

    def build(self, sequences_shape):
        super().build(sequences_shape)
        features = self.units
        for follower in self.followers:
            follower.build((sequences_shape[0], sequences_shape[1], features))
            features = follower.units
        if self.pooling is not None:
            self.pooling.build((sequences_shape[0], sequences_shape[1], features))

    def _last(self):
        return self.followers[-1] if self.followers else self

    def compute_output_shape(self, sequences_shape):
        last = self._last()
        if last.return_sequences and self.pooling is None:
            return (sequences_shape[0], sequences_shape[1], last.units)
        return (sequences_shape[0], last.units)

    def get_config(self):
        config = super().get_config()
        config.update(followers=self.follower_configs, chunk_steps=self.chunk_steps,
                      segment_chunks=self.segment_chunks, pooling=self.pooling_config,
                      prefix_loop=self.prefix_loop, project_before=self.project_before)
        return config

    def _pool(self, sequence, previous):
        """The attention pooling's running `(max score, sum of exponentials, weighted sum
        of states)` after the rows `(count, units)` of `sequence`, from `previous` (the
        same three, or `None` for the first rows).

        Online softmax: each exponential is taken against the running max and the earlier
        sums are rescaled when the max grows, so the result, weighted sum / sum, is the
        softmax-weighted sum of all the rows.
        """
        import tensorflow as tf

        ops = keras.ops
        # Under the pooling layer's name, so that `int8_float_layers` naming it keeps
        # all of it float, as it would the layer itself. The score `v^T tanh(W h + b)` of
        # `AttentionPooling` in two parts: in an int8 file the hidden layer (units x units
        # weights) runs in int8 and the score vector (units weights) in float with the
        # online softmax, because the MLIR quantizer gives an int8 tensor read by the
        # running max the running max's range (not its own), which clips the scores below
        # the first step's (F26; OSULeaf's trained attention: scores in [-2.3, 3.8] held
        # in [0, 3.4], test accuracy 0.38 -> 0.28; with the vector in float 0.38).
        with tf.name_scope(self.pooling.name):
            hidden = self.pooling.score_dense(sequence)
            with tf.name_scope(ONLINE_SOFTMAX_SCOPE):
                scores = self.pooling.score_vector(hidden)  # (count, 1)
                top = ops.max(scores, axis=0, keepdims=True)
                if previous is not None:
                    top = ops.maximum(previous[0], top)
                weights = ops.exp(scores - top)
                total = ops.sum(weights, axis=0, keepdims=True)
                weighted = ops.sum(weights * sequence, axis=0, keepdims=True)
                if previous is not None:
                    decay = ops.exp(previous[0] - top)
                    total = previous[1] * decay + total
                    weighted = previous[2] * decay + weighted
        return top, total, weighted

    def call(self, sequences, initial_state=None, mask=None, training=False):
        import tensorflow as tf  # the loop is a TensorFlow `while_loop` (export runs on TF)

        steps = sequences.shape[1]
        if (mask is not None or initial_state is not None or self.stateful
                or self.go_backwards or steps is None):
            raise ValueError(
                "ChunkedGRU needs a fixed sequence length, no mask, no initial state and "
                f"forward, non-stateful layers. Received: steps={steps}, mask="
                f"{mask is not None}, initial_state={initial_state is not None}, "
                f"stateful={self.stateful}, go_backwards={self.go_backwards}"
            )
        if sequences.shape[0] != 1:
            raise ValueError(
                "ChunkedGRU computes batch 1 (export rebuilds the model with batch 1). "
                f"Received: sequences of shape {tuple(sequences.shape)}"
            )
        ops = keras.ops
        cells = [self.cell] + [follower.cell for follower in self.followers]
        last = self._last()
        pooled = self.pooling is not None
        returns = last.return_sequences and not pooled  # a sequence leaves the loop
        # Batch 1: the sequence as a (time, features) matrix, so that every step's row is
        # a plain 2-D slice that XNNPACK runs (a 3-D slice that drops the time axis runs
        # on the builtin kernel and splits the delegated graph at every step).
        x = ops.reshape(ops.cast(sequences, self.cell.compute_dtype), (steps, -1))
        chunk = min(self.chunk_steps, steps)
        loops = steps // chunk
        prefix = steps - loops * chunk
        if loops == 1 and prefix == 0:  # one chunk: no loop at all
            loops, prefix = 0, steps

        # The loop reads one window of each of `sources` per chunk: the input, or the
        # first layer's input projections for the whole sequence (`project_before`).
        projected = self.project_before and projected_before_loop(x.shape[-1], self.units)
        sources = _loop_sources(x, self.cell, projected)

        def run(inputs, states, count):
            """`count` steps of every layer from the windows `inputs` of `sources`."""
            new_states = []
            for index, cell in enumerate(cells):
                if index == 0:
                    x_zr, x_h = inputs if projected else gru_projection(cell, inputs[0])
                else:
                    x_zr, x_h = gru_projection(cell, inputs)
                rows_zr, rows_h = _rows(x_zr, count), _rows(x_h, count)
                h = states[index]
                outputs = []
                for t in range(count):
                    h = gru_step(cell, rows_zr[t], rows_h[t], h)
                    outputs.append(h)
                new_states.append(h)
                if index < len(cells) - 1 or last.return_sequences:
                    inputs = _stack_rows(outputs)
            return new_states, inputs

        states = [None] * len(cells)
        pieces = []
        pool = None
        if prefix:
            def before():
                new_states, sequence = run([s[:prefix] for s in sources], states, prefix)
                return (new_states + ([sequence] if returns else [])
                        + (list(self._pool(sequence, None)) if pooled else []))

            shapes = ([(1, cell.units) for cell in cells]
                      + ([(prefix, last.units)] if returns else [])
                      + ([(1, 1), (1, 1), (1, last.units)] if pooled else []))
            values = _before_loop(before, shapes, x, in_loop=bool(loops) and self.prefix_loop)
            states = values[: len(cells)]
            if returns:
                pieces.append(values[len(cells)])
            if pooled:
                pool = tuple(values[-3:])
        if loops:
            states = [ops.zeros((1, cell.units), x.dtype) if h is None else h
                      for h, cell in zip(states, cells)]
            if pooled and pool is None:
                pool = (ops.full((1, 1), _NO_SCORE, x.dtype), ops.zeros((1, 1), x.dtype),
                        ops.zeros((1, last.units), x.dtype))
            carried = list(states) + (list(pool) if pooled else [])

            def body(g, carried):
                new_states, sequence = run(_windows(sources, prefix + g * chunk, chunk),
                                           carried[: len(cells)], chunk)
                if pooled:
                    return new_states + list(self._pool(sequence, carried[len(cells) :])), []
                return new_states, [sequence] if returns else []

            carried, filled = _chunk_loop(
                body, carried, [((chunk, last.units), False)] if returns else [], loops,
                self.segment_chunks, x)
            states = carried[: len(cells)]
            if returns:
                pieces.append(tf.reshape(filled[0], (loops * chunk, last.units)))
            if pooled:
                pool = carried[len(cells) :]
        if pooled:
            with tf.name_scope(self.pooling.name), tf.name_scope(ONLINE_SOFTMAX_SCOPE):
                return pool[2] / pool[1]
        if returns:
            sequence = pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=0)
            return ops.expand_dims(sequence, 0)
        return states[-1]


@keras.saving.register_keras_serializable(package="gru_zoo_export")
class ChunkedBidirectionalGRU(keras.layers.Bidirectional):
    """A `Bidirectional(GRU)` computed chunk by chunk in one `WHILE` loop (for conversion).

    Each iteration runs one chunk of the forward direction (from the start) and one of
    the backward direction (from the end, its rows in reverse). With `return_sequences`
    both directions' chunks go to buffers, the backward one at the mirrored
    position, so that the stacked sequences are in time order as Keras returns them.
    Same config and weights as the `Bidirectional` layer, plus `chunk_steps` and
    `segment_chunks` (as in `ChunkedGRU`: with `return_sequences`, nested loops over
    segments of that many chunks), `prefix_loop` (as in `ChunkedGRU`) and `rows`.

    `rows=True` (float files, `rows_in_step`) runs each time step of the two directions
    as two rows of one batch: every gate op once for both, the recurrent products one
    `BATCH_MATMUL` of the two states by the two stacked kernels. On XNNPACK every op
    has a fixed cost (BENCHMARKS.md, "Op costs"), and half the ops per step pay
    off there; int8 keeps two steps, its `BATCH_MATMUL` being slower than two
    `FULLY_CONNECTED` ops ("Two directions of a bidirectional GRU as one batch"). The
    backward direction then reads a time-reversed copy of the input, made once before
    the loop, so that both directions' chunks are one slice; its outputs are reversed
    back once after it. With `project_before` (as in `ChunkedGRU`; in both forms) a
    wide input is projected for the whole sequence, and the loop reads the
    projections. Needs both directions alike (`rows_possible`); otherwise the two-step
    form is used.
    """

    def __init__(self, layer, chunk_steps=8, segment_chunks=1, rows=False, prefix_loop=False,
                 project_before=False, **kwargs):
        super().__init__(layer, **kwargs)
        _check_loop_sizes(chunk_steps, segment_chunks)
        self.chunk_steps = chunk_steps
        self.segment_chunks = segment_chunks
        self.rows = _check_flag("rows", rows)
        self.prefix_loop = _check_flag("prefix_loop", prefix_loop)
        self.project_before = _check_flag("project_before", project_before)

    def get_config(self):
        config = super().get_config()
        config["chunk_steps"] = self.chunk_steps
        config["segment_chunks"] = self.segment_chunks
        config["rows"] = self.rows
        config["prefix_loop"] = self.prefix_loop
        config["project_before"] = self.project_before
        return config

    def rows_possible(self):
        """Whether the two directions can run as two rows: the same units, activations,
        bias use and `reset_after` (a `backward_layer` given to `Bidirectional` may
        differ)."""
        forward, backward = self.forward_layer.cell, self.backward_layer.cell
        keys = ("units", "activation", "recurrent_activation", "use_bias", "reset_after")
        return all(forward.get_config()[key] == backward.get_config()[key] for key in keys)

    def call(self, sequences, initial_state=None, mask=None, training=None):
        import tensorflow as tf  # the loop is a TensorFlow `while_loop` (export runs on TF)

        steps = sequences.shape[1]
        if (mask is not None or initial_state is not None or self.return_state
                or steps is None or sequences.shape[0] != 1):
            raise ValueError(
                "ChunkedBidirectionalGRU needs batch 1, a fixed sequence length, no mask "
                f"and no initial or returned state. Received: sequences of shape "
                f"{tuple(sequences.shape)}, mask={mask is not None}, "
                f"initial_state={initial_state is not None}"
            )
        ops = keras.ops
        forward, backward = self.forward_layer.cell, self.backward_layer.cell
        x = ops.reshape(ops.cast(sequences, forward.compute_dtype), (steps, -1))
        chunk = min(self.chunk_steps, steps)
        loops = steps // chunk
        prefix = steps - loops * chunk
        if loops == 1 and prefix == 0:
            loops, prefix = 0, steps
        sequences_out = self.return_sequences
        if self.rows and self.rows_possible():
            y, y_rev = self._call_rows(x, steps, chunk, loops, prefix)
            return self._merge(y, y_rev)

        # Each direction reads its `sources` (as in `ChunkedGRU`): the input, or its own
        # two input projections for the whole sequence (`project_before`).
        projected = self.project_before and projected_before_loop(x.shape[-1], forward.units)
        sources_f = _loop_sources(x, forward, projected)
        sources_b = _loop_sources(x, backward, projected)

        def run(cell, inputs, h, count, reverse):
            """`count` steps of one direction from windows `inputs` of its sources;
            outputs in time order."""
            x_zr, x_h = inputs if projected else gru_projection(cell, inputs[0])
            rows_zr, rows_h = _rows(x_zr, count), _rows(x_h, count)
            order = range(count - 1, -1, -1) if reverse else range(count)
            outputs = [None] * count
            for t in order:
                h = gru_step(cell, rows_zr[t], rows_h[t], h)
                outputs[t] = h
            return h, _stack_rows(outputs)

        h_f = h_b = None
        head_f, tail_b = [], []
        if prefix:
            def before():
                h_f, seq_f = run(forward, [s[:prefix] for s in sources_f], None, prefix,
                                 False)
                h_b, seq_b = run(backward, [s[steps - prefix :] for s in sources_b], None,
                                 prefix, True)
                return [h_f, h_b] + ([seq_f, seq_b] if sequences_out else [])

            shapes = [(1, forward.units), (1, backward.units)]
            if sequences_out:
                shapes += [(prefix, forward.units), (prefix, backward.units)]
            values = _before_loop(before, shapes, x, in_loop=bool(loops) and self.prefix_loop)
            h_f, h_b = values[:2]
            if sequences_out:
                head_f.append(values[2])
                tail_b.append(values[3])
        middle_f = middle_b = None
        if loops:
            h_f = ops.zeros((1, forward.units), x.dtype) if h_f is None else h_f
            h_b = ops.zeros((1, backward.units), x.dtype) if h_b is None else h_b

            def body(g, carried):
                window_f = _windows(sources_f, prefix + g * chunk, chunk)
                window_b = _windows(sources_b, steps - prefix - (g + 1) * chunk, chunk)
                h_f, seq_f = run(forward, window_f, carried[0], chunk, False)
                h_b, seq_b = run(backward, window_b, carried[1], chunk, True)
                return [h_f, h_b], [seq_f, seq_b] if sequences_out else []

            # The backward direction's chunks go to the mirrored positions of its buffer.
            buffers = ([((chunk, forward.units), False), ((chunk, backward.units), True)]
                       if sequences_out else [])
            (h_f, h_b), filled = _chunk_loop(body, [h_f, h_b], buffers, loops,
                                             self.segment_chunks, x)
            if sequences_out:
                middle_f = tf.reshape(filled[0], (loops * chunk, forward.units))
                middle_b = tf.reshape(filled[1], (loops * chunk, backward.units))
        if sequences_out:
            pieces_f = head_f + ([middle_f] if middle_f is not None else [])
            pieces_b = ([middle_b] if middle_b is not None else []) + tail_b
            y = pieces_f[0] if len(pieces_f) == 1 else ops.concatenate(pieces_f, axis=0)
            y_rev = pieces_b[0] if len(pieces_b) == 1 else ops.concatenate(pieces_b, axis=0)
            y, y_rev = ops.expand_dims(y, 0), ops.expand_dims(y_rev, 0)
        else:
            y, y_rev = h_f, h_b
        return self._merge(y, y_rev)

    def _call_rows(self, x, steps, chunk, loops, prefix):
        """`call` with the two directions as two rows (`rows=True`): `(y, y_rev)`, each
        `(1, steps, units)` with `return_sequences`, else the last states `(1, units)`."""
        import tensorflow as tf

        ops = keras.ops
        forward, backward = self.forward_layer.cell, self.backward_layer.cell
        units = forward.units
        # Row 0: the input; row 1: the input reversed in time, so that the backward
        # direction's k-th step reads row k too.
        both = ops.stack([x, ops.flip(x, axis=0)])
        features = x.shape[-1]

        def projection():
            """The two directions' input projection weights, stacked: `(2, features, 2
            units)`, `(2, features, units)` and the biases `(2, 1, ...)`."""
            weights = [projection_weights(forward), projection_weights(backward)]
            return [None if weights[0][k] is None else
                    ops.stack([w[k] if k < 2 else ops.reshape(w[k], (1, -1)) for w in weights])
                    for k in range(4)]

        # Both rows' input projections for the whole sequence, `(2, steps, 3 units)`, in
        # place of the input (`project_before`).
        projected = self.project_before and projected_before_loop(features, units)
        if projected:
            both = _project_joined(both, *projection())
            features = both.shape[-1]

        def run(inputs, h, count):
            """`count` steps of both directions from `inputs` `(2, count, features)`
            (their projections when `projected`); returns the last states `(2, 1, units)`
            and the outputs `(2, count, units)`, each row in its own direction's order."""
            # The stacked weights, made where they are used: a constant that the converter
            # stores in float16 then gets its DEQUANTIZE in the loop body, where XNNPACK
            # reads it as static weights. Stacked before the loop, the dequantized weights
            # entered the body as a loop variable and the float16 file took 1.7x as long.
            recurrent_zr = ops.stack([c.recurrent_kernel[:, : 2 * units]
                                      for c in (forward, backward)])
            recurrent_h = ops.stack([c.recurrent_kernel[:, 2 * units :]
                                     for c in (forward, backward)])
            recurrent_h_bias = None
            if forward.use_bias and forward.reset_after:
                recurrent_h_bias = ops.stack([ops.reshape(c.bias[1][2 * units :], (1, -1))
                                              for c in (forward, backward)])
            if projected:
                x_zr, x_h = inputs[..., : 2 * units], inputs[..., 2 * units :]
            else:
                x_zr, x_h = _project(inputs, *projection())
            rows_zr, rows_h = _rows(x_zr, count, axis=1), _rows(x_h, count, axis=1)
            outputs = []
            for t in range(count):
                h = gru_update(rows_zr[t], rows_h[t], h, recurrent_zr, recurrent_h,
                               recurrent_h_bias, forward)
                outputs.append(h)
            return h, _stack_rows(outputs, axis=1)

        h = None
        head = []
        if prefix:
            def before():
                h, seq = run(both[:, :prefix], None, prefix)
                return [h, seq] if self.return_sequences else [h]

            shapes = [(2, 1, units)] + ([(2, prefix, units)] if self.return_sequences else [])
            values = _before_loop(before, shapes, x, in_loop=bool(loops) and self.prefix_loop)
            h = values[0]
            head = values[1:]
        middle = None
        if loops:
            h = ops.zeros((2, 1, units), x.dtype) if h is None else h
            sequences_out = self.return_sequences

            def body(g, carried):
                window = tf.slice(both, tf.stack([0, prefix + g * chunk, 0]),
                                  [2, chunk, features])
                h, seq = run(window, carried[0], chunk)
                return [h], [seq] if sequences_out else []

            (h,), filled = _chunk_loop(
                body, [h], [((2, chunk, units), False)] if sequences_out else [], loops,
                self.segment_chunks, x)
            if sequences_out:
                # (loops, 2, chunk, units) -> (2, loops * chunk, units)
                buffer = ops.reshape(filled[0], (loops, 2, chunk, units))
                middle = ops.reshape(ops.transpose(buffer, (1, 0, 2, 3)),
                                     (2, loops * chunk, units))
        if not self.return_sequences:
            return h[0], h[1]
        pieces = head + ([middle] if middle is not None else [])
        seq = pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=1)
        return seq[:1], ops.flip(seq[1:], axis=1)

    def _merge(self, y, y_rev):
        ops = keras.ops
        if self.merge_mode == "concat":
            return ops.concatenate([y, y_rev], axis=-1)
        if self.merge_mode == "sum":
            return y + y_rev
        if self.merge_mode == "ave":
            return (y + y_rev) / 2
        if self.merge_mode == "mul":
            return y * y_rev
        return (y, y_rev)


# A chunked loop whose first GRU's input has at least PROJECT_BEFORE_LOOP_WIDTH values
# per step per unit (`project_before=True` of the chunked layers) projects that input for
# the whole sequence before the loop: one product of T rows instead of one of a few rows
# per chunk in the loop body, which XNNPACK computes at a lower rate per multiply-add. The
# loop then reads the projections, 3 units per step, so a narrow input (8 features for 64
# units) would grow what the loop holds 24x for a product that costs little: measured on
# bench_export's stacked model (2 x GRU(64), 8 features), 0.96x the time at T=200 but
# 1.08-1.10x at T=1000. From one value per unit it pays off (float32, three interleaved
# rounds each, the same file otherwise): cnn_gru (64 filters into GRU(64)) 0.91-0.92x at
# T=200, 0.92-0.93x at T=1000; the stacked model on 128 features 0.86-0.90x at T=1000;
# bench_export's bidirectional model (its second layer reads 128 values) 0.93-0.95x at
# T=50, 0.96-0.97x at T=200, 0.93-0.94x at T=1000; Dense(64) into Bidirectional(GRU(64))
# 0.86-0.91x at T=200, 0.94x at T=1000. int8 files (a byte a projection) follow the same
# rule: projecting 8 features for GRU(64) before the loop gained nothing there either
# (stacked model 0.98-1.04x the time at T=16-1000, attention 0.99x and bidirectional
# 1.01x at T=1000, gru_fcn 0.97-0.98x at T=200; two interleaved rounds each).
PROJECT_BEFORE_LOOP_WIDTH = 1


def projected_before_loop(features, units):
    """Whether a chunked loop with `project_before=True` projects its first GRU's input of
    `features` values per step before the loop (`PROJECT_BEFORE_LOOP_WIDTH`)."""
    return features >= PROJECT_BEFORE_LOOP_WIDTH * units


def _loop_sources(x, cell, projected):
    """What a chunked loop over `x` `(steps, features)` reads for `cell`: `[x]`, or with
    `projected` (`project_before`) the cell's two input projections for the whole
    sequence, `[x_zr, x_h]` (two products, so that in an int8 file each keeps a scale of
    its own, as in the loop body)."""
    return list(_project(x, *projection_weights(cell))) if projected else [x]


def _windows(sources, start, count):
    """The rows `start .. start + count - 1` of each of `sources` (`start` a tensor)."""
    import tensorflow as tf

    return [tf.slice(s, tf.stack([start, 0]), [count, s.shape[-1]]) for s in sources]


def _check_flag(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return value


def _before_loop(steps, shapes, like, in_loop):
    """The tensors that `steps()` returns (a list, of `shapes`): the steps that run
    before a chunked loop (the first `T mod chunk_steps`).

    `in_loop`: computed in a `WHILE` loop of one iteration. In a float16 file, weights
    that the steps before the loop and the loop body both use are dequantized once
    before the loop and enter the body as loop variables, which XNNPACK reads as
    inputs, not as static weights: the files took 1.2-2.1x as long (F28,
    `benchmarks/float16_prefix.py`). Inside a loop body of their own, the steps
    dequantize their own copy, and so does the main loop's body. Made by hand: the
    converter has no setting for it.
    """
    if not in_loop:
        return list(steps())
    import tensorflow as tf

    def body(i, *unused):
        return (i + 1,) + tuple(steps())

    initial = [_sequence_buffer(shape, like) for shape in shapes]
    values = tf.while_loop(lambda i, *rest: i < 1, body,
                           (tf.constant(0, tf.int32),) + tuple(initial))
    return list(values[1:])


def _chunk_loop(body, carried, buffers, loops, segment, like):
    """Runs the chunks `0 .. loops - 1` of a chunked layer in a `WHILE` loop, or in
    segments of `segment` chunks (a loop of loops) when the loop fills buffers and the
    segments nest (`_nests`).

    Args:
        body: `body(g, carried) -> (carried, chunks)`, chunk `g`: `carried` the tensors
            carried from chunk to chunk (states, pooling sums), `chunks` what the chunk
            writes to each buffer.
        carried: list of their values before the first chunk.
        buffers: list of `(shape, mirrored)`, one per output buffer: the shape of a
            chunk's part, and whether chunk `g` goes to position `loops - 1 - g` (a
            backward direction, so that the buffer is in time order).
        loops, segment: chunks, and chunks per segment.
        like: a tensor of the buffers' dtype (`_sequence_buffer`).

    Returns:
        `(carried, filled)`: the carried values after the last chunk, and each buffer's
        chunks in order, `(loops, *shape)` or, in segments, `(segments, segment *
        shape[0], *shape[1:])`: the same values in the same order, to be reshaped.
    """
    import tensorflow as tf

    count_carried = len(carried)

    def run(count, base, values):
        """Chunks `base .. base + count - 1` in one loop; buffers of `count` chunks."""
        def step(i, *rest):
            new, chunks = body(base + i, list(rest[:count_carried]))
            written = [_write_chunk(buffer, count - 1 - i if mirrored else i, chunk)
                       for buffer, chunk, (_, mirrored)
                       in zip(rest[count_carried:], chunks, buffers)]
            return (i + 1, *new, *written)

        initial = [_sequence_buffer((count, *shape), like) for shape, _ in buffers]
        out = tf.while_loop(lambda i, *rest: i < count, step,
                            (tf.constant(0, tf.int32), *values, *initial))
        return list(out[1 : 1 + count_carried]), list(out[1 + count_carried :])

    if not buffers or not _nests(segment, loops):
        return run(loops, 0, carried)
    # Every loop variable is copied at every iteration (F21): the inner loop carries
    # buffers of one segment, the outer one the whole sequence's, written once per
    # segment (a backward one at the mirrored position).
    segments = loops // segment

    def outer(j, *rest):
        values, filled = run(segment, j * segment, list(rest[:count_carried]))
        written = [_write_chunk(buffer, segments - 1 - j if mirrored else j,
                                tf.reshape(part, (segment * shape[0], *shape[1:])))
                   for buffer, part, (shape, mirrored)
                   in zip(rest[count_carried:], filled, buffers)]
        return (j + 1, *values, *written)

    initial = [_sequence_buffer((segments, segment * shape[0], *shape[1:]), like)
               for shape, _ in buffers]
    out = tf.while_loop(lambda j, *rest: j < segments, outer,
                        (tf.constant(0, tf.int32), *carried, *initial))
    return list(out[1 : 1 + count_carried]), list(out[1 + count_carried :])


def _sequence_buffer(shape, like):
    """The zero buffer of `shape` that a loop fills with its outputs: `(loops, chunk,
    units)`, or with more dimensions (`ChunkedBidirectionalGRU`'s rows).

    Made by a `FILL` at run time: a `tf.TensorArray`, or a `FILL` of a constant, becomes
    a constant of zeros of that size in the file (51 KB for 200 steps of 64 units),
    and the file would grow with T. The fill value is taken from `like` (times 0), so
    the converter cannot fold it into a constant.
    """
    import tensorflow as tf

    zero = tf.reduce_sum(like[:1, :1]) * tf.constant(0, like.dtype)
    return tf.fill(shape, zero)


def _write_chunk(buffer, index, chunk):
    """`buffer` with `buffer[index] = chunk`, with static shapes.

    A `tf.TensorArray` write becomes slices whose sizes depend on `index`: the loop body
    then has dynamic shapes, and LiteRT re-plans its memory and XNNPACK re-prepares
    every op at every iteration (~20 µs per iteration measured). A select over the
    buffer costs O(T) per iteration instead (~5 µs at T=200). A `DYNAMIC_UPDATE_SLICE`
    (XLA's `dynamic_update_slice`, which the converter maps to it) in its place gained
    nothing: the `WHILE` kernel still copies the whole buffer at every iteration (F21).
    Bidirectional reference model, interleaved: float32 0.99x the time at T=200, 1.00x
    at T=1000; int8 1.08x, since the quantizer puts a DEQUANTIZE and a QUANTIZE around
    it.
    """
    import tensorflow as tf

    loops = buffer.shape[0]
    mask = tf.reshape(tf.equal(tf.range(loops), index), (loops,) + (1,) * (len(buffer.shape) - 1))
    return tf.where(mask, chunk[None], buffer)


def _stack_rows(rows, axis=0):
    """`rows` `(1, n)` stacked into `(len(rows), n)` (or along `axis`), 4 at a time.

    XNNPACK delegates a `CONCATENATION` of up to 4 inputs and TFLite for
    Microcontrollers accepts at most 10, so longer runs are concatenated in a tree.
    """
    while len(rows) > 1:
        rows = [rows[i] if len(rows[i : i + 4]) == 1
                else keras.ops.concatenate(rows[i : i + 4], axis=axis)
                for i in range(0, len(rows), 4)]
    return rows[0]


def _rows(matrix, count, axis=0):
    """The `count` rows of `matrix` `(count, n)` as `(1, n)` tensors (or its `count`
    slices along `axis`).

    Even `SPLIT`s into at most 4 pieces (what XNNPACK runs) rather than one slice per
    row: one op per 4 rows instead of 4.
    """
    if count == 1:
        return [matrix]
    if count <= 4:
        return list(keras.ops.split(matrix, count, axis=axis))
    pieces = 4 if count % 4 == 0 else (3 if count % 3 == 0 else (2 if count % 2 == 0 else 1))
    if pieces == 1:  # a prime count above 4: peel one row off
        lead = (slice(None),) * axis
        return [matrix[lead + (slice(None, 1),)]] + _rows(matrix[lead + (slice(1, None),)],
                                                           count - 1, axis)
    rows = []
    for part in keras.ops.split(matrix, pieces, axis=axis):
        rows.extend(_rows(part, count // pieces, axis))
    return rows


def _keras_history_names(value, names):
    """Collects the layer names that a config's `inbound_nodes` entry reads from."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            names.append(value["config"]["keras_history"][0])
        for item in value.values():
            _keras_history_names(item, names)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _keras_history_names(item, names)
    return names


def _chainable_gru(layer):
    """Whether a layer is a GRU that `ChunkedGRU` computes exactly."""
    return (type(layer).__name__ in ("GRU", "HoistedGRU") and not layer.go_backwards
            and not layer.stateful and not layer.return_state)


def _graph(model):
    """`(entries, readers, sources, layers)` of a functional `model`'s config: its layer
    entries, `{name: names of the layers reading it}`, `{name: names it reads}` and
    `{name: layer}`; `None` for a model that is not functional or has a mask (an
    `Embedding(mask_zero=True)`, `Masking`: the mask changes the steps)."""
    config = model.get_config()
    entries = config.get("layers") if isinstance(config, dict) else None
    if not entries or not all("inbound_nodes" in entry for entry in entries):
        return None  # not a functional model config
    for layer in model.layers:
        if isinstance(layer, keras.layers.Masking) or (
                isinstance(layer, keras.layers.Embedding) and layer.mask_zero):
            return None
    readers = {}
    sources = {}
    for entry in entries:
        name = entry["config"]["name"]
        inbound = _keras_history_names(entry.get("inbound_nodes", []), [])
        sources[name] = inbound
        for source in inbound:
            readers.setdefault(source, []).append(name)
    return entries, readers, sources, {layer.name: layer for layer in model.layers}


def _only_reader(name, graph):
    """The one layer that reads `name`'s output, through layers that are the identity at
    inference, each reading only the one before and read by only the next; `None` when
    the output goes anywhere else too."""
    entries, readers, sources, layers = graph
    previous = name
    while True:
        outs = readers.get(previous, [])
        if len(outs) != 1 or sources.get(outs[0]) != [previous]:
            return None
        if not isinstance(layers.get(outs[0]), IDENTITY_AT_INFERENCE):
            return outs[0]
        previous = outs[0]


def _single_call(name, graph):
    entry = next(e for e in graph[0] if e["config"]["name"] == name)
    return len(entry.get("inbound_nodes", [])) == 1


def chunk_plan(model):
    """The chains of GRU layers of a functional `model` that the chunked recipe fuses.

    A chain is a run of GRU layers (forward, non-stateful, no returned state), each
    taking the previous one's sequence, directly or through layers that are the identity
    at inference (dropout, noise), and read by nothing else. Models with a mask (an
    `Embedding(mask_zero=True)`, `Masking`) have no chains: the mask changes the steps.

    Returns:
        A list of chains, each a list of layer names (GRU layers only), in order.
    """
    graph = _graph(model)
    if graph is None:
        return []
    entries, _, _, layers = graph
    chains = []
    used = set()
    for entry in entries:
        name = entry["config"]["name"]
        layer = layers.get(name)
        if (name in used or layer is None or not _chainable_gru(layer)
                or not _single_call(name, graph)):
            continue
        chain = [name]
        current = name
        while layers[current].return_sequences:
            successor = _only_reader(current, graph)
            if (successor is None or not _chainable_gru(layers[successor])
                    or not _single_call(successor, graph)):
                break
            chain.append(successor)
            current = successor
        used.update(chain)
        chains.append(chain)
    return chains


def pooling_plan(model, chains=None):
    """`{first GRU of a chain: name of the AttentionPooling layer it feeds}` for the chains
    (`chunk_plan`) whose sequence goes only to an additive `zoo.layers.AttentionPooling`
    called once (through layers that are the identity at inference): the loop computes
    that pooling itself (`ChunkedGRU(pooling=...)`; which files do: `pools_in_loop`)."""
    graph = _graph(model)
    if graph is None:
        return {}
    layers = graph[3]
    plan = {}
    for chain in chunk_plan(model) if chains is None else chains:
        if not layers[chain[-1]].return_sequences:
            continue
        reader = _only_reader(chain[-1], graph)
        if (reader is not None and type(layers[reader]) is zoo.layers.AttentionPooling
                and _single_call(reader, graph)):
            plan[chain[0]] = reader
    return plan


def is_fully_integer(quantization, int8_float_layers):
    """Whether `to_tflite(quantization=..., int8_float_layers=...)` asks for an int8 file
    without float ops (`int8_float_layers=[]`)."""
    return (quantization == "int8" and int8_float_layers != "auto"
            and len(int8_float_layers) == 0)


def pools_in_loop(quantization, fully_integer=False):
    """Whether files of this quantization compute an attention pooling in the loop
    (`fully_integer`: an int8 file without float ops, `int8_float_layers=[]`)."""
    return quantization in POOLING_IN_LOOP_MODES and not (
        fully_integer and quantization == "int8")


# Quantizations whose files run a bidirectional GRU's two directions as two rows of one
# batch (`ChunkedBidirectionalGRU(rows=True)`): those with float activations. In int8 a
# `BATCH_MATMUL` costs ~3x two `FULLY_CONNECTED` ops (BENCHMARKS.md, "Two directions
# of a bidirectional GRU as one batch"; docs/tflite-facts.md, F28).
ROWS_MODES = (None, "float16", "dynamic")


def rows_in_step(quantization):
    """Whether files of this quantization run a bidirectional GRU's directions as rows."""
    return quantization in ROWS_MODES


# Files whose chunked layers run the steps before the loop in a loop of their own
# (`prefix_loop`): float16, whose weights used on both sides of a loop come into its
# body from outside (F28). Other files keep those weights in the body either way
# (float32, dynamic range and int8 checked on a 2-layer chain at T=73).
PREFIX_LOOP_MODES = ("float16",)


def prefix_in_loop(quantization):
    """Whether files of this quantization run the steps before a chunked loop in a
    loop of one iteration (`ChunkedGRU(prefix_loop=True)`)."""
    return quantization in PREFIX_LOOP_MODES


# Files whose chunked loops project a wide input before the loop (`project_before`,
# `PROJECT_BEFORE_LOOP_WIDTH`): float ones and int8. The z/r and candidate projections
# are two products (`_project`), so that in an int8 file each keeps a scale of its own,
# as in the loop body. int8 files, against the same files projecting in the body, two
# interleaved rounds each: cnn_gru 0.97-0.99x the time at T=200 and 1000, the stacked
# model on 128 features 0.95-0.98x, bench_export's bidirectional model 0.94-0.98x,
# bidirectional_attention 0.96-0.97x at T=200, cnn_gru_attention 0.98x at T=1000; the
# error vs Keras the same or smaller but for the bidirectional model at T=200 (0.0030 ->
# 0.0043). (With one product for all three, one scale, the cnn_gru files' error moved
# either way.) In float files the two products ran within noise of one product by the
# joined kernels (0.95-1.05x). (int16x8 files have no loop: their quantizer refuses
# `WHILE`.) A file for TFLite Micro keeps the projection in the loop body (the exporter
# does not ask for it), where the projections of the whole sequence would take 3 units
# per step of its arena.
PROJECT_BEFORE_MODES = (None, "float16", "dynamic", "int8")


def project_before_in(quantization):
    """Whether files of this quantization project a wide input before a chunked loop
    (`project_before=True` of the chunked layers)."""
    return quantization in PROJECT_BEFORE_MODES


def bidirectional_plan(model):
    """Names of the `Bidirectional(GRU)` layers that `ChunkedBidirectionalGRU` computes.

    Both directions GRU, non-stateful, no returned state, called once, no mask in the
    model.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.Masking) or (
                isinstance(layer, keras.layers.Embedding) and layer.mask_zero):
            return []
    config = model.get_config()
    entries = config.get("layers") if isinstance(config, dict) else None
    if not entries or not all("inbound_nodes" in entry for entry in entries):
        return []
    calls = {entry["config"]["name"]: len(entry["inbound_nodes"]) for entry in entries}
    names = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Bidirectional) or layer.return_state:
            continue
        forward, backward = layer.forward_layer, layer.backward_layer
        if (type(forward).__name__ in ("GRU", "HoistedGRU")
                and type(backward).__name__ in ("GRU", "HoistedGRU")
                and not forward.stateful and not backward.stateful
                and not forward.go_backwards and backward.go_backwards
                and calls.get(layer.name) == 1):
            names.append(layer.name)
    return names


def patch_config_for_bidirectional(config, names, chunk_steps, segment_chunks=1, rows=False,
                                   prefix_loop=False, project_before=False):
    """Puts `ChunkedBidirectionalGRU` in place of the named `Bidirectional` layers
    (`rows`, `prefix_loop`, `project_before`: see the layer)."""
    for entry in config["layers"]:
        if entry["config"]["name"] in names:
            entry["class_name"] = "ChunkedBidirectionalGRU"
            entry["module"] = None
            entry["registered_name"] = CHUNKED_BIDIRECTIONAL_NAME
            entry["config"]["chunk_steps"] = int(chunk_steps)
            entry["config"]["segment_chunks"] = int(segment_chunks)
            entry["config"]["rows"] = bool(rows)
            entry["config"]["prefix_loop"] = bool(prefix_loop)
            entry["config"]["project_before"] = bool(project_before)
    return config


def patch_config_for_chunks(config, chains, chunk_steps, segment_chunks=1, poolings=None,
                            prefix_loop=False, project_before=False):
    """Puts `ChunkedGRU` in place of each chain's first GRU in a functional config.

    The chain's other GRU layers become `keras.layers.Identity` (same name, same wiring):
    they receive the chain's output, which the identity layers in between also pass on.
    `poolings` (`pooling_plan`): the chain computes that pooling layer, which becomes an
    `Identity` too (the chain's output is then the pooled vector). `prefix_loop`,
    `project_before`: see `ChunkedGRU`.
    """
    entries = {entry["config"]["name"]: entry for entry in config["layers"]}
    poolings = poolings or {}
    for chain in chains:
        head = entries[chain[0]]
        followers = [copy.deepcopy(entries[name]["config"]) for name in chain[1:]]
        head["class_name"] = "ChunkedGRU"
        head["module"] = None
        head["registered_name"] = CHUNKED_GRU_NAME
        head["config"]["followers"] = followers
        head["config"]["chunk_steps"] = int(chunk_steps)
        head["config"]["segment_chunks"] = int(segment_chunks)
        head["config"]["prefix_loop"] = bool(prefix_loop)
        head["config"]["project_before"] = bool(project_before)
        pooling = poolings.get(chain[0])
        if pooling is not None:
            head["config"]["pooling"] = copy.deepcopy(entries[pooling]["config"])
        for name in chain[1:] + ([pooling] if pooling is not None else []):
            entry = entries[name]
            entry["class_name"] = "Identity"
            entry["module"] = "keras.layers"
            entry["registered_name"] = None
            entry["config"] = {"name": name, "trainable": False,
                               "dtype": entry["config"].get("dtype")}
            for node in entry.get("inbound_nodes", []):
                if isinstance(node, dict):
                    node["kwargs"] = {}  # a GRU's call arguments (mask=None, ...)
    return config


def copy_weights(source, rebuilt, chains, poolings=None):
    """Copies the weights of `source` into `rebuilt` layer by layer, chains (and the
    pooling layers they compute, `poolings`) included."""
    heads = {chain[0]: chain for chain in chains}
    poolings = poolings or {}
    members = {name for chain in chains for name in chain[1:]} | set(poolings.values())
    for layer in rebuilt.layers:
        if layer.name in members:
            continue
        if layer.name in heads:
            chain = heads[layer.name]
            layer.cell.set_weights(source.get_layer(chain[0]).cell.get_weights())
            for follower, name in zip(layer.followers, chain[1:]):
                follower.cell.set_weights(source.get_layer(name).cell.get_weights())
            if layer.name in poolings:
                layer.pooling.set_weights(source.get_layer(poolings[layer.name]).get_weights())
        elif layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def default_chunk_steps(steps):
    """Time steps per loop iteration for a sequence of `steps` steps.

    Measured on the reference 2 x GRU(64) (T = 50 and 200): 4 steps per iteration was
    fastest (2-3 leave the loop's per-iteration cost, ~1.5 µs, less amortized; 6-16
    make the body larger, and the loop re-plans its body's memory and XNNPACK runtime
    at every call of the model, ~0.2 µs per body op). A divisor of `steps` near 4 is
    preferred: the `steps mod chunk` remaining steps run unrolled before the loop,
    with their own copy of the quantization parameters of every weight (in int8 that
    is 12 bytes per output channel of each kernel).
    """
    if steps <= 4:
        return steps
    for chunk in (4, 5, 3, 6):
        if steps % chunk == 0:
            return chunk
    return 4


# Fully unroll (no loop) while every step's packed recurrent weights, summed over the
# steps, fit in this many bytes: XNNPACK packs a copy per step (see the module
# docstring), and past a few MB each step reads its copy from far memory. Measured on
# 2 x GRU(64) (96 KB per step), µs per layer-step unrolled / loop of 4-step chunks:
# 1.59 / 1.98 at T=16 (1.5 MB), 2.53 / 1.71 at T=32 (3 MB), 2.28 / 1.65 at T=50.
FULL_UNROLL_BYTES = 2 * 1024 * 1024
FULL_UNROLL_MAX_STEPS = 64


# (The measurements on "the attention variant" below and in `segment_chunks_for` were
# taken while its chain still returned its sequence to the pooling layer; a float file
# now computes that additive pooling in the loop, `pooling_plan`, and carries no
# buffer, and so does an int8 file unless fully integer. Multi-head pooling, per-step
# outputs and bidirectional layers still return their sequences.)
# Chunked layers that return sequences carry an output buffer of T rows through the
# loop, and the `WHILE` kernel copies every loop variable at every iteration (and the
# chunk's write reads and writes the whole buffer): per call, T / chunk_steps passes over
# a buffer of T rows, quadratic in T. Measured on the attention variant (2 x GRU(64)
# returning sequences), T=1000, ms per call with 4 / 10 / 20 / 40 steps per iteration:
# float32 6.9 / 4.2 / 3.5 / 3.3 (the same model without the buffer: 2.5), int8 2.7 /
# 2.1 / 2.2; about 0.06 µs per KB of buffer per iteration. Longer bodies cost too (the
# stacked model without a buffer: float32 2.5 / 3.0 / 2.8 ms), so the chunk grows only
# until the copies cost at most BUFFER_SHARE of the recurrence's own time
# (BUFFER_STEP_US per layer and step).
# int8 bodies stop at 10 steps: each step of an int8 body adds to the file
# (`INT8_STEP_BYTES` per GRU layer or direction; ~1.6 KB before equal tables were stored
# once), and a 20-step body made the bidirectional attention variant's
# int8 file at T=1000 0.37x its float32 loop file, against the 0.35x target (0.29x at
# 4 steps per iteration).
BUFFER_US_PER_KB = 0.06
BUFFER_STEP_US = {"float32": 1.3, "int8": 0.9}
BUFFER_SHARE = 0.25
BUFFER_MAX_CHUNK = {"float32": 50, "int8": 10}

# Every step of a loop body holds its own packed copy of the recurrent kernels (XNNPACK
# packs per node, F16), so a body of k steps keeps k copies in the cache. Past the cache
# the loop falls off a cliff, at a size that depends on the machine: on a 2-core Intel
# Xeon (2 MB L2 per core), ms per call of the attention variant (2 x GRU(64), 96 KB of
# float32 kernels a step, T=1000) with 5 / 8 / 10 / 16 / 25 / 50 steps per iteration:
# 5.6 / 5.0 / 5.2 / 6.7 / 7.7 / 7.5 (ONNX Runtime 2.2), and the stacked one (no output
# buffer) 1.8 / - / 1.9 / - / 5.6 / 6.1; 2 x GRU(128) (393 KB a step) at T=200 with
# 1 / 2 / 4 / 8 steps: 1.18 / 1.28 / 1.68 / 3.50 ms (ONNX Runtime 1.09), 2 x GRU(256)
# (1.5 MB a step) 11.0 / 14.3 / 13.3 / 13.2 ms. An AMD EPYC had no cliff up to 50 steps
# of 2 x GRU(64) (bigger bodies were faster there, 3.3 against 4.2 ms at 40 and 10
# steps, because of the buffer's copies). So a body holds at most BODY_WEIGHT_BYTES of
# packed recurrent kernels: the cliff is several times slower, the cap costs at most
# ~1.3x where there is no cliff, and phones have smaller caches than either machine.
BODY_WEIGHT_BYTES = 768 * 1024


def _loops(model, quantization=None, fully_integer=False):
    """One `(GRU layers, units returned per step)` per loop of `model`'s chunked form for
    files of `quantization` (`fully_integer`: see `pools_in_loop`): a chain of GRU layers
    (`ChunkedGRU`), or a bidirectional layer with its two directions
    (`ChunkedBidirectionalGRU`); the units are 0 when the loop returns no sequence (its
    output buffer's width otherwise; a chain that computes its attention pooling,
    `pooling_plan`, returns none)."""
    chains = chunk_plan(model)
    pooled = (pooling_plan(model, chains) if pools_in_loop(quantization, fully_integer)
              else {})
    for chain in chains:
        grus = [model.get_layer(name) for name in chain]
        returns = grus[-1].return_sequences and chain[0] not in pooled
        yield grus, grus[-1].units if returns else 0
    for name in bidirectional_plan(model):
        layer = model.get_layer(name)
        grus = [layer.forward_layer, layer.backward_layer]
        yield grus, sum(gru.units for gru in grus) if layer.return_sequences else 0


def _chunked_grus(model):
    """The GRU layers that the chunked recipe computes, each direction of a
    bidirectional one counted as a layer."""
    for grus, _ in _loops(model):
        yield from grus


def _buffer_value_bytes(quantization):
    """Bytes a value of an output buffer holds in files of `quantization` (the int8 loop
    variables of F21 in int8 files, float otherwise)."""
    return 1 if quantization == "int8" else 4


def _buffer(model, quantization=None, fully_integer=False):
    """`(units of the output buffers, GRU layer-steps per time step)` of `model`'s
    chunked layers in files of `quantization`: the widths of the sequences they return,
    and how many GRU layers (directions counted) run at each step."""
    loops = list(_loops(model, quantization, fully_integer))
    return sum(units for _, units in loops), sum(len(grus) for grus, _ in loops)


def body_steps_cap(model, quantization=None):
    """The most steps a loop body may hold: its packed recurrent kernels within
    `BODY_WEIGHT_BYTES` (one byte a weight in int8 and int16x8 files, else four). Each
    chain of GRU layers, and each bidirectional layer (both directions), is one body."""
    width = 1 if quantization in ("int8", "int16x8") else 4
    per_step = max((sum(width * gru.units * 3 * gru.units for gru in grus)
                    for grus, _ in _loops(model)), default=0)
    return max(1, BODY_WEIGHT_BYTES // max(1, per_step))


def buffer_chunk_steps(model, steps, quantization=None, fully_integer=False):
    """The fewest steps per iteration that keep the output buffers' copies within
    `BUFFER_SHARE` of the recurrence's time (1 when there is no buffer), at most
    `BUFFER_MAX_CHUNK` and `body_steps_cap`; a divisor of `steps` when one is in that
    range."""
    width, layers = _buffer(model, quantization, fully_integer)
    if not width or not layers:
        return 1
    mode = "int8" if quantization == "int8" else "float32"
    buffer_kb = steps * width * _buffer_value_bytes(quantization) / 1024
    iterations = BUFFER_SHARE * layers * steps * BUFFER_STEP_US[mode] / (
        BUFFER_US_PER_KB * buffer_kb)
    largest = min(BUFFER_MAX_CHUNK[mode], body_steps_cap(model, quantization))
    least = max(1, min(largest, -(-steps // max(1, int(iterations)))))
    for chunk in range(least, largest + 1):
        if steps % chunk == 0:
            return chunk
    return least


# Restarting the inner loop of a segment re-plans its body (memory and XNNPACK runtime,
# F21's WHILE kernel): about 0.29 µs per op of the body, as long as copying ~3 KB of
# buffer (both measured on the attention variant on this project's Intel Xeon, T=200 and
# 1000). A body has about OPS_PER_LAYER_STEP ops per GRU layer and step (BENCHMARKS.md,
# "Op costs").
SEGMENT_BYTES_PER_BODY_OP = 3 * 1024
OPS_PER_LAYER_STEP = 13


def segment_chunks_for(model, steps, chunk_steps, quantization=None, fully_integer=False):
    """Chunks per segment for the chains of `model` that return their sequence (1: one
    loop; see `ChunkedGRU`).

    A single loop copies its output buffer of T rows at every one of its T / chunk
    iterations. With segments of d chunks the inner loop copies d * chunk rows per
    iteration and the outer one T rows per segment, and each segment restarts the inner
    loop (`SEGMENT_BYTES_PER_BODY_OP`). So d is the divisor of the number of iterations
    (2 <= d < iterations) with the fewest bytes copied, counting the restarts, when that
    is at most half the single loop's: segments also cost memory (a segment's buffer
    beside the sequence's; TFLite Micro arena in float32 at T=1000: attention 1133 ->
    1183 KB, cnn_gru_attention 1790 -> 2244 KB, bidirectional_attention 3076 KB -> over
    4 MB; at T=200, attention 247 -> 321 KB in 2 segments, for 7% of time). So a
    microcontroller's export (`to_tflite(check_tflm=True)` or `c_array`) keeps one loop.
    Attention variant (2 x GRU(64) returning its sequence), this project's Intel Xeon,
    µs per call, one loop against segments: T=1000 (8 steps per iteration) 5058 against 3171 with 5
    segments of 25 chunks (4387 with 25 of 5); T=200 (5 steps) 599 against 557 with 2 of
    20 (731 with 10 of 4), under the halving rule, so one loop; T=50 144 against 170 with
    2 of 5.

    An int8 file's buffers hold a byte a value, so the same rule segments them only at
    longer T: the bidirectional attention variant (two bidirectional GRU(64) layers
    returning their sequences, 10 steps per iteration) from about T=1200, the attention
    one, when fully integer (it pools in the loop otherwise), from about T=2000 (Intel
    Xeon, at T=2000, int8 µs against one loop 12049 / 17741 and 4978 / 5462; ONNX Runtime
    9514, 4369; BENCHMARKS.md, "one loop or segments", has the current run). At T=1000,
    where the rule keeps one loop (5 segments would copy 54% of its bytes), segments
    ran 11% faster (6479 against 7289 µs; ONNX Runtime 5298) for 27% more TFLite Micro
    arena (1314 against 1032 KB), and the attention variant 3% slower. int16x8 files
    keep one loop: their converter path (`export.quantization`) is checked for one
    level only. `fully_integer`: see `pools_in_loop`.
    """
    if quantization == "int16x8":
        return 1
    width = _buffer_value_bytes(quantization)
    # (bytes of buffer per time step, GRU layers in the body) of each loop that returns
    # its sequence.
    loops = [(width * units, len(grus))
             for grus, units in _loops(model, quantization, fully_integer) if units]
    if not loops:
        return 1
    chunk = min(chunk_steps, steps)
    iterations = steps // chunk
    row = max(width for width, _ in loops)
    restart = SEGMENT_BYTES_PER_BODY_OP * OPS_PER_LAYER_STEP * chunk * max(
        layers for _, layers in loops)
    best, best_bytes = 1, iterations * steps * row / 2
    for segment in range(2, iterations):
        if iterations % segment:
            continue
        copied = (iterations * segment * chunk * row
                  + (iterations // segment) * (steps * row + restart))
        if copied < best_bytes:
            best, best_bytes = segment, copied
    return best


def chunkable(model):
    """Whether `model` has GRU layers that the chunked recipe computes."""
    return bool(chunk_plan(model) or bidirectional_plan(model))


# File bytes per GRU layer (each direction of a bidirectional one) and step of an int8
# loop body: its tensors' and ops' tables, ~55 bytes per tensor and op once equal tables
# are stored once (`export.serialize`, F29). Measured going from 2 to 5 steps at T=50:
# stacked 2 x GRU(64) 1.33 KB, bidirectional 1.32 KB, attention 1.33 KB, 2 x GRU(32)
# 1.37 KB; 1 x GRU(8) from 3 to 5 steps at T=150, 1.55 KB.
INT8_STEP_BYTES = 1400
# The most that the extra steps of a 5-step int8 body may add, as a share of the model's
# weight bytes (one byte a weight in int8); see `chunk_steps_for`.
INT8_LONGER_BODY_SHARE = 0.25


# A file for a microcontroller (`to_tflite(check_tflm=True)` or `c_array`) runs one step
# per loop iteration unless a layer returns its sequence (`buffer_chunk_steps`). TFLite
# Micro plans every tensor and op of a body into its arena, a few KB per step, and its
# reference kernels make a step's work large beside an iteration's own cost, so longer
# bodies or unrolled steps cost RAM and flash and gain nothing there. Measured with
# TFLite Micro's interpreter on this project's x86 machine, 2 x GRU(64), 8 features:
# int8 T=50, 1 / 2 / 5 steps per iteration: arena 9.1 / 13.6 / 26.5 KB, 2867 / 2877 /
# 2885 µs; T=200, 1 / 2 / 4 steps: 14.8 / 19.0 / 25.7 KB, 11.32 / 11.31 / 11.35 ms;
# float32 T=50, 1 / 2 / 5 / 50 (unrolled): 14.9 / 20.0 / 36.5 / 248 KB, 1192 / 1181 /
# 1164 / 1187 µs (files 158 / 161 / 167 / 263 KB). On a microcontroller an iteration
# costs a few ops' dispatch and a copy of the states, against tens of µs of arithmetic
# per layer and step (no XNNPACK there). A layer returning its sequence carries a T-row
# buffer that the loop copies at every iteration (bidirectional int8 T=200: 1 / 2 / 5
# steps 27.1 / 26.8 / 26.0 ms; T=1000, 1 / 2 / 5 / 10 steps: 159 / 141 / 133 / 131 ms,
# arena 491 / 499 / 523 / 562 KB, file 122 / 126 / 140 / 166 KB: the copies are a fifth
# of the time at one step), so it keeps `buffer_chunk_steps` (10 steps there, 1 at T=200).
MICRO_CHUNK_STEPS = 1


def chunk_steps_for(model, steps, quantization=None, fully_integer=False,
                    int8_float_layers="auto", micro=False):
    """Steps per loop iteration that the automatic recipe uses for `model` at `steps`.

    Returns `steps` (no loop: every step unrolled) for short float sequences whose
    packed weights stay small, else `default_chunk_steps(steps)` in float files and 5, 4,
    3 or 2 steps in int8 ones (see the comment below). Quantized int8 files always loop:
    an unrolled file holds one set of tensors and quantization parameters per step and
    grows with T. Layers that return long sequences take more steps per
    iteration (`buffer_chunk_steps`) when that is over 4. No loop body holds more steps
    than `body_steps_cap` (wide layers take fewer, down to one step per iteration).
    `fully_integer`: see `pools_in_loop`. `int8_float_layers`: as `to_tflite`'s; the
    weights an int8 file keeps float count against its longer bodies' bytes.
    `micro`: the file is for TFLite Micro, one step per iteration
    (`MICRO_CHUNK_STEPS`) unless a layer returns its sequence.
    """
    if micro:
        return min(max(MICRO_CHUNK_STEPS,
                       buffer_chunk_steps(model, steps, quantization, fully_integer)), steps)
    calibrated = quantization in ("int8", "int16x8")
    if not calibrated:
        # float32 bytes of each step's recurrent kernels
        per_step = sum(4 * gru.units * 3 * gru.units for gru in _chunked_grus(model))
        if steps <= FULL_UNROLL_MAX_STEPS and steps * per_step <= FULL_UNROLL_BYTES:
            return steps  # no loop, so no buffer to copy either
    buffered = buffer_chunk_steps(model, steps, quantization, fully_integer)
    if buffered > 4:
        return min(buffered, steps)
    cap = body_steps_cap(model, quantization)
    if cap < 4:
        return min(cap, steps)
    if calibrated:
        # Each step of the body costs ~1.4 KB per GRU layer in an int8 file
        # (`INT8_STEP_BYTES`), and the steps run unrolled before the loop cost as much
        # again, so the body takes a divisor of T: 5, 4, 3 or 2 steps. Longer bodies run
        # faster: at T=50, 5 steps took 0.80-0.85x the time of 2 (stacked, attention and
        # bidirectional reference models, interleaved), 0.88-0.92x for 2 x GRU(16/32) and
        # 1 x GRU(8); where 4 and 5 both divide T (T=100, 200, 1000), 0.93-0.99x the time
        # of 4; 10 steps took 0.95-1.06x the time of 5. 5 steps are taken when the extra
        # steps' bytes stay within `INT8_LONGER_BODY_SHARE` of the weights' (reference
        # stacked model at T=50: 49.2 -> 57.2 KB, 0.28x -> 0.33x the float32 loop file).
        # Smaller models keep the shorter body: their files are mostly structure (2 x
        # GRU(32) at T=50: 21.2 -> 29.4 KB; 1 x GRU(8) at T=150: 9.2 -> 12.3 KB), which
        # counts against a flash budget (`tuning.budget`). A weight that the file keeps
        # float (by default those of the first convolution over the raw input,
        # `export.calibration.float_layer_names`) takes 3 bytes more than in int8 and
        # counts against the same share: the reference convolutional variants' first
        # convolution (2,624 weights, 7.9 KB more) and 5 steps came to 0.351x (cnn_gru_attention),
        # 0.368x (gru_fcn) and 0.346x (cnn_gru) the float32 loop file at T=50, against
        # 0.32-0.33x with 2 steps, so they keep 2; a float Dense head of a few hundred
        # weights does not change the choice.
        shorter = next((chunk for chunk in (4, 3, 2) if steps % chunk == 0), 2)
        if steps % 5 == 0 and cap >= 5:
            layers = len(list(_chunked_grus(model)))
            # (a 2-step body for an odd T has one more step before the loop)
            extra = (5 - shorter - steps % shorter) * layers * INT8_STEP_BYTES
            # a weight kept float takes 3 bytes more than in int8
            extra += 3 * _float_weights(model, quantization, int8_float_layers,
                                        fully_integer)
            if extra <= INT8_LONGER_BODY_SHARE * model.count_params():
                return min(5, steps)
        return min(shorter, steps)
    return min(default_chunk_steps(steps), cap)


def _float_weights(model, quantization, int8_float_layers="auto", fully_integer=False):
    """How many weights the int8 file of `model` keeps in float (`int8_float_layers`)."""
    if quantization != "int8" or fully_integer:
        return 0
    if int8_float_layers == "auto":
        from export.calibration import float_layer_names

        int8_float_layers = float_layer_names(model)
    names = {layer.name: layer for layer in model.layers}
    return sum(names[name].count_params() for name in set(int8_float_layers) if name in names)

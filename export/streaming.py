"""The step form of a causal model: one frame in, named states in and out.

A model streams when no layer looks at later frames (`zoo.build_gru(..., causal=True)`,
or any recurrent-only model). Then feeding its frames one at a time, carrying a few
states, gives exactly the outputs of the whole sequence, and a device that receives one
sensor frame at a time needs neither the window in memory nor a latency spike at its end.

Each layer of the trained model becomes its one-frame form, built from Keras layers with
the trained weights copied (clones made with `from_config`), plus the arithmetic of the
running statistics, which Keras has no layer for, in `keras.layers.Lambda` layers (see
`_math` for why not in `keras.ops` on the symbolic tensors):

| layer | one frame | states (zeros at the start) |
|---|---|---|
| GRU, LSTM, SimpleRNN | the layer's cell | `state_<i>` (`_h`, `_c` for LSTM) |
| Conv1D, `padding="causal"` | a `"valid"` clone on the last `(kernel_size - 1) * dilation + 1` input frames | `state_<layer>_frames`: the last `(kernel_size - 1) * dilation` input frames, oldest first (a shift buffer; the zeros are the causal padding) |
| MaxPooling1D after end padding | a running max; layers after it commit their states once per window | `state_<layer>_max`, `state_<layer>_phase` (frame count within the window) |
| GlobalAveragePooling1D | running mean | `state_<layer>_mean`, `state_<layer>_count` |
| AttentionPooling | running softmax-weighted mean | `state_<layer>_value`, `state_<layer>_max` (running max score), `state_<layer>_denominator` (sum of exp(score - max)) |
| MultiHeadAttentionPooling | the same, per head | as above, one per head |
| Attention, AdditiveAttention, MultiHeadAttention, `use_causal_mask=True` (per-step tasks of the attention variants) | the frame's query against a cache of the keys and values of the last `length` frames (the model's fixed sequence length, or the layer's `sliding_window`); softmax over the filled slots | `state_<layer>_keys` (MultiHeadAttention: projected, `(heads, length, key_dim)`; the others: only when the key is not the value), `state_<layer>_values` (`(heads, length, value_dim)`, or the input frames `(length, features)`), `state_<layer>_valid` (`(length,)`: 1 for a filled slot); shift buffers, oldest first |
| WindowNormalization, `causal=True` | running mean (and mean of squares) of the offsets from the first frame | `state_<layer>_first`, `_mean`, `_square` (`"meanstd"`), `_count` |
| BatchNormalization after a Conv1D | folded into the convolution's kernel and bias | none |
| Dense, BatchNormalization, LayerNormalization, Activation, Dropout, Concatenate, ... | the layer on the frame (inference mode) | none |

Every output of the step model at frame t equals the full model's output on frames
0..t (for per-step tasks: its output at step t). States are kept bounded, so that
integer quantization can give them a fixed range: the running means are stored as
means (not sums) and the attention value already divided by its denominator.

Self-attention needs a bound on the frames it keeps: a model with `time=None` (and no
`sliding_window`) is refused, and a model with a fixed length T attends, after T
frames, over the last T (the full model takes no more than T).

Refused, with the reason: bidirectional layers, convolutions with `padding="same"` (they
see later frames), pooling whose windows depend on the sequence length, self-attention
without the causal mask (each step would read later frames) or without a fixed length,
window statistics over the whole window, computations outside layers (the masks that
the convolutional variants build for padded inputs). The masks Keras records for `Masking` and
`Embedding(mask_zero=True)` are left out: every frame given is a valid step.
"""

import dataclasses
import types

import keras
import numpy as np
from keras import ops

import zoo.layers
from export import chunked
from export.recipes import RECURRENT_CLASSES, _drop_dropout, input_spec

# Layers that act on each time step independently (on the last axis), so that applying
# them to one frame gives the same result as applying them to the whole sequence.
PER_STEP_LAYERS = (
    keras.layers.Dense,
    keras.layers.Dropout,
    # Regularizers that are the identity at inference (zoo's `input_noise`).
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LayerNormalization,
    keras.layers.BatchNormalization,
    keras.layers.Embedding,
    keras.layers.Concatenate,
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
_AXIS_LAYERS = (keras.layers.LayerNormalization, keras.layers.BatchNormalization,
                keras.layers.Concatenate)
ALLOWED = ("GRU, LSTM, SimpleRNN, Conv1D with padding='causal', MaxPooling1D after "
           "end padding (build_gru(causal=True)), GlobalAveragePooling1D, AttentionPooling, "
           "MultiHeadAttentionPooling, causal self-attention of a fixed length "
           "(Attention, AdditiveAttention, MultiHeadAttention with use_causal_mask=True), "
           "WindowNormalization(causal=True), "
           "WindowDenormalization, Masking and per-step layers (Dense, Dropout, "
           "GaussianNoise, Activation, LayerNormalization, BatchNormalization, Embedding, "
           "Concatenate, Add, ...)")


@dataclasses.dataclass
class StepNode:
    """One layer of a streaming plan: what it becomes for one frame, and its states.

    Attributes:
        layer: the trained layer.
        kind: `"recurrent"`, `"conv"`, `"end_padding"`, `"max_pool"`,
            `"global_average"`, `"attention_pooling"`, `"multihead_pooling"`,
            `"self_attention"`, `"window_norm"`, `"window_denorm"`, `"skip"`
            (Masking: every frame given is a valid step; a batch norm folded into the
            convolution before it) or `"per_step"`.
        states: list of dicts `{"name", "shape" (without the batch axis), "kind",
            "layer"}`.
        fold: conv: the BatchNormalization folded into it, or `None`.
        roles: self-attention: `{"query", "value", "key"}` -> the tensor it reads.
    """

    layer: object
    kind: str
    states: list = dataclasses.field(default_factory=list)
    fold: object = None
    roles: dict = None


def _refuse(message):
    raise ValueError(f"streaming=True {message} Export it with streaming=False.")


def _state(name, shape, kind, layer):
    return {"name": name, "shape": [int(s) for s in shape], "kind": kind, "layer": layer.name}


def recurrent_state_names(layer_index, layer):
    """Names of the states of recurrent layer number `layer_index` (LSTM has h and c)."""
    if isinstance(layer, keras.layers.LSTM):
        return [f"state_{layer_index}_h", f"state_{layer_index}_c"]
    return [f"state_{layer_index}"]


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _data_inputs(layer):
    """The tensors a layer reads as data: its inputs but the boolean masks."""
    return [t for t in _as_list(layer.input) if str(t.dtype) != "bool"]


def _features(layer):
    return int(_data_inputs(layer)[0].shape[-1])


def _check_recurrent(layer):
    if getattr(layer, "go_backwards", False) or getattr(layer, "stateful", False):
        _refuse(
            "needs forward, non-stateful recurrent layers. Received: "
            f"layer {layer.name!r} with go_backwards={layer.go_backwards}, "
            f"stateful={layer.stateful}."
        )
    if getattr(layer, "return_state", False):
        _refuse(f"needs recurrent layers without return_state; layer {layer.name!r} returns "
                "its state.")


def _check_conv(layer):
    config = layer.get_config()
    kernel = config["kernel_size"][0]
    if config["padding"] != "causal" and kernel > 1:
        # "same" pads (kernel - 1) // 2 frames before and the rest after.
        ahead = kernel // 2 if config["padding"] == "same" else None
        looks = (f"sees {ahead} later frame(s)" if ahead is not None
                 else "shortens the sequence (its outputs are not aligned with the frames)")
        _refuse(
            f"needs causal convolutions; layer {layer.name!r} (Conv1D) has "
            f"padding={config['padding']!r}, which {looks}. Build the model with "
            "build_gru(..., causal=True) (padding='causal') and train it."
        )
    if config["strides"][0] != 1 or config.get("data_format", "channels_last") != "channels_last":
        _refuse(f"needs Conv1D layers with strides=1 and channels_last data; layer "
                f"{layer.name!r} has strides={config['strides']}, "
                f"data_format={config.get('data_format')!r}.")


def _check_last_axis(layer, rank):
    axis = layer.get_config().get("axis", -1)
    axes = _as_list(axis)
    if any(a not in (-1, rank - 1) for a in axes):
        _refuse(f"needs per-step layers that act on the feature axis; layer {layer.name!r} "
                f"({type(layer).__name__}) has axis={axis!r}, which mixes time steps.")


def _call_of(model, layer):
    """`(args, kwargs)` of the one call of `layer` in `model`, as the model's config
    records them (tensors as `{"class_name": "__keras_tensor__", ...}`)."""
    entry = next(e for e in model.get_config()["layers"] if e["name"] == layer.name)
    calls = entry.get("inbound_nodes") or []
    if len(calls) != 1:
        _refuse(f"needs each layer called once; layer {layer.name!r} is called "
                f"{len(calls)} times.")
    return calls[0].get("args", []), calls[0].get("kwargs", {})


def _is_tensor(value):
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _tensor_of(model, serialized):
    """The model's tensor that a serialized tensor of its config names."""
    name, _, index = serialized["config"]["keras_history"]
    return _as_list(model.get_layer(name).output)[index]


def _self_attention_node(model, layer, *, after_pooling):
    """The plan of a self-attention layer (`Attention`, `AdditiveAttention`,
    `MultiHeadAttention`): a cache of the keys and values of the last frames.

    Each step attends from its frame to every earlier frame, so those frames' keys and
    values are states: a shift buffer of `length` frames (the sequence length, or the
    layer's `sliding_window` when smaller), oldest first, and `_valid`, 1 where a slot
    holds a frame and 0 where it is still empty (the states start at zeros).
    """
    name, kind = layer.name, type(layer).__name__
    args, kwargs = _call_of(model, layer)
    if not kwargs.get("use_causal_mask"):
        _refuse(
            f"cannot stream self-attention over every step: layer {name!r} ({kind}) gives "
            "each step a weighted sum over all the steps, later ones too. Build the model "
            "with build_gru(..., causal=True) (use_causal_mask=True: each step attends to "
            "itself and earlier steps only) and train it."
        )
    if kwargs.get("return_attention_scores"):
        _refuse(f"needs attention layers without return_attention_scores; layer {name!r} "
                "returns its scores.")
    multihead = isinstance(layer, keras.layers.MultiHeadAttention)
    if multihead:
        roles = dict(zip(("query", "value", "key"), args))
        roles.update({role: kwargs[role] for role in ("query", "value", "key")
                      if role in kwargs})
        others = sorted(k for k, v in kwargs.items() if _is_tensor(v) and k not in roles)
        if others:
            _refuse(f"needs attention whose only mask is the causal one; layer {name!r} "
                    f"(MultiHeadAttention) is also given {others}.")
        config = layer.get_config()
        if config.get("use_gate"):
            _refuse(f"cannot stream the gated MultiHeadAttention {name!r} (use_gate=True): "
                    "Keras keeps its gate projection private.")
        if tuple(_as_list(config.get("attention_axes") or (1,))) not in ((1,), (-2,)):
            _refuse(f"needs attention over the time axis; layer {name!r} has "
                    f"attention_axes={config['attention_axes']!r}.")
        window = config.get("sliding_window")
    else:
        roles = dict(zip(("query", "value", "key"), args[0]))
        window = None
    roles.setdefault("key", roles["value"])
    if not all(_is_tensor(v) for v in roles.values()):
        _refuse(f"needs attention between tensors of the model; layer {name!r} ({kind}) "
                "reads a constant.")
    roles = {role: _tensor_of(model, value) for role, value in roles.items()}
    if after_pooling:
        _refuse(f"cannot stream self-attention after max pooling (layer {name!r}).")
    length = roles["value"].shape[1]
    if window is not None:
        length = window if length is None else min(window, length)
    if length is None:
        _refuse(
            f"needs a fixed sequence length for the causal self-attention layer {name!r} "
            f"({kind}): each frame attends to every earlier frame, so the step form keeps "
            "their keys and values in a cache of a fixed number of frames, and the model's "
            "time dimension is None. Build the model with a fixed length, e.g. "
            "build_gru(..., input_shape=(time_steps, features), causal=True), and train it."
        )
    if multihead:
        heads = layer.num_heads
        key_dim, value_dim = layer.key_dim, layer.value_dim or layer.key_dim
        cache = [_state(f"state_{name}_keys", (heads, length, key_dim), "attention_keys",
                        layer),
                 _state(f"state_{name}_values", (heads, length, value_dim),
                        "attention_values", layer)]
    else:
        # Attention and AdditiveAttention have no projections: their keys and values
        # are their inputs (one cache when the key is the value, as in self-attention).
        cache = []
        if roles["key"] is not roles["value"]:
            cache.append(_state(f"state_{name}_keys",
                                (length, int(roles["key"].shape[-1])), "attention_keys",
                                layer))
        cache.append(_state(f"state_{name}_values", (length, int(roles["value"].shape[-1])),
                            "attention_values", layer))
    cache.append(_state(f"state_{name}_valid", (length,), "attention_valid", layer))
    return StepNode(layer, "self_attention", cache, roles=roles)


def plan(model):
    """Checks that `model` can run one frame at a time; returns its `StepNode`s.

    Raises:
        ValueError: naming the layer that cannot stream and why, before any
            conversion work.
    """
    input_spec(model)  # exactly one input
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    names = {layer.name for layer in layers}
    # Keras records the masks of `Masking` and `Embedding(mask_zero=True)` as operations
    # outside layers (NotEqual, Any) whose boolean outputs reach layers only as masks:
    # streaming takes every frame as valid and leaves them out. An operation whose
    # output a layer reads as data is part of the computation and cannot be left out.
    layer_inputs = {id(t) for layer in layers for t in _data_inputs(layer)}
    layer_inputs.add(id(model.outputs[0]))
    for operation in getattr(model, "operations", []):
        if operation.name in names or isinstance(operation, keras.layers.InputLayer):
            continue
        if any(id(t) in layer_inputs for t in _as_list(operation.output)):
            _refuse(
                "needs a graph of layers, but the model applies the operation "
                f"{operation.name!r} ({type(operation).__name__}) outside a layer (e.g. the "
                "mask that a convolutional variant builds for `mask_value` or token inputs; "
                "streaming takes every frame as valid, so build it without a mask)."
            )
    nodes = []
    produced_by = {}  # id(tensor) -> the node of the layer that outputs it
    readers = {}      # id(tensor) -> how many layers read it (and the model output)
    for t in [t for layer in layers for t in _data_inputs(layer)] + [model.outputs[0]]:
        readers[id(t)] = readers.get(id(t), 0) + 1
    padded = {}  # id(tensor) -> the end padding (frames) a ZeroPadding1D added
    pooled = set()  # ids of the tensors computed from a max pooling's output
    recurrent_index = 0
    for layer in layers:
        inputs = _data_inputs(layer)
        rank = len(inputs[0].shape)
        if any(id(t) in padded for t in inputs) and not isinstance(
                layer, keras.layers.MaxPooling1D):
            _refuse(f"needs end padding only right before max pooling; layer {layer.name!r} "
                    f"({type(layer).__name__}) reads a zero-padded sequence.")
        if isinstance(layer, keras.layers.Bidirectional):
            _refuse(
                "cannot export a bidirectional model: its backward direction needs the "
                f"whole sequence before the first output. Received: layer {layer.name!r} "
                f"(Bidirectional). Allowed: {ALLOWED}."
            )
        if isinstance(layer, keras.layers.RNN) or type(layer).__name__ in RECURRENT_CLASSES:
            _check_recurrent(layer)
            node = StepNode(layer, "recurrent", [
                _state(name, (layer.cell.units,), "recurrent", layer)
                for name in recurrent_state_names(recurrent_index, layer)])
            recurrent_index += 1
        elif isinstance(layer, keras.layers.Conv1D) and not isinstance(
                layer, keras.layers.Conv1DTranspose):
            _check_conv(layer)
            kernel, dilation = layer.kernel_size[0], layer.dilation_rate[0]
            history = (kernel - 1) * dilation
            states = [_state(f"state_{layer.name}_frames", (history, _features(layer)),
                             "conv_frames", layer)] if history else []
            node = StepNode(layer, "conv", states)
        elif isinstance(layer, keras.layers.ZeroPadding1D):
            before, after = layer.padding
            if before != 0:
                _refuse(f"cannot pad the start of a stream; layer {layer.name!r} "
                        f"(ZeroPadding1D) has padding={layer.padding}.")
            padded[id(layer.output)] = after
            node = StepNode(layer, "end_padding")
        elif isinstance(layer, keras.layers.MaxPooling1D):
            config = layer.get_config()
            pool, strides = config["pool_size"][0], config["strides"][0]
            end = padded.get(id(inputs[0]))
            if config["padding"] != "valid" or end is None or strides != pool \
                    or end != pool - 1:
                _refuse(
                    f"needs max pooling whose windows start at the first frame; layer "
                    f"{layer.name!r} (MaxPooling1D) has pool_size={pool}, strides={strides}, "
                    f"padding={config['padding']!r}"
                    + ("" if end is None else f" after {end} frames of end padding")
                    + ": 'same' padding centres its windows, so where a window starts "
                    "depends on the sequence length. Build the model with "
                    "build_gru(..., causal=True) (end padding of pool_size - 1 frames, then "
                    "'valid' pooling with strides = pool_size) and train it."
                )
            channels = _features(layer)
            node = StepNode(layer, "max_pool", [
                _state(f"state_{layer.name}_max", (channels,), "pool_max", layer),
                _state(f"state_{layer.name}_phase", (1,), "pool_phase", layer)])
        elif isinstance(layer, keras.layers.GlobalAveragePooling1D):
            config = layer.get_config()
            if config.get("data_format", "channels_last") != "channels_last" or config.get(
                    "keepdims"):
                _refuse(f"needs GlobalAveragePooling1D over time without keepdims; layer "
                        f"{layer.name!r} has {config}.")
            node = StepNode(layer, "global_average", [
                _state(f"state_{layer.name}_mean", (_features(layer),), "running_mean", layer),
                _state(f"state_{layer.name}_count", (1,), "frame_count", layer)])
        elif isinstance(layer, zoo.layers.AttentionPooling):
            node = StepNode(layer, "attention_pooling", [
                _state(f"state_{layer.name}_value", (_features(layer),), "attention_value",
                       layer),
                _state(f"state_{layer.name}_max", (1,), "attention_max", layer),
                _state(f"state_{layer.name}_denominator", (1,), "attention_denominator",
                       layer)])
        elif isinstance(layer, zoo.layers.MultiHeadAttentionPooling):
            heads = layer.num_heads
            value_dim = layer.attention.get_config()["value_dim"] or \
                layer.attention.get_config()["key_dim"]
            node = StepNode(layer, "multihead_pooling", [
                _state(f"state_{layer.name}_value", (heads, value_dim), "attention_value",
                       layer),
                _state(f"state_{layer.name}_max", (heads,), "attention_max", layer),
                _state(f"state_{layer.name}_denominator", (heads,), "attention_denominator",
                       layer)])
        elif isinstance(layer, zoo.layers.WindowNormalization):
            if not layer.causal:
                _refuse(
                    f"needs statistics of the frames seen so far; layer {layer.name!r} "
                    "(WindowNormalization) normalizes every frame by the mean over the "
                    "whole window, which is known only at its end. Build the model with "
                    "build_gru(..., window_norm=..., causal=True) and train it."
                )
            features = _features(layer)
            states = [_state(f"state_{layer.name}_first", (features,), "first_frame", layer),
                      _state(f"state_{layer.name}_mean", (features,), "running_mean", layer)]
            if layer.mode == "meanstd":
                states.append(_state(f"state_{layer.name}_square", (features,),
                                     "running_mean_of_squares", layer))
            states.append(_state(f"state_{layer.name}_count", (1,), "frame_count", layer))
            node = StepNode(layer, "window_norm", states)
        elif isinstance(layer, zoo.layers.WindowDenormalization):
            node = StepNode(layer, "window_denorm")
        elif isinstance(layer, keras.layers.Masking):
            node = StepNode(layer, "skip")
        elif isinstance(layer, PER_STEP_LAYERS):
            if isinstance(layer, _AXIS_LAYERS):
                _check_last_axis(layer, rank)
            node = StepNode(layer, "per_step")
            conv = produced_by.get(id(inputs[0]))
            if (isinstance(layer, keras.layers.BatchNormalization) and conv is not None
                    and conv.kind == "conv" and conv.fold is None
                    and readers[id(inputs[0])] == 1
                    and conv.layer.get_config()["activation"] == "linear"):
                # Folded into the convolution's kernel and bias (per output channel, so
                # the int8 weights stay per channel): the int8 step file of GunPoint's
                # GRU-FCN went from 0.96 to 0.993 test accuracy.
                conv.fold = layer
                node = StepNode(layer, "skip")
        elif isinstance(layer, (keras.layers.Attention, keras.layers.MultiHeadAttention)):
            # keras.layers.AdditiveAttention is a keras.layers.Attention.
            node = _self_attention_node(model, layer, after_pooling=any(
                id(t) in pooled for t in inputs))
        else:
            _refuse(
                f"needs layers that work one frame at a time; layer {layer.name!r} "
                f"({type(layer).__name__}) needs the whole sequence (attention, "
                "convolution, pooling or window statistics over time). "
                f"Allowed: {ALLOWED}."
            )
        nodes.append(node)
        for tensor in _as_list(layer.output):
            produced_by[id(tensor)] = node
            if node.kind == "max_pool" or any(id(t) in pooled for t in inputs):
                pooled.add(id(tensor))
    if not any(node.kind in ("recurrent", "conv", "global_average", "attention_pooling",
                             "multihead_pooling", "self_attention") for node in nodes):
        _refuse("needs at least one layer over time (recurrent, convolution or pooling); "
                "the model has none.")
    return nodes


def streaming_plan(model):
    """`[(layer, kind)]` of a streaming-capable `model` (see `plan`); raises otherwise."""
    return [(node.layer, node.kind) for node in plan(model)]


def state_specs(model):
    """Every state a streaming export carries, in the order of the layers.

    Returns:
        A list of dicts `{"name", "shape", "kind", "layer"}`; `shape` includes the
        batch axis (1). A device allocates each state, sets it to zeros at the start of
        a stream and feeds output `new_<name>` back as input `<name>` after each frame.
    """
    specs = []
    for node in plan(model):
        for state in node.states:
            specs.append(dict(state, shape=[1] + state["shape"]))
    return specs


# === The step model ===


@dataclasses.dataclass
class _Frame:
    """A value in the step graph: the tensor for this frame, and after a max pooling,
    `commit`: 1 at the frame that completes a pooling window (layers after the pooling
    move their states on), 0 inside a window (their outputs use the partial window, but
    their states stay)."""

    tensor: object
    commit: object = None
    end_padding: int = 0


def _clone(layer, **changes):
    config = layer.get_config()
    config.update(changes)
    return type(layer).from_config(config)


def _call_clone(layer, clone, *args):
    """Calls `clone` (built on the frame shapes) and copies the trained weights into it."""
    result = clone(*args)
    clone.set_weights(layer.get_weights())
    return result


def _math(name, function, *tensors):
    """Applies `function` to the backend tensors of `tensors` in a `keras.layers.Lambda`.

    Why not `keras.ops` on the symbolic tensors directly: on TensorFlow,
    `keras.ops.add(x1, x2)` becomes a bias add (with a squeeze of x2, a `RESHAPE` in the
    file) when x2 squeezes to a vector as long as a dimension of x1, which holds for
    every (1, n) + (1, n) sum of a batch-1 step model. Besides adding (batch, n) +
    (batch, 1) across the outputs when batch == n, those reshapes met an in-place
    optimization of LiteRT's int16x8 `ADD` that overwrote a state output still to be
    read (wrong new states, measured on a window-normalized model). Inside the Lambda
    the tensors are TensorFlow tensors, whose `+` is a plain `ADD`.
    """
    return keras.layers.Lambda(lambda inputs: function(*inputs), name=name)(list(tensors))


def _commit(commit, new, old):
    """`new` when the frame completes a pooling window (or without pooling), else `old`.

    Written as arithmetic rather than `where`: int16x8 quantization has no SELECT.
    Runs on backend tensors (inside `_math`).
    """
    if commit is None:
        return new
    while len(commit.shape) < len(new.shape):  # (batch, 1) against (batch, ..., n)
        commit = ops.expand_dims(commit, -1)
    return old + commit * (new - old)


def _with_commit(name, function, commit, *tensors):
    """`_math` with the pooling commit as the function's first argument (or `None`)."""
    if commit is None:
        return _math(name, lambda *inputs: function(None, *inputs), *tensors)
    return _math(name, function, commit, *tensors)


def _reciprocal(count):
    """1 / count for count >= 1, as rsqrt(count)^2: int16x8 quantization has no DIV.

    Exact enough in float32 (integer counts, one rounding). Quantized, a count needs the
    range 0 .. frames, and LiteRT's int16 `RSQRT` (a table over the input's whole range)
    is coarse near 1: 1/sqrt(1) came out 0.94 on a GunPoint model. Tried instead: the
    count kept as n / (n + 1) (rsqrt of 1 .. 2 only), which fixed the first frames but
    accumulated float32 rounding over 150 frames (4e-5 against Keras) and did not lower
    the quantized files' error, which comes from the int8 convolution weights.
    """
    root = ops.rsqrt(count)
    return root * root


def _at_most_one(value):
    """min(value, 1) for value >= 0, as 1 - relu(1 - value).

    Not `minimum`: int8 `MINIMUM` shares one scale between its inputs and output, so
    the quantizer gave a count or a denominator (0 .. frames) the range of the result
    (0 .. 1), and the count stopped at 1.
    """
    return 1.0 - ops.relu(1.0 - value)


def _one_commit(frames):
    commits = {id(f.commit): f.commit for f in frames if f.commit is not None}
    if len(commits) > 1:
        _refuse("cannot join sequences pooled by different max poolings.")
    return next(iter(commits.values()), None)


def _recurrent_step(node, frames, states, gate_math=False):
    # `gate_math`: a GRU's step uses the chunked form's gate math
    # (`export.chunked.gru_step`: one product per gate group, 13 ops per layer against
    # the cell's 17, no slices); otherwise Keras's own cell. Float files take the gate
    # math (exact either way; `GATE_MATH_MODES`). Quantized ones keep the cell: measured
    # on 2 x GRU(64) at one invoke per frame, the gate math's int8 file is faster
    # (1.18x -> 1.04x ONNX Runtime's per-step cost), but its int8 error is larger on
    # every trained model tried, all per-channel: mean |file - Keras| 0.0028 -> 0.0033
    # (ItalyPowerDemand preset, one more test series wrong), 0.019 -> 0.022
    # (CardanoSentiment), 0.029 -> 0.030 (Covid3Month). Neither separate z and r
    # products, nor Keras's form of the update, nor wider ranges closed the gap.
    layer = node.layer
    old = [states[s["name"]] for s in node.states]
    if gate_math and isinstance(layer, keras.layers.GRU):
        gates = _gate_math_cell(layer.cell)

        def step(x, h):
            x_zr, x_h = chunked.gru_projection(gates, x)
            return chunked.gru_step(gates, x_zr, x_h, h)

        output = _math(f"{layer.name}_gates", step, frames[0].tensor, old[0])
        new = [output]
    else:
        cell_config = layer.cell.get_config()
        cell_config["name"] = f"{layer.name}_cell"
        _drop_dropout(cell_config)
        cell = type(layer.cell).from_config(cell_config)
        # Keras cells take and return their state as [h] (GRU, RNN) or [h, c] (LSTM).
        output, new = cell(frames[0].tensor, old if len(old) > 1 else old[0])
        cell.set_weights(layer.cell.get_weights())
        new = list(new) if isinstance(new, (list, tuple)) else [new]
    commit = frames[0].commit
    if commit is not None:
        new = _math(f"{layer.name}_commit",
                    lambda c, *values: [_commit(c, n, o) for n, o in
                                        zip(values[: len(old)], values[len(old):])],
                    commit, *new, *old)
    new_states = {s["name"]: value for s, value in zip(node.states, new)}
    return [_Frame(output, commit if layer.return_sequences else None)], new_states


# Quantization modes whose step files compute a GRU with the chunked form's gate math
# (see `_recurrent_step`); `None` is float32.
GATE_MATH_MODES = (None, "float16", "dynamic")


def gate_math_for(quantization):
    """Whether a step file of `quantization` computes its GRU layers with the gate math."""
    return quantization in GATE_MATH_MODES


def _gate_math_cell(cell):
    """What `export.chunked.gru_step` reads of a GRU cell, its weights as numpy arrays
    (constants of the step model, not variables of another model)."""
    return types.SimpleNamespace(
        units=cell.units, use_bias=cell.use_bias, reset_after=cell.reset_after,
        activation=cell.activation, recurrent_activation=cell.recurrent_activation,
        kernel=np.asarray(cell.kernel), recurrent_kernel=np.asarray(cell.recurrent_kernel),
        bias=np.asarray(cell.bias) if cell.use_bias else None)


def _folded_weights(conv, norm):
    """Kernel and bias of `conv` followed by `norm` (inference mode) as one convolution."""
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    bias = (keras.ops.convert_to_numpy(conv.bias) if conv.use_bias
            else np.zeros(kernel.shape[-1], kernel.dtype))
    mean = keras.ops.convert_to_numpy(norm.moving_mean)
    scale = 1.0 / np.sqrt(keras.ops.convert_to_numpy(norm.moving_variance) + norm.epsilon)
    if norm.gamma is not None:
        scale = scale * keras.ops.convert_to_numpy(norm.gamma)
    shift = keras.ops.convert_to_numpy(norm.beta) if norm.beta is not None else 0.0
    return [(kernel * scale).astype(kernel.dtype),
            ((bias - mean) * scale + shift).astype(kernel.dtype)]


def _conv_step(node, frames, states):
    layer, frame = node.layer, frames[0]
    clone = _clone(layer, padding="valid", name=f"{layer.name}_step",
                   use_bias=layer.use_bias or node.fold is not None)
    x = ops.expand_dims(frame.tensor, 1)
    name = node.states[0]["name"] if node.states else None
    # Oldest frame first; kernel_size 1 keeps no history.
    window = ops.concatenate([states[name], x], axis=1) if name else x
    output = clone(window)[:, 0, :]
    clone.set_weights(_folded_weights(layer, node.fold) if node.fold is not None
                      else layer.get_weights())
    if not name:
        return [_Frame(output, frame.commit)], {}
    history = window[:, 1:, :]
    if frame.commit is not None:
        history = _math(f"{layer.name}_commit", _commit, frame.commit, history, states[name])
    return [_Frame(output, frame.commit)], {name: history}


def _max_pool_step(node, frames, states):
    layer, frame = node.layer, frames[0]
    if frame.commit is not None:
        _refuse(f"cannot stream two max poolings in a row (layer {layer.name!r}).")
    pool = layer.get_config()["pool_size"][0]
    max_name, phase_name = (s["name"] for s in node.states)

    def window(x, running_max, phase):
        # phase counts the frames of the current window: 0 .. pool-1. The indicators
        # are exact for integer phases and written without comparisons or `where`
        # (int16x8 quantization has neither).
        first = ops.relu(1.0 - phase)           # 1 at the window's first frame
        last = ops.relu(phase - (pool - 2.0))   # 1 at its last frame
        window_max = ops.maximum(running_max * (1.0 - first) + x * first, x)
        # A window that is not complete yet ends, in the full model, with the zeros
        # padded at the end of the sequence: max(window, 0).
        pooled = last * window_max + (1.0 - last) * ops.relu(window_max)
        return pooled, last, window_max, (phase + 1.0) * (1.0 - last)

    pooled, last, window_max, phase = _math(
        f"{layer.name}_window", window, frame.tensor, states[max_name], states[phase_name])
    return [_Frame(pooled, last)], {max_name: window_max, phase_name: phase}


def _global_average_step(node, frames, states):
    layer, frame = node.layer, frames[0]
    mean_name, count_name = (s["name"] for s in node.states)

    def running_mean(commit, x, mean, count):
        new_count = count + 1.0
        new_mean = mean + (x - mean) * _reciprocal(new_count)
        return new_mean, _commit(commit, new_mean, mean), _commit(commit, new_count, count)

    output, mean, count = _with_commit(f"{layer.name}_running_mean", running_mean,
                                       frame.commit, frame.tensor, states[mean_name],
                                       states[count_name])
    return [_Frame(output)], {mean_name: mean, count_name: count}


def _running_softmax(commit, score, value, old_value, old_max, old_denominator):
    """One step of a softmax-weighted mean over the frames so far (backend tensors).

    States: the weighted mean itself (bounded by the values, so it quantizes well), the
    running maximum score and the denominator sum(exp(score - max)), which is >= 1 once
    a frame has been seen and 0 before (zero-initialized states need no flag).

    The two exponentials of a step, a = exp(old max - new max) and b = exp(score - new
    max), come from one softmax over the pair (old max, score): p = (a, b) / (a + b),
    and a + b = 1 / max(p), since the larger of a and b is 1. TFLite Micro runs `EXP`
    in float32 only, while its `SOFTMAX` also runs in int8 and int16.

    Returns the weighted mean for this frame and the three new states.
    """
    started = _at_most_one(old_denominator)
    # Before the first frame the stored maximum means nothing: take this score instead.
    reference = started * old_max + (1.0 - started) * score
    new_max = ops.maximum(reference, score)
    pair = ops.softmax(ops.stack([reference, score], axis=-1), axis=-1)
    kept, weight = pair[..., 0], pair[..., 1]
    scaled = old_denominator * kept + weight      # = denominator / (a + b)
    denominator = scaled * _reciprocal(ops.maximum(kept, weight))
    share = weight * _reciprocal(scaled)           # = b / denominator
    if len(value.shape) > len(share.shape):  # one score per head: (batch, heads)
        share = ops.expand_dims(share, -1)
    pooled = old_value + share * (value - old_value)
    return (pooled, _commit(commit, pooled, old_value), _commit(commit, new_max, old_max),
            _commit(commit, denominator, old_denominator))


def _attention_pooling_step(node, frames, states):
    layer, frame = node.layer, frames[0]
    names = [s["name"] for s in node.states]
    score_dense = _clone(layer.score_dense, name=f"{layer.name}_score_dense")
    score_vector = _clone(layer.score_vector, name=f"{layer.name}_score_vector")
    hidden = _call_clone(layer.score_dense, score_dense, frame.tensor)
    score = _call_clone(layer.score_vector, score_vector, hidden)  # (batch, 1)
    pooled, *new = _with_commit(f"{layer.name}_running_softmax", _running_softmax,
                                frame.commit, score, frame.tensor,
                                *(states[name] for name in names))
    return [_Frame(pooled)], dict(zip(names, new))


def _multihead_pooling_step(node, frames, states):
    layer, frame = node.layer, frames[0]
    attention = layer.attention
    names = [s["name"] for s in node.states]
    key_dim = attention.get_config()["key_dim"]
    # The learned query is a weight: its projection is a constant of the step model.
    query = keras.ops.convert_to_numpy(attention.query_dense(layer.query))  # (1, 1, heads, key)
    query = query[:, 0] * (1.0 / key_dim ** 0.5)
    dense = {}
    for part in ("key_dense", "value_dense", "output_dense"):
        original = getattr(attention, part)
        dense[part] = (original, _clone(original, name=f"{layer.name}_{part}"))
    x = ops.expand_dims(frame.tensor, 1)                                  # (batch, 1, features)
    key = _call_clone(*dense["key_dense"], x)[:, 0]                       # (batch, heads, key)
    value = _call_clone(*dense["value_dense"], x)[:, 0]                   # (batch, heads, value)
    score = _math(f"{layer.name}_scores",
                  lambda k: ops.sum(k * ops.convert_to_tensor(query), axis=-1), key)
    pooled, *new = _with_commit(f"{layer.name}_running_softmax", _running_softmax,
                                frame.commit, score, value,
                                *(states[name] for name in names))
    output = _call_clone(*dense["output_dense"], ops.expand_dims(pooled, 1))[:, 0]
    return [_Frame(output)], dict(zip(names, new))


# Scores of empty cache slots, before the renormalization that removes them (see
# `_masked_softmax`): low enough that the slots take little of the softmax, high enough
# that the scores keep a range integer quantization resolves.
EMPTY_SLOT_SCORE = -8.0


def _shift_in(buffer, new, axis):
    """The shift buffer `buffer` (oldest first along `axis`) with `new` appended and
    its oldest entry dropped (backend tensors)."""
    if buffer.shape[axis] == 1:
        return new
    kept = buffer[(slice(None),) * axis + (slice(1, None),)]
    return ops.concatenate([kept, new], axis=axis)


def _masked_softmax(scores, valid):
    """Softmax of `scores` over the slots where `valid` is 1 (backend tensors).

    Keras masks a score by subtracting 1e9 from it; a tensor holding -1e9 would leave
    integer quantization no resolution for the real scores. Here empty slots get the
    score `EMPTY_SLOT_SCORE`, the softmax (`SOFTMAX`, which TFLite Micro also runs in
    int8 and int16, unlike `EXP`) is taken over every slot, and the empty slots'
    weights are set to 0 and the rest renormalized: exactly the softmax over the valid
    slots, whatever the empty slots' score. The renormalization's reciprocal is
    `_reciprocal`'s rsqrt squared (int16x8 has no DIV); the total is a product with a
    vector of ones (see `_attention_scores` for why not a sum).
    """
    masked = valid * scores + (1.0 - valid) * EMPTY_SLOT_SCORE
    weights = ops.softmax(masked, axis=-1) * valid
    ones = np.ones((weights.shape[-1], 1), np.float32)
    return weights * _reciprocal(ops.matmul(weights, ones))


def _attention_scores(layer):
    """The scores of a Keras `Attention`/`AdditiveAttention` layer as a function of one
    query `(batch, 1, features)` and the cached keys `(batch, length, features)`,
    with its trained scale weights as constants (backend tensors, `(batch, length)`).

    Every sum over features or frames is a matrix product (`FULLY_CONNECTED`,
    `BATCH_MATMUL`): quantized, those accumulate in 32 bits and have their own output
    scale. Not `SUM`: int16x8 `SUM` keeps its input's scale, so a score (a sum of 64
    terms) was clipped to the range of one term (error 0.36 on a tiny model's scores).
    Not the mean times the count either: int8 gave the `MEAN` the scale of the product
    with the count, leaving the mean a few levels (int8 error 0.25 against 0.06 for
    the full-sequence file of a 2 x GRU(64) model).
    """
    def constant(weight):
        return None if weight is None else keras.ops.convert_to_numpy(weight)

    scale = constant(layer.scale)

    def total(x, weights=None):  # sum over the last axis, weighted: (..., n) -> (...)
        if weights is None:
            weights = np.ones(x.shape[-1], np.float32)
        column = np.reshape(weights, (-1, 1)).astype(np.float32)
        return ops.matmul(x, column)[..., 0]

    if isinstance(layer, keras.layers.AdditiveAttention):
        def scores(query, keys):
            return total(ops.tanh(query + keys), scale)
    elif layer.score_mode == "dot":
        def scores(query, keys):
            # (batch, length, features) x (batch, features, 1): one dot per frame.
            dot = ops.matmul(keys, ops.expand_dims(query[:, 0], -1))[..., 0]
            return dot if scale is None else dot * scale
    else:  # "concat"
        weight = constant(layer.concat_score_weight)

        def scores(query, keys):
            summed = query + keys
            return weight * total(ops.tanh(summed if scale is None else scale * summed))
    return scores


def _self_attention_step(node, frames, states):
    """One frame of causal self-attention over the key/value cache.

    The frame's key and value go into the caches first (a frame attends to itself),
    then its query attends over the cache: the output equals the full causal layer's
    output at this frame. Keras' attention layers take whole sequences; a query of one
    frame against cached, already projected keys and values is the attention core
    alone, which Keras does not expose, so it is written here (as in
    `MultiHeadAttention`: query scaled by 1/sqrt(key_dim), dot products, softmax,
    weighted sum of the values; the projections are clones of the layer's own).
    """
    layer = node.layer
    query, value, key = (frames[role] for role in ("query", "value", "key"))
    names = {s["kind"]: s["name"] for s in node.states}
    if isinstance(layer, keras.layers.MultiHeadAttention):
        dense = {}
        for part in ("query_dense", "key_dense", "value_dense", "output_dense"):
            original = getattr(layer, part)
            dense[part] = (original, _clone(original, name=f"{layer.name}_{part}"))

        def project(part, frame):  # (batch, features) -> (batch, heads, dim)
            return _call_clone(*dense[part], ops.expand_dims(frame.tensor, 1))[:, 0]

        inverse_sqrt_key_dim = 1.0 / float(layer.key_dim) ** 0.5

        def attend(q, k, v, keys, values, valid):
            # Caches (batch, heads, length, dim), head-major so that the scores come
            # out as (batch, heads, length) and the softmax is over the last axis.
            keys = _shift_in(keys, ops.expand_dims(k, 2), axis=2)
            values = _shift_in(values, ops.expand_dims(v, 2), axis=2)
            valid = _shift_in(valid, ops.ones_like(valid[:, :1]), axis=1)
            q = q * inverse_sqrt_key_dim
            # Products, not sums (see `_attention_scores`): (b, h, length, key) x
            # (b, h, key, 1) and (b, h, 1, length) x (b, h, length, value).
            scores = ops.matmul(keys, ops.expand_dims(q, -1))[..., 0]
            weights = _masked_softmax(scores, ops.expand_dims(valid, 1))
            attended = ops.matmul(ops.expand_dims(weights, 2), values)[:, :, 0]
            return attended, keys, values, valid

        attended, keys, values, valid = _math(
            f"{layer.name}_attend", attend, project("query_dense", query),
            project("key_dense", key), project("value_dense", value),
            states[names["attention_keys"]], states[names["attention_values"]],
            states[names["attention_valid"]])
        output = _call_clone(*dense["output_dense"], ops.expand_dims(attended, 1))[:, 0]
        new = {names["attention_keys"]: keys, names["attention_values"]: values,
               names["attention_valid"]: valid}
        return [_Frame(output)], new

    scores = _attention_scores(layer)
    separate_keys = "attention_keys" in names

    def attend(q, v, values, valid, k=None, keys=None):
        values = _shift_in(values, ops.expand_dims(v, 1), axis=1)
        keys = values if k is None else _shift_in(keys, ops.expand_dims(k, 1), axis=1)
        valid = _shift_in(valid, ops.ones_like(valid[:, :1]), axis=1)
        weights = _masked_softmax(scores(ops.expand_dims(q, 1), keys), valid)
        attended = ops.matmul(ops.expand_dims(weights, 1), values)[:, 0]
        return (attended, values, valid) + ((keys,) if k is not None else ())

    inputs = [query.tensor, value.tensor, states[names["attention_values"]],
              states[names["attention_valid"]]]
    if separate_keys:
        inputs += [key.tensor, states[names["attention_keys"]]]
    output, *new = _math(f"{layer.name}_attend", attend, *inputs)
    kinds = ["attention_values", "attention_valid"] + (
        ["attention_keys"] if separate_keys else [])
    return [_Frame(output)], {names[kind]: t for kind, t in zip(kinds, new)}


def _window_norm_step(node, frames, states):
    # As `WindowNormalization(causal=True)` computes them: on the offsets from the
    # first frame (which the `_first` state keeps), running means over the frames so far.
    layer, frame = node.layer, frames[0]
    names = {s["kind"]: s["name"] for s in node.states}
    meanstd = layer.mode == "meanstd"

    def running_statistics(x, first, mean_offset, count, square=None):
        started = _at_most_one(count)  # 0 at the first frame, then 1
        # At the first frame the stored first frame is not set yet: the offset is 0
        # and x is stored.
        offset = started * (x - first)
        first = x - offset
        count = count + 1.0
        share = _reciprocal(count)
        mean_offset = mean_offset + (offset - mean_offset) * share
        centred = offset - mean_offset
        mean = first + mean_offset
        if square is None:
            return centred, mean, first, mean_offset, count
        # Products and rsqrt rather than square and sqrt: int16x8 quantization has
        # neither.
        square = square + (offset * offset - square) * share
        variance = ops.relu(square - mean_offset * mean_offset) + layer.epsilon
        inverse_std = ops.rsqrt(variance)
        return (centred * inverse_std, mean, variance * inverse_std, first, mean_offset,
                count, square)

    inputs = [frame.tensor] + [states[names[kind]] for kind in
                               ("first_frame", "running_mean", "frame_count")]
    if meanstd:
        inputs.append(states[names["running_mean_of_squares"]])
    results = _math(f"{layer.name}_running", running_statistics, *inputs)
    outputs = results[: 3 if meanstd else 2]
    new = results[len(outputs):]
    kinds = ["first_frame", "running_mean", "frame_count"] + (
        ["running_mean_of_squares"] if meanstd else [])
    return [_Frame(t) for t in outputs], {names[k]: t for k, t in zip(kinds, new)}


def _window_denorm_step(node, frames):
    layer = node.layer
    channel = layer.channel

    def denormalize(outputs, mean, std=None):
        if std is not None:
            outputs = outputs * std[:, channel : channel + 1]
        return outputs + mean[:, channel : channel + 1]

    output = _math(f"{layer.name}_step", denormalize, *(f.tensor for f in frames))
    return [_Frame(output, _one_commit(frames))]


def _layer_norm_step(layer, frame):
    """LayerNormalization over the features of one frame, as Keras computes it, but
    `(x - mean) * inv` where Keras writes `x * inv + (-mean * inv)`: its `-mean` is a
    `NEG`, which int16x8 quantization does not have (the layer norm after per-step
    self-attention made every int16x8 conversion of those models fail)."""
    def constant(weight):
        return None if weight is None else keras.ops.convert_to_numpy(weight)

    gamma, beta, epsilon = constant(layer.gamma), constant(layer.beta), layer.epsilon

    def normalize(x):
        mean = ops.mean(x, axis=-1, keepdims=True)
        centred = x - mean
        inv = ops.rsqrt(ops.mean(centred * centred, axis=-1, keepdims=True) + epsilon)
        if gamma is not None:
            inv = inv * gamma
        return centred * inv if beta is None else centred * inv + beta

    return _math(f"{layer.name}_step", normalize, frame)


def _per_step(node, frames):
    layer = node.layer
    if isinstance(layer, keras.layers.LayerNormalization) and not layer.rms_scaling:
        return [_Frame(_layer_norm_step(layer, frames[0].tensor), frames[0].commit)]
    changes = {"name": f"{layer.name}_step"}
    if isinstance(layer, _AXIS_LAYERS):
        changes["axis"] = -1
    clone = _clone(layer, **changes)
    tensors = [f.tensor for f in frames]
    output = _call_clone(layer, clone, tensors if len(tensors) > 1 else tensors[0])
    return [_Frame(output, _one_commit(frames))]


def build_step_model(model, *, batch_size=1, gate_math=False):
    """Builds the one-frame model of a streaming-capable `model`, weights copied.

    Inputs (a dict): `frame` `(batch, features)` (or `(batch,)` token ids) and each state
    of `state_specs(model)`. Outputs (a dict): `output` (the model's output for the
    frames so far, or for this frame in per-step tasks) and `new_<state name>` for each
    state. Masking is not applied: every frame given is a valid step.

    Args:
        model: a `keras.Model` that streams (`plan` explains why not otherwise).
        batch_size: int or `None`, the static batch of the step model. Defaults to `1`.
        gate_math: bool, GRU layers use the chunked form's gate math instead of Keras's
            cell (fewer ops; which files do: `gate_math_for`).

    Returns:
        A functional `keras.Model` named `"<model name>_step"`.
    """
    nodes = plan(model)
    shape, dtype = input_spec(model)
    frame = keras.Input(batch_shape=(batch_size,) + tuple(shape[1:]), dtype=dtype, name="frame")
    inputs = {"frame": frame}
    outputs = {}
    values = {id(model.inputs[0]): _Frame(frame)}
    for node in nodes:
        layer = node.layer
        frames = [values[id(t)] for t in _data_inputs(layer)]
        states = {}
        for state in node.states:
            states[state["name"]] = keras.Input(
                batch_shape=(batch_size,) + tuple(state["shape"]), name=state["name"])
        inputs.update(states)
        new_states = {}
        if node.kind == "recurrent":
            results, new_states = _recurrent_step(node, frames, states, gate_math)
        elif node.kind == "conv":
            results, new_states = _conv_step(node, frames, states)
        elif node.kind == "end_padding":
            # The padding is the end of a partial pooling window: the pooling step
            # handles it (its output for an incomplete window).
            results = [dataclasses.replace(frames[0], end_padding=layer.padding[1])]
        elif node.kind == "max_pool":
            results, new_states = _max_pool_step(node, frames, states)
        elif node.kind == "global_average":
            results, new_states = _global_average_step(node, frames, states)
        elif node.kind == "attention_pooling":
            results, new_states = _attention_pooling_step(node, frames, states)
        elif node.kind == "multihead_pooling":
            results, new_states = _multihead_pooling_step(node, frames, states)
        elif node.kind == "self_attention":
            by_role = {role: values[id(t)] for role, t in node.roles.items()}
            results, new_states = _self_attention_step(node, by_role, states)
        elif node.kind == "window_norm":
            results, new_states = _window_norm_step(node, frames, states)
        elif node.kind == "window_denorm":
            results = _window_denorm_step(node, frames)
        elif node.kind == "skip":
            results = [frames[0]]
        else:
            results = _per_step(node, frames)
        for tensor, result in zip(_as_list(layer.output), results):
            values[id(tensor)] = result
        for name, value in new_states.items():
            outputs[f"new_{name}"] = value
    outputs["output"] = values[id(model.outputs[0])].tensor
    return keras.Model(inputs, outputs, name=f"{model.name}_step")

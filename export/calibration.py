"""Full-integer quantization of files with a `WHILE` loop (the `"chunked"` recipe).

TFLite's converter calibrates by running the float file in an instrumented
interpreter (`tensorflow.lite.python.optimize.calibrator`). With a `WHILE` loop that
interpreter crashes the process (a segmentation fault in `MinMax::Update`, reading a
loop tensor whose memory the loop kernel has released), so the converter cannot
calibrate any loop model. The rest of its int8 pipeline, the MLIR quantizer
(`tensorflow.lite.python.convert.mlir_quantize`), does quantize loops: it only needs
the min/max of every float tensor in every subgraph.

`quantize_int8` therefore runs the converter's own pipeline with one step replaced:

1. `float_model_for_quantization`: the float model exactly as the converter prepares it
   for calibration (its int8 settings, intermediate tensors added), taken before its
   calibrator runs.
2. `calibrate`: the min/max of every float tensor, measured here with the LiteRT
   interpreter: the main graph with all tensors preserved, and each loop body run as a
   model of its own, iteration by iteration, carrying the loop variables, so every
   iteration's tensors are seen (a preserved body only holds its last iteration), and
   so is each loop inside a body (`_Loop`; the chunked form's segments nest two), for
   a subset of the samples that covers `MAX_RECORDED_ITERATIONS` iterations. A value
   that a body only reads (a chunked loop's input sequence) takes the range it has
   entering the loop, over all samples (`_Loop.widen_read_only`).
3. `mlir_quantize` with the converter's default int8 settings (per-channel weights).
4. `export.integer_loops.integer_loop_variables`: the loop variables, which the
   quantizer leaves float, carried in int8.

Written by hand because neither the converter nor `ai-edge-quantizer` (whose static
recipes also fail on `WHILE`) calibrates loop bodies.
"""

import re

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from export.integer_loops import float_ops, integer_loop_variables

# Loop iterations whose tensors are read, about, over all samples: every sample runs
# the main graph (its ranges), but only as many samples as this needs (at least 8,
# spread over the data) also run their loop bodies iteration by iteration, every
# iteration read (at T=200 with 4 steps per iteration: 30 samples, 6000 time steps).
MAX_RECORDED_ITERATIONS = 1500


def _interpreter(content):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Builtin kernels: a delegate computes its partition in its own memory, so the
    # tensors inside it are not readable afterwards.
    return Interpreter(
        model_content=content,
        num_threads=1,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )


def _read(interpreter, index):
    """A tensor's value, or `None` when it holds no data (e.g. an unused loop output)."""
    try:
        return interpreter.get_tensor(index)
    except ValueError:
        return None


def _is_constant(model, tensor):
    data = model.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _float_tensors(model, subgraph):
    return [index for index, tensor in enumerate(subgraph.tensors)
            if tensor.type == schema.TensorType.FLOAT32 and not _is_constant(model, tensor)]


# The options fields of control flow ops that name a subgraph.
_SUBGRAPH_FIELDS = ("condSubgraphIndex", "bodySubgraphIndex", "thenSubgraphIndex",
                    "elseSubgraphIndex", "initSubgraphIndex")


def _standalone(model_bytes, index):
    """The subgraph `index` of a model as a model of its own (its inputs, its outputs).

    The other subgraphs follow it, renumbered, so that a loop inside it still finds its
    condition and body; tensor indices are unchanged.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    order = [index] + [number for number in range(len(model.subgraphs)) if number != index]
    renumbered = {old: new for new, old in enumerate(order)}
    model.subgraphs = [model.subgraphs[number] for number in order]
    for subgraph in model.subgraphs:
        for operator in subgraph.operators or []:
            for field in _SUBGRAPH_FIELDS:
                if hasattr(operator.builtinOptions, field):
                    setattr(operator.builtinOptions, field,
                            renumbered[getattr(operator.builtinOptions, field)])
    model.signatureDefs = []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _while_ops(model, subgraph):
    for operator in subgraph.operators or []:
        if flatbuffer_utils.opcode_to_name(model, operator.opcodeIndex) == "WHILE":
            yield operator


class _Ranges:
    """Running min/max of many tensors, updated with two numpy reductions per call."""

    def __init__(self):
        self.low, self.high = {}, {}

    def update_all(self, subgraph_index, interpreter, indices):
        values, keys = [], []
        for index in indices:
            value = _read(interpreter, index)
            if value is not None and value.size:
                values.append(value.reshape(-1))
                keys.append((subgraph_index, index))
        if not values:
            return
        sizes = np.array([len(v) for v in values])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        flat = np.concatenate(values).astype(np.float64)
        lows, highs = np.minimum.reduceat(flat, starts), np.maximum.reduceat(flat, starts)
        for key, low, high in zip(keys, lows.tolist(), highs.tolist()):
            if key in self.low:
                if low < self.low[key]:
                    self.low[key] = low
                if high > self.high[key]:
                    self.high[key] = high
            else:
                self.low[key], self.high[key] = low, high


class _Loop:
    """A `WHILE` op run iteration by iteration: its condition and its body as models of
    their own (builtin kernels, every tensor kept), and the loops inside its body."""

    def __init__(self, content, model, operator, depth=1):
        if depth > MAX_LOOP_DEPTH:
            raise ValueError(f"calibration supports WHILE loops nested {MAX_LOOP_DEPTH} "
                             "deep; this model nests them deeper")
        options = operator.builtinOptions
        self.operator = operator
        self.body_index = options.bodySubgraphIndex
        self.body = model.subgraphs[options.bodySubgraphIndex]
        self.cond = model.subgraphs[options.condSubgraphIndex]
        if any(True for _ in _while_ops(model, self.cond)):
            raise ValueError("calibration does not support a WHILE loop in a loop's "
                             "condition")
        self.body_run = _interpreter(_standalone(content, options.bodySubgraphIndex))
        self.body_run.allocate_tensors()
        self.cond_run = _interpreter(_standalone(content, options.condSubgraphIndex))
        self.cond_run.allocate_tensors()
        self.floats = _float_tensors(model, self.body)
        self.inner = [_Loop(content, model, inner, depth + 1)
                      for inner in _while_ops(model, self.body)]

    def run(self, values, ranges):
        """Runs the loop from `values` (its inputs) and records the ranges of its body's
        tensors at every iteration, and of the loops inside it at every iteration of
        theirs. Returns the number of body iterations, inner loops' included."""
        iterations = 0
        own = 0
        while True:
            for position, tensor in enumerate(self.cond.inputs):
                self.cond_run.set_tensor(int(tensor), values[position])
            self.cond_run.invoke()
            if not bool(np.asarray(self.cond_run.get_tensor(
                    int(self.cond.outputs[0]))).reshape(-1)[0]):
                return iterations
            for position, tensor in enumerate(self.body.inputs):
                self.body_run.set_tensor(int(tensor), values[position])
            self.body_run.invoke()
            ranges.update_all(self.body_index, self.body_run, self.floats)
            for loop in self.inner:
                iterations += loop.run(
                    [self.body_run.get_tensor(int(i)) for i in loop.operator.inputs], ranges)
            values = [self.body_run.get_tensor(int(tensor)) for tensor in self.body.outputs]
            iterations += 1
            own += 1
            if own > 10**6:
                raise ValueError("a WHILE loop ran over 10^6 iterations during calibration")

    def widen_read_only(self, graph_index, ranges):
        """Gives each variable that the body passes on unchanged (a chunked loop's input
        sequence) the range of the value entering the loop, recorded on every sample,
        where the body saw only the samples that ran the loop: the same values, so one
        range (and one int8 scale: no rescale in the loop, no clipping of the samples
        the body did not see). Then the same for the loops inside the body."""
        for position, (inside, outside) in enumerate(zip(self.body.inputs,
                                                         self.body.outputs)):
            inner, outer = (self.body_index, int(inside)), (graph_index,
                                                            int(self.operator.inputs[position]))
            if inside == outside and inner in ranges.low and outer in ranges.low:
                ranges.low[inner] = min(ranges.low[inner], ranges.low[outer])
                ranges.high[inner] = max(ranges.high[inner], ranges.high[outer])
        for loop in self.inner:
            loop.widen_read_only(self.body_index, ranges)


# Loops inside loops that calibration follows (the chunked recipe's segments nest two).
MAX_LOOP_DEPTH = 4


def calibrate(content, samples):
    """Min/max of every float tensor of `content` over `samples`.

    Args:
        content: bytes of a float `.tflite` model whose graphs may hold `WHILE` loops,
            nested up to `MAX_LOOP_DEPTH` deep (an outer loop's body holding inner ones).
        samples: list of `{input name: array}` for the model's signature.

    Returns:
        bytes: the model with `quantization.min/max` set on its float tensors.

    Raises:
        ValueError: loops nested too deep, or a loop that does not end within 10^6
            iterations.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    main = model.subgraphs[0]
    ranges = _Ranges()
    interpreter = _interpreter(content)
    runner = interpreter.get_signature_runner()
    main_floats = _float_tensors(model, main)
    loops = [_Loop(content, model, operator) for operator in _while_ops(model, main)]
    loop_samples = None  # which samples also run the loop bodies (set after the first)
    for number, sample in enumerate(samples):
        runner(**sample)
        ranges.update_all(0, interpreter, main_floats)
        if loop_samples is not None and number not in loop_samples:
            continue
        iterations = 0
        for loop in loops:
            iterations += loop.run(
                [interpreter.get_tensor(int(i)) for i in loop.operator.inputs], ranges)
        if loop_samples is None:
            # Every iteration of a sample is read; enough samples, spread over the data,
            # to read about MAX_RECORDED_ITERATIONS iterations (at least 8 samples).
            wanted = max(8, -(-MAX_RECORDED_ITERATIONS // max(1, iterations)))
            loop_samples = set(np.unique(np.linspace(
                0, len(samples) - 1, min(wanted, len(samples))).round().astype(int)).tolist())
            loop_samples.add(0)
    for loop in loops:
        loop.widen_read_only(0, ranges)
    for key, low in ranges.low.items():
        subgraph_index, tensor_index = key
        tensor = model.subgraphs[subgraph_index].tensors[tensor_index]
        quantization = tensor.quantization or schema.QuantizationParametersT()
        quantization.min = [low]
        quantization.max = [ranges.high[key]]
        tensor.quantization = quantization
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def float_model_for_quantization(converter):
    """The float model that `converter` (set up for int8) would calibrate, uncalibrated.

    Runs the converter with its calibrator replaced by one that returns the model it
    is given (the converter's int8 conversion settings and intermediate tensors apply;
    nothing is run).
    """
    from tensorflow.lite.python import lite

    original = lite._calibrator.Calibrator

    class _Capture:
        def __init__(self, model_content, *args, **kwargs):
            self.model_content = model_content

        def calibrate(self, dataset_gen):
            return self.model_content

    lite._calibrator.Calibrator = _Capture
    try:
        converter._experimental_calibrate_only = True
        return converter.convert()
    finally:
        lite._calibrator.Calibrator = original
        converter._experimental_calibrate_only = False


# Per-channel int8 weights store a scale and a 64-bit zero point per output channel and
# per use of the weights in each subgraph (12 bytes each: 9 KB for the two GRU(64)
# layers of the reference model, a seventh of its int8 file). They pay off when the
# output channels' ranges differ: a channel whose largest |weight| is `r` times below
# the tensor's largest loses log2(r) bits of its 8 under a per-tensor scale.
PER_CHANNEL_SPREAD = 3.0


def dense_channel_spread(model):
    """The largest spread of per-output-channel ranges among the model's matmul weights.

    For each GRU/LSTM/SimpleRNN kernel and recurrent kernel and each Dense kernel: the
    largest |weight| of each output column, max over median. 1.0 when there are none.
    """
    spread = 1.0
    for variable in model.weights:
        if len(variable.shape) != 2 or not variable.path.endswith("kernel"):
            continue  # 2-D kernels: Dense and recurrent (a Conv1D kernel is 3-D)
        columns = np.max(np.abs(np.asarray(variable)), axis=0)
        median = float(np.median(columns))
        if median > 0:
            spread = max(spread, float(columns.max()) / median)
    return spread


# Layers whose ops stay float in an int8 file (`quantize_int8(keep_float=...)`): a window
# normalization divides each window by its own spread, which for nearly flat windows is
# far below the input's int8 step (public Covid3Month_disc: 84% of the training windows'
# std under the step), so quantizing its input first erases them (test accuracy 0.59 in
# Keras, 0.49 as int8); normalized in float and quantized after, 0.57. The inverse layer
# puts each window's level back on a forecast, at float precision.
# Matched by class name through the class hierarchy, so a subclass counts too (the
# unrolled form's `export.recipes.UnrolledWindowNormalization`).
FLOAT_LAYERS = ("WindowNormalization", "WindowDenormalization")


# The first convolution over the raw input stays float too when it reads at most this
# many channels: its int8 input is the raw series at 8 bits, and on public UCR data that
# first layer caused most of a GRU-FCN's int8 error (ArrowHead: largest probability
# change 0.30 -> 0.05 with it in float, OSULeaf 0.76 -> 0.06; OSULeaf's accuracy change
# -0.8 -> 0 points). It costs little: one input channel, 128 filters of width 8 is a
# fraction of a percent of the GRU-FCN's multiply-adds and 4 KiB of float weights. Its
# output is float too (4 bytes a value until the next QUANTIZE): more activation memory
# (GunPoint's quarter-width GRU-FCN: 25 instead of 16 KiB), which `int8_float_layers=[]`
# avoids.
FLOAT_CONV_MAX_CHANNELS = 16


# A SOFTMAX over more values than this stays float in an int8 file (with the default
# `int8_float_layers="auto"`) when a MUL by a constant follows it, and so does that MUL
# (`_long_softmax_nodes`; without the MUL only from `metadata.TFLM_SOFTMAX_LIMIT`). An int8
# softmax writes its output in steps of 1/256, and the quantizer gives that fixed scale
# to a float softmax's output too (docs/tflite-facts.md, F23). So an attention that
# spreads its weight over more than 128 time steps holds each weight in fewer than two
# steps, and over more than 256 rounds every weight to 0 or 1/256.
# `zoo.layers.AttentionPooling` and `MultiHeadAttentionPooling` scale their weights by T
# from the same length (`SCALED_WEIGHTS_ABOVE`), and the scaled weights, written by the
# float MUL, are quantized in their calibrated range. Untrained cnn_gru_attention, max error vs Keras:
# 0.0098 -> 0.0023 at T=200, 0.075 -> 0.0025 at T=1000 (no change at T=50 and 100). And
# TFLite Micro's int8 softmax aborts once the
# exponentials sum to 512 (F22): an int8 attention over 512 alike steps does not run
# there at all, a float one does. The float ops cost 2 x T floats of activation memory
# and a few microseconds.
INT8_SOFTMAX_MAX_VALUES = 128


def float_layer_names(model, first_conv=True):
    """Names of the layers of `model` that an int8 file keeps in float by default:
    `FLOAT_LAYERS`, and with `first_conv` the first `Conv1D` when it reads at most
    `FLOAT_CONV_MAX_CHANNELS` channels."""
    names = [layer.name for layer in model.layers
             if any(cls.__name__ in FLOAT_LAYERS for cls in type(layer).__mro__)]
    if first_conv:
        for layer in model.layers:
            if type(layer).__name__ == "Conv1D":
                if int(layer.input.shape[-1]) <= FLOAT_CONV_MAX_CHANNELS:
                    names.append(layer.name)
                break
    return names


def _long_softmax_nodes(content, limit):
    """`{output tensor name: (op name, values)}` of the float model's `SOFTMAX` ops to keep
    float, and of the `MUL` by a constant that reads one.

    A softmax over more than `limit` values (its input's last axis) stays float when a
    MUL by a constant scales its output (`zoo.layers.AttentionPooling` multiplies its
    weights by T): that MUL stays float too, and its output is quantized in its
    calibrated range, where the softmax's own is fixed at steps of 1/256 (F23). Without
    such a MUL, keeping the softmax float gains no precision (its output is requantized
    at 1/256) and costs 4 bytes a value, so it stays float only from
    `metadata.TFLM_SOFTMAX_LIMIT` values, where TFLite Micro's int8 softmax may abort
    (F22): Keras's own multi-head attention (the zoo's self-attention), which does not
    scale its weights; `zoo.layers.MultiHeadAttentionPooling`'s attention does.
    """
    from export.metadata import TFLM_SOFTMAX_LIMIT, softmax_ops

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))

    def name_of(subgraph, index):
        name = subgraph.tensors[index].name
        return name.decode() if isinstance(name, bytes) else name

    found = {}
    for subgraph, operator, values in softmax_ops(model):
        if values <= limit:
            continue
        scalings = [other for other in subgraph.operators
                    if operator.outputs[0] in other.inputs
                    and flatbuffer_utils.opcode_to_name(model, other.opcodeIndex) == "MUL"
                    and any(model.buffers[subgraph.tensors[i].buffer].data is not None
                            for i in other.inputs)]
        if not scalings and values < TFLM_SOFTMAX_LIMIT:
            continue
        found[name_of(subgraph, operator.outputs[0])] = ("SOFTMAX", values)
        for scaling in scalings:
            found[name_of(subgraph, scaling.outputs[0])] = ("MUL", values)
    return found


def _nodes_of_layers(content, names, output_layers=None):
    """`{layer name: names of the tensors its ops write}` for the named Keras layers, in
    every subgraph of `content` (the converter names a tensor after its op's TensorFlow
    name scopes, `<model>/<layer>_1/<op>`).

    An op that writes a model output is named after the signature instead
    (`StatefulPartitionedCall:0`): `output_layers`, `{signature output name: layer}`
    (`output_layer_names`), says which layer computed each output.
    """
    patterns = {name: re.compile(rf"(^|/){re.escape(name)}(_\d+)?/") for name in names}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))

    def text(name):
        return name.decode() if isinstance(name, bytes) else name

    output_layer = {}  # (subgraph, tensor index) -> layer
    for signature in model.signatureDefs or []:
        for item in signature.outputs or []:
            layer = (output_layers or {}).get(text(item.name))
            if layer is not None:
                output_layer[(signature.subgraphIndex, item.tensorIndex)] = layer
    nodes = {name: set() for name in names}
    for number, subgraph in enumerate(model.subgraphs):
        for operator in subgraph.operators or []:
            for index in operator.outputs:
                tensor = text(subgraph.tensors[index].name)
                for name, pattern in patterns.items():
                    if pattern.search(tensor) or output_layer.get((number, index)) == name:
                        nodes[name].add(tensor)
    return {name: sorted(found) for name, found in nodes.items()}


def output_layer_names(model):
    """`{signature output name: name of the layer that computes it}` of a recipe model,
    as `export.converter.save_for_conversion` names the outputs (one output: `output`).
    Empty when the model's outputs are not a tensor or a dict of tensors."""
    outputs = model.output if isinstance(model.output, dict) else {"output": model.output}
    try:
        return {key: tensor._keras_history.operation.name for key, tensor in outputs.items()}
    except AttributeError:
        return {}


def quantize_int8(converter, samples, *, io_dtype, per_channel_dense=True, keep_float=(),
                  notes=None, output_layers=None, float_softmax_over=None):
    """Full-integer int8 file of a converter's model, loops included.

    Args:
        converter: a `tf.lite.TFLiteConverter` set up for int8 (optimizations,
            representative dataset, `TFLITE_BUILTINS_INT8`).
        samples: list of `{input name: array}` calibration samples.
        io_dtype: `tf.float32` or `tf.int8`, the file's input and output type.
        per_channel_dense: bool, per-channel scales for fully connected weights
            (convolutions are always per-channel).
        keep_float: names of Keras layers whose ops stay float (`float_layer_names`):
            the MLIR quantizer's node denylist, with a QUANTIZE/DEQUANTIZE at the border.
        notes: optional list; a line saying which ops stayed float is appended.
        output_layers: `output_layer_names(model)`, which layer computes each output.
        float_softmax_over: int or None: `SOFTMAX` ops over more values than this stay
            float (`INT8_SOFTMAX_MAX_VALUES`).

    Returns:
        bytes of the quantized model.
    """
    from tensorflow.lite.python import convert

    float_content = float_model_for_quantization(converter)
    found = _nodes_of_layers(float_content, keep_float, output_layers) if keep_float else {}
    nodes = sorted({node for names in found.values() for node in names})
    empty = [name for name in keep_float if not found.get(name)]
    softmaxes = (_long_softmax_nodes(float_content, float_softmax_over)
                 if float_softmax_over else {})
    if softmaxes and notes is not None:
        lengths = sorted({values for op, values in softmaxes.values() if op == "SOFTMAX"})
        notes.append(f"int8: SOFTMAX over {', '.join(map(str, lengths))} values kept float "
                     "(an int8 softmax writes steps of 1/256, too coarse for weights spread "
                     f"over more than {float_softmax_over} values, and TFLite Micro's aborts "
                     "from 512 alike values; `int8_float_layers=[]` quantizes it anyway)")
    from export.chunked import ONLINE_SOFTMAX_SCOPE

    online = found.get(ONLINE_SOFTMAX_SCOPE, [])
    if online and notes is not None:
        notes.append(f"int8: the attention pooling computed in the loop keeps its online "
                     f"softmax float ({len(online)} ops: score vector, running max, "
                     "exponentials, running sums); its hidden score layer is int8")
    layer_nodes = {node for name, names in found.items() if name != ONLINE_SOFTMAX_SCOPE
                   for node in names}
    if layer_nodes and notes is not None:
        kept = [name for name in keep_float
                if name not in empty and name != ONLINE_SOFTMAX_SCOPE]
        notes.append(f"int8: {len(layer_nodes)} ops of {', '.join(kept)} listed to stay "
                     "float (`int8_float_layers`; ops that only move data, such as SPLIT, "
                     "stay int8)")
    if notes is not None and empty:
        notes.append(f"int8: no op named after {', '.join(empty)} in the file (a layer "
                     "without computation such as Dropout, or one computed inside "
                     "another, such as the later GRU layers of a chunked chain, which "
                     "run under the first one's name); nothing of it stays float")
    nodes = sorted(set(nodes) | set(softmaxes))
    calibrated = calibrate(float_content, samples)
    quantized = convert.mlir_quantize(calibrated, input_data_type=io_dtype,
                                      output_data_type=io_dtype,
                                      denylisted_nodes=nodes or None,
                                      disable_per_channel_for_dense_layers=not per_channel_dense)
    # The quantizer leaves loop variables float: carry them in int8 (export.integer_loops).
    quantized = integer_loop_variables(quantized)[0]
    left = float_ops(quantized) if not keep_float else []
    for op, _ in softmaxes.values():
        # Expected float: the softmax, the DEQUANTIZE before it and the QUANTIZE after
        # it (or after the MUL that scales its output).
        for name in ("SOFTMAX", "DEQUANTIZE", "QUANTIZE") if op == "SOFTMAX" else ("MUL",):
            if name in left:
                left.remove(name)
    if left and notes is not None:
        counts = {name: left.count(name) for name in sorted(set(left))}
        notes.append("int8: not fully integer: "
                     + ", ".join(f"{n} {name}" for name, n in counts.items())
                     + " read or write float tensors (the quantizer left them float)")
    return quantized

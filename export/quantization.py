"""16x8 quantization that stays correct when a bias is shared by several ops.

Why unrolled int16x8 files failed verification without this module. In an unrolled
recurrent layer every time step runs its own `FULLY_CONNECTED` for the recurrent matmul
`h_{t-1} @ U + b`, and the converter folds the recurrent kernel `U` and bias `b` into
ONE constant tensor each, shared by all those ops. The step inputs `h_{t-1}` are
calibrated one by one, so each op gets its own input scale. TFLite's quantizer for
16-bit activations (the "legacy" quantizer, which the converter still uses for
`int16x8`; int8 goes through the MLIR quantizer, which duplicates shared constants)
quantizes the shared int64 bias ONCE, with `input_scale * weight_scale` of the first
op (`QuantizeBiases` in tensorflow/lite/tools/optimize/quantize_model.cc skips a bias
that is already quantized; it makes per-op copies only in some graphs, e.g. when the
constant also feeds another op). The kernels add the stored integers as they are, so
every other step adds its bias scaled by `its input scale / the first op's input
scale` (measured on Keras's unrolled GRU of the trained ItalyPowerDemand model:
factors up to 3.6x). The error builds up over the steps: max 0.99 on softmax outputs,
test accuracy 0.969 -> 0.849. The unrolled recipe's own GRU graph
(`export.recipes.HoistedGRU`) happens to get per-op copies; LSTM and SimpleRNN layers
(Keras's unrolled graph) do not.

The fix, in the order `quantize_int16x8` applies it:

1. `unify_shared_bias_ranges`: calibrate only (`_experimental_calibrate_only`), give
   every input of ops that share a bias the union of their calibrated ranges, then
   quantize the calibrated model (`calibrator.Calibrator`, the quantizer the
   converter itself calls, fed no new samples so it keeps the edited ranges). The
   shared bias is then right for every op, and the file does not grow. With 16-bit
   activations the wider range costs nothing measurable (h is in [-1, 1]).
2. `requantize_shared_biases` (a check and a repair on the final file, public
   flatbuffer API only): any op whose bias scale still differs from
   `input_scale * weight_scale` gets its own copy of the bias, requantized for its
   own scale. It is what runs when step 1 is unavailable (the two private converter
   hooks are gone in another TensorFlow version); it makes the file larger (one bias
   and its per-channel parameters per op).

One more edit of the calibrated ranges, with step 1 (`widen_zero_ranges`): a tensor that
was 0 on every calibration sample gets a usable range, because LiteRT aborts the process
on an int16 `ADD` or `SUB` whose output scale is the near-zero one the calibrator gives it
(docs/tflite-facts.md F27). Without the private hooks that edit is not made, and such a
file is reported as a crashed conversion (the child process dies, not the caller).
"""

import copy

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

# Op name -> (index of the data input, index of the weights, index of the bias).
BIAS_OPS = {
    "FULLY_CONNECTED": (0, 1, 2),
    "CONV_2D": (0, 1, 2),
    "DEPTHWISE_CONV_2D": (0, 1, 2),
    "TRANSPOSE_CONV": (2, 1, 3),
}
# The calibrator records a tensor that was always 0 as [0, FLT_MIN].
ZERO_RANGE = 1e-30
_INT_TYPES = {schema.TensorType.INT32: np.int32, schema.TensorType.INT64: np.int64}


def _bias_ops(model, subgraph):
    """`(operator, (data, weights, bias) tensor indices)` of the ops that have a bias."""
    for operator in subgraph.operators or []:
        name = flatbuffer_utils.opcode_to_name(model, operator.opcodeIndex)
        if name not in BIAS_OPS or operator.inputs is None:
            continue
        positions = BIAS_OPS[name]
        if len(operator.inputs) <= max(positions):
            continue
        indices = tuple(int(operator.inputs[p]) for p in positions)
        if min(indices) < 0:
            continue
        yield operator, positions, indices


def _has_data(model, tensor):
    data = model.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def unify_shared_bias_ranges(calibrated):
    """Gives the inputs of ops that share a constant bias one common calibrated range.

    Args:
        calibrated: bytes of a float model with calibration min/max on its tensors
            (what the converter returns with `_experimental_calibrate_only`).

    Returns:
        `(bytes, info)`; `info` = `{"shared_biases": groups of ops sharing a bias,
        "ops": ops in them, "inputs_widened": inputs whose range changed}`.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    info = {"shared_biases": 0, "ops": 0, "inputs_widened": 0}
    for subgraph in model.subgraphs:
        users = {}
        for _, _, (data, weights, bias) in _bias_ops(model, subgraph):
            if not _has_data(model, subgraph.tensors[bias]):
                continue
            users.setdefault(bias, []).append(data)
        # Union-find over data tensors linked by a shared bias (a tensor feeding two
        # groups joins them).
        parent = {}

        def find(index):
            parent.setdefault(index, index)
            while parent[index] != index:
                parent[index] = parent[parent[index]]
                index = parent[index]
            return index

        for data_tensors in users.values():
            distinct = sorted(set(data_tensors))
            if len(distinct) < 2:
                continue
            info["shared_biases"] += 1
            info["ops"] += len(data_tensors)
            for other in distinct[1:]:
                parent[find(other)] = find(distinct[0])
        groups = {}
        for index in parent:
            groups.setdefault(find(index), []).append(index)
        for members in groups.values():
            ranges = []
            for index in members:
                quantization = subgraph.tensors[index].quantization
                if (quantization is not None and quantization.min is not None
                        and quantization.max is not None and len(quantization.min) == 1):
                    ranges.append((float(quantization.min[0]), float(quantization.max[0])))
            if len(ranges) < 2:
                continue
            low = min(r[0] for r in ranges)
            high = max(r[1] for r in ranges)
            for index in members:
                quantization = subgraph.tensors[index].quantization
                if quantization is None or quantization.min is None or len(quantization.min) != 1:
                    continue
                if (float(quantization.min[0]), float(quantization.max[0])) != (low, high):
                    info["inputs_widened"] += 1
                quantization.min = [low]
                quantization.max = [high]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), info


def requantize_shared_biases(quantized, rtol=1e-5):
    """Gives every op whose bias scale is not `input_scale * weight_scale` its own bias.

    The kernels never read the bias scale: they add the stored integers to an
    accumulator in units of `input_scale * weight_scale`. A bias quantized for another
    op's input scale is therefore silently wrong. Each such op gets a copy of the bias
    requantized for its own scale (the real values are recovered from the stored
    integers and scale; their rounding error is below one unit of the old scale).

    Returns:
        `(bytes, info)`; `info` = `{"biases_requantized": ops given their own bias,
        "max_scale_ratio": the largest stored/expected scale ratio found}`.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(quantized))
    info = {"biases_requantized": 0, "max_scale_ratio": 1.0}
    changed = False
    for subgraph in model.subgraphs:
        for operator, positions, (data, weights, bias) in list(_bias_ops(model, subgraph)):
            tensor = subgraph.tensors[bias]
            if tensor.type not in _INT_TYPES or not _has_data(model, tensor):
                continue
            data_q = subgraph.tensors[data].quantization
            weights_q = subgraph.tensors[weights].quantization
            bias_q = tensor.quantization
            if any(q is None or q.scale is None or len(q.scale) == 0
                   for q in (data_q, weights_q, bias_q)):
                continue
            stored = np.asarray(bias_q.scale, np.float64)
            weight_scales = np.asarray(weights_q.scale, np.float64)
            if weight_scales.size not in (1, stored.size):
                continue
            expected = np.broadcast_to(float(data_q.scale[0]) * weight_scales, stored.shape)
            if np.allclose(stored, expected, rtol=rtol, atol=0.0):
                continue
            dtype = _INT_TYPES[tensor.type]
            raw = np.asarray(model.buffers[tensor.buffer].data, np.uint8).tobytes()
            values = np.frombuffer(raw, dtype=dtype).astype(np.float64)
            if stored.size not in (1, values.size):
                continue
            real = values * np.broadcast_to(stored, values.shape)
            limits = np.iinfo(dtype)
            requantized = np.clip(np.round(real / np.broadcast_to(expected, values.shape)),
                                  limits.min, limits.max).astype(dtype)
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(requantized.tobytes(), dtype=np.uint8)
            model.buffers.append(buffer)
            copied = copy.deepcopy(tensor)
            copied.buffer = len(model.buffers) - 1
            copied.quantization.scale = [float(s) for s in expected.astype(np.float32)]
            subgraph.tensors.append(copied)
            inputs = list(operator.inputs)
            inputs[positions[2]] = len(subgraph.tensors) - 1
            operator.inputs = inputs
            info["biases_requantized"] += 1
            info["max_scale_ratio"] = max(info["max_scale_ratio"],
                                          float(np.max(np.maximum(stored / expected,
                                                                  expected / stored))))
            changed = True
    if not changed:
        return bytes(quantized), info
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), info


def widen_zero_ranges(calibrated):
    """Gives tensors calibrated at exactly 0 a usable range (docs/tflite-facts.md F27).

    A tensor that was 0 on every calibration sample (an untrained layer's zero biases
    on a zero input, for instance) is calibrated as [0, FLT_MIN] and quantized with a
    scale near `FLT_MIN / 32767`.
    LiteRT's int16 `ADD`/`SUB` divide scales when they prepare, and abort the whole
    process (a failed check in `QuantizeMultiplierSmallerThanOneExp`, not an error
    status) when that quotient reaches 1. Any scale stores 0 exactly, so such a tensor
    takes the widest range of the tensors it shares an op with (inputs and outputs),
    or [-1, 1] when they are all 0 too.

    Args:
        calibrated: bytes of a float model with calibration min/max on its tensors.

    Returns:
        `(bytes, count)`: the edited model and how many tensors were widened.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    count = 0
    for subgraph in model.subgraphs:
        bounds = {}  # calibrated activations only: `max(|min|, |max|)`
        for index, tensor in enumerate(subgraph.tensors):
            quantization = tensor.quantization
            if (quantization is not None and quantization.min is not None
                    and quantization.max is not None and len(quantization.min) == 1
                    and not _has_data(model, tensor)):
                bounds[index] = max(abs(float(quantization.min[0])),
                                    abs(float(quantization.max[0])))
        neighbours = {}
        for operator in subgraph.operators or []:
            linked = [int(i) for part in (operator.inputs, operator.outputs)
                      if part is not None for i in part if i >= 0]
            for index in linked:
                neighbours.setdefault(index, set()).update(linked)
        for index, linked in neighbours.items():
            if bounds.get(index, ZERO_RANGE + 1) > ZERO_RANGE:
                continue
            widest = max((bounds[i] for i in linked if bounds.get(i, 0) > ZERO_RANGE),
                         default=1.0)
            quantization = subgraph.tensors[index].quantization
            quantization.min, quantization.max = [-widest], [widest]
            count += 1
    if not count:
        return bytes(calibrated), 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), count


def quantize_int16x8(converter, *, io_dtype, allow_float):
    """Runs a configured 16x8 `TFLiteConverter` with shared-bias ranges unified.

    Args:
        converter: a `tf.lite.TFLiteConverter` set up for 16x8 (optimizations,
            representative dataset, supported ops); its io types are not used.
        io_dtype: `tf.float32` or `tf.int16`, the file's input and output type.
        allow_float: whether float ops may remain (the converter's own rule: Select TF
            ops allowed).

    Returns:
        `(bytes, notes)`, `notes` a list of strings saying what was changed.
    """
    import tensorflow as tf

    notes = []
    content = None
    try:
        from tensorflow.lite.python.optimize import calibrator as tf_calibrator

        if not hasattr(converter, "_experimental_calibrate_only"):
            raise AttributeError("TFLiteConverter has no _experimental_calibrate_only")
        converter._experimental_calibrate_only = True
        calibrated = converter.convert()
        calibrated, info = unify_shared_bias_ranges(calibrated)
        calibrated, zeros = widen_zero_ranges(calibrated)
        content = tf_calibrator.Calibrator(calibrated).calibrate_and_quantize(
            lambda: iter(()),  # no new samples: keep the (edited) calibrated ranges
            io_dtype,
            io_dtype,
            allow_float,
            activations_type=tf.int16,
            bias_type=tf.int64,
        )
        if info["shared_biases"]:
            notes.append(
                f"int16x8: {info['shared_biases']} bias tensor(s) shared by "
                f"{info['ops']} ops (unrolled time steps); their inputs were given one "
                f"common calibrated range ({info['inputs_widened']} widened): TFLite's "
                "16x8 quantizer may store a shared bias with one op's scale"
            )
        if zeros:
            notes.append(
                f"int16x8: {zeros} tensor(s) were 0 on every calibration sample; each was "
                "given the range of the tensors it shares an op with (a zero range makes "
                "LiteRT abort when it prepares an int16 ADD or SUB)")
    except Exception as error:  # noqa: BLE001 (private hooks: the plain path + repair below)
        notes.append(f"int16x8: calibrate-then-quantize path unavailable "
                     f"({type(error).__name__}: {str(error)[:200]}); converted in one call "
                     "and repaired shared biases afterwards")
        converter._experimental_calibrate_only = False
        if io_dtype != tf.float32:
            converter.inference_input_type = io_dtype
            converter.inference_output_type = io_dtype
        content = converter.convert()
    content, info = requantize_shared_biases(content)
    if info["biases_requantized"]:
        notes.append(
            f"int16x8: {info['biases_requantized']} op(s) had a bias quantized for another "
            f"op's input scale (up to {info['max_scale_ratio']:.2f}x off); each was given "
            "its own requantized copy of the bias"
        )
    return content, notes

"""int8 loop variables: a quantized `WHILE` loop that carries int8 tensors, not float ones.

TFLite's MLIR quantizer quantizes every op inside a loop body but leaves the `WHILE`
op's operands in float: each float loop variable enters the body through a
`QUANTIZE`, leaves it through a `DEQUANTIZE`, and gets a `DEQUANTIZE` before the loop
and a `QUANTIZE` after it (docs/tflite-facts.md, F21). In an int8 chunked file that
costs, at every iteration:

- a float-to-int8 conversion of every carried tensor, the whole input sequence
  included (its `T x features` values at every iteration: quadratic in T), and a
  float output buffer (`return_sequences`) converted both ways;
- copies of float tensors, 4 bytes a value: the `WHILE` kernel copies every loop
  variable that the body changed (the states, the output buffer) from the body's
  outputs to its inputs at every iteration;
- and the file is not integer-only: a device without floating point would have to
  emulate those conversions.

`integer_loop_variables` rewrites such a file so that the loop carries int8 tensors:
each float loop variable that the body only converts takes the int8 type, in the scale
of the int8 value it held (what the body's `DEQUANTIZE` of it read), so that each
reader still rounds it once. The conversions around it become int8-to-int8 `QUANTIZE`
ops (a rescale; integer arithmetic), and those whose two scales are equal are removed.
A variable that the body only reads, in one scale (the input sequence), is carried in
that scale instead: its rescale runs once, before the loop, not at every iteration.
Loop variables that a float op reads inside the body (a layer kept float) stay float.
The quantizer also leaves float the ops that only move a loop's outputs (the `RESHAPE`
of an output buffer, the `CONCATENATION` of a last state with another branch); they
become int8 too, so that a file quantized with no float layers holds no float op.
Tensors left unused are dropped, so the file is no larger than the quantizer's.

Written by hand: neither the converter nor the quantizer has an option for it.
"""

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

_OP = schema.BuiltinOperator
_INT8, _FLOAT32 = schema.TensorType.INT8, schema.TensorType.FLOAT32


def _code(model, operator):
    code = model.operatorCodes[operator.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _opcode_index(model, builtin):
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _consumers(subgraph, tensor):
    return [op for op in subgraph.operators or [] if tensor in list(op.inputs)]


def _producer(subgraph, tensor):
    for op in subgraph.operators or []:
        if tensor in list(op.outputs):
            return op
    return None


def _int8_quantization(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None  # per-tensor scales only (activations always are)
    return float(q.scale[0]), int(q.zeroPoint[0])


def _set_int8(tensor, quantization):
    scale, zero_point = quantization
    q = schema.QuantizationParametersT()
    q.scale = [scale]
    q.zeroPoint = [zero_point]
    tensor.type = _INT8
    tensor.quantization = q


def _is(model, operator, builtin, subgraph, input_type, output_type):
    return (operator is not None and _code(model, operator) == builtin
            and subgraph.tensors[operator.inputs[0]].type == input_type
            and subgraph.tensors[operator.outputs[0]].type == output_type)


def _plan_variable(model, main, loop, body, cond, position, read_only_in_reader_scale=True):
    """The int8 quantization that loop variable `position` can be carried in, or None.

    The body decides: it must read the variable only through QUANTIZE ops, if at all,
    and write it through a DEQUANTIZE that nothing else reads (or pass it on
    unchanged). Around the loop anything goes (conversions are added there, once per
    call). `read_only_in_reader_scale`: see `integer_loop_variables`.
    """
    outer_in = loop.inputs[position]
    body_in, body_out = body.inputs[position], body.outputs[position]
    if main.tensors[outer_in].type != _FLOAT32 or _consumers(cond, cond.inputs[position]):
        return None
    readers = _consumers(body, body_in)
    if not all(_is(model, op, _OP.QUANTIZE, body, _FLOAT32, _INT8) for op in readers):
        return None
    # Carried in the scale of the int8 value that the float variable holds, so that
    # every reader rescales it once, as it quantized it once from float before: the
    # body's written value (its DEQUANTIZE's input), or for a value passed on unchanged,
    # the value entering the loop. A reader's own scale would round it twice (into the
    # carried scale, then into the reader's), which cost a tiny forecaster up to 0.14 of
    # its output where the float-carried file lost 0.012.
    if body_out != body_in:
        writer = _producer(body, body_out)
        if (not _is(model, writer, _OP.DEQUANTIZE, body, _INT8, _FLOAT32)
                or _consumers(body, body_out) or body_out in list(body.inputs)):
            return None
        return _int8_quantization(body.tensors[writer.inputs[0]])
    # A value the body only reads (the input sequence of a chunked loop), read in one
    # scale and unused after the loop: carried in its readers' scale, so that it is
    # rescaled once before the loop instead of at every iteration (its T x features
    # values each time, quadratic in T). The same rounding, in the same op, earlier.
    scales = {_int8_quantization(body.tensors[op.outputs[0]]) for op in readers}
    outer_out = loop.outputs[position]
    if (read_only_in_reader_scale and len(scales) == 1 and None not in scales
            and not _consumers(main, outer_out) and outer_out not in list(main.outputs)):
        return scales.pop()
    producer = _producer(main, outer_in)
    if _is(model, producer, _OP.DEQUANTIZE, main, _INT8, _FLOAT32):
        return _int8_quantization(main.tensors[producer.inputs[0]])
    if readers:
        return _int8_quantization(body.tensors[readers[0].outputs[0]])
    return None


def _constant(model, tensor):
    """The float32 values of a constant tensor, or None."""
    data = model.buffers[tensor.buffer].data
    if tensor.type != _FLOAT32 or data is None or len(data) == 0:
        return None
    return np.frombuffer(bytes(bytearray(data)), dtype=np.float32)


def _new_tensor(subgraph, like, suffix, quantization=None, buffer=0):
    tensor = schema.TensorT()
    tensor.shape = list(like.shape)
    tensor.name = (like.name or b"") + suffix
    tensor.buffer = buffer
    if quantization is None:
        tensor.type = _FLOAT32
    else:
        _set_int8(tensor, quantization)
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _new_op(opcode, inputs, outputs):
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = list(inputs)
    op.outputs = list(outputs)
    return op


def _carry_in_int8(model, main, loop, body, cond, position, quantization, opcodes):
    outer_in, outer_out = loop.inputs[position], loop.outputs[position]
    body_in, body_out = body.inputs[position], body.outputs[position]
    producer = _producer(main, outer_in)
    dequantized = _is(model, producer, _OP.DEQUANTIZE, main, _INT8, _FLOAT32)
    values = _constant(model, main.tensors[outer_in])
    inputs = list(loop.inputs)
    if values is not None:
        # A constant (an initial state; one tensor may serve several loop variables,
        # each with its own scale): an int8 copy for this one.
        scale, zero_point = quantization
        buffer = schema.BufferT()
        buffer.data = np.clip(np.round(values / scale) + zero_point, -128, 127).astype(
            np.int8).tobytes()
        model.buffers.append(buffer)
        inputs[position] = _new_tensor(main, main.tensors[outer_in], b"_int8", quantization,
                                       len(model.buffers) - 1)
    elif (dequantized and len(_consumers(main, outer_in)) == 1 and inputs.count(outer_in) == 1
          and outer_in not in list(main.outputs)):
        # DEQUANTIZE before the loop -> an int8 rescale into the carried scale.
        producer.opcodeIndex = opcodes[_OP.QUANTIZE]
        _set_int8(main.tensors[outer_in], quantization)
    else:  # converted once, before the loop (from the int8 value it was made of)
        source = producer.inputs[0] if dequantized else outer_in
        converted = _new_tensor(main, main.tensors[outer_in], b"_int8", quantization)
        main.operators.insert(main.operators.index(loop),
                              _new_op(opcodes[_OP.QUANTIZE], [source], [converted]))
        inputs[position] = converted
    loop.inputs = inputs
    # After the loop: QUANTIZE ops that read it become rescales; other readers (float
    # ops, the model's outputs) read a DEQUANTIZE of it.
    _int8_output(model, main, loop, quantization, opcodes, output=outer_out)
    _set_int8(body.tensors[body_in], quantization)  # the QUANTIZE ops reading it rescale
    _set_int8(cond.tensors[cond.inputs[position]], quantization)
    if body_out != body_in:
        _producer(body, body_out).opcodeIndex = opcodes[_OP.QUANTIZE]
        _set_int8(body.tensors[body_out], quantization)


def _drop_identity_rescales(model, subgraph):
    """Removes int8-to-int8 QUANTIZE ops whose input and output scales are equal."""
    kept = []
    for op in subgraph.operators or []:
        if _is(model, op, _OP.QUANTIZE, subgraph, _INT8, _INT8):
            source, target = op.inputs[0], op.outputs[0]
            same = (_int8_quantization(subgraph.tensors[source])
                    == _int8_quantization(subgraph.tensors[target]))
            if same:
                for other in subgraph.operators:
                    if other is not op:
                        other.inputs = [source if i == target else i for i in other.inputs]
                subgraph.outputs = [source if i == target else i for i in subgraph.outputs]
                continue
        kept.append(op)
    subgraph.operators = kept


def _depth(model):
    """`{id(subgraph): how many loops enclose it}` (the main graph 0, a loop's body and
    condition one more than the graph holding the loop)."""
    depth = {id(model.subgraphs[0]): 0}
    pending = [model.subgraphs[0]]
    while pending:
        graph = pending.pop()
        for operator in graph.operators or []:
            if _code(model, operator) == _OP.WHILE:
                options = operator.builtinOptions
                for index in (options.bodySubgraphIndex, options.condSubgraphIndex):
                    inner = model.subgraphs[index]
                    if id(inner) not in depth:
                        depth[id(inner)] = depth[id(graph)] + 1
                        pending.append(inner)
    return depth


def integer_loop_variables(content, read_only_in_reader_scale=True):
    """`content` (an int8 `.tflite` file) with its float loop variables carried in int8.

    `read_only_in_reader_scale`: a variable that the body only reads, in one scale (a
    chunked loop's input sequence), is carried in that scale, rescaled once before the
    loop; `False` carries it in the scale it had before the loop, so the body rescales
    all of it at every iteration (the same outputs, bit for bit, more slowly).

    Returns:
        `(bytes, count)`: the rewritten file and how many loop variables became int8
        (0: the file is returned unchanged).
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    opcodes = None
    count = 0
    # Inner loops first: once an inner loop carries int8, the body around it reads and
    # writes its variables through conversions, which the outer loop can then carry in
    # int8 too.
    depth = _depth(model)
    for main in sorted(model.subgraphs, key=lambda graph: -depth.get(id(graph), 0)):
        for loop in list(main.operators or []):
            if _code(model, loop) != _OP.WHILE:
                continue
            options = loop.builtinOptions
            body = model.subgraphs[options.bodySubgraphIndex]
            cond = model.subgraphs[options.condSubgraphIndex]
            for position in range(len(loop.inputs)):
                quantization = _plan_variable(model, main, loop, body, cond, position,
                                              read_only_in_reader_scale)
                if quantization is None:
                    continue
                if opcodes is None:
                    opcodes = {code: _opcode_index(model, code)
                               for code in (_OP.QUANTIZE, _OP.DEQUANTIZE)}
                _carry_in_int8(model, main, loop, body, cond, position, quantization, opcodes)
                count += 1
    if not count:
        return content, 0
    for subgraph in model.subgraphs:
        while _integer_data_move(model, subgraph, opcodes):
            pass
        _drop_identity_rescales(model, subgraph)
        _drop_unread_conversions(model, subgraph)
    _drop_unused_tensors(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), count


def _drop_unused_tensors(model):
    """Removes the tensors that no op, subgraph input or output, or signature uses any
    more (what the rewrite replaced), and empties the constant buffers that no tensor
    reads (the float initial states): the file stays as small as the quantizer made it.
    Buffers keep their places, since the file's metadata points at some of them."""
    for number, subgraph in enumerate(model.subgraphs):
        used = set(subgraph.inputs) | set(subgraph.outputs)
        for op in subgraph.operators or []:
            used |= {i for i in list(op.inputs) + list(op.outputs) if i >= 0}
            if op.intermediates is not None:
                used |= {i for i in op.intermediates if i >= 0}
        signatures = [item for signature in model.signatureDefs or []
                      if signature.subgraphIndex == number
                      for item in list(signature.inputs or []) + list(signature.outputs or [])]
        used |= {item.tensorIndex for item in signatures}
        if len(used) == len(subgraph.tensors):
            continue
        new_index = {old: new for new, old in enumerate(sorted(used))}

        def remap(indices):
            return [new_index[i] if i >= 0 else i for i in indices]

        subgraph.tensors = [subgraph.tensors[i] for i in sorted(used)]
        subgraph.inputs, subgraph.outputs = remap(subgraph.inputs), remap(subgraph.outputs)
        for op in subgraph.operators or []:
            op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
            if op.intermediates is not None:
                op.intermediates = remap(op.intermediates)
        for item in signatures:
            item.tensorIndex = new_index[item.tensorIndex]
    read = {tensor.buffer for subgraph in model.subgraphs for tensor in subgraph.tensors}
    read |= {entry.buffer for entry in model.metadata or []}
    for index, buffer in enumerate(model.buffers):
        if index and index not in read and buffer.data is not None and len(buffer.data):
            buffer.data = None


# Ops that only move values: int8 with the scale of their input (one data input).
_SAME_SCALE = (_OP.RESHAPE, _OP.EXPAND_DIMS, _OP.SQUEEZE)


def _integer_data_move(model, subgraph, opcodes):
    """Turns one float op that only moves int8 values (each float input a DEQUANTIZE of
    an int8 tensor) into an int8 op with the same results. The quantizer leaves such ops
    float when they read a loop's output (a RESHAPE of its output buffer, a
    CONCATENATION of its last state with another branch). Returns whether an op was
    changed."""
    for op in subgraph.operators or []:
        code = _code(model, op)
        if code not in _SAME_SCALE + (_OP.CONCATENATION,):
            continue
        data = [0] if code in _SAME_SCALE else list(range(len(op.inputs)))
        target = subgraph.tensors[op.outputs[0]]
        if target.type != _FLOAT32:
            continue
        sources = []
        for position in data:
            producer = _producer(subgraph, op.inputs[position])
            if not _is(model, producer, _OP.DEQUANTIZE, subgraph, _INT8, _FLOAT32):
                break
            sources.append(producer.inputs[0])
        else:
            quantizations = [_int8_quantization(subgraph.tensors[i]) for i in sources]
            if None in quantizations:
                continue
            if code in _SAME_SCALE:
                quantization = quantizations[0]  # the same values, the same scale
            else:
                # A CONCATENATION: in the scale its readers quantize it to (each input
                # rescaled into it once, as each was quantized once from float before).
                # Read in float, or in several scales: it stays float.
                readers = _consumers(subgraph, op.outputs[0])
                scales = {_int8_quantization(subgraph.tensors[r.outputs[0]]) for r in readers}
                if (not readers or len(scales) != 1 or op.outputs[0] in list(subgraph.outputs)
                        or not all(_is(model, r, _OP.QUANTIZE, subgraph, _FLOAT32, _INT8)
                                   for r in readers)):
                    continue
                (quantization,) = scales
            inputs = list(op.inputs)
            for position, source in zip(data, sources):
                if _int8_quantization(subgraph.tensors[source]) != quantization:
                    rescaled = _new_tensor(subgraph, subgraph.tensors[source], b"_rescaled",
                                           quantization)
                    subgraph.operators.insert(subgraph.operators.index(op), _new_op(
                        opcodes[_OP.QUANTIZE], [source], [rescaled]))
                    source = rescaled
                inputs[position] = source
            op.inputs = inputs
            _int8_output(model, subgraph, op, quantization, opcodes)
            return True
    return False


def _int8_output(model, subgraph, op, quantization, opcodes, output=None):
    """Makes `op`'s output (the first, or `output`) int8: QUANTIZE ops reading it become
    rescales, float readers (and the graph's outputs) read a DEQUANTIZE of it."""
    output = op.outputs[0] if output is None else output
    float_readers = [reader for reader in _consumers(subgraph, output)
                     if not _is(model, reader, _OP.QUANTIZE, subgraph, _FLOAT32, _INT8)]
    if float_readers or output in list(subgraph.outputs):
        dequantized = _new_tensor(subgraph, subgraph.tensors[output], b"_float")
        for reader in float_readers:
            reader.inputs = [dequantized if i == output else i for i in reader.inputs]
        subgraph.outputs = [dequantized if i == output else i for i in subgraph.outputs]
        subgraph.operators.insert(subgraph.operators.index(op) + 1,
                                  _new_op(opcodes[_OP.DEQUANTIZE], [output], [dequantized]))
    _set_int8(subgraph.tensors[output], quantization)


def _drop_unread_conversions(model, subgraph):
    """Removes QUANTIZE/DEQUANTIZE ops whose output nothing reads."""
    while True:
        read = {i for op in subgraph.operators or [] for i in op.inputs}
        read |= set(subgraph.outputs)
        kept = [op for op in subgraph.operators or []
                if _code(model, op) not in (_OP.QUANTIZE, _OP.DEQUANTIZE)
                or op.outputs[0] in read]
        if len(kept) == len(subgraph.operators or []):
            return
        subgraph.operators = kept


def float_ops(content):
    """Names of the ops of an int8 file that read or write a float tensor other than the
    model's own float inputs and outputs (a file with float I/O converts them, or
    compares them, as a mask does, at its border)."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    found = []
    for number, subgraph in enumerate(model.subgraphs):
        border = set(subgraph.inputs) | set(subgraph.outputs) if number == 0 else set()
        for op in subgraph.operators or []:
            tensors = [i for i in list(op.inputs) + list(op.outputs) if i >= 0 and i not in border]
            if any(subgraph.tensors[i].type == _FLOAT32
                   and _constant(model, subgraph.tensors[i]) is None for i in tensors):
                found.append(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex))
    return found

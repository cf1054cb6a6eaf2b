"""gru-zoo metadata inside a `.tflite` file: written at export, read back with one call.

The metadata is a JSON document stored in a buffer of the flatbuffer and listed in the
model's `metadata` table under the name `"gru_zoo"` (the TFLite schema's own place for
extra data; `ai_edge_litert.tools.flatbuffer_utils` edits it without touching the
graph or the signatures). The `tflite-support` metadata writers need protobuf<4 and
cannot be installed beside TF 2.21 (docs/tflite-facts.md, F8d).
"""

import json
import math
import os
import struct

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from export.serialize import model_bytes
from zoo.checks import fail, is_bool, is_int, is_number, plain

METADATA_NAME = "gru_zoo"
# TFLite Micro's int8 SOFTMAX aborts once its exponentials sum to this (F22): a softmax
# over fewer values always runs there.
TFLM_SOFTMAX_LIMIT = 512


def _name(entry):
    name = entry.name
    return name.decode() if isinstance(name, bytes) else name


def _to_bytes(model_or_path):
    if isinstance(model_or_path, (bytes, bytearray)):
        return bytearray(model_or_path)
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise TypeError(f"`model_or_path` must be the path of a .tflite file or its bytes. "
                        f"Received: model_or_path={_short_repr(model_or_path)}")
    path = os.fspath(model_or_path)
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory, not a .tflite file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such .tflite file: {path!r}")
    with open(path, "rb") as handle:
        return bytearray(handle.read())


def _short_repr(value, limit=80):
    """`repr(value)` cut to `limit` characters: an error shows what it received, not a
    whole file's bytes."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} bytes)" if isinstance(value, (bytes, bytearray)) else ""
    return f"{text[:limit]}...{size}"


def source_name(model_or_path):
    """How errors name a model given as a path or as bytes."""
    if isinstance(model_or_path, (bytes, bytearray)):
        return f"the .tflite content ({len(model_or_path)} bytes)"
    return repr(os.fspath(model_or_path))


def check_tflite_bytes(content, name):
    """Raises a `ValueError` naming the file unless `content` starts like a `.tflite` file.

    A TFLite flatbuffer carries the file identifier `TFL3` in bytes 4-8; an empty,
    text or random file fails here, before any parser reads offsets out of it.
    """
    if not len(content):
        raise ValueError(f"{name} is empty: expected a .tflite file")
    if len(content) < 8 or bytes(content[4:8]) != b"TFL3":
        head = bytes(content[:8])
        raise ValueError(f"{name} is not a .tflite file: it lacks the TFLite file identifier "
                         f"'TFL3' in bytes 4-8 ({len(content)} bytes, starting {head!r})")


# What reading a damaged flatbuffer raises (struct.error: an offset past the end).
_DAMAGED = (IndexError, KeyError, OverflowError, TypeError, ValueError, struct.error)


def _tflite_bytes_arg(tflite_bytes):
    """`tflite_bytes` (bytes or bytearray) as a bytearray, or a `TypeError` naming it
    (its content is checked by `_read_model`)."""
    if not isinstance(tflite_bytes, (bytes, bytearray)):
        hint = (" (a path is not its bytes: read the file first, open(path, 'rb').read())"
                if isinstance(tflite_bytes, (str, os.PathLike)) else "")
        raise TypeError(f"`tflite_bytes` must be the content of a .tflite file (bytes or "
                        f"bytearray){hint}. Received: tflite_bytes={_short_repr(tflite_bytes)}")
    return bytearray(tflite_bytes)


def _read_model(content, name):
    """The flatbuffer model object of `content` (checked with `check_tflite_bytes`), or
    a `ValueError` naming `name` when the file is truncated or damaged."""
    check_tflite_bytes(content, name)
    try:
        return flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    except _DAMAGED as error:
        raise ValueError(f"{name} is a damaged .tflite file: it cannot be read "
                         f"({_damage(error)})") from None


def _damage(error):
    return ("an offset points past the end of the file: truncated or damaged"
            if isinstance(error, struct.error) else f"{type(error).__name__}: {error}")


def json_metadata(value, where, seen=()):
    """`value` as JSON-ready Python values (NumPy scalars as Python's, tuples as lists),
    or one error naming where in `metadata` the offending value is."""
    if value is None or isinstance(value, str):
        return value
    if is_bool(value):
        return bool(value)
    if is_number(value):
        if not math.isfinite(value):
            fail(where, value, "a finite number (JSON has no NaN or inf)")
        return plain(value)
    if isinstance(value, (dict, list, tuple)):
        if id(value) in seen:
            raise TypeError(f"`{where}` must be JSON-serializable, without cycles. Received: "
                            f"{where}=a dict or list that contains it")
        seen = (*seen, id(value))
        if isinstance(value, dict):
            result = {}
            for key, item in value.items():
                if is_int(key) and not is_bool(key):
                    key = str(int(key))  # as `json.dumps` stores it: JSON keys are strings
                if not isinstance(key, str):
                    raise TypeError(f"`{where}` must be a dict with str (or int) keys (JSON "
                                    f"object keys are strings). Received: the key {key!r} "
                                    f"({_kind(key)}) in {where}")
                if key in result:
                    raise ValueError(f"`{where}` must not hold a key twice once int keys "
                                     f"are written as str. Received: {key!r} twice in "
                                     f"{where}")
                result[key] = json_metadata(item, f"{where}[{key!r}]", seen)
            return result
        return [json_metadata(item, f"{where}[{index}]", seen)
                for index, item in enumerate(value)]
    hint = " (an array: pass array.tolist())" if hasattr(value, "tolist") else ""
    raise TypeError(f"`{where}` must be JSON-serializable: None, bool, a number, str, or a "
                    f"list or dict of them{hint}. Received: {where}={_short_repr(value)} "
                    f"({_kind(value)})")


def _kind(value):
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def add_metadata(tflite_bytes, metadata, strip_names=False):
    """Returns `tflite_bytes` with `metadata` (a JSON-serializable dict) embedded.

    An existing gru-zoo entry is replaced; other metadata (e.g. the converter's
    `min_runtime_version`) is kept. `strip_names`: also drop the names of intermediate
    tensors (`strip_tensor_names`) in the same pass, reading and writing the file once
    (each pass takes 30-70 ms for a 60-160 KB file).

    `metadata` holds str keys and None, bool, finite numbers (NumPy scalars are stored
    as Python's), str, lists (or tuples) and dicts of them; anything else raises
    naming where it is (`metadata['a'][0]`).
    """
    content = _tflite_bytes_arg(tflite_bytes)
    if not isinstance(metadata, dict):
        raise TypeError(f"`metadata` must be a dict. Received: metadata="
                        f"{_short_repr(metadata)}")
    metadata = json_metadata(metadata, "metadata")
    if not is_bool(strip_names):
        fail("strip_names", strip_names, "True or False", TypeError)
    model = _read_model(content, "`tflite_bytes`")
    if strip_names:
        _strip_names(model)
    payload = json.dumps(metadata, sort_keys=True, allow_nan=False).encode("utf-8")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buffer)
    entries = [entry for entry in (model.metadata or []) if _name(entry) != METADATA_NAME]
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    entries.append(entry)
    model.metadata = entries
    return model_bytes(model)


def strip_tensor_names(tflite_bytes):
    """Returns `tflite_bytes` without the names of intermediate tensors.

    Unrolled files hold one set of tensors per time step, and their long TensorFlow
    names are a large share of the file (about a third of a small int8 unrolled file).
    Input and output tensor names and the signatures are kept, so the file runs and
    reads exactly as before. (`flatbuffer_utils.strip_strings` would drop the
    signatures too.)
    """
    model = _read_model(_tflite_bytes_arg(tflite_bytes), "`tflite_bytes`")
    _strip_names(model)
    return model_bytes(model)


def _strip_names(model):
    for subgraph in model.subgraphs:
        keep = set(subgraph.inputs) | set(subgraph.outputs)
        for index, tensor in enumerate(subgraph.tensors):
            if index not in keep:
                tensor.name = None


def read_metadata(model_or_path):
    """Reads the gru-zoo metadata of a `.tflite` file (path or bytes).

    Returns:
        The metadata dict (labels, normalization, input shape and dtype, window length,
        recipe, quantization, states, variant config, gru-zoo version), or `None` when
        the file has none (e.g. it was not made by gru-zoo).
    """
    content = bytes(_to_bytes(model_or_path))  # first: it names a wrong type
    name = source_name(model_or_path)
    check_tflite_bytes(content, name)
    # The flatbuffer's lazy reader (not `flatbuffer_utils`' object API, which unpacks the
    # whole model): only the metadata table and one buffer are read, and a damaged
    # offset raises instead of being followed.
    try:
        model = schema.Model.GetRootAs(content, 0)
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() != METADATA_NAME.encode():
                continue
            buffer_index = entry.Buffer()
            if not 0 <= buffer_index < model.BuffersLength():
                raise ValueError(f"the metadata names buffer {buffer_index} of "
                                 f"{model.BuffersLength()}")
            buffer = model.Buffers(buffer_index)
            if buffer.Offset() > 1:  # stored after the flatbuffer (files over 2 GB)
                data = content[buffer.Offset(): buffer.Offset() + buffer.Size()]
                if len(data) != buffer.Size():
                    raise ValueError("the metadata buffer lies past the end of the file")
            else:
                data = buffer.DataAsNumpy()
                data = b"" if isinstance(data, int) else data.tobytes()
            metadata = json.loads(data.decode("utf-8"))
            if not isinstance(metadata, dict):
                raise ValueError(f"the gru-zoo metadata is a {type(metadata).__name__}, "
                                 "not a JSON object")
            return metadata
    except _DAMAGED as error:
        raise ValueError(f"{name} is a damaged .tflite file: its gru-zoo metadata cannot be "
                         f"read ({_damage(error)})") from None
    return None


def _read_file_model(model_or_path):
    """The flatbuffer model object of a `.tflite` file (path or bytes), or one error
    naming the file: a wrong type, a missing file, an empty, foreign or damaged one."""
    content = _to_bytes(model_or_path)
    return _read_model(content, source_name(model_or_path))


def op_report(model_or_path):
    """The operators of a `.tflite` file: `{"builtin": [...], "flex": [...], "custom": [...]}`.

    Flex ops (`"FlexXxx"`) are TensorFlow ops that need the Select TF ops delegate;
    custom ops need a kernel registered by the application. A file with either does
    not run on the standalone LiteRT interpreter or on a microcontroller.
    """
    model = _read_file_model(model_or_path)
    builtin, flex, custom = set(), set(), set()
    for subgraph in model.subgraphs:
        for operator in subgraph.operators or []:
            code = model.operatorCodes[operator.opcodeIndex]
            if code.customCode:
                name = code.customCode
                name = name.decode() if isinstance(name, bytes) else name
                (flex if name.startswith("Flex") else custom).add(name)
            else:
                builtin.add(flatbuffer_utils.opcode_to_name(model, operator.opcodeIndex))
    return {"builtin": sorted(builtin), "flex": sorted(flex), "custom": sorted(custom)}


def softmax_ops(model):
    """`(subgraph, operator, values)` for every `SOFTMAX` of a flatbuffer model object
    (`flatbuffer_utils.read_model_from_bytearray`): `values` is how many values it
    normalizes, its input's last axis (0 when the shape is unknown)."""
    for subgraph in model.subgraphs:
        for operator in subgraph.operators or []:
            if model.operatorCodes[operator.opcodeIndex].customCode or \
                    flatbuffer_utils.opcode_to_name(model, operator.opcodeIndex) != "SOFTMAX":
                continue
            shape = subgraph.tensors[operator.inputs[0]].shape
            yield subgraph, operator, int(shape[-1]) if shape is not None and len(shape) else 0


def int8_softmax_lengths(model_or_path):
    """How many values each int8 `SOFTMAX` of a `.tflite` file normalizes (its last axis).

    TFLite Micro's int8 softmax aborts once the exponentials of those values, relative
    to the largest, sum to 512 (docs/tflite-facts.md, F22): a softmax over 512 or more
    values, such as an attention over 512 or more time steps, may not run there.
    """
    model = _read_file_model(model_or_path)
    return [values for subgraph, operator, values in softmax_ops(model)
            if values and subgraph.tensors[operator.inputs[0]].type == schema.TensorType.INT8]


def list_ops(model_or_path):
    """Sorted names of all the operators in a `.tflite` file."""
    report = op_report(model_or_path)
    return sorted(report["builtin"] + report["flex"] + report["custom"])


def signature_tensor_indices(model_or_path, signature_key=None):
    """`{"inputs": [(name, position)], "outputs": [...]}` of one signature.

    `position` is the index of the tensor in the subgraph's input (output) list: the
    index TFLite for Microcontrollers uses, since its Python interpreter has no names.
    """
    model = _read_file_model(model_or_path)
    signatures = model.signatureDefs or []
    if not signatures:
        return None
    signature = signatures[0]
    if signature_key is not None:
        for candidate in signatures:
            key = candidate.signatureKey
            if (key.decode() if isinstance(key, bytes) else key) == signature_key:
                signature = candidate
    subgraph = model.subgraphs[signature.subgraphIndex]
    inputs = list(subgraph.inputs)
    outputs = list(subgraph.outputs)

    def entries(tensor_maps, order):
        result = []
        for tensor_map in tensor_maps:
            name = tensor_map.name.decode() if isinstance(tensor_map.name, bytes) else tensor_map.name
            result.append((name, order.index(tensor_map.tensorIndex)))
        return result

    return {"inputs": entries(signature.inputs, inputs), "outputs": entries(signature.outputs, outputs)}

"""`LiteModel`: run a gru-zoo `.tflite` file with the standalone LiteRT interpreter.

Full-sequence files take `(batch, time, features)` and `predict` loops the batch-1
model over the batch. Streaming files take one frame and the recurrent states;
`stream` carries the states across frames and `predict` streams each sequence.
Quantized inputs and outputs (int8, int16) are (de)quantized with the file's own
scales, so callers always pass and get float arrays.
"""

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys

import numpy as np

from export.metadata import check_tflite_bytes, read_metadata, source_name
from zoo.checks import check, fail, is_bool, is_int

# The most interpreter threads `LiteModel` (and `gru-zoo bench --threads`) accepts: 4
# times this machine's CPUs, at least 64. LiteRT makes a thread pool of any size it is
# given, and crashes the process (SIGSEGV) on a huge one (100000).
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))

# The guard around the first inference of a file this process did not export: a child
# process with these limits (see `LiteModel`). A damaged file that passes the flatbuffer
# verifier can still make the interpreter crash, loop or allocate tens of gigabytes.
GUARD_TIMEOUT_S = 60.0
GUARD_MEMORY_BYTES = 4 << 30  # plus 16 times the file's size
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# sha256 of the files that have run once (in the guard, or verified by `to_tflite`).
_TRUSTED = set()


def _digest(content):
    return hashlib.sha256(content).hexdigest()


def trust(content):
    """Marks `.tflite` bytes as safe to run in this process (no guard needed again)."""
    _TRUSTED.add(_digest(bytes(content)))


def _guard(content, name, interpreter):
    """Runs the first inference of `content` in a child process with a time and a
    memory limit; raises a `ValueError` naming the file when it fails, hangs, crashes
    or runs out of memory there."""
    digest = _digest(content)
    if digest in _TRUSTED:
        return
    memory = int(GUARD_MEMORY_BYTES + 16 * len(content))
    env = dict(os.environ)
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"]
                                         if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["CUDA_VISIBLE_DEVICES"] = ""
    limits = f"limits {GUARD_TIMEOUT_S:g} s and {memory / 2**30:.1f} GiB, in a child process"
    process = subprocess.Popen(
        [sys.executable, "-m", "export._guard", str(memory), interpreter],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        start_new_session=True)
    try:
        stdout, stderr = process.communicate(content, timeout=GUARD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()  # its own session: nothing else is in its group
        process.communicate()
        raise ValueError(f"{name} is damaged or not a model this interpreter runs: its first "
                         f"inference did not finish within {GUARD_TIMEOUT_S:g} s "
                         f"({limits})") from None
    lines = stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        report = None
    if report is not None and report.get("ok"):
        _TRUSTED.add(digest)
        return
    if report is not None and "not a valid Flatbuffer" in report["error"]:
        reason = "the flatbuffer verifier rejects it (truncated or damaged)"
    elif report is not None and report.get("memory"):
        reason = f"its first inference ran out of memory ({report['error']})"
    elif report is not None:
        reason = f"its first inference failed ({report['error']})"
    elif process.returncode < 0:
        try:
            signame = signal.Signals(-process.returncode).name
        except ValueError:
            signame = f"signal {-process.returncode}"
        reason = f"its first inference crashed the interpreter ({signame})"
        if b"bad_alloc" in stderr:
            reason = f"its first inference ran out of memory (std::bad_alloc, {signame})"
    else:
        tail = " ".join(stderr.decode("utf-8", "replace").split()[-40:])
        reason = f"the interpreter exited with code {process.returncode} ({tail})"
    raise ValueError(f"{name} is damaged or not a model this interpreter runs: {reason} "
                     f"({limits})")


# x86_64 Linux: arch_prctl(ARCH_GET_XCOMP_PERM) and the AMX tile data state bit.
_SYS_ARCH_PRCTL, _ARCH_GET_XCOMP_PERM, _XFEATURE_XTILEDATA = 158, 0x1022, 18


def amx_granted():
    """Whether this process holds Linux's permission for AMX tile data, or `None` where
    the question does not apply (not x86_64 Linux).

    XNNPACK asks for it on a CPU with AMX when its first interpreter starts and then
    computes int8 products with AMX kernels, slow for the one-row products of a batch-1
    recurrence (docs/tflite-facts.md, F25). LiteRT has no option to decline, so
    `gru-zoo bench` only says so.
    """
    import ctypes
    import platform

    if sys.platform != "linux" or platform.machine() != "x86_64":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mask = ctypes.c_uint64(0)
        if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_GET_XCOMP_PERM, ctypes.byref(mask)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return bool(mask.value >> _XFEATURE_XTILEDATA & 1)


def _quantize(value, details):
    """`value` as the input tensor of `details` takes it: a quantized input (integer
    with scales) gets the real values quantized with its scale and zero point, integer
    and bool arrays included (they are values, not raw quantized codes); any other
    input (float, or token ids: integer without scales) is cast."""
    dtype = details["dtype"]
    value = np.asarray(value)
    scales = details["quantization_parameters"]["scales"]
    if np.issubdtype(dtype, np.integer) and len(scales):
        zero_points = details["quantization_parameters"]["zero_points"]
        info = np.iinfo(dtype)
        real = value if np.issubdtype(value.dtype, np.floating) else value.astype(np.float64)
        quantized = np.round(real / scales[0] + zero_points[0])
        return np.clip(quantized, info.min, info.max).astype(dtype)
    return value.astype(dtype)


def _is_token_input(details):
    """Token ids: an integer input without quantization scales."""
    return bool(np.issubdtype(details["dtype"], np.integer)
                and not len(details["quantization_parameters"]["scales"]))


def _shape_label(signature, labels=None):
    """`(1, 8, 2)`, with the free sizes (-1) of a shape signature named by `labels`
    (position: name) or `any`."""
    labels = labels or {}
    parts = [labels.get(i, "any") if v < 0 else str(int(v)) for i, v in enumerate(signature)]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _as_array(argument, value, expected, source):
    """`value` as a real numeric (or bool) array, or a `ValueError` naming `argument`,
    the shape `expected` and what was received (None, text, objects, complex)."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged nested lists
        array = np.asarray(value, dtype=object)
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"`{argument}` must be a real numeric array of shape {expected} "
                         f"({source}); the imaginary part would be dropped. "
                         f"Received: {argument} with dtype {array.dtype}")
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == bool):
        received = (f"{argument}={value!r:.60}" if array.dtype == object and array.ndim == 0
                    else f"{argument} with dtype {array.dtype}")
        raise ValueError(f"`{argument}` must be a numeric array of shape {expected} "
                         f"({source}). Received: {received}")
    return array


def _check_finite(argument, array, source):
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError(f"`{argument}` must hold finite values ({source}). Received: "
                         f"{argument} with {int(np.isnan(array).sum())} NaN and "
                         f"{int(np.isinf(array).sum())} inf values")


def _dequantize(value, details):
    scales = details["quantization_parameters"]["scales"]
    zero_points = details["quantization_parameters"]["zero_points"]
    if np.issubdtype(value.dtype, np.integer) and len(scales):
        return (value.astype(np.float32) - zero_points[0]) * scales[0]
    return value


class LiteModel:
    """A `.tflite` file ready to run.

    Args:
        model: path to a `.tflite` file, or its bytes.
        num_threads: int (Python's or NumPy's), CPU threads of the interpreter, from 1
            to `MAX_THREADS`. Defaults to `1`.
        interpreter: `"litert"` (the standalone `ai_edge_litert` interpreter, the
            default) or `"tensorflow"` (`tf.lite.Interpreter`, which links the Flex
            delegate: only for files exported with `allow_select_tf_ops=True`).
        guard: bool. The first inference of a file runs in a child process limited to
            `GUARD_TIMEOUT_S` seconds and `GUARD_MEMORY_BYTES` (plus 16 times the
            file's size) of memory, on zero inputs, before this process loads it: a
            damaged or malicious file that passes the flatbuffer verifier can still
            crash the interpreter, loop or allocate tens of gigabytes, and then raises
            a `ValueError` naming the file instead. Files exported by `to_tflite` in
            this process, and files that passed once, skip it. Defaults to `True`.

    Every input is checked against the file before the interpreter sees it: numeric
    (not text, objects or complex), the file's shape, finite values, token ids inside
    the vocabulary. A bad input raises a `ValueError` that names it and leaves the
    model as it was; a failure inside the interpreter reloads the file, so a later
    correct call runs.

    Raises:
        FileNotFoundError, ValueError: a missing, empty, foreign or damaged file (the
        message names it and says what is wrong).

    Example:

    >>> lite = LiteModel("model.tflite")
    >>> lite.predict(x_test)           # (batch, num_outputs)
    >>> lite.signatures                # {"serving_default": {"inputs": [...], ...}}
    """

    def __init__(self, model, *, num_threads=1, interpreter="litert", guard=True):
        if not is_int(num_threads) or not 1 <= num_threads <= MAX_THREADS:
            fail("num_threads", num_threads,
                 f"a positive int of at most {MAX_THREADS} (MAX_THREADS: 4 times this "
                 "machine's CPUs, at least 64)")
        if not isinstance(interpreter, str) or interpreter not in ("litert", "tensorflow"):
            raise ValueError(
                "`interpreter` must be 'litert' or 'tensorflow'. "
                f"Received: interpreter={interpreter!r}"
            )
        check("guard", guard, is_bool(guard), "a bool")
        if isinstance(model, (bytes, bytearray)):
            self._content = bytes(model)
            self.path = None
        elif isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            if os.path.isdir(path):
                raise ValueError(f"`model` must be a .tflite file. Received: model={path!r} "
                                 "(a directory)")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"No such .tflite file: {path!r}")
            with open(path, "rb") as handle:
                self._content = handle.read()
            self.path = path
        else:
            raise TypeError(f"`model` must be the path of a .tflite file or its bytes. "
                            f"Received: model={type(model).__name__}")
        name = source_name(self.path if self.path is not None else self._content)
        check_tflite_bytes(self._content, name)
        if guard:
            _guard(self._content, name, interpreter)
        if interpreter == "litert":
            from ai_edge_litert.interpreter import Interpreter
        else:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        self.num_threads = int(num_threads)
        self._name = name
        self._interpreter_class = Interpreter
        try:
            self._interpreter = Interpreter(model_content=self._content,
                                            num_threads=self.num_threads)
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{name} is not a valid .tflite file: "
                             f"{' '.join(str(error).split())}") from None
        self.signatures = self._interpreter.get_signature_list()
        if not self.signatures:
            raise ValueError(f"{name} has no signature; gru-zoo files always have one.")
        self.signature_key = next(iter(self.signatures))
        self._runners = {}
        # The file's own input and output details, per signature, read before any run:
        # the interpreter's change with every resize (a run on another shape).
        self._details = {}
        self._vocabularies = {}
        self.metadata = read_metadata(self._content)
        self.input_names = list(self.signatures[self.signature_key]["inputs"])
        self.output_names = list(self.signatures[self.signature_key]["outputs"])
        self.is_streaming = "frame" in self.input_names
        self.state_names = [name for name in self.input_names if name.startswith("state_")]
        self.runner()  # reads the default signature's details now

    @property
    def size(self):
        """Size of the file in bytes."""
        return len(self._content)

    def _key(self, signature_key):
        if signature_key is None:
            return self.signature_key
        if not isinstance(signature_key, str) or signature_key not in self.signatures:
            raise ValueError(
                f"`signature_key` must be one of {sorted(self.signatures)}, or None for "
                f"the first. Received: signature_key={signature_key!r}"
            )
        return signature_key

    def runner(self, signature_key=None):
        """The `ai_edge_litert` signature runner of `signature_key` (default: the first).

        It runs whatever it is given, unchecked; `run` checks the inputs first.
        """
        key = self._key(signature_key)
        if key not in self._runners:
            runner = self._interpreter.get_signature_runner(key)
            self._runners[key] = runner
            if key not in self._details:
                self._details[key] = (copy.deepcopy(runner.get_input_details()),
                                      copy.deepcopy(runner.get_output_details()))
        return self._runners[key]

    def _file_details(self, signature_key=None):
        """`(input details, output details)` of the file (as read before any run)."""
        key = self._key(signature_key)
        self.runner(key)
        return self._details[key]

    def input_details(self, signature_key=None):
        """The file's input details `{name: {"shape", "shape_signature", "dtype",
        "quantization_parameters", ...}}` (a copy)."""
        return copy.deepcopy(self._file_details(signature_key)[0])

    def output_details(self, signature_key=None):
        """The file's output details (a copy), as `input_details`."""
        return copy.deepcopy(self._file_details(signature_key)[1])

    def _reload(self):
        """A fresh interpreter of the file, after a failed inference left the old one
        with resized or unallocated tensors."""
        self._interpreter = self._interpreter_class(model_content=self._content,
                                                    num_threads=self.num_threads)
        self._runners = {}

    def _vocabulary(self, key, input_name):
        """The vocabulary size of token-id input `input_name`: the first dimension of
        the embedding table, the constant 2-D `params` of the first GATHER whose
        indices come from that input; else the metadata's `vocab_size`; else `None`."""
        cache_key = (key, input_name)
        if cache_key not in self._vocabularies:
            self._vocabularies[cache_key] = self._read_vocabulary(key, input_name)
        return self._vocabularies[cache_key]

    def _read_vocabulary(self, key, input_name):
        from ai_edge_litert.tools import flatbuffer_utils

        try:
            model = flatbuffer_utils.read_model_from_bytearray(bytearray(self._content))
            for signature in model.signatureDefs or []:
                signature_key = signature.signatureKey
                if isinstance(signature_key, bytes):
                    signature_key = signature_key.decode()
                if signature_key != key:
                    continue
                subgraph = model.subgraphs[signature.subgraphIndex]
                reached = {entry.tensorIndex for entry in signature.inputs
                           if (entry.name.decode() if isinstance(entry.name, bytes)
                               else entry.name) == input_name}
                for operator in subgraph.operators or []:  # in execution order
                    inputs = [int(t) for t in (operator.inputs if operator.inputs is not None
                                               else []) if t >= 0]
                    opcode = model.operatorCodes[operator.opcodeIndex]
                    if (not opcode.customCode and len(inputs) >= 2 and inputs[1] in reached
                            and inputs[0] not in reached and flatbuffer_utils.opcode_to_name(
                                model, operator.opcodeIndex) == "GATHER"):
                        shape = subgraph.tensors[inputs[0]].shape
                        if shape is not None and len(shape) == 2 and shape[0] > 0:
                            return int(shape[0])
                    if reached.intersection(inputs):
                        reached.update(int(t) for t in operator.outputs)
        except Exception:  # noqa: BLE001 (an unusual file: fall back on the metadata)
            pass
        metadata = self.metadata or {}
        for source in (metadata, metadata.get("config") or {}):
            if isinstance(source, dict) and is_int(source.get("vocab_size")) \
                    and source["vocab_size"] > 0:
                return int(source["vocab_size"])
        return None

    def _check_values(self, argument, array, details, source, key, input_name):
        """Finite feature values, or token ids inside the vocabulary (`ValueError`)."""
        if not _is_token_input(details):
            _check_finite(argument, array, source)
            return
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
            if not np.all(np.isfinite(array)) or not np.all(array == np.floor(array)):
                raise ValueError(f"`{argument}` must hold integer token ids ({source}). "
                                 f"Received: {argument} with dtype {array.dtype} and "
                                 "non-integer values")
        vocabulary = self._vocabulary(key, input_name)
        limit = vocabulary if vocabulary is not None else int(np.iinfo(details["dtype"]).max) + 1
        outside = array[(array < 0) | (array >= limit)]
        if outside.size:
            values = np.unique(outside)
            shown = ", ".join(str(v) for v in values[:5].tolist()) + (
                ", ..." if len(values) > 5 else "")
            where = (f"the vocabulary of {vocabulary} tokens of {self._name}"
                     if vocabulary is not None else source)
            raise ValueError(f"`{argument}` must hold token ids in [0, {limit}) ({where}). "
                             f"Received: {argument} with {outside.size} ids outside it "
                             f"({shown})")

    def _check_input(self, argument, value, key, input_name, *, batch_hint=True):
        """`value` checked against the file's input `input_name` of signature `key`
        (numeric, its shape, finite or valid token ids), or a `ValueError` naming
        `argument`."""
        details = self._file_details(key)[0][input_name]
        signature = [int(v) for v in details["shape_signature"]]
        expected = _shape_label(signature, {1: "time"} if len(signature) >= 3 else None)
        source = f"the input {input_name!r} of {self._name}"
        array = _as_array(argument, value, expected, source)
        fits = array.ndim == len(signature) and all(
            got == want if want >= 0 else got >= 1 for got, want in zip(array.shape, signature))
        if not fits:
            if (batch_hint and array.ndim == len(signature) and signature[0] == 1
                    and array.shape[0] != 1 and all(
                        got == want if want >= 0 else got >= 1
                        for got, want in zip(array.shape[1:], signature[1:]))):
                raise ValueError(f"`{argument}` must have batch 1 (the file's input shape "
                                 f"is {expected}); use predict() for batches. "
                                 f"Received: {argument} with shape {array.shape}")
            raise ValueError(f"`{argument}` must have shape {expected} ({source}). "
                             f"Received: {argument} with shape {array.shape}")
        self._check_values(argument, array, details, source, key, input_name)
        return array

    def _invoke(self, key, inputs):
        """Runs signature `key` on checked `inputs`; returns its float outputs. A
        failure inside the interpreter reloads the file and raises a `RuntimeError`."""
        runner = self.runner(key)
        input_details, output_details = self._details[key]
        feed = {name: _quantize(value, input_details[name]) for name, value in inputs.items()}
        try:
            outputs = runner(**feed)
        except (RuntimeError, ValueError) as error:
            self._reload()
            shapes = ", ".join(f"{name} with shape {tuple(value.shape)}"
                               for name, value in feed.items())
            raise RuntimeError(f"{self._name} failed to run on {shapes}: "
                               f"{' '.join(str(error).split())} (the file was reloaded: "
                               "the model runs again)") from None
        return {name: _dequantize(value, output_details[name]) for name, value in outputs.items()}

    def run(self, signature_key=None, **inputs):
        """Runs one signature on float (or token id) inputs; returns a dict of float outputs.

        Each input must have the file's shape (batch 1: `predict` runs batches),
        numeric and finite (token ids: inside the vocabulary).
        """
        key = self._key(signature_key)
        input_details = self._file_details(key)[0]
        unknown = sorted(set(inputs) - set(input_details))
        missing = sorted(set(input_details) - set(inputs))
        if unknown or missing:
            raise ValueError(
                f"The inputs must be exactly {sorted(input_details)}. Received: "
                f"{sorted(inputs)} (missing {missing}, unknown {unknown})"
            )
        checked = {name: self._check_input(name, value, key, name)
                   for name, value in inputs.items()}
        return self._invoke(key, checked)

    def initial_states(self):
        """Zero states of a streaming file: `{state name: float32 zeros of its shape}`.

        Every state starts at zero: recurrent states, convolution frame buffers (the
        causal padding), running means, counts and pooling phases.
        """
        self._require_streaming("initial_states")
        details = self._file_details()[0]
        return {
            name: np.zeros(details[name]["shape"], dtype=np.float32) for name in self.state_names
        }

    def _require_streaming(self, method):
        if not self.is_streaming:
            raise ValueError(
                f"`{method}` needs a streaming file (exported with streaming=True); this file "
                f"takes {self.input_names}."
            )

    def _check_sequences(self, argument, x, input_name, inner, leading):
        """`x` checked against the shape `(leading,) + inner` (-1: any size) of the file's
        input `input_name` (numeric, finite or valid token ids), or a `ValueError`
        naming `argument`, the shape received and the shape expected."""
        details = self._file_details()[0][input_name]
        labels = [leading] + [("time" if leading == "batch" and i == 0 else "any")
                              if v < 0 else str(int(v)) for i, v in enumerate(inner)]
        expected = "(" + ", ".join(labels) + ("," if len(labels) == 1 else "") + ")"
        source = f"the input of {self._name}"
        array = _as_array(argument, x, expected, source)
        if array.ndim != len(inner) + 1 or any(
                want >= 0 and got != want for got, want in zip(array.shape[1:], inner)):
            raise ValueError(f"`{argument}` must have shape {expected} ({source}). "
                             f"Received: {argument} with shape {array.shape}")
        if len(array) == 0 or 0 in array.shape:
            raise ValueError(f"`{argument}` must hold at least one "
                             f"{'sequence' if leading == 'batch' else 'frame'}: shape "
                             f"{expected} with no empty axis. "
                             f"Received: {argument} with shape {array.shape}")
        self._check_values(argument, array, details, source, self.signature_key, input_name)
        return array

    def _check_states(self, states):
        if states is None:
            return self.initial_states()
        if not isinstance(states, dict) or set(states) != set(self.state_names):
            given = sorted(map(str, states)) if isinstance(states, dict) \
                else type(states).__name__
            raise ValueError(f"`states` must be a dict with exactly the keys "
                             f"{self.state_names} (see `initial_states()`). "
                             f"Received: states with keys {given}")
        return {name: self._check_input(f"states[{name!r}]", states[name], self.signature_key,
                                        name, batch_hint=False)
                for name in self.state_names}

    def _frames_of(self, argument, frames, leading):
        frame = self._file_details()[0]["frame"]
        inner = [int(v) for v in frame["shape_signature"][1:]]
        return self._check_sequences(argument, frames, "frame",
                                     inner if leading == "time" else [-1, *inner], leading)

    def _stream(self, frames, states):
        outputs = []
        for frame in frames:
            result = self._invoke(self.signature_key, dict(states, frame=frame[None]))
            states = {name: result[f"new_{name}"] for name in self.state_names}
            outputs.append(result["output"][0])
        return np.stack(outputs), states

    def stream(self, frames, states=None, *, return_states=False):
        """Feeds `frames` `(time, features)` (or `(time,)` token ids) one at a time.

        Args:
            frames: array of the frames of one sequence.
            states: dict of states to start from; defaults to zeros.
            return_states: bool, also return the states after the last frame.

        Returns:
            `(time, num_outputs)` outputs, one per frame (and the final states).
        """
        self._require_streaming("stream")
        check("return_states", return_states, is_bool(return_states), "a bool")
        frames = self._frames_of("frames", frames, "time")
        outputs, states = self._stream(frames, self._check_states(states))
        return (outputs, states) if return_states else outputs

    def predict(self, x, *, per_step=None):
        """Runs a batch of sequences `(batch, time, ...)`; returns `(batch, ...)` outputs.

        The batch-1 file is run once per sequence. For a streaming file each sequence is
        streamed; the result is the output after the last frame, or every step's output
        when `per_step` is true (default: from the metadata's task, else last only). A
        full-sequence file gives what its output is (per step or not): `per_step`, if
        given, must agree.

        Raises:
            ValueError: `x` is not numeric, holds no sequence, its shape is not the
            file's input shape (the message shows both), it holds NaN or inf, or token
            ids outside the vocabulary; `per_step` is not a bool or None.
        """
        if per_step is not None:
            check("per_step", per_step, is_bool(per_step), "a bool or None")
        if self.is_streaming:
            x = self._frames_of("x", x, "batch")
            if per_step is None:
                per_step = bool((self.metadata or {}).get("per_step", False))
            initial = self.initial_states()
            results = []
            for sequence in x:
                outputs, _ = self._stream(sequence, initial)
                results.append(outputs if per_step else outputs[-1])
            return np.stack(results)
        name = self.input_names[0]
        input_details, output_details = self._file_details()
        output_shape = tuple(int(v) for v in
                             output_details[self.output_names[0]]["shape_signature"])
        file_per_step = len(output_shape) == 3
        if per_step is not None and bool(per_step) != file_per_step:
            has = (f"its output has a time axis (shape {_shape_label(output_shape)}): every "
                   "step's output, always" if file_per_step else
                   f"its output has no time axis (shape {_shape_label(output_shape)}): one "
                   "output per sequence; a streaming file (streaming=True) gives every step's")
            fail("per_step", per_step, f"None or {file_per_step} for this full-sequence file "
                 f"({has})")
        details = input_details[name]
        x = self._check_sequences("x", x, name, [int(v) for v in details["shape_signature"][1:]],
                                  "batch")
        results = []
        for sample in x:
            output = self._invoke(self.signature_key, {name: sample[None]})
            results.append(output[self.output_names[0]][0])
        return np.stack(results)

    __call__ = predict

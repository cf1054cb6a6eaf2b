"""`LiteModel`: run a gru-zoo `.tflite` file with the standalone LiteRT interpreter.

Full-sequence files take `(batch, time, features)` and `predict` loops the batch-1
model over the batch. Streaming files take one frame and the recurrent states;
`stream` carries the states across frames and `predict` streams each sequence.
Quantized inputs and outputs (int8, int16) are (de)quantized with the file's own
scales, so callers always pass and get float arrays.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys

import numpy as np

from export.metadata import check_tflite_bytes, read_metadata, source_name

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
    dtype = details["dtype"]
    value = np.asarray(value)
    if np.issubdtype(dtype, np.integer) and np.issubdtype(value.dtype, np.floating):
        scales = details["quantization_parameters"]["scales"]
        zero_points = details["quantization_parameters"]["zero_points"]
        if len(scales):
            info = np.iinfo(dtype)
            quantized = np.round(value / scales[0] + zero_points[0])
            return np.clip(quantized, info.min, info.max).astype(dtype)
    return value.astype(dtype)


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
        num_threads: int, CPU threads of the interpreter. Defaults to `1`.
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

    Raises:
        FileNotFoundError, ValueError: a missing, empty, foreign or damaged file (the
        message names it and says what is wrong).

    Example:

    >>> lite = LiteModel("model.tflite")
    >>> lite.predict(x_test)           # (batch, num_outputs)
    >>> lite.signatures                # {"serving_default": {"inputs": [...], ...}}
    """

    def __init__(self, model, *, num_threads=1, interpreter="litert", guard=True):
        if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
            raise ValueError(
                f"`num_threads` must be a positive int. Received: num_threads={num_threads!r}"
            )
        if interpreter not in ("litert", "tensorflow"):
            raise ValueError(
                "`interpreter` must be 'litert' or 'tensorflow'. "
                f"Received: interpreter={interpreter!r}"
            )
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
        self.num_threads = num_threads
        self._name = name
        try:
            self._interpreter = Interpreter(model_content=self._content,
                                            num_threads=num_threads)
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{name} is not a valid .tflite file: "
                             f"{' '.join(str(error).split())}") from None
        self.signatures = self._interpreter.get_signature_list()
        if not self.signatures:
            raise ValueError(f"{name} has no signature; gru-zoo files always have one.")
        self.signature_key = next(iter(self.signatures))
        self._runners = {}
        self.metadata = read_metadata(self._content)
        self.input_names = list(self.signatures[self.signature_key]["inputs"])
        self.output_names = list(self.signatures[self.signature_key]["outputs"])
        self.is_streaming = "frame" in self.input_names
        self.state_names = [name for name in self.input_names if name.startswith("state_")]

    @property
    def size(self):
        """Size of the file in bytes."""
        return len(self._content)

    def runner(self, signature_key=None):
        """The `ai_edge_litert` signature runner of `signature_key` (default: the first)."""
        key = signature_key or self.signature_key
        if key not in self.signatures:
            raise ValueError(
                f"`signature_key` must be one of {sorted(self.signatures)}. "
                f"Received: signature_key={key!r}"
            )
        if key not in self._runners:
            self._runners[key] = self._interpreter.get_signature_runner(key)
        return self._runners[key]

    def input_details(self, signature_key=None):
        return self.runner(signature_key).get_input_details()

    def output_details(self, signature_key=None):
        return self.runner(signature_key).get_output_details()

    def run(self, signature_key=None, **inputs):
        """Runs one signature on float (or token id) inputs; returns a dict of float outputs."""
        runner = self.runner(signature_key)
        input_details = runner.get_input_details()
        unknown = sorted(set(inputs) - set(input_details))
        missing = sorted(set(input_details) - set(inputs))
        if unknown or missing:
            raise ValueError(
                f"The inputs must be exactly {sorted(input_details)}. Received: "
                f"{sorted(inputs)} (missing {missing}, unknown {unknown})"
            )
        feed = {name: _quantize(value, input_details[name]) for name, value in inputs.items()}
        outputs = runner(**feed)
        output_details = runner.get_output_details()
        return {name: _dequantize(value, output_details[name]) for name, value in outputs.items()}

    def initial_states(self):
        """Zero states of a streaming file: `{state name: float32 zeros of its shape}`.

        Every state starts at zero: recurrent states, convolution frame buffers (the
        causal padding), running means, counts and pooling phases.
        """
        self._require_streaming("initial_states")
        details = self.input_details()
        return {
            name: np.zeros(details[name]["shape"], dtype=np.float32) for name in self.state_names
        }

    def _require_streaming(self, method):
        if not self.is_streaming:
            raise ValueError(
                f"`{method}` needs a streaming file (exported with streaming=True); this file "
                f"takes {self.input_names}."
            )

    def _check_sequences(self, argument, x, details, inner, leading):
        """`x` checked against the shape `(leading,) + inner` (-1: any size) of the file's
        input `details`, or a `ValueError` naming `argument`, the shape received and the
        shape expected."""
        labels = [leading] + [("time" if leading == "batch" and i == 0 else "any")
                              if v < 0 else str(int(v)) for i, v in enumerate(inner)]
        expected = "(" + ", ".join(labels) + ("," if len(labels) == 1 else "") + ")"
        try:
            array = np.asarray(x)
        except ValueError:  # ragged nested lists
            array = np.asarray(x, dtype=object)
        source = f"the input of {self._name}"
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                         or array.dtype == bool):
            raise ValueError(f"`{argument}` must be a numeric array of shape {expected} "
                             f"({source}). Received: {argument} with dtype {array.dtype}")
        if array.ndim != len(inner) + 1 or any(
                want >= 0 and got != want for got, want in zip(array.shape[1:], inner)):
            raise ValueError(f"`{argument}` must have shape {expected} ({source}). "
                             f"Received: {argument} with shape {array.shape}")
        if len(array) == 0 or 0 in array.shape:
            raise ValueError(f"`{argument}` must hold at least one "
                             f"{'sequence' if leading == 'batch' else 'frame'}: shape "
                             f"{expected} with no empty axis. "
                             f"Received: {argument} with shape {array.shape}")
        token_ids = np.issubdtype(details["dtype"], np.integer) and not details[
            "quantization_parameters"]["scales"].size
        if token_ids and not (np.issubdtype(array.dtype, np.integer)
                              or np.all(np.mod(array, 1) == 0)):
            raise ValueError(f"`{argument}` must hold integer token ids ({source}). "
                             f"Received: {argument} with dtype {array.dtype} and "
                             "non-integer values")
        return array

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
        frame = self.input_details()["frame"]
        frames = self._check_sequences("frames", frames, frame,
                                       list(frame["shape_signature"][1:]), "time")
        if states is None:
            states = self.initial_states()
        else:
            if not isinstance(states, dict) or set(states) != set(self.state_names):
                given = sorted(states) if isinstance(states, dict) else type(states).__name__
                raise ValueError(f"`states` must be a dict with exactly the keys "
                                 f"{self.state_names} (see `initial_states()`). "
                                 f"Received: states with keys {given}")
            details = self.input_details()
            checked = {}
            for name in self.state_names:
                value = np.asarray(states[name])
                shape = tuple(int(v) for v in details[name]["shape"])
                if value.shape != shape:
                    raise ValueError(f"`states[{name!r}]` must have shape {shape}. "
                                     f"Received: states[{name!r}] with shape {value.shape}")
                checked[name] = value
            states = checked
        outputs = []
        for frame in frames:
            result = self.run(frame=frame[None], **states)
            states = {name: result[f"new_{name}"] for name in self.state_names}
            outputs.append(result["output"][0])
        outputs = np.stack(outputs)
        return (outputs, states) if return_states else outputs

    def predict(self, x, *, per_step=None):
        """Runs a batch of sequences `(batch, time, ...)`; returns `(batch, ...)` outputs.

        The batch-1 file is run once per sequence. For a streaming file each sequence is
        streamed; the result is the output after the last frame, or every step's output
        when `per_step` is true (default: from the metadata's task, else last only).

        Raises:
            ValueError: `x` is not numeric, holds no sequence, or its shape is not the
            file's input shape (the message shows both).
        """
        if self.is_streaming:
            frame = self.input_details()["frame"]
            x = self._check_sequences("x", x, frame, [-1, *frame["shape_signature"][1:]],
                                      "batch")
            if per_step is None:
                per_step = bool((self.metadata or {}).get("per_step", False))
            results = []
            for sequence in x:
                outputs = self.stream(sequence)
                results.append(outputs if per_step else outputs[-1])
            return np.stack(results)
        name = self.input_names[0]
        details = self.input_details()[name]
        x = self._check_sequences("x", x, details, list(details["shape_signature"][1:]),
                                  "batch")
        results = []
        for sample in x:
            output = self.run(**{name: sample[None]})
            results.append(output[self.output_names[0]][0])
        return np.stack(results)

    __call__ = predict

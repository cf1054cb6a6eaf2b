"""Child-process side of `to_tflite`: convert, embed metadata, run the file, report.

Run as `python -m export._worker convert JOB.json` or `... tflm JOB.json`. The parent
reads the JSON result the worker writes; a worker killed by a signal (the converter's
segmentation faults, TFLM aborting on a too-small arena) writes nothing, and the
parent turns that into a clear error or a fallback.

Test hook: when the environment variable `GRU_ZOO_EXPORT_SIMULATE_CRASH` names the
recipe being converted, the worker kills itself with SIGSEGV before converting.
"""

import json
import os
import signal
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tracing with a GPU visible puts a cuDNN op in the graph (docs/tflite-facts.md, F8b).
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402

SIMULATE_CRASH_ENV = "GRU_ZOO_EXPORT_SIMULATE_CRASH"
# Set to "0" to start every job as a new Python process (`python -m export._worker`)
# instead of forking it from a server process that has TensorFlow imported already.
FORKSERVER_ENV = "GRU_ZOO_EXPORT_FORKSERVER"
MAX_STEP_CALIBRATION_PAIRS = 1000


def _write_json(path, payload):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(payload, handle)
    os.replace(tmp, path)


def _step_calibration(model, sequences, seed=0):
    """(frame, states) pairs from float rollouts of the step model (docs/tflite-facts.md, F7).

    Each pair holds a frame and every state as the float step model carries it at that
    frame (recurrent states, convolution frame buffers, running means and counts,
    attention maxima and denominators, pooling phases), so the quantizer measures the
    ranges that the file meets while streaming. Counts and denominators grow with the
    frames: the last frame of every sequence is always kept (up to half of the pairs),
    so their largest values set the range; the other pairs are drawn at random.
    """
    from export.recipes import build_step_model

    step = build_step_model(model, batch_size=None)
    state_inputs = [name for name in step.input if name != "frame"]
    batch, steps = sequences.shape[0], sequences.shape[1]
    states = {
        name: np.zeros((batch,) + tuple(step.input[name].shape[1:]), np.float32)
        for name in state_inputs
    }
    pairs, last = [], []
    for t in range(steps):
        frames = sequences[:, t]
        for i in range(batch):
            sample = {"frame": frames[i : i + 1]}
            sample.update({name: value[i : i + 1] for name, value in states.items()})
            (last if t == steps - 1 else pairs).append(sample)
        outputs = step({"frame": frames, **states}, training=False)
        states = {name: np.asarray(outputs[f"new_{name}"]) for name in state_inputs}
    rng = np.random.default_rng(seed)
    keep = sorted(rng.permutation(len(last))[: MAX_STEP_CALIBRATION_PAIRS // 2])
    last = [last[i] for i in keep]
    budget = MAX_STEP_CALIBRATION_PAIRS - len(last)
    if len(pairs) > budget:
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), budget, replace=False))]
    return pairs + last


def convert_job(job):
    from export import chunked, converter, recipes
    from export.metadata import TFLM_SOFTMAX_LIMIT, add_metadata, int8_softmax_lengths, op_report
    from export.runtime import LiteModel

    recipe = job["recipe"]
    fully_integer = chunked.is_fully_integer(job["quantization"],
                                             job.get("int8_float_layers", "auto"))
    if os.environ.get(SIMULATE_CRASH_ENV) == recipe:
        os.kill(os.getpid(), signal.SIGSEGV)
    model = recipes.load_model(job["model_path"])
    arrays = np.load(job["data_path"])

    start = time.perf_counter()
    if recipe == "step":
        from export.streaming import gate_math_for

        export_model = recipes.build_step_model(
            model, gate_math=gate_math_for(job["quantization"]))
    elif recipe == "chunked":
        export_model = recipes.rebuild_chunked(
            model, sequence_length=job["sequence_length"], chunk_steps=job["chunk_steps"],
            segment_chunks=job.get("segment_chunks", 1),
            pooling_in_loop=chunked.pools_in_loop(job["quantization"], fully_integer),
            bidirectional_rows=job.get("bidirectional_rows", False),
            prefix_loop=job.get("prefix_loop", False),
            project_before=job.get("project_before", False))
    else:
        export_model = recipes.rebuild(
            model, unroll=recipe == "unrolled", sequence_length=job["sequence_length"]
        )
    representative = None
    if job["quantization"] in converter.CALIBRATED:
        calibration = arrays["calibration"]
        if recipe == "step":
            representative = _step_calibration(model, calibration)
        else:
            representative = [{"inputs": calibration[i : i + 1]} for i in range(len(calibration))]
    float_layers = job.get("int8_float_layers", "auto")
    float_softmax_over = None
    if job["quantization"] == "int8" and float_layers == "auto":
        from export.calibration import INT8_SOFTMAX_MAX_VALUES, float_layer_names

        float_softmax_over = INT8_SOFTMAX_MAX_VALUES

        # The first convolution stays float only in full-sequence files: a streaming
        # file's convolutions keep their own frame buffers (`export.streaming`).
        float_layers = float_layer_names(export_model, first_conv=recipe != "step")
    if job["quantization"] == "int8" and any(
            isinstance(layer, chunked.ChunkedGRU) and layer.pooling is not None
            for layer in export_model.layers):
        # A pooling computed in the loop keeps its online softmax float
        # (`export.chunked.POOLING_IN_LOOP_MODES`; not in a fully integer file, which
        # computes the pooling after the loop).
        float_layers = list(float_layers) + [chunked.ONLINE_SOFTMAX_SCOPE]
    notes = []
    content = converter.convert(
        export_model,
        quantization=job["quantization"],
        io_type=job["io_type"],
        representative=representative,
        allow_select_tf_ops=job["allow_select_tf_ops"],
        notes=notes,
        calibrate_loops=recipe in ("chunked", "loop"),
        int8_weights=job.get("int8_weights", "auto"),
        float_layers=() if float_layers == "auto" else float_layers,
        float_softmax_over=float_softmax_over,
    )
    convert_seconds = time.perf_counter() - start
    content = add_metadata(content, job["metadata"],
                           strip_names=job.get("strip_tensor_names", True))
    ops = op_report(content)
    long_softmax = [n for n in int8_softmax_lengths(content) if n >= TFLM_SOFTMAX_LIMIT]
    if long_softmax:
        notes.append(f"int8: a SOFTMAX over {max(long_softmax)} values: TFLite Micro's int8 "
                     "softmax aborts once their exponentials sum to 512, so the file may "
                     "not run there (docs/tflite-facts.md, F22); LiteRT runs it, and the "
                     "default int8_float_layers='auto' keeps such a softmax float")
    result = {"ok": True, "convert_seconds": convert_seconds, "ops": ops, "size": len(content),
              "notes": notes}
    with open(job["out_path"], "wb") as handle:
        handle.write(content)
    if (ops["flex"] and not job["allow_select_tf_ops"]) or (
        ops["custom"] and not job["allow_custom_ops"]
    ):
        result["verified"] = False
        return result

    start = time.perf_counter()
    # Trusted: the converter just made it, and this is a child process with a timeout.
    lite = LiteModel(content, interpreter="tensorflow" if ops["flex"] else "litert", guard=False)
    outputs = {}
    for key in ("verify", "eval"):
        if key in arrays:
            x = arrays[key]
            outputs[f"keras_{key}"] = np.asarray(model.predict(x, verbose=0, batch_size=256))
            outputs[f"tflite_{key}"] = lite.predict(
                x, per_step=outputs[f"keras_{key}"].ndim == 3
            ).astype(np.float32)
    np.savez(job["outputs_path"], **outputs)
    result["verify_seconds"] = time.perf_counter() - start
    result["verified"] = True
    return result


def _capture_stderr(function):
    """Runs `function()` and returns what C code printed on file descriptor 2."""
    import ctypes
    import tempfile

    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            function()
        finally:
            sys.stderr.flush()
            ctypes.CDLL(None).fflush(None)  # C stdio may buffer when fd 2 is not a terminal
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return capture.read().decode("utf-8", "replace")


def tflm_arena_bytes(interpreter):
    """The arena bytes a TFLite Micro interpreter allocated, from its own allocation
    report (printed on stderr; the Python runtime has no call that returns it), or
    `None` when the report has no total."""
    import re

    report = _capture_stderr(interpreter.print_allocations)
    match = re.search(r"Arena allocation total (\d+) bytes", report)
    return int(match.group(1)) if match else None


def tflm_job(job):
    """Runs a file in TFLite for Microcontrollers' interpreter: a streaming file frame
    by frame (`job["per_step"]` set), a full-sequence file one sequence per invoke."""
    from tflite_micro.python.tflite_micro import runtime

    from export.metadata import signature_tensor_indices

    with open(job["tflite_path"], "rb") as handle:
        content = handle.read()
    created = {}

    def create():
        try:
            created["interpreter"] = runtime.Interpreter.from_bytes(
                content, arena_size=job["arena_size"])
        except RuntimeError as error:
            created["error"] = error

    # TFLM says why a file does not load (an op's failed check) only on stderr.
    printed = _capture_stderr(create)
    if "error" in created:
        reason = " ".join(line.strip() for line in printed.splitlines()
                          if "was not true" in line or "failed to prepare" in line
                          or "Didn't find op" in line or "Failed" in line)
        raise RuntimeError(f"{created['error']}" + (f": {reason[:400]}" if reason else ""))
    interpreter = created["interpreter"]
    arena_bytes = tflm_arena_bytes(interpreter)
    indices = signature_tensor_indices(content)
    sequences = np.load(job["x_path"])["x"]
    start = time.perf_counter()
    if job.get("streaming", True):
        results, steps = _tflm_stream(interpreter, indices, sequences, job["per_step"])
    else:
        results, steps = _tflm_full_sequence(interpreter, indices, sequences)
    seconds = time.perf_counter() - start
    np.savez(job["outputs_path"], tflm=np.stack(results).astype(np.float32))
    return {"ok": True, "arena_bytes": arena_bytes, "seconds_per_step": seconds / max(steps, 1)}


def _tflm_stream(interpreter, indices, sequences, per_step):
    """`tflm_job` for a streaming file: frame by frame, carrying the states.
    Returns `(outputs per sequence, frames run)`."""
    from export.runtime import _dequantize, _quantize

    inputs = dict(indices["inputs"])
    outputs = dict(indices["outputs"])
    state_names = [name for name in inputs if name != "frame"]
    results = []
    steps = 0
    for sequence in sequences:
        interpreter.reset()
        states = {
            name: np.zeros(interpreter.get_input_details(inputs[name])["shape"], np.float32)
            for name in state_names
        }
        sequence_outputs = []
        for frame in sequence:
            feed = dict(states, frame=frame[None])
            for name, value in feed.items():
                details = interpreter.get_input_details(inputs[name])
                interpreter.set_input(_quantize(value, details), inputs[name])
            interpreter.invoke()
            steps += 1
            fetched = {}
            for name, index in outputs.items():
                details = interpreter.get_output_details(index)
                fetched[name] = _dequantize(np.array(interpreter.get_output(index)), details)
            states = {name: fetched[f"new_{name}"] for name in state_names}
            sequence_outputs.append(fetched["output"][0])
        sequence_outputs = np.stack(sequence_outputs)
        results.append(sequence_outputs if per_step else sequence_outputs[-1])
    return results, steps


def _tflm_full_sequence(interpreter, indices, sequences):
    """`tflm_job` for a full-sequence file: one input (the sequence), one output, one
    invoke per sequence. Returns `(outputs per sequence, time steps run)`."""
    from export.runtime import _dequantize, _quantize

    (_, input_position), = indices["inputs"]
    (_, output_position), = indices["outputs"]
    details = interpreter.get_input_details(input_position)
    results = []
    for sequence in sequences:
        interpreter.reset()
        interpreter.set_input(_quantize(sequence[None], details), input_position)
        interpreter.invoke()
        output = np.array(interpreter.get_output(output_position))
        results.append(_dequantize(output, interpreter.get_output_details(output_position))[0])
    return results, len(sequences) * sequences.shape[1]


def serve():
    """The fork server: imports TensorFlow once, then forks one process per job.

    Reads one JSON request per line on stdin (`command`, `job_path`, `log_path`, `env`),
    answers `{"pid"}` when the job's process starts and `{"code"}` (its exit code, or
    minus the signal that killed it) when it ends. Each job is a process of its own: a
    converter crash kills only that process.
    """
    import tensorflow  # noqa: F401  (the reason this server exists)

    from export import calibration, chunked, converter, metadata, recipes, runtime  # noqa: F401

    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the job
            code = 1
            try:
                descriptor = os.open(request["log_path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                     0o644)
                os.dup2(descriptor, 1)
                os.dup2(descriptor, 2)
                for key, value in request["env"].items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                code = main(["export._worker", request["command"], request["job_path"]])
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        out.write(json.dumps({"code": code}) + "\n")
        out.flush()


class ForkServer:
    """Client side of `serve`: one server per parent process, started at the first job.

    Importing TensorFlow costs ~5 s of CPU (more than converting a zoo model); the
    server pays it once. `multiprocessing`'s own fork server is not used: it imports
    the caller's main script again (as `__mp_main__`), which re-runs scripts without a
    main guard.
    """

    _instance = None

    def __init__(self, env):
        import subprocess
        import threading

        self._lock = threading.Lock()
        self._owner = os.getpid()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "export._worker", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )

    @classmethod
    def get(cls, env):
        instance = cls._instance
        if (instance is None or instance._process.poll() is not None
                or instance._owner != os.getpid()):  # a forked caller gets its own server
            cls._instance = cls(env)
            import atexit

            atexit.register(cls._instance.close)
        return cls._instance

    def close(self):
        if os.getpid() == self._owner and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _read(self, deadline):
        import select
        import time

        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            ready, _, _ = select.select([self._process.stdout], [], [], remaining)
            if ready:
                line = self._process.stdout.readline()
                if not line:
                    raise RuntimeError("the export fork server stopped")
                return json.loads(line)

    def run(self, command, job_path, log_path, timeout):
        """Runs one job; returns its exit code (negative: a signal) or `None` on timeout."""
        import signal as signals
        import time

        request = {"command": command, "job_path": job_path, "log_path": log_path,
                   "env": {SIMULATE_CRASH_ENV: os.environ.get(SIMULATE_CRASH_ENV)}}
        with self._lock:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            started = self._read(None)
            answer = self._read(time.monotonic() + timeout)
            if answer is None:
                os.kill(started["pid"], signals.SIGKILL)
                self._read(None)
                return None
            return answer["code"]


def forkserver_available():
    return os.environ.get(FORKSERVER_ENV, "1") != "0" and hasattr(os, "fork")


def main(argv):
    command, job_path = argv[1], argv[2]
    with open(job_path) as handle:
        job = json.load(handle)
    try:
        result = convert_job(job) if command == "convert" else tflm_job(job)
    except Exception as error:  # noqa: BLE001 (reported to the parent, which raises)
        result = {
            "ok": False,
            "error_type": type(error).__name__,
            "message": str(error)[-4000:],
            "traceback": traceback.format_exc()[-8000:],
        }
    _write_json(job["result_path"], result)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
        sys.exit(0)
    sys.exit(main(sys.argv))

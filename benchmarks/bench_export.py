"""Export benchmark: the full-sequence forms against ONNX Runtime's fused GRU, in one run.

What it measures (batch 1, one thread everywhere):

1. XNNPACK and per-step weights: the reference model's `unrolled`, `chunked` and
   `loop` float32 files at several lengths, each with LiteRT's default XNNPACK
   delegate and with builtin kernels only
   (`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`): µs per layer and time step,
   and the resident memory the interpreter adds (measured in a fresh process per file).
2. The reference model (2 x GRU(64), 8 features, 4 classes) at T = 16, 50, 200, 1000:
   float32 `loop` (the former default), `unrolled`, the automatic form; dynamic-range
   (int8 weights, float activations) in the automatic form; int8 `unrolled` (the
   former default) and the automatic form; streaming step files
   (T invokes, one per frame, inputs set once: see `step_runner`). Per file: size,
   size / float32 `loop`, conversion time (converter, and the whole `to_tflite` call),
   latency from Python and from `litert-benchmark` (the `ai-edge-litert` tool on the
   compiled-model runtime), each against ONNX Runtime measured in the same minute, the
   TFLite Micro arena (full-sequence files: the chunked loop runs there; for the
   automatic form's float32 and int8 rows, the arena of the file that
   `to_tflite(..., check_tflm=True)` writes for a microcontroller, see `_tflm_row`), and
   the max error vs Keras.
3. Every zoo variant at T = 50, 200 and 1000: float32 `loop`, float32 and int8 automatic
   forms: the same columns.
   Then the variants whose GRU layers return their sequences (attention, bidirectional,
   bidirectional_attention) at T = 1000 and 2000, float32 and int8: the automatic file
   against the same file in one loop (the segment rule bypassed).
4. Accuracy: the trained presets exported in float32, dynamic and int8 by the automatic
   recipe; test accuracy (or MSE) of Keras and of each file, and verification data.
5. Where the time goes: a `perf` profile (kernel functions grouped by what they do)
   of one file per form, when `perf` works on the machine.

ONNX Runtime runs a PyTorch twin of each model with the Keras weights copied
(`benchmarks/torch_twins.py`; `nn.GRU` becomes ONNX's fused `GRU` op). Latency: each
file and ONNX Runtime are timed in alternating blocks of runs, as the median of the
thread CPU time of each call (`time.thread_time`): on a shared 2-core machine the wall
time of a call includes the time another process holds the core, which CPU time does
not; the wall-time medians are recorded too. "vs ORT" is the ratio of the two medians.

Run:
    pip install -e ".[bench]"
    python benchmarks/bench_export.py                 # everything, writes BENCHMARKS.md
    python benchmarks/bench_export.py --quick         # T = 16, 50; stacked and attention
    python benchmarks/bench_export.py --sections segments --update   # one section again
    python benchmarks/bench_export.py --render benchmarks/bench_export_results.json
"""

import argparse
import contextlib
import json
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))  # torch_twins

FEATURES, UNITS, LAYERS, CLASSES = 8, 64, 2, 4
LENGTHS = (16, 50, 200, 1000)
VARIANT_LENGTHS = (50, 200, 1000)  # 1000: layers returning sequences carry a T-row buffer
# Variants whose GRU layers return long sequences (an output buffer of T rows in the loop),
# at lengths where `export.chunked.segment_chunks_for` nests loops in float32 and int8.
SEGMENT_VARIANTS = ("attention", "bidirectional", "bidirectional_attention")
SEGMENT_LENGTHS = (1000, 2000)
PROBE_LENGTHS = (16, 32, 50, 100, 200)
UNROLLED_MAX = 200  # longer unrolled files take minutes to convert and are not shipped
BEGIN, END = "<!-- export-benchmark:begin -->", "<!-- export-benchmark:end -->"
PEER_TOLERANCE = 1e-5  # float32 twins match Keras to ~1e-7; more means the twin is wrong
# TFLite Micro against LiteRT on the same file: float32 kernels agree to ~1e-7, int8 ones
# may round one step of the output scale differently (~0.004 for a softmax).
TFLM_TOLERANCE = 0.01
TARGETS = {"float32_vs_ort": 1.0, "int8_vs_ort": 0.5, "int8_size_vs_loop": 0.35,
           "step_vs_ort": 1.0, "accuracy_points": 0.005, "convert_s": 10.0}


# === Measuring ===


def interleaved(functions, runs, blocks=20, warmup=3):
    """Medians (µs) of each function's calls, measured in alternating blocks.

    Returns `{name: {"cpu_us", "wall_us"}}`: thread CPU time and wall time per call.
    """
    for function in functions.values():
        for _ in range(warmup):
            function()
    cpu = {name: [] for name in functions}
    wall = {name: [] for name in functions}
    per_block = max(1, runs // blocks)
    for _ in range(blocks):
        for name, function in functions.items():
            for _ in range(per_block):
                start_wall, start_cpu = time.perf_counter(), time.thread_time()
                function()
                cpu[name].append(time.thread_time() - start_cpu)
                wall[name].append(time.perf_counter() - start_wall)
    return {name: {"cpu_us": statistics.median(cpu[name]) * 1e6,
                   "wall_us": statistics.median(wall[name]) * 1e6} for name in functions}


def time_batch(functions, batch, key, steps, fields):
    """Times `functions` interleaved (each row's file under `key(row)`, ONNX Runtime under
    "ort") and sets each row of `batch`'s `us` and `ort_us` (thread CPU µs); prints
    `fields` of each row."""
    timing = interleaved(functions, runs_for(steps))
    for row in batch:
        row["us"] = timing[key(row)]["cpu_us"]
        row["ort_us"] = timing["ort"]["cpu_us"]
        print({field: row[field] for field in fields}, flush=True)


def runs_for(steps):
    return max(40, min(400, 20000 // steps))


def lite_runner(path, builtin=False):
    """A callable running the file once on random inputs (LiteRT, one thread)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    options = {}
    if builtin:
        options["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=str(path), num_threads=1, **options)
    runner = interpreter.get_signature_runner()
    feed = {}
    for name, details in runner.get_input_details().items():
        dtype = details["dtype"]
        if np.issubdtype(dtype, np.integer):
            value = np.random.default_rng(0).integers(-20, 20, details["shape"]).astype(dtype)
        else:
            value = np.random.default_rng(0).standard_normal(details["shape"]).astype(dtype)
        feed[name] = value
    runner(**feed)
    return lambda: runner(**feed)


def step_runner(path, steps):
    """A callable streaming `steps` frames through a step file: `invoke()` once per frame.

    The inputs are set once: a device copies its frame (and the state outputs back into
    the state inputs, a few hundred bytes) between invokes, which costs nanoseconds in C
    but a few µs per tensor through Python's `set_tensor`, more than a frame's compute.
    Every frame does the same work whatever the values, so the invokes are what is timed.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"],
                               rng.standard_normal(detail["shape"]).astype(detail["dtype"]))
    invoke = interpreter.invoke

    def stream():
        for _ in range(steps):
            invoke()

    stream()
    return stream


def litert_benchmark(path, runs):
    """Median latency (µs) from the `litert-benchmark` tool, or `None` if it fails."""
    tool = shutil.which("litert-benchmark") or str(pathlib.Path(sys.executable).parent
                                                   / "litert-benchmark")
    if not os.path.exists(tool):
        return None
    out = str(path) + ".bench.json"
    try:
        subprocess.run([tool, "--model", str(path), "--num_runs", str(runs), "--warmup_runs",
                        "10", "--num_threads", "1", "--result_json", out],
                       capture_output=True, timeout=600, check=True)
        with open(out) as handle:
            return json.load(handle)["latency"]["median_ms"] * 1000.0
    except (subprocess.SubprocessError, OSError, KeyError, ValueError):
        return None


_CHILD = r"""
import json, sys, time
import numpy as np
mode, path = sys.argv[1], sys.argv[2]
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
if mode in ("xnnpack", "builtin"):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    options = {} if mode == "xnnpack" else {
        "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    before = rss()
    interpreter = Interpreter(model_path=path, num_threads=1, **options)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()
    feed = {k: np.zeros(d["shape"], d["dtype"]) for k, d in runner.get_input_details().items()}
    runner(**feed)
    print(json.dumps({"rss_kb": rss() - before}))
elif mode == "tflm":
    sys.path.insert(0, sys.argv[3])
    from tflite_micro.python.tflite_micro import runtime
    from export._worker import tflm_arena_bytes
    from export.runtime import _quantize, _dequantize
    content = open(path, "rb").read()
    interpreter = runtime.Interpreter.from_bytes(content, arena_size=4 * 1024 * 1024)
    arena = tflm_arena_bytes(interpreter)
    details = interpreter.get_input_details(0)
    x = np.random.default_rng(0).standard_normal(details["shape"]).astype(np.float32)
    interpreter.set_input(_quantize(x, details), 0)
    interpreter.invoke()
    y = _dequantize(np.array(interpreter.get_output(0)), interpreter.get_output_details(0))
    from ai_edge_litert.interpreter import Interpreter
    lite = Interpreter(model_content=content)
    lite.allocate_tensors()
    lite.set_tensor(lite.get_input_details()[0]["index"], _quantize(x, lite.get_input_details()[0]))
    lite.invoke()
    out = lite.get_output_details()[0]
    ref = _dequantize(lite.get_tensor(out["index"]), out)
    print(json.dumps({"arena_bytes": arena,
                      "max_abs_vs_litert": float(np.abs(y - ref).max())}))
"""


def child(mode, path, timeout=300):
    """Runs `_CHILD` in a fresh process (clean memory; TFLM may abort); its JSON or error."""
    try:
        completed = subprocess.run([sys.executable, "-c", _CHILD, mode, str(path), str(ROOT)],
                                   capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = (completed.stdout + completed.stderr).strip().splitlines()[-2:]
    return {"error": f"exit {completed.returncode}: {' '.join(tail)[:200]}"}


# Kernel functions grouped by what they do, for the profile section.
PROFILE_GROUPS = (
    ("matmul (XNNPACK)", r"^xnn_.*gemm|^xnn_compute_gemm|^xnn_.*igemm"),
    ("matmul (builtin)", r"Eigen::|ruy::|gemmlowp|cpu_backend_gemm|FullyConnected"),
    ("elementwise (XNNPACK)", r"^xnn_(f32|qs8|qu8|x8|x32|s8|u8)_.*(v|lut|copy)|^xnn_compute_(elementwise|univector|slice|copy)"),
    ("XNNPACK op dispatch", r"^pthreadpool|^xnn_run_operator|^xnn_invoke_runtime|SubgraphInvoke|^xnn_(setup|reshape)|reshape_|setup_"),
    ("loop and memory (WHILE, copies, allocation)", r"while_kernel|CopyTensors|TfLiteTensorCopy|ArenaPlanner|SimpleMemoryArena|AllocateTensors|ReleaseMemory|InitializeTensorReleaseMap|malloc|free|memmove|memcpy|memset|_int_|unlink_chunk"),
    ("builtin kernels", r"tflite::ops::builtin|tflite::optimized_ops|tflite::reference_ops|tflite::optimized_integer"),
    ("interpreter", r"tflite::"),
)


def perf_profile(path, seconds=3.0):
    """Shares of CPU time by kernel group while the file runs, or `{"error"}`."""
    if not shutil.which("perf"):
        return {"error": "perf is not installed"}
    script = ("import sys, time, numpy as np\n"
              "from ai_edge_litert.interpreter import Interpreter\n"
              "it = Interpreter(model_path=sys.argv[1], num_threads=1)\n"
              "r = it.get_signature_runner()\n"
              "feed = {k: np.zeros(d['shape'], d['dtype']) for k, d in r.get_input_details().items()}\n"
              "end = time.time() + float(sys.argv[2])\n"
              "while time.time() < end:\n    r(**feed)\n")
    data = str(path) + ".perf"
    try:
        subprocess.run(["perf", "record", "-F", "2000", "-o", data, sys.executable, "-c", script,
                        str(path), str(seconds)], capture_output=True, timeout=120, check=True)
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort",
                                 "dso,symbol", "--stdio", "-g", "none"],
                                capture_output=True, text=True, timeout=120, check=True).stdout
    except (subprocess.SubprocessError, OSError) as error:
        return {"error": f"perf failed: {error}"[:200]}
    shares = {}
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
        if not match:
            continue
        share, dso, symbol = float(match.group(1)), match.group(2), match.group(3).strip()
        if "python" in dso or dso.startswith("[kernel") or "openblas" in dso:
            group = "Python harness, kernel, other libraries"
        else:
            group = next((name for name, pattern in PROFILE_GROUPS if re.search(pattern, symbol)),
                         "other")
        shares[group] = shares.get(group, 0.0) + share
    harness = shares.pop("Python harness, kernel, other libraries", 0.0)
    total = sum(shares.values()) or 1.0
    result = {group: 100.0 * share / total for group, share in shares.items()}
    result["harness_share"] = harness
    return result


def file_structure(path):
    """Operators per subgraph, tensors, constant bytes and quantization parameters."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(pathlib.Path(path).read_bytes())
    quant_params = 0
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors or []:
            q = tensor.quantization
            if q is not None and q.scale is not None:
                quant_params += len(q.scale)
    return {
        "subgraph_ops": [len(s.operators or []) for s in model.subgraphs],
        "tensors": sum(len(s.tensors or []) for s in model.subgraphs),
        "weight_bytes": sum(len(b.data) for b in model.buffers if b.data is not None),
        "quant_params": quant_params,
    }


# === Models and peers ===


def reference_model(variant, steps, seed=0):
    import keras

    import zoo

    keras.utils.set_random_seed(seed)
    return zoo.build_gru(variant, input_shape=(steps, FEATURES), num_outputs=CLASSES,
                         units=UNITS, num_layers=LAYERS, conv_filters=64, compile=False)


def onnx_peer(model, inputs, path):
    """ONNX Runtime on the model's PyTorch twin: `{"run", "max_abs_vs_keras"}` or `{"error"}`."""
    try:
        import torch_twins
    except ImportError as error:
        return {"error": f"{error} (pip install -e '.[bench]')"}
    try:
        twin = torch_twins.torch_twin(model)
    except NotImplementedError as error:
        return {"error": f"no PyTorch twin: {error}"}
    session = torch_twins.ort_session(torch_twins.export_onnx(twin, inputs[:1], str(path)))
    outputs = np.concatenate([session.run(None, {"inputs": inputs[i : i + 1]})[0]
                              for i in range(len(inputs))])
    error = float(np.abs(outputs - np.asarray(model.predict(inputs, verbose=0))).max())
    if error > PEER_TOLERANCE:
        return {"error": f"the ONNX twin differs from Keras: {error:.2g}"}
    x = inputs[:1]
    return {"run": lambda: session.run(None, {"inputs": x}), "max_abs_vs_keras": error}


def reference_with_peer(variant, steps, workdir, samples=100):
    """`(model, calibration, ORT run)`: the reference model of `variant` at `steps`,
    `samples` standard normal sequences, and a callable running its ONNX Runtime peer on
    one of them. Exits when there is no peer."""
    model = reference_model(variant, steps)
    calibration = np.random.default_rng(0).standard_normal(
        (samples, steps, FEATURES)).astype("float32")
    peer = onnx_peer(model, calibration[:4], pathlib.Path(workdir) / f"{variant}_{steps}.onnx")
    if "error" in peer:
        raise SystemExit(f"ONNX Runtime peer of {variant}: {peer['error']}")
    return model, calibration, peer["run"]


def tool_cell(row, base):
    """A table cell: `row`'s `litert-benchmark` µs and its ratio to `base`'s, or a dash."""
    if not row.get("tool_us") or not base.get("tool_us"):
        return "—"
    return f"{row['tool_us']:.0f} ({row['tool_us'] / base['tool_us']:.2f})"


def run_script(argv, doc, measure, render, update, *, variants, lengths):
    """Runs a benchmark script over reference variants and lengths: parses its
    `--variants`, `--lengths` (comma-separated; `variants`, `lengths` by default) and
    `--update` options, calls `measure(variants, lengths)`, prints `render(rows)`, and
    with `--update` calls `update(rows, table, write_section)`, which records it in
    BENCHMARKS.md (`compare_report.write_section`). `doc`: the script's docstring."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--variants", default=variants)
    parser.add_argument("--lengths", default=lengths)
    parser.add_argument("--update", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args(argv)
    rows = measure(args.variants.split(","), [int(n) for n in args.lengths.split(",")])
    table = render(rows)
    print(table)
    if args.update:
        from compare_report import write_section

        update(rows, table, write_section)
    return 0


def span(values):
    """`"low-high"` of ratios, or a dash when there are none."""
    return f"{min(values):.2f}-{max(values):.2f}" if values else "—"


@contextlib.contextmanager
def converting_in_process():
    """`to_tflite` runs its conversions in this process instead of a child process, so
    that what a benchmark switches here (a module constant, a patched function) applies
    to them. A converter crash then ends the benchmark."""
    from export import _worker, exporter

    run_worker = exporter._run_worker

    def in_process(command, job, workdir, timeout):
        if command != "convert":
            return run_worker(command, job, workdir, timeout)
        return json.loads(json.dumps(_worker.convert_job(job))), None

    exporter._run_worker = in_process
    try:
        yield
    finally:
        exporter._run_worker = run_worker


def export_row(model, path, *, quantization, recipe, calibration, streaming=False):
    """Exports one file with `to_tflite` and returns its row (or the error)."""
    from export import to_tflite

    row = {"mode": quantization or "float32", "asked": recipe, "streaming": streaming}
    try:
        result = to_tflite(model, path, quantization=quantization, streaming=streaming,
                           representative_data=calibration, recipe=recipe,
                           fallback=recipe == "auto", check_tflm=streaming)
    except Exception as error:  # noqa: BLE001 (a failed cell is a result too)
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        return row
    row.update(recipe=result.recipe, size=result.size, convert_s=result.convert_seconds,
               total_s=result.total_seconds, max_abs_error=result.max_abs_error,
               notes=list(result.notes), structure=file_structure(path))
    if result.tflm:
        row["tflm"] = {"arena_bytes": result.tflm.get("arena_bytes"),
                       "runs": result.tflm.get("runs")}
    return row


def export_or_exit(model, path, label, **kwargs):
    """`export_row(model, path, **kwargs)`; a failed export ends the benchmark with
    `label` and the error (a script whose table needs every file)."""
    row = export_row(model, path, **kwargs)
    if "error" in row:
        raise SystemExit(f"{label}: {row['error']}")
    return row


def time_rows(rows, files, peer, steps, log):
    """Latency of each file vs ONNX Runtime, interleaved; plus `litert-benchmark`."""
    for row in rows:
        if "error" in row or row["key"] not in files:
            continue
        path = files[row["key"]]
        runs = runs_for(steps)
        # A step file is timed as a device streams a sequence: T invokes, one per frame.
        functions = {"file": step_runner(path, steps) if row["streaming"] else lite_runner(path)}
        if "run" in peer:
            functions["ort"] = peer["run"]
        timing = interleaved(functions, runs)
        row["cpu_us"] = timing["file"]["cpu_us"]
        row["wall_us"] = timing["file"]["wall_us"]
        if "ort" in timing:
            row["ort_cpu_us"] = timing["ort"]["cpu_us"]
            row["ort_wall_us"] = timing["ort"]["wall_us"]
            if row["streaming"]:
                # The tool's JSON rounds its median to 10 µs, more than one frame takes:
                # the same runtime call (`CompiledModel.run_by_name`) timed here instead.
                from bench_streaming import compiled_model_us

                bench = compiled_model_us(path) * steps
            else:
                bench = litert_benchmark(path, runs)
            after = interleaved({"ort": peer["run"]}, runs // 2)["ort"]["wall_us"]
            if bench is not None:
                row["litert_benchmark_us"] = bench
                row["litert_benchmark_ort_wall_us"] = (timing["ort"]["wall_us"] + after) / 2
        log(row)


# === The sections ===


def probe_xnnpack(workdir, log, lengths):
    """Section 1: µs per layer-step and added memory, XNNPACK vs builtin kernels."""
    from export import converter, recipes

    rows = []
    for steps in lengths:
        model = reference_model("stacked", steps)
        inputs = np.random.default_rng(1).standard_normal((4, steps, FEATURES)).astype("float32")
        peer = onnx_peer(model, inputs, pathlib.Path(workdir) / f"probe_{steps}.onnx")
        forms = {
            "unrolled": lambda: recipes.rebuild(model, unroll=True),
            "chunked": lambda: recipes.rebuild_chunked(model, chunk_steps=4),
            "loop": lambda: recipes.rebuild(model, unroll=False),
        }
        for form, build in forms.items():
            path = pathlib.Path(workdir) / f"probe_{form}_{steps}.tflite"
            path.write_bytes(converter.convert(build()))
            functions = {"xnnpack": lite_runner(path), "builtin": lite_runner(path, builtin=True)}
            if "run" in peer:
                functions["ort"] = peer["run"]
            timing = interleaved(functions, runs_for(steps))
            row = {"T": steps, "form": form, "size": path.stat().st_size}
            for mode in ("xnnpack", "builtin"):
                row[f"{mode}_us_per_layer_step"] = timing[mode]["cpu_us"] / (LAYERS * steps)
                row[f"{mode}_rss_kb"] = child(mode, path).get("rss_kb")
            if "ort" in timing:
                row["ort_us_per_layer_step"] = timing["ort"]["cpu_us"] / (LAYERS * steps)
            rows.append(row)
            log(row)
    return rows


def reference_rows(workdir, log, lengths, step_done):
    """Section 2: the reference model at each length, every form."""
    rows = []
    for steps in lengths:
        model = reference_model("stacked", steps)
        rng = np.random.default_rng(0)
        calibration = rng.standard_normal((100, steps, FEATURES)).astype("float32")
        peer = onnx_peer(model, calibration[:4], pathlib.Path(workdir) / f"ref_{steps}.onnx")
        plans = [("float32 loop", None, "loop", False), ("float32 auto", None, "auto", False),
                 ("dynamic auto", "dynamic", "auto", False), ("int8 auto", "int8", "auto", False)]
        if steps <= UNROLLED_MAX:
            plans[1:1] = [("float32 unrolled", None, "unrolled", False)]
            plans.append(("int8 unrolled", "int8", "unrolled", False))
        if not step_done:
            plans += [("float32 step", None, "auto", True), ("int8 step", "int8", "auto", True)]
        files, batch = {}, []
        for key, quantization, recipe, streaming in plans:
            path = pathlib.Path(workdir) / f"ref_{steps}_{key.replace(' ', '_')}.tflite"
            row = export_row(model, path, quantization=quantization, recipe=recipe,
                             calibration=calibration, streaming=streaming)
            row.update(variant="stacked", T=steps, key=key)
            if "error" not in row:
                files[key] = path
                if streaming:
                    row["file"] = str(path)
                if not streaming:
                    # The automatic recipe's float32 and int8 files are measured as
                    # written for a microcontroller (dynamic-range files do not run
                    # there, F24).
                    micro = recipe == "auto" and quantization in (None, "int8")
                    _tflm_row(row, path, model if micro else None, quantization,
                              calibration)
            batch.append(row)
        time_rows(batch, files, peer, steps, log)
        _size_vs_loop(batch)
        rows += batch
        step_done = step_done or any(r["streaming"] for r in batch)
        originals = [r for r in rows if r["streaming"] and "file" in r and "error" not in r]
        # The step files do not depend on T: later lengths re-time the first ones.
        for row in originals:
            if row["T"] == steps:
                continue
            clone = {k: v for k, v in row.items() if k != "file"}
            clone["T"] = steps
            time_rows([clone], {clone["key"]: row["file"]}, peer, steps, log)
            _size_vs_loop(batch + [clone])
            rows.append(clone)
    return rows


def variant_rows(workdir, log, variants, lengths):
    """Section 3: every variant, float32 loop vs the automatic float32 and int8 files."""
    rows = []
    for variant in variants:
        for steps in lengths:
            model = reference_model(variant, steps)
            rng = np.random.default_rng(0)
            calibration = rng.standard_normal((100, steps, FEATURES)).astype("float32")
            peer = onnx_peer(model, calibration[:4],
                             pathlib.Path(workdir) / f"{variant}_{steps}.onnx")
            files, batch = {}, []
            for key, quantization, recipe in (("float32 loop", None, "loop"),
                                              ("float32 auto", None, "auto"),
                                              ("int8 auto", "int8", "auto")):
                path = pathlib.Path(workdir) / f"{variant}_{steps}_{key.replace(' ', '_')}.tflite"
                row = export_row(model, path, quantization=quantization, recipe=recipe,
                                 calibration=calibration)
                row.update(variant=variant, T=steps, key=key)
                if "error" not in row:
                    files[key] = path
                    _tflm_row(row, path, model, quantization, calibration)
                batch.append(row)
            if "error" in peer:
                for row in batch:
                    row["ort_error"] = peer["error"]
            time_rows(batch, files, peer, steps, log)
            _size_vs_loop(batch)
            rows += batch
    return rows


def _nested_loops(path):
    """How many `WHILE` ops of the file sit inside another loop's body (segments)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(pathlib.Path(path).read_bytes())
    return sum(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) == "WHILE"
               for subgraph in model.subgraphs[1:] for op in subgraph.operators or [])


def segment_rows(workdir, log, variants, lengths):
    """Section 3b: loops returning long sequences, float32 and int8, in one loop (the
    segment rule bypassed) and as the automatic recipe builds them (segments where
    `export.chunked.segment_chunks_for` chooses them)."""
    from export import chunked

    rule = chunked.segment_chunks_for
    rows = []
    for variant in variants:
        for steps in lengths:
            model = reference_model(variant, steps)
            calibration = np.random.default_rng(0).standard_normal(
                (100, steps, FEATURES)).astype("float32")
            peer = onnx_peer(model, calibration[:4],
                             pathlib.Path(workdir) / f"segments_{variant}_{steps}.onnx")
            files, batch = {}, []
            for quantization in (None, "int8"):
                mode = quantization or "float32"
                for key, choice in ((f"{mode} one loop", lambda *args: 1), (f"{mode} auto", rule)):
                    path = pathlib.Path(workdir) / f"segments_{variant}_{steps}_{key.replace(' ', '_')}.tflite"
                    chunked.segment_chunks_for = choice
                    try:
                        row = export_row(model, path, quantization=quantization, recipe="auto",
                                         calibration=calibration)
                    finally:
                        chunked.segment_chunks_for = rule
                    row.update(variant=variant, T=steps, key=key)
                    if "error" not in row:
                        files[key] = path
                        row["nested_loops"] = _nested_loops(path)
                    batch.append(row)
            if "error" in peer:
                for row in batch:
                    row["ort_error"] = peer["error"]
            time_rows(batch, files, peer, steps, log)
            rows += batch
    return rows


def _tflm_row(row, path, model=None, quantization=None, calibration=None):
    """The TFLite Micro arena of a full-sequence file, run in a fresh process.

    With `model` (the automatic recipe's rows), the file that `to_tflite` writes for a
    microcontroller (`check_tflm=True`: one step per loop iteration, no nested loops, a
    bidirectional GRU as two steps instead of rows, a wide input projected in the loop
    body) is exported and measured instead (marked `micro_file`)."""
    from export import to_tflite

    if row["recipe"] == "loop":
        # Keras's loop file runs in TFLite Micro with wrong outputs
        # (docs/tflite-facts.md, F9): not tried.
        row["tflm"] = {"error": "not tried: Keras's loop file is wrong in TFLite Micro"}
        return
    if model is not None:
        micro = pathlib.Path(path).with_name(pathlib.Path(path).stem + "_micro.tflite")
        try:
            to_tflite(model, micro, quantization=quantization,
                      representative_data=calibration, check_tflm=True)
        except Exception as error:  # noqa: BLE001 (a failed cell is a result too)
            row["tflm"] = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
            return
        row["tflm"] = dict(child("tflm", micro, timeout=120), micro_file=True)
        return
    row["tflm"] = child("tflm", path, timeout=120)


def _size_vs_loop(batch):
    """Each row's file size over the float32 loop file's of the same model and length."""
    loop = next((r for r in batch if r["key"] == "float32 loop" and "size" in r), None)
    for row in batch:
        if loop and "size" in row:
            row["size_vs_loop"] = row["size"] / loop["size"]


def accuracy_rows(workdir, log):
    """Section 4: the trained presets, float32 and int8, automatic recipe."""
    import zoo
    from export import to_tflite
    from zoo.datasets import load_dataset

    fixtures = ROOT / "tests" / "fixtures" / "presets"
    presets = [("italy_power_demand", None), ("italy_power_demand", fixtures),
               ("gunpoint", None), ("airline_passengers", None)]
    rows = []
    for name, directory in presets:
        model = zoo.load_preset(name, directory=directory)
        data = load_dataset(name)
        label = name + (" (two-layer test fixture)" if directory else "")
        for quantization in (None, "dynamic", "int8"):
            row = {"preset": label, "mode": quantization or "float32"}
            try:
                result = to_tflite(model, pathlib.Path(workdir) / f"acc_{name}_{row['mode']}.tflite",
                                   quantization=quantization, representative_data=data.x_train,
                                   validation_data=(data.x_test, data.y_test))
                row.update(recipe=result.recipe, size=result.size, metric=result.evaluation["metric"],
                           keras=result.evaluation["keras"], tflite=result.evaluation["tflite"],
                           change=result.evaluation["change"], samples=result.evaluation["samples"],
                           max_abs_error=result.max_abs_error, total_s=result.total_seconds,
                           verification=result.verification, notes=list(result.notes))
            except Exception as error:  # noqa: BLE001
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            rows.append(row)
            log(row)
    return rows


def profile_rows(workdir, log):
    """Section 5: one file per form of the reference model, profiled with perf."""
    from export import converter, recipes

    steps = 200
    model = reference_model("stacked", steps)
    calibration = np.random.default_rng(0).standard_normal((30, steps, FEATURES)).astype("float32")
    representative = [{"inputs": calibration[i : i + 1]} for i in range(len(calibration))]
    builds = {
        "loop (float32)": lambda: converter.convert(recipes.rebuild(model, unroll=False)),
        "unrolled (float32, T=50)": lambda: converter.convert(
            recipes.rebuild(reference_model("stacked", 50), unroll=True)),
        "chunked (float32)": lambda: converter.convert(recipes.rebuild_chunked(model, chunk_steps=4)),
        "chunked (int8)": lambda: converter.convert(
            recipes.rebuild_chunked(model, chunk_steps=4), quantization="int8",
            representative=representative, calibrate_loops=True),
        "step (float32)": lambda: converter.convert(recipes.build_step_model(model)),
    }
    rows = []
    for form, build in builds.items():
        path = pathlib.Path(workdir) / f"profile_{len(rows)}.tflite"
        path.write_bytes(build())
        row = {"form": form, "T": 50 if "T=50" in form else steps, **perf_profile(path)}
        rows.append(row)
        log(row)
    return rows


# === Report ===


def _f(value, spec, empty="—"):
    return empty if value is None else format(value, spec)


def _ratio(value, peer):
    return None if not value or not peer else value / peer


def render(results):
    meta = results["meta"]
    lines = [f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}; {meta['date']}; code at commit {meta.get('code')}; "
             f"load average at start {meta['load']}, at the end {meta.get('load_end', '?')}. "
             "Batch 1, one thread everywhere (LiteRT `num_threads=1`, ONNX Runtime intra/inter-op "
             "1).  ",
             "Latency: median thread CPU time per call, each file timed in alternating blocks "
             "with ONNX Runtime's fused GRU (a PyTorch twin with the Keras weights); \"vs ORT\" "
             "is the ratio of the two. `litert-benchmark`: the tool's median (wall time, 10 µs "
             "resolution) against ONNX Runtime's wall-time median measured just before and "
             "after. Streaming step files: T `invoke()` calls, one per frame (inputs set "
             "once; a device's per-frame copies cost nanoseconds in C, microseconds through "
             "Python); their `litert-benchmark` column times the tool's own call "
             "(`CompiledModel.run_by_name`) per frame here, unrounded, x T. TFLM arena: "
             "the file's own in TFLite Micro; \"(micro file)\" (float32 and int8 files "
             "of the automatic recipe): the arena of the file `to_tflite(..., "
             "check_tflm=True)` writes for a microcontroller instead (one step per loop "
             "iteration unless a layer returns its sequence, `export.chunked."
             "MICRO_CHUNK_STEPS`; no nested loops; a bidirectional GRU as two steps per "
             "time step, not as rows: docs/tflite-facts.md, F28; a wide input projected "
             "in the loop body)."]
    for rerun in meta.get("reruns", []):
        lines[-1] += "  "
        lines.append(f"The {', '.join(rerun['sections'])} section(s) from a later run: "
                     f"`{rerun['command']}`, {rerun['date']}, code at commit {rerun['code']}, "
                     f"load average {rerun['load']}.")
    lines.append("")
    probe = results.get("probe") or []
    if probe:
        lines += ["### XNNPACK and weights repeated per step",
                  "",
                  f"Reference model ({LAYERS} x GRU({UNITS}), {FEATURES} features) converted to "
                  "each form in-process; µs per layer and time step (thread CPU time), with the "
                  "default XNNPACK delegate and with builtin kernels only; memory the interpreter "
                  "adds (resident set after creating it and running once, fresh process).", "",
                  "| T | form | size (KB) | XNNPACK µs/layer-step | builtin µs/layer-step | ORT "
                  "µs/layer-step | XNNPACK memory (KB) | builtin memory (KB) |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in probe:
            lines.append(f"| {r['T']} | {r['form']} | {r['size'] / 1024:.0f} "
                         f"| {r['xnnpack_us_per_layer_step']:.2f} | {r['builtin_us_per_layer_step']:.2f} "
                         f"| {_f(r.get('ort_us_per_layer_step'), '.2f')} | {_f(r.get('xnnpack_rss_kb'), 'd')} "
                         f"| {_f(r.get('builtin_rss_kb'), 'd')} |")
        lines.append("")
    for title, rows in (("Reference model at each length", results.get("reference") or []),
                        ("Every variant", results.get("variants") or [])):
        if not rows:
            continue
        lines += [f"### {title}", "",
                  "| variant | T | file | recipe | size (KB) | size / float32 loop | convert (s) | "
                  "to_tflite (s) | latency (µs) | vs ORT | litert-benchmark vs ORT | TFLM arena (KB) "
                  "| max err vs Keras |",
                  "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['variant']} | {r['T']} | {r['key']} | failed: {r['error']} "
                             "||||||||||")
                continue
            tflm = r.get("tflm") or {}
            arena = tflm.get("arena_bytes")
            tflm_text = _f(arena / 1024 if arena else None, ".1f",
                           "no" if tflm.get("error") or tflm.get("runs") is False else "—")
            if arena and tflm.get("micro_file"):
                tflm_text += " (micro file)"
            if (tflm.get("max_abs_vs_litert") or 0) > TFLM_TOLERANCE:
                tflm_text += f" (differs from LiteRT by {tflm['max_abs_vs_litert']:.2g})"
            lines.append(
                f"| {r['variant']} | {r['T']} | {r['key']} | {r['recipe']} | {r['size'] / 1024:.1f} "
                f"| {_f(r.get('size_vs_loop'), '.2f')} | {r['convert_s']:.1f} | {r['total_s']:.1f} "
                f"| {_f(r.get('cpu_us'), '.0f')} | {_f(_ratio(r.get('cpu_us'), r.get('ort_cpu_us')), '.2f')} "
                f"| {_f(_ratio(r.get('litert_benchmark_us'), r.get('litert_benchmark_ort_wall_us')), '.2f')} "
                f"| {tflm_text} | {r['max_abs_error']:.2g} |")
        lines.append("")
    segments = results.get("segments") or []
    if segments:
        lines += ["### Loops that return long sequences: one loop or segments", "",
                  "Variants whose GRU layers return their sequences carry an output buffer of "
                  "T rows in the loop, which the `WHILE` kernel copies at every iteration. The "
                  "automatic recipe runs such a loop in segments (an outer loop over segments, "
                  "an inner one filling a segment's buffer) where `segment_chunks_for` expects "
                  "the copies to at least halve; \"one loop\" is the same file with that rule "
                  "bypassed. Nested loops: `WHILE` ops inside another loop's body (0: one loop). "
                  "The attention variant's files compute its additive pooling in the loop "
                  "and carry no buffer at all (`export.chunked.pooling_plan`; int8 files too, "
                  "since commit 9a186a8), so its two rows per quantization are the same file. "
                  "Each file is timed interleaved with ONNX Runtime, and the machine's speed "
                  "drifts between files (identical files have differed by 20% in µs), so "
                  "\"auto / one loop\" divides their ratios to ORT, not their µs.",
                  "", "| variant | T | file | nested loops | size (KB) | to_tflite (s) | "
                  "latency (µs) | vs ORT | auto / one loop | max err vs Keras |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        single = {(r["variant"], r["T"], r["key"].split()[0]):
                  _ratio(r.get("cpu_us"), r.get("ort_cpu_us"))
                  for r in segments if r["key"].endswith("one loop") and "error" not in r}
        for r in segments:
            if "error" in r:
                lines.append(f"| {r['variant']} | {r['T']} | {r['key']} | failed: {r['error']} "
                             "||||||")
                continue
            versus = (_ratio(_ratio(r.get("cpu_us"), r.get("ort_cpu_us")),
                             single.get((r["variant"], r["T"], r["key"].split()[0])))
                      if r["key"].endswith("auto") else None)
            lines.append(
                f"| {r['variant']} | {r['T']} | {r['key']} | {r.get('nested_loops', 0)} "
                f"| {r['size'] / 1024:.1f} | {r['total_s']:.1f} | {_f(r.get('cpu_us'), '.0f')} "
                f"| {_f(_ratio(r.get('cpu_us'), r.get('ort_cpu_us')), '.2f')} "
                f"| {_f(versus, '.2f')} | {r['max_abs_error']:.2g} |")
        lines.append("")
    accuracy = results.get("accuracy") or []
    if accuracy:
        lines += ["### Accuracy of the trained presets", "",
                  "Each preset exported with the automatic recipe, calibrated on its training "
                  "split, evaluated on its test split (accuracy, or MSE for the forecaster).", "",
                  "| preset | mode | recipe | size (KB) | metric | Keras | TFLite | change | "
                  "to_tflite (s) | verified on |",
                  "|---|---|---|---:|---|---:|---:|---:|---:|---|"]
        for r in accuracy:
            if "error" in r:
                lines.append(f"| {r['preset']} | {r['mode']} | failed: {r['error']} ||||||||")
                continue
            lines.append(f"| {r['preset']} | {r['mode']} | {r['recipe']} | {r['size'] / 1024:.1f} "
                         f"| {r['metric']} | {r['keras']:.4f} | {r['tflite']:.4f} | {r['change']:+.4f} "
                         f"| {r['total_s']:.1f} | {r['verification']} |")
        lines.append("")
    profile = results.get("profile") or []
    if profile:
        groups = [name for name, _ in PROFILE_GROUPS] + ["other"]
        lines += ["### Where the time goes", "",
                  "`perf record` while each file runs in a loop; CPU time of the LiteRT "
                  "process by kernel function, grouped (percent of the time spent outside the "
                  "Python harness; the harness's own share in the last column).", "",
                  "| file | " + " | ".join(groups) + " | harness |",
                  "|---|" + "---:|" * (len(groups) + 1)]
        for r in profile:
            if "error" in r:
                lines.append(f"| {r['form']} | {r['error']} |" + " |" * len(groups))
                continue
            lines.append(f"| {r['form']} (T={r['T']}) | " + " | ".join(
                _f(r.get(g), ".0f", "0") for g in groups) + f" | {r.get('harness_share', 0):.0f} |")
        lines.append("")
    lines.append(targets(results))
    return "\n".join(lines)


def targets(results):
    """Where the targets stand, read from the rows."""
    out = ["### Targets", ""]
    reference = [r for r in results.get("reference") or [] if "error" not in r]

    def ratios(key):
        return {r["T"]: _ratio(r.get("cpu_us"), r.get("ort_cpu_us")) for r in reference
                if r["key"] == key and r.get("ort_cpu_us")}

    def show(values):
        return ", ".join(f"T={t}: {v:.2f}x" for t, v in sorted(values.items()))

    for key, target, label in (("float32 auto", TARGETS["float32_vs_ort"], "float32 full sequence vs ORT"),
                               ("int8 auto", TARGETS["int8_vs_ort"], "int8 full sequence vs ORT"),
                               ("int8 step", TARGETS["step_vs_ort"], "int8 streaming step x T vs ORT")):
        values = ratios(key)
        if values:
            met = all(v <= target for v in values.values())
            out.append(f"- {label} (target <= {target}x): {show(values)} — "
                       f"{'met' if met else 'missed'}")
    values = ratios("dynamic auto")
    if values:
        # Not a target of its own: float activations with int8 weights, the mode between
        # float32 and int8 (each product's input is quantized on the fly at run time).
        out.append(f"- dynamic-range full sequence vs ORT (int8 weights, float activations; "
                   f"no target of its own): {show(values)}")
    sizes = {r["T"]: r["size_vs_loop"] for r in reference if r["key"] == "int8 auto" and "size_vs_loop" in r}
    variant_sizes = {f"{r['variant']} T={r['T']}": r["size_vs_loop"]
                     for r in results.get("variants") or []
                     if r.get("key") == "int8 auto" and "size_vs_loop" in r}
    if sizes:
        met = all(v <= TARGETS["int8_size_vs_loop"] for v in sizes.values())
        out.append(f"- int8 size / float32 loop, reference model (target <= "
                   f"{TARGETS['int8_size_vs_loop']}x): {show(sizes)} — {'met' if met else 'missed'}")
    if variant_sizes:
        missed = {k: v for k, v in variant_sizes.items() if v > TARGETS["int8_size_vs_loop"]}
        out.append(f"- int8 size / float32 loop, every variant: {min(variant_sizes.values()):.2f}-"
                   f"{max(variant_sizes.values()):.2f}x; over {TARGETS['int8_size_vs_loop']}x: "
                   + (", ".join(f"{k} {v:.2f}x" for k, v in missed.items()) or "none"))
    totals = [(r["total_s"], f"{r.get('variant')} T={r['T']} {r['key']}")
              for r in (results.get("reference") or []) + (results.get("variants") or [])
              if "total_s" in r and r["T"] <= 200 and "auto" in r["key"]]
    if totals:
        slow = [name for seconds, name in totals if seconds > TARGETS["convert_s"]]
        out.append(f"- whole `to_tflite` call, automatic recipe, T <= 200 (target <= "
                   f"{TARGETS['convert_s']:.0f} s): {min(totals)[0]:.1f}-{max(totals)[0]:.1f} s; "
                   f"over {TARGETS['convert_s']:.0f} s: {', '.join(slow) or 'none'} (the first "
                   "call of a process also starts the conversion server, which imports TensorFlow)")
    for mode in ("int8", "dynamic"):
        accuracy = [r for r in results.get("accuracy") or []
                    if r.get("mode") == mode and "change" in r]
        if accuracy:
            parts = [f"{r['preset']} {r['change']:+.4f} ({r['metric']})" for r in accuracy]
            out.append(f"- {mode} accuracy change on the trained presets (target within "
                       f"{TARGETS['accuracy_points'] * 100:.1f} points): " + "; ".join(parts))
    return "\n".join(out)


def write_markdown(text, path):
    section = f"{BEGIN}\n## Export (`benchmarks/bench_export.py`)\n\n{text}\n{END}\n"
    if path.exists():
        current = path.read_text()
        if BEGIN in current and END in current:
            head, rest = current.split(BEGIN, 1)
            tail = rest.split(END, 1)[1].lstrip("\n")
            path.write_text(head + section + ("\n" + tail if tail else ""))
            return
        path.write_text(current.rstrip("\n") + "\n\n" + section)
    else:
        path.write_text("# Benchmarks\n\n" + section)


def cpu_info():
    """`(model name, set of flags)` of the first CPU in /proc/cpuinfo (empty off Linux)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def machine_description():
    """The machine in words: architecture, CPU model and the vector and matrix extensions
    that change which kernels XNNPACK and ONNX Runtime run (the ratios move with them)."""
    model, flags = cpu_info()
    notable = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"),
                                       ("AVX-512 VNNI", "avx512_vnni"), ("AMX", "amx_int8"))
               if flag in flags]
    cpu = model or platform.processor() or "unknown CPU"
    return (f"{platform.machine()}, {cpu}" + (f" ({', '.join(notable)})" if notable else "")
            + f", {os.cpu_count()} CPUs, Python {platform.python_version()}")


def code_version():
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "export", "zoo",
                                "benchmarks/bench_export.py"], cwd=ROOT, text=True,
                               capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" with uncommitted changes" if dirty.strip() else "")


def record_rerun(meta, rerun):
    """Adds `rerun` (a run of some sections, `--update`) to the reruns of `meta`, the
    report's header. Each section is listed under the last run that measured it: older
    reruns keep only the sections no later run replaced, and go once they keep none."""
    replaced = set(rerun["sections"])
    kept = [dict(old, sections=[s for s in old["sections"] if s not in replaced])
            for old in meta.get("reruns", [])]
    meta["reruns"] = [old for old in kept if old["sections"]] + [
        {k: rerun[k] for k in ("sections", "command", "date", "code", "load")}]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--variants", default=None, help="comma-separated (default: all)")
    parser.add_argument("--sections",
                        default="probe,reference,variants,segments,accuracy,profile")
    parser.add_argument("--quick", action="store_true",
                        help="T = 16, 50; stacked and attention; no probe beyond T=50")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "bench_export_results.json"))
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-write", action="store_true",
                        help="print only: write neither --json nor --markdown")
    parser.add_argument("--render", help="re-render BENCHMARKS.md from a results JSON")
    parser.add_argument("--update", action="store_true",
                        help="rerun only --sections, keeping the other sections of --json "
                             "(the rerun is dated in the report)")
    args = parser.parse_args(argv)
    if args.render:
        text = render(json.loads(pathlib.Path(args.render).read_text()))
        print(text)
        if not args.no_write:
            write_markdown(text, pathlib.Path(args.markdown))
        return 0

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import zoo

    lengths = [int(v) for v in args.lengths.split(",")]
    variants = args.variants.split(",") if args.variants else list(zoo.VARIANTS)
    probe_lengths = [t for t in PROBE_LENGTHS if t <= max(lengths)]
    variant_lengths = [t for t in VARIANT_LENGTHS if t in lengths] or lengths[:1]
    if args.quick:
        lengths, variants, probe_lengths, variant_lengths = [16, 50], ["stacked", "attention"], [16, 50], [50]
    sections = args.sections.split(",")
    results = {"meta": {
        "command": "python " + " ".join(["benchmarks/bench_export.py"] + [
            a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-write"]),
        "machine": f"{machine_description()}, TF {tf.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "code": code_version(),
    }}
    json_path = pathlib.Path(args.json)
    if args.update and json_path.exists():
        previous = json.loads(json_path.read_text())
        rerun = dict(results["meta"], sections=sections)
        results = {k: v for k, v in previous.items() if k not in sections}
        record_rerun(results["meta"], rerun)

    def save():
        if not args.no_write:  # a print-only run must not replace the recorded results
            json_path.write_text(json.dumps(results, indent=1, default=float))

    def log(row):
        print(json.dumps({k: v for k, v in row.items() if k not in ("structure", "notes")},
                         default=float), flush=True)
        save()

    with tempfile.TemporaryDirectory(prefix="gru_zoo_bench_") as workdir:
        if "probe" in sections:
            results["probe"] = []
            results["probe"] = probe_xnnpack(workdir, log, probe_lengths)
        if "reference" in sections:
            results["reference"] = reference_rows(workdir, log, lengths, step_done=False)
        if "variants" in sections:
            results["variants"] = variant_rows(workdir, log, variants, variant_lengths)
        if "segments" in sections:
            results["segments"] = segment_rows(
                workdir, log, [v for v in SEGMENT_VARIANTS if v in variants], SEGMENT_LENGTHS)
        if "accuracy" in sections:
            results["accuracy"] = accuracy_rows(workdir, log)
        if "profile" in sections:
            results["profile"] = profile_rows(workdir, log)
    if not args.update:
        results["meta"]["load_end"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    save()
    text = render(results)
    print(text)
    if not args.no_write:
        write_markdown(text, pathlib.Path(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())

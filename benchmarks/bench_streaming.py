"""Streaming benchmark: what `causal=True` costs in accuracy and what the step files cost.

Five parts, each saving its numbers under `benchmarks/results/streaming/`; every run
rewrites the section "Streaming" of BENCHMARKS.md from all saved parts.

- `accuracy`: GRU-FCN (the GunPoint recipe, also run on ItalyPowerDemand) and each
  dataset's own recipe, trained with `causal=False` and `causal=True` on the same seeds
  (`zoo.compare.compare` with the `full` budget: the dataset's recipe, fit on
  train+val, cosine decay); test accuracy mean ± std. The trained causal GRU-FCN of the
  first GunPoint seed is kept for `drift`.
- `files`: every non-bidirectional variant built with `causal=True` (tiny-to-small
  reference sizes below, untrained weights), exported with `to_tflite(streaming=True)`
  in float32, int8 and int16x8: file size, TFLite Micro arena, max error vs Keras, and
  the median per-frame latency of one `invoke` in Python (`LiteModel`, the signature
  runner with the states fed back) and in the `litert-benchmark` console script shipped
  with ai-edge-litert (`--num_threads=1`, its median: a Python script that times each call
  of the C++ compiled-model runtime).
- `drift`: the trained causal GRU-FCN's step files (int8, int16x8) streamed over the
  150 frames of every GunPoint test series: error against Keras per frame (max and
  mean over series), and the test accuracy of the last frame's output.
- `kv_drift`: per-step causal self-attention (`task="sequence_labeling"`, additive
  attention, untrained, T=150: a key/value cache of 150 frames) streamed over every
  GunPoint test series in float32, int8 and int16x8 (calibrated on the training
  series): error against the full-sequence Keras model per frame, as the cache fills.
- `window_norm`: one-layer GRU(32) models with a causal window normalization
  (`build_gru("stacked", window_norm=..., causal=True)`), trained here on ItalyPowerDemand
  (`"meanstd"`) and airline passengers (`"mean"` and `"meanstd"`), exported in int16x8 as
  a full-sequence file (unrolled, its running statistics computed step by step:
  `export.recipes.UnrolledWindowNormalization`) and as a streaming step file, and in int8
  (which keeps the normalization float): test metric of each file against Keras's.

Run:
    python benchmarks/bench_streaming.py accuracy --seeds 3   # trains (CPU minutes)
    python benchmarks/bench_streaming.py files [--models "attention, per-step" ...]
    python benchmarks/bench_streaming.py drift
    python benchmarks/bench_streaming.py kv_drift
    python benchmarks/bench_streaming.py window_norm [--seeds 1]   # trains (CPU minutes)
    python benchmarks/bench_streaming.py render               # rewrite the section only
"""

import argparse
import json
import os
import pathlib
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

RESULTS = ROOT / "benchmarks" / "results" / "streaming"
RUNS = ROOT / "runs" / "streaming"
BEGIN, END = "<!-- streaming-benchmark:begin -->", "<!-- streaming-benchmark:end -->"
DRIFT_MODEL = RUNS / "gunpoint_causal" / "runs" / "gru_fcn_gru_seed0" / "model.keras"


def _save(part, payload):
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = _load(part) or {}
    if "notes" in previous and "notes" not in payload:
        # The reading of the numbers, written by hand in the JSON file: kept across
        # reruns (check it still matches the new numbers).
        payload = dict(payload, notes=previous["notes"])
    from bench_export import machine_description  # (bench_export imports this module)

    payload = dict(payload, machine=f"{machine_description()} (shared)",
                   date=time.strftime("%Y-%m-%d"))
    (RESULTS / f"{part}.json").write_text(json.dumps(payload, indent=1, default=float))


def _load(part):
    path = RESULTS / f"{part}.json"
    return json.loads(path.read_text()) if path.exists() else None


# === Accuracy: causal=True against causal=False ===


ACCURACY_PLANS = [("gunpoint", "gru_fcn"), ("italy_power_demand", "gru_fcn"),
                  ("italy_power_demand", "stacked"), ("airline_passengers", "stacked")]


def accuracy(seeds, datasets=None):
    from zoo.compare import compare

    saved = _load("accuracy") or {"rows": []}
    rows = saved["rows"]
    plans = [plan for plan in ACCURACY_PLANS if datasets is None or plan[0] in datasets]
    for dataset, variant in plans:
        for causal in (True, False):
            out = RUNS / f"{dataset}_{variant}_{'causal' if causal else 'centred'}"
            if dataset == "gunpoint" and causal:
                out = DRIFT_MODEL.parents[2]
            started = time.perf_counter()
            result = compare(dataset, cells=["gru"], variants=[variant], seeds=seeds,
                             budget="full", out_dir=out, tflite=False, causal=causal)
            seconds = time.perf_counter() - started
            metric = result.metric
            # a run whose training diverged is recorded as failed (NaN): not averaged
            failed = [run for run in result.runs if run.get("status", "ok") != "ok"]
            if failed:
                raise RuntimeError(f"{dataset} {variant}: {len(failed)} run(s) failed: "
                                   + "; ".join(run["status"] for run in failed))
            scores = [run[f"test_{metric}"] for run in result.runs]
            rows = [r for r in rows if (r["dataset"], r["variant"], r["causal"])
                    != (dataset, variant, causal)]
            rows.append({
                "dataset": dataset, "variant": variant, "causal": causal,
                "seeds": list(range(seeds)), "metric": metric, "scores": scores,
                "mean": float(np.mean(scores)), "std": float(np.std(scores)),
                "epochs": result.budget["epochs"], "seconds_per_run": seconds / seeds,
                "call": (f"compare({dataset!r}, cells=['gru'], variants=[{variant!r}], "
                         f"seeds={seeds}, budget='full', causal={causal})"),
            })
            print(rows[-1])
            _save("accuracy", {"rows": rows})
    return rows


# === Step files: size, TFLite Micro arena, per-frame latency ===

TIME, FEATURES, CLASSES = 50, 8, 4
# Reference sizes: the export benchmark's 2 x GRU(64) body with the builder's defaults
# (one Conv1D of 64 filters, kernel 5; additive attention), and the GunPoint recipe.
FILE_MODELS = {
    "stacked": dict(variant="stacked"),
    "attention": dict(variant="attention"),
    "cnn_gru": dict(variant="cnn_gru"),
    "cnn_gru, pool 2": dict(variant="cnn_gru", pool_size=2),
    "cnn_gru_attention": dict(variant="cnn_gru_attention"),
    "gru_fcn": dict(variant="gru_fcn"),
    # Per-step tasks: causal self-attention with a key/value cache of the T=50 frames.
    "attention, per-step": dict(variant="attention", task="sequence_labeling"),
    "attention multihead, per-step": dict(variant="attention", attention="multihead",
                                          task="sequence_labeling"),
    "cnn_gru_attention, per-step": dict(variant="cnn_gru_attention",
                                        task="sequence_labeling"),
    "gru_fcn, GunPoint recipe": dict(
        variant="gru_fcn", units=8, num_layers=1, conv_layers=3, conv_filters=[128, 256, 128],
        conv_kernel_size=[8, 5, 3], conv_batchnorm=True, input_shape=(150, 1), num_outputs=2),
}
MODES = (None, "int8", "int16x8")


def median_us(function, runs=2000, warmup=200):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def python_invoke_us(path):
    """Median µs of one `invoke()` of the step file in the Python LiteRT interpreter
    (inputs set once: a frame costs the same whatever the values)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return median_us(interpreter.invoke)


def cpp_invoke_us(path, runs=3000):
    """Per-frame µs in LiteRT's C++ runtime (the `CompiledModel` API, one CPU thread).

    Returns `(median, script_median)`: the median of `run_by_name` timed here
    (`compiled_model_us`), and the median that the `litert-benchmark` console script of
    ai-edge-litert reports for the same file and runtime (its JSON rounds to 10 µs, too
    coarse for one frame alone).
    """
    median = compiled_model_us(path, runs)
    binary = shutil.which("litert-benchmark") or str(pathlib.Path(sys.executable).parent
                                                     / "litert-benchmark")
    with tempfile.TemporaryDirectory() as scratch:
        out = pathlib.Path(scratch) / "result.json"
        subprocess.run([binary, "--model", str(path), "--num_threads", "1", "--num_runs",
                        str(runs), "--warmup_runs", "200", "--result_json", str(out)],
                       check=True, capture_output=True)
        report = json.loads(out.read_text())
    return median, report["latency"]["median_ms"] * 1e3


def compiled_model_us(path, runs=3000):
    """Median µs of one `CompiledModel.run_by_name` of the file (one CPU thread): the
    call the `litert-benchmark` script times, unrounded."""
    return median_us(compiled_runner(path), runs=runs)


def compiled_runner(path, **cpu_options):
    """A callable running the file once on zeros through LiteRT's `CompiledModel` (one
    CPU thread; `cpu_options`: more `CpuOptions`, e.g. `xnnpack_weight_cache_path`)."""
    from ai_edge_litert.compiled_model import (CompiledModel, CpuOptions, Environment,
                                               EnvironmentOptions, HardwareAccelerator,
                                               Options)

    environment = Environment.create(options=EnvironmentOptions())
    model = CompiledModel.from_file(
        str(path), environment=environment,
        options=Options(hardware_accelerators=HardwareAccelerator.CPU,
                        cpu_options=CpuOptions(num_threads=1, **cpu_options)))
    signature = list(model.get_signature_list())[0]
    inputs = {name: model.create_input_buffer_by_name(signature, name)
              for name in model.get_input_tensor_details(signature)}
    outputs = {name: model.create_output_buffer_by_name(signature, name)
               for name in model.get_output_tensor_details(signature)}
    for name, detail in model.get_input_tensor_details(signature).items():
        inputs[name].write(np.zeros(detail["shape"], np.float32))
    return lambda: model.run_by_name(signature, inputs, outputs)


def files(models=None):
    """Exports and measures the `FILE_MODELS` (only those named in `models`, the saved
    rows of the others kept), saving after each file."""
    import zoo
    from export import to_tflite

    unknown = sorted(set(models or ()) - set(FILE_MODELS))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {list(FILE_MODELS)}")
    saved = _load("files") or {"rows": []}
    # Rows saved before rows had a date of their own were measured on the file's date.
    kept = [dict(r, date=r.get("date", saved.get("date"))) for r in saved["rows"]
            if models is not None and r["model"] not in models]
    rows = []

    def save():
        order = list(FILE_MODELS)
        merged = sorted(kept + rows, key=lambda r: (order.index(r["model"])
                                                   if r["model"] in order else len(order)))
        _save("files", {"rows": merged})

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        for name, options in FILE_MODELS.items():
            if models is not None and name not in models:
                continue
            options = dict(options)
            shape = options.pop("input_shape", (TIME, FEATURES))
            classes = options.pop("num_outputs", CLASSES)
            zoo.set_seed(0)
            model = zoo.build_gru(input_shape=shape, num_outputs=classes, causal=True,
                                  **options)
            x = rng.standard_normal((64,) + tuple(shape)).astype(np.float32)
            for mode in MODES:
                path = pathlib.Path(scratch) / f"{len(rows)}.tflite"
                result = to_tflite(model, path, streaming=True, quantization=mode,
                                   representative_data=x if mode else None,
                                   verification_data=x[:8])
                python_us = python_invoke_us(path)
                cpp_median, script_median = cpp_invoke_us(path)
                rows.append({
                    "model": name, "mode": mode or "float32", "params": model.count_params(),
                    "time": shape[0], "states": len(result.metadata["states"]),
                    "state_values": int(sum(np.prod(s["shape"])
                                            for s in result.metadata["states"])),
                    "size": result.size, "arena": result.tflm["arena_bytes"],
                    "tflm_runs": result.tflm["runs"], "max_error": result.max_abs_error,
                    "tflm_max_error": result.tflm["max_abs_error"],
                    "python_us": python_us, "cpp_us": cpp_median,
                    "script_median_us": script_median, "date": time.strftime("%Y-%m-%d"),
                })
                print(rows[-1])
                save()
    return rows


# === Drift of quantized step files on real data ===


def _keras_per_frame(model, x):
    """The float Keras step model streamed over `x`: the output after every frame."""
    from export import streaming

    step = streaming.build_step_model(model, batch_size=None)
    states = {name: np.zeros((len(x),) + tuple(step.input[name].shape[1:]), np.float32)
              for name in step.input if name != "frame"}
    outputs = []
    for t in range(x.shape[1]):
        result = step({"frame": x[:, t], **states}, training=False)
        states = {name: np.asarray(result[f"new_{name}"]) for name in states}
        outputs.append(np.asarray(result["output"]))
    return np.stack(outputs, axis=1)


def drift():
    import keras

    import zoo
    from export import LiteModel, to_tflite

    model = keras.saving.load_model(DRIFT_MODEL, compile=False)
    data = zoo.load_dataset("gunpoint")
    x_cal = np.concatenate([data.x_train, data.x_val]).astype(np.float32)
    x_test, y_test = np.asarray(data.x_test, np.float32), np.asarray(data.y_test)
    reference = _keras_per_frame(model, x_test)          # (series, frames, classes)
    full = np.asarray(model.predict(x_test, verbose=0))
    rows, peers = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for mode in (None, "int8", "int16x8"):
            path = pathlib.Path(scratch) / f"{mode or 'float32'}.tflite"
            result = to_tflite(model, path, streaming=True, quantization=mode,
                               representative_data=x_cal if mode else None,
                               verification_data=x_test[:8],
                               validation_data=(x_test, y_test), tolerance=10.0)
            lite = LiteModel(path)
            start = time.perf_counter()
            streamed = np.stack([lite.stream(series) for series in x_test])
            seconds = time.perf_counter() - start
            error = np.abs(streamed - reference)          # per series, frame, class
            per_frame_max = error.max(axis=(0, 2))
            per_frame_mean = error.mean(axis=(0, 2))
            accuracy = float(np.mean(np.argmax(streamed[:, -1], -1) == y_test))
            rows.append({
                "mode": mode or "float32", "size": result.size,
                "arena": result.tflm["arena_bytes"] if result.tflm else None,
                "tflm_runs": bool(result.tflm and result.tflm["runs"]),
                "max_error_vs_full": float(np.abs(streamed[:, -1] - full).max()),
                "per_frame_max": per_frame_max.tolist(),
                "per_frame_mean": per_frame_mean.tolist(),
                "accuracy": accuracy,
                "keras_accuracy": float(np.mean(np.argmax(full, -1) == y_test)),
                "python_us_per_frame": seconds / x_test.size * 1e6 * x_test.shape[-1],
            })
            print({k: v for k, v in rows[-1].items() if not k.startswith("per_frame")})
        # The full-sequence file of the same mode and calibration, as the peer: how much
        # of the error is quantization itself rather than state carried over frames.
        for mode in ("int8", "int16x8"):
            path = pathlib.Path(scratch) / f"full_{mode}.tflite"
            result = to_tflite(model, path, quantization=mode, representative_data=x_cal,
                               verification_data=x_test[:8],
                               validation_data=(x_test, y_test), tolerance=10.0)
            outputs = LiteModel(path).predict(x_test)
            peers.append({
                "mode": mode, "recipe": result.recipe, "size": result.size,
                "max_error_vs_full": float(np.abs(outputs - full).max()),
                "mean_error_vs_full": float(np.abs(outputs - full).mean()),
                "accuracy": float(np.mean(np.argmax(outputs, -1) == y_test)),
            })
            print(peers[-1])
    _save("drift", {"rows": rows, "peers": peers, "series": len(x_test),
                    "frames": int(x_test.shape[1]), "calibration_series": len(x_cal),
                    "model": str(DRIFT_MODEL.relative_to(ROOT)),
                    "params": int(model.count_params())})


def kv_drift():
    """Per-step self-attention's key/value cache over 150 real frames: does the error
    of the quantized step files grow as the cache fills? (Untrained weights: no
    per-step task ships with the project; the error against Keras is what is measured.)"""
    import zoo
    from export import LiteModel, to_tflite

    data = zoo.load_dataset("gunpoint")
    x_cal = np.concatenate([data.x_train, data.x_val]).astype(np.float32)
    x_test = np.asarray(data.x_test, np.float32)
    zoo.set_seed(0)
    model = zoo.build_gru("attention", input_shape=x_test.shape[1:], num_outputs=2,
                          causal=True, task="sequence_labeling")
    reference = np.asarray(model.predict(x_test, verbose=0))  # (series, frames, classes)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for mode in MODES:
            path = pathlib.Path(scratch) / f"{mode or 'float32'}.tflite"
            result = to_tflite(model, path, streaming=True, quantization=mode,
                               representative_data=x_cal if mode else None,
                               verification_data=x_test[:8], tolerance=10.0)
            lite = LiteModel(path)
            streamed = np.stack([lite.stream(series) for series in x_test])
            error = np.abs(streamed - reference)
            rows.append({
                "mode": mode or "float32", "size": result.size,
                "arena": result.tflm["arena_bytes"], "tflm_runs": result.tflm["runs"],
                "tflm_max_error": result.tflm["max_abs_error"],
                "per_frame_max": error.max(axis=(0, 2)).tolist(),
                "per_frame_mean": error.mean(axis=(0, 2)).tolist(),
            })
            print({k: v for k, v in rows[-1].items() if not k.startswith("per_frame")})
    _save("kv_drift", {"rows": rows, "series": len(x_test), "frames": int(x_test.shape[1]),
                       "calibration_series": len(x_cal),
                       "params": int(model.count_params()),
                       "states": result.metadata["states"]})


# (dataset, window normalization mode, epochs): trained with `model.fit` on the training
# split, batch 16, the validation split watched; calibration on the training split.
WINDOW_NORM_PLANS = [("italy_power_demand", "meanstd", 150), ("airline_passengers", "mean", 300),
                     ("airline_passengers", "meanstd", 300)]


def window_norm(seeds):
    import keras

    import zoo
    from export import to_tflite

    rows = []
    for dataset, mode, epochs in WINDOW_NORM_PLANS:
        data = zoo.load_dataset(dataset)
        for seed in range(seeds):
            keras.utils.set_random_seed(seed)
            model = zoo.build_gru(
                "stacked", input_shape=data.x_train.shape[1:], task=data.task,
                num_outputs=data.num_outputs, units=32, num_layers=1, window_norm=mode,
                causal=True)
            model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=16, verbose=0,
                      validation_data=(data.x_val, data.y_val))
            row = {"dataset": dataset, "mode": mode, "seed": seed, "epochs": epochs,
                   "params": int(model.count_params()), "files": {}}
            with tempfile.TemporaryDirectory() as scratch:
                for name, options in (("int16x8 full", {"quantization": "int16x8"}),
                                      ("int16x8 step", {"quantization": "int16x8",
                                                        "streaming": True}),
                                      ("int8 full", {"quantization": "int8"})):
                    result = to_tflite(model, pathlib.Path(scratch) / "f.tflite",
                                       representative_data=data.x_train,
                                       validation_data=(data.x_test, data.y_test),
                                       **options)
                    row["metric"] = result.evaluation["metric"]
                    row["keras"] = result.evaluation["keras"]
                    row["files"][name] = {"recipe": result.recipe, "size": result.size,
                                          "value": result.evaluation["tflite"],
                                          "max_error": float(result.max_abs_error)}
            rows.append(row)
            print(row)
    _save("window_norm", {"rows": rows})


def _kb(value):
    return "-" if value is None else f"{value / 1024:.1f}"


def render():
    sections = ["## Streaming (`benchmarks/bench_streaming.py`)", ""]
    sections.append(
        "Models built with `build_gru(..., causal=True)` run one frame at a time: "
        "`to_tflite(model, path, streaming=True)` writes a step file whose inputs are the "
        "frame and named states (each causal convolution's last `(kernel_size - 1) * "
        "dilation` input frames, the running mean of global average pooling, the running "
        "softmax of attention pooling, the recurrent states, the max-pooling window, the "
        "key/value cache of per-step causal self-attention), "
        "verified frame by frame against the full-sequence Keras model in LiteRT and in "
        "TFLite Micro.")
    sections.append("")
    acc = _load("accuracy")
    if acc:
        seeds = acc["rows"][0]["seeds"]
        sections += [
            "### Accuracy: `causal=True` vs `causal=False`", "",
            f"`python benchmarks/bench_streaming.py accuracy --seeds {len(seeds)}` "
            f"({acc['machine']}, {acc['date']}). Each row is `zoo.compare.compare(dataset, "
            "cells=['gru'], variants=[variant], budget='full', causal=...)`: the dataset's "
            "recipe with only `causal` changed (GRU-FCN is the GunPoint recipe, also run on "
            f"ItalyPowerDemand), test metric over seeds {seeds}, mean ± std.", "",
            "| dataset | variant | metric | causal=False | causal=True | change | epochs "
            "| s per run |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
        by_key = {(r["dataset"], r["variant"], r["causal"]): r for r in acc["rows"]}
        for (dataset, variant, causal), row in by_key.items():
            other = by_key.get((dataset, variant, not causal))
            if causal or other is None:
                continue
            sections.append(
                f"| {dataset} | {variant} | {row['metric']} | {row['mean']:.4f} ± "
                f"{row['std']:.4f} | {other['mean']:.4f} ± {other['std']:.4f} | "
                f"{other['mean'] - row['mean']:+.4f} | {row['epochs']} | "
                f"{0.5 * (row['seconds_per_run'] + other['seconds_per_run']):.0f} |")
        sections.append("")
        if acc.get("notes"):
            sections += [acc["notes"], ""]
    found = _load("files")
    if found:
        sections += [
            "### Step files: size, TFLite Micro arena, per-frame latency", "",
            f"`python benchmarks/bench_streaming.py files` ({found['machine']}, "
            f"{', '.join(sorted({r.get('date', found['date']) for r in found['rows']}))}"
            f"; `--models` reruns some rows). Untrained `causal=True` models, {FEATURES} "
            "features and "
            f"{CLASSES} classes at the export benchmark's size (2 x GRU(64); Conv1D 64 "
            f"filters, kernel 5; additive attention; T={TIME}: the per-step rows cache "
            f"{TIME} frames) and the GunPoint recipe (1 feature, T=150). Latency of one "
            "frame, one thread, median: the Python LiteRT "
            "interpreter's `invoke()` and the C++ runtime through ai-edge-litert's "
            "`CompiledModel` (what its `litert-benchmark` console script runs; the "
            "script's own median, rounded to 10 µs in its JSON, in the last column). Arena: "
            "TFLite Micro's allocation for the file. Max error: the file streamed against "
            "the full-sequence Keras model.", "",
            "| model | mode | params | states (values) | size (KB) | TFLM arena (KB) | "
            "max error | Python µs/frame | C++ µs/frame | litert-benchmark |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in found["rows"]:
            sections.append(
                f"| {r['model']} | {r['mode']} | {r['params']} | {r['states']} "
                f"({r['state_values']}) | {_kb(r['size'])} | {_kb(r['arena'])} | "
                f"{r['max_error']:.2g} | {r['python_us']:.1f} | {r['cpp_us']:.1f} | "
                f"{r['script_median_us']:.0f} |")
        sections.append("")
    drifted = _load("drift")
    if drifted:
        frames = drifted["frames"]
        marks = [1, 10, 50, 100, frames]
        sections += [
            "### Drift over 150 frames on GunPoint", "",
            f"`python benchmarks/bench_streaming.py drift` ({drifted['machine']}, "
            f"{drifted['date']}). The causal GRU-FCN trained by the accuracy part (seed 0, "
            f"{drifted['params']} parameters), exported with `streaming=True`; int8 and "
            f"int16x8 calibrated on float rollouts of the {drifted['calibration_series']} "
            "training series. Each file streams the "
            f"{drifted['series']} test series of {frames} frames; the error is |file - Keras "
            "step model| of the class probabilities after each frame (max over series and "
            "classes); accuracy from the output after the last frame.", "",
            "| mode | size (KB) | TFLM arena (KB) | accuracy (Keras) | "
            + " | ".join(f"max error @{m}" for m in marks)
            + " | max over frames | mean | LiteModel.stream µs/frame |",
            "|---|---:|---:|---:|" + "---:|" * (len(marks) + 3)]
        for r in drifted["rows"]:
            sections.append(
                f"| {r['mode']} | {_kb(r['size'])} | {_kb(r['arena'])} | "
                f"{r['accuracy']:.4f} ({r['keras_accuracy']:.4f}) | "
                + " | ".join(f"{r['per_frame_max'][m - 1]:.2g}" for m in marks)
                + f" | {max(r['per_frame_max']):.2g} | "
                f"{float(np.mean(r['per_frame_mean'])):.2g} | {r['python_us_per_frame']:.0f} |")
        sections.append("")
        if drifted.get("peers"):
            sections += [
                "The full-sequence files (recipe `unrolled`) of the same model, modes and "
                "calibration, as the peer: error of the class probabilities against Keras on "
                "the same test series.", "",
                "| full-sequence mode | size (KB) | accuracy | max error | mean error |",
                "|---|---:|---:|---:|---:|"]
            for r in drifted["peers"]:
                sections.append(f"| {r['mode']} | {_kb(r['size'])} | {r['accuracy']:.4f} | "
                                f"{r['max_error_vs_full']:.2g} | "
                                f"{r['mean_error_vs_full']:.2g} |")
            sections.append("")
        if drifted.get("notes"):
            sections += [drifted["notes"], ""]
    cached = _load("kv_drift")
    if cached:
        frames = cached["frames"]
        marks = [1, 10, 50, 100, frames]
        cache = {s["kind"]: s["shape"] for s in cached["states"]}
        sections += [
            f"### Key/value cache over {frames} frames on GunPoint", "",
            f"`python benchmarks/bench_streaming.py kv_drift` ({cached['machine']}, "
            f"{cached['date']}). Per-step causal self-attention: `build_gru('attention', "
            f"task='sequence_labeling', causal=True)` on GunPoint's shape ({frames} frames, "
            f"1 feature; {cached['params']} parameters, untrained), whose step file keeps "
            f"a cache of {cache['attention_values'][1]} frames (values "
            f"{cache['attention_values']}, validity {cache['attention_valid']}); int8 and "
            f"int16x8 calibrated on float rollouts of the {cached['calibration_series']} "
            f"training series. Each file streams the {cached['series']} test series; the "
            "error is |file - full-sequence Keras model| of the per-frame class "
            "probabilities (max over series and classes).", "",
            "| mode | size (KB) | TFLM arena (KB) | "
            + " | ".join(f"max error @{m}" for m in marks) + " | max over frames | mean |",
            "|---|---:|---:|" + "---:|" * (len(marks) + 2)]
        for r in cached["rows"]:
            sections.append(
                f"| {r['mode']} | {_kb(r['size'])} | {_kb(r['arena'])} | "
                + " | ".join(f"{r['per_frame_max'][m - 1]:.2g}" for m in marks)
                + f" | {max(r['per_frame_max']):.2g} | "
                f"{float(np.mean(r['per_frame_mean'])):.2g} |")
        sections.append("")
        if cached.get("notes"):
            sections += [cached["notes"], ""]
    normed = _load("window_norm")
    if normed:
        names = ("int16x8 full", "int16x8 step", "int8 full")
        sections += [
            "### int16x8 of a causal window normalization", "",
            f"`python benchmarks/bench_streaming.py window_norm` ({normed['machine']}, "
            f"{normed['date']}). One GRU(32) layer after `WindowNormalization(causal=True)`, "
            "trained here (`model.fit`, batch 16) and exported with `to_tflite` "
            "(calibrated on the training split, `validation_data` the test split). The "
            "full-sequence int16x8 file is unrolled and computes the running statistics "
            "step by step (`export.recipes.UnrolledWindowNormalization`: `CUMSUM` has no "
            "int16 kernel); int8 keeps the normalization float. Test metric (accuracy, or "
            "MSE for airline passengers) and largest output difference from Keras.", "",
            "| dataset | mode | seed | metric | Keras | "
            + " | ".join(names) + " | max error: " + " / ".join(names) + " | size (KB): "
            + " / ".join(names) + " |",
            "|---|---|---:|---|---:|" + "---:|" * len(names) + "---|---|"]
        for r in normed["rows"]:
            files_ = [r["files"][name] for name in names]
            sections.append(
                f"| {r['dataset']} | {r['mode']} | {r['seed']} | {r['metric']} | "
                f"{r['keras']:.4f} | " + " | ".join(f"{f['value']:.4f}" for f in files_)
                + " | " + " / ".join(f"{f['max_error']:.2g}" for f in files_) + " | "
                + " / ".join(_kb(f["size"]) for f in files_) + " |")
        sections.append("")
        if normed.get("notes"):
            sections += [normed["notes"], ""]
    text = "\n".join(sections).rstrip() + "\n"
    path = ROOT / "BENCHMARKS.md"
    content = path.read_text()
    block = f"{BEGIN}\n{text}{END}"
    if BEGIN in content:
        head, rest = content.split(BEGIN, 1)
        content = head + block + rest.split(END, 1)[1]
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    path.write_text(content)
    print(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["accuracy", "files", "drift", "kv_drift",
                                            "window_norm", "render"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default=None,
                        help="accuracy: comma-separated datasets (default: all)")
    parser.add_argument("--models", action="append", default=None,
                        help="files: a FILE_MODELS name to rerun (repeatable; default: "
                        "all); the other saved rows are kept")
    args = parser.parse_args(argv)
    if args.part == "accuracy":
        accuracy(args.seeds, args.datasets.split(",") if args.datasets else None)
    elif args.part == "drift":
        drift()
    elif args.part == "kv_drift":
        kv_drift()
    elif args.part == "files":
        files(args.models)
    elif args.part == "window_norm":
        window_norm(args.seeds)
    render()


if __name__ == "__main__":
    main()

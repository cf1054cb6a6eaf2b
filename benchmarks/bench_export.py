"""Export benchmark: every zoo variant x quantization mode, with ONNX Runtime and Keras as peers.

Reference size (issue 3): 2 x GRU(64), 50 steps, 8 features, 4 classes, batch 1, one
thread. For each variant and mode: file size, conversion time, median latency on the
LiteRT interpreter, max error vs Keras; streaming step files: per-frame latency x 50.
In the same run: Keras `predict` and, for every variant, ONNX Runtime on a PyTorch twin
with the Keras weights copied (`benchmarks/torch_twins.py`: `nn.GRU` has the same
equations as `reset_after=True`; Conv1D and attention pooling are written out; its
outputs are checked against Keras). Latency ratios are ours divided by the peer's,
measured in this process, on this machine; ONNX Runtime is timed in alternating blocks
with each file, so both see the same load.

Accuracy change: each variant (same 2 x GRU(64) body) is trained briefly on the embedded
ItalyPowerDemand set (UCR; 24 steps, 1 feature, 2 classes) and exported in every mode;
the test accuracy of Keras and of each file is reported.

Run:
    pip install -e ".[bench]"
    python benchmarks/bench_export.py            # everything, writes BENCHMARKS.md
    python benchmarks/bench_export.py --quick    # stacked variant only, fewer runs
    python benchmarks/bench_export.py --render results.json   # rewrite the table only
    # latency rows again, keeping the accuracy rows of the committed results:
    python benchmarks/bench_export.py --no-accuracy --merge benchmarks/bench_export_results.json
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))  # torch_twins

TIME, FEATURES, UNITS, LAYERS, CLASSES = 50, 8, 64, 2, 4
MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
BEGIN, END = "<!-- export-benchmark:begin -->", "<!-- export-benchmark:end -->"
PEER_TOLERANCE = 1e-5  # float32 twins match Keras to ~1e-7; more means the twin is wrong


def median_us(function, runs, warmup=10):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


# === Peers ===


def paired_median_us(first, second, runs, blocks=25, warmup=10):
    """Median µs of two functions measured in alternating blocks of runs.

    On a shared machine the load drifts; alternating blocks give both functions the
    same conditions, so their ratio is steadier than that of two separate runs.
    """
    for _ in range(warmup):
        first()
        second()
    times = ([], [])
    per_block = max(1, runs // blocks)
    for _ in range(blocks):
        for function, out in zip((first, second), times):
            for _ in range(per_block):
                start = time.perf_counter()
                function()
                out.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e6, statistics.median(times[1]) * 1e6


def onnxruntime_peer(model, variant, inputs, workdir):
    """ONNX Runtime on the PyTorch twin (`benchmarks/torch_twins.py`) of `model`.

    Returns the session runner for batch-1 latency, the outputs on every sequence of
    `inputs` (run one at a time, batch 1) and the twin's own outputs, or `{"error"}`.
    """
    try:
        import onnxruntime  # noqa: F401
        import torch

        import torch_twins
    except ImportError as error:
        return {"error": f"{error} (pip install -e '.[bench]')"}
    try:
        twin = torch_twins.torch_twin(model)
    except NotImplementedError as error:
        return {"error": f"no PyTorch twin: {error}"}
    path = torch_twins.export_onnx(twin, inputs[:1], os.path.join(workdir, f"{variant}.onnx"))
    session = torch_twins.ort_session(path)
    outputs = np.concatenate([session.run(None, {"inputs": inputs[i:i + 1]})[0]
                              for i in range(len(inputs))])
    with torch.no_grad():
        torch_outputs = twin(torch.tensor(inputs)).numpy()
    x = inputs[:1]
    return {
        "run": lambda: session.run(None, {"inputs": x}),
        "outputs": outputs,
        "torch_outputs": torch_outputs,
        "ops": torch_twins.onnx_op_counts(path),
        "size": os.path.getsize(path),
    }


# === Benchmark ===


def file_structure(path):
    """Operators, tensors and constant bytes of a `.tflite` file, per subgraph and in all.

    `subgraph_ops` lists the operator count of each subgraph (a `loop` file: the main
    graph, then each `WHILE` loop's condition and body); `weight_bytes` is the size of
    the constant buffers, `quant_params` the number of scale/zero-point pairs.
    """
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
        "operators": sum(len(s.operators or []) for s in model.subgraphs),
        "tensors": sum(len(s.tensors or []) for s in model.subgraphs),
        "weight_bytes": sum(len(b.data) for b in model.buffers if b.data is not None),
        "quant_params": quant_params,
    }


def reference_model(variant, seed=0):
    import keras

    import zoo

    keras.utils.set_random_seed(seed)
    return zoo.build_gru(variant, input_shape=(TIME, FEATURES), num_outputs=CLASSES,
                         units=UNITS, num_layers=LAYERS, conv_filters=64, compile=False)


def keras_peer(model, x):
    """Median µs of Keras `predict`, `predict_on_batch` and an eager call, batch 1."""
    return (
        median_us(lambda: model.predict(x, verbose=0), 20, warmup=3),
        median_us(lambda: model.predict_on_batch(x), 50, warmup=5),
        median_us(lambda: model(x, training=False), 10, warmup=2),
    )


def update_keras_peers(rows, variants):
    """Re-measures the Keras peers of `variants` and writes them into their rows."""
    x = np.random.default_rng(0).standard_normal((1, TIME, FEATURES)).astype(np.float32)
    for variant in variants:
        keras_us, batch_us, call_us = keras_peer(reference_model(variant), x)
        for row in rows:
            if row["variant"] == variant and "latency_us" in row:
                row.update(keras_us=keras_us, keras_batch_us=batch_us, keras_call_us=call_us)


def bench_variant(variant, modes, runs, workdir, log, rows, extra_only=False):
    """Appends one row per (mode, streaming, recipe) plan of `variant` to `rows`."""
    from export import LiteModel, to_tflite

    model = reference_model(variant)
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((100, TIME, FEATURES)).astype(np.float32)
    x = calibration[:1]
    keras_out = np.asarray(model.predict(x, verbose=0))
    keras_all = np.asarray(model.predict(calibration, verbose=0))
    keras_us, keras_batch_us, keras_call_us = keras_peer(model, x)
    # ONNX Runtime: parity on all 100 calibration sequences (batch 1 each); its latency
    # is measured beside each file's, in alternating blocks (`paired_median_us`).
    peer = onnxruntime_peer(model, variant, calibration, workdir)
    if "outputs" in peer:
        peer["max_abs_vs_keras"] = float(np.abs(peer["outputs"] - keras_all).max())
        peer["torch_vs_keras"] = float(np.abs(peer["torch_outputs"] - keras_all).max())
        if peer["max_abs_vs_keras"] > PEER_TOLERANCE:  # a wrong twin gives no ratio
            peer = {"error": f"the ONNX twin differs from Keras: max abs error "
                             f"{peer['max_abs_vs_keras']:.2g} > {PEER_TOLERANCE:g}"}
    if "outputs" in peer:
        log({"variant": variant, "peer": "onnxruntime", "ort_vs_keras": peer["max_abs_vs_keras"],
             "torch_vs_keras": peer["torch_vs_keras"], "onnx_ops": peer["ops"]}, save_now=False)
    else:
        log({"variant": variant, "peer": "onnxruntime", **peer}, save_now=False)
    plans = [(mode, False, "auto") for mode in modes]
    if variant == "stacked":
        plans += [(mode, True, "auto") for mode in ("float32", "int8", "int16x8") if mode in modes]
        # The unrolled float32 file: bigger, but the faster float32 form.
        extra = [("float32", False, "unrolled")] if "float32" in modes else []
        plans = extra if extra_only else plans + extra
    elif extra_only:
        plans = []
    for mode, streaming, recipe in plans:
        quantization = None if mode == "float32" else mode
        path = os.path.join(workdir, f"{variant}_{mode}_{recipe}{'_step' if streaming else ''}.tflite")
        row = {"variant": variant, "mode": mode, "streaming": streaming, "plan": recipe}
        try:
            result = to_tflite(model, path, quantization=quantization,
                               representative_data=calibration, streaming=streaming,
                               verification_data=calibration[:4], recipe=recipe,
                               fallback=recipe == "auto")
        except Exception as error:  # noqa: BLE001 (a failed cell is a result too)
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            rows.append(row)
            log(row)
            continue
        lite = LiteModel(path, num_threads=1)
        ort_us = None
        if streaming:
            feed = dict(lite.initial_states(), frame=x[0, :1])
            runner = lite.runner()
            details = runner.get_input_details()
            from export.runtime import _quantize

            feed = {k: _quantize(v, details[k]) for k, v in feed.items()}
            if "run" in peer:
                step_us, ort_us = paired_median_us(lambda: runner(**feed), peer["run"], runs)
            else:
                step_us = median_us(lambda: runner(**feed), runs)
            latency = step_us * TIME
            row["step_us"] = step_us
        else:
            name = lite.input_names[0]
            runner = lite.runner()
            feed = {name: x}
            if "run" in peer:
                latency, ort_us = paired_median_us(lambda: runner(**feed), peer["run"], runs)
            else:
                latency = median_us(lambda: runner(**feed), runs)
        tflite_all = lite.predict(calibration)
        tflite_out = tflite_all[:1]
        row.update(
            size=result.size,
            recipe=result.recipe,
            convert_s=result.convert_seconds,
            total_s=result.total_seconds,
            latency_us=latency,
            max_abs_error=result.max_abs_error,
            error_this_input=float(np.abs(tflite_out - keras_out).max()),
            keras_us=keras_us,
            keras_batch_us=keras_batch_us,
            keras_call_us=keras_call_us,
            tflm=result.tflm,
            structure=file_structure(path),
        )
        if result.notes:
            row["notes"] = list(result.notes)
        if ort_us is not None:
            row["ort_us"] = ort_us
            row["ort_vs_keras"] = peer["max_abs_vs_keras"]
            row["torch_vs_keras"] = peer["torch_vs_keras"]
            row["ort_vs_tflite"] = float(np.abs(peer["outputs"] - tflite_all).max())
        elif "error" in peer:
            row["ort_error"] = peer["error"]
        rows.append(row)
        log(row)
    return rows


def accuracy_rows(variants, modes, workdir, log, epochs, rows):
    """Test accuracy of Keras vs each exported file on ItalyPowerDemand (appends to `rows`)."""
    import keras

    import zoo
    from export import to_tflite

    dataset = zoo.load_dataset("italy_power_demand")
    for variant in variants:
        keras.utils.set_random_seed(0)
        model = zoo.build_gru(variant, input_shape=dataset.input_shape,
                              num_outputs=dataset.num_outputs, units=UNITS,
                              num_layers=LAYERS, conv_filters=64, conv_kernel_size=3)
        model.fit(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val),
                  epochs=epochs, batch_size=16, verbose=0)
        plans = [(mode, False) for mode in modes]
        if variant == "stacked":
            plans += [(mode, True) for mode in ("float32", "int8", "int16x8") if mode in modes]
        for mode, streaming in plans:
            quantization = None if mode == "float32" else mode
            path = os.path.join(workdir, f"acc_{variant}_{mode}{'_step' if streaming else ''}.tflite")
            row = {"variant": variant, "mode": mode, "streaming": streaming}
            try:
                result = to_tflite(model, path, quantization=quantization,
                                   representative_data=dataset.x_train, streaming=streaming,
                                   validation_data=(dataset.x_test, dataset.y_test),
                                   check_tflm=False)
                row.update(keras=result.evaluation["keras"], tflite=result.evaluation["tflite"],
                           change=result.evaluation["change"], samples=result.evaluation["samples"],
                           max_abs_error=result.max_abs_error, recipe=result.recipe,
                           size=result.size)
                if result.notes:
                    row["notes"] = list(result.notes)
            except Exception as error:  # noqa: BLE001
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            rows.append(row)
            log(row)
    return rows


# === Report ===


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def _ratio(value, peer, spec=".2f"):
    return "—" if not peer else format(value / peer, spec) + "x"


def render(results):
    lines = []
    meta = results["meta"]
    accuracy_command = meta.get("accuracy_command", meta["command"])
    if results.get("accuracy") and accuracy_command != meta["command"]:
        lines.append(f"Command: `{meta['command']}` ({meta['date']}: the export and peer "
                     "tables); the accuracy rows come from "
                     f"`{accuracy_command}` ({meta.get('accuracy_date', '?')}) and were kept by "
                     "`--merge`. A plain `python benchmarks/bench_export.py` runs all of it, "
                     "with accuracy rows for every variant.  ")
    else:
        lines.append(f"Command: `{meta['command']}`  ")
    load_end = f", at the end {meta['load_end']}" if meta.get("load_end") else ""
    code = f"; code at commit {meta['code']}" if meta.get("code") else ""
    lines.append(f"Machine: {meta['machine']}; {meta['date']}{code}; load average at start "
                 f"{meta['load']}{load_end}. Batch 1, one thread everywhere (LiteRT `num_threads=1`, "
                 "ONNX Runtime intra/inter-op 1, TensorFlow intra/inter-op 1).  ")
    lines.append(f"Reference model: {LAYERS} x GRU({UNITS}), {TIME} steps, {FEATURES} features, "
                 f"{CLASSES} classes, untrained weights (CNN variants: one Conv1D(64, 5), "
                 "attention variants: additive attention pooling); calibration and "
                 "verification on random normal inputs. Latency: median of "
                 f"{meta['runs']} runs; each file's latency and ONNX Runtime's are measured "
                 "together, in alternating blocks of runs, and \"vs ORT\" is their ratio. "
                 f"Streaming rows: per-frame latency x {TIME}.")
    lines.append("")
    lines.append("| variant | mode | recipe | size (KB) | convert (s) | total (s) | latency (µs) "
                 "| vs ORT | vs Keras predict_on_batch | vs Keras predict | max err vs Keras |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results["rows"]:
        mode = row["mode"] + (" step" if row["streaming"] else "")
        if "error" in row:
            lines.append(f"| {row['variant']} | {mode} | failed: {row['error']} ||||||||")
            continue
        ort = row.get("ort_us")
        lines.append(
            f"| {row['variant']} | {mode} | {row['recipe']} | {row['size'] / 1024:.1f} "
            f"| {row['convert_s']:.1f} | {row['total_s']:.1f} | {row['latency_us']:.0f} "
            f"| {_ratio(row['latency_us'], ort)} | {_ratio(row['latency_us'], row.get('keras_batch_us'))} "
            f"| {_ratio(row['latency_us'], row['keras_us'], '.4f')} | {row['max_abs_error']:.2g} |"
        )
    ort_by_variant = {}
    for row in results["rows"]:
        if row.get("ort_us"):
            ort_by_variant.setdefault(row["variant"], []).append(row["ort_us"])
    peers = {}
    for row in results["rows"]:
        if "keras_us" in row:
            ort_us = (statistics.median(ort_by_variant[row["variant"]])
                      if row["variant"] in ort_by_variant else None)
            if ort_us is None and row.get("ort_error"):
                ort_us = f"failed: {row['ort_error'][:120]}"
            peers.setdefault(row["variant"], (row["keras_us"], row.get("keras_batch_us"),
                                              row.get("keras_call_us"), ort_us,
                                              row.get("ort_vs_keras"), row.get("ort_vs_tflite")))
    lines.append("")
    lines.append("Peers (batch 1, one thread): Keras `predict_on_batch` (the compiled path), "
                 "Keras `predict` (tens to hundreds of ms per batch-1 call here for every variant, "
                 "far above `predict_on_batch`: per-call overhead, not the model), an eager "
                 "call `model(x)`, and ONNX Runtime on a PyTorch twin of each variant with the "
                 "Keras weights copied (`benchmarks/torch_twins.py`: `nn.GRU` per layer, exported "
                 "as the fused ONNX `GRU` op; `nn.Conv1d` with ReLU; the attention pooling "
                 "written out as matmul, tanh, softmax over time and a weighted sum; "
                 "`gru_fcn`'s branches joined by a mean over time and a concatenation). ONNX "
                 "Runtime's latency here is the median of its latencies measured beside each "
                 "of the variant's files (the \"vs ORT\" ratios use the one beside each file); its "
                 "outputs are checked against Keras and the float32 TFLite file on the 100 "
                 "calibration sequences.")
    lines.append("")
    lines.append("| variant | Keras predict_on_batch (µs) | Keras predict (µs) | Keras model(x) (µs) "
                 "| ONNX Runtime (µs) | max abs ORT vs Keras | max abs ORT vs TFLite float32 |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for variant, (keras_us, batch_us, call_us, ort_us, ort_keras, ort_tflite) in peers.items():
        lines.append(f"| {variant} | {_fmt(batch_us, '.0f')} | {keras_us:.0f} | {_fmt(call_us, '.0f')} "
                     f"| {ort_us if isinstance(ort_us, str) else _fmt(ort_us, '.0f')} "
                     f"| {_fmt(ort_keras, '.2g')} | {_fmt(ort_tflite, '.2g')} |")
    tflm = [row for row in results["rows"] if row.get("tflm")]
    if tflm:
        lines.append("")
        lines.append("TFLite for Microcontrollers (streaming step files, its Python interpreter):")
        lines.append("")
        lines.append("| mode | runs | arena (bytes) | max abs error vs Keras |")
        lines.append("|---|---|---:|---:|")
        for row in tflm:
            t = row["tflm"]
            lines.append(f"| {row['mode']} | {t['runs']} | {_fmt(t.get('arena_bytes'), 'd')} "
                         f"| {_fmt(t.get('max_abs_error'), '.2g')} |")
    if results.get("accuracy"):
        lines.append("")
        lines.append(f"Accuracy change on ItalyPowerDemand (UCR, Dau et al. 2019; test split, "
                     f"{results['accuracy'][0].get('samples', '?')} sequences): each variant "
                     f"trained {meta['epochs']} epochs, then exported; calibration on the train split.")
        lines.append("")
        lines.append("| variant | mode | Keras acc | TFLite acc | change | max err vs Keras |")
        lines.append("|---|---|---:|---:|---:|---:|")
        for row in results["accuracy"]:
            mode = row["mode"] + (" step" if row["streaming"] else "")
            if "error" in row:
                lines.append(f"| {row['variant']} | {mode} | failed: {row['error']} ||||")
                continue
            lines.append(f"| {row['variant']} | {mode} | {row['keras']:.4f} | {row['tflite']:.4f} "
                         f"| {row['change']:+.4f} | {row['max_abs_error']:.2g} |")
    lines.append("")
    lines.append(targets(results))
    lines.append("")
    lines.append(notes(results))
    return "\n".join(lines)


def _range(values, spec=".1f"):
    low, high = min(values), max(values)
    return format(low, spec) if format(low, spec) == format(high, spec) else (
        f"{format(low, spec)}-{format(high, spec)}")


def _vs_ort_notes(results):
    """The float32-vs-ONNX Runtime bullet's numbers, read from the rows."""
    first = {}
    for row in results["rows"]:
        if "error" not in row and not row["streaming"]:
            first.setdefault((row["variant"], row["mode"]), row)
    f32 = {v: r for (v, m), r in first.items() if m == "float32" and r.get("ort_us")}
    int8 = [r["latency_us"] / r["ort_us"] for (v, m), r in first.items()
            if m == "int8" and r.get("ort_us")]
    if not f32:
        return ""
    ort = {}
    for row in results["rows"]:
        if row.get("ort_us"):
            ort.setdefault(row["variant"], []).append(row["ort_us"])
    ort = {v: statistics.median(t) for v, t in ort.items()}
    ratios = ", ".join(f"{v} {r['latency_us'] / r['ort_us']:.2f}x" for v, r in f32.items())
    text = (f"\n  Across variants the float32 loop files run at {ratios} the latency of ONNX "
            "Runtime on the same architecture.")
    if "stacked" in f32 and "attention" in f32:
        bodies = sorted(set(_loop_bodies(f32["stacked"])[0] + _loop_bodies(f32["attention"])[0]))
        seq_ops = (f"{bodies[-1] - bodies[0]} more ops per step: {bodies[-1]} instead of {bodies[0]}"
                   if len(bodies) == 2 else "7 more ops per step: 28 instead of 21")
        text += (
            " The attention variants are the furthest behind: their second GRU layer also "
            "returns its sequence (the pooling reads every state), and a `WHILE` loop that "
            "returns its sequence writes each step's state by slicing the (50, 1, 64) output "
            f"buffer around step t and concatenating it back ({seq_ops}, with sizes known only "
            "at run time). The float32 attention file took "
            f"{f32['attention']['latency_us'] - f32['stacked']['latency_us']:.0f} µs more than "
            "the stacked one, ONNX Runtime's attention twin "
            f"{ort['attention'] - ort['stacked']:.0f} µs more than its stacked twin. Measured "
            "separately (2026-11-25, alternating runs): the stacked model with its second "
            "layer returning its sequence and keeping the last step (the same function) ran "
            "681 µs against 454 µs for the stacked file and 707 µs for the attention file, "
            "so the sequence output, not the pooling's few ops, is the gap.")
    if int8:
        text += (f" The int8 files (unrolled, no loop) ran at {_range(int8, '.2f')}x ONNX "
                 "Runtime's float32 latency across the variants.")
    return text


def _loop_bodies(row):
    """Op counts of the `WHILE` bodies of a `loop` file (subgraphs after the main one
    with more than a condition's few ops) and of its conditions."""
    ops = (row or {}).get("structure", {}).get("subgraph_ops", [])[1:]
    return [n for n in ops if n > 3], [n for n in ops if n <= 3]


def _per_step(row):
    """Operators per recurrent layer and time step of an unrolled stacked file."""
    return row["structure"]["operators"] / (LAYERS * TIME)


def _accuracy_notes(results):
    """The accuracy bullet: change per mode across variants, failures with their error."""
    accuracy = results.get("accuracy") or []
    if not accuracy:
        return ""
    variants = list(dict.fromkeys(r["variant"] for r in accuracy))
    by_mode = {}
    for row in accuracy:
        mode = row["mode"] + (" step" if row["streaming"] else "")
        by_mode.setdefault(mode, []).append(row)
    parts = []
    for mode, rows in by_mode.items():
        changes = [r["change"] for r in rows if "error" not in r]
        if changes:
            low, high = min(changes), max(changes)
            span = f"{low:+.4f}" if f"{low:+.4f}" == f"{high:+.4f}" else f"{low:+.4f} to {high:+.4f}"
            parts.append(f"{mode} {span} ({len(changes)} of {len(rows)} files)")
        else:
            parts.append(f"{mode}: no file ({len(rows)} failed)")
    failed = [r for r in accuracy if "error" not in r and r["change"] < 0]
    if failed:
        worst = min(failed, key=lambda r: r["change"])
        parts.append(f"largest drop {worst['variant']} {worst['mode']}"
                     f"{' step' if worst['streaming'] else ''} {worst['change']:+.4f} (max error vs "
                     f"Keras {worst['max_abs_error']:.2g})")
    failed = [r for r in accuracy if "error" in r]
    text = (f"\n- Accuracy on ItalyPowerDemand ({len(variants)} variants, {len(accuracy)} files): "
            "test accuracy change, TFLite minus Keras, per mode: " + "; ".join(parts) + ". ")
    samples = accuracy[0].get("samples")
    if samples:
        text += f"One test sequence is {1 / samples:.4f}. "
    if failed:
        text += ("These did not export: " + "; ".join(
            f"{r['variant']} {r['mode']}{' step' if r['streaming'] else ''} ({r['error'].rstrip('.')})"
            for r in failed) + ".")
    else:
        text += "Every file converted and passed verification against Keras."
    return text


def notes(results):
    """What stands between us and the targets; the numbers are read from `results`."""
    first = {}
    for row in results["rows"]:
        if "error" not in row:
            first.setdefault((row["variant"], row["mode"], row["streaming"]), row)
    variants = list(dict.fromkeys(r["variant"] for r in results["rows"]))
    slow16 = {streaming: [r["latency_us"] / first[(v, "int8", s)]["latency_us"]
                          for (v, m, s), r in first.items()
                          if m == "int16x8" and s == streaming and (v, "int8", s) in first]
              for streaming in (False, True)}
    slow16_text = " and ".join(
        f"{_range(ratios, '.0f')}x ({'step files' if streaming else 'full-sequence files'})"
        for streaming, ratios in slow16.items() if ratios) or "?"
    loop = [r["convert_s"] for r in results["rows"] if r.get("recipe") in ("loop", "step")]
    unrolled = [r["convert_s"] for r in results["rows"]
                if r.get("recipe") == "unrolled" and r["mode"] in ("int8", "int16x8")]
    unrolled_f32 = next((r for r in results["rows"] if r.get("recipe") == "unrolled"
                         and r["mode"] == "float32" and r["variant"] == "stacked"
                         and "error" not in r), None)
    totals = [r["total_s"] for r in results["rows"] if "total_s" in r]
    slow_convert = [f"{r['variant']} {r['mode']}{' step' if r['streaming'] else ''} "
                    f"{r['convert_s']:.1f} s" for r in results["rows"] if r.get("convert_s", 0) > 10]
    ort = {}
    for row in results["rows"]:
        if row.get("ort_us"):
            ort.setdefault(row["variant"], []).append(row["ort_us"])
    busy = [f"{row['variant']} {row['mode']}{' step' if row['streaming'] else ''}"
            f"{' unrolled' if row.get('plan') == 'unrolled' else ''} (ONNX Runtime "
            f"{row['ort_us']:.0f} µs against a median of {statistics.median(ort[row['variant']]):.0f})"
            for row in results["rows"]
            if row.get("ort_us") and row["ort_us"] > 1.15 * statistics.median(ort[row["variant"]])]
    busy_note = ""
    if busy:
        busy_note = ("\n- Load: ONNX Runtime is timed beside every file, so its time shows the "
                     "load each row ran under. These rows ran while the machine was busier than "
                     "for the rest of their variant (ONNX Runtime over 15% above the variant's "
                     "median), so their absolute latencies read high (their vs-ORT ratios, timed in "
                     "alternating blocks, absorb part of it): " + "; ".join(busy) + ".")
    meta = results["meta"]
    load = f"{meta['load'].split()[0]} at the start"
    if meta.get("load_end"):
        load += f" and {meta['load_end'].split()[0]} at the end"

    # float32: the loop bodies and the unrolled float32 file.
    f32 = first.get(("stacked", "float32", False))
    bodies, conds = _loop_bodies(f32)
    att_bodies, _ = _loop_bodies(first.get(("attention", "float32", False)))
    if bodies:
        loop_text = (f"whose body has {_range(bodies + att_bodies, '.0f')} small ops per step "
                     f"(stacked: {' and '.join(map(str, bodies))} for its two layers; attention: "
                     f"{' and '.join(map(str, att_bodies)) or '?'}), plus a "
                     f"{_range(conds, '.0f')}-op condition subgraph")
    else:
        loop_text = "whose body has 21-28 small ops per step, plus a 3-op condition subgraph"
    unrolled_text = "The unrolled float32 file removes the loop (row `float32 / unrolled`)"
    if unrolled_f32 and f32:
        unrolled_text += (f": {unrolled_f32['latency_us'] / unrolled_f32['ort_us']:.2f}x ONNX Runtime "
                          if unrolled_f32.get("ort_us") else ": ")
        unrolled_text += (f"at {unrolled_f32['size'] / f32['size']:.2f}x the loop file's size "
                          f"({unrolled_f32['size'] / 1024:.0f} KB against {f32['size'] / 1024:.0f} KB)")
        if "structure" in unrolled_f32:
            unrolled_text += (f", {unrolled_f32['structure']['operators']} operators "
                              f"({_per_step(unrolled_f32):.1f} per layer and step: the input "
                              "projection is computed once for all steps, see int8 below)")
    unrolled_text += "."

    # int8: size, structure, per-variant ratios.
    i8 = first.get(("stacked", "int8", False))
    i8_step = first.get(("stacked", "int8", True))
    size_ratios = {v: first[(v, "int8", False)]["size"] / first[(v, "float32", False)]["size"]
                   for v in variants if (v, "int8", False) in first and (v, "float32", False) in first}
    speed_ratios = {v: first[(v, "int8", False)]["latency_us"] / first[(v, "float32", False)]["latency_us"]
                    for v in size_ratios}
    int8_text = ""
    if i8 and "structure" in i8:
        s = i8["structure"]
        int8_text = (
            f" Since the unrolled recipe computes each GRU layer's input projection once for all "
            f"steps (two `FULLY_CONNECTED` ops before the steps, `HoistedGRU`), each step keeps the "
            f"recurrent projection and the gates: the stacked int8 file has {s['operators']} "
            f"operators ({_per_step(i8):.1f} per layer and step) and {s['tensors']} tensors. Its "
            f"{i8['size'] / 1024:.0f} KB hold {s['weight_bytes'] / 1024:.0f} KB of constant buffers "
            f"(int8 weights, int32 biases), {s['quant_params']} scale/zero-point pairs "
            f"(~{s['quant_params'] * 12 / 1024:.0f} KB as float32 scales and int64 zero points) "
            f"and, for the rest (~{(i8['size'] - s['weight_bytes'] - 12 * s['quant_params']) / 1024:.0f} "
            "KB), the graph structure.")
    if size_ratios:
        int8_text += (" int8 size / float32 loop size per variant: "
                      + ", ".join(f"{v} {r:.2f}x" for v, r in size_ratios.items()) + ".")
        if all(r > 1 for r in size_ratios.values()):
            int8_text += " Every unrolled int8 file is still larger than its float32 loop file."
    if i8_step and f32:
        int8_text += (f" The int8 streaming step file holds the weights once and is the small int8 "
                      f"artefact: {i8_step['size'] / 1024:.0f} KB, {i8_step['size'] / f32['size']:.2f}x "
                      "the float32 loop file (row `int8 step`).")
    speed_text = ""
    if speed_ratios:
        speed_text = ("\n- int8 latency / float32 loop latency per variant: "
                      + ", ".join(f"{v} {r:.2f}x" for v, r in speed_ratios.items())
                      + " (target <= 0.5x).")

    # int16x8: speed, the trained-model rows and the repairs.
    acc16 = [r for r in results.get("accuracy") or [] if r["mode"] == "int16x8"]
    acc16_ok = [r for r in acc16 if "error" not in r]
    acc16_failed = [r for r in acc16 if "error" in r]
    repaired = [r for r in results["rows"] + (results.get("accuracy") or [])
                if r.get("notes") and r["mode"] == "int16x8"]
    int16_text = ""
    if acc16:
        int16_text = (f" On the trained ItalyPowerDemand models {len(acc16_ok)} of {len(acc16)} "
                      "int16x8 files converted and passed verification")
        if acc16_ok:
            changes = [r["change"] for r in acc16_ok]
            errors = [r["max_abs_error"] for r in acc16_ok]
            int16_text += (f" (accuracy change {min(changes):+.4f} to {max(changes):+.4f}, max "
                           f"error vs Keras {min(errors):.2g} to {max(errors):.2g})")
        int16_text += "."
        if acc16_failed:
            int16_text += " Failed (the error is quoted under Accuracy below): " + ", ".join(
                f"{r['variant']} {r['mode']}{' step' if r['streaming'] else ''}"
                for r in acc16_failed) + "."
    if repaired:
        def tally(rows):
            files = [r for r in rows if r["mode"] == "int16x8" and "error" not in r]
            return sum(bool(r.get("notes")) for r in files), len(files)

        trained, trained_all = tally(results.get("accuracy") or [])
        reference, reference_all = tally(results["rows"])
        example = next((r for r in repaired if r["variant"] == "stacked"), repaired[0])
        int16_text += (f" `to_tflite` reported a repair (`ExportResult.notes`) for {trained} of the "
                       f"{trained_all} int16x8 files of the trained models and {reference} of the "
                       f"{reference_all} of the untrained reference models (whose GRU biases are "
                       f"still zero); for {example['variant']}: \"{example['notes'][0]}\".")

    return f"""What stands between us and the targets (read from the rows above):

- float32 vs ONNX Runtime: the `loop` file runs each GRU layer as a TFLite `WHILE` loop
  {loop_text}; ONNX Runtime runs one fused `GRU` kernel. {unrolled_text}
  A fused kernel (TFLite has none for GRU) or a hand-written
  `UNIDIRECTIONAL_SEQUENCE_*`-style op would be needed to reach 1.0x.{_vs_ort_notes(results)}
- int8 size: calibrated quantization only works on the unrolled graph (a calibrated
  `WHILE` loop crashes the converter, DESIGN.md fact 5), and the unrolled file holds one
  set of tensors and quantization parameters per time step, so it is larger than a
  single copy of the weights even after intermediate tensor names are stripped.{int8_text}{speed_text}
- int16x8 files ran {slow16_text} slower than int8 ones here (LiteRT showed no fast path
  for 16x8 activations on this CPU).{int16_text}{_accuracy_notes(results)}
- Streaming per-frame latencies are measured from Python through the signature runner,
  so each frame carries the Python call overhead (a few µs); a C++ loop on a device
  avoids it.
- Conversion time: the converter itself takes {_range(loop) if loop else "?"} s for loop and step files,
  {_range(unrolled) if unrolled else "?"} s for unrolled int8/16x8 files{f" and {unrolled_f32['convert_s']:.1f} s for the unrolled float32 file" if unrolled_f32 else ""}; the whole `to_tflite` call
  ({_range(totals) if totals else "?"} s; {sum(t > 10 for t in totals)} of {len(totals)} over 10 s) adds a child process
  (TensorFlow import), verification against Keras and, for streaming, the TFLM check.
  Converter times over 10 s: {"; ".join(slow_convert) or "none"}.
  This machine had a load average of {load} (2 cores, shared with other jobs).{busy_note}
"""


def targets(results):
    """Where we stand against issue 3's targets (stacked variant)."""
    rows = {}
    for r in results["rows"]:  # the first row of a kind is the automatic recipe's
        if "error" not in r:
            rows.setdefault((r["variant"], r["mode"], r["streaming"]), r)
    unrolled = next((r for r in results["rows"] if r.get("recipe") == "unrolled"
                     and r["mode"] == "float32" and r["variant"] == "stacked"), None)
    f32 = rows.get(("stacked", "float32", False))
    i8 = rows.get(("stacked", "int8", False))
    step = rows.get(("stacked", "float32", True))
    out = ["Targets (issue 3), stacked variant:", ""]
    if f32 and f32.get("ort_us"):
        out.append(f"- float32 TFLite latency / ONNX Runtime: {f32['latency_us'] / f32['ort_us']:.2f}x "
                   "(target <= 1.0x)")
    if unrolled and unrolled.get("ort_us"):
        out.append(f"- float32 TFLite latency / ONNX Runtime with the unrolled recipe: "
                   f"{unrolled['latency_us'] / unrolled['ort_us']:.2f}x "
                   f"({unrolled['size'] / f32['size']:.1f}x the loop file's size)")
    if f32 and i8:
        out.append(f"- int8 latency / float32 TFLite: {i8['latency_us'] / f32['latency_us']:.2f}x "
                   "(target <= 0.5x)")
        out.append(f"- int8 size / float32 size: {i8['size'] / f32['size']:.2f}x (target <= 0.3x)")
    if f32 and step:
        line = (f"- streaming per-step latency x {TIME} / full-sequence: "
                f"{step['latency_us'] / f32['latency_us']:.2f}x (target <= 1.5x)")
        if step.get("ort_us") and f32.get("ort_us"):
            line += (f"; through their vs-ORT ratios, which absorb the load each row ran under "
                     f"(ONNX Runtime {step['ort_us']:.0f} µs beside the step file, "
                     f"{f32['ort_us']:.0f} µs beside the loop file): "
                     f"{(step['latency_us'] / step['ort_us']) / (f32['latency_us'] / f32['ort_us']):.2f}x")
        out.append(line)
    converts = [r["convert_s"] for r in results["rows"] if "convert_s" in r]
    totals = [r["total_s"] for r in results["rows"] if "total_s" in r]
    if converts:
        out.append(f"- conversion: converter {min(converts):.1f}–{max(converts):.1f} s, whole "
                   f"`to_tflite` call (child process, verification, TFLM) {min(totals):.1f}–"
                   f"{max(totals):.1f} s (target <= 10 s per model)")
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


def _row_key(row):
    """A latency row's identity: variant, mode, streaming and the recipe asked for."""
    plan = row.get("plan")
    if plan is None:  # rows written before "plan" existed: only the extra row forced a recipe
        forced = row.get("recipe") == "unrolled" and row["mode"] == "float32" and not row["streaming"]
        plan = "unrolled" if forced else "auto"
    return row["variant"], row["mode"], row["streaming"], plan


def _accuracy_key(row):
    return row["variant"], row["mode"], row["streaming"]


def _merge_rows(old, new, key):
    """`old` with each row replaced by the `new` row of the same key; other new rows appended."""
    replacements = {key(row): row for row in new}
    old_keys = {key(row) for row in old}
    return ([replacements.get(key(row), row) for row in old]
            + [row for row in new if key(row) not in old_keys])


def merge_results(previous, meta, new_rows, new_accuracy):
    """This run's rows merged into `previous` results (same-key rows replaced).

    The latency meta (command, date, load, runs) becomes this run's when this run
    replaced every previous latency row; the accuracy meta (`accuracy_command`,
    `accuracy_date`, epochs) likewise for the accuracy rows. A partial run is recorded
    as "previous command` then `this command" (date, commit and load averages
    likewise "A then B").
    """
    old_meta = dict(previous["meta"])
    old_meta.setdefault("accuracy_command", old_meta["command"])
    old_meta.setdefault("accuracy_date", old_meta["date"])
    merged = dict(old_meta)
    old_keys = {_row_key(row) for row in previous["rows"]}
    if new_rows:
        if old_keys <= {_row_key(row) for row in new_rows}:
            for key in ("command", "machine", "date", "load", "load_end", "code", "runs"):
                merged.pop(key, None)
                if key in meta:
                    merged[key] = meta[key]
        else:
            merged["command"] = old_meta["command"] + "` then `" + meta["command"]
            for key in ("date", "code", "load", "load_end"):  # rows from two runs: say so
                if old_meta.get(key) and meta.get(key) and old_meta[key] != meta[key]:
                    merged[key] = f"{old_meta[key]} then {meta[key]}"
    old_accuracy = {_accuracy_key(row) for row in previous["accuracy"]}
    if new_accuracy:
        if old_accuracy <= {_accuracy_key(row) for row in new_accuracy}:
            merged.update(accuracy_command=meta["command"], accuracy_date=meta["date"],
                          epochs=meta["epochs"])
        else:
            merged["accuracy_command"] = old_meta["accuracy_command"] + "` then `" + meta["command"]
            merged["epochs"] = meta["epochs"]
    return {
        "meta": merged,
        "rows": _merge_rows(previous["rows"], new_rows, _row_key),
        "accuracy": _merge_rows(previous["accuracy"], new_accuracy, _accuracy_key),
    }


def code_version():
    """The commit of the code measured, and whether `export/` or `zoo/` had local changes."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "export", "zoo"],
                               cwd=ROOT, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" with uncommitted changes in export/ or zoo/" if dirty.strip() else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=None, help="comma-separated (default: all)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=30, help="ItalyPowerDemand training epochs")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--accuracy-only", action="store_true",
                        help="only the ItalyPowerDemand accuracy rows")
    parser.add_argument("--extra-only", action="store_true",
                        help="only the extra rows (stacked float32 with the unrolled recipe)")
    parser.add_argument("--keras-peers-only", action="store_true",
                        help="re-measure the Keras peers of the merged rows, nothing else")
    parser.add_argument("--merge", help="merge this run's rows into a results JSON: rows of "
                        "the same variant, mode and recipe are replaced, the others kept")
    parser.add_argument("--quick", action="store_true", help="stacked only, 100 runs, 10 epochs")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "bench_export_results.json"))
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--render", help="re-render BENCHMARKS.md from a results JSON")
    args = parser.parse_args(argv)

    if args.render:
        results = json.loads(pathlib.Path(args.render).read_text())
        text = render(results)
        print(text)
        if not args.no_write:
            write_markdown(text, pathlib.Path(args.markdown))
        return 0

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import zoo

    if args.quick:
        args.runs, args.epochs = min(args.runs, 100), min(args.epochs, 10)
    variants = (args.variants.split(",") if args.variants else
                (["stacked"] if args.quick else list(zoo.VARIANTS)))
    modes = args.modes.split(",")
    results = {
        "meta": {
            # --no-write changes no result: leave it out of the command to reproduce.
            "command": "python " + " ".join(["benchmarks/bench_export.py"] + [
                a for a in (argv or sys.argv[1:]) if a != "--no-write"]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                       f"{platform.python_version()}, TF {tf.__version__}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load": " ".join(f"{v:.1f}" for v in os.getloadavg()),
            "code": code_version(),
            "runs": args.runs,
            "epochs": args.epochs,
        },
        "rows": [],
        "accuracy": [],
    }
    json_path = pathlib.Path(args.json)
    previous = json.loads(pathlib.Path(args.merge).read_text()) if args.merge else None
    new_rows, new_accuracy = [], []

    def current():
        if previous is None:
            return dict(results, rows=new_rows, accuracy=new_accuracy)
        return merge_results(previous, results["meta"], new_rows, new_accuracy)

    def save():
        json_path.write_text(json.dumps(current(), indent=1, default=float))

    def log(row, save_now=True):
        print(json.dumps({k: v for k, v in row.items() if k not in ("tflm", "structure")},
                         default=float), flush=True)
        if save_now:
            save()

    if args.keras_peers_only:
        if previous is None:
            parser.error("--keras-peers-only needs --merge RESULTS_JSON")
        update_keras_peers(previous["rows"], variants)
        previous["meta"]["command"] += " (Keras peers re-measured)"
        variants = []
        args.no_accuracy = True
    with tempfile.TemporaryDirectory(prefix="gru_zoo_bench_") as workdir:
        for variant in variants if not args.accuracy_only else []:
            bench_variant(variant, modes, args.runs, workdir, log, new_rows,
                          extra_only=args.extra_only)
        if not args.no_accuracy:
            accuracy_rows(variants, modes, workdir, log, args.epochs, new_accuracy)
    if new_rows:
        results["meta"]["load_end"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    final = current()
    json_path.write_text(json.dumps(final, indent=1, default=float))
    text = render(final)
    print(text)
    if not args.no_write:
        write_markdown(text, pathlib.Path(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())

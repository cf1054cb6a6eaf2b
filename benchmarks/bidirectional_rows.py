"""Two directions of a bidirectional GRU as one batch of two rows, per quantization.

    python benchmarks/bidirectional_rows.py [--units 64] [--steps 64] [--update]

A bidirectional GRU step can run its forward and backward directions as two separate
GRU steps, ~11 ops each, and on XNNPACK every op has a fixed cost (BENCHMARKS.md, "Op
costs"). Or the two directions of a step are two rows of one batch: the recurrent
products are one `BATCH_MATMUL` of `(2, 1, units)` by the stacked recurrent kernels
`(2, units, 3 units)`, and every gate op runs once on both rows. This script measured
which quantizations gain; float32 files now use the rows (`export.chunked.ROWS_MODES`).

Toy graphs, not the export's layers: `steps` unrolled GRU steps (reset_after, random
weights) from input projections given as inputs, converted without a loop, in float32,
in float16 (float16 weights) and in int8 (calibrated on 16 random inputs). Both forms
compute the same outputs; the table gives ops per step pair, the median thread time of
one step pair over interleaved runs (one thread, the default XNNPACK delegate) and the
largest difference from the float32 separate form. With `--update` the table goes to
the section "Two directions of a bidirectional GRU as one batch" of BENCHMARKS.md.
"""

import argparse
import collections
import os
import pathlib
import sys
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TITLE = "Two directions of a bidirectional GRU as one batch"


def build(units, steps, seed=0):
    """`{form: tf.function}` of the two forms, and one input pair."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    kernels = [(0.1 * rng.standard_normal((units, 3 * units))).astype("float32")
               for _ in range(2)]
    biases = [(0.1 * rng.standard_normal((3 * units,))).astype("float32") for _ in range(2)]

    def gates(x, h, recurrent):
        zr = tf.sigmoid(x[..., : 2 * units] + recurrent[..., : 2 * units])
        z, r = tf.split(zr, 2, axis=-1)
        n = tf.tanh(x[..., 2 * units:] + r * recurrent[..., 2 * units:])
        return n + z * (h - n)

    def separate(forward, backward):
        states = [tf.zeros((1, units)), tf.zeros((1, units))]
        rows = [tf.unstack(forward[:, None], axis=0), tf.unstack(backward[:, None], axis=0)]
        for t in range(steps):
            states = [gates(rows[d][t], states[d], tf.matmul(states[d], kernels[d]) + biases[d])
                      for d in range(2)]
        return tf.concat(states, axis=1)

    stacked_kernels = np.stack(kernels)                   # (2, units, 3 units)
    stacked_biases = np.stack(biases)[:, None, :]         # (2, 1, 3 units)

    def rows(forward, backward):
        inputs = tf.unstack(tf.stack([forward, backward], axis=1)[:, :, None, :], axis=0)
        h = tf.zeros((2, 1, units))
        for t in range(steps):
            h = gates(inputs[t], h, tf.matmul(h, stacked_kernels) + stacked_biases)
        return tf.reshape(h, (1, 2 * units))

    pair = [rng.standard_normal((steps, 3 * units)).astype("float32") for _ in range(2)]
    return {"separate (2 GRU steps)": separate, "rows (BATCH_MATMUL)": rows}, pair, rng


def convert(function, units, steps, mode, calibration):
    import tensorflow as tf

    spec = tf.TensorSpec((steps, 3 * units), tf.float32)
    concrete = tf.function(function).get_concrete_function(spec, spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        converter.representative_dataset = lambda: iter(calibration)
    return converter.convert()


def thread_us(interpreter, runs=300, warmup=50):
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.thread_time_ns()
        interpreter.invoke()
        times.append(time.thread_time_ns() - start)
    return float(np.median(times)) / 1000


def measure(units, steps, repeats=3):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    forms, pair, rng = build(units, steps)
    reference = forms["separate (2 GRU steps)"](*map(tf.constant, pair)).numpy()
    calibration = [[rng.standard_normal((steps, 3 * units)).astype("float32")
                    for _ in range(2)] for _ in range(16)]
    rows, runners = [], []
    for mode in ("float32", "float16", "int8"):
        for name, function in forms.items():
            content = convert(function, units, steps, mode, calibration)
            interpreter = Interpreter(model_content=content, num_threads=1)
            ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())
            interpreter.allocate_tensors()
            for detail, value in zip(interpreter.get_input_details(), pair):
                interpreter.set_tensor(detail["index"], value)
            interpreter.invoke()
            output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
            rows.append({"mode": mode, "form": name, "ops": sum(ops.values()) / steps,
                         "matmul": "BATCH_MATMUL" if ops["BATCH_MATMUL"] else "FULLY_CONNECTED",
                         "error": float(np.abs(output - reference).max()), "us": []})
            runners.append(interpreter)
    for _ in range(repeats):  # interleaved: every file once per round
        for row, interpreter in zip(rows, runners):
            row["us"].append(thread_us(interpreter) / steps)
    for row in rows:
        row["us"] = float(np.median(row["us"]))
        print(row, flush=True)
    return rows


def measure_export(lengths, modes=("float32", "float16", "dynamic")):
    """The export's own files: the bidirectional reference model (bench_export's) at
    each length, exported by `to_tflite` (automatic form) with the directions as rows
    (the default for these modes) and as two steps (`export.chunked.ROWS_MODES` emptied;
    the exporter reads it in this process), timed interleaved with ONNX Runtime's
    fused GRU on its PyTorch twin."""
    import tempfile

    import bench_export
    from export import chunked, op_report

    rows_modes = chunked.ROWS_MODES
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for steps in lengths:
            model = bench_export.reference_model("bidirectional", steps)
            calibration = np.random.default_rng(0).standard_normal(
                (100, steps, bench_export.FEATURES)).astype("float32")
            peer = bench_export.onnx_peer(model, calibration[:4],
                                          pathlib.Path(workdir) / f"peer_{steps}.onnx")
            if "error" in peer:
                raise SystemExit(f"ONNX Runtime peer: {peer['error']}")
            functions, batch = {"ort": peer["run"]}, []
            for mode in modes:
                quantization = None if mode == "float32" else mode
                for form, modes_set in (("two steps", ()), ("rows", rows_modes)):
                    path = pathlib.Path(workdir) / f"{steps}_{mode}_{form.replace(' ', '_')}.tflite"
                    with mock.patch.object(chunked, "ROWS_MODES", modes_set):
                        row = bench_export.export_or_exit(
                            model, path, f"{mode} {form} T={steps}", quantization=quantization,
                            recipe="auto", calibration=calibration)
                    row.update(T=steps, mode=mode, form=form,
                               batch_matmul="BATCH_MATMUL" in op_report(path)["builtin"])
                    functions[(mode, form)] = bench_export.lite_runner(path)
                    batch.append(row)
            bench_export.time_batch(functions, batch, lambda row: (row["mode"], row["form"]),
                                    steps, ("T", "mode", "form", "size", "us", "ort_us"))
            results += batch
    return results


def render_export(rows):
    lines = ["| T | mode | form | size (KB) | µs | vs ORT | rows / two steps | "
             "max err vs Keras |", "|---:|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        peer = next(r for r in rows if r["T"] == row["T"] and r["mode"] == row["mode"]
                    and r["form"] == "two steps")
        lines.append(f"| {row['T']} | {row['mode']} | {row['form']} | {row['size'] / 1024:.1f} | "
                     f"{row['us']:.0f} | {row['us'] / row['ort_us']:.2f} | "
                     f"{row['us'] / peer['us']:.2f} | {row['max_abs_error']:.2g} |")
    return "\n".join(lines)


def render(rows):
    lines = ["| mode | form | ops per step pair | recurrent product | µs per step pair | "
             "vs separate | max error vs float32 separate |",
             "|---|---|---:|---|---:|---:|---:|"]
    for row in rows:
        peer = next(r for r in rows if r["mode"] == row["mode"] and r["form"].startswith("sep"))
        lines.append(f"| {row['mode']} | {row['form']} | {row['ops']:.1f} | {row['matmul']} | "
                     f"{row['us']:.2f} | {row['us'] / peer['us']:.2f}x | {row['error']:.2g} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--lengths", default="50,200,1000",
                        help="sequence lengths of the export part (comma-separated)")
    parser.add_argument("--update", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args(argv)
    rows = measure(args.units, args.steps)
    table = render(rows)
    print(table)
    exported = measure_export([int(n) for n in args.lengths.split(",")])
    export_table = render_export(exported)
    print(export_table)
    if args.update:
        from bench_export import machine_description
        from compare_report import write_section

        def span(mode):
            ratios = [r["us"] / next(p["us"] for p in exported if p["T"] == r["T"]
                                     and p["mode"] == mode and p["form"] == "two steps")
                      for r in exported if r["mode"] == mode and r["form"] == "rows"]
            return f"{min(ratios):.2f}-{max(ratios):.2f}x"

        write_section(TITLE, f"""Command: `python benchmarks/bidirectional_rows.py --update`
({machine_description()}, {time.strftime("%Y-%m-%d")}).
One thread, default XNNPACK delegate.

Toy graphs: GRU({args.units}), {args.steps} unrolled steps per direction (the script's
docstring); median thread time of three interleaved rounds of 300 calls, divided by the
steps.

{table}

The export's files: bench_export's bidirectional reference model (2 x
Bidirectional(GRU(64)), 8 features), `to_tflite`'s automatic form, with the directions
as rows (the default for these quantizations, `export.chunked.ROWS_MODES`) and as two
steps; median thread time in interleaved blocks with ONNX Runtime's fused GRU.

{export_table}

Reading: the two directions as one batch run half the ops per step, and on XNNPACK each
op has a fixed cost: the export's rows files take {span("float32")} the time of its
two-step files in float32, {span("float16")} in float16 and {span("dynamic")} with
dynamic-range weights (whose hybrid `BATCH_MATMUL` also quantizes the stacked input
kernels, which two steps leave float below 1024 values: smaller and a little less
exact). Both forms compute their second layer's input projection (128 values per step)
before the loop, for the whole sequence (`project_before`,
`export.chunked.PROJECT_BEFORE_LOOP_WIDTH`), so these ratios are the step forms' alone
(before 2026-12-06 the two-step form kept that projection in its loop body and the ratios
included its gain: 0.76-0.80x in float32). In int8 the
`BATCH_MATMUL` is ~3x slower than two `FULLY_CONNECTED` ops (toy table), so int8 files keep two steps, and so does a file for TFLite Micro, whose
`BATCH_MATMUL` keeps a copy of its weights in the arena (docs/tflite-facts.md, F28).
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())

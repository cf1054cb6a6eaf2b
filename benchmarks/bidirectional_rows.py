"""Two directions of a bidirectional GRU as one batch of two rows: a measured next step.

    python benchmarks/bidirectional_rows.py [--units 64] [--steps 64] [--update]

`ChunkedBidirectionalGRU` runs each time step of the forward and the backward direction
as two separate GRU steps, ~11 ops each, and on XNNPACK every op has a fixed cost
(BENCHMARKS.md, "Op costs"). Here the two directions of a step are two rows of one
batch: the recurrent products are one `BATCH_MATMUL` of `(2, 1, units)` by the stacked
recurrent kernels `(2, units, 3 units)`, and every gate op runs once on both rows.

Toy graphs, not the export's layers: `steps` unrolled GRU steps (reset_after, random
weights) from input projections given as inputs, converted without a loop, in float32
and in int8 (calibrated on 16 random inputs). Both forms compute the same outputs; the
table gives ops per step pair, the median thread time of one step pair over interleaved
runs (one thread, the default XNNPACK delegate) and the largest difference from the
float32 separate form. With `--update` the table goes to the section "Two directions of
a bidirectional GRU as one batch" of BENCHMARKS.md.
"""

import argparse
import collections
import os
import pathlib
import sys
import time

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


def convert(function, units, steps, calibration=None):
    import tensorflow as tf

    spec = tf.TensorSpec((steps, 3 * units), tf.float32)
    concrete = tf.function(function).get_concrete_function(spec, spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
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
    for mode in ("float32", "int8"):
        for name, function in forms.items():
            content = convert(function, units, steps, calibration if mode == "int8" else None)
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
    parser.add_argument("--update", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args(argv)
    rows = measure(args.units, args.steps)
    table = render(rows)
    print(table)
    if args.update:
        from bench_export import machine_description
        from compare_report import write_section

        write_section(TITLE, f"""Command: `python benchmarks/bidirectional_rows.py --update`
({machine_description()}, {time.strftime("%Y-%m-%d")}).
GRU({args.units}), {args.steps} unrolled steps per direction, toy graphs (the script's
docstring); one thread, default XNNPACK delegate, median thread time of three
interleaved rounds of 300 calls, divided by the steps.

{table}

Reading: in float32 the two directions as one batch run about half the ops and are
faster, because on XNNPACK each op has a fixed cost; in int8 the `BATCH_MATMUL` is far
slower than two `FULLY_CONNECTED` ops, so only float files would gain. The toy's
separate form slices its gates out of one projection (28 ops per step pair); the
export's step takes them from two (22 ops), so its gain would be somewhat smaller. Not
used by the export yet: `ChunkedBidirectionalGRU` still runs two GRU steps per time step.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())

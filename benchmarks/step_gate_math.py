"""Float streaming step files: Keras's GRU cell or the chunked form's gate math.

    python benchmarks/step_gate_math.py [--models stacked,...] [--modes float32,...] [--update]

A step file computes each GRU layer for one frame. Keras's cell takes 17 ops per layer
(three slices of the recurrent product, a `LOGISTIC` per gate); the chunked form's gate
math (`export.chunked.gru_step`) takes 13: one product per gate group, both gates in one
`LOGISTIC`, no slices. Float step files (`export.streaming.GATE_MATH_MODES`) now use the
gate math; quantized ones keep the cell (`export.streaming._recurrent_step` says why).

For each causal model (bench_streaming's: 8 features, 4 classes, 2 x GRU(64)) and float
mode, the script exports the step file both ways with `to_tflite` (run in this process so
that the old form can be switched back on: `GATE_MATH_MODES` emptied) and times both,
interleaved, streaming T=50 frames per call with one `invoke()` per frame (Python
interpreter, one thread, median thread time), and one frame in the C++ runtime
(`CompiledModel`, median µs; the two files in turn, median of five rounds). With `--update` the table goes to the section "Step files:
Keras's cell or the gate math" of BENCHMARKS.md.
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TITLE = "Step files: Keras's cell or the gate math"
FORMS = ("cell", "gate math")
TIME = 50


def measure(models, modes):
    import bench_export
    from bench_streaming import FEATURES, FILE_MODELS, compiled_runner, median_us

    import zoo
    from export import streaming

    kept = streaming.GATE_MATH_MODES
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in models:
            options = dict(FILE_MODELS[name])
            zoo.set_seed(0)
            model = zoo.build_gru(input_shape=(TIME, FEATURES), num_outputs=4, causal=True,
                                  **options)
            x = np.random.default_rng(0).standard_normal((16, TIME, FEATURES)).astype(
                np.float32)
            for mode in modes:
                functions, batch, paths = {}, [], []
                for form in FORMS:
                    path = pathlib.Path(workdir) / f"{len(rows) + len(batch)}.tflite"
                    with (bench_export.converting_in_process(),
                          mock.patch.object(streaming, "GATE_MATH_MODES",
                                            kept if form == "gate math" else ())):
                        row = bench_export.export_or_exit(
                            model, path, f"{name} {mode} {form}",
                            quantization=None if mode == "float32" else mode,
                            recipe="auto", calibration=x, streaming=True)
                    row.update(model=name, mode=mode, form=form,
                               ops=sum(row["structure"]["subgraph_ops"]))
                    functions[form] = bench_export.step_runner(path, TIME)
                    batch.append(row)
                    paths.append(path)
                timing = bench_export.interleaved(functions, 200)
                # The C++ runtime's frames, both files in turn, five rounds.
                compiled = [compiled_runner(path) for path in paths]
                cpp = [[median_us(run, runs=1000) for run in compiled] for _ in range(5)]
                for number, row in enumerate(batch):
                    row["us_per_frame"] = timing[row["form"]]["cpu_us"] / TIME
                    row["cpp_us"] = float(np.median([times[number] for times in cpp]))
                    print({k: row[k] for k in ("model", "mode", "form", "ops", "size",
                                               "us_per_frame", "cpp_us")}, flush=True)
                rows += batch
    return rows


def _cell(rows, row):
    return next(r for r in rows if r["model"] == row["model"] and r["mode"] == row["mode"]
                and r["form"] == "cell")


def render(rows):
    lines = ["| model | mode | file | ops | size (KB) | Python µs/frame | vs cell | "
             "C++ µs/frame | vs cell | max err vs Keras |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        cell = _cell(rows, row)
        lines.append(f"| {row['model']} | {row['mode']} | {row['form']} | {row['ops']} | "
                     f"{row['size'] / 1024:.1f} | {row['us_per_frame']:.2f} | "
                     f"{row['us_per_frame'] / cell['us_per_frame']:.2f} | "
                     f"{row['cpp_us']:.2f} | {row['cpp_us'] / cell['cpp_us']:.2f} | "
                     f"{row['max_abs_error']:.2g} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="stacked,attention,cnn_gru,gru_fcn")
    parser.add_argument("--modes", default="float32,float16,dynamic")
    parser.add_argument("--update", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args(argv)
    rows = measure(args.models.split(","), args.modes.split(","))
    table = render(rows)
    print(table)
    if args.update:
        from bench_export import machine_description
        from compare_report import write_section

        def span(mode, key):
            values = [r[key] / _cell(rows, r)[key] for r in rows
                      if r["form"] == "gate math" and r["mode"] == mode]
            return f"{min(values):.2f}-{max(values):.2f}"

        reading = "; ".join(f"{mode} {span(mode, 'us_per_frame')}x in Python, "
                            f"{span(mode, 'cpp_us')}x in C++" for mode in args.modes.split(","))
        write_section(TITLE, f"""Command: `python benchmarks/step_gate_math.py --update`
({machine_description()}, {time.strftime("%Y-%m-%d")}).
Causal models of bench_streaming's "files" table (2 x GRU(64), 8 features, 4 classes),
step files exported with `to_tflite(streaming=True)`; "cell": each GRU layer as Keras's
cell computes it (the export before 2026-12-06, and still for int8 and int16x8); "gate
math": the chunked form's `gru_step` (the float export now). Python: T={TIME} frames per
call, one `invoke()` each, both files timed in interleaved blocks (one thread, median
thread time); C++: one frame through `CompiledModel` (median µs, the two files in turn,
median of five rounds of 1000 frames). "ops": in the file.

{render(rows)}

Reading: time per frame of the gate math's file against the cell's: {reading}; the
same error against Keras. A C++ frame here is mostly the runtime's cost per call, so
its ratios move by more than the few ops saved.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())

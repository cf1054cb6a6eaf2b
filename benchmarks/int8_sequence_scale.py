"""int8 chunked loops: the input sequence rescaled at every iteration, once, or never.

    python benchmarks/int8_sequence_scale.py [--variants stacked,...] [--lengths 200,1000] [--update]

An int8 chunked file carries the whole input sequence (`T x features` int8 values) as a
loop variable that the body only reads. Calibration runs the loop bodies on a subset of
the samples (`export.calibration.MAX_RECORDED_ITERATIONS`), so the body used to get a
narrower range for the sequence than the one it has entering the loop, and the file
rescaled all of it at every iteration: work quadratic in T. Now calibration gives the
body the sequence's own range (`_Loop.widen_read_only`), so one scale and no rescale;
and where scales still differ, `export.integer_loops` rescales the sequence once, before
the loop (`read_only_in_reader_scale`).

For each variant (bench_export's reference models: 2 x GRU(64), 8 features; 100
calibration samples) and length, the script exports the int8 file three ways with
`to_tflite` (automatic form), run in this process so that the older behaviour can be
switched back on: "rescale every iteration" (the previous export), "rescale before the
loop" (the same outputs bit for bit) and "one scale" (the export now). It times them
interleaved with ONNX Runtime's fused GRU on the model's PyTorch twin (one thread;
median thread time) and with the C++ `litert-benchmark`. With `--update` the table goes
to the section "int8 loops: the input sequence's scale" of BENCHMARKS.md.
"""

import contextlib
import functools
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TITLE = "int8 loops: the input sequence's scale"
FORMS = ("rescale every iteration", "rescale before the loop", "one scale")


@contextlib.contextmanager
def behaviour(form):
    """Converts in this process (not in the exporter's child process, which would not
    see the switches), with the calibration and loop rewrite of `form`."""
    from bench_export import converting_in_process

    from export import calibration, integer_loops

    widen = calibration._Loop.widen_read_only
    rewrite = calibration.integer_loop_variables
    if form != "one scale":
        calibration._Loop.widen_read_only = lambda *args: None
    if form == "rescale every iteration":
        calibration.integer_loop_variables = functools.partial(
            integer_loops.integer_loop_variables, read_only_in_reader_scale=False)
    try:
        with converting_in_process():
            yield
    finally:
        calibration._Loop.widen_read_only = widen
        calibration.integer_loop_variables = rewrite


def sequence_rescales(path, features):
    """`(in loop bodies, in the main graph)`: int8 rescales of a `T x features` tensor."""
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model(str(path))
    body = main = 0
    for number, graph in enumerate(flat.subgraphs):
        for op in graph.operators or []:
            source = graph.tensors[op.inputs[0]]
            if (flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex) == "QUANTIZE"
                    and source.type == graph.tensors[op.outputs[0]].type
                    and len(source.shape) >= 2 and source.shape[-1] == features
                    and source.shape[-2] > 1):
                if number:
                    body += 1
                else:
                    main += 1
    return body, main


def measure(variants, lengths):
    import bench_export

    from export import LiteModel

    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for variant in variants:
            for steps in lengths:
                model, calibration, ort = bench_export.reference_with_peer(
                    variant, steps, workdir)
                functions, batch, paths, outputs = {"ort": ort}, [], [], []
                probe = calibration[:8]
                for form in FORMS:
                    path = pathlib.Path(workdir) / f"{variant}_{steps}_{len(batch)}.tflite"
                    with behaviour(form):
                        row = bench_export.export_or_exit(
                            model, path, f"{variant} T={steps} {form}", quantization="int8",
                            recipe="auto", calibration=calibration)
                    body, main = sequence_rescales(path, bench_export.FEATURES)
                    row.update(variant=variant, T=steps, form=form, body_rescales=body,
                               main_rescales=main)
                    functions[form] = bench_export.lite_runner(path)
                    outputs.append(LiteModel(path).predict(probe))
                    paths.append(path)
                    batch.append(row)
                # The first two differ only in where the same rescale runs.
                batch[1]["identical"] = bool(np.array_equal(outputs[0], outputs[1]))
                bench_export.time_batch(functions, batch, lambda row: row["form"], steps,
                                        ("variant", "T", "form", "size", "us", "ort_us"))
                for row, path in zip(batch, paths):
                    row["tool_us"] = bench_export.litert_benchmark(
                        path, bench_export.runs_for(steps))
                results += batch
    return results


def _first(rows, row):
    """The "rescale every iteration" row of `row`'s variant and length."""
    return next(r for r in rows if r["variant"] == row["variant"] and r["T"] == row["T"]
                and r["form"] == FORMS[0])


def render(rows):
    from bench_export import tool_cell

    lines = ["| variant | T | file | rescales of the sequence (bodies / before) | size (KB) | "
             "µs | vs ORT | vs every iteration | litert-benchmark µs (vs every iteration) | "
             "max err vs Keras |",
             "|---|---:|---|---|---:|---:|---:|---:|---|---:|"]
    for row in rows:
        first = _first(rows, row)
        same = {True: ", same outputs", False: ", OUTPUTS DIFFER"}.get(row.get("identical"), "")
        lines.append(f"| {row['variant']} | {row['T']} | {row['form']}{same} | "
                     f"{row['body_rescales']} / {row['main_rescales']} | "
                     f"{row['size'] / 1024:.1f} | {row['us']:.0f} | "
                     f"{row['us'] / row['ort_us']:.2f} | {row['us'] / first['us']:.2f} | "
                     f"{tool_cell(row, first)} | {row['max_abs_error']:.2g} |")
    return "\n".join(lines)


def update(rows, table, write_section):
    """Records the table and its reading in BENCHMARKS.md."""
    from bench_export import machine_description, span

    reading = []
    for steps in sorted({r["T"] for r in rows}):
        now = [r for r in rows if r["T"] == steps and r["form"] == FORMS[2]]
        once = [r for r in rows if r["T"] == steps and r["form"] == FORMS[1]]
        tool = [r["tool_us"] / _first(rows, r)["tool_us"] for r in now
                if r.get("tool_us") and _first(rows, r).get("tool_us")]
        reading.append(
            f"T={steps}: one scale {span([r['us'] / _first(rows, r)['us'] for r in now])}x "
            f"the time of the rescale at every iteration ({span(tool)}x with "
            f"`litert-benchmark`), rescaling once before the loop "
            f"{span([r['us'] / _first(rows, r)['us'] for r in once])}x; vs ORT "
            f"{span([_first(rows, r)['us'] / r['ort_us'] for r in now])} -> "
            f"{span([r['us'] / r['ort_us'] for r in now])}.")
    write_section(TITLE, f"""Command: `python benchmarks/int8_sequence_scale.py --update`
({machine_description()}, {time.strftime("%Y-%m-%d")}).
One thread, default XNNPACK delegate; median thread time in interleaved blocks, and the
median of the C++ `litert-benchmark` tool (one thread) on the same files.

bench_export's reference models (2 x GRU(64), 8 features), int8, automatic form, 100
calibration samples. "rescale every iteration": the body calibrated on its subset of the
samples, so the sequence has a narrower scale inside the loop than outside and the body
rescales all `T x 8` values at every iteration (the export before 2026-12-06); "rescale
before the loop": the same scales, the rescale moved before the loop
(`export.integer_loops`, the same outputs bit for bit); "one scale": the body given the
sequence's range from all samples (`export.calibration`, the export now), no rescale.
"rescales of the sequence": int8 `QUANTIZE` ops of a `T x 8` tensor in loop bodies /
in the main graph.

{table}

Reading: {" ".join(reading)}
""")


def main(argv=None):
    from bench_export import run_script

    return run_script(argv, __doc__, measure, render, update,
                      variants="stacked,attention,bidirectional,bidirectional_attention",
                      lengths="200,1000")


if __name__ == "__main__":
    sys.exit(main())

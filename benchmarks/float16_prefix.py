"""float16 files whose loop has steps before it: shared weights or a loop of their own.

    python benchmarks/float16_prefix.py [--variants stacked,...] [--lengths 211,997] [--update]

A chunked file runs the first `T mod chunk_steps` steps unrolled before its loop. In a
float16 file the weights that those steps and the loop body both use are dequantized
once, before the loop, and enter the body as loop variables: XNNPACK then takes them as
inputs that may change at every call rather than as static weights (docs/tflite-facts.md,
F28). The export now runs those steps in a `WHILE` loop of one iteration of their own
(`export.chunked.prefix_in_loop`), so that every loop body dequantizes its own weights.

For each variant (bench_export's reference models: 2 x GRU(64), 8 features) and length
(primes, so that every chunk size leaves steps before the loop), the script exports the
float16 file both ways with `to_tflite` (automatic form; `export.chunked.PREFIX_LOOP_MODES`
emptied for the old one, which the exporter reads in this process) and the float32 file,
and times them interleaved with ONNX Runtime's fused GRU on the model's PyTorch twin (one
thread; median thread time). With `--update` the table goes to the section "float16 files
with steps before the loop" of BENCHMARKS.md.
"""

import os
import pathlib
import sys
import tempfile
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TITLE = "float16 files with steps before the loop"
FORMS = ("float32", "float16 shared weights", "float16 prefix loop")


def measure(variants, lengths):
    import bench_export
    from export import chunked

    modes = chunked.PREFIX_LOOP_MODES
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for variant in variants:
            for steps in lengths:
                model, calibration, ort = bench_export.reference_with_peer(
                    variant, steps, workdir, samples=20)
                chunk = chunked.chunk_steps_for(model, steps, "float16")
                functions, batch, paths = {"ort": ort}, [], []
                for form in FORMS:
                    path = pathlib.Path(workdir) / f"{variant}_{steps}_{len(batch)}.tflite"
                    paths.append(path)
                    shared = form.endswith("shared weights")
                    with mock.patch.object(chunked, "PREFIX_LOOP_MODES", () if shared else modes):
                        row = bench_export.export_or_exit(
                            model, path, f"{variant} T={steps} {form}",
                            quantization=None if form == "float32" else "float16",
                            recipe="auto", calibration=calibration)
                    row.update(variant=variant, T=steps, form=form, chunk=chunk,
                               before=steps % chunk if chunk < steps else 0)
                    functions[form] = bench_export.lite_runner(path)
                    batch.append(row)
                bench_export.time_batch(functions, batch, lambda row: row["form"], steps,
                                        ("variant", "T", "form", "size", "us", "ort_us"))
                for row, path in zip(batch, paths):
                    # The C++ tool's median, the same files without Python in between.
                    row["tool_us"] = bench_export.litert_benchmark(
                        path, bench_export.runs_for(steps))
                results += batch
    return results


def _shared(rows, row):
    """The float16 shared-weights row of `row`'s variant and length."""
    return next(r for r in rows if r["variant"] == row["variant"] and r["T"] == row["T"]
                and r["form"] == "float16 shared weights")


def render(rows):
    from bench_export import tool_cell

    lines = ["| variant | T | steps per iteration + before the loop | file | size (KB) | µs | "
             "vs ORT | vs float16 shared | litert-benchmark µs (vs float16 shared) | "
             "max err vs Keras |",
             "|---|---:|---|---|---:|---:|---:|---:|---|---:|"]
    for row in rows:
        shared = _shared(rows, row)
        lines.append(f"| {row['variant']} | {row['T']} | {row['chunk']} + {row['before']} | "
                     f"{row['form']} | {row['size'] / 1024:.1f} | {row['us']:.0f} | "
                     f"{row['us'] / row['ort_us']:.2f} | {row['us'] / shared['us']:.2f} | "
                     f"{tool_cell(row, shared)} | {row['max_abs_error']:.2g} |")
    return "\n".join(lines)


def update(rows, table, write_section):
    """Records the table and its reading in BENCHMARKS.md."""
    from bench_export import machine_description

    fixed = [r for r in rows if r["form"] == "float16 prefix loop" and r["before"]]
    gains = [r["us"] / _shared(rows, r)["us"] for r in fixed]
    growth = [r["size"] / _shared(rows, r)["size"] for r in fixed]
    tool = [r["tool_us"] / _shared(rows, r)["tool_us"] for r in fixed
            if r.get("tool_us") and _shared(rows, r).get("tool_us")]
    tool_text = (f" ({min(tool):.2f}-{max(tool):.2f}x with `litert-benchmark`)" if tool
                 else "")
    write_section(TITLE, f"""Command: `python benchmarks/float16_prefix.py --update`
({machine_description()}, {time.strftime("%Y-%m-%d")}).
One thread, default XNNPACK delegate; median thread time in interleaved blocks, and the
median of the C++ `litert-benchmark` tool (one thread) on the same files.

bench_export's reference models at prime lengths, so that the automatic form's loop
leaves steps before it ("steps per iteration + before the loop"). "float16 shared
weights": those steps unrolled before the loop, sharing their float16 weights with the
body, which then gets them dequantized from outside (docs/tflite-facts.md, F28); "float16
prefix loop": those steps in a loop of one iteration of their own (what the export
does now); float32 for comparison.

{table}

Reading: with the steps before the loop in their own loop the float16 files take
{min(gains):.2f}-{max(gains):.2f}x the time of the shared-weights form{tool_text}, for
{min(growth):.3f}-{max(growth):.3f}x its size (the constants stay shared; each body
only adds its own `DEQUANTIZE` ops).
""")


def main(argv=None):
    from bench_export import run_script

    return run_script(argv, __doc__, measure, render, update,
                      variants="stacked,attention,bidirectional,bidirectional_attention",
                      lengths="211,997")


if __name__ == "__main__":
    sys.exit(main())

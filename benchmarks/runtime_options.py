"""The same files under LiteRT's runtime options: Interpreter, CompiledModel, weight cache.

    python benchmarks/runtime_options.py [--variants stacked,...] [--lengths 200,1000] [--update]

A chunked file's loop body holds a few unrolled steps, and each step's recurrent
`FULLY_CONNECTED` reads the same weights; XNNPACK packs the weights of every node anew
(docs/tflite-facts.md, F16), so the body keeps one packed copy per step. XNNPACK's weight
cache shares one packed copy between the nodes that read the same constant. LiteRT's
Python `Interpreter` does not offer it; its `CompiledModel` API does
(`CpuOptions(xnnpack_weight_cache_path=...)`; ":memory:" keeps the cache in memory).

For each variant (bench_export's reference models: 2 x GRU(64), 8 features), length and
mode (float32, int8; automatic form, exported with `to_tflite`), the script times one
file three ways, interleaved with ONNX Runtime's fused GRU on the model's PyTorch twin
(one thread; median thread time): the `Interpreter` (what bench_export times), a
`CompiledModel` with the default CPU options (what `litert-benchmark` runs), and a
`CompiledModel` with the in-memory weight cache. With `--update` the table goes to the
section "LiteRT runtime options" of BENCHMARKS.md.
"""

import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TITLE = "LiteRT runtime options"
RUNTIMES = ("Interpreter", "CompiledModel", "CompiledModel + weight cache")
IN_MEMORY = ":memory:"


def measure(variants, lengths):
    import bench_export
    from bench_streaming import compiled_runner

    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for variant in variants:
            for steps in lengths:
                model, calibration, ort = bench_export.reference_with_peer(
                    variant, steps, workdir)
                functions, batch = {"ort": ort}, []
                for mode in ("float32", "int8"):
                    path = pathlib.Path(workdir) / f"{variant}_{steps}_{mode}.tflite"
                    row = bench_export.export_or_exit(
                        model, path, f"{variant} T={steps} {mode}",
                        quantization=None if mode == "float32" else mode,
                        recipe="auto", calibration=calibration)
                    runners = (bench_export.lite_runner(path), compiled_runner(path),
                               compiled_runner(path, xnnpack_weight_cache_path=IN_MEMORY))
                    for runtime, runner in zip(RUNTIMES, runners):
                        key = f"{mode} {runtime}"
                        functions[key] = runner
                        batch.append(dict(row, variant=variant, T=steps, mode=mode,
                                          runtime=runtime, key=key))
                bench_export.time_batch(functions, batch, lambda row: row["key"], steps,
                                        ("variant", "T", "key", "us", "ort_us"))
                results += batch
    return results


def _base(rows, row):
    """The Interpreter row of `row`'s variant, length and mode."""
    return next(r for r in rows if r["variant"] == row["variant"] and r["T"] == row["T"]
                and r["mode"] == row["mode"] and r["runtime"] == RUNTIMES[0])


def render(rows):
    lines = ["| variant | T | mode | form | runtime | µs | vs ORT | vs Interpreter |",
             "|---|---:|---|---|---|---:|---:|---:|"]
    for row in rows:
        base = _base(rows, row)
        lines.append(f"| {row['variant']} | {row['T']} | {row['mode']} | {row['recipe']} | "
                     f"{row['runtime']} | {row['us']:.0f} | {row['us'] / row['ort_us']:.2f} | "
                     f"{row['us'] / base['us']:.2f} |")
    return "\n".join(lines)


def update(rows, table, write_section):
    """Records the table and its reading in BENCHMARKS.md."""
    from bench_export import machine_description, span

    def ratios(mode, runtime, against):
        return [r["us"] / next(o for o in rows if o["variant"] == r["variant"]
                               and o["T"] == r["T"] and o["mode"] == mode
                               and o["runtime"] == against)["us"]
                for r in rows if r["mode"] == mode and r["runtime"] == runtime]

    reading = "; ".join(
        f"{mode}: the weight cache takes {span(ratios(mode, RUNTIMES[2], RUNTIMES[1]))}x "
        f"the time of the same `CompiledModel` without it, and `CompiledModel` "
        f"{span(ratios(mode, RUNTIMES[1], RUNTIMES[0]))}x the `Interpreter`'s"
        for mode in ("float32", "int8"))
    write_section(TITLE, f"""Command: `python benchmarks/runtime_options.py --update`
({machine_description()}, {time.strftime("%Y-%m-%d")}).
One thread, median thread time, each file's three runtimes and ONNX Runtime timed in
interleaved blocks.

bench_export's reference models (2 x GRU(64), 8 features), automatic form. "Interpreter":
LiteRT's Python `Interpreter` with its default XNNPACK delegate (what the other sections
time); "CompiledModel": LiteRT's `CompiledModel` API on the CPU (what `litert-benchmark`
runs); "+ weight cache": the same with `CpuOptions(xnnpack_weight_cache_path=":memory:")`,
which packs weights that several nodes read once (docs/tflite-facts.md, F16).

{table}

Reading: {reading}.
""")


def main(argv=None):
    from bench_export import run_script

    return run_script(argv, __doc__, measure, render, update,
                      variants="stacked,attention,bidirectional", lengths="200,1000")


if __name__ == "__main__":
    sys.exit(main())

"""int8 files on a CPU with AMX: XNNPACK's AMX kernels against its AVX-512 VNNI ones.

    python benchmarks/amx_int8.py [--lengths 16,50,200,1000] [--update]

Why: on an Intel Xeon with AMX (Advanced Matrix Extensions), the export benchmark's int8
files ran slower than their float32 twins, where on an AMD EPYC they ran 1.2-1.4x faster
(BENCHMARKS.md, "Export"). A `perf` profile of the reference model's int8 chunked file
on the AMX machine shows why: XNNPACK computes every int8 fully connected op, the
recurrence's one-row products included, with its AMX micro-kernels
(`xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_1x64c4__avx512amx` for a row), and those take
45% of the file's time. AMX multiplies 16-row tiles; a batch-1 recurrence has one row.

What it measures: the reference model (2 x GRU(64), 8 features, 4 classes) exported by
`to_tflite` in float32 and int8 (the automatic form) at each length, each file timed
against ONNX Runtime's fused GRU in the same child process (alternating blocks, median
thread CPU time, one thread), in two kinds of child process:

- "AMX": as LiteRT runs by default; XNNPACK asks Linux for AMX and gets it.
- "no AMX": the child first installs a 4 KB alternate signal stack. Linux refuses a
  process's request for AMX state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`) with ENOSPC while
  any of its threads has an alternate signal stack too small for that state, so
  XNNPACK's request fails and it falls back to its AVX-512 VNNI kernels. Nothing else
  changes: the same file, the same LiteRT, the same peer. LiteRT has no option for this;
  the trick is for measuring only, not something gru-zoo does to a user's process.

Each child reports whether it holds AMX permission (`arch_prctl(ARCH_GET_XCOMP_PERM)`),
so the table says which kernels ran. On a CPU without AMX both columns are the same
kernels (and the script says so). The children alternate (AMX, no AMX, AMX, no AMX); the
table gives the median of their medians.

The table goes to the section `## int8 on a CPU with AMX` of BENCHMARKS.md with `--update`.
"""

import argparse
import ctypes
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTION = "## int8 on a CPU with AMX"


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]


_SMALL_STACK = ctypes.create_string_buffer(4096)


def refuse_amx():
    """Install a 4 KB alternate signal stack on this thread, so that Linux refuses the
    process's later requests for AMX state (ENOSPC). Call before LiteRT starts."""
    libc = ctypes.CDLL(None, use_errno=True)
    stack = _StackT(ctypes.cast(_SMALL_STACK, ctypes.c_void_p), 0, len(_SMALL_STACK))
    if libc.sigaltstack(ctypes.byref(stack), None) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack failed")


def child(args):
    """Times each file against ONNX Runtime in this process; prints one JSON line."""
    if args.no_amx:
        refuse_amx()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_export
    import torch_twins

    from export.runtime import amx_granted

    timings = {}
    for spec in args.files:
        path, onnx_path = spec.split("::")
        session = torch_twins.ort_session(onnx_path)
        import numpy as np

        steps = session.get_inputs()[0].shape[1]
        x = np.random.default_rng(0).standard_normal((1, steps, 8)).astype("float32")
        functions = {"file": bench_export.lite_runner(path),
                     "ort": lambda s=session, x=x: s.run(None, {"inputs": x})}
        timing = bench_export.interleaved(functions, bench_export.runs_for(steps))
        timings[path] = {"file_us": timing["file"]["cpu_us"], "ort_us": timing["ort"]["cpu_us"]}
    print(json.dumps({"amx_granted": amx_granted(), "timings": timings}), flush=True)
    return 0


def run_child(files, no_amx):
    command = [sys.executable, __file__, "--child"] + (["--no-amx"] if no_amx else []) + files
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def export_files(workdir, lengths):
    """`[(T, mode, file, onnx file)]`: the reference model's float32 and int8 files."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np

    import bench_export

    files = []
    for steps in lengths:
        model = bench_export.reference_model("stacked", steps)
        calibration = np.random.default_rng(0).standard_normal(
            (100, steps, bench_export.FEATURES)).astype("float32")
        onnx_path = pathlib.Path(workdir) / f"ref_{steps}.onnx"
        peer = bench_export.onnx_peer(model, calibration[:4], onnx_path)
        if "error" in peer:
            raise RuntimeError(peer["error"])
        for mode in ("float32", "int8"):
            path = pathlib.Path(workdir) / f"ref_{steps}_{mode}.tflite"
            row = bench_export.export_row(model, path, quantization=None if mode == "float32"
                                          else mode, recipe="auto", calibration=calibration)
            if "error" in row:
                raise RuntimeError(f"T={steps} {mode}: {row['error']}")
            files.append((steps, mode, str(path), str(onnx_path), row["recipe"]))
    return files


def render(results):
    meta = results["meta"]
    lines = [
        f"Command: `{meta['command']}` ({meta['machine']}; {meta['date']}; code at commit "
        f"{meta['code']}). Reference model (2 x GRU(64), 8 features), files from "
        "`to_tflite` (automatic form), each timed against ONNX Runtime's fused GRU in the same "
        "child process, one thread, batch 1, median thread CPU time; "
        f"{meta['rounds']} children of each kind, alternating, median of their medians. "
        "\"no AMX\": the child refuses XNNPACK the AMX state (see the script's docstring); "
        f"AMX permission held by the children: AMX {meta['granted']['amx']}, "
        f"no AMX {meta['granted']['no_amx']}.",
        "",
        "| T | file | form | µs, AMX | vs ORT, AMX | µs, no AMX | vs ORT, no AMX | AMX / no AMX |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['T']} | {row['mode']} | {row['recipe']} | {row['amx_us']:.0f} | "
            f"{row['amx_vs_ort']:.2f}x | {row['no_amx_us']:.0f} | {row['no_amx_vs_ort']:.2f}x | "
            f"{row['amx_us'] / row['no_amx_us']:.2f}x |")
    lines.append("")
    lines.append(results["reading"])
    return "\n".join(lines) + "\n"


def reading(rows, has_amx):
    int8 = [r for r in rows if r["mode"] == "int8"]
    float32 = [r for r in rows if r["mode"] == "float32"]
    if not has_amx:
        return ("This CPU has no AMX: both kinds of child ran the same kernels, and the "
                "columns differ only by noise.")
    slow = ", ".join(f"T={r['T']} {r['amx_us'] / r['no_amx_us']:.2f}x" for r in int8)
    ratio = ", ".join(f"T={r['T']} {r['amx_vs_ort']:.2f}x -> {r['no_amx_vs_ort']:.2f}x"
                      for r in int8)
    flat = ", ".join(f"{r['amx_us'] / r['no_amx_us']:.2f}x" for r in float32)
    return (f"Reading: with AMX the int8 files take longer ({slow} the time without it); "
            f"int8 vs ONNX Runtime: {ratio}. float32 files do not use AMX (AMX / no AMX: "
            f"{flat}, noise). So on an AMX machine the export benchmark's int8 ratios "
            "include XNNPACK's choice of AMX kernels for one-row products; a CPU without "
            "AMX (AMD and older Intel CPUs; ARM phones and microcontrollers have none) runs "
            "kernels like those of the \"no AMX\" column. gru-zoo's files are the same "
            "either way: the choice is XNNPACK's, at run time, and LiteRT has no option "
            "for it.")


def update_markdown(text, path):
    current = path.read_text()
    block = f"{SECTION}\n\n{text}"
    if SECTION in current:
        head, rest = current.split(SECTION, 1)
        tail = rest.split("\n## ", 1)
        current = head + block + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        current = current.rstrip("\n") + "\n\n" + block
    path.write_text(current)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="16,50,200,1000")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--update", action="store_true", help="write BENCHMARKS.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-amx", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_export

    lengths = [int(v) for v in args.lengths.split(",")]
    meta = {"command": "python benchmarks/amx_int8.py" + (" --update" if args.update else ""),
            "machine": bench_export.machine_description(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "code": bench_export.code_version(), "rounds": args.rounds}
    has_amx = "amx_int8" in bench_export.cpu_info()[1]
    with tempfile.TemporaryDirectory(prefix="gru_zoo_amx_") as workdir:
        files = export_files(workdir, lengths)
        specs = [f"{path}::{onnx}" for _, _, path, onnx, _ in files]
        runs = {"amx": [], "no_amx": []}
        for _ in range(args.rounds):
            for kind in ("amx", "no_amx"):
                runs[kind].append(run_child(specs, no_amx=kind == "no_amx"))
                print(kind, json.dumps(runs[kind][-1]), flush=True)
    meta["granted"] = {kind: "/".join("yes" if r["amx_granted"] else "no" for r in results)
                       for kind, results in runs.items()}
    rows = []
    for steps, mode, path, _, recipe in files:
        row = {"T": steps, "mode": mode, "recipe": recipe}
        for kind, results in runs.items():
            file_us = statistics.median(r["timings"][path]["file_us"] for r in results)
            ort_us = statistics.median(r["timings"][path]["ort_us"] for r in results)
            row[f"{kind}_us"] = file_us
            row[f"{kind}_vs_ort"] = file_us / ort_us
        rows.append(row)
    results = {"meta": meta, "rows": rows, "reading": reading(rows, has_amx)}
    text = render(results)
    print(text)
    out = ROOT / "benchmarks" / "results" / "amx_int8.json"
    out.write_text(json.dumps(results, indent=1))
    if args.update:
        update_markdown(text, ROOT / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

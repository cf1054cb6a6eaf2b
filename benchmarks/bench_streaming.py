"""Streaming benchmark: what `causal=True` costs in accuracy and what the step files cost.

Three parts, each saving its numbers under `benchmarks/results/streaming/`; every run
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
  runner with the states fed back) and in the C++ `litert-benchmark` shipped with
  ai-edge-litert (`--num_threads=1`, its median).
- `drift`: the trained causal GRU-FCN's step files (int8, int16x8) streamed over the
  150 frames of every GunPoint test series: error against Keras per frame (max and
  mean over series), and the test accuracy of the last frame's output.

Run:
    python benchmarks/bench_streaming.py accuracy --seeds 3   # trains (CPU minutes)
    python benchmarks/bench_streaming.py files
    python benchmarks/bench_streaming.py drift
    python benchmarks/bench_streaming.py render               # rewrite the section only
"""

import argparse
import json
import os
import pathlib
import platform
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
    payload = dict(payload, machine=f"{platform.machine()} CPU, {os.cpu_count()} cores "
                   f"(shared), Python {platform.python_version()}",
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


def render():
    sections = ["## Streaming (`benchmarks/bench_streaming.py`)", ""]
    sections.append(
        "Models built with `build_gru(..., causal=True)` run one frame at a time: "
        "`to_tflite(model, path, streaming=True)` writes a step file whose inputs are the "
        "frame and named states (each causal convolution's last `(kernel_size - 1) * "
        "dilation` input frames, the running mean of global average pooling, the running "
        "softmax of attention pooling, the recurrent states, the max-pooling window), "
        "verified frame by frame against the full-sequence Keras model in LiteRT and in "
        "TFLite Micro.")
    sections.append("")
    acc = _load("accuracy")
    if acc:
        sections += ["### Accuracy: `causal=True` vs `causal=False`", "",
                     "`python benchmarks/bench_streaming.py accuracy --seeds "
                     f"{len(acc['rows'][0]['seeds'])}` ({acc['machine']}, {acc['date']}). "
                     "Each row is `zoo.compare.compare(dataset, variants=[variant], "
                     "budget='full', causal=...)`: the dataset's recipe with only `causal` "
                     "changed, test accuracy over seeds " + str(acc["rows"][0]["seeds"]) + ".",
                     "",
                     "| dataset | variant | causal=False | causal=True | change | epochs | s per run |",
                     "|---|---|---:|---:|---:|---:|---:|"]
        by_key = {(r["dataset"], r["variant"], r["causal"]): r for r in acc["rows"]}
        for (dataset, variant, causal), row in by_key.items():
            if causal:
                continue
            other = by_key.get((dataset, variant, True))
            if other is None:
                continue
            sections.append(
                f"| {dataset} | {variant} | {row['mean']:.4f} ± {row['std']:.4f} | "
                f"{other['mean']:.4f} ± {other['std']:.4f} | {other['mean'] - row['mean']:+.4f} | "
                f"{row['epochs']} | {0.5 * (row['seconds_per_run'] + other['seconds_per_run']):.0f} |")
        sections.append("")
        notes = acc.get("notes")
        if notes:
            sections += [notes, ""]
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
    parser.add_argument("part", choices=["accuracy", "files", "drift", "render"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default=None,
                        help="accuracy: comma-separated datasets (default: all)")
    args = parser.parse_args(argv)
    if args.part == "accuracy":
        accuracy(args.seeds, args.datasets.split(",") if args.datasets else None)
    render()


if __name__ == "__main__":
    main()

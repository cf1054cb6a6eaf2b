"""RNN vs LSTM vs GRU on the embedded datasets: tables and plots for BENCHMARKS.md.

    python benchmarks/compare_datasets.py --budget full --seeds 3
    python benchmarks/compare_datasets.py --datasets gunpoint --budget quick

Each dataset runs `zoo.compare.compare` (the same as
`gru-zoo compare --dataset D --budget B --seeds N --out runs/compare/D`), copies its
tables and plots to `benchmarks/results/compare_<dataset>/` and rewrites the section
`## RNN vs LSTM vs GRU` of BENCHMARKS.md from every dataset's saved results.
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from compare_report import write_section  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
TITLE = "RNN vs LSTM vs GRU"
COPIED = ("comparison.md", "comparison.csv", "runs.csv", "curves.png", "metric_vs_time.png")
EMBEDDED = ("gunpoint", "italy_power_demand", "airline_passengers")


def run(dataset, budget, seeds, cells, variants, out):
    from export import to_tflite
    from zoo.compare import compare

    result = compare(dataset, cells=cells, variants=variants, seeds=seeds, budget=budget,
                     out_dir=out / dataset, tflite=to_tflite)
    command = (f"gru-zoo compare --dataset {dataset} --cells {','.join(cells)} "
               f"--seeds {len(seeds) if isinstance(seeds, list) else seeds} "
               f"--budget {budget} --out {out / dataset}"
               + (f" --variants {','.join(variants)}" if variants else ""))
    report(dataset, out / dataset, command, result.budget)
    print(result.to_markdown())
    return result


def report(dataset, source, command, budget):
    """Copies one comparison's tables and plots into benchmarks/results/."""
    target = RESULTS / f"compare_{dataset}"
    target.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copy(pathlib.Path(source) / name, target / name)
    # The table again from the CSV, with the current formatting.
    import zoo
    from zoo.compare import comparison_markdown, read_rows

    rows = read_rows(target / "comparison.csv")
    metric = "accuracy" if "test_accuracy_mean" in rows[0] else "mse"
    baselines = zoo.load_dataset(dataset).forecast_baselines("test")
    if baselines:
        budget = {**budget, "baselines": baselines}
    (target / "comparison.md").write_text(comparison_markdown(rows, metric, baselines))
    (target / "run.json").write_text(json.dumps({
        "command": command,
        "budget": budget,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), "
                   f"Python {platform.python_version()}",
    }, indent=2, default=str) + "\n")


def budget_from_runs(source):
    """The budget of a finished `gru-zoo compare` directory, read from its runs."""
    source = pathlib.Path(source)
    configs = [json.loads(p.read_text()) for p in sorted(source.glob("runs/*/config.json"))]
    first = configs[0]
    return {"name": first["budget"], **{k: v for k, v in first["train"].items() if k != "seed"},
            "train": first["dataset"]["train"], "val": first["dataset"]["val"],
            "test": first["dataset"]["test"],
            "seeds": sorted({c["train"]["seed"] for c in configs})}, first["command"]

def merge(sources, out):
    """Joins finished `gru-zoo compare` directories run with the same budget (e.g. the
    GRU in one command, the other cells in another) into one comparison under `out`."""
    import zoo
    from zoo.compare import _aggregate, read_rows, write_comparison

    runs, histories, keys = [], {}, []
    for source in sources:
        for row in read_rows(pathlib.Path(source) / "runs.csv"):
            runs.append(row)
            key = (row["variant"], row["cell"])
            if key not in keys:
                keys.append(key)
        for run in sorted((pathlib.Path(source) / "runs").iterdir()):
            if not (run / "history.json").exists():
                continue  # a failed (diverged) run: in runs.csv, without curves
            build = json.loads((run / "config.json").read_text())["build"]
            histories.setdefault((build["variant"], build["cell"]), []).append(
                json.loads((run / "history.json").read_text()))
    order = {"rnn": 0, "lstm": 1, "gru": 2}
    keys.sort(key=lambda k: (k[0], order.get(k[1], 9)))
    metric = "accuracy" if "test_accuracy" in runs[0] else "mse"
    rows = _aggregate(runs, metric, keys)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{runs[0]['dataset']} ({len({r['seed'] for r in runs})} seed(s))"
    baselines = zoo.load_dataset(runs[0]["dataset"]).forecast_baselines("test")
    write_comparison(out, runs, rows, histories, metric, title, baselines=baselines)
    return out


def section():
    parts = [
        "Every model gets the dataset's recommended configuration and recipe "
        "(`zoo.cli.RECOMMENDED`, trained by `zoo.train`: Adam with clipnorm 1.0, the "
        "decay and data split named under each table, early stopping that restores the "
        "best weights) with only the cell swapped, and the same budget; mean ± std over "
        "seeds. Test "
        "accuracy is on the UCR test split; airline test MSE is on the normalized log "
        "series (last 24 months). Training times were measured on a CPU shared with other "
        "jobs: compare them within a table, not across tables.",
    ]
    for dataset in EMBEDDED:
        target = RESULTS / f"compare_{dataset}"
        if not (target / "run.json").exists():
            continue
        meta = json.loads((target / "run.json").read_text())
        budget = meta["budget"]
        parts.append(
            f"### {dataset}\n\n"
            + (f"`{meta['script']}`, which runs the equivalent of " if meta.get("script")
               else "")
            + f"`{meta['command']}`  \n"
            f"Budget `{budget['name']}`: at most {budget['epochs']} epochs, patience "
            f"{budget['patience']}, batch {budget['batch_size']}, decay "
            f"`{budget.get('lr_decay')}`, fit on `{budget.get('fit_on', 'train')}`, seeds "
            f"{budget['seeds']}; "
            f"{budget['train']} train / {budget['val']} validation / {budget['test']} test "
            f"samples. {meta['machine']}.\n\n"
            + (target / "comparison.md").read_text().strip() + "\n\n"
            f"![curves](benchmarks/results/compare_{dataset}/curves.png) "
            f"![metric vs time](benchmarks/results/compare_{dataset}/metric_vs_time.png)  \n"
            f"Per-seed numbers: [runs.csv](benchmarks/results/compare_{dataset}/runs.csv)."
        )
    notes = RESULTS / "compare_notes.md"
    if notes.exists():
        parts.append(notes.read_text().strip())
    return "\n\n".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(EMBEDDED))
    parser.add_argument("--cells", default="rnn,lstm,gru")
    parser.add_argument("--variants", default=None)
    parser.add_argument("--budget", default="full")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--from", dest="source", help="report a finished "
                        "`gru-zoo compare` directory (with --datasets naming its dataset); "
                        "several, comma-separated, are merged into --out first")
    args = parser.parse_args(argv)
    if args.source:
        sources = args.source.split(",")
        source = sources[0] if len(sources) == 1 else merge(sources, pathlib.Path(args.out))
        budget, command = budget_from_runs(sources[0])
        if len(sources) > 1:
            command = " and ".join(f"`{budget_from_runs(s)[1]}`" for s in sources).strip("`")
        report(args.datasets, source, command, budget)
        print(f"Updated {write_section(TITLE, section())}")
        return
    cells = args.cells.split(",")
    variants = args.variants.split(",") if args.variants else None
    for dataset in args.datasets.split(","):
        run(dataset, args.budget, args.seeds, cells, variants, pathlib.Path(args.out))
    print(f"Updated {write_section(TITLE, section())}")


if __name__ == "__main__":
    main()

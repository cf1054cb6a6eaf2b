"""The long-dependency study (adding problem) for BENCHMARKS.md.

    python benchmarks/compare_adding.py --lengths 100,200,600,1000 --num-train 5000 \
        --epochs 8 --lr 3e-3 --seeds 1
    python benchmarks/compare_adding.py --from runs/compare/adding    # report only

The study is `zoo.compare.adding_study`, the same as
`gru-zoo compare --dataset adding --lengths ... --out runs/compare/adding`. The script
copies its table and plot to `benchmarks/results/adding/` and rewrites the section
`## Adding problem` of BENCHMARKS.md (with `benchmarks/results/adding/NOTES.md`, the
hand-written reading of the numbers, when present).
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

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "adding"
TITLE = "Adding problem"


def copy_results(source, command):
    source = pathlib.Path(source)
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "adding.csv", RESULTS / "adding.csv")
    from zoo.compare import ADDING_BASELINE_MSE, adding_markdown, read_rows

    rows = read_rows(RESULTS / "adding.csv")
    (RESULTS / "adding.md").write_text(adding_markdown(rows, ADDING_BASELINE_MSE))
    replot(source, rows, RESULTS / "adding.png")
    budgets = {}
    for folder in sorted(source.glob("T*")):
        runs = folder / "runs"
        for run in sorted(runs.iterdir()) if runs.exists() else []:
            config = json.loads((run / "config.json").read_text())
            budgets[folder.name] = {"train": config["train"], "dataset": {
                k: config["dataset"][k] for k in ("train", "val", "test", "input_shape")}}
            break
    (RESULTS / "run.json").write_text(json.dumps({
        "command": command,
        "budgets": budgets,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), "
                   f"Python {platform.python_version()}",
    }, indent=2) + "\n")


def replot(source, rows, path):
    """Draws the study's plot again from its saved runs (no training)."""
    from zoo.compare import ADDING_BASELINE_MSE, AddingStudy, Comparison, plot_adding_study

    lengths = sorted({row["length"] for row in rows})
    comparisons = {}
    for length in lengths:
        histories = {}
        for run in sorted((pathlib.Path(source) / f"T{length}" / "runs").iterdir()):
            if not (run / "history.json").exists():
                continue  # a failed (diverged) run: in the tables, without curves
            build = json.loads((run / "config.json").read_text())["build"]
            key = (build["variant"], build["cell"])
            histories.setdefault(key, []).append(json.loads((run / "history.json").read_text()))
        comparisons[length] = Comparison(dataset="adding", task="regression", metric="mse",
                                         runs=[], rows=[], histories=histories, budget={})
    plot_adding_study(AddingStudy(lengths=lengths, comparisons=comparisons, rows=rows,
                                  baseline_mse=ADDING_BASELINE_MSE), path)


def section():
    meta = json.loads((RESULTS / "run.json").read_text())
    any_budget = next(iter(meta["budgets"].values()))
    train, data = any_budget["train"], any_budget["dataset"]
    parts = [
        "The adding problem (Hochreiter & Schmidhuber 1997): two channels, values in [0, 1] "
        "and a marker channel with one marker in each half; the target is the sum of the "
        "two marked values. Always predicting 1.0 gives MSE 1/6 ≈ 0.167 (dotted line). "
        "Published reference at T=600 (Bai, Kolter & Koltun 2018): GRU 5.3e-5, LSTM 0.164, "
        "RNN 0.177 (the budgets differ per table; see below).",
        f"`{meta['command']}`  \n"
        f"Budget per length and cell: {data['train']} training / {data['val']} validation "
        f"/ {data['test']} test sequences, at most {train['epochs']} epochs of batch "
        f"{train['batch_size']} (≈ {train['epochs'] * -(-data['train'] // train['batch_size'])}"
        f" updates), patience {train['patience']}, seed {train['seed']}. "
        f"{meta['machine']}.",
        (RESULTS / "adding.md").read_text().strip(),
        "![adding problem](benchmarks/results/adding/adding.png)",
    ]
    notes = RESULTS / "NOTES.md"
    if notes.exists():
        parts.append(notes.read_text().strip())
    return "\n\n".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="report an existing study directory")
    parser.add_argument("--command", help="the command that produced --from")
    parser.add_argument("--lengths", default="100,200,600,1000")
    parser.add_argument("--cells", default="rnn,lstm,gru")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", default="runs/compare/adding")
    args = parser.parse_args(argv)
    if args.source:
        command = args.command or f"(study directory {args.source})"
        copy_results(args.source, command)
    else:
        from zoo.compare import adding_study

        overrides = {}
        if args.epochs:
            overrides["epochs"] = args.epochs
        if args.lr:
            overrides["learning_rate"] = args.lr
        dataset_kwargs = {"num_train": args.num_train} if args.num_train else None
        study = adding_study(args.lengths, cells=args.cells, seeds=args.seeds,
                             budget=args.budget, out_dir=args.out,
                             dataset_kwargs=dataset_kwargs, **overrides)
        print(study.to_markdown())
        command = ("gru-zoo compare --dataset adding "
                   f"--lengths {args.lengths} --cells {args.cells} --budget {args.budget}"
                   + (f" --num-train {args.num_train}" if args.num_train else "")
                   + (f" --epochs {args.epochs}" if args.epochs else "")
                   + (f" --lr {args.lr:g}" if args.lr else "")
                   + f" --seeds {args.seeds} --out {args.out}")
        copy_results(args.out, command)
    print(f"Updated {write_section(TITLE, section())}")


if __name__ == "__main__":
    main()

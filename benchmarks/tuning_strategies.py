"""Benchmark: search strategies on an embedded dataset, same budget, and tuned vs default.

For each strategy (random, bayesian, hyperband, grid, genetic, pso) it runs the same
tuning job (same data, search space, epochs per trial and trial budget) and records
the validation loss of every trial. It then reports, per strategy:

- the best validation loss it found and its test accuracy (best hyperparameters
  retrained on train+validation for the trial's best epoch, mean over seeds);
- how many trials it needed to get within 1% of the best validation loss found by
  any strategy (`-` if it never did), and within 1% of its own best;

and the test accuracy of the best configuration found by any strategy against the
default configuration (the hypermodel's defaults = `build_gru`'s defaults), both
trained by the same procedure. It prints a Markdown table and, with `--write`,
replaces the `## Tuning` section of BENCHMARKS.md (other sections are left alone).

    python benchmarks/tuning_strategies.py --write

Hyperband does not take a trial budget: it sizes its brackets from `--epochs`
(reported: its trials and total epochs).
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STRATEGY_OPTIONS = {
    "random": {},
    "bayesian": {"num_initial_points": 4},
    "hyperband": {"factor": 3},
    "grid": {},
    "genetic": {"population_size": 4},
    "pso": {"swarm_size": 4},
}


def job(args, strategy, seed, out):
    space = {
        "units": {"min": 8, "max": 64, "step": 8, "default": 64},
        "num_layers": [2, 1],
        "dropout": [0.0, 0.1, 0.2, 0.3],
        "learning_rate": [0.001, 0.002, 0.005, 0.01, 0.02],
        "batch_size": [16, 8],
    }
    return {
        "job": {"name": f"bench-{strategy}", "output_dir": str(out / f"{strategy}-s{seed}"),
                "seed": seed},
        "data": {"dataset": args.dataset, "options": {"validation_split": 0.3}},
        "hypermodel": {"variant": "stacked", "space": space,
                       "fixed": {"recurrent_dropout": 0.0}},
        "search": {"strategy": strategy, "max_trials": args.trials, "epochs": args.epochs,
                   "patience": args.patience, "options": STRATEGY_OPTIONS[strategy]},
        "objective": {"metric": "val_loss"},
        "retrain": {"enabled": False},
    }


def test_accuracy(hypermodel, values, dataset, epochs, seeds):
    """Mean and spread of test accuracy of `values` retrained on train+val over seeds."""
    import keras_tuner
    import numpy as np

    from tuning.job import retrain

    accuracies = []
    for seed in seeds:
        hypermodel.seed = seed
        hp = keras_tuner.HyperParameters()
        for name, value in (values or {}).items():
            hp.Fixed(name, value)
        _, test = retrain(hypermodel, hp, dataset, epochs)
        accuracies.append(test["accuracy"])
    return float(np.mean(accuracies)), float(np.std(accuracies))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="italy_power_demand")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="search seed")
    parser.add_argument("--retrain-seeds", type=int, default=3)
    parser.add_argument("--strategies", default=",".join(STRATEGY_OPTIONS))
    parser.add_argument("--out", default="runs/bench/tuning")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)

    from tuning.config import parse_config
    from tuning.job import check_job, default_best_epoch, run_job

    out = pathlib.Path(args.out)
    strategies = [s for s in args.strategies.split(",") if s]
    seeds = list(range(args.retrain_seeds))
    runs = {}
    started = time.perf_counter()
    for strategy in strategies:
        config = parse_config(job(args, strategy, args.seed, out))
        t0 = time.perf_counter()
        summary = run_job(config, overwrite=True)
        records = json.loads((config.output_dir / "trials.json").read_text())
        runs[strategy] = {"config": config, "summary": summary, "records": records,
                          "seconds": time.perf_counter() - t0}
        print(f"{strategy}: {summary['completed']}/{summary['trials']} trials, best val_loss "
              f"{summary.get('best_score'):.4f}, {runs[strategy]['seconds']:.0f} s", flush=True)

    def losses(records):
        return [r["score"] if r["status"] == "COMPLETED" and r["score"] is not None
                else float("inf") for r in sorted(records, key=lambda r: int(r["trial_id"]))]

    def accuracies(records):
        return [r.get("val_accuracy") if r["status"] == "COMPLETED" and r.get("val_accuracy")
                is not None else float("-inf")
                for r in sorted(records, key=lambda r: int(r["trial_id"]))]

    global_best = min(min(losses(run["records"])) for run in runs.values())
    global_best_acc = max(max(accuracies(run["records"])) for run in runs.values())

    def trials_to(scores, target):
        for i, s in enumerate(scores, start=1):
            if s <= target * 1.01:
                return i
        return None

    first = runs[strategies[0]]["config"]
    dataset, hypermodel, objective = check_job(first)
    rows = []
    for strategy, run in runs.items():
        scores = losses(run["records"])
        summary = run["summary"]
        best_epoch = next(r["best_epoch"] for r in run["records"]
                          if r["trial_id"] == summary["best_trial"])
        acc, spread = test_accuracy(hypermodel, summary["best_hyperparameters"], dataset,
                                    best_epoch, seeds)
        epochs_used = sum((r.get("hp:tuner/epochs") or args.epochs)
                          - (r.get("hp:tuner/initial_epoch") or 0) for r in run["records"])
        rows.append({
            "strategy": strategy, "trials": len(scores), "best_val_loss": min(scores),
            "to_global": trials_to(scores, global_best), "to_own": trials_to(scores, min(scores)),
            "to_global_acc": next((i for i, a in enumerate(accuracies(run["records"]), start=1)
                                   if a >= 0.99 * global_best_acc), None),
            "test_acc": acc, "test_std": spread, "seconds": run["seconds"],
            "epochs_budget": epochs_used, "best_hp": summary["best_hyperparameters"],
        })
    best_row = min(rows, key=lambda r: r["best_val_loss"])

    default_epoch, default_val = default_best_epoch(first, hypermodel, dataset, objective)
    default_acc, default_std = test_accuracy(hypermodel, {}, dataset, default_epoch, seeds)
    params_default = hypermodel.build(__import__("keras_tuner").HyperParameters()).count_params()

    lines = [
        "| strategy | trials | best val_loss | trials to within 1% of the best val_loss found "
        "(any strategy) | trials to within 1% of its own best | trials to within 1% of the "
        f"best val accuracy found ({global_best_acc:.3f}) | test accuracy of its best "
        "(mean ± sd) | search time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['strategy']} | {r['trials']} | {r['best_val_loss']:.4f} | "
            f"{r['to_global'] if r['to_global'] else '-'} | {r['to_own']} | "
            f"{r['to_global_acc'] if r['to_global_acc'] else '-'} | "
            f"{r['test_acc']:.3f} ± {r['test_std']:.3f} | {r['seconds']:.0f} s |")
    comparison = [
        "| configuration | validation loss | test accuracy (mean ± sd) |",
        "|---|---|---|",
        f"| default (units 64 x 2 layers, lr 1e-3, batch 16; {params_default} params) | "
        f"{default_val:.4f} | {default_acc:.3f} ± {default_std:.3f} |",
        f"| best found ({best_row['strategy']}: "
        f"{json.dumps(best_row['best_hp'], separators=(',', ':'))}) | "
        f"{best_row['best_val_loss']:.4f} | {best_row['test_acc']:.3f} ± "
        f"{best_row['test_std']:.3f} |",
    ]
    command = ("python benchmarks/tuning_strategies.py " + " ".join(argv or sys.argv[1:])).strip()
    total = time.perf_counter() - started
    section = "\n".join([
        "## Tuning",
        "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} CPU cores shared with other jobs, {total / 60:.0f} min in all).",
        "",
        f"Dataset `{args.dataset}` (UCR ItalyPowerDemand, embedded; 30% of the training "
        f"split held out for validation, {len(dataset.x_train)} training / "
        f"{len(dataset.x_val)} validation / {len(dataset.x_test)} test series). Stacked GRU; "
        "search space: units 8-64 (step 8, per layer), 1-2 layers, dropout 0-0.3, learning "
        "rate 1e-3..2e-2 (5 values), batch 8/16. Each trial trains up to "
        f"{args.epochs} epochs (early stopping, patience {args.patience}) and is scored by its "
        f"best validation loss; budget {args.trials} trials per strategy (Hyperband sizes its "
        f"own brackets from {args.epochs} epochs), search seed {args.seed}. Test accuracy: the "
        "best hyperparameters retrained on train+validation for the best trial's number of "
        f"epochs, mean over {len(seeds)} weight seeds.",
        "",
        *lines,
        "",
        "Best found against the default configuration, same training procedure (best "
        "epoch on validation, then retrained on train+validation):",
        "",
        *comparison,
        "",
        "One search seed per strategy: the trial counts are one draw each, not averages; "
        "validation has only "
        f"{len(dataset.x_val)} series, so validation losses are noisy. keras-tuner's random, "
        "Bayesian and Hyperband oracles draw their random points from the same generator, "
        "so with one seed they start from the same first trials (Bayesian: its first "
        f"{STRATEGY_OPTIONS['bayesian']['num_initial_points']} trials are random).",
        "",
    ])
    print()
    print(section)
    (out / "tuning_benchmark.json").write_text(json.dumps(
        {"rows": rows, "default": {"val_loss": default_val, "test_acc": default_acc,
                                   "test_std": default_std, "epochs": default_epoch}},
        indent=2, default=str))
    if args.write:
        write_section(ROOT / "BENCHMARKS.md", section)
    return 0


def write_section(path, section):
    """Replaces (or appends) the `## Tuning` section of a Markdown file, nothing else."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find("\n## Tuning\n")
    if start == -1 and text.startswith("## Tuning\n"):
        start = -1
        begin = 0
    elif start == -1:
        text = text.rstrip("\n") + "\n\n" + section
        path.write_text(text)
        return
    else:
        begin = start + 1
    end = text.find("\n## ", begin + 1)
    end = len(text) if end == -1 else end + 1
    path.write_text(text[:begin] + section + ("\n" if end < len(text) else "") + text[end:])


if __name__ == "__main__":
    sys.exit(main())

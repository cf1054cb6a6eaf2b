"""Benchmark: cross-validated tuning against the default and the recipe, and under budgets.

Three parts, each a `## ...` section of BENCHMARKS.md (with `--write`):

- `vs-recipe`: per dataset and search seed, a cross-validated search (`[cv]`, random
  search, the space around the dataset's recipe with the recipe as its default and first
  trial) whose chosen configuration is retrained with the recipe's full protocol; beside
  it, trained the same way with the same seed, the recipe's model and `build_gru`'s
  default model of the same variant. Test metric of each, mean over seeds.
- `strategies`: random, genetic and PSO search at the same trial budget on the same
  CV protocol and space (ItalyPowerDemand by default): best CV score found and the
  test metric of the chosen configuration.
- `budgets`: the most accurate model within int8 flash budgets (KiB; `[budget]`), a
  space of small models of the recipe's variant and of a recurrent-only one, per dataset
  and seed: its CV score, file size and RAM as measured on the exported file, and its
  test metric (Keras and the int8 file).

    python benchmarks/tuning_cv.py vs-recipe --datasets italy_power_demand,airline_passengers,gunpoint --seeds 0,1,2 --write
    python benchmarks/tuning_cv.py strategies --dataset italy_power_demand --seeds 0,1,2 --write
    python benchmarks/tuning_cv.py budgets --datasets gunpoint,italy_power_demand,airline_passengers --budgets 16,64,256 --seeds 0,1,2 --write

Results of every run are kept in `benchmarks/results/tuning_cv/<part>.json` (a rerun
of a dataset and seed replaces its entry), so parts and datasets can be run apart.
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
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from compare_report import write_section  # noqa: E402

RESULTS = HERE / "results" / "tuning_cv"


def recipe_space(recipe):
    """`(variant, space, fixed)`: the space around a recipe, the recipe as every default."""
    build = dict(recipe.build)
    variant = build.pop("variant")
    units = build.pop("units")
    layers = build.pop("num_layers", 1)
    lr = build.pop("learning_rate", 1e-3)
    space = {
        "units": [units] + [u for u in (8, 16, 32, 64) if u != units],
        "num_layers": [layers] + [n for n in (1, 2) if n != layers],
        "learning_rate": [lr] + [v for v in (3e-4, 3e-3) if v != lr],
        "dropout": [0.0, 0.2],
    }
    if variant == "gru_fcn":
        space["conv_width"] = [1.0, 0.5, 0.25]
        space["branch_dropout"] = [build.pop("branch_dropout", 0.8), 0.5]
        space["num_layers"] = [layers]
    return variant, space, build


def vs_recipe_job(dataset, recipe, seed, out, args):
    variant, space, fixed = recipe_space(recipe)
    metric = "val_accuracy" if dataset.task == "classification" else "val_loss"
    return {
        "job": {"name": f"vs-recipe-{dataset.name}", "output_dir": str(out), "seed": seed},
        "data": {"dataset": dataset.name},
        "hypermodel": {"variant": variant, "space": space,
                       "fixed": dict(fixed, recurrent_dropout=0.0)},
        "search": {"strategy": args.strategy, "max_trials": args.trials,
                   "max_retries_per_trial": 0},
        "objective": {"metric": metric},
        "retrain": {"enabled": True, "compare_default": True},
        "cv": {"folds": args.folds, "epochs": args.cv_epochs or None},
    }


def train_reference(dataset, build, train, seed):
    """Test metrics of a model trained with a protocol (the reference columns)."""
    import keras

    import zoo

    keras.utils.set_random_seed(seed)
    model = zoo.build_gru(input_shape=dataset.input_shape, num_outputs=dataset.num_outputs,
                          task=dataset.task, **build)
    result = zoo.train(model, dataset, seed=seed, verbose=0, **train)
    return dict(result.test_metrics), int(model.count_params())


def load_results(part):
    path = RESULTS / f"{part}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(part, results):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{part}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")


def record(part, keys, entry):
    """Stores one run's entry at `keys` in `<part>.json`, re-read just before writing so
    that runs of the same part in other processes keep theirs; returns the results."""
    results = load_results(part)
    node = results
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = entry
    save_results(part, results)
    return results


def _datasets(args):
    """`(name, dataset, recipe, key)` per `--datasets` name: its embedded data, the
    recipe `zoo.recipes` picks for it and its test metric's key."""
    import zoo
    from zoo.recipes import choose_recipe

    for name in _names(args.datasets, args):
        dataset = zoo.load_dataset(name)
        key = "accuracy" if dataset.task == "classification" else "loss"
        yield name, dataset, choose_recipe(dataset), key


def run_vs_recipe(args):
    from tuning.config import parse_config
    from tuning.job import run_job

    results = load_results("vs_recipe")
    for name, dataset, recipe, key in _datasets(args):
        for seed in [int(s) for s in args.seeds.split(",")]:
            out = args.out / "vs_recipe" / f"{name}-s{seed}"
            start = time.perf_counter()
            config = parse_config(vs_recipe_job(dataset, recipe, seed, out, args))
            summary = run_job(config, overwrite=True, dataset=dataset)
            search_seconds = time.perf_counter() - start
            variant = recipe.build["variant"]
            default_build = {"variant": variant}
            if recipe.build.get("window_norm"):
                default_build["window_norm"] = recipe.build["window_norm"]
            default_test, default_params = train_reference(dataset, default_build,
                                                           recipe.train, seed)
            entry = {
                "metric": key, "recipe": recipe.build, "protocol": recipe.train,
                "tuned": {"test": summary["retrain"]["test"][key],
                          "params": summary["retrain"]["params"],
                          "cv": summary["best_score"], "is_recipe": summary["best_is_default"],
                          "hyperparameters": summary["best_hyperparameters"]},
                "recipe_result": {"test": summary["default"]["test"][key],
                                  "params": summary["default"]["params"],
                                  "cv": summary["default_cv"]["score"]},
                "default": {"test": default_test[key], "params": default_params},
                "trials": summary["trials"], "pruned": summary["pruned"],
                "trainings": summary["cv"]["trainings"],
                "search_seconds": round(search_seconds, 1),
            }
            results = record("vs_recipe", [name, str(seed)], entry)
            print(f"{name} seed {seed}: tuned {entry['tuned']['test']:.4f} recipe "
                  f"{entry['recipe_result']['test']:.4f} default {entry['default']['test']:.4f} "
                  f"({search_seconds:.0f} s)", flush=True)
    table = vs_recipe_table(results)
    print(table)
    if args.write:
        write_section("Tuning with cross-validation: tuned vs recipe vs default",
                      _header(args, "vs-recipe") + _vs_recipe_notes(args) + table + "\n"
                      + _reading("vs-recipe"))


def _reading(part):
    """The hand-written reading of a part's table (`results/tuning_cv/readings.json`),
    kept across reruns: what the numbers say, written by whoever ran them."""
    path = RESULTS / "readings.json"
    text = json.loads(path.read_text()).get(part) if path.exists() else None
    return f"\n{text}\n" if text else ""


def _names(text, args):
    """The comma-separated names to run; none with `--table-only` (stored results only)."""
    return [] if args.table_only else text.split(",")


def _mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 \
        else f"{values[0]:.4f}"


def vs_recipe_table(results):
    lines = ["| dataset | metric | tuned (CV-chosen, retrained) | recipe | default "
             "(build_gru's, same training) | tuned = recipe (seeds) | trials (pruned) | "
             "folds trained per search | search s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, seeds in sorted(results.items()):
        runs = list(seeds.values())
        metric = runs[0]["metric"]
        lines.append(
            f"| {name} | test {metric} | {_mean_sd([r['tuned']['test'] for r in runs])} | "
            f"{_mean_sd([r['recipe_result']['test'] for r in runs])} | "
            f"{_mean_sd([r['default']['test'] for r in runs])} | "
            f"{sum(r['tuned']['is_recipe'] for r in runs)}/{len(runs)} | "
            f"{np.mean([r['trials'] for r in runs]):.0f} "
            f"({np.mean([r['pruned'] for r in runs]):.1f}) | "
            f"{np.mean([r['trainings'] for r in runs]):.0f} | "
            f"{np.mean([r['search_seconds'] for r in runs]):.0f} |")
    return "\n".join(lines)


def _header(args, part):
    if args.table_only:
        return (f"Rendered with `python benchmarks/tuning_cv.py {part} --table-only --write` "
                f"from the runs stored in `benchmarks/results/tuning_cv/` (each dataset and "
                f"seed a separate run of `python benchmarks/tuning_cv.py {part} ...`; "
                f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs; "
                f"rendered {time.strftime('%Y-%m-%d')}).\n\n")
    argv = " ".join(a for a in sys.argv[1:] if a != "--write")
    return (f"Command: `python benchmarks/tuning_cv.py {argv} --write` "
            f"({time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPU cores "
            f"shared with other jobs). Rows keep the seeds and datasets of earlier runs "
            f"(`benchmarks/results/tuning_cv/`, one entry per dataset and seed).\n\n")


def _vs_recipe_notes(args):
    return (f"Each search: {args.strategy} search, {args.trials} trials, {args.folds}-fold "
            f"cross-validation over train+validation (stratified; time-ordered expanding "
            f"windows for forecasting), every fold trained by `zoo.train` with the dataset "
            f"recipe's protocol ({_epochs(args)}), pruning after 2 folds; a trial replaces "
            "the recipe only when its paired fold differences clear two standard errors "
            "(`[cv] min_improvement = \"auto\"`). The space "
            "is the recipe's neighbourhood (units, layers, learning rate, dropout; for "
            "GRU-FCN the filter width and branch dropout) with the recipe's own values as "
            "the defaults, so the first trial is the recipe. The chosen configuration (the "
            "recipe unless a trial beat it clearly) is retrained with the recipe's "
            "full protocol; the recipe and `build_gru`'s default model of the same variant "
            "are trained the same way with the same seed. Test metrics, mean ± sd over "
            "search seeds (each seed also seeds the weights).\n\n")


def _epochs(args):
    return f"{args.cv_epochs} epochs per fold" if args.cv_epochs else "the recipe's epochs"


def run_strategies(args):
    import zoo
    from tuning.config import parse_config
    from tuning.job import run_job
    from zoo.recipes import choose_recipe

    dataset = zoo.load_dataset(args.dataset)
    recipe = choose_recipe(dataset)
    key = "accuracy" if dataset.task == "classification" else "loss"
    results = load_results("strategies")
    options = {"random": {}, "genetic": {"population_size": 4}, "pso": {"swarm_size": 4}}
    for strategy in _names(args.strategies, args):
        for seed in [int(s) for s in args.seeds.split(",")]:
            out = args.out / "strategies" / f"{args.dataset}-{strategy}-t{args.trials}-s{seed}"
            raw = vs_recipe_job(dataset, recipe, seed, out, args)
            raw["hypermodel"] = {"variant": args.variant, "space": STRATEGY_SPACE,
                                 "fixed": {"recurrent_dropout": 0.0}}
            raw["search"].update(strategy=strategy, options=options[strategy])
            raw["retrain"] = {"enabled": True}
            start = time.perf_counter()
            summary = run_job(parse_config(raw), overwrite=True, dataset=dataset)
            seconds = time.perf_counter() - start
            trials = json.loads((out / "trials.json").read_text())
            scores = [t["score"] for t in trials if t["status"] == "COMPLETED"
                      and t.get("cv_pruned") == 0.0 and t["score"] is not None]
            sign = 1 if key == "accuracy" else -1
            best_so_far, running = [], None
            for t in trials:
                s = t["score"] if t["status"] == "COMPLETED" and t.get("cv_pruned") == 0.0 \
                    else None
                if s is not None and (running is None or sign * s > sign * running):
                    running = s
                best_so_far.append(running)
            # Runs at another budget than 8 trials are kept beside those, as their own row.
            label = strategy if args.trials == 8 else f"{strategy}, {args.trials} trials"
            results = record("strategies", [args.dataset, label, str(seed)], {
                "metric": key, "best_cv": max(scores, key=lambda v: sign * v) if scores else None,
                "best_so_far": best_so_far, "test": summary["retrain"]["test"][key],
                "chosen_is_default": summary["best_is_default"],
                "trials": summary["trials"], "pruned": summary["pruned"],
                "seconds": round(seconds, 1)})
            print(f"{label} seed {seed}: best CV {results[args.dataset][label][str(seed)]['best_cv']} "
                  f"test {summary['retrain']['test'][key]:.4f} ({seconds:.0f} s)", flush=True)
    table = strategies_table(results.get(args.dataset, {}))
    print(table)
    if args.write:
        notes = (f"Variant `{args.variant}` on `{args.dataset}`, space "
                 f"`{json.dumps(STRATEGY_SPACE)}` (the first value of each is the default: "
                 f"trial 0 of random, genetic and PSO alike). Each strategy: 8 trials (a row "
                 f"named with another count: that many), {args.folds}-fold CV with the dataset recipe's protocol "
                 f"({_epochs(args)}), pruning after 2 folds; the chosen configuration "
                 "(the default unless a trial wins clearly) retrained with the recipe's full protocol and tested. "
                 "Mean ± sd over search seeds.\n\n")
        write_section("Tuning with cross-validation: genetic and PSO against random search",
                      _header(args, "strategies") + notes + table + "\n"
                      + _reading("strategies"))


# The strategies part searches the seed project's CNN-GRU-attention (a space of ~10^4
# configurations), where an evolutionary search has room to pay off.
STRATEGY_SPACE = {
    "units": [32, 16, 64, 8], "num_layers": [1, 2], "conv_layers": [1, 2],
    "conv_filters": [32, 16, 64], "conv_kernel_size": [3, 5, 7], "pool_size": [1],
    "attention": ["additive", "multihead"], "attention_heads": [2],
    "learning_rate": [1e-3, 3e-4, 3e-3], "dropout": [0.0, 0.2],
}


def strategies_table(results):
    lines = ["| strategy | best CV score found (mean ± sd) | test of the chosen (mean ± sd) | "
             "chosen = default (seeds) | trials (pruned) | search s |",
             "|---|---|---|---|---|---|"]
    for strategy, seeds in results.items():
        runs = list(seeds.values())
        lines.append(
            f"| {strategy} | {_mean_sd([r['best_cv'] for r in runs])} | "
            f"{_mean_sd([r['test'] for r in runs])} | "
            f"{sum(r['chosen_is_default'] for r in runs)}/{len(runs)} | "
            f"{np.mean([r['trials'] for r in runs]):.0f} "
            f"({np.mean([r['pruned'] for r in runs]):.1f}) | "
            f"{np.mean([r['seconds'] for r in runs]):.0f} |")
    return "\n".join(lines)


def budget_space(recipe):
    """A space of small models: the recipe's variant at small sizes."""
    variant, space, fixed = recipe_space(recipe)
    space["units"] = [8, 4, 16, 32]
    if variant == "gru_fcn":
        space["conv_width"] = [0.25, 0.125, 0.5]
        space["branch_dropout"] = [fixed.pop("branch_dropout", 0.8)] \
            if "branch_dropout" in fixed else [0.8]
    else:
        space["num_layers"] = [1, 2]
    space["learning_rate"] = [recipe.build.get("learning_rate", 1e-3), 3e-3]
    return variant, space, fixed


def run_budgets(args):
    from tuning.config import parse_config
    from tuning.job import run_job
    from zoo.recipes import choose_recipe

    results = load_results("budgets")
    for name, dataset, recipe, key in _datasets(args):
        variants = [budget_space(recipe)]
        if recipe.build["variant"] != "stacked":  # and a recurrent-only head beside it
            small = choose_recipe(dataset, variant="stacked")
            variants.append(budget_space(small))
        for flash in [float(b) for b in args.budgets.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                best = None
                for variant, space, fixed in variants:
                    out = args.out / "budgets" / f"{name}-{variant}-{flash:g}kb-s{seed}"
                    raw = {
                        "job": {"name": "budget", "output_dir": str(out), "seed": seed},
                        "data": {"dataset": name},
                        "hypermodel": {"variant": variant, "space": space,
                                       "fixed": dict(fixed, recurrent_dropout=0.0)},
                        "search": {"strategy": "random", "max_trials": args.trials,
                                   "max_retries_per_trial": 0},
                        "objective": {"metric": "val_accuracy" if key == "accuracy"
                                      else "val_loss"},
                        "retrain": {"enabled": True},
                        "cv": {"folds": args.folds, "epochs": args.cv_epochs or None},
                        "budget": {"flash_kb": flash, "quantization": "int8",
                                   "streaming": args.streaming},
                    }
                    start = time.perf_counter()
                    summary = run_job(parse_config(raw), overwrite=True, dataset=dataset)
                    seconds = time.perf_counter() - start
                    if summary.get("best_trial") is None and not summary.get("best_is_default"):
                        entry = {"variant": variant, "feasible": False,
                                 "infeasible": summary["infeasible"], "seconds": seconds}
                    else:
                        exported = summary["retrain"]["export"]
                        evaluation = exported.get("evaluation") or {}
                        entry = {"variant": variant, "feasible": True, "cv": summary["best_score"],
                                 "test_keras": summary["retrain"]["test"][key],
                                 "test_int8": evaluation.get("tflite"),
                                 "int8_metric": evaluation.get("metric"),
                                 "flash_bytes": exported["flash_bytes"],
                                 "ram_bytes": exported["ram_bytes"],
                                 "ram_source": exported["ram_source"],
                                 "within_budget": exported["within_budget"],
                                 "params": summary["retrain"]["params"],
                                 "hyperparameters": summary["best_hyperparameters"],
                                 "infeasible": summary["infeasible"],
                                 "failed_fit": (summary["retrain"].get("fit_check")
                                                or {}).get("failed_fit"),
                                 "trials": summary["trials"], "seconds": round(seconds, 1)}
                    print(f"{name} {flash:g} KiB {variant} seed {seed}: {entry}", flush=True)
                    sign = 1 if key == "accuracy" else -1
                    if entry["feasible"] and (best is None or sign * entry["cv"] >
                                              sign * best["cv"]):
                        best = entry
                results = record("budgets", [name, f"{flash:g}", str(seed)],
                                 best or {"feasible": False})
    table = budgets_table(results)
    print(table)
    if args.write:
        form = "int8 streaming (one frame per invoke)" if args.streaming \
            else "int8 full-sequence"
        write_section("Tuning under a device budget",
                      _header(args, "budgets")
                      + f"Form: {form}. Per dataset, budget and seed: a random search of "
                        f"{args.trials} trials of small models of the recipe's variant (and of "
                        "a recurrent-only `stacked` head when the recipe has convolutions), "
                        f"{args.folds}-fold CV with the recipe's protocol ({_epochs(args)}); every trial's model exported as the budget's int8 file and "
                        "measured before training (over the budget: never trained). The most "
                        "accurate feasible configuration by CV is retrained with the recipe's "
                        "full protocol, exported, verified and measured again.\n\n"
                      + table + "\n" + _reading("budgets"))


def budgets_table(results):
    lines = ["| dataset | int8 budget | feasible (seeds) | variant | CV | test Keras "
             "(mean ± sd) | test int8 file | flash KiB | RAM KiB | params | failed fits |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, budgets in sorted(results.items()):
        for flash, seeds in sorted(budgets.items(), key=lambda kv: float(kv[0])):
            runs = [r for r in seeds.values() if r.get("feasible")]
            if not runs:
                lines.append(f"| {name} | {flash} KiB | 0/{len(seeds)} | - | - | - | - | - | "
                             "- | - | - |")
                continue
            variants = sorted({r["variant"] for r in runs})
            lines.append(
                f"| {name} | {flash} KiB | {len(runs)}/{len(seeds)} | {', '.join(variants)} | "
                f"{_mean_sd([r['cv'] for r in runs])} | "
                f"{_mean_sd([r['test_keras'] for r in runs])} | "
                f"{_mean_sd([r['test_int8'] for r in runs])} | "
                f"{np.mean([r['flash_bytes'] for r in runs]) / 1024:.1f} | "
                f"{np.mean([r['ram_bytes'] for r in runs]) / 1024:.1f} | "
                f"{np.mean([r['params'] for r in runs]):.0f} | {_failed_fits(runs)} |")
    return "\n".join(lines)


def _failed_fits(runs):
    """Seeds whose retrained model did not beat predictions that learn nothing
    (`zoo.report.fit_check`), of those checked (runs before the check: `-`)."""
    checked = [r["failed_fit"] for r in runs if r.get("failed_fit") is not None]
    return f"{sum(checked)}/{len(checked)}" if checked else "-"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["vs-recipe", "strategies", "budgets"])
    parser.add_argument("--datasets", default="italy_power_demand")
    parser.add_argument("--dataset", default="italy_power_demand")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--strategy", default="random")
    parser.add_argument("--strategies", default="random,genetic,pso")
    parser.add_argument("--variant", default="cnn_gru_attention", help="strategies part")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--cv-epochs", type=int, default=0,
                        help="epochs per fold (default 0: the recipe's own)")
    parser.add_argument("--budgets", default="16,64,256")
    parser.add_argument("--streaming", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/bench_tuning_cv"))
    parser.add_argument("--write", action="store_true", help="write BENCHMARKS.md sections")
    parser.add_argument("--table-only", action="store_true",
                        help="run nothing: print (and --write) the part's stored results")
    args = parser.parse_args(argv)
    {"vs-recipe": run_vs_recipe, "strategies": run_strategies,
     "budgets": run_budgets}[args.part](args)


if __name__ == "__main__":
    main()

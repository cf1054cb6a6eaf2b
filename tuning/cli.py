"""`gru-zoo tune` and the tuning step of the main job (`gru-zoo run`).

Found by `zoo.cli` through the `gru_zoo.commands` and `gru_zoo.run_steps` entry
points (setup.cfg).
"""

import json
import os
import pathlib
import signal
import sys
import threading


def register(subparsers):
    """Adds `gru-zoo tune CONFIG [--chief|--worker|--workers N] ...`."""
    p = subparsers.add_parser(
        "tune", help="run (or resume) a tuning job from a TOML config",
        description="Runs a keras-tuner search described by a TOML job config and writes "
        "trials.csv/json, summary.md, search.png, pareto.csv and the best model retrained "
        "on train+validation. Running the same command again resumes the job.")
    p.add_argument("config", help="TOML job config (see tuning/configs/gunpoint.toml)")
    role = p.add_mutually_exclusive_group()
    role.add_argument("--chief", action="store_true",
                      help="serve the oracle of a distributed search ([distributed] ip:port)")
    role.add_argument("--worker", action="store_true",
                      help="run trials for a distributed search's chief")
    role.add_argument("--workers", type=int, metavar="N", nargs="?", const=0,
                      help="launch a chief and N workers on this machine (N defaults to "
                      "[distributed] workers)")
    p.add_argument("--tuner-id", help="a worker's id (default tuner0)")
    p.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    p.add_argument("--check", action="store_true",
                   help="validate the config, the data and the search space, then exit")
    group = p.add_argument_group("overrides of the config")
    group.add_argument("--output-dir", help="[job] output_dir")
    group.add_argument("--strategy", help="[search] strategy")
    group.add_argument("--max-trials", type=int, help="[search] max_trials")
    group.add_argument("--epochs", type=int, help="[search] epochs")
    group.add_argument("--max-time", type=float, help="[search] max_time (seconds)")
    group.add_argument("--seed", type=int, help="[job] seed")
    group.add_argument("--port", type=int, help="[distributed] port")
    group.add_argument("--ip", help="[distributed] ip")
    p.set_defaults(func=cmd_tune)


def _overrides(args):
    pairs = {
        ("job", "output_dir"): args.output_dir,
        ("search", "strategy"): args.strategy,
        ("search", "max_trials"): args.max_trials,
        ("search", "epochs"): args.epochs,
        ("search", "max_time"): args.max_time,
        ("job", "seed"): args.seed,
        ("distributed", "port"): args.port,
        ("distributed", "ip"): args.ip,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def _passthrough(args):
    """The override flags, to hand on to launched processes."""
    flags = []
    for flag, value in (("--output-dir", args.output_dir), ("--strategy", args.strategy),
                        ("--max-trials", args.max_trials), ("--epochs", args.epochs),
                        ("--max-time", args.max_time), ("--seed", args.seed),
                        ("--port", args.port), ("--ip", args.ip)):
        if value is not None:
            flags += [flag, str(value)]
    return flags


def _exit_on_interrupt(message):
    """Ctrl-C / SIGTERM end the process at once, the way SIGKILL would.

    A KeyboardInterrupt raised inside a running TensorFlow op can leave TensorFlow
    hung, and keras-tuner saves its state after every trial event anyway. So the
    signals get a no-op Python handler and a wakeup fd: Python's C-level handler
    writes the signal number to the fd from whichever thread receives it, and a
    watcher thread prints `message` and exits. The search then resumes from its saved
    state, exactly as after a SIGKILL. Signals that were ignored (a shell's background
    job ignores SIGINT) stay ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    handled = [s for s in (signal.SIGINT, signal.SIGTERM)
               if signal.getsignal(s) is not signal.SIG_IGN]
    if not handled:
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    for number in handled:
        signal.signal(number, lambda *args: None)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch():
        received = os.read(read_fd, 1)
        print(message, flush=True)
        os._exit(128 + received[0])

    threading.Thread(target=watch, daemon=True, name="interrupt").start()


def cmd_tune(args):
    if not args.check and args.workers is None:  # the launcher cleans up its children
        _exit_on_interrupt("\ngru-zoo tune: interrupted. Completed trials are saved; run the "
                           "same command to resume.")
    from tuning.config import load_config
    from tuning.job import check_job, run_job

    config = load_config(args.config, overrides=_overrides(args))
    if args.tuner_id and not args.worker:
        raise ValueError(f"--tuner-id is for --worker. Received: --tuner-id {args.tuner_id}")
    if args.check:
        dataset, hypermodel, objective = check_job(config)
        print(f"{config.path}: OK (dataset {dataset.name}, {len(dataset.x_train)} training "
              f"samples, strategy {config.search['strategy']}, objective {objective.name})")
        if config.cv["enabled"]:
            from tuning.cv import describe_settings
            from tuning.job import cv_settings

            print(describe_settings(cv_settings(config, dataset)))
        else:
            print("cv off: each trial trains once on the training split and is scored on the "
                  "validation split (add a [cv] section for cross-validated trials)")
        return 0
    if args.workers is not None:
        from tuning.launcher import launch

        from tuning.job import reset_output

        check_job(config)  # fail here, not in N+1 processes
        if args.overwrite:
            reset_output(config)  # here, before any process writes into it
        workers = args.workers or config.distributed["workers"]
        return launch(args.config, workers, extra_args=_passthrough(args))
    role = "chief" if args.chief else "worker" if args.worker else None
    summary = run_job(config, role=role, tuner_id=args.tuner_id, overwrite=args.overwrite)
    if role == "worker":
        return 0
    return _print_summary(config, summary)


def _print_summary(config, summary):
    """Prints a finished job's outcome; returns the exit code (1: nothing fits the budget)."""
    out = config.output_dir
    print(f"{summary['completed']}/{summary['trials']} trials completed "
          f"({summary['failed']} failed), strategy {summary['strategy']}.")
    if "default_cv" in summary:
        default = summary["default_cv"]
        over = "" if default["feasible"] else " (over the device budget)"
        print(f"Cross-validated ({summary['cv']['folds']} folds, {summary['pruned']} trials "
              f"pruned, {summary['infeasible']} over the device budget): default "
              f"configuration {summary['objective']}="
              + (f"{default['score']:.4g} +- {default['std']:.2g}" if default["folds"]
                 else "not trained") + over)
        if summary.get("budget", {}).get("no_feasible"):
            print(f"gru-zoo tune: no configuration fits the budget "
                  f"({config.device_budget.describe()}); see {out / 'summary.md'}",
                  file=sys.stderr)
            return 1
        if summary["best_is_default"]:
            print("Chosen: the default configuration.")
        else:
            print(f"Chosen: trial {summary['best_trial']}: {summary['objective']}="
                  f"{summary['best_score']:.4g} +- {summary['best_std']:.2g}")
    elif "best_trial" in summary:
        print(f"Best trial {summary['best_trial']}: {summary['objective']}="
              f"{summary['best_score']:.4g}")
        print(f"Best hyperparameters: {json.dumps(summary['best_hyperparameters'])}")
    if "retrain" in summary:
        retrain = summary["retrain"]
        print("Retrained on the full data: test " +
              ", ".join(f"{k}={v:.4g}" for k, v in retrain["test"].items()))
        check = retrain.get("fit_check")
        if check and check["failed_fit"]:
            print(f"gru-zoo tune: warning: the retrained model is a failed fit: test "
                  f"{check['metric']} {check['model']:.4g} does not beat "
                  + ", ".join(f"{name} ({check['baselines'][name]:.4g})"
                              for name in check["not_beaten"])
                  + "; do not ship it (see summary.md)", file=sys.stderr)
        if "export" in retrain:
            exported = retrain["export"]
            print(f"Exported {exported['form']}: {exported['path']} "
                  f"({exported['flash_bytes'] / 1024.0:.1f} KiB flash, "
                  f"{exported['ram_bytes'] / 1024.0:.1f} KiB RAM, "
                  f"{exported['latency_ms']:.3f} ms)"
                  + ("" if exported["within_budget"] else
                     f" OVER THE BUDGET: {'; '.join(exported['violations'])}"))
    for label in ("default", "recipe"):
        if label in summary:
            verdict = summary.get("retrain", {}).get(f"vs_{label}")
            print(f"{label.capitalize()} configuration, same training: test " +
                  ", ".join(f"{k}={v:.4g}" for k, v in summary[label]["test"].items())
                  + (f" (the chosen model is {verdict})" if verdict else ""))
    print(f"Results: {out} (trials.csv, trials.json, summary.md, search.png, pareto.csv, "
          "best_model.keras, best.json)")
    return 0


def _shrink(value, factors=(1, 2, 4)):
    """The value and its halves and quarters (at least 4), largest first, no repeats."""
    values = []
    for factor in factors:
        candidate = max(4, int(value) // factor)
        if candidate not in values:
            values.append(candidate)
    return values


def step_space(model_config):
    """The main job's search space: the trained model (every default) and smaller ones.

    Recurrent units at 1, 1/2 and 1/4 of the trained width, one layer fewer, and for
    convolution variants every filter count at 1, 1/2, 1/4 and 1/8 (`conv_width`). The
    trained model's learning rate, dropout, kernels and the rest stay fixed: the step
    looks for a smaller model as accurate as the trained one, not a different recipe.
    Returns `(variant, cell, space, fixed)`.
    """
    from tuning.hypermodels import DEFAULT_SPACE
    from zoo.builders import VARIANTS

    config = dict(model_config)
    variant = config.pop("variant", "stacked")
    cell = config.pop("cell", "gru")
    space = {}
    units = config.pop("units", 64)
    first = units[0] if isinstance(units, (list, tuple)) else units
    if isinstance(units, (list, tuple)) and len(set(units)) > 1:
        config["units"] = list(units)  # per-layer widths: kept as trained
    else:
        space["units"] = _shrink(first)
    layers = int(config.pop("num_layers", 2))
    space["num_layers"] = [layers, layers - 1] if layers > 1 and "units" not in config \
        else [layers]
    if VARIANTS[variant].uses_conv:
        space["conv_width"] = [1.0, 0.5, 0.25, 0.125]
        config.setdefault("conv_filters", 64)
        config.setdefault("conv_layers", 1)
    # Everything else the hypermodel would search stays at the trained value, or at
    # build_gru's default where the trained configuration left it unset.
    kept = ["dropout", "recurrent_dropout", "learning_rate"]
    if VARIANTS[variant].uses_conv:
        kept += ["conv_kernel_size", "pool_size"]
    if variant == "gru_fcn":
        kept.append("branch_dropout")
    if VARIANTS[variant].uses_attention:
        kept += ["attention", "attention_heads"]
    for name in kept:
        value = config.get(name, DEFAULT_SPACE[name][1].get("default"))
        if not isinstance(value, (list, tuple)):  # per-layer lists stay in `fixed`
            config.pop(name, None)
            space[name] = value  # a scalar: a fixed hyperparameter
    config.pop("batch_size", None)
    return variant, cell, space, config


def run_step(context):
    """The main job's tuning step: a short, cross-validated search for a smaller model.

    The trained model's configuration is the default (trial 0); the other trials are
    narrower versions of it (`step_space`). Every trial is cross-validated over
    train+validation with the trained model's own recipe protocol (fewer epochs per
    fold: `STEP_EPOCHS`), and the chosen configuration is the smallest one whose CV
    score is within one point of accuracy (or 1 % of the loss) of the trained
    configuration's. It is retrained with the full recipe and its test metrics are
    reported beside the trained model's, with a verdict that says plainly whether it
    is better, as good or worse. With a device budget in the context (`budget`: a dict
    of `[budget]` keys), models over it never train and the chosen one is exported in
    the budget's form.
    """
    from tuning.config import parse_config
    from tuning.job import run_job

    run_dir = pathlib.Path(context["run_dir"])
    dataset = context["dataset"]
    quick = bool(context.get("quick"))
    budget = context.get("budget")  # a dict from `gru-zoo run --flash-kb ...`
    variant, cell, space, fixed = step_space(context.get("model_config") or {})
    classification = dataset.task == "classification"
    epochs = STEP_EPOCHS["quick" if quick else "full"]
    folds = 2 if quick else 3
    if classification:
        folds = min(folds, _smallest_class(dataset))  # 2 per class still cross-validates
    raw = {
        "job": {"name": "main-job-tune", "output_dir": str(run_dir / "tune"),
                "seed": int(context.get("seed") or 0)},
        "data": {"dataset": dataset.name},
        "hypermodel": {"variant": variant, "cells": [cell], "fixed": fixed, "space": space},
        "search": {"strategy": "random", "max_trials": 3 if quick else 6,
                   "max_retries_per_trial": 0},
        "objective": {"metric": "val_accuracy" if classification else "val_loss"},
        # Retrained as the trained model was (its epochs), so the two compare fairly.
        "retrain": {"enabled": True, **({"epochs": int(context["train"]["epochs"])}
                                        if (context.get("train") or {}).get("epochs")
                                        else {})},
        "cv": {"folds": folds, "epochs": epochs,
               "max_time_s": 120 if quick else 900,
               "select": "smallest", "select_within": 0.01 if classification else "1%"},
    }
    if budget is not None:
        raw["budget"] = {k: v for k, v in dict(budget).items() if v is not None}
    config = parse_config(raw, path="gru-zoo run (tune step)")
    summary = run_job(config, overwrite=True, dataset=dataset)
    result = {
        "strategy": summary["strategy"], "trials": summary["trials"],
        "completed": summary["completed"], "pruned": summary.get("pruned", 0),
        "infeasible": summary.get("infeasible", 0),
        "cv": f"{folds}-fold, {epochs} epochs per fold, the recipe's protocol",
        "objective": summary["objective"], "output_dir": str(run_dir / "tune"),
        "default_cv": summary.get("default_cv"),
        "budget": summary.get("budget"),
    }
    trained = {"test": context.get("test_metrics"), "params": context.get("params")}
    result["trained"] = trained
    if summary.get("best_trial") is None and not summary.get("best_is_default"):
        result["verdict"] = ("no configuration fits the device budget: the trained model "
                             "is the only one; see the tuning job's summary.md")
        return result
    retrain = summary.get("retrain", {})
    chosen = {"trial": summary["best_trial"], "is_trained_config": summary["best_is_default"],
              "hyperparameters": summary.get("best_hyperparameters"),
              "cv_score": summary.get("best_score"), "cv_std": summary.get("best_std"),
              "size_bytes": summary.get("best_size_bytes"), "params": retrain.get("params"),
              "test": retrain.get("test"), "model": retrain.get("model")}
    if "export" in retrain:
        chosen["export"] = {k: retrain["export"][k] for k in
                            ("path", "form", "flash_bytes", "ram_bytes", "latency_ms",
                             "within_budget")}
    result["chosen"] = chosen
    result["verdict"] = _verdict(dataset, chosen, trained)
    return result


def _smallest_class(dataset):
    """The smallest class's count in train+validation (what the step cross-validates).

    Raises a `ValueError` for the user of `gru-zoo run` (who wrote no `[cv]` config)
    when it is under 2: stratified folds need two samples of every class.
    """
    import numpy as np

    from tuning.cv import class_labels, search_data

    counts = np.bincount(class_labels(search_data(dataset)[1]))
    smallest = int(counts[counts > 0].min()) if counts.any() else 0
    if smallest < 2:
        names = list(getattr(dataset, "label_names", None) or [])
        shown = [names[i] if i < len(names) else i
                 for i, count in enumerate(counts.tolist()) if count == smallest]
        raise ValueError(
            f"the tune step cannot cross-validate {dataset.name}: class(es) {shown} have "
            f"{smallest} sample(s) in train+validation, and cross-validation needs at least "
            "2 of every class. The trained model is kept (train/ in the run directory); add "
            "samples of that class, or skip the step with --skip tune. Received: smallest "
            f"class {smallest} sample(s)")
    return smallest


# Epochs per fold in the main job's step (the final retrain uses the recipe's own).
STEP_EPOCHS = {"quick": 5, "full": 100}


def _verdict(dataset, chosen, trained):
    """One sentence: what the search found, against the trained model, on test data."""
    if chosen["is_trained_config"]:
        return ("no smaller configuration came within one point of the trained one in "
                "cross-validation: the trained model stays the recommendation")
    test, reference = chosen.get("test") or {}, trained.get("test") or {}
    metric = "accuracy" if dataset.task == "classification" else "loss"
    size = ""
    if chosen.get("params") and trained.get("params"):
        size = f"{trained['params'] / chosen['params']:.1f}x fewer parameters"
    if metric not in test or metric not in reference:
        return f"trial {chosen['trial']}: {size}; no test split to compare on"
    delta = float(test[metric]) - float(reference[metric])
    better = delta > 0 if metric == "accuracy" else delta < 0
    if delta == 0:
        how = "the same test " + metric
    elif better:
        how = f"a better test {metric} ({test[metric]:.4g} vs {reference[metric]:.4g})"
    else:
        how = (f"WORSE on test: {metric} {test[metric]:.4g} vs the trained model's "
               f"{reference[metric]:.4g}")
    return f"trial {chosen['trial']}: {size}, {how}"

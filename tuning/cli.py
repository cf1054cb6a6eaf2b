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


# Searched in the main job's step; the rest of the trained model's config stays fixed.
_STEP_SEARCHED = ("units", "num_layers", "learning_rate", "dropout")


def run_step(context):
    """A short search around the main job's model: a few trials, few epochs.

    Searches units, layers, dropout, learning rate and batch size of the trained
    model's variant (the rest of its configuration is kept) with random search,
    writes a full job under `run_dir / "tune"` and returns the best hyperparameters,
    the best validation loss (and the trained model's, for comparison), the number of
    trials and the retrained model's test metrics.
    """
    from tuning.config import parse_config
    from tuning.job import run_job

    run_dir = pathlib.Path(context["run_dir"])
    dataset = context["dataset"]
    model_config = dict(context.get("model_config") or {})
    quick = bool(context.get("quick"))
    variant = model_config.pop("variant", "stacked")
    cell = model_config.pop("cell", "gru")
    fixed = {k: v for k, v in model_config.items() if k not in _STEP_SEARCHED}
    raw = {
        "job": {"name": "main-job-tune", "output_dir": str(run_dir / "tune"),
                "seed": int(context.get("seed") or 0)},
        "data": {"dataset": dataset.name},
        "hypermodel": {
            "variant": variant, "cells": [cell], "fixed": fixed,
            "space": {"units": {"min": 8, "max": 64, "step": 8, "default": 32},
                      "num_layers": [1, 2],
                      "dropout": [0.0, 0.2],
                      "recurrent_dropout": 0.0,
                      "batch_size": [8, 16],
                      "learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log",
                                        "default": 3e-3}},
        },
        "search": {"strategy": "random", "max_trials": 2 if quick else 4,
                   "epochs": 4 if quick else 15, "patience": 5,
                   "max_retries_per_trial": 0},
        "objective": {"metric": "val_loss"},
        "retrain": {"enabled": True},
    }
    config = parse_config(raw, path="gru-zoo run (tune step)")
    summary = run_job(config, overwrite=True, dataset=dataset)
    baseline = None
    model_path = context.get("model_path")
    # A model fitted on train+val has seen the validation split: its validation loss
    # would flatter it against the trials, so none is reported.
    seen_val = context.get("fit_on") == "train+val"
    if model_path and pathlib.Path(model_path).exists() and len(dataset.x_val) and not seen_val:
        import keras

        trained = keras.saving.load_model(model_path)
        baseline = float(trained.evaluate(dataset.x_val, dataset.y_val, verbose=0,
                                          return_dict=True)["loss"])
    return {
        "strategy": summary["strategy"],
        "trials": summary["trials"],
        "completed": summary["completed"],
        "best_val_loss": summary.get("best_score"),
        # The main job's trained model on the same validation data, for comparison
        # (None when it was fitted on train+val and so has seen that data).
        "trained_model_val_loss": baseline,
        "best_hyperparameters": summary.get("best_hyperparameters"),
        "test": summary.get("retrain", {}).get("test"),
        "output_dir": str(run_dir / "tune"),
    }

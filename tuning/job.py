"""Running a tuning job: search, results, the best model retrained, resume, distribution.

`run_job(config)` runs a `JobConfig` (see `tuning.config`) end to end and writes into
its output directory:

- `search/`: keras-tuner's project (oracle state, one folder per trial). Running the
  same command again resumes it: completed trials are kept and never rerun, the
  trial that was running when the job died is run again.
- `trials.csv`, `trials.json`: every trial's hyperparameters, status, score,
  metrics (at its best epoch), size and latency.
- `summary.md`: the best trials as a table, the best hyperparameters, test metrics.
- `search.png`: the objective per trial with the best so far, and metric against
  model size with the Pareto front.
- `pareto.csv`: the trials on the accuracy/size Pareto front.
- `best_model.keras` and `best.json`: the best hyperparameters retrained on
  train+validation for the best trial's number of epochs, with the test metrics
  (and, with `[retrain] compare_default = true`, the default configuration
  trained the same way).

Distributed search uses keras-tuner's own mode: `run_job(config, role="chief")`
serves the oracle, `role="worker"` runs trials (`KERASTUNER_*` variables are set
from `[distributed]`). Workers touch a heartbeat file; the chief hands the trial of
a worker silent for `worker_timeout` seconds to another worker, and finishes any
trial left over itself, so a killed worker never stops the search.
"""

import json
import os
import pathlib
import shutil
import threading
import time

import keras
import keras_tuner
import numpy as np

from tuning.config import JobConfig
from tuning.hypermodels import GRUHyperModel
from tuning.objectives import ModelCostCallback, Objective, pareto_front
from tuning.tuners import make_tuner
from zoo.fileio import write_csv, write_json, write_text

PROJECT = "search"
HEARTBEAT_SECONDS = 2.0
_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


# === Preparing (all validation happens here, before any training) ===
def _prefixed(section, error):
    return ValueError(f"[{section}] {error}")


def load_job_data(config):
    """Loads the dataset of a job (`[data]`), sliced to `max_train_samples`."""
    from zoo.datasets import load_dataset

    data = config.data
    try:
        dataset = load_dataset(data.get("path") or data["dataset"], **data["options"])
    except ValueError as error:
        raise _prefixed("data", error) from None
    limit = data["max_train_samples"]
    if limit is not None and len(dataset.x_train) > limit:
        dataset.x_train, dataset.y_train = dataset.x_train[:limit], dataset.y_train[:limit]
    return dataset


def make_hypermodel(config, dataset):
    """The `GRUHyperModel` of a job (`[hypermodel]`) for a dataset."""
    hm = config.hypermodel
    fixed = dict(hm["fixed"])
    if dataset.vocabulary is not None:
        fixed.setdefault("vocab_size", len(dataset.vocabulary))
    if config.cv["enabled"] and "batch_size" not in hm["space"]:
        # Cross-validated trials train with the recipe's protocol: its batch size, not
        # the generic space's default of 16 (which made the "default" trial a different
        # training from the recipe it stands for).
        from tuning.cv import recipe_protocol

        variant = None if hm["variant"] == "any" else hm["variant"]
        fixed.setdefault("batch_size", int(recipe_protocol(dataset, variant)["batch_size"]))
    try:
        return GRUHyperModel(
            None if hm["variant"] == "any" else hm["variant"],
            input_shape=dataset.input_shape,
            num_outputs=dataset.num_outputs,
            task=dataset.task,
            cells=hm["cells"],
            space=hm["space"],
            fixed=fixed,
            seed=config.job["seed"],
        )
    except ValueError as error:
        raise _prefixed("hypermodel", error) from None


def make_objective(config, dataset):
    """The `Objective` of a job (`[objective]`), checked against the logged metrics."""
    from zoo.builders import default_loss_and_metrics

    spec = {k: v for k, v in config.objective.items() if k != "use_export"}
    try:
        objective = Objective(**spec)
    except ValueError as error:
        raise _prefixed("objective", error) from None
    if "metrics" not in config.hypermodel["fixed"]:
        _, metrics = default_loss_and_metrics(dataset.task, dataset.num_outputs)
        names = ["loss"] + [m if isinstance(m, str) else m.name for m in metrics]
        logged = names + [f"val_{n}" for n in names] + ["size_bytes", "params"]
        if objective.measures_latency:
            logged.append("latency_ms")
        if objective.metric not in logged:
            raise ValueError(
                f"[objective] metric must be a metric the trials log for a "
                f"{dataset.task} task: one of {logged}. Received: metric={objective.metric!r}")
    return objective


def check_job(config, dataset=None):
    """Validates everything a job needs before training; returns (dataset, hm, objective).

    `dataset` (a `zoo.Dataset`) replaces loading `[data]` when given.
    """
    if dataset is None:
        dataset = load_job_data(config)
    hypermodel = make_hypermodel(config, dataset)
    objective = make_objective(config, dataset)
    if config.search["strategy"] == "grid":
        hp = keras_tuner.HyperParameters()
        hypermodel.declare_hyperparameters(hp)
        continuous = [p.name for p in hp.space
                      if isinstance(p, keras_tuner.engine.hyperparameters.Float)
                      and p.step is None]
        if continuous:
            raise ValueError(
                "[search] strategy = 'grid' needs a finite space: give these float "
                f"parameters a `step` or a list of values in [hypermodel.space]: {continuous}. "
                "Received: strategy='grid'")
    if config.cv["enabled"]:
        cv_settings(config, dataset)  # every [cv] value against the data, before training
    return dataset, hypermodel, objective


def cv_settings(config, dataset):
    """The cross-validation settings of a job with `[cv]` (see `tuning.cv.job_settings`)."""
    from tuning.cv import job_settings

    return job_settings(config, dataset)


# === Distribution ===
def set_distributed_env(config, role, tuner_id=None):
    """Sets keras-tuner's `KERASTUNER_*` variables for a chief or a worker."""
    if role not in ("chief", "worker"):
        raise ValueError(f"`role` must be 'chief' or 'worker'. Received: role={role!r}")
    dist = config.distributed
    os.environ["KERASTUNER_ORACLE_IP"] = dist["ip"]
    os.environ["KERASTUNER_ORACLE_PORT"] = str(dist["port"])
    os.environ["KERASTUNER_TUNER_ID"] = "chief" if role == "chief" else (tuner_id or "tuner0")
    if role == "worker" and "chief" in os.environ["KERASTUNER_TUNER_ID"]:
        raise ValueError("A worker's tuner id must not contain 'chief'. "
                         f"Received: tuner_id={tuner_id!r}")


def _clear_distributed_env():
    for name in _ENV:
        os.environ.pop(name, None)


def _heartbeat_dir(out_dir):
    path = pathlib.Path(out_dir) / "heartbeats"
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_heartbeat(out_dir, tuner_id):
    """`{"time", "pid"}` of a worker's last heartbeat, or `None`."""
    try:
        return json.loads((pathlib.Path(out_dir) / "heartbeats" / tuner_id).read_text())
    except (OSError, ValueError):
        return None


def _start_heartbeat(out_dir, tuner_id):
    """A daemon thread writing `heartbeats/<tuner_id>` (time, pid) while the process lives."""
    path = _heartbeat_dir(out_dir) / tuner_id
    stop = threading.Event()

    def write():
        write_text(path, json.dumps({"time": time.time(), "pid": os.getpid()}))

    def beat():
        while not stop.wait(HEARTBEAT_SECONDS):
            write()

    write()
    threading.Thread(target=beat, daemon=True, name=f"heartbeat-{tuner_id}").start()
    return stop


@keras_tuner.synchronized
def _release_workers(oracle, tuner_ids):
    """Ends the running trials of dead workers (retried elsewhere) and forgets them."""
    for tuner_id in tuner_ids:
        trial = oracle.ongoing_trials.get(tuner_id)
        if trial is not None:
            trial.status = "INVALID"
            trial.message = f"worker {tuner_id!r} stopped responding; trial handed on"
            oracle.end_trial(trial)
        oracle.tuner_ids.discard(tuner_id)


def _start_watchdog(oracle, out_dir, timeout):
    """On the chief: releases workers whose heartbeat is older than `timeout` seconds."""
    stop = threading.Event()
    first_seen = {}

    def watch():
        while not stop.wait(HEARTBEAT_SECONDS):
            now = time.time()
            stale = []
            for tuner_id in list(oracle.tuner_ids):
                first_seen.setdefault(tuner_id, now)
                beat = read_heartbeat(out_dir, tuner_id) or {}
                last = max(float(beat.get("time", 0.0)), first_seen[tuner_id])
                if now - last > timeout:
                    stale.append(tuner_id)
            if stale:
                print(f"tuning: worker(s) {stale} silent for over {timeout:g} s; "
                      "their trials go to other workers", flush=True)
                _release_workers(oracle, stale)
                for tuner_id in stale:
                    first_seen.pop(tuner_id, None)

    threading.Thread(target=watch, daemon=True, name="worker-watchdog").start()
    return stop


# === Searching ===
def _callbacks(config, objective):
    callbacks = [ModelCostCallback(objective, use_export=config.objective["use_export"])]
    patience = config.search["patience"]
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=objective.name, mode=objective.direction, patience=patience))
    return callbacks


def _tuner(config, hypermodel, objective, overwrite=False, dataset=None):
    search = config.search
    if config.cv["enabled"]:
        from tuning.cv import make_job_tuner

        return make_job_tuner(config, hypermodel, objective, cv_settings(config, dataset),
                              overwrite=overwrite)
    return make_tuner(
        search["strategy"], hypermodel,
        objective=objective.keras_tuner_objective(),
        max_trials=search["max_trials"],
        epochs=search["epochs"],
        seed=config.job["seed"],
        max_time=search["max_time"],
        directory=str(config.output_dir),
        project_name=PROJECT,
        overwrite=overwrite,
        executions_per_trial=search["executions_per_trial"],
        max_retries_per_trial=search["max_retries_per_trial"],
        max_consecutive_failed_trials=search["max_consecutive_failed_trials"],
        **search["options"],
    )


OUTPUTS = (PROJECT, "trials.csv", "trials.json", "summary.md", "search.png", "pareto.csv",
           "best_model.keras", "best.json", "job.json")


def reset_output(config):
    """Deletes a job's previous search and results (what `--overwrite` does)."""
    out = config.output_dir
    for name in OUTPUTS:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _check_resume(config, overwrite):
    """Refuses to resume a search whose decisive settings changed; stamps the job."""
    out = config.output_dir
    stamp = out / "job.json"
    if overwrite:
        reset_output(config)
    if stamp.exists():
        previous = json.loads(stamp.read_text()).get("fingerprint")
        if previous != config.fingerprint():
            raise ValueError(
                f"{out} holds a search with different settings (fingerprint {previous}, "
                f"this config {config.fingerprint()}): use another [job] output_dir or "
                "--overwrite. Received: output_dir=" + repr(str(out)))
    out.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"fingerprint": config.fingerprint(), "config": config.as_dict()})


def _search(tuner, config, dataset, objective):
    if config.cv["enabled"]:
        from tuning.cv import search_data

        # The folds come from train+validation; the protocol decides epochs and callbacks.
        tuner.search(*search_data(dataset), verbose=config.job["verbose"])
        return
    tuner.search(
        dataset.x_train, dataset.y_train,
        validation_data=(dataset.x_val, dataset.y_val),
        epochs=config.search["epochs"],
        callbacks=_callbacks(config, objective),
        verbose=config.job["verbose"],
    )


def run_job(config, *, role=None, tuner_id=None, overwrite=False, dataset=None):
    """Runs (or resumes) a tuning job. See the module docstring.

    Args:
        config: a `JobConfig` (from `tuning.config.load_config`).
        role: `None` (one process), `"chief"` or `"worker"`.
        tuner_id: a worker's id (`"tuner0"`, `"tuner1"`, ...).
        overwrite: start afresh instead of resuming.
        dataset: a loaded `zoo.Dataset` to use instead of loading `[data]`.

    Returns:
        A dict summary (empty for a worker): best hyperparameters, best objective
        value, trial counts, test metrics, paths.
    """
    if not isinstance(config, JobConfig):
        raise ValueError(f"`config` must be a JobConfig. Received: config of type "
                         f"{type(config).__name__}")
    dataset, hypermodel, objective = check_job(config, dataset)
    out = config.output_dir
    if role == "worker":
        out.mkdir(parents=True, exist_ok=True)
        set_distributed_env(config, "worker", tuner_id)
        stop = _start_heartbeat(out, os.environ["KERASTUNER_TUNER_ID"])
        try:
            tuner = _tuner(config, hypermodel, objective, dataset=dataset)
            _search(tuner, config, dataset, objective)
        finally:
            stop.set()
            _clear_distributed_env()
        return {}
    _check_resume(config, overwrite)
    started = time.perf_counter()
    if role == "chief":
        set_distributed_env(config, "chief")
        try:
            tuner = _tuner(config, hypermodel, objective, dataset=dataset)
            stop = _start_watchdog(tuner.oracle, out, config.distributed["worker_timeout"])
            try:
                _search(tuner, config, dataset, objective)  # serves until workers finish
            finally:
                stop.set()
        finally:
            _clear_distributed_env()
        # Trials handed back by dead workers after the others stopped: run them here.
        os.environ["KERASTUNER_TUNER_ID"] = "chief"
        try:
            tuner = _tuner(config, hypermodel, objective, dataset=dataset)
            _search(tuner, config, dataset, objective)
        finally:
            _clear_distributed_env()
    elif role is None:
        tuner = _tuner(config, hypermodel, objective, overwrite=overwrite, dataset=dataset)
        _search(tuner, config, dataset, objective)
    else:
        raise ValueError(f"`role` must be None, 'chief' or 'worker'. Received: role={role!r}")
    search_seconds = time.perf_counter() - started
    return write_results(config, tuner, dataset, hypermodel, objective,
                         search_seconds=search_seconds)


# === Results ===
def trial_records(oracle, objective):
    """One dict per trial: id, status, score, best epoch, metrics, hyperparameters."""
    records = []
    for trial_id in sorted(oracle.trials, key=lambda t: int(t)):
        trial = oracle.trials[trial_id]
        status = trial.status
        if status == "COMPLETED" and trial.metrics.exists("budget_feasible") and \
                not trial.metrics.get_last_value("budget_feasible"):
            status = "INFEASIBLE"  # over the device budget: never trained
        elif status == "COMPLETED" and trial.metrics.exists("cv_pruned") and \
                trial.metrics.get_last_value("cv_pruned"):
            status = "PRUNED"  # cross-validation stopped it after its first folds
        elif status == "RUNNING":
            status = "UNFINISHED"  # the time budget ended the search during this trial
        record = {"trial_id": trial_id, "status": status,
                  "score": None if trial.score is None else float(trial.score),
                  "best_epoch": None if trial.best_step is None else int(trial.best_step) + 1}
        for name in sorted(trial.metrics.metrics):
            value = trial.metrics.get_last_value(name)
            record[name] = None if value is None else float(value)
        for name, value in trial.hyperparameters.values.items():
            record[f"hp:{name}"] = value
        records.append(record)
    return records


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_table(records, objective, top=10):
    """A Markdown table of the best completed trials."""
    done = [r for r in records if r["status"] == "COMPLETED" and r["score"] is not None]
    done.sort(key=lambda r: r["score"], reverse=objective.direction == "max")
    hp_names = sorted({k for r in done[:top] for k in r if k.startswith("hp:")})
    cv = any("cv_folds" in r for r in done)  # cross-validated: mean, spread, folds
    header = ["trial", objective.name] + (["std"] if cv else [])
    if objective.name != objective.metric:
        header.append(objective.metric)
    header += ["size KiB", "folds" if cv else "epoch"] + [h[3:] for h in hp_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in done[:top]:
        row = [r["trial_id"], _fmt(r["score"])]
        if cv:
            row.append(_fmt(r.get(f"{objective.name}_std")))
        if objective.name != objective.metric:
            row.append(_fmt(r.get(objective.metric)))
        size = r.get("size_bytes")
        last = r.get("cv_folds") if cv else r["best_epoch"]
        row += [_fmt(None if size is None else size / 1024.0),
                _fmt(None if last is None else int(last))]
        row += [_fmt(r.get(h)) for h in hp_names]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_search(records, objective, path, front=()):
    """Writes the search plot: objective per trial, and metric against size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    xs = [int(r["trial_id"]) for r in records if r["score"] is not None]
    ys = [r["score"] for r in records if r["score"] is not None]
    left.scatter(xs, ys, s=18, label="trial")
    best, running = [], None
    for y in ys:
        if running is None or (y > running if objective.direction == "max" else y < running):
            running = y
        best.append(running)
    left.step(xs, best, where="post", color="C1", label="best so far")
    left.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    left.set_xlabel("trial")
    left.set_ylabel(objective.name)
    left.grid(alpha=0.3)
    left.legend()
    sized = [r for r in records if r.get("size_bytes") is not None
             and r.get(objective.metric) is not None]
    right.scatter([r["size_bytes"] / 1024.0 for r in sized],
                  [r[objective.metric] for r in sized], s=18, label="trial")
    on_front = sorted((records[i] for i in front), key=lambda r: r["size_bytes"])
    if on_front:
        right.plot([r["size_bytes"] / 1024.0 for r in on_front],
                   [r[objective.metric] for r in on_front], "o-", color="C3",
                   label="Pareto front")
    right.set_xscale("log")
    right.set_xlabel("model size (KiB)")
    right.set_ylabel(objective.metric)
    right.grid(alpha=0.3)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _evaluate(model, x, y):
    metrics = model.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)
    return {k: float(v) for k, v in metrics.items()}


def retrain(hypermodel, hp, dataset, epochs, verbose=0):
    """Trains `hp`'s model on train+validation for `epochs`; returns (model, test metrics).

    The model is built and fitted exactly as in a trial (same seed, batch size and
    optimizer), only on more data, so the retrain reproduces the trial's recipe.
    """
    x = np.concatenate([dataset.x_train, dataset.x_val])
    y = np.concatenate([dataset.y_train, dataset.y_val])
    model = hypermodel.build(hp)
    hypermodel.fit(hp, model, x, y, epochs=epochs, verbose=verbose)
    test = _evaluate(model, dataset.x_test, dataset.y_test) if len(dataset.x_test) else {}
    return model, test


def default_best_epoch(config, hypermodel, dataset, objective):
    """Trains the default configuration like a trial; returns its best epoch (1-based)."""
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    history = hypermodel.fit(
        hp, model, dataset.x_train, dataset.y_train,
        validation_data=(dataset.x_val, dataset.y_val), epochs=config.search["epochs"],
        callbacks=_callbacks(config, objective), verbose=0)
    values = history.history.get(objective.name) or history.history[objective.metric]
    pick = np.nanargmax if objective.direction == "max" else np.nanargmin
    return int(pick(values)) + 1, float(values[int(pick(values))])


def write_results(config, tuner, dataset, hypermodel, objective, search_seconds=None):
    """Writes every result file of a finished search (see the module docstring)."""
    from zoo.training import save_model_atomically

    out = config.output_dir
    oracle = tuner.oracle
    records = trial_records(oracle, objective)
    write_json(out / "trials.json", records)
    write_csv(out / "trials.csv", records)
    points = [(r.get(objective.metric), r.get("size_bytes"))
              if r["status"] == "COMPLETED" else (None, None) for r in records]
    front = pareto_front(points, objective.direction)
    write_csv(out / "pareto.csv", [records[i] for i in front])
    plot_search(records, objective, out / "search.png", front)

    completed = [r for r in records if r["status"] == "COMPLETED" and r["score"] is not None]
    summary = {
        "strategy": config.search["strategy"],
        "objective": objective.name,
        "direction": objective.direction,
        "trials": len(records),
        "completed": len(completed),
        "failed": sum(r["status"] in ("FAILED", "INVALID") for r in records),
        "pruned": sum(r["status"] == "PRUNED" for r in records),
        "infeasible": sum(r["status"] == "INFEASIBLE" for r in records),
        "search_seconds": None if search_seconds is None else round(search_seconds, 1),
        "pareto_trials": [records[i]["trial_id"] for i in front],
    }
    table = summary_table(records, objective)
    lines = [f"# Tuning job `{config.job['name']}`", "",
             f"Dataset `{dataset.name}`, strategy `{config.search['strategy']}`, "
             f"objective `{objective.name}` ({objective.direction}), "
             f"{summary['completed']}/{summary['trials']} trials completed"
             + (f", {summary['pruned']} pruned" if summary["pruned"] else "") + ".", "",
             table, ""]
    if config.cv["enabled"]:
        from tuning.cv import write_cv_results

        write_cv_results(config, tuner, dataset, hypermodel, objective, summary, lines)
    elif completed:
        best_trial = oracle.get_best_trials(1)[0]
        best_hp = best_trial.hyperparameters
        summary["best_trial"] = best_trial.trial_id
        summary["best_score"] = float(best_trial.score)
        summary["best_hyperparameters"] = dict(best_hp.values)
        summary["best_build_kwargs"] = {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in hypermodel.build_kwargs(best_hp).items()}
        best_epoch = (best_trial.best_step or 0) + 1
        if config.retrain["enabled"]:
            epochs = config.retrain["epochs"] or best_epoch
            model, test = retrain(hypermodel, best_hp, dataset, epochs)
            save_model_atomically(model, out / "best_model.keras")
            summary["retrain"] = {"epochs": epochs, "test": test,
                                  "params": int(model.count_params()),
                                  "model": str(out / "best_model.keras")}
            lines += [f"Best trial {best_trial.trial_id}: retrained on train+validation for "
                      f"{epochs} epochs, test " +
                      ", ".join(f"{k}={v:.4g}" for k, v in test.items()), ""]
            from tuning.cv import fit_check_lines

            lines += fit_check_lines(dataset, model, summary["retrain"])
            if config.retrain["compare_default"]:
                default_epoch, default_val = default_best_epoch(
                    config, hypermodel, dataset, objective)
                default_hp = keras_tuner.HyperParameters()
                default_model, default_test = retrain(hypermodel, default_hp, dataset,
                                                      default_epoch)
                summary["default"] = {"epochs": default_epoch, "validation": default_val,
                                      "test": default_test,
                                      "params": int(default_model.count_params())}
                lines += ["Default configuration, same procedure: test " +
                          ", ".join(f"{k}={v:.4g}" for k, v in default_test.items()), ""]
        lines += ["Best hyperparameters:", "", "```json",
                  json.dumps(summary["best_hyperparameters"], indent=2), "```", ""]
    write_text(out / "summary.md", "\n".join(lines))
    write_json(out / "best.json", summary)
    return summary


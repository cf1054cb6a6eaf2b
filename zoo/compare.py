"""`compare`: RNN vs LSTM vs GRU (and zoo variants) under one recipe, over several seeds.

`compare(dataset, cells=..., variants=..., seeds=..., budget=...)` trains every
(variant, cell) combination with the same data, training recipe and budget, once per
seed, and writes into `out_dir`:

- `comparison.md` and `comparison.csv`: one row per (variant, cell) with the mean ± std
  over seeds of the test accuracy (classification) or test MSE (regression), the final
  training loss, the test loss, the best epoch, the training time and the parameter
  count, plus the TFLite size when the `export` package is installed;
- `runs.csv`: the same numbers per seed;
- `curves.png`: training (solid) and validation (dashed) curves of each model, averaged
  over seeds; `metric_vs_time.png`: test metric against training time;
- `runs/<variant>_<cell>_seed<k>/`: each run's directory as written by `zoo.train`.

`adding_study(lengths=(100, 200, 600, 1000), ...)` runs the comparison on the adding
problem (Hochreiter & Schmidhuber 1997) at each sequence length and plots the test MSE
against the length with the trivial baseline (predicting 1.0, MSE = 1/6 ≈ 0.167).

The command line `gru-zoo compare` (`zoo.cli`) is a thin wrapper over these two.
"""

import collections.abc
import csv
import dataclasses
import math
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

from zoo.checks import check, fail, is_bool, is_int
from zoo.fileio import atomic_output, check_image_path, write_csv, write_text

BUDGETS = {
    # `epochs`, `patience`: caps on the dataset's recipe (`zoo.recipes.choose_recipe`; None:
    # no cap); `max_samples`: cap on each split's size (None: all); `adding`: the
    # adding-problem sizes and epochs.
    "tiny": dict(epochs=1, patience=1, max_samples=64,
                 adding=dict(num_train=64, num_val=32, num_test=32, epochs=1)),
    "quick": dict(epochs=40, patience=15, max_samples=None,
                  adding=dict(num_train=2000, num_val=500, num_test=500, epochs=10)),
    "full": dict(epochs=None, patience=None, max_samples=None,
                 adding=dict(num_train=50000, num_val=1000, num_test=1000, epochs=20)),
}

ADDING_LENGTHS = (100, 200, 600, 1000)
ADDING_BASELINE_MSE = 1.0 / 6.0  # Var(U1 + U2) for two independent U(0, 1) values.
# Bai, Kolter & Koltun 2018 ("An empirical evaluation of generic convolutional and
# recurrent networks"), adding problem T=600, test MSE.
ADDING_PUBLISHED_T600 = {"gru": 5.3e-5, "lstm": 0.164, "rnn": 0.177}

TRAIN_ARGS = ("epochs", "batch_size", "patience", "lr_decay", "fit_on", "class_weight")
# `build_gru` arguments that compare sets itself (from the data) or never varies.
_NOT_OVERRIDABLE = ("variant", "cell", "input_shape", "num_outputs", "task", "compile",
                    "optimizer", "loss", "metrics", "name", "batch_size")


def build_arguments():
    """The `build_gru` keyword arguments a comparison may override (all but the data's)."""
    import inspect

    from zoo.builders import build_gru

    return tuple(k for k in inspect.signature(build_gru).parameters
                 if k not in _NOT_OVERRIDABLE)


@dataclasses.dataclass
class Comparison:
    """What `compare` returns.

    Attributes:
        dataset: str, the dataset name.
        task: str, `"classification"` or `"regression"`.
        metric: str, the headline test metric (`"accuracy"` or `"mse"`).
        runs: list of dicts, one per (variant, cell, seed) run; `status` is "ok", or
            "failed: <why>" for a run whose training diverged (its numbers NaN).
        rows: list of dicts, one per (variant, cell): means and stds over the seeds
            whose run finished (`seeds`); `failed` counts the others and `failures`
            names them.
        histories: dict `(variant, cell)` → list of per-seed Keras histories.
        budget: dict, the budget actually used (epochs, patience, sizes).
        out_dir: `pathlib.Path` of the output directory, or `None`.
        files: dict name → path of the written tables and plots.
    """

    dataset: str
    task: str
    metric: str
    runs: list
    rows: list
    histories: dict
    budget: dict
    out_dir: pathlib.Path = None
    files: dict = dataclasses.field(default_factory=dict)

    def to_markdown(self):
        """The comparison table as Markdown (the content of `comparison.md`)."""
        return comparison_markdown(self.rows, self.metric, self.budget.get("baselines"))


def parse_names(argument, value, allowed):
    """`value` (a list of names, or one comma-separated string) as a list of names from
    `allowed`; an empty one (`""`, `[]`) is refused, like an unknown or repeated name,
    naming `argument` (`"cells"`, or the flag `"--cells"` on the command line)."""
    received = value
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        fail(argument, received, f"a non-empty list of names from {sorted(allowed)}")
    for name in value:
        if not isinstance(name, str) or name not in allowed:
            fail(argument, received, f"a non-empty list of names from {sorted(allowed)}")
    if len(set(value)) != len(value):
        fail(argument, received, "a list without repeated names")
    return list(value)


def parse_seeds(seeds, argument="seeds"):
    """`3` → [0, 1, 2]; `[0, 4]` or `"0,4"` → [0, 4]. An error names `argument`."""
    allowed = "a positive int (that many seeds from 0) or a non-empty list of distinct ints >= 0"
    if isinstance(seeds, str):
        try:
            parts = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            fail(argument, seeds, allowed)
        seeds = parts[0] if len(parts) == 1 and "," not in seeds else parts
    if is_int(seeds):
        if seeds < 1:
            fail(argument, seeds, allowed)
        return list(range(int(seeds)))
    if not isinstance(seeds, (list, tuple, range)) or not seeds:
        fail(argument, seeds, allowed)
    if not all(is_int(s) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        fail(argument, seeds, allowed)
    return [int(s) for s in seeds]


def check_out_dir(out_dir, argument="out_dir"):
    """`out_dir` as a `pathlib.Path` of a directory the comparison can write into.

    It may not exist yet (`compare` makes it, with its parents, once every other
    argument has been checked); it must be a non-empty path, not an existing file, and
    its nearest existing folder must be a writable directory. Nothing is created here.
    An error names `argument` (`"--out"` on the command line).
    """
    allowed = "the path (a non-empty str or os.PathLike) of a directory to write into"
    if not isinstance(out_dir, (str, os.PathLike)):
        fail(argument, out_dir, allowed)
    text = os.fspath(out_dir)
    if not isinstance(text, str) or not text.strip():
        fail(argument, out_dir, allowed)
    path = pathlib.Path(text)

    def refuse(why):
        raise ValueError(f"`{argument}` must be a directory that can be created and "
                         f"written (created if missing). Received: {argument}={text!r} "
                         f"({why})")

    try:
        if path.exists() and not path.is_dir():
            refuse("an existing file")
        existing = pathlib.Path(os.path.abspath(text))
        while not existing.exists():  # the nearest folder that exists: the rest are made
            existing = existing.parent
    except OSError as error:
        refuse(error.strerror or str(error))
    if not existing.is_dir():
        refuse(f"{existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        refuse(f"{existing} is not writable")
    return path


def _check_dataset_kwargs(dataset_kwargs):
    """`dataset_kwargs` as a new dict (`{}` for None)."""
    if dataset_kwargs is None:
        return {}
    if not isinstance(dataset_kwargs, collections.abc.Mapping) or not all(
            isinstance(key, str) for key in dataset_kwargs):
        fail("dataset_kwargs", dataset_kwargs,
             "None or a dict of `zoo.load_dataset` options (option name → value)")
    return dict(dataset_kwargs)


def _check_train_kwargs(train_kwargs):
    """The training arguments `zoo.train` checks on its own, with its wording, checked
    before anything is written (`class_weight`, which needs a model, is checked with
    the first model built)."""
    from zoo.training import FIT_ON, LR_DECAYS

    for argument, minimum in (("epochs", 1), ("batch_size", 1), ("patience", 0)):
        value = train_kwargs[argument]
        check(argument, value, is_int(value) and value >= minimum, f"an int >= {minimum}")
    value = train_kwargs["lr_decay"]
    check("lr_decay", value, (value is None or isinstance(value, str)) and value in LR_DECAYS,
          f"one of {list(LR_DECAYS)}")
    value = train_kwargs["fit_on"]
    check("fit_on", value, isinstance(value, str) and value in FIT_ON, f"one of {list(FIT_ON)}")


def _resolve_budget(budget):
    if isinstance(budget, str):
        if budget not in BUDGETS:
            fail("budget", budget, f"one of {list(BUDGETS)}")
        return budget, BUDGETS[budget]
    fail("budget", budget, f"one of {list(BUDGETS)}")


def _cap(x, y, limit):
    return (x, y) if limit is None else (x[:limit], y[:limit])


def _load(dataset, budget_spec, dataset_kwargs):
    """Loads (or takes) the dataset and applies the budget's size caps."""
    import zoo

    if isinstance(dataset, str):
        kwargs = dict(dataset_kwargs or {})
        if dataset == "adding":
            for key in ("num_train", "num_val", "num_test"):
                kwargs.setdefault(key, budget_spec["adding"][key])
        data = zoo.load_dataset(dataset, **kwargs)
    elif hasattr(dataset, "x_train"):
        if dataset_kwargs:
            fail("dataset_kwargs", dataset_kwargs, "empty when `dataset` is a loaded Dataset")
        data = dataset
    else:
        fail("dataset", dataset, "a dataset name (see `zoo.DATASETS`) or a zoo Dataset")
    limit = budget_spec["max_samples"]
    if limit is not None:
        x_train, y_train = _cap(data.x_train, data.y_train, limit)
        x_val, y_val = _cap(data.x_val, data.y_val, limit)
        x_test, y_test = _cap(data.x_test, data.y_test, limit)
        data = dataclasses.replace(data, x_train=x_train, y_train=y_train, x_val=x_val,
                                   y_val=y_val, x_test=x_test, y_test=y_test)
    return data


def model_config(dataset, variant, cell, overrides):
    """Builder kwargs of one compared model: the recipe `zoo.recipes.choose_recipe`
    picks for the dataset with this variant, the cell swapped in, then `overrides`
    (the same for every model)."""
    from zoo.recipes import choose_recipe

    config = dict(choose_recipe(dataset, variant=variant).build)
    config.update(overrides)
    config["variant"] = variant
    config["cell"] = cell
    return config


def default_variants(dataset):
    """The variant `zoo.recipes.choose_recipe` picks for the dataset."""
    from zoo.recipes import choose_recipe

    return [choose_recipe(dataset).build["variant"]]


def _headline(task):
    return ("accuracy", True) if task == "classification" else ("mse", False)


def _tflite_size(to_tflite, model, workdir):
    """Size in bytes of the model's verified fp32 TFLite file written by `to_tflite`;
    a conversion failure is reported as `nan` rather than stopping the comparison."""
    pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
    try:
        return int(to_tflite(model, pathlib.Path(workdir) / f"{model.name}.tflite").size)
    except Exception as error:  # a failed conversion must not lose the trained runs
        print(f"gru-zoo compare: warning: TFLite export of {model.name} failed: {error}",
              file=sys.stderr)
        return float("nan")


def _progress_callback(label, epochs, stream):
    import keras

    class EpochProgress(keras.callbacks.Callback):
        """One status line per run, rewritten in place on a terminal."""

        def __init__(self):
            super().__init__()
            self.tty = stream.isatty()
            self.start = self.last_line = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            shown = " ".join(f"{k}={v:.4g}" for k, v in logs.items()
                             if k in ("loss", "val_loss", "accuracy", "val_accuracy"))
            now = time.perf_counter()
            elapsed = now - self.start
            line = f"    {label}: epoch {epoch + 1}/{epochs} {shown} ({elapsed:.0f} s)"
            if self.tty:
                stream.write(f"\r{line}\x1b[K")
            elif now - self.last_line >= 30:  # logs: a line at most every 30 s
                stream.write(line + "\n")
                self.last_line = now
            stream.flush()

        def on_train_end(self, logs=None):
            if self.tty:
                stream.write("\r\x1b[K")
                stream.flush()

    return EpochProgress()


def _mean_std(values):
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return float("nan"), float("nan")
    return float(np.nanmean(values)), float(np.nanstd(values))


_RUN_FIELDS = ("test_loss", "final_loss", "final_val_loss", "best_epoch", "epochs_run",
               "train_seconds", "seconds_per_epoch")


def _failed_run(name, variant, cell, seed, model, metric, error):
    """The `runs` entry of a run whose training diverged: no numbers, its reason."""
    run = {"dataset": name, "variant": variant, "cell": cell, "seed": seed,
           "status": f"failed: {error}", "params": int(model.count_params()),
           f"test_{metric}": float("nan")}
    run.update({field: float("nan") for field in _RUN_FIELDS})
    return run


def failed_runs(runs):
    """The runs (dicts of `Comparison.runs`) whose training failed."""
    return [r for r in runs if r.get("status", "ok") != "ok"]


def _aggregate(runs, metric, keys):
    """One row per (variant, cell): means and stds over the seeds whose run finished
    (`seeds`); `failed` counts the others, `failures` says which and why."""
    rows = []
    for variant, cell in keys:
        group = [r for r in runs if r["variant"] == variant and r["cell"] == cell]
        finished = [r for r in group if r.get("status", "ok") == "ok"]
        failed = failed_runs(group)
        row = {"variant": variant, "cell": cell, "params": group[0]["params"],
               "seeds": len(finished), "failed": len(failed),
               "failures": "; ".join(f"seed {r['seed']}: {r['status'][len('failed: '):]}"
                                     for r in failed)}
        for field in (f"test_{metric}",) + _RUN_FIELDS:
            row[f"{field}_mean"], row[f"{field}_std"] = _mean_std(r[field] for r in finished)
        measured = [r for r in group if "tflite_bytes" in r]  # a failed run has none
        if measured:
            row["tflite_kb"] = (measured[0]["tflite_bytes"] / 1024
                                if measured[0]["tflite_bytes"] is not None else float("nan"))
        rows.append(row)
    return rows


def _fmt(value, digits=4):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.{max(digits - 1, 1)}e}"
    return f"{value:.{digits}g}"


def read_rows(path):
    """Reads `comparison.csv` or `adding.csv` back into rows (numbers as numbers)."""
    rows = []
    with open(path, newline="") as f:
        for record in csv.DictReader(f):
            row = {}
            for key, text in record.items():
                if text == "":
                    row[key] = None
                    continue
                try:
                    row[key] = int(text)
                except ValueError:
                    try:
                        row[key] = float(text)
                    except ValueError:
                        row[key] = text
            rows.append(row)
    return rows


def _pm(row, field, digits=4):
    mean = _fmt(row[f"{field}_mean"], digits)
    if row.get("seeds", 2) <= 1:
        return mean  # one seed (or none finished): no spread to show
    return f"{mean} ± {_fmt(row[f'{field}_std'], 2)}"


def comparison_markdown(rows, metric, baselines=None):
    """A Markdown table of aggregated rows (see `Comparison.rows`), followed by the
    reference forecasts' test MSE when `baselines` (name → MSE) is given."""
    headline = "test accuracy" if metric == "accuracy" else "test MSE"
    columns = ["variant", "cell", "params", "seeds", headline, "test loss",
               "final train loss", "best epoch", "train time (s)", "s/epoch"]
    with_tflite = any("tflite_kb" in r for r in rows)
    if with_tflite:
        columns.append("TFLite (KB)")
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(columns) - 2)) + "|"]
    failures = []
    for row in rows:
        seeds = str(row["seeds"])
        if row.get("failed"):
            seeds = f"{row['seeds']} ({row['failed']} failed)"
            failures.append(f"- {row['variant']}/{row['cell']}: {row['failures']}")
        cells = [row["variant"], row["cell"], str(row["params"]), seeds,
                 _pm(row, f"test_{metric}"), _pm(row, "test_loss"), _pm(row, "final_loss"),
                 _pm(row, "best_epoch", 3), _pm(row, "train_seconds", 3),
                 _pm(row, "seconds_per_epoch", 2)]
        if with_tflite:
            cells.append(_fmt(row.get("tflite_kb"), 3))
        lines.append("| " + " | ".join(cells) + " |")
    if failures:
        lines += ["", "Failed runs (left out of the means; \"seeds\" counts the runs that "
                  "finished):"] + failures
    if baselines:
        lines.append("")
        lines.append("Reference forecasts on the same test split (no training): " + "; ".join(
            f"{name} MSE {_fmt(value)}" for name, value in baselines.items()) + ".")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(plt, fig, path):
    """Saves `fig` to `path` through a temporary file beside it (`zoo.fileio.atomic_output`):
    a failed write leaves the previous file, not half of a new one. The format follows
    the suffix, which must be an image format's (`zoo.fileio.check_image_path`, as for
    `zoo.plot_curves`)."""
    try:
        path = check_image_path(path)
        with atomic_output(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def _mean_curve(curves):
    """Mean over seeds of curves of possibly different lengths (early stopping)."""
    length = max(len(c) for c in curves)
    padded = np.full((len(curves), length), np.nan)
    for i, c in enumerate(curves):
        padded[i, : len(c)] = c
    return np.nanmean(padded, axis=0)


def plot_comparison_curves(histories, path, metric, title=None):
    """Train (solid) and validation (dashed) loss and metric per model, mean over seeds."""
    plt = _pyplot()
    names = ["loss"] + ([metric] if metric != "mse" else [])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes[0], names):
        for i, ((variant, cell), runs) in enumerate(histories.items()):
            if not runs:
                continue  # every seed of this model failed: no curve
            color = colors[i % len(colors)]
            label = f"{variant}/{cell}"
            train = _mean_curve([h[name] for h in runs if name in h])
            marker = "o" if len(train) < 20 else None  # a one-epoch curve is a point
            ax.plot(np.arange(1, len(train) + 1), train, color=color, marker=marker,
                    label=f"{label} train")
            if all(f"val_{name}" in h for h in runs):
                val = _mean_curve([h[f"val_{name}"] for h in runs])
                ax.plot(np.arange(1, len(val) + 1), val, color=color, linestyle="--",
                        marker=marker, label=f"{label} val")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if name == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save_figure(plt, fig, path)


def plot_metric_vs_time(rows, path, metric, title=None, baselines=None):
    """Test metric (mean ± std over seeds) against training time, one point per model;
    reference forecasts (`baselines`, name → MSE) as horizontal lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        if not row.get("seeds", 1):
            continue  # every seed of this model failed: no point
        ax.errorbar(row["train_seconds_mean"], row[f"test_{metric}_mean"],
                    xerr=row["train_seconds_std"], yerr=row[f"test_{metric}_std"],
                    fmt="o", capsize=3, label=f"{row['variant']}/{row['cell']}")
    for (name, value), style in zip((baselines or {}).items(), (":", "--", "-.")):
        ax.axhline(value, color="black", linestyle=style, linewidth=1, label=name)
    ax.set_xlabel("training time (s, mean over seeds)")
    ax.set_ylabel("test accuracy" if metric == "accuracy" else "test MSE")
    if metric == "mse":
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save_figure(plt, fig, path)


def compare(
    dataset="gunpoint",
    *,
    cells=("rnn", "lstm", "gru"),
    variants=None,
    seeds=3,
    budget="quick",
    out_dir=None,
    dataset_kwargs=None,
    tflite=None,
    progress=True,
    stream=None,
    **overrides,
):
    """Trains each (variant, cell) with the same recipe over several seeds and tabulates.

    Every model gets the dataset's recommended configuration (`zoo.recipes.choose_recipe`)
    with only the variant and the cell swapped, the same data, the same training
    recipe (`zoo.train`) and the same budget; `zoo.set_seed(seed)` before each build
    makes every run repeatable.

    Args:
        dataset: str, a dataset name (`zoo.load_dataset`), or a loaded `zoo.Dataset`.
        cells: list of cells (`"rnn"`, `"lstm"`, `"gru"`) or a comma-separated string.
        variants: list of `zoo.VARIANTS` names (or comma-separated string); `None`
            uses the dataset's recommended variant (an empty list is an error, as for
            `cells`).
        seeds: int N (seeds 0..N-1) or a list of seeds. Defaults to `3`.
        budget: `"tiny"` (1 epoch, 64 samples per split: a smoke test), `"quick"`
            (the dataset's recipe capped at 40 epochs and patience 15; adding problem
            2000 sequences and 10 epochs) or `"full"` (the dataset's recipe from
            `zoo.recipes.choose_recipe`: epochs, batch size, patience, decay, `fit_on`;
            adding problem 50000 sequences and 20 epochs). Defaults to `"quick"`.
        out_dir: directory for the tables, plots and run directories, or `None`
            (nothing written). It is made only after every argument has been checked
            and every (variant, cell) model built once, so that a configuration error
            stops the comparison before any work and leaves no folder behind.
        dataset_kwargs: dict of `zoo.load_dataset` options (e.g. `{"length": 600}`).
        tflite: the converter for the TFLite-size column, called as
            `tflite(model, path)` and returning a result with the file's `size` in bytes
            (`export.to_tflite`), or `None`/`False` to leave the column out (the
            default). `zoo` does not import `export` (docs/architecture.md), so the
            caller passes it: `gru-zoo compare` does when `export` is installed.
        progress: bool (`True` or `False`), print one line per run (and a live epoch
            line on a terminal).
        stream: where progress goes. Defaults to `sys.stderr`.
        **overrides: builder arguments (`units`, `num_layers`, `dropout`,
            `learning_rate`, ...) and training arguments (`epochs`, `batch_size`,
            `patience`, `lr_decay`, `fit_on`, `class_weight`) applied to every model;
            `epochs` and `patience` here beat the budget.

    Returns:
        A `Comparison`.
    """
    return _run(_prepare(dataset, cells=cells, variants=variants, seeds=seeds, budget=budget,
                         out_dir=out_dir, dataset_kwargs=dataset_kwargs, tflite=tflite,
                         progress=progress, stream=stream, overrides=overrides))


def _prepare(dataset, *, cells, variants, seeds, budget, out_dir, dataset_kwargs, tflite,
             progress, stream, overrides):
    """Checks every argument of `compare`, loads the data and builds each (variant, cell)
    model once (dropping it: building is cheap), so that a bad argument or a model the
    builder refuses fails here, before any folder is made or any model trained: a
    comparison never stops halfway on a configuration error. Returns what `_run` needs.
    """
    import zoo
    from zoo.builders import CELLS, VARIANTS
    from zoo.recipes import choose_recipe
    from zoo.training import _check_class_weight

    budget_name, budget_spec = _resolve_budget(budget)
    cells = parse_names("cells", cells, CELLS)
    if variants is not None:  # None: the dataset's recommended variant (after loading)
        variants = parse_names("variants", variants, VARIANTS)
    seeds = parse_seeds(seeds)
    out_dir = check_out_dir(out_dir) if out_dir is not None else None
    dataset_kwargs = _check_dataset_kwargs(dataset_kwargs)
    check("progress", progress, is_bool(progress), "True or False")
    if stream is not None and not callable(getattr(stream, "write", None)):
        fail("stream", stream, "None (sys.stderr) or a text stream with a `write` method")
    if not (tflite is None or tflite is False or callable(tflite)):
        fail("tflite", tflite, "a converter such as `export.to_tflite` (called as "
             "`tflite(model, path)`), or None/False for no TFLite-size column")
    build_args = build_arguments()
    bad = sorted(set(overrides) - set(build_args) - set(TRAIN_ARGS))
    if bad:
        allowed = sorted(set(build_args) | set(TRAIN_ARGS))
        raise ValueError(
            f"Unknown override(s) {bad}; allowed: {allowed} (use `variants=`/`cells=` "
            f"to choose models). Received: {', '.join(f'{k}={overrides[k]!r}' for k in bad)}"
        )
    build_overrides = {k: v for k, v in overrides.items() if k in build_args}
    train_overrides = {k: v for k, v in overrides.items() if k in TRAIN_ARGS}

    data = _load(dataset, budget_spec, dataset_kwargs)
    name = data.name
    if variants is None:
        variants = default_variants(data)
    metric, _ = _headline(data.task)
    train_kwargs = dict(choose_recipe(data).train)
    if name == "adding":
        train_kwargs["epochs"] = budget_spec["adding"]["epochs"]
    for key in ("epochs", "patience"):
        if budget_spec[key] is not None:
            train_kwargs[key] = min(train_kwargs[key], budget_spec[key])
    train_kwargs.update(train_overrides)
    _check_train_kwargs(train_kwargs)

    keys = [(v, c) for v in variants for c in cells]
    configs = {}
    for variant, cell in keys:
        config = model_config(data, variant, cell, build_overrides)
        model = zoo.build_gru(input_shape=data.input_shape, num_outputs=data.num_outputs,
                              task=data.task, **config)
        if not configs:  # it depends on the task and the labels, the same for every model
            _check_class_weight(train_kwargs["class_weight"], model, data.y_train)
        configs[(variant, cell)] = config
        del model

    budget_used = {"name": budget_name, **train_kwargs,
                   "train": len(data.x_train), "val": len(data.x_val),
                   "test": len(data.x_test), "seeds": seeds}
    baselines = data.forecast_baselines("test") if hasattr(data, "forecast_baselines") else {}
    if baselines:
        budget_used["baselines"] = baselines
    if name == "adding":
        budget_used["length"] = int(data.input_shape[0])
        # The trivial model predicts the mean target 1.0; its MSE on this test split.
        budget_used["baseline_mse"] = float(np.mean((np.asarray(data.y_test) - 1.0) ** 2))
    return dict(data=data, configs=configs, seeds=seeds, metric=metric,
                train_kwargs=train_kwargs, budget_name=budget_name, budget_used=budget_used,
                baselines=baselines, out_dir=out_dir, tflite=tflite,
                progress=bool(progress), stream=stream or sys.stderr)


def _run(plan):
    """Trains and tabulates what `_prepare` checked; makes `out_dir` first."""
    import zoo

    data, configs, seeds, metric = plan["data"], plan["configs"], plan["seeds"], plan["metric"]
    train_kwargs, budget_name = plan["train_kwargs"], plan["budget_name"]
    budget_used, baselines = plan["budget_used"], plan["baselines"]
    out_dir, tflite, progress, stream = (plan["out_dir"], plan["tflite"], plan["progress"],
                                         plan["stream"])
    measure_tflite = callable(tflite)
    name = data.name
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    keys = list(configs)
    total = len(keys) * len(seeds)
    runs, histories = [], {key: [] for key in keys}
    started = time.perf_counter()
    done = 0
    for variant, cell in keys:
        config = configs[(variant, cell)]
        tflite_bytes = None
        for seed in seeds:
            label = f"{name} {variant}/{cell} seed {seed}"
            if progress:
                stream.write(f"[{done + 1}/{total}] {label} ...\n")
                stream.flush()
            zoo.set_seed(seed)
            model = zoo.build_gru(input_shape=data.input_shape, num_outputs=data.num_outputs,
                                  task=data.task, **config)
            run_dir = (out_dir / "runs" / f"{variant}_{cell}_seed{seed}"
                       if out_dir is not None else None)
            run_config = {"dataset": data.summary(), "build": config,
                          "train": {**train_kwargs, "seed": seed},
                          "budget": budget_name, "command": _command_line()}
            callbacks = [_progress_callback(label, train_kwargs["epochs"], stream)] \
                if progress else []
            try:
                result = zoo.train(model, data, seed=seed, run_dir=run_dir,
                                   config=run_config, verbose=0, callbacks=callbacks,
                                   **train_kwargs)
            except zoo.TrainingDivergedError as error:
                # A run that diverged is a result of the comparison (a cell that cannot
                # train at this budget), not a reason to lose the runs before and after
                # it: it is recorded as failed, kept out of the means, and named in the
                # table; `gru-zoo compare` exits 1.
                runs.append(_failed_run(name, variant, cell, seed, model, metric, error))
                done += 1
                if progress:
                    stream.write(f"      FAILED: {error}\n")
                    stream.flush()
                continue
            if measure_tflite and tflite_bytes is None:
                with tempfile.TemporaryDirectory() as scratch:
                    tflite_bytes = _tflite_size(
                        tflite, result.model, (run_dir if run_dir is not None else scratch))
            history = result.history
            run = {
                "dataset": name, "variant": variant, "cell": cell, "seed": seed,
                "status": "ok",
                "params": int(result.model.count_params()),
                f"test_{metric}": result.test_metrics.get(
                    "loss" if metric == "mse" else metric, float("nan")),
                "test_loss": result.test_metrics.get("loss", float("nan")),
                "final_loss": history["loss"][-1],
                "final_val_loss": history.get("val_loss", [float("nan")])[-1],
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "train_seconds": result.train_seconds,
                "seconds_per_epoch": result.train_seconds / max(result.epochs_run, 1),
            }
            for key, value in result.test_metrics.items():
                run.setdefault(f"test_{key}", value)
            if measure_tflite:
                run["tflite_bytes"] = tflite_bytes
            runs.append(run)
            histories[(variant, cell)].append(history)
            done += 1
            if progress:
                elapsed = time.perf_counter() - started
                eta = elapsed / done * (total - done)
                stream.write(f"      test {metric}={_fmt(run[f'test_{metric}'])} "
                             f"({result.epochs_run} epochs, {result.train_seconds:.1f} s; "
                             f"elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min)\n")
                stream.flush()

    rows = _aggregate(runs, metric, keys)
    comparison = Comparison(dataset=name, task=data.task, metric=metric, runs=runs, rows=rows,
                            histories=histories, budget=budget_used, out_dir=out_dir)
    if out_dir is not None:
        title = f"{name} ({budget_name} budget, {len(seeds)} seed(s))"
        comparison.files = write_comparison(out_dir, runs, rows, histories, metric, title,
                                            baselines=baselines)
    return comparison


def write_comparison(out_dir, runs, rows, histories, metric, title, baselines=None):
    """Writes a comparison's tables and plots to `out_dir`; returns their paths.

    `comparison.md`/`.csv` (the aggregated `rows`, and the reference forecasts'
    `baselines` when given), `runs.csv` (one row per run), `curves.png` (the
    `histories` per model) and `metric_vs_time.png`.
    """
    out_dir = pathlib.Path(out_dir)
    files = {
        "markdown": out_dir / "comparison.md",
        "csv": out_dir / "comparison.csv",
        "runs_csv": out_dir / "runs.csv",
        "curves": out_dir / "curves.png",
        "metric_vs_time": out_dir / "metric_vs_time.png",
    }
    write_text(files["markdown"], comparison_markdown(rows, metric, baselines))
    write_csv(files["csv"], rows)
    write_csv(files["runs_csv"], runs)
    plot_comparison_curves(histories, files["curves"], metric, title=title)
    plot_metric_vs_time(rows, files["metric_vs_time"], metric, title=title, baselines=baselines)
    return files


def _command_line():
    """The command that started this process, as a user would retype it."""
    if not sys.argv or not sys.argv[0]:
        return None
    program = pathlib.Path(sys.argv[0]).name
    if program == "gru-zoo":
        return " ".join(["gru-zoo"] + sys.argv[1:])
    if program.endswith(".py"):
        return " ".join(["python", sys.argv[0]] + sys.argv[1:])
    return None


def parse_lengths(lengths, argument="lengths"):
    """`"100,200"` or `[100, 200]` → [100, 200]: adding-problem sequence lengths. An
    empty value is refused like a bad one; an error names `argument`."""
    allowed = "a non-empty list of distinct ints >= 2"
    received = lengths
    if isinstance(lengths, str):
        try:
            lengths = [int(v) for v in lengths.split(",") if v.strip()]
        except ValueError:
            fail(argument, received, allowed)
    if not isinstance(lengths, (list, tuple)) or not lengths:
        fail(argument, received, allowed)
    if not all(is_int(v) and v >= 2 for v in lengths) or len(set(lengths)) != len(lengths):
        fail(argument, received, allowed)
    return [int(v) for v in lengths]


@dataclasses.dataclass
class AddingStudy:
    """What `adding_study` returns: one `Comparison` per length and the summary rows."""

    lengths: list
    comparisons: dict
    rows: list
    baseline_mse: float
    out_dir: pathlib.Path = None
    files: dict = dataclasses.field(default_factory=dict)

    def to_markdown(self):
        return adding_markdown(self.rows, self.baseline_mse)


def adding_markdown(rows, baseline_mse):
    """Markdown table: one row per (length, cell) with test MSE mean ± std."""
    lines = ["| T | variant | cell | params | seeds | test MSE | vs baseline | best epoch | "
             "train time (s) | published (T=600) |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    failures = []
    for row in rows:
        published = ADDING_PUBLISHED_T600.get(row["cell"]) if row["length"] == 600 else None
        seeds = str(row["seeds"])
        if row.get("failed"):
            seeds = f"{row['seeds']} ({row['failed']} failed)"
            failures.append(f"- T={row['length']} {row['variant']}/{row['cell']}: "
                            f"{row['failures']}")
        lines.append(
            f"| {row['length']} | {row['variant']} | {row['cell']} | {row['params']} | "
            f"{seeds} | {_pm(row, 'test_mse')} | "
            f"{_fmt(row['test_mse_mean'] / row.get('baseline_mse', baseline_mse), 3)}× | {_pm(row, 'best_epoch', 3)} | "
            f"{_pm(row, 'train_seconds', 3)} | {_fmt(published) if published else ''} |"
        )
    lines.append("")
    lines.append(f"Trivial baseline (always predict 1.0): MSE {baseline_mse:.4f} in expectation; "
                 "`vs baseline` divides the test MSE by the baseline's MSE on the same test "
                 "split (below 1: the model learned something).")
    if failures:
        lines += ["", "Failed runs (left out of the means; \"seeds\" counts the runs that "
                  "finished):"] + failures
    return "\n".join(lines) + "\n"


def plot_adding_study(study, path):
    """Test MSE against length per cell, and validation MSE per epoch at each length,
    with the trivial baseline drawn."""
    plt = _pyplot()
    lengths = study.lengths
    # Top: test MSE against T; bottom: one panel of validation curves per length.
    columns = max(2, len(lengths))
    fig = plt.figure(figsize=(4.5 * columns, 8))
    grid = fig.add_gridspec(2, columns)
    ax = fig.add_subplot(grid[0, :])
    keys = sorted({(r["variant"], r["cell"]) for r in study.rows})
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {key: cycle[i % len(cycle)] for i, key in enumerate(keys)}  # same in all panels
    for variant, cell in keys:
        rows = sorted((r for r in study.rows if (r["variant"], r["cell"]) == (variant, cell)),
                      key=lambda r: r["length"])
        ax.errorbar([r["length"] for r in rows], [r["test_mse_mean"] for r in rows],
                    yerr=[r["test_mse_std"] for r in rows], marker="o", capsize=3,
                    color=colors[(variant, cell)],
                    label=f"{variant}/{cell}" if len(keys) > len({k[1] for k in keys})
                    else cell)
    ax.axhline(study.baseline_mse, color="black", linestyle=":",
               label=f"trivial baseline ({study.baseline_mse:.3f})")
    for cell, mse in ADDING_PUBLISHED_T600.items():
        ax.scatter([600], [mse], marker="x", color="gray")
    ax.scatter([], [], marker="x", color="gray", label="Bai et al. 2018, T=600")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("test MSE")
    ax.set_yscale("log")
    ax.set_title("adding problem")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for column, length in enumerate(lengths):
        ax = fig.add_subplot(grid[1, column])
        comparison = study.comparisons[length]
        for (variant, cell), runs in comparison.histories.items():
            if not runs:
                continue  # every seed of this model failed at this length: no curve
            val = _mean_curve([h["val_loss"] if "val_loss" in h else h["loss"] for h in runs])
            ax.plot(np.arange(1, len(val) + 1), val, marker=".", label=f"{variant}/{cell}",
                    color=colors.get((variant, cell)))
        ax.axhline(study.baseline_mse, color="black", linestyle=":", label="baseline")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation MSE")
        ax.set_title(f"T={length}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(plt, fig, path)


def adding_study(
    lengths=ADDING_LENGTHS,
    *,
    cells=("rnn", "lstm", "gru"),
    variants=("stacked",),
    seeds=1,
    budget="quick",
    out_dir=None,
    dataset_kwargs=None,
    progress=True,
    stream=None,
    **overrides,
):
    """The long-dependency study: `compare` on the adding problem at each length.

    Args:
        lengths: list of sequence lengths (or comma-separated string). Defaults to
            `(100, 200, 600, 1000)`.
        cells, variants, seeds, budget, progress, stream, **overrides: as `compare`.
            The budget sets the number of sequences (`quick`: 2000 train / 500 val /
            500 test, 10 epochs; `full`: 50000 / 1000 / 1000, 20 epochs);
            `dataset_kwargs` (e.g. `{"num_train": 5000}`) and `epochs=` override it.
        out_dir: directory; each length gets `T<length>/` (a full `compare` output)
            and the study writes `adding.md`, `adding.csv` and `adding.png`. Every
            length is checked (data made, models built) before the first is trained.

    Returns:
        An `AddingStudy`.
    """
    lengths = parse_lengths(lengths)
    dataset_kwargs = _check_dataset_kwargs(dataset_kwargs)
    if "length" in dataset_kwargs:
        fail("dataset_kwargs", dataset_kwargs, "a dict without `length` (use `lengths=`)")
    out_dir = check_out_dir(out_dir) if out_dir is not None else None

    def prepare(length):
        return _prepare(
            "adding", cells=cells, variants=variants, seeds=seeds, budget=budget,
            out_dir=out_dir / f"T{length}" if out_dir is not None else None,
            dataset_kwargs={**dataset_kwargs, "length": length}, tflite=False,
            progress=progress, stream=stream, overrides=overrides,
        )

    # Every length is checked (its data made, its models built) before any is trained:
    # a length the builder refuses must not cost the lengths trained before it.
    for length in lengths:
        prepare(length)
    comparisons, rows = {}, []
    for length in lengths:
        comparison = _run(prepare(length))
        comparisons[length] = comparison
        for row in comparison.rows:
            rows.append({"length": length,
                         "baseline_mse": comparison.budget["baseline_mse"], **row})
    study = AddingStudy(lengths=lengths, comparisons=comparisons, rows=rows,
                        baseline_mse=ADDING_BASELINE_MSE, out_dir=out_dir)
    if out_dir is not None:
        study.files = write_adding_study(out_dir, study)
    return study


def write_adding_study(out_dir, study):
    """Writes an `AddingStudy`'s `adding.md`, `adding.csv` and `adding.png` to `out_dir`
    (each whole or not at all); returns their paths."""
    out_dir = pathlib.Path(out_dir)
    files = {"markdown": out_dir / "adding.md", "csv": out_dir / "adding.csv",
             "plot": out_dir / "adding.png"}
    write_text(files["markdown"], study.to_markdown())
    write_csv(files["csv"], study.rows)
    plot_adding_study(study, files["plot"])
    return files

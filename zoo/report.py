"""The run report: `report.md` in a run directory, with what a reader needs to trust it.

`write_report(run_dir, dataset, model=..., test_metrics=...)` writes, in order: the data
(where it came from, its sha256, split shapes, class counts, normalization), the recipe
and why it was chosen, the model, the test metrics, a per-class table with a confusion
matrix (classification) or a forecast plot with the naive baselines (forecasting), the
training curves, every exported file and the tuning step. Plots are PNGs beside the
report (`confusion_matrix.png`, `forecast.png`); the report is written through a
temporary file and `os.replace`, so a failure never leaves a partial `report.md`.

`export_table` / `format_export_table` render the export step's summary (one entry per
file, as `export/cli.py` writes them) as markdown and as plain text for the terminal.
"""

import datetime
import json
import os
import pathlib

import numpy as np

from zoo.fileio import atomic_output, write_text

PREDICT_BATCH_SIZE = 256
_SEQUENCE_TASKS = ("sequence_labeling", "sequence_regression")


# === Formatting helpers ===


def _fmt(value, digits=4):
    """A number for a table: 4 significant digits, `-` for None."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return str(float(value))
        return f"{float(value):.{digits}g}"
    return str(value)


def _cell(text):
    """Text safe inside a markdown table cell (one line, no column breaks)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _md_table(header, rows):
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _text_table(header, rows, indent=""):
    """Aligned plain-text columns; the last column is left free to run long."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i < len(row) - 1 else str(c)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _json_block(value):
    return "```json\n" + json.dumps(_jsonable(value), indent=2) + "\n```"


def _short_list(values, limit=6):
    values = np.asarray(values).reshape(-1).tolist()
    shown = ", ".join(_fmt(v) for v in values[:limit])
    if len(values) > limit:
        shown += f", ... ({len(values)} values)"
    return f"[{shown}]"


def _kb(size):
    return f"{size / 1024:.1f}" if isinstance(size, (int, float, np.integer, np.floating)) else "-"


# === Exported files ===


def _export_metric(entries):
    """The one metric every evaluated entry reports (`accuracy`, `mse`), or None if mixed."""
    metrics = set()
    for entry in entries.values():
        metrics |= {k[len("tflite_"):] for k in entry if k.startswith("tflite_")}
    return metrics.pop() if len(metrics) == 1 else None


def _export_rows(exports, files_dir=None, link_base=None):
    """Header and one row per file: name, KB, TFLite vs Keras metric, error, latency,
    arena, notes (the skip or error reason, the quantization recipe, fallbacks)."""
    exports = dict(exports or {})
    metric = _export_metric(exports)
    label = metric if metric else "metric"
    header = ["File", "Size (KB)", f"TFLite {label}", f"Keras {label}",
              "Max abs error vs Keras", "Latency (ms)", "TFLM arena (KB)", "Notes"]
    rows = []
    for name, entry in exports.items():
        entry = entry if isinstance(entry, dict) else {"error": str(entry)}
        shown = str(name)
        if files_dir is not None:
            path = pathlib.Path(files_dir) / f"model_{name}.tflite"
            if path.exists():
                link = os.path.relpath(path, link_base) if link_base is not None else path
                shown = f"[{name}]({pathlib.Path(link).as_posix()})"
        if "skipped" in entry:
            rows.append([shown, "-", "-", "-", "-", "-", "-", f"skipped: {entry['skipped']}"])
            continue
        if "error" in entry:
            rows.append([shown, "-", "-", "-", "-", "-", "-", f"error: {entry['error']}"])
            continue
        tflite = keras_value = None
        if metric:
            tflite, keras_value = entry.get(f"tflite_{metric}"), entry.get(f"keras_{metric}")
            tflite_text, keras_text = _fmt(tflite), _fmt(keras_value)
        else:  # mixed metrics: name the metric in each cell
            found = sorted(k[len("tflite_"):] for k in entry if k.startswith("tflite_"))
            tflite_text = ", ".join(f"{m} {_fmt(entry[f'tflite_{m}'])}" for m in found) or "-"
            keras_text = ", ".join(f"{m} {_fmt(entry.get(f'keras_{m}'))}" for m in found) or "-"
        arena = entry.get("tflm_arena_bytes")
        notes = []
        if entry.get("recipe"):
            notes.append(f"recipe {entry['recipe']}")
        if entry.get("fallback_from"):
            notes.append(f"fell back from {', '.join(map(str, entry['fallback_from']))}")
        if entry.get("tflm_max_abs_error") is not None:
            notes.append(f"TFLM max abs error {_fmt(entry['tflm_max_abs_error'])}")
        for warning in entry.get("warnings") or []:
            # `to_tflite`'s warnings (a file scoring worse than Keras, Flex ops, a
            # streaming file TFLite Micro cannot run) are said loudly.
            notes.append(f"**{str(warning).strip()}**")
        rows.append([shown, _kb(entry.get("size")), tflite_text, keras_text,
                     _fmt(entry.get("max_abs_error")), _fmt(entry.get("latency_ms"), 3),
                     _kb(arena) if arena is not None else "-", "; ".join(notes)])
    return header, rows


def export_table(exports, *, files_dir=None, link_base=None):
    """A markdown table of every exported file (see `_export_rows` for the columns).

    Args:
        exports: dict name → entry from the export step (`export/cli.py::_summary`:
            `size` in bytes, `recipe`, `max_abs_error`, `keras_<metric>`,
            `tflite_<metric>`, optional `latency_ms`, `tflm_arena_bytes`), or
            `{"skipped": reason}` / `{"error": message}`.
        files_dir: optional folder (as the report should link it) holding the files as
            `model_<name>.tflite`; names of files found there become links.
        link_base: the folder links are relative to (the report's); None: as given.
    """
    if not exports:
        return "No files were exported."
    header, rows = _export_rows(exports, files_dir=files_dir, link_base=link_base)
    return _md_table(header, rows)


def format_export_table(exports, *, indent="    "):
    """The export table as aligned plain text for the terminal."""
    if not exports:
        return f"{indent}no files exported"
    header, rows = _export_rows(exports)
    rows = [row[:-1] + [row[-1].replace("**", "")] for row in rows]  # no Markdown here
    header = ["file", "KB", header[2].replace("TFLite", "tflite"),
              header[3].replace("Keras", "keras"), "max abs err", "ms", "arena KB", "notes"]
    return _text_table(header, rows, indent=indent)


# === Classification ===


def class_report(y_true, y_pred, label_names):
    """Per-class precision, recall and accuracy, and the confusion matrix.

    Args:
        y_true, y_pred: int class indices (any shape; flattened).
        label_names: list of class names, index → name (None: the indices).

    Returns:
        A dict: `labels`, `confusion` (list of rows: true class, columns: predicted),
        `accuracy` (overall), `balanced_accuracy` (mean recall), `samples`, and
        `per_class`, one dict per class with `label`, `support` (true count),
        `predicted` (predicted count), `correct`, `precision`, `recall`, `f1` and
        `accuracy` (the share of that class's samples classified correctly, i.e. recall).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true).reshape(-1).astype(int)
    y_pred = np.asarray(y_pred).reshape(-1).astype(int)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"`y_true` and `y_pred` must hold as many labels. Received: "
                         f"{y_true.size} and {y_pred.size}")
    seen = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    num_classes = max(len(label_names) if label_names is not None else 0, seen, 1)
    names = [str(n) for n in label_names] if label_names is not None else []
    names += [str(i) for i in range(len(names), num_classes)]
    labels = list(range(num_classes))
    confusion = confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    per_class = []
    for i in labels:
        per_class.append({
            "label": names[i],
            "support": int(support[i]),
            "predicted": int(confusion[:, i].sum()),
            "correct": int(confusion[i, i]),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "accuracy": float(recall[i]),
        })
    present = support > 0
    return {
        "labels": names,
        "confusion": confusion.astype(int).tolist(),
        "samples": int(y_true.size),
        "accuracy": float(np.trace(confusion) / y_true.size) if y_true.size else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "per_class": per_class,
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path):
    """Saves a PNG through a temporary file beside it (no partial PNG on failure)."""
    plt = _pyplot()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path


def plot_confusion_matrix(confusion, label_names, path):
    """Writes a PNG of a confusion matrix (rows: true class, columns: predicted)."""
    plt = _pyplot()
    confusion = np.asarray(confusion)
    n = confusion.shape[0]
    names = list(label_names) if label_names is not None else [str(i) for i in range(n)]
    size = min(3.0 + 0.5 * n, 16.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=names, rotation=45 if n > 4 else 0,
                  ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        threshold = confusion.max() / 2 if confusion.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center",
                        color="white" if confusion[i, j] > threshold else "black")
    ax.set_title("Confusion matrix (test)")
    fig.tight_layout()
    return _save_figure(fig, path)


# === Forecasting ===


def plot_forecast(x, y_true, y_pred, path, num_series=3):
    """Writes a PNG of a few test windows: the input (feature 0) and the horizon's true
    and predicted values after it. Series are spread evenly over the test split."""
    plt = _pyplot()
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[..., None]
    y_true = np.asarray(y_true).reshape(len(x), -1)
    y_pred = np.asarray(y_pred).reshape(len(x), -1)
    if not len(x):
        raise ValueError("`x` must hold at least one series to plot. Received: 0 series")
    count = max(1, min(int(num_series), len(x)))
    picks = np.unique(np.linspace(0, len(x) - 1, count).round().astype(int))
    window, horizon = x.shape[1], y_true.shape[1]
    past = np.arange(-window + 1, 1)
    future = np.arange(1, horizon + 1)
    fig, axes = plt.subplots(len(picks), 1, figsize=(8, 2.6 * len(picks)), squeeze=False)
    for ax, index in zip(axes[:, 0], picks):
        ax.plot(past, x[index, :, 0], color="0.4", label="input window")
        ax.plot(future, y_true[index], color="tab:blue", marker=".", label="true")
        ax.plot(future, y_pred[index], color="tab:orange", marker=".", label="predicted")
        ax.axvline(0.5, color="0.8", linestyle="--", linewidth=1)
        ax.set_title(f"test series {index}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    axes[-1, 0].set_xlabel("step (0 = last input step)")
    fig.tight_layout()
    return _save_figure(fig, path)


# === The report ===


def _predict(model, x):
    return np.asarray(model.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=0))


def _binary_threshold(model):
    """0.5 for a sigmoid output; 0 when the output layer is linear (logits)."""
    import keras

    layer = model.layers[-1] if model.layers else None
    activation = getattr(layer, "activation", None)
    return 0.0 if activation is keras.activations.linear else 0.5


def _to_classes(model, probabilities):
    if probabilities.shape[-1] == 1:
        return (probabilities[..., 0] > _binary_threshold(model)).astype(int)
    return probabilities.argmax(axis=-1)


def _step_mask(dataset, x):
    """True for the real (not padded) steps of `(samples, time, ...)` inputs."""
    x = np.asarray(x)
    mask_value = getattr(dataset, "mask_value", None)
    if mask_value is not None and x.ndim >= 3:
        return np.any(x != mask_value, axis=tuple(range(2, x.ndim)))
    if getattr(dataset, "vocabulary", None) is not None and x.ndim == 2:
        return x != 0
    return np.ones(x.shape[:2], dtype=bool)


def _class_counts(dataset):
    names = list(dataset.label_names) if dataset.label_names is not None else None
    counts = {}
    for split in ("train", "val", "test"):
        y = getattr(dataset, f"y_{split}", None)
        if y is None:
            continue
        y = np.asarray(y)
        if dataset.task == "sequence_labeling" and y.ndim >= 2:  # real steps only
            x = getattr(dataset, f"x_{split}")
            y = y.reshape(y.shape[:2])[_step_mask(dataset, x)]
        y = y.reshape(-1)
        if not y.size:
            counts[split] = np.zeros(0, dtype=int)
            continue
        counts[split] = np.bincount(y.astype(int), minlength=len(names) if names else 0)
    width = max([len(c) for c in counts.values()] + [len(names) if names else 0])
    names = (names or []) + [str(i) for i in range(len(names or []), width)]
    return names, {s: np.pad(c, (0, width - len(c))) for s, c in counts.items()}


def _data_section(dataset):
    lines = ["## Data", ""]
    lines.append(f"- **Name:** {dataset.name}")
    if dataset.description:
        lines.append(f"- **Description:** {dataset.description}")
    lines.append(f"- **Task:** {dataset.task}, {dataset.num_outputs} output"
                 f"{'s' if dataset.num_outputs != 1 else ''}")
    source = getattr(dataset, "source", None)
    if isinstance(source, dict) and source:
        where = source.get("path") or "-"
        fmt = f" ({source['format']})" if source.get("format") else ""
        lines.append(f"- **Source:** `{where}`{fmt}")
        if source.get("sha256"):
            lines.append(f"- **sha256:** `{source['sha256']}`")
        for key, value in source.items():
            if key not in ("path", "format", "sha256") and value not in (None, {}, []):
                lines.append(f"- **Source {key}:** `{json.dumps(_jsonable(value))}`")
    else:
        lines.append("- **Source:** embedded in the package (or generated), no file read")
    if dataset.citation:
        lines.append(f"- **Citation:** {dataset.citation}")
    mask_value = getattr(dataset, "mask_value", None)
    if mask_value is not None:
        lines.append(f"- **Padding (mask value):** {_fmt(mask_value)}")
    if dataset.season is not None:
        lines.append(f"- **Season:** {dataset.season} steps")
    lines += ["", _md_table(
        ["Split", "x shape", "y shape"],
        [[split, str(tuple(np.shape(getattr(dataset, f'x_{split}')))),
          str(tuple(np.shape(getattr(dataset, f'y_{split}'))))]
         for split in ("train", "val", "test")])]
    if dataset.task in ("classification", "sequence_labeling"):
        names, counts = _class_counts(dataset)
        splits = list(counts)
        rows = [[name] + [int(counts[s][i]) for s in splits] for i, name in enumerate(names)]
        rows.append(["**total**"] + [int(counts[s].sum()) for s in splits])
        unit = "steps" if dataset.task == "sequence_labeling" else "series"
        lines += ["", f"Classes ({unit} per split):", "",
                  _md_table(["Class"] + splits, rows)]
    lines.append("")
    normalization = dataset.normalization
    if normalization:
        lines.append("Normalization (statistics of the training split, applied to every "
                     "split; the exported files carry them):")
        lines.append("")
        for key, value in normalization.items():
            shown = _short_list(value) if isinstance(value, (list, tuple, np.ndarray)) else value
            lines.append(f"- `{key}`: {shown}")
    else:
        lines.append("Normalization: none.")
    return lines


def _recipe_section(recipe):
    lines = ["## Recipe", ""]
    if not recipe:
        lines.append("No recipe recorded.")
        return lines
    recipe = dict(recipe)
    if recipe.get("name"):
        lines.append(f"Recipe: **{recipe['name']}**")
        lines.append("")
    reasons = recipe.get("reasons") or []
    if reasons:
        lines.append("Why:")
        lines.append("")
        lines += [f"- {reason}" for reason in reasons]
        lines.append("")
    overridden = recipe.get("overridden_by_flags")
    if overridden:
        lines.append(f"Overridden by flags: {', '.join(map(str, overridden))}")
        lines.append("")
    for key, title in (("build", "Model arguments"), ("train", "Training arguments")):
        if recipe.get(key):
            lines.append(f"{title}:")
            lines.append("")
            lines.append(_md_table(["Argument", "Value"],
                                   [[k, json.dumps(_jsonable(v))] for k, v in recipe[key].items()]))
            lines.append("")
    rest = {k: v for k, v in recipe.items()
            if k not in ("name", "reasons", "overridden_by_flags", "build", "train")}
    if rest:
        lines += ["<details><summary>More</summary>", "", _json_block(rest), "",
                  "</details>", ""]
    return lines


def _model_section(model, recipe):
    build = dict((recipe or {}).get("build") or {})
    lines = ["## Model", ""]
    lines.append(f"- **Name:** {model.name}")
    if build.get("variant"):
        lines.append(f"- **Variant:** {build['variant']}")
    if build.get("cell"):
        lines.append(f"- **Cell:** {build['cell']}")
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    lines.append(f"- **Parameters:** {model.count_params():,} ({trainable:,} trainable)")
    try:
        lines.append(f"- **Input shape:** {tuple(model.input_shape)}; **output shape:** "
                     f"{tuple(model.output_shape)}")
    except (AttributeError, ValueError, TypeError):
        pass
    lines.append("")
    return lines


def _metrics_section(test_metrics):
    lines = ["## Test metrics", ""]
    if test_metrics:
        lines.append(_md_table(["Metric", "Value"],
                               [[k, _fmt(v)] for k, v in test_metrics.items()]))
    else:
        lines.append("No test split: no test metrics.")
    lines.append("")
    return lines


def _classification_section(run_dir, dataset, model, predictions):
    y_pred = _to_classes(model, predictions)
    report = class_report(dataset.y_test, y_pred, dataset.label_names)
    plot_confusion_matrix(report["confusion"], report["labels"],
                          run_dir / "confusion_matrix.png")
    lines = ["## Per-class accuracy", "",
             f"{report['samples']} test series: accuracy {_fmt(report['accuracy'])}, "
             f"balanced accuracy {_fmt(report['balanced_accuracy'])}. A class's accuracy "
             "is the share of its test series classified correctly (its recall).", ""]
    rows = [[c["label"], c["support"], c["correct"], _fmt(c["accuracy"]), c["predicted"],
             _fmt(c["precision"]), _fmt(c["f1"])] for c in report["per_class"]]
    lines.append(_md_table(["Class", "Test series", "Correct", "Accuracy (recall)",
                            "Predicted as", "Precision", "F1"], rows))
    names = report["labels"]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted):", "",
              _md_table(["true \\ predicted"] + names,
                        [[names[i]] + row for i, row in enumerate(report["confusion"])]),
              "", "![Confusion matrix](confusion_matrix.png)", ""]
    check = fit_check(dataset, model, predictions)
    if check and check["baselines"]:
        majority = check["baselines"]["most frequent class"]
        lines += [f"Always predicting the training data's most frequent class scores "
                  f"{_fmt(majority)} on test."
                  + (f" **The model does not beat it**: treat it as a failed fit, not as "
                     "a result." if check["failed_fit"] else ""), ""]
    return lines, report


def _sequence_section(dataset, model, predictions):
    mask = _step_mask(dataset, dataset.x_test)
    lines = []
    if dataset.task == "sequence_labeling":
        y_pred = _to_classes(model, predictions)
        y_true = np.asarray(dataset.y_test).reshape(y_pred.shape).astype(int)
        correct = (y_pred == y_true)[mask]
        lines += ["## Per-step accuracy", "",
                  f"Accuracy over {correct.size} test steps (padding excluded): "
                  f"{_fmt(float(correct.mean()) if correct.size else 0.0)}", ""]
    else:
        y_true = np.asarray(dataset.y_test).reshape(predictions.shape)
        errors = ((predictions - y_true) ** 2).mean(axis=-1)[mask]
        lines += ["## Per-step error", "",
                  f"MSE over {errors.size} test steps (padding excluded): "
                  f"{_fmt(float(errors.mean()) if errors.size else 0.0)}", ""]
    return lines


def fit_check(dataset, model, predictions=None):
    """A trained model's test score against predictions that learn nothing.

    Classification: the test accuracy of always predicting the most frequent class of
    the training (and validation) labels. Regression: the test MSE of always predicting
    the training targets' mean, and for forecasts the seasonal-naive and last-value
    forecasts (`Dataset.forecast_baselines`). A model that does not beat every one of
    them is a failed fit, whatever its metric's value looks like. (Written here: scikit-
    learn's `DummyClassifier`/`DummyRegressor` do this, but gru-zoo does not depend on
    scikit-learn and needs three lines of it.)

    Returns `{"metric", "model", "baselines": {name: value}, "not_beaten": [names],
    "failed_fit": bool}`, or `None` for sequence labelling or an empty test split.
    """
    if dataset.task not in ("classification", "regression") or not len(dataset.x_test):
        return None
    if predictions is None:
        predictions = _predict(model, dataset.x_test)
    predictions = np.asarray(predictions)
    seen = [np.asarray(y) for y in (dataset.y_train, dataset.y_val)
            if y is not None and len(y)]
    baselines = {}
    if dataset.task == "classification":
        y_true = np.asarray(dataset.y_test).reshape(-1).astype(int)
        score = float(np.mean(_to_classes(model, predictions).reshape(-1) == y_true))
        if seen:
            labels = np.concatenate([y.reshape(-1) for y in seen]).astype(int)
            majority = int(np.bincount(labels).argmax())
            baselines["most frequent class"] = float(np.mean(y_true == majority))
        metric, better = "accuracy", (lambda model_value, value: model_value > value)
    else:
        y_true = np.asarray(dataset.y_test).reshape(len(predictions), -1)
        score = float(np.mean((predictions.reshape(len(predictions), -1) - y_true) ** 2))
        baselines.update(dataset.forecast_baselines() if hasattr(dataset, "forecast_baselines")
                         else {})
        if seen:
            mean = np.concatenate([y.reshape(len(y), -1) for y in seen]).mean(axis=0)
            baselines["training mean"] = float(np.mean((mean[None, :] - y_true) ** 2))
        metric, better = "mse", (lambda model_value, value: model_value < value)
    not_beaten = [name for name, value in baselines.items() if not better(score, value)]
    return {"metric": metric, "model": score, "baselines": baselines,
            "not_beaten": not_beaten, "failed_fit": bool(not_beaten)}


def _regression_section(run_dir, dataset, predictions):
    y_true = np.asarray(dataset.y_test).reshape(len(predictions), -1)
    y_pred = predictions.reshape(len(predictions), -1)
    # A model that cannot beat the training targets' mean has learnt nothing.
    check = fit_check(dataset, None, predictions)
    mse = check["model"]
    mae = float(np.mean(np.abs(y_pred - y_true)))
    lines = ["## Forecast" if dataset.season is not None or dataset.num_outputs > 1
             else "## Predictions", ""]
    lines.append(f"Test MSE {_fmt(mse)}, MAE {_fmt(mae)} over {len(y_true)} test series"
                 + (" (normalized units)." if dataset.normalization else "."))
    lines.append("")
    baselines = check["baselines"]
    if baselines:
        rows = [["this model", _fmt(mse), "-"]]
        rows += [[name, _fmt(value), "**no**" if name in check["not_beaten"] else "yes"]
                 for name, value in baselines.items()]
        lines += ["Baselines the model must beat (test MSE, same units):", "",
                  _md_table(["Prediction", "Test MSE", "Model beats it"], rows), ""]
        if check["failed_fit"]:
            lines += [f"**The model does not beat {', '.join(check['not_beaten'])}**: treat "
                      "it as a failed fit, not as a result.", ""]
    if dataset.season is not None or dataset.num_outputs > 1:
        plot_forecast(dataset.x_test, y_true, y_pred, run_dir / "forecast.png")
        lines += ["![Forecast](forecast.png)", ""]
    return lines, {"mse": mse, "mae": mae, "baselines": baselines}


def _curves_section(run_dir, history):
    lines = ["## Training curves", ""]
    for candidate in (run_dir / "curves.png", run_dir / "train" / "curves.png"):
        if candidate.exists():
            link = candidate.relative_to(run_dir).as_posix()
            lines += [f"![Training curves]({link})", ""]
            break
    if history:
        rows = []
        for name, values in history.items():
            values = [float(v) for v in values]
            if not values:
                continue
            if name in ("learning_rate", "lr"):
                best_text = "-"
            else:
                lower = any(k in name for k in ("loss", "error", "mse", "mae"))
                best_value = (min if lower else max)(values)
                best_text = f"{_fmt(best_value)} (epoch {values.index(best_value) + 1})"
            rows.append([name, len(values), _fmt(values[0]), _fmt(values[-1]), best_text])
        if rows:
            lines += [_md_table(["Metric", "Epochs", "First", "Last", "Best"], rows), ""]
    if len(lines) == 2:
        lines += ["No training history.", ""]
    return lines


def _exports_section(run_dir, exports):
    lines = ["## Exported files", ""]
    if exports is None:
        lines += ["No export step in this run.", ""]
        return lines
    files_dir = run_dir / "export"
    table = export_table(exports, files_dir=files_dir if files_dir.is_dir() else None,
                         link_base=run_dir)
    lines += ["Each file was checked against the Keras model on the test split (sizes in "
              "KB of 1024 bytes).", "", table, ""]
    return lines


_TUNE_KNOWN = ("strategy", "trials", "completed", "pruned", "infeasible", "cv", "objective",
               "default_cv", "budget", "trained", "chosen", "verdict", "output_dir",
               "seconds")


def _tune_section(tune):
    """The main job's tuning step (`tuning.cli.run_step`'s summary) as Markdown."""
    lines = ["## Tuning", ""]
    if tune is None:
        lines += ["No tuning step in this run.", ""]
        return lines
    if not isinstance(tune, dict) or "verdict" not in tune:
        lines += [_json_block(tune), ""]
        return lines
    lines += [f"**Verdict:** {tune['verdict']}.", ""]
    facts = []
    if tune.get("trials") is not None:
        facts.append(f"- **Search:** {tune.get('strategy')}, {tune['trials']} trials "
                     f"({tune.get('completed')} completed, {tune.get('pruned', 0)} pruned, "
                     f"{tune.get('infeasible', 0)} over the device budget)")
    if tune.get("cv"):
        facts.append(f"- **Cross-validation:** {tune['cv']}")
    budget = tune.get("budget")
    if isinstance(budget, dict):
        limits = ", ".join(f"{k} {budget[k]:g}" for k in ("flash_kb", "ram_kb", "latency_ms")
                           if budget.get(k) is not None)
        facts.append(f"- **Device budget:** {limits} ({budget.get('form')})")
    if tune.get("seconds") is not None:
        facts.append(f"- **Time:** {_fmt(tune['seconds'])} s")
    if tune.get("output_dir"):
        facts.append(f"- **Job directory:** `{tune['output_dir']}`")
    lines += facts + [""]
    trained, chosen = tune.get("trained") or {}, tune.get("chosen") or {}
    default_cv = tune.get("default_cv") or {}
    objective = tune.get("objective", "CV score")
    rows = [["trained model (the default configuration)", _fmt(default_cv.get("score")),
             _fmt(trained.get("params")),
             ", ".join(f"{k} {_fmt(v)}" for k, v in (trained.get("test") or {}).items())]]
    if chosen and not chosen.get("is_trained_config"):
        rows.append([f"chosen (trial {chosen.get('trial')})", _fmt(chosen.get("cv_score")),
                     _fmt(chosen.get("params")),
                     ", ".join(f"{k} {_fmt(v)}" for k, v in (chosen.get("test") or {}).items())])
    lines += [_md_table(["Model", f"{objective} (CV)", "Parameters", "Test"], rows), ""]
    export = chosen.get("export") if chosen else None
    if isinstance(export, dict):
        lines += [f"The chosen model as {export.get('form')}: `{export.get('path')}`, "
                  f"{_fmt(export.get('flash_bytes', 0) / 1024.0)} KiB flash, "
                  f"{_fmt(export.get('ram_bytes', 0) / 1024.0)} KiB RAM, "
                  f"{_fmt(export.get('latency_ms'))} ms"
                  + ("" if export.get("within_budget") else " (OVER THE BUDGET)") + ".", ""]
    best = chosen.get("hyperparameters") if chosen else None
    if isinstance(best, dict) and best and not chosen.get("is_trained_config"):
        lines += ["Chosen hyperparameters:", "",
                  _md_table(["Hyperparameter", "Value"],
                            [[k, json.dumps(_jsonable(v))] for k, v in best.items()]), ""]
    return lines


def write_report(run_dir, dataset, *, model, test_metrics, history=None, recipe=None,
                 exports=None, tune=None, title=None):
    """Writes `report.md` (and its PNGs) into `run_dir`; returns the report's path.

    Args:
        run_dir: the run directory (created if missing). `curves.png` there (or in
            `run_dir/train`) is linked; the export step's files in `run_dir/export`.
        dataset: the `zoo.Dataset` the model was trained on.
        model: the trained `keras.Model`; it predicts the test split for the per-class
            table and confusion matrix, or the forecast plot.
        test_metrics: dict metric → test value.
        history: dict metric → per-epoch values.
        recipe: dict with `name`, `build`, `train` and `reasons` (list of str).
        exports: the export step's summary, dict name → entry (see `export_table`).
        tune: the tuning step's summary dict.
        title: the report's title (default: "gru-zoo run: <dataset name>").
    """
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    title = title or f"gru-zoo run: {dataset.name}"
    written = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", "", f"Written {written}.", ""]
    lines += _data_section(dataset)
    lines += [""] + _recipe_section(recipe)
    lines += _model_section(model, recipe)
    lines += _metrics_section(test_metrics)
    x_test = getattr(dataset, "x_test", None)
    if x_test is not None and len(x_test):
        predictions = _predict(model, x_test)
        if dataset.task in _SEQUENCE_TASKS:
            lines += _sequence_section(dataset, model, predictions)
        elif dataset.task == "classification":
            lines += _classification_section(run_dir, dataset, model, predictions)[0]
        else:
            lines += _regression_section(run_dir, dataset, predictions)[0]
    lines += _curves_section(run_dir, history)
    lines += _exports_section(run_dir, exports)
    lines += _tune_section(tune)
    text = "\n".join(lines).rstrip() + "\n"

    path = run_dir / "report.md"
    write_text(path, text)
    return path

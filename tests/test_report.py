"""The run report: class_report's numbers, report.md's sections, PNGs, atomic writing.

Models here have fixed weights, so every prediction (and so every count and metric in
the report) is known in advance.
"""

import hashlib
import pathlib

import keras
import matplotlib.image
import numpy as np
import pytest

import zoo
from zoo import report
from zoo.datasets import Dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    path = pathlib.Path(path)
    assert path.exists(), path
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def one_hot_inputs(classes, num_classes, time=2):
    """Series whose every step is the one-hot of the class the fixed model will predict."""
    x = np.zeros((len(classes), time, num_classes), dtype=np.float32)
    x[np.arange(len(classes)), :, classes] = 1.0
    return x


def argmax_classifier(time, num_classes):
    """Softmax of 10 x the time-average of the inputs: predicts the argmax feature."""
    inputs = keras.Input((time, num_classes))
    x = keras.layers.GlobalAveragePooling1D()(inputs)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="output")(x)
    model = keras.Model(inputs, outputs, name="fixed_argmax")
    model.get_layer("output").set_weights([10 * np.eye(num_classes, dtype=np.float32),
                                           np.zeros(num_classes, dtype=np.float32)])
    return model


def classification_dataset(y_test, pred_test, num_classes=3, time=2, **extra):
    y_train = np.array([0, 0, 1, 2, 2, 2], dtype=np.int32)[: max(num_classes, 1) * 2]
    y_val = np.arange(num_classes, dtype=np.int32)
    return Dataset(
        name="toy", task="classification", num_outputs=num_classes,
        input_shape=(time, num_classes),
        x_train=one_hot_inputs(y_train % num_classes, num_classes, time),
        y_train=y_train % num_classes,
        x_val=one_hot_inputs(y_val, num_classes, time), y_val=y_val,
        x_test=one_hot_inputs(np.asarray(pred_test), num_classes, time),
        y_test=np.asarray(y_test, dtype=np.int32),
        label_names=["cat", "dog", "eel"][:num_classes],
        normalization={"mean": [0.5] * num_classes, "std": [2.0] * num_classes},
        description="A toy set.", citation="Nobody, 2024.", **extra)


# Hand-computed: true 0 → predicted [0, 1, 0]; true 1 → [1, 2]; true 2 → [2, 2, 0, 1].
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 1, 0, 1, 2, 2, 2, 0, 1]
CONFUSION = [[2, 1, 0], [0, 1, 1], [1, 1, 2]]


def test_class_report_matches_a_hand_computed_confusion_matrix():
    result = report.class_report(Y_TRUE, Y_PRED, ["cat", "dog", "eel"])
    assert result["confusion"] == CONFUSION
    assert result["labels"] == ["cat", "dog", "eel"]
    assert result["samples"] == 9
    assert result["accuracy"] == pytest.approx(5 / 9)
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 4) / 3)
    expected = {  # label: support, predicted, correct, precision, recall
        "cat": (3, 3, 2, 2 / 3, 2 / 3),
        "dog": (2, 3, 1, 1 / 3, 1 / 2),
        "eel": (4, 3, 2, 2 / 3, 2 / 4),
    }
    for row in result["per_class"]:
        support, predicted, correct, precision, recall = expected[row["label"]]
        assert (row["support"], row["predicted"], row["correct"]) == (support, predicted,
                                                                      correct)
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["accuracy"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(2 * precision * recall / (precision + recall))


def test_class_report_keeps_classes_without_samples_and_flattens_labels():
    result = report.class_report(np.array([[0], [0], [1]]), np.array([0, 1, 1]),
                                 ["a", "b", "c"])
    assert result["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    unseen = result["per_class"][2]
    assert (unseen["label"], unseen["support"], unseen["precision"]) == ("c", 0, 0.0)
    # Balanced accuracy averages over the classes that occur.
    assert result["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert report.class_report([0, 2], [0, 2], None)["labels"] == ["0", "1", "2"]
    with pytest.raises(ValueError, match="as many labels"):
        report.class_report([0, 1], [0], None)


EXPORTS = {
    "float32": {"size": 20480, "recipe": "float32", "max_abs_error": 1.5e-7,
                "convert_seconds": 1.2, "keras_accuracy": 0.9533, "tflite_accuracy": 0.9533,
                "latency_ms": 0.125},
    "int8": {"size": 7936, "recipe": "int8", "max_abs_error": 0.0123,
             "keras_accuracy": 0.9533, "tflite_accuracy": 0.94, "tflm_runs": True,
             "tflm_arena_bytes": 6144, "fallback_from": ["int8_full"],
             "warnings": ["The int8 file scores worse than Keras on validation_data"]},
    "streaming_float32": {"skipped": "gru_fcn does not stream"},
    "float16": {"error": "ValueError: the converter said no"},
}


def _table_rows(text):
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ")}


def test_export_table_has_one_row_per_file_with_sizes_in_kb():
    rows = _table_rows(report.export_table(EXPORTS))
    header = rows.pop("File")
    assert header[:3] == ["Size (KB)", "TFLite accuracy", "Keras accuracy"]
    assert set(rows) == set(EXPORTS)
    assert rows["float32"][:6] == ["20.0", "0.9533", "0.9533", "1.5e-07", "0.125", "-"]
    assert rows["int8"][:6] == ["7.8", "0.94", "0.9533", "0.0123", "-", "6.0"]
    assert "fell back from int8_full" in rows["int8"][6]
    assert "**The int8 file scores worse than Keras" in rows["int8"][6]
    assert "scores worse" not in rows["float32"][6]
    assert rows["streaming_float32"][0] == "-"
    assert rows["streaming_float32"][-1] == "skipped: gru_fcn does not stream"
    assert rows["float16"][-1] == "error: ValueError: the converter said no"
    assert report.export_table({}) == "No files were exported."


def test_export_table_names_the_metric_of_regressions_and_of_mixed_entries():
    mse = {"float32": {"size": 1536, "max_abs_error": 0.0, "keras_mse": 0.25,
                       "tflite_mse": 0.5}}
    rows = _table_rows(report.export_table(mse))
    assert rows["File"][1:3] == ["TFLite mse", "Keras mse"]
    assert rows["float32"][:3] == ["1.5", "0.5", "0.25"]
    mixed = dict(mse, int8={"size": 1024, "keras_accuracy": 0.5, "tflite_accuracy": 0.75})
    rows = _table_rows(report.export_table(mixed))
    assert rows["int8"][:3] == ["1.0", "accuracy 0.75", "accuracy 0.5"]


def test_format_export_table_is_aligned_plain_text():
    text = report.format_export_table(EXPORTS)
    lines = text.splitlines()
    assert len(lines) == 1 + len(EXPORTS)
    assert all(line.startswith("    ") and "|" not in line for line in lines)
    by_name = {line.split()[0]: line for line in lines}
    assert by_name["float32"].split()[1:3] == ["20.0", "0.9533"]
    assert by_name["int8"].split()[1] == "7.8"
    assert "The int8 file scores worse" in by_name["int8"] and "**" not in text
    assert by_name["streaming_float32"].endswith("skipped: gru_fcn does not stream")
    # Columns line up: every row's size starts where the header's "KB" does.
    column = lines[0].index("KB")
    assert all(line[column - 1] == " " and line[column] != " " for line in lines)
    assert "no files" in report.format_export_table(None)


def test_report_of_a_classifier(tmp_path):
    y_test = np.array(Y_TRUE)
    dataset = classification_dataset(y_test, Y_PRED)
    digest = hashlib.sha256(b"some data").hexdigest()
    dataset.source = {"path": "/data/toy_TRAIN.ts", "format": "ts", "sha256": digest}
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "curves.png").write_bytes(PNG_MAGIC)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "model_float32.tflite").write_bytes(b"\0" * 20480)
    recipe = {"name": "rules", "build": {"variant": "stacked", "units": 4},
              "train": {"epochs": 1, "fit_on": "train+val"},
              "reasons": ["only 6 training series: train+val", "two steps: one layer"]}
    tune = {"strategy": "random", "trials": 4, "completed": 3, "pruned": 1, "infeasible": 0,
            "cv": "3-fold, 100 epochs per fold", "objective": "val_accuracy",
            "default_cv": {"score": 0.75}, "seconds": 2.5,
            "trained": {"params": 4000, "test": {"accuracy": 0.875}},
            "chosen": {"trial": "2", "is_trained_config": False, "cv_score": 0.7421875,
                       "params": 1000, "hyperparameters": {"units_0": 16},
                       "test": {"accuracy": 0.8125}},
            "verdict": "trial 2: 4.0x fewer parameters, WORSE on test"}
    path = report.write_report(
        tmp_path, dataset, model=argmax_classifier(2, 3),
        test_metrics={"loss": 0.75, "accuracy": 5 / 9},
        history={"loss": [1.0, 0.5, 0.625], "val_loss": [1.0, 0.875, 0.75],
                 "accuracy": [0.5, 0.75, 0.625], "learning_rate": [0.01, 0.01, 0.001]},
        recipe=recipe, exports=EXPORTS, tune=tune, title="Toy run")
    assert path == tmp_path / "report.md"
    text = path.read_text()
    sections = [line for line in text.splitlines() if line.startswith("#")]
    assert sections == ["# Toy run", "## Data", "## Recipe", "## Model", "## Test metrics",
                        "## Per-class accuracy", "## Training curves", "## Exported files",
                        "## Tuning"]
    # Data: source and checksum, split shapes, class counts per split, normalization.
    assert f"`{digest}`" in text and "/data/toy_TRAIN.ts" in text
    assert "| test | (9, 2, 3) | (9,) |" in text
    assert "| cat | 2 | 1 | 3 |" in text  # train 0,0 / val 0 / test 3 cats
    assert "| dog | 1 | 1 | 2 |" in text
    assert "| eel | 3 | 1 | 4 |" in text
    assert "| **total** | 6 | 3 | 9 |" in text
    assert "`mean`: [0.5, 0.5, 0.5]" in text and "`std`: [2, 2, 2]" in text
    # Recipe and why.
    assert "- only 6 training series: train+val" in text and "- two steps: one layer" in text
    assert "Recipe: **rules**" in text
    # Model.
    assert f"**Parameters:** {argmax_classifier(2, 3).count_params()}" in text
    assert "**Variant:** stacked" in text
    # Per-class table: class, support, correct, accuracy, predicted as, precision, F1.
    assert "| cat | 3 | 2 | 0.6667 | 3 | 0.6667 | 0.6667 |" in text
    assert "| dog | 2 | 1 | 0.5 | 3 | 0.3333 | 0.4 |" in text
    assert "| eel | 4 | 2 | 0.5 | 3 | 0.6667 | 0.5714 |" in text
    assert "accuracy 0.5556" in text
    assert "| eel | 1 | 1 | 2 |" in text  # the confusion matrix's last row
    assert "![Confusion matrix](confusion_matrix.png)" in text
    assert_png(tmp_path / "confusion_matrix.png")
    # Curves: linked where training wrote them; best epochs.
    assert "![Training curves](train/curves.png)" in text
    assert "| loss | 3 | 1 | 0.625 | 0.5 (epoch 2) |" in text
    assert "| val_loss | 3 | 1 | 0.75 | 0.75 (epoch 3) |" in text
    assert "| accuracy | 3 | 0.5 | 0.625 | 0.75 (epoch 2) |" in text
    assert "| learning_rate | 3 | 0.01 | 0.001 | - |" in text
    # Exports: the file that exists is linked; skip and error reasons.
    assert "| [float32](export/model_float32.tflite) | 20.0 | 0.9533 |" in text
    assert "| int8 | 7.8 | 0.94 | 0.9533 |" in text
    assert "skipped: gru_fcn does not stream" in text
    assert "error: ValueError: the converter said no" in text
    # Tuning.
    assert "**Verdict:** trial 2: 4.0x fewer parameters, WORSE on test." in text
    assert "random, 4 trials (3 completed, 1 pruned, 0 over the device budget)" in text
    assert "| trained model (the default configuration) | 0.75 | 4000 | accuracy 0.875 |" in text
    assert "| chosen (trial 2) | 0.7422 | 1000 | accuracy 0.8125 |" in text
    assert "| units_0 | 16 |" in text
    assert not list(tmp_path.glob(".*tmp"))


def test_binary_sigmoid_classifier_is_thresholded_at_one_half(tmp_path):
    inputs = keras.Input((3, 1))
    x = keras.layers.GlobalAveragePooling1D()(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.array([[20.0]], np.float32), np.array([-10.0], np.float32)])
    # Mean input 0.4 → sigmoid(-2) < 0.5 → class 0; 0.6 → class 1.
    means = np.array([0.4, 0.6, 0.6, 0.4, 0.6], np.float32)
    x_test = np.repeat(means[:, None, None], 3, axis=1)
    y_test = np.array([[0], [1], [0], [1], [1]], np.float32)  # predicted 0, 1, 1, 0, 1
    dataset = Dataset(name="binary", task="classification", num_outputs=1,
                      input_shape=(3, 1), x_train=x_test, y_train=y_test, x_val=x_test[:0],
                      y_val=y_test[:0], x_test=x_test, y_test=y_test,
                      label_names=["no", "yes"])
    text = report.write_report(tmp_path, dataset, model=model, test_metrics={}).read_text()
    assert "| no | 2 | 1 | 0.5 | 2 | 0.5 | 0.5 |" in text
    assert "| yes | 3 | 2 | 0.6667 | 3 | 0.6667 | 0.6667 |" in text
    assert "| no | 1 | 1 |" in text and "| yes | 1 | 2 |" in text  # confusion rows
    assert "No test split" in text  # no test metrics given
    assert "No export step in this run." in text and "No tuning step in this run." in text
    assert "Source:** embedded" in text


def constant_forecaster(time, horizon, value):
    inputs = keras.Input((time, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(horizon)(x)
    model = keras.Model(inputs, outputs, name="constant")
    model.layers[-1].set_weights([np.zeros((time, horizon), np.float32),
                                  np.full(horizon, value, np.float32)])
    return model


def forecasting_dataset(season=4):
    rng = np.random.default_rng(0)
    t = np.arange(60, dtype=np.float32)
    series = np.sin(2 * np.pi * t / 4) + 0.1 * rng.normal(size=60).astype(np.float32)
    window, horizon = 8, 3
    starts = np.arange(60 - window - horizon + 1)
    x = np.stack([series[s:s + window] for s in starts])[..., None].astype(np.float32)
    y = np.stack([series[s + window:s + window + horizon] for s in starts]).astype(np.float32)
    return Dataset(name="waves", task="regression", num_outputs=horizon,
                   input_shape=(window, 1), x_train=x[:30], y_train=y[:30], x_val=x[30:40],
                   y_val=y[30:40], x_test=x[40:], y_test=y[40:], season=season,
                   normalization={"mean": [0.0], "std": [1.0]})


def test_report_of_a_forecaster_has_the_plot_and_the_baselines(tmp_path):
    dataset = forecasting_dataset()
    baselines = dataset.forecast_baselines()
    assert set(baselines) == {"seasonal naive", "last value"}
    model = constant_forecaster(8, 3, 0.25)
    expected_mse = float(np.mean((0.25 - dataset.y_test) ** 2))
    text = report.write_report(
        tmp_path, dataset, model=model, test_metrics={"loss": expected_mse},
        exports={"float32": {"size": 2048, "keras_mse": expected_mse,
                             "tflite_mse": expected_mse, "max_abs_error": 0.0}},
    ).read_text()
    assert "## Forecast" in text and "## Per-class accuracy" not in text
    assert f"| this model | {expected_mse:.4g} | - |" in text
    assert f"| seasonal naive | {baselines['seasonal naive']:.4g} | " in text
    assert f"| last value | {baselines['last value']:.4g} | " in text
    # A sine of period 4: repeating the last season beats a constant, the constant does
    # not beat it.
    assert baselines["seasonal naive"] < expected_mse
    assert f"| seasonal naive | {baselines['seasonal naive']:.4g} | **no** |" in text
    assert "**The model does not beat seasonal naive" in text  # said plainly
    train_mean = np.concatenate([dataset.y_train, dataset.y_val]).mean(axis=0)
    mean_mse = float(np.mean((train_mean - dataset.y_test) ** 2))
    assert f"| training mean | {mean_mse:.4g} | " in text  # every regression gets it
    assert "| float32 | 2.0 |" in text and "TFLite mse" in text
    assert "![Forecast](forecast.png)" in text
    assert "Classes (" not in text
    assert_png(tmp_path / "forecast.png")
    assert not (tmp_path / "confusion_matrix.png").exists()


def test_fit_check_compares_with_the_most_frequent_training_class(tmp_path):
    # Training + validation labels: three 0s, two 1s, four 2s -> always "2" scores 4/9.
    model = argmax_classifier(2, 3)
    good = report.fit_check(classification_dataset(Y_TRUE, Y_PRED), model)
    assert good["baselines"] == {"most frequent class": pytest.approx(4 / 9)}
    assert good["model"] == pytest.approx(5 / 9) and not good["failed_fit"]
    worse = [0, 1, 1, 0, 0, 2, 2, 0, 1]  # 3 of 9 right: below the majority class
    bad = report.fit_check(classification_dataset(Y_TRUE, worse), model)
    assert bad["model"] == pytest.approx(3 / 9)
    assert bad["failed_fit"] and bad["not_beaten"] == ["most frequent class"]
    text = report.write_report(tmp_path, classification_dataset(Y_TRUE, worse), model=model,
                               test_metrics={"accuracy": 3 / 9}).read_text()
    assert "most frequent class scores 0.4444 on test. **The model does not beat it**" in text


def test_fit_check_of_a_regression_counts_the_training_mean():
    x, y = zoo.adding_problem(20, 6, seed=0)
    dataset = Dataset(name="adding", task="regression", num_outputs=1, input_shape=(6, 2),
                      x_train=x, y_train=y, x_val=x[:0], y_val=y[:0], x_test=x, y_test=y)
    mean = np.full_like(y, y.mean())
    check = report.fit_check(dataset, None, mean)  # predicting the mean: not a fit
    assert check["metric"] == "mse" and check["failed_fit"]
    assert check["model"] == pytest.approx(check["baselines"]["training mean"])
    assert not report.fit_check(dataset, None, y)["failed_fit"]  # a perfect forecast


def test_single_output_regression_has_no_forecast_plot(tmp_path):
    x, y = zoo.adding_problem(20, 6, seed=0)
    dataset = Dataset(name="adding", task="regression", num_outputs=1, input_shape=(6, 2),
                      x_train=x, y_train=y, x_val=x[:0], y_val=y[:0], x_test=x, y_test=y)
    model = zoo.build_gru("stacked", input_shape=(6, 2), num_outputs=1, task="regression",
                          units=4, num_layers=1)
    mse = float(np.mean((model.predict(x, verbose=0) - y) ** 2))
    text = report.write_report(tmp_path, dataset, model=model, test_metrics={}).read_text()
    assert "## Predictions" in text and f"Test MSE {mse:.4g}" in text
    assert "seasonal naive" not in text and "forecast.png" not in text  # not a forecast
    train_mean_mse = float(np.mean((y.mean() - y) ** 2))
    beats = "yes" if mse < train_mean_mse else "**no**"
    assert f"| training mean | {train_mean_mse:.4g} | {beats} |" in text
    assert not (tmp_path / "forecast.png").exists()


def test_plot_forecast_and_confusion_matrix_write_pngs(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 6, 2)).astype(np.float32)
    y = np.zeros((10, 4), np.float32)
    report.plot_forecast(x, y, y + 1, tmp_path / "f.png", num_series=5)
    assert_png(tmp_path / "f.png")
    report.plot_confusion_matrix(CONFUSION, ["a", "b", "c"], tmp_path / "c.png")
    assert_png(tmp_path / "c.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "f.png"]


def test_sequence_labeling_reports_per_step_accuracy_without_padding(tmp_path):
    inputs = keras.Input((4, 2))
    outputs = keras.layers.Dense(2, activation="softmax")(inputs)  # per step: argmax
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([10 * np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
    # Predicted per step: series 0 → 0 1 0 (pad); series 1 → 1 1 (pad) (pad).
    x = np.full((2, 4, 2), -1.0, np.float32)
    x[0, :3] = [[1, 0], [0, 1], [1, 0]]
    x[1, :2] = [[0, 1], [0, 1]]
    y = np.array([[0, 1, 1, 1], [1, 0, 0, 0]], np.int32)  # 3 right of 5 real steps
    dataset = Dataset(name="tags", task="sequence_labeling", num_outputs=2,
                      input_shape=(4, 2), x_train=x, y_train=y, x_val=x[:0], y_val=y[:0],
                      x_test=x, y_test=y, label_names=["O", "B"])
    dataset.mask_value = -1.0
    text = report.write_report(tmp_path, dataset, model=model, test_metrics={}).read_text()
    assert "Accuracy over 5 test steps (padding excluded): 0.6" in text
    assert "## Per-class accuracy" not in text
    assert "**Padding (mask value):** -1" in text
    assert "Classes (steps per split):" in text
    assert "| O | 2 | 0 | 2 |" in text and "| B | 3 | 0 | 3 |" in text  # padding not counted


def test_a_tiny_gru_and_free_form_tune_summary(tmp_path):
    dataset = classification_dataset(Y_TRUE, Y_PRED)
    model = zoo.build_gru("stacked", input_shape=(2, 3), num_outputs=3, units=4,
                          num_layers=1)
    predicted = model.predict(dataset.x_test, verbose=0).argmax(-1)
    expected = report.class_report(dataset.y_test, predicted, dataset.label_names)
    text = report.write_report(tmp_path, dataset, model=model, test_metrics={},
                               tune={"note": "grid", "points": [1, 2]}).read_text()
    assert f"accuracy {expected['accuracy']:.4g}," in text
    assert '"note": "grid"' in text  # unknown summaries are shown as JSON
    assert "**Name:** stacked_gru" in text


def test_no_partial_report_when_a_plot_fails(tmp_path, monkeypatch):
    dataset = classification_dataset(Y_TRUE, Y_PRED)
    model = argmax_classifier(2, 3)

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report, "plot_confusion_matrix", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        report.write_report(tmp_path, dataset, model=model, test_metrics={})
    assert list(tmp_path.iterdir()) == []
    # An earlier report stays whole.
    (tmp_path / "report.md").write_text("# earlier report\n")
    with pytest.raises(RuntimeError, match="plot failed"):
        report.write_report(tmp_path, dataset, model=model, test_metrics={})
    assert (tmp_path / "report.md").read_text() == "# earlier report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_no_partial_report_when_the_write_fails(tmp_path, monkeypatch):
    dataset = forecasting_dataset()
    model = constant_forecaster(8, 3, 0.0)

    def broken_replace(src, dst):
        if str(dst).endswith("report.md"):
            raise OSError("disk full")
        return original(src, dst)

    original = report.os.replace
    monkeypatch.setattr(report.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(tmp_path, dataset, model=model, test_metrics={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forecast.png"]

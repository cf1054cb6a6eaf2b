"""`to_tflite`: one call from a trained Keras model to a verified `.tflite` file.

What it does, in order:

1. Checks every argument (and, for the streaming form, that the model can stream)
   before any work; bad input raises `ValueError`/`TypeError` naming the argument,
   the value received and what is allowed. `form`, its older name `recipe` and
   `streaming=True` resolve to one `Form` (`_resolve_form`).
2. Picks the forms to try (`export.recipes` builds them; older code calls them
   recipes): for models with GRU layers and a fixed length, `"chunked"` (the GRU
   layers as a loop over chunks of steps, fully unrolled for short float sequences;
   int8 calibrated by `export.calibration`), then the
   others as fallbacks; otherwise `"loop"` then `"unrolled"` (int8 loops are calibrated
   by `export.calibration` too: the converter's calibrator crashes on any loop,
   docs/tflite-facts.md, F5; int16x8 only `"unrolled"`); `"step"` for streaming. Every
   form builds the inference graph with recurrent dropout 0 (`export.recipes`), and
   int16x8 handles biases shared by unrolled time steps (`export.quantization`); what
   was repaired is listed in `ExportResult.notes`.
3. Runs each conversion in a child process (`export._worker`), forked from a server
   process that has TensorFlow imported already (started at the first call; ~5 s of
   CPU saved per call); a crash or an error moves on to the next form when
   `fallback=True`, and every attempt is reported.
4. Audits the ops (Flex and custom ops refused unless allowed), runs the file with
   the standalone LiteRT interpreter on sample inputs and compares with Keras.
5. For streaming files, runs them in TFLite for Microcontrollers' interpreter too.
6. Moves the verified file into place atomically: the destination is either the old
   file or the new verified one, never a partial or unverified file.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from export.converter import CALIBRATED, INT8_WEIGHTS, IO_TYPES, QUANTIZATIONS, Form
from export.errors import (
    ConversionCrashError,
    ConversionError,
    ExportError,
    UnsupportedOpsError,
    VerificationError,
)
from export.runtime import trust
from zoo.checks import fail, is_bool, is_int, is_positive_number
from zoo.fileio import new_file_mode
from zoo.quiet import strip_startup_noise

# The values of `to_tflite(form=...)` (and of its older name, `recipe=`).
RECIPE_CHOICES = tuple(form.value for form in Form)
# Max abs error allowed against Keras, relative to max(1, max |Keras output|). float32
# must match (1e-5). For quantized modes the default is a sanity bound that
# catches a broken file (an error as large as the output itself); the measured error
# and, with `validation_data`, the accuracy change are reported for the user to judge,
# and `tolerance=` makes the check as strict as an application needs.
DEFAULT_TOLERANCES = {
    None: 1e-5,
    "float16": 1e-2,
    "dynamic": 0.1,
    "int8": 1.0,
    "int16x8": 0.25,
}
VERIFY_SAMPLES = 8
# Keras decisions closer than this (gap between the top two probabilities) are near-ties
# that int8 noise may flip; the collapse check ignores them (5 int8 steps of a softmax).
COLLAPSE_MARGIN = 0.02
REGRESSION_TASKS = ("regression", "sequence_regression")
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class ExportResult:
    """What `to_tflite` produced and measured.

    Attributes:
        path: where the verified file is.
        size: its size in bytes.
        recipe: the form that produced it (`"loop"`, `"unrolled"`, `"chunked"` or
            `"step"`; "recipe" is the older name of the form).
        quantization, io_type, streaming: as exported.
        ops: sorted builtin op names; `flex_ops`, `custom_ops` (empty unless allowed).
        max_abs_error, mean_abs_error: TFLite vs Keras on the verification inputs
            (for streaming files: frame by frame vs the full-sequence Keras output).
        tolerance: the bound `max_abs_error` was checked against.
        verification: where the verification inputs came from.
        evaluation: with `validation_data`: Keras and TFLite metrics and their change.
        attempts: `[{"recipe", "outcome", "detail"}]`, one per recipe tried.
        fallback_used: whether a recipe other than the first one tried was used.
        convert_seconds: converter time of the used recipe (in the child process);
        total_seconds: the whole call.
        tflm: streaming files: `{"runs", "arena_bytes", "max_abs_error", ...}`.
        c_array_path: the C source file, when asked for.
        metadata: the metadata embedded in the file.
        warnings: what the caller was warned about.
        notes: what the conversion repaired on the way (e.g. int16x8 biases shared
            by unrolled time steps, see `export.quantization`); empty when nothing.
        form: the form that produced it, as a `Form` (equal to `recipe`).
    """

    path: str
    size: int
    recipe: str
    quantization: str | None
    io_type: str
    streaming: bool
    ops: list
    flex_ops: list
    custom_ops: list
    max_abs_error: float
    mean_abs_error: float
    tolerance: float
    verification: str
    evaluation: dict | None
    attempts: list
    fallback_used: bool
    convert_seconds: float
    total_seconds: float
    tflm: dict | None
    c_array_path: str | None
    metadata: dict
    warnings: list
    notes: list = dataclasses.field(default_factory=list)
    # Last and with a default, so that the older fields keep their places.
    form: Form | None = None

    def __post_init__(self):
        if self.form is None:
            self.form = Form(self.recipe)

    def to_dict(self):
        return dataclasses.asdict(self)

    def __str__(self):
        mode = self.quantization or "float32"
        text = (
            f"{self.path}: {self.size} bytes, {mode}{' streaming' if self.streaming else ''}, "
            f"form {self.recipe!r}, max |tflite - keras| = {self.max_abs_error:.3g} "
            f"(tolerance {self.tolerance:.3g}), {len(self.ops)} builtin ops"
        )
        if self.tflm is not None:
            text += f", TFLM: {'runs' if self.tflm.get('runs') else 'does not run'}"
        return text


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return repr(value)


def _as_array(argument, data, input_shape, input_dtype, *, limit):
    """Turns arrays, lists or a `tf.data.Dataset` of inputs into one checked array."""
    if data is None:
        return None
    if isinstance(data, tuple) and len(data) == 2 and not np.isscalar(data[0]):
        data = data[0]  # (x, y)
    if type(data).__module__.startswith("tensorflow") and hasattr(data, "as_numpy_iterator"):
        samples = []
        for element in data.as_numpy_iterator():
            if isinstance(element, tuple):
                element = element[0]
            element = np.asarray(element)
            if element.ndim == len(input_shape) + 1:
                samples.extend(list(element))
            else:
                samples.append(element)
            if len(samples) >= limit:
                break
        if not samples:
            fail(argument, data, "a non-empty dataset of model inputs")
        try:
            array = np.stack(samples[:limit])
        except ValueError:
            fail(argument, data, f"a dataset of inputs of shape {input_shape} (sequences of "
                  "different lengths cannot be stacked)")
    else:
        try:
            array = np.asarray(data)
        except Exception:  # noqa: BLE001
            fail(argument, type(data).__name__, "an array, a list of arrays or a tf.data.Dataset")
        if array.dtype == object:
            fail(argument, f"{type(data).__name__} of ragged or non-numeric values",
                  "an array, a list of arrays or a tf.data.Dataset")
    expected = "(samples,) + " + str(tuple(input_shape)).replace("None", "any")
    if array.ndim != len(input_shape) + 1 or len(array) == 0:
        fail(argument, _describe(array), f"an array of shape {expected}")
    for axis, size in enumerate(input_shape):
        if size is not None and array.shape[axis + 1] != size:
            fail(argument, _describe(array), f"an array of shape {expected}")
    if input_dtype.startswith("int"):
        if not np.issubdtype(array.dtype, np.integer):
            fail(argument, _describe(array), "integer token ids for this token-input model")
        return array[:limit].astype(np.int32)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        fail(argument, _describe(array), "numeric values")
    array = array[:limit].astype(np.float32)
    if not np.all(np.isfinite(array)):
        fail(argument, f"an array with {int(np.isnan(array).sum())} NaN and "
              f"{int(np.isinf(array).sum())} inf values", "finite values")
    return array


def _load_keras_file(path):
    """Loads a `.keras` file, or one `ValueError` naming it and saying what is wrong.

    Keras reports an empty, truncated or foreign file as "File not found" (for a file
    that exists), a `KeyError` or a JSON error; a `.keras` file is a zip archive
    holding `config.json` and the weights.
    """
    import zipfile

    from export import recipes

    expected = "a .keras file saved by Keras 3 (`model.save('model.keras')`)"
    if os.path.getsize(path) == 0:
        fail("model", path, f"{expected}; the file is empty")
    if not zipfile.is_zipfile(path):
        fail("model", path, f"{expected}; this file is not a zip archive (truncated, or "
              "another format: a legacy .h5 model must be loaded and saved again as .keras)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as error:
        fail("model", path, f"{expected}; the zip archive is damaged ({error})")
    missing = sorted({"config.json", "metadata.json"} - names)
    if missing:
        fail("model", path, f"{expected}; the archive lacks {missing} (it holds "
              f"{sorted(names)[:5]})")
    try:
        return recipes.load_model(path)
    except Exception as error:  # noqa: BLE001 (any failure of Keras's loader, one line)
        message = " ".join(str(error).split())[:300]
        fail("model", path, f"{expected}; Keras cannot load it ({type(error).__name__}: "
              f"{message})")


def _check_against_model(keras_model, task, input_shape, input_dtype, labels, normalization,
                         int8_float_layers="auto"):
    """`labels` and `normalization` must describe this model before they go into the
    file's metadata, where a device would trust them; `int8_float_layers` must name its
    layers."""
    if int8_float_layers != "auto":
        known = [layer.name for layer in keras_model.layers]
        unknown = [name for name in int8_float_layers if name not in known]
        if unknown:
            fail("int8_float_layers", int8_float_layers,
                 f"names of the model's layers ({', '.join(known)}); not layers: {unknown}")
    outputs = int(keras_model.outputs[0].shape[-1])
    if labels is not None:
        if task in ("classification", "sequence_labeling"):
            classes = 2 if outputs == 1 else outputs
            if len(labels) != classes:
                fail("labels", labels, f"a list of {classes} class names: the model has "
                      f"{outputs} output{'s' if outputs > 1 else ''} ({classes} classes)")
        elif len(labels) != outputs:
            fail("labels", labels, f"None or a list of {outputs} output names: the model "
                  f"is a {task} model with {outputs} output{'s' if outputs > 1 else ''}")
    if normalization is not None:
        if input_dtype.startswith("int"):
            fail("normalization", normalization, "None: the model takes token ids, which "
                  "are not normalized")
        features = int(input_shape[-1])
        for key in ("mean", "std"):
            try:
                values = np.asarray(normalization[key], dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                fail("normalization", normalization, f"a dict whose {key!r} is a number or "
                      f"a list of {features} numbers (one per input feature)")
            if values.size not in (1, features):
                fail("normalization", normalization, f"a dict whose {key!r} holds 1 or "
                      f"{features} values (the model has {features} input features); "
                      f"{key!r} holds {values.size}")
            if not np.all(np.isfinite(values)):
                fail("normalization", normalization, f"finite {key!r} values")
            if key == "std" and not np.all(values > 0):
                fail("normalization", normalization, "a dict whose 'std' values are all "
                      "> 0 (inputs are divided by them)")


def _check_validation_labels(task, keras_model, x, y):
    """The labels of `validation_data` against the model's task and outputs."""
    output_shape = tuple(int(v) if v is not None else x.shape[1]
                         for v in keras_model.outputs[0].shape[1:])
    outputs = output_shape[-1]
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        fail("validation_data", f"y of dtype {y.dtype}", "(x, y) with numeric y")
    if task in ("classification", "sequence_labeling"):
        shape = (len(x),) + output_shape[:-1]
        if y.shape not in (shape, shape + (1,)):
            fail("validation_data", f"y of shape {y.shape}", f"(x, y) with y of class "
                  f"indices of shape {shape} (one-hot labels: take their argmax)")
        classes = 2 if outputs == 1 else outputs
        allowed = (f"(x, y) with y holding class indices in [0, {classes}) (the model has "
                   f"{classes} classes)")
        if np.issubdtype(y.dtype, np.floating):
            odd = y[~np.isfinite(y) | (np.mod(y, 1) != 0)]
            if odd.size:
                fail("validation_data", f"y with the label {odd.reshape(-1)[0].item()!r}",
                      allowed)
        if y.size and (y.min() < 0 or y.max() >= classes):
            fail("validation_data", f"y with labels from {y.min().item()!r} to "
                  f"{y.max().item()!r}", allowed)
        return
    if int(np.prod(y.shape[1:], dtype=np.int64)) != int(np.prod(output_shape)):
        fail("validation_data", f"y of shape {y.shape}", f"(x, y) with y of shape "
              f"{(len(x),) + output_shape} (the model's outputs)")
    if not np.all(np.isfinite(y)):
        fail("validation_data", "y with NaN or inf values", "(x, y) with finite targets")


def _vocab_size(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Embedding):
            return layer.input_dim
    return 2


def _layer_summary(model):
    summary = []
    for layer in model.layers:
        config = layer.get_config()
        entry = {"class_name": type(layer).__name__, "name": layer.name}
        for key in ("units", "return_sequences", "reset_after", "activation", "filters",
                    "kernel_size", "num_heads", "attention_units", "input_dim", "output_dim",
                    "mask_value", "rate", "pool_size"):
            if key in config:
                entry[key] = config[key]
        if "layer" in config and isinstance(config["layer"], dict):
            entry["wrapped"] = config["layer"].get("class_name")
            entry["units"] = config["layer"].get("config", {}).get("units")
        summary.append(entry)
    return summary


def _infer_task(model):
    """`(task, per_step)`: classification when the output layer is softmax/sigmoid."""
    output_layer = model.layers[-1]
    activation = getattr(output_layer, "activation", None)
    name = getattr(activation, "__name__", str(activation))
    per_step = len(model.outputs[0].shape) == 3
    if name in ("softmax", "sigmoid"):
        return ("sequence_labeling" if per_step else "classification"), per_step
    return ("sequence_regression" if per_step else "regression"), per_step


def _evaluate(task, keras_outputs, tflite_outputs, y):
    y = np.asarray(y)
    if task in ("classification", "sequence_labeling"):
        def predict(outputs):
            if outputs.shape[-1] == 1:
                return (outputs[..., 0] > 0.5).astype(np.int64)
            return np.argmax(outputs, axis=-1)

        labels = y.reshape(predict(keras_outputs).shape).astype(np.int64)
        keras_accuracy = float(np.mean(predict(keras_outputs) == labels))
        tflite_accuracy = float(np.mean(predict(tflite_outputs) == labels))
        return {
            "metric": "accuracy",
            "keras": keras_accuracy,
            "tflite": tflite_accuracy,
            "change": tflite_accuracy - keras_accuracy,
            "samples": int(len(y)),
        }
    y = y.reshape(keras_outputs.shape).astype(np.float32)
    keras_mse = float(np.mean((keras_outputs - y) ** 2))
    tflite_mse = float(np.mean((tflite_outputs - y) ** 2))
    return {
        "metric": "mse",
        "keras": keras_mse,
        "tflite": tflite_mse,
        "change": tflite_mse - keras_mse,
        "samples": int(len(y)),
    }


# What else to try when a quantized file differs too much from Keras (refused by
# verification) or scores worse on `validation_data` (`_metric_loss`): the two integer
# modes keep different things at higher precision (docs/tflite-facts.md F19, F20), and
# dynamic range keeps every activation float (a cnn_gru, GRU(32) x 2, trained on GunPoint
# for this note: int8 and int16x8 files both 2.0 points below Keras on the test split,
# the dynamic-range file at Keras's accuracy, 38 KB against int8's 32 KB).
_QUANTIZED_ALTERNATIVE = {
    "int8": " Or try quantization='int16x8' (16-bit activations), `int8_float_layers` to "
            "keep named layers in float, or quantization='dynamic' (int8 weights, float "
            "activations: a file nearly as small, but not integer-only).",
    "int16x8": " Or try quantization='int8': it keeps a window normalization and the first "
               "convolution over the raw input in float, which 16x8 files cannot (a window "
               "statistic whose range spans orders of magnitude does not fit one int16 "
               "scale).",
}


# A file that scores this much worse than Keras on `validation_data` is written (it
# passed verification) but `to_tflite` warns: the issue's target for int8 files
# (accuracy within 0.5 points, MSE within 1.05x). On public Covid3Month (a GRU(64)
# forecaster, outputs 0.02-0.12) the int8 file's MSE is 1.5x Keras's, with the GRU or the
# Dense head named in `int8_float_layers` too (the quantizer keeps the data-moving ops
# inside the recurrence int8); int16x8 keeps it (1.00x). BENCHMARKS.md, "int8 on public
# data".
ACCURACY_LOSS_POINTS = 0.005
MSE_LOSS_RATIO = 1.05


def _metric_loss(evaluation, quantization):
    """A warning when the file's metric is worse than Keras's beyond the limits above."""
    if not evaluation:
        return None
    keras_value, file_value = evaluation["keras"], evaluation["tflite"]
    if evaluation["metric"] == "accuracy":
        if keras_value - file_value <= ACCURACY_LOSS_POINTS + 1e-9:
            return None
        said = (f"accuracy {file_value:.4f} against Keras's {keras_value:.4f} "
                f"({100 * (file_value - keras_value):+.1f} points)")
    else:
        if file_value <= MSE_LOSS_RATIO * keras_value + 1e-12:
            return None
        said = (f"MSE {file_value:.4g} against Keras's {keras_value:.4g} "
                f"({file_value / max(keras_value, 1e-30):.2f}x)")
    return (f"The {quantization or 'float32'} file scores worse than Keras on validation_data "
            f"({evaluation['samples']} samples): {said}."
            + _QUANTIZED_ALTERNATIVE.get(quantization, ""))


def _run_worker(command, job, workdir, timeout):
    """Runs `export._worker` in a child process; returns `(result or None, detail)`."""
    job_path = os.path.join(workdir, f"{command}_job.json")
    job["result_path"] = os.path.join(workdir, f"{command}_result.json")
    if os.path.exists(job["result_path"]):
        os.remove(job["result_path"])
    with open(job_path, "w") as handle:
        json.dump(job, handle)
    env = dict(os.environ)
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    log_path = os.path.join(workdir, f"{command}.log")
    from export import _worker

    returncode = False
    if _worker.forkserver_available():
        # Forked from a server process with TensorFlow imported (`_worker.ForkServer`).
        try:
            returncode = _worker.ForkServer.get(env).run(command, job_path, log_path, timeout)
        except (OSError, RuntimeError, ValueError):
            returncode = False  # the server died or could not start: a plain child
        if returncode is None:
            return None, f"timed out after {timeout} s"
    if returncode is False:
        with open(log_path, "wb") as log:
            try:
                completed = subprocess.run(
                    [sys.executable, "-m", "export._worker", command, job_path],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    timeout=timeout,
                )
                returncode = completed.returncode
            except subprocess.TimeoutExpired:
                return None, f"timed out after {timeout} s"
    if os.path.exists(job["result_path"]):
        with open(job["result_path"]) as handle:
            return json.load(handle), None
    with open(log_path, "rb") as handle:
        # The last lines the child printed, without TensorFlow's start-up logging.
        tail = strip_startup_noise(handle.read().decode("utf-8", "replace"))[-1500:]
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return None, f"the child process was killed by {name}" + (
            f"; last output:\n{tail}" if tail.strip() else " (no other output)")
    return None, f"the child process exited with code {returncode}" + (
        f"; last output:\n{tail}" if tail.strip() else " (no other output)")


def _recipes_to_try(recipe, quantization, streaming, fallback, *, chunkable=False,
                    micro=False):
    """Recipes to try in order. `chunkable`: the model has GRU chains that the `"chunked"`
    recipe computes and a fixed length (`export.chunked.chunk_plan`). `micro`: the file
    must run in TFLite Micro, which runs Keras's `loop` files wrong (F9)."""
    if streaming:
        return ["step"]
    # int16x8 goes through TFLite's older quantizer, which refuses `WHILE`. int8 of a
    # loop (chunked, or Keras's own for masked, LSTM and SimpleRNN models) is
    # calibrated by `export.calibration`: the converter's own calibrator crashes on any
    # loop (docs/tflite-facts.md, F5). An unrolled int8 file repeats its weights'
    # quantization parameters at every step: 3x the float32 loop file for a masked
    # GRU on JapaneseVowels (T=29), where the loop is 0.6x.
    loops_ok = quantization != "int16x8"
    chunked_ok = chunkable and loops_ok
    keras_loop_ok = loops_ok and not micro
    if recipe == "auto":
        plan = (["chunked"] if chunked_ok else []) + (["loop"] if keras_loop_ok else []) \
            + ["unrolled"]
        return plan if fallback else plan[:1]
    if not fallback:
        return [recipe]
    others = ("loop", "unrolled") if keras_loop_ok else ("unrolled",)
    return [recipe] + [other for other in others if other != recipe]


def _check_calibration_data(calibration):
    """Refuses calibration data that cannot measure activation ranges."""
    if calibration is None:
        return
    values = np.asarray(calibration)
    if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
        fail("representative_data", f"an array with {int(np.sum(np.isnan(values)))} NaN and "
              f"{int(np.sum(np.isinf(values)))} inf values", "finite values")
    low, high = values.min(), values.max()
    if low == high:
        found = "all zeros" if low == 0 else f"the constant {low.item()!r} everywhere"
        fail("representative_data", f"an array of shape {values.shape} holding {found}",
              "inputs that vary like real data (calibration measures the range of every "
              "activation on them; constant inputs give every range zero width and the "
              "quantized file a constant output)")
    if len(values) > 1 and np.all(values == values[:1]):
        fail("representative_data", f"{len(values)} identical samples",
              "different samples, like real data (calibration on copies of one sample "
              "measures the activation ranges of that sample only)")


def _spread(count, size):
    """`count` indices spread evenly over `range(size)` (sorted, distinct)."""
    if count >= size:
        return np.arange(size)
    return np.unique(np.linspace(0, size - 1, count).round().astype(int))


def _collapse(task, keras_outputs, tflite_outputs, margin=COLLAPSE_MARGIN):
    """A description of how the quantized outputs collapsed, or `None`.

    Classification: the file predicts one class for every input while Keras predicts
    several, counting only the inputs Keras decides by more than `margin` (the gap
    between its top two outputs): a near-tie may flip under quantization noise, and an
    untrained or tiny model whose classes are all near-ties has nothing to lose.
    Regression: the file's outputs barely vary (spread under 1% of Keras's).
    """
    if len(keras_outputs) < 2:
        return None
    if task in ("classification", "sequence_labeling"):
        if keras_outputs.shape[-1] == 1:
            decided = np.abs(keras_outputs[..., 0] - 0.5).reshape(-1) > margin
            keras_classes = (keras_outputs[..., 0] > 0.5).reshape(-1)
            tflite_classes = (tflite_outputs[..., 0] > 0.5).reshape(-1)
        else:
            top2 = np.sort(keras_outputs, axis=-1)[..., -2:]
            decided = (top2[..., 1] - top2[..., 0]).reshape(-1) > margin
            keras_classes = np.argmax(keras_outputs, axis=-1).reshape(-1)
            tflite_classes = np.argmax(tflite_outputs, axis=-1).reshape(-1)
        keras_classes = keras_classes[decided]
        if len(np.unique(keras_classes)) > 1 and len(np.unique(tflite_classes)) == 1:
            return (f"it predicts class {tflite_classes[0]} for all {len(keras_outputs)} "
                    f"inputs, where Keras predicts {len(np.unique(keras_classes))} classes")
        return None
    keras_spread = float(np.std(keras_outputs, axis=0).max())
    tflite_spread = float(np.std(tflite_outputs, axis=0).max())
    if keras_spread > 0 and tflite_spread < 0.01 * keras_spread:
        return (f"its outputs barely vary over {len(keras_outputs)} inputs (spread "
                f"{tflite_spread:.3g}, Keras {keras_spread:.3g})")
    return None


# What `write_c_array` writes first in both of its files: an existing `.cc`/`.h` that
# starts with it was generated by gru-zoo and may be replaced; any other is the user's.
C_ARRAY_MARKER = "// Generated by gru-zoo"
# C and C++ keywords (C++20, C23 and the alternative operator names): not array names.
_C_KEYWORDS = frozenset("""
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t
    char16_t char32_t class compl concept const consteval constexpr constinit const_cast
    continue co_await co_return co_yield decltype default delete do double dynamic_cast
    else enum explicit export extern false float for friend goto if inline int long
    mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected
    public register reinterpret_cast requires restrict return short signed sizeof static
    static_assert static_cast struct switch template this thread_local throw true try
    typedef typeid typename typeof typeof_unqual union unsigned using virtual void
    volatile wchar_t while xor xor_eq _Alignas _Alignof _Atomic _BitInt _Bool _Complex
    _Generic _Imaginary _Noreturn _Static_assert _Thread_local
""".split())


def _c_array_path_arg(argument, value, allowed, bytes_hint=""):
    """`value` (str or os.PathLike) as a str path; bytes and other types raise a
    `TypeError` naming `argument` with a short repr of the value."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str):
            return path
    if isinstance(value, (bytes, bytearray, os.PathLike)):
        allowed += f" (bytes are not a path{bytes_hint})"
    from export.metadata import _short_repr

    raise TypeError(f"`{argument}` must be {allowed}. Received: {argument}="
                    f"{_short_repr(value)}")


def _same_file(a, b):
    """Whether two paths name one file (the same path, a link, another spelling)."""
    if os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b)):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_generated_c_file(path):
    """Whether `path` is a C source or header that gru-zoo wrote (`write_c_array`: its
    first line starts with `C_ARRAY_MARKER`) or an empty file: one it may replace."""
    try:
        with open(path, "rb") as handle:
            head = handle.readline(200)
    except OSError:
        return False
    return not head or head.startswith(C_ARRAY_MARKER.encode())


_GIVEN = object()  # `c_array_paths`: report `c_path` itself


def c_array_paths(tflite_path, c_path=None, *, argument="c_path", received=_GIVEN,
                  source="tflite_path"):
    """`(c_path, header)`: where `write_c_array(tflite_path, c_path)` writes, checked.

    Raises (naming `argument`) unless `c_path` (default: `tflite_path` with `.cc`)
    ends in `.cc`, `.cpp` or `.cxx`, neither it nor its header (`.h` beside it) is
    `tflite_path`, its folder exists or can be made and written, and neither is a
    directory or an existing file that gru-zoo did not generate (a hand-written file
    is never overwritten; an empty file, or one `write_c_array` wrote, is replaced).
    Only checks: writes nothing, and `tflite_path` need not exist yet (a caller that
    writes the C array after the `.tflite` file can check both before any work).
    `received` and `source`: the value reported as received and the name of the
    `.tflite` path's argument, for a caller whose arguments differ (`to_tflite`:
    `c_array=True`, `path`).
    """
    given = c_path if received is _GIVEN else received
    default = c_path is None
    if c_path is None:
        c_path = os.path.splitext(tflite_path)[0] + ".cc"
    suffixes = list(C_SOURCE_SUFFIXES)
    if os.path.splitext(c_path)[1].lower() not in C_SOURCE_SUFFIXES:
        fail(argument, given, f"None or the path of a C++ source file (ending in one of "
             f"{suffixes}; its header goes beside it)")
    header = os.path.splitext(c_path)[0] + ".h"  # as the caller spells it, for messages
    if _same_file(c_path, tflite_path):
        if default:
            what = "given" if received is _GIVEN else "a C++ source path rather than True"
            fail(argument, given, f"{what}, as `{source}` ends in .cc: the default "
                 f"({c_path!r}, `{source}` with .cc) is the .tflite file itself")
        fail(argument, given, f"a path other than `{source}` (the C source would replace "
             "the .tflite file)")
    if _same_file(header, tflite_path):
        fail(argument, given, f"a path whose header ({header!r}, beside it) is not "
             f"`{source}` (the header would replace the .tflite file)")
    spelled = (c_path, header)
    c_path = _check_destination(c_path, argument)
    header = os.path.splitext(c_path)[0] + ".h"
    shown = dict(zip((c_path, header), spelled))
    if os.path.isdir(header):
        fail(argument, given, f"a path whose header ({shown[header]!r}) is not a directory")
    for target in (c_path, header):
        if os.path.lexists(target) and not (os.path.isfile(target)
                                            and is_generated_c_file(target)):
            fail(argument, given, f"a path whose C source and header are new or generated "
                 f"by gru-zoo ({shown[target]!r} exists and gru-zoo did not write it: its "
                 f"files start with {C_ARRAY_MARKER!r}; gru-zoo does not overwrite it)",
                 FileExistsError)
    return c_path, header


def write_c_array(tflite_path, c_path=None, *, variable_name=None):
    """Writes a `.tflite` file as a C source file (and header) for firmware.

    The array is 16-byte aligned, as TFLite for Microcontrollers requires.

    Args:
        tflite_path: the `.tflite` file (str or os.PathLike; it must start like one:
            the TFLite file identifier 'TFL3').
        c_path: the C++ source file to write (`.cc`, `.cpp` or `.cxx`; its `.h` is
            written beside it). Defaults to `tflite_path` with `.cc`. Its folder is
            made if missing. Neither file may be `tflite_path`, and an existing file
            there is replaced only if gru-zoo generated it (its first line starts with
            `C_ARRAY_MARKER`) or it is empty: a hand-written file is refused.
        variable_name: the array's C name (ASCII letters, digits and `_`; not a C or
            C++ keyword). Defaults to `g_<c file name>_model`.

    Returns:
        The path of the `.cc` file (the `.h` lies beside it).

    Raises:
        TypeError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
        PermissionError: bad arguments or destination, before anything is written.
    """
    tflite_path = _c_array_path_arg("tflite_path", tflite_path, "the path of a .tflite "
                                    "file, a str or os.PathLike", ": to write a model held "
                                    "in memory, save it to a file first")
    if c_path is not None:
        c_path = _c_array_path_arg("c_path", c_path, "None or the path of a C++ source "
                                   "file, a str or os.PathLike")
    if variable_name is not None:
        if not isinstance(variable_name, str):
            fail("variable_name", variable_name, "None or a C identifier (a str)", TypeError)
        if not (variable_name.isascii() and variable_name.isidentifier()):
            fail("variable_name", variable_name, "None or a C identifier (ASCII letters, "
                 "digits and '_', not starting with a digit)")
        if variable_name in _C_KEYWORDS:
            fail("variable_name", variable_name, "None or a C identifier that is not a C "
                 "or C++ keyword")
    if os.path.isdir(tflite_path):
        fail("tflite_path", tflite_path, "a .tflite file (it is a directory)")
    if not os.path.isfile(tflite_path):
        fail("tflite_path", tflite_path, "an existing .tflite file (no such file)",
             FileNotFoundError)
    from export.metadata import check_tflite_bytes

    with open(tflite_path, "rb") as handle:
        content = handle.read()
    check_tflite_bytes(content, f"`tflite_path` {tflite_path!r}")
    returned = c_path if c_path is not None else os.path.splitext(tflite_path)[0] + ".cc"
    c_path, header = c_array_paths(tflite_path, c_path)
    base = os.path.splitext(os.path.basename(c_path))[0]
    if variable_name is None:
        variable_name = "g_" + "".join(ch if ch.isascii() and ch.isalnum() else "_"
                                       for ch in base) + "_model"
    guard = "".join(ch if ch.isascii() and ch.isalnum() else "_"
                    for ch in os.path.basename(header)).upper()
    if not guard[0].isalpha():  # a macro name starts with a letter (or a reserved "_")
        guard = "GRU_ZOO_" + guard
    if guard in (variable_name, f"{variable_name}_len"):
        fail("variable_name", variable_name, f"None or a C identifier other than the "
             f"header's include guard {guard!r}")
    lines = []
    for offset in range(0, len(content), 12):
        chunk = content[offset : offset + 12]
        lines.append("    " + ", ".join(f"0x{byte:02x}" for byte in chunk) + ",")
    header_text = (
        f"{C_ARRAY_MARKER} from {os.path.basename(tflite_path)}.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"extern const unsigned char {variable_name}[];\n"
        f"extern const unsigned int {variable_name}_len;\n\n#endif  // {guard}\n"
    )
    source_text = (
        f"{C_ARRAY_MARKER} from {os.path.basename(tflite_path)} ({len(content)} bytes).\n"
        f'#include "{os.path.basename(header)}"\n\n'
        f"alignas(16) const unsigned char {variable_name}[] = {{\n"
        + "\n".join(lines)
        + f"\n}};\nconst unsigned int {variable_name}_len = {len(content)};\n"
    )
    from zoo.fileio import atomic_output

    # Both files are written whole beside their targets, then moved into place; an
    # error leaves the old files (or none), never a partial one.
    os.makedirs(os.path.dirname(c_path), exist_ok=True)
    with atomic_output(header, suffix=".partial") as header_tmp, \
            atomic_output(c_path, suffix=".partial") as source_tmp:
        for tmp, text in ((header_tmp, header_text), (source_tmp, source_text)):
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
    return returned


def to_tflite(
    model,
    path,
    quantization=None,
    representative_data=None,
    streaming=False,
    *,
    form=None,
    recipe="auto",
    io_type="float32",
    sequence_length=None,
    verification_data=None,
    validation_data=None,
    tolerance=None,
    labels=None,
    normalization=None,
    metadata=None,
    allow_select_tf_ops=False,
    allow_custom_ops=False,
    fallback=True,
    check_tflm=None,
    tflm_arena_size=None,
    c_array=False,
    calibration_samples=200,
    range_margin=None,
    int8_weights="auto",
    int8_float_layers="auto",
    strip_tensor_names=True,
    timeout=900,
):
    """Converts a Keras model to a verified TFLite file.

    Args:
        model: a `keras.Model` (functional or Sequential) or the path of a `.keras` file.
        path: destination `.tflite` path. Written atomically, only once verified; its
            folders are made if missing. An existing file there is replaced only if it
            is a TFLite file or empty: a `.keras`/`.h5` path, or any other file, is
            refused before any work.
        quantization: `None` (float32), `"float16"`, `"dynamic"` (int8 weights, float
            activations), `"int8"` (full integer) or `"int16x8"` (int16 activations,
            int8 weights).
        representative_data: inputs `(samples, time, features)` (or token ids
            `(samples, time)`), a list of them or a `tf.data.Dataset` of inputs or
            `(inputs, targets)`; required by `"int8"` and `"int16x8"` (it calibrates
            the activation ranges; gru-zoo does not calibrate on random noise).
        streaming: bool, the older way to ask for `form="step"`: `True` is the same as
            `form="step"`; `False` (the default) leaves the choice to `form`.
        form: the graph form of the file, a `Form` or its value: `"auto"` (the default:
            chosen per model, length and quantization, with fallbacks), `"loop"`,
            `"unrolled"`, `"chunked"` (see `export.recipes`) or `"step"`, the streaming
            form: a one-time-step model (inputs `frame` and each state, outputs `output`
            and `new_<state>`) instead of the full-sequence model. Any model whose layers
            read no later frame streams (`export.streaming`: built with
            `build_gru(..., causal=True)` or recurrent-only); the states' names, shapes
            and kinds are in the metadata's `"states"`.
        recipe: the older name of `form` (same values; `recipe="step"` streams). Give
            one of them: a `form` that contradicts `recipe` or `streaming=True` raises
            `ValueError`.
        io_type: `"float32"`; `"int8"` with `quantization="int8"` or `"int16"` with
            `"int16x8"` for integer inputs and outputs.
        sequence_length: int, the time steps of the file when the model's time
            dimension is `None` (needed by the unrolled recipe; taken from the
            representative data when not given).
        verification_data: inputs to compare TFLite with Keras on; defaults to the
            first samples of `representative_data` or `validation_data`, else random
            inputs of the model's shape (reported in `result.verification`).
        validation_data: `(x, y)` labelled data: the result reports the Keras and TFLite
            accuracy (classification) or MSE (regression) and their change.
        tolerance: a finite positive float, max abs error allowed vs Keras, relative to
            `max(1, max |output|)`. Defaults by mode (`DEFAULT_TOLERANCES`): 1e-5
            float32, 1e-2 float16, 0.1 dynamic, 0.25 int16x8, 1.0 int8 (a sanity
            bound: judge quantized files by the reported error and accuracy change).
        labels: list of distinct class names (one per class: 2 for a one-sigmoid
            binary model; for regression, one name per output), stored in the metadata.
        normalization: `{"mean": [...], "std": [...]}` of the inputs (one value, or one
            per input feature; std > 0), stored in the metadata.
        metadata: dict of extra JSON-serializable metadata (e.g. the builder arguments).
        allow_select_tf_ops: bool, allow Flex ops (the file then needs the Select TF ops
            delegate; a warning is issued). Defaults to `False`.
        allow_custom_ops: bool, allow custom ops. Defaults to `False`.
        fallback: bool, when a form crashes or fails, try the next one. Defaults to `True`.
        check_tflm: bool or None, run the file in TFLite for Microcontrollers'
            interpreter on the verification inputs (its arena and its error vs Keras
            land in `ExportResult.tflm`; a file that does not run there, or differs
            from Keras beyond the tolerance, gives a warning). `True` never picks the
            `loop` form, which TFLite Micro runs with wrong outputs
            (docs/tflite-facts.md, F9), nor nested loops over segments (they enlarge
            the arena; `export.chunked.segment_chunks_for`), nor a bidirectional GRU's
            directions as rows of one batch (F28), nor a wide input's projection
            before its loop (`export.chunked.PROJECT_BEFORE_LOOP_WIDTH`), and its
            chunked loops run one time step per iteration unless a layer returns its
            sequence (`export.chunked.MICRO_CHUNK_STEPS`: a smaller arena, the same
            TFLite Micro speed); so does `c_array`. `None` (the default): checked for
            streaming files and for files written with `c_array` (they are for
            firmware) unless their form is `loop`, which then gives a warning instead.
        tflm_arena_size: int, TFLM tensor arena in bytes; defaults to a generous size,
            and the result reports what the file needs.
        c_array: `False`, `True` (writes `<path>.cc`/`.h`) or a C++ source path
            (`.cc`, `.cpp` or `.cxx`; its `.h` goes beside it): the file as a C array for
            firmware.
        calibration_samples: int, how many samples of `representative_data` calibrate
            a quantized file, spread evenly over the data given (over its first
            `max(4 * calibration_samples, 2048)` samples; not simply the first ones:
            training splits are often ordered by class). Without `verification_data`
            and `validation_data`, a fifth of them (at most 8) are held back from the
            calibration to verify the file on. Defaults to 200.
        range_margin: a number >= 1 or `None`: calibrate a quantized file on the
            calibration samples and on a copy of them stretched `range_margin` times
            about their per-feature mean, so that inputs (and the activations and
            outputs they cause) up to that far beyond the calibration data are not
            clipped to its range. A quantized file cannot represent a value outside
            its calibrated range: a forecaster of a trending series, calibrated on
            the training years, otherwise clips every later forecast at the largest
            training value (airline passengers: test MSE 0.019 in Keras, 0.095 as
            int8 with margin 1, 0.020 with margin 2). `None`: 2 for regression models
            with float inputs (forecasts extrapolate), 1 (off) otherwise. The cost
            is about one bit of activation resolution.
        int8_weights: `"auto"` (the default), `"per_channel"` or `"per_tensor"`: how
            an int8 file stores its fully connected weights (convolutions are always
            per-channel). `"auto"` picks per-channel when one output channel's range
            is far wider than the median's (`export.calibration.PER_CHANNEL_SPREAD`),
            where one shared scale would crush the other channels, and per-tensor
            otherwise (fewer scales, a smaller file). `"per_channel"` is the larger
            encoding: an untrained model exported with it bounds the size of the
            same model once trained (`tuning.budget` relies on this). Other
            quantizations ignore it.
        int8_float_layers: `"auto"` (the default), a list of layer names, or `[]`: the
            layers whose ops stay float inside an int8 file, with QUANTIZE/DEQUANTIZE ops
            at their border (docs/tflite-facts.md, F19). `"auto"`: window normalization
            (it divides by each window's own spread, finer than the raw input's int8
            step) and, in full-sequence files, the first convolution over the raw input
            when it reads at most 16 channels (a fraction of a percent of the work; it
            caused most of a GRU-FCN's int8 error on public data). Unless `[]`, an
            attention pooling that the chunked loop computes keeps its online softmax
            float (`export.chunked.pools_in_loop`). `[]` gives a fully
            integer file (for a device without floating point), loops included: their
            variables are carried in int8 (docs/tflite-facts.md, F21), and an attention
            pooling runs after the loop, on its sequence; `notes` names any
            op that still reads or writes a float tensor. Ops that only move data
            (a recurrence's SPLIT and UNPACK) stay int8 even in a named layer (F19); a
            layer without ops is said in `notes`.
        strip_tensor_names: bool, drop the names of intermediate tensors (a third of
            an unrolled file); inputs, outputs and signatures keep theirs. Defaults
            to `True`.
        timeout: a positive number, seconds allowed to each child process.

    Returns:
        An `ExportResult`.

    Raises:
        ValueError, TypeError, OSError (FileNotFoundError, FileExistsError,
        NotADirectoryError, PermissionError): bad arguments or destination, before any
        work.
        ConversionCrashError, ConversionError, UnsupportedOpsError, VerificationError:
        when no form gave a verified file (the destination is left untouched).
    """
    start_time = time.perf_counter()
    # === Checks (nothing is written before they all pass) ===
    path, form, form_argument, check_tflm = _check_arguments(
        path, quantization, representative_data, form=form, recipe=recipe,
        streaming=streaming, io_type=io_type,
        sequence_length=sequence_length, tolerance=tolerance, timeout=timeout,
        calibration_samples=calibration_samples, range_margin=range_margin, labels=labels,
        normalization=normalization, metadata=metadata, check_tflm=check_tflm,
        c_array=c_array, int8_weights=int8_weights, int8_float_layers=int8_float_layers,
        flags={"fallback": fallback, "allow_select_tf_ops": allow_select_tf_ops,
               "allow_custom_ops": allow_custom_ops,
               "strip_tensor_names": strip_tensor_names},
        tflm_arena_size=tflm_arena_size)
    # NumPy bools as Python ones: they go into the conversion job's JSON
    fallback, allow_select_tf_ops, allow_custom_ops, strip_tensor_names = (
        bool(fallback), bool(allow_select_tf_ops), bool(allow_custom_ops),
        bool(strip_tensor_names))
    if is_bool(c_array):
        c_array = bool(c_array)
    streaming = form is Form.STEP
    source = _load_model(model, streaming)
    _check_against_model(source.keras_model, source.task, source.input_shape,
                         source.input_dtype, labels, normalization, int8_float_layers)
    data = _prepare_data(
        source, quantization, representative_data, verification_data, validation_data,
        sequence_length=sequence_length, calibration_samples=calibration_samples,
        range_margin=range_margin)
    from export.chunked import is_fully_integer

    fully_integer = is_fully_integer(quantization, int8_float_layers)
    # A file for a microcontroller: checked there, or a C array.
    micro_file = check_tflm is True or bool(c_array)
    plan, chunk_steps = _plan_recipes(source.keras_model, form, quantization, fallback,
                                      data.window, form_argument=form_argument,
                                      micro=check_tflm is True, micro_file=micro_file,
                                      fully_integer=fully_integer,
                                      int8_float_layers=int8_float_layers)

    # === Work ===
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(c_array, (str, os.PathLike)):
        os.makedirs(os.path.dirname(os.path.abspath(c_array)), exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="gru_zoo_export_")
    try:
        job = _stage_job(
            source, data, workdir, quantization=quantization, io_type=io_type,
            streaming=streaming, chunk_steps=chunk_steps, labels=labels,
            normalization=normalization, metadata=metadata,
            allow_select_tf_ops=allow_select_tf_ops, allow_custom_ops=allow_custom_ops,
            strip_tensor_names=strip_tensor_names, int8_weights=int8_weights,
            int8_float_layers=int8_float_layers)
        if chunk_steps is not None:
            from export import chunked

            # float16 weights used before and in a loop body enter it from outside
            # (docs/tflite-facts.md, F28): the steps before the loop get a loop too.
            job["prefix_loop"] = chunked.prefix_in_loop(quantization)
        if chunk_steps is not None and not micro_file:
            # Segments trade TFLite Micro arena for speed (`segment_chunks_for`): a
            # file for a microcontroller (checked there, or a C array) keeps one loop.
            job["segment_chunks"] = chunked.segment_chunks_for(
                source.keras_model, data.window, chunk_steps, quantization, fully_integer)
            # So do a bidirectional GRU's directions as two rows (10x the arena:
            # docs/tflite-facts.md, F28).
            job["bidirectional_rows"] = chunked.rows_in_step(quantization)
            # And so does the projection of a wide input before the loop (3 units per
            # step of arena; `export.chunked.PROJECT_BEFORE_LOOP_WIDTH`).
            job["project_before"] = chunked.project_before_in(quantization)
        chosen, attempts = _try_recipes(
            plan, job, workdir, task=source.task, verification=data.verification,
            quantization=quantization, tolerance=tolerance,
            allow_select_tf_ops=allow_select_tf_ops, allow_custom_ops=allow_custom_ops,
            timeout=timeout)
        written = _evaluate_and_write(
            chosen, path, source, data, workdir, check_tflm=check_tflm, streaming=streaming,
            tflm_arena_size=tflm_arena_size, c_array=c_array, timeout=timeout,
            quantization=quantization)

        from export.metadata import read_metadata

        ops = chosen.result["ops"]
        return ExportResult(
            path=path,
            size=os.path.getsize(path),
            recipe=chosen.recipe,
            form=Form(chosen.recipe),
            quantization=quantization,
            io_type=io_type,
            streaming=streaming,
            ops=ops["builtin"],
            flex_ops=ops["flex"],
            custom_ops=ops["custom"],
            max_abs_error=chosen.max_error,
            mean_abs_error=chosen.mean_error,
            tolerance=chosen.bound,
            verification=data.verification,
            evaluation=written.evaluation,
            attempts=attempts,
            fallback_used=chosen.index > 0,
            convert_seconds=float(chosen.result["convert_seconds"]),
            total_seconds=time.perf_counter() - start_time,
            tflm=written.tflm,
            c_array_path=written.c_array_path,
            metadata=read_metadata(path),
            warnings=written.warnings,
            notes=data.notes + list(chosen.result.get("notes", [])),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# The steps of `to_tflite`, in the order it runs them. The steps up to `_plan_recipes`
# only read and check (no file is written before all of them pass); the rest work in
# a temporary directory that `to_tflite` removes at the end.

# `warnings.warn` in a step called by `to_tflite` itself: point at `to_tflite`'s caller.
_CALLER_OF_TO_TFLITE = 3


def _check_arguments(path, quantization, representative_data, *, form, recipe, streaming,
                     io_type, sequence_length, tolerance, timeout, calibration_samples,
                     range_margin, labels, normalization, metadata, check_tflm, c_array,
                     int8_weights="auto", int8_float_layers="auto", flags=None,
                     tflm_arena_size=None):
    """Checks every argument that needs no model, before Keras is even imported.

    Cheap checks first, so that a typo costs milliseconds, not a TensorFlow start-up;
    the checks that need the model follow in `_load_model`, `_check_against_model`
    and `_prepare_data`.

    Returns:
        `(path, form, form_argument, check_tflm)`: the absolute destination path, the
        form (`_resolve_form`), the name of the argument that asked for it, and
        `check_tflm` as given (`None` is resolved once the form is known:
        `_evaluate_and_write`).
    """
    if quantization not in QUANTIZATIONS:
        fail("quantization", quantization, f"one of {list(QUANTIZATIONS)}")
    form, form_argument = _resolve_form(form, recipe, streaming)
    streaming = form is Form.STEP
    if io_type not in IO_TYPES[quantization]:
        fail("io_type", io_type, f"one of {list(IO_TYPES[quantization])} for "
              f"quantization={quantization!r}")
    if sequence_length is not None and (not is_int(sequence_length) or sequence_length < 1):
        fail("sequence_length", sequence_length, "a positive int or None")
    for name, value in (flags or {}).items():
        if not is_bool(value):
            fail(name, value, "True or False", TypeError)
    if tflm_arena_size is not None and (not is_int(tflm_arena_size) or tflm_arena_size < 1):
        fail("tflm_arena_size", tflm_arena_size, "None (sized from the file) or a "
             "positive int (bytes)")
    if tolerance is not None and not is_positive_number(tolerance):
        fail("tolerance", tolerance, "a finite positive float or None (NaN or inf would "
              "switch verification off)")
    if not is_positive_number(timeout):
        fail("timeout", timeout, "a finite positive number of seconds")
    if not is_int(calibration_samples) or calibration_samples < 1:
        fail("calibration_samples", calibration_samples, "a positive int")
    if range_margin is not None and (not is_positive_number(range_margin)
                                     or range_margin < 1):
        fail("range_margin", range_margin, "None or a finite number >= 1")
    if int8_weights not in INT8_WEIGHTS:
        fail("int8_weights", int8_weights, f"one of {list(INT8_WEIGHTS)}")
    if int8_float_layers != "auto" and (
            not isinstance(int8_float_layers, (list, tuple))
            or not all(isinstance(name, str) for name in int8_float_layers)):
        fail("int8_float_layers", int8_float_layers,
             "'auto' or a list of layer names (str; [] for a fully integer file)")
    if labels is not None and (
        not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels)
        or not labels or len(set(labels)) != len(labels)
    ):
        fail("labels", labels, "None or a non-empty list of distinct str")
    if normalization is not None and (
        not isinstance(normalization, dict) or not {"mean", "std"} <= set(normalization)
    ):
        fail("normalization", normalization, "a dict with 'mean' and 'std' or None")
    if metadata is not None and not isinstance(metadata, dict):
        fail("metadata", metadata, "a JSON-serializable dict or None", TypeError)
    if metadata is not None:
        # the check `add_metadata` makes in the worker, made here before any work (NaN
        # and inf, which `json.dumps` lets through, are refused: JSON has neither)
        from export.metadata import json_metadata

        json_metadata(metadata, "metadata")
    if check_tflm is not None and not is_bool(check_tflm):
        fail("check_tflm", check_tflm, "True, False or None (the default: streaming files "
              "and files written with `c_array` are checked)", TypeError)
    if check_tflm and form is Form.LOOP:
        fail("check_tflm", check_tflm, "False with form='loop' (TFLite for "
              "Microcontrollers runs Keras's WHILE loop files with wrong outputs, "
              "docs/tflite-facts.md, F9); use form='auto', 'chunked', 'unrolled' or 'step'")
    if not (is_bool(c_array) or isinstance(c_array, (str, os.PathLike))):
        fail("c_array", c_array, "True, False or the path of a C++ source file", TypeError)
    if quantization in CALIBRATED and representative_data is None:
        fail("representative_data", None, f"calibration inputs for quantization="
              f"{quantization!r} (it measures activation ranges on them; gru-zoo does not "
              "guess them from random noise)")
    # the file system last: a typo in an argument is named before a missing folder
    path = _check_destination(path)
    if not is_bool(c_array):
        if os.path.splitext(os.fspath(c_array))[1].lower() not in C_SOURCE_SUFFIXES:
            fail("c_array", os.fspath(c_array), f"True, False or the path of a C++ source "
                 f"file (ending in one of {list(C_SOURCE_SUFFIXES)}; its header goes beside "
                 "it)")
    if not is_bool(c_array) or c_array:
        # where `write_c_array` will write, checked before any work: the .tflite file is
        # installed first, and a refusal after it (a hand-written .cc in the way) used to
        # come after the conversion, or not at all (the file was overwritten)
        c_array_paths(path, None if is_bool(c_array) else os.fspath(c_array),
                      argument="c_array", received=c_array, source="path")
    if quantization not in CALIBRATED and representative_data is not None:
        warnings.warn(f"`representative_data` is not used by quantization={quantization!r}; "
                      "it only serves as verification inputs.", stacklevel=_CALLER_OF_TO_TFLITE)
    return path, form, form_argument, None if check_tflm is None else bool(check_tflm)


# What `c_array` may name: a C++ source file (`write_c_array` writes its header beside
# it).
C_SOURCE_SUFFIXES = (".cc", ".cpp", ".cxx")  # C++: the array is declared `alignas(16)`
# A TFLite FlatBuffer's file identifier, at bytes 4-8.
_TFLITE_IDENTIFIER = b"TFL3"


def _check_destination(path, argument="path"):
    """The absolute path of `path`, a file `to_tflite` may write: its folder exists or
    can be made (`to_tflite` makes it) and can be written, and it is not an existing
    file of another kind (a `.keras` model given as `path` by mistake would be lost; an
    existing TFLite file, or an empty one, is replaced). Checked before any work, so
    that the error names the argument, not the staging file that `_install` writes
    beside it."""
    if not isinstance(path, (str, os.PathLike)):
        fail(argument, path, "a str or os.PathLike destination for the .tflite file",
             TypeError)
    given = os.fspath(path)
    if given.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep)):
        # `abspath` drops the separator: "newdir/" would become a file named newdir
        fail(argument, given, "a file path (it ends in a path separator, as a folder does)")
    path = os.path.abspath(given)
    if os.path.isdir(path):
        fail(argument, given, "a file path (it is a directory)")
    folder = os.path.dirname(path)
    existing = folder  # the nearest folder that exists: the others are made in it
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        fail(argument, given, f"a path whose folders can be made ({existing} is a file)",
             NotADirectoryError)
    try:  # the file is written beside its destination first (`_install`)
        fd, probe = tempfile.mkstemp(prefix=".gru_zoo_write_check.", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        fail(argument, given, f"a path in a folder that can be written ({existing}: "
             f"{error.strerror})", type(error))
    if argument == "path" and os.path.splitext(path)[1].lower() in (".keras", ".h5"):
        fail(argument, given, "the path of the .tflite file to write, not of a Keras "
             "model file")
    if argument == "path" and os.path.isfile(path) and os.path.getsize(path):
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head[4:8] != _TFLITE_IDENTIFIER:
            fail(argument, given, "a new file or an existing TFLite file to replace (this "
                 "file exists and is not a TFLite model; gru-zoo does not overwrite it)",
                 FileExistsError)
    return path


def _resolve_form(form, recipe, streaming):
    """The one `Form` that `form`, `recipe` (its older name) and `streaming` ask for.

    `recipe="auto"` and `streaming=False` are the defaults and ask for nothing;
    `streaming=True` asks for `Form.STEP` (as does `recipe="step"`, which used to
    require it); `form` (when given) must agree with whatever the other two ask for.

    Returns:
        `(form, argument)`: the `Form`, and the argument that named it (`"form"` or
        `"recipe"`), for later errors about it.
    """
    choices = list(RECIPE_CHOICES)
    if recipe not in RECIPE_CHOICES:
        fail("recipe", recipe, f"one of {choices}")
    if not isinstance(streaming, bool):
        fail("streaming", streaming, "True or False", TypeError)
    if form is None:
        if streaming and recipe not in ("auto", "step"):
            fail("recipe", recipe, "'auto' or 'step' with streaming=True")
        return (Form.STEP if streaming else Form(recipe)), "recipe"
    try:
        form = Form(form)
    except (TypeError, ValueError):
        fail("form", form, f"a `Form` or one of {choices}")
    if recipe != "auto" and recipe != form:
        fail("form", form.value, f"{str(recipe)!r} (or None) when recipe={str(recipe)!r} is "
             "given: `recipe` is the older name of `form`, give only one of them")
    if streaming and form not in (Form.AUTO, Form.STEP):
        fail("form", form.value, "'step' (or 'auto') with streaming=True: streaming=True "
             "asks for the 'step' form")
    return (Form.STEP if streaming else form), "form"


@dataclasses.dataclass
class _Source:
    """The model to export, loaded, and what `to_tflite` reads off it.

    Attributes:
        keras_model: the loaded `keras.Model` (for a file: as `export.recipes` loads it).
        path: the `.keras` file given, absolute, or `None` for an in-memory model
            (`_stage_job` saves it for the child process).
        input_shape, input_dtype: `export.recipes.input_spec` (without the batch).
        task, per_step: `_infer_task`.
    """

    keras_model: object
    path: str | None
    input_shape: tuple
    input_dtype: str
    task: str
    per_step: bool


def _load_model(model, streaming):
    """Loads `model` (a `keras.Model` or a `.keras` path) and reads its task and inputs.

    A path is checked before Keras reads it (`_load_keras_file`: one error naming the
    file instead of Keras's misleading ones); for `streaming=True`, the model must be
    able to stream (`export.recipes.streaming_plan` names the layer that cannot).
    """
    import keras  # noqa: F401  (heavy: only after the cheap checks)

    from export import recipes

    model_path = None
    if isinstance(model, (str, os.PathLike)):
        model_path = os.path.abspath(os.fspath(model))
        if not os.path.isfile(model_path):
            what = "a folder" if os.path.isdir(model_path) else "no such file"
            raise FileNotFoundError(f"`model` must be an existing .keras file. Received: "
                                    f"model={os.fspath(model)!r} ({what})")
        if not model_path.endswith(".keras"):
            fail("model", os.fspath(model), "a keras.Model or the path of a .keras file")
    elif not isinstance(model, keras.Model):
        fail("model", type(model).__name__, "a keras.Model or the path of a .keras file",
              TypeError)
    keras_model = _load_keras_file(model_path) if model_path else recipes.load_model(model)
    input_shape, input_dtype = recipes.input_spec(keras_model)
    if streaming:
        recipes.streaming_plan(keras_model)  # raises ValueError naming the layer
    task, per_step = _infer_task(keras_model)
    return _Source(keras_model, model_path, input_shape, input_dtype, task, per_step)


@dataclasses.dataclass
class _Data:
    """The arrays the conversion and its checks run on, all checked and shaped.

    Attributes:
        calibration: the calibration samples (with their stretched copy when
            `range_margin` > 1), or `None`.
        verify: the inputs TFLite is compared with Keras on (always set).
        verification: where `verify` came from, as reported in `ExportResult`.
        eval_x, eval_y: `validation_data`, or `None`.
        sequence_length: the `sequence_length` argument, or the representative data's
            length for a model whose time dimension is `None`.
        window: the file's time steps (`None`: any length, loop recipe only).
        notes: what the preparation changed, for `ExportResult.notes`.
    """

    calibration: np.ndarray | None
    verify: np.ndarray
    verification: str
    eval_x: np.ndarray | None
    eval_y: np.ndarray | None
    sequence_length: int | None
    window: int | None
    notes: list


def _prepare_data(source, quantization, representative_data, verification_data,
                  validation_data, *, sequence_length, calibration_samples, range_margin):
    """Turns the data arguments into the calibration, verification and evaluation arrays.

    Every array is checked against the model first (`_read_data`); then the time
    length is fixed, the calibration samples are chosen (some held back to verify on
    when nothing else is given), their ranges widened by `range_margin`, and the
    verification inputs picked from what was given, else random.
    """
    calibration, verify, eval_x, eval_y = _read_data(
        source, representative_data, verification_data, validation_data,
        calibration_samples=calibration_samples)
    time_steps = source.input_shape[0]
    if sequence_length is None and time_steps is None and calibration is not None:
        sequence_length = calibration.shape[1]
    if time_steps is not None and sequence_length is not None and sequence_length != time_steps:
        fail("sequence_length", sequence_length, f"None or {time_steps} (the model's fixed "
              "time dimension)")
    window = time_steps or sequence_length
    verification = "verification_data"
    calibrating = quantization in CALIBRATED
    if calibrating:
        _check_calibration_data(calibration)
    if calibration is not None:
        pool = calibration
        if calibrating and verify is None and eval_x is None and len(pool) > 1:
            # Verify on samples the calibration does not see.
            held = _spread(min(VERIFY_SAMPLES, max(1, len(pool) // 5)), len(pool))
            verify = pool[held]
            verification = (f"representative_data ({len(held)} samples held back from "
                            "calibration)")
            pool = np.delete(pool, held, axis=0)
        calibration = pool[_spread(calibration_samples, len(pool))]
    notes = []
    if calibrating and calibration is not None:
        calibration = _widen_ranges(calibration, source, range_margin, notes)
    if verify is None:
        verify, verification = _default_verification(source, calibrating, calibration,
                                                     eval_x, window)
    return _Data(calibration, verify, verification, eval_x, eval_y, sequence_length, window,
                 notes)


def _read_data(source, representative_data, verification_data, validation_data, *,
               calibration_samples):
    """`(calibration, verify, eval_x, eval_y)` as checked arrays, each `None` when not given.

    Reads at most what is used: `max(4 * calibration_samples, 2048)` representative
    samples (the calibration samples are spread over them), 64 verification samples.
    """
    input_shape, input_dtype = source.input_shape, source.input_dtype
    calibration = _as_array("representative_data", representative_data, input_shape,
                            input_dtype, limit=max(4 * calibration_samples, 2048))
    verify = _as_array("verification_data", verification_data, input_shape, input_dtype,
                       limit=64)
    eval_x = eval_y = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            fail("validation_data", type(validation_data).__name__, "a tuple (x, y)")
        eval_x = _as_array("validation_data", validation_data[0], input_shape, input_dtype,
                           limit=10**9)
        if validation_data[1] is None:
            fail("validation_data", "(x, None)", "a tuple (x, y) with labels y")
        eval_y = np.asarray(validation_data[1])
        if eval_y.ndim == 0 or len(eval_y) != len(eval_x):
            fail("validation_data", f"x with {len(eval_x)} samples and y of shape "
                  f"{eval_y.shape}", "x and y with the same number of samples")
        _check_validation_labels(source.task, source.keras_model, eval_x, eval_y)
    return calibration, verify, eval_x, eval_y


def _widen_ranges(calibration, source, range_margin, notes):
    """The calibration samples plus, for `range_margin` > 1, a stretched copy of them.

    The converter takes each tensor's range from the calibration run only; a stretched
    copy of the data is the public way to widen them all. `range_margin=None` means 2
    for regression models with float inputs (forecasts extrapolate), 1 (off) otherwise.
    Appends a line to `notes` when it widens.
    """
    float_inputs = source.input_dtype.startswith("float")
    margin = range_margin
    if margin is None:
        margin = 2.0 if source.task in REGRESSION_TASKS and float_inputs else 1.0
    if margin > 1 and float_inputs:
        center = calibration.mean(axis=(0, 1), keepdims=True)
        stretched = center + float(margin) * (calibration - center)
        calibration = np.concatenate([calibration, stretched.astype(calibration.dtype)])
        notes.append(
            f"calibration ranges widened: the samples and a copy stretched x{margin:g} "
            "about their mean (`range_margin`), so values beyond the calibration "
            "data's range are not clipped")
    return calibration


def _default_verification(source, calibrating, calibration, eval_x, window):
    """`(verify, description)` when no `verification_data` was given.

    Prefers data the calibration did not see (`validation_data` before the
    calibration inputs for calibrated files), else `VERIFY_SAMPLES` random inputs of
    the model's shape (token ids below the vocabulary size for token inputs).
    """
    sources = (("validation_data", eval_x), ("representative_data", calibration))
    if not calibrating:
        sources = sources[::-1]
    for name, samples in sources:
        if samples is not None:
            verification = name
            if calibrating and name == "representative_data":
                verification += " (the calibration inputs: no other data was given)"
            return samples[_spread(VERIFY_SAMPLES, len(samples))], verification
    rng = np.random.default_rng(0)
    shape = (VERIFY_SAMPLES, window or 16) + tuple(source.input_shape[1:])
    if source.input_dtype.startswith("int"):
        verify = rng.integers(1, max(2, _vocab_size(source.keras_model)),
                              size=shape).astype(np.int32)
    else:
        verify = rng.standard_normal(shape).astype(np.float32)
    return verify, "random inputs (no data given)"


def _plan_recipes(keras_model, form, quantization, fallback, window, *, form_argument="form",
                  micro=False, micro_file=False, fully_integer=False,
                  int8_float_layers="auto"):
    """`(forms to try in order, chunk_steps or None)` for this model.

    `_recipes_to_try` gives the order; this drops what the model cannot take (the
    chunked form without GRU chains or a fixed length, the unrolled one without a
    fixed length), or refuses when the one form asked for is among them (naming
    `form_argument`, the argument that asked for it). `micro`: the file must run in
    TFLite Micro (`check_tflm=True`), so Keras's `loop` form is not tried.
    `micro_file`: the file is for a microcontroller (`check_tflm=True` or a C array), so
    its loops take short bodies (`export.chunked.MICRO_CHUNK_STEPS`).
    `fully_integer`: an int8 file without float ops (`export.chunked.pools_in_loop`);
    `int8_float_layers`: as `to_tflite`'s (`export.chunked.chunk_steps_for`).
    """
    from export import chunked

    recipe = Form(form).value
    streaming = recipe == Form.STEP
    chunk_steps = None
    if not streaming and window is not None and chunked.chunkable(keras_model):
        # The automatic recipe may unroll short sequences fully; asking for "chunked"
        # gets the loop (for a microcontroller, the automatic recipe's loop).
        chunk_steps = (chunked.chunk_steps_for(keras_model, window, quantization,
                                               fully_integer, int8_float_layers,
                                               micro=micro_file)
                       if recipe == "auto" or micro_file
                       else chunked.default_chunk_steps(window))
    plan = _recipes_to_try(recipe, quantization, streaming, fallback,
                           chunkable=chunk_steps is not None, micro=micro)
    if "chunked" in plan and chunk_steps is None:
        if plan == ["chunked"]:
            fail(form_argument, recipe, "'auto', 'loop' or 'unrolled' for this model: the "
                  "chunked form needs forward GRU layers without a mask and a fixed "
                  "sequence length")
        plan.remove("chunked")
    if "unrolled" in plan and window is None:
        if plan == ["unrolled"] and micro:
            fail("check_tflm", True, "False for this model (or pass `sequence_length`): "
                  "without a fixed length only Keras's loop form can hold it, and TFLite "
                  "Micro runs that form with wrong outputs (docs/tflite-facts.md, F9)")
        if plan == ["unrolled"]:
            fail("sequence_length", None, "a positive int: the model's time dimension is "
                  "None and the unrolled form needs a fixed length")
        plan.remove("unrolled")
    return plan, chunk_steps


def _stage_job(source, data, workdir, *, quantization, io_type, streaming, chunk_steps,
               labels, normalization, metadata, allow_select_tf_ops, allow_custom_ops,
               strip_tensor_names, int8_weights="auto", int8_float_layers="auto"):
    """Writes what the child processes read into `workdir`; returns the common job.

    The child process (`export._worker`) converts from files: the model (saved to
    `workdir` when it was given in memory), the arrays (`data.npz`) and the job
    (a JSON dict; `_try_recipes` adds the recipe and the output paths per attempt).
    The job's `"metadata"` is what the file will carry, less the recipe.
    """
    model_path = source.path
    if model_path is None:
        model_path = os.path.join(workdir, "model.keras")
        source.keras_model.save(model_path)
    arrays = {"verify": data.verify}
    if data.calibration is not None:
        arrays["calibration"] = data.calibration
    if data.eval_x is not None:
        arrays["eval"] = data.eval_x
    data_path = os.path.join(workdir, "data.npz")
    np.savez(data_path, **arrays)
    return {
        "model_path": model_path,
        "quantization": quantization,
        "io_type": io_type,
        "sequence_length": data.sequence_length,
        "chunk_steps": chunk_steps,
        "allow_select_tf_ops": allow_select_tf_ops,
        "allow_custom_ops": allow_custom_ops,
        "strip_tensor_names": bool(strip_tensor_names),
        "int8_weights": int8_weights,
        "int8_float_layers": (int8_float_layers if int8_float_layers == "auto"
                              else list(int8_float_layers)),
        "data_path": data_path,
        "metadata": _file_metadata(source, data.window, quantization=quantization,
                                   io_type=io_type, streaming=streaming, labels=labels,
                                   normalization=normalization, metadata=metadata),
    }


def _file_metadata(source, window, *, quantization, io_type, streaming, labels,
                   normalization, metadata):
    """The metadata embedded in the file (`export.metadata`), less the recipe."""
    import zoo
    from export import recipes

    keras_model, input_shape = source.keras_model, source.input_shape
    states = recipes.state_specs(keras_model) if streaming else []
    features = list(input_shape[1:])
    return {
        "gru_zoo_version": zoo.__version__,
        "format_version": 1,
        "model_name": keras_model.name,
        "quantization": quantization,
        "io_type": io_type,
        "streaming": streaming,
        "task": source.task,
        "per_step": source.per_step,
        "input": {
            "name": "frame" if streaming else "inputs",
            "shape": [1] + features if streaming else [1, window] + features,
            "dtype": source.input_dtype,
        },
        "sequence_shape": [window] + features,
        "window_length": window,
        "output_shape": list(keras_model.outputs[0].shape[1:]),
        "states": states,
        "labels": list(labels) if labels is not None else None,
        "normalization": normalization,
        "layers": _layer_summary(keras_model),
        "config": metadata or {},
    }


@dataclasses.dataclass
class _Attempt:
    """The recipe whose file passed every check (`_try_recipes`).

    Attributes:
        index: its place in the plan (0: the first recipe tried, no fallback).
        recipe: its name.
        result: the child process's report (`"ops"`, `"convert_seconds"`, `"notes"`).
        out_path: the verified file, in the work directory.
        arrays: Keras and TFLite outputs (`keras_verify`, `tflite_verify`, and
            `keras_eval`, `tflite_eval` with `validation_data`).
        max_error, mean_error: abs error of TFLite vs Keras on the verification inputs.
        bound: the tolerance `max_error` passed, scaled by the outputs' size.
    """

    index: int
    recipe: str
    result: dict
    out_path: str
    arrays: object
    max_error: float
    mean_error: float
    bound: float


@dataclasses.dataclass
class _Rejection:
    """Why a recipe's file was not used: its `ExportResult.attempts` entry
    (`outcome`, `detail`) and the error `to_tflite` raises if no later recipe gives
    a file."""

    outcome: str
    detail: str
    error: ExportError


def _try_recipes(plan, job, workdir, *, task, verification, quantization, tolerance,
                 allow_select_tf_ops, allow_custom_ops, timeout):
    """Converts and checks with each recipe of `plan` in turn, up to the first that passes.

    Every attempt, passed or not, is recorded (`ExportResult.attempts`); when none
    passes, the last one's error is raised (`ExportError` subclasses).

    Returns:
        `(_Attempt, attempts)`: the recipe used and the record of every attempt.
    """
    attempts = []
    last_error = None
    for index, recipe in enumerate(plan):
        tried = _convert_and_check(
            index, recipe, job, workdir, task=task, verification=verification,
            quantization=quantization, tolerance=tolerance,
            allow_select_tf_ops=allow_select_tf_ops, allow_custom_ops=allow_custom_ops,
            timeout=timeout)
        if isinstance(tried, _Rejection):
            attempts.append({"recipe": recipe, "outcome": tried.outcome, "detail": tried.detail})
            last_error = tried.error
            continue
        attempts.append({"recipe": recipe, "outcome": "ok", "detail": None})
        return tried, attempts
    raise last_error


def _convert_and_check(index, recipe, job, workdir, *, task, verification, quantization,
                       tolerance, allow_select_tf_ops, allow_custom_ops, timeout):
    """One recipe: converts in a child process, audits the ops, compares with Keras.

    Returns:
        An `_Attempt` when the file passes; otherwise a `_Rejection` saying why: the
        conversion crashed or failed, the file holds ops the standalone interpreter
        cannot run, it differs from Keras beyond the tolerance, or (quantized) its
        outputs collapsed to one class or a constant (`_collapse`).
    """
    out_path = os.path.join(workdir, f"{recipe}.tflite")
    outputs_path = os.path.join(workdir, f"{recipe}_outputs.npz")
    job = dict(job, recipe=recipe, metadata=dict(job["metadata"], recipe=recipe),
               out_path=out_path, outputs_path=outputs_path)
    result, detail = _run_worker("convert", job, workdir, timeout)
    if result is None:
        return _Rejection("crashed", detail, ConversionCrashError(
            f"Converting with the {recipe!r} recipe (quantization={quantization!r}) "
            f"crashed: {detail}"))
    if not result["ok"]:
        return _Rejection("error", f"{result['error_type']}: {result['message']}",
                          ConversionError(
            f"Converting with the {recipe!r} recipe (quantization={quantization!r}) "
            f"failed: {result['error_type']}: {result['message']}"))
    ops = result["ops"]
    if (ops["flex"] and not allow_select_tf_ops) or (ops["custom"] and not allow_custom_ops):
        detail = f"Flex ops {ops['flex']}, custom ops {ops['custom']}"
        return _Rejection("unsupported ops", detail, UnsupportedOpsError(
            f"The {recipe!r} recipe produced ops that the standalone LiteRT interpreter "
            f"cannot run: {detail}. Pass allow_select_tf_ops=True / allow_custom_ops=True "
            "to accept them."))
    arrays = np.load(outputs_path)
    keras_out, tflite_out = arrays["keras_verify"], arrays["tflite_verify"]
    difference = np.abs(keras_out.astype(np.float64) - tflite_out)
    max_error = float(difference.max())
    mean_error = float(difference.mean())
    scale = max(1.0, float(np.abs(keras_out).max()))
    bound = (tolerance if tolerance is not None else DEFAULT_TOLERANCES[quantization]) * scale
    if not np.isfinite(max_error) or max_error > bound:
        return _Rejection(
            "verification failed", f"max abs error {max_error:.3g} > {bound:.3g}",
            VerificationError(
                f"The {recipe!r} file runs but differs from Keras: max abs error "
                f"{max_error:.3g} > tolerance {bound:.3g} on {verification} "
                f"(quantization={quantization!r}). Pass a larger `tolerance` to accept it."
                + _QUANTIZED_ALTERNATIVE.get(quantization, "")))
    if quantization is not None:
        key = "eval" if "keras_eval" in arrays else "verify"
        collapse = _collapse(task, arrays[f"keras_{key}"], arrays[f"tflite_{key}"],
                             margin=COLLAPSE_MARGIN)
        if collapse:
            source = "validation_data" if key == "eval" else verification
            return _Rejection("outputs collapsed", collapse, VerificationError(
                f"The {recipe!r} file (quantization={quantization!r}) lost the "
                f"model's outputs: {collapse} on {source}. The calibration data "
                "(`representative_data`) probably does not cover the inputs; pass "
                "samples like the real inputs (e.g. the training split)."))
    return _Attempt(index, recipe, result, out_path, arrays, max_error, mean_error, bound)


@dataclasses.dataclass
class _Written:
    """What `_evaluate_and_write` measured and wrote beside the file."""

    evaluation: dict | None
    tflm: dict | None
    c_array_path: str | None
    warnings: list


def _evaluate_and_write(chosen, path, source, data, workdir, *, check_tflm, tflm_arena_size,
                        c_array, timeout, quantization=None, streaming=False):
    """Measures the chosen file, then installs it at `path` (and its C array).

    Evaluates it on `validation_data`, warns about Flex ops, runs the file in TFLite
    Micro (`check_tflm`; `None`: streaming files and C arrays), then moves it into
    place atomically (`_install`).
    """
    evaluation = None
    if data.eval_x is not None:
        evaluation = _evaluate(source.task, chosen.arrays["keras_eval"],
                               chosen.arrays["tflite_eval"], data.eval_y)
    result_warnings = []
    loss = _metric_loss(evaluation, quantization)
    if loss:
        warnings.warn(loss, stacklevel=_CALLER_OF_TO_TFLITE)
        result_warnings.append(loss)
    ops = chosen.result["ops"]
    if ops["flex"]:
        message = (f"{path} holds Flex ops {ops['flex']}: it needs the Select TF ops "
                   "delegate and does not run on the standalone LiteRT interpreter.")
        warnings.warn(message, stacklevel=_CALLER_OF_TO_TFLITE)
        result_warnings.append(message)
    tflm = None
    if check_tflm is None:
        check_tflm = streaming or bool(c_array)
        if check_tflm and chosen.recipe == "loop":
            check_tflm = False
            message = (f"{path} is in Keras's loop form, which TFLite Micro runs with "
                       "wrong outputs (docs/tflite-facts.md, F9); for a microcontroller "
                       "pass form='unrolled' (a fixed length) or streaming=True.")
            warnings.warn(message, stacklevel=_CALLER_OF_TO_TFLITE)
            result_warnings.append(message)
    if check_tflm:
        tflm = _check_tflm(chosen.out_path, data.verify, chosen.arrays["keras_verify"],
                           source.per_step, workdir, timeout, tflm_arena_size,
                           streaming=streaming)
        kind = "streaming" if streaming else chosen.recipe
        message = None
        if not tflm["runs"]:
            message = f"The {kind} file does not run in TFLite Micro: {tflm['error']}"
            if quantization in ("float16", "dynamic"):
                message += (f" (TFLite Micro runs no {quantization} file, docs/tflite-facts.md, "
                            "F24: use float32, int8 or int16x8 for a microcontroller)")
            from export.metadata import TFLM_SOFTMAX_LIMIT, int8_softmax_lengths

            long_softmax = [n for n in int8_softmax_lengths(chosen.out_path)
                            if n >= TFLM_SOFTMAX_LIMIT]
            if long_softmax:
                message += (f" (it holds an int8 SOFTMAX over {max(long_softmax)} values: "
                            "TFLite Micro's int8 softmax aborts once their exponentials "
                            "sum to 512, docs/tflite-facts.md, F22; the default "
                            "`int8_float_layers=\"auto\"` keeps such a softmax float)")
        elif not tflm["max_abs_error"] <= chosen.bound:
            message = (f"The {kind} file runs in TFLite Micro but its outputs differ from "
                       f"Keras by {tflm['max_abs_error']:.3g} (LiteRT's by "
                       f"{chosen.max_error:.3g}; tolerance {chosen.bound:.3g}).")
        if message:
            warnings.warn(message, stacklevel=_CALLER_OF_TO_TFLITE)
            result_warnings.append(message)
    _install(chosen.out_path, path)
    c_array_path = None
    if c_array:
        c_array_path = write_c_array(path, c_array if isinstance(c_array, (str, os.PathLike)) else None)
    return _Written(evaluation, tflm, c_array_path, result_warnings)


def _install(verified_path, path):
    """Copies the verified file to `path` atomically.

    The copy goes to a staging file beside `path`, then `os.replace` moves it into
    place: the destination is either the old file or the new verified one, never a
    partial or unverified file.
    """
    try:
        fd, staging = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.",
                                       suffix=".partial", dir=os.path.dirname(path))
    except OSError as error:  # name the destination, not the staging file
        raise type(error)(error.errno, f"`path` {path!r} cannot be written there: "
                          f"{error.strerror}") from None
    os.close(fd)
    try:
        shutil.copyfile(verified_path, staging)
        # mkstemp makes the file 0600; an exported file gets the user's umask (0644
        # typically), like any other file, also when it replaces one.
        os.chmod(staging, new_file_mode())
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    with open(path, "rb") as handle:
        trust(handle.read())  # verified: `LiteModel` needs no guard for it here


def _check_tflm(tflite_path, verify, keras_outputs, per_step, workdir, timeout, arena_size,
                *, streaming=True):
    """Runs the file in TFLM (child process: a small arena, or F22, aborts it)."""
    x_path = os.path.join(workdir, "tflm_x.npz")
    np.savez(x_path, x=verify)
    if arena_size is None:
        arena_size = max(64 * 1024, 10 * os.path.getsize(tflite_path))
    job = {
        "tflite_path": tflite_path,
        "x_path": x_path,
        "outputs_path": os.path.join(workdir, "tflm_outputs.npz"),
        "per_step": per_step,
        "streaming": streaming,
        "arena_size": int(arena_size),
    }
    result, detail = _run_worker("tflm", job, workdir, timeout)
    if result is None:
        return {"runs": False, "error": detail, "arena_bytes": None, "max_abs_error": None}
    if not result["ok"]:
        return {"runs": False, "error": f"{result['error_type']}: {result['message']}",
                "arena_bytes": None, "max_abs_error": None}
    outputs = np.load(job["outputs_path"])["tflm"]
    return {
        "runs": True,
        "error": None,
        "arena_bytes": result["arena_bytes"],
        "arena_size_given": int(arena_size),
        "max_abs_error": float(np.abs(outputs - keras_outputs).max()),
        "seconds_per_step_host": result["seconds_per_step"],
    }


__all__ = ["ExportResult", "ExportError", "to_tflite", "write_c_array", "DEFAULT_TOLERANCES"]

"""Every TFLite converter setting gru-zoo uses, in one place.

`convert(model, recipe=..., quantization=...)` turns a recipe's Keras model (see
`export.recipes`) into `.tflite` bytes. It is called in a child process by
`export.to_tflite` (see `export._worker`): some settings crash the converter
(calibrated quantization of a `WHILE` loop: docs/tflite-facts.md, F5) and must never
take the caller's process down.
"""

import enum
import tempfile

import numpy as np

QUANTIZATIONS = (None, "float16", "dynamic", "int8", "int16x8")
# The forms of the model the converter is given (built by `export.recipes`) are
# defined here, beside the other settings, because this module imports no Keras:
# `import export` stays light.


class Form(enum.StrEnum):
    """The graph form of an exported model: what `to_tflite(..., form=...)` asks for.

    One value says both how the GRU layers are laid out and whether the file streams:
    `STEP` is the streaming form (one frame in, the states carried by the caller); the
    others take whole sequences. Older code calls it the export recipe
    (`to_tflite(recipe=...)`, `ExportResult.recipe`), and gives the streaming form as
    `streaming=True`; both still work. A `str` enum: `Form.LOOP == "loop"`.

    Members:
        AUTO: chosen per model, length and quantization (with fallbacks).
        LOOP: Keras's recurrent layers as a `WHILE` loop over the time steps.
        UNROLLED: every time step spelled out (needs a fixed length).
        CHUNKED: the GRU layers as a loop over chunks of steps (needs forward GRU
            layers without a mask and a fixed length).
        STEP: one time step; the streaming file (inputs `frame` and each state).
    """

    AUTO = "auto"
    LOOP = "loop"
    UNROLLED = "unrolled"
    CHUNKED = "chunked"
    STEP = "step"


# The concrete forms (`Form` less `AUTO`) as strings; `export.recipes` re-exports it.
RECIPES = tuple(form.value for form in Form if form is not Form.AUTO)
CALIBRATED = ("int8", "int16x8")
# How an int8 file stores fully connected weights (`convert(int8_weights=...)`).
INT8_WEIGHTS = ("auto", "per_channel", "per_tensor")
IO_TYPES = {
    None: ("float32",),
    "float16": ("float32",),
    "dynamic": ("float32",),
    "int8": ("float32", "int8"),
    "int16x8": ("float32", "int16"),
}
SIGNATURE_KEY = "serving_default"


def _signature(model):
    """Ordered `[(name, tf.TensorSpec)]` of the model's inputs."""
    import tensorflow as tf

    if isinstance(model.input, dict):
        items = list(model.input.items())
    else:
        items = [("inputs", model.inputs[0])]
    return [(name, tf.TensorSpec(tensor.shape, tensor.dtype, name=name)) for name, tensor in items]


def save_for_conversion(model, directory):
    """Writes `model` as a SavedModel with one endpoint of named inputs and outputs.

    `keras.export.ExportArchive` with named `tf.TensorSpec`s gives stable signature
    names (a `tf.Module` saved as it is keeps its weights as variables the file cannot
    read: docs/tflite-facts.md, F8c); the weights are frozen by the converter.
    """
    import keras

    signature = _signature(model)
    names = [name for name, _ in signature]
    dict_inputs = isinstance(model.input, dict)

    def serve(*args):
        inputs = dict(zip(names, args)) if dict_inputs else args[0]
        outputs = model(inputs, training=False)
        return outputs if isinstance(outputs, dict) else {"output": outputs}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE_KEY, serve, [spec for _, spec in signature])
    archive.write_out(directory, verbose=False)
    return names


def convert(
    model,
    *,
    quantization=None,
    io_type="float32",
    representative=None,
    allow_select_tf_ops=False,
    notes=None,
    calibrate_loops=False,
    int8_weights="auto",
    float_layers=(),
    float_softmax_over=None,
):
    """Converts a recipe model to `.tflite` bytes.

    Args:
        model: a Keras model from `export.recipes` (static batch 1).
        quantization: one of `QUANTIZATIONS`.
        io_type: `"float32"`, or `"int8"` (int8) / `"int16"` (int16x8) for integer
            inputs and outputs. Token-id inputs stay int32.
        representative: for calibrated modes, a list of dicts `{input name: array with
            batch 1}`.
        allow_select_tf_ops: bool, let the converter fall back to TensorFlow (Flex) ops.
        notes: optional list; what the conversion had to repair is appended to it
            (see `export.quantization` for int16x8).
        calibrate_loops: bool, int8 only: calibrate with `export.calibration` (which
            runs `WHILE` loop bodies iteration by iteration) instead of the converter's
            calibrator, which crashes on loops. For the `"chunked"` and `"loop"`
            recipes.
        float_layers: int8 only: names of the layers whose ops stay float
            (`export.calibration.float_layer_names` gives the default ones); empty: fully
            integer.
        float_softmax_over: int8 only: int or None, `SOFTMAX` ops over more values
            than this stay float (`export.calibration.INT8_SOFTMAX_MAX_VALUES`).
        int8_weights: one of `INT8_WEIGHTS`, int8 only: fully connected weights
            per-channel, per-tensor, or (`"auto"`) per-channel only when their output
            channels' ranges differ widely (`export.calibration.PER_CHANNEL_SPREAD`).
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="gru_zoo_savedmodel_") as directory:
        names = save_for_conversion(model, directory)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            directory, signature_keys=[SIGNATURE_KEY]
        )
        builtins = tf.lite.OpsSet.TFLITE_BUILTINS
        if quantization == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantization in CALIBRATED:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            samples = list(representative)

            def representative_dataset():
                for sample in samples:
                    yield {name: np.asarray(sample[name]) for name in names}

            converter.representative_dataset = representative_dataset
            if quantization == "int8":
                builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            else:
                builtins = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            if io_type == "int8":
                # (int16x8 io types are set by `quantize_int16x8`.)
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
            per_channel_dense = True
            if quantization == "int8":
                from export.calibration import PER_CHANNEL_SPREAD, dense_channel_spread

                spread = dense_channel_spread(model)
                if int8_weights == "auto":
                    per_channel_dense = spread > PER_CHANNEL_SPREAD
                    why = f"per-channel above {PER_CHANNEL_SPREAD:g}x"
                else:
                    per_channel_dense = int8_weights == "per_channel"
                    why = f"int8_weights={int8_weights!r}"
                if not per_channel_dense:
                    # The converter's int8 quantizer reads this private switch (there is
                    # no public one); without it the file is only larger.
                    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
                if notes is not None:
                    notes.append(
                        f"int8: fully connected weights {'per-channel' if per_channel_dense else 'per-tensor'} "
                        f"(largest per-output-channel range {spread:.2f}x the median; {why})")
        supported = [builtins]
        if allow_select_tf_ops:
            supported.append(tf.lite.OpsSet.SELECT_TF_OPS)
        converter.target_spec.supported_ops = supported
        if quantization == "int16x8":
            # A bias shared by the unrolled time steps needs care in 16x8
            # (export.quantization explains the root cause and the fix).
            from export.quantization import quantize_int16x8

            content, repairs = quantize_int16x8(
                converter,
                io_dtype=tf.int16 if io_type == "int16" else tf.float32,
                allow_float=allow_select_tf_ops,
            )
            if notes is not None:
                notes.extend(repairs)
            return content
        if quantization == "int8":
            from export.calibration import output_layer_names, quantize_int8

            long_softmax = float_softmax_over is not None and any(
                (dimension or 0) > float_softmax_over
                for tensor in model.inputs for dimension in tensor.shape[1:2])
            if calibrate_loops or float_layers or long_softmax:
                return quantize_int8(converter, samples,
                                     io_dtype=tf.int8 if io_type == "int8" else tf.float32,
                                     per_channel_dense=per_channel_dense,
                                     keep_float=list(float_layers), notes=notes,
                                     output_layers=output_layer_names(model),
                                     float_softmax_over=float_softmax_over)
        return converter.convert()

"""export: verified TFLite (LiteRT) files from gru-zoo Keras models.

>>> from export import to_tflite, LiteModel, read_metadata
>>> result = to_tflite("model.keras", "model.tflite")                 # float32
>>> result = to_tflite(model, "model_int8.tflite", quantization="int8",
...                    representative_data=x_train)                  # calibrated
>>> result = to_tflite(model, "step.tflite", form="step")             # one frame at a time
>>> LiteModel("model.tflite").predict(x_test)
>>> read_metadata("model.tflite")["labels"]
"""

from export.converter import CALIBRATED, QUANTIZATIONS, Form
from export.errors import (
    ConversionCrashError,
    ConversionError,
    ExportError,
    UnsupportedOpsError,
    VerificationError,
)
from export.exporter import DEFAULT_TOLERANCES, RECIPE_CHOICES, ExportResult, to_tflite, write_c_array
from export.metadata import add_metadata, list_ops, op_report, read_metadata, strip_tensor_names
from export.runtime import LiteModel

__all__ = [
    "CALIBRATED",
    "QUANTIZATIONS",
    "RECIPE_CHOICES",
    "DEFAULT_TOLERANCES",
    "ConversionCrashError",
    "ConversionError",
    "ExportError",
    "ExportResult",
    "Form",
    "LiteModel",
    "UnsupportedOpsError",
    "VerificationError",
    "add_metadata",
    "list_ops",
    "op_report",
    "read_metadata",
    "strip_tensor_names",
    "to_tflite",
    "write_c_array",
]

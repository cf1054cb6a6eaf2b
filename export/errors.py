"""Errors raised by `export`: each says what failed, with which recipe, and what to do."""


class ExportError(RuntimeError):
    """Base class of the errors `to_tflite` raises after argument validation."""


class ConversionError(ExportError):
    """The TFLite converter raised an error for every recipe that was tried."""


class ConversionCrashError(ConversionError):
    """The converter process died (e.g. a segmentation fault) and no fallback worked."""


class UnsupportedOpsError(ExportError):
    """The converted file holds Flex (Select TF) or custom ops that were not allowed."""


class VerificationError(ExportError):
    """The converted file ran, but its outputs differ from Keras beyond the tolerance."""

"""TensorFlow's start-up logging, kept off the terminal of the command line.

No TensorFlow import here: `zoo.cli` uses this before TensorFlow is loaded.
"""

import contextlib
import os
import re
import sys
import threading

# What TensorFlow's native libraries print while loading and looking for devices: absl
# log lines ("I0000 00:00:... port.cc:153] oneDNN custom operations are on", "cuInit"),
# absl's banner and the CPU-feature notice's second line; and the LiteRT interpreter's
# notice when it creates its CPU delegate.
STARTUP_NOISE = re.compile(
    r"^(?:[IWE]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: "
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$)")


@contextlib.contextmanager
def startup_noise_filtered(show=False):
    """Within the block, native code's writes to stderr lose `STARTUP_NOISE` lines.

    Python cannot silence C code's writes, so descriptor 2 is a pipe meanwhile, and a
    thread passes every other line on to the real stderr as it comes (so a crash in
    the block still shows its message). With `show=True` (`--debug`) every line passes.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if show or not STARTUP_NOISE.match(line.decode("utf-8", "replace")):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, daemon=True, name="startup-noise-filter")
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread drains and ends
        thread.join(timeout=5)
        os.close(saved)


def import_tensorflow_quietly(show=False):
    """Imports TensorFlow and Keras without their start-up logging.

    TensorFlow's native libraries write 6-9 log lines to file descriptor 2 while they
    load (before `TF_CPP_MIN_LOG_LEVEL` is read), including an "E0000 ... failed call
    to cuInit" line on machines without a GPU that reads like an error.
    """
    if "tensorflow" in sys.modules:
        return
    with startup_noise_filtered(show):
        import tensorflow as tf
        import keras  # noqa: F401

        tf.config.list_physical_devices()  # the device scan logs (cuInit) here


def strip_startup_noise(text):
    """`text` (e.g. a child process's log) without TensorFlow's start-up lines."""
    return "\n".join(line for line in text.splitlines() if not STARTUP_NOISE.match(line))

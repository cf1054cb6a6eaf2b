"""TensorFlow's start-up logging, kept off the terminal of the command line.

No TensorFlow import here: `zoo.cli` uses this before TensorFlow is loaded.
"""

import os
import re
import sys

# What TensorFlow's native libraries print while loading and looking for devices: absl
# log lines ("I0000 00:00:... port.cc:153] oneDNN custom operations are on", "cuInit"),
# absl's banner and the CPU-feature notice's second line.
STARTUP_NOISE = re.compile(
    r"^(?:[IWE]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: )")


def import_tensorflow_quietly(show=False):
    """Imports TensorFlow and Keras with their start-up logging filtered out.

    TensorFlow's native libraries write 6-9 log lines to file descriptor 2 while they
    load (before `TF_CPP_MIN_LOG_LEVEL` is read), including an "E0000 ... failed call
    to cuInit" line on machines without a GPU that reads like an error. Python cannot
    silence C code's writes, so during the import and the device scan descriptor 2 is
    a pipe, and a thread passes every line but that start-up noise on to the real
    stderr as it comes (so a crash while importing still shows its message). With
    `show=True` (`--debug`) every line passes.
    """
    if "tensorflow" in sys.modules:
        return
    import threading

    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if show or not STARTUP_NOISE.match(line.decode("utf-8", "replace")):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, daemon=True, name="tf-startup-log")
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        import tensorflow as tf
        import keras  # noqa: F401

        tf.config.list_physical_devices()  # the device scan logs (cuInit) here
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread drains and ends
        thread.join(timeout=5)
        os.close(saved)


def strip_startup_noise(text):
    """`text` (e.g. a child process's log) without TensorFlow's start-up lines."""
    return "\n".join(line for line in text.splitlines() if not STARTUP_NOISE.match(line))

"""Child-process side of `LiteModel`'s guard: the first inference of an untrusted file.

Run as `python -m export._guard MEMORY_BYTES INTERPRETER < model.tflite`. The process
limits its own address space to MEMORY_BYTES, loads the file from stdin, runs every
signature once on zero inputs and prints one JSON line: `{"ok": true}` or the error.
The parent (`export.runtime`) kills it after its time limit; a file that crashes the
interpreter kills only this process.

Test hook: the environment variable `GRU_ZOO_GUARD_SIMULATE` makes the child `hang`
(sleep), `crash` (SIGSEGV) or `allocate` (ask for more memory than its limit) instead
of loading the file.
"""

import json
import os
import signal
import sys
import time

try:
    import resource
except ImportError:  # not POSIX: only the parent's time limit applies
    resource = None

SIMULATE_ENV = "GRU_ZOO_GUARD_SIMULATE"


def _zeros(details, window):
    import numpy as np

    shape = [int(v) for v in details["shape_signature"]]
    # A free batch is 1; a free time dimension the file's window (or 1).
    shape = [(1 if i == 0 else window) if v < 0 else v for i, v in enumerate(shape)]
    return np.zeros(shape, dtype=details["dtype"])


def first_inference(content, interpreter_kind):
    import numpy as np  # noqa: F401  (before the limit bites: fail on the model, not here)

    if interpreter_kind == "tensorflow":
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    else:
        from ai_edge_litert.interpreter import Interpreter
    from export.metadata import read_metadata

    window = 1
    try:
        window = int((read_metadata(content) or {}).get("window_length") or 1)
    except (ValueError, TypeError):
        pass  # damaged metadata: the parent reports it by name
    interpreter = Interpreter(model_content=content, num_threads=1)
    for key in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(key)
        runner(**{name: _zeros(d, window) for name, d in runner.get_input_details().items()})


def main(argv):
    memory, interpreter_kind = int(argv[1]), argv[2]
    content = sys.stdin.buffer.read()
    simulate = os.environ.get(SIMULATE_ENV)
    # Import the interpreter before the limit: its shared libraries map large virtual
    # ranges that are not memory the model uses.
    if interpreter_kind != "tensorflow":
        import ai_edge_litert.interpreter  # noqa: F401
    if resource is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        if simulate == "hang":
            time.sleep(3600)
        elif simulate == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif simulate == "allocate":
            bytearray(2 * memory)
        first_inference(content, interpreter_kind)
    except MemoryError:
        print(json.dumps({"ok": False, "memory": True, "error": "MemoryError"}), flush=True)
        return 0
    except Exception as error:  # noqa: BLE001 (reported to the parent, which raises)
        message = " ".join(str(error).split())[:500]
        print(json.dumps({"ok": False, "memory": "alloc" in message.lower(),
                          "error": f"{type(error).__name__}: {message}"}), flush=True)
        return 0
    print(json.dumps({"ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

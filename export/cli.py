"""`gru-zoo export | inspect | bench` and the export step of `gru-zoo run`.

Found by `zoo.cli` through the `gru_zoo.commands` and `gru_zoo.run_steps` entry points;
`register` also gives zoo's `gru-zoo compare` its TFLite converter.
"""

import argparse
import ast
import json
import os
import pathlib
import re
import statistics
import sys
import time
import warnings

import numpy as np

from export.converter import INT8_WEIGHTS, IO_TYPES, Form
from export.runtime import MAX_THREADS
from zoo.checks import fail, is_int

QUANTIZE_CHOICES = ("float32", "float16", "dynamic", "int8", "int16x8")


def _quantization(name):
    return None if name in (None, "float32") else name


_DATA_SUFFIXES = (".ts", ".csv", ".tsv", ".txt")


def _training_data_source(model_path):
    """The data file and loader options the model was trained on, from the `config.json`
    that `zoo.train` writes beside `model.keras`, or `(None, {})`."""
    config_path = pathlib.Path(model_path).parent / "config.json"
    try:
        source = json.loads(config_path.read_text())["dataset"].get("source") or {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, {}
    path = source.get("path")
    return (path, dict(source.get("options") or {})) if path else (None, {})


def _load_data(spec, model_path=None):
    """`--data`: the data to calibrate and verify with.

    A `.ts`/`.csv` file, or a `.npz` that the model was trained on (its run's
    `config.json` names it), is loaded as training loaded it (`zoo.load_dataset`: the
    same normalization, label names and splits); another `.npz`/`.npy` holds inputs as
    the model takes them; a name is an embedded dataset. Without `--data`, the file the
    run's `config.json` names is used when it still exists.

    Returns `(calibration_x, validation (x, y) or None, labels, normalization)`.
    """
    if spec is not None and os.path.isdir(spec):
        fail("--data", spec, f"a data file ({', '.join(('.npz', '.npy') + _DATA_SUFFIXES)}) "
             "or a dataset name (it is a directory)")
    trained_on, options = _training_data_source(model_path) if model_path else (None, {})
    if spec is None:
        if trained_on is None or not os.path.isfile(trained_on):
            return None, None, None, None
        spec = trained_on
    if os.path.isfile(spec) and not spec.lower().endswith(_DATA_SUFFIXES) and not (
            trained_on and os.path.samefile(spec, trained_on)):
        arrays = _load_arrays(spec)
        if not hasattr(arrays, "files"):
            return arrays, None, None, None
        keys = set(arrays.files)
        for x_key in ("x_train", "x", "inputs"):
            if x_key in keys:
                break
        else:
            raise ValueError(f"`--data` file {spec!r} must hold an array named x_train, x or "
                             f"inputs. Received: arrays {sorted(keys)}")
        validation = None
        if {"x_test", "y_test"} <= keys:
            validation = (arrays["x_test"], arrays["y_test"])
        elif "y" in keys:
            validation = (arrays[x_key], arrays["y"])
        return arrays[x_key], validation, None, None
    if not os.path.isfile(spec) and spec.lower().endswith((*_DATA_SUFFIXES, ".npz", ".npy")):
        raise FileNotFoundError(f"`--data` file {spec!r} does not exist")
    from zoo import load_dataset

    same = trained_on is not None and os.path.isfile(spec) and os.path.samefile(spec, trained_on)
    try:
        dataset = load_dataset(spec, **(options if same else {}))
    except (ValueError, TypeError, OSError) as error:
        renamed = _renamed(error, "name", "--data", spec)  # an unknown dataset name
        if renamed is None:
            raise
        raise renamed from None
    return (dataset.x_train, (dataset.x_test, dataset.y_test), dataset.label_names,
            dataset.normalization)


def _load_arrays(path):
    """`np.load` of a `--data` file, or one `ValueError` naming it (pickled object
    arrays are refused: loading them runs code from the file)."""
    expected = ("a .npz archive (np.savez) with x_train, x or inputs, or a .npy array of "
                "model inputs")
    try:
        arrays = np.load(path, allow_pickle=False)
    except ValueError as error:
        reason = ("it holds pickled (object) arrays, which gru-zoo does not load"
                  if "pickle" in str(error) else " ".join(str(error).split()))
        raise ValueError(f"`--data` file {path!r} must be {expected}; {reason}") from None
    except (OSError, EOFError) as error:
        raise ValueError(f"`--data` file {path!r} must be {expected}; it is not a NumPy "
                         f"file ({' '.join(str(error).split())[:200]})") from None
    return arrays


def _jsonable(normalization):
    if normalization is None:
        return None
    return {key: np.asarray(value).tolist() for key, value in normalization.items()}


# What `--out` may not end in with --c-array: C and C++ sources and headers (the C array
# is written to <--out without its suffix>.cc and .h).
_C_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".hxx")
# The flag a `to_tflite` argument comes from, and what of `--data` it is (for errors).
_FLAGS = {"path": ("--out", None), "representative_data": ("--data", None),
          "verification_data": ("--data", None), "validation_data": ("--data", "its test split"),
          "labels": ("--data", "its class names"),
          "normalization": ("--data", "its normalization")}
# The errors of bad input that `_renamed` rewrites (the types keep their meaning).
_INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError,
                 IsADirectoryError, NotADirectoryError, PermissionError)


def _renamed(error, argument, flag, value, what=None):
    """`error` (raised by the library about `argument`: "`argument` must be ...
    Received: argument=...") as the same error about the command line's `flag` and
    the `value` given to it, or `None` when it is about something else."""
    message = str(error)
    if type(error) not in _INPUT_ERRORS or not message.startswith(f"`{argument}` "):
        return None
    subject = f"`{flag}`" + (f" ({what})" if what else "")
    match = re.fullmatch(rf"`{argument}` (.*)\. Received: {argument}=(.*)", message, re.S)
    if match is None:
        return type(error)(subject + message[len(argument) + 2:])
    allowed, received = match.groups()
    shown = f"{flag}={value!r}" if value is not None else f"no {flag}"
    if received != repr(value):  # not the flag's value itself: what the library got
        try:  # a description (`'array of shape (5, 7, 3)'`), without its quotes
            described = ast.literal_eval(received)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            described = None
        if isinstance(described, str):
            shown += f" ({described})"
        else:  # a value (a part of what --data gave: labels) under the library's name
            shown += f" ({argument}={received})"
    return type(error)(f"{subject} {allowed}. Received: {shown}")


def _check_export_flags(args):
    """The flags `to_tflite` cannot name: checked before any data is read."""
    out = args.out
    if not out:
        fail("--out", out, "the path of the .tflite file to write (it is empty)")
    if out.endswith(tuple(filter(None, (os.sep, os.altsep)))) or \
            os.path.basename(out) in (".", ".."):
        # `to_tflite` would take 'newdir/' for the file 'newdir'
        fail("--out", out, "a file path (it ends in a path separator or '.', as a folder "
             "does)")
    if args.c_array and os.path.splitext(out)[1].lower() in _C_SUFFIXES:
        fail("--out", out, f"the path of the .tflite file, not of C source or a header "
             f"(ending in one of {list(_C_SUFFIXES)}), with --c-array: it writes "
             "<name>.cc and <name>.h beside --out")
    quantization = _quantization(args.quantize)
    if args.io_type not in IO_TYPES[quantization]:
        needs = {"int8": "int8", "int16": "int16x8"}.get(args.io_type)
        fail("--io-type", args.io_type, f"one of {list(IO_TYPES[quantization])} with "
             f"--quantize {args.quantize}" + (f" (--io-type {args.io_type} needs --quantize "
                                               f"{needs})" if needs else ""))
    if args.c_array:
        from export.exporter import C_ARRAY_MARKER, is_generated_c_file

        stem = os.path.splitext(out)[0]
        for target in (stem + ".cc", stem + ".h"):
            if os.path.lexists(target) and not (os.path.isfile(target)
                                                and is_generated_c_file(target)):
                kind = "a directory" if os.path.isdir(target) else "a file gru-zoo did not write"
                raise FileExistsError(
                    f"`--c-array` would overwrite {target!r}, which is {kind} (gru-zoo's C "
                    f"files start with {C_ARRAY_MARKER!r}; it does not overwrite others): "
                    f"move it or choose another --out. Received: --out={out!r}")


def _model_input_shape(model_path):
    """The input shape (without the batch) of a `.keras` file, read from its
    `config.json` without Keras; `None` when it cannot be read there (`to_tflite`
    checks the data against the loaded model then)."""
    import zipfile

    try:
        with zipfile.ZipFile(model_path) as archive:
            config = json.loads(archive.read("config.json"))
        inputs = [layer for layer in config["config"]["layers"]
                  if layer.get("class_name") == "InputLayer"]
        if len(inputs) != 1:
            return None
        layer_config = inputs[0]["config"]
        shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
        if not isinstance(shape, list) or not all(v is None or isinstance(v, int)
                                                  for v in shape):
            return None
        return tuple(shape[1:])
    except Exception:  # noqa: BLE001 (any other file: `to_tflite` names what is wrong)
        return None


def _check_data_shape(model_path, data, validation, shown, default):
    """`--data`'s inputs against the model's input shape, before `to_tflite` checks its
    labels: data of another task would otherwise be reported as wrong labels."""
    expected = _model_input_shape(model_path)
    if expected is None:
        return
    for part, x in (("", data), ("its test split: ", None if validation is None
                                 else validation[0])):
        if x is None:
            continue
        shape = np.shape(x)
        if len(shape) == len(expected) + 1 and all(
                size is None or size == got for size, got in zip(expected, shape[1:])):
            continue
        text = "(" + ", ".join("any" if v is None else str(v) for v in expected) + \
            ("," if len(expected) == 1 else "") + ")"
        raise ValueError(
            f"`--data` must hold inputs of the model's input shape {text} per sample"
            + (" (without --data: the training data that config.json beside the model "
               "names)" if default else "")
            + f". Received: --data={shown!r} ({part}inputs of shape {tuple(shape[1:])} per "
            f"sample, {tuple(shape)} in all)")


def cmd_export(args):
    from export import to_tflite

    _check_export_flags(args)
    calibration, validation, labels, normalization = _load_data(args.data, args.model)
    shown = args.data if args.data is not None else _training_data_source(args.model)[0]
    _check_data_shape(args.model, calibration, validation, shown, args.data is None)
    # Calibration for the integer modes; otherwise only as verification inputs
    # (and the length of a model of any length) when there is no validation split.
    representative = calibration if (
        args.quantize in ("int8", "int16x8") or validation is None) else None
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            result = to_tflite(
                args.model,
                args.out,
                quantization=_quantization(args.quantize),
                representative_data=representative,
                streaming=args.streaming,
                form=args.form,
                io_type=args.io_type,
                validation_data=validation,
                labels=labels,
                normalization=_jsonable(normalization),
                allow_select_tf_ops=args.allow_select_tf_ops,
                fallback=not args.no_fallback,
                c_array=args.c_array,
                check_tflm=args.check_tflm,
                int8_weights=args.int8_weights,
                int8_float_layers=[] if args.int8_fully_integer else "auto",
            )
    except _INPUT_ERRORS as error:
        message = str(error)
        argument = message[1:].split("`", 1)[0] if message.startswith("`") else None
        flag, what = _FLAGS.get(argument, (None, None))
        renamed = flag and _renamed(error, argument, flag,
                                    args.out if flag == "--out" else shown, what)
        if not renamed:
            raise
        raise renamed from None
    finally:
        _show_warnings(caught, args)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 0
    print(result)
    for attempt in result.attempts:
        detail = (attempt["detail"] or "").strip().splitlines()
        print(f"  form {attempt['recipe']}: {attempt['outcome']}"
              + (f" ({detail[0][:160]})" if detail else ""))
    if result.evaluation:
        e = result.evaluation
        print(f"  {e['metric']} on {e['samples']} samples: keras {e['keras']:.4f}, "
              f"tflite {e['tflite']:.4f} (change {e['change']:+.4f})")
    if result.tflm:
        t = result.tflm
        if t["runs"]:
            print(f"  TFLite Micro: runs, arena {t['arena_bytes']} bytes, "
                  f"max error {t['max_abs_error']:.3g}")
        else:
            print(f"  TFLite Micro: does not run ({t['error']})")
    if result.c_array_path:
        print(f"  C array: {result.c_array_path}")
    print(f"  ops: {', '.join(result.ops)}")
    print(f"  conversion {result.convert_seconds:.1f} s, total {result.total_seconds:.1f} s")
    return 0


def _show_warnings(caught, args):
    """`to_tflite`'s warnings as one plain line each on stderr (not Python's warning
    format with a source line)."""
    for warning in caught:
        message = " ".join(str(warning.message).split())
        if message.startswith("`representative_data` is not used by quantization="):
            # The CLI passes --data without a test split as verification inputs.
            print(f"gru-zoo export: note: --data verifies the file (--quantize "
                  f"{args.quantize} is not calibrated)", file=sys.stderr)
        else:
            print(f"gru-zoo export: warning: {message}", file=sys.stderr)


def describe(path):
    """A dict describing a `.tflite` file: size, signatures, ops, metadata."""
    from export import LiteModel, op_report
    from zoo.quiet import startup_noise_filtered

    with startup_noise_filtered():  # the interpreter's notice on its CPU delegate
        lite = LiteModel(path)
        runners = {key: lite.runner(key) for key in lite.signatures}
    signatures = {}
    for key, runner in runners.items():
        signatures[key] = {
            kind: {
                name: {
                    "shape": [int(v) for v in d["shape_signature"]],
                    "dtype": np.dtype(d["dtype"]).name,
                }
                for name, d in details.items()
            }
            for kind, details in (("inputs", runner.get_input_details()),
                                  ("outputs", runner.get_output_details()))
        }
    return {
        "path": os.path.abspath(path),
        "size": lite.size,
        "streaming": lite.is_streaming,
        "signatures": signatures,
        "ops": op_report(path),
        "metadata": lite.metadata,
    }


def _check_tflite_path(path):
    if os.path.isdir(path):
        raise ValueError(f"`model` must be a .tflite file. Received: {path!r} (a directory)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such .tflite file: {path!r}")


def cmd_inspect(args):
    _check_tflite_path(args.model)
    info = describe(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}: {info['size']} bytes, "
          f"{'streaming step model' if info['streaming'] else 'full-sequence model'}")
    for key, signature in info["signatures"].items():
        print(f"signature {key!r}:")
        for kind in ("inputs", "outputs"):
            for name, d in signature[kind].items():
                print(f"  {kind[:-1]:<6} {name:<16} {d['dtype']:<8} {d['shape']}")
    ops = info["ops"]
    print(f"builtin ops ({len(ops['builtin'])}): {', '.join(ops['builtin'])}")
    if ops["flex"] or ops["custom"]:
        print(f"flex ops: {ops['flex']}  custom ops: {ops['custom']}")
    meta = info["metadata"]
    if meta is None:
        print("metadata: none (not a gru-zoo file)")
    else:
        print("metadata:")
        for key in ("gru_zoo_version", "model_name", "task", "recipe", "quantization",
                    "io_type", "window_length", "sequence_shape", "labels", "normalization",
                    "states", "config"):
            print(f"  {key}: {json.dumps(meta.get(key))}")
    return 0


def bench(path, *, runs=200, warmup=20, num_threads=1, sequence_length=None, seed=0):
    """Median latency of one inference of a `.tflite` file on random inputs.

    For a streaming file, one inference is one frame; `per_sequence_us` multiplies by
    the window length of its metadata (or `sequence_length`).

    Returns a dict of microseconds (`median_us`, `p90_us`, `min_us`) and the setting.
    """
    from export import LiteModel
    from export.runtime import amx_granted

    for argument, value, minimum in (("runs", runs, 1), ("warmup", warmup, 0),
                                     ("num_threads", num_threads, 1)):
        if not is_int(value) or value < minimum:
            fail(argument, value, f"an int >= {minimum}")
    if sequence_length is not None and (not is_int(sequence_length) or sequence_length < 1):
        fail("sequence_length", sequence_length, "None or a positive int")
    runs, warmup, num_threads = int(runs), int(warmup), int(num_threads)

    from zoo.quiet import startup_noise_filtered

    with startup_noise_filtered():
        lite = LiteModel(path, num_threads=num_threads)
        runner = lite.runner()
    details = runner.get_input_details()
    rng = np.random.default_rng(seed)
    feed = {}
    for name, d in details.items():
        shape = [int(v) for v in d["shape_signature"]]
        if any(v < 0 for v in shape):
            length = sequence_length or (lite.metadata or {}).get("window_length") or 50
            shape = [1 if i == 0 else (length if v < 0 else v) for i, v in enumerate(shape)]
        if np.issubdtype(d["dtype"], np.integer) and not d["quantization_parameters"]["scales"].size:
            feed[name] = rng.integers(1, 2, size=shape).astype(d["dtype"])
        elif np.issubdtype(d["dtype"], np.integer):
            info = np.iinfo(d["dtype"])
            feed[name] = rng.integers(info.min // 2, info.max // 2, size=shape).astype(d["dtype"])
        else:
            feed[name] = rng.standard_normal(shape).astype(d["dtype"])
    for _ in range(warmup):
        runner(**feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(**feed)
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    result = {
        "path": os.path.abspath(path),
        "size": lite.size,
        "runs": runs,
        "num_threads": num_threads,
        "median_us": statistics.median(times),
        # interpolated between the two nearest runs: never below the median
        "p90_us": float(np.percentile(times, 90)),
        "min_us": times[0],
        "streaming": lite.is_streaming,
    }
    if lite.is_streaming:
        window = sequence_length or (lite.metadata or {}).get("window_length")
        if window:
            result["window_length"] = window
            result["per_sequence_us"] = result["median_us"] * window
    result["notes"] = []
    if (lite.metadata or {}).get("quantization") == "int8" and amx_granted():
        result["notes"].append(
            "this CPU has AMX and XNNPACK ran the file's int8 products with AMX kernels, "
            "which are slow for a batch-1 recurrence's one-row products: a CPU without "
            "AMX (AMD, older Intel, ARM) runs int8 files 1.2-1.5x faster relative to "
            "float32 ones (docs/tflite-facts.md, F25)")
    return result


def cmd_bench(args):
    _check_tflite_path(args.model)
    result = bench(args.model, runs=args.runs, warmup=args.warmup, num_threads=args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    unit = "per frame" if result["streaming"] else "per sequence"
    print(f"{result['path']}: {result['size']} bytes, {args.threads} thread(s), {args.runs} runs")
    print(f"  median {result['median_us']:.1f} us {unit}, p90 {result['p90_us']:.1f} us, "
          f"min {result['min_us']:.1f} us")
    if "per_sequence_us" in result:
        print(f"  x {result['window_length']} frames = {result['per_sequence_us']:.1f} us per sequence")
    for note in result["notes"]:
        print(f"  note: {note}")
    return 0


def _int_at_least(minimum, maximum=None, why=""):
    """argparse type: an int >= `minimum` (and <= `maximum`: `why` says why), the error
    naming the flag and the value."""
    allowed = (f"an int >= {minimum}" if maximum is None
               else f"an int from {minimum} to {maximum}{why}")

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    parse.__name__ = allowed[3:]
    return parse


def register(subparsers):
    """Adds `export`, `inspect` and `bench` to the `gru-zoo` command line."""
    p = subparsers.add_parser("export", help="convert a .keras model to a verified .tflite file")
    p.add_argument("model", help="the trained model (.keras)")
    p.add_argument("--out", required=True, help="destination .tflite path")
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="float32",
                   help="quantization mode (default float32)")
    p.add_argument("--data", help="calibration/validation data: a .npz (x_train or x, "
                   "optional x_test/y_test or y) or .npy file, or a dataset name "
                   "(gunpoint, italy_power_demand, airline_passengers, adding)")
    p.add_argument("--streaming", action="store_true",
                   help="export the one-time-step model (frame + states in and out); "
                   "the same as --form step")
    p.add_argument("--form", "--recipe", dest="form", choices=[form.value for form in Form],
                   default="auto", help="graph form of the file (default: chosen per model "
                   "and length; 'chunked': GRU layers as a loop over chunks of steps; "
                   "'step': the streaming model, as --streaming). --recipe is its older name")
    p.add_argument("--io-type", default="float32", choices=("float32", "int8", "int16"),
                   help="input/output type of integer-quantized files (default float32)")
    p.add_argument("--int8-weights", default="auto", choices=INT8_WEIGHTS,
                   help="int8 only: fully connected weights per-channel, per-tensor, or "
                   "(auto, the default) per-channel only where channel ranges differ widely")
    p.add_argument("--int8-fully-integer", action="store_true",
                   help="int8 only: no float layers at all (by default window normalization, "
                   "the first convolution over the raw input and the online softmax of an "
                   "attention pooling computed in the loop stay float)")
    p.add_argument("--c-array", action="store_true", help="also write the file as C source "
                   "(checked in TFLite Micro unless --no-check-tflm)")
    p.add_argument("--check-tflm", action=argparse.BooleanOptionalAction, default=None,
                   help="run the file in TFLite Micro and report its arena (default: for "
                   "streaming files and --c-array); never picks the 'loop' form, and "
                   "writes the file for a microcontroller (with --c-array too): one time "
                   "step per loop iteration, a smaller arena")
    p.add_argument("--allow-select-tf-ops", action="store_true",
                   help="allow Flex ops (the file then needs the Select TF ops delegate)")
    p.add_argument("--no-fallback", action="store_true",
                   help="fail instead of trying another form")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("inspect", help="signatures, ops, size and metadata of a .tflite file")
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--json", action="store_true")
    # Reads the file with the LiteRT interpreter alone: no TensorFlow start-up.
    p.set_defaults(func=cmd_inspect, uses_tensorflow=False)

    p = subparsers.add_parser("bench", help="latency of a .tflite file on the LiteRT interpreter")
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--runs", type=_int_at_least(1), default=200,
                   help="timed inferences (default 200)")
    p.add_argument("--warmup", type=_int_at_least(0), default=20,
                   help="untimed inferences first (default 20)")
    p.add_argument("--threads", type=_int_at_least(
                       1, MAX_THREADS, " (4 times this machine's CPUs, at least 64)"),
                   default=1, help=f"interpreter threads (default 1, at most {MAX_THREADS})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench, uses_tensorflow=False)

    # zoo's `gru-zoo compare` has a TFLite-size column but does not import `export`
    # (docs/architecture.md): this package hands it the converter.
    compare = subparsers.choices.get("compare")
    if compare is not None:
        compare.set_defaults(tflite_converter=_compare_converter)


def _compare_converter(model, path):
    """`to_tflite(model, path)` for `gru-zoo compare` (imported on first use, so that
    building the parser does not load TensorFlow)."""
    from export import to_tflite

    return to_tflite(model, path)


def _summary(result):
    entry = {
        "size": result.size,
        "recipe": result.recipe,
        "max_abs_error": result.max_abs_error,
        "convert_seconds": round(result.convert_seconds, 1),
    }
    if result.evaluation:
        entry[f"keras_{result.evaluation['metric']}"] = result.evaluation["keras"]
        entry[f"tflite_{result.evaluation['metric']}"] = result.evaluation["tflite"]
    if result.fallback_used:
        entry["fallback_from"] = [a["recipe"] for a in result.attempts[:-1]]
    if result.tflm is not None:
        entry["tflm_runs"] = result.tflm["runs"]
        entry["tflm_arena_bytes"] = result.tflm.get("arena_bytes")
        entry["tflm_max_abs_error"] = result.tflm.get("max_abs_error")
    if result.warnings:
        entry["warnings"] = list(result.warnings)
    return entry


def run_step(context):
    """The export step of `gru-zoo run`: float32, int8 and streaming files of the model.

    Writes `export/*.tflite` (and the streaming model as C source) into the run
    directory, each verified against Keras, and returns sizes, errors and the test
    accuracy (or MSE) of every file. The streaming files (float32, int8 and, unless
    quick, int16x8) are written whenever the model streams (`export.streaming`: a model
    built with `causal=True`, as `--streaming` asks the recipe for, or a recurrent-only
    one); otherwise their entries say why not.
    """
    from export import chunked, recipes, to_tflite

    run_dir = pathlib.Path(context["run_dir"]) / "export"
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = context["dataset"]
    quick = bool(context.get("quick"))
    # The whole training split: `to_tflite` spreads its calibration samples over it
    # (training splits are often ordered by class; their first rows are not a sample).
    x_cal = np.asarray(dataset.x_train)
    validation = (dataset.x_test, dataset.y_test)
    common = dict(
        labels=list(dataset.label_names) if dataset.label_names is not None else None,
        normalization=_jsonable(dataset.normalization),
        metadata={"dataset": dataset.name, "builder": context.get("model_config") or {},
                  # Where the data came from (path, format, sha256) and the padding value
                  # of variable-length series, so a device pads its input the same way.
                  "source": getattr(dataset, "source", None),
                  "mask_value": getattr(dataset, "mask_value", None)},
        validation_data=validation,
    )
    model_path = str(context["model_path"])
    summary = {}
    plans = [("float32", None, False), ("int8", "int8", False), ("streaming_float32", None, True),
             ("streaming_int8", "int8", True)]
    if not quick:
        plans.insert(1, ("float16", "float16", False))
        plans.insert(2, ("dynamic", "dynamic", False))
        plans.insert(4, ("int16x8", "int16x8", False))
        # Running statistics (means, softmax denominators) over many frames keep their
        # precision in int16 (BENCHMARKS.md, "Streaming": GunPoint's causal GRU-FCN).
        plans.append(("streaming_int16x8", "int16x8", True))
    keras_model = recipes.load_model(model_path)
    try:
        recipes.streaming_plan(keras_model)
        streaming_reason = None
    except ValueError as error:
        streaming_reason = str(error)
    # Integer full-sequence files are for microcontrollers: they run in TFLite Micro too,
    # for its arena, when their form runs there (the chunked form; Keras's own loop,
    # which masked and LSTM models take, runs wrong there: docs/tflite-facts.md, F9).
    micro = chunked.chunkable(keras_model)
    for name, quantization, streaming in plans:
        if streaming and streaming_reason:
            summary[name] = {"skipped": streaming_reason}
            continue
        try:
            result = to_tflite(
                model_path,
                run_dir / f"model_{name}.tflite",
                quantization=quantization,
                representative_data=x_cal if quantization in ("int8", "int16x8") else None,
                streaming=streaming,
                c_array=streaming and quantization == "int8",
                check_tflm=True if micro and quantization in ("int8", "int16x8") else None,
                calibration_samples=64 if quick else 200,
                **common,
            )
        except Exception as error:  # noqa: BLE001 (one failed mode must not end the run)
            summary[name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
            continue
        summary[name] = _summary(result)
    (run_dir / "export_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary

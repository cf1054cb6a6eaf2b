"""`gru-zoo export | inspect | bench` and the export step of `gru-zoo run`.

Found by `zoo.cli` through the `gru_zoo.commands` and `gru_zoo.run_steps` entry points;
`register` also gives zoo's `gru-zoo compare` its TFLite converter.
"""

import argparse
import json
import os
import pathlib
import statistics
import time

import numpy as np

from export.converter import INT8_WEIGHTS, Form

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
    dataset = load_dataset(spec, **(options if same else {}))
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


def cmd_export(args):
    from export import to_tflite

    calibration, validation, labels, normalization = _load_data(args.data, args.model)
    result = to_tflite(
        args.model,
        args.out,
        quantization=_quantization(args.quantize),
        # Calibration for the integer modes; otherwise only as verification inputs
        # when there is no validation split.
        representative_data=calibration if (
            args.quantize in ("int8", "int16x8") or validation is None) else None,
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
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"`{argument}` must be an int >= {minimum}. "
                             f"Received: {argument}={value!r}")

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
        "p90_us": times[int(0.9 * (len(times) - 1))],
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


def _int_at_least(minimum):
    """argparse type: an int >= `minimum` (the error names the flag and the value)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"int >= {minimum}"
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
    p.add_argument("--threads", type=_int_at_least(1), default=1,
                   help="interpreter threads (default 1)")
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

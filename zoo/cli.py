"""The `gru-zoo` command line: thin wrappers over `zoo`, `tuning` and `export`.

`zoo` owns `list`, `train`, `compare` (over `zoo.compare`) and the main job `run`. The
`tuning` and `export` packages add their subcommands, and their steps of the main
job, through the entry-point groups `gru_zoo.commands` and `gru_zoo.run_steps` (see
setup.cfg), so `zoo` never imports them. `export`'s `register` also hands `compare` its
TFLite converter (the `tflite_converter` default of the `compare` subcommand).
"""

import argparse
import json
import os
import pathlib
import sys
import time

from zoo.checks import fail

# Before TensorFlow is first imported: keep its C++ start-up chatter off the terminal.
# (Most of it is printed before absl's logging reads this setting; see
# `zoo.quiet.import_tensorflow_quietly`.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BUILD_ARGS = ("variant", "cell", "units", "num_layers", "dropout", "recurrent_dropout",
              "reset_after", "attention", "attention_heads", "conv_filters",
              "conv_kernel_size", "conv_layers", "conv_batchnorm", "pool_size", "dense_units",
              "head_dropout", "input_noise", "branch_dropout", "window_norm",
              "window_norm_channel",
              "learning_rate", "clipnorm", "embedding_dim")


def _per_layer_type(kind):
    """argparse type for a value or a comma-separated list (one value per layer)."""
    name = kind.__name__
    article = "an" if name[0] in "aeiou" else "a"

    def parse(text):
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {article} {name} or a comma-separated list of {name}s, got {text!r}"
            ) from None
        return values[0] if len(values) == 1 else values

    parse.__name__ = f"{name}_list"
    return parse


_int_list = _per_layer_type(int)
_float_list = _per_layer_type(float)


def _plugins(group):
    """Loads the callables registered under an entry-point group, sorted by name."""
    from importlib.metadata import entry_points

    loaded = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            loaded.append((ep.name, ep.load()))
        except (ImportError, AttributeError) as error:
            print(f"gru-zoo: warning: plugin {ep.name!r} ({ep.value}) is unavailable: {error}",
                  file=sys.stderr)
    return loaded


def add_model_arguments(parser):
    """Adds the builder and training options shared by `train`, `run` and others."""
    from zoo.catalog import ATTENTION_TYPES, CELLS, VARIANT_DESCRIPTIONS as VARIANTS

    group = parser.add_argument_group("model")
    group.add_argument("--variant", choices=sorted(VARIANTS), help="zoo variant")
    group.add_argument("--cell", choices=sorted(CELLS), help="recurrent cell (default: gru)")
    group.add_argument("--units", type=_int_list, help="units, or one per layer: 64,32")
    group.add_argument("--layers", dest="num_layers", type=int, help="recurrent layers")
    group.add_argument("--dropout", type=_float_list, help="input dropout (per layer ok)")
    group.add_argument("--recurrent-dropout", type=_float_list, help="recurrent dropout")
    group.add_argument("--reset-before", dest="reset_after", action="store_false",
                       default=None, help="GRU with reset_after=False")
    group.add_argument("--attention", choices=ATTENTION_TYPES, help="attention type")
    group.add_argument("--attention-heads", type=int, help="heads of multi-head attention")
    group.add_argument("--conv-filters", type=_int_list, help="Conv1D filters (per layer ok)")
    group.add_argument("--conv-kernel-size", type=_int_list, help="Conv1D kernel size")
    group.add_argument("--conv-layers", type=int, help="number of Conv1D layers")
    group.add_argument("--conv-batchnorm", action="store_true", default=None,
                       help="batch norm after each convolution (FCN-style blocks)")
    group.add_argument("--pool-size", type=int, help="max pooling after the convolutions")
    group.add_argument("--dense-units", type=int, help="hidden dense layer before the output")
    group.add_argument("--head-dropout", type=float, help="dropout before the output")
    group.add_argument("--branch-dropout", type=float,
                       help="gru_fcn: dropout on the recurrent branch (default 0.8)")
    group.add_argument("--input-noise", type=float,
                       help="std of Gaussian noise added to inputs in training")
    group.add_argument("--window-norm", choices=["mean", "meanstd"],
                       help="normalize each window by its own mean (and std); regression "
                            "outputs get them back (for trending series)")
    group.add_argument("--window-norm-channel", type=int,
                       help="with --window-norm: the input feature the outputs forecast "
                            "(default 0)")
    group.add_argument("--lr", dest="learning_rate", type=float, help="Adam learning rate")
    group.add_argument("--clipnorm", type=float, help="gradient clipping norm (default 1.0)")
    group.add_argument("--embedding-dim", type=int, help="token embedding size")
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, help="maximum epochs")
    group.add_argument("--batch-size", type=int, help="batch size")
    group.add_argument("--patience", type=int,
                       help="early-stopping patience (default 40, or the dataset's recipe)")
    group.add_argument("--lr-decay", choices=["plateau", "cosine", "none"],
                       help="learning-rate decay (default: plateau, or the dataset's recipe)")
    group.add_argument("--fit-on", choices=["train", "train+val"],
                       help="train+val: for tiny datasets, train on both and keep the lowest "
                            "training loss (default: train, or the dataset's recipe)")
    group.add_argument("--class-weight", choices=["balanced"], help="weight classes")
    group.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    group.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs")
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default=None,
                       help="an embedded dataset name (see `gru-zoo list`; default gunpoint) "
                            "or a data file, as --data")
    group.add_argument("--data", metavar="PATH",
                       help="your own data: a UCR/UEA .ts file (its *_TEST.ts sibling is the "
                            "test split), a .csv (wide, long or one series) or a .npz with "
                            "x_train/y_train[/x_test/y_test]")
    group.add_argument("--test-data", metavar="PATH", help="the test split's file, when not "
                       "the *_TEST sibling of --data")
    group.add_argument("--layout", choices=["auto", "wide", "long", "series"],
                       help="CSV layout (default auto: from the header)")
    group.add_argument("--label-column", help="CSV: the label column (default 'label')")
    group.add_argument("--id-column", help="long CSV: the series-id column (default 'id')")
    group.add_argument("--time-column", help="long CSV: the column to order steps by")
    group.add_argument("--window", type=int, help="CSV series: input window, in steps")
    group.add_argument("--horizon", type=int, help="CSV series: steps to forecast")
    group.add_argument("--season", type=int, help="CSV series: seasonal period, in steps, "
                       "at most --window (for the seasonal-naive baseline)")
    group.add_argument("--streaming", action="store_true", default=None,
                       help="the model must run one frame at a time on the device: the "
                            "recipe picks a variant that streams")
    group.add_argument("--data-dir", help="local TFDS data_dir for TFDS datasets")
    group.add_argument("--length", type=int, help="sequence length (adding problem)")


# Data flags → loader options, for files (`zoo.load_dataset(path, ...)`).
_FILE_OPTIONS = {"test_data": "test_path", "layout": "layout", "label_column": "label",
                 "id_column": "id_column", "time_column": "time_column", "window": "window",
                 "horizon": "horizon", "season": "season"}


def data_spec(args):
    """`(name_or_path, loader kwargs)` from the data flags; checks them first."""
    data, name = getattr(args, "data", None), getattr(args, "dataset", None)
    if data is not None and name is not None:
        raise ValueError(f"give `--data` (a file) or `--dataset` (a name), not both. "
                         f"Received: --data={data!r}, --dataset={name!r}")
    if data is None and name is not None and _looks_like_path(name):
        data, name = name, None  # `--dataset ArrowHead_TRAIN.ts`: a file after all
    kwargs = {}
    if data is not None:
        if not os.path.exists(data):
            raise FileNotFoundError(f"`--data` file {data!r} does not exist")
        for flag, option in _FILE_OPTIONS.items():
            value = getattr(args, flag, None)
            if value is not None:
                kwargs[option] = value
        return data, kwargs
    given = [f"--{flag.replace('_', '-')}" for flag in _FILE_OPTIONS
             if getattr(args, flag, None) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} read(s) a data file: give it with `--data "
                         f"PATH`. Received: --dataset={name or 'gunpoint'!r}")
    if getattr(args, "data_dir", None):
        kwargs["data_dir"] = args.data_dir
    if getattr(args, "length", None) is not None:
        kwargs["length"] = args.length
    return name or "gunpoint", kwargs


def _looks_like_path(name):
    return os.path.sep in name or os.path.exists(name) or name.lower().endswith(
        (".ts", ".csv", ".tsv", ".txt", ".npz"))


def load_data(args):
    """Loads the dataset the flags name (nothing is written before this succeeds)."""
    from zoo.datasets import load_dataset

    spec, kwargs = data_spec(args)
    dataset = load_dataset(spec, **kwargs)
    if isinstance(getattr(dataset, "source", None), dict):
        # `gru-zoo export` reloads the same file the same way from the run's config.json.
        dataset.source.setdefault("options", kwargs)
    return dataset


def model_config(args, dataset, recipe=None):
    """The builder keyword arguments: the recipe's, overridden by the flags."""
    from zoo.recipes import choose_recipe

    recipe = recipe or choose_recipe(dataset, variant=getattr(args, "variant", None),
                                     streaming=bool(getattr(args, "streaming", None)))
    config = dict(recipe.build)
    for name in BUILD_ARGS:
        value = getattr(args, name, None)
        if value is not None:
            config[name] = value
    if dataset.vocabulary is not None:
        config["vocab_size"] = len(dataset.vocabulary)
    return config


def training_config(args, recipe, epochs=None):
    """The `zoo.train` arguments: the recipe's, overridden by the flags."""
    chosen = dict(recipe.train)
    for key in ("epochs", "batch_size", "patience", "lr_decay", "fit_on", "class_weight"):
        value = getattr(args, key, None)
        if value is not None:
            chosen[key] = value
    if epochs is not None:
        chosen["epochs"] = epochs
    if chosen["fit_on"] == "train+val" and getattr(args, "patience", None) is None:
        chosen["patience"] = chosen["epochs"]  # a fixed schedule: nothing to stop on
    return chosen


def train_from_args(args, out_dir, epochs=None, dataset=None):
    """Loads the data, chooses the recipe, builds and trains one model.

    Returns `(dataset, config, result, run_config)`: the builder arguments, the
    `TrainResult` and what the run directory's `config.json` holds (the data, the
    recipe with its reasons, the training arguments actually used, e.g.
    `run_config["train"]["fit_on"]`).
    """
    from zoo.builders import build_gru
    from zoo.recipes import choose_recipe
    from zoo.training import set_seed, train

    dataset = dataset if dataset is not None else load_data(args)
    recipe = choose_recipe(dataset, variant=getattr(args, "variant", None),
                           streaming=bool(getattr(args, "streaming", None)))
    config = model_config(args, dataset, recipe)
    chosen = training_config(args, recipe, epochs)
    overridden = sorted(k for k in [*BUILD_ARGS, *chosen]
                        if getattr(args, k, None) is not None and k != "variant")
    log = getattr(args, "log", print)
    log(f"    recipe ({recipe.name}): {config['variant']}, " + ", ".join(
        f"{k}={v}" for k, v in chosen.items() if v is not None))
    for reason in recipe.reasons:
        log(f"      - {reason}")
    if overridden:
        log(f"      - overridden by flags: {', '.join(overridden)}")
    set_seed(args.seed)
    model = build_gru(input_shape=dataset.input_shape, num_outputs=dataset.num_outputs,
                      task=dataset.task, **config)
    run_config = {
        "dataset": dataset.summary(),
        "recipe": {**recipe.to_dict(), "overridden_by_flags": overridden},
        "build": config,
        "train": {**chosen, "seed": args.seed},
        "command": " ".join(["gru-zoo"] + sys.argv[1:]),
    }
    result = train(
        model, dataset, epochs=chosen["epochs"], batch_size=chosen["batch_size"],
        patience=chosen["patience"],
        lr_decay=None if chosen["lr_decay"] == "none" else chosen["lr_decay"],
        fit_on=chosen["fit_on"], class_weight=chosen["class_weight"], seed=args.seed,
        run_dir=out_dir, config=run_config, tensorboard=args.tensorboard,
        verbose=2 if getattr(args, "quiet", False) else "auto",
    )
    return dataset, config, result, run_config


def _format_metrics(metrics):
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def cmd_list(args):
    from zoo.catalog import CELLS, TASKS, VARIANT_DESCRIPTIONS
    from zoo.datasets import describe_datasets
    from zoo.presets import describe_presets

    sections = [
        ("Variants", VARIANT_DESCRIPTIONS),
        ("Cells", CELLS),
        ("Tasks", TASKS),
        ("Datasets", describe_datasets()),
    ]
    sections.append(("Presets", describe_presets()))
    for title, entries in sections:
        print(f"{title}:")
        width = max(len(n) for n in entries)
        for name, text in entries.items():
            print(f"  {name:<{width}}  {text}")
        print()
    return 0


def _write_report(out, dataset, result, run_config, exports=None, tune=None):
    """`report.md` beside the run; a report that fails is a warning, not a lost run."""
    try:
        from zoo.report import write_report

        return write_report(out, dataset, model=result.model,
                            test_metrics=result.test_metrics, history=result.history,
                            recipe=run_config["recipe"] | {"build": run_config["build"],
                                                           "train": run_config["train"]},
                            exports=exports, tune=tune)
    except Exception as error:  # noqa: BLE001 (the model and metrics are already saved)
        print(f"gru-zoo: warning: report.md not written: {type(error).__name__}: {error}",
              file=sys.stderr)
        return None


def _keep_earlier_run(out, markers, overwrite):
    """Refuses an `--out` that holds an earlier finished run (one of `markers`, paths
    relative to it: files written only when a run succeeds), unless `--overwrite`: a
    second `train`/`run` into the same folder used to replace the first one's model
    without a word. A run that was interrupted or diverged (its `config.json` written,
    no model) may be retried into the same folder. Checked before any data is loaded."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"`--out` must be a directory (created if missing). "
                         f"Received: --out {str(out)!r}, an existing file")
    found = next((out / m for m in markers if (out / m).exists()), None)
    if found is None or overwrite:
        return
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(found.stat().st_mtime))
    raise ValueError(f"`--out` holds an earlier run ({found.relative_to(out)}, written "
                     f"{when}), which this command would replace: give another `--out`, or "
                     f"`--overwrite` to replace it. Received: --out {str(out)!r}")


def cmd_train(args):
    out = pathlib.Path(args.out)
    _keep_earlier_run(out, ("model.keras", "metrics.json"), args.overwrite)
    dataset = load_data(args)
    print(f"Data: {_describe(dataset)}")
    dataset, config, result, run_config = train_from_args(args, out, dataset=dataset)
    print(f"Trained {result.model.name} ({result.model.count_params()} parameters) on "
          f"{dataset.name}: best epoch {result.best_epoch}/{result.epochs_run}, "
          f"{result.train_seconds:.1f} s")
    if result.test_metrics:
        print(f"Test: {_format_metrics(result.test_metrics)}")
    report = _write_report(out, dataset, result, run_config)
    print(f"Run directory: {out} (model.keras, history.json, config.json, metrics.json, "
          f"curves.png{', report.md' if report else ''})")
    return 0


def _describe(dataset):
    source = getattr(dataset, "source", None) or {}
    where = f" from {source['path']}" if source.get("path") else " (embedded)"
    return (f"{dataset.name}{where}: {dataset.task}, {len(dataset.x_train)}/"
            f"{len(dataset.x_val)}/{len(dataset.x_test)} train/val/test series of shape "
            f"{tuple(dataset.input_shape)}"
            + (f", {dataset.num_outputs} classes" if dataset.task == "classification" else ""))


def cmd_run(args):
    """The main job: train on the data (embedded GunPoint by default), then every plugin
    step (tune, export), then `report.md` with every exported file."""
    out = pathlib.Path(args.out)
    _keep_earlier_run(out, ("summary.json", "train/model.keras", "train/metrics.json"),
                      args.overwrite)
    started = time.perf_counter()
    budget = _device_budget(args)  # checked before any work
    dataset = load_data(args)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1] train: {_describe(dataset)}")
    epochs = 30 if args.quick and args.epochs is None else None
    dataset, config, result, run_config = train_from_args(args, out / "train", epochs=epochs,
                                                          dataset=dataset)
    summary = {
        "dataset": dataset.name,
        "source": getattr(dataset, "source", None),
        "recipe": run_config["recipe"]["name"],
        "model": config,
        "params": result.model.count_params(),
        "train": {"test": result.test_metrics, "best_epoch": result.best_epoch,
                  "epochs_run": result.epochs_run, "seconds": round(result.train_seconds, 1)},
    }
    print(f"    test: {_format_metrics(result.test_metrics)} "
          f"({result.model.count_params()} parameters, {result.train_seconds:.1f} s)")
    context = {"run_dir": out, "model_path": out / "train" / "model.keras",
               "dataset": dataset, "quick": args.quick, "model_config": config,
               "seed": args.seed, "fit_on": run_config["train"]["fit_on"],
               "train": run_config["train"], "test_metrics": result.test_metrics,
               "params": int(result.model.count_params()), "budget": budget}
    failed = []
    for index, (name, step) in enumerate(_plugins("gru_zoo.run_steps"), start=2):
        label = name.split("_", 1)[-1]
        if label in args.skip:
            print(f"[{index}] {label}: skipped")
            continue
        print(f"[{index}] {label}")
        step_started = time.perf_counter()
        try:
            step_summary = step(context) or {}
        except Exception as error:  # noqa: BLE001 (reported; the trained model and the
            # next steps are kept: a failed tune step must not cost the export)
            if args.debug:
                raise
            message = f"{type(error).__name__}: {' '.join(str(error).split())}"
            print(f"    failed: {message}", file=sys.stderr)
            step_summary = {"error": message}
            failed.append(label)
        step_summary["seconds"] = round(time.perf_counter() - step_started, 1)
        summary[label] = step_summary
        if label == "export":
            from zoo.report import format_export_table

            files = {k: v for k, v in step_summary.items() if isinstance(v, dict)}
            failed += [k for k, v in files.items() if "error" in v]
            print(format_export_table(files))
        else:
            print(f"    {json.dumps(step_summary, default=str)}")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    exports = {k: v for k, v in summary.get("export", {}).items() if isinstance(v, dict)}
    report = _write_report(out, dataset, result, run_config, exports=exports or None,
                           tune=summary.get("tune"))
    summary["failed"] = failed
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"Done in {summary['seconds']} s. Summary: {out / 'summary.json'}"
          + (f", report: {report}" if report else ""))
    if failed:
        print(f"gru-zoo run: error: failed: {', '.join(failed)} (see "
              f"{out / 'summary.json'})", file=sys.stderr)
        return 1
    return 0


def _add_compare_parser(subparsers):
    """`gru-zoo compare`: the command line of `zoo.compare`."""
    from zoo.compare import BUDGETS

    p = subparsers.add_parser(
        "compare",
        help="RNN vs LSTM vs GRU (and variants) with one recipe over several seeds",
        description="Trains each (variant, cell) with the same recipe and budget over "
        "several seeds; writes comparison.md/.csv, runs.csv, curves.png and "
        "metric_vs_time.png. With --dataset adding --lengths 100,200,600,1000 it runs "
        "the long-dependency study (adding.md/.csv/.png).",
    )
    p.add_argument("--cells", help="comma-separated cells (default rnn,lstm,gru; --cell "
                   "gives one)")
    p.add_argument("--variants", help="comma-separated variants (default: the dataset's "
                   "recommended one; adding: stacked)")
    p.add_argument("--seeds", default="3", help="number of seeds (from --seed) or a "
                   "comma-separated list (default 3)")
    p.add_argument("--budget", choices=list(BUDGETS), default="quick",
                   help="tiny (smoke test), quick (minutes) or full (default quick)")
    p.add_argument("--lengths", help="adding problem: comma-separated sequence lengths, "
                   "e.g. 100,200,600,1000 (the long-dependency study)")
    p.add_argument("--num-train", type=int, help="adding problem: training sequences "
                   "(overrides the budget)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any other build_gru argument, value as JSON (repeatable), e.g. "
                   "--set conv_batchnorm=true --set conv_filters=[32,64,32]")
    p.add_argument("--no-tflite", action="store_true", help="skip the TFLite size column")
    p.add_argument("--out", default="runs/compare", help="output directory "
                   "(default runs/compare)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_model_arguments(p)
    # The budget chooses patience and the decay unless the flags are given. The TFLite
    # size column needs a converter; `export`'s `register` sets `tflite_converter`
    # when that package is installed (zoo does not import it), else the column is left out.
    p.set_defaults(func=cmd_compare, patience=None, lr_decay=None, tflite_converter=None)


def parse_settings(settings):
    """`["conv_batchnorm=true", "units=[32,16]"]` → `{"conv_batchnorm": True, ...}`."""
    from zoo.compare import build_arguments

    parsed = {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            fail("set", item, "KEY=VALUE with VALUE in JSON (e.g. conv_batchnorm=true)")
        try:
            parsed[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            parsed[key.strip()] = text  # a bare word is a string: --set attention=additive
    allowed = build_arguments()
    bad = [k for k in parsed if k not in allowed]
    if bad:
        fail("set", settings, f"KEY=VALUE pairs whose KEY is one of {list(allowed)}")
    return parsed


def cmd_compare(args):
    from zoo.catalog import CELLS, VARIANT_DESCRIPTIONS
    from zoo.compare import (ADDING_LENGTHS, TRAIN_ARGS, adding_study, check_out_dir, compare,
                             parse_lengths, parse_names, parse_seeds)

    # Every flag is checked here, before any data is loaded or folder made, and an error
    # names the flag typed (`--seeds`), not the Python argument it becomes (`seeds`).
    # `--data PATH` (the user's file) or `--dataset NAME`; file options come with the path.
    args.dataset, dataset_kwargs = data_spec(args)
    adding = args.dataset == "adding"
    out = check_out_dir(args.out, "--out")

    def one_of(many, one):
        """`--cells`/`--cell`, `--variants`/`--variant`: one of the two, not both."""
        flag_many, flag_one = f"--{many}", f"--{one}"
        value_many, value_one = getattr(args, many), getattr(args, one)
        if value_many is not None and value_one is not None:
            raise ValueError(f"give `{flag_many}` (a list) or `{flag_one}` (one), not both. "
                             f"Received: {flag_many}={value_many!r}, {flag_one}={value_one!r}")

    one_of("cells", "cell")
    one_of("variants", "variant")
    cells = ([args.cell] if args.cell is not None else parse_names(
        "--cells", "rnn,lstm,gru" if args.cells is None else args.cells, CELLS))
    variants = ([args.variant] if args.variant is not None else None
                if args.variants is None else
                parse_names("--variants", args.variants, VARIANT_DESCRIPTIONS))
    if args.seed < 0:
        fail("--seed", args.seed, "an int >= 0 (the first of the `--seeds N` seeds)")
    seeds = parse_seeds(args.seeds, "--seeds")
    if "," not in args.seeds:  # a count: that many seeds from --seed
        seeds = [args.seed + s for s in seeds]
    elif args.seed != 0:
        raise ValueError(f"give `--seed` (the first seed) with a count of `--seeds`, not "
                         f"with a list of them (the list names every seed). Received: "
                         f"--seeds={args.seeds!r}, --seed={args.seed!r}")
    for flag, value in (("--lengths", args.lengths), ("--length", args.length),
                        ("--num-train", args.num_train)):
        if value is not None and not adding:
            fail(flag, value, f"given only with --dataset adding (the data is "
                 f"{args.dataset!r})")
    if args.lengths is not None and args.length is not None:
        raise ValueError(f"give `--lengths` (the study over several lengths) or `--length` "
                         f"(one comparison at one length), not both. Received: "
                         f"--lengths={args.lengths!r}, --length={args.length!r}")
    lengths = None
    if adding and args.length is None:  # the long-dependency study
        lengths = (ADDING_LENGTHS if args.lengths is None
                   else parse_lengths(args.lengths, "--lengths"))
    if args.tensorboard:
        fail("--tensorboard", True, "off for compare (each run writes history.json and "
             "curves.png; use `gru-zoo train --tensorboard` for one model)")

    overrides = {k: getattr(args, k) for k in BUILD_ARGS
                 if k not in ("variant", "cell") and getattr(args, k, None) is not None}
    settings = parse_settings(args.settings)
    twice = sorted(set(overrides) & set(settings))
    if twice:
        flags = {"num_layers": "--layers", "learning_rate": "--lr",
                 "reset_after": "--reset-before"}
        raise ValueError("give each model setting once, as its flag or with `--set`, not "
                         "both. Received: " + "; ".join(
                             f"{flags.get(k, '--' + k.replace('_', '-'))}={overrides[k]!r} "
                             f"and --set {k}={settings[k]!r}" for k in twice))
    overrides.update(settings)
    for key in TRAIN_ARGS:
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = None if value == "none" else value
    if args.num_train is not None:
        dataset_kwargs["num_train"] = args.num_train
    progress = not args.quiet
    if lengths is not None:
        study = adding_study(lengths, cells=cells, variants=variants or ("stacked",),
                             seeds=seeds, budget=args.budget, out_dir=out,
                             dataset_kwargs=dataset_kwargs, progress=progress, **overrides)
        print(study.to_markdown())
        print(f"Written: {', '.join(str(p) for p in study.files.values())}")
        return _report_failed_runs([run for c in study.comparisons.values() for run in c.runs])
    comparison = compare(args.dataset, cells=cells, variants=variants, seeds=seeds,
                         budget=args.budget, out_dir=out,
                         dataset_kwargs=dataset_kwargs,
                         tflite=None if args.no_tflite else args.tflite_converter,
                         progress=progress, **overrides)
    print(f"{comparison.dataset}: {comparison.budget}")
    print(comparison.to_markdown())
    print(f"Written: {', '.join(str(p) for p in comparison.files.values())}")
    return _report_failed_runs(comparison.runs)


def _report_failed_runs(runs):
    """Exit status of a comparison: 1 (and a line per failed run on stderr) when any run
    failed, else 0. The tables were written either way, failed runs named in them."""
    from zoo.compare import failed_runs

    failed = failed_runs(runs)
    for run in failed:
        print(f"gru-zoo compare: {run['variant']}/{run['cell']} seed {run['seed']} "
              f"{run['status']}", file=sys.stderr)
    if failed:
        print(f"gru-zoo compare: {len(failed)} of {len(runs)} runs failed (left out of the "
              "means, named in the table)", file=sys.stderr)
    return 1 if failed else 0


_STEPS = ("tune", "export")


def _device_budget(args):
    """The `--flash-kb/--ram-kb/--latency-ms` budget as a plain dict, or `None`.

    The tune step turns it into a `tuning.budget.DeviceBudget` (zoo does not import
    tuning); the values are checked here so a bad one stops the run before training.
    """
    limits = {"flash_kb": args.flash_kb, "ram_kb": args.ram_kb, "latency_ms": args.latency_ms}
    for name, value in limits.items():
        if value is not None and not (value > 0 and value != float("inf")):
            raise ValueError(f"--{name.replace('_', '-')} must be a positive number. "
                             f"Received: --{name.replace('_', '-')} {value:g}")
    if all(v is None for v in limits.values()):
        return None
    if "tune" in args.skip:
        raise ValueError("a device budget (--flash-kb/--ram-kb/--latency-ms) is for the tune "
                         "step. Received: --skip tune with a budget")
    return dict(limits, quantization=args.budget_quantization,
                streaming=bool(getattr(args, "streaming", None)))


def _skip_list(text):
    steps = [x.strip() for x in text.split(",") if x.strip()]
    bad = [s for s in steps if s not in _STEPS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"steps must be among {list(_STEPS)}, got {', '.join(map(repr, bad))}")
    return steps


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where help is, not the usage text.

    Subcommand parsers are of the same class (argparse creates them with
    `type(parent)`), so `gru-zoo train --units many` is one line too.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} "
                     f"(`{self.prog} --help` lists the options)\n")


def build_parser():
    parser = ArgumentParser(
        prog="gru-zoo",
        description="Build, train, tune and export GRU models to verified TFLite files.",
    )
    from zoo import __version__

    parser.add_argument("--version", action="version", version=f"gru-zoo {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list variants, cells, tasks, datasets and presets")
    p.set_defaults(func=cmd_list, uses_tensorflow=False)

    p = sub.add_parser("train", help="train one model and write a run directory")
    add_model_arguments(p)
    p.add_argument("--out", default="runs/train", help="run directory (default runs/train)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in --out (by default it is kept and the "
                   "command refused)")
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="the main job: train, tune, export and verify end to end")
    add_model_arguments(p)
    p.add_argument("--out", default="runs/main", help="output directory (default runs/main)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in --out (by default it is kept and the "
                   "command refused)")
    p.add_argument("--quick", action="store_true", help="a fast version (fewer epochs)")
    p.add_argument("--skip", default=[], type=_skip_list,
                   help="comma-separated steps to skip: tune, export")
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    budget = p.add_argument_group(
        "device budget", "limits for the tune step's search: models over them never train, "
        "and the chosen model is exported in the budget's form (int8 full-sequence unless "
        "--budget-quantization / --streaming say otherwise)")
    budget.add_argument("--flash-kb", type=float, help="KiB the exported file may take")
    budget.add_argument("--ram-kb", type=float, help="KiB of tensor arena the file may need")
    budget.add_argument("--latency-ms", type=float,
                        help="median LiteRT invoke time, one thread, batch 1")
    budget.add_argument("--budget-quantization", default="int8",
                        choices=["int8", "int16x8", "dynamic", "float16", "float32"],
                        help="the budget's export quantization (default int8)")
    p.set_defaults(func=cmd_run)

    _add_compare_parser(sub)

    for name, register in _plugins("gru_zoo.commands"):
        register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "uses_tensorflow", True):
            from zoo.quiet import import_tensorflow_quietly

            import_tensorflow_quietly(show=args.debug)
        return args.func(args)
    except KeyboardInterrupt:
        print(f"gru-zoo {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 (one line for the user; --debug shows it)
        if args.debug:
            raise
        # Bad input (ValueError and its subclasses, a path that is missing, taken, of
        # the wrong kind or not ours): exit 2, as argparse does; anything else is a
        # failure of the run: exit 1. Both one line, no traceback.
        bad_input = isinstance(error, (ValueError, FileNotFoundError, FileExistsError,
                                       IsADirectoryError, NotADirectoryError,
                                       PermissionError))
        kind = "error" if bad_input else f"failed ({type(error).__name__})"
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"gru-zoo {args.command}: {kind}: {message} (--debug shows the traceback)"
              if not bad_input else f"gru-zoo {args.command}: {kind}: {message}",
              file=sys.stderr)
        return 2 if bad_input else 1


if __name__ == "__main__":
    sys.exit(main())

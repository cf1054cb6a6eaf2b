"""The `gru-zoo` command line: thin wrappers over `zoo`, `tuning` and `export`.

`zoo` owns `list`, `train` and the main job `run`. The `tuning` and `export` packages
add their subcommands, and their steps of the main job, through the entry-point
groups `gru_zoo.commands` and `gru_zoo.run_steps` (see setup.cfg), so `zoo` never
imports them.
"""

import argparse
import json
import os
import pathlib
import sys
import time

# Before TensorFlow is first imported: keep its C++ start-up chatter off the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RECOMMENDED = {
    # The main job's recipe per dataset (builder and training arguments). GunPoint has
    # 50 training series: GRU-FCN (Elsayed et al. 2018), a small GRU beside FCN conv
    # blocks with global average pooling, as published; its 10-series validation split
    # cannot pick an epoch, so it trains on train+val with a cosine schedule and keeps
    # the lowest training loss (Fawaz et al. 2019). Measured: BENCHMARKS.md.
    "gunpoint": dict(variant="gru_fcn", units=8, num_layers=1, branch_dropout=0.8,
                     conv_layers=3, conv_filters=[128, 256, 128], conv_kernel_size=[8, 5, 3],
                     conv_batchnorm=True, pool_size=1, epochs=300, batch_size=8, patience=300,
                     lr_decay="cosine", fit_on="train+val"),
    # ItalyPowerDemand (67 training series, 14 for validation): the same train+val cosine
    # protocol (0.9666 +- 0.0012 over 3 seeds with two GRU(32) layers, against 0.964 +-
    # 0.005 with validation early stopping and plateau decay); one GRU(32) layer reached
    # 0.9705 on seeds 0-2 and 0.9702 on seeds 3-5 (BENCHMARKS.md).
    "italy_power_demand": dict(variant="stacked", units=32, num_layers=1, epochs=150,
                               batch_size=8, patience=150, lr_decay="cosine",
                               fit_on="train+val"),
    # Airline passengers trend upwards: the test windows lie above every training level,
    # so each window is centred on its own mean and the forecast gets it back
    # (`window_norm="mean"`). Without it every cell lost to repeating the last 12 months
    # (seasonal naive, test MSE 0.086): GRU 0.19, RNN 0.14 (BENCHMARKS.md).
    "airline_passengers": dict(variant="stacked", units=32, num_layers=1, window_norm="mean",
                               epochs=300, batch_size=8),
    # Adding problem: a GRU(64) at T=600 leaves the baseline after ~1000 updates and then
    # needs a high learning rate for long; batch 128 costs ~15 % more per update than 64
    # on CPU for twice the data. 20 epochs of 50000 sequences with cosine decay from 3e-3
    # reached test MSE below the published 5.3e-5 (BENCHMARKS.md, "Adding problem").
    "adding": dict(variant="stacked", units=64, num_layers=1, learning_rate=3e-3, epochs=20,
                   batch_size=128, patience=20, lr_decay="cosine"),
}

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
    from zoo.builders import ATTENTION_TYPES, CELLS, VARIANTS

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
    group.add_argument("--dataset", default="gunpoint",
                       help="dataset name (see `gru-zoo list`; default gunpoint)")
    group.add_argument("--data-dir", help="local TFDS data_dir for TFDS datasets")
    group.add_argument("--length", type=int, help="sequence length (adding problem)")


def _dataset_kwargs(args):
    kwargs = {}
    if args.data_dir:
        kwargs["data_dir"] = args.data_dir
    if args.length:
        kwargs["length"] = args.length
    return kwargs


def model_config(args, dataset):
    """The builder keyword arguments: recommended defaults, overridden by the flags."""
    config = {k: v for k, v in RECOMMENDED.get(dataset.name, {}).items() if k in BUILD_ARGS}
    config.setdefault("variant", "stacked")
    for name in BUILD_ARGS:
        value = getattr(args, name, None)
        if value is not None:
            config[name] = value
    if dataset.vocabulary is not None:
        config["vocab_size"] = len(dataset.vocabulary)
    return config


def train_from_args(args, out_dir, epochs=None):
    """Loads the data, builds and trains one model.

    Returns `(dataset, config, result, run_config)`: the builder arguments, the
    `TrainResult` and what the run directory's `config.json` holds (the training
    recipe actually used, e.g. `run_config["train"]["fit_on"]`).
    """
    from zoo.builders import build_gru
    from zoo.datasets import load_dataset
    from zoo.training import set_seed, train

    dataset = load_dataset(args.dataset, **_dataset_kwargs(args))
    config = model_config(args, dataset)
    recommended = RECOMMENDED.get(dataset.name, {})

    def choose(flag, key, default):
        """A flag given on the command line wins over the dataset's recipe."""
        return flag if flag is not None else recommended.get(key, default)

    epochs = epochs if epochs is not None else choose(args.epochs, "epochs", 100)
    batch_size = choose(args.batch_size, "batch_size", 32)
    lr_decay = choose(args.lr_decay, "lr_decay", "plateau")
    fit_on = choose(args.fit_on, "fit_on", "train")
    patience = choose(args.patience, "patience", 40)
    set_seed(args.seed)
    model = build_gru(input_shape=dataset.input_shape, num_outputs=dataset.num_outputs,
                      task=dataset.task, **config)
    run_config = {
        "dataset": dataset.summary(),
        "build": config,
        "train": {"epochs": epochs, "batch_size": batch_size, "patience": patience,
                  "lr_decay": lr_decay, "fit_on": fit_on, "seed": args.seed,
                  "class_weight": args.class_weight},
        "command": " ".join(["gru-zoo"] + sys.argv[1:]),
    }
    result = train(
        model, dataset, epochs=epochs, batch_size=batch_size, patience=patience,
        lr_decay=None if lr_decay == "none" else lr_decay, fit_on=fit_on,
        class_weight=args.class_weight, seed=args.seed, run_dir=out_dir,
        config=run_config, tensorboard=args.tensorboard,
        verbose=2 if getattr(args, "quiet", False) else "auto",
    )
    return dataset, config, result, run_config


def _format_metrics(metrics):
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def cmd_list(args):
    from zoo.builders import CELLS, TASKS, VARIANTS
    from zoo.datasets import describe_datasets
    from zoo.presets import describe_presets

    sections = [
        ("Variants", {name: v.description for name, v in VARIANTS.items()}),
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


def cmd_train(args):
    out = pathlib.Path(args.out)
    dataset, config, result, _ = train_from_args(args, out)
    print(f"Trained {result.model.name} ({result.model.count_params()} parameters) on "
          f"{dataset.name}: best epoch {result.best_epoch}/{result.epochs_run}, "
          f"{result.train_seconds:.1f} s")
    if result.test_metrics:
        print(f"Test: {_format_metrics(result.test_metrics)}")
    print(f"Run directory: {out} (model.keras, history.json, config.json, metrics.json, "
          "curves.png)")
    return 0


def cmd_run(args):
    """The main job: train on the embedded default dataset, then every plugin step."""
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"[1] train: {args.dataset}")
    epochs = 30 if args.quick and args.epochs is None else None
    dataset, config, result, run_config = train_from_args(args, out / "train", epochs=epochs)
    summary = {
        "dataset": dataset.name,
        "model": config,
        "params": result.model.count_params(),
        "train": {"test": result.test_metrics, "best_epoch": result.best_epoch,
                  "epochs_run": result.epochs_run, "seconds": round(result.train_seconds, 1)},
    }
    print(f"    test: {_format_metrics(result.test_metrics)} "
          f"({result.model.count_params()} parameters, {result.train_seconds:.1f} s)")
    context = {"run_dir": out, "model_path": out / "train" / "model.keras",
               "dataset": dataset, "quick": args.quick, "model_config": config,
               "seed": args.seed, "fit_on": run_config["train"]["fit_on"]}
    for index, (name, step) in enumerate(_plugins("gru_zoo.run_steps"), start=2):
        label = name.split("_", 1)[-1]
        if label in args.skip:
            print(f"[{index}] {label}: skipped")
            continue
        print(f"[{index}] {label}")
        step_started = time.perf_counter()
        step_summary = step(context) or {}
        step_summary["seconds"] = round(time.perf_counter() - step_started, 1)
        summary[label] = step_summary
        print(f"    {json.dumps(step_summary, default=str)}")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"Done in {summary['seconds']} s. Summary: {out / 'summary.json'}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gru-zoo",
        description="Build, train, tune and export GRU models to verified TFLite files.",
    )
    from zoo import __version__
    from zoo.compare import register as register_compare

    parser.add_argument("--version", action="version", version=f"gru-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list variants, cells, tasks, datasets and presets")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", help="train one model and write a run directory")
    add_model_arguments(p)
    p.add_argument("--out", default="runs/train", help="run directory (default runs/train)")
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="the main job: train, tune, export and verify end to end")
    add_model_arguments(p)
    p.add_argument("--out", default="runs/main", help="output directory (default runs/main)")
    p.add_argument("--quick", action="store_true", help="a fast version (fewer epochs)")
    p.add_argument("--skip", default="", type=lambda s: [x for x in s.split(",") if x],
                   help="comma-separated steps to skip, e.g. tune,export")
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    p.set_defaults(func=cmd_run)

    register_compare(sub)

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
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        # Bad input: a clear one-line message, not a traceback.
        print(f"gru-zoo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

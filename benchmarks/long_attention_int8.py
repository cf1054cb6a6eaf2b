"""int8 attention over long sequences: the default file against the fully integer one.

    python benchmarks/long_attention_int8.py --runs DIR [--update]

`DIR` holds run folders of attention models trained by `gru-zoo train --data` on public
UCR/UEA files (each with its `model.keras` and the `config.json` naming the data). The
table in BENCHMARKS.md holds these four (`COMMON`: `--units 32 --layers 1 --batch-size 16
--lr-decay cosine --fit-on train+val --quiet`):

    gru-zoo train --variant attention COMMON --epochs 200 \\
        --data ACSF1_TRAIN.ts --test-data ACSF1_TEST.ts --out DIR/ACSF1_attention
    gru-zoo train --variant attention COMMON --epochs 60 \\
        --data OSULeaf_TRAIN.ts --test-data OSULeaf_TEST.ts --out DIR/OSULeaf_attention
    gru-zoo train --variant attention --attention multihead COMMON --epochs 60 \\
        --data OSULeaf_TRAIN.ts --test-data OSULeaf_TEST.ts --out DIR/OSULeaf_attention_multihead
    gru-zoo train --variant cnn_gru_attention COMMON --conv-filters 32 --epochs 150 \\
        --data OSULeaf_TRAIN.ts --test-data OSULeaf_TEST.ts --out DIR/OSULeaf_cnn_gru_attention

Each model is exported as int8 three times, calibrated on its training split and run on
its test split: with the defaults (`int8_float_layers="auto"`: an additive pooling after
a GRU chain is computed in the chain's loop with its online softmax in float,
`export.chunked.pools_in_loop`; a softmax over more than 128 values stays float,
`export.calibration.INT8_SOFTMAX_MAX_VALUES`; so does the first convolution over the raw
input); with the same float layers named explicitly, so that the softmax rule is off
(`int8_float_layers=[...]`; the pooling stays in the loop when that list is not empty);
and fully integer (`int8_float_layers=[]`, the pooling after the loop). Every file is
also run in TFLite Micro (`check_tflm=True`).
Nothing is trained and nothing is downloaded here. With `--update` the table goes to the
section `## int8 attention over long sequences` of BENCHMARKS.md.
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from compare_report import write_section  # noqa: E402

TITLE = "int8 attention over long sequences"


def measure(run_dir):
    """The float32 file and the three int8 files of one run: test accuracy, error, TFLM."""
    import keras

    from export import to_tflite
    from export.calibration import float_layer_names
    from public_int8 import run_data

    _, dataset = run_data(run_dir)
    row = {"name": run_dir.name, "length": int(dataset.input_shape[0]),
           "test_series": int(len(dataset.x_test))}
    model = keras.models.load_model(run_dir / "model.keras")
    plans = [("float32", None, "auto"), ("int8", "int8", "auto"),
             ("int8 softmax int8", "int8", float_layer_names(model)),
             ("int8 fully integer", "int8", [])]
    with tempfile.TemporaryDirectory() as tmp:
        for key, quantization, float_layers in plans:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    result = to_tflite(
                        str(run_dir / "model.keras"), os.path.join(tmp, "f.tflite"),
                        quantization=quantization, int8_float_layers=float_layers,
                        representative_data=dataset.x_train if quantization else None,
                        validation_data=(dataset.x_test, dataset.y_test), check_tflm=True)
                except Exception as error:  # noqa: BLE001 (a failed export is a result too)
                    row[key] = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
                    continue
            tflm = result.tflm or {}
            row[key] = {"accuracy": result.evaluation["tflite"],
                        "keras": result.evaluation["keras"],
                        "max_abs_error": float(result.max_abs_error),
                        "mean_abs_error": float(result.mean_abs_error),
                        "size": int(result.size),
                        "tflm_runs": bool(tflm.get("runs")),
                        "arena_bytes": tflm.get("arena_bytes")}
    return row


def render(rows):
    keys = ("int8", "int8 softmax int8", "int8 fully integer")
    lines = ["| run | T | test series | Keras accuracy | int8 accuracy: default / softmax in "
             "int8 / fully integer | mean abs error vs Keras | max abs error | TFLite Micro "
             "arena (KB) | int8 size (KB) |",
             "|---|---:|---:|---:|---|---|---|---|---:|"]

    def micro(entry):
        return f"{entry['arena_bytes'] / 1024:.0f}" if entry["tflm_runs"] else "does not run"

    for row in rows:
        entries = [row[key] for key in keys]
        failed = [entry["error"] for entry in entries if "error" in entry]
        if failed:
            lines.append(f"| {row['name']} | {row['length']} | {row['test_series']} | "
                         f"{failed[0]} | | | | | |")
            continue
        lines.append(
            f"| {row['name']} | {row['length']} | {row['test_series']} | "
            f"{entries[0]['keras']:.3f} | "
            + " / ".join(f"{entry['accuracy']:.3f}" for entry in entries) + " | "
            + " / ".join(f"{entry['mean_abs_error']:.4f}" for entry in entries) + " | "
            + " / ".join(f"{entry['max_abs_error']:.3f}" for entry in entries) + " | "
            + " / ".join(micro(entry) for entry in entries) + " | "
            f"{entries[0]['size'] / 1024:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="folder of trained run folders")
    parser.add_argument("--update", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args(argv)
    runs = sorted(p for p in pathlib.Path(args.runs).iterdir() if (p / "model.keras").exists())
    if not runs:
        parser.error(f"--runs {args.runs!r} holds no run folder with a model.keras")
    rows = []
    for run_dir in runs:
        rows.append(measure(run_dir))
        print(json.dumps(rows[-1]), flush=True)
    table = render(rows)
    print(table)
    if args.update:
        command = "python benchmarks/long_attention_int8.py --runs DIR --update"
        write_section(TITLE, f"""Command: `{command}` (DIR: attention models trained by
`gru-zoo train --data` as the script's docstring shows; {platform.machine()}, Python
{platform.python_version()}). Test accuracy of each int8 file on the test split, and the
mean and largest difference of its outputs (class probabilities) from Keras's there.
Default: an additive pooling that reads a GRU chain is computed in the chain's loop, its
online softmax and score vector in float (since commit 9a186a8; the multi-head pooling
keeps its softmax after the loop, float over more than 128 steps). "Softmax in int8":
the default's float layers named explicitly, so no automatic rule applies (for runs
without a convolution that list is empty, the fully integer file).

{table}
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())

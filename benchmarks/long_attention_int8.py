"""int8 attention over long sequences: the default file against the fully integer one.

    python benchmarks/long_attention_int8.py --runs DIR [--update]

`DIR` holds run folders of attention models trained by `gru-zoo train --data` on public
UCR/UEA files (each with its `model.keras` and the `config.json` naming the data), e.g.

    gru-zoo train --variant attention --units 32 --layers 1 --epochs 200 --batch-size 16 \\
        --lr-decay cosine --fit-on train+val --data ACSF1_TRAIN.ts --test-data ACSF1_TEST.ts \\
        --out DIR/ACSF1

Each model is exported as int8 twice, calibrated on its training split and run on its test
split: with the defaults (`int8_float_layers="auto"`, which keeps a softmax over more than
256 values float: `export.calibration.INT8_SOFTMAX_MAX_VALUES`) and fully integer
(`int8_float_layers=[]`). Both files are also run in TFLite Micro (`check_tflm=True`).
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
    """The float32 file and the two int8 files of one run: test accuracy, error, TFLM."""
    from export import to_tflite
    from zoo.loaders import load_file

    config = json.loads((run_dir / "config.json").read_text())
    source = config["dataset"]["source"]
    options = dict(source.get("options") or {})
    if source.get("test_path"):
        options.setdefault("test_path", source["test_path"])
    dataset = load_file(source["path"], **options)
    row = {"name": run_dir.name, "length": int(dataset.input_shape[0]),
           "test_series": int(len(dataset.x_test))}
    plans = [("float32", None, "auto"), ("int8", "int8", "auto"),
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
                        "size": int(result.size),
                        "tflm_runs": bool(tflm.get("runs")),
                        "arena_bytes": tflm.get("arena_bytes")}
    return row


def render(rows):
    lines = ["| run | T | test series | Keras accuracy | int8 accuracy (default) | int8 accuracy "
             "(fully integer) | max abs error vs Keras (default / fully integer) | TFLite Micro "
             "(default / fully integer) | int8 size (KB) |",
             "|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for row in rows:
        default, integer = row["int8"], row["int8 fully integer"]
        if "error" in default or "error" in integer:
            lines.append(f"| {row['name']} | {row['length']} | {row['test_series']} | "
                         f"{default.get('error') or integer.get('error')} | | | | | |")
            continue

        def micro(entry):
            return f"{entry['arena_bytes'] / 1024:.0f} KB arena" if entry["tflm_runs"] else "does not run"

        lines.append(
            f"| {row['name']} | {row['length']} | {row['test_series']} | {default['keras']:.3f} | "
            f"{default['accuracy']:.3f} | {integer['accuracy']:.3f} | "
            f"{default['max_abs_error']:.3f} / {integer['max_abs_error']:.3f} | "
            f"{micro(default)} / {micro(integer)} | {default['size'] / 1024:.1f} |")
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
{platform.python_version()}). Test accuracy of each int8 file on the test split, and its
largest output difference from Keras there.

{table}
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())

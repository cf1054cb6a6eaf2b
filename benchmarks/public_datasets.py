"""The automatic recipe on public UCR/UEA `.ts` files the project does not ship.

    python benchmarks/public_datasets.py --data-dir DIR --seeds 0,1,2

`DIR` holds the archive's own files, `DIR/<Name>/<Name>_TRAIN.ts` and `<Name>_TEST.ts` (the
UCR/UEA distribution layout; the `aeon` wheel on PyPI carries several of them under
`aeon/datasets/data/`, so `pip download --no-deps aeon` and unzipping it gives a folder that
works offline). Nothing here is downloaded at run time and nothing is used by the tests.

Each dataset and seed runs exactly what a user runs,
`gru-zoo train --data DIR/<Name>/<Name>_TRAIN.ts --seed S --out ...`, in its own process:
the recipe is whatever `zoo.recipes.choose_recipe` picks from the data. Beside it, in the same
run, a peer that needs no training: one-nearest-neighbour with Euclidean distance on the same
normalized arrays (the UCR archive's standard baseline; variable-length series are compared on
their common padded length with the padding set to 0), or for regression the training
targets' mean. The table goes to the section
`## Own data: the automatic recipe on public UCR/UEA files` of BENCHMARKS.md with the published
numbers written next to it by hand (see that section).
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from compare_report import write_section  # noqa: E402

TITLE = "Own data: the automatic recipe on public UCR/UEA files"
RESULTS = HERE / "results" / "public_datasets.json"


def nearest_neighbour(dataset):
    """Test accuracy of 1-NN (Euclidean) or, for regression, RMSE of the training mean."""
    x_train = np.concatenate([dataset.x_train, dataset.x_val]).astype("float64")
    y_train = np.concatenate([dataset.y_train, dataset.y_val])
    x_test = dataset.x_test.astype("float64")
    if dataset.task == "regression":
        rmse = float(np.sqrt(np.mean((dataset.y_test - y_train.mean()) ** 2)))
        return {"rmse": rmse}
    if dataset.mask_value is not None:
        x_train = np.where(x_train == dataset.mask_value, 0.0, x_train)
        x_test = np.where(x_test == dataset.mask_value, 0.0, x_test)
    a = x_train.reshape(len(x_train), -1)
    b = x_test.reshape(len(x_test), -1)
    distances = (b ** 2).sum(1)[:, None] - 2 * b @ a.T + (a ** 2).sum(1)[None, :]
    predicted = y_train[np.argmin(distances, axis=1)]
    return {"accuracy": float(np.mean(predicted == dataset.y_test))}


def run_one(train_file, seed, out, epochs):
    command = [sys.executable, "-m", "zoo.cli", "train", "--data", str(train_file),
               "--seed", str(seed), "--out", str(out), "--quiet"]
    if epochs:
        command += ["--epochs", str(epochs)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"failed": (done.stderr.strip().splitlines() or ["?"])[-1], "seconds": seconds}
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    return {"test": metrics["test"], "seconds": seconds, "params": metrics.get("params"),
            "epochs_run": metrics.get("epochs_run"), "recipe": config.get("recipe", {}),
            "model": config.get("model", {})}


def describe(dataset):
    from zoo.recipes import profile

    p = profile(dataset)
    return {"task": p["task"], "series": int(len(dataset.y_train) + len(dataset.y_val)),
            "length": p["length"], "channels": p["channels"], "classes": p["classes"],
            "variable_length": p["variable_length"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=pathlib.Path)
    parser.add_argument("--datasets", help="comma-separated names (default: every folder)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, help="cap epochs (smoke runs only)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/public"))
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--table-only", action="store_true",
                        help="rebuild the table and the BENCHMARKS.md section from the results")
    args = parser.parse_args(argv)

    from zoo.loaders import load_file

    names = (args.datasets.split(",") if args.datasets else
             sorted(p.name for p in args.data_dir.iterdir()
                    if (p / f"{p.name}_TRAIN.ts").exists() and (p / f"{p.name}_TEST.ts").exists()))
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.table_only:
        names = []
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() and not args.no_record else {}
    for name in names:
        train_file = args.data_dir / name / f"{name}_TRAIN.ts"
        dataset = load_file(train_file)
        entry = {"profile": describe(dataset), "peer": nearest_neighbour(dataset),
                 # other seeds' runs of an earlier invocation are kept
                 "runs": dict(results.get(name, {}).get("runs", {}))}
        for seed in seeds:
            run = run_one(train_file, seed, args.out / name / f"seed{seed}", args.epochs)
            entry["runs"][str(seed)] = run
            shown = run.get("failed") or run["test"]
            print(f"{name} seed {seed}: {shown} ({run['seconds']:.0f} s)", flush=True)
        results[name] = entry
        if not args.no_record:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    table = format_table(results)
    print(table)
    if not args.no_record:
        # The table holds every recorded dataset and seed, possibly from several runs.
        all_seeds = sorted({int(s) for e in results.values() for s in e["runs"]})
        command = (f"python benchmarks/public_datasets.py --data-dir DIR --seeds "
                   f"{','.join(map(str, all_seeds))} --datasets {','.join(sorted(results))}")
        write_section(TITLE, section_text(table, command, results))


PUBLISHED = {
    # Best published deep models, test accuracy (mean over runs where the paper gives one).
    "ArrowHead": "0.845 (ResNet; FCN 0.843; Fawaz et al. 2019)",
    "BasicMotions": "1.00 (ResNet, InceptionTime; Ruiz et al. 2021)",
    "JapaneseVowels": "0.99 (ResNet; FCN 0.99; Fawaz et al. 2019)",
    "OSULeaf": "0.98 (ResNet 0.979; FCN 0.977; Fawaz et al. 2019)",
}


def format_table(results):
    lines = ["| dataset | series (train) | length | channels | classes | recipe | test (mean of seeds) "
             "| seeds | 1-NN ED / mean | published | s per run |",
             "|---|---:|---:|---:|---:|---|---:|---|---:|---|---:|"]
    for name, entry in sorted(results.items()):
        runs = [r for r in entry["runs"].values() if "test" in r]
        p = entry["profile"]
        key = "rmse" if p.get("task") == "regression" else "accuracy"
        scores = [r["test"][key] for r in runs]
        build = runs[0]["recipe"].get("build", {}) if runs else {}
        recipe = (build.get("variant", "?") + (f", window_norm {build['window_norm']}"
                                               if build.get("window_norm") else "")
                  if runs else "failed")
        mean = f"{np.mean(scores):.3f}" if scores else "failed"
        each = ", ".join(f"{s:.3f}" for s in scores)
        seconds = f"{np.mean([r['seconds'] for r in runs]):.0f}" if runs else "-"
        peer = entry["peer"].get(key)
        lines.append(f"| {name} | {p.get('series')} | {p.get('length')} | {p.get('channels')} | "
                     f"{p.get('classes') or '-'} | {recipe} | {key} {mean} | {each} | "
                     f"{peer:.3f} | {PUBLISHED.get(name, '-')} | {seconds} |")
    return "\n".join(lines)


def reading(results):
    """One line per dataset: the recipe against the peer (and the published figure)."""
    lines = []
    for name, entry in sorted(results.items()):
        runs = [r for r in entry["runs"].values() if "test" in r]
        if not runs:
            lines.append(f"- {name}: every run failed.")
            continue
        regression = entry["profile"].get("task") == "regression"
        key = "rmse" if regression else "accuracy"
        mean = float(np.mean([r["test"][key] for r in runs]))
        peer = entry["peer"][key]
        a, b = round(mean, 3), round(peer, 3)
        verdict = "equal to" if a == b else "better than" if (a < b if regression else a > b) \
            else "worse than"
        text = (f"- {name}: {key} {mean:.3f} over {len(runs)} seed(s), {verdict} the peer "
                f"({peer:.3f})")
        if name in PUBLISHED:
            text += f"; published best deep model {PUBLISHED[name].split(' ')[0]}"
        lines.append(text + ".")
    return "\n".join(lines)


def section_text(table, command, results=None):
    return f"""Command: `{command}` (DIR: the UCR/UEA files, see the script's docstring), on
{platform.machine()} with {os.cpu_count()} cores, one `gru-zoo train --data` process per dataset and
seed. The recipe is the one `zoo.recipes.choose_recipe` picks from the data; none of these
datasets was used to choose its rules (they come from GunPoint, ItalyPowerDemand, airline
passengers and the adding problem). "1-NN ED / mean" is a peer computed in the same run on the
same arrays: one-nearest-neighbour with Euclidean distance (classification) or the RMSE of the
training mean (regression). "published" is the best deep model reported for the dataset in the
cited reviews (means over their runs), typed in by hand.

{table}

{reading(results) if results else ""}
"""


if __name__ == "__main__":
    main()

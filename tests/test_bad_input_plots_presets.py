"""Bad input to `zoo.plot_curves` and to the preset functions gets one clear ValueError.

`plot_curves`: a `history` that is not a dict of per-epoch numbers, or a `path` that is
not an image file in an existing folder, is refused before a figure is drawn (nothing
written, no figure left open); a failed write leaves the old file as it was. Presets:
`load_preset`'s flags must be bools, and a damaged preset in `directory=` is named with
its file and what is wrong with it. Each group also has a valid case. No training.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import keras
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import zoo  # noqa: E402
from zoo import presets  # noqa: E402
from zoo.fileio import PLOT_SUFFIXES  # noqa: E402
from zoo.training import TrainResult, plot_curves  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "zoo" / "presets"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
H = {"loss": [1.0, 0.8], "val_loss": [1.1, 0.9]}


def pattern(*fragments):
    """A `match=` regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(str(f)) for f in fragments)


@pytest.fixture(autouse=True)
def _no_figures_left_open():
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a figure was left open"


# =========================================================================== plot_curves

def test_plot_curves_draws_a_valid_history(tmp_path):
    history = {"loss": [1.0, 0.5, 0.25], "accuracy": np.array([0.5, 0.7, 0.8]),
               "val_loss": (np.float32(1.1), 0.6, 0.3), "val_accuracy": [0.4, 0.6, 0.7],
               "learning_rate": [1e-3, 1e-3, 5e-4]}
    written = plot_curves(history, tmp_path / "curves.png", title="a model")
    assert written == tmp_path / "curves.png"
    assert written.read_bytes().startswith(PNG_SIGNATURE)
    # A str path, another format, a loss that is not positive (drawn on a linear scale),
    # entries that are not drawn (a validation metric without its training metric).
    plot_curves({"loss": [-1.0, -2.0], "val_f1": [0.5, 0.6], "learning_rate": [1e-3, 1e-4]},
                str(tmp_path / "curves.pdf"))
    assert (tmp_path / "curves.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(os.listdir(tmp_path)) == ["curves.pdf", "curves.png"]  # no temp files


def test_plot_curves_accepts_what_fit_and_train_return(tmp_path):
    history = keras.callbacks.History()
    history.history = dict(H)
    plot_curves(history, tmp_path / "fit.png")
    result = TrainResult(model=None, history=dict(H), test_metrics={}, best_epoch=2,
                         epochs_run=2, train_seconds=0.0)
    plot_curves(result, tmp_path / "train.png")
    assert (tmp_path / "fit.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (tmp_path / "train.png").read_bytes().startswith(PNG_SIGNATURE)


def test_plot_curves_writes_every_suffix_it_allows(tmp_path):
    for suffix in PLOT_SUFFIXES + (".PNG",):
        plot_curves(H, tmp_path / f"curves{suffix}")
        assert (tmp_path / f"curves{suffix}").stat().st_size > 0


HISTORY_CASES = [
    ("none", None, ["history=None"]),
    ("list", [1, 2, 3], ["history=[1, 2, 3]"]),
    ("empty", {}, ["no training metric", "history={}"]),
    ("only_val", {"val_loss": [1, 2]}, ["no training metric", "history={'val_loss': [1, 2]}"]),
    ("only_lr", {"learning_rate": [1e-3]}, ["no training metric", "'learning_rate'"]),
    ("lengths", {"loss": [1, 2], "val_loss": [1, 2, 3]},
     ["'val_loss' has 3 values and 'loss' 2", "history={'loss': [1, 2], 'val_loss': [1, 2, 3]}"]),
    ("scalar", {"loss": 0.5}, ["'loss' holds 0.5, not a list of numbers",
                               "history={'loss': 0.5}"]),
    ("strings", {"loss": ["a", "b"]}, ["'loss' holds ['a', 'b'], not a list of numbers"]),
    ("no_epochs", {"loss": []}, ["'loss' holds no epochs", "history={'loss': []}"]),
    ("bools", {"loss": [True, False]}, ["'loss' holds [True, False]"]),
    ("none_value", {"loss": [1.0, None]}, ["'loss' holds [1.0, None]"]),
    ("matrix", {"loss": np.zeros((2, 2))}, ["'loss' holds an array of shape (2, 2)"]),
    ("int_key", {1: [1.0]}, ["the key 1 is not a metric name"]),
    ("val_bad", {"loss": [1.0], "val_loss": "1.0"}, ["'val_loss' holds '1.0'"]),
]


@pytest.mark.parametrize("history, fragments", [c[1:] for c in HISTORY_CASES],
                         ids=[c[0] for c in HISTORY_CASES])
def test_plot_curves_refuses_a_bad_history(tmp_path, history, fragments):
    with pytest.raises(ValueError, match=pattern(
            "`history` must be a dict (e.g. TrainResult.history", "at least one training "
            "metric", *fragments)) as caught:
        plot_curves(history, tmp_path / "curves.png")
    assert "Received: history=" in str(caught.value)
    assert os.listdir(tmp_path) == []
    assert plt.get_fignums() == []


def test_plot_curves_refuses_a_bad_history_without_touching_the_old_file(tmp_path):
    plot_curves(H, tmp_path / "curves.png")
    before = (tmp_path / "curves.png").read_bytes()
    with pytest.raises(ValueError, match="`history`"):
        plot_curves({"loss": []}, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes() == before


@pytest.fixture
def plots(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


PATH_CASES = [
    ("folder", "adir", ["it is an existing folder"]),
    ("no_suffix", "noext", []),
    ("bad_suffix", "c.xyz", []),
    ("inside_a_file", "afile/x.png", ["afile' is a file, not a folder"]),
    ("deep_inside_a_file", "afile/a/b.png", ["afile' is a file, not a folder"]),
    ("missing_folder", "missing/x.png", ["missing' does not exist"]),
]


@pytest.mark.parametrize("name, fragments", [c[1:] for c in PATH_CASES],
                         ids=[c[0] for c in PATH_CASES])
def test_plot_curves_refuses_a_bad_path(plots, name, fragments):
    before = sorted(os.listdir(plots))
    path = plots / name
    with pytest.raises(ValueError, match=pattern(
            "`path` must be an image file path", "'.png'", "in an existing folder",
            *fragments, f"Received: path={path!r}")):
        plot_curves(H, path)
    with pytest.raises(ValueError, match=pattern("`path` must be", f"path={str(path)!r}")):
        plot_curves(H, str(path))
    assert sorted(os.listdir(plots)) == before  # no 'adir.png', 'noext.png', ...
    assert sorted(os.listdir(plots / "adir")) == []
    assert plt.get_fignums() == []


@pytest.mark.parametrize("path", [None, 3, b"x.png", ["x.png"]], ids=repr)
def test_plot_curves_refuses_a_path_that_is_not_one(path):
    with pytest.raises(ValueError, match=pattern("`path` must be an image file path (str or "
                                                 "os.PathLike)", f"Received: path={path!r}")):
        plot_curves(H, path)
    assert plt.get_fignums() == []


def test_plot_curves_refuses_a_bad_title(tmp_path):
    with pytest.raises(ValueError, match=pattern("`title` must be a str or None",
                                                 "Received: title=3")):
        plot_curves(H, tmp_path / "curves.png", title=3)
    assert os.listdir(tmp_path) == []


def test_plot_curves_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "curves.png"
    plot_curves(H, path)
    before = path.read_bytes()

    def cut_off(fig, target, **kwargs):  # a full disk: part of the file, then an error
        with open(target, "wb") as handle:
            handle.write(PNG_SIGNATURE + b"\0" * 100)
        raise OSError(27, "File too large")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", cut_off)
    with pytest.raises(OSError, match="File too large"):
        plot_curves({"loss": [3.0, 2.0, 1.0]}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["curves.png"]  # no temporary file left
    assert plt.get_fignums() == []


@pytest.mark.slow  # a child process that imports Keras (~15 s); the test above is quick
def test_plot_curves_under_a_file_size_limit_keeps_the_old_file(tmp_path):
    """The sweep's reproduction: RLIMIT_FSIZE=4000 as a full disk, in a child process."""
    path = tmp_path / "curves.png"
    plot_curves(H, path, title="the good one")
    before = path.read_bytes()
    assert len(before) > 4000
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import matplotlib.pyplot as plt
        from zoo.training import plot_curves
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE,
                           (4000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try:
            plot_curves({{"loss": [3.0, 2.0, 1.0]}}, {str(path)!r})
        except OSError as error:
            print("OSError", error.errno, plt.get_fignums())
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OSError 27 []" in done.stdout, done.stdout + done.stderr[-2000:]
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["curves.png"]


# =========================================================================== presets

@pytest.mark.parametrize("kwargs", [dict(return_metadata="no"), dict(return_metadata=1),
                                    dict(return_metadata=None), dict(compile="no"),
                                    dict(compile=0)], ids=repr)
def test_load_preset_flags_must_be_bools(kwargs):
    (argument, value), = kwargs.items()
    with pytest.raises(ValueError, match=pattern(f"`{argument}` must be True or False",
                                                 f"Received: {argument}={value!r}")):
        presets.load_preset("italy_power_demand", **kwargs)


def test_load_preset_takes_numpy_bools():
    model, info = presets.load_preset("italy_power_demand", return_metadata=np.bool_(True),
                                      compile=np.bool_(False))
    assert info["name"] == "italy_power_demand" and not model.compiled
    model = presets.load_preset("italy_power_demand", return_metadata=False)
    assert isinstance(model, keras.Model) and model.compiled


NAME = "italy_power_demand"


def preset_dir(tmp_path, metadata=None, weights=None, *, tag="presets"):
    """A copy of the packaged italy_power_demand preset, with the files given replaced
    (`metadata`: str or bytes; `weights`: bytes, or `False` for none)."""
    folder = tmp_path / tag
    folder.mkdir()
    meta = (PACKAGED / f"{NAME}.json").read_bytes() if metadata is None else metadata
    (folder / f"{NAME}.json").write_bytes(meta.encode() if isinstance(meta, str) else meta)
    if weights is not False:
        (folder / f"{NAME}.weights.h5").write_bytes(
            (PACKAGED / f"{NAME}.weights.h5").read_bytes() if weights is None else weights)
    return folder


def good_metadata(**changes):
    info = json.loads((PACKAGED / f"{NAME}.json").read_text())
    info.update(changes)
    return json.dumps(info)


def test_a_copied_preset_loads_and_is_described(tmp_path):
    folder = preset_dir(tmp_path)
    model = presets.load_preset(NAME, directory=folder, compile=False)
    assert model.count_params() == json.loads((folder / f"{NAME}.json").read_text())["params"]
    assert presets.describe_presets(folder)[NAME] == presets.describe_presets()[NAME]


METADATA_CASES = [
    ("not_json", "{not json", ["is not a readable JSON file", "line 1 column 2"]),
    ("not_utf8", b'{"a": "\xe9"}', ["is not a readable JSON file", "utf-8"]),
    ("a_list", "[1, 2]", ["holds a JSON list, not an object"]),
]


@pytest.mark.parametrize("metadata, fragments", [c[1:] for c in METADATA_CASES],
                         ids=[c[0] for c in METADATA_CASES])
def test_a_malformed_metadata_file_is_named(tmp_path, metadata, fragments):
    folder = preset_dir(tmp_path, metadata)
    # A good preset beside it does not hide the damaged one.
    for suffix in (".json", ".weights.h5"):
        shutil.copy(PACKAGED / f"airline_passengers{suffix}", folder)
    expected = pattern(f"The preset '{NAME}' cannot be loaded: {folder / NAME}.json",
                       *fragments, "A preset is <name>.json")
    with pytest.raises(ValueError, match=expected):
        presets.describe_presets(folder)
    with pytest.raises(ValueError, match=expected):
        presets.load_preset(NAME, directory=folder)
    with pytest.raises(ValueError, match=expected):
        presets.preset_metadata(NAME, directory=folder)
    presets.load_preset("airline_passengers", directory=folder, compile=False)


def test_metadata_without_its_entries_is_named(tmp_path):
    folder = preset_dir(tmp_path, "{}")
    with pytest.raises(ValueError, match=pattern(f"{folder / NAME}.json has no 'build' entry",
                                                 "a dict of `build_gru` arguments")):
        presets.load_preset(NAME, directory=folder)
    with pytest.raises(ValueError, match=pattern(f"{folder / NAME}.json has no 'dataset' "
                                                 f"entry")):
        presets.describe_presets(folder)


@pytest.mark.parametrize("changes, fragments", [
    (dict(build=[1, 2]), ["has build=[1, 2], which must be a dict"]),
    (dict(input_shape="24"), ["has input_shape='24', which must be a list of positive ints"]),
    (dict(num_outputs=0), ["has num_outputs=0, which must be a positive int"]),
    (dict(build={"variant": "stacked", "units": -1}),
     ["describes a model that `build_gru` refuses", "`units` must be a positive int"]),
    (dict(build={"variant": "stacked", "unknown_argument": 1}),
     ["describes a model that `build_gru` refuses", "unknown_argument"]),
], ids=["build_list", "input_shape_str", "no_outputs", "units", "unknown_argument"])
def test_metadata_that_builds_no_model_is_named(tmp_path, changes, fragments):
    folder = preset_dir(tmp_path, good_metadata(**changes))
    with pytest.raises(ValueError, match=pattern(f"The preset '{NAME}' cannot be loaded: "
                                                 f"{folder / NAME}.json", *fragments)):
        presets.load_preset(NAME, directory=folder)


@pytest.mark.parametrize("changes, fragments", [
    (dict(test_metrics={}), ["has test_metrics={}", "holding the number 'accuracy'"]),
    (dict(metric=3), ["has metric=3"]),
    (dict(published={"accuracy": "high"}), ["has published={'accuracy': 'high'}"]),
], ids=["no_test_metric", "metric_int", "published_str"])
def test_describe_presets_names_bad_metadata(tmp_path, changes, fragments):
    folder = preset_dir(tmp_path, good_metadata(**changes))
    with pytest.raises(ValueError, match=pattern(f"{folder / NAME}.json", *fragments)):
        presets.describe_presets(folder)


def test_missing_weights_are_named(tmp_path):
    folder = preset_dir(tmp_path, weights=False)
    with pytest.raises(ValueError, match=pattern(f"The preset '{NAME}' cannot be loaded: "
                                                 f"{folder / NAME}.weights.h5 is missing")):
        presets.load_preset(NAME, directory=folder)
    (folder / f"{NAME}.weights.h5").mkdir()
    with pytest.raises(ValueError, match=pattern(f"{NAME}.weights.h5 is not a file")):
        presets.load_preset(NAME, directory=folder)


def test_garbage_and_cut_off_weights_are_named(tmp_path):
    folder = preset_dir(tmp_path, weights=b"garbage" * 100, tag="garbage")
    with pytest.raises(ValueError, match=pattern(f"{folder / NAME}.weights.h5 is not an HDF5 "
                                                 f"weights file")):
        presets.load_preset(NAME, directory=folder)
    good = (PACKAGED / f"{NAME}.weights.h5").read_bytes()
    folder = preset_dir(tmp_path, weights=good[: len(good) // 2], tag="cut")
    with pytest.raises(ValueError, match=pattern(f"{folder / NAME}.weights.h5 cannot be read",
                                                 "truncated")):
        presets.load_preset(NAME, directory=folder)


def test_the_weights_of_another_preset_are_named(tmp_path):
    folder = preset_dir(tmp_path, weights=(PACKAGED / "airline_passengers.weights.h5")
                        .read_bytes())
    with pytest.raises(ValueError, match=pattern(
            f"{folder / NAME}.weights.h5 does not fit the model its metadata describes",
            "Keras:", "could not be loaded")):
        presets.load_preset(NAME, directory=folder)


def test_the_weights_of_a_bigger_model_are_not_loaded_in_part(tmp_path):
    # Keras loads the first layers of a 2-layer model's file into the 1-layer preset and
    # ignores the rest without a word.
    info = json.loads((PACKAGED / f"{NAME}.json").read_text())
    bigger = zoo.build_gru(input_shape=tuple(info["input_shape"]),
                           num_outputs=info["num_outputs"], compile=False,
                           **{**info["build"], "num_layers": 2})
    bigger.save_weights(tmp_path / "bigger.weights.h5")
    folder = preset_dir(tmp_path, weights=(tmp_path / "bigger.weights.h5").read_bytes())
    with pytest.raises(ValueError, match=pattern(
            f"{folder / NAME}.weights.h5 holds 8 weight arrays, but the model its metadata "
            f"describes has 5")):
        presets.load_preset(NAME, directory=folder)


def test_a_folder_named_like_a_preset_is_not_one(tmp_path):
    folder = preset_dir(tmp_path)
    (folder / "x.json").mkdir()
    (folder / ".json").write_text("{}")
    assert presets.list_presets(folder) == [NAME]
    assert list(presets.describe_presets(folder)) == [NAME]
    with pytest.raises(ValueError, match=pattern("`name` must be one of the presets",
                                                 f"['{NAME}']", "Received: name='x'")):
        presets.load_preset("x", directory=folder)

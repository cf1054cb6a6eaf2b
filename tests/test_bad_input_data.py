"""Bad input to the data loaders and presets: one `ValueError` naming the argument and value.

Each case asserts that the message names the argument and the value received
(`match=` joins the fragments in order); the valid cases prove that what the checks
let through still loads.
"""

import re

import numpy as np
import pytest

import zoo
from zoo.presets import list_presets, load_preset


def pattern(*fragments):
    """A `match=` regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(str(f)) for f in fragments)


# (id, load_dataset arguments, keyword arguments, message fragments)
DATASET_CASES = [
    ("name_list", ["gunpoint"], {}, ["`name` must be a str", "name=['gunpoint']"]),
    ("name_int", 3, {}, ["`name` must be a str", "name=3"]),
    ("name_unknown", "gunpoitn", {}, ["`name` must be one of", "name='gunpoitn'"]),
    ("seed_text", "gunpoint", dict(seed="abc"), ["`seed`", "seed='abc'"]),
    ("seed_negative", "italy_power_demand", dict(seed=-1), ["`seed`", "seed=-1"]),
    ("seed_float", "gunpoint", dict(seed=1.5), ["`seed`", "seed=1.5"]),
    ("normalize_text", "gunpoint", dict(normalize="no"),
     ["`normalize` must be True or False", "normalize='no'"]),
    ("normalize_int", "italy_power_demand", dict(normalize=0),
     ["`normalize` must be True or False", "normalize=0"]),
    ("airline_normalize_text", "airline_passengers", dict(normalize="no"),
     ["`normalize` must be True or False", "normalize='no'"]),
    ("validation_split", "gunpoint", dict(validation_split=1.5),
     ["`validation_split`", "validation_split=1.5"]),
    ("num_train_zero", "adding", dict(num_train=0), ["`num_train` must be a positive int",
                                                     "num_train=0"]),
    ("num_val_negative", "adding", dict(num_val=-1), ["`num_val`", "num_val=-1"]),
    ("num_test_float", "adding", dict(num_test=2.5), ["`num_test`", "num_test=2.5"]),
    ("adding_seed_text", "adding", dict(seed="abc"), ["`seed`", "seed='abc'"]),
    ("adding_length_zero", "adding", dict(length=0), ["`length` must be an int >= 2",
                                                      "length=0"]),
    ("airline_window_float", "airline_passengers", dict(window=2.5),
     ["`window`", "window=2.5"]),
    ("unknown_option", "gunpoint", dict(length=50), ["Unknown option(s) ['length']",
                                                     "length=50"]),
]


@pytest.mark.parametrize("name, kwargs, fragments", [c[1:] for c in DATASET_CASES],
                         ids=[c[0] for c in DATASET_CASES])
def test_load_dataset_names_the_bad_argument(name, kwargs, fragments):
    with pytest.raises(ValueError, match=pattern(*fragments)):
        zoo.load_dataset(name, **kwargs)


def test_valid_options_still_load():
    raw = zoo.load_dataset("airline_passengers", normalize=False)
    assert raw.normalization is None and float(raw.x_train.mean()) > 4  # log(passengers)
    normalized = zoo.load_dataset("airline_passengers", normalize=True)
    assert normalized.normalization is not None and abs(float(normalized.x_train.mean())) < 1
    gunpoint = zoo.load_dataset("gunpoint", normalize=np.bool_(False), seed=np.int64(3))
    assert gunpoint.normalization is None
    adding = zoo.load_dataset("adding", length=8, num_train=4, num_val=2, num_test=2, seed=1)
    assert adding.x_train.shape == (4, 8, 2) and adding.x_test.shape == (2, 8, 2)


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(directory="/nonexistent"), ["`directory` must be an existing folder of presets",
                                      "directory='/nonexistent' (no such folder)"]),
    (dict(directory=__file__), ["`directory`", "(not a folder)"]),
    (dict(directory=3), ["`directory`", "directory=3"]),
])
def test_load_preset_names_a_bad_directory(kwargs, fragments):
    with pytest.raises(ValueError, match=pattern(*fragments)):
        load_preset("gunpoint", **kwargs)
    with pytest.raises(ValueError, match=pattern(*fragments)):
        list_presets(**kwargs)


def test_load_preset_names_a_bad_name(tmp_path):
    with pytest.raises(ValueError, match=pattern("`name` must be one of the presets",
                                                 "'gunpoint'", "name='nope'")):
        load_preset("nope")
    # An existing folder without presets: the (empty) list is the answer.
    with pytest.raises(ValueError, match=pattern("one of the presets []", "name='gunpoint'")):
        load_preset("gunpoint", directory=tmp_path)


# --------------------------------------------------------------------------- your own files

def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def wide_file(path, steps=4, rows=20, delimiter=","):
    rng = np.random.default_rng(0)
    header = delimiter.join(["label"] + [f"t{j}" for j in range(steps)])
    return write_lines(path, [header] + [
        delimiter.join([str(i % 2)] + [f"{v:.3f}" for v in rng.normal(size=steps)])
        for i in range(rows)])


def long_file(path, series=20, steps=3):
    return write_lines(path, ["id,t,f0,label"] + [
        f"{i},{t},{(i * 7 + t) % 5 - 2},{i % 2}" for i in range(series) for t in range(steps)])


def series_file(path, rows=100):
    return write_lines(path, ["value"] + [f"{np.sin(i / 3):.4f}" for i in range(rows)])


def test_test_file_of_another_layout_is_refused(tmp_path):
    train = wide_file(tmp_path / "train.csv")
    test = long_file(tmp_path / "test.csv")
    with pytest.raises(ValueError, match=pattern(
            "test.csv", "(`test_path`)", "train.csv", "layout 'wide'",
            "expected columns ['label', 't0', 't1', 't2', 't3']",
            "found ['id', 't', 'f0', 'label']", f"test_path={str(test)!r}")):
        zoo.load_dataset(train, test_path=test)
    # Long training data with a wide test file.
    with pytest.raises(ValueError, match=pattern(
            "train.csv", "(`test_path`)", "layout 'long'", "['id', 't', 'f0', 'label']",
            "found ['label', 't0'")):
        zoo.load_dataset(test, test_path=train)
    # A wide test file with longer series (more time-step columns) still loads.
    ds = zoo.load_dataset(train, test_path=wide_file(tmp_path / "longer.csv", steps=6))
    assert ds.input_shape == (6, 1) and ds.x_test.shape == (20, 6, 1)
    # A long test file with a column more (not read) loads as the training file does.
    lines = test.read_text().splitlines()
    extra = tmp_path / "extra.csv"
    extra.write_text("\n".join([lines[0] + ",note"] + [line + ",x" for line in lines[1:]])
                     + "\n")
    with_extra, plain = (zoo.load_dataset(test, test_path=other) for other in (extra, test))
    np.testing.assert_array_equal(with_extra.x_test, plain.x_test)


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(id_column="sid"), ["no column 'sid'", "`id_column='sid'`",
                             "columns ['id', 't', 'f0', 'label']"]),
    (dict(id_column="sid", layout="wide"), ["no column 'sid'", "`id_column='sid'`"]),
    (dict(time_column="time"), ["no column 'time'", "`time_column='time'`",
                                "columns ['id', 't', 'f0', 'label']"]),
    (dict(label="class"), ["no column 'class'", "`label='class'`",
                           "columns ['id', 't', 'f0', 'label']"]),
])
def test_a_misspelt_column_is_refused_not_another_layout(tmp_path, kwargs, fragments):
    path = long_file(tmp_path / "long.csv")
    with pytest.raises(ValueError, match=pattern(*fragments)):
        zoo.load_dataset(path, **kwargs)
    assert zoo.load_dataset(path, time_column="t").input_shape == (3, 1)  # right names load


def test_the_default_column_names_given_explicitly_must_exist(tmp_path):
    # `id_column="id"` on a wide file used to be taken for the default and read the file
    # as wide, the layout the user ruled out by naming an id column.
    with pytest.raises(ValueError, match=pattern("no column 'id'", "`id_column='id'`",
                                                 "columns ['label', 't0'")):
        zoo.load_dataset(wide_file(tmp_path / "wide.csv"), id_column="id")
    assert zoo.load_dataset(wide_file(tmp_path / "wide.csv")).input_shape == (4, 1)


def test_a_misspelt_time_column_in_the_wide_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match=pattern("no column 'step'", "`time_column='step'`",
                                                 "columns ['label', 't0'")):
        zoo.load_dataset(wide_file(tmp_path / "wide.csv"), time_column="step")


def test_series_target_not_in_the_header_is_refused(tmp_path):
    path = series_file(tmp_path / "series.csv")
    with pytest.raises(ValueError, match=pattern("series.csv", "no column 'nope'",
                                                 "`label='nope'`", "columns ['value']")):
        zoo.load_dataset(path, window=10, horizon=2, label="nope")
    # "label" named explicitly must exist too (it used to forecast the first column).
    with pytest.raises(ValueError, match=pattern("no column 'label'", "`label='label'`")):
        zoo.load_dataset(path, window=10, horizon=2, label="label")
    # The default `label` is optional in this layout: the first column is the target.
    ds = zoo.load_dataset(path, window=10, horizon=2)
    assert ds.input_shape == (10, 1) and "of 'value'" in ds.description


def test_a_season_longer_than_the_window_is_refused(tmp_path):
    path = series_file(tmp_path / "series.csv")
    with pytest.raises(ValueError, match=pattern("`season` must be at most `window` (10)",
                                                 "season=1000", "window=10")):
        zoo.load_dataset(path, window=10, horizon=2, season=1000)
    ds = zoo.load_dataset(path, window=10, horizon=2, season=10)
    assert set(ds.forecast_baselines()) == {"seasonal naive", "last value"}
    # A window shorter than the airline's 12-month season holds no seasonal lag: that
    # baseline is left out rather than computed from the wrong values.
    short = zoo.load_dataset("airline_passengers", window=6)
    assert short.season == 12 and set(short.forecast_baselines()) == {"last value"}


def test_non_integer_float_labels_for_classification(tmp_path):
    x = np.random.default_rng(0).random((40, 5, 2))
    with pytest.raises(ValueError, match=pattern(
            "`y_train` must hold class labels", "not a finite number", "y_train[3]=inf")):
        zoo.Dataset.from_arrays(x, np.array([0.0, 1.0, 0.0, np.inf] * 10),
                                task="classification")
    with pytest.raises(ValueError, match=pattern(
            "`y_train` must hold class labels (ints or str)", "non-integer float labels",
            "y_train[0]=0.05", "40 of 40", "task='regression'")):
        zoo.Dataset.from_arrays(x, np.linspace(0.05, 0.95, 40), task="classification")
    # Whole-number floats are class labels.
    ds = zoo.Dataset.from_arrays(x, (np.arange(40) % 2).astype(float), task="classification")
    assert ds.label_names == ["0", "1"]


def test_complex_values_are_refused(tmp_path):
    x = np.random.default_rng(0).random((20, 5, 2)) * (1 + 1j)
    y = np.arange(20) % 2
    np.savez(tmp_path / "complex.npz", x_train=x, y_train=y)
    with pytest.raises(ValueError, match=pattern(
            "complex.npz", "`x_train` must hold real numbers", "complex dtype complex128",
            "imaginary part")):
        zoo.load_dataset(tmp_path / "complex.npz")
    with pytest.raises(ValueError, match=pattern("`x_train` must hold real numbers",
                                                 "complex dtype complex128")):
        zoo.Dataset.from_arrays(x, y)
    with pytest.raises(ValueError, match=pattern("`x_train[1]` must hold real numbers")):
        zoo.Dataset.from_arrays([np.ones(5), np.ones(4) * 1j] * 10, y)
    with pytest.raises(ValueError, match=pattern("`y_train` must hold real numbers",
                                                 "complex dtype")):
        zoo.Dataset.from_arrays(x.real, y * (1 + 1j), task="regression")


def test_another_delimiter_is_suggested(tmp_path):
    path = wide_file(tmp_path / "semicolon.csv", delimiter=";")
    with pytest.raises(ValueError, match=pattern(
            "columns ['label;t0;t1;t2;t3']", "window=None",
            "one column, 'label;t0;t1;t2;t3', that holds ';'", "pass delimiter=';'")):
        zoo.load_dataset(path)
    with pytest.raises(ValueError, match=pattern("no column 'label'", "pass delimiter=';'")):
        zoo.load_dataset(path, layout="wide")
    with pytest.raises(ValueError, match=pattern("expected a number", "pass delimiter=';'")):
        zoo.load_dataset(path, window=2, horizon=1)
    assert zoo.load_dataset(path, delimiter=";").input_shape == (4, 1)


def test_label_names_beyond_the_classes_are_refused():
    x = np.random.default_rng(0).random((40, 5, 2))
    with pytest.raises(ValueError, match=pattern(
            "`label_names` must name the classes of the labels", "3 names",
            "have 2 classes", "(['0', '1'] in `y_train`)", "class 'c'",
            "label_names=['a', 'b', 'c']")):
        zoo.Dataset.from_arrays(x, np.arange(40) % 2, label_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=pattern("`label_names`", "2 classes",
                                                 "(['cat', 'dog'] in `y_train`)",
                                                 "class 'emu'")):
        zoo.Dataset.from_arrays(x, np.array(["cat", "dog"] * 20),
                                label_names=["cat", "dog", "emu"])
    # Every named class in training, one absent from the separate test split: fine.
    ds = zoo.Dataset.from_arrays(x, np.arange(40) % 3, x[:6], np.zeros(6, dtype=int),
                                 label_names=["a", "b", "c"])
    assert ds.num_outputs == 3 and ds.label_names == ["a", "b", "c"]
    # A rare class only in the separate test split: named, so kept as an output.
    ds = zoo.Dataset.from_arrays(x, np.arange(40) % 2, x[:3], np.array([0, 1, 2]),
                                 label_names=["a", "b", "c"])
    assert ds.num_outputs == 3

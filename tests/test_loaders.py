"""File loaders (`zoo.loaders`) and `Dataset.from_arrays`: small files written in tmp_path."""

import hashlib
import pathlib

import numpy as np
import pytest

import zoo
from zoo import Dataset, load_csv, load_dataset, load_file, load_npz, load_ts

# A variable-length univariate pair with one missing value and string labels.
TRAIN_TS = """# a comment
@problemName Toy
@timeStamps false
@missing true
@univariate true
@equalLength false
@classLabel true down flat up
@data
1,2,3,4:up
4,3,2:down
1,1,1,1,1:flat
2,3,4,5,6:up
6,5,4,3:down
2,2,2:flat
0,1,?,3:up
5,4,3,2,1:down
3,3,3,3:flat
"""
TEST_TS = """@problemName Toy
@univariate true
@classLabel true down flat up
@data
1,3,5:up
9,8,7,6,5,4:down
7,7:flat
"""


def write(path, text):
    path.write_text(text)
    return path


def ts_pair(tmp_path, train=TRAIN_TS, test=TEST_TS, name="Toy"):
    train_path = write(tmp_path / f"{name}_TRAIN.ts", train)
    if test is not None:
        write(tmp_path / f"{name}_TEST.ts", test)
    return train_path


def raw(ds, x):
    """Un-normalizes `x` (padded steps stay at mask_value)."""
    mean, std = np.array(ds.normalization["mean"]), np.array(ds.normalization["std"])
    real = ~np.all(x == ds.mask_value, axis=-1) if ds.mask_value is not None else \
        np.ones(x.shape[:2], bool)
    out = np.where(real[..., None], x * std + mean, x)
    return out, real


def series_rows(ds, x):
    """Each series' real values as a tuple, rounded (to compare with the file)."""
    values, real = raw(ds, x)
    return [tuple(np.round(v[r, 0], 4)) for v, r in zip(values, real)]


# --------------------------------------------------------------------------- .ts

def test_ts_pair_univariate_variable_length_with_missing_values(tmp_path):
    ds = load_dataset(str(ts_pair(tmp_path)))  # the _TEST sibling is found
    assert ds.name == "Toy" and ds.task == "classification" and ds.num_outputs == 3
    assert ds.label_names == ["down", "flat", "up"]  # @classLabel order
    assert ds.input_shape == (6, 1)  # the longest series, in the test file
    assert len(ds.x_train) + len(ds.x_val) == 9 and len(ds.x_test) == 3
    # Padded at the end with mask_value 0.0 (no real step is exactly 0 after scaling).
    assert ds.mask_value == 0.0
    assert series_rows(ds, ds.x_test) == [(1, 3, 5), (9, 8, 7, 6, 5, 4), (7, 7)]
    np.testing.assert_array_equal(ds.x_test[2, 2:, 0], 0.0)
    assert ds.decode_labels(ds.y_test) == ["up", "down", "flat"]
    # The missing value between 1 and 3 is interpolated to 2, and counted.
    rows = series_rows(ds, np.concatenate([ds.x_train, ds.x_val]))
    assert (0, 1, 2, 3) in rows and len(rows) == 9
    assert "1 missing value(s) filled" in ds.description
    assert "padded at the end with mask_value=0" in ds.description
    assert "Toy_TEST.ts (found beside the training file)" in ds.description
    summary = ds.summary()
    assert summary["mask_value"] == 0.0 and summary["source"]["format"] == "ts"


def test_ts_without_test_file_cuts_a_stratified_test_split(tmp_path):
    path = ts_pair(tmp_path, test=None)
    ds = load_ts(path, test_split=0.34)
    assert len(ds.x_test) == 3 and sorted(ds.y_test.tolist()) == [0, 1, 2]
    assert "stratified 0.34 of the training data" in ds.description
    assert "no test file given" in ds.description


def test_ts_multivariate_and_equal_length(tmp_path):
    lines = ["@problemName Multi", "@univariate false", "@dimensions 2", "@equalLength true",
             "@seriesLength 4", "@classLabel true 1 2", "@data"]
    rng = np.random.default_rng(0)
    cases = []
    for i in range(10):
        a, b = rng.normal(size=4) + 10, rng.normal(size=4) - 5
        cases.append((a, b))
        lines.append(f"{','.join(map(str, a))}:{','.join(map(str, b))}:{1 + i % 2}")
    path = write(tmp_path / "multi.ts", "\n".join(lines) + "\n")
    ds = load_ts(path, test_split=0.2)
    assert ds.input_shape == (4, 2) and ds.mask_value is None
    assert ds.label_names == ["1", "2"]
    # Per-dimension statistics of the training part: one mean near 10, one near -5.
    mean = ds.normalization["mean"]
    assert len(mean) == 2 and 8 < mean[0] < 12 and -7 < mean[1] < -3
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 1)), 0.0, atol=1e-5)
    values, _ = raw(ds, ds.x_train)
    originals = {tuple(np.round(a, 4)) for a, _ in cases}
    assert all(tuple(np.round(v[:, 0], 4)) in originals for v in values)


def test_ts_regression(tmp_path):
    text = "@problemName Reg\n@univariate true\n@targetLabel true\n@data\n" + "".join(
        f"{i},{i + 1},{i + 2}:{i * 0.5 + 0.25}\n" for i in range(10))
    ds = load_ts(write(tmp_path / "reg.ts", text), test_split=0.2)
    assert ds.task == "regression" and ds.num_outputs == 1 and ds.label_names is None
    assert ds.y_train.shape[1:] == (1,) and ds.y_train.dtype == np.float32
    # Every target is the first value / 2 + 0.25, whatever the split.
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        first = raw(ds, x)[0][:, 0, 0]
        np.testing.assert_allclose(y[:, 0], first * 0.5 + 0.25, atol=1e-4)
    assert "random 0.2" in ds.description


def test_ts_labels_sorted_when_not_declared_order_and_source_hashes(tmp_path):
    path = ts_pair(tmp_path)
    ds = load_ts(path)
    sha = [hashlib.sha256(p.read_bytes()).hexdigest()
           for p in (tmp_path / "Toy_TRAIN.ts", tmp_path / "Toy_TEST.ts")]
    assert ds.source["sha256"] == sha
    assert ds.source["path"] == str(path.resolve())
    assert ds.source["test_path"] == str((tmp_path / "Toy_TEST.ts").resolve())
    single = load_ts(path, test_split=0.3)
    assert single.source["sha256"] == sha[0] and "test_path" not in single.source


def test_padding_value_avoids_real_zero_steps(tmp_path):
    text = ("@univariate true\n@classLabel true a b\n@data\n"
            "0,1,2:a\n-2.5,0,1,1:b\n1,2:a\n3,0:b\n1,1,1,0:a\n2,-1:b\n")
    ds = load_ts(write(tmp_path / "zeros.ts", text), test_split=0.3, normalize=False)
    assert ds.mask_value == -4.0  # floor(-2.5) - 1: below every real value
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])[..., 0]
    lengths = sorted(int((row != -4.0).sum()) for row in x)
    assert lengths == [2, 2, 2, 3, 4, 4]  # the padding is exactly the missing tail
    assert np.any(x == 0.0)  # real zeros kept as data


def test_mask_value_keeps_predictions_of_padded_series(tmp_path):
    text = ("@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n"
            "1,2,3,4,5,6:6,5,4,3,2,1:a\n1,2,3:3,2,1:b\n2,3,4,5:1,1,1,1:a\n"
            "5,4,3,2,1,0,1,2:0,0,1,1,2,2,3,3:b\n"
            "1,3,5,7,9:2,4,6,8,9:a\n4,4,4,2:1,2,1,2:b\n3,1,2,5,6,7,2:7,7,6,1,2,3,1:a\n"
            "2,2:3,3:b\n")
    ds = load_ts(write(tmp_path / "vl.ts", text), test_split=0.25, validation_split=0.3)
    assert ds.mask_value is not None
    model = zoo.build_gru("gru_fcn", input_shape=(None, 2), num_outputs=ds.num_outputs,
                          mask_value=ds.mask_value, units=4, conv_filters=4, compile=False)
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    real = ~np.all(x == ds.mask_value, axis=-1)
    short = int(np.argmin(real.sum(axis=1)))
    length = int(real[short].sum())
    assert length < x.shape[1]
    padded = np.asarray(model(x[short : short + 1]))
    alone = np.asarray(model(x[short : short + 1, :length]))
    np.testing.assert_allclose(padded, alone, atol=1e-5)


# --------------------------------------------------------------------------- CSV

def ts_rows(text):
    """(values, label) per case of a univariate .ts text."""
    rows = []
    for line in text.split("@data")[1].strip().splitlines():
        values, label = line.split(":")
        rows.append((values.split(","), label))
    return rows


def wide_csv(text):
    rows = ts_rows(text)
    width = max(len(v) for v, _ in rows)
    lines = ["label," + ",".join(f"t{i}" for i in range(width))]
    for values, label in rows:
        lines.append(label + "," + ",".join(values + [""] * (width - len(values))))
    return "\n".join(lines) + "\n"


def long_csv(text, shuffle=False):
    lines = ["id,step,value,label"]
    rows = []
    for i, (values, label) in enumerate(ts_rows(text)):
        series = [f"s{i},{t},{v},{label}" for t, v in enumerate(values)]
        # Series keep their order of first appearance; the time column orders the steps.
        rows += series[::-1] if shuffle else series
    return "\n".join(lines + rows) + "\n"


def assert_same_data(a, b):
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, f"x_{split}"), getattr(b, f"x_{split}"))
        np.testing.assert_array_equal(getattr(a, f"y_{split}"), getattr(b, f"y_{split}"))
    assert a.label_names == b.label_names and a.mask_value == b.mask_value
    assert a.normalization == b.normalization


def test_ts_pair_and_csv_twins_give_the_same_arrays(tmp_path):
    ts = load_ts(ts_pair(tmp_path))
    wide = load_csv(write(tmp_path / "w_TRAIN.csv", wide_csv(TRAIN_TS)),
                    write(tmp_path / "w_test.csv", wide_csv(TEST_TS)))
    long = load_csv(write(tmp_path / "l_TRAIN.csv", long_csv(TRAIN_TS, shuffle=True)),
                    write(tmp_path / "l_test.csv", long_csv(TEST_TS)), time_column="step")
    assert_same_data(ts, wide)
    assert_same_data(ts, long)
    assert "layout 'wide' chosen from the header" in wide.description
    assert "layout 'long' chosen from the header" in long.description
    assert wide.source["format"] == "csv-wide" and long.source["format"] == "csv-long"
    # The *_TEST sibling of a CSV is found too.
    write(tmp_path / "w_TEST.csv", wide_csv(TEST_TS))
    assert_same_data(ts, load_dataset(tmp_path / "w_TRAIN.csv"))


def test_csv_long_multivariate(tmp_path):
    lines = ["id,t,a,b,label"]
    for i in range(8):
        for t in range(3 + i % 3):
            lines.append(f"{i},{t},{i + t},{-i * t},{'xy'[i % 2]}")
    ds = load_csv(write(tmp_path / "long.csv", "\n".join(lines)), time_column="t",
                  test_split=0.25)
    assert ds.input_shape == (5, 2) and ds.label_names == ["x", "y"]
    assert ds.mask_value is not None and len(ds.normalization["mean"]) == 2
    assert "task classification inferred: the labels are not all numbers" in ds.description


def test_csv_series_layout_forecasting_windows(tmp_path):
    n = 60
    t = np.arange(n)
    target = 10 + np.sin(2 * np.pi * t / 12) + t * 0.1
    other = np.cos(t)
    lines = ["month,other,sales"] + [f"{m},{o:.6f},{s:.6f}" for m, o, s in
                                     zip(t, other, target)]
    path = write(tmp_path / "sales.csv", "\n".join(lines))
    ds = load_csv(path, layout="series", label="sales", time_column="month", window=12,
                  horizon=3, season=12, val_fraction=0.1, test_fraction=0.2)
    assert ds.task == "regression" and ds.num_outputs == 3 and ds.season == 12
    assert ds.input_shape == (12, 2)  # the target column comes first
    assert ds.source["format"] == "csv-series" and ds.mask_value is None
    n_test, n_val = 12, 6
    assert len(ds.y_test) == n_test and len(ds.y_val) == n_val
    assert len(ds.y_train) == n - 12 - 3 + 1 - n_test - n_val
    values = np.round(target, 6)
    fit_end = n - n_test - n_val
    mean, std = ds.normalization["mean"][0], ds.normalization["std"][0]
    assert mean == pytest.approx(values[:fit_end].mean()) and mean != pytest.approx(
        values.mean())
    assert std == pytest.approx(values[:fit_end].std())
    # Windows are chronological: the last test target is the series' last value.
    assert ds.y_test[-1, -1] * std + mean == pytest.approx(values[-1], abs=1e-4)
    np.testing.assert_allclose(ds.x_train[1, :-1], ds.x_train[0, 1:])
    np.testing.assert_allclose(ds.y_train[0, 0], ds.x_train[1, -1, 0])
    # auto layout: no id or label column → series, stated in the description.
    auto = load_csv(path, window=12, horizon=3, time_column="month")
    assert "layout 'series' chosen from the header" in auto.description
    assert auto.input_shape == (12, 2)


def test_csv_regression_inferred_from_float_labels(tmp_path):
    lines = ["label,t0,t1,t2"] + [f"{i * 0.3 + 0.1:.2f},{i},{i + 1},{i + 2}" for i in range(10)]
    ds = load_csv(write(tmp_path / "r.csv", "\n".join(lines)))
    assert ds.task == "regression" and ds.num_outputs == 1
    assert "task regression inferred: the targets are numbers with non-integer values" \
        in ds.description


# --------------------------------------------------------------------------- arrays, npz

def test_from_arrays_string_labels_decode_and_2d_input():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 8))
    y = np.array(["cat", "dog", "emu"] * 10)
    ds = Dataset.from_arrays(x, y, seed=2)
    assert ds.input_shape == (8, 1) and ds.task == "classification"
    assert ds.label_names == ["cat", "dog", "emu"]
    assert "task classification inferred" in ds.description
    assert "no test file given" in ds.description
    # Predictions (class probabilities) map back to the original labels.
    probabilities = np.eye(3)[[2, 0, 1]]
    assert ds.decode_labels(probabilities) == ["emu", "cat", "dog"]
    assert ds.decode_labels(1) == "dog" and ds.decode_labels([0, 0]) == ["cat", "cat"]
    # Each split's labels are the original ones of its series.
    mean, std = ds.normalization["mean"][0], ds.normalization["std"][0]
    for split in ("train", "val", "test"):
        xs, ys = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        for row, label in zip(xs[..., 0] * std + mean, ds.decode_labels(ys)):
            distance = np.abs(x - row).max(axis=1)  # the original series of this row
            assert distance.min() < 1e-4 and y[int(distance.argmin())] == label
    with pytest.raises(ValueError, match=r"`indices` must be class indices in \[0, 3\)"):
        ds.decode_labels([3])


def test_from_arrays_normalization_uses_training_statistics_only():
    x_train = np.arange(40, dtype=float).reshape(20, 2)[..., None] * [1.0, -2.0]  # 2 features
    y_train = np.arange(20) % 2
    x_test = x_train[:4] + 1000.0
    ds = Dataset.from_arrays(x_train, y_train, x_test, y_train[:4], seed=0)
    mean, std = np.array(ds.normalization["mean"]), np.array(ds.normalization["std"])
    recovered = np.round(ds.x_train * std + mean, 4)
    # The statistics are those of the training part, not of train+val or of the test set.
    np.testing.assert_allclose(mean, recovered.mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(std, recovered.std(axis=(0, 1)) + 1e-8, rtol=1e-4)
    assert not np.allclose(mean, x_train.mean(axis=(0, 1)))
    np.testing.assert_allclose(ds.x_test, (x_test - mean) / std, rtol=1e-5)
    assert ds.x_test.mean() > 10  # the test set is scaled, not re-centred


def test_stratified_split_keeps_every_class_in_train_and_val():
    y = np.repeat([0, 1, 2], [5, 12, 3])  # sorted by class, as in UCR train files
    x = np.random.default_rng(0).normal(size=(20, 6, 1))
    ds = Dataset.from_arrays(x, y, x[:3], y[:3], validation_split=0.2, seed=4)
    assert set(ds.y_train.tolist()) == {0, 1, 2} and set(ds.y_val.tolist()) == {0, 1, 2}
    assert np.bincount(ds.y_val).tolist() == [1, 2, 1]
    assert ds.label_names == ["0", "1", "2"]
    assert not np.all(np.diff(ds.y_train) >= 0)  # shuffled


def test_from_arrays_regression_ragged_lists_and_duck_typed_frames():
    class Frame:  # what from_arrays uses of a pandas DataFrame / Series
        def __init__(self, values):
            self.values = np.asarray(values)

        def to_numpy(self):
            return self.values

    x = Frame(np.random.default_rng(0).normal(size=(12, 5)))
    y = Frame(np.linspace(0.1, 2.3, 12))
    ds = Dataset.from_arrays(x, y)
    assert ds.task == "regression" and ds.input_shape == (5, 1) and ds.num_outputs == 1
    assert "task regression inferred" in ds.description
    ragged = [np.arange(1.0, 3 + i % 4) for i in range(12)]
    ds = Dataset.from_arrays(ragged, [i % 2 for i in range(12)], normalize=False)
    assert ds.input_shape == (6, 1) and ds.mask_value == -1.0 or ds.mask_value == 0.0
    lengths = sorted(int((row[:, 0] != ds.mask_value).sum())
                     for row in np.concatenate([ds.x_train, ds.x_val, ds.x_test]))
    assert lengths == sorted(len(r) for r in ragged)


def test_npz_with_and_without_test_split(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(20, 7, 2)).astype(np.float32), np.arange(20) % 2
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5],
             label_names=np.array(["neg", "pos"]))
    ds = load_file(path)
    assert ds.name == "mine" and ds.label_names == ["neg", "pos"] and len(ds.x_test) == 5
    assert ds.source == {"path": str(path.resolve()), "format": "npz",
                         "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert ds.decode_labels(ds.y_test) == ["neg", "pos", "neg", "pos", "neg"]
    np.savez(tmp_path / "notest.npz", x_train=x, y_train=y)
    ds = load_npz(tmp_path / "notest.npz", test_split=0.3)
    assert len(ds.x_test) == 6 and ds.label_names == ["0", "1"]


def test_load_dataset_dispatches_on_paths_and_keeps_names(tmp_path):
    path = ts_pair(tmp_path)
    for spec in (str(path), path, pathlib.Path(path)):
        assert load_dataset(spec).name == "Toy"
    assert load_dataset("italy_power_demand").source is None
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['window'\] for a \.ts file"):
        load_dataset(str(path), window=3)
    with pytest.raises(FileNotFoundError, match="nope.ts"):
        load_dataset(str(tmp_path / "nope.ts"))


# --------------------------------------------------------------------------- bad input

GOOD_HEADER = "@univariate true\n@classLabel true a b\n@data\n"
BAD_FILES = [
    ("e.ts", "", {}, r"e\.ts: the file is empty"),
    ("csv.ts", "label,t0\na,1\n", {},
     r"csv\.ts line 1: expected a header line starting with '@' before '@data', found "
     r"'label,t0'"),
    ("nodata.ts", "@univariate true\n@classLabel true a b\n", {}, r"nodata\.ts: no @data"),
    ("nolabels.ts", "@univariate true\n@data\n1,2\n", {}, r"nolabels\.ts: the series have no "
     "labels"),
    ("value.ts", GOOD_HEADER + "1,2:a\n1,abc:b\n", {},
     r"value\.ts line 5, dimension 1, value 2: expected a number or '\?' \(missing\), "
     r"found 'abc'"),
    ("dims.ts", "@classLabel true a b\n@data\n1,2:3,4:a\n1,2:b\n", {},
     r"dims\.ts line 4: expected 2 dimension\(s\) like the other series, found 1"),
    ("declared.ts", GOOD_HEADER + "1,2:a\n1,2:c\n", {},
     r"declared\.ts line 5: class label 'c' is not one of the @classLabel labels"),
    ("one.ts", GOOD_HEADER + "1,2:a\n3,4:a\n", {},
     r"one\.ts: every series has the class label 'a'; classification needs at least 2"),
    ("ragged.ts", "@classLabel true a b\n@data\n1,2:3,4,5:a\n", {},
     r"ragged\.ts line 3: the dimensions have different lengths \(2, 3 values\)"),
    ("after.ts", GOOD_HEADER + "1,2:a\n@classLabel true a\n", {},
     r"after\.ts line 5: header line '@classLabel true a' after '@data'"),
    ("flag.ts", "@univariate maybe\n@classLabel true a b\n@data\n1:a\n", {},
     r"flag\.ts line 1: @univariate must be followed by true or false, found 'maybe'"),
    ("target.ts", "@targetLabel true\n@data\n1,2:x\n", {},
     r"target\.ts line 3: expected a number as the regression target, found 'x'"),
    ("bin.ts", b"\x89PNG\r\n\x1a\n\xff\xfe", {}, r"bin\.ts: not a text file"),
    ("nolabel.csv", "target,t0,t1\na,1,2\nb,3,4\n", {"layout": "wide"},
     r"nolabel\.csv line 1: no column 'label' \(`label='label'`\); the header has columns "
     r"\['target', 't0', 't1'\]"),
    ("nonnum.csv", "label,t1,t2\na,1,2\nb,3,x4\n", {},
     r"nonnum\.csv line 3, column 't2': expected a number .* found 'x4'"),
    ("fields.csv", "label,t1,t2,t3\na,1,2,3\nb,3,4\n", {},
     r"fields\.csv line 3: expected 4 fields like the header \(line 1\), found 3"),
    ("longlabel.csv", "id,v,label\n1,0.5,a\n1,0.7,a\n1,0.9,b\n2,1,b\n", {},
     r"longlabel\.csv line 4, column 'label': label 'b' differs from 'a' given for series "
     r"'1' on line 2"),
    ("twice.csv", "id,t,v,label\n1,0,0.5,a\n1,1,0.7,a\n1,0,0.9,a\n2,0,1,b\n",
     {"time_column": "t"},
     r"twice\.csv line 4, column 't': time '0' appears twice in series '1' \(also line 2\)"),
    ("twice_series.csv", "month,y\n1,5\n2,6\n2,7\n3,8\n",
     {"layout": "series", "time_column": "month", "window": 1, "horizon": 1},
     r"twice_series\.csv line 4, column 'month': time '2' appears twice \(also line 3\)"),
    ("noheader.csv", "1,2,3\n4,5,6\n", {},
     r"noheader\.csv line 1: expected a header row naming the columns"),
    ("short.csv", "y\n" + "".join(f"{i}\n" for i in range(10)), {"window": 8, "horizon": 5},
     r"short\.csv: `window \+ horizon` = 8 \+ 5 = 13 is longer than the series \(10 rows\)"),
    ("nowindow.csv", "y\n1\n2\n", {}, r"nowindow\.csv line 1: layout='auto' reads this file "
     r"as one series .* needs `window` and `horizon`"),
    ("onecls.csv", "label,t1\na,1\na,2\n", {},
     r"onecls\.csv: every series has the class label 'a'"),
    ("layout.csv", "label,t1\na,1\nb,2\n", {"layout": "tall"},
     r"`layout` must be one of \['auto', 'long', 'series', 'wide'\]\. Received: layout='tall'"),
    ("window.csv", "label,t1\na,1\nb,2\n", {"window": 3},
     r"`window` is for layout='series' .* Received: window=3"),
    ("bad.npz", "not a zip", {}, r"bad\.npz: not a zip archive"),
    ("e.npz", "", {}, r"e\.npz: the file is empty"),
]


@pytest.mark.parametrize("filename, content, kwargs, match", BAD_FILES,
                         ids=[f[0] for f in BAD_FILES])
def test_bad_files_give_one_clear_error(tmp_path, filename, content, kwargs, match):
    path = tmp_path / filename
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        load_dataset(str(path), **kwargs)
    assert_raised_by_zoo(info)


def assert_raised_by_zoo(info):
    # Raised by the loaders themselves, not from inside numpy or csv, with no chained
    # traceback shown.
    assert pathlib.Path(str(info.traceback[-1].path)).parent.name == "zoo"
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


@pytest.mark.parametrize("test_text, match", [
    ("@univariate false\n@classLabel true down flat up\n@data\n1,2:3,4:up\n",
     r"Toy_TEST\.ts line 4: expected 1 dimension\(s\) like the other series, found 2"),
    ("@classLabel true down flat up sideways\n@data\n1,2:up\n3,4:sideways\n",
     r"Toy_TEST\.ts line 4: class label 'sideways' does not occur in the training data "
     r"\(Toy_TRAIN\.ts"),
    ("@targetLabel true\n@data\n1,2:0.5\n",
     r"Toy_TEST\.ts line 1: a regression file, but the training file Toy_TRAIN\.ts is "
     "classification"),
])
def test_test_file_inconsistent_with_training_file(tmp_path, test_text, match):
    path = ts_pair(tmp_path, test=test_text)
    with pytest.raises(ValueError, match=match) as info:
        load_ts(path)
    assert_raised_by_zoo(info)


def test_csv_test_file_with_unknown_label(tmp_path):
    train = write(tmp_path / "a.csv", wide_csv(TRAIN_TS))
    test = write(tmp_path / "b.csv", "label,t0,t1\nup,1,2\nsideways,3,4\n")
    with pytest.raises(ValueError, match=r"b\.csv line 3: class label 'sideways' does not "
                                         r"occur in the training data \(a\.csv"):
        load_csv(train, test)


@pytest.mark.parametrize("call, match", [
    (lambda p: load_file(p.with_suffix(".json")), "does not exist"),
    (lambda p: load_ts(p, validation_split=1.5), r"validation_split=1\.5"),
    (lambda p: load_ts(p, test_path=p, test_split=0.2), "not both"),
    (lambda p: Dataset.from_arrays(np.zeros((4, 3)), [0, 1, 0]), r"`y_train` must have one "
     r"label per series of `x_train` \(4\)\. Received: 3 labels"),
    (lambda p: Dataset.from_arrays(np.zeros((4, 3)), [0, 1, 0, 1], task="ranking"),
     r"`task` must be one of .* Received: task='ranking'"),
    (lambda p: Dataset.from_arrays(np.zeros(4), [0, 1, 0, 1]), r"`x_train` must be 2-D"),
])
def test_bad_arguments_name_the_argument(tmp_path, call, match):
    path = ts_pair(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        call(path)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_TRAIN.ts"):
        load_ts(tmp_path / "missing_TRAIN.ts")
    other = write(tmp_path / "data.json", "{}")
    with pytest.raises(ValueError, match=r"`path` must end with one of \['\.csv', '\.npz', "
                                         r"'\.ts', '\.tsv', '\.txt'\]"):
        load_file(other)

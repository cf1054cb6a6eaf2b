"""Your own data from files: UCR/UEA `.ts`, CSV (wide, long or one series) and `.npz`.

`load_file(path, **options)` picks the reader from the suffix; `zoo.load_dataset(path)`
calls it. Every reader returns a `zoo.Dataset` with the same conventions as the embedded
datasets: series `(samples, time, features)` float32, class indices 0..K-1 with
`label_names`, a stratified validation split, per-feature normalization with training
statistics only, and `source` (path, format, sha256 of each file read).

What this module relies on in the `.ts` format (the text format of the UEA & UCR
time-series archive, written by sktime): a file is a header and then the cases. Header
lines begin with `@` and hold one tag and its value: `@problemName`, `@timeStamps`,
`@missing`, `@univariate`, `@dimensions`, `@equalLength`, `@seriesLength`, then
`@classLabel true <label> <label> ...` (the class labels, in their order) or
`@classLabel false`, or `@targetLabel true` for regression; the tag `@data` ends the
header. Lines beginning with `#` are comments, anywhere. Every line after `@data` is one
case: its dimensions are separated by `:`, and the values of one dimension by `,`; the
field after the last `:` is the class label (or the numeric regression target). A `?`
stands for a missing value. The dimensions of one case have the same length, but cases
may differ in length when `@equalLength` is false. Time-stamped values
(`@timeStamps true`) are not read. The archive ships each problem as `<Name>_TRAIN.ts`
and `<Name>_TEST.ts`.

How the data become arrays: missing values inside a series are filled by linear
interpolation along time (at the edges, by the nearest observed value) and counted in
the description. Series of different lengths are padded at the end to the longest one,
after normalization, with `Dataset.mask_value`: 0.0, unless a real step of the data has
every feature exactly 0.0; then a value below every real value (floor(min) - 1), so that
`build_gru(mask_value=dataset.mask_value)` never masks data.

Errors in a file raise one `ValueError` naming the file and, where there is one, the
line and column, what was found and what was expected (`FileNotFoundError` for a file
that does not exist).
"""

import csv
import hashlib
import inspect
import io
import os

import numpy as np

from zoo.checks import check, is_bool, is_int, is_non_negative_int
from zoo.datasets import Dataset, _check_fraction, _normalize_splits, _split_indices

SUFFIXES = {".ts": "ts", ".csv": "csv", ".tsv": "csv", ".txt": "csv", ".npz": "npz"}
LAYOUTS = ("auto", "long", "series", "wide")
TASKS = ("classification", "regression", "sequence_labeling", "sequence_regression")

# Cells that mean "missing value" (compared lower-case, stripped).
_MISSING_TS = ("?", "nan")
_MISSING_CSV = ("", "?", "nan", "na", "n/a", "null", "none")
_TS_TAGS = {tag.lower(): tag for tag in (
    "problemName", "timeStamps", "missing", "univariate", "dimensions", "equalLength",
    "seriesLength", "classLabel", "targetLabel")}


# --------------------------------------------------------------------------- helpers

def _show(text, limit=40):
    """`text` quoted for a message, shortened."""
    text = str(text)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _check_path(path, argument="path"):
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise ValueError(f"`{argument}` must be a file path (str or os.PathLike). "
                         f"Received: {argument}={path!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist (`{argument}`)")
    if not os.path.isfile(path):
        raise ValueError(f"`{argument}` must be a file, not a directory. "
                         f"Received: {argument}={path!r}")
    return path


def _check_int(argument, value, minimum=1, allow_none=False):
    if value is None and allow_none:
        return
    kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    check(argument, value, is_int(value) and value >= minimum,
          kind + (" or None" if allow_none else ""))


def _check_common(validation_split, seed, normalize, test_split=None):
    _check_fraction("validation_split", validation_split)
    if test_split is not None:
        _check_fraction("test_split", test_split)
    check("seed", seed, is_non_negative_int(seed), "an int >= 0")
    check("normalize", normalize, is_bool(normalize), "a bool")


def _read_text(path, expected):
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{name}: not a text file (byte {error.start} is not UTF-8 text); "
                         f"expected {expected}") from None
    if not text.strip():
        raise ValueError(f"{name}: the file is empty; expected {expected}")
    return text


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source(path, fmt, test_path=None):
    source = {"path": os.path.abspath(path), "format": fmt, "sha256": _sha256(path)}
    if test_path is not None:
        source["test_path"] = os.path.abspath(test_path)
        source["sha256"] = [source["sha256"], _sha256(test_path)]
    return source


def _sibling(path):
    """`X_TEST.<suffix>` beside `X_TRAIN.<suffix>`, when it exists; else None."""
    folder, base = os.path.split(path)
    stem, suffix = os.path.splitext(base)
    for train, test in (("_TRAIN", "_TEST"), ("_train", "_test"), ("_Train", "_Test")):
        if stem.endswith(train):
            candidate = os.path.join(folder, stem[: -len(train)] + test + suffix)
            return candidate if os.path.isfile(candidate) else None
    return None


def _stem(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    for suffix in ("_TRAIN", "_train", "_Train"):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _parses_as_number(text):
    """Whether a table cell's text reads as a number."""
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def _label_order(labels):
    """Distinct labels sorted: numerically when every one is a number, else as text."""
    distinct = set(labels)
    if all(_parses_as_number(v) for v in distinct):
        return sorted(distinct, key=lambda v: (float(v), v))
    return sorted(distinct)


def _infer_task(labels):
    """`(task, reason)` from labels given as strings (files) or numbers (arrays)."""
    values = list(labels)
    if not all(_parses_as_number(v) for v in values):
        return "classification", "the labels are not all numbers"
    numbers = np.asarray([float(v) for v in values], dtype=np.float64)
    if not np.all(np.isfinite(numbers)):
        return "classification", "the labels are not all finite numbers"
    if np.any(np.mod(numbers, 1) != 0):
        return "regression", "the targets are numbers with non-integer values"
    distinct = len(np.unique(numbers))
    if distinct <= max(2, min(100, len(numbers) // 2)):
        return "classification", f"{distinct} distinct integer labels"
    return "regression", (f"{distinct} distinct integer values in {len(numbers)} samples "
                          "(too many for classes)")


def _fill_missing(series, places, feature_name):
    """Fills NaN in each `(time, features)` series in place; returns how many were filled."""
    filled = 0
    for values, place in zip(series, places):
        missing = np.isnan(values)
        if not missing.any():
            continue
        steps = np.arange(len(values))
        for j in np.flatnonzero(missing.any(axis=0)):
            gaps = missing[:, j]
            if gaps.all():
                raise ValueError(f"{place}: {feature_name(j)} has no observed value (all "
                                 f"{len(values)} missing); expected at least one number")
            values[gaps, j] = np.interp(steps[gaps], steps[~gaps], values[~gaps, j])
        filled += int(missing.sum())
    return filled


def _encode_classes(train_labels, train_places, test_labels, test_places, train_name,
                    order=None, order_from=None):
    """Class indices for labels given as strings; `order` fixes the index order."""
    if order is None:
        names = _label_order(train_labels)
    else:
        names = list(order)
        known = set(names)
        for label, place in zip(train_labels, train_places):
            if label not in known:
                raise ValueError(f"{place}: class label {label!r} is not one of the labels "
                                 f"{names} of {order_from}")
    distinct = set(train_labels)
    if len(distinct) < 2:
        raise ValueError(f"{train_name}: every series has the class label "
                         f"{next(iter(distinct))!r}; classification needs at least 2 classes")
    index = {name: i for i, name in enumerate(names)}
    y_train = np.array([index[v] for v in train_labels], dtype=np.int32)
    y_test = None
    if test_labels is not None:
        for label, place in zip(test_labels, test_places):
            if label not in index:
                raise ValueError(f"{place}: class label {label!r} does not occur in the "
                                 f"training data ({train_name}: labels {names})")
        y_test = np.array([index[v] for v in test_labels], dtype=np.int32)
    return y_train, y_test, [str(n) for n in names]


def _targets(labels, places, what="regression target"):
    out = np.empty(len(labels), dtype=np.float64)
    for i, (label, place) in enumerate(zip(labels, places)):
        try:
            out[i] = float(label)
        except (TypeError, ValueError):
            out[i] = np.nan
        if not np.isfinite(out[i]):
            raise ValueError(f"{place}: expected a number as the {what}, found {_show(label)}")
    return out[:, None].astype(np.float32)


def _pad(series, length, features):
    x = np.full((len(series), length, features), np.nan, dtype=np.float32)
    for i, values in enumerate(series):
        x[i, : len(values)] = values
    return x


def _choose_mask_value(splits):
    """0.0, unless a real step has every feature 0.0: then below every real value."""
    reals = [x[~np.isnan(x).all(axis=-1)] for x in splits if len(x)]
    if any(np.any(np.all(r == 0.0, axis=-1)) for r in reals):
        return float(np.floor(min(float(r.min()) for r in reals if r.size)) - 1.0)
    return 0.0


def _build(*, name, task, train, test, label_names, num_outputs, feature_name,
           validation_split, seed, normalize, test_split, head, notes, source,
           test_from=None, season=None):
    """Splits, normalizes and pads; returns the `Dataset`.

    Args:
        train, test: `(series, y, places)`: a list of `(time, features)` float64 arrays
            (NaN: missing), the labels as a numpy array, and one location string per
            series for messages. `test` None: a `test_split` is cut from train.
    """
    train_series, y_train, train_places = train
    filled = _fill_missing(train_series, train_places, feature_name)
    if test is not None:
        test_series, y_test, test_places = test
        filled += _fill_missing(test_series, test_places, feature_name)
    classes = num_outputs if task == "classification" else None
    given, cut = len(train_series), None
    if test is None:
        y_given = y_train
        keep, cut = _split_indices(y_train, task, test_split, [seed, 1], num_classes=classes)
        test_series = [train_series[i] for i in cut]
        train_series = [train_series[i] for i in keep]
        y_test, y_train = y_train[cut], y_train[keep]
        how = "stratified " if task == "classification" else "random "
        test_from = (f"test: a {how}{test_split:g} of the training data ({len(cut)} series; "
                     "no test file given)")
    if not len(train_series):
        raise ValueError(f"{head}: no training series left after the test split")
    features = train_series[0].shape[1]
    lengths = [len(s) for s in train_series] + [len(s) for s in test_series]
    longest = max(lengths)
    x_train, x_test = _pad(train_series, longest, features), _pad(test_series, longest, features)
    train_idx, val_idx = _split_indices(y_train, task, validation_split, seed,
                                        num_classes=classes)
    if not len(train_idx) or not len(val_idx):
        if cut is None:
            raise ValueError(f"{head}: {len(y_train)} training series are too few to split "
                             f"off a validation part (validation_split={validation_split})")
        raise ValueError(_too_few_after_test_split(
            head, y_given, task, classes, seed, validation_split, test_split, given, len(cut)))
    x_val, y_val = x_train[val_idx], y_train[val_idx]
    x_train, y_train = x_train[train_idx], y_train[train_idx]
    normalization = None
    if normalize:
        (x_train, x_val, x_test), normalization = _normalize_splits(x_train, x_val, x_test)
    mask_value = None
    variable = min(lengths) != longest
    if variable:
        mask_value = _choose_mask_value((x_train, x_val, x_test))
        for x in (x_train, x_val, x_test):
            x[np.isnan(x).all(axis=-1)] = mask_value
    parts = [head] + list(notes)
    if variable:
        parts.append(f"variable length {min(lengths)}-{longest} steps, padded at the end "
                     f"with mask_value={mask_value:g}")
    if filled:
        parts.append(f"{filled} missing value(s) filled by linear interpolation along time "
                     "(nearest observed value at the edges)")
    if task == "classification":
        parts.append(f"validation: a stratified {validation_split:g} of the training data")
    else:
        parts.append(f"validation: a random {validation_split:g} of the training data")
    if test_from:
        parts.append(test_from)
    if normalize:
        parts.append("normalized per feature with the training part's mean and std")
    return Dataset(
        name=name,
        task=task,
        num_outputs=int(num_outputs),
        input_shape=tuple(int(v) for v in x_train.shape[1:]),
        x_train=x_train.astype(np.float32),
        y_train=y_train,
        x_val=x_val.astype(np.float32),
        y_val=y_val,
        x_test=x_test.astype(np.float32),
        y_test=y_test,
        label_names=label_names,
        normalization=normalization,
        description="; ".join(parts) + ".",
        season=season,
        mask_value=mask_value,
        source=source,
    )


def _too_few_after_test_split(head, y, task, classes, seed, validation_split, test_split,
                              given, cut):
    """The message when the series left after the test split are too few to validate.

    Names `test_split` when a smaller one would have left enough (the smallest test split
    takes one series of each class, or one series); else says that the series are too few.
    """
    counts = (f"the test split (test_split={test_split!r}) took {cut} of the {given} series "
              f"given and left {given - cut}")
    keep, _ = _split_indices(y, task, 1e-9, [seed, 1], num_classes=classes)
    train_idx, val_idx = _split_indices(y[keep], task, validation_split, seed,
                                        num_classes=classes)
    if len(train_idx) and len(val_idx):
        return (f"{head}: `test_split` must leave enough training series to split off a "
                f"validation part (validation_split={validation_split!r}): {counts}; lower "
                f"test_split or give a separate test set. Received: test_split={test_split!r}")
    return (f"{head}: {given} series are too few for a test and a validation part: {counts}, "
            f"too few to split off a validation part (validation_split={validation_split!r}); "
            "give more series, or a separate test set")


# --------------------------------------------------------------------------- arrays

def _refuse_complex(values, argument, advice="pass the parts as features, e.g. "
                    "np.stack([x.real, x.imag], axis=-1)"):
    """Complex numbers would lose their imaginary part (NumPy only warns): an error."""
    if getattr(getattr(values, "dtype", None), "kind", None) == "c":
        raise ValueError(f"`{argument}` must hold real numbers. Received: {argument} with "
                         f"complex dtype {values.dtype} (casting would drop the imaginary "
                         f"part); {advice}")


def _series_from(x, argument):
    """A list of `(time, features)` float64 arrays from an array, a list or a DataFrame."""
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):
        x = x.to_numpy()  # pandas DataFrame in wide form: one row per series
    try:
        whole = np.asarray(x)
    except (TypeError, ValueError):
        whole = None  # series of different lengths: each one is checked below
    _refuse_complex(whole, argument)
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        if "inhomogeneous" not in str(error) and "sequence" not in str(error):
            raise ValueError(f"`{argument}` must hold numbers (samples, time[, features]); "
                             f"{error}") from None
        array = None
    if array is not None:
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise ValueError(f"`{argument}` must be 2-D (samples, time) or 3-D (samples, time, "
                             f"features), or a list of series. Received: {argument} with "
                             f"shape {array.shape}")
        if not array.shape[0] or not array.shape[1] or not array.shape[2]:
            raise ValueError(f"`{argument}` must hold at least one series of one step. "
                             f"Received: {argument} with shape {array.shape}")
        if np.isinf(array).any():
            raise ValueError(f"`{argument}` holds an infinite value; expected finite numbers "
                             "(NaN marks a missing value)")
        return list(array)
    series = []
    for i, item in enumerate(x):
        _refuse_complex(np.asarray(item), f"{argument}[{i}]")
        try:
            values = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"`{argument}[{i}]` must be a series of numbers (time,) or "
                             f"(time, features); {error}") from None
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or not values.shape[0] or not values.shape[1]:
            raise ValueError(f"`{argument}[{i}]` must be a non-empty series (time,) or (time, "
                             f"features). Received: shape {values.shape}")
        if series and values.shape[1] != series[0].shape[1]:
            raise ValueError(f"`{argument}[{i}]` has {values.shape[1]} feature(s), the series "
                             f"before it {series[0].shape[1]}; every series needs the same "
                             "number of features")
        if np.isinf(values).any():
            raise ValueError(f"`{argument}[{i}]` holds an infinite value; expected finite "
                             "numbers (NaN marks a missing value)")
        series.append(values.copy())
    if not series:
        raise ValueError(f"`{argument}` must hold at least one series. Received: an empty "
                         f"{type(x).__name__}")
    return series


def _labels_from(y, argument, count, x_argument):
    if hasattr(y, "to_numpy") and not isinstance(y, np.ndarray):
        y = y.to_numpy()
    try:
        y = np.asarray(y)
    except (TypeError, ValueError):
        # Rows of different lengths (per-step targets of series of different lengths).
        try:
            lengths = sorted({len(row) for row in y})
        except TypeError:
            lengths = None
        found = (f"rows of different lengths {_lengths_text(lengths)}" if lengths
                 else "a mix of single labels and sequences")
        raise ValueError(f"`{argument}` must be one label per series (samples,) or per-step "
                         f"targets of one length (samples, time). Received: {found}") from None
    _refuse_complex(y, argument, "expected class labels or real targets")
    if y.ndim == 0 or len(y) != count:
        found = "a scalar" if y.ndim == 0 else f"{len(y)} labels"
        raise ValueError(f"`{argument}` must have one label per series of `{x_argument}` "
                         f"({count}). Received: {found}")
    return y


def _is_missing(value):
    """None, a NaN, or pandas' NA/NaT: a label that is not there."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, float) and value != value


def _class_strings(y, argument, task="classification"):
    """Labels `(samples,)` or `(samples, 1)` as strings (integer-valued numbers as ints).

    `task="sequence_labeling"`: per-step labels of any shape, as one flat list (messages
    give the index in the shape received).
    """
    if task == "classification":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"`{argument}` must be 1-D (samples,) for classification. "
                             f"Received: shape {y.shape}")
    shape, y = y.shape, y.reshape(-1)
    what = "classification" if task == "classification" else f"task={task!r}"
    numeric = "regression" if task == "classification" else "sequence_regression"

    def at(i):  # `y_train[3]`'s index "3", or "3, 2" for per-step labels
        return ", ".join(str(int(v)) for v in np.unravel_index(i, shape))

    def index(i):
        return at(i) if len(shape) == 1 else f"({at(i)})"

    unit = "series" if len(shape) == 1 else "step"

    if y.dtype.kind in "iub":
        return [str(v) for v in y.tolist()]
    if y.dtype.kind == "f":
        if np.isnan(y).any():
            raise ValueError(f"`{argument}` has a missing (NaN) label at index "
                             f"{index(int(np.flatnonzero(np.isnan(y))[0]))}; expected a class "
                             f"label (int or str) for every {unit}")
        if not np.isfinite(y).all():
            i = int(np.flatnonzero(~np.isfinite(y))[0])
            raise ValueError(f"`{argument}` must hold class labels (ints or str) for "
                             f"{what}. Received: a label that is not a finite "
                             f"number, {argument}[{at(i)}]={y[i].item()!r}")
        fractional = np.flatnonzero(np.mod(y, 1) != 0)
        if len(fractional):
            i = int(fractional[0])
            raise ValueError(f"`{argument}` must hold class labels (ints or str) for "
                             f"{what}. Received: non-integer float labels, e.g. "
                             f"{argument}[{at(i)}]={y[i].item()!r} ({len(fractional)} of "
                             f"{len(y)}); "
                             f"for numeric targets use task='{numeric}', else give integer or "
                             "str class labels")
        return [str(int(v)) for v in y.tolist()]
    values = y.tolist()
    missing = [i for i, v in enumerate(values) if _is_missing(v)]
    if missing:
        raise ValueError(f"`{argument}` has a missing ({values[missing[0]]!r}) label at index "
                         f"{index(missing[0])} ({len(missing)} of {len(values)}); expected a "
                         f"class label (int or str) for every {unit}")
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def dataset_from_arrays(x_train, y_train, x_test=None, y_test=None, *, task=None,
                        validation_split=0.2, seed=0, normalize=True, name="arrays",
                        label_names=None, test_split=0.2, source=None, head=None):
    """`Dataset.from_arrays` (see there); `source` and `head` are for the file readers."""
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be one of {list(TASKS)} or None. Received: task={task!r}")
    _check_common(validation_split, seed, normalize, test_split)
    if (x_test is None) != (y_test is None):
        given = "x_test" if x_test is not None else "y_test"
        raise ValueError(f"`x_test` and `y_test` go together. Received: only `{given}`")
    if label_names is not None and (isinstance(label_names, str) or not all(
            isinstance(v, str) for v in label_names) or len(set(label_names)) != len(label_names)):
        raise ValueError("`label_names` must be a list of distinct str, in class-index order. "
                         f"Received: label_names={label_names!r}")
    train_series = _series_from(x_train, "x_train")
    if task in _SEQUENCE_TASKS:
        _check_one_length(task, train_series)
    y_train = _labels_from(y_train, "y_train", len(train_series), "x_train")
    test_series = None
    if x_test is not None:
        test_series = _series_from(x_test, "x_test")
        if task in _SEQUENCE_TASKS:
            _check_one_length(task, train_series, test_series)
        y_test = _labels_from(y_test, "y_test", len(test_series), "x_test")
        if test_series[0].shape[1] != train_series[0].shape[1]:
            raise ValueError(f"`x_test` has {test_series[0].shape[1]} feature(s), `x_train` "
                             f"{train_series[0].shape[1]}; expected the same")
    notes = []
    why = None
    if task is None:
        if y_train.ndim == 2 and y_train.shape[1] > 1:
            task, why = "regression", f"{y_train.shape[1]} target columns"
        elif y_train.dtype.kind == "b":
            task, why = "classification", "boolean labels"
        else:
            flat = y_train.reshape(-1) if y_train.ndim == 2 else y_train
            task, why = _infer_task(_class_strings(flat, "y_train")
                                    if flat.dtype.kind not in "f" else flat.tolist())
        notes.append(f"task {task} inferred: {why}")
    if task in ("regression", "sequence_regression") and label_names is not None and len(
            label_names):
        inferred = "" if why is None else (f" (inferred: {why}; pass task='classification' if "
                                           "the labels are classes)")
        raise ValueError(f"`label_names` must be None for task={task!r}{inferred}: class "
                         "names are for classification and sequence_labeling. Received: "
                         f"label_names={list(label_names)!r}")
    train_places = [f"`x_train[{i}]`" for i in range(len(train_series))]
    test_places = [f"`x_test[{i}]`" for i in range(len(test_series or []))]

    def feature_name(j):
        return f"feature {j}"

    if task == "classification":
        labels = raw_labels = _class_strings(y_train, "y_train")
        test_labels = None if y_test is None else _class_strings(y_test, "y_test")
        order = None
        if label_names is not None:
            order = list(label_names)
            if not set(labels) <= set(order) and all(
                    v.isdigit() and int(v) < len(order) for v in labels):
                # Integer class indices with names for them.
                labels = [order[int(v)] for v in labels]
                if test_labels is not None:
                    test_labels = [order[int(v)] if v.isdigit() and int(v) < len(order) else v
                                   for v in test_labels]
            # Names beyond the classes present (in training or test labels): outputs
            # that no series ever has.
            present = set(labels) | set(test_labels or ())
            unused = [n for n in order if n not in present]
            if unused and set(labels) <= set(order):
                raise ValueError(
                    f"`label_names` must name the classes of the labels, one name each, in "
                    f"class-index order: {len(order)} names, but `y_train` (and `y_test`) "
                    f"have {len(present)} classes ({_label_order(raw_labels)} in "
                    f"`y_train`); no series has the class {unused[0]!r}. Received: "
                    f"label_names={list(label_names)!r}")
        y_train, y_test, names = _encode_classes(
            labels, [f"`y_train[{i}]`" for i in range(len(labels))], test_labels,
            [f"`y_test[{i}]`" for i in range(len(test_labels or []))], "`y_train`",
            order=order, order_from="`label_names`")
        num_outputs = len(names)
    elif task == "regression":
        y_train, names = _float_targets(y_train, "y_train"), None
        y_test = None if y_test is None else _float_targets(y_test, "y_test")
        if y_test is not None and y_test.shape[1] != y_train.shape[1]:
            raise ValueError(f"`y_test` has {y_test.shape[1]} target(s) per series, `y_train` "
                             f"{y_train.shape[1]}; expected the same")
        num_outputs = y_train.shape[1]
    else:
        y_train, y_test, names, num_outputs = _sequence_targets(
            task, train_series, y_train, test_series, y_test, label_names)
    return _build(
        name=name, task=task, train=(train_series, y_train, train_places),
        test=None if test_series is None else (test_series, y_test, test_places),
        label_names=names, num_outputs=num_outputs, feature_name=feature_name,
        validation_split=validation_split, seed=seed, normalize=normalize,
        test_split=test_split, head=head or f"{name}: arrays given in memory", notes=notes,
        source=source, test_from="test: the arrays given as x_test/y_test"
        if test_series is not None else None)


def _float_targets(y, argument):
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{argument}` must hold numbers for task='regression'; {error}") \
            from None
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(f"`{argument}` must be (samples,) or (samples, outputs) for "
                         f"task='regression'. Received: shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"`{argument}` holds a missing or infinite target at row "
                         f"{int(np.flatnonzero(~np.isfinite(y).all(axis=1))[0])}")
    return y.astype(np.float32)


_SEQUENCE_TASKS = ("sequence_labeling", "sequence_regression")


def _lengths_text(lengths):
    """Distinct series lengths for a message: all of a few, else the range."""
    lengths = sorted(set(lengths))
    if len(lengths) <= 8:
        return str(lengths)
    return f"{lengths[0]}-{lengths[-1]} ({len(lengths)} different lengths)"


def _check_one_length(task, train_series, test_series=None):
    """Per-step targets: every series (training and test) has one length."""
    lengths = {len(s) for s in train_series + (test_series or [])}
    if len(lengths) != 1:
        where = "`x_train`" if not test_series else "`x_train` and `x_test`"
        raise ValueError(f"task={task!r}: per-step targets need series of one length; found "
                         f"lengths {_lengths_text(lengths)} in {where} (pad the series to "
                         "one length, or use a task with one target per series)")


def _sequence_targets(task, train_series, y_train, test_series, y_test, label_names):
    """Per-step targets `(samples, time)` (labels) or `(samples, time[, k])` (regression)."""
    _check_one_length(task, train_series, test_series)
    length = len(train_series[0])
    if task == "sequence_regression":
        y_train = _step_targets(y_train, "y_train", length)
        outputs = 1 if y_train.ndim == 2 else y_train.shape[2]
        if y_test is not None:
            y_test = _step_targets(y_test, "y_test", length)
            test_outputs = 1 if y_test.ndim == 2 else y_test.shape[2]
            if test_outputs != outputs:
                raise ValueError(f"`y_test` has {test_outputs} target(s) per step, `y_train` "
                                 f"{outputs}; expected the same. Received: y_train with shape "
                                 f"{y_train.shape}, y_test with shape {y_test.shape}")
            y_test = y_test.reshape((len(y_test),) + y_train.shape[1:])
        return y_train, y_test, None, outputs
    shapes = {}
    for argument, y in (("y_train", y_train), ("y_test", y_test)):
        if y is None:
            continue
        if not (y.ndim == 2 or (y.ndim == 3 and y.shape[2] == 1)) or y.shape[1] != length:
            raise ValueError(f"`{argument}` must be (samples, time={length}) class labels, one "
                             f"per step, for task={task!r}. Received: shape {y.shape}")
        shapes[argument] = y.shape
    train = _class_strings(y_train, "y_train", task)
    test = None if y_test is None else _class_strings(y_test, "y_test", task)
    distinct = set(train)
    if len(distinct) < 2:
        raise ValueError(f"`y_train`: every step of every series has the class label "
                         f"{next(iter(distinct))!r}; task={task!r} needs at least 2 classes")
    names = list(label_names) if label_names is not None else _label_order(train)
    values = {name: i for i, name in enumerate(names)}
    encoded = {}
    for argument, labels in (("y_train", train), ("y_test", test)):
        if labels is None:
            continue
        shape = shapes[argument]
        unknown = set(labels) - set(values)
        if unknown and label_names is not None and all(v.isdigit() for v in set(labels)):
            # Class indices 0..K-1 with `label_names` naming them.
            bad = [i for i, v in enumerate(labels) if int(v) >= len(names)]
            if bad:
                at = ", ".join(str(int(v)) for v in np.unravel_index(bad[0], shape))
                raise ValueError(
                    f"`{argument}` must hold class indices below the number of `label_names` "
                    f"({len(names)}: 0..{len(names) - 1}) or the names themselves; found "
                    f"{argument}[{at}]={int(labels[bad[0]])}. Received: "
                    f"label_names={names!r}")
            codes = [int(v) for v in labels]
        elif unknown:
            known = "`label_names`" if label_names is not None else "`y_train`"
            raise ValueError(f"`{argument}` has label(s) {sorted(unknown)[:5]} that {known} "
                             f"does not have ({names})")
        else:
            codes = [values[v] for v in labels]
        encoded[argument] = np.asarray(codes, dtype=np.int32).reshape(shape)
    return encoded["y_train"], encoded.get("y_test"), [str(n) for n in names], len(names)


def _step_targets(y, argument, length):
    """Per-step regression targets `(samples, time)` or `(samples, time, outputs)`."""
    try:
        values = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{argument}` must hold numbers for task='sequence_regression'; "
                         f"{error}") from None
    if values.ndim not in (2, 3) or values.shape[1] != length or (
            values.ndim == 3 and not values.shape[2]):
        raise ValueError(f"`{argument}` must be (samples, time={length}) or (samples, "
                         f"time={length}, outputs) per-step targets for "
                         f"task='sequence_regression'. Received: shape {values.shape}")
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        at = ", ".join(str(int(v)) for v in bad[0])
        raise ValueError(f"`{argument}` holds a missing or infinite target at series "
                         f"{int(bad[0][0])}, step {int(bad[0][1])} ({argument}[{at}]="
                         f"{values[tuple(bad[0])].item()!r}, {len(bad)} of {values.size}); "
                         "expected finite numbers for task='sequence_regression'")
    return values.astype(np.float32)


# --------------------------------------------------------------------------- .ts

_TS_EXPECTED = ("a UCR/UEA .ts file: header lines starting with '@' (e.g. '@classLabel true "
                "a b'), a line '@data', then one series per line")


def _ts_values(text, place, dimension):
    """The values of one dimension of one case, `?` as NaN."""
    tokens = text.split(",")
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        values = np.empty(len(tokens))
        for k, token in enumerate(tokens, 1):
            token = token.strip()
            if token.lower() in _MISSING_TS:
                values[k - 1] = np.nan
                continue
            try:
                values[k - 1] = float(token)
            except ValueError:
                raise ValueError(f"{place}, dimension {dimension}, value {k}: expected a "
                                 f"number or '?' (missing), found {_show(token)}") from None
    bad = np.flatnonzero(np.isinf(values))
    if len(bad):
        raise ValueError(f"{place}, dimension {dimension}, value {bad[0] + 1}: expected a "
                         f"finite number or '?' (missing), found {_show(tokens[bad[0]].strip())}")
    return values


def _parse_ts(path, train=None):
    """Reads one `.ts` file; `train` (the training file's parse) sets what to expect."""
    name = os.path.basename(path)
    lines = _read_text(path, _TS_EXPECTED).splitlines()
    header, data_line = {}, None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise ValueError(f"{name} line {number}: expected a header line starting with '@' "
                             f"before '@data', found {_show(line)}; expected {_TS_EXPECTED}")
        parts = line[1:].split()
        tag = parts[0].lower() if parts else ""
        if tag == "data":
            data_line = number
            break
        header[tag] = (parts[1:], number)
    if data_line is None:
        raise ValueError(f"{name}: no @data section; expected {_TS_EXPECTED}")

    def where(tag):
        return f"{name} line {header[tag][1]}"

    def flag(tag):
        if tag not in header:
            return None
        values = header[tag][0]
        if not values or values[0].lower() not in ("true", "false"):
            raise ValueError(f"{where(tag)}: @{_TS_TAGS[tag]} must be followed by true or "
                             f"false, found {_show(' '.join(values))}")
        return values[0].lower() == "true"

    def integer(tag):
        if tag not in header:
            return None
        values = header[tag][0]
        if len(values) != 1 or not values[0].isdigit() or int(values[0]) < 1:
            raise ValueError(f"{where(tag)}: @{_TS_TAGS[tag]} must be followed by a positive "
                             f"int, found {_show(' '.join(values))}")
        return int(values[0])

    if flag("timestamps"):
        raise ValueError(f"{where('timestamps')}: @timeStamps true (values as (time,value) "
                         "pairs) is not supported; expected plain values (@timeStamps false)")
    classes, targets = flag("classlabel"), flag("targetlabel")
    declared = None
    if classes:
        declared = header["classlabel"][0][1:]
        if not declared:
            raise ValueError(f"{where('classlabel')}: @classLabel true must list the class "
                             "labels (e.g. '@classLabel true 1 2 3'), found none")
        if len(set(declared)) != len(declared):
            raise ValueError(f"{where('classlabel')}: @classLabel lists a label twice: "
                             f"{declared}")
    if classes and targets:
        raise ValueError(f"{where('targetlabel')}: @targetLabel true and @classLabel true "
                         f"(line {header['classlabel'][1]}); expected one of them")
    if not classes and not targets:
        raise ValueError(f"{name}: the series have no labels (no '@classLabel true <labels>' "
                         "or '@targetLabel true' before @data); expected class labels for "
                         "classification or a numeric target for regression")
    task = "classification" if classes else "regression"
    if train is not None and task != train["task"]:
        tag = "classlabel" if classes else "targetlabel"
        raise ValueError(f"{where(tag)}: a {task} file, but the training file "
                         f"{train['file']} is {train['task']}; expected the same task")
    dimensions = integer("dimensions")
    if flag("univariate"):
        if dimensions not in (None, 1):
            raise ValueError(f"{where('dimensions')}: @dimensions {dimensions}, but "
                             f"@univariate true (line {header['univariate'][1]})")
        dimensions, dims_tag = 1, "univariate"
    else:
        dims_tag = "dimensions"
    how = f"as @{_TS_TAGS[dims_tag]} declares ({where(dims_tag)})" if dimensions else ""
    if train is not None:
        if dimensions is not None and dimensions != train["dimensions"]:
            raise ValueError(f"{where(dims_tag)}: {dimensions} dimension(s), but the training "
                             f"file {train['file']} has {train['dimensions']}")
        dimensions, how = train["dimensions"], "like the other series"
    series_length = integer("serieslength") if flag("equallength") else None

    series, labels, places = [], [], []
    for number in range(data_line + 1, len(lines) + 1):
        line = lines[number - 1].strip()
        if not line or line.startswith("#"):
            continue
        place = f"{name} line {number}"
        if line.startswith("@"):
            raise ValueError(f"{place}: header line {_show(line)} after '@data' (line "
                             f"{data_line}); expected one series per line")
        fields = line.split(":")
        if len(fields) < 2:
            what = "class label" if classes else "target"
            raise ValueError(f"{place}: expected the values of each dimension and then the "
                             f"{what}, separated by ':', found {_show(line)}")
        dims, label = fields[:-1], fields[-1].strip()
        if dimensions is None:
            dimensions, how = len(dims), "like the other series"
        if len(dims) != dimensions:
            raise ValueError(f"{place}: expected {dimensions} dimension(s) {how}, found "
                             f"{len(dims)}")
        columns = [_ts_values(text, place, j) for j, text in enumerate(dims, 1)]
        if len({len(c) for c in columns}) > 1:
            raise ValueError(f"{place}: the dimensions have different lengths "
                             f"({', '.join(str(len(c)) for c in columns)} values); expected "
                             "the same length for every dimension of a series")
        if series_length is not None and len(columns[0]) != series_length:
            raise ValueError(f"{place}: expected {series_length} values per dimension as "
                             f"@seriesLength declares ({where('serieslength')}, with "
                             f"@equalLength true), found {len(columns[0])}")
        if not label:
            raise ValueError(f"{place}: empty {'class label' if classes else 'target'} after "
                             "the last ':'")
        if declared is not None and label not in declared:
            raise ValueError(f"{place}: class label {label!r} is not one of the @classLabel "
                             f"labels {declared} ({where('classlabel')})")
        series.append(np.stack(columns, axis=1))
        labels.append(label)
        places.append(place)
    if not series:
        raise ValueError(f"{name}: no series after '@data' (line {data_line}); expected one "
                         "series per line")
    problem = " ".join(header["problemname"][0]) if "problemname" in header else None
    return {"file": name, "task": task, "declared": declared, "dimensions": dimensions,
            "series": series, "labels": labels, "places": places, "problem": problem}


def load_ts(path, test_path=None, *, test_split=None, validation_split=0.2, seed=0,
            normalize=True):
    """Reads a UCR/UEA `.ts` file (and its test file) into a `Dataset`.

    Args:
        path: str or path-like, the training `.ts` file.
        test_path: str, path-like or `None`, the test `.ts` file. Defaults to `None`:
            a `<Name>_TRAIN.ts` path uses its `<Name>_TEST.ts` sibling when it exists,
            else a stratified `test_split` of the training file is the test split.
        test_split: float in (0, 1) or `None`, the part of the training file cut as the
            test split when there is no test file (`None`: 0.2). Giving it ignores the
            `_TEST.ts` sibling; it cannot go with `test_path`. Defaults to `None`.
        validation_split: float in (0, 1), the part of the training file (after any test
            cut) kept for validation, stratified by class for classification. Defaults
            to `0.2`.
        seed: int, the seed of the splits. Defaults to `0`.
        normalize: bool, standardize each dimension with the training part's mean and
            standard deviation. Defaults to `True`.

    Returns:
        A `Dataset`: x `(samples, time, dimensions)` float32 (variable-length series padded
        at the end with `mask_value`), y class indices `(samples,)` int32 in `@classLabel`
        order (sorted when not declared), or targets `(samples, 1)` float32 for
        `@targetLabel true` (task "regression"). `source` holds each file's sha256.
    """
    path = _check_path(path)
    if test_path is not None and test_split is not None:
        raise ValueError(f"give `test_path` (a test file) or `test_split` (a part of the "
                         f"training file), not both. Received: test_path={test_path!r}, "
                         f"test_split={test_split!r}")
    _check_common(validation_split, seed, normalize, test_split)
    found = ""
    if test_path is None and test_split is None:
        test_path = _sibling(path)
        found = " (found beside the training file)" if test_path else ""
    if test_path is not None:
        test_path = _check_path(test_path, "test_path")
    train = _parse_ts(path)
    test = _parse_ts(test_path, train) if test_path is not None else None
    if train["task"] == "classification":
        y_train, y_test, names = _encode_classes(
            train["labels"], train["places"], test and test["labels"], test and test["places"],
            train["file"], order=train["declared"],
            order_from=f"{train['file']}'s @classLabel")
        num_outputs = len(names)
    else:
        y_train, names, num_outputs = _targets(train["labels"], train["places"]), None, 1
        y_test = test and _targets(test["labels"], test["places"])
    name = train["problem"] or _stem(path)
    kind = (f"{num_outputs} classes" if train["task"] == "classification"
            else "regression (@targetLabel)")
    head = (f"{name} from {train['file']} (.ts, {kind}, {train['dimensions']} dimension(s), "
            f"{len(train['series'])} training series)")
    return _build(
        name=name, task=train["task"], train=(train["series"], y_train, train["places"]),
        test=None if test is None else (test["series"], y_test, test["places"]),
        label_names=names, num_outputs=num_outputs,
        feature_name=lambda j: f"dimension {j + 1}", validation_split=validation_split,
        seed=seed, normalize=normalize, test_split=test_split or 0.2, head=head, notes=[],
        source=_source(path, "ts", test_path),
        test_from=None if test is None else
        f"test: {len(test['series'])} series from {test['file']}{found}")


# --------------------------------------------------------------------------- CSV

_CSV_EXPECTED = "a CSV file with a header row naming the columns"


def _delimiter_for(path, text, delimiter):
    if delimiter is not None:
        return delimiter
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".tsv":
        return "\t"
    if suffix == ".csv":
        return ","
    first = next((line for line in text.splitlines() if line.strip()), "")
    for candidate in ("\t", ",", ";"):
        if candidate in first:
            return candidate
    return " "


def _read_table(path, delimiter):
    """`(file name, header, header line, [(line, fields), ...])` of a delimited file."""
    name = os.path.basename(path)
    text = _read_text(path, _CSV_EXPECTED)
    delimiter = _delimiter_for(path, text, delimiter)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter,
                        skipinitialspace=delimiter == " ")
    rows = []
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((reader.line_num, [f.strip() for f in fields]))
    except csv.Error as error:
        raise ValueError(f"{name} line {reader.line_num}: not valid CSV ({error})") from None
    header_line, header = rows[0]
    if all(_parses_as_number(h) or not h for h in header):
        raise ValueError(f"{name} line {header_line}: expected a header row naming the "
                         f"columns, found {_show(delimiter.join(header))}; add one (e.g. "
                         "'label,t1,t2,...' for one series per row)")
    for j, column in enumerate(header):
        if not column:
            raise ValueError(f"{name} line {header_line}: column {j + 1} of the header has "
                             "no name; expected a name for every column")
        if column in header[:j]:
            raise ValueError(f"{name} line {header_line}: column {column!r} appears twice in "
                             "the header; expected distinct column names")
    data = rows[1:]
    if not data:
        raise ValueError(f"{name}: no data rows after the header (line {header_line})")
    for line, fields in data:
        if len(fields) != len(header):
            raise ValueError(f"{name} line {line}: expected {len(header)} fields like the "
                             f"header (line {header_line}), found {len(fields)}")
    return name, header, header_line, data


_OTHER_DELIMITERS = (";", "\t", "|", ",")


def _delimiter_hint(header):
    """For errors: a hint to pass `delimiter` when the header is one column holding one."""
    if len(header) != 1:
        return ""
    found = next((c for c in _OTHER_DELIMITERS if c in header[0]), None)
    if found is None:
        return ""
    return (f"; the header is one column, {_show(header[0])}, that holds {found!r}: if the "
            f"fields are separated by {found!r}, pass delimiter={found!r}")


def _column(table, column, argument):
    name, header, header_line, _ = table
    if column not in header:
        raise ValueError(f"{name} line {header_line}: no column {column!r} "
                         f"(`{argument}={column!r}`); the header has columns {header}"
                         f"{_delimiter_hint(header)}")
    return header.index(column)


def _cell(text, name, line, column, hint=""):
    if text.lower() in _MISSING_CSV:
        return np.nan
    try:
        value = float(text)
    except ValueError:
        value = np.nan
        finite = False
    else:
        finite = np.isfinite(value)
    if not finite:
        raise ValueError(f"{name} line {line}, column {column!r}: expected a number (or an "
                         f"empty cell, '?' or 'NaN' for a missing value), found {_show(text)}"
                         f"{hint}")
    return value


def _row_numbers(fields, indices, table, line):
    """The numbers of one row's cells `indices` (NaN: missing)."""
    cells = [fields[j] for j in indices]
    if all(cells):
        try:
            values = np.array(cells, dtype=np.float64)
        except ValueError:
            pass
        else:
            if np.isfinite(values).all():
                return values
    name, header = table[0], table[1]
    hint = _delimiter_hint(header)
    return np.array([_cell(fields[j], name, line, header[j], hint) for j in indices],
                    dtype=np.float64)


def _feature_columns(table, features, exclude, argument="features"):
    header = table[1]
    if features is None:
        columns = [j for j in range(len(header)) if j not in exclude]
    else:
        columns = [_column(table, f, argument) for f in features]
    if not columns:
        raise ValueError(f"{table[0]} line {table[2]}: no value columns besides "
                         f"{[header[j] for j in sorted(exclude)]}; expected at least one")
    return columns


def _check_test_columns(test_table, table, layout, features, label, id_column, time_column,
                        test_path):
    """The test file must have the training file's columns, else its values are read as
    something else (another layout's id and time columns as time steps, say).

    With `features`: the columns read. Else, long layout: the training file's columns
    (others are not read); wide layout: the label and the same time-step columns, of which one file may have more
    (its series are longer)."""
    found, header = test_table[1], table[1]
    if features is not None:
        keys = [c for c in (id_column, time_column) if c is not None] if layout == "long" else []
        expected = [label] + keys + [f for f in features if f not in keys and f != label]
        same, what = all(c in found for c in expected), "the columns read from"
    elif layout == "wide":
        other = (label, id_column, time_column)
        steps, test_steps = ([c for c in h if c not in other] for h in (header, found))
        shorter = min(len(steps), len(test_steps))
        expected, what = header, "the label and the time-step columns (more or fewer) of"
        same = label in found and shorter > 0 and steps[:shorter] == test_steps[:shorter]
    else:
        expected, what = header, "the columns of"
        same = set(header) <= set(found)  # (more columns in the test file are not read)
    if not same:
        raise ValueError(
            f"{test_table[0]} line {test_table[2]}: the test file (`test_path`) must have "
            f"{what} the training file {table[0]} (layout {layout!r}): expected columns "
            f"{expected}, found {found}. Received: test_path={test_path!r}")


def _read_wide(table, label, id_column, time_column, features):
    name, header, _, data = table
    label_index = _column(table, label, "label")
    exclude = {label_index} | {header.index(c) for c in (id_column, time_column)
                               if c is not None and c in header}
    columns = _feature_columns(table, features, exclude)
    series, labels, places = [], [], []
    for line, fields in data:
        place = f"{name} line {line}"
        value = fields[label_index]
        if not value:
            raise ValueError(f"{place}, column {label!r}: empty label; expected a class label "
                             "or a target on every row")
        used = list(columns)
        while used and not fields[used[-1]]:
            used.pop()  # trailing empty cells: a shorter series
        if not used:
            raise ValueError(f"{place}: no values in the time-step columns; expected at least "
                             "one number")
        series.append(_row_numbers(fields, used, table, line)[:, None])
        labels.append(value)
        places.append(place)
    return series, labels, places, 1


def _sort_key(values):
    if all(_parses_as_number(v) for v in values):
        return [float(v) for v in values]
    return list(values)


def _read_long(table, label, id_column, time_column, features):
    name, header, _, data = table
    id_index = _column(table, id_column, "id_column")
    label_index = _column(table, label, "label")
    time_index = None if time_column is None else _column(table, time_column, "time_column")
    exclude = {id_index, label_index} | ({time_index} if time_index is not None else set())
    columns = _feature_columns(table, features, exclude)
    groups = {}
    for line, fields in data:
        key = fields[id_index]
        if not key:
            raise ValueError(f"{name} line {line}, column {id_column!r}: empty series id; "
                             "expected an id on every row")
        value = fields[label_index]
        if not value:
            raise ValueError(f"{name} line {line}, column {label!r}: empty label; expected "
                             "the series' label on every row")
        group = groups.setdefault(key, {"label": value, "line": line, "rows": []})
        if value != group["label"]:
            raise ValueError(f"{name} line {line}, column {label!r}: label {value!r} differs "
                             f"from {group['label']!r} given for series {key!r} on line "
                             f"{group['line']}; expected the same label on every row of a "
                             "series")
        if time_index is not None and not fields[time_index]:
            raise ValueError(f"{name} line {line}, column {time_column!r}: empty time; "
                             "expected a time on every row")
        group["rows"].append((line, fields))
    series, labels, places = [], [], []
    for key, group in groups.items():
        rows = group["rows"]
        if time_index is not None:
            rows = _order_by_time(rows, time_index, time_column, name, f" in series {key!r}")
        series.append(np.stack([_row_numbers(fields, columns, table, line)
                                for line, fields in rows]))
        labels.append(group["label"])
        places.append(f"{name} series {key!r} (line {group['line']})")
    return series, labels, places, len(columns)


def _order_by_time(rows, time_index, time_column, name, where=""):
    """`(line, fields)` rows sorted by their time column; a time given twice is an error."""
    times = [fields[time_index] for _, fields in rows]
    keys = _sort_key(times)
    order = sorted(range(len(rows)), key=keys.__getitem__)
    for a, b in zip(order, order[1:]):
        if keys[a] == keys[b]:
            raise ValueError(f"{name} line {rows[b][0]}, column {time_column!r}: time "
                             f"{times[b]!r} appears twice{where} (also line {rows[a][0]}); "
                             "expected one row per time step")
    return [rows[i] for i in order]


def _read_series_layout(table, label, time_column, features):
    name, header, _, data = table
    time_index = None if time_column is None else _column(table, time_column, "time_column")
    exclude = set() if time_index is None else {time_index}
    columns = _feature_columns(table, features, exclude)
    target = header.index(label) if label in header else columns[0]  # checked by load_csv
    columns = [target] + [j for j in columns if j != target]
    rows = data
    if time_index is not None:
        rows = _order_by_time(rows, time_index, time_column, name)
    values = np.stack([_row_numbers(fields, columns, table, line) for line, fields in rows])
    return values, [header[j] for j in columns]


def _windows(name, values, columns, window, horizon, val_fraction, test_fraction, normalize,
             season, source, filled):
    """Forecasting windows of one series, split by the targets' end time (airline's way)."""
    n = len(values)
    if window + horizon > n:
        raise ValueError(f"{source['file']}: `window + horizon` = {window} + {horizon} = "
                         f"{window + horizon} is longer than the series ({n} rows); expected "
                         f"at most {n}")
    n_test = max(1, int(round(n * test_fraction)))
    n_val = max(1, int(round(n * val_fraction)))
    if window + horizon + n_val + n_test > n:
        raise ValueError(f"{source['file']}: the series has {n} rows, too few for `window + "
                         f"horizon` = {window + horizon} plus {n_val} validation and {n_test} "
                         f"test targets (val_fraction={val_fraction}, test_fraction="
                         f"{test_fraction}); expected at least "
                         f"{window + horizon + n_val + n_test} rows")
    starts = np.arange(0, n - window - horizon + 1)
    target_end = starts + window + horizon  # exclusive index of each window's last target
    test_mask = target_end > n - n_test
    val_mask = ~test_mask & (target_end > n - n_test - n_val)
    train_mask = ~test_mask & ~val_mask
    fit_end = n - n_test - n_val
    if normalize:
        mean = values[:fit_end].mean(axis=0)
        std = values[:fit_end].std(axis=0)
        std = np.where(std > 0, std, 1.0)
    else:
        mean, std = np.zeros(values.shape[1]), np.ones(values.shape[1])
    scaled = (values - mean) / std
    x = np.stack([scaled[s : s + window] for s in starts]).astype(np.float32)
    y = np.stack([scaled[s + window : s + window + horizon, 0] for s in starts]).astype(
        np.float32)
    parts = [f"{name} from {source['file']} (.csv, layout 'series': one series of {n} steps, "
             f"columns {columns}; forecast the next {horizon} values of {columns[0]!r} from "
             f"{window} steps)", source["why"]]
    if filled:
        parts.append(f"{filled} missing value(s) filled by linear interpolation along time "
                     "(nearest observed value at the edges)")
    parts.append(f"chronological split by the targets' end: the last {n_test} steps' "
                 f"targets are the test split, the {n_val} before them validation")
    if normalize:
        parts.append(f"normalized per column with the mean and std of the first {fit_end} "
                     "steps (training part only)")
    return Dataset(
        name=name,
        task="regression",
        num_outputs=horizon,
        input_shape=(window, values.shape[1]),
        x_train=x[train_mask], y_train=y[train_mask],
        x_val=x[val_mask], y_val=y[val_mask],
        x_test=x[test_mask], y_test=y[test_mask],
        normalization={"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
        if normalize else None,
        description="; ".join(p for p in parts if p) + ".",
        season=season,
        source=source["source"],
    )


def load_csv(path, test_path=None, *, layout="auto", label=None, id_column=None,
             time_column=None, features=None, window=None, horizon=None, val_fraction=0.15,
             test_fraction=0.15, season=None, task=None, test_split=None,
             validation_split=0.2, seed=0, normalize=True, delimiter=None):
    """Reads a CSV (or `.tsv`/`.txt`) file into a `Dataset`. A header row is required.

    Layouts:
        "wide": one row per series: the `label` column and the time steps (every other
        column, or `features`), one feature; trailing empty cells end a shorter series.
        "long": one row per time step: the `id_column` names the series, `time_column`
        (optional) orders its rows, `features` (default: every other column) are its
        features, and `label` is the same on every row of a series; series may differ in
        length. "series": one long series (one or more numeric columns) for forecasting:
        windows of `window` steps predict the next `horizon` values of the target column
        (`label`; by default "label", or the first value column when there is none), split
        chronologically by the targets' end time like `load_airline_passengers`.
        Missing cells (empty inside a series, `?`, `NaN`, `NA`) are interpolated along time.

    Args:
        path: str or path-like, the CSV file (the training data).
        test_path: str, path-like or `None`, a test file in the same layout ("wide" and
            "long") with the training file's columns (wide: its time steps may stop earlier
            or go on later). Defaults to `None`: a `<Name>_TRAIN.csv` path uses its
            `<Name>_TEST.csv` sibling when it exists, else a stratified `test_split` of
            the file is the test split.
        layout: str, one of "auto", "wide", "long", "series". Defaults to `"auto"`: "long"
            when the header has `id_column`, else "wide" when it has `label`, else
            "series" (which needs `window` and `horizon`); the choice is stated in the
            description.
        label: str or `None`, the label column (wide, long) or the target column
            (series). Defaults to `None`: the column "label" (series: "label" when the
            header has it, else the first value column). A column named by `label`,
            `id_column` or `time_column` that the header lacks is an error, "label" and
            "id" named explicitly included (the defaults only pick the layout).
        id_column: str or `None`, the series-id column of the long layout. Defaults to
            `None`: the column "id".
        time_column: str or `None`, the column to order time steps by (long, series;
            numbers sort numerically, anything else as text). Defaults to `None`: file
            order.
        features: list of str or `None`, the value columns. Defaults to `None`: every
            column not named above.
        window: int or `None`, series layout: the input window, in steps.
        horizon: int or `None`, series layout: the steps to forecast.
        val_fraction: float in (0, 1), series layout: the part of the steps whose targets
            are the validation split. Defaults to `0.15`.
        test_fraction: float in (0, 1), series layout: the part of the steps (the last
            ones) whose targets are the test split. Defaults to `0.15`.
        season: int or `None`, series layout: the seasonal period in steps, at most
            `window` (kept in `Dataset.season` for the seasonal-naive baseline). Defaults to
            `None`.
        task: str or `None`, wide/long: "classification" or "regression". Defaults to
            `None`: inferred from the labels and stated in the description.
        test_split: float in (0, 1) or `None`, wide/long: the part of the file cut as the
            test split when there is no test file (`None`: 0.2). Defaults to `None`.
        validation_split: float in (0, 1), wide/long: the part of the training data kept
            for validation, stratified by class. Defaults to `0.2`.
        seed: int, the seed of the splits. Defaults to `0`.
        normalize: bool, standardize each feature with the training part's statistics.
            Defaults to `True`.
        delimiter: str or `None`, the field separator. Defaults to `None`: `,` for
            `.csv`, tab for `.tsv`, and for `.txt` the first of tab, `,`, `;` in the first
            line, else spaces.

    Returns:
        A `Dataset`: x `(samples, time, features)` float32; for the series layout x
        `(windows, window, columns)` with the target column first and y `(windows,
        horizon)`, task "regression".
    """
    path = _check_path(path)
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {list(LAYOUTS)}. Received: layout={layout!r}")
    for argument, value in (("label", label), ("id_column", id_column)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"`{argument}` must be a column name (a non-empty str) or None. "
                             f"Received: {argument}={value!r}")
    if time_column is not None and (not isinstance(time_column, str) or not time_column):
        raise ValueError(f"`time_column` must be a column name or None. "
                         f"Received: time_column={time_column!r}")
    if isinstance(features, str):
        features = [features]
    if features is not None and (not features or not all(
            isinstance(f, str) for f in features) or len(set(features)) != len(features)):
        raise ValueError(f"`features` must be a list of distinct column names or None. "
                         f"Received: features={features!r}")
    for argument, value in (("window", window), ("horizon", horizon), ("season", season)):
        _check_int(argument, value, allow_none=True)
    if task is not None and task not in ("classification", "regression"):
        raise ValueError(f"`task` must be one of ['classification', 'regression'] or None. "
                         f"Received: task={task!r}")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise ValueError(f"`delimiter` must be one character or None. "
                         f"Received: delimiter={delimiter!r}")
    if test_path is not None and test_split is not None:
        raise ValueError(f"give `test_path` (a test file) or `test_split` (a part of the "
                         f"training file), not both. Received: test_path={test_path!r}, "
                         f"test_split={test_split!r}")
    _check_common(validation_split, seed, normalize, test_split)
    table = _read_table(path, delimiter)
    name, header = table[0], table[1]
    # A column named by its argument must exist: a misspelt `id_column` or `label` would
    # otherwise pick another layout, or (series) forecast another column. The defaults
    # (None: the columns "label" and "id") may be absent: they only say which layout the
    # header has.
    for argument, value in (("label", label), ("id_column", id_column),
                            ("time_column", time_column)):
        if value is not None:
            _column(table, value, argument)
    label = "label" if label is None else label
    id_column = "id" if id_column is None else id_column
    why = ""
    if layout == "auto":
        if id_column in header:
            layout, why = "long", f"column {id_column!r} (`id_column`) is in the header"
        elif label in header:
            layout, why = "wide", (f"column {label!r} (`label`) is in the header, "
                                   f"{id_column!r} (`id_column`) is not")
        else:
            layout, why = "series", (f"the header has neither {id_column!r} (`id_column`) nor "
                                     f"{label!r} (`label`)")
            if window is None or horizon is None:
                raise ValueError(
                    f"{name} line {table[2]}: layout='auto' reads this file as one series "
                    f"({why}; columns {header}), which needs `window` and `horizon` to "
                    f"forecast. Received: window={window!r}, horizon={horizon!r}; or name "
                    "your columns with `label=` (one series per row) or `id_column=` (one "
                    f"row per time step){_delimiter_hint(header)}")
        why = f"layout {layout!r} chosen from the header: {why}"
    if layout == "series":
        if window is None or horizon is None:
            raise ValueError(f"layout='series' needs `window` and `horizon` (the input and "
                             f"forecast lengths, in steps). Received: window={window!r}, "
                             f"horizon={horizon!r}")
        if test_path is not None:
            raise ValueError(f"`test_path` is not used with layout='series': the test split "
                             f"is the series' last `test_fraction`. Received: "
                             f"test_path={test_path!r}")
        _check_fraction("val_fraction", val_fraction)
        _check_fraction("test_fraction", test_fraction)
        if season is not None and season > window:
            raise ValueError(f"`season` must be at most `window` ({window}): the seasonal-naive "
                             f"baseline repeats the window's last `season` values. Received: "
                             f"season={season!r}, window={window!r}")
        values, columns = _read_series_layout(table, label, time_column, features)
        filled = _fill_missing([values], [name], lambda j: f"column {columns[j]!r}")
        return _windows(_stem(path), values, columns, window, horizon, val_fraction,
                        test_fraction, normalize, season,
                        {"file": name, "why": why, "source": _source(path, "csv-series")},
                        filled)
    for argument, value in (("window", window), ("horizon", horizon), ("season", season)):
        if value is not None:
            raise ValueError(f"`{argument}` is for layout='series' (forecasting one series); "
                             f"layout={layout!r} reads labelled series. Received: "
                             f"{argument}={value!r}")
    reader = _read_wide if layout == "wide" else _read_long
    series, labels, places, width = reader(table, label, id_column, time_column, features)
    found = ""
    if test_path is None and test_split is None:
        test_path = _sibling(path)
        found = " (found beside the training file)" if test_path else ""
    test = None
    if test_path is not None:
        test_path = _check_path(test_path, "test_path")
        test_table = _read_table(test_path, delimiter)
        _check_test_columns(test_table, table, layout, features, label, id_column,
                            time_column, test_path)
        test = reader(test_table, label, id_column, time_column,
                      features if features is not None or layout == "wide" else
                      [header[j] for j in _feature_columns(
                          table, None, {header.index(c) for c in (id_column, label, time_column)
                                        if c is not None and c in header})])
        if test[3] != width:
            raise ValueError(f"{test_table[0]}: {test[3]} feature column(s), the training file "
                             f"{name} has {width}; expected the same")
    notes = [why] if why else []
    if task is None:
        task, reason = _infer_task(labels)
        notes.append(f"task {task} inferred: {reason}")
    if task == "classification":
        y_train, y_test, names = _encode_classes(
            labels, places, test and test[1], test and test[2], name)
        num_outputs = len(names)
    else:
        where_label = [f"{p}, column {label!r}" for p in places]
        y_train, names, num_outputs = _targets(labels, where_label), None, 1
        y_test = test and _targets(test[1], [f"{p}, column {label!r}" for p in test[2]])
    kind = f"{num_outputs} classes" if task == "classification" else "regression"
    head = (f"{_stem(path)} from {name} (.csv, layout {layout!r}, {kind}, {width} "
            f"feature(s), {len(series)} training series)")
    if layout == "wide":
        def feature_name(j):
            return "the series"
    else:
        value_columns = features or [header[j] for j in range(len(header)) if header[j] not in
                                     (id_column, label, time_column)]

        def feature_name(j):
            return f"column {value_columns[j]!r}"
    return _build(
        name=_stem(path), task=task, train=(series, y_train, places),
        test=None if test is None else (test[0], y_test, test[2]), label_names=names,
        num_outputs=num_outputs, feature_name=feature_name,
        validation_split=validation_split, seed=seed, normalize=normalize,
        test_split=test_split or 0.2, head=head, notes=notes,
        source=_source(path, f"csv-{layout}", test_path),
        test_from=None if test is None else
        f"test: {len(test[0])} series from {os.path.basename(test_path)}{found}")


# --------------------------------------------------------------------------- .npz

def load_npz(path, *, task=None, validation_split=0.2, seed=0, normalize=True,
             test_split=0.2, label_names=None):
    """Reads arrays saved with `np.savez` into a `Dataset` (through `Dataset.from_arrays`).

    The archive holds `x_train` `(samples, time, features)` or `(samples, time)` and
    `y_train` `(samples,)` (or `(samples, outputs)` for regression), optionally `x_test`
    and `y_test` (both or neither) and `label_names` (str, in class-index order). Object
    (pickled) arrays are not read.

    Args:
        path: str or path-like, the `.npz` file.
        task: str or `None`, the task; `None` (the default) infers it from `y_train`.
        validation_split: float in (0, 1), the part of the training data kept for
            validation (stratified by class). Defaults to `0.2`.
        seed: int, the seed of the splits. Defaults to `0`.
        normalize: bool, standardize each feature with the training part's statistics.
            Defaults to `True`.
        test_split: float in (0, 1), the part of the training data cut as the test split
            when the archive has no `x_test`. Defaults to `0.2`.
        label_names: list of str or `None`, the class names (overrides the archive's), one
            for each class of `y_train`.

    Returns:
        A `Dataset`, with `source` naming the file and its sha256.
    """
    path = _check_path(path)
    name = os.path.basename(path)
    expected = ("a .npz archive (np.savez) with arrays x_train, y_train and optionally "
                "x_test, y_test, label_names")
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        raise ValueError(f"{name}: the file is empty; expected {expected}")
    if magic != b"PK\x03\x04":
        what = "a single .npy array" if magic == b"\x93NUM" else "not a zip archive"
        raise ValueError(f"{name}: {what}; expected {expected}")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                try:
                    arrays[key] = data[key]
                except ValueError:
                    raise ValueError(f"{name}: array {key!r} holds Python objects (pickled), "
                                     f"which are not read; expected numeric or string "
                                     "arrays") from None
    except ValueError:
        raise
    except Exception as error:  # zipfile.BadZipFile, OSError, EOFError: a broken archive
        raise ValueError(f"{name}: not a readable .npz archive ({type(error).__name__}: "
                         f"{error}); expected {expected}") from None
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if missing:
        raise ValueError(f"{name}: no array {missing[0]!r}; expected {expected}, found "
                         f"{sorted(arrays)}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        given = "x_test" if "x_test" in arrays else "y_test"
        raise ValueError(f"{name}: {given!r} without {'y_test' if given == 'x_test' else 'x_test'!r}; "
                         "expected both or neither")
    if label_names is None and "label_names" in arrays:
        label_names = [str(v) for v in np.asarray(arrays["label_names"]).reshape(-1).tolist()]
    try:
        return dataset_from_arrays(
            arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"),
            task=task, validation_split=validation_split, seed=seed, normalize=normalize,
            name=_stem(path), label_names=label_names, test_split=test_split,
            source=_source(path, "npz"),
            head=f"{_stem(path)} from {name} (.npz, arrays {sorted(arrays)})")
    except ValueError as error:
        message = str(error)
        if message.startswith(name):
            raise
        raise ValueError(f"{name}: {message}") from None


# --------------------------------------------------------------------------- dispatch

def load_file(path, **options):
    """Reads a data file into a `Dataset`, choosing the reader by the file's suffix.

    Args:
        path: str or path-like: `.ts` (`load_ts`), `.csv`, `.tsv`, `.txt` (`load_csv`) or
            `.npz` (`load_npz`).
        **options: that reader's keyword arguments (e.g. `test_path`, `layout`, `label`,
            `window`, `horizon`, `validation_split`, `seed`).

    Returns:
        A `Dataset`.
    """
    path = _check_path(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"`path` must end with one of {sorted(SUFFIXES)} (the suffix picks "
                         f"the reader). Received: path={path!r}")
    loader = {"ts": load_ts, "csv": load_csv, "npz": load_npz}[SUFFIXES[suffix]]
    accepted = [p for p in inspect.signature(loader).parameters if p != "path"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for a {suffix} file ({loader.__name__}); allowed: "
            f"{sorted(accepted)}. Received: "
            f"{', '.join(f'{k}={options[k]!r}' for k in unknown)}")
    return loader(path, **options)

"""Datasets for the zoo: embedded real data, a synthetic long-dependency task and TFDS text.

`load_dataset(name, ...)` is the one entry point. It returns a `Dataset` with
train/validation/test splits as NumPy arrays (`.as_tf_data(...)` gives `tf.data`),
the task, the number of outputs, the normalization statistics and the label names, so
that export can write them into the model file.

Embedded data (package files, no download): GunPoint and ItalyPowerDemand from the
UCR time-series archive, and the airline-passengers series (Box & Jenkins 1976).

Your own data: `load_dataset(path)` reads a UCR/UEA `.ts` file, a CSV file or a `.npz`
archive (`zoo.loaders`), and `Dataset.from_arrays(x, y)` takes arrays in memory.
"""

import dataclasses
import importlib.resources
import os

import numpy as np

from zoo.checks import check, is_bool, is_fraction, is_int, is_non_negative_int, is_positive_int

UCR_CITATION = (
    "H. A. Dau, A. Bagnall, K. Kamgar, C.-C. M. Yeh, Y. Zhu, S. Gharghabi, "
    "C. A. Ratanamahatana, E. Keogh, \"The UCR Time Series Archive\", IEEE/CAA Journal of "
    "Automatica Sinica, 6(6), 2019."
)
AIRLINE_CITATION = (
    "G. E. P. Box, G. M. Jenkins, Time Series Analysis: Forecasting and Control, "
    "Holden-Day, 1976, series G (monthly international airline passengers, 1949-1960)."
)
ADDING_CITATION = (
    "S. Hochreiter, J. Schmidhuber, \"Long Short-Term Memory\", Neural Computation 9(8), "
    "1997 (the adding problem)."
)
IMDB_CITATION = (
    "A. L. Maas et al., \"Learning Word Vectors for Sentiment Analysis\", ACL 2011 "
    "(IMDB reviews, loaded through TensorFlow Datasets)."
)


@dataclasses.dataclass
class Dataset:
    """Train/validation/test splits with what a deployed model needs to know.

    Arrays are `(samples, time, features)` float32 for series and `(samples, time)`
    int32 for token ids. Labels are int class indices (classification) or float targets.
    Series of different lengths are padded at the end with `mask_value`.
    """

    name: str
    task: str
    num_outputs: int
    input_shape: tuple
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    label_names: list = None
    normalization: dict = None
    vocabulary: list = None
    citation: str = ""
    description: str = ""
    # Forecasting windows: the period of the series' seasonality, in steps (None: none).
    # Regression outputs are then the next values of input feature 0.
    season: int = None
    # Variable-length series: the value of every feature at the padded steps after a
    # series' end (`build_gru(mask_value=...)` masks them). None: all the same length.
    mask_value: float = None
    # File data: {"path", "format", "sha256"} of the file read (with "test_path" and one
    # sha256 per file, training file first, when a second file gave the test split).
    source: dict = None

    def as_tf_data(self, split="train", batch_size=32, shuffle=None, seed=0):
        """Returns one split as a batched `tf.data.Dataset` of `(x, y)` pairs.

        Args:
            split: "train", "val" or "test".
            batch_size: positive int. Defaults to `32`.
            shuffle: bool or `None` (the default: shuffle the train split only).
            seed: int >= 0 or None (unseeded), the shuffle's seed. Defaults to `0`.
        """
        import tensorflow as tf

        if split not in ("train", "val", "test"):
            raise ValueError(
                f"`split` must be one of ['train', 'val', 'test']. Received: split={split!r}"
            )
        check("batch_size", batch_size, is_positive_int(batch_size), "a positive int")
        if shuffle is not None:
            # `shuffle="no"` is truthy: without this check it would shuffle.
            check("shuffle", shuffle, is_bool(shuffle),
                  "True, False or None (None: shuffle the train split only)")
        _check_seed(seed, allow_none=True)
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle if shuffle is not None else split == "train":
            ds = ds.shuffle(len(x), seed=None if seed is None else int(seed),
                            reshuffle_each_iteration=True)
        return ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)

    def summary(self):
        """A dict of the dataset's shapes and metadata, JSON-serializable."""
        return {
            "name": self.name,
            "task": self.task,
            "num_outputs": self.num_outputs,
            "input_shape": list(self.input_shape),
            "train": len(self.x_train),
            "val": len(self.x_val),
            "test": len(self.x_test),
            "label_names": self.label_names,
            "normalization": self.normalization,
            "citation": self.citation,
            "season": self.season,
            "mask_value": self.mask_value,
            "source": self.source,
        }

    def decode_labels(self, indices):
        """Class names for class indices (or for predicted probabilities).

        Args:
            indices: an int, a sequence or array of ints `(samples,)`, or model outputs
                `(samples, num_outputs)`: softmax probabilities (their argmax is taken)
                or, with one output, sigmoid probabilities (thresholded at 0.5).

        Returns:
            A str for an int, else a list of str: `label_names[i]` for each index.
        """
        if self.task not in ("classification", "sequence_labeling") or not self.label_names:
            raise ValueError(
                f"`decode_labels` needs a classification dataset with label names; "
                f"{self.name!r} has task={self.task!r}, label_names={self.label_names!r}"
            )
        names = self.label_names
        if is_int(indices):
            if not 0 <= int(indices) < len(names):
                raise ValueError(f"`indices` must be class indices in [0, {len(names)}). "
                                 f"Received: indices={indices!r}")
            return names[int(indices)]
        values = np.asarray(indices)
        if values.ndim == 2 and values.dtype.kind == "f":
            columns = values.shape[1]
            if columns != len(names) and not (columns == 1 and len(names) == 2):
                sigmoid = ", or 1 (sigmoid outputs)" if len(names) == 2 else ""
                raise ValueError(
                    f"`indices` given as probabilities must have {len(names)} columns, one "
                    f"per class{sigmoid}; expected {len(names)} columns, got {columns}. "
                    f"Received: indices with shape {values.shape}")
            finite = np.isfinite(values).all(axis=1)
            if not finite.all():
                row = int(np.flatnonzero(~finite)[0])
                raise ValueError(
                    f"`indices` given as probabilities must hold finite numbers. Received: "
                    f"indices[{row}]={values[row].tolist()!r} (NaN or inf)")
            values = (values[:, 0] > 0.5).astype(np.int64) if columns == 1 \
                else values.argmax(axis=-1)
        if values.ndim != 1 or values.dtype.kind not in "iuf" or (
                values.dtype.kind == "f" and not np.all(np.mod(values, 1) == 0)):
            raise ValueError(
                "`indices` must be an int, a 1-D sequence of ints (samples,) or "
                f"probabilities (samples, {len(names)}). Received: indices with shape "
                f"{values.shape} and dtype {values.dtype}"
            )
        values = values.astype(np.int64)
        bad = values[(values < 0) | (values >= len(names))]
        if len(bad):
            raise ValueError(f"`indices` must be class indices in [0, {len(names)}). "
                             f"Received: {int(bad[0])} among indices")
        return [names[i] for i in values]

    @classmethod
    def from_arrays(cls, x_train, y_train, x_test=None, y_test=None, *, task=None,
                    validation_split=0.2, seed=0, normalize=True, name="arrays",
                    label_names=None, test_split=0.2):
        """A `Dataset` from arrays in memory (your own data, no file).

        Args:
            x_train: the training series: an array `(samples, time, features)` or
                `(samples, time)` (one feature), a list of them, a list of series of
                different lengths (each `(time,)` or `(time, features)`: padded at the
                end, `mask_value` set), or a pandas DataFrame in wide form (one row per
                series, columns = time steps). NaN marks a missing value: filled by
                linear interpolation along time (the nearest value at the edges).
            y_train: the labels `(samples,)`: strings or ints (classification; floats
                only with whole values), floats (regression, `(samples,)` or `(samples,
                outputs)`); a list, an array or a pandas Series. Per-step targets for the
                sequence tasks: `(samples, time)` class labels (sequence_labeling) or
                `(samples, time[, outputs])` finite floats (sequence_regression), for
                series of one length. Missing labels (None, NaN) and complex numbers (in x
                or y) are refused.
            x_test: the test series, like `x_train`, or `None`. Defaults to `None`: a
                stratified `test_split` of the training data is cut as the test split.
            y_test: the test labels, like `y_train`; required with `x_test`.
            task: str or `None`, one of "classification", "regression",
                "sequence_labeling", "sequence_regression". `None` (the default) infers
                it: strings, or integers with few distinct values, are classification;
                floats with non-integer values (or several columns) are regression.
            validation_split: float in (0, 1), the part of the training data kept for
                validation, stratified by class for classification (random
                otherwise). Defaults to `0.2`.
            seed: int, the seed of the splits. Defaults to `0`.
            normalize: bool, standardize each feature with the mean and standard
                deviation of the training part (after the validation split), applied to
                every split. Defaults to `True`.
            name: str, the dataset's name. Defaults to `"arrays"`.
            label_names: list of str or `None`: the class names, in index order, one for
                each class of `y_train`. Labels that are these names are mapped in this
                order; labels that are ints 0..K-1 are kept as indices. `None` (the
                default): the distinct labels, sorted (numerically when they are numbers).
                Refused for the regression tasks.
            test_split: float in (0, 1), the part of the training data cut as the test
                split when `x_test` is `None`. Defaults to `0.2`.

        Returns:
            A `Dataset` whose `label_names[i]` is the label of class index `i`
            (`decode_labels` maps predictions back).
        """
        from zoo.loaders import dataset_from_arrays

        return dataset_from_arrays(
            x_train, y_train, x_test, y_test, task=task, validation_split=validation_split,
            seed=seed, normalize=normalize, name=name, label_names=label_names,
            test_split=test_split)

    def forecast_baselines(self, split="test"):
        """Test MSE of the forecasts a forecaster must beat, for forecasting datasets.

        `"seasonal naive"` repeats the window's last season (the last `season` values;
        left out when `season` is longer than the window) and `"last value"` repeats its
        last value, over the whole horizon (Hyndman & Athanasopoulos, *Forecasting:
        Principles and Practice*, section 5.2). Returns `{}` when the dataset is not a
        forecasting one (`season` is None).
        """
        if self.season is None:
            return {}
        if split not in ("train", "val", "test"):
            raise ValueError(
                f"`split` must be one of ['train', 'val', 'test']. Received: split={split!r}"
            )
        x, y = getattr(self, f"x_{split}"), np.asarray(getattr(self, f"y_{split}"))
        if not len(x):
            return {}
        series = np.asarray(x)[..., 0]
        horizon = y.shape[-1]
        last = np.repeat(series[:, -1:], horizon, axis=1)
        baselines = {}
        if self.season <= series.shape[1]:  # else the window holds no value a season back
            repeats = -(-horizon // self.season)
            seasonal = np.tile(series[:, -self.season:], (1, repeats))[:, :horizon]
            baselines["seasonal naive"] = float(np.mean((seasonal - y) ** 2))
        baselines["last value"] = float(np.mean((last - y) ** 2))
        return baselines


def _check_fraction(argument, value):
    check(argument, value, is_fraction(value), "a float in (0, 1)")


def _check_seed(value, allow_none=False):
    """`allow_none`: `None` is an unseeded draw (NumPy's and tf.data's meaning)."""
    if allow_none and value is None:
        return
    check("seed", value, is_non_negative_int(value),
          "an int >= 0 or None (unseeded)" if allow_none else "an int >= 0")


def _check_bool(argument, value):
    # `normalize="no"` is truthy: without this check it would normalize.
    check(argument, value, is_bool(value), "True or False")


def _load_npz(filename):
    with importlib.resources.files("zoo").joinpath("data", filename).open("rb") as f:
        with np.load(f, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}


def _split_indices(y, task, fraction, seed, num_classes=None):
    """`(keep, cut)` index arrays: `fraction` of the samples cut off, seeded.

    Classification (`y` class indices, `num_classes` classes) is stratified: each class
    gives `round(fraction * members)` samples, at least one, but never its last one, so
    every class with two or more members is on both sides. Other tasks cut at random.
    Both index arrays are shuffled.
    """
    rng = np.random.default_rng(seed)
    if task == "classification":
        keep, cut = [], []
        for label in range(num_classes):
            members = rng.permutation(np.flatnonzero(y == label))
            n_cut = min(max(1, int(round(len(members) * fraction))), max(len(members) - 1, 0))
            cut.extend(members[:n_cut])
            keep.extend(members[n_cut:])
        keep, cut = rng.permutation(keep), rng.permutation(cut)
    else:
        n = len(y)
        order = rng.permutation(n)
        n_cut = min(max(1, int(round(n * fraction))), max(n - 1, 0))
        cut, keep = order[:n_cut], order[n_cut:]
    return np.asarray(keep, dtype=np.int64), np.asarray(cut, dtype=np.int64)


def _normalize_splits(x_train, *others):
    """Standardizes every split per feature with the training split's statistics.

    Padded steps (NaN in every feature) are left out of the statistics and stay NaN.
    Returns `([x_train, *others] normalized, {"mean": [...], "std": [...]})`.
    """
    if np.isnan(x_train).any() or any(np.isnan(x).any() for x in others):
        real = x_train[~np.isnan(x_train).all(axis=-1)]
        mean, std = real.mean(axis=0), real.std(axis=0) + 1e-8
    else:
        mean = x_train.mean(axis=(0, 1))
        std = x_train.std(axis=(0, 1)) + 1e-8
    normalized = [(x - mean) / std for x in (x_train, *others)]
    return normalized, {"mean": mean.tolist(), "std": std.tolist()}


def _ucr(filename, display_name, description, validation_split, seed, normalize):
    _check_fraction("validation_split", validation_split)
    _check_seed(seed)
    _check_bool("normalize", normalize)
    data = _load_npz(filename)
    label_names = sorted(set(data["y_train"].tolist()) | set(data["y_test"].tolist()))
    index = {label: i for i, label in enumerate(label_names)}
    y_train = np.array([index[v] for v in data["y_train"]], dtype=np.int32)
    y_test = np.array([index[v] for v in data["y_test"]], dtype=np.int32)
    x_train = data["x_train"].astype(np.float32)
    x_test = data["x_test"].astype(np.float32)
    # UCR train splits are ordered by class: a stratified shuffle keeps every class in
    # both the training and the validation part of these tiny sets.
    train_idx, val_idx = _split_indices(y_train, "classification", validation_split, seed,
                                        num_classes=len(label_names))
    x_val, y_val = x_train[val_idx], y_train[val_idx]
    x_train, y_train = x_train[train_idx], y_train[train_idx]
    normalization = None
    if normalize:
        (x_train, x_val, x_test), normalization = _normalize_splits(x_train, x_val, x_test)
    return Dataset(
        name=display_name,
        task="classification",
        num_outputs=len(label_names),
        input_shape=x_train.shape[1:],
        x_train=x_train.astype(np.float32),
        y_train=y_train,
        x_val=x_val.astype(np.float32),
        y_val=y_val,
        x_test=x_test.astype(np.float32),
        y_test=y_test,
        label_names=[str(v) for v in label_names],
        normalization=normalization,
        citation=UCR_CITATION,
        description=description,
    )


def load_gunpoint(validation_split=0.2, seed=0, normalize=True):
    """UCR GunPoint: 150-step hand-motion series, 2 classes (gun draw vs point)."""
    return _ucr("GunPoint.npz", "gunpoint", load_gunpoint.__doc__.splitlines()[0],
                validation_split, seed, normalize)


def load_italy_power_demand(validation_split=0.2, seed=0, normalize=True):
    """UCR ItalyPowerDemand: 24-hour electricity demand, 2 classes (winter vs summer)."""
    return _ucr("ItalyPowerDemand.npz", "italy_power_demand",
                load_italy_power_demand.__doc__.splitlines()[0], validation_split, seed,
                normalize)


def load_airline_passengers(window=24, horizon=12, test_months=24, val_months=12,
                            normalize=True):
    """Airline passengers (1949-1960): forecast the next `horizon` months from `window`.

    Windows are cut from a log-transformed series, chronologically: the last
    `test_months` targets are the test split and the `val_months` before them the
    validation split, so no test month is ever seen in training.
    """
    for argument, value in (("window", window), ("horizon", horizon),
                            ("test_months", test_months), ("val_months", val_months)):
        check(argument, value, is_positive_int(value), "a positive int")
    window, horizon, test_months, val_months = (
        int(window), int(horizon), int(test_months), int(val_months))
    _check_bool("normalize", normalize)
    series = np.log(_load_npz("AirlinePassengers.npz")["values"].astype(np.float64))
    n = len(series)
    if window + horizon + test_months + val_months > n:
        raise ValueError(
            "`window + horizon + test_months + val_months` must be at most the series "
            f"length {n}. Received: window={window}, horizon={horizon}, "
            f"test_months={test_months}, val_months={val_months}"
        )
    starts = np.arange(0, n - window - horizon + 1)
    target_end = starts + window + horizon  # exclusive index of each window's last target
    test_mask = target_end > n - test_months
    val_mask = ~test_mask & (target_end > n - test_months - val_months)
    train_mask = ~test_mask & ~val_mask
    fit_end = n - test_months - val_months
    mean = float(series[:fit_end].mean()) if normalize else 0.0
    std = float(series[:fit_end].std()) if normalize else 1.0
    scaled = (series - mean) / std
    x = np.stack([scaled[s : s + window] for s in starts])[..., None].astype(np.float32)
    y = np.stack([scaled[s + window : s + window + horizon] for s in starts]).astype(np.float32)
    return Dataset(
        name="airline_passengers",
        task="regression",
        num_outputs=horizon,
        input_shape=(window, 1),
        x_train=x[train_mask],
        y_train=y[train_mask],
        x_val=x[val_mask],
        y_val=y[val_mask],
        x_test=x[test_mask],
        y_test=y[test_mask],
        normalization={"mean": [mean], "std": [std], "transform": "log"} if normalize else None,
        citation=AIRLINE_CITATION,
        description="Monthly airline passengers 1949-1960, log scale: multi-step forecasting.",
        season=12,
    )


def adding_problem(num_samples, length, seed=0):
    """Generates the adding problem (Hochreiter & Schmidhuber 1997).

    Each sequence has two channels: values uniform in [0, 1] and a marker channel with
    exactly two ones, one in each half of the sequence. The target is the sum of the
    two marked values, in [0, 2]. Predicting the mean (1.0) gives MSE ~0.167.

    Returns:
        `(x, y)`: x `(num_samples, length, 2)` float32, y `(num_samples, 1)` float32.
    """
    check("length", length, is_int(length) and length >= 2, "an int >= 2")
    check("num_samples", num_samples, is_positive_int(num_samples), "a positive int")
    _check_seed(seed, allow_none=True)
    length, num_samples = int(length), int(num_samples)
    rng = np.random.default_rng(None if seed is None else int(seed))
    values = rng.uniform(0.0, 1.0, size=(num_samples, length)).astype(np.float32)
    half = length // 2
    first = rng.integers(0, half, size=num_samples)
    second = rng.integers(half, length, size=num_samples)
    markers = np.zeros((num_samples, length), dtype=np.float32)
    rows = np.arange(num_samples)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[rows, first] + values[rows, second])[:, None].astype(np.float32)
    return x, y


def load_adding(length=100, num_train=10000, num_val=1000, num_test=1000, seed=0):
    """The adding problem as a regression `Dataset` (independent seeds per split)."""
    check("length", length, is_int(length) and length >= 2, "an int >= 2")
    for argument, value in (("num_train", num_train), ("num_val", num_val),
                            ("num_test", num_test)):
        check(argument, value, is_positive_int(value), "a positive int")
    _check_seed(seed)
    length, seed = int(length), int(seed)
    x_train, y_train = adding_problem(num_train, length, seed=seed)
    x_val, y_val = adding_problem(num_val, length, seed=seed + 1)
    x_test, y_test = adding_problem(num_test, length, seed=seed + 2)
    return Dataset(
        name="adding",
        task="regression",
        num_outputs=1,
        input_shape=(length, 2),
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
        x_test=x_test, y_test=y_test,
        citation=ADDING_CITATION,
        description=f"Synthetic adding problem, T={length}: sum the two marked values.",
    )


def load_tfds_text(name="imdb_reviews", data_dir=None, max_tokens=20000, sequence_length=200,
                   validation_split=0.2, max_examples=None, seed=0, text_key="text",
                   label_key="label"):
    """A TFDS text-classification dataset, vectorized to padded token ids.

    Loads through `tensorflow_datasets` from a local `data_dir` (never downloads); a
    `keras.layers.TextVectorization` adapted on the training split maps text to ids
    (0 is padding, 1 out-of-vocabulary). The TFDS `test` split is the test set when it
    exists; validation is cut from `train`.
    """
    _check_tfds_options(name, data_dir, max_tokens, sequence_length, validation_split,
                        max_examples, seed, text_key, label_key)
    import keras
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir and os.fspath(data_dir))
    except Exception as error:  # unknown names raise DatasetNotFoundError and friends
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"`name` must be a registered TFDS dataset. Received: name={name!r} ({first_line})"
        ) from None
    builder_info = builder.info
    features = builder_info.features
    for argument, key in (("text_key", text_key), ("label_key", label_key)):
        if key not in features:
            raise ValueError(
                f"`{argument}` must name a feature of {name!r} (features: "
                f"{sorted(features.keys())}). Received: {argument}={key!r}"
            )
    _check_tfds_feature(name, features, "text_key", text_key, "string",
                        "a text feature (dtype string, one text per example)")
    _check_tfds_feature(name, features, "label_key", label_key, "integer",
                        "an integer class-label feature (one int per example)")

    def to_arrays(split):
        ds = builder.as_dataset(split=split, shuffle_files=False)
        if max_examples is not None:
            ds = ds.take(int(max_examples))
        texts, labels = [], []
        for example in tfds.as_numpy(ds):
            text = example[text_key]
            texts.append(text.decode("utf-8") if isinstance(text, bytes) else str(text))
            labels.append(int(example[label_key]))
        return np.array(texts, dtype=object), np.array(labels, dtype=np.int32)

    try:
        texts, labels = to_arrays("train")
    except AssertionError:
        # What TFDS raises, bare, when the data is not in data_dir and downloads are off.
        where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared in data_dir={str(where)!r} and gru-zoo "
            "never downloads. Prepare it on a machine with a network (`tfds build "
            f"{name} --data_dir DIR`), copy DIR here and pass `data_dir=DIR` "
            "(CLI: `--data-dir DIR`)."
        ) from None
    limit = "" if max_examples is None else f" (max_examples={max_examples!r})"
    if len(texts) < 2:
        raise ValueError(
            f"TFDS {name!r}: the train split has {len(texts)} example(s){limit}; expected at "
            "least 2, one to train on and one for validation")
    rng = np.random.default_rng(None if seed is None else int(seed))
    order = rng.permutation(len(texts))
    n_val = max(1, int(round(len(texts) * validation_split)))
    if n_val >= len(texts):
        raise ValueError(
            f"`validation_split` must leave examples to train on: {validation_split:g} of the "
            f"{len(texts)} training examples of {name!r}{limit} is {n_val}, none left. "
            f"Received: validation_split={validation_split!r}")
    val_idx, train_idx = order[:n_val], order[n_val:]
    if "test" in builder_info.splits:
        test_texts, test_labels = to_arrays("test")
    else:
        test_texts, test_labels = texts[val_idx], labels[val_idx]

    vectorizer = keras.layers.TextVectorization(
        max_tokens=None if max_tokens is None else int(max_tokens),
        output_sequence_length=int(sequence_length)
    )
    vectorizer.adapt(texts[train_idx].tolist())
    if vectorizer.vocabulary_size() <= 2:  # only padding and out-of-vocabulary
        raise ValueError(
            f"TFDS {name!r}: the {len(train_idx)} training texts (text_key={text_key!r}) hold "
            "no word; expected text to build a vocabulary from")

    def vectorize(t):
        return np.asarray(vectorizer(np.asarray(t.tolist(), dtype=object)), dtype=np.int32)

    label_feature = features[label_key]
    names = getattr(label_feature, "names", None)
    num_classes = getattr(label_feature, "num_classes", None) or int(labels.max()) + 1
    vocabulary = [str(token) for token in vectorizer.get_vocabulary()]
    return Dataset(
        name=name,
        task="classification",
        num_outputs=num_classes,
        input_shape=(int(sequence_length),),
        x_train=vectorize(texts[train_idx]),
        y_train=labels[train_idx],
        x_val=vectorize(texts[val_idx]),
        y_val=labels[val_idx],
        x_test=vectorize(test_texts),
        y_test=test_labels,
        label_names=list(names) if names else [str(i) for i in range(num_classes)],
        vocabulary=vocabulary,
        citation=IMDB_CITATION if name == "imdb_reviews" else f"TensorFlow Datasets: {name}",
        description=f"TFDS {name}: text classification, {len(vocabulary)} tokens.",
    )


def _check_tfds_options(name, data_dir, max_tokens, sequence_length, validation_split,
                        max_examples, seed, text_key, label_key):
    """The options of `load_tfds_text` that can be checked without loading anything."""
    check("name", name, isinstance(name, str) and bool(name), "a TFDS dataset name (str)")
    check("data_dir", data_dir, data_dir is None or (
        isinstance(data_dir, (str, os.PathLike)) and not isinstance(data_dir, bytes)),
          "a folder path (str or os.PathLike) or None (TFDS_DATA_DIR or ~/tensorflow_datasets)")
    # TextVectorization keeps two ids for padding and out-of-vocabulary words.
    check("max_tokens", max_tokens,
          max_tokens is None or (is_int(max_tokens) and max_tokens >= 3),
          "an int >= 3 (padding, out-of-vocabulary and at least one word) or None (no limit)")
    check("sequence_length", sequence_length, is_positive_int(sequence_length),
          "a positive int")
    _check_fraction("validation_split", validation_split)
    check("max_examples", max_examples, max_examples is None or (
        is_int(max_examples) and max_examples >= 2),
          "an int >= 2 (one example to train on, one for validation) or None (all)")
    _check_seed(seed, allow_none=True)
    for argument, key in (("text_key", text_key), ("label_key", label_key)):
        check(argument, key, isinstance(key, str), "the name of a feature (str)")


def _check_tfds_feature(name, features, argument, key, kind, allowed):
    """`features[key]` is a scalar of `kind` ("string" or "integer")."""
    feature = features[key]
    if not _feature_is(feature, kind):
        dtype = getattr(feature, "dtype", None)
        dtype_name = str(getattr(dtype, "name", dtype))
        shape = tuple(getattr(feature, "shape", ()) or ())
        matching = sorted(k for k in features.keys() if k != key and _feature_is(
            features[k], kind))
        kind_name = "text" if kind == "string" else kind
        raise ValueError(
            f"`{argument}` must name {allowed} of {name!r}; {key!r} is a "
            f"{type(feature).__name__} feature (dtype {dtype_name}, shape {shape})"
            f"{f'; {kind_name} features: {matching}' if matching else ''}. "
            f"Received: {argument}={key!r}")


def _feature_is(feature, kind):
    """Whether a TFDS feature is one string (`kind="string"`) or one int ("integer")."""
    dtype = getattr(feature, "dtype", None)
    dtype_name = str(getattr(dtype, "name", dtype))
    if tuple(getattr(feature, "shape", ()) or ()):
        return False
    if kind == "string":
        return dtype_name in ("string", "object", "str")
    return dtype_name.startswith(("int", "uint"))


DATASETS = {
    "gunpoint": load_gunpoint,
    "italy_power_demand": load_italy_power_demand,
    "airline_passengers": load_airline_passengers,
    "adding": load_adding,
    "imdb_reviews": load_tfds_text,
}

EMBEDDED = ("gunpoint", "italy_power_demand", "airline_passengers")


def describe_datasets():
    """Name → one-line description of each dataset `load_dataset` knows."""
    return {
        "gunpoint": "UCR GunPoint, 2 classes, 150 steps x 1 channel (embedded).",
        "italy_power_demand": "UCR ItalyPowerDemand, 2 classes, 24 steps x 1 (embedded).",
        "airline_passengers": "Airline passengers 1949-1960, forecast 12 months from 24 "
        "(embedded).",
        "adding": "Synthetic adding problem; `length=` sets the sequence length (generated).",
        "imdb_reviews": "IMDB reviews via TFDS from a local data_dir (never downloaded).",
        "tfds:<name>": "Any TFDS text-classification dataset from a local data_dir.",
        "<path>": "Your own data: a UCR/UEA .ts file, a CSV (wide, long or one series) or a "
        ".npz with x_train/y_train (zoo.loaders).",
    }


def _is_path(name):
    """Whether `load_dataset` reads `name` as a file rather than a dataset name."""
    from zoo.loaders import SUFFIXES

    if isinstance(name, os.PathLike):
        return True
    if not isinstance(name, str) or name in DATASETS or name.startswith("tfds:"):
        return False
    return os.path.isfile(name) or name.lower().endswith(tuple(SUFFIXES))


def load_dataset(name, **kwargs):
    """Loads a dataset by name, or your own data from a file; keyword arguments go to its loader.

    Args:
        name: str or path-like: a key of `zoo.DATASETS`, `"tfds:<name>"` for any TFDS
            text-classification dataset prepared in a local `data_dir`, or a data file
            (an existing file, or a path ending in `.ts`, `.csv`, `.tsv`, `.txt` or
            `.npz`), read by `zoo.loaders.load_file`.
        **kwargs: loader options, e.g. `validation_split`, `seed` (UCR),
            `window`, `horizon` (airline), `length` (adding), `data_dir` (TFDS);
            for files those of `zoo.loaders.load_ts`, `load_csv` or `load_npz`
            (e.g. `test_path`, `layout`, `label`).

    Returns:
        A `Dataset`.
    """
    if not isinstance(name, (str, os.PathLike)) or isinstance(name, bytes):
        raise ValueError(
            f"`name` must be a str: one of {sorted(DATASETS)}, 'tfds:<name>' or a data file "
            f"path (str or os.PathLike). Received: name={name!r}"
        )
    if _is_path(name):
        from zoo.loaders import load_file

        return load_file(name, **kwargs)
    if isinstance(name, str) and name.startswith("tfds:"):
        _check_options(name, load_tfds_text, kwargs, fixed=("name",))
        return load_tfds_text(name[len("tfds:"):], **kwargs)
    if name not in DATASETS:
        raise ValueError(
            f"`name` must be one of {sorted(DATASETS)}, 'tfds:<name>' or a data file "
            f"(.ts, .csv, .tsv, .txt, .npz). Received: name={name!r}"
        )
    loader = DATASETS[name]
    _check_options(name, loader, kwargs, fixed=("name",))
    if "validation_split" in kwargs:
        _check_fraction("validation_split", kwargs["validation_split"])
    return loader(**kwargs)


def _check_options(name, loader, kwargs, fixed=()):
    """Refuses keyword arguments that `loader` does not take (`fixed`: set by `name`,
    `load_dataset`'s own argument)."""
    import inspect

    accepted = sorted(set(inspect.signature(loader).parameters) - set(fixed))
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for dataset {name!r}; allowed: {accepted}. "
            f"Received: {', '.join(f'{k}={kwargs[k]!r}' for k in unknown)}"
        )

"""Bad input to `Dataset.from_arrays` (sequence tasks, splits, labels), the TFDS loader,
`adding_problem`, `Dataset.as_tf_data` and `Dataset.decode_labels`.

Each case asserts that the message names the argument and the value received (`match=`
joins the fragments in order); the valid cases prove that the checks still let good input
through. Tiny arrays, no training.
"""

import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

import zoo

F = zoo.Dataset.from_arrays


def pattern(*fragments):
    """A `match=` regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(str(f)) for f in fragments)


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 8, 2))
    y = np.array([0, 1] * 10)
    yq = rng.normal(size=(20, 8))  # per-step targets
    return x, y, yq, (yq > 0).astype(int)


# --------------------------------------------------------------- sequence_regression

def test_sequence_regression_refuses_non_finite_targets(arrays):
    x, _, yq, _ = arrays
    for bad in (np.nan, np.inf):
        y = yq.copy()
        y[3, 2] = bad
        with pytest.raises(ValueError, match=pattern(
                "`y_train` holds a missing or infinite target at series 3, step 2",
                f"y_train[3, 2]={bad!r}", "expected finite numbers",
                "task='sequence_regression'")):
            F(x, y, task="sequence_regression")
    y = yq[:4].copy()
    y[1, 0] = np.nan
    with pytest.raises(ValueError, match=pattern("`y_test`", "y_test[1, 0]=nan")):
        F(x, yq, x[:4], y, task="sequence_regression")


def test_sequence_regression_refuses_bad_shapes(arrays):
    x, _, yq, _ = arrays
    with pytest.raises(ValueError, match=pattern(
            "`y_train` must be (samples, time=8) or (samples, time=8, outputs)",
            "task='sequence_regression'", "Received: shape (20, 8, 1, 1)")):
        F(x, yq[..., None, None], task="sequence_regression")
    with pytest.raises(ValueError, match=pattern(
            "`y_test` has 2 target(s) per step, `y_train` 1; expected the same",
            "y_train with shape (20, 8, 1)", "y_test with shape (4, 8, 2)")):
        F(x, yq[..., None], x[:4], np.stack([yq[:4], yq[:4]], -1),
          task="sequence_regression")


def test_sequence_regression_refuses_text_targets(arrays):
    x = arrays[0]
    with pytest.raises(ValueError, match=pattern(
            "`y_train` must hold numbers for task='sequence_regression'", "'a'")):
        F(x, np.array([["a"] * 8] * 20), task="sequence_regression")


def test_sequence_regression_valid_targets_still_load(arrays):
    x, _, yq, _ = arrays
    ds = F(x, yq, task="sequence_regression")
    assert ds.num_outputs == 1 and ds.y_train.shape[1:] == (8,)
    ds = F(x, np.stack([yq, -yq], -1), task="sequence_regression")
    assert ds.num_outputs == 2 and ds.y_train.shape[1:] == (8, 2)
    # (samples, time) and (samples, time, 1): one output either way, kept in one shape.
    ds = F(x, yq[..., None], x[:4], yq[:4], task="sequence_regression")
    assert ds.num_outputs == 1 and ds.y_test.shape == (4, 8, 1)


# --------------------------------------------------------------- sequence_labeling

def test_sequence_labeling_refuses_missing_and_fractional_labels(arrays):
    x, _, _, yl = arrays
    y = yl.astype(float)
    y[2, 5] = np.nan
    with pytest.raises(ValueError, match=pattern(
            "`y_train` has a missing (NaN) label at index (2, 5)",
            "expected a class label (int or str) for every step")):
        F(x, y, task="sequence_labeling")
    with pytest.raises(ValueError, match=pattern(
            "`y_train` must hold class labels (ints or str) for task='sequence_labeling'",
            "non-integer float labels", "y_train[0, 0]=", "task='sequence_regression'")):
        F(x, yl + 0.5, task="sequence_labeling")
    y = np.where(yl, "pos", "neg").astype(object)
    y[1, 3] = None
    with pytest.raises(ValueError, match=pattern(
            "`y_train` has a missing (None) label at index (1, 3)")):
        F(x, y, task="sequence_labeling")


def test_sequence_labeling_needs_two_classes(arrays):
    x = arrays[0]
    with pytest.raises(ValueError, match=pattern(
            "`y_train`: every step of every series has the class label '0'",
            "task='sequence_labeling' needs at least 2 classes")):
        F(x, np.zeros((20, 8)), task="sequence_labeling")


def test_sequence_labeling_indices_must_be_below_the_number_of_names(arrays):
    x, _, _, yl = arrays
    first = tuple(int(v) for v in np.argwhere(yl == 1)[0])
    with pytest.raises(ValueError, match=pattern(
            "`y_train` must hold class indices below the number of `label_names` (1: 0..0)",
            f"y_train[{first[0]}, {first[1]}]=1", "label_names=['a']")):
        F(x, yl, task="sequence_labeling", label_names=["a"])
    with pytest.raises(ValueError, match=pattern(
            "`y_train` must hold class indices below the number of `label_names` (2: 0..1)",
            "=5", "label_names=['a', 'b']")):
        F(x, yl * 5, task="sequence_labeling", label_names=["a", "b"])
    with pytest.raises(ValueError, match=pattern("`y_test`", "=2", "label_names=['a', 'b']")):
        F(x, yl, x[:3], yl[:3] * 2, task="sequence_labeling", label_names=["a", "b"])


def test_sequence_labeling_refuses_a_bad_shape(arrays):
    x, _, _, yl = arrays
    with pytest.raises(ValueError, match=pattern(
            "`y_train` must be (samples, time=8) class labels, one per step",
            "Received: shape (20, 8, 2)")):
        F(x, np.stack([yl, yl], -1), task="sequence_labeling")


def test_sequence_labeling_valid_labels_still_load(arrays):
    x, _, _, yl = arrays
    ds = F(x, yl, task="sequence_labeling")
    assert ds.num_outputs == 2 and ds.label_names == ["0", "1"]
    assert ds.y_train.dtype == np.int32 and ds.y_train.shape[1:] == (8,)
    ds = F(x, yl.astype(float), task="sequence_labeling")  # whole-number floats
    assert ds.label_names == ["0", "1"]
    ds = F(x, yl, task="sequence_labeling", label_names=["neg", "pos"])
    assert ds.label_names == ["neg", "pos"] and set(np.unique(ds.y_train)) == {0, 1}
    # Labels that are the names: mapped in the names' order.
    text = np.where(yl, "pos", "neg")
    ds = F(x, text, x[:3], text[:3], task="sequence_labeling", label_names=["pos", "neg"])
    assert ds.label_names == ["pos", "neg"]
    assert np.array_equal(ds.y_test, 1 - yl[:3])


@pytest.mark.parametrize("task", ["sequence_labeling", "sequence_regression"])
def test_per_step_targets_of_series_of_different_lengths(arrays, task):
    x, _, yq, yl = arrays
    ys = yl if task == "sequence_labeling" else yq
    lengths = [4 + i % 3 for i in range(20)]
    with pytest.raises(ValueError, match=pattern(
            f"task={task!r}: per-step targets need series of one length",
            "found lengths [4, 5, 6] in `x_train`")):
        F([x[i, :n] for i, n in enumerate(lengths)], [ys[i, :n] for i, n in enumerate(lengths)],
          task=task)
    with pytest.raises(ValueError, match=pattern(
            "per-step targets need series of one length", "found lengths [5, 8]",
            "`x_train` and `x_test`")):
        F(x, ys, x[:4, :5], ys[:4, :5], task=task)
    # Series of one length, targets of different lengths.
    with pytest.raises(ValueError, match=pattern(
            "`y_train` must be one label per series (samples,) or per-step targets of one "
            "length (samples, time)", "rows of different lengths [4, 5, 6]")):
        F(x, [ys[i, :n] for i, n in enumerate(lengths)], task=task)


# --------------------------------------------------------------- labels

def test_missing_class_labels_are_refused(arrays):
    x = arrays[0]
    with pytest.raises(ValueError, match=pattern(
            "`y_train` has a missing (None) label at index 0", "(10 of 20)",
            "expected a class label (int or str) for every series")):
        F(x, [None, "a"] * 10)
    with pytest.raises(ValueError, match=pattern("`y_train` has a missing (nan) label at "
                                                 "index 1")):
        F(x, np.array(["a", float("nan")] * 10, dtype=object), task="classification")
    with pytest.raises(ValueError, match=pattern("`y_test` has a missing (None) label at "
                                                 "index 2")):
        F(x, ["a", "b"] * 10, x[:3], ["a", "b", None])


@pytest.mark.parametrize("task", [None, "regression", "sequence_regression"])
def test_label_names_are_refused_for_regression(arrays, task):
    x, _, yq, _ = arrays
    y = yq if task == "sequence_regression" else yq[:, 0]
    fragments = ["`label_names` must be None for task=", "class names are for classification",
                 "label_names=['a', 'b']"]
    if task is None:
        fragments[1:1] = ["(inferred: ", "pass task='classification'"]
    with pytest.raises(ValueError, match=pattern(*fragments)):
        F(x, y, task=task, label_names=["a", "b"])


# --------------------------------------------------------------- splits

def test_a_too_large_test_split_is_named(arrays):
    x, y, _, _ = arrays
    with pytest.raises(ValueError, match=pattern(
            "`test_split` must leave enough training series to split off a validation part",
            "(validation_split=0.2)", "took 18 of the 20 series given and left 2",
            "Received: test_split=0.99")):
        F(x, y, test_split=0.99)


def test_too_few_series_for_a_test_and_a_validation_part(arrays):
    x, y, _, _ = arrays
    with pytest.raises(ValueError, match=pattern(
            "4 series are too few for a test and a validation part",
            "the test split (test_split=0.2) took 2 of the 4 series given and left 2",
            "validation_split=0.2")):
        F(x[:4], y[:4])
    # With a separate test split, the message counts the training series.
    with pytest.raises(ValueError, match=pattern(
            "2 training series are too few to split off a validation part")):
        F(x[:2], y[:2], x[:2], y[:2])
    ds = F(x[:6], y[:6])  # enough: 3 series of each class
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (2, 2, 2)


# --------------------------------------------------------------- TFDS

@pytest.mark.parametrize("kwargs, fragments", [
    (dict(max_examples=0), ["`max_examples` must be an int >= 2", "max_examples=0"]),
    (dict(max_examples=-1), ["`max_examples`", "max_examples=-1"]),
    (dict(max_examples=1), ["`max_examples` must be an int >= 2", "max_examples=1"]),
    (dict(max_examples=2.5), ["`max_examples`", "max_examples=2.5"]),
    (dict(sequence_length=0), ["`sequence_length` must be a positive int",
                               "sequence_length=0"]),
    (dict(sequence_length=-1), ["`sequence_length`", "sequence_length=-1"]),
    (dict(max_tokens="a"), ["`max_tokens` must be an int >= 3", "or None",
                            "max_tokens='a'"]),
    (dict(max_tokens=2), ["`max_tokens` must be an int >= 3", "max_tokens=2"]),
    (dict(seed=-1), ["`seed` must be an int >= 0", "seed=-1"]),
    (dict(seed=True), ["`seed`", "seed=True"]),
    (dict(data_dir=3), ["`data_dir` must be a folder path", "data_dir=3"]),
    (dict(text_key=3), ["`text_key` must be the name of a feature", "text_key=3"]),
    (dict(validation_split=1.0), ["`validation_split`", "validation_split=1.0"]),
])
def test_tfds_options_are_checked_before_loading(kwargs, fragments):
    # No data anywhere: the checks run before TFDS is asked for anything.
    with pytest.raises(ValueError, match=pattern(*fragments)):
        zoo.load_dataset("imdb_reviews", **kwargs)
    with pytest.raises(ValueError, match=pattern(*fragments)):
        zoo.load_dataset("tfds:imdb_reviews", **kwargs)


def test_tfds_unknown_options_are_listed():
    with pytest.raises(ValueError, match=pattern(
            "Unknown option(s) ['foo'] for dataset 'tfds:imdb_reviews'", "max_examples",
            "Received: foo=1")):
        zoo.load_dataset("tfds:imdb_reviews", foo=1)


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(label_key="text"), ["`label_key` must name an integer class-label feature",
                              "'text' is a Text feature", "integer features: ['label']",
                              "label_key='text'"]),
    (dict(text_key="label"), ["`text_key` must name a text feature",
                              "'label' is a ClassLabel feature", "text features: ['text']",
                              "text_key='label'"]),
    (dict(validation_split=0.99), ["`validation_split` must leave examples to train on",
                                   "of the 12 training examples", "validation_split=0.99"]),
    (dict(validation_split=0.9, max_examples=2),
     ["`validation_split` must leave examples to train on", "(max_examples=2)",
      "validation_split=0.9"]),
])
def test_tfds_keys_and_splits_are_checked(kwargs, fragments):
    with tfds.testing.mock_data(num_examples=12):
        with pytest.raises(ValueError, match=pattern(*fragments)):
            zoo.load_dataset("imdb_reviews", **kwargs)


def test_tfds_valid_options_still_load():
    with tfds.testing.mock_data(num_examples=12):
        ds = zoo.load_dataset("tfds:imdb_reviews", max_examples=np.int64(6), max_tokens=None,
                              sequence_length=np.int64(5), seed=np.int64(1))
    assert ds.input_shape == (5,) and len(ds.x_train) + len(ds.x_val) == 6


# --------------------------------------------------------------- adding_problem

@pytest.mark.parametrize("seed", [-1, "x", 1.5, True])
def test_adding_problem_checks_the_seed(seed):
    with pytest.raises(ValueError, match=pattern("`seed` must be an int >= 0",
                                                 f"Received: seed={seed!r}")):
        zoo.adding_problem(3, 10, seed=seed)
    x, y = zoo.adding_problem(3, 10, seed=np.int64(2))
    assert x.shape == (3, 10, 2) and y.shape == (3, 1)


# --------------------------------------------------------------- Dataset methods

@pytest.fixture(scope="module")
def small(arrays):
    x, y, _, _ = arrays
    return F(x, y)


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(batch_size=0), ["`batch_size` must be a positive int", "batch_size=0"]),
    (dict(batch_size=-1), ["`batch_size`", "batch_size=-1"]),
    (dict(batch_size=2.5), ["`batch_size`", "batch_size=2.5"]),
    (dict(batch_size="4"), ["`batch_size`", "batch_size='4'"]),
    (dict(batch_size=None), ["`batch_size`", "batch_size=None"]),
    (dict(seed="a"), ["`seed` must be an int >= 0", "seed='a'"]),
    (dict(seed=-1), ["`seed`", "seed=-1"]),
    (dict(shuffle="no"), ["`shuffle` must be True, False or None", "shuffle='no'"]),
    (dict(shuffle=0), ["`shuffle`", "shuffle=0"]),
])
def test_as_tf_data_checks_its_arguments(small, kwargs, fragments):
    with pytest.raises(ValueError, match=pattern(*fragments)):
        small.as_tf_data("train", **kwargs)


def test_as_tf_data_accepts_numpy_scalars(small):
    batches = list(small.as_tf_data("test", batch_size=np.int64(2), shuffle=np.bool_(True),
                                    seed=np.int64(1)))
    assert sum(len(b[0]) for b in batches) == len(small.x_test)


def test_seed_none_still_means_unseeded(small):
    # `seed=None` (an unseeded draw in NumPy and tf.data) worked before these checks.
    batches = list(small.as_tf_data("train", batch_size=4, seed=None))
    assert sum(len(b[0]) for b in batches) == len(small.x_train)
    x, y = zoo.adding_problem(3, 10, seed=None)
    assert x.shape == (3, 10, 2) and y.shape == (3, 1)


def test_decode_labels_refuses_bad_probabilities(small):
    with pytest.raises(ValueError, match=pattern(
            "`indices` given as probabilities must hold finite numbers",
            "indices[0]=[nan, nan]")):
        small.decode_labels(np.array([[np.nan, np.nan]]))
    with pytest.raises(ValueError, match=pattern("indices[1]=[0.5, inf]")):
        small.decode_labels(np.array([[0.2, 0.8], [0.5, np.inf]]))
    with pytest.raises(ValueError, match=pattern(
            "`indices` given as probabilities must have 2 columns",
            "expected 2 columns, got 3", "shape (1, 3)")):
        small.decode_labels(np.array([[0.1, 0.2, 0.7]]))
    assert small.decode_labels(np.array([[0.2, 0.8], [0.9, 0.1]])) == ["1", "0"]
    assert small.decode_labels(np.array([[0.7], [0.2]])) == ["1", "0"]  # sigmoid

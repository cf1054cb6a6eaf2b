import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from zoo import adding_problem, load_dataset
from zoo.datasets import EMBEDDED, load_adding


@pytest.mark.parametrize(
    "name, input_shape, counts, labels",
    [("gunpoint", (150, 1), (50, 150), ["1", "2"]),
     ("italy_power_demand", (24, 1), (67, 1029), ["1", "2"])],
)
def test_ucr_datasets(name, input_shape, counts, labels):
    ds = load_dataset(name)
    assert ds.task == "classification" and ds.num_outputs == 2
    assert ds.input_shape == input_shape and ds.label_names == labels
    assert len(ds.x_train) + len(ds.x_val) == counts[0] and len(ds.x_test) == counts[1]
    for split in ("train", "val", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert x.dtype == np.float32 and x.shape[1:] == input_shape
        assert set(np.unique(y)) <= {0, 1}
    # Stratified, shuffled split: both classes on both sides, train not sorted by class.
    assert set(np.unique(ds.y_val)) == {0, 1}
    assert not np.all(np.diff(ds.y_train) >= 0)
    # Normalization statistics come from the training split only.
    np.testing.assert_allclose(ds.x_train.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(), 1.0, atol=1e-3)
    assert len(ds.normalization["mean"]) == input_shape[-1]
    assert "UCR" in ds.citation


def test_ucr_split_depends_on_seed_but_is_repeatable():
    a, b, c = (load_dataset("gunpoint", seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)


def test_airline_windows_are_chronological():
    ds = load_dataset("airline_passengers", window=12, horizon=3)
    assert ds.task == "regression" and ds.num_outputs == 3 and ds.input_shape == (12, 1)
    assert ds.y_train.shape[1:] == (3,)
    # Consecutive windows overlap by one step, and the target follows its window.
    np.testing.assert_allclose(ds.x_train[1, :-1, 0], ds.x_train[0, 1:, 0])
    np.testing.assert_allclose(ds.y_train[0, 0], ds.x_train[1, -1, 0])
    # The last test target is the last month of the series.
    mean, std = ds.normalization["mean"][0], ds.normalization["std"][0]
    assert np.exp(ds.y_test[-1, -1] * std + mean) == pytest.approx(432.0, rel=1e-4)
    assert len(ds.y_test) == 24 and len(ds.y_val) == 12


def test_forecast_baselines_are_computed_on_the_split():
    ds = load_dataset("airline_passengers", window=24, horizon=18)
    assert ds.season == 12
    x, y = ds.x_test[..., 0], ds.y_test
    # Seasonal naive: month h of the horizon repeats the same month of the last year.
    seasonal = np.concatenate([x[:, -12:], x[:, -12:-6]], axis=1)
    baselines = ds.forecast_baselines("test")
    assert baselines["seasonal naive"] == pytest.approx(float(np.mean((seasonal - y) ** 2)))
    assert baselines["last value"] == pytest.approx(float(np.mean((x[:, -1:] - y) ** 2)))
    assert baselines["seasonal naive"] < baselines["last value"]  # a seasonal series
    assert ds.forecast_baselines("val") != baselines
    assert load_dataset("italy_power_demand").forecast_baselines() == {}
    with pytest.raises(ValueError, match="split='dev'"):
        ds.forecast_baselines("dev")


def test_adding_problem_statistics():
    x, y = adding_problem(2000, 100, seed=3)
    assert x.shape == (2000, 100, 2) and y.shape == (2000, 1)
    markers = x[..., 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :50].sum(axis=1) == 1) and np.all(markers[:, 50:].sum(axis=1) == 1)
    assert y.min() >= 0 and y.max() <= 2
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * markers).sum(axis=1), rtol=1e-6)
    # Predicting the mean gives the known trivial-baseline MSE of about 1/6.
    assert np.mean((y - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.02)
    np.testing.assert_array_equal(adding_problem(5, 10, seed=1)[0], adding_problem(5, 10, seed=1)[0])


def test_adding_dataset_splits_differ():
    ds = load_adding(length=20, num_train=50, num_val=10, num_test=10)
    assert ds.input_shape == (20, 2) and ds.task == "regression"
    assert not np.array_equal(ds.x_train[:10], ds.x_val)


def test_as_tf_data():
    ds = load_dataset("italy_power_demand")
    batches = list(ds.as_tf_data("test", batch_size=100))
    assert len(batches) == 11 and batches[0][0].shape == (100, 24, 1)
    with pytest.raises(ValueError, match="split='dev'"):
        ds.as_tf_data("dev")


@pytest.fixture
def local_tfds_dir(tmp_path):
    from tensorflow_datasets.core.dataset_builders import store_as_tfds_dataset

    texts = ["good movie great fun", "bad awful boring", "great acting good plot",
             "boring bad film"] * 5
    labels = [1, 0, 1, 0] * 5

    def split(n):
        return tf.data.Dataset.from_tensor_slices({"text": texts[:n], "label": labels[:n]})

    features = tfds.features.FeaturesDict({
        "text": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=["neg", "pos"]),
    })
    store_as_tfds_dataset(name="tiny_reviews", version="1.0.0", features=features,
                          split_datasets={"train": split(20), "test": split(8)},
                          data_dir=str(tmp_path))
    return tmp_path


def test_tfds_text_from_local_data_dir(local_tfds_dir):
    ds = load_dataset("tfds:tiny_reviews", data_dir=str(local_tfds_dir), max_tokens=50,
                      sequence_length=6)
    assert ds.input_shape == (6,) and ds.x_train.dtype == np.int32
    assert len(ds.x_train) == 16 and len(ds.x_val) == 4 and len(ds.x_test) == 8
    assert ds.label_names == ["neg", "pos"] and ds.num_outputs == 2
    assert ds.vocabulary[:2] == ["", "[UNK]"] and "great" in ds.vocabulary
    # "bad awful boring" → three known ids, then padding.
    index = {t: i for i, t in enumerate(ds.vocabulary)}
    row = next(r for r, y in zip(ds.x_test, ds.y_test) if y == 0)
    assert list(row[:3]) == [index["bad"], index["awful"], index["boring"]]
    assert list(row[3:]) == [0, 0, 0]


def test_imdb_reviews_through_tfds_mock():
    with tfds.testing.mock_data(num_examples=12):
        ds = load_dataset("imdb_reviews", max_tokens=100, sequence_length=8)
    assert ds.x_train.shape == (10, 8) and ds.label_names == ["neg", "pos"]


def test_missing_tfds_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not prepared in data_dir=.*never downloads"):
        load_dataset("imdb_reviews", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    "name, kwargs, message",
    [("mnist_sequences", {}, "name='mnist_sequences'"),
     ("gunpoint", {"window": 3}, "window=3"),
     ("gunpoint", {"validation_split": 1.5}, "validation_split=1.5"),
     ("airline_passengers", {"window": 200}, "window=200"),
     ("adding", {"length": 1}, "length=1"),
     ("tfds:not_a_dataset_anywhere", {}, "name='not_a_dataset_anywhere'")],
)
def test_bad_dataset_arguments(name, kwargs, message):
    with pytest.raises(ValueError) as info:
        load_dataset(name, **kwargs)
    assert message in str(info.value)


def test_embedded_data_ships_with_the_package():
    import importlib.resources

    for name in EMBEDDED:
        assert load_dataset(name).citation
    files = {p.name for p in importlib.resources.files("zoo").joinpath("data").iterdir()}
    assert {"GunPoint.npz", "ItalyPowerDemand.npz", "AirlinePassengers.npz"} <= files

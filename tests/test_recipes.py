"""The recipe picker: choices from the data's shape, and the embedded sets explained by it."""

import dataclasses

import numpy as np
import pytest

import zoo
from zoo.recipes import GRU_FCN, TRAIN_DEFAULTS, choose_recipe, profile


def _classification(n_train, length, channels=1, classes=2, n_val=None, counts=None, seed=0):
    rng = np.random.default_rng(seed)
    n_val = n_val if n_val is not None else max(2, n_train // 4)
    if counts is None:
        y = np.arange(n_train) % classes
    else:
        y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
        n_train = len(y)
    x = rng.normal(size=(n_train, length, channels)).astype(np.float32)
    return zoo.Dataset(
        name="synthetic", task="classification", num_outputs=classes,
        input_shape=(length, channels), x_train=x, y_train=y.astype(np.int32),
        x_val=x[:n_val], y_val=y[:n_val].astype(np.int32), x_test=x[:4],
        y_test=y[:4].astype(np.int32), label_names=[str(k) for k in range(classes)])


def _forecast(trend, n=200, window=24, horizon=6):
    t = np.arange(n, dtype=np.float32)
    series = np.sin(2 * np.pi * t / 12) + trend * t / n * 10
    x = np.stack([series[s:s + window] for s in range(n - window - horizon)])[..., None]
    y = np.stack([series[s + window:s + window + horizon] for s in range(n - window - horizon)])
    return zoo.Dataset(
        name="synthetic_series", task="regression", num_outputs=horizon,
        input_shape=(window, 1), x_train=x[:120], y_train=y[:120], x_val=x[120:140],
        y_val=y[120:140], x_test=x[140:], y_test=y[140:], season=12)


def test_long_small_classification_gets_gru_fcn_on_train_plus_val():
    recipe = choose_recipe(_classification(n_train=40, length=150, n_val=10))
    assert {k: recipe.build[k] for k in GRU_FCN} == GRU_FCN
    assert recipe.train["fit_on"] == "train+val" and recipe.train["lr_decay"] == "cosine"
    assert recipe.train["epochs"] == 300 and recipe.train["batch_size"] == 8
    assert recipe.train["patience"] == recipe.train["epochs"]
    assert any("GRU-FCN" in r for r in recipe.reasons)


def test_short_series_get_one_small_gru_layer():
    recipe = choose_recipe(_classification(n_train=60, length=24, n_val=14))
    assert recipe.build == {"variant": "stacked", "units": 32, "num_layers": 1}
    assert recipe.train["epochs"] == 150


def test_many_series_use_validation_early_stopping_and_a_larger_batch_within_the_update_cap():
    recipe = choose_recipe(_classification(n_train=3000, length=100, n_val=600))
    assert recipe.train["fit_on"] == "train" and recipe.train["lr_decay"] == "plateau"
    assert recipe.train["batch_size"] == 256 // 2  # 3000 / 10 -> 256, capped at 128
    steps = -(-3000 // 128)
    assert recipe.train["epochs"] == min(300, 8000 // steps)
    assert recipe.train["patience"] == TRAIN_DEFAULTS["patience"]


def test_imbalanced_classes_are_weighted_and_balanced_ones_are_not():
    imbalanced = choose_recipe(_classification(n_train=0, length=30, counts=[90, 10]))
    assert imbalanced.train["class_weight"] == "balanced"
    assert imbalanced.profile["imbalance"] == 9.0
    balanced = choose_recipe(_classification(n_train=100, length=30))
    assert balanced.train["class_weight"] is None


def _streams(recipe, dataset):
    """Builds the recipe's model and checks that the streaming export accepts it."""
    from export import streaming

    model = zoo.build_gru(input_shape=dataset.input_shape, num_outputs=dataset.num_outputs,
                          task=dataset.task, **recipe.build)
    streaming.plan(model)  # raises ValueError naming the layer that cannot stream
    return model


def test_streaming_builds_the_measured_recipe_causally():
    long_series = _classification(n_train=40, length=150)
    recipe = choose_recipe(long_series, streaming=True)
    assert {k: recipe.build[k] for k in GRU_FCN} == GRU_FCN
    assert recipe.build["causal"] is True
    assert any("causal=True" in r and "GunPoint" in r for r in recipe.reasons)
    model = _streams(recipe, long_series)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv1D"]
    assert [c.padding for c in convs] == ["causal"] * 3
    # Without streaming the same data keeps the centred (default) convolutions.
    assert "causal" not in choose_recipe(long_series).build
    short = _classification(n_train=60, length=24, n_val=14)
    recipe = choose_recipe(short, streaming=True)
    assert recipe.build == {"variant": "stacked", "units": 32, "num_layers": 1,
                            "causal": True}
    _streams(recipe, short)


def test_streaming_forecaster_normalizes_by_the_frames_so_far():
    data = _forecast(trend=3.0)
    recipe = choose_recipe(data, streaming=True)
    assert recipe.build["window_norm"] == "mean" and recipe.build["causal"] is True
    model = _streams(recipe, data)
    assert model.get_layer("window_norm").causal is True


def test_streaming_variable_length_series_fall_back_to_the_recurrent_recipe():
    data = _classification(n_train=40, length=150)
    data.mask_value = -3.0
    recipe = choose_recipe(data, streaming=True)
    assert recipe.build["variant"] == "stacked" and recipe.build["mask_value"] == -3.0
    assert any("mask" in r and "cannot stream" in r for r in recipe.reasons)
    _streams(recipe, data)
    with pytest.raises(ValueError, match=r"`variant`.*mask_value=-3.0.*variant='gru_fcn'"):
        choose_recipe(data, variant="gru_fcn", streaming=True)


@pytest.mark.parametrize("variant, task, reason", [
    ("bidirectional", "classification", "backward direction"),
    ("bidirectional_attention", "classification", "backward direction"),
    ("attention", "sequence_labeling", "attends to every earlier frame"),
])
def test_streaming_refuses_a_variant_that_cannot_stream(variant, task, reason):
    data = _classification(n_train=40, length=30)
    data.task = task
    with pytest.raises(ValueError, match=f"{reason}.*variant='{variant}', streaming=True"):
        choose_recipe(data, variant=variant, streaming=True)


def test_a_variant_asked_for_keeps_only_its_own_options():
    recipe = choose_recipe(_classification(n_train=40, length=150), variant="attention")
    assert recipe.build["variant"] == "attention"
    assert not any(k.startswith("conv_") or k == "branch_dropout" for k in recipe.build)
    model = zoo.build_gru(input_shape=(150, 1), num_outputs=2, task="classification",
                          **recipe.build)
    assert model.count_params() > 0


def test_trending_series_get_window_normalization_and_flat_ones_do_not():
    trending = choose_recipe(_forecast(trend=1.0))
    assert trending.profile["forecasting"] and trending.profile["level_drift"] > 1
    assert trending.build["window_norm"] == "mean"
    flat = choose_recipe(_forecast(trend=0.0))
    assert flat.profile["level_drift"] < 1
    assert "window_norm" not in flat.build
    assert flat.train["fit_on"] == "train"


def test_variable_length_data_is_masked():
    data = dataclasses.replace(_classification(n_train=40, length=80), name="var")
    data.mask_value = -3.0
    recipe = choose_recipe(data)
    assert recipe.build["mask_value"] == -3.0
    assert profile(data)["variable_length"]


# The former per-dataset table of the CLI (the recipes measured in BENCHMARKS.md): the
# rules must give the same builder and training arguments on the embedded data.
FORMER = {
    "gunpoint": dict(variant="gru_fcn", units=8, num_layers=1, branch_dropout=0.8,
                     conv_layers=3, conv_filters=[128, 256, 128], conv_kernel_size=[8, 5, 3],
                     conv_batchnorm=True, pool_size=1, epochs=300, batch_size=8, patience=300,
                     lr_decay="cosine", fit_on="train+val"),
    "italy_power_demand": dict(variant="stacked", units=32, num_layers=1, epochs=150,
                               batch_size=8, patience=150, lr_decay="cosine",
                               fit_on="train+val"),
    "airline_passengers": dict(variant="stacked", units=32, num_layers=1, window_norm="mean",
                               epochs=300, batch_size=8, patience=40, lr_decay="plateau",
                               fit_on="train"),
    "adding": dict(variant="stacked", units=64, num_layers=1, learning_rate=3e-3, epochs=20,
                   batch_size=128, patience=20, lr_decay="cosine", fit_on="train"),
}


@pytest.mark.parametrize("name", sorted(FORMER))
def test_embedded_datasets_get_their_measured_recipes(name):
    data = zoo.load_dataset(name, **({"num_train": 200, "num_val": 50, "num_test": 50}
                                     if name == "adding" else {}))
    recipe = choose_recipe(data)
    chosen = {**recipe.build, **recipe.train}
    assert {k: chosen.get(k) for k in FORMER[name]} == FORMER[name]
    assert recipe.name == ("adding" if name == "adding" else "rules")
    assert recipe.reasons


def test_bad_arguments_name_the_value():
    data = _classification(n_train=20, length=20)
    with pytest.raises(ValueError, match="variant='gru'"):
        choose_recipe(data, variant="gru")
    with pytest.raises(ValueError, match="streaming='yes'"):
        choose_recipe(data, streaming="yes")


def test_zoo_train_defaults_are_the_one_set_of_training_defaults():
    import inspect

    import zoo

    parameters = inspect.signature(zoo.train).parameters
    for key, value in TRAIN_DEFAULTS.items():
        assert parameters[key].default == value, key


def test_series_of_very_different_scales_are_normalized_one_by_one():
    data = _classification(n_train=40, length=30, n_val=10)
    scales = np.geomspace(1e-2, 1e3, len(data.x_train)).astype(np.float32)  # 5 decades
    data.x_train = data.x_train * scales[:, None, None]
    recipe = choose_recipe(data)
    assert profile(data)["scale_spread"] > 100
    assert recipe.build["window_norm"] == "meanstd"
    assert any("normalized on its own" in r for r in recipe.reasons)
    model = zoo.build_gru(input_shape=data.input_shape, num_outputs=2, **recipe.build)
    x = data.x_train[-2:]  # scales near 1e3: far above the normalization's epsilon
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(x * 10, verbose=0),
                               rtol=1e-4, atol=1e-5)  # a series' gain no longer matters
    assert "window_norm" not in choose_recipe(data, streaming=True).build
    # Equal scales (every embedded set is per-series normalized): the rule stays off.
    assert profile(_classification(n_train=40, length=30))["scale_spread"] < 2
    for name in ("gunpoint", "italy_power_demand"):
        assert "window_norm" not in choose_recipe(zoo.load_dataset(name)).build

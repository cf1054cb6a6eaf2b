import keras
import numpy as np
import pytest
from helpers import (BATCH, FEATURES, TIME, VOCAB, recurrent_layers, run_model_test,
                     sample_inputs)

from zoo import CELLS, TASKS, VARIANTS, build_gru


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_cell_and_task(variant, cell, task, tmp_path):
    run_model_test(variant, cell=cell, task=task, tmp_path=tmp_path)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_token_inputs(variant, tmp_path):
    model = run_model_test(variant, input_shape=(TIME,), tmp_path=tmp_path)
    assert isinstance(model.get_layer("embedding"), keras.layers.Embedding)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_binary_and_single_output(task, tmp_path):
    model = run_model_test("stacked", task=task, num_outputs=1, tmp_path=tmp_path)
    activation = model.get_layer("output").get_config()["activation"]
    assert activation == ("sigmoid" if task == "classification" else "linear")
    assert model.loss == ("binary_crossentropy" if task == "classification" else "mse")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variable_length_inputs(variant):
    model = build_gru(variant, input_shape=(None, 3), num_outputs=2, units=4, conv_filters=3)
    for time in (4, 9):
        x = np.random.default_rng(0).normal(size=(2, time, 3)).astype("float32")
        assert np.asarray(model(x)).shape == (2, 2)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_padding_does_not_change_token_predictions(variant, cell):
    model = build_gru(variant, input_shape=(None,), num_outputs=3, cell=cell, vocab_size=VOCAB,
                      units=4, embedding_dim=4, conv_filters=3, conv_kernel_size=3,
                      pool_size=2 if VARIANTS[variant].uses_conv else 1)
    rng = np.random.default_rng(1)
    short = rng.integers(1, VOCAB, size=(1, 6)).astype("int32")
    padded = np.concatenate([short, np.zeros((1, 5), "int32")], axis=1)
    np.testing.assert_allclose(np.asarray(model(padded)), np.asarray(model(short)), atol=1e-6)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_padding_does_not_change_float_predictions_with_mask_value(variant):
    model = build_gru(variant, input_shape=(None, 2), num_outputs=2, mask_value=0.0, units=4,
                      conv_filters=3, conv_kernel_size=3)
    rng = np.random.default_rng(2)
    short = rng.normal(size=(1, 7, 2)).astype("float32")
    padded = np.concatenate([short, np.zeros((1, 4, 2), "float32")], axis=1)
    np.testing.assert_allclose(np.asarray(model(padded)), np.asarray(model(short)), atol=1e-6)


def test_padding_changes_predictions_without_masking():
    """Guards the masking tests: the padding they add would change an unmasked model."""
    model = build_gru("stacked", input_shape=(None, 2), num_outputs=2, units=4)
    short = np.random.default_rng(2).normal(size=(1, 7, 2)).astype("float32")
    padded = np.concatenate([short, np.zeros((1, 4, 2), "float32")], axis=1)
    assert not np.allclose(np.asarray(model(padded)), np.asarray(model(short)), atol=1e-6)


def test_per_layer_settings_reach_each_layer():
    model = build_gru("stacked", input_shape=(TIME, 3), num_outputs=2, num_layers=3,
                      units=[8, 6, 4], dropout=[0.0, 0.1, 0.2], recurrent_dropout=0.05)
    layers = recurrent_layers(model)
    assert [layer.units for layer in layers] == [8, 6, 4]
    assert [layer.dropout for layer in layers] == [0.0, 0.1, 0.2]
    assert [layer.recurrent_dropout for layer in layers] == [0.05] * 3
    assert [layer.return_sequences for layer in layers] == [True, True, False]


def test_conv_settings_reach_each_layer():
    model = build_gru("cnn_gru", input_shape=(20, 3), num_outputs=2, conv_layers=2,
                      conv_filters=[8, 4], conv_kernel_size=[5, 3], pool_size=2, units=4)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
    assert [(c.filters, c.kernel_size[0]) for c in convs] == [(8, 5), (4, 3)]
    assert model.get_layer("max_pool").pool_size == (2,)


@pytest.mark.parametrize("reset_after", [True, False])
def test_reset_after_reaches_the_gru(reset_after):
    model = build_gru("bidirectional", input_shape=(TIME, 3), num_outputs=2, units=4,
                      reset_after=reset_after)
    assert all(layer.reset_after is reset_after for layer in recurrent_layers(model))


def test_multihead_attention_and_dense_head(tmp_path):
    model = run_model_test("attention", attention="multihead", attention_heads=2,
                           dense_units=5, head_dropout=0.1, tmp_path=tmp_path)
    pooling = model.get_layer("attention_pooling")
    assert type(pooling).__name__ == "MultiHeadAttentionPooling"
    assert pooling.num_heads == 2
    assert model.get_layer("dense_hidden").units == 5


def test_input_noise_acts_in_training_only():
    model = build_gru("stacked", input_shape=(TIME, 3), num_outputs=2, units=4, input_noise=0.5)
    x = sample_inputs((TIME, 3))
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(model(x)))
    assert not np.allclose(np.asarray(model(x, training=True)), np.asarray(model(x)))
    assert model.get_layer("input_noise").stddev == 0.5


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_window_norm_moves_the_forecast_with_the_window(variant, tmp_path):
    """With `window_norm="mean"` a forecast follows the level of its window exactly:
    the property that lets a trending series be forecast beyond the training levels."""
    model = run_model_test(variant, task="regression", window_norm="mean",
                           window_norm_channel=1, tmp_path=tmp_path)
    x = sample_inputs((TIME, 3))
    shift = np.array([0.0, 5.0, -2.0], "float32")  # feature 1 is the forecast one
    np.testing.assert_allclose(np.asarray(model(x + shift)), np.asarray(model(x)) + 5.0,
                               atol=1e-4)
    assert type(model.get_layer("window_norm")).__name__ == "WindowNormalization"
    assert model.get_layer("output").channel == 1


def test_window_norm_meanstd_and_classification():
    x = sample_inputs((TIME, 3))
    forecaster = build_gru("stacked", input_shape=(TIME, 3), num_outputs=2, units=4,
                           task="sequence_regression", window_norm="meanstd")
    np.testing.assert_allclose(np.asarray(forecaster(3.0 * x + 7.0)),
                               3.0 * np.asarray(forecaster(x)) + 7.0, atol=1e-4)
    # Classification only normalizes the inputs: a level shift changes nothing.
    classifier = build_gru("stacked", input_shape=(TIME, 3), num_outputs=2, units=4,
                           window_norm="mean")
    assert classifier.get_layer("output").get_config()["activation"] == "softmax"
    np.testing.assert_allclose(np.asarray(classifier(x + 4.0)), np.asarray(classifier(x)),
                               atol=1e-6)
    plain = build_gru("stacked", input_shape=(TIME, 3), num_outputs=2, units=4,
                      task="regression")  # guard: without it, a shift changes the forecast
    assert not np.allclose(np.asarray(plain(x + 5.0)), np.asarray(plain(x)) + 5.0, atol=1e-3)


def test_conv_batchnorm_blocks():
    model = build_gru("cnn_gru", input_shape=(TIME, 3), num_outputs=2, units=4, conv_layers=2,
                      conv_filters=3, conv_batchnorm=True)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert [n.name for n in norms] == ["conv_batchnorm_0", "conv_batchnorm_1"]
    assert model.get_layer("conv1d_0").get_config()["activation"] == "linear"


def test_gru_fcn_has_a_recurrent_and_a_pooled_convolutional_branch():
    # The published GRU-FCN configuration (Elsayed et al. 2018).
    model = build_gru("gru_fcn", input_shape=(TIME, 1), num_outputs=2, units=8, num_layers=1,
                      conv_layers=3, conv_filters=[128, 256, 128], conv_kernel_size=[8, 5, 3],
                      conv_batchnorm=True)
    branches = model.get_layer("branches")
    assert isinstance(branches, keras.layers.Concatenate)
    parents = {node.operation.name for node in branches._inbound_nodes[0].parent_nodes}
    assert parents == {"branch_dropout", "global_average_pool"}
    assert branches.output.shape == (None, 8 + 128)
    assert model.get_layer("branch_dropout").rate == 0.8
    # Conv weights 1*8*128 + 128*5*256 + 256*3*128 (+ biases), batch norm 4 per channel,
    # GRU(8) on 1 feature 3*(8 + 64 + 16), softmax head 136*2 + 2.
    assert model.count_params() == (1024 + 128 + 163840 + 256 + 98304 + 128
                                    + 4 * (128 + 256 + 128) + 264 + 274)
    # Per-step tasks keep both branches per step.
    labels = build_gru("gru_fcn", input_shape=(TIME, 3), num_outputs=2, units=4,
                       conv_filters=3, task="sequence_labeling")
    assert labels.get_layer("branches").output.shape == (None, TIME, 4 + 3)


CAUSAL_VARIANTS = sorted(name for name, v in VARIANTS.items() if not v.bidirectional)


@pytest.mark.parametrize("variant, attention", [(v, "additive") for v in CAUSAL_VARIANTS] + [
    (v, "multihead") for v in CAUSAL_VARIANTS if VARIANTS[v].uses_attention])
def test_causal_per_step_outputs_ignore_later_frames(variant, attention):
    """`causal=True`: changing frames from t on leaves every output before t unchanged."""
    kwargs = dict(input_shape=(9, 3), num_outputs=2, units=4, conv_filters=3,
                  conv_kernel_size=4, attention_heads=2, task="sequence_regression",
                  window_norm="meanstd")
    if VARIANTS[variant].uses_attention:
        kwargs["attention"] = attention
    x = sample_inputs((9, 3))
    later = x.copy()
    later[:, 5:] += 10.0
    model = build_gru(variant, causal=True, **kwargs)
    before, after = np.asarray(model(x)), np.asarray(model(later))
    np.testing.assert_allclose(after[:, :5], before[:, :5], atol=1e-5)
    assert not np.allclose(after[:, 5:], before[:, 5:], atol=1e-3)
    # Guard: the same model without `causal` looks ahead, so the test can fail.
    plain = build_gru(variant, **kwargs)
    assert not np.allclose(np.asarray(plain(later))[:, :5], np.asarray(plain(x))[:, :5],
                           atol=1e-5)


@pytest.mark.parametrize("variant, task", [
    ("cnn_gru", "classification"), ("cnn_gru_attention", "sequence_labeling"),
    ("gru_fcn", "regression"), ("attention", "sequence_regression"),
])
def test_causal_models_round_trip_and_keep_their_causal_layers(variant, task, tmp_path):
    overrides = dict(causal=True, conv_kernel_size=4)
    if task == "regression":
        overrides["window_norm"] = "mean"
    if variant == "cnn_gru":
        overrides["pool_size"] = 2
    model = run_model_test(variant, task=task, tmp_path=tmp_path, **overrides)
    loaded = keras.models.load_model(tmp_path / f"{variant}_gru_{task}.keras")
    for layer in loaded.layers:
        if isinstance(layer, keras.layers.Conv1D):
            assert layer.padding == "causal"
    if variant == "cnn_gru":
        # Windows start at step 0; the partial last one is zero-padded at the end.
        assert loaded.get_layer("pool_padding").padding == (0, 1)
        assert loaded.get_layer("max_pool").padding == "valid"
        assert loaded.get_layer("max_pool").output.shape[1] == -(-TIME // 2)
    if task == "regression":
        assert loaded.get_layer("window_norm").causal is True
    if task == "sequence_labeling":
        x = sample_inputs((TIME, FEATURES))
        later = x.copy()
        later[:, 3:] += 5.0
        np.testing.assert_allclose(np.asarray(loaded(later))[:, :3], np.asarray(loaded(x))[:, :3],
                                   atol=1e-6)
    assert model.count_params() == loaded.count_params()


def test_causal_pooling_pools_each_window_over_the_steps_it_has():
    model = build_gru("cnn_gru", input_shape=(None, 2), num_outputs=2, units=4, conv_filters=3,
                      conv_kernel_size=2, pool_size=3, causal=True)
    features = keras.Model(model.input, model.get_layer("max_pool").output)
    convs = keras.Model(model.input, model.get_layer("conv1d_0").output)
    x = sample_inputs((7, 2))
    conv = np.asarray(convs(x))
    expected = np.stack([conv[:, 0:3].max(1), conv[:, 3:6].max(1), conv[:, 6:7].max(1)], 1)
    np.testing.assert_allclose(np.asarray(features(x)), expected, atol=1e-6)


def test_unrolled_and_static_batch():
    model = build_gru("stacked", input_shape=(TIME, 3), num_outputs=2, units=4, unroll=True,
                      batch_size=1)
    assert all(layer.unroll for layer in recurrent_layers(model))
    assert model.inputs[0].shape == (1, TIME, 3)


def test_compile_defaults_and_overrides():
    model = build_gru("stacked", input_shape=(TIME, 3), num_outputs=3, units=4)
    assert model.loss == "sparse_categorical_crossentropy"
    assert model.optimizer.clipnorm == 1.0
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    custom = build_gru("stacked", input_shape=(TIME, 3), num_outputs=3, units=4,
                       loss="categorical_crossentropy", optimizer="sgd", metrics=["mae"])
    assert custom.loss == "categorical_crossentropy"
    assert isinstance(custom.optimizer, keras.optimizers.SGD)
    assert not build_gru("stacked", input_shape=(TIME, 3), num_outputs=3, compile=False).compiled


def test_variant_registry_entries_build_their_variant():
    for name, variant in VARIANTS.items():
        assert variant.description and "\n" not in variant.description
        model = variant(input_shape=(TIME, 3), num_outputs=2, units=4, conv_filters=3)
        assert model.name == f"{name}_gru"


BAD_ARGUMENTS = [
    (dict(variant="transformer"), "variant", "'transformer'"),
    (dict(cell="tcn"), "cell", "'tcn'"),
    (dict(task="ranking"), "task", "'ranking'"),
    (dict(units=0), "units", "units=0"),
    (dict(units=[8]), "units", "1 values for 2 layers"),
    (dict(units=[8, -1]), "units", "[8, -1]"),
    (dict(num_layers=0), "num_layers", "num_layers=0"),
    (dict(dropout=1.5), "dropout", "dropout=1.5"),
    (dict(recurrent_dropout=[0.1, 0.2, 0.3]), "recurrent_dropout", "3 values for 2 layers"),
    (dict(input_shape=(5, 3, 2)), "input_shape", "(5, 3, 2)"),
    (dict(input_shape=(0, 3)), "input_shape", "(0, 3)"),
    (dict(input_shape=5), "input_shape", "input_shape=5"),
    (dict(input_shape=(5,)), "vocab_size", "vocab_size=None"),
    (dict(num_outputs=0), "num_outputs", "num_outputs=0"),
    (dict(variant="attention", attention="luong"), "attention", "'luong'"),
    (dict(variant="cnn_gru", conv_filters=[4, 4]), "conv_filters", "2 values for 1 layers"),
    (dict(variant="cnn_gru", pool_size=2, task="sequence_labeling"), "pool_size", "pool_size=2"),
    (dict(input_shape=(None, 3), unroll=True), "unroll", "unroll=True"),
    (dict(reset_after="yes"), "reset_after", "'yes'"),
    (dict(learning_rate=-1.0), "learning_rate", "learning_rate=-1.0"),
    (dict(learning_rate=float("nan")), "learning_rate", "learning_rate=nan"),
    (dict(learning_rate=True), "learning_rate", "learning_rate=True"),
    (dict(clipnorm=float("inf")), "clipnorm", "clipnorm=inf"),
    (dict(input_noise=float("nan")), "input_noise", "input_noise=nan"),
    (dict(batch_size=0), "batch_size", "batch_size=0"),
    (dict(mask_value=float("nan")), "mask_value", "must be a finite float"),
    (dict(mask_value=float("-inf")), "mask_value", "mask_value=-inf"),
    (dict(compile="no"), "compile", "compile='no'"),
    (dict(compile=1), "compile", "compile=1"),
    (dict(use_cudnn=1), "use_cudnn", "use_cudnn=1"),
    (dict(embedding_dim=0), "embedding_dim", "only to token inputs"),
    (dict(embedding_dim=0), "embedding_dim", "embedding_dim=0"),
    (dict(input_shape=(5,), vocab_size=VOCAB, embedding_dim=0), "embedding_dim",
     "embedding_dim=0"),
    (dict(input_noise=-0.1), "input_noise", "input_noise=-0.1"),
    (dict(variant="cnn_gru", conv_batchnorm=1), "conv_batchnorm", "conv_batchnorm=1"),
    (dict(variant="gru_fcn", branch_dropout=1.0), "branch_dropout", "branch_dropout=1.0"),
    (dict(window_norm="median"), "window_norm", "window_norm='median'"),
    (dict(window_norm="mean", mask_value=0.0), "window_norm", "mask_value=0.0"),
    (dict(input_shape=(5,), vocab_size=VOCAB, window_norm="mean"), "window_norm", "'mean'"),
    (dict(window_norm="mean", window_norm_channel=3), "window_norm_channel",
     "window_norm_channel=3"),
    # unused without window_norm, but a value given must still be valid
    (dict(window_norm_channel=-1), "window_norm_channel", "window_norm_channel=-1"),
    (dict(window_norm_channel="0"), "window_norm_channel", "window_norm_channel='0'"),
    (dict(causal="yes"), "causal", "causal='yes'"),
    (dict(variant="bidirectional", causal=True), "causal", "causal=True"),
    (dict(variant="bidirectional_attention", causal=True), "causal", "causal=True"),
]


@pytest.mark.parametrize("overrides, argument, received", BAD_ARGUMENTS)
def test_bad_arguments_name_the_argument_and_value(overrides, argument, received):
    kwargs = dict(variant="stacked", input_shape=(TIME, 3), num_outputs=2)
    kwargs.update(overrides)
    variant = kwargs.pop("variant")
    with pytest.raises(ValueError) as info:
        build_gru(variant, **kwargs)
    message = str(info.value)
    assert f"`{argument}`" in message
    assert "Received" in message and received in message


def test_token_and_batch_inputs_have_expected_dtypes():
    model = build_gru("stacked", input_shape=(TIME,), num_outputs=2, vocab_size=VOCAB, units=4)
    assert model.inputs[0].dtype == "int32"
    x = sample_inputs((TIME,), batch=BATCH)
    assert np.asarray(model(x)).shape == (BATCH, 2)


def _unnamed(value):
    """A config without its (counter-numbered) names."""
    if isinstance(value, dict):
        return {k: _unnamed(v) for k, v in value.items() if k != "name"}
    if isinstance(value, list):
        return [_unnamed(v) for v in value]
    return value


def _layers(model):
    return [(type(layer).__name__, _unnamed(layer.get_config())) for layer in model.layers]


# build_gru arguments given as NumPy scalars (as from an array, a grid or a loaded table):
# (variant, the same arguments as Python values, the arguments as NumPy values).
_TOKENS = dict(input_shape=(TIME,), vocab_size=VOCAB, embedding_dim=4)
NUMPY_ARGUMENTS = [
    ("stacked", dict(num_outputs=2), dict(num_outputs=np.int64(2))),
    ("stacked", dict(units=4), dict(units=np.int64(4))),
    ("stacked", dict(units=[4, 3]), dict(units=[np.int32(4), np.int64(3)])),
    ("stacked", dict(input_shape=(TIME, 3)), dict(input_shape=(np.int64(TIME), np.int64(3)))),
    ("stacked", dict(dropout=0.25), dict(dropout=np.float32(0.25))),
    ("stacked", dict(dense_units=3), dict(dense_units=np.int64(3))),
    ("stacked", dict(head_dropout=0.5), dict(head_dropout=np.float64(0.5))),
    ("stacked", dict(batch_size=2), dict(batch_size=np.int64(2))),
    ("stacked", dict(reset_after=False, causal=True),
     dict(reset_after=np.bool_(False), causal=np.bool_(True))),
    ("stacked", dict(learning_rate=0.5, clipnorm=2.0),
     dict(learning_rate=np.float32(0.5), clipnorm=np.float32(2.0))),
    ("stacked", dict(learning_rate=1), dict(learning_rate=np.int64(1))),
    ("stacked", dict(mask_value=0.0), dict(mask_value=np.float32(0.0))),
    ("stacked", dict(_TOKENS), dict(_TOKENS, vocab_size=np.int64(VOCAB))),
    ("stacked", dict(_TOKENS), dict(_TOKENS, embedding_dim=np.int64(4))),
    ("cnn_gru", dict(conv_kernel_size=3), dict(conv_kernel_size=np.int64(3))),
    ("cnn_gru", dict(conv_layers=2, conv_kernel_size=[3, 5], conv_filters=[3, 2]),
     dict(conv_layers=np.int64(2), conv_kernel_size=[np.int64(3), np.int8(5)],
          conv_filters=[np.int64(3), np.uint8(2)])),
    ("cnn_gru", dict(pool_size=2, conv_batchnorm=True),
     dict(pool_size=np.int64(2), conv_batchnorm=np.bool_(True))),
    ("attention", dict(attention="multihead", attention_heads=2),
     dict(attention="multihead", attention_heads=np.int64(2))),
    ("attention", dict(attention_units=3), dict(attention_units=np.int64(3))),
]


@pytest.mark.parametrize("variant, plain, numpy", NUMPY_ARGUMENTS,
                         ids=[f"{c[0]}-{'-'.join(c[2])}" for c in NUMPY_ARGUMENTS])
def test_numpy_values_build_the_same_model_as_python_values(variant, plain, numpy):
    base = dict(input_shape=(TIME, 3), num_outputs=2, units=4, conv_filters=3)
    expected = build_gru(variant, **{**base, **plain})
    model = build_gru(variant, **{**base, **numpy})
    assert _layers(model) == _layers(expected)
    assert _unnamed(model.get_compile_config()) == _unnamed(expected.get_compile_config())
    model.to_json()  # every kept value serialises (a NumPy scalar would not)

    # `==` cannot tell np.int64(4) from 4: every value the layers keep is Python's own.
    def numpy_values(value, where):
        if isinstance(value, dict):
            return [p for k, v in value.items() for p in numpy_values(v, f"{where}.{k}")]
        if isinstance(value, (list, tuple)):
            return [p for i, v in enumerate(value) for p in numpy_values(v, f"{where}[{i}]")]
        return [f"{where}={value!r}"] if isinstance(value, np.generic) else []

    kept = [p for layer in model.layers for p in numpy_values(layer.get_config(), layer.name)]
    kept += numpy_values(model.optimizer.get_config(), "optimizer")
    assert kept == []

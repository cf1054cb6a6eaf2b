"""Bad input to `zoo.train` and `zoo.build_gru` gets one clear ValueError.

Each error case asserts the exception type and that the message names the argument and
the value received (`match=` joins the fragments in order); each group has a valid case
proving that correct data still trains (1 epoch, a tiny model, 16 samples).
"""

import re

import keras
import numpy as np
import pytest

import zoo
from zoo import TrainingDivergedError, build_gru, train
from zoo.training import check_training_data

N, TIME, FEATURES, VOCAB = 16, 6, 2, 10
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, TIME, FEATURES)).astype("float32")
Y2 = RNG.integers(0, 2, N)  # class indices for 2 classes
Y3 = RNG.integers(0, 3, N)
Y_REG = RNG.normal(size=N).astype("float32")
TOKENS = RNG.integers(1, VOCAB, size=(N, TIME))


def pattern(*fragments):
    """A `match=` regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(f) for f in fragments)


def with_nan(array, count=2, value=np.nan):
    array = np.array(array, dtype="float32")
    array.flat[:count] = value
    return array


_MODELS = {}


def model(kind="softmax2"):
    """Tiny compiled models, shared by the error cases (which never train them)."""
    if kind not in _MODELS:
        base = dict(input_shape=(TIME, FEATURES), units=4, num_layers=1)
        options = {
            "softmax2": dict(num_outputs=2),
            "softmax3": dict(num_outputs=3),
            "binary": dict(num_outputs=1),
            "regression": dict(num_outputs=1, task="regression"),
            "per_step": dict(num_outputs=3, task="sequence_labeling"),
            "variable": dict(num_outputs=2, input_shape=(None, FEATURES)),
            "tokens": dict(num_outputs=2, input_shape=(TIME,), vocab_size=VOCAB,
                           embedding_dim=4),
        }[kind]
        zoo.set_seed(0)
        _MODELS[kind] = build_gru("stacked", **{**base, **options})
    return _MODELS[kind]


def fresh(kind="softmax2"):
    """A new tiny model, for the cases that train."""
    _MODELS.pop(kind, None)
    return model(kind)


# (id, model kind, train() arguments, message fragments)
TRAIN_CASES = [
    # --- NaN / inf in any split ---
    ("nan_x_train", "softmax2", dict(data=(with_nan(X), Y2)),
     ["`x_train` (the training split)", "2 of its 192 values", "Received: 2 NaN and 0 inf"]),
    ("inf_y_train", "regression", dict(data=(X, with_nan(Y_REG, 3, np.inf))),
     ["`y_train` (the training split)", "3 of its 16 values", "Received: 0 NaN and 3 inf"]),
    ("nan_x_val", "softmax2", dict(data=(X, Y2), validation_data=(with_nan(X, 1), Y2)),
     ["`x_val` (the validation split)", "1 of its 192", "Received: 1 NaN"]),
    ("nan_y_test", "regression", dict(data=(X, Y_REG), test_data=(X, with_nan(Y_REG, 4))),
     ["`y_test` (the test split)", "4 of its 16", "Received: 4 NaN"]),
    # --- empty training arrays ---
    ("empty", "softmax2", dict(data=(X[:0], Y2[:0])),
     ["`x_train`", "at least one sample", "Received: shape (0, 6, 2)"]),
    ("empty_val", "softmax2", dict(data=(X, Y2), validation_data=(X[:0], Y2[:0])),
     ["`x_val`", "at least one sample", "Received: shape (0, 6, 2)"]),
    # --- labels the model cannot take ---
    ("binary_labels_0_to_3", "binary", dict(data=(X, np.arange(N) % 4)),
     ["`y_train`", "binary labels 0 or 1", "num_outputs=4", "Received: labels in [0, 3]"]),
    ("softmax_label_k", "softmax3", dict(data=(X, np.full(N, 3))),
     ["`y_train`", "class indices in [0, 3)", "Received: labels in [3, 3], 16 of 16 outside"]),
    ("float_labels", "softmax2", dict(data=(X, np.full(N, 0.5))),
     ["`y_train`", "integer class indices", "Received: non-integer labels, e.g. 0.5"]),
    ("regression_target_width", "regression", dict(data=(X, np.zeros((N, 3)))),
     ["`y_train` must have shape (samples, 1)", "output (None, 1)", "Received: shape (16, 3)"]),
    ("one_hot_for_sparse", "softmax3", dict(data=(X, np.eye(3)[Y3])),
     ["`y_train`", "one-hot labels: pass class indices, e.g. y_train.argmax(-1)",
      "Received: one-hot labels of shape (16, 3)"]),
    ("per_step_labels_per_sequence", "per_step", dict(data=(X, Y3)),
     ["`y_train` must have shape (samples, 6)", "(None, 6, 3)", "Received: shape (16,)"]),
    # --- shapes, types and structure ---
    ("wrong_width", "softmax2", dict(data=(np.zeros((N, TIME, 3)), Y2)),
     ["`x_train` must have shape (samples, 6, 2)", "model's input (None, 6, 2)",
      "Received: shape (16, 6, 3)"]),
    ("wrong_length", "softmax2", dict(data=(np.zeros((N, 7, FEATURES)), Y2)),
     ["`x_train` must have shape (samples, 6, 2)", "Received: shape (16, 7, 2)"]),
    ("missing_feature_axis", "regression",
     dict(data=(np.zeros((N, TIME)), Y_REG)),
     ["`x_train` must have shape (samples, 6, 2)", "Received: shape (16, 6)"]),
    ("x_y_lengths", "softmax2", dict(data=(X, Y2[:-1])),
     ["`y_train` must have one label per sample of `x_train` (16 samples)",
      "Received: shape (15,)"]),
    ("string_labels", "softmax2", dict(data=(X, np.array(["a", "b"] * 8))),
     ["`y_train`", "numeric array", "Received: an array of shape (16,) and dtype <U1"]),
    ("string_inputs", "softmax2", dict(data=(np.full((N, TIME, FEATURES), "x"), Y2)),
     ["`x_train`", "numeric array", "dtype <U1"]),
    ("ragged_inputs", "variable", dict(data=([[[0.0, 1.0]], [[0.0, 1.0], [2.0, 3.0]]],
                                             [0, 1])),
     ["`x_train`", "equal-length samples", "Received: list that is not a rectangular"]),
    ("validation_without_labels", "softmax2", dict(data=(X, Y2), validation_data=(X, None)),
     ["`validation_data` must be None or an `(x_val, y_val)` tuple",
      "Received: validation_data=(an array of shape (16, 6, 2)", ", None)"]),
    ("validation_bare_array", "softmax2", dict(data=(X, Y2), validation_data=X),
     ["`validation_data`", "Received: validation_data=an array of shape (16, 6, 2)"]),
    ("train_without_labels", "softmax2", dict(data=(X, None)),
     ["`data`", "Received: data=(an array of shape (16, 6, 2)", ", None)"]),
    ("balanced_on_regression", "regression", dict(data=(X, Y_REG), class_weight="balanced"),
     ["`class_weight` must be None for a regression model", "'mean_squared_error'",
      "Received: class_weight='balanced'"]),
    ("class_weight_on_per_step", "per_step",
     dict(data=(X, RNG.integers(0, 3, (N, TIME))), class_weight={0: 1.0, 1: 2.0, 2: 1.0}),
     ["`class_weight` must be None for a per-step output", "Received: class_weight={0: 1.0"]),
    ("class_weight_unknown_class", "softmax2", dict(data=(X, Y2), class_weight={0: 1.0, 5: 2.0}),
     ["`class_weight` must map class indices in [0, 2)", "Received: class_weight={0: 1.0, 5: 2.0}"]),
    ("train_val_shapes", "variable",
     dict(data=(X, Y2), validation_data=(np.zeros((4, 9, FEATURES)), Y2[:4]), fit_on="train+val"),
     ["`fit_on='train+val'`", "Received: x_train (16, 6, 2)", "x_val (4, 9, 2)"]),
    # --- token models ---
    ("token_out_of_range", "tokens", dict(data=(np.full((N, TIME), VOCAB), Y2)),
     ["`x_train`", "int token ids in [0, 10)", "Received: ids in [10, 10], 96 of 96 outside"]),
    ("token_negative", "tokens", dict(data=(np.full((N, TIME), -1), Y2)),
     ["`x_train`", "[0, 10)", "Received: ids in [-1, -1]"]),
    ("token_floats", "tokens", dict(data=(np.full((N, TIME), 0.5), Y2)),
     ["`x_train`", "int token ids in [0, 10)", "Received: non-integer values of dtype float64"]),
    ("token_model_given_features", "tokens", dict(data=(X, Y2)),
     ["`x_train` must have shape (samples, 6)", "(None, 6)", "Received: shape (16, 6, 2)"]),
    # --- lists: converted, then checked like arrays ---
    ("list_labels_out_of_range", "softmax2", dict(data=(X, [5] * N)),
     ["`y_train`", "class indices in [0, 2)", "Received: labels in [5, 5]"]),
    ("list_val_wrong_width", "softmax2",
     dict(data=(X, Y2), validation_data=(np.zeros((4, TIME, 3)).tolist(), [0, 1, 0, 1])),
     ["`x_val` must have shape (samples, 6, 2)", "Received: shape (4, 6, 3)"]),
]

# train() arguments other than the data: (id, model kind, arguments, message fragments).
ARGUMENT_CASES = [
    ("monitor_not_logged", "softmax2", dict(validation_data=(X, Y2), monitor="val_acc"),
     ["`monitor` must be a quantity the model logs",
      "['loss', 'accuracy', 'val_loss', 'val_accuracy']", "Received: monitor='val_acc'"]),
    ("monitor_not_a_str", "softmax2", dict(monitor=3),
     ["`monitor`", "'val_loss'", "Received: monitor=3"]),
    ("monitor_of_another_task", "regression", dict(monitor="val_accuracy"),
     ["`monitor`", "'val_mae', 'val_rmse'", "Received: monitor='val_accuracy'"]),
    ("callbacks_not_a_list", "softmax2", dict(callbacks="x"),
     ["`callbacks` must be None or a list of keras.callbacks.Callback",
      "Received: callbacks='x'"]),
    ("callbacks_with_none", "softmax2", dict(callbacks=[None]),
     ["`callbacks`", "(one is a NoneType)", "Received: callbacks=[None]"]),
    ("run_dir_int", "softmax2", dict(run_dir=5),
     ["`run_dir` must be None or the path (a str or pathlib.Path)", "Received: run_dir=5"]),
    ("class_weight_negative", "softmax2", dict(class_weight={0: -5.0, 1: 1.0}),
     ["`class_weight` must map classes to finite weights >= 0",
      "Received: class_weight={0: -5.0, 1: 1.0}"]),
    ("class_weight_nan", "softmax2", dict(class_weight={0: float("nan"), 1: 1.0}),
     ["`class_weight`", "finite weights >= 0", "Received: class_weight={0: nan"]),
    ("class_weight_all_zero", "softmax2", dict(class_weight={0: 0.0, 1: 0.0}),
     ["`class_weight` must give at least one class", "weight > 0",
      "Received: class_weight={0: 0.0, 1: 0.0}"]),
    ("min_learning_rate_negative", "softmax2", dict(min_learning_rate=-1),
     ["`min_learning_rate` must be a float >= 0", "Received: min_learning_rate=-1"]),
    ("tensorboard_not_a_bool", "softmax2", dict(tensorboard="no"),
     ["`tensorboard` must be True or False", "Received: tensorboard='no'"]),
    ("config_not_a_dict", "softmax2", dict(config="x"),
     ["`config` must be None or a dict", "Received: config='x'"]),
    # json.dump would fail on it after training
    ("config_with_a_tuple_key", "softmax2", dict(config={"build": {(1, 2): 4}}),
     ["`config` must be None or a dict", "Received: config['build'] key=(1, 2)"]),
]


@pytest.mark.parametrize("kind, kwargs, fragments", [case[1:] for case in ARGUMENT_CASES],
                         ids=[c[0] for c in ARGUMENT_CASES])
def test_bad_training_arguments_are_one_clear_error(kind, kwargs, fragments):
    with pytest.raises(ValueError, match=pattern(*fragments)) as info:
        train(model(kind), (X, Y_REG if kind == "regression" else Y2), epochs=1, verbose=0,
              **kwargs)
    assert type(info.value) is ValueError


def test_lists_train_the_same_model_as_arrays():
    def weights(x, y, validation_data):
        result = train(fresh(), (x, y), validation_data=validation_data, epochs=1,
                       batch_size=8, verbose=0)
        assert result.epochs_run == 1
        return result.model.get_weights()

    expected = weights(X, Y2, (X[:4], Y2[:4]))
    for x, y, val in [(X, Y2.tolist(), None), (X.tolist(), Y2, None),
                      (X, Y2, (X[:4].tolist(), Y2[:4].tolist()))]:
        got = weights(x, y, val if val is not None else (X[:4], Y2[:4]))
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_valid_training_arguments_are_accepted(tmp_path):
    import json

    # Monitors of both tasks, a partial class_weight (class 1 keeps weight 1.0), NumPy
    # values in config, a str run_dir and a callback.
    result = train(fresh(), (X, Y2), validation_data=(X, Y2), monitor="val_accuracy",
                   class_weight={0: 0.0}, min_learning_rate=0, run_dir=str(tmp_path / "a"),
                   config={"units": np.int64(4), "flag": np.bool_(True), "shape": (6, 2),
                           "loss": keras.losses.Huber()},
                   callbacks=[keras.callbacks.History()], epochs=1, batch_size=8, verbose=0)
    assert result.epochs_run == 1
    written = json.loads((tmp_path / "a" / "config.json").read_text())
    assert "huber" in written.pop("loss") and written == {
        "units": 4, "flag": True, "shape": [6, 2]}
    assert train(fresh("regression"), (X, Y_REG), monitor="val_rmse", epochs=1,
                 batch_size=8, verbose=0).epochs_run == 1


@pytest.mark.parametrize("kind, kwargs, fragments",
                         [case[1:] for case in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_bad_training_data_is_one_clear_error(kind, kwargs, fragments):
    kwargs = dict(kwargs)
    data = kwargs.pop("data")
    with pytest.raises(ValueError, match=pattern(*fragments)) as info:
        train(model(kind), data, epochs=1, verbose=0, **kwargs)
    assert type(info.value) is ValueError


def test_a_path_is_not_a_model():
    with pytest.raises(ValueError, match=pattern(
            "`model` must be a compiled keras.Model", "keras.saving.load_model",
            "Received: model='runs/model.keras' (a str)")):
        train("runs/model.keras", (X, Y2), epochs=1, verbose=0)


def test_run_dir_that_is_a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match=pattern("`run_dir` must be a directory",
                                                 f"Received: run_dir={str(path)!r}",
                                                 "an existing file")):
        train(model(), (X, Y2), epochs=1, run_dir=path, verbose=0)
    assert path.read_text() == "x"


def test_check_training_data_is_usable_alone():
    check_training_data(model(), X, Y2, "train")
    with pytest.raises(ValueError, match=pattern("`x_test`", "Received: shape (16, 6, 3)")):
        check_training_data(model(), np.zeros((N, TIME, 3)), Y2, "test")


def test_valid_data_of_each_kind_still_trains(tmp_path):
    """One valid case per group: float/NaN-free splits, labels of each kind, shapes."""
    runs = [
        ("softmax2", (X, Y2), dict(validation_data=(X, Y2), test_data=(X, Y2),
                                   class_weight="balanced", run_dir=tmp_path / "run")),
        ("binary", (X, Y2.reshape(-1, 1).astype("float32")), {}),
        ("regression", (X, Y_REG), dict(test_data=(X, Y_REG.reshape(-1, 1)))),
        ("per_step", (X, RNG.integers(0, 3, (N, TIME))), {}),
        ("tokens", (TOKENS, Y2), dict(validation_data=(TOKENS[:4], Y2[:4]))),
    ]
    for kind, data, kwargs in runs:
        result = train(fresh(kind), data, epochs=1, batch_size=8, verbose=0, **kwargs)
        assert result.epochs_run == 1, kind
        assert np.isfinite(result.history["loss"][0]), kind
    assert (tmp_path / "run" / "model.keras").exists()
    assert (tmp_path / "run" / "metrics.json").exists()


def test_variable_length_model_accepts_any_length():
    variable = fresh("variable")
    for time in (3, 11):
        x = RNG.normal(size=(N, time, FEATURES)).astype("float32")
        assert train(variable, (x, Y2), epochs=1, batch_size=8, verbose=0).epochs_run == 1
    with pytest.raises(ValueError, match=pattern("`x_train` must have shape (samples, time, 2)",
                                                 "(None, None, 2)",
                                                 "Received: shape (16, 11, 3)")):
        train(variable, (np.zeros((N, 11, 3)), Y2), epochs=1, verbose=0)


# --- divergence ---

def test_a_diverging_run_raises_and_writes_no_model(tmp_path):
    zoo.set_seed(0)
    diverging = build_gru("stacked", input_shape=(TIME, FEATURES), num_outputs=1,
                          task="regression", units=4, num_layers=1, learning_rate=1e30,
                          clipnorm=None)
    with pytest.raises(TrainingDivergedError,
                       match=pattern("`loss` became inf at epoch 1", "learning_rate")) as info:
        train(diverging, (X, Y_REG), epochs=3, batch_size=4, run_dir=tmp_path,
              config={"note": "diverges"}, verbose=0)
    assert isinstance(info.value, ValueError)
    assert info.value.quantity == "loss" and info.value.epoch == 1
    assert not (tmp_path / "model.keras").exists()
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "model.diverged.keras").exists()  # no finite epoch to keep


def test_divergence_keeps_the_last_good_weights(tmp_path):
    class BreakAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.model.set_weights([np.full_like(w, np.nan)
                                        for w in self.model.get_weights()])

    with pytest.raises(TrainingDivergedError, match=pattern(
            "`loss` became nan at epoch 2, batch 1", "model.diverged.keras")) as info:
        train(fresh(), (X, Y2), validation_data=(X, Y2), epochs=3, batch_size=8,
              run_dir=tmp_path, callbacks=[BreakAfterFirstEpoch()], verbose=0)
    assert info.value.epoch == 2
    assert not (tmp_path / "model.keras").exists()
    assert not (tmp_path / "metrics.json").exists()
    kept = keras.saving.load_model(info.value.saved)
    assert info.value.saved == tmp_path / "model.diverged.keras"
    assert all(np.isfinite(w).all() for w in kept.get_weights())


# --- build_gru ---

BUILD_CASES = [
    ("vocab_size_for_float_inputs", dict(input_shape=(10, 2), vocab_size=100),
     ["`vocab_size` must be None for float inputs", "input_shape=(time,)",
      "Received: vocab_size=100"]),
    ("loss_typo", dict(loss="crossentropyy"), ["`loss`", "Received: loss='crossentropyy'"]),
    ("metric_typo", dict(metrics=["acc_typo"]), ["`metrics`", "Received: metrics=['acc_typo']"]),
    ("metrics_not_a_list", dict(metrics="accuracy"), ["`metrics`",
                                                      "Received: metrics='accuracy'"]),
    ("optimizer_typo", dict(optimizer="adamm"), ["`optimizer`", "Received: optimizer='adamm'"]),
    ("conv_option_on_stacked", dict(conv_filters=-5),
     ["`conv_filters`", "['cnn_gru', 'cnn_gru_attention', 'gru_fcn']", "not of 'stacked'",
      "Received: conv_filters=-5 with variant='stacked'"]),
    ("branch_dropout_on_attention", dict(variant="attention", branch_dropout=2.0),
     ["`branch_dropout`", "['gru_fcn']", "Received: branch_dropout=2.0 with variant='attention'"]),
    ("attention_option_on_cnn_gru", dict(variant="cnn_gru", attention_heads=0),
     ["`attention_heads`", "'cnn_gru_attention'", "Received: attention_heads=0"]),
    ("pool_size_on_bidirectional", dict(variant="bidirectional", pool_size=0),
     ["`pool_size`", "not of 'bidirectional'", "Received: pool_size=0"]),
]


@pytest.mark.parametrize("kwargs, fragments", [case[1:] for case in BUILD_CASES],
                         ids=[case[0] for case in BUILD_CASES])
def test_bad_builder_arguments_fail_at_build_time(kwargs, fragments):
    kwargs = {"input_shape": (TIME, FEATURES), "num_outputs": 2, "units": 4, "num_layers": 1,
              **kwargs}
    with pytest.raises(ValueError, match=pattern(*fragments)):
        build_gru(kwargs.pop("variant", "stacked"), **kwargs)


def test_valid_builder_arguments_still_build_and_train():
    tiny = dict(input_shape=(TIME, FEATURES), num_outputs=2, units=4, num_layers=1)
    # Keras's own shortcuts, `None` for another variant's option, and the defaults.
    built = build_gru("stacked", loss="crossentropy", metrics=["acc", "accuracy"],
                      optimizer="adam", conv_filters=None, attention_heads=None, **tiny)
    assert train(built, (X, Y2), epochs=1, batch_size=8, verbose=0).epochs_run == 1
    build_gru("stacked", loss=keras.losses.SparseCategoricalCrossentropy(),
              optimizer=keras.optimizers.SGD(), conv_filters=64, branch_dropout=0.8, **tiny)
    build_gru("cnn_gru", conv_filters=3, pool_size=2, compile=False, **tiny)

import json

import keras
import numpy as np
import pytest

from zoo import build_gru, load_dataset, set_seed, train
from zoo.training import balanced_class_weight


def tiny_data(n=32, time=6, seed=0):
    """A learnable toy task: is the sum of the sequence positive?"""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, time, 2)).astype("float32")
    y = (x.sum(axis=(1, 2)) > 0).astype("int32")
    return x, y


def tiny_model(seed=0, **kwargs):
    set_seed(seed)
    return build_gru("stacked", input_shape=(6, 2), num_outputs=2, units=4, num_layers=1,
                     **kwargs)


def test_run_directory_holds_model_history_config_metrics_and_curves(tmp_path):
    x, y = tiny_data()
    result = train(tiny_model(), (x, y), validation_data=tiny_data(16, seed=1),
                   test_data=tiny_data(16, seed=2), epochs=3, batch_size=8,
                   run_dir=tmp_path, config={"note": "tiny"}, verbose=0)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"model.keras", "history.json", "config.json", "metrics.json", "curves.png"} <= names
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["loss"]) == 3 == result.epochs_run
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert json.loads((tmp_path / "config.json").read_text()) == {"note": "tiny"}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(saved.predict(x, verbose=0), result.model.predict(x, verbose=0),
                               atol=1e-6)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("tmp*"))


def test_training_learns_a_simple_task():
    x, y = tiny_data(256)
    model = tiny_model(learning_rate=1e-2)
    result = train(model, (x, y), validation_data=tiny_data(64, seed=1),
                   test_data=tiny_data(128, seed=2), epochs=30, batch_size=32, verbose=0)
    assert result.test_metrics["accuracy"] > 0.85


def test_early_stopping_restores_the_best_weights():
    x, y = tiny_data(64)
    val = tiny_data(32, seed=1)
    model = tiny_model(learning_rate=0.05)
    result = train(model, (x, y), validation_data=val, epochs=40, patience=3,
                   lr_decay=None, batch_size=8, verbose=0)
    val_losses = result.history["val_loss"]
    assert result.epochs_run < 40
    assert result.best_epoch == int(np.argmin(val_losses)) + 1
    restored = model.evaluate(*val, verbose=0, return_dict=True)["loss"]
    assert restored == pytest.approx(min(val_losses), rel=1e-4)


def test_plateau_and_cosine_decay_lower_the_learning_rate():
    x, y = tiny_data(16)
    cosine = train(tiny_model(learning_rate=1e-2), (x, y), epochs=4, lr_decay="cosine",
                   verbose=0)
    rates = cosine.history["learning_rate"]
    assert rates[0] == pytest.approx(1e-2) and rates[-1] < rates[0]
    assert all(b < a for a, b in zip(rates, rates[1:]))
    plateau = train(tiny_model(learning_rate=1e-2), (x, y), epochs=6, lr_decay="plateau",
                    lr_decay_patience=0, lr_decay_factor=0.5, patience=10,
                    validation_data=(x[:4], 1 - y[:4]), verbose=0)
    assert min(plateau.history["learning_rate"]) < 1e-2


def test_fit_on_train_and_validation_watches_the_training_loss():
    x, y = tiny_data(16)
    val = tiny_data(8, seed=1)
    result = train(tiny_model(), (x, y), validation_data=val, fit_on="train+val", epochs=2,
                   batch_size=4, verbose=0)
    assert "val_loss" not in result.history
    # 24 samples in batches of 4: the validation data was trained on.
    assert result.model.optimizer.iterations.numpy() == 2 * 6


def test_same_seed_same_result():
    x, y = tiny_data()
    runs = [train(tiny_model(seed=3), (x, y), epochs=2, seed=3, verbose=0).history["loss"]
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_balanced_class_weight():
    assert balanced_class_weight([0, 0, 0, 1]) == {0: pytest.approx(4 / 6), 1: 2.0}
    x, y = tiny_data()
    result = train(tiny_model(), (x, y), epochs=1, class_weight="balanced", verbose=0)
    assert result.epochs_run == 1


def test_keyboard_interrupt_keeps_the_best_model(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    x, y = tiny_data()
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), (x, y), validation_data=tiny_data(8, seed=1), epochs=5,
              run_dir=tmp_path, callbacks=[Interrupt()], verbose=0)
    assert keras.models.load_model(tmp_path / "model.interrupted.keras").count_params() > 0


def test_trains_on_a_zoo_dataset(tmp_path):
    ds = load_dataset("italy_power_demand")
    model = build_gru("stacked", input_shape=ds.input_shape, num_outputs=ds.num_outputs,
                      units=4, num_layers=1)
    result = train(model, ds, epochs=1, verbose=0)
    assert set(result.test_metrics) == {"loss", "accuracy"}


@pytest.mark.parametrize(
    "kwargs, message",
    [({"epochs": 0}, "epochs=0"),
     ({"batch_size": -1}, "batch_size=-1"),
     ({"lr_decay": "step"}, "lr_decay='step'"),
     ({"lr_decay_factor": 2.0}, "lr_decay_factor=2.0"),
     ({"class_weight": "auto"}, "class_weight='auto'"),
     ({"seed": -1}, "seed=-1"),
     ({"fit_on": "val"}, "fit_on='val'"),
     ({"tensorboard": True}, "run_dir=None")],
)
def test_bad_training_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        train(tiny_model(), tiny_data(), verbose=0, **kwargs)
    assert message in str(info.value)


def test_uncompiled_model_and_bad_data_are_rejected():
    uncompiled = build_gru("stacked", input_shape=(6, 2), num_outputs=2, compile=False)
    with pytest.raises(ValueError, match="must be compiled"):
        train(uncompiled, tiny_data(), verbose=0)
    with pytest.raises(ValueError, match="`data` must be"):
        train(tiny_model(), "data.csv", verbose=0)


def test_tensorboard_logs(tmp_path):
    train(tiny_model(), tiny_data(), epochs=1, run_dir=tmp_path, tensorboard=True, verbose=0)
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))

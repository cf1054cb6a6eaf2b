"""`zoo.presets`: the packaged pretrained models and the preset round trip."""

import configparser
import fnmatch
import json
import pathlib

import numpy as np
import pytest

import zoo
from zoo import presets
from zoo.datasets import EMBEDDED

PACKAGED = presets.list_presets()
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_embedded_dataset_has_a_preset():
    assert sorted(EMBEDDED) == PACKAGED


@pytest.mark.parametrize("name", PACKAGED)
def test_preset_reaches_its_recorded_metric(name):
    model, info = presets.load_preset(name, return_metadata=True)
    assert info["name"] == name and info["dataset"] in EMBEDDED
    assert model.count_params() == info["params"]
    assert info["command"].startswith("gru-zoo ")
    data = zoo.load_dataset(info["dataset"], **info["dataset_kwargs"])
    predictions = model.predict(data.x_test, batch_size=256, verbose=0)
    recorded = info["test_metrics"][info["metric"]]
    if info["task"] == "classification":
        accuracy = np.mean(np.argmax(predictions, axis=-1) == data.y_test)
        assert accuracy == pytest.approx(recorded, abs=0.5 / len(data.y_test))
    else:
        mse = np.mean((predictions - data.y_test) ** 2)
        assert mse == pytest.approx(recorded, rel=1e-3)
    assert presets.evaluate_preset(name)[info["metric"]] == pytest.approx(recorded, rel=1e-3)


@pytest.mark.parametrize("name", PACKAGED)
def test_preset_files_are_small_and_packaged(name):
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["zoo"].split(",")]
    for suffix in (".json", ".weights.h5"):
        path = ROOT / "zoo" / "presets" / f"{name}{suffix}"
        # The wheel carries every preset; the largest is GunPoint's GRU-FCN (266k
        # parameters, 1.1 MB of float32 weights, its published size).
        assert path.stat().st_size < 1280 * 1024
        relative = f"presets/{path.name}"
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


def test_describe_presets_and_cli_list(capsys):
    descriptions = presets.describe_presets()
    assert sorted(descriptions) == PACKAGED
    for name, text in descriptions.items():
        info = presets.preset_metadata(name)
        assert info["build"]["variant"] in text
    from zoo.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "Presets:" in out
    for name in PACKAGED:
        assert f"  {name} " in out.split("Presets:")[1]


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match=r"name.*Received: name='nope'"):
        presets.load_preset("nope")


def test_save_preset_round_trip(tmp_path, monkeypatch):
    data = zoo.load_dataset("italy_power_demand")
    config = dict(variant="stacked", cell="gru", units=4, num_layers=1)
    zoo.set_seed(0)
    model = zoo.build_gru(input_shape=data.input_shape, num_outputs=data.num_outputs, **config)
    run_dir = tmp_path / "run"
    zoo.train(model, data, epochs=1, batch_size=32, run_dir=run_dir, verbose=0,
              config={"dataset": data.summary(), "build": config,
                      "command": "gru-zoo train --dataset italy_power_demand"})
    path = presets.save_preset(run_dir, "tiny_italy", directory=tmp_path / "presets")
    info = json.loads(path.read_text())
    assert info["metric"] == "accuracy" and info["build"] == config
    assert presets.list_presets(tmp_path / "presets") == ["tiny_italy"]
    loaded = presets.load_preset("tiny_italy", directory=tmp_path / "presets")
    np.testing.assert_allclose(loaded.predict(data.x_test[:8], verbose=0),
                               model.predict(data.x_test[:8], verbose=0), atol=1e-6)
    assert "tiny_italy" in presets.describe_presets(tmp_path / "presets")
    assert sorted(f.name for f in (tmp_path / "presets").iterdir()) == [
        "tiny_italy.json", "tiny_italy.weights.h5"]  # no staging folder left

    # A save that fails its reproduction check leaves the earlier preset as it was.
    before = {f.name: f.read_bytes() for f in (tmp_path / "presets").iterdir()}
    other = zoo.build_gru(input_shape=data.input_shape, num_outputs=data.num_outputs, **config)
    real_load = presets.load_preset

    def load_other(name, directory=None, compile=True):
        real_load(name, directory=directory, compile=compile)  # the staged files load
        return other  # but give other weights

    monkeypatch.setattr(presets, "load_preset", load_other)
    with pytest.raises(ValueError, match="does not reproduce the run's model.*nothing was "
                                         "written"):
        presets.save_preset(run_dir, "tiny_italy", directory=tmp_path / "presets",
                            description="a description the earlier preset does not have")
    assert {f.name: f.read_bytes() for f in (tmp_path / "presets").iterdir()} == before


def test_save_preset_rejects_a_directory_without_a_run(tmp_path):
    with pytest.raises(ValueError, match="run_dir"):
        presets.save_preset(tmp_path)

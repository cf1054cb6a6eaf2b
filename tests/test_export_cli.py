"""`gru-zoo export | inspect | bench` and the export step of `gru-zoo run`."""

import argparse
import json

import numpy as np
import pytest

from export import LiteModel, read_metadata
from export.cli import register, run_step
from helpers import FEATURES, TIME, sequences, tiny_model


def _parser():
    parser = argparse.ArgumentParser(prog="gru-zoo")
    register(parser.add_subparsers(dest="command"))
    return parser


def _run(argv):
    args = _parser().parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli")
    model = tiny_model("stacked")
    model_path = directory / "model.keras"
    model.save(model_path)
    data_path = directory / "data.npz"
    labels = np.random.default_rng(0).integers(0, 3, 10)
    np.savez(data_path, x_train=sequences(16), x_test=sequences(10, seed=1), y_test=labels)
    out = directory / "model_int8.tflite"
    return model, model_path, data_path, out


def test_register_adds_the_three_commands():
    parser = _parser()
    for command in ("export", "inspect", "bench"):
        args = parser.parse_args([command, "x"] + (["--out", "y"] if command == "export" else []))
        assert callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "m.keras", "--out", "o.tflite", "--quantize", "int4"])
    # `--form` and its older name `--recipe` set the same option.
    for flag in ("--form", "--recipe"):
        args = parser.parse_args(["export", "m.keras", "--out", "o.tflite", flag, "step"])
        assert args.form == "step"
    assert parser.parse_args(["export", "m.keras", "--out", "o.tflite"]).form == "auto"
    # TFLite Micro: by default as `to_tflite` decides (None), or asked for either way.
    for flags, expected in (([], None), (["--check-tflm"], True), (["--no-check-tflm"], False)):
        args = parser.parse_args(["export", "m.keras", "--out", "o.tflite"] + flags)
        assert args.check_tflm is expected
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "m.keras", "--out", "o.tflite", "--form", "fast"])


def test_cli_export_inspect_bench(cli_export, capsys):
    model, model_path, data_path, out = cli_export
    assert _run(["export", str(model_path), "--out", str(out), "--quantize", "int8",
                 "--data", str(data_path), "--check-tflm", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["quantization"] == "int8" and result["recipe"] == "chunked"
    assert result["tflm"]["runs"] is True and result["tflm"]["arena_bytes"] > 0
    assert result["form"] == "chunked"
    assert result["evaluation"]["samples"] == 10
    x = sequences(4, seed=2)
    assert np.abs(LiteModel(out).predict(x) - model.predict(x, verbose=0)).max() <= 0.25
    assert read_metadata(out)["quantization"] == "int8"

    assert _run(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["signatures"]["serving_default"]["inputs"]["inputs"] == {
        "shape": [1, TIME, FEATURES], "dtype": "float32"}
    assert info["ops"]["flex"] == [] and "FULLY_CONNECTED" in info["ops"]["builtin"]
    assert info["metadata"]["window_length"] == TIME

    assert _run(["inspect", str(out)]) == 0
    assert "builtin ops" in capsys.readouterr().out

    assert _run(["bench", str(out), "--runs", "5", "--warmup", "1", "--json"]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["median_us"] > 0 and bench["runs"] == 5


def test_bench_says_when_int8_ran_on_amx_kernels(cli_export, monkeypatch, capsys):
    """On a CPU with AMX, XNNPACK's int8 kernels are slow for one-row products (F25):
    `gru-zoo bench` says so for an int8 file, not for a float32 one, nor without AMX."""
    import export.runtime

    _, model_path, data_path, out = cli_export
    float_out = out.with_name("model_float.tflite")
    for path, flags in ((out, ["--quantize", "int8"]), (float_out, [])):
        assert _run(["export", str(model_path), "--out", str(path), "--data",
                     str(data_path), "--json"] + flags) == 0
    capsys.readouterr()
    for granted in (True, False):
        monkeypatch.setattr(export.runtime, "amx_granted", lambda granted=granted: granted)
        assert _run(["bench", str(out), "--runs", "3", "--warmup", "0"]) == 0
        text = capsys.readouterr().out
        assert ("note: this CPU has AMX" in text and "F25" in text) is granted
        assert _run(["bench", str(float_out), "--runs", "3", "--warmup", "0", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["notes"] == []


def test_cli_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        _run(["inspect", str(tmp_path / "missing.tflite")])
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        _run(["export", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "o.tflite")])
    bad = tmp_path / "bad.npz"
    np.savez(bad, y=np.zeros(3))
    with pytest.raises(ValueError, match="x_train, x or inputs"):
        _run(["export", "m.keras", "--out", str(tmp_path / "o.tflite"), "--data", str(bad)])


@pytest.mark.slow
def test_run_step_exports_and_reports(tmp_path):
    from zoo.datasets import Dataset

    model = tiny_model("stacked", num_outputs=2)
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    rng = np.random.default_rng(0)
    dataset = Dataset(
        name="tiny", task="classification", num_outputs=2, input_shape=(TIME, FEATURES),
        x_train=sequences(16), y_train=rng.integers(0, 2, 16),
        x_val=sequences(4, seed=1), y_val=rng.integers(0, 2, 4),
        x_test=sequences(8, seed=2), y_test=rng.integers(0, 2, 8),
        label_names=["no", "yes"], normalization={"mean": np.zeros(FEATURES),
                                                  "std": np.ones(FEATURES)},
    )
    summary = run_step({"run_dir": tmp_path, "model_path": model_path, "dataset": dataset,
                        "quick": True})
    assert set(summary) == {"float32", "int8", "streaming_float32", "streaming_int8"}
    for name, entry in summary.items():
        assert "error" not in entry, entry
        path = tmp_path / "export" / f"model_{name}.tflite"
        assert path.stat().st_size == entry["size"]
        assert read_metadata(path)["labels"] == ["no", "yes"]
        # A file scoring worse than Keras carries `to_tflite`'s warning into the summary.
        worse = entry["tflite_accuracy"] < entry["keras_accuracy"] - 0.005
        assert ("warnings" in entry) == worse, entry
    assert summary["float32"]["max_abs_error"] <= 1e-5
    assert summary["float32"]["tflite_accuracy"] == summary["float32"]["keras_accuracy"]
    assert summary["streaming_int8"]["tflm_runs"] is True
    # The full-sequence int8 file (chunked) is run in TFLite Micro too, for its arena.
    assert summary["int8"]["tflm_runs"] is True and summary["int8"]["tflm_arena_bytes"] > 0
    assert "tflm_runs" not in summary["float32"]
    assert (tmp_path / "export" / "model_streaming_int8.cc").exists()
    assert json.loads((tmp_path / "export" / "export_summary.json").read_text()) == json.loads(
        json.dumps(summary))


@pytest.mark.slow
def test_run_step_exports_the_streaming_files_of_a_causal_conv_model(tmp_path):
    """The main job's export step streams a causal GRU-FCN (what `--streaming` builds)."""
    from zoo.datasets import Dataset

    model = tiny_model("gru_fcn", num_outputs=2, causal=True, conv_batchnorm=True)
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    rng = np.random.default_rng(0)
    dataset = Dataset(
        name="tiny", task="classification", num_outputs=2, input_shape=(TIME, FEATURES),
        x_train=sequences(16), y_train=rng.integers(0, 2, 16),
        x_val=sequences(4, seed=1), y_val=rng.integers(0, 2, 4),
        x_test=sequences(8, seed=2), y_test=rng.integers(0, 2, 8),
    )
    summary = run_step({"run_dir": tmp_path, "model_path": model_path, "dataset": dataset,
                        "quick": True})
    for name in ("streaming_float32", "streaming_int8"):
        assert "error" not in summary[name] and "skipped" not in summary[name], summary[name]
        assert summary[name]["tflm_runs"] is True
        lite = LiteModel(tmp_path / "export" / f"model_{name}.tflite")
        assert "state_conv1d_0_frames" in lite.state_names
    assert summary["streaming_float32"]["max_abs_error"] <= 1e-5
    # The same model without causal convolutions is skipped, with the reason.
    tiny_model("gru_fcn", num_outputs=2).save(model_path)
    summary = run_step({"run_dir": tmp_path / "centred", "model_path": model_path,
                        "dataset": dataset, "quick": True})
    assert "causal=True" in summary["streaming_float32"]["skipped"]

"""Bad input to `tuning`: search spaces `build_gru` cannot build, budgets, TOML files.

Each case asserts that the message names the argument (or the file) and the value
received (`match=` joins the fragments in order).
"""

import re

import keras
import pytest

from tuning import GRUHyperModel, make_oracle, make_tuner
from tuning.config import load_config
from tuning.hypermodels import BUILD_ALLOWED
from zoo import build_gru
from zoo.cli import main

SHAPE = dict(input_shape=(6, 3), num_outputs=2)


def pattern(*fragments):
    """A `match=` regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(str(f)) for f in fragments)


# (id, variant, space, fixed, message fragments)
SPACE_CASES = [
    ("dropout_range", "stacked", {"dropout": {"min": 0.0, "max": 1.5}}, {},
     ["`space['dropout']`", "`dropout`: a float in [0, 1)", "not 1.5",
      "space['dropout']={'min': 0.0, 'max': 1.5}"]),
    ("dropout_range_to_one", "stacked", {"dropout": {"min": 0.5, "max": 1.0, "step": 0.5}}, {},
     ["`space['dropout']`", "not 1.0"]),
    ("dropout_list", "stacked", {"dropout": [0.1, 1.2]}, {},
     ["`space['dropout']`", "not 1.2", "space['dropout']=[0.1, 1.2]"]),
    ("recurrent_dropout_negative", "stacked", {"recurrent_dropout": [-0.1, 0.2]}, {},
     ["`space['recurrent_dropout']`", "not -0.1"]),
    ("units_negative", "stacked", {"units": {"min": -8, "max": 16}}, {},
     ["`space['units']`", "`units`: a positive int", "not -8"]),
    ("units_fixed_zero", "stacked", {"units": 0}, {}, ["`space['units']`", "not 0",
                                                      "space['units']=0"]),
    ("learning_rate_zero", "stacked", {"learning_rate": [0.0, 0.01]}, {},
     ["`space['learning_rate']`", "a positive float", "not 0.0"]),
    ("batch_size_zero", "stacked", {"batch_size": [0, 8]}, {},
     ["`space['batch_size']`", "not 0", "space['batch_size']=[0, 8]"]),
    ("num_layers_zero", "stacked", {"num_layers": [0, 1]}, {},
     ["`space['num_layers']`", "not 0"]),
    ("branch_dropout_one", "gru_fcn", {"branch_dropout": {"min": 0.5, "max": 1.0}}, {},
     ["`space['branch_dropout']`", "not 1.0"]),
    ("conv_kernel_zero", "cnn_gru", {"conv_kernel_size": [0, 3]}, {},
     ["`space['conv_kernel_size']`", "not 0"]),
    ("attention_heads_zero", "attention", {"attention_heads": [0, 2]},
     {"attention": "multihead"}, ["`space['attention_heads']`", "not 0"]),
]


@pytest.mark.parametrize("variant, space, fixed, fragments", [c[1:] for c in SPACE_CASES],
                         ids=[c[0] for c in SPACE_CASES])
def test_a_space_build_gru_cannot_build_is_refused(variant, space, fixed, fragments):
    with pytest.raises(ValueError, match=pattern(*fragments)):
        GRUHyperModel(variant, space=space, fixed=fixed, **SHAPE)


def test_spaces_within_what_build_gru_accepts_still_build():
    hypermodel = GRUHyperModel("stacked", space={"dropout": {"min": 0.0, "max": 0.9},
                                                 "units": [4, 8], "num_layers": [1, 4]},
                               **SHAPE)
    assert hypermodel.space["dropout"][1]["max_value"] == 0.9


# Per argument: values `BUILD_ALLOWED` refuses and accepts. `build_gru` must agree, so
# the hypermodel's table cannot drift from the builder.
AGREEMENT = {
    "units": ([0, -4, 2.5], [1, 8]),
    "num_layers": ([0], [1, 3]),
    "dropout": ([1.0, 1.5, -0.1], [0.0, 0.5]),
    "recurrent_dropout": ([1.0, -0.5], [0.0, 0.3]),
    "learning_rate": ([0.0, -1e-3], [1e-4]),
    "conv_layers": ([0], [2]),
    "conv_filters": ([0], [4]),
    "conv_kernel_size": ([0], [3]),
    "pool_size": ([0], [2]),
    "attention_heads": ([0], [2]),
    "branch_dropout": ([1.0], [0.5]),
    "attention": (["dot"], ["additive", "multihead"]),
}
_VARIANT_FOR = {"conv_layers": "cnn_gru", "conv_filters": "cnn_gru",
                "conv_kernel_size": "cnn_gru", "pool_size": "cnn_gru",
                "attention_heads": "attention", "attention": "attention",
                "branch_dropout": "gru_fcn"}


@pytest.mark.parametrize("name", sorted(AGREEMENT))
def test_the_allowed_table_agrees_with_build_gru(name):
    check, _ = BUILD_ALLOWED[name]
    refused, accepted = AGREEMENT[name]
    variant = _VARIANT_FOR.get(name, "stacked")
    extra = {"attention": "multihead"} if name == "attention_heads" else {}

    def kwargs(value):
        return {**dict(units=2, num_layers=1, conv_filters=2, **SHAPE, **extra), name: value}

    for value in refused:
        assert not check(value)
        with pytest.raises(ValueError, match=re.escape(f"`{name}`")):
            build_gru(variant, **kwargs(value))
    for value in accepted:
        assert check(value)
        assert isinstance(build_gru(variant, **kwargs(value)), keras.Model)


@pytest.mark.parametrize("strategy, max_trials", [
    ("random", -1), ("random", 0), ("bayesian", 0), ("grid", "5"), ("genetic", -1),
    ("pso", True), ("hyperband", -1),
])
def test_max_trials_must_be_a_positive_int(strategy, max_trials, tmp_path):
    fragments = ["`max_trials`", "positive int", f"max_trials={max_trials!r}"]
    with pytest.raises(ValueError, match=pattern(*fragments)):
        make_oracle(strategy, objective="val_loss", max_trials=max_trials, max_epochs=2)
    hypermodel = GRUHyperModel("stacked", **SHAPE)
    with pytest.raises(ValueError, match=pattern(*fragments)):
        make_tuner(strategy, hypermodel, objective="val_loss", max_trials=max_trials,
                   epochs=2, directory=str(tmp_path))


def test_a_binary_toml_is_one_clear_error(tmp_path):
    path = tmp_path / "image.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01")
    with pytest.raises(ValueError, match=pattern("image.toml", "not a TOML file",
                                                 "byte 0 is not UTF-8", "b'\\x89'")):
        load_config(path)


@pytest.mark.parametrize("text, fragments", [
    ("[hypermodel]\nvariant = 'stacked'\n[hypermodel.space]\ndropout = {min = 0.0, max = 1.5}\n",
     ["[hypermodel]", "`space['dropout']`", "not 1.5"]),
    (b"\x89PNG\r\n\x1a\n", ["bad.toml", "not a TOML file"]),
    ("[search]\nmax_trials = -1\n", ["[search] max_trials must be a positive int",
                                     "max_trials=-1"]),
])
def test_cli_tune_check_refuses_a_bad_job_in_one_line(tmp_path, capsys, text, fragments):
    path = tmp_path / "bad.toml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    assert main(["tune", str(path), "--check"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert re.search(pattern(*fragments), lines[0]), lines[0]
    assert "OK" not in captured.out


# === Strategy options: every value checked before the search (review problem 1) ===

BAD_OPTIONS = [
    ("genetic", "population_size", 0, "an int >= 2"),
    ("genetic", "population_size", 1, "an int >= 2"),
    ("genetic", "mutation_rate", 5.0, "a float in [0, 1]"),
    ("genetic", "crossover_rate", -0.1, "a float in [0, 1]"),
    ("genetic", "mutation_scale", 0.0, "a positive float"),
    ("genetic", "tournament_size", 0, "a positive int"),
    ("bayesian", "num_initial_points", -2, "a positive int"),
    ("bayesian", "num_initial_points", 0, "a positive int"),
    ("bayesian", "alpha", 0.0, "a positive float"),
    ("bayesian", "beta", -1.0, "a float >= 0"),
    ("hyperband", "factor", 1, "an int >= 2"),
    ("hyperband", "factor", 2.5, "an int >= 2"),
    ("hyperband", "hyperband_iterations", 0, "a positive int"),
    ("pso", "swarm_size", 0, "a positive int"),
    ("pso", "inertia", -1.0, "a float >= 0"),
    ("pso", "max_velocity", float("inf"), "a positive float"),
]


def _options_toml(tmp_path, strategy, key, value):
    path = tmp_path / "job.toml"
    value = "inf" if value == float("inf") else repr(value)
    path.write_text(f"[job]\noutput_dir = '{tmp_path / 'out'}'\n"
                    f"[search]\nstrategy = '{strategy}'\n[search.options]\n{key} = {value}\n")
    return path


@pytest.mark.parametrize("strategy, key, value, allowed", BAD_OPTIONS,
                         ids=[f"{s}-{k}-{v}" for s, k, v, _ in BAD_OPTIONS])
def test_a_bad_strategy_option_value_is_refused_by_the_config(tmp_path, strategy, key,
                                                              value, allowed):
    path = _options_toml(tmp_path, strategy, key, value)
    with pytest.raises(ValueError, match=pattern("job.toml", f"[search.options] {key}",
                                                 allowed, strategy, f"{key}={value!r}")):
        load_config(path)
    # The Python entry point refuses it too, before keras-tuner sees it.
    with pytest.raises(ValueError, match=pattern(f"`{key}`", allowed, f"{key}={value!r}")):
        make_oracle(strategy, objective="val_loss", max_trials=2, max_epochs=2,
                    **{key: value})


@pytest.mark.parametrize("strategy, key, value", [
    ("genetic", "population_size", 0), ("bayesian", "num_initial_points", -2),
    ("hyperband", "factor", 1),
])
def test_tune_check_and_run_refuse_bad_options_and_write_nothing(tmp_path, capsys, strategy,
                                                                 key, value):
    path = _options_toml(tmp_path, strategy, key, value)
    for extra in (["--check"], []):
        assert main(["tune", str(path), *extra]) == 2
        captured = capsys.readouterr()
        assert f"[search.options] {key} must be" in captured.err
        assert f"{key}={value!r}" in captured.err and "OK" not in captured.out
    assert not (tmp_path / "out").exists()


def test_good_strategy_options_still_pass(tmp_path):
    from tests.helpers import STRATEGY_OPTIONS

    for strategy, options in STRATEGY_OPTIONS + [("bayesian", {"beta": 0.0, "alpha": 1e-3}),
                                                 ("hyperband", {"factor": 2}),
                                                 ("genetic", {"mutation_rate": 1.0})]:
        for key, value in options.items():
            config = load_config(_options_toml(tmp_path, strategy, key, value))
            assert config.search["options"] == {key: value}


def test_an_unknown_strategy_option_is_refused(tmp_path):
    path = _options_toml(tmp_path, "pso", "num_particles", -1)
    with pytest.raises(ValueError, match=pattern("[search.options] unknown key(s)",
                                                 "num_particles", "swarm_size",
                                                 "num_particles=-1")):
        load_config(path)


# === [job] output_dir an existing file (review problem 2) ===

@pytest.mark.parametrize("inside", [False, True])
def test_an_output_dir_that_is_a_file_is_refused(tmp_path, capsys, inside):
    taken = tmp_path / "empty.toml"
    taken.write_text("")
    out = taken / "sub" if inside else taken
    path = tmp_path / "job.toml"
    path.write_text(f"[job]\noutput_dir = '{out}'\n")
    fragments = ["[job] output_dir", "not a file", repr(str(taken)),
                 "no folder can be made inside it" if inside else "is an existing file",
                 f"output_dir={str(out)!r}"]
    with pytest.raises(ValueError, match=pattern(*fragments)):
        load_config(path)
    assert main(["tune", str(path), "--check"]) == 2
    assert "[job] output_dir" in capsys.readouterr().err
    assert taken.read_text() == ""


# === An empty config (review problem 3) ===

@pytest.mark.parametrize("name, text", [("empty.toml", ""), ("afile", ""),
                                        ("comments.toml", "# nothing yet\n\n"),
                                        ("sections.toml", "[job]\n[search]\n")])
def test_an_empty_config_is_refused(tmp_path, monkeypatch, capsys, name, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(text)
    fragments = [name, "no settings", "[data]", "tuning/configs/gunpoint.toml",
                 f"Received: {len(text)} bytes"]
    with pytest.raises(ValueError, match=pattern(*fragments)):
        load_config(tmp_path / name)
    for extra in (["--check"], []):
        assert main(["tune", name, *extra]) == 2
        assert "no settings" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # no default job started


def test_a_one_key_config_is_still_a_job(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text("[data]\ndataset = 'italy_power_demand'\n")
    assert load_config(path).search["strategy"] == "random"


# === Python API: objective names (review problem 4) ===

def test_make_tuner_refuses_an_objective_keras_tuner_cannot_direct(tmp_path):
    hypermodel = GRUHyperModel("stacked", **SHAPE)
    fragments = ["`objective`", "'val_accuracy'", "keras_tuner.Objective",
                 "objective='val_acuracy'"]
    with pytest.raises(ValueError, match=pattern(*fragments)):
        make_tuner("random", hypermodel, objective="val_acuracy", directory=str(tmp_path))
    with pytest.raises(ValueError, match=pattern("`objective`", "objective=['val_loss', 'f2']")):
        make_oracle("genetic", objective=["val_loss", "f2"])
    assert not list(tmp_path.iterdir())
    tuner = make_tuner("random", hypermodel, objective="val_accuracy", max_trials=1,
                       directory=str(tmp_path))
    assert tuner.oracle.objective.direction == "max"


# === Python API: NumPy values in space and fixed (review problem 5) ===

def test_numpy_values_in_space_and_fixed_are_taken_as_python_numbers():
    import numpy as np

    hypermodel = GRUHyperModel(
        "stacked", space={"units": list(np.arange(4, 12, 4)), "num_layers": np.arange(1, 3),
                          "dropout": {"min": np.float32(0.0), "max": np.float64(0.25)},
                          "learning_rate": np.float64(1e-3)},
        fixed={"dense_units": np.int64(4), "reset_after": np.bool_(True)}, **SHAPE)
    assert hypermodel.space["units"] == ("choice", {"values": [4, 8], "default": 4})
    assert hypermodel.space["num_layers"][1]["values"] == [1, 2]
    assert type(hypermodel.space["dropout"][1]["max_value"]) is float
    assert type(hypermodel.fixed["dense_units"]) is int
    assert hypermodel.fixed["reset_after"] is True
    import keras_tuner

    assert isinstance(hypermodel.build(keras_tuner.HyperParameters()), keras.Model)


# === The run's tune step on a class with one sample (review problem 6) ===

def _csv_dataset(tmp_path, counts):
    import numpy as np

    from zoo.datasets import load_dataset

    rng = np.random.default_rng(0)
    rows = ["label," + ",".join(f"t{i}" for i in range(8))]
    for label, count in enumerate(counts):
        rows += [f"{label}," + ",".join(f"{v:.3f}" for v in rng.normal(size=8))
                 for _ in range(count)]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    return load_dataset(str(path))


def test_the_run_tune_step_explains_a_class_with_one_sample(tmp_path):
    from tuning.cli import run_step

    dataset = _csv_dataset(tmp_path, [16, 17, 1])
    context = {"run_dir": tmp_path / "run", "dataset": dataset, "quick": True,
               "model_config": {"variant": "stacked", "units": 8, "num_layers": 1}}
    with pytest.raises(ValueError) as info:
        run_step(context)
    message = str(info.value)
    for fragment in ("tune step", "['2']", "1 sample(s)", "at least 2 of every class",
                     "--skip tune"):
        assert fragment in message, message
    assert "[cv]" not in message and "folds" not in message
    assert not (tmp_path / "run").exists()


def test_the_run_tune_step_uses_two_folds_for_a_class_of_two(tmp_path, monkeypatch):
    import numpy as np

    import tuning.job
    from tuning.cli import run_step
    from tuning.cv import class_labels, search_data

    dataset = _csv_dataset(tmp_path, [16, 17, 3])
    seen = {}

    def fake_run_job(config, **kwargs):
        seen["folds"] = config.cv["folds"]
        tuning.job.check_job(config, kwargs["dataset"])  # the folds fit the data
        raise RuntimeError("stop before training")

    monkeypatch.setattr(tuning.job, "run_job", fake_run_job)

    smallest = int(np.bincount(class_labels(search_data(dataset)[1])).min())
    with pytest.raises(RuntimeError, match="stop before training"):
        run_step({"run_dir": tmp_path / "run", "dataset": dataset, "quick": False,
                  "model_config": {"variant": "stacked", "units": 8, "num_layers": 1}})
    assert smallest == 2 and seen["folds"] == 2  # the full step's 3 folds cannot fit

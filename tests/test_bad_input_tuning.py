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

"""`zoo.checks`: one error wording and one idea of an int, a number and a bool.

NumPy scalars count as their Python kind everywhere (a value taken from an array is as
good as a literal) and are kept as Python values; a bool is never a number. The last
test keeps the copies of these helpers from coming back.
"""

import ast
import json
import pathlib
import re

import numpy as np
import pytest

from zoo import checks

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_fail_names_the_argument_what_is_allowed_and_the_value():
    with pytest.raises(ValueError, match=re.escape(
            "`units` must be a positive int. Received: units=0")):
        checks.fail("units", 0, "a positive int")
    with pytest.raises(TypeError, match=re.escape("Received: data='x'")):
        checks.fail("data", "x", "an array", error=TypeError)
    checks.check("units", 3, True, "a positive int")  # no error
    with pytest.raises(ValueError, match=re.escape("Received: units=-1")):
        checks.check("units", -1, False, "a positive int")


@pytest.mark.parametrize("predicate, accepted, refused", [
    (checks.is_int, [0, -3, np.int64(2), np.int8(-1), np.uint16(4)],
     [True, np.bool_(False), 1.0, np.float32(1), "1", None]),
    (checks.is_positive_int, [1, np.int32(7)], [0, -1, True, 2.0, np.int64(0)]),
    (checks.is_non_negative_int, [0, np.int64(0), 5], [-1, False, 0.0]),
    (checks.is_number, [0, 1.5, np.float32(0.5), np.int16(3), float("nan"), float("inf")],
     [True, np.bool_(True), "1.5", None, 1j]),
    (checks.is_positive_number, [1e-9, np.float64(2.0), 3],
     [0, -1.0, float("nan"), float("inf"), True]),
    (checks.is_non_negative_number, [0, 0.0, np.float32(1.5)],
     [-1e-9, float("nan"), float("inf"), False]),
    (checks.is_rate, [0, 0.0, 0.5, np.float32(0.99)], [1, 1.0, -0.1, float("nan"), False]),
    (checks.is_fraction, [0.2, np.float64(0.5)], [0, 0.0, 1, 1.0, float("nan"), True]),
    (checks.is_bool, [True, False, np.bool_(True)], [0, 1, "true", None]),
    (checks.is_finite_number, [0, -1.5, np.float32(2), np.int64(-3)],
     [float("nan"), float("-inf"), np.float32("inf"), True, "1", None]),
])
def test_predicates(predicate, accepted, refused):
    for value in accepted:
        assert predicate(value), (predicate.__name__, value)
    for value in refused:
        assert not predicate(value), (predicate.__name__, value)


def test_plain_gives_python_values():
    for value, expected in [(np.int64(3), 3), (np.float32(0.5), 0.5), (np.bool_(True), True),
                            (np.uint8(2), 2), (7, 7), (1.5, 1.5), (False, False)]:
        converted = checks.plain(value)
        assert converted == expected and type(converted) is type(expected), value
    for value in ("auto", None, [np.int64(1)], (1, 2)):
        assert checks.plain(value) is value


def test_numpy_integers_are_accepted_and_kept_as_python_ints():
    """Places that used to refuse NumPy integers (or kept them) now take them as ints."""
    import keras

    from tuning import make_oracle
    from tuning.oracles import GeneticOracle
    from zoo import AttentionPooling, MultiHeadAttentionPooling, WindowDenormalization
    from zoo.datasets import adding_problem, load_adding
    from zoo.training import set_seed

    oracle = GeneticOracle(objective="val_loss", max_trials=np.int64(4),
                           population_size=np.int64(2), seed=np.int64(1))
    assert type(oracle.max_trials) is int and type(oracle.population_size) is int
    assert make_oracle("random", objective="val_loss", max_trials=np.int64(3)).max_trials == 3
    for layer in (AttentionPooling(attention_units=np.int64(4)),
                  MultiHeadAttentionPooling(num_heads=np.int32(2), key_dim=np.int64(3)),
                  WindowDenormalization(channel=np.int64(1))):
        json.dumps(layer.get_config())  # a NumPy int would not serialise
        assert keras.layers.deserialize(keras.layers.serialize(layer)).get_config() == \
            layer.get_config()
    set_seed(np.int64(3))
    x, y = adding_problem(np.int64(4), np.int64(6))
    assert x.shape == (4, 6, 2) and y.shape == (4, 1)
    data = load_adding(length=np.int64(6), num_train=np.int64(4), num_val=np.int64(2),
                       num_test=np.int64(2), seed=np.int64(0))
    assert data.input_shape == (6, 2) and type(data.input_shape[0]) is int


def test_bools_are_not_ints_anywhere():
    from tuning.oracles import GeneticOracle
    from zoo.datasets import adding_problem

    with pytest.raises(ValueError, match=re.escape("Received: max_trials=True")):
        GeneticOracle(objective="val_loss", max_trials=True)
    with pytest.raises(ValueError, match=re.escape("Received: length=True")):
        adding_problem(4, True)


# The argument-check helpers live in zoo/checks.py only.
_COPIES = re.compile(r"^_?(raise|fail|check|is_int|positive_int|is_number|number|rate|"
                     r"positive|is_positive_number|is_rate)$")


@pytest.mark.parametrize("package", ["zoo", "tuning", "export"])
def test_no_package_keeps_its_own_copy_of_the_check_helpers(package):
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.name == "checks.py" and package == "zoo":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.col_offset == 0 \
                    and _COPIES.match(node.name):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not found, found

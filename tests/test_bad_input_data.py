"""Bad input to the data loaders and presets: one `ValueError` naming the argument and value.

Each case asserts that the message names the argument and the value received
(`match=` joins the fragments in order); the valid cases prove that what the checks
let through still loads.
"""

import re

import numpy as np
import pytest

import zoo
from zoo.presets import list_presets, load_preset


def pattern(*fragments):
    """A `match=` regex: the fragments, literally, in this order."""
    return ".*".join(re.escape(str(f)) for f in fragments)


# (id, load_dataset arguments, keyword arguments, message fragments)
DATASET_CASES = [
    ("name_list", ["gunpoint"], {}, ["`name` must be a str", "name=['gunpoint']"]),
    ("name_int", 3, {}, ["`name` must be a str", "name=3"]),
    ("name_unknown", "gunpoitn", {}, ["`name` must be one of", "name='gunpoitn'"]),
    ("seed_text", "gunpoint", dict(seed="abc"), ["`seed`", "seed='abc'"]),
    ("seed_negative", "italy_power_demand", dict(seed=-1), ["`seed`", "seed=-1"]),
    ("seed_float", "gunpoint", dict(seed=1.5), ["`seed`", "seed=1.5"]),
    ("normalize_text", "gunpoint", dict(normalize="no"),
     ["`normalize` must be True or False", "normalize='no'"]),
    ("normalize_int", "italy_power_demand", dict(normalize=0),
     ["`normalize` must be True or False", "normalize=0"]),
    ("airline_normalize_text", "airline_passengers", dict(normalize="no"),
     ["`normalize` must be True or False", "normalize='no'"]),
    ("validation_split", "gunpoint", dict(validation_split=1.5),
     ["`validation_split`", "validation_split=1.5"]),
    ("num_train_zero", "adding", dict(num_train=0), ["`num_train` must be a positive int",
                                                     "num_train=0"]),
    ("num_val_negative", "adding", dict(num_val=-1), ["`num_val`", "num_val=-1"]),
    ("num_test_float", "adding", dict(num_test=2.5), ["`num_test`", "num_test=2.5"]),
    ("adding_seed_text", "adding", dict(seed="abc"), ["`seed`", "seed='abc'"]),
    ("adding_length_zero", "adding", dict(length=0), ["`length` must be an int >= 2",
                                                      "length=0"]),
    ("airline_window_float", "airline_passengers", dict(window=2.5),
     ["`window`", "window=2.5"]),
    ("unknown_option", "gunpoint", dict(length=50), ["Unknown option(s) ['length']",
                                                     "length=50"]),
]


@pytest.mark.parametrize("name, kwargs, fragments", [c[1:] for c in DATASET_CASES],
                         ids=[c[0] for c in DATASET_CASES])
def test_load_dataset_names_the_bad_argument(name, kwargs, fragments):
    with pytest.raises(ValueError, match=pattern(*fragments)):
        zoo.load_dataset(name, **kwargs)


def test_valid_options_still_load():
    raw = zoo.load_dataset("airline_passengers", normalize=False)
    assert raw.normalization is None and float(raw.x_train.mean()) > 4  # log(passengers)
    normalized = zoo.load_dataset("airline_passengers", normalize=True)
    assert normalized.normalization is not None and abs(float(normalized.x_train.mean())) < 1
    gunpoint = zoo.load_dataset("gunpoint", normalize=np.bool_(False), seed=np.int64(3))
    assert gunpoint.normalization is None
    adding = zoo.load_dataset("adding", length=8, num_train=4, num_val=2, num_test=2, seed=1)
    assert adding.x_train.shape == (4, 8, 2) and adding.x_test.shape == (2, 8, 2)


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(directory="/nonexistent"), ["`directory` must be an existing folder of presets",
                                      "directory='/nonexistent' (no such folder)"]),
    (dict(directory=__file__), ["`directory`", "(not a folder)"]),
    (dict(directory=3), ["`directory`", "directory=3"]),
])
def test_load_preset_names_a_bad_directory(kwargs, fragments):
    with pytest.raises(ValueError, match=pattern(*fragments)):
        load_preset("gunpoint", **kwargs)
    with pytest.raises(ValueError, match=pattern(*fragments)):
        list_presets(**kwargs)


def test_load_preset_names_a_bad_name(tmp_path):
    with pytest.raises(ValueError, match=pattern("`name` must be one of the presets",
                                                 "'gunpoint'", "name='nope'")):
        load_preset("nope")
    # An existing folder without presets: the (empty) list is the answer.
    with pytest.raises(ValueError, match=pattern("one of the presets []", "name='gunpoint'")):
        load_preset("gunpoint", directory=tmp_path)

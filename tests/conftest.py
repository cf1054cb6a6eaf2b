import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests and exports trace on the CPU

import pytest


# Every test, and every module's shared fixtures, start from one seed: the tiny models
# are untrained, and their random weights move the int8 and int16x8 errors that the
# tests bound (an int8 test measured 0.054 against its 0.05 bound in two of six runs,
# and passed in the others). A failure then repeats on the next run instead of coming
# and going.
@pytest.fixture(autouse=True, scope="module")
def _seeded_module():
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture(autouse=True)
def _seeded():
    import keras

    keras.utils.set_random_seed(0)


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: pass --run-slow to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)

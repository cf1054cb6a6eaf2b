"""Argument checks shared by the packages: one error wording, one idea of a number.

A bad argument raises one error that names it, says what is allowed and shows the
value received (`fail`):

    `units` must be a positive int. Received: units=0

The predicates below decide what counts as an int, a number or a bool, the same way
everywhere. NumPy scalars count as their Python kind: `np.int64(3)` is an int,
`np.float32(0.5)` a number and `np.bool_(True)` a bool, so a value taken from an array
(a grid, `np.arange`, a loaded table) is as good as a literal. A bool is never a
number (`True` is not `1` here). Code that keeps an accepted value (a layer's config,
a JSON file) converts it with `int()`, `float()` or `bool()` first (`plain` does
whichever applies).

Only the standard library: the command line checks its options before NumPy or
TensorFlow are loaded.
"""

import math
import numbers


def fail(argument, value, allowed, error=ValueError):
    """Raises `error("`argument` must be <allowed>. Received: argument=<value!r>")`."""
    raise error(f"`{argument}` must be {allowed}. Received: {argument}={value!r}")


def check(argument, value, ok, allowed, error=ValueError):
    """`fail(argument, value, allowed, error)` unless `ok`."""
    if not ok:
        fail(argument, value, allowed, error)


def is_bool(value):
    """`True` or `False`, NumPy's included."""
    kind = type(value)
    return isinstance(value, bool) or (kind.__module__ == "numpy"
                                       and kind.__name__ in ("bool", "bool_"))


def is_int(value):
    """An integer (Python's or NumPy's), not a bool."""
    return isinstance(value, numbers.Integral) and not is_bool(value)


def is_positive_int(value):
    return is_int(value) and value > 0


def is_non_negative_int(value):
    return is_int(value) and value >= 0


def is_number(value):
    """A real number (int or float, Python's or NumPy's, NaN and inf included), not a bool."""
    return isinstance(value, numbers.Real) and not is_bool(value)


def is_positive_number(value):
    """A finite number > 0."""
    return is_number(value) and math.isfinite(value) and value > 0


def is_finite_number(value):
    """A number that is neither NaN nor inf."""
    return is_number(value) and math.isfinite(value)


def is_non_negative_number(value):
    """A finite number >= 0."""
    return is_number(value) and math.isfinite(value) and value >= 0


def plain(value):
    """`value` as Python's own bool, int or float when it is one of those kinds (NumPy
    scalars included); anything else unchanged. For accepted values handed on to code
    that wants Python's types (Keras layers and optimizers, JSON)."""
    if is_bool(value):
        return bool(value)
    if is_int(value):
        return int(value)
    if is_number(value):
        return float(value)
    return value


def is_rate(value):
    """A number in [0, 1): a dropout rate (1 would drop everything)."""
    return is_number(value) and 0 <= value < 1


def is_fraction(value):
    """A number in (0, 1): a share of the samples that leaves some on both sides."""
    return is_number(value) and 0 < value < 1

"""Hypermodels: each one only maps `hp` to `zoo.build_gru` keyword arguments.

`GRUHyperModel(variant=...)` searches the hyperparameters of one zoo variant;
`GRUHyperModel(variant=None)` also searches over the variant and the cell. Every
hyperparameter has a default, and the defaults are `build_gru`'s own defaults, so
`hypermodel.build(keras_tuner.HyperParameters())` is the model `build_gru` gives
without arguments (the "default configuration").

Conditional hyperparameters appear only where they are used: `units_1` only when
`num_layers >= 2`, the convolution parameters only for CNN variants,
`attention_heads` only for multi-head attention.

Example:

>>> hypermodel = GRUHyperModel("cnn_gru", input_shape=(24, 1), num_outputs=2)
>>> model = hypermodel.build(keras_tuner.HyperParameters())
"""

import functools
import inspect

import keras
import keras_tuner

from zoo.builders import (
    ARGUMENT_RULES,
    CELLS,
    VARIANTS,
    build_gru,
    check_argument,
    check_input_shape,
)
from zoo.checks import (
    fail,
    is_int,
    is_non_negative_int,
    is_number,
    is_positive_int,
    is_positive_number,
)

# The largest stacks and conv front ends the default space explores.
MAX_LAYERS = 3
MAX_CONV_LAYERS = 2

# name -> (kind, spec). Kinds: "int" / "float" (min, max, step, sampling),
# "choice" (values). Defaults are `build_gru`'s defaults (batch size: `zoo.train`'s).
DEFAULT_SPACE = {
    "num_layers": ("int", dict(min_value=1, max_value=MAX_LAYERS, default=2)),
    "units": ("int", dict(min_value=8, max_value=128, step=8, default=64)),
    "dropout": ("float", dict(min_value=0.0, max_value=0.5, step=0.1, default=0.0)),
    "recurrent_dropout": ("float", dict(min_value=0.0, max_value=0.5, step=0.1, default=0.0)),
    "learning_rate": ("float", dict(min_value=1e-4, max_value=1e-2, sampling="log",
                                    default=1e-3)),
    "batch_size": ("choice", dict(values=[8, 16, 32, 64], default=16)),
    "conv_layers": ("int", dict(min_value=1, max_value=MAX_CONV_LAYERS, default=1)),
    "conv_filters": ("int", dict(min_value=16, max_value=128, step=16, default=64)),
    "conv_kernel_size": ("choice", dict(values=[3, 5, 7], default=5)),
    "pool_size": ("choice", dict(values=[1, 2, 4], default=1)),
    "attention": ("choice", dict(values=["additive", "multihead"], default="additive")),
    "attention_heads": ("choice", dict(values=[1, 2, 4], default=4)),
    "branch_dropout": ("float", dict(min_value=0.0, max_value=0.9, step=0.1, default=0.8)),
    # A width multiplier of every convolution's filters (searched or fixed), like
    # MobileNet's alpha: shrinks a fixed architecture for a device. Opt-in: registered
    # only when the space names it.
    "conv_width": ("choice", dict(values=[1.0, 0.5, 0.25, 0.125], default=1.0)),
    "variant": ("choice", dict(values=sorted(VARIANTS), default="stacked")),
    "cell": ("choice", dict(values=sorted(CELLS), default="gru")),
}

# Builder arguments the hypermodel owns: they cannot be given in `fixed`.
_RESERVED = ("input_shape", "num_outputs", "task", "compile", "name")
# Derived from the builder's signature so that a new `build_gru` argument is usable here.
_BUILDER_ARGS = tuple(
    name for name in inspect.signature(build_gru).parameters
    if name not in _RESERVED and name != "variant"
)
# Hyperparameter names (per-layer ones are `units_0`, `conv_filters_1`, ...).
SPACE_NAMES = tuple(DEFAULT_SPACE)


# What `build_gru` accepts for each searchable argument: its own rules (`batch_size`:
# `fit`'s). Every value a range or a list can take must be accepted, or the search would
# fail trial by trial (or, for a dropout of 1.0 or more, train nothing); tests check this
# table against `build_gru` itself.
BUILD_ALLOWED = {
    **{name: ARGUMENT_RULES[name] for name in (
        "num_layers", "units", "dropout", "recurrent_dropout", "conv_layers", "conv_filters",
        "conv_kernel_size", "pool_size", "attention", "attention_heads", "branch_dropout",
        "variant", "cell")},
    # `build_gru` checks the learning rate only when it builds Adam, and more loosely.
    "learning_rate": (is_positive_number, "a positive float"),
    "batch_size": (is_positive_int, "a positive int"),
    # Not a `build_gru` argument: the hypermodel multiplies `conv_filters` by it.
    "conv_width": (is_positive_number, "a positive float (a multiplier of `conv_filters`)"),
}


def _check_space_entry(name, spec):
    """Validates one search-space override; returns (kind, kwargs) or a fixed value.

    Besides its form, every value the entry can take (a range's ends, each value of a
    list, the fixed value) must be one `build_gru` accepts (`BUILD_ALLOWED`).
    """
    kind, kwargs = _parse_space_entry(name, spec)
    if kind in ("int", "float"):
        values = [kwargs["min_value"], kwargs["max_value"], kwargs["default"]]
    elif kind == "choice":
        values = kwargs["values"]
    else:
        values = [kwargs["value"]]
    check, allowed = BUILD_ALLOWED[name]
    bad = [value for value in values if not check(value)]
    if bad:
        fail(f"space[{name!r}]", spec, f"a range or values that `build_gru` accepts for "
             f"`{name}`: {allowed} (not {bad[0]!r})")
    return kind, kwargs


def _parse_space_entry(name, spec):
    kind, default_spec = DEFAULT_SPACE[name]
    argument = f"space[{name!r}]"
    if isinstance(spec, (list, tuple)):
        if not spec:
            fail(argument, spec, "a non-empty list of values")
        if kind == "choice" and name in ("variant", "cell", "attention"):
            allowed = default_spec["values"]
            bad = [v for v in spec if v not in allowed]
            if bad:
                fail(argument, spec, f"a list of values from {allowed}")
        return ("choice", dict(values=list(spec), default=spec[0]))
    if isinstance(spec, dict):
        if kind == "choice" and "values" not in spec:
            fail(argument, spec, "a list of values or {values = [...]}")
        allowed_keys = {"min", "max", "step", "sampling", "default", "values"}
        unknown = sorted(set(spec) - allowed_keys)
        if unknown:
            fail(argument, spec, f"a dict with keys from {sorted(allowed_keys)} "
                 f"(unknown: {unknown})")
        if "values" in spec:
            return _parse_space_entry(name, list(spec["values"]))
        low, high = spec.get("min"), spec.get("max")
        numeric = kind in ("int", "float")
        if not numeric or low is None or high is None:
            fail(argument, spec, "a dict with `min` and `max` (numeric parameters only)")
        check = is_int if kind == "int" else is_number
        if not check(low) or not check(high) or low > high:
            fail(argument, spec, f"`min` <= `max`, both {kind}s")
        sampling = spec.get("sampling", "linear")
        if sampling not in ("linear", "log", "reverse_log"):
            fail(argument, spec, "a `sampling` of 'linear', 'log' or 'reverse_log'")
        if sampling != "linear" and low <= 0:
            fail(argument, spec, f"`min` > 0 for sampling={sampling!r}")
        kwargs = dict(min_value=low, max_value=high, sampling=sampling)
        if "step" in spec:
            if not check(spec["step"]) or spec["step"] <= 0:
                fail(argument, spec, f"a positive {kind} `step`")
            kwargs["step"] = spec["step"]
        elif kind == "int":
            kwargs["step"] = 1
        default = spec.get("default", min(max(default_spec.get("default", low), low), high))
        if kind == "int":
            default = int(default)
        kwargs["default"] = default
        return (kind, kwargs)
    # A scalar fixes the parameter.
    if name in ("variant", "cell", "attention") and spec not in default_spec["values"]:
        fail(argument, spec, f"one of {default_spec['values']}")
    if not (is_number(spec) or isinstance(spec, str)):
        fail(argument, spec, "a value, a list of values or a {min, max} dict")
    return ("fixed", dict(value=spec))


def _plain(value):
    """`value` with NumPy scalars and arrays as Python ones (`np.int64(4)` -> `4`,
    `np.arange(4, 12, 4)` -> `[4, 8]`), inside lists, tuples and dicts too: keras-tuner's
    `Choice` / `Fixed` and Keras's layer arguments take Python numbers only."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class GRUHyperModel(keras_tuner.HyperModel):
    """Maps keras-tuner hyperparameters to `zoo.build_gru` arguments.

    Args:
        variant: str, a key of `zoo.VARIANTS`, or `None` to search over the variants
            too (the `variant` hyperparameter; the convolution and attention
            parameters are then conditional on it). Defaults to `"stacked"`.
        input_shape: `(time, features)` or `(time,)` for token ids.
        num_outputs: int, classes or regression outputs.
        task: str, a key of `zoo.TASKS`. Defaults to `"classification"`.
        cells: list of cells to search over, from `zoo.CELLS`. Defaults to
            `["gru"]` (`["gru", "lstm", "rnn"]` when `variant=None`). With one cell
            the cell is fixed and no `cell` hyperparameter is registered.
        space: dict of search-space overrides, hyperparameter name (see
            `SPACE_NAMES`) → a list of values (a choice), a dict
            `{min, max, step, sampling, default}`, or a scalar (fixed). NumPy
            scalars and arrays are taken as Python numbers and lists.
        fixed: dict of other `build_gru` keyword arguments passed unchanged
            (e.g. `vocab_size`, `clipnorm`, `dense_units`; NumPy scalars as Python
            numbers).
        seed: int or `None`, seeds weight initialisation before each build so a
            retrain with the same hyperparameters starts from the same weights.
        name: str, the hypermodel name.
    """

    def __init__(self, variant="stacked", *, input_shape, num_outputs,
                 task="classification", cells=None, space=None, fixed=None, seed=None,
                 name=None):
        if variant is not None and variant not in VARIANTS:
            fail("variant", variant, f"one of {sorted(VARIANTS)} or None (search variants)")
        # The builder's own rules, checked now rather than in the first build.
        check_argument("task", task)
        input_shape = check_input_shape(input_shape)
        check_argument("num_outputs", num_outputs)
        if cells is None:
            cells = ["gru"] if variant is not None else sorted(CELLS)
        if (not isinstance(cells, (list, tuple)) or not cells
                or any(c not in CELLS for c in cells)):
            fail("cells", cells, f"a non-empty list of cells from {sorted(CELLS)}")
        space = {k: _plain(v) for k, v in dict(space or {}).items()}
        unknown = sorted(set(space) - set(SPACE_NAMES))
        if unknown:
            fail("space", space, f"a dict keyed by hyperparameter names from "
                 f"{list(SPACE_NAMES)} (unknown: {unknown})")
        if "variant" in space and variant is not None:
            fail("space", space, "without a 'variant' entry when `variant` is fixed "
                 f"(variant={variant!r}); pass variant=None to search variants")
        if "cell" in space:
            fail("space", space, "without a 'cell' entry; use `cells=[...]`")
        fixed = {k: _plain(v) for k, v in dict(fixed or {}).items()}
        for key in fixed:
            if key in _RESERVED:
                fail("fixed", fixed, f"without {key!r}: it is a hypermodel argument")
            if key not in _BUILDER_ARGS:
                fail("fixed", fixed, f"a dict of `build_gru` arguments from "
                     f"{sorted(_BUILDER_ARGS)} (unknown: {key!r})")
        both = sorted(set(fixed) & set(space))
        if both:
            fail("fixed", fixed, f"disjoint from `space` (both set: {both})")
        if "cell" in fixed:
            fail("fixed", fixed, "without 'cell'; use `cells=[...]`")
        if seed is not None and not is_non_negative_int(seed):
            fail("seed", seed, "a non-negative int or None")
        super().__init__(name=name or f"gru_{variant or 'any'}", tunable=True)
        self.variant = variant
        self.input_shape = input_shape
        self.num_outputs = int(num_outputs)
        self.task = task
        self.cells = list(cells)
        self.space = {name: _check_space_entry(name, spec) for name, spec in space.items()}
        self.fixed = fixed
        self.seed = None if seed is None else int(seed)
        # Fail now, not in the first trial: the builder validates every fixed argument.
        build_gru(**self.build_kwargs(keras_tuner.HyperParameters()))

    # === Hyperparameters ===
    def _hp(self, hp, name):
        """Registers `name` (with the space override, if any) and returns its value."""
        base = name.rsplit("_", 1)[0] if name[-1].isdigit() else name
        kind, kwargs = self.space.get(base) or DEFAULT_SPACE[base]
        kwargs = dict(kwargs)
        if kind == "int":
            value = hp.Int(name, **kwargs)
        elif kind == "float":
            value = hp.Float(name, **kwargs)
        elif kind == "choice":
            value = hp.Choice(name, **kwargs)
        else:
            value = hp.Fixed(name, kwargs["value"])
        return value

    def _searched(self, name):
        return self.space.get(name, DEFAULT_SPACE[name])

    def build_kwargs(self, hp):
        """Returns the `build_gru` keyword arguments for these hyperparameters."""
        kwargs = dict(input_shape=self.input_shape, num_outputs=self.num_outputs,
                      task=self.task)
        if self.variant is None:
            variant = self._hp(hp, "variant")
        else:
            variant = self.variant
        kwargs["variant"] = variant
        if len(self.cells) > 1:
            kwargs["cell"] = hp.Choice("cell", self.cells, default=self.cells[0])
        else:
            kwargs["cell"] = self.cells[0]
        if "num_layers" in self.fixed:
            num_layers = self.fixed["num_layers"]
        else:
            num_layers = self._hp(hp, "num_layers")
        kwargs["num_layers"] = num_layers
        if "units" not in self.fixed:
            max_layers = self._max(hp, "num_layers", num_layers)
            units = []
            for index in range(max_layers):
                # `units_i` exists only when the stack has more than i layers.
                if index == 0 or "num_layers" in self.fixed:
                    # The first layer, or every layer of a fixed count (a conditional
                    # scope needs `num_layers` to be a hyperparameter).
                    value = self._hp(hp, f"units_{index}")
                else:
                    with hp.conditional_scope("num_layers",
                                              list(range(index + 1, max_layers + 1))):
                        value = self._hp(hp, f"units_{index}")
                if index < num_layers:
                    units.append(value)
            kwargs["units"] = units[0] if len(units) == 1 else units
        for name in ("dropout", "recurrent_dropout", "learning_rate"):
            if name not in self.fixed:
                kwargs[name] = self._hp(hp, name)
        self._variant_parameters(hp, variant, kwargs)
        width = kwargs.pop("conv_width", None)
        # `batch_size` is a fit argument here (build_gru's is a static batch size).
        kwargs.update({k: v for k, v in self.fixed.items() if k != "batch_size"})
        if width is not None:
            filters = kwargs.get("conv_filters", 64)  # build_gru's default
            scale = lambda f: max(1, int(round(f * float(width))))  # noqa: E731
            kwargs["conv_filters"] = ([scale(f) for f in filters]
                                      if isinstance(filters, (list, tuple)) else scale(filters))
        return kwargs

    def _max(self, hp, name, current):
        """The largest value hp `name` can take (to declare per-layer parameters)."""
        kind, kwargs = self._searched(name)
        if name in self.fixed:
            return current
        if kind == "fixed":
            return kwargs["value"]
        if kind == "choice":
            return max(kwargs["values"])
        return kwargs["max_value"]

    def _variant_parameters(self, hp, variant, kwargs):
        """Convolution and attention parameters, conditional on the variant."""
        searching = self.variant is None
        conv_variants = [name for name, v in VARIANTS.items() if v.uses_conv]
        attention_variants = [name for name, v in VARIANTS.items() if v.uses_attention]
        if searching:
            allowed = self.space.get("variant", DEFAULT_SPACE["variant"])[1]
            allowed = allowed.get("values") or [allowed.get("value")]
            conv_variants = [v for v in conv_variants if v in allowed]
            attention_variants = [v for v in attention_variants if v in allowed]
        sequence_task = self.task in ("sequence_labeling", "sequence_regression")

        def conv():
            values = {}
            if "conv_layers" in self.fixed:
                conv_layers = self.fixed["conv_layers"]
            else:
                conv_layers = self._hp(hp, "conv_layers")
            max_conv = self._max(hp, "conv_layers", conv_layers)
            active = conv_layers or 0  # None inside an inactive conditional scope
            filters, kernels = [], []
            for index in range(max_conv):
                scope = list(range(index + 1, max_conv + 1))
                if index == 0 or "conv_layers" in self.fixed:
                    # Always present: the first layer, or every layer of a fixed count
                    # (a conditional scope needs `conv_layers` to be a hyperparameter).
                    f = (None if "conv_filters" in self.fixed
                         else self._hp(hp, f"conv_filters_{index}"))
                    k = (None if "conv_kernel_size" in self.fixed
                         else self._hp(hp, f"conv_kernel_size_{index}"))
                else:
                    with hp.conditional_scope("conv_layers", scope):
                        f = (None if "conv_filters" in self.fixed
                             else self._hp(hp, f"conv_filters_{index}"))
                        k = (None if "conv_kernel_size" in self.fixed
                             else self._hp(hp, f"conv_kernel_size_{index}"))
                if index < active:
                    filters.append(f)
                    kernels.append(k)
            values["conv_layers"] = conv_layers
            if "conv_width" in self.space:
                values["conv_width"] = self._hp(hp, "conv_width")
            if "conv_filters" not in self.fixed:
                values["conv_filters"] = filters[0] if len(filters) == 1 else filters
            if "conv_kernel_size" not in self.fixed:
                values["conv_kernel_size"] = kernels[0] if len(kernels) == 1 else kernels
            if not sequence_task and "pool_size" not in self.fixed:
                values["pool_size"] = self._hp(hp, "pool_size")
            return values

        def attention():
            values = {}
            attention_type = (self.fixed["attention"] if "attention" in self.fixed
                              else self._hp(hp, "attention"))
            values["attention"] = attention_type
            if "attention_heads" not in self.fixed:
                if "attention" in self.fixed:
                    if attention_type == "multihead":
                        values["attention_heads"] = self._hp(hp, "attention_heads")
                else:
                    with hp.conditional_scope("attention", ["multihead"]):
                        heads = self._hp(hp, "attention_heads")
                    if attention_type == "multihead":
                        values["attention_heads"] = heads
            return values

        # gru_fcn's own knob: dropout on its recurrent branch.
        if "branch_dropout" not in self.fixed:
            if searching:
                if "gru_fcn" in conv_variants:
                    with hp.conditional_scope("variant", ["gru_fcn"]):
                        branch_dropout = self._hp(hp, "branch_dropout")
                    if variant == "gru_fcn":
                        kwargs["branch_dropout"] = branch_dropout
            elif variant == "gru_fcn":
                kwargs["branch_dropout"] = self._hp(hp, "branch_dropout")
        if searching:
            if conv_variants:
                with hp.conditional_scope("variant", conv_variants):
                    conv_values = conv()
                if variant in conv_variants:
                    kwargs.update(conv_values)
            if attention_variants:
                with hp.conditional_scope("variant", attention_variants):
                    attention_values = attention()
                if variant in attention_variants:
                    kwargs.update(attention_values)
        else:
            if VARIANTS[variant].uses_conv:
                kwargs.update(conv())
            if VARIANTS[variant].uses_attention:
                kwargs.update(attention())
        for key in [k for k, v in kwargs.items() if v is None]:
            del kwargs[key]

    # === keras-tuner API ===
    def declare_hyperparameters(self, hp):
        self.build_kwargs(hp)
        if "batch_size" not in self.fixed:
            self._hp(hp, "batch_size")

    def build(self, hp):
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        return build_gru(**self.build_kwargs(hp))

    def fit(self, hp, model, *args, **kwargs):
        """`model.fit` with the `batch_size` hyperparameter (the only fit argument tuned)."""
        if "batch_size" in self.fixed:
            kwargs["batch_size"] = self.fixed["batch_size"]
        else:
            kwargs["batch_size"] = self._hp(hp, "batch_size")
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        return model.fit(*args, **kwargs)


# One hypermodel per zoo variant, plus "any" (searches the variant and the cell too).
HYPERMODELS = {name: functools.partial(GRUHyperModel, name) for name in VARIANTS}
HYPERMODELS["any"] = functools.partial(GRUHyperModel, None)


def default_hyperparameters(hypermodel):
    """The default values of every hyperparameter of `hypermodel` (the default config)."""
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    return dict(hp.values)

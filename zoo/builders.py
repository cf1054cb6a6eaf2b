"""`build_gru`: one call that returns a compiled GRU model of the variant you need.

Every variant shares the same front (float features, optionally masked, or token ids
with an embedding and masking), the same recurrent stack (GRU, LSTM or SimpleRNN
cells, per-layer units and dropouts) and the same task heads, so that swapping the
cell or the variant changes nothing else.

`build_gru` works in three steps: it checks every argument (`_check_arguments`, each
error naming the argument and the value received), resolves them into a `GRUSpec` (one
frozen record with the same fields for every variant) and builds the layers from that
spec (`_build_model` and the body builders, which read it by attribute).
"""

import dataclasses
import inspect
import typing

import keras

# The names live in `zoo.catalog` (no Keras there, for the command line); re-exported here.
from zoo.catalog import ATTENTION_TYPES, CELLS, SEQUENCE_TASKS, TASKS, VARIANT_DESCRIPTIONS
from zoo.checks import (check, fail, is_bool, is_finite_number, is_int,
                        is_non_negative_number, is_positive_int, is_positive_number,
                        is_rate, plain)
from zoo.layers import (
    WINDOW_NORM_MODES,
    AttentionPooling,
    MultiHeadAttentionPooling,
    WindowDenormalization,
    WindowNormalization,
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """A registry entry: a name, a one-line description and the body builder."""

    name: str
    description: str
    body: typing.Callable
    uses_conv: bool = False
    uses_attention: bool = False
    bidirectional: bool = False

    def __call__(self, **kwargs):
        return build_gru(self.name, **kwargs)


# === The resolved arguments ===
@dataclasses.dataclass(frozen=True)
class RecurrentSpec:
    """The recurrent stack: `units`, `dropout` and `recurrent_dropout` hold one value per
    layer."""

    cell: str
    units: tuple
    dropout: tuple
    recurrent_dropout: tuple
    reset_after: bool
    unroll: bool
    use_cudnn: typing.Union[str, bool]
    bidirectional: bool

    @property
    def num_layers(self):
        return len(self.units)


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """The Conv1D front of the CNN variants: `filters` and `kernel_size` hold one value per
    convolution."""

    filters: tuple
    kernel_size: tuple
    batchnorm: bool
    pool_size: int


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
    """Attention of the attention variants: `kind` is `"additive"` or `"multihead"`."""

    kind: str
    heads: int
    units: typing.Optional[int]


@dataclasses.dataclass(frozen=True)
class CompileSpec:
    """What `compile` is given; `optimizer=None` means Adam with `learning_rate` and
    `clipnorm`, `loss` and `metrics` `None` the task's defaults."""

    optimizer: typing.Any
    learning_rate: float
    clipnorm: typing.Optional[float]
    loss: typing.Any
    metrics: typing.Any


@dataclasses.dataclass(frozen=True)
class GRUSpec:
    """`build_gru`'s arguments, checked and resolved. The fields are the same for every
    variant; what a model does not use is `None`: `conv` without convolutions,
    `attention` without attention, `branch_dropout` outside `gru_fcn`, `vocab_size` and
    `embedding_dim` for float inputs, `window_norm_channel` without `window_norm`,
    `compile` when the model is not compiled."""

    variant: str
    task: str
    num_outputs: int
    name: str
    # Inputs.
    input_shape: tuple
    batch_size: typing.Optional[int]
    vocab_size: typing.Optional[int]
    embedding_dim: typing.Optional[int]
    mask_value: typing.Optional[float]
    input_noise: float
    window_norm: typing.Optional[str]
    window_norm_channel: typing.Optional[int]
    causal: bool
    # Body.
    recurrent: RecurrentSpec
    conv: typing.Optional[ConvSpec]
    attention: typing.Optional[AttentionSpec]
    branch_dropout: typing.Optional[float]
    # Head and training setup.
    dense_units: typing.Optional[int]
    head_dropout: float
    compile: typing.Optional[CompileSpec]

    @property
    def tokens(self):
        """Token-id inputs (`input_shape=(time,)`) rather than float features."""
        return len(self.input_shape) == 1

    @property
    def sequence_output(self):
        """One output per time step (the per-step tasks)."""
        return self.task in SEQUENCE_TASKS


# === Layers, read from the spec ===
def _recurrent_layer(recurrent, index, *, return_sequences):
    kwargs = dict(
        units=recurrent.units[index],
        return_sequences=return_sequences,
        dropout=recurrent.dropout[index],
        recurrent_dropout=recurrent.recurrent_dropout[index],
        unroll=recurrent.unroll,
    )
    cell = recurrent.cell
    if cell == "gru":
        layer = keras.layers.GRU(
            reset_after=recurrent.reset_after, use_cudnn=recurrent.use_cudnn, **kwargs
        )
    elif cell == "lstm":
        layer = keras.layers.LSTM(use_cudnn=recurrent.use_cudnn, **kwargs)
    else:
        layer = keras.layers.SimpleRNN(**kwargs)
    if recurrent.bidirectional:
        return keras.layers.Bidirectional(layer, name=f"bidirectional_{cell}_{index}")
    layer.name = f"{cell}_{index}"
    return layer


def _recurrent_stack(x, recurrent, *, last_returns_sequences, mask=None):
    num_layers = recurrent.num_layers
    for index in range(num_layers):
        return_sequences = last_returns_sequences or index < num_layers - 1
        layer = _recurrent_layer(recurrent, index, return_sequences=return_sequences)
        x = layer(x, mask=mask) if mask is not None and index == 0 else layer(x)
    return x


def _conv_stack(x, spec, mask):
    """Conv1D feature extractor. Returns the features and the (downsampled) mask.

    Convolutions use `padding="same"` (or `"causal"` with `causal=True`: step t sees
    steps t-kernel_size+1..t only) and ReLU; with a mask, padded steps are zeroed
    first, so a valid step sees exactly the zeros that the padding would give an
    unpadded sequence and padding does not change the result.
    """
    causal = spec.causal
    conv = spec.conv
    if mask is not None:
        x = x * keras.ops.cast(mask, x.dtype)[..., None]
    for index, (filters, kernel_size) in enumerate(zip(conv.filters, conv.kernel_size)):
        x = keras.layers.Conv1D(
            filters,
            kernel_size,
            padding="causal" if causal else "same",
            activation=None if conv.batchnorm else "relu",
            kernel_initializer="he_normal",
            name=f"conv1d_{index}",
        )(x)
        if conv.batchnorm:
            # FCN-style block (Wang et al. 2017): convolution, batch norm, ReLU.
            x = keras.layers.BatchNormalization(name=f"conv_batchnorm_{index}")(x)
            x = keras.layers.Activation("relu", name=f"conv_relu_{index}")(x)
        if mask is not None:
            x = x * keras.ops.cast(mask, x.dtype)[..., None]
    pool_size = conv.pool_size
    if pool_size > 1:
        mask_steps = None if mask is None else keras.ops.cast(mask, x.dtype)[..., None]
        if causal:
            # "same" pooling centres its padding, so a window's start depends on the
            # length. Causal windows start at step 0 (steps kp..kp+p-1); the last one
            # may be partial: zeros padded at the end fill it, which never win a max
            # of ReLU outputs (>= 0), so a window is pooled over the steps it has.
            # Pooled step k is known once step kp+p-1 (or the last step) has arrived.
            end_padding = keras.layers.ZeroPadding1D((0, pool_size - 1), name="pool_padding")
            x = end_padding(x)
            if mask_steps is not None:
                mask_steps = keras.layers.ZeroPadding1D(
                    (0, pool_size - 1), name="mask_pool_padding")(mask_steps)
        padding = "valid" if causal else "same"
        x = keras.layers.MaxPooling1D(pool_size, padding=padding, name="max_pool")(x)
        if mask_steps is not None:
            # A pooled step is valid when any step of its window was; ReLU outputs are
            # >= 0, so the zeroed padded steps never win the max of a partial window.
            pooled = keras.layers.MaxPooling1D(pool_size, padding=padding, name="mask_pool")(
                mask_steps)
            mask = pooled[..., 0] > 0.5
    return x, mask


def _attention(x, spec, *, sequence_output):
    attention = spec.attention
    if sequence_output:
        # Self-attention over the states with a residual connection keeps one output
        # per step for sequence tasks.
        # With `causal=True` step t attends to steps <= t only.
        causal = spec.causal
        if attention.kind == "additive":
            attended = keras.layers.AdditiveAttention(name="self_attention")(
                [x, x], use_causal_mask=causal)
        else:
            features = x.shape[-1]
            attended = keras.layers.MultiHeadAttention(
                num_heads=attention.heads,
                key_dim=max(1, features // attention.heads),
                name="self_attention",
            )(x, x, use_causal_mask=causal)
        x = keras.layers.Add(name="attention_residual")([x, attended])
        return keras.layers.LayerNormalization(name="attention_norm")(x)
    if attention.kind == "additive":
        return AttentionPooling(attention.units, name="attention_pooling")(x)
    return MultiHeadAttentionPooling(attention.heads, name="attention_pooling")(x)


def _stacked_body(x, spec, mask):
    return _recurrent_stack(x, spec.recurrent, last_returns_sequences=spec.sequence_output,
                            mask=mask)


def _attention_body(x, spec, mask):
    x = _recurrent_stack(x, spec.recurrent, last_returns_sequences=True, mask=mask)
    return _attention(x, spec, sequence_output=spec.sequence_output)


def _cnn_gru_body(x, spec, mask):
    x, mask = _conv_stack(x, spec, mask)
    return _stacked_body(x, spec, mask)


def _cnn_gru_attention_body(x, spec, mask):
    x, mask = _conv_stack(x, spec, mask)
    return _attention_body(x, spec, mask)


def _gru_fcn_body(x, spec, mask):
    """GRU-FCN (Elsayed et al. 2018; LSTM-FCN, Karim et al. 2017): two branches side by side.

    The recurrent branch reads the raw sequence (with its mask) and ends in a heavy
    dropout; the fully convolutional branch (FCN, Wang et al. 2017) ends in global
    average pooling over time. Their features are concatenated. For per-step tasks
    both branches keep one vector per step (no pooling). Unlike the papers, the
    recurrent branch runs over time rather than over a "dimension shuffle" of the
    input, so masks and variable-length inputs keep working.
    """
    recurrent = _stacked_body(x, spec, mask)
    if spec.branch_dropout > 0:
        recurrent = keras.layers.Dropout(spec.branch_dropout, name="branch_dropout")(recurrent)
    conv, conv_mask = _conv_stack(x, spec, mask)
    if not spec.sequence_output:
        conv = keras.layers.GlobalAveragePooling1D(name="global_average_pool")(
            conv, mask=conv_mask)
    return keras.layers.Concatenate(name="branches")([recurrent, conv])


_BODIES = {
    # name -> (body builder, flags); the descriptions are `zoo.catalog`'s.
    "stacked": (_stacked_body, {}),
    "bidirectional": (_stacked_body, dict(bidirectional=True)),
    "attention": (_attention_body, dict(uses_attention=True)),
    "bidirectional_attention": (_attention_body, dict(uses_attention=True,
                                                      bidirectional=True)),
    "cnn_gru": (_cnn_gru_body, dict(uses_conv=True)),
    "cnn_gru_attention": (_cnn_gru_attention_body, dict(uses_conv=True, uses_attention=True)),
    "gru_fcn": (_gru_fcn_body, dict(uses_conv=True)),
}
VARIANTS = {
    name: Variant(name, description, _BODIES[name][0], **_BODIES[name][1])
    for name, description in VARIANT_DESCRIPTIONS.items()
}


def _head(x, task, num_outputs, name="output"):
    # Dense acts on the last axis, so a 3-D input gives one output per time step.
    if task in ("classification", "sequence_labeling"):
        activation = "sigmoid" if num_outputs == 1 else "softmax"
    else:
        activation = None
    return keras.layers.Dense(num_outputs, activation=activation, name=name)(x)


def default_loss_and_metrics(task, num_outputs):
    """The loss and metrics `build_gru` compiles a model of this task with."""
    if task in ("classification", "sequence_labeling"):
        if num_outputs == 1:
            return "binary_crossentropy", ["accuracy"]
        return "sparse_categorical_crossentropy", ["accuracy"]
    return "mse", ["mae", keras.metrics.RootMeanSquaredError(name="rmse")]


def _build_model(spec):
    """The model `spec` describes: inputs, the variant's body, the task head, compiled
    when `spec.compile` is set."""
    # === Inputs ===
    inputs = keras.Input(
        shape=spec.input_shape,
        batch_size=spec.batch_size,
        dtype="int32" if spec.tokens else "float32",
        name="inputs",
    )
    uses_conv = spec.conv is not None
    mask = None
    if spec.tokens:
        x = keras.layers.Embedding(spec.vocab_size, spec.embedding_dim, mask_zero=True,
                                   name="embedding")(inputs)
        if uses_conv:
            # Conv1D drops Keras masks; carry the mask by hand into the recurrent stack.
            mask = keras.ops.not_equal(inputs, 0)
    elif spec.mask_value is not None:
        x = keras.layers.Masking(mask_value=spec.mask_value, name="masking")(inputs)
        if uses_conv:
            mask = keras.ops.any(keras.ops.not_equal(inputs, spec.mask_value), axis=-1)
    else:
        x = inputs
    window_stats = None
    if spec.window_norm is not None:
        x, *window_stats = WindowNormalization(spec.window_norm, causal=spec.causal,
                                               name="window_norm")(x)
    if spec.input_noise:
        x = keras.layers.GaussianNoise(spec.input_noise, name="input_noise")(x)

    # === Body ===
    x = VARIANTS[spec.variant].body(x, spec, mask)

    # === Head ===
    if spec.dense_units is not None:
        x = keras.layers.Dense(spec.dense_units, activation="relu", name="dense_hidden")(x)
    if spec.head_dropout > 0:
        x = keras.layers.Dropout(spec.head_dropout, name="head_dropout")(x)
    if window_stats is not None and spec.task in ("regression", "sequence_regression"):
        # The head forecasts in the window's normalized units; put its level back.
        outputs = _head(x, spec.task, spec.num_outputs, name="output_normalized")
        outputs = WindowDenormalization(spec.window_norm_channel, name="output")(
            [outputs, *window_stats])
    else:
        outputs = _head(x, spec.task, spec.num_outputs)
    model = keras.Model(inputs, outputs, name=spec.name)

    if spec.compile is not None:
        options = spec.compile
        default_loss, default_metrics = default_loss_and_metrics(spec.task, spec.num_outputs)
        optimizer = options.optimizer
        if optimizer is None:
            optimizer = keras.optimizers.Adam(learning_rate=options.learning_rate,
                                              clipnorm=options.clipnorm)
        model.compile(
            optimizer=optimizer,
            loss=options.loss or default_loss,
            metrics=default_metrics if options.metrics is None else options.metrics,
        )
    return model


# === Argument checks ===
def _optional(predicate):
    return lambda value: value is None or predicate(value)


# What each argument with a rule of its own must be: name -> (predicate, what is allowed).
# `build_gru` checks them with `check_argument`; `tuning` checks the same arguments with
# the same rules. The per-layer arguments (`units`, `dropout`, `recurrent_dropout`,
# `conv_filters`, `conv_kernel_size`) also take a list of such values.
ARGUMENT_RULES = {
    "variant": (lambda v: v in VARIANTS, f"one of {sorted(VARIANTS)}"),
    "cell": (lambda v: v in CELLS, f"one of {sorted(CELLS)}"),
    "task": (lambda v: v in TASKS, f"one of {sorted(TASKS)}"),
    "num_outputs": (is_positive_int, "a positive int"),
    "num_layers": (is_positive_int, "a positive int"),
    "units": (is_positive_int, "a positive int"),
    "dropout": (is_rate, "a float in [0, 1)"),
    "recurrent_dropout": (is_rate, "a float in [0, 1)"),
    "causal": (is_bool, "True or False"),
    "reset_after": (is_bool, "True or False"),
    "unroll": (is_bool, "True or False"),
    "use_cudnn": (lambda v: (isinstance(v, str) and v == "auto") or is_bool(v),
                  "'auto', True or False"),
    "attention": (lambda v: v in ATTENTION_TYPES, f"one of {list(ATTENTION_TYPES)}"),
    "attention_heads": (is_positive_int, "a positive int"),
    "attention_units": (_optional(is_positive_int), "a positive int or None"),
    "conv_layers": (is_positive_int, "a positive int"),
    "conv_filters": (is_positive_int, "a positive int"),
    "conv_kernel_size": (is_positive_int, "a positive int"),
    "conv_batchnorm": (is_bool, "True or False"),
    "pool_size": (is_positive_int, "a positive int"),
    "branch_dropout": (is_rate, "a float in [0, 1)"),
    "dense_units": (_optional(is_positive_int), "a positive int or None"),
    "head_dropout": (is_rate, "a float in [0, 1)"),
    "batch_size": (_optional(is_positive_int), "a positive int or None"),
    "embedding_dim": (is_positive_int, "a positive int"),
    "compile": (is_bool, "True or False"),
}


def check_argument(argument, value):
    """Raises `ValueError` naming `argument` unless `value` follows its
    `ARGUMENT_RULES` rule."""
    predicate, allowed = ARGUMENT_RULES[argument]
    check(argument, value, predicate(value), allowed)


def check_input_shape(input_shape):
    """Checks `input_shape` (`(time, features)` or `(time,)`) and returns it as a tuple."""
    allowed = "(time, features) or (time,) for token ids, with time None or a positive int"
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) not in (1, 2):
        fail("input_shape", input_shape, allowed)
    time = input_shape[0]
    if time is not None and not is_positive_int(time):
        fail("input_shape", input_shape, allowed)
    if len(input_shape) == 2 and not is_positive_int(input_shape[1]):
        fail("input_shape", input_shape, allowed)
    return tuple(input_shape)


def _per_layer(value, num_layers):
    """A single value or a per-layer list as a tuple of `num_layers` values (each a
    Python value, see `plain`)."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * num_layers
    return tuple(plain(v) for v in values)


def _check_per_layer(argument, value, num_layers):
    """Checks a single value or a list of `num_layers` values, each by `argument`'s rule."""
    predicate, allowed = ARGUMENT_RULES[argument]
    if isinstance(value, (list, tuple)) and len(value) != num_layers:
        raise ValueError(
            f"`{argument}` must be {allowed} or a list of {num_layers} such values "
            f"(one per layer). Received: {argument}={value!r} "
            f"({len(value)} values for {num_layers} layers)"
        )
    for item in _per_layer(value, num_layers):
        if not predicate(item):
            fail(argument, value, f"{allowed} or a list of {num_layers} such values")


# Options only some variants use: name -> which variants use it (a `Variant` flag or a
# variant's name). `build_gru` checks an option for the variants that use it; given to
# another variant (not `None`, not the default) it must still be valid, and the error
# says which variants use it.
_VARIANT_OPTIONS = {
    "attention": "uses_attention",
    "attention_heads": "uses_attention",
    "attention_units": "uses_attention",
    "conv_filters": "uses_conv",
    "conv_kernel_size": "uses_conv",
    "conv_layers": "uses_conv",
    "conv_batchnorm": "uses_conv",
    "pool_size": "uses_conv",
    "branch_dropout": "gru_fcn",
}


def _uses(variant, option):
    owner = _VARIANT_OPTIONS[option]
    return variant.name == owner if owner in VARIANTS else getattr(variant, owner)


def _same(value, default):
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):  # e.g. an array compared elementwise
        return False


def _check_unused_options(variant, given):
    """Options of other variants: `None` or the default means "not given"."""
    defaults = {name: parameter.default for name, parameter in
                inspect.signature(build_gru).parameters.items()}
    for option, value in given.items():
        if _uses(variant, option) or value is None or _same(value, defaults[option]):
            continue
        predicate, allowed = ARGUMENT_RULES[option]
        if option in ("conv_filters", "conv_kernel_size"):
            # A per-layer list: any length, the conv stack is not built.
            values = value if isinstance(value, (list, tuple)) and value else [value]
            valid = all(predicate(v) for v in values)
            allowed = "a positive int or a list of positive ints"
        else:
            valid = predicate(value)
        if not valid:
            users = [name for name, v in VARIANTS.items() if _uses(v, option)]
            raise ValueError(
                f"`{option}` must be {allowed}, and it is an option of the variants "
                f"{users}, not of {variant.name!r} (which does not use it: leave it out, "
                f"or choose one of those variants). Received: {option}={value!r} with "
                f"variant={variant.name!r}"
            )


def _check_compile_argument(argument, value, getter, allowed, special=(), received=None):
    """`loss`, `metrics` and `optimizer` go through Keras's own getters at build time,
    so a typo fails here, naming the argument, instead of inside `fit`."""
    if value is None or (isinstance(value, str) and value.lower() in special):
        return
    try:
        getter(value)
    except (ValueError, TypeError) as error:
        received = value if received is None else received
        raise ValueError(
            f"`{argument}` must be {allowed}. Received: {argument}={received!r} ({error})"
        ) from None


def _check_arguments(arguments):
    """Checks `build_gru`'s arguments (a dict of all of them) group by group: model,
    options of other variants, recurrent stack, this variant's options, head, inputs,
    compile. When several are bad, the first in this order is reported."""
    for argument in ("variant", "cell", "task"):
        check_argument(argument, arguments[argument])
    arguments = dict(arguments, input_shape=check_input_shape(arguments["input_shape"]))
    for argument in ("num_outputs", "num_layers"):
        check_argument(argument, arguments[argument])
    variant = VARIANTS[arguments["variant"]]
    _check_unused_options(variant, {option: arguments[option] for option in _VARIANT_OPTIONS})
    _check_recurrent(**arguments)
    if variant.uses_attention:
        for argument in ("attention", "attention_heads", "attention_units"):
            check_argument(argument, arguments[argument])
    if variant.uses_conv:
        _check_conv(**arguments)
    if variant.name == "gru_fcn":
        check_argument("branch_dropout", arguments["branch_dropout"])
    for argument in ("dense_units", "head_dropout", "batch_size"):
        check_argument(argument, arguments[argument])
    _check_inputs(**arguments)
    check_argument("compile", arguments["compile"])
    if arguments["compile"]:
        _check_compile(**arguments)


def _check_recurrent(*, variant, num_layers, units, dropout, recurrent_dropout, causal,
                     reset_after, unroll, use_cudnn, input_shape, **_):
    for argument, value in (("units", units), ("dropout", dropout),
                            ("recurrent_dropout", recurrent_dropout)):
        _check_per_layer(argument, value, num_layers)
    check_argument("causal", causal)
    if causal and VARIANTS[variant].bidirectional:
        fail("causal", causal, f"False for the variant {variant!r} (its backward "
             "direction reads every later frame before the first output, so it cannot be "
             "causal; use 'stacked' or 'attention' for a causal model)")
    check_argument("reset_after", reset_after)
    check_argument("unroll", unroll)
    if unroll and input_shape[0] is None:
        fail("unroll", unroll, "False when the time dimension of `input_shape` is None "
             f"(an unrolled loop needs a fixed length; input_shape={input_shape!r})")
    check_argument("use_cudnn", use_cudnn)


def _check_conv(*, conv_layers, conv_filters, conv_kernel_size, conv_batchnorm, pool_size,
                task, **_):
    check_argument("conv_layers", conv_layers)
    _check_per_layer("conv_filters", conv_filters, conv_layers)
    _check_per_layer("conv_kernel_size", conv_kernel_size, conv_layers)
    check_argument("conv_batchnorm", conv_batchnorm)
    check_argument("pool_size", pool_size)
    if task in SEQUENCE_TASKS and pool_size != 1:
        fail("pool_size", pool_size, f"1 for the per-step task {task!r} (pooling "
             "would shorten the output sequence)")


def _check_inputs(*, input_shape, vocab_size, embedding_dim, mask_value, input_noise,
                  window_norm, window_norm_channel, **_):
    tokens = len(input_shape) == 1
    if tokens:
        if not is_positive_int(vocab_size) or vocab_size < 2:
            fail("vocab_size", vocab_size, "an int >= 2 for token inputs "
                 f"(input_shape={input_shape!r} means token ids)")
        check_argument("embedding_dim", embedding_dim)
        if mask_value is not None:
            fail("mask_value", mask_value, "None for token inputs (id 0 is the padding)")
    elif vocab_size is not None:
        fail("vocab_size", vocab_size, "None for float inputs: token ids need "
             f"input_shape=(time,), and input_shape={input_shape!r} means (time, "
             "features) floats")
    elif embedding_dim is not None and not is_positive_int(embedding_dim):
        # Like another variant's option: float inputs do not use it, but a value given
        # must still be valid (one dict of sizes can serve token and float models).
        fail("embedding_dim", embedding_dim, "a positive int or None, and it applies only "
             "to token inputs (input_shape=(time,) with vocab_size), not to "
             f"input_shape={input_shape!r}, (time, features) floats that do not use it")
    if not is_non_negative_number(input_noise):
        fail("input_noise", input_noise, "a float >= 0")
    if tokens and input_noise:
        fail("input_noise", input_noise, "0.0 for token inputs")
    elif mask_value is not None and not is_finite_number(mask_value):
        fail("mask_value", mask_value, "a finite float or None (padded steps are found "
             "with ==, which never matches NaN: pad with a finite value such as 0.0)")
    if window_norm is not None:
        if window_norm not in WINDOW_NORM_MODES:
            fail("window_norm", window_norm, f"None or one of {list(WINDOW_NORM_MODES)}")
        if tokens:
            fail("window_norm", window_norm, "None for token inputs "
                 f"(input_shape={input_shape!r} means token ids)")
        if mask_value is not None:
            fail("window_norm", window_norm, "None with `mask_value` (the window "
                 f"statistics would include the padding; mask_value={mask_value!r})")
        if not is_int(window_norm_channel) or not 0 <= window_norm_channel < input_shape[1]:
            fail("window_norm_channel", window_norm_channel,
                 f"an int in [0, {input_shape[1]}) (an input feature)")
    elif not is_int(window_norm_channel) or window_norm_channel < 0:
        # unused without window_norm, but a value given must still be valid
        fail("window_norm_channel", window_norm_channel, "an int >= 0 (an input feature; "
             "it is used with window_norm only)")


def _check_compile(*, loss, metrics, optimizer, learning_rate, clipnorm, **_):
    _check_compile_argument(
        "loss", loss, keras.losses.get, "None, a Keras loss name (e.g. 'mse', "
        "'sparse_categorical_crossentropy'), a keras.losses.Loss or a callable",
        special=("crossentropy", "ce"))
    if metrics is not None:
        if isinstance(metrics, (str, keras.metrics.Metric)) or callable(metrics) or \
                not isinstance(metrics, (list, tuple, dict)):
            fail("metrics", metrics, "None or a list of Keras metric names, "
                 "keras.metrics.Metric objects or callables")
        items = metrics.values() if isinstance(metrics, dict) else metrics
        for item in items:
            for metric in (item if isinstance(item, (list, tuple)) else [item]):
                _check_compile_argument(
                    "metrics", metric, keras.metrics.get, "a list of Keras metric "
                    "names (e.g. 'accuracy', 'mae'), keras.metrics.Metric objects or "
                    "callables", special=("accuracy", "acc"), received=metrics)
    _check_compile_argument(
        "optimizer", optimizer, keras.optimizers.get, "None (Adam with `learning_rate` "
        "and `clipnorm`), a Keras optimizer name (e.g. 'adam', 'sgd') or a "
        "keras.optimizers.Optimizer")
    if optimizer is None:
        if not is_positive_number(learning_rate):
            fail("learning_rate", learning_rate, "a positive float")
        if clipnorm is not None and not is_positive_number(clipnorm):
            fail("clipnorm", clipnorm, "a positive float or None")


# === The spec ===
def _make_spec(arguments):
    """The `GRUSpec` of `build_gru`'s arguments (a dict of all of them, checked).

    Every number and flag becomes Python's own int, float or bool (`plain`): the checks
    take NumPy scalars (`zoo.checks`), Keras layers and optimizers refuse them."""
    a = {name: plain(value) for name, value in arguments.items()}
    variant = VARIANTS[a["variant"]]
    input_shape = tuple(plain(size) for size in a["input_shape"])
    tokens = len(input_shape) == 1
    num_layers = a["num_layers"]
    recurrent = RecurrentSpec(
        cell=a["cell"],
        units=_per_layer(a["units"], num_layers),
        dropout=_per_layer(a["dropout"], num_layers),
        recurrent_dropout=_per_layer(a["recurrent_dropout"], num_layers),
        reset_after=a["reset_after"],
        unroll=a["unroll"],
        use_cudnn=a["use_cudnn"],
        bidirectional=variant.bidirectional,
    )
    conv = None
    if variant.uses_conv:
        conv = ConvSpec(
            filters=_per_layer(a["conv_filters"], a["conv_layers"]),
            kernel_size=_per_layer(a["conv_kernel_size"], a["conv_layers"]),
            batchnorm=a["conv_batchnorm"],
            pool_size=a["pool_size"],
        )
    attention = None
    if variant.uses_attention:
        attention = AttentionSpec(kind=a["attention"], heads=a["attention_heads"],
                                  units=a["attention_units"])
    compile_spec = None
    if a["compile"]:
        learning_rate, clipnorm = a["learning_rate"], a["clipnorm"]
        if a["optimizer"] is None:  # checked numbers; Adam takes only a float rate
            learning_rate = float(learning_rate)
            clipnorm = None if clipnorm is None else float(clipnorm)
        compile_spec = CompileSpec(optimizer=a["optimizer"], learning_rate=learning_rate,
                                   clipnorm=clipnorm, loss=a["loss"], metrics=a["metrics"])
    return GRUSpec(
        variant=variant.name,
        task=a["task"],
        num_outputs=a["num_outputs"],
        name=a["name"] or f"{variant.name}_{a['cell']}",
        input_shape=input_shape,
        batch_size=a["batch_size"],
        vocab_size=a["vocab_size"] if tokens else None,
        embedding_dim=a["embedding_dim"] if tokens else None,
        mask_value=None if a["mask_value"] is None else float(a["mask_value"]),
        input_noise=float(a["input_noise"]),
        window_norm=a["window_norm"],
        window_norm_channel=None if a["window_norm"] is None else a["window_norm_channel"],
        causal=a["causal"],
        recurrent=recurrent,
        conv=conv,
        attention=attention,
        branch_dropout=a["branch_dropout"] if variant.name == "gru_fcn" else None,
        dense_units=a["dense_units"],
        head_dropout=a["head_dropout"],
        compile=compile_spec,
    )


def build_gru(
    variant="stacked",
    *,
    input_shape,
    num_outputs,
    task="classification",
    cell="gru",
    units=64,
    num_layers=2,
    dropout=0.0,
    recurrent_dropout=0.0,
    reset_after=True,
    unroll=False,
    use_cudnn="auto",
    vocab_size=None,
    embedding_dim=64,
    mask_value=None,
    input_noise=0.0,
    window_norm=None,
    window_norm_channel=0,
    causal=False,
    attention="additive",
    attention_heads=4,
    attention_units=None,
    conv_filters=64,
    conv_kernel_size=5,
    conv_layers=1,
    conv_batchnorm=False,
    pool_size=1,
    branch_dropout=0.8,
    dense_units=None,
    head_dropout=0.0,
    batch_size=None,
    compile=True,
    learning_rate=1e-3,
    clipnorm=1.0,
    optimizer=None,
    loss=None,
    metrics=None,
    name=None,
):
    """Builds (and by default compiles) a recurrent model of one zoo variant.

    Args:
        variant: str, a key of `zoo.VARIANTS`. Defaults to `"stacked"`.
        input_shape: `(time, features)` for float inputs or `(time,)` for token ids;
            `time` may be `None` for variable-length sequences.
        num_outputs: int, classes (classification tasks; 1 means binary with a
            sigmoid) or values (regression tasks).
        task: str, a key of `zoo.TASKS`. Defaults to `"classification"`.
        cell: str, `"gru"`, `"lstm"` or `"rnn"`. Defaults to `"gru"`.
        units: int or list of ints (one per recurrent layer). Defaults to `64`.
        num_layers: int, number of recurrent layers. Defaults to `2`.
        dropout: float or list, input dropout of each recurrent layer. Defaults to `0.0`.
        recurrent_dropout: float or list, recurrent-state dropout. Defaults to `0.0`.
        reset_after: bool, GRU only: apply the reset gate after the matrix product
            (`True`, the cuDNN/PyTorch form) or before it. Defaults to `True`.
        unroll: bool, unroll the recurrence (needs a fixed `time`). Defaults to `False`.
        use_cudnn: `"auto"`, `True` or `False` (GRU and LSTM). Defaults to `"auto"`.
        vocab_size: int, size of the token vocabulary; required for token inputs.
            Token id 0 is padding and is masked.
        embedding_dim: int, size of the token embedding (token inputs only; float
            inputs do not use it, but a value given must still be valid). Defaults to
            `64`.
        mask_value: finite float or `None`, for float inputs: time steps whose features
            all equal this value are padding and are masked. Defaults to `None`.
        input_noise: float, standard deviation of Gaussian noise added to float inputs
            during training only (a regularizer for small datasets). Defaults to `0.0`.
        window_norm: `None`, `"mean"` or `"meanstd"`: normalize each input window by
            its own mean over time (and standard deviation), per feature
            (`zoo.WindowNormalization`, the input half of RevIN, Kim et al. 2022). For
            `regression` and `sequence_regression` the outputs are forecasts of input
            feature `window_norm_channel` and get that window's statistics back
            (`zoo.WindowDenormalization`), so adding a constant to a window adds it to
            the forecast. For trending series, whose later windows lie outside the
            training levels. Float inputs without `mask_value` only; with
            `causal=True` each frame uses the statistics of the frames so far, and
            only then can the model stream. Defaults to `None`.
        window_norm_channel: int, the input feature the regression outputs forecast
            (with `window_norm`). Defaults to `0`.
        causal: bool, no layer looks at later frames, so that the model runs one frame
            at a time (`export.to_tflite(streaming=True)`) with exactly the outputs it
            has on the whole sequence: convolutions are padded causally
            (`padding="causal"`), max pooling windows start at the first step (the last,
            partial window is pooled over the steps it has), self-attention of per-step
            tasks sees earlier steps only (`use_causal_mask=True`) and `window_norm`
            uses the statistics of the frames seen so far. Recurrent layers, attention
            pooling and global average pooling are causal either way. Not for
            bidirectional variants. Defaults to `False` (centred convolutions, which
            see `(kernel_size - 1) // 2` later frames).
        attention: `"additive"` or `"multihead"`, for attention variants.
        attention_heads: int, heads of multi-head attention. Defaults to `4`.
        attention_units: int or `None`, hidden size of additive attention scoring.
        conv_filters: int or list (one per conv layer), for CNN variants. Defaults to `64`.
        conv_kernel_size: int or list (one per conv layer). Defaults to `5`.
        conv_layers: int, number of Conv1D layers. Defaults to `1`.
        conv_batchnorm: bool, batch normalization after each convolution (FCN-style
            blocks). Defaults to `False`.
        pool_size: int, max-pooling factor after the convolutions (`1`: none).
        branch_dropout: float, `gru_fcn` only: dropout on the recurrent branch's output.
            Defaults to `0.8` (Karim et al. 2017). The published GRU-FCN also uses
            `conv_layers=3, conv_filters=[128, 256, 128], conv_kernel_size=[8, 5, 3],
            conv_batchnorm=True` and a small recurrent layer (`units=8, num_layers=1`).
        dense_units: int or `None`, a hidden ReLU layer before the output.
        head_dropout: float, dropout before the output layer. Defaults to `0.0`.
        batch_size: int or `None`, a static batch size (export rebuilds with 1).
        compile: bool, compile the model. Defaults to `True`.
        learning_rate: float, Adam learning rate. Defaults to `1e-3`.
        clipnorm: float or `None`, gradient clipping by norm. Defaults to `1.0`.
        optimizer, loss, metrics: override the defaults used by `compile`.
        name: str, the model name. Defaults to `"{variant}_{cell}"`.

    Returns:
        A `keras.Model`. Its input is named `"inputs"` and its output layer `"output"`:
        `(batch, num_outputs)` for sequence tasks, `(batch, time, num_outputs)` for
        per-step tasks.

    Example:

    >>> model = build_gru("attention", input_shape=(50, 8), num_outputs=3)
    >>> model.output_shape
    (None, 3)
    """
    arguments = dict(locals())  # every parameter, by name
    _check_arguments(arguments)
    return _build_model(_make_spec(arguments))

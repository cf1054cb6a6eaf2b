"""`build_gru`: one call that returns a compiled GRU model of the variant you need.

Every variant shares the same front (float features, optionally masked, or token ids
with an embedding and masking), the same recurrent stack (GRU, LSTM or SimpleRNN
cells, per-layer units and dropouts) and the same task heads, so that swapping the
cell or the variant changes nothing else.
"""

import dataclasses
import inspect
import numbers
import typing

import keras

# The names live in `zoo.catalog` (no Keras there, for the command line); re-exported here.
from zoo.catalog import ATTENTION_TYPES, CELLS, SEQUENCE_TASKS, TASKS, VARIANT_DESCRIPTIONS
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


def _raise(argument, value, allowed):
    raise ValueError(f"`{argument}` must be {allowed}. Received: {argument}={value!r}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _per_layer(argument, value, num_layers, check, allowed):
    """Expands a single value or a per-layer list into a list of `num_layers` values."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_layers:
            raise ValueError(
                f"`{argument}` must be {allowed} or a list of {num_layers} such values "
                f"(one per layer). Received: {argument}={value!r} "
                f"({len(value)} values for {num_layers} layers)"
            )
        values = list(value)
    else:
        values = [value] * num_layers
    for item in values:
        if not check(item):
            _raise(argument, value, f"{allowed} or a list of {num_layers} such values")
    return values


def _positive_int(value):
    return _is_int(value) and value > 0


def _rate(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value < 1


def _recurrent_layer(spec, index, *, return_sequences):
    kwargs = dict(
        units=spec["units"][index],
        return_sequences=return_sequences,
        dropout=spec["dropout"][index],
        recurrent_dropout=spec["recurrent_dropout"][index],
        unroll=spec["unroll"],
    )
    cell = spec["cell"]
    if cell == "gru":
        layer = keras.layers.GRU(
            reset_after=spec["reset_after"], use_cudnn=spec["use_cudnn"], **kwargs
        )
    elif cell == "lstm":
        layer = keras.layers.LSTM(use_cudnn=spec["use_cudnn"], **kwargs)
    else:
        layer = keras.layers.SimpleRNN(**kwargs)
    if spec["bidirectional"]:
        return keras.layers.Bidirectional(layer, name=f"bidirectional_{cell}_{index}")
    layer.name = f"{cell}_{index}"
    return layer


def _recurrent_stack(x, spec, *, last_returns_sequences, mask=None):
    num_layers = spec["num_layers"]
    for index in range(num_layers):
        return_sequences = last_returns_sequences or index < num_layers - 1
        layer = _recurrent_layer(spec, index, return_sequences=return_sequences)
        x = layer(x, mask=mask) if mask is not None and index == 0 else layer(x)
    return x


def _conv_stack(x, spec, mask):
    """Conv1D feature extractor. Returns the features and the (downsampled) mask.

    Convolutions use `padding="same"` (or `"causal"` with `causal=True`: step t sees
    steps t-kernel_size+1..t only) and ReLU; with a mask, padded steps are zeroed
    first, so a valid step sees exactly the zeros that the padding would give an
    unpadded sequence and padding does not change the result.
    """
    causal = spec["causal"]
    if mask is not None:
        x = x * keras.ops.cast(mask, x.dtype)[..., None]
    for index, (filters, kernel_size) in enumerate(
        zip(spec["conv_filters"], spec["conv_kernel_size"])
    ):
        x = keras.layers.Conv1D(
            filters,
            kernel_size,
            padding="causal" if causal else "same",
            activation=None if spec["conv_batchnorm"] else "relu",
            kernel_initializer="he_normal",
            name=f"conv1d_{index}",
        )(x)
        if spec["conv_batchnorm"]:
            # FCN-style block (Wang et al. 2017): convolution, batch norm, ReLU.
            x = keras.layers.BatchNormalization(name=f"conv_batchnorm_{index}")(x)
            x = keras.layers.Activation("relu", name=f"conv_relu_{index}")(x)
        if mask is not None:
            x = x * keras.ops.cast(mask, x.dtype)[..., None]
    pool_size = spec["pool_size"]
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
    if sequence_output:
        # Self-attention over the states with a residual connection keeps one output
        # per step for sequence tasks.
        # With `causal=True` step t attends to steps <= t only.
        causal = spec["causal"]
        if spec["attention"] == "additive":
            attended = keras.layers.AdditiveAttention(name="self_attention")(
                [x, x], use_causal_mask=causal)
        else:
            features = x.shape[-1]
            attended = keras.layers.MultiHeadAttention(
                num_heads=spec["attention_heads"],
                key_dim=max(1, features // spec["attention_heads"]),
                name="self_attention",
            )(x, x, use_causal_mask=causal)
        x = keras.layers.Add(name="attention_residual")([x, attended])
        return keras.layers.LayerNormalization(name="attention_norm")(x)
    if spec["attention"] == "additive":
        return AttentionPooling(spec["attention_units"], name="attention_pooling")(x)
    return MultiHeadAttentionPooling(spec["attention_heads"], name="attention_pooling")(x)


def _stacked_body(x, spec, mask):
    return _recurrent_stack(x, spec, last_returns_sequences=spec["sequence_output"], mask=mask)


def _attention_body(x, spec, mask):
    x = _recurrent_stack(x, spec, last_returns_sequences=True, mask=mask)
    return _attention(x, spec, sequence_output=spec["sequence_output"])


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
    if spec["branch_dropout"] > 0:
        recurrent = keras.layers.Dropout(spec["branch_dropout"], name="branch_dropout")(recurrent)
    conv, conv_mask = _conv_stack(x, spec, mask)
    if not spec["sequence_output"]:
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


# Options only some variants use: name -> (which variants use it, check, what is allowed).
# `build_gru` validates an option for the variants that use it; given to another variant
# (not `None`, not the default) it must still be valid, and the error says which variants
# use it.
_VARIANT_OPTIONS = {
    "attention": ("uses_attention", lambda v: v in ATTENTION_TYPES,
                  f"one of {list(ATTENTION_TYPES)}"),
    "attention_heads": ("uses_attention", _positive_int, "a positive int"),
    "attention_units": ("uses_attention", _positive_int, "a positive int or None"),
    "conv_filters": ("uses_conv", None, "a positive int or a list of positive ints"),
    "conv_kernel_size": ("uses_conv", None, "a positive int or a list of positive ints"),
    "conv_layers": ("uses_conv", _positive_int, "a positive int"),
    "conv_batchnorm": ("uses_conv", lambda v: isinstance(v, bool), "True or False"),
    "pool_size": ("uses_conv", _positive_int, "a positive int"),
    "branch_dropout": ("gru_fcn", _rate, "a float in [0, 1)"),
}


def _uses(variant, option):
    owner = _VARIANT_OPTIONS[option][0]
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
        _, check, allowed = _VARIANT_OPTIONS[option]
        if check is None:  # a per-layer list: any length, the conv stack is not built
            values = value if isinstance(value, (list, tuple)) and value else [value]
            valid = all(_positive_int(v) for v in values)
        else:
            valid = check(value)
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


def _validate_input_shape(input_shape):
    allowed = "(time, features) or (time,) for token ids, with time None or a positive int"
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) not in (1, 2):
        _raise("input_shape", input_shape, allowed)
    time = input_shape[0]
    if time is not None and not _positive_int(time):
        _raise("input_shape", input_shape, allowed)
    if len(input_shape) == 2 and not _positive_int(input_shape[1]):
        _raise("input_shape", input_shape, allowed)
    return tuple(input_shape)


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
        embedding_dim: int, size of the token embedding. Defaults to `64`.
        mask_value: float or `None`, for float inputs: time steps whose features all
            equal this value are padding and are masked. Defaults to `None`.
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
    if variant not in VARIANTS:
        _raise("variant", variant, f"one of {sorted(VARIANTS)}")
    if cell not in CELLS:
        _raise("cell", cell, f"one of {sorted(CELLS)}")
    if task not in TASKS:
        _raise("task", task, f"one of {sorted(TASKS)}")
    input_shape = _validate_input_shape(input_shape)
    if not _positive_int(num_outputs):
        _raise("num_outputs", num_outputs, "a positive int")
    if not _positive_int(num_layers):
        _raise("num_layers", num_layers, "a positive int")
    spec_variant = VARIANTS[variant]
    _check_unused_options(spec_variant, dict(
        attention=attention, attention_heads=attention_heads, attention_units=attention_units,
        conv_filters=conv_filters, conv_kernel_size=conv_kernel_size, conv_layers=conv_layers,
        conv_batchnorm=conv_batchnorm, pool_size=pool_size, branch_dropout=branch_dropout))
    sequence_output = task in SEQUENCE_TASKS
    spec = dict(
        cell=cell,
        num_layers=num_layers,
        units=_per_layer("units", units, num_layers, _positive_int, "a positive int"),
        dropout=_per_layer("dropout", dropout, num_layers, _rate, "a float in [0, 1)"),
        recurrent_dropout=_per_layer(
            "recurrent_dropout", recurrent_dropout, num_layers, _rate, "a float in [0, 1)"
        ),
        reset_after=reset_after,
        unroll=unroll,
        use_cudnn=use_cudnn,
        bidirectional=spec_variant.bidirectional,
        sequence_output=sequence_output,
        attention=attention,
        attention_heads=attention_heads,
        attention_units=attention_units,
        causal=causal,
    )
    if not isinstance(causal, bool):
        _raise("causal", causal, "True or False")
    if causal and spec_variant.bidirectional:
        _raise("causal", causal, f"False for the variant {variant!r} (its backward direction "
               "reads every later frame before the first output, so it cannot be causal; "
               "use 'stacked' or 'attention' for a causal model)")
    if not isinstance(reset_after, bool):
        _raise("reset_after", reset_after, "True or False")
    if not isinstance(unroll, bool):
        _raise("unroll", unroll, "True or False")
    if unroll and input_shape[0] is None:
        _raise("unroll", unroll, "False when the time dimension of `input_shape` is None "
               f"(an unrolled loop needs a fixed length; input_shape={input_shape!r})")
    if use_cudnn not in ("auto", True, False):
        _raise("use_cudnn", use_cudnn, "'auto', True or False")
    if spec_variant.uses_attention:
        if attention not in ATTENTION_TYPES:
            _raise("attention", attention, f"one of {list(ATTENTION_TYPES)}")
        if not _positive_int(attention_heads):
            _raise("attention_heads", attention_heads, "a positive int")
        if attention_units is not None and not _positive_int(attention_units):
            _raise("attention_units", attention_units, "a positive int or None")
    if spec_variant.uses_conv:
        if not _positive_int(conv_layers):
            _raise("conv_layers", conv_layers, "a positive int")
        spec["conv_filters"] = _per_layer(
            "conv_filters", conv_filters, conv_layers, _positive_int, "a positive int"
        )
        spec["conv_kernel_size"] = _per_layer(
            "conv_kernel_size", conv_kernel_size, conv_layers, _positive_int, "a positive int"
        )
        if not isinstance(conv_batchnorm, bool):
            _raise("conv_batchnorm", conv_batchnorm, "True or False")
        spec["conv_batchnorm"] = conv_batchnorm
        if not _positive_int(pool_size):
            _raise("pool_size", pool_size, "a positive int")
        if sequence_output and pool_size != 1:
            _raise("pool_size", pool_size, f"1 for the per-step task {task!r} (pooling "
                   "would shorten the output sequence)")
        spec["pool_size"] = pool_size
    if variant == "gru_fcn":
        if not _rate(branch_dropout):
            _raise("branch_dropout", branch_dropout, "a float in [0, 1)")
        spec["branch_dropout"] = branch_dropout
    if dense_units is not None and not _positive_int(dense_units):
        _raise("dense_units", dense_units, "a positive int or None")
    if not _rate(head_dropout):
        _raise("head_dropout", head_dropout, "a float in [0, 1)")
    if batch_size is not None and not _positive_int(batch_size):
        _raise("batch_size", batch_size, "a positive int or None")

    tokens = len(input_shape) == 1
    if tokens:
        if not _positive_int(vocab_size) or vocab_size < 2:
            _raise("vocab_size", vocab_size, "an int >= 2 for token inputs "
                   f"(input_shape={input_shape!r} means token ids)")
        if not _positive_int(embedding_dim):
            _raise("embedding_dim", embedding_dim, "a positive int")
        if mask_value is not None:
            _raise("mask_value", mask_value, "None for token inputs (id 0 is the padding)")
    elif vocab_size is not None:
        _raise("vocab_size", vocab_size, "None for float inputs: token ids need "
               f"input_shape=(time,), and input_shape={input_shape!r} means (time, "
               "features) floats")
    if not isinstance(input_noise, numbers.Real) or isinstance(input_noise, bool) or (
        input_noise < 0
    ):
        _raise("input_noise", input_noise, "a float >= 0")
    if tokens and input_noise:
        _raise("input_noise", input_noise, "0.0 for token inputs")
    elif mask_value is not None and (
        not isinstance(mask_value, numbers.Real) or isinstance(mask_value, bool)
    ):
        _raise("mask_value", mask_value, "a float or None")
    if window_norm is not None:
        if window_norm not in WINDOW_NORM_MODES:
            _raise("window_norm", window_norm, f"None or one of {list(WINDOW_NORM_MODES)}")
        if tokens:
            _raise("window_norm", window_norm, "None for token inputs "
                   f"(input_shape={input_shape!r} means token ids)")
        if mask_value is not None:
            _raise("window_norm", window_norm, "None with `mask_value` (the window "
                   f"statistics would include the padding; mask_value={mask_value!r})")
        if not _is_int(window_norm_channel) or not 0 <= window_norm_channel < input_shape[1]:
            _raise("window_norm_channel", window_norm_channel,
                   f"an int in [0, {input_shape[1]}) (an input feature)")

    # === Inputs ===
    inputs = keras.Input(
        shape=input_shape,
        batch_size=batch_size,
        dtype="int32" if tokens else "float32",
        name="inputs",
    )
    mask = None
    if tokens:
        x = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(
            inputs
        )
        if spec_variant.uses_conv:
            # Conv1D drops Keras masks; carry the mask by hand into the recurrent stack.
            mask = keras.ops.not_equal(inputs, 0)
    elif mask_value is not None:
        x = keras.layers.Masking(mask_value=float(mask_value), name="masking")(inputs)
        if spec_variant.uses_conv:
            mask = keras.ops.any(keras.ops.not_equal(inputs, float(mask_value)), axis=-1)
    else:
        x = inputs
    window_stats = None
    if window_norm is not None:
        x, *window_stats = WindowNormalization(window_norm, causal=causal,
                                               name="window_norm")(x)
    if input_noise:
        x = keras.layers.GaussianNoise(float(input_noise), name="input_noise")(x)

    # === Body ===
    x = spec_variant.body(x, spec, mask)

    # === Head ===
    if dense_units is not None:
        x = keras.layers.Dense(dense_units, activation="relu", name="dense_hidden")(x)
    if head_dropout > 0:
        x = keras.layers.Dropout(head_dropout, name="head_dropout")(x)
    if window_stats is not None and task in ("regression", "sequence_regression"):
        # The head forecasts in the window's normalized units; put its level back.
        outputs = _head(x, task, num_outputs, name="output_normalized")
        outputs = WindowDenormalization(window_norm_channel, name="output")(
            [outputs, *window_stats])
    else:
        outputs = _head(x, task, num_outputs)
    model = keras.Model(inputs, outputs, name=name or f"{variant}_{cell}")

    if compile:
        _check_compile_argument(
            "loss", loss, keras.losses.get, "None, a Keras loss name (e.g. 'mse', "
            "'sparse_categorical_crossentropy'), a keras.losses.Loss or a callable",
            special=("crossentropy", "ce"))
        if metrics is not None:
            if isinstance(metrics, (str, keras.metrics.Metric)) or callable(metrics) or \
                    not isinstance(metrics, (list, tuple, dict)):
                _raise("metrics", metrics, "None or a list of Keras metric names, "
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
        default_loss, default_metrics = default_loss_and_metrics(task, num_outputs)
        if optimizer is None:
            if not isinstance(learning_rate, numbers.Real) or learning_rate <= 0:
                _raise("learning_rate", learning_rate, "a positive float")
            if clipnorm is not None and (not isinstance(clipnorm, numbers.Real) or clipnorm <= 0):
                _raise("clipnorm", clipnorm, "a positive float or None")
            optimizer = keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=clipnorm)
        model.compile(
            optimizer=optimizer,
            loss=loss or default_loss,
            metrics=default_metrics if metrics is None else metrics,
        )
    return model

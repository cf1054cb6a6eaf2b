"""PyTorch twins of zoo models, with the Keras weights copied, for the ONNX Runtime peer.

`torch_twin(model)` walks the graph of a `zoo.build_gru` model (float inputs, no mask)
and builds a `torch.nn.Module` that computes the same function:

- `Conv1D` (`padding="same"` or `"valid"`, stride 1): `nn.Conv1d`; "same" pads like
  TensorFlow (the extra step of an even kernel goes on the right);
- `BatchNormalization`: `nn.BatchNorm1d` in inference mode (moving mean and variance,
  Keras's epsilon);
- `MaxPooling1D` (`padding="same"` or `"valid"`): `nn.MaxPool1d` after TensorFlow's
  "same" padding with -inf;
- `GRU` (`reset_after=True`, tanh/sigmoid) and `Bidirectional(GRU)` (`merge_mode="concat"`):
  `nn.GRU`, one per layer, gates reordered from Keras [z, r, h] to PyTorch [r, z, n]. The
  equations are the same (docs/tflite-facts.md, F10), so ONNX export gives the fused ONNX `GRU` op
  with `linear_before_reset=1`;
- `AttentionPooling` (zoo): `score_t = v^T tanh(W h_t + b)`, softmax over time, weighted
  sum of the states: plain matmul/tanh/softmax/sum, no approximation;
- `MultiHeadAttentionPooling` (zoo): Keras `MultiHeadAttention` written out (query, key,
  value and output projections, query scaled by 1/sqrt(key_dim), softmax over time);
- `GlobalAveragePooling1D` (mean over time), `Concatenate` (the `gru_fcn` branches);
- `Dense` (with its activation), `Activation`, `Dropout`/`GaussianNoise` (identity at
  inference).

The twin follows the model's functional graph (`model.operations`), so branches work.
Anything else (masking, embeddings, per-step tasks' self-attention) raises
`NotImplementedError` rather than building a twin that computes something else.
"""

import math

import numpy as np

ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "softmax")


def _activation(name):
    import torch

    if name not in ACTIVATIONS:
        raise NotImplementedError(f"activation {name!r} has no twin (known: {ACTIVATIONS})")
    return {
        "linear": lambda x: x,
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "softmax": lambda x: torch.softmax(x, dim=-1),
    }[name]


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", str(activation))


def _same_padding(size, kernel, stride):
    """TensorFlow's "same" padding of one axis: (left, right)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _tensor(value):
    import torch

    return torch.tensor(np.asarray(value, dtype=np.float32))


def _reorder_gates(weights):  # Keras gates [z, r, h] -> PyTorch [r, z, n]
    z, r, h = np.split(np.asarray(weights), 3, axis=-1)
    return np.concatenate([r, z, h], axis=-1)


def _check_gru(layer, backward=False):
    if type(layer).__name__ != "GRU":
        raise NotImplementedError(f"{layer.name}: only GRU recurrent layers have a twin "
                                  f"(got {type(layer).__name__})")
    if not layer.reset_after:
        raise NotImplementedError(f"{layer.name}: reset_after=False has no nn.GRU twin")
    cell = layer.cell
    if _activation_name(cell) != "tanh" or cell.recurrent_activation.__name__ != "sigmoid":
        raise NotImplementedError(f"{layer.name}: only tanh/sigmoid GRUs have a twin")
    if layer.go_backwards != backward:
        raise NotImplementedError(f"{layer.name}: go_backwards={layer.go_backwards} "
                                  "outside Bidirectional's backward layer")


def _copy_gru(gru, layer, suffix=""):
    import torch

    kernel, recurrent, bias = layer.get_weights()
    with torch.no_grad():
        getattr(gru, f"weight_ih_l0{suffix}").copy_(_tensor(_reorder_gates(kernel).T))
        getattr(gru, f"weight_hh_l0{suffix}").copy_(_tensor(_reorder_gates(recurrent).T))
        getattr(gru, f"bias_ih_l0{suffix}").copy_(_tensor(_reorder_gates(bias[0])))
        getattr(gru, f"bias_hh_l0{suffix}").copy_(_tensor(_reorder_gates(bias[1])))


def _blocks(model):
    """The model's graph as torch modules: `([(module, input keys, output key)], in, out)`.

    Walks `model.operations` (topological order); a module of `None` is the identity.
    """
    import torch

    class Conv(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            kernel, bias = layer.get_weights() if layer.use_bias else (layer.get_weights()[0], None)
            size = kernel.shape[0]
            if layer.strides != (1,) or layer.dilation_rate != (1,) or layer.groups != 1:
                raise NotImplementedError(f"{layer.name}: only stride 1, dilation 1, groups 1")
            if layer.padding not in ("same", "valid"):
                raise NotImplementedError(f"{layer.name}: padding {layer.padding!r}")
            self.pad = (size - 1) // 2, size - 1 - (size - 1) // 2
            if layer.padding == "valid":
                self.pad = (0, 0)
            symmetric = self.pad[0] == self.pad[1]
            self.conv = torch.nn.Conv1d(kernel.shape[1], kernel.shape[2], size,
                                        padding=self.pad[0] if symmetric else 0,
                                        bias=bias is not None)
            self.explicit_pad = not symmetric
            self.activation = _activation(_activation_name(layer))
            with torch.no_grad():
                # Keras (kernel, in, out) -> PyTorch (out, in, kernel); both cross-correlate.
                self.conv.weight.copy_(_tensor(np.transpose(kernel, (2, 1, 0))))
                if bias is not None:
                    self.conv.bias.copy_(_tensor(bias))

        def forward(self, x):
            x = x.transpose(1, 2)
            if self.explicit_pad:
                x = torch.nn.functional.pad(x, self.pad)
            return self.activation(self.conv(x).transpose(1, 2))

    class BatchNorm(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            if layer.axis not in (-1, 2):
                raise NotImplementedError(f"{layer.name}: axis {layer.axis}")
            weights = {w.path.rsplit("/", 1)[-1]: w.numpy() for w in layer.weights}
            features = weights["moving_mean"].shape[0]
            self.norm = torch.nn.BatchNorm1d(features, eps=layer.epsilon,
                                             affine=layer.scale or layer.center)
            with torch.no_grad():
                self.norm.running_mean.copy_(_tensor(weights["moving_mean"]))
                self.norm.running_var.copy_(_tensor(weights["moving_variance"]))
                if self.norm.affine:
                    self.norm.weight.copy_(_tensor(weights.get("gamma", np.ones(features))))
                    self.norm.bias.copy_(_tensor(weights.get("beta", np.zeros(features))))
            self.norm.eval()

        def forward(self, x):
            return self.norm(x.transpose(1, 2)).transpose(1, 2)

    class MaxPool(torch.nn.Module):
        def __init__(self, layer, time):
            super().__init__()
            (size,), (stride,) = layer.pool_size, layer.strides
            self.pad = _same_padding(time, size, stride) if layer.padding == "same" else (0, 0)
            self.pool = torch.nn.MaxPool1d(size, stride)

        def forward(self, x):
            x = x.transpose(1, 2)
            if any(self.pad):
                x = torch.nn.functional.pad(x, self.pad, value=-math.inf)
            return self.pool(x).transpose(1, 2)

    class Recurrent(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.bidirectional = type(layer).__name__ == "Bidirectional"
            if self.bidirectional:
                if layer.merge_mode != "concat":
                    raise NotImplementedError(f"{layer.name}: merge_mode {layer.merge_mode!r}")
                forward, backward = layer.forward_layer, layer.backward_layer
                _check_gru(forward)
                _check_gru(backward, backward=True)
                inner = forward
            else:
                _check_gru(layer)
                inner = layer
            self.return_sequences = inner.return_sequences
            self.gru = torch.nn.GRU(inner.get_weights()[0].shape[0], inner.units,
                                    batch_first=True, bidirectional=self.bidirectional)
            _copy_gru(self.gru, inner)
            if self.bidirectional:
                _copy_gru(self.gru, backward, "_reverse")

        def forward(self, x):
            y, h = self.gru(x)
            if self.return_sequences:
                # Bidirectional: [forward_t, backward_t] per step, as Keras's concat.
                return y
            if self.bidirectional:
                # Keras concatenates the forward state after the last step and the
                # backward state after the first step.
                return torch.cat([h[0], h[1]], dim=-1)
            return y[:, -1]

    class AdditivePooling(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            w, b = layer.score_dense.get_weights()
            (v,) = layer.score_vector.get_weights()
            self.score = torch.nn.Linear(w.shape[0], w.shape[1])
            self.vector = torch.nn.Linear(v.shape[0], 1, bias=False)
            with torch.no_grad():
                self.score.weight.copy_(_tensor(w.T))
                self.score.bias.copy_(_tensor(b))
                self.vector.weight.copy_(_tensor(v.T))

        def forward(self, x):
            scores = self.vector(torch.tanh(self.score(x)))[..., 0]  # (batch, time)
            weights = torch.softmax(scores, dim=-1)
            return torch.sum(x * weights[..., None], dim=1)

    class MultiHeadPooling(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            attention = layer.attention
            if attention._dropout:
                raise NotImplementedError(f"{layer.name}: attention dropout")
            self.scale = 1.0 / math.sqrt(float(attention._key_dim))
            self.query = torch.nn.Parameter(_tensor(layer.query.numpy()), requires_grad=False)
            for name, dense in (("q", attention._query_dense), ("k", attention._key_dense),
                                ("v", attention._value_dense)):
                kernel, bias = dense.get_weights()  # (features, heads, dim), (heads, dim)
                self.register_buffer(f"{name}_kernel", _tensor(kernel))
                self.register_buffer(f"{name}_bias", _tensor(bias))
            kernel, bias = attention._output_dense.get_weights()  # (heads, dim, features)
            self.register_buffer("o_kernel", _tensor(kernel))
            self.register_buffer("o_bias", _tensor(bias))

        def forward(self, x):
            query = self.query.expand(x.shape[0], -1, -1)  # (batch, 1, features)
            q = torch.einsum("abc,cde->abde", query, self.q_kernel) + self.q_bias
            k = torch.einsum("abc,cde->abde", x, self.k_kernel) + self.k_bias
            v = torch.einsum("abc,cde->abde", x, self.v_kernel) + self.v_bias
            q = q * self.scale
            scores = torch.einsum("aecd,abcd->acbe", k, q)  # (batch, heads, 1, time)
            probs = torch.softmax(scores, dim=-1)
            combined = torch.einsum("acbe,aecd->abcd", probs, v)  # (batch, 1, heads, dim)
            out = torch.einsum("abcd,cde->abe", combined, self.o_kernel) + self.o_bias
            return out[:, 0, :]

    class Dense(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            weights = layer.get_weights()
            self.linear = torch.nn.Linear(weights[0].shape[0], weights[0].shape[1],
                                          bias=layer.use_bias)
            self.activation = _activation(_activation_name(layer))
            with torch.no_grad():
                self.linear.weight.copy_(_tensor(weights[0].T))
                if layer.use_bias:
                    self.linear.bias.copy_(_tensor(weights[1]))

        def forward(self, x):
            return self.activation(self.linear(x))

    class Activation(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.activation = _activation(_activation_name(layer))

        def forward(self, x):
            return self.activation(x)

    class GlobalAveragePool(torch.nn.Module):
        def forward(self, x):
            return torch.mean(x, dim=1)

    class Concatenate(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.axis = layer.axis

        def forward(self, *xs):
            return torch.cat(xs, dim=self.axis)

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise NotImplementedError("only one input and one output")
    if len(model.input_shape) != 3 or model.inputs[0].dtype != "float32":
        raise NotImplementedError("only float (batch, time, features) inputs")
    steps = {_key(model.inputs[0]): model.input_shape[1]}  # time steps of each tensor
    nodes = []  # (module or None for the identity, input keys, output key)
    for operation in model.operations:
        kind = type(operation).__name__
        if kind == "InputLayer":
            continue
        if len(operation._inbound_nodes) != 1:
            raise NotImplementedError(f"{operation.name!r} is called more than once")
        inputs = _flat(operation.input)
        if kind in ("Masking", "Embedding") or getattr(inputs[0], "_keras_mask", None) is not None:
            raise NotImplementedError(f"{operation.name!r}: masks have no twin")
        keys = [_key(t) for t in inputs]
        if any(k not in steps for k in keys):
            raise NotImplementedError(f"{operation.name!r} reads a tensor this walk did not make")
        time = steps[keys[0]]
        layer = operation
        if kind in ("Dropout", "GaussianNoise", "GaussianDropout", "SpatialDropout1D"):
            block = None  # the identity at inference
        elif kind == "Conv1D":
            block = Conv(layer)
            if layer.padding == "valid":
                time = time - layer.kernel_size[0] + 1
        elif kind == "BatchNormalization":
            block = BatchNorm(layer)
        elif kind == "MaxPooling1D":
            block = MaxPool(layer, time)
            time = layer.compute_output_shape((1, time, 1))[1]
        elif kind in ("GRU", "Bidirectional"):
            block = Recurrent(layer)
        elif kind == "AttentionPooling":
            block = AdditivePooling(layer)
        elif kind == "MultiHeadAttentionPooling":
            block = MultiHeadPooling(layer)
        elif kind == "GlobalAveragePooling1D":
            if layer.data_format != "channels_last" or layer.keepdims:
                raise NotImplementedError(f"{layer.name!r}: channels_last, keepdims=False only")
            block = GlobalAveragePool()
        elif kind == "Concatenate":
            block = Concatenate(layer)
        elif kind == "Dense":
            block = Dense(layer)
        elif kind == "Activation":
            block = Activation(layer)
        else:
            raise NotImplementedError(f"layer {operation.name!r} ({kind}) has no PyTorch twin")
        output = _key(operation.output)
        steps[output] = time
        nodes.append((block, keys, output))
    return nodes, _key(model.inputs[0]), _key(model.outputs[0])


def _key(tensor):
    """A Keras tensor's place in the functional graph: (operation, node, index)."""
    operation, node_index, tensor_index = tensor._keras_history
    return operation.name, node_index, tensor_index


def _flat(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def torch_twin(model):
    """A `torch.nn.Module` (eval mode) computing what the zoo Keras `model` computes."""
    import torch

    class Twin(torch.nn.Module):
        def __init__(self, nodes, input_key, output_key):
            super().__init__()
            self.blocks = torch.nn.ModuleList([b for b, _, _ in nodes if b is not None])
            self.wiring = []  # (index in blocks or None, input keys, output key)
            index = 0
            for block, keys, output in nodes:
                self.wiring.append((None if block is None else index, keys, output))
                index += block is not None
            self.input_key, self.output_key = input_key, output_key

        def forward(self, x):
            values = {self.input_key: x}
            for index, keys, output in self.wiring:
                args = [values[k] for k in keys]
                values[output] = args[0] if index is None else self.blocks[index](*args)
            return values[self.output_key]

    return Twin(*_blocks(model)).eval()


def export_onnx(twin, x, path):
    """ONNX file of `twin` for a fixed input `x` (input "inputs", output "output").

    Uses the TorchScript exporter (`dynamo=False`): it maps `nn.GRU` to the fused ONNX
    `GRU` op, which ONNX Runtime runs as one kernel.
    """
    import warnings

    import torch

    with torch.no_grad(), warnings.catch_warnings():
        # "Exporting ... with a batch_size other than 1 ... GRU": the file is exported
        # and run with batch 1 only.
        warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size",
                                UserWarning)
        torch.onnx.export(twin, (torch.tensor(x),), path, input_names=["inputs"],
                          output_names=["output"], dynamo=False)
    return path


def ort_session(path):
    """ONNX Runtime session on the CPU, one intra-op and one inter-op thread."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def onnx_op_counts(path):
    """{op_type: count} of an ONNX file's main graph."""
    import collections

    import onnx

    return dict(collections.Counter(node.op_type for node in onnx.load(path).graph.node))

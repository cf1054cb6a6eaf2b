"""`LiteModel`: run a gru-zoo `.tflite` file with the standalone LiteRT interpreter.

Full-sequence files take `(batch, time, features)` and `predict` loops the batch-1
model over the batch. Streaming files take one frame and the recurrent states;
`stream` carries the states across frames and `predict` streams each sequence.
Quantized inputs and outputs (int8, int16) are (de)quantized with the file's own
scales, so callers always pass and get float arrays.
"""

import os

import numpy as np

from export.metadata import read_metadata


def _quantize(value, details):
    dtype = details["dtype"]
    value = np.asarray(value)
    if np.issubdtype(dtype, np.integer) and np.issubdtype(value.dtype, np.floating):
        scales = details["quantization_parameters"]["scales"]
        zero_points = details["quantization_parameters"]["zero_points"]
        if len(scales):
            info = np.iinfo(dtype)
            quantized = np.round(value / scales[0] + zero_points[0])
            return np.clip(quantized, info.min, info.max).astype(dtype)
    return value.astype(dtype)


def _dequantize(value, details):
    scales = details["quantization_parameters"]["scales"]
    zero_points = details["quantization_parameters"]["zero_points"]
    if np.issubdtype(value.dtype, np.integer) and len(scales):
        return (value.astype(np.float32) - zero_points[0]) * scales[0]
    return value


class LiteModel:
    """A `.tflite` file ready to run.

    Args:
        model: path to a `.tflite` file, or its bytes.
        num_threads: int, CPU threads of the interpreter. Defaults to `1`.
        interpreter: `"litert"` (the standalone `ai_edge_litert` interpreter, the
            default) or `"tensorflow"` (`tf.lite.Interpreter`, which links the Flex
            delegate: only for files exported with `allow_select_tf_ops=True`).

    Example:

    >>> lite = LiteModel("model.tflite")
    >>> lite.predict(x_test)           # (batch, num_outputs)
    >>> lite.signatures                # {"serving_default": {"inputs": [...], ...}}
    """

    def __init__(self, model, *, num_threads=1, interpreter="litert"):
        if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
            raise ValueError(
                f"`num_threads` must be a positive int. Received: num_threads={num_threads!r}"
            )
        if interpreter not in ("litert", "tensorflow"):
            raise ValueError(
                "`interpreter` must be 'litert' or 'tensorflow'. "
                f"Received: interpreter={interpreter!r}"
            )
        if isinstance(model, (bytes, bytearray)):
            self._content = bytes(model)
            self.path = None
        else:
            path = os.fspath(model)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"No such .tflite file: {path!r}")
            with open(path, "rb") as handle:
                self._content = handle.read()
            self.path = path
        if interpreter == "litert":
            from ai_edge_litert.interpreter import Interpreter
        else:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        self.num_threads = num_threads
        self._interpreter = Interpreter(model_content=self._content, num_threads=num_threads)
        self.signatures = self._interpreter.get_signature_list()
        if not self.signatures:
            raise ValueError("The .tflite file has no signature; gru-zoo files always have one.")
        self.signature_key = next(iter(self.signatures))
        self._runners = {}
        self.metadata = read_metadata(self._content)
        self.input_names = list(self.signatures[self.signature_key]["inputs"])
        self.output_names = list(self.signatures[self.signature_key]["outputs"])
        self.is_streaming = "frame" in self.input_names
        self.state_names = [name for name in self.input_names if name.startswith("state_")]

    @property
    def size(self):
        """Size of the file in bytes."""
        return len(self._content)

    def runner(self, signature_key=None):
        """The `ai_edge_litert` signature runner of `signature_key` (default: the first)."""
        key = signature_key or self.signature_key
        if key not in self.signatures:
            raise ValueError(
                f"`signature_key` must be one of {sorted(self.signatures)}. "
                f"Received: signature_key={key!r}"
            )
        if key not in self._runners:
            self._runners[key] = self._interpreter.get_signature_runner(key)
        return self._runners[key]

    def input_details(self, signature_key=None):
        return self.runner(signature_key).get_input_details()

    def output_details(self, signature_key=None):
        return self.runner(signature_key).get_output_details()

    def run(self, signature_key=None, **inputs):
        """Runs one signature on float (or token id) inputs; returns a dict of float outputs."""
        runner = self.runner(signature_key)
        input_details = runner.get_input_details()
        unknown = sorted(set(inputs) - set(input_details))
        missing = sorted(set(input_details) - set(inputs))
        if unknown or missing:
            raise ValueError(
                f"The inputs must be exactly {sorted(input_details)}. Received: "
                f"{sorted(inputs)} (missing {missing}, unknown {unknown})"
            )
        feed = {name: _quantize(value, input_details[name]) for name, value in inputs.items()}
        outputs = runner(**feed)
        output_details = runner.get_output_details()
        return {name: _dequantize(value, output_details[name]) for name, value in outputs.items()}

    def initial_states(self):
        """Zero states of a streaming file: `{state name: float32 zeros of its shape}`.

        Every state starts at zero: recurrent states, convolution frame buffers (the
        causal padding), running means, counts and pooling phases.
        """
        self._require_streaming("initial_states")
        details = self.input_details()
        return {
            name: np.zeros(details[name]["shape"], dtype=np.float32) for name in self.state_names
        }

    def _require_streaming(self, method):
        if not self.is_streaming:
            raise ValueError(
                f"`{method}` needs a streaming file (exported with streaming=True); this file "
                f"takes {self.input_names}."
            )

    def stream(self, frames, states=None, *, return_states=False):
        """Feeds `frames` `(time, features)` (or `(time,)` token ids) one at a time.

        Args:
            frames: array of the frames of one sequence.
            states: dict of states to start from; defaults to zeros.
            return_states: bool, also return the states after the last frame.

        Returns:
            `(time, num_outputs)` outputs, one per frame (and the final states).
        """
        self._require_streaming("stream")
        frames = np.asarray(frames)
        frame_details = self.input_details()["frame"]
        frame_rank = len(frame_details["shape"]) - 1
        if frames.ndim != frame_rank + 1:
            raise ValueError(
                f"`frames` must have shape (time,) + {tuple(frame_details['shape'][1:])}. "
                f"Received: frames with shape {frames.shape}"
            )
        states = dict(states) if states is not None else self.initial_states()
        outputs = []
        for frame in frames:
            result = self.run(frame=frame[None], **states)
            states = {name: result[f"new_{name}"] for name in self.state_names}
            outputs.append(result["output"][0])
        outputs = np.stack(outputs) if outputs else np.zeros((0,), np.float32)
        return (outputs, states) if return_states else outputs

    def predict(self, x, *, per_step=None):
        """Runs a batch of sequences `(batch, time, ...)`; returns `(batch, ...)` outputs.

        The batch-1 file is run once per sequence. For a streaming file each sequence is
        streamed; the result is the output after the last frame, or every step's output
        when `per_step` is true (default: from the metadata's task, else last only).
        """
        x = np.asarray(x)
        if self.is_streaming:
            if per_step is None:
                per_step = bool((self.metadata or {}).get("per_step", False))
            results = []
            for sequence in x:
                outputs = self.stream(sequence)
                results.append(outputs if per_step else outputs[-1])
            return np.stack(results)
        name = self.input_names[0]
        details = self.input_details()[name]
        expected_rank = len(details["shape"])
        if x.ndim != expected_rank:
            raise ValueError(
                f"`x` must have shape (batch,) + {tuple(details['shape_signature'][1:])}. "
                f"Received: x with shape {x.shape}"
            )
        results = []
        for sample in x:
            output = self.run(**{name: sample[None]})
            results.append(output[self.output_names[0]][0])
        return np.stack(results)

    __call__ = predict

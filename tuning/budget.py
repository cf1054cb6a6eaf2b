"""Device budgets: flash, RAM and latency, measured on the file that would ship.

`DeviceBudget(flash_kb=64, ram_kb=..., latency_ms=..., quantization="int8",
streaming=False)` says what a device can hold and how the model will be exported for
it. `DeviceBudget.measure(model, calibration)` exports the model exactly as the
result will be exported (`export.to_tflite` with the budget's quantization and form,
verified, in its guarded child process) and measures:

- `flash_bytes`: the size of that file (what the device stores);
- `ram_bytes`: the tensor arena the file needs: TensorFlow Lite for Microcontrollers'
  own count (`ram_source = "tflm"`) for streaming files (`export.to_tflite` runs every
  streaming file in TFLM and reports `arena_bytes`) and, with a RAM budget, for
  full-sequence files too. A RAM budget is a microcontroller's: the file is exported
  with `check_tflm=True` (never in Keras's `loop` form, which TFLM runs wrong), and a
  file that does not run in TFLM is over the budget. Without a RAM budget, a
  full-sequence file's RAM is computed here from the file (`ram_source =
  "estimate"`): the peak, over the operators of each subgraph in execution order, of
  the bytes of the non-constant tensors alive at that operator, summed over subgraphs
  (a `WHILE` body runs while its caller's tensors are alive). Any memory planner needs
  at least this much, but TFLM's arena also holds each operator's and tensor's
  bookkeeping: a tiny int8 GRU(4) at T=24 has an estimate of 0.3 KiB and a TFLM arena
  of 5.4 KiB, which is why a RAM budget measures;
- `latency_ms`: the median of batch-1 invocations of the file on the LiteRT
  interpreter, one thread (only when the budget has `latency_ms`).

A file's size and arena do not depend on the trained weights, so the measurement is
taken on the untrained model before a trial trains, and is cached per architecture.
Before even exporting, `lower_bound_bytes(params)` (one, two or four bytes a weight
for int8, float16 or float32 weights) refuses a model whose weights alone exceed the
flash budget. Calibration of an untrained model uses the search data's inputs.

`violations(costs)` lists what is over the budget; a trial with any is infeasible
and never trains (`tuning.cv.CrossValidatedTuner`).
"""

import dataclasses
import json
import os
import tempfile

import numpy as np

from zoo.checks import check, is_bool, is_positive_number

QUANTIZATIONS = ("int8", "int16x8", "dynamic", "float16", "float32")
# Bytes per stored weight: what the weights alone take in a file of each quantization.
_WEIGHT_BYTES = {"int8": 1, "int16x8": 1, "dynamic": 1, "float16": 2, "float32": 4}
BUDGET_KEYS = ("flash_kb", "ram_kb", "latency_ms", "quantization", "streaming")


def _limit(name, value):
    if value is None:
        return
    check(name, value, is_positive_number(value), "a positive number or None")


@dataclasses.dataclass(frozen=True)
class DeviceBudget:
    """What a device holds, and the form the model is exported in for it.

    Args:
        flash_kb: KiB the exported file may take, or `None`.
        ram_kb: KiB of tensor arena the file may need, or `None`.
        latency_ms: median batch-1 invoke time on LiteRT (one thread), or `None`.
        quantization: the export's quantization, one of `QUANTIZATIONS`. Defaults to
            `"int8"` (what a microcontroller runs).
        streaming: bool, export the one-frame step file instead of the full sequence.
    """

    flash_kb: float = None
    ram_kb: float = None
    latency_ms: float = None
    quantization: str = "int8"
    streaming: bool = False

    def __post_init__(self):
        for name in ("flash_kb", "ram_kb", "latency_ms"):
            _limit(name, getattr(self, name))
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"`quantization` must be one of {list(QUANTIZATIONS)}. "
                             f"Received: quantization={self.quantization!r}")
        if not is_bool(self.streaming):
            raise ValueError(f"`streaming` must be true or false. "
                             f"Received: streaming={self.streaming!r}")
        object.__setattr__(self, "streaming", bool(self.streaming))  # NumPy's bool too
        if self.flash_kb is None and self.ram_kb is None and self.latency_ms is None:
            raise ValueError("A budget needs at least one of `flash_kb`, `ram_kb`, "
                             "`latency_ms`. Received: none")
        if self.ram_kb is not None and self.quantization in ("float16", "dynamic"):
            # A RAM budget is measured in TFLite Micro, which runs neither float16 nor
            # dynamic-range files (docs/tflite-facts.md, F24): every model would be over.
            raise ValueError("`quantization` must be one of ['int8', 'int16x8', 'float32'] "
                             "with `ram_kb` (a RAM budget is measured in TFLite Micro, which "
                             "runs neither float16 nor dynamic-range files). Received: "
                             f"quantization={self.quantization!r}")

    @property
    def check_tflm(self):
        """`to_tflite`'s `check_tflm` for this budget: `True` with a RAM budget (a
        microcontroller's: the file must run in TFLite Micro), else its default."""
        return True if self.ram_kb is not None else None

    def ram(self, result):
        """`(ram costs, error)` of a file `to_tflite` exported for this budget.

        The costs are `ram_bytes` and `ram_source`: TFLite Micro's arena when it ran the
        file, else `activation_peak_bytes` (`"estimate"`). The error is a sentence when
        a RAM budget's file does not run in TFLite Micro (it cannot ship), else `None`.
        """
        tflm = result.tflm or {}
        error = None
        if self.ram_kb is not None and not tflm.get("runs"):
            error = f"does not run in TFLite Micro: {tflm.get('error')}"[:300]
        if tflm.get("arena_bytes"):
            return {"ram_bytes": int(tflm["arena_bytes"]), "ram_source": "tflm"}, error
        return {"ram_bytes": activation_peak_bytes(result.path), "ram_source": "estimate"}, error

    @property
    def form(self):
        """`"int8 full-sequence"`, `"float32 streaming"`, ..."""
        return f"{self.quantization} {'streaming' if self.streaming else 'full-sequence'}"

    def describe(self):
        limits = [f"{name.split('_')[0]} <= {value:g} {name.split('_')[1].replace('kb', 'KiB')}"
                  for name, value in (("flash_kb", self.flash_kb), ("ram_kb", self.ram_kb),
                                      ("latency_ms", self.latency_ms)) if value is not None]
        return f"{', '.join(limits)} ({self.form} file)"

    def to_dict(self):
        return dataclasses.asdict(self)

    def lower_bound_bytes(self, params):
        """The least a file with `params` weights can take in this quantization."""
        return int(params) * _WEIGHT_BYTES[self.quantization]

    def violations(self, costs):
        """What `costs` (from `measure`) puts over the budget: a list of sentences."""
        found = []
        for limit, key, unit, scale in (("flash_kb", "flash_bytes", "KiB", 1024.0),
                                        ("ram_kb", "ram_bytes", "KiB", 1024.0),
                                        ("latency_ms", "latency_ms", "ms", 1.0)):
            bound = getattr(self, limit)
            value = costs.get(key)
            if bound is None or value is None:
                continue
            if value / scale > bound:
                found.append(f"{limit.split('_')[0]} {value / scale:.1f} {unit} > {bound:g} "
                             f"{unit}")
        if costs.get("export_error"):
            found.append(f"does not export as a {self.form} file: {costs['export_error']}")
        return found

    def overshoot(self, costs):
        """How far over the budget, as the largest `measured / limit - 1` (0 when within)."""
        ratios = [0.0]
        for limit, key, scale in (("flash_kb", "flash_bytes", 1024.0),
                                  ("ram_kb", "ram_bytes", 1024.0),
                                  ("latency_ms", "latency_ms", 1.0)):
            bound, value = getattr(self, limit), costs.get(key)
            if bound is not None and value is not None:
                ratios.append(value / scale / bound - 1.0)
        if costs.get("export_error"):
            ratios.append(1.0)
        return max(ratios)

    def measure(self, model, calibration, *, timeout=600):
        """Exports `model` in the budget's form and measures it (cached per architecture).

        Returns a dict: `flash_bytes`, `ram_bytes`, `ram_source` (`"tflm"` or
        `"estimate"`), `latency_ms` (with a latency limit), `params`, and `export_error`
        (a one-line reason) when the model does not export in this form, in which case
        it cannot ship and is over the budget.
        """
        params = int(model.count_params())
        key = json.dumps([model.get_config(), self.to_dict()], sort_keys=True, default=str)
        if key in _MEASURED:
            return dict(_MEASURED[key])
        costs = {"params": params}
        bound = self.lower_bound_bytes(params)
        if self.flash_kb is not None and bound / 1024.0 > self.flash_kb:
            # Over the flash budget on its weights alone: no need to export it.
            costs.update(flash_bytes=bound, flash_source="weights")
            _MEASURED[key] = dict(costs)
            return costs
        from export import LiteModel, to_tflite

        quantization = None if self.quantization == "float32" else self.quantization
        calibration = np.asarray(calibration)
        weights = model.get_weights()
        _like_trained(model)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "budget.tflite")
                result = to_tflite(
                    model, path, quantization=quantization,
                    representative_data=calibration if self.quantization in (
                        "int8", "int16x8") else None,
                    verification_data=calibration[:8], streaming=self.streaming,
                    check_tflm=self.check_tflm,
                    # int8 files store fully connected weights per-tensor unless their
                    # output channels' ranges differ widely, which depends on the
                    # trained weights; per-channel is the larger of the two, so the
                    # flash measured before training bounds the trained file's.
                    int8_weights="per_channel", timeout=timeout)
                costs.update(flash_bytes=int(result.size), flash_source="tflite")
                ram, error = self.ram(result)
                if error:
                    costs["export_error"] = error
                else:
                    costs.update(ram)
                if self.latency_ms is not None:
                    from tuning.objectives import _litert_latency_ms

                    costs["latency_ms"] = _litert_latency_ms(LiteModel, path)
        except Exception as error:  # a model that cannot be exported cannot ship
            line = str(error).strip().splitlines()
            costs["export_error"] = f"{type(error).__name__}: {line[0] if line else ''}"[:300]
        finally:
            model.set_weights(weights)
        _MEASURED[key] = dict(costs)
        return costs


# (model config, budget) -> costs; size and arena do not depend on the weights.
_MEASURED = {}


def _like_trained(model, seed=0):
    """Gives an untrained model's weights small random offsets, in place.

    Fresh zero biases (and other equal constants) are stored once in a `.tflite` file:
    the converter deduplicates identical buffers, so an untrained model's file is a few
    KiB smaller than the trained model's (measured: 38.3 vs 42.0 KiB for an int8 GRU(4)
    at T=24). Offsets make every constant distinct, as training does.
    """
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0.0, 0.01, np.shape(w)).astype(np.asarray(w).dtype)
                       for w in model.get_weights()])

_DTYPE_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "INT64": 8, "INT16": 2, "INT8": 1,
                "UINT8": 1, "BOOL": 1, "FLOAT64": 8}


def activation_peak_bytes(path):
    """Peak bytes of non-constant tensors alive at once, summed over subgraphs.

    Written here because LiteRT's Python interpreter does not report its arena size:
    every tensor that is not a constant (no buffer data) lives from the operator that
    writes it (or the start, for subgraph inputs) to the last operator that reads it
    (or the end, for outputs); the peak of the live bytes over the operators is what
    any arena planner must provide at least.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    with open(path, "rb") as handle:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(handle.read()))
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    total = 0
    for subgraph in model.subgraphs:
        tensors = subgraph.tensors or []
        operators = subgraph.operators or []

        def constant(index):
            buffer = model.buffers[tensors[index].buffer] if tensors[index].buffer else None
            return buffer is not None and buffer.data is not None and len(buffer.data) > 0

        def size(index):
            tensor = tensors[index]
            shape = [max(int(d), 1) for d in (tensor.shape if tensor.shape is not None else [])]
            return int(np.prod(shape, dtype=np.int64)) * _DTYPE_BYTES.get(
                type_names.get(tensor.type, ""), 4)

        end = len(operators)
        first, last = {}, {}
        for index in subgraph.inputs or []:
            first[index], last[index] = 0, 0
        for step, operator in enumerate(operators):
            for index in operator.outputs if operator.outputs is not None else []:
                if index >= 0:
                    first.setdefault(index, step)
                    last[index] = max(last.get(index, step), step)
            for index in operator.inputs if operator.inputs is not None else []:
                if index >= 0 and not constant(index):
                    first.setdefault(index, 0)
                    last[index] = step
        for index in subgraph.outputs or []:
            first.setdefault(index, 0)
            last[index] = end
        peak = 0
        for step in range(max(end, 1)):
            live = sum(size(i) for i in first if first[i] <= step <= last[i] and not constant(i))
            peak = max(peak, live)
        total += peak
    return int(total)


def parse_budget(section):
    """A `DeviceBudget` from a job's `[budget]` table, or `None` when it is empty.

    Every bad key or value raises a `ValueError` naming `[budget] key` and the value.
    """
    if not section:
        return None
    unknown = sorted(set(section) - set(BUDGET_KEYS))
    if unknown:
        raise ValueError(f"[budget] unknown key(s) {unknown}; allowed: {list(BUDGET_KEYS)}. "
                         f"Received: {', '.join(f'{k}={section[k]!r}' for k in unknown)}")
    try:
        return DeviceBudget(**section)
    except ValueError as error:
        text = str(error)
        raise ValueError(f"[budget] {text.lstrip('`').replace('` must', ' must', 1)}") \
            from None

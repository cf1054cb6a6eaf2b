"""What one LiteRT op costs, and what the chunked GRU's time per step is made of.

    python benchmarks/op_costs.py [--update]

The speed target of the export work (float32 at ONNX Runtime's speed) is missed by the
chunked form (BENCHMARKS.md, "Export"). This benchmark measures the floor under any
restructuring of the recurrence into builtin ops, so the next attempt can be sized before
it is built:

1. The cost of one op of each kind the recurrence uses, on one thread, with XNNPACK (the
   default delegate) and with builtin kernels only: a file holding a chain of K ops of that
   kind (distinct constants, so nothing folds), timed at K=16 and K=80; the cost of one op
   is the difference / 64 (the invoke's own overhead cancels). Fully connected ops take a
   (1, N) row to M values with the shapes of a GRU(64) step's recurrent products (and a
   slice back to N values when M > N, about an ADD's cost); all ops of a chain share one
   weight matrix, as the steps of a recurrent layer do.
2. The reference model (2 x GRU(64), 8 features, T=200) in the chunked form: its measured
   time per layer and step, the ops per layer and step in its loop body, the time those
   ops' costs from part 1 add up to, and ONNX Runtime's fused GRU on its PyTorch twin in
   the same run (the peer).
3. A candidate form that halves the ops per step (`wavefront_file`), verified and timed
   beside them.

The table goes to the section `## Op costs` of BENCHMARKS.md with `--update`.
"""

import argparse
import collections
import json
import os
import pathlib
import platform
import re
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_export import (  # noqa: E402
    LAYERS,
    interleaved,
    lite_runner,
    machine_description,
    onnx_peer,
    reference_model,
)
from compare_report import write_section  # noqa: E402

TITLE = "Op costs: the floor under the chunked GRU"
RESULTS = HERE / "results" / "op_costs.json"
SHORT, LONG = 16, 80
# (inputs, outputs) of the fully connected ops: the recurrent products of a GRU(64) step
# (candidate, z and r, both) and the wavefront form's product.
UNITS = 64
STEPS = 200


# The links of the chains: (row size, the ops one link holds, the link). One weight
# matrix for every link, as a recurrent layer's steps share theirs: it stays in the cache
# (distinct matrices would measure memory). ADD and MUL take the second input `y`, not a
# constant, which the converter would fold. Fully connected ops of other shapes than
# (64, 64) need a second op to bring the row back to 64 values: a product back
# (`FC 64x128 + FC 128x64`, the cost of one is taken as half the pair's), a slice or a
# split (whose costs are then the link's minus the product's).
def _links(rng):
    import tensorflow as tf

    def weights(rows, columns):
        return tf.constant((rng.standard_normal((rows, columns)) / np.sqrt(rows))
                           .astype("float32"))

    w64, w128, w192 = weights(UNITS, UNITS), weights(UNITS, 2 * UNITS), weights(UNITS, 3 * UNITS)
    back128, back192 = weights(2 * UNITS, UNITS), weights(3 * UNITS, UNITS)
    w512 = weights(2 * UNITS, 8 * UNITS)

    def split_add(x, y):
        a, b = tf.split(tf.matmul(x, w128), 2, axis=-1)
        return a + b

    return {
        "ADD": (UNITS, {"ADD": 1}, lambda x, y: x + y),
        "MUL": (UNITS, {"MUL": 1}, lambda x, y: x * y),
        "TANH": (UNITS, {"TANH": 1}, lambda x, y: tf.tanh(x)),
        "LOGISTIC": (2 * UNITS, {"LOGISTIC": 1}, lambda x, y: tf.sigmoid(x)),
        "FC 64x64": (UNITS, {"FULLY_CONNECTED": 1}, lambda x, y: tf.matmul(x, w64)),
        "FC 64x128 + FC 128x64": (UNITS, {"FULLY_CONNECTED": 2},
                                  lambda x, y: tf.matmul(tf.matmul(x, w128), back128)),
        "FC 64x192 + FC 192x64": (UNITS, {"FULLY_CONNECTED": 2},
                                  lambda x, y: tf.matmul(tf.matmul(x, w192), back192)),
        "FC 64x128 + STRIDED_SLICE": (UNITS, {"FULLY_CONNECTED": 1, "STRIDED_SLICE": 1},
                                      lambda x, y: tf.matmul(x, w128)[:, :UNITS]),
        "FC 64x128 + SPLIT + ADD": (UNITS, {"FULLY_CONNECTED": 1, "SPLIT": 1, "ADD": 1},
                                    split_add),
        "FC 128x512 + STRIDED_SLICE": (2 * UNITS, {"FULLY_CONNECTED": 1, "STRIDED_SLICE": 1},
                                       lambda x, y: tf.matmul(x, w512)[:, : 2 * UNITS]),
    }


def chain_file(link, count, path, int8=False):
    """A file computing `count` links of `link` in a chain (float32, or int8 inside with
    float input and output, as the exporter's int8 files)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    size, holds, function = _links(rng)[link]

    def chain(x, y):
        for _ in range(count):
            x = function(x, y)
        return x

    module = tf.Module()
    module.f = tf.function(chain, input_signature=[tf.TensorSpec((1, size), tf.float32)] * 2)
    concrete = module.f.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if int8:
        samples = rng.standard_normal((16, 2, 1, size)).astype("float32")
        samples[:, 1] = 1.0 + 0.01 * samples[:, 1]  # y near 1: a chain of MUL stays finite
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({"x": a, "y": b} for a, b in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    content = converter.convert()
    ops = subgraph_ops(content, 0)
    for kind, per_link in holds.items():
        if ops.get(kind, 0) != count * per_link:
            raise RuntimeError(f"chain of {count} '{link}': the file holds {dict(ops)}")
    path.write_bytes(content)
    return path


def chain_runner(path, builtin=False):
    """A callable running a chain file once: x ~ N(0, 1) and y near 1, so that a chain of
    products neither overflows nor reaches subnormal numbers (which some kernels run
    slowly)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    options = {}
    if builtin:
        options["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    runner = Interpreter(model_path=str(path), num_threads=1, **options).get_signature_runner()
    rng = np.random.default_rng(0)
    names = sorted(runner.get_input_details())  # x, then y unless the chain dropped it
    feed = {}
    for index, name in enumerate(names):
        shape = runner.get_input_details()[name]["shape"]
        value = rng.standard_normal(shape).astype("float32")
        feed[name] = value if index == 0 else 1.0 + 0.01 * value
    runner(**feed)
    return lambda: runner(**feed)


def link_cost(link, workdir, runs=400):
    """µs per link: `{mode: ...}` for each of `MODES`."""
    functions = {}
    for mode, builtin, int8 in MODES:
        for k in (SHORT, LONG):
            name = re.sub(r"\W+", "_", link)
            path = chain_file(link, k, pathlib.Path(workdir) / f"{name}_{k}_{int8}.tflite",
                              int8=int8)
            functions[f"{mode}_{k}"] = chain_runner(path, builtin=builtin)
    timing = interleaved(functions, runs)
    return {mode: (timing[f"{mode}_{LONG}"]["cpu_us"] - timing[f"{mode}_{SHORT}"]["cpu_us"])
            / (LONG - SHORT) for mode, _, _ in MODES}


# (name, builtin kernels only, int8): the float32 file with XNNPACK and without, the int8
# file with XNNPACK.
MODES = (("xnnpack", False, False), ("builtin", True, False), ("int8", False, True))


def op_costs(links):
    """Per-op costs from the links' costs: `{op name: {mode: µs}}`."""
    costs = {}
    for mode, _, _ in MODES:
        fc128 = links["FC 64x128 + FC 128x64"][mode] / 2
        for name in ("ADD", "MUL", "TANH", "LOGISTIC"):
            costs.setdefault(name, {})[mode] = links[name][mode]
        costs.setdefault("FC (1, 64) x (64, 64)", {})[mode] = links["FC 64x64"][mode]
        costs.setdefault("FC (1, 64) x (64, 128)", {})[mode] = fc128
        costs.setdefault("FC (1, 64) x (64, 192)", {})[mode] = links["FC 64x192 + FC 192x64"][mode] / 2
        costs.setdefault("STRIDED_SLICE (1, 128) -> (1, 64)", {})[mode] = (
            links["FC 64x128 + STRIDED_SLICE"][mode] - fc128)
        costs.setdefault("SPLIT (1, 128) -> 2 x (1, 64)", {})[mode] = (
            links["FC 64x128 + SPLIT + ADD"][mode] - fc128 - links["ADD"][mode])
        costs.setdefault("FC (1, 128) x (128, 512) + STRIDED_SLICE", {})[mode] = (
            links["FC 128x512 + STRIDED_SLICE"][mode])
    return costs


def wavefront_file(model, steps, chunk, path):
    """The two GRU layers of the reference model as a wavefront: step s of layer 1 and
    step s - 1 of layer 2 in ONE fully connected op and one set of gate ops (half the ops
    per layer and step of the chunked form), at the price of zero blocks in the weights
    (128 x 512 against 2 x 64 x 192 + the second layer's input projection). Measured here
    as a candidate form; verified against Keras before it is timed."""
    import tensorflow as tf

    u = UNITS
    (w1, r1, b1), (w2, r2, b2) = (model.get_layer(f"gru_{i}").get_weights() for i in (0, 1))
    dense_w, dense_b = model.get_layer("output").get_weights()
    features = w1.shape[0]
    z, r, h = slice(0, u), slice(u, 2 * u), slice(2 * u, 3 * u)
    # Columns: [z1 z2 | r1 r2 | hr1 hr2 | xh1 xh2]; rows: h1 then h2.
    col = {k: slice(i * u, (i + 1) * u)
           for i, k in enumerate(["z1", "z2", "r1", "r2", "hr1", "hr2", "xh1", "xh2"])}
    m = np.zeros((2 * u, 8 * u), np.float32)
    m[:u, col["z1"]], m[:u, col["r1"]], m[:u, col["hr1"]] = r1[:, z], r1[:, r], r1[:, h]
    m[:u, col["z2"]], m[:u, col["r2"]], m[:u, col["xh2"]] = w2[:, z], w2[:, r], w2[:, h]
    m[u:, col["z2"]], m[u:, col["r2"]], m[u:, col["hr2"]] = r2[:, z], r2[:, r], r2[:, h]
    w_in = np.zeros((features, 8 * u), np.float32)
    w_in[:, col["z1"]], w_in[:, col["r1"]], w_in[:, col["xh1"]] = w1[:, z], w1[:, r], w1[:, h]
    bias = np.zeros(8 * u, np.float32)
    for layer, b in (("1", b1), ("2", b2)):
        bias[col["z" + layer]] = b[0, z] + b[1, z]
        bias[col["r" + layer]] = b[0, r] + b[1, r]
        bias[col["hr" + layer]] = b[1, h]
        bias[col["xh" + layer]] = b[0, h]
    first_only = np.concatenate([np.ones(u), np.zeros(u)]).astype(np.float32)[None]

    def wave(state, row):
        pre_z, pre_r, recurrent, projected = tf.split(tf.matmul(state, m) + row, 4, axis=-1)
        gate_z, gate_r = tf.sigmoid(pre_z), tf.sigmoid(pre_r)
        candidate = tf.tanh(projected + gate_r * recurrent)
        return candidate + gate_z * (state - candidate)

    def forward(x):
        # Wave s: layer 1's step s (s < steps) and layer 2's step s - 1 (s >= 1); the row
        # of zeros after the last step only feeds layer 2's last step.
        x = tf.concat([tf.reshape(x, (steps, features)), tf.zeros((1, features))], 0)
        waves = steps + 1
        loops = waves // chunk
        prefix = waves - loops * chunk
        state = tf.zeros((1, 2 * u))
        rows = tf.matmul(x[:prefix], w_in) + bias
        for s in range(prefix):
            state = wave(state, rows[s:s + 1])
            if s == 0:
                state = state * first_only  # layer 2 has not started
        if loops:
            def body(i, state):
                window = tf.slice(x, tf.stack([prefix + i * chunk, 0]), [chunk, features])
                rows = tf.matmul(window, w_in) + bias
                for t in range(chunk):
                    state = wave(state, rows[t:t + 1])
                return i + 1, state

            _, state = tf.while_loop(lambda i, state: i < loops, body, (tf.constant(0), state))
        return tf.nn.softmax(tf.matmul(state[:, u:], dense_w) + dense_b)

    if (steps + 1) % chunk == 0:
        raise ValueError("the first wave must run before the loop (steps + 1 not a multiple "
                         "of the chunk)")
    module = tf.Module()
    module.f = tf.function(forward, input_signature=[
        tf.TensorSpec((1, steps, features), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.f.get_concrete_function()], module)
    path.write_bytes(converter.convert())
    return path


def subgraph_ops(content, index=None):
    """Op counts of one subgraph of a file (`index` None: the largest after the main one,
    i.e. the WHILE body)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    if index is None:
        subgraph = max((sub for sub in model.subgraphs[1:] if sub.operators),
                       key=lambda sub: len(sub.operators))
    else:
        subgraph = model.subgraphs[index]
    return collections.Counter(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
                               for op in subgraph.operators or [])


def measure(workdir, log):
    from export import LiteModel, converter, recipes, to_tflite
    from export.chunked import default_chunk_steps

    links = {}
    for link in _links(np.random.default_rng(0)):
        links[link] = link_cost(link, workdir)
        log({"link": link, **links[link]})
    costs = op_costs(links)

    model = reference_model("stacked", STEPS)
    inputs = np.random.default_rng(1).standard_normal((4, STEPS, 8)).astype("float32")
    chunk = default_chunk_steps(STEPS)
    path = pathlib.Path(workdir) / "chunked.tflite"
    path.write_bytes(converter.convert(recipes.rebuild_chunked(model, chunk_steps=chunk)))
    body = subgraph_ops(path.read_bytes())
    per_step = {op: n / (chunk * LAYERS) for op, n in body.items()}
    wave_path = wavefront_file(model, STEPS, chunk, pathlib.Path(workdir) / "wave.tflite")
    wave_error = float(np.abs(LiteModel(wave_path).predict(inputs)
                              - model.predict(inputs, verbose=0)).max())
    if wave_error > 1e-5:
        raise RuntimeError(f"the wavefront file differs from Keras: {wave_error:.2g}")
    int8_path = pathlib.Path(workdir) / "chunked_int8.tflite"
    calibration = np.random.default_rng(2).standard_normal((64, STEPS, 8)).astype("float32")
    to_tflite(model, int8_path, quantization="int8", representative_data=calibration,
              form="chunked", fallback=False)
    int8_chunk = default_chunk_steps(STEPS)  # what form="chunked" takes
    int8_per_step = {op: n / (int8_chunk * LAYERS)
                     for op, n in subgraph_ops(int8_path.read_bytes()).items()}
    functions = {"xnnpack": lite_runner(path), "builtin": lite_runner(path, builtin=True),
                 "int8": lite_runner(int8_path), "wavefront": lite_runner(wave_path)}
    peer = onnx_peer(model, inputs, pathlib.Path(workdir) / "peer.onnx")
    if "run" in peer:
        functions["ort"] = peer["run"]
    timing = interleaved(functions, 200)
    # The recurrent products of one step (`export.chunked.gru_step`): h (1 x 64) times
    # 64 x 128 (z and r) and 64 x 64 (candidate). The other fully connected ops are the
    # input projections, one per chunk and layer for `chunk` rows at once: counted at the
    # cost of one row's (1 x 64) x (64 x 192) product, an upper bound. SUB runs as ADD;
    # QUANTIZE/DEQUANTIZE (int8) at an ADD's cost; SLICE, PACK and CONCATENATION (once per
    # chunk) at a STRIDED_SLICE's.
    as_op = {"ADD": "ADD", "SUB": "ADD", "MUL": "MUL", "TANH": "TANH", "LOGISTIC": "LOGISTIC",
             "QUANTIZE": "ADD", "DEQUANTIZE": "ADD", "SPLIT": "SPLIT (1, 128) -> 2 x (1, 64)"}
    slice_cost = "STRIDED_SLICE (1, 128) -> (1, 64)"
    predicted = {}
    for mode, _, _ in MODES:
        ops = int8_per_step if mode == "int8" else per_step
        elementwise = sum(count * costs[as_op[op]][mode] for op, count in ops.items()
                          if op in as_op and op != "SPLIT")
        moves = sum(count * costs[as_op.get(op, slice_cost)][mode] for op, count in ops.items()
                    if op == "SPLIT" or (op not in as_op and op != "FULLY_CONNECTED"))
        projections = ops.get("FULLY_CONNECTED", 0) - 2
        predicted[mode] = {
            "recurrent_products": (costs["FC (1, 64) x (64, 128)"][mode]
                                   + costs["FC (1, 64) x (64, 64)"][mode]),
            "input_projections": projections * costs["FC (1, 64) x (64, 192)"][mode],
            "elementwise": elementwise,
            "data_movement": moves,
        }
    model_row = {
        "chunk": chunk, "ops_per_layer_step": per_step,
        "int8_chunk": int8_chunk, "int8_ops_per_layer_step": int8_per_step,
        "measured": {mode: timing[mode]["cpu_us"] / (LAYERS * STEPS) for mode in functions},
        "predicted": predicted,
        "wavefront": {"ops_per_layer_step": {op: n / (chunk * LAYERS) for op, n in
                                             subgraph_ops(wave_path.read_bytes()).items()},
                      "max_abs_error": wave_error},
    }
    log(model_row)
    return costs, model_row


def render(costs, model_row):
    lines = ["| op | µs per op, float32 XNNPACK | float32 builtin kernels | int8 XNNPACK |",
             "|---|---:|---:|---:|"]
    for name, row in costs.items():
        shape = "" if "(" in name else (" (1, 128)" if name == "LOGISTIC" else " (1, 64)")
        lines.append(f"| {name}{shape} | {row['xnnpack']:.3f} | {row['builtin']:.3f} | "
                     f"{row['int8']:.3f} |")
    lines += [""]
    ops = ", ".join(f"{op} {count:g}" for op, count in
                    sorted(model_row["ops_per_layer_step"].items(), key=lambda kv: -kv[1]))
    int8_ops = ", ".join(f"{op} {count:g}" for op, count in
                         sorted(model_row["int8_ops_per_layer_step"].items(),
                                key=lambda kv: -kv[1]))
    lines += [f"Chunked reference model (2 x GRU(64), T={STEPS}), ops per layer and step in "
              f"the loop body: float32 ({model_row['chunk']} steps per iteration) {ops}; int8 "
              f"({model_row['int8_chunk']} steps per iteration) {int8_ops}.", "",
              "| per layer and step (µs) | float32 XNNPACK | float32 builtin kernels | "
              "int8 XNNPACK |", "|---|---:|---:|---:|"]
    measured, predicted = model_row["measured"], model_row["predicted"]
    modes = ("xnnpack", "builtin", "int8")
    for part in ("recurrent_products", "input_projections", "elementwise", "data_movement"):
        lines.append(f"| predicted: {part.replace('_', ' ')} | "
                     + " | ".join(f"{predicted[m][part]:.2f}" for m in modes) + " |")
    lines.append("| predicted: sum | "
                 + " | ".join(f"{sum(predicted[m].values()):.2f}" for m in modes) + " |")
    lines.append("| measured | " + " | ".join(f"{measured[m]:.2f}" for m in modes) + " |")
    wave_ops = sum(model_row["wavefront"]["ops_per_layer_step"].values())
    lines.append(f"| wavefront form (XNNPACK; {wave_ops:g} ops per layer and step, "
                 f"max error vs Keras {model_row['wavefront']['max_abs_error']:.1g}) | "
                 f"{measured['wavefront']:.2f} | | |")
    if "ort" in measured:
        lines.append(f"| ONNX Runtime's fused GRU (peer) | {measured['ort']:.2f} | | |")
        lines.append("| measured / ORT | " + " | ".join(
            f"{measured[m] / measured['ort']:.2f}x" for m in modes) + " |")
        lines.append("| recurrent products alone / ORT's whole step | " + " | ".join(
            f"{predicted[m]['recurrent_products'] / measured['ort']:.2f}x" for m in modes) + " |")
    if "ort" in measured:
        ort = measured["ort"]
        recurrent = predicted["xnnpack"]["recurrent_products"]
        elementwise = predicted["xnnpack"]["elementwise"] + predicted["xnnpack"]["data_movement"]
        one_product = costs["FC (1, 64) x (64, 192)"]["xnnpack"]
        square = costs["FC (1, 64) x (64, 64)"]["xnnpack"]
        slice_us = costs["STRIDED_SLICE (1, 128) -> (1, 64)"]["xnnpack"]
        others = sum(predicted["xnnpack"].values()) - recurrent
        int8_recurrent = predicted["int8"]["recurrent_products"]
        int8_others = sum(predicted["int8"].values()) - int8_recurrent
        lines += ["", (
            f"Reading: an elementwise op over 64 values costs "
            f"{costs['ADD']['xnnpack']:.3f} µs with XNNPACK, so the chunked form's "
            f"{sum(v for k, v in model_row['ops_per_layer_step'].items() if k != 'FULLY_CONNECTED'):g} "
            f"other ops per layer and step add up to {elementwise:.2f} µs. Its two "
            f"recurrent products cost {recurrent:.2f} µs, {recurrent / ort:.0%} of ONNX "
            f"Runtime's whole layer step ({ort:.2f} µs); one (1, 64) x (64, 192) product in "
            f"their place would cost {one_product:.2f} µs ({one_product / ort:.0%}), but its "
            f"output has to be cut in two, and a STRIDED_SLICE costs {slice_us:.3f} µs "
            f"({slice_us / costs['ADD']['xnnpack']:.0f}x an ADD): "
            f"{one_product + 2 * slice_us:.2f} µs with two slices, no gain (a SPLIT into "
            f"unequal parts, SPLIT_V, leaves the XNNPACK partition). A "
            f"one-row product is XNNPACK's slow case: {square * 1e3 / (UNITS * UNITS / 16):.1f} ns "
            f"per 16 multiply-adds in the (64, 64) product, a few clock cycles each, where a "
            f"vector unit could do several per cycle (its float32 broadcast kernels keep one "
            f"or two accumulators per 16 outputs, so with one row each multiply-add waits on "
            f"the last, and the product is cut into tiles of 16-32 outputs that are called "
            f"one by one; this benchmark does not separate the two). It is "
            f"the floor: no arrangement of builtin ops computes the recurrence with less "
            f"than one such product per step. At ONNX Runtime's speed the rest of a step "
            f"(input projection, gates, state update) would have {ort - recurrent:.2f} µs; "
            f"it costs {others:.2f} µs here. int8: the products cost {int8_recurrent:.2f} µs "
            f"({int8_recurrent / ort:.2f}x ORT's step), and half of ORT's step leaves "
            f"{ort / 2 - int8_recurrent:.2f} µs for the rest, which costs {int8_others:.2f} µs. The "
            f"wavefront form, with half the ops, is {measured['wavefront'] / measured['xnnpack']:.2f}x "
            f"the chunked form's time: its product carries zero blocks, and the product's "
            f"cost grows with its size.")]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="write BENCHMARKS.md")
    parser.add_argument("--table-only", action="store_true",
                        help="render the last run's results again (no measuring)")
    args = parser.parse_args(argv)
    if args.table_only:
        saved = json.loads(RESULTS.read_text())
    else:
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = os.getloadavg()
        with tempfile.TemporaryDirectory() as workdir:
            costs, model_row = measure(workdir, lambda row: print(row, flush=True))
        saved = {"started": started, "load": list(load), "costs": costs,
                 "machine": machine_description(),
                 "model": json.loads(json.dumps(model_row, default=float))}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    costs, model_row, started, load = (saved["costs"], saved["model"], saved["started"],
                                       saved["load"])
    table = render(costs, model_row)
    print(table)
    # Results saved before the machine was recorded come from the 2-core AMD EPYC that
    # the section's profile paragraph names.
    machine = saved.get("machine", f"{platform.machine()}, AMD EPYC, 2 CPUs, Python 3.11.7")
    if args.update:
        write_section(TITLE, f"""Command: `python benchmarks/op_costs.py --update` ({machine}; {started}; load average at start
{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}). One thread, batch 1, median thread CPU time, files
timed in alternating blocks. Cost of one op: a chain of {LONG} ops minus a chain of {SHORT},
divided by {LONG - SHORT}.

{table}
""")


if __name__ == "__main__":
    main()

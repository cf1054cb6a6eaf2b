"""Where a two-layer bidirectional GRU's float32 time goes, and one alternative to segments.

    python benchmarks/bidirectional_parts.py [--lengths 200,1000] [--update]

bench_export's bidirectional reference model (2 x Bidirectional(GRU(64)), 8 features) is
the slowest float32 variant against ONNX Runtime. Its first layer returns its sequence
(an output buffer that the `WHILE` loop carries and copies at every iteration, run in
segments at long T: `export.chunked.segment_chunks_for`) and its second layer reads a
128-wide input. The script exports, with `to_tflite`'s automatic form in float32, the
reference model and three one-layer models that take those costs apart:

- "one layer": Bidirectional(GRU(64)) returning its last states, 8 features;
- "one layer, returns its sequence": the same returning its sequence, averaged over time
  (`GlobalAveragePooling1D`), so the loop fills an output buffer;
- "one layer, 128-wide input": `Dense(128)` per step, then the one-layer model.

It also exports the reference model with its segments run as loops in sequence in the
main graph (no outer loop, so no copy of the whole sequence's buffer per segment; each
segment's loop has its own body, and the file its own copy of the body's weights): an
idea measured here and not adopted (see the table). Every file is timed in interleaved
blocks with ONNX Runtime on the reference model's PyTorch twin (one thread, median thread
time). With `--update` the table goes to the section "Bidirectional GRU: where the time
goes" of BENCHMARKS.md.
"""

import os
import pathlib
import sys
import tempfile
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TITLE = "Bidirectional GRU: where the time goes"
REFERENCE = "two layers (reference)"
ONE = "one layer"
RETURNS = "one layer, returns its sequence"
WIDE = "one layer, 128-wide input"
IN_SEQUENCE = "two layers, segments as loops in sequence"


def _one_layer(kind, steps):
    import keras

    import bench_export

    layers = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((steps, bench_export.FEATURES), batch_size=1)
    x = layers.Dense(2 * bench_export.UNITS)(inputs) if kind == WIDE else inputs
    x = layers.Bidirectional(layers.GRU(bench_export.UNITS, return_sequences=kind == RETURNS))(x)
    if kind == RETURNS:
        x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(bench_export.CLASSES)(x))


def _loops_in_sequence(original):
    """`export.chunked._chunk_loop` with its segments run one after another in the
    enclosing graph instead of in an outer loop (what this script measures)."""
    import tensorflow as tf

    from export import chunked

    def chunk_loop(body, carried, buffers, loops, segment, like):
        if not buffers or not chunked._nests(segment, loops):
            return original(body, carried, buffers, loops, segment, like)
        count_carried = len(carried)

        def run(base, values):
            def step(i, *rest):
                new, chunks = body(base + i, list(rest[:count_carried]))
                written = [chunked._write_chunk(buffer, segment - 1 - i if mirrored else i,
                                                chunk)
                           for buffer, chunk, (_, mirrored)
                           in zip(rest[count_carried:], chunks, buffers)]
                return (i + 1, *new, *written)

            initial = [chunked._sequence_buffer((segment, *shape), like) for shape, _ in buffers]
            out = tf.while_loop(lambda i, *rest: i < segment, step,
                                (tf.constant(0, tf.int32), *values, *initial))
            return list(out[1 : 1 + count_carried]), list(out[1 + count_carried :])

        parts = [[] for _ in buffers]
        values = carried
        for j in range(loops // segment):
            values, filled = run(j * segment, values)
            for part, chunks, (shape, _) in zip(parts, filled, buffers):
                part.append(tf.reshape(chunks, (1, segment * shape[0], *shape[1:])))
        # The same layout as `_chunk_loop`'s: segment j of a mirrored buffer at the end.
        return values, [tf.concat(part[::-1] if mirrored else part, 0)
                        for part, (_, mirrored) in zip(parts, buffers)]

    return chunk_loop


def _while_ops(path):
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(pathlib.Path(path).read_bytes())
    return sum(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) == "WHILE"
               for subgraph in model.subgraphs for op in subgraph.operators or [])


def measure(variants, lengths):
    import bench_export
    from export import chunked

    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for steps in lengths:
            model, calibration, ort = bench_export.reference_with_peer(
                "bidirectional", steps, workdir)
            functions, batch = {"ort": ort}, []
            models = [(REFERENCE, model)] + [(kind, _one_layer(kind, steps))
                                             for kind in (ONE, RETURNS, WIDE)]
            models.append((IN_SEQUENCE, model))
            for kind, keras_model in models:
                path = pathlib.Path(workdir) / f"{len(functions)}_{steps}.tflite"
                loop = (_loops_in_sequence(chunked._chunk_loop) if kind == IN_SEQUENCE
                        else chunked._chunk_loop)
                with (bench_export.converting_in_process(),
                      mock.patch.object(chunked, "_chunk_loop", loop)):
                    row = bench_export.export_or_exit(
                        keras_model, path, f"{kind} T={steps}", quantization=None,
                        recipe="auto", calibration=calibration)
                functions[kind] = bench_export.lite_runner(path)
                batch.append(dict(row, T=steps, kind=kind, loops=_while_ops(path)))
            bench_export.time_batch(functions, batch, lambda row: row["kind"], steps,
                                    ("T", "kind", "us", "ort_us", "size"))
            results += batch
    return results


def _row(rows, steps, kind):
    return next(r for r in rows if r["T"] == steps and r["kind"] == kind)


def render(rows):
    lines = ["| T | file | loops | size (KB) | µs | vs ORT (reference model) | "
             "µs over one layer | max err vs Keras |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        one = _row(rows, row["T"], ONE)
        extra = "—" if row["kind"] in (ONE, REFERENCE, IN_SEQUENCE) else (
            f"{row['us'] - one['us']:+.0f}")
        lines.append(f"| {row['T']} | {row['kind']} | {row['loops']} | "
                     f"{row['size'] / 1024:.1f} | {row['us']:.0f} | "
                     f"{row['us'] / row['ort_us']:.2f} | {extra} | "
                     f"{row['max_abs_error']:.2g} |")
    return "\n".join(lines)


def update(rows, table, write_section):
    """Records the table and its reading in BENCHMARKS.md."""
    from bench_export import machine_description

    readings = []
    for steps in sorted({r["T"] for r in rows}):
        one, returns, wide, reference = (_row(rows, steps, kind)["us"]
                                         for kind in (ONE, RETURNS, WIDE, REFERENCE))
        reference_size = _row(rows, steps, REFERENCE)["size"]
        in_sequence = _row(rows, steps, IN_SEQUENCE)
        readings.append(
            f"T={steps}: one layer {one:.0f} µs; returning its sequence adds "
            f"{returns - one:.0f} µs ({(returns - one) / reference:.0%} of the reference "
            f"model's {reference:.0f} µs), a 128-wide input {wide - one:.0f} µs "
            f"({(wide - one) / reference:.0%}); the one-layer files that return a sequence "
            f"and read a 128-wide input sum to {returns + wide:.0f} µs, the reference "
            f"model takes {reference:.0f}; "
            f"segments as loops in sequence {in_sequence['us'] / reference:.2f}x the "
            f"reference file's time, {in_sequence['size'] / reference_size:.2f}x its size")
    write_section(TITLE, f"""Command: `python benchmarks/bidirectional_parts.py --update`
({machine_description()}, {time.strftime("%Y-%m-%d")}).
One thread, median thread time, every file timed in interleaved blocks with ONNX Runtime
on the reference model's PyTorch twin ("vs ORT" divides by that one peer for every row).
float32, `to_tflite`'s automatic form (the two directions as rows of one batch). "loops":
`WHILE` ops in the file (a layer run in segments has an outer and an inner one; in
sequence, one per segment).

{table}

Reading: {"; ".join(readings)}. The reference model's excess over ONNX Runtime comes from
its first layer's returned sequence (the `WHILE` kernel copies every loop variable at
every iteration, and segments bound that copy at the price of restarting the inner loop,
which re-plans its body) and from its second layer's 128-wide input, whose projection
(128 x 192 multiply-adds per step and direction) the file computes for the whole
sequence before the loop (`export.chunked.PROJECT_BEFORE_LOOP_WIDTH`; it used to run
per chunk of a few steps in the loop body, at a lower rate). Where there are segments,
running them as loops in sequence removes the outer loop's copies of the whole
sequence's buffer, but every segment's loop still restarts, and each has a body and
weights of its own: a few percent at most, for a bigger file (0-4% faster in five
runs), so `_chunk_loop` keeps its outer loop. Without segments (T=200) the two files are
the same.
""")


def main(argv=None):
    from bench_export import run_script

    return run_script(argv, __doc__, measure, render, update, variants="bidirectional",
                      lengths="200,1000")


if __name__ == "__main__":
    sys.exit(main())

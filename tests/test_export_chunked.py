"""The chunked full-sequence form (`export.chunked`) and the int8 calibration path.

Default suite: the chunked layers against Keras (no conversion), one float32 and one
int8 chunked conversion run here and compared with Keras, the int8 file size against
the float32 loop file at two lengths (converted in this process), and the calibration
checks (degenerate data refused, verification on other data, collapse refused) with a
stand-in for the conversion child process.
"""

import os
import pathlib

import keras
import numpy as np
import pytest

import zoo
from export import LiteModel, VerificationError, chunked, converter, exporter, recipes, to_tflite
from export.metadata import strip_tensor_names
from helpers import FEATURES, TINY, run_litert, sequences, tflite_vs_keras, tiny_model


def _gru_model(time=11, features=3, **options):
    inputs = keras.Input((time, features))
    x = keras.layers.GRU(5, return_sequences=True, **options)(inputs)
    x = keras.layers.Dropout(0.3)(x)  # the identity at inference, inside the chain
    x = keras.layers.GRU(4, **options)(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def _max_difference(a, b, x):
    return max(float(np.abs(a.predict(x[i : i + 1], verbose=0)
                            - b.predict(x[i : i + 1], verbose=0)).max()) for i in range(len(x)))


# === The chunked layers, in Keras ===


@pytest.mark.parametrize("options, chunk_steps, features", [
    ({}, 1, 3),  # one step per iteration
    ({}, 4, 3),  # 11 = 3 unrolled + 2 x 4
    ({}, 11, 3),  # one chunk: no loop
    ({"reset_after": False}, 3, 3),
    ({"use_bias": False}, 3, 3),
    ({"activation": "relu", "recurrent_activation": "hard_sigmoid"}, 3, 3),
    # 6 features for 5 units: projected before the loop (`PROJECT_BEFORE_LOOP_WIDTH`)
    ({}, 4, 6),
    ({}, 11, 6),
    ({"reset_after": False}, 3, 6),
    ({"use_bias": False}, 3, 6),
])
def test_chunked_gru_chain_matches_keras(options, chunk_steps, features):
    """The chain computes Keras's numbers, with its input projected in the loop (3
    features for 5 units) or before it (6; `project_before=True`)."""
    assert chunked.projected_before_loop(features, 5) is (features == 6)
    model = _gru_model(features=features, **options)
    rebuilt = recipes.rebuild_chunked(model, chunk_steps=chunk_steps, project_before=True)
    heads = [layer for layer in rebuilt.layers if isinstance(layer, chunked.ChunkedGRU)]
    assert len(heads) == 1 and len(heads[0].followers) == 1  # the two GRU layers, fused
    assert heads[0].chunk_steps == chunk_steps and heads[0].project_before
    x = np.random.default_rng(0).standard_normal((3, 11, features)).astype("float32")
    assert _max_difference(rebuilt, model, x) <= 1e-6


@pytest.mark.parametrize("variant", [
    "attention",  # the chain returns its sequence
    "bidirectional",
    pytest.param("bidirectional_attention", marks=pytest.mark.slow),
    pytest.param("gru_fcn", marks=pytest.mark.slow),
    pytest.param("cnn_gru_attention", marks=pytest.mark.slow),
])
def test_chunked_recipe_of_sequence_and_bidirectional_variants_matches_keras(variant):
    model = tiny_model(variant, time=10)
    rebuilt = recipes.rebuild_chunked(model, chunk_steps=3)  # 10 = 1 unrolled + 3 x 3
    replaced = [layer for layer in rebuilt.layers
                if isinstance(layer, (chunked.ChunkedGRU, chunked.ChunkedBidirectionalGRU))]
    assert replaced
    assert _max_difference(rebuilt, model, sequences(3, time=10)) <= 1e-6


@pytest.mark.parametrize("variant", ["attention", "bidirectional_attention"])
@pytest.mark.parametrize("segment_chunks", [3, 4, 5])  # 5 does not divide 12: one loop
def test_a_sequence_returning_loop_runs_in_segments(variant, segment_chunks):
    """Nested loops (an outer one over segments of chunks, an inner one over the chunks of
    a segment) compute what Keras computes, for a chain of GRU layers and for
    bidirectional ones (whose backward buffer is mirrored): 50 = 2 unrolled + 12 x 4."""
    model = tiny_model(variant, time=50)
    rebuilt = recipes.rebuild_chunked(model, chunk_steps=4, segment_chunks=segment_chunks)
    loops = [layer for layer in rebuilt.layers
             if isinstance(layer, (chunked.ChunkedGRU, chunked.ChunkedBidirectionalGRU))]
    assert loops and all(layer.segment_chunks == segment_chunks for layer in loops)
    assert _max_difference(rebuilt, model, sequences(3, time=50)) <= 1e-6
    for layer_class in (chunked.ChunkedGRU, lambda **kw: chunked.ChunkedBidirectionalGRU(
            keras.layers.GRU(4), **kw)):
        with pytest.raises(ValueError, match="segment_chunks=0"):
            layer_class(**({"units": 4} if layer_class is chunked.ChunkedGRU else {}),
                        segment_chunks=0)


@pytest.mark.parametrize("time, chunk_steps, segment_chunks, options, merge_mode, features", [
    (23, 4, 1, {"return_sequences": True}, "concat", 5),  # 3 steps before 5 chunks
    (40, 4, 5, {"return_sequences": True}, "concat", 5),  # 2 segments of 5 chunks
    (40, 8, 1, {}, "sum", 5),  # last states only
    (3, 8, 1, {"return_sequences": True}, "ave", 5),  # no loop
    (37, 5, 1, {"return_sequences": True, "reset_after": False}, "mul", 5),
    (20, 4, 1, {"use_bias": False}, "concat", 5),
    # 12 features for 6 units: projected before the loop (`PROJECT_BEFORE_LOOP_WIDTH`)
    (23, 4, 1, {"return_sequences": True}, "concat", 12),
    (40, 4, 5, {"return_sequences": True}, "concat", 12),
    (3, 8, 1, {"return_sequences": True}, "ave", 12),
    (37, 5, 1, {"return_sequences": True, "reset_after": False}, "mul", 12),
    (20, 4, 1, {"use_bias": False}, "concat", 12),
])
def test_bidirectional_directions_as_two_rows_or_two_steps_match_keras(
        time, chunk_steps, segment_chunks, options, merge_mode, features):
    """`rows=True` runs the two directions of each step as two rows of one batch (one
    `BATCH_MATMUL` per recurrent product), `rows=False` as two steps: both give Keras's
    outputs, with the input projected in the loop (5 features) or before it (12)."""
    assert chunked.projected_before_loop(features, 6) is (features == 12)
    inputs = keras.Input((time, features), batch_size=1)
    layer = keras.layers.Bidirectional(keras.layers.GRU(6, **options), merge_mode=merge_mode)
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(0).random((1, time, features)).astype("float32")
    for rows in (True, False):
        rebuilt = chunked.ChunkedBidirectionalGRU.from_config(dict(
            layer.get_config(), chunk_steps=chunk_steps, segment_chunks=segment_chunks,
            rows=rows, project_before=True))
        rebuilt.build((1, time, features))
        rebuilt.set_weights(layer.get_weights())
        assert rebuilt.rows_possible()
        difference = float(np.abs(np.asarray(rebuilt(x)) - np.asarray(model(x))).max())
        assert difference <= 1e-6, rows
    with pytest.raises(ValueError, match="rows='yes'"):
        chunked.ChunkedBidirectionalGRU(keras.layers.GRU(4), rows="yes")


def test_unlike_directions_run_as_two_steps():
    """A `backward_layer` unlike the forward one cannot share its gate ops: the layer
    keeps two steps per time step (and Keras's numbers)."""
    inputs = keras.Input((9, 3), batch_size=1)
    layer = keras.layers.Bidirectional(
        keras.layers.GRU(4, return_sequences=True),
        backward_layer=keras.layers.GRU(4, activation="relu", return_sequences=True,
                                        go_backwards=True))
    model = keras.Model(inputs, layer(inputs))
    rows = chunked.ChunkedBidirectionalGRU.from_config(dict(layer.get_config(), chunk_steps=4,
                                                            rows=True))
    rows.build((1, 9, 3))
    rows.set_weights(layer.get_weights())
    assert not rows.rows_possible()
    x = np.random.default_rng(1).standard_normal((1, 9, 3)).astype("float32")
    assert float(np.abs(np.asarray(rows(x)) - np.asarray(model(x))).max()) <= 1e-6


def test_segments_where_the_buffer_copies_outweigh_the_restarts(tmp_path):
    """The attention variant with multi-head pooling (2 x GRU(64) returning its sequence)
    runs in segments at T=1000 and 640 in float, in one loop at T=200 (2 segments would
    copy 6% less) and 50, without a returned sequence, and with additive attention pooling
    (computed in the loop, no sequence); in int8 from about T=2000 (a byte a value); the
    float32 file holds the two loops and matches Keras; checked for TFLite Micro (whose
    arena segments enlarge) it keeps one loop and runs there."""
    def model(variant, time, attention="multihead"):
        return zoo.build_gru(variant, input_shape=(time, 8), num_outputs=4, units=64,
                             num_layers=2, compile=False, attention=attention)

    attention = model("attention", 1000)
    assert chunked.segment_chunks_for(attention, 1000, 8) == 25  # 5 segments of 25 x 8
    assert chunked.segment_chunks_for(attention, 1000, 10, "int8") == 1  # a byte a value
    assert chunked.segment_chunks_for(model("attention", 2000), 2000, 10, "int8") == 40
    assert chunked.segment_chunks_for(model("attention", 2000), 2000, 10, "int16x8") == 1
    additive = model("attention", 1000, attention="additive")
    assert chunked.segment_chunks_for(additive, 1000, 8) == 1  # pooled in the loop
    assert chunked.segment_chunks_for(additive, 1000, 8, "float16") == 1
    assert chunked.segment_chunks_for(additive, 2000, 10, "int8") == 1  # pooled too
    # A fully integer int8 file (`int8_float_layers=[]`) pools after the loop: a buffer.
    assert chunked.segment_chunks_for(additive, 2000, 10, "int8", fully_integer=True) == 40
    assert chunked.segment_chunks_for(model("attention", 50), 50, 5) == 1
    assert chunked.segment_chunks_for(model("stacked", 1000), 1000, 4) == 1
    assert chunked.segment_chunks_for(model("attention", 200), 200, 5) == 1
    attention = model("attention", 640)
    assert chunked.chunk_steps_for(attention, 640) == 8
    assert chunked.segment_chunks_for(attention, 640, 8) == 20  # 4 segments of 20 x 8
    x = sequences(3, time=640, features=8)
    path = tmp_path / "segments.tflite"
    from ai_edge_litert.tools import flatbuffer_utils

    def loops(path):
        flat = flatbuffer_utils.read_model(str(path))
        return sum(flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex) == "WHILE"
                   for subgraph in flat.subgraphs for op in subgraph.operators)

    result = to_tflite(attention, path, verification_data=x)
    assert result.recipe == "chunked" and result.max_abs_error <= 1e-5
    assert loops(path) == 2  # the outer loop and, in its body, the inner one
    assert tflite_vs_keras(path, attention, x) <= 1e-5
    micro = to_tflite(attention, tmp_path / "micro.tflite", verification_data=x,
                      check_tflm=True)
    assert loops(tmp_path / "micro.tflite") == 1
    assert micro.tflm["runs"] is True and micro.tflm["max_abs_error"] <= 1e-5


@pytest.mark.parametrize("variant, time, chunk_steps", [
    ("attention", 50, 4),  # 2 steps before the loop, then 12 x 4
    ("attention", 48, 4),  # no steps before the loop: the running max starts below any score
    ("attention", 200, 8),  # over 128 steps: Keras's pooling scales its weights by T
    ("cnn_gru_attention", 30, 5),
])
def test_attention_pooling_computed_in_the_loop_matches_keras(variant, time, chunk_steps):
    """A chain whose sequence only feeds an additive `AttentionPooling` computes the
    pooling in its loop (online softmax): no sequence leaves the loop, the pooling layer
    becomes an identity, and the outputs are Keras's."""
    model = tiny_model(variant, time=time)
    assert chunked.pooling_plan(model) == {"gru_0": "attention_pooling"}
    rebuilt = recipes.rebuild_chunked(model, chunk_steps=chunk_steps, pooling_in_loop=True)
    loop = rebuilt.get_layer("gru_0")
    assert isinstance(loop, chunked.ChunkedGRU) and loop.pooling is not None
    assert type(rebuilt.get_layer("attention_pooling")).__name__ == "Identity"
    assert tuple(loop.output.shape) == (1, TINY["units"])
    assert _max_difference(rebuilt, model, sequences(3, time=time)) <= 1e-6
    kept = recipes.rebuild_chunked(model, chunk_steps=chunk_steps)  # int8's form
    assert type(kept.get_layer("attention_pooling")).__name__ == "AttentionPooling"


def test_which_poolings_run_in_the_loop():
    """Only an additive pooling that alone reads a forward chain's sequence, and not in
    int16x8 files or fully integer int8 ones."""
    assert chunked.pooling_plan(tiny_model("attention", attention="multihead")) == {}
    assert chunked.pooling_plan(tiny_model("bidirectional_attention")) == {}
    assert chunked.pooling_plan(tiny_model("stacked")) == {}
    inputs = keras.Input((12, 3))
    sequence = keras.layers.GRU(4, return_sequences=True, name="gru")(inputs)
    pooled = zoo.layers.AttentionPooling(name="pool")(sequence)
    both = keras.Model(inputs, keras.layers.Concatenate()(
        [pooled, keras.layers.GlobalAveragePooling1D()(sequence)]))
    assert chunked.pooling_plan(both) == {}  # the sequence is read twice
    assert [chunked.pools_in_loop(mode) for mode in (None, "float16", "dynamic", "int8",
                                                      "int16x8")] == [True] * 4 + [False]
    assert not chunked.pools_in_loop("int8", fully_integer=True)  # no float ops at all
    assert chunked.pools_in_loop(None, fully_integer=True)  # (an int8-only argument)
    assert chunked.is_fully_integer("int8", []) and chunked.is_fully_integer("int8", ())
    assert not chunked.is_fully_integer("int8", "auto")
    assert not chunked.is_fully_integer("int8", ["conv1d_0"])
    assert not chunked.is_fully_integer(None, [])
    with pytest.raises(ValueError, match="return_sequences=False"):
        chunked.ChunkedGRU(4, pooling={"name": "pool"})


def test_attention_files_pool_in_their_loop_and_run_in_tflite_micro(tmp_path):
    """The automatic float32 and int8 files of the attention variant carry no sequence
    buffer: they match Keras in LiteRT and TFLite Micro with arenas below what their
    buffers of T rows would take. In int8 the scores are int8 and only the online
    softmax is float; a fully integer int8 file keeps the pooling (a SOFTMAX) after the
    loop, and a larger arena."""
    from ai_edge_litert.tools import flatbuffer_utils

    from export.integer_loops import float_ops

    time = 200
    model = tiny_model("attention", time=time, units=64)
    x = sequences(8, time=time)

    def ops(path):
        flat = flatbuffer_utils.read_model(str(path))
        return [flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex)
                for subgraph in flat.subgraphs for op in subgraph.operators]

    result = to_tflite(model, tmp_path / "float.tflite", verification_data=x, check_tflm=True)
    assert result.recipe == "chunked" and result.max_abs_error <= 1e-5
    assert tflite_vs_keras(tmp_path / "float.tflite", model, x) <= 1e-5
    assert result.tflm["runs"] is True and result.tflm["max_abs_error"] <= 1e-5
    assert result.tflm["arena_bytes"] < time * 64 * 4  # 35 KB (the float buffer: 51 KB)
    found = ops(tmp_path / "float.tflite")
    assert "EXP" in found and found.count("SOFTMAX") == 1  # the head's only

    integer = to_tflite(model, tmp_path / "int8.tflite", quantization="int8",
                        representative_data=x, check_tflm=True)
    assert integer.recipe == "chunked" and integer.tflm["runs"] is True
    assert integer.max_abs_error <= 0.01 and tflite_vs_keras(
        tmp_path / "int8.tflite", model, x) <= 0.01  # 0.0018
    assert integer.tflm["max_abs_error"] <= 0.01
    found = ops(tmp_path / "int8.tflite")
    assert "EXP" in found and found.count("SOFTMAX") == 1
    assert any("online softmax float" in note for note in integer.notes)
    # The GRU and the hidden score layer (its FULLY_CONNECTED and TANH) run in int8; the
    # score vector's FULLY_CONNECTED is float (F26: an int8 one would take the running
    # max's range), and the loop carries the three running values in float.
    with open(tmp_path / "int8.tflite", "rb") as handle:
        found = float_ops(handle.read())
    assert set(found) <= {"DEQUANTIZE", "QUANTIZE", "REDUCE_MAX", "MAXIMUM", "SUB", "EXP",
                          "MUL", "SUM", "ADD", "DIV", "WHILE", "FULLY_CONNECTED"}, found
    assert "TANH" not in found and 1 <= found.count("FULLY_CONNECTED") <= 2  # loop, prefix
    whole = to_tflite(model, tmp_path / "integer.tflite", quantization="int8",
                      representative_data=x, check_tflm=True, int8_float_layers=[])
    found = ops(tmp_path / "integer.tflite")
    assert "EXP" not in found and found.count("SOFTMAX") == 2
    with open(tmp_path / "integer.tflite", "rb") as handle:
        assert float_ops(handle.read()) == []
    # 26 KB against 75 KB with the int8 buffer (200 x 64 bytes, copied per iteration).
    assert integer.tflm["arena_bytes"] < whole.tflm["arena_bytes"] / 2


def test_chunk_plan_finds_chains_and_refuses_what_it_cannot_compute():
    assert chunked.chunk_plan(tiny_model("stacked")) == [["gru_0", "gru_1"]]
    assert chunked.chunk_plan(tiny_model("bidirectional")) == []
    assert chunked.bidirectional_plan(tiny_model("bidirectional")) == [
        "bidirectional_gru_0", "bidirectional_gru_1"]
    assert not chunked.chunkable(tiny_model("stacked", cell="lstm"))
    masked = tiny_model("stacked", input_shape=(6,), vocab_size=20, embedding_dim=4)
    assert not chunked.chunkable(masked)
    with pytest.raises(ValueError, match="'chunked' recipe needs GRU layers"):
        recipes.rebuild_chunked(masked)


def test_automatic_chunk_size():
    model = tiny_model("stacked")  # 2 x GRU(4): small packed weights
    assert chunked.chunk_steps_for(model, 6) == 6  # short float sequence: no loop
    assert chunked.chunk_steps_for(model, 200) == 4  # long: 4-step chunks
    assert chunked.chunk_steps_for(model, 6, "int8") == 3  # int8 always loops
    assert chunked.chunk_steps_for(model, 64, "int8") == 4  # a divisor of T
    assert chunked.chunk_steps_for(model, 51, "int8") == 3
    assert chunked.chunk_steps_for(model, 7, "int8") == 2  # one step before the loop
    # A small model's int8 file is mostly its ops and tensors: 5-step bodies would
    # grow it by more than a quarter of its weights.
    assert chunked.chunk_steps_for(model, 50, "int8") == 2

    def model_of(variant, units, time=50):
        return zoo.build_gru(variant, input_shape=(time, 8), num_outputs=4, units=units,
                             conv_filters=64, compile=False)

    # 2 x GRU(64): 3 more steps add ~8.4 KB to 39 KB of weights.
    assert chunked.chunk_steps_for(model_of("stacked", 64), 50, "int8") == 5
    assert chunked.chunk_steps_for(model_of("stacked", 64, 200), 200, "int8") == 5
    assert chunked.chunk_steps_for(model_of("stacked", 64, 64), 64, "int8") == 4
    assert chunked.chunk_steps_for(model_of("stacked", 32), 50, "int8") == 2  # 10.5 KB
    # 2 x GRU(48), 22.7 KB of weights: 3 more steps are too many, but at T=25 the
    # 2-step body has a step before the loop, so 5 steps add only 2.
    assert chunked.chunk_steps_for(model_of("stacked", 48), 50, "int8") == 2
    assert chunked.chunk_steps_for(model_of("stacked", 48, 25), 25, "int8") == 5
    # Weights kept float (3 bytes more each) count against the longer body's share: the
    # first convolution (2,624 weights, kept float by default) makes it 2 steps, unless
    # the file is asked to keep nothing float; a float Dense head (260 weights) does not.
    conv = model_of("cnn_gru", 64)
    assert chunked.chunk_steps_for(conv, 50, "int8") == 2
    assert chunked.chunk_steps_for(conv, 50, "int8", int8_float_layers=["conv1d_0"]) == 2
    assert chunked.chunk_steps_for(conv, 50, "int8", int8_float_layers=[]) == 5
    assert chunked.chunk_steps_for(conv, 50, "int8", fully_integer=True) == 5
    assert chunked.chunk_steps_for(conv, 50, "int8", int8_float_layers=["output"]) == 5
    assert chunked.chunk_steps_for(conv, 50, "int8",
                                   int8_float_layers=["output", "conv1d_0"]) == 2
    assert chunked.default_chunk_steps(50) == 5 and chunked.default_chunk_steps(23) == 4


def test_a_loop_body_holds_at_most_768_kb_of_packed_kernels():
    """XNNPACK keeps a packed copy of the recurrent kernels per step of a body (F16), so
    wide layers take fewer steps per iteration; a bidirectional layer's body holds both
    directions, a chain of layers all of them."""
    def model(units, variant="stacked", layers=2):
        return zoo.build_gru(variant, input_shape=(200, 8), num_outputs=4, units=units,
                             num_layers=layers, compile=False)

    assert chunked.body_steps_cap(model(64)) == 8  # 2 x 64 x 192 x 4 bytes = 96 KB a step
    assert chunked.body_steps_cap(model(64), "int8") == 32  # one byte a weight
    assert chunked.body_steps_cap(model(64, "bidirectional")) == 8  # one layer per body
    assert chunked.body_steps_cap(model(64, "stacked", layers=4)) == 4
    assert chunked.chunk_steps_for(model(32), 200) == 4  # the usual 4 when they fit
    assert chunked.chunk_steps_for(model(128), 200) == 2  # 384 KB a step
    assert chunked.chunk_steps_for(model(256), 200) == 1  # 1.5 MB a step
    assert chunked.chunk_steps_for(model(256), 200, "int8") == 2


def test_layers_returning_long_sequences_take_more_steps_per_iteration():
    """An output buffer of T rows is copied at every iteration: at T=1000 the attention
    variant with multi-head pooling takes 8 steps per iteration in float32 (4 bytes a
    value; the copies alone would ask for 25, but a body of 8 steps already holds 768 KB
    of packed kernels) and 10 in int8; without a buffer (stacked, or additive attention
    pooled in the loop, in int8 too unless fully integer) and at T=200 the usual 4 (5 in
    int8, whose bodies take 5 steps where 5 divides T)."""
    def model(variant, time, attention="multihead"):
        return zoo.build_gru(variant, input_shape=(time, 8), num_outputs=4, units=64,
                             num_layers=2, compile=False, attention=attention)

    attention = model("attention", 1000)
    assert chunked.body_steps_cap(attention) == 8
    assert chunked.buffer_chunk_steps(attention, 1000) == 8
    assert chunked.chunk_steps_for(attention, 1000) == 8
    assert chunked.chunk_steps_for(attention, 1000, "int8") == 10
    additive = model("attention", 1000, attention="additive")
    assert chunked.buffer_chunk_steps(additive, 1000) == 1  # pooled in the loop
    assert chunked.chunk_steps_for(additive, 1000) == 4
    assert chunked.chunk_steps_for(additive, 1000, "int8") == 5  # pooled in int8 too
    assert chunked.chunk_steps_for(additive, 1000, "int8", fully_integer=True) == 10
    assert chunked.buffer_chunk_steps(model("stacked", 1000), 1000) == 1  # no buffer
    assert chunked.chunk_steps_for(model("stacked", 1000), 1000) == 4
    assert chunked.chunk_steps_for(model("attention", 200), 200, "int8") == 5
    # int8 bodies stop at 10 steps (file size): 20 would keep the copies within bounds.
    assert chunked.chunk_steps_for(model("bidirectional_attention", 1000), 1000, "int8") == 10


# === Conversions, run here and compared with Keras ===


def test_float32_chunked_file_loops_and_matches_keras(tmp_path):
    model = tiny_model("stacked", time=14)
    x = sequences(6, time=14)
    path = tmp_path / "chunked.tflite"
    result = to_tflite(model, path, verification_data=x, recipe="chunked")
    assert result.recipe == "chunked" and "WHILE" in result.ops  # 14 = 2 + 3 x 4 steps
    assert result.max_abs_error <= 1e-5
    assert tflite_vs_keras(path, model, x) <= 1e-5


def test_float_bidirectional_files_run_both_directions_as_rows(tmp_path):
    """A float32 file runs a bidirectional GRU's two directions as two rows
    (`BATCH_MATMUL`), verified against Keras; an int8 file keeps two steps (its
    `BATCH_MATMUL` is slow), and so does a file for TFLite Micro (whose `BATCH_MATMUL`
    keeps a copy of its weights in the arena, F28)."""
    model = tiny_model("bidirectional", time=14)
    x = sequences(8, time=14)
    fast = to_tflite(model, tmp_path / "rows.tflite", verification_data=x)
    assert fast.recipe == "chunked" and "BATCH_MATMUL" in fast.ops
    assert tflite_vs_keras(tmp_path / "rows.tflite", model, x) <= 1e-5
    micro = to_tflite(model, tmp_path / "micro.tflite", verification_data=x, check_tflm=True)
    assert micro.recipe == "chunked" and "BATCH_MATMUL" not in micro.ops
    assert micro.tflm["runs"] is True and micro.tflm["max_abs_error"] <= 1e-5
    # float16, over 64 steps (a loop: shorter tiny models are unrolled whole), 72 = 18 x 4
    # (no steps before the loop; with them, see F28). Its loop bodies dequantize their
    # own weights: a `BATCH_MATMUL` whose weights came in as a loop variable (stacked and
    # dequantized before the loop) took 1.7x as long (F28).
    long_model, long_x = tiny_model("bidirectional", time=72), sequences(4, time=72)
    half = to_tflite(long_model, tmp_path / "half.tflite", quantization="float16",
                     verification_data=long_x)
    assert half.recipe == "chunked" and "BATCH_MATMUL" in half.ops and "WHILE" in half.ops
    assert tflite_vs_keras(tmp_path / "half.tflite", long_model, long_x) <= 1e-2
    products, outside, _ = _loop_weights_from_outside(tmp_path / "half.tflite")
    assert products and not outside
    quantized = to_tflite(model, tmp_path / "int8.tflite", quantization="int8",
                          representative_data=sequences(24, time=14))
    assert quantized.recipe == "chunked" and "BATCH_MATMUL" not in quantized.ops


def _product_inner_sizes(path):
    """The inner dimension of the weights of each `FULLY_CONNECTED` and `BATCH_MATMUL` op,
    `(before the loop, in the loop bodies)`: two sets."""
    from ai_edge_litert.tools import flatbuffer_utils

    content = flatbuffer_utils.read_model_from_bytearray(pathlib.Path(path).read_bytes())

    def sizes(subgraphs):
        found = set()
        for subgraph in subgraphs:
            for op in subgraph.operators or []:
                name = flatbuffer_utils.opcode_to_name(content, op.opcodeIndex)
                if name == "FULLY_CONNECTED":  # weights (outputs, inputs)
                    found.add(int(subgraph.tensors[op.inputs[1]].shape[-1]))
                elif name == "BATCH_MATMUL":  # weights (batch, inputs, outputs)
                    found.add(int(subgraph.tensors[op.inputs[1]].shape[-2]))
        return found

    return sizes(content.subgraphs[:1]), sizes(content.subgraphs[1:])


def test_wide_inputs_are_projected_before_the_loop(tmp_path):
    """In a float file, a chunked loop whose first GRU reads at least
    `PROJECT_BEFORE_LOOP_WIDTH` values per unit projects that input for the whole sequence
    before the loop: one product of T rows instead of one per chunk in the body
    (0.86-0.97x the time on the models measured; `chunked.PROJECT_BEFORE_LOOP_WIDTH`).
    The tiny bidirectional model's second layer reads the first one's two directions (8
    values for 4 units), its first layer 3 features (kept in the body): projected before
    the loop in float (directions as rows) and in int8 (as two steps); a chain of two
    GRU(4) reads 8 features. Files for TFLite Micro keep the projection in the body.
    Every file matches Keras."""
    units = TINY["units"]
    model, x = tiny_model("bidirectional", time=72), sequences(4, time=72)
    path = tmp_path / "rows.tflite"
    result = to_tflite(model, path, verification_data=x)
    assert result.recipe == "chunked" and "BATCH_MATMUL" in result.ops and "WHILE" in result.ops
    before, bodies = _product_inner_sizes(path)
    assert 2 * units in before and bodies == {FEATURES, units}
    assert tflite_vs_keras(path, model, x) <= 1e-5
    path = tmp_path / "two_steps.tflite"
    result = to_tflite(model, path, quantization="int8", representative_data=sequences(
        24, time=72), verification_data=x)
    assert result.recipe == "chunked" and "BATCH_MATMUL" not in result.ops
    before, bodies = _product_inner_sizes(path)
    assert 2 * units in before and bodies == {FEATURES, units}
    assert tflite_vs_keras(path, model, x) <= 0.05

    inputs = keras.Input((72, 2 * units))
    hidden = keras.layers.GRU(units, return_sequences=True)(inputs)
    chain = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GRU(units)(hidden)))
    wide = sequences(24, time=72, features=2 * units)
    for name, kwargs, projected in [
            ("float32", {}, True),
            ("micro", {"check_tflm": True}, False),
            ("int8", {"quantization": "int8", "representative_data": wide}, True)]:
        path = tmp_path / f"{name}.tflite"
        result = to_tflite(chain, path, verification_data=wide[:4], **kwargs)
        assert result.recipe == "chunked" and "WHILE" in result.ops, name
        before, bodies = _product_inner_sizes(path)
        assert (2 * units in before) is projected and (2 * units in bodies) is not projected
        assert tflite_vs_keras(path, chain, wide[:4]) <= (1e-5 if name != "int8" else 0.05)


def _loop_weights_from_outside(path):
    """The `FULLY_CONNECTED` and `BATCH_MATMUL` ops of a file's loop bodies, those of
    them whose weights are an input of their body (a loop variable), and the number of
    `WHILE` ops in the file."""
    from ai_edge_litert.tools import flatbuffer_utils

    with open(path, "rb") as handle:
        content = flatbuffer_utils.read_model_from_bytearray(handle.read())
    names = [[(op, flatbuffer_utils.opcode_to_name(content, op.opcodeIndex))
              for op in subgraph.operators or []] for subgraph in content.subgraphs]
    products = [(subgraph, op) for subgraph, ops in zip(content.subgraphs[1:], names[1:])
                for op, name in ops if name in ("FULLY_CONNECTED", "BATCH_MATMUL")]
    loops = sum(name == "WHILE" for ops in names for _, name in ops)
    return (products, [op for subgraph, op in products if op.inputs[1] in list(subgraph.inputs)],
            loops)


@pytest.mark.parametrize("variant, rows", [
    ("attention", False),  # a chain of two GRU layers with its pooling in the loop
    ("bidirectional", True),  # the directions as rows
    ("bidirectional", False),  # two steps
])
def test_float16_steps_before_the_loop_leave_the_body_its_own_weights(variant, rows, tmp_path,
                                                                      monkeypatch):
    """At T=73 (18 chunks of 4 and one step before the loop) the weights used by the step
    before the loop and by the body would be dequantized once, before the loop, and
    enter the body as loop variables (1.2-2.1x as long on XNNPACK, F28). The float16 file
    runs that step in a loop of its own: no product in a loop body takes its weights
    from outside, and the file still matches Keras."""
    if not rows:
        monkeypatch.setattr(chunked, "ROWS_MODES", ())
    model, x = tiny_model(variant, time=73), sequences(4, time=73)
    path = tmp_path / "half.tflite"
    result = to_tflite(model, path, quantization="float16", verification_data=x)
    assert result.recipe == "chunked"
    assert ("BATCH_MATMUL" in result.ops) is (variant == "bidirectional" and rows)
    products, outside, loops = _loop_weights_from_outside(path)
    assert products and not outside
    assert loops == (4 if variant == "bidirectional" else 2)  # each loop and its prefix's
    assert tflite_vs_keras(path, model, x) <= 1e-2


@pytest.mark.parametrize("quantization", [None, "dynamic", "int8"])
def test_other_modes_keep_the_loop_weights_in_the_body_with_steps_before_the_loop(
        quantization, tmp_path):
    """Why only float16 files need the steps before the loop in a loop of their own
    (`chunked.PREFIX_LOOP_MODES`, F28): float32, dynamic-range and int8 files run those
    steps unrolled before their one loop, and the loop body still holds its own weights."""
    model, x = tiny_model("stacked", time=73), sequences(4, time=73)
    kwargs = {"representative_data": sequences(40, time=73, seed=1)} if quantization else {}
    path = tmp_path / "model.tflite"
    result = to_tflite(model, path, quantization=quantization, verification_data=x, **kwargs)
    assert result.recipe == "chunked" and not chunked.prefix_in_loop(quantization)
    products, outside, loops = _loop_weights_from_outside(path)
    assert loops == 1  # the step before the loop runs unrolled
    assert products and not outside
    assert tflite_vs_keras(path, model, x) <= (1e-5 if quantization is None else 1e-2)


def test_int8_chunked_file_with_int8_io_matches_keras(tmp_path):
    model = tiny_model("stacked", time=12)
    data = sequences(40, time=12)
    path = tmp_path / "int8.tflite"
    result = to_tflite(model, path, quantization="int8", representative_data=data,
                       io_type="int8")
    assert result.recipe == "chunked" and "WHILE" in result.ops
    assert "held back from calibration" in result.verification
    lite = LiteModel(path)
    assert lite.input_details()["inputs"]["dtype"] == np.int8
    assert tflite_vs_keras(path, model, data) <= 0.1
    assert any("fully connected weights" in note for note in result.notes)


@pytest.mark.parametrize("variant, time, options, form, segments", [
    ("attention", 12, {}, "chunked", 1),  # the GRU chain returns sequences: an output buffer
    ("bidirectional", 13, {}, "chunked", 1),  # two loops; 13 = 1 step before the loop + 6 x 2
    ("gru_fcn", 13, {}, "chunked", 1),  # the loop's last state joins the convolution branch
    ("stacked", 12, {"cell": "lstm"}, "loop", 1),  # Keras's own loop
    # Segments: loops in a loop (calibrated iteration by iteration at both levels).
    ("attention", 24, {}, "chunked", 3),  # 24 = 6 x 4: 2 segments of 3 chunks
    ("bidirectional", 32, {}, "chunked", 2),  # 4 segments of 2 x 4; the backward one mirrored
])
def test_int8_chunked_files_carry_their_loop_variables_in_int8(variant, time, options, form,
                                                               segments, tmp_path,
                                                               monkeypatch):
    """The loops' states, input sequence and output buffers are int8 loop variables, in
    the chunked form (inner and outer loops of segments too) and in Keras's own loop
    (docs/tflite-facts.md, F21), and the data moves that join a loop's outputs run in
    int8 too: with int8 inputs and outputs and no float layers, no op of the file reads
    or writes a float tensor, and it still matches Keras."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    monkeypatch.setattr(chunked, "segment_chunks_for", lambda *args: segments)
    model = tiny_model(variant, time=time, **options)
    data = sequences(40, time=time)
    path = tmp_path / "integer.tflite"
    result = to_tflite(model, path, quantization="int8", representative_data=data,
                       io_type="int8", int8_float_layers=[])
    assert result.recipe == form and "WHILE" in result.ops
    assert not [note for note in result.notes if "not fully integer" in note]
    assert tflite_vs_keras(path, model, data) <= 0.1
    flat = flatbuffer_utils.read_model(str(path))
    loops = [(subgraph, op) for subgraph in flat.subgraphs for op in subgraph.operators
             if flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex) == "WHILE"]
    inner = [op for subgraph, op in loops if subgraph is not flat.subgraphs[0]]
    assert len(inner) == (1 if segments > 1 else 0)  # one chain or layer returns its sequence
    carried = [subgraph.tensors[i].type for subgraph, loop in loops for i in loop.inputs]
    assert loops and carried.count(schema.TensorType.INT8) >= 3 * len(loops)
    float_ops = [(number, flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex))
                 for number, subgraph in enumerate(flat.subgraphs)
                 for op in subgraph.operators for index in list(op.inputs) + list(op.outputs)
                 if index >= 0 and subgraph.tensors[index].type == schema.TensorType.FLOAT32]
    assert float_ops == []


@pytest.mark.parametrize("time", [40, 120])
def test_int8_chunked_file_is_a_third_of_the_float32_loop_file(time):
    """The int8 loop holds the weights once: its size does not grow with T."""
    keras.utils.set_random_seed(0)
    model = zoo.build_gru("stacked", input_shape=(time, 8), num_outputs=4, units=64,
                          compile=False)
    data = np.random.default_rng(0).standard_normal((8, time, 8)).astype("float32")
    loop = strip_tensor_names(converter.convert(recipes.rebuild(model, unroll=False)))
    chunk = chunked.chunk_steps_for(model, time, "int8")
    int8 = strip_tensor_names(converter.convert(
        recipes.rebuild_chunked(model, chunk_steps=chunk), quantization="int8",
        representative=[{"inputs": data[i : i + 1]} for i in range(len(data))],
        calibrate_loops=True))
    assert len(int8) <= 0.35 * len(loop), (len(int8), len(loop))
    lite = LiteModel(int8)
    keras_out = model.predict(data[:2], verbose=0)
    assert np.abs(lite.predict(data[:2]) - keras_out).max() <= 0.05


def test_int8_file_keeping_its_first_convolution_float_stays_a_third_of_the_loop_file(
        tmp_path):
    """The first convolution of a GRU-FCN stays float in int8 (4 bytes a weight): the
    automatic recipe gives such a file shorter loop bodies, and it stays within 0.35x the
    float32 loop file (at T=50 with 5-step bodies it came to 0.37x)."""
    keras.utils.set_random_seed(0)
    model = zoo.build_gru("gru_fcn", input_shape=(50, 8), num_outputs=4, units=64,
                          conv_filters=64, compile=False)
    data = np.random.default_rng(0).standard_normal((24, 50, 8)).astype("float32")
    loop = to_tflite(model, tmp_path / "loop.tflite", form="loop", verification_data=data)
    int8 = to_tflite(model, tmp_path / "int8.tflite", quantization="int8",
                     representative_data=data)
    assert int8.recipe == "chunked"
    assert int8.size <= 0.35 * loop.size, (int8.size, loop.size)
    assert tflite_vs_keras(int8.path, model, data[:4]) <= 0.05


def test_files_for_a_microcontroller_take_one_step_per_loop_iteration(tmp_path):
    """TFLite Micro plans every tensor and op of a loop body into its arena, and the
    iterations cost nothing there beside the arithmetic: a file for a microcontroller
    (`check_tflm=True`, or a C array) takes one step per iteration, unless a layer
    returns its sequence (the loop copies that buffer at every iteration); a file for
    LiteRT keeps the longer body that XNNPACK runs faster (F30)."""
    from ai_edge_litert.tools import flatbuffer_utils
    from tflite_micro.python.tflite_micro import runtime

    from export._worker import tflm_arena_bytes

    keras.utils.set_random_seed(0)
    model = zoo.build_gru("stacked", input_shape=(50, 8), num_outputs=4, units=64,
                          compile=False)
    assert chunked.chunk_steps_for(model, 50, "int8") == 5
    assert chunked.chunk_steps_for(model, 50, "int8", micro=True) == 1
    assert chunked.chunk_steps_for(model, 16) == 16  # float: unrolled for LiteRT
    assert chunked.chunk_steps_for(model, 16, micro=True) == 1
    returning = zoo.build_gru("bidirectional", input_shape=(1000, 8), num_outputs=4,
                              units=64, compile=False)
    buffered = chunked.buffer_chunk_steps(returning, 1000, "int8")
    assert buffered > 1
    assert chunked.chunk_steps_for(returning, 1000, "int8", micro=True) == buffered

    def body_ops(path):
        flat = flatbuffer_utils.read_model(str(path))
        return max(len(graph.operators) for graph in flat.subgraphs[1:])

    data = np.random.default_rng(0).standard_normal((24, 50, 8)).astype("float32")
    kwargs = dict(quantization="int8", representative_data=data)
    lite = to_tflite(model, tmp_path / "lite.tflite", check_tflm=False, **kwargs)
    micro = to_tflite(model, tmp_path / "micro.tflite", check_tflm=True, **kwargs)
    c_source = to_tflite(model, tmp_path / "c.tflite", c_array=True, check_tflm=False,
                         **kwargs)
    assert lite.recipe == micro.recipe == c_source.recipe == "chunked"
    assert body_ops(micro.path) == body_ops(c_source.path) < body_ops(lite.path) / 3
    for result in (lite, micro, c_source):
        assert tflite_vs_keras(result.path, model, data[:4]) <= 0.05
    assert micro.tflm["runs"] is True and micro.tflm["max_abs_error"] <= 0.05
    interpreter = runtime.Interpreter.from_bytes(
        pathlib.Path(lite.path).read_bytes(), arena_size=4 * 1024 * 1024)
    lite_arena = tflm_arena_bytes(interpreter)
    assert micro.tflm["arena_bytes"] < 0.6 * lite_arena, (micro.tflm["arena_bytes"],
                                                          lite_arena)
    assert micro.size < lite.size


def _sequence_rescales(content, shape):
    """`(graph, input scale, output scale)` of each int8-to-int8 QUANTIZE of a tensor
    of `shape` (graph 0: the main graph, else a loop body)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    found = []
    for number, graph in enumerate(flat.subgraphs):
        for op in graph.operators or []:
            source, target = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
            if (flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex) == "QUANTIZE"
                    and source.type == target.type == schema.TensorType.INT8
                    and list(source.shape) == list(shape)):
                found.append((number, float(source.quantization.scale[0]),
                              float(target.quantization.scale[0])))
    return found


@pytest.mark.parametrize("variant, time, segments", [
    ("stacked", 24, 1),
    ("attention", 24, 3),  # 2 segments of 3 chunks: the sequence enters an inner loop too
])
def test_int8_loops_rescale_their_input_sequence_at_most_once_per_call(variant, time,
                                                                       segments,
                                                                       monkeypatch):
    """An int8 chunked loop reads its whole input sequence at every iteration, and its
    body is calibrated on a subset of the samples (`calibration.MAX_RECORDED_ITERATIONS`;
    here 8 of 40). Calibration gives the sequence inside the body the range it has
    entering the loop (all samples), so one scale and no rescale of its `T x features`
    values at every iteration. Where the scales still differ, `integer_loop_variables`
    rescales the sequence once, before the loop, with outputs identical bit for bit to
    those of the rescale in the body."""
    from export import calibration, integer_loops

    model = tiny_model(variant, time=time)
    data = sequences(40, time=time)
    rebuilt = recipes.rebuild_chunked(model, chunk_steps=4, segment_chunks=segments)
    samples = [{"inputs": data[i : i + 1]} for i in range(len(data))]
    shape = [time, data.shape[2]]

    def convert(widen):
        with monkeypatch.context() as patch:
            patch.setattr(calibration, "MAX_RECORDED_ITERATIONS", 1)
            patch.setattr(calibration, "integer_loop_variables", lambda content: (content, 0))
            if not widen:
                patch.setattr(calibration._Loop, "widen_read_only", lambda *args: None)
            return converter.convert(rebuilt, quantization="int8", representative=samples,
                                     calibrate_loops=True)

    # The body's own range (8 samples) is narrower than the sequence's: the rescale
    # runs in the body at every iteration, or (the default) once before the loop.
    narrow = convert(widen=False)
    in_body = integer_loops.integer_loop_variables(narrow, read_only_in_reader_scale=False)[0]
    before = integer_loops.integer_loop_variables(narrow)[0]
    assert [graph for graph, _, _ in _sequence_rescales(in_body, shape)] != []
    assert 0 not in [graph for graph, _, _ in _sequence_rescales(in_body, shape)]
    assert [graph for graph, _, _ in _sequence_rescales(before, shape)] == [0]
    assert np.array_equal(run_litert(in_body, data[:6]), run_litert(before, data[:6]))
    # With the range of the sequence entering the loop: one scale, no rescale at all.
    wide = integer_loops.integer_loop_variables(convert(widen=True))[0]
    assert _sequence_rescales(wide, shape) == []
    assert np.abs(run_litert(wide, data[:4]) - model.predict(data[:4], verbose=0)).max() <= 0.1


# === Calibration data: refused when degenerate, verification on other data ===


@pytest.fixture
def record_worker(monkeypatch):
    """A stand-in for the conversion child: records the job and its data, then fails."""
    seen = {}

    def fake(command, job, workdir, timeout):
        arrays = np.load(job["data_path"])
        seen.update(job=job, **{key: arrays[key] for key in arrays.files})
        return {"ok": False, "error_type": "Stop", "message": "recorded"}, None

    monkeypatch.setattr(exporter, "_run_worker", fake)
    return seen


@pytest.mark.parametrize("make, found", [
    (lambda x: np.zeros_like(x), r"holding all zeros"),
    (lambda x: np.full_like(x, 0.5), r"holding the constant 0.5 everywhere"),
    (lambda x: np.repeat(x[:1], len(x), axis=0), r"12 identical samples"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) < 3, np.nan, x),
     r"3 NaN and 0 inf values"),
])
def test_degenerate_calibration_data_is_refused(tmp_path, record_worker, make, found):
    data = make(sequences(12))
    with pytest.raises(ValueError, match=f"`representative_data` must be .*Received: "
                                         f"representative_data=.*{found}"):
        to_tflite(tiny_model("stacked"), tmp_path / "x.tflite", quantization="int8",
                  representative_data=data)
    assert not record_worker and os.listdir(tmp_path) == []


def test_verification_uses_held_back_samples_not_the_calibration_inputs(tmp_path,
                                                                        record_worker):
    data = sequences(30)
    with pytest.raises(exporter.ConversionError):
        to_tflite(tiny_model("stacked"), tmp_path / "x.tflite", quantization="int8",
                  representative_data=data)
    calibration, verify = record_worker["calibration"], record_worker["verify"]
    assert len(verify) >= 1 and len(calibration) + len(verify) == len(data)
    rows = {row.tobytes() for row in calibration}
    assert not any(row.tobytes() in rows for row in verify)


def test_verification_prefers_validation_data_for_quantized_files(tmp_path, record_worker):
    data, other = sequences(30), sequences(10, seed=7)
    labels = np.zeros(len(other), np.int64)
    with pytest.raises(exporter.ConversionError):
        to_tflite(tiny_model("stacked"), tmp_path / "x.tflite", quantization="int8",
                  representative_data=data, validation_data=(other, labels))
    np.testing.assert_array_equal(record_worker["eval"], other)
    assert all(row.tobytes() in {r.tobytes() for r in other} for row in record_worker["verify"])
    assert len(record_worker["calibration"]) == len(data)  # nothing held back


def test_calibration_samples_are_spread_over_the_data(tmp_path, record_worker):
    data = sequences(100)
    with pytest.raises(exporter.ConversionError):
        to_tflite(tiny_model("stacked"), tmp_path / "x.tflite", quantization="int8",
                  representative_data=data, calibration_samples=10)
    calibration = record_worker["calibration"]
    positions = [next(i for i in range(len(data)) if data[i].tobytes() == row.tobytes())
                 for row in calibration]
    assert len(positions) == 10 and positions[0] < 10 and positions[-1] >= 90


def test_collapsed_int8_outputs_are_refused(tmp_path, monkeypatch):
    """A file that answers one class for every input fails, even within tolerance."""
    model = tiny_model("stacked")
    data = sequences(20)
    check = 3 * sequences(16, seed=3)  # spread-out inputs: the Keras classes differ

    def collapsed(command, job, workdir, timeout):
        arrays = np.load(job["data_path"])
        keras_out = np.asarray(model.predict(arrays["verify"], verbose=0))
        assert len(np.unique(keras_out.argmax(-1))) > 1  # Keras does vary
        flat = np.tile(keras_out.mean(axis=0), (len(keras_out), 1))
        flat[:, 0] = flat.max() + 0.01  # class 0 wins everywhere, close to Keras's numbers
        np.savez(job["outputs_path"], keras_verify=keras_out, tflite_verify=flat)
        open(job["out_path"], "wb").write(b"")
        return {"ok": True, "convert_seconds": 0.0, "size": 0, "notes": [],
                "ops": {"builtin": [], "flex": [], "custom": []}}, None

    monkeypatch.setattr(exporter, "_run_worker", collapsed)
    with pytest.raises(VerificationError, match=r"predicts class 0 for all \d+ inputs, "
                                                r"where Keras predicts \d classes"):
        to_tflite(model, tmp_path / "x.tflite", quantization="int8", representative_data=data,
                  verification_data=check, tolerance=1.0, fallback=False)
    assert not (tmp_path / "x.tflite").exists()


def test_collapse_check_ignores_near_ties():
    """Keras's classes differ only by near-ties: one class from the file is no collapse."""
    near_tie = np.array([[0.505, 0.495], [0.495, 0.505], [0.51, 0.49]])
    decided = np.array([[0.9, 0.1], [0.2, 0.8], [0.51, 0.49]])
    one_class = np.array([[0.6, 0.4]] * 3)
    assert exporter._collapse("classification", near_tie, one_class) is None
    assert exporter._collapse("classification", near_tie, one_class, margin=0.0)
    assert exporter._collapse("classification", decided, one_class, margin=0.02)


def test_collapse_check_on_regression_outputs():
    keras_out = np.linspace(0, 1, 10)[:, None]
    assert exporter._collapse("regression", keras_out, np.full_like(keras_out, 0.5))
    assert exporter._collapse("regression", keras_out, keras_out + 0.01) is None


@pytest.mark.parametrize(
    "recipe, quantization, expected",
    [
        ("auto", None, ["chunked", "loop", "unrolled"]),
        ("auto", "int8", ["chunked", "loop", "unrolled"]),
        ("auto", "int16x8", ["unrolled"]),  # the 16x8 quantizer refuses WHILE
        ("chunked", "int8", ["chunked", "loop", "unrolled"]),
    ],
)
def test_recipe_choice_for_chunkable_models(recipe, quantization, expected):
    assert exporter._recipes_to_try(recipe, quantization, False, True,
                                    chunkable=True) == expected
    assert exporter._recipes_to_try(recipe, quantization, False, False,
                                    chunkable=True) == expected[:1]


def test_regression_int8_is_not_clipped_at_the_calibration_range(tmp_path):
    """Inputs 3x beyond the calibration data: widened ranges keep int8 close to Keras."""
    model = tiny_model("stacked", task="regression", num_outputs=1)
    data = 0.5 * sequences(60)
    far = 1.5 * sequences(16, seed=5)  # three times the calibration data's spread
    errors = {}
    for margin in (1, 3):
        result = to_tflite(model, tmp_path / f"m{margin}.tflite", quantization="int8",
                           representative_data=data, verification_data=far,
                           range_margin=margin, fallback=False)
        errors[margin] = result.max_abs_error
        widened = any("ranges widened" in note for note in result.notes)
        assert widened == (margin > 1)
    assert errors[3] < 0.5 * errors[1], errors
    default = to_tflite(model, tmp_path / "auto.tflite", quantization="int8",
                        representative_data=data, verification_data=far)
    assert any("x2" in note for note in default.notes)  # regression: widened by default
    with pytest.raises(ValueError, match=r"`range_margin`.*0\.5"):
        to_tflite(model, tmp_path / "bad.tflite", quantization="int8",
                  representative_data=data, range_margin=0.5)


# === TFLite Micro for full-sequence files ===


def test_full_sequence_files_run_in_tflite_micro_on_request(tmp_path):
    """`check_tflm=True` runs a chunked (int8) file in TFLite Micro and never picks
    Keras's loop form, which TFLM runs with wrong outputs (F9): an LSTM gets the
    unrolled form instead. A C array asks for the check by default, and a loop file
    written as one gets a warning instead of a wrong check."""
    model, data = tiny_model(), sequences(24)
    result = to_tflite(model, tmp_path / "int8.tflite", quantization="int8",
                       representative_data=data, check_tflm=True)
    assert result.recipe == "chunked" and result.tflm["runs"] is True
    assert 0 < result.tflm["arena_bytes"] < result.tflm["arena_size_given"]
    assert result.tflm["max_abs_error"] <= result.max_abs_error + 0.02

    lstm = tiny_model(cell="lstm")
    assert to_tflite(lstm, tmp_path / "lstm.tflite").recipe == "loop"
    micro = to_tflite(lstm, tmp_path / "lstm_micro.tflite", check_tflm=True)
    assert micro.recipe == "unrolled" and micro.tflm["runs"] is True
    assert micro.tflm["max_abs_error"] <= 1e-5
    with pytest.warns(UserWarning, match="loop form, which TFLite Micro runs with wrong"):
        written = to_tflite(lstm, tmp_path / "lstm_c.tflite", c_array=True)
    assert written.recipe == "loop" and written.tflm is None
    assert to_tflite(model, tmp_path / "c.tflite", c_array=True).tflm["runs"] is True
    # TFLM has no float16 DEQUANTIZE (F24): the check says so, with TFLM's own reason.
    with pytest.warns(UserWarning, match=r"does not run in TFLite Micro.*DEQUANTIZE.*F24"):
        half = to_tflite(model, tmp_path / "half.tflite", quantization="float16",
                         check_tflm=True)
    assert half.tflm["runs"] is False and "DEQUANTIZE" in half.tflm["error"]
    wide = tiny_model(units=64)  # weights large enough for dynamic-range quantization
    with pytest.warns(UserWarning, match=r"FULLY_CONNECTED.*failed to prepare.*F24"):
        hybrid = to_tflite(wide, tmp_path / "dynamic.tflite", quantization="dynamic",
                           check_tflm=True)
    assert hybrid.tflm["runs"] is False


def test_long_int8_attention_keeps_its_softmax_float(tmp_path):
    """Over more than 128 steps an int8 softmax's weights (steps of 1/256, F23) are too
    coarse, and over 512 alike steps TFLite Micro's int8 softmax aborts (F22). By
    default the attention variant's int8 file computes the pooling in its loop (online
    softmax in float) and a pooling outside a loop keeps its softmax float: both run in
    TFLite Micro, closer to Keras than the fully integer file, which TFLM cannot run."""
    keras.utils.set_random_seed(0)
    model = tiny_model("attention", time=600)
    layer = model.get_layer("attention_pooling")
    weights = layer.get_weights()
    weights[2] = np.zeros_like(weights[2])  # every score alike: weights 1/600 each
    layer.set_weights(weights)
    data = sequences(16, time=600)
    default = to_tflite(model, tmp_path / "auto.tflite", quantization="int8",
                        representative_data=data, check_tflm=True)
    assert any("online softmax float" in note for note in default.notes)
    assert default.tflm["runs"] is True and default.max_abs_error < 0.005
    with pytest.warns(UserWarning, match=r"does not run in TFLite Micro.*SOFTMAX over 600.*F22"):
        integer = to_tflite(model, tmp_path / "int.tflite", quantization="int8",
                            representative_data=data, check_tflm=True, int8_float_layers=[])
    assert integer.tflm["runs"] is False
    assert any("F22" in note for note in integer.notes)
    assert integer.max_abs_error > 3 * default.max_abs_error

    inputs = keras.Input((600, 3), name="inputs")  # the pooling reads no GRU: no loop
    pooled = zoo.layers.AttentionPooling(name="attention_pooling")(inputs)
    alone = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    own = alone.get_layer("attention_pooling").get_weights()
    alone.get_layer("attention_pooling").set_weights(own[:2] + [np.zeros_like(own[2])])
    result = to_tflite(alone, tmp_path / "alone.tflite", quantization="int8",
                       representative_data=data, check_tflm=True)
    assert any("SOFTMAX over 600 values kept float" in note for note in result.notes)
    assert result.tflm["runs"] is True


def test_long_int8_multihead_pooling_keeps_its_weights(tmp_path):
    """The multi-head pooling's attention scales its weights over more than 128 steps too:
    over 300 steps (weights near 1/300, under one step of an int8 softmax's 1/256) the
    default int8 file pools close to Keras, the fully integer file does not."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((300, 4), name="inputs")
    layer = zoo.layers.MultiHeadAttentionPooling(num_heads=2, name="attention_pooling")
    model = keras.Model(inputs, layer(inputs))
    assert isinstance(layer.attention, zoo.layers.ScaledWeightsMultiHeadAttention)
    data = 1.0 + 0.5 * sequences(16, time=300, features=4)
    default = to_tflite(model, tmp_path / "auto.tflite", quantization="int8",
                        representative_data=data)
    assert any("SOFTMAX over 300 values kept float" in note for note in default.notes)
    integer = to_tflite(model, tmp_path / "int.tflite", quantization="int8",
                        representative_data=data, int8_float_layers=[], tolerance=10.0)
    scale = np.abs(model.predict(data, verbose=0)).max()
    assert default.max_abs_error < 0.02 * scale
    assert integer.max_abs_error > 5 * default.max_abs_error


def test_which_long_softmaxes_stay_float_in_int8():
    """An attention pooling's softmax over more than 128 steps stays float with the MUL
    that scales it (F23), the multi-head pooling's too; a softmax without that MUL
    (Keras's own multi-head attention) only from 512 values, where TFLite Micro's int8
    softmax may abort (F22)."""
    from export import calibration

    def kept(model):
        float_content = converter.convert(model)
        return sorted(op for op, _ in calibration._long_softmax_nodes(
            float_content, calibration.INT8_SOFTMAX_MAX_VALUES).values())

    def pooling(layer, steps):
        inputs = keras.Input((steps, 4), batch_size=1, name="inputs")
        return keras.Model(inputs, layer(inputs))

    assert kept(pooling(zoo.layers.AttentionPooling(), 100)) == []
    assert kept(pooling(zoo.layers.AttentionPooling(), 200)) == ["MUL", "SOFTMAX"]
    assert kept(pooling(zoo.layers.MultiHeadAttentionPooling(num_heads=2), 100)) == []
    assert kept(pooling(zoo.layers.MultiHeadAttentionPooling(num_heads=2), 200)) == [
        "MUL", "SOFTMAX"]

    def keras_attention(steps):
        inputs = keras.Input((steps, 4), batch_size=1, name="inputs")
        attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2)(
            inputs[:, :1], inputs)
        return keras.Model(inputs, attended)

    assert kept(keras_attention(200)) == []
    assert kept(keras_attention(600)) == ["SOFTMAX"]

"""Hypermodels built without searching: defaults, hp.Fixed overrides, conditional parameters."""

import keras
import keras_tuner
import pytest

import zoo
from tuning.hypermodels import DEFAULT_SPACE, HYPERMODELS, GRUHyperModel, default_hyperparameters

SHAPE = (12, 1)


def recurrent_layers(model):
    layers = []
    for layer in model.layers:
        inner = getattr(layer, "forward_layer", layer)
        if isinstance(inner, (keras.layers.GRU, keras.layers.LSTM, keras.layers.SimpleRNN)):
            layers.append(inner)
    return layers


def fixed_hp(**values):
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def test_defaults_are_build_gru_defaults():
    hypermodel = GRUHyperModel("stacked", input_shape=SHAPE, num_outputs=2)
    model = hypermodel.build(keras_tuner.HyperParameters())
    reference = zoo.build_gru("stacked", input_shape=SHAPE, num_outputs=2)
    assert [l.units for l in recurrent_layers(model)] == [64, 64]
    assert model.count_params() == reference.count_params()
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-3)
    defaults = default_hyperparameters(hypermodel)
    assert defaults == {"num_layers": 2, "units_0": 64, "units_1": 64, "dropout": 0.0,
                        "recurrent_dropout": 0.0, "learning_rate": 1e-3, "batch_size": 16}


def test_fixed_overrides_reach_the_model():
    hypermodel = GRUHyperModel("stacked", input_shape=SHAPE, num_outputs=3)
    hp = fixed_hp(num_layers=3, units_0=8, units_1=4, units_2=6, dropout=0.2,
                  recurrent_dropout=0.1, learning_rate=5e-3)
    model = hypermodel.build(hp)
    layers = recurrent_layers(model)
    assert [l.units for l in layers] == [8, 4, 6]
    assert all(l.dropout == pytest.approx(0.2) for l in layers)
    assert all(l.recurrent_dropout == pytest.approx(0.1) for l in layers)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(5e-3)
    assert model.output_shape == (None, 3)


def test_per_layer_units_are_conditional_on_num_layers():
    hypermodel = GRUHyperModel("stacked", input_shape=SHAPE, num_outputs=2)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    assert {"units_0", "units_1", "units_2"} <= {p.name for p in hp.space}
    one = fixed_hp(num_layers=1)
    hypermodel.declare_hyperparameters(one)
    assert one.is_active("units_0")
    assert not one.is_active("units_1") and not one.is_active("units_2")
    assert [l.units for l in recurrent_layers(hypermodel.build(one))] == [64]


@pytest.mark.parametrize("variant", sorted(zoo.VARIANTS))
def test_every_variant_builds_with_its_own_parameters(variant):
    spec = zoo.VARIANTS[variant]
    hypermodel = GRUHyperModel(variant, input_shape=SHAPE, num_outputs=2,
                               space={"units": [4], "num_layers": 1, "conv_filters": [4]})
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    names = {p.name for p in hp.space}
    assert ("conv_layers" in names) == spec.uses_conv
    assert ("conv_filters_0" in names) == spec.uses_conv
    assert ("attention" in names) == spec.uses_attention
    model = hypermodel.build(hp)
    layer_names = [l.name for l in model.layers]
    assert any(n.startswith("conv1d") for n in layer_names) == spec.uses_conv
    assert ("attention_pooling" in layer_names) == spec.uses_attention
    assert any(isinstance(l, keras.layers.Bidirectional) for l in model.layers) == \
        spec.bidirectional


def test_branch_dropout_is_searched_only_for_gru_fcn():
    own = GRUHyperModel("gru_fcn", input_shape=SHAPE, num_outputs=2,
                        space={"units": [4], "num_layers": 1, "conv_filters": [4]})
    hp = keras_tuner.HyperParameters()
    own.declare_hyperparameters(hp)
    assert hp.get("branch_dropout") == pytest.approx(0.8)  # build_gru's default
    assert own.build(fixed_hp(branch_dropout=0.3)).get_layer("branch_dropout").rate == \
        pytest.approx(0.3)
    # Searching the variant: active only where the variant is gru_fcn.
    searching = GRUHyperModel(None, input_shape=SHAPE, num_outputs=2,
                              space={"units": [4], "num_layers": 1, "conv_filters": [4]})
    for variant in ("gru_fcn", "cnn_gru"):
        hp = fixed_hp(variant=variant)
        searching.declare_hyperparameters(hp)
        assert hp.is_active("branch_dropout") == (variant == "gru_fcn")
        assert ("branch_dropout" in searching.build_kwargs(hp)) == (variant == "gru_fcn")


def test_attention_heads_only_for_multihead():
    hypermodel = GRUHyperModel("attention", input_shape=SHAPE, num_outputs=2,
                               space={"units": [4], "num_layers": 1})
    additive = fixed_hp(attention="additive")
    hypermodel.declare_hyperparameters(additive)
    assert not additive.is_active("attention_heads")
    multihead = fixed_hp(attention="multihead", attention_heads=2)
    assert hypermodel.build_kwargs(multihead)["attention_heads"] == 2
    model = hypermodel.build(multihead)
    assert model.get_layer("attention_pooling").get_config()["num_heads"] == 2


def test_conv_parameters_per_conv_layer():
    hypermodel = GRUHyperModel("cnn_gru", input_shape=SHAPE, num_outputs=2,
                               space={"units": [4], "num_layers": 1})
    hp = fixed_hp(conv_layers=2, conv_filters_0=4, conv_filters_1=8, conv_kernel_size_0=3,
                  conv_kernel_size_1=5, pool_size=2)
    model = hypermodel.build(hp)
    assert model.get_layer("conv1d_0").filters == 4
    assert model.get_layer("conv1d_1").filters == 8
    assert model.get_layer("conv1d_1").kernel_size == (5,)
    assert model.get_layer("max_pool").pool_size == (2,)
    one = fixed_hp(conv_layers=1)
    hypermodel.declare_hyperparameters(one)
    assert not one.is_active("conv_filters_1")


def test_search_over_variants_and_cells():
    hypermodel = GRUHyperModel(None, input_shape=SHAPE, num_outputs=2,
                               space={"units": [4], "num_layers": 1, "conv_filters": [4]})
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    assert hp.get("variant") == "stacked" and hp.get("cell") == "gru"
    assert not hp.is_active("conv_layers") and not hp.is_active("attention")
    hp = fixed_hp(variant="cnn_gru_attention", cell="lstm")
    model = hypermodel.build(hp)
    assert hp.is_active("conv_layers") and hp.is_active("attention")
    assert isinstance(recurrent_layers(model)[0], keras.layers.LSTM)
    assert model.name == "cnn_gru_attention_lstm"


def test_space_overrides_and_fixed_arguments():
    hypermodel = GRUHyperModel(
        "stacked", input_shape=SHAPE, num_outputs=1, task="regression",
        space={"units": {"min": 4, "max": 8, "step": 4}, "learning_rate": [0.01],
               "dropout": 0.1},
        fixed={"dense_units": 5, "clipnorm": 2.0, "batch_size": 4})
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    units = [p for p in hp.space if p.name == "units_0"][0]
    assert (units.min_value, units.max_value, units.step) == (4, 8, 4)
    assert "batch_size" not in hp.values  # fixed: not a hyperparameter
    model = hypermodel.build(hp)
    assert model.get_layer("dense_hidden").units == 5
    assert model.optimizer.clipnorm == 2.0
    assert recurrent_layers(model)[0].dropout == pytest.approx(0.1)
    assert model.input_shape == (None, 12, 1)  # `batch_size` went to fit, not the input


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(variant="lstm_net"), "`variant` must be one of"),
    (dict(input_shape=(0, 1)), "`input_shape` must be"),
    (dict(input_shape="12x1"), "`input_shape` must be"),
    (dict(num_outputs=0), "`num_outputs` must be a positive int. Received: num_outputs=0"),
    (dict(task="forecast"), "`task` must be one of"),
    (dict(cells=["gru", "tcn"]), "`cells` must be"),
    (dict(space={"unit": [4]}), "unknown: ['unit']"),
    (dict(space={"units": {"min": 8, "max": 4}}), "space['units']"),
    (dict(space={"dropout": {"min": 0.0}}), "space['dropout']"),
    (dict(space={"units": [4]}, fixed={"units": 4}), "disjoint from `space`"),
    (dict(fixed={"num_outputs": 3}), "without 'num_outputs'"),
    (dict(fixed={"unitz": 3}), "unknown: 'unitz'"),
    (dict(fixed={"dropout": 1.5}), "Received: dropout=1.5"),
    (dict(fixed={"conv_filters": -1}, variant="cnn_gru"), "Received: conv_filters=-1"),
])
def test_bad_fixed_arguments_fail_at_creation(kwargs, fragment):
    args = dict(variant="stacked", input_shape=SHAPE, num_outputs=2)
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        GRUHyperModel(**args)
    assert fragment in str(info.value)


def test_every_space_name_is_used_somewhere():
    hypermodel = GRUHyperModel(None, input_shape=SHAPE, num_outputs=2)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    registered = {p.name.rsplit("_", 1)[0] if p.name[-1].isdigit() else p.name
                  for p in hp.space}
    assert registered == set(DEFAULT_SPACE) - {"conv_width"}  # conv_width is opt-in


def test_conv_width_scales_fixed_and_searched_filters():
    hypermodel = GRUHyperModel("gru_fcn", input_shape=SHAPE, num_outputs=2,
                               space={"conv_width": [1.0, 0.25]},
                               fixed={"conv_layers": 3, "conv_filters": [128, 256, 128]})
    hp = keras_tuner.HyperParameters()
    assert hypermodel.build_kwargs(hp)["conv_filters"] == [128, 256, 128]  # default 1.0
    hp.values["conv_width"] = 0.25
    model = hypermodel.build(hp)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
    assert [layer.filters for layer in convs] == [32, 64, 32]
    searched = GRUHyperModel("cnn_gru", input_shape=SHAPE, num_outputs=2,
                             space={"conv_width": [0.5], "conv_filters": [16]})
    assert searched.build_kwargs(keras_tuner.HyperParameters())["conv_filters"] == 8


@pytest.mark.parametrize("name", sorted(HYPERMODELS))
def test_registry_has_one_hypermodel_per_variant(name):
    hypermodel = HYPERMODELS[name](input_shape=SHAPE, num_outputs=2,
                                   space={"units": [4], "num_layers": 1})
    model = hypermodel.build(keras_tuner.HyperParameters())
    expected = "stacked" if name == "any" else name
    assert model.name == f"{expected}_gru"
    assert set(HYPERMODELS) == set(zoo.VARIANTS) | {"any"}


def test_fixed_conv_layer_count_declares_every_layer():
    """A fixed `conv_layers` (the main job's GunPoint recipe) builds without a scope."""
    hm = GRUHyperModel(variant="cnn_gru", input_shape=(20, 1), num_outputs=2,
                       fixed={"conv_layers": 2})
    hp = keras_tuner.HyperParameters()
    model = hm.build(hp)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
    assert len(convs) == 2
    assert {"conv_filters_0", "conv_filters_1"} <= set(hp.values)


def test_fixed_layer_count_declares_every_layer():
    hm = GRUHyperModel("stacked", input_shape=(20, 1), num_outputs=2,
                       fixed={"num_layers": 2}, space={"units": [4, 8]})
    hp = keras_tuner.HyperParameters()
    model = hm.build(hp)
    assert [l.units for l in recurrent_layers(model)] == [4, 4]
    assert {"units_0", "units_1"} <= set(hp.values) and "num_layers" not in hp.values

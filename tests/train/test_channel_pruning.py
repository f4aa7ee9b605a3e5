"""Channel pruning: exact at ratio 0, exact when the removed channels are zero, channel counts,
BatchNorm/depthwise/residual/concat/Flatten handling, refusals with reasons, both Kerases, the
recipe's ``objective: latency`` and a thinner ``.tflite`` (MACs and parameters read from it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tflite_opt._keras import keras, keras3
from tflite_opt.errors import InvalidArgumentError, RecipeError
from tflite_opt.report.report import render_stages
from tflite_opt.train.channel_pruning import channels_to_keep, count_macs, prune_channels
from tflite_opt.train.recipe import PruneStage, Recipe
from tests.conftest import REPO_ROOT

KERASES = {"tf_keras": lambda: keras, "keras3": keras3}
# Two float32 forward passes of the same function, summed in another order: rounding slack.
ATOL = 1e-5


def _graph_model(K):
    """Conv+BN+ReLU stem, an inverted-residual branch (1x1, depthwise, BN, 1x1) added to the
    stem, a concatenation, a conv, pooling, Flatten and two Dense layers."""
    inputs = K.Input((8, 8, 3), name="image")
    x = K.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = K.layers.BatchNormalization(name="stem_bn")(x)
    stem = K.layers.ReLU(name="stem_relu")(x)
    y = K.layers.Conv2D(12, 1, activation="relu", name="expand")(stem)
    y = K.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(y)
    y = K.layers.BatchNormalization(name="dw_bn")(y)
    y = K.layers.ReLU(name="dw_relu")(y)
    y = K.layers.Conv2D(8, 1, name="project")(y)
    added = K.layers.Add(name="add")([stem, y])
    side = K.layers.Conv2D(4, 3, padding="same", activation="relu", name="side")(added)
    x = K.layers.Concatenate(name="cat")([added, side])
    x = K.layers.Conv2D(6, 3, padding="same", activation="relu", name="mix")(x)
    x = K.layers.MaxPooling2D(name="pool")(x)
    x = K.layers.Flatten(name="flatten")(x)
    x = K.layers.Dense(10, activation="relu", name="hidden")(x)
    outputs = K.layers.Dense(3, activation="softmax", name="classifier")(x)
    model = K.Model(inputs, outputs, name="graph")
    # Non-trivial BatchNorm statistics, so that slicing them wrongly shows in the outputs.
    rng = np.random.default_rng(1)
    for name in ("stem_bn", "dw_bn"):
        bn = model.get_layer(name)
        n = bn.get_weights()[0].shape[0]
        bn.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                        rng.uniform(0.5, 1.5, n)])
    return model


def _x(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).random((n, 8, 8, 3)).astype(np.float32)


@pytest.mark.parametrize("flavor", KERASES)
def test_prune_channels_ratio_zero_computes_the_same_outputs(flavor):
    model = _graph_model(KERASES[flavor]())
    result = prune_channels(model, ratio=0.0)
    assert result.model is not model and result.params_after == result.params_before
    np.testing.assert_allclose(np.asarray(result.model(_x())), np.asarray(model(_x())),
                               atol=ATOL)


@pytest.mark.parametrize("flavor", KERASES)
def test_prune_channels_half_ties_the_residual_and_keeps_model_outputs(flavor):
    model = _graph_model(KERASES[flavor]())
    result = prune_channels(model, ratio=0.5)
    thin = result.model
    rows = {row.name: row for row in result.layers}
    # stem and project feed one Add: tied, the same channels kept in both
    assert rows["stem"].tied_with == ("project",) and rows["project"].tied_with == ("stem",)
    assert result.kept["stem"] == result.kept["project"]
    expected = {"stem": 4, "expand": 6, "project": 4, "side": 2, "mix": 3, "hidden": 5,
                "classifier": 3}
    for name, channels in expected.items():
        assert rows[name].channels_after == channels, name
        assert thin.get_layer(name).get_weights()[0].shape[-1] == channels, name
    # consumers lost the matching inputs: depthwise/BN follow expand/stem, the concat feeds mix
    assert thin.get_layer("dw").get_weights()[0].shape[2] == 6
    assert thin.get_layer("dw_bn").get_weights()[0].shape == (6,)
    assert thin.get_layer("stem_bn").get_weights()[0].shape == (4,)
    assert thin.get_layer("mix").get_weights()[0].shape[2] == 4 + 2
    # Flatten: 4x4 positions x 3 channels of mix reach hidden
    assert thin.get_layer("hidden").get_weights()[0].shape == (4 * 4 * 3, 5)
    assert "softmax" in rows["classifier"].reason
    assert thin.output_shape == model.output_shape
    assert result.params_after < result.params_before
    assert result.macs_after == count_macs(thin) < result.macs_before


def _zero_channels(model, producers: dict[str, list[int]]) -> None:
    """Zeroes the given output channels so that they carry exactly 0 after their BN/ReLU."""
    for name, channels in producers.items():
        layer = model.get_layer(name)
        weights = layer.get_weights()
        weights[0][..., channels] = 0.0
        for extra in weights[1:]:
            extra[channels] = 0.0
        layer.set_weights(weights)
    for bn_name, producer in (("stem_bn", "stem"), ("dw_bn", "expand")):
        bn = model.get_layer(bn_name)
        gamma, beta, mean, var = bn.get_weights()
        beta[producers[producer]] = 0.0
        mean[producers[producer]] = 0.0
        bn.set_weights([gamma, beta, mean, var])


@pytest.mark.parametrize("flavor", KERASES)
def test_prune_channels_removing_zero_channels_leaves_outputs_unchanged(flavor):
    model = _graph_model(KERASES[flavor]())
    # channels that compute exactly 0: removing them cannot change any output
    zero = {"stem": [1, 4, 6, 7], "project": [1, 4, 6, 7], "expand": [0, 3, 5, 8, 9, 11],
            "side": [2, 3], "mix": [0, 5, 2], "hidden": [1, 3, 5, 7, 9]}
    _zero_channels(model, zero)
    result = prune_channels(model, ratio=0.5)
    for name, channels in zero.items():
        assert not set(result.kept[name]) & set(channels), name
    np.testing.assert_allclose(np.asarray(result.model(_x(8))), np.asarray(model(_x(8))),
                               atol=ATOL)


@pytest.mark.parametrize("flavor", KERASES)
def test_prune_channels_sequential_and_multiple_of(flavor):
    K = KERASES[flavor]()
    model = K.Sequential([K.Input((6, 6, 2)), K.layers.Conv2D(20, 3, name="c1"),
                          K.layers.BatchNormalization(name="bn"), K.layers.ReLU(name="r"),
                          K.layers.GlobalAveragePooling2D(name="gap"),
                          K.layers.Dense(16, name="d1"), K.layers.Dense(2, name="out")])
    result = prune_channels(model, ratio=0.5, multiple_of=8, skip=["d1"])
    assert result.model.get_layer("c1").get_weights()[0].shape == (3, 3, 2, 8)
    assert result.model.get_layer("d1").get_weights()[0].shape == (8, 16)
    assert next(r for r in result.layers if r.name == "d1").reason == "skipped (skip=)"
    x = np.random.default_rng(0).random((2, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(prune_channels(model, ratio=0.0).model(x)),
                               np.asarray(model(x)), atol=ATOL)


def test_prune_channels_refuses_channels_that_reach_a_reshape_and_says_why():
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(6, 1, name="before_reshape")(inputs)
    x = keras.layers.Reshape((16, 6), name="reshape")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    row = next(r for r in prune_channels(model, ratio=0.5).layers if r.name == "before_reshape")
    assert row.channels_after == 6 and "consumed by 'reshape' (Reshape)" in row.reason


def test_channels_to_keep_rounds_and_never_reaches_zero():
    assert channels_to_keep(64, 0.5) == 32
    assert channels_to_keep(60, 0.5, multiple_of=8) == 32
    assert channels_to_keep(3, 0.9) == 1
    assert channels_to_keep(5, 0.9, multiple_of=8) == 5  # never above what the layer has


def test_prune_channels_criterion_keeps_the_largest_norm_filters():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="a"),
                              keras.layers.Dense(1, name="b")])
    kernel = np.array([[1.0, 0.1, 0.1, 0.0]] * 4 + [[0.0, 0.0, 0.0, 3.0]], np.float32)
    # L1 of the columns: 4, 0.4, 0.4, 3; L2: 2, 0.2, 0.2, 3
    model.get_layer("a").set_weights([kernel, np.zeros(4, np.float32)])
    assert prune_channels(model, ratio=0.75, criterion="l1").kept["a"] == (0,)
    assert prune_channels(model, ratio=0.75, criterion="l2").kept["a"] == (3,)


def test_prune_channels_bad_arguments_name_the_argument():
    model = _graph_model(keras)
    for kwargs, needle in (
            ({"ratio": 1.0}, "ratio is 1.0"), ({"ratio": -0.1}, "ratio is -0.1"),
            ({"criterion": "l0"}, "criterion is 'l0'"), ({"multiple_of": 0}, "multiple_of is 0"),
            ({"skip": ["nope"]}, "skip names 'nope'"), ({"skip": "stem"}, "the string 'stem'"),
            ({"ratios": {"stem": 2}}, "ratios['stem'] is 2")):
        with pytest.raises(InvalidArgumentError) as raised:
            prune_channels(model, **kwargs)
        assert needle in str(raised.value), kwargs


def test_recipe_objective_latency_parses_validates_and_round_trips():
    recipe = Recipe.from_dict({"stages": [{"type": "prune", "objective": "latency",
                                           "target_sparsity": 0.5, "channel_multiple": 4}]})
    stage = recipe.stages[0]
    assert (stage.objective, stage.criterion, stage.channel_multiple) == ("latency", "l1", 4)
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    # a magnitude prune stage keeps its old dict (saved recipes and checkpoints stay valid)
    assert "objective" not in Recipe.default().to_dict()["stages"][0]
    for bad, key in (({"objective": "speed"}, "objective"), ({"criterion": "l3"}, "criterion"),
                     ({"channel_multiple": 0}, "channel_multiple"),
                     ({"m_by_n": [2, 4]}, "m_by_n")):
        with pytest.raises(RecipeError, match=key):
            Recipe.from_dict({"stages": [{"type": "prune", "objective": "latency", **bad}]})
    assert Recipe.from_file(REPO_ROOT / "recipes" / "latency.yaml").stages[0].objective == "latency"
    with pytest.raises(RecipeError, match="objective"):
        PruneStage(objective="fast").validate()


@pytest.mark.parametrize("flavor", KERASES)
def test_plan_objective_latency_makes_a_thinner_tflite(flavor, tiny_train):
    from tflite_opt.convert import convert
    from tflite_opt.models.builders import digits_cnn
    from tflite_opt.runtime.cost import model_cost
    from tflite_opt.train.plan import OptimizationPlan

    model = digits_cnn((16, 16, 1), width=8, dense_units=16, flavor=flavor)
    recipe = Recipe.from_dict({"precision": "float32", "stages": [
        {"type": "prune", "objective": "latency", "target_sparsity": 0.5, "epochs": 1}]})
    result = OptimizationPlan(recipe).run(model, tiny_train, verbose=0)
    thin = result.model
    # default policy: the first conv and the classifier keep their channels
    assert [thin.get_layer(n).get_weights()[0].shape[-1] for n in
            ("conv1", "conv2", "conv3", "dense1", "classifier")] == [8, 8, 16, 8, 10]
    after = model_cost(convert(thin, "float32", progress=False).tflite_bytes)
    # read from the file: conv2 and conv3 lost half their inputs and outputs (1/4 of their
    # MACs), dense1 half its outputs and its inputs (conv3's channels)
    assert after.macs == count_macs(thin) < 0.5 * count_macs(model)
    assert after.parameters < 0.5 * model.count_params()
    # The stage record says what the stage did (its kernels hold no zeros: sparsity ~0).
    record = result.stages[0].to_dict()
    assert record["sparsity"] < 0.01
    pruning = record["channel_pruning"]
    assert {l["name"]: (l["channels_before"], l["channels_after"]) for l in pruning["layers"]} == {
        "conv1": (8, 8), "conv2": (16, 8), "conv3": (32, 16), "dense1": (16, 8),
        "classifier": (10, 10)}
    assert (pruning["params_before"], pruning["params_after"]) == (model.count_params(),
                                                                  thin.count_params())
    assert (pruning["macs_before"], pruning["macs_after"]) == (count_macs(model), after.macs)
    assert pruning["macs_ratio"] == pytest.approx(after.macs / count_macs(model))
    report = "\n".join(render_stages([json.loads(json.dumps(record))]))  # as report.json holds it
    assert f"parameters {pruning['params_ratio']:.3f}x, MACs {pruning['macs_ratio']:.3f}x" in report
    assert "| conv2 | conv2d | 16 | 8 | 50% |" in report and "| conv1 | conv2d | 8 | 8 | 100% |" in report
    assert f"{count_macs(model):,} -> {after.macs:,}" in report


def test_model_cost_reads_the_keras_arithmetic_from_the_file():
    from tflite_opt.convert import convert
    from tflite_opt.runtime.cost import model_cost

    model = _graph_model(keras)
    cost = model_cost(convert(model, "float32", progress=False).tflite_bytes)
    # convs: 64 positions x (27*8 + 8*12 + 9*12 + 12*8 + 72*4 + 108*6); dense 96*10 + 10*3
    assert cost.macs == count_macs(model) == 64 * (216 + 96 + 108 + 96 + 288 + 648) + 960 + 30
    assert set(cost.macs_by_op) == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


@pytest.mark.parametrize("flavor", KERASES)
def test_prune_channels_keeps_the_inputs_of_a_shared_layer_whole(flavor):
    K = KERASES[flavor]()
    inputs = K.Input((6, 6, 2))
    shared = K.layers.Conv2D(4, 1, name="shared")
    left = shared(K.layers.Conv2D(6, 3, padding="same", name="left")(inputs))
    right = shared(K.layers.Conv2D(6, 1, name="right")(inputs))
    x = K.layers.GlobalAveragePooling2D()(K.layers.Add()([left, right]))
    model = K.Model(inputs, K.layers.Dense(2, name="out")(x))
    result = prune_channels(model, ratio=0.5)
    rows = {r.name: r for r in result.layers}
    for name in ("left", "right", "shared"):
        assert rows[name].channels_after == rows[name].channels_before, name
    assert "'shared' (Conv2D): it is called more than once" in rows["left"].reason
    assert "called more than once" in rows["shared"].reason
    x = np.random.default_rng(0).random((2, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(result.model(x)), np.asarray(model(x)), atol=ATOL)

"""Efficient-architecture builders: same graph in both Kerases, arguments that change what they
say, clear errors, safe save/load and int8 conversion."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.models.efficient import (MOBILENET_V2_STAGES, MOBILENET_V3_SMALL_BLOCKS,
                                         SHUFFLENET_V2_STAGES, mobilenet_v2_like,
                                         mobilenet_v3_small, mobilenet_v3_small_like,
                                         shufflenet_v2_like)

BUILDERS = {"mobilenet_v2_like": mobilenet_v2_like,
            "mobilenet_v3_small_like": mobilenet_v3_small_like,
            "shufflenet_v2_like": shufflenet_v2_like}
SMALL = {"input_shape": (16, 16, 1), "num_classes": 7, "width": 0.25}


def _depthwise(model):
    return [l for l in model.layers if type(l).__name__ == "DepthwiseConv2D"]


def _blocks(name: str, depth: float) -> int:
    """Depthwise convs the stage tables ask for (ShuffleNet's stride-2 units have two)."""
    ceil = lambda n: max(1, int(np.ceil(n * depth)))  # noqa: E731
    if name == "mobilenet_v2_like":
        return sum(ceil(n) for _, _, n, _ in MOBILENET_V2_STAGES)
    if name == "mobilenet_v3_small_like":
        return len(MOBILENET_V3_SMALL_BLOCKS) * ceil(1)
    return sum(ceil(n) + 1 for _, n in SHUFFLENET_V2_STAGES)


def test_builder_depth_below_one_keeps_one_block_per_stage():
    model = mobilenet_v2_like(**SMALL, depth=0.5, flavor="keras3")
    assert len(_depthwise(model)) == _blocks("mobilenet_v2_like", 0.5) == len(MOBILENET_V2_STAGES)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_same_graph_in_both_kerases_with_softmax_outputs(name):
    build = BUILDERS[name]
    tf_keras_model = build(**SMALL, flavor="tf_keras")
    keras3_model = build(**SMALL, flavor="keras3")
    assert tf_keras_model.count_params() == keras3_model.count_params()
    assert [type(l).__name__ for l in tf_keras_model.layers] == \
        [type(l).__name__ for l in keras3_model.layers]
    x = np.random.default_rng(0).uniform(size=(3, 16, 16, 1)).astype(np.float32)
    for model in (tf_keras_model, keras3_model):
        out = np.asarray(model(x))
        assert out.shape == (3, 7)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_width_depth_kernel_and_resolution_change_the_graph(name):
    build = BUILDERS[name]
    base = build(**SMALL, flavor="keras3")
    wider = build(**{**SMALL, "width": 0.5}, flavor="keras3")
    assert wider.count_params() > base.count_params()
    deeper = build(**SMALL, depth=2.0, flavor="keras3")
    assert len(_depthwise(deeper)) == _blocks(name, 2.0) > len(_depthwise(base))
    assert len(_depthwise(base)) == _blocks(name, 1.0)
    other = build(**{**SMALL, "input_shape": (24, 20, 3)}, kernel_size=7, flavor="keras3")
    assert max(l.kernel_size[0] for l in _depthwise(other)) == 7
    assert tuple(other.inputs[0].shape[1:]) == (24, 20, 3)


@pytest.mark.parametrize("kwargs,match", [
    ({"width": 0}, "width is 0; accepted"),
    ({"depth": -1.0}, "depth is -1.0"),
    ({"kernel_size": 4}, "kernel_size is 4; accepted: 3, 5 or 7"),
    ({"input_shape": (4, 4, 1)}, "input_shape is"),
    ({"num_classes": 1}, "num_classes is 1"),
    ({"flavor": "keras2"}, "flavor is 'keras2'"),
])
def test_builder_bad_argument_names_it(kwargs, match):
    for build in BUILDERS.values():
        with pytest.raises(InvalidArgumentError, match=match):
            build(**kwargs)


def test_shufflenet_saves_and_loads_without_trusting_code(tmp_path):
    from tflite_opt.models.loading import load_model

    model = shufflenet_v2_like(**SMALL, flavor="keras3")
    path = tmp_path / "shufflenet.keras"
    model.save(path)
    loaded = load_model(path)  # refuses Lambda layers and foreign modules: none here
    x = np.random.default_rng(1).uniform(size=(2, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


@pytest.mark.parametrize("name,flavor", [("mobilenet_v2_like", "tf_keras"),
                                         ("mobilenet_v3_small_like", "keras3"),
                                         ("shufflenet_v2_like", "keras3")])
def test_builder_converts_to_full_int8(name, flavor):
    from tflite_opt.convert import convert
    from tflite_opt.runtime import inspect_model

    model = BUILDERS[name](**SMALL, depth=0.5, flavor=flavor)
    x = np.random.default_rng(2).uniform(size=(16, 16, 16, 1)).astype(np.float32)
    result = convert(model, "int8", representative_data=x, progress=False)
    inspection = inspect_model(result.tflite_bytes)
    assert inspection.inputs[0]["dtype"] == "int8"
    assert inspection.op_counts["DEPTHWISE_CONV_2D"] == len(_depthwise(model))
    assert inspection.op_counts["FULLY_CONNECTED"] == sum(
        type(l).__name__ == "Dense" for l in model.layers)
    kernels = [w for w in inspection.weights if w["role"] == "weight"]
    assert kernels and all(w["dtype"] == "int8" for w in kernels)


def test_mobilenet_v3_small_is_keras_applications_model_and_converts():
    from tflite_opt.convert import convert
    from tflite_opt.runtime import inspect_model

    model = mobilenet_v3_small((32, 32, 1), num_classes=5, width=0.75, minimalistic=True)
    assert model.name == "MobileNetV3Small" and model.output_shape == (None, 5)
    with pytest.raises(InvalidArgumentError, match="needs height and width >= 32"):
        mobilenet_v3_small((16, 16, 1))
    x = np.random.default_rng(3).uniform(size=(16, 32, 32, 1)).astype(np.float32)
    inspection = inspect_model(convert(model, "int8", representative_data=x,
                                       progress=False).tflite_bytes)
    assert inspection.inputs[0]["dtype"] == "int8"

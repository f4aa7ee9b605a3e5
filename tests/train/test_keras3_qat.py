"""Keras 3 quantization-aware training (``tflite_opt.train.keras3.qat``) down to int8 TFLite.

A tiny Keras 3 CNN with BatchNormalization is trained on the 16x16 digits, wrapped for QAT,
fine-tuned for one epoch in plain ``fit``, converted without calibration data, and the file is
checked: int8 in and out, every compute op int8, no BatchNorm MUL/ADD, no DEQUANTIZE inside,
accuracy in LiteRT within a few test images of the Keras QAT model, and for PQAT/PCQAT the
zeros and shared values of the kernels kept.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tflite_opt.errors import InvalidArgumentError, UnsupportedLayerError
from tflite_opt.models.builders import digits_cnn
from tflite_opt.train.keras3 import folding
from tflite_opt.train.keras3.preserve import KernelStructure
from tflite_opt.train.keras3.qat import KERAS3_QAT_SCHEMES, quantize_aware_keras3
from tflite_opt.train.keras3.quant_layers import QUANTIZED_LAYERS
from tflite_opt.train.recipe import LayerPolicy

CLUSTERS = 8  # shared values (zero included) of the pruned+clustered kernels
# Ops whose tensors are all int8 in a full-int8 file (int32 shape arithmetic aside).
SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK"}


def _seed() -> None:
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def float_model(digits16):
    _seed()
    model = digits_cnn((16, 16, 1), width=8, dense_units=32, flavor="keras3")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits16.x_train, digits16.y_train, epochs=6, batch_size=32, verbose=0)
    return model


def _prune_and_cluster(model, names=("conv2", "dense1")):
    """A copy whose named kernels are 50% zeros (by magnitude) and hold CLUSTERS values.

    The non-zero values are snapped to CLUSTERS - 1 quantiles of the surviving weights, all
    far from zero, so int8 rounding cannot make new zeros out of them.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for name in names:
        layer = copy.get_layer(name)
        kernel = np.asarray(layer.kernel)
        kept = np.abs(kernel) > np.median(np.abs(kernel))
        centroids = np.quantile(kernel[kept], (np.arange(CLUSTERS - 1) + 0.5) / (CLUSTERS - 1))
        nearest = centroids[np.argmin(np.abs(kernel[..., None] - centroids), axis=-1)]
        layer.kernel.assign(np.where(kept, nearest, 0.0).astype(np.float32))
    return copy


def _qat_fit(model, scheme, data, epochs=1):
    _seed()
    qat = quantize_aware_keras3(model, scheme)
    qat.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy",
                metrics=["accuracy"])
    qat.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    return qat


def _convert(model):
    import tflite_opt

    result = tflite_opt.convert(model, "int8", progress=False)
    assert result.quantization_aware and result.num_calibration_samples == 0
    return result.tflite_bytes


def _float_nodes(info) -> list[str]:
    """Ops that read or write a float32 tensor: float compute, DEQUANTIZE, QUANTIZE from float."""
    return [node["op"] for node in info.nodes
            if any(info.tensors[i]["dtype"] == "float32"
                   for i in (*node["inputs"], *node["outputs"]) if i >= 0)]


def _assert_full_int8(tflite_bytes, allowed_ops):
    from tflite_opt.runtime import inspect_model

    info = inspect_model(tflite_bytes)
    assert [t["dtype"] for t in info.inputs] == ["int8"]
    assert [t["dtype"] for t in info.outputs] == ["int8"]
    assert _float_nodes(info) == []
    ops = set(info.op_counts)
    assert not ops & {"DEQUANTIZE", "QUANTIZE", "MUL", "ADD"} - allowed_ops, info.op_counts
    assert ops <= allowed_ops | SHAPE_OPS, info.op_counts
    return info


def _tflite_accuracy(tflite_bytes, x, y) -> float:
    from tflite_opt.runtime import evaluate_tflite

    return float(evaluate_tflite(tflite_bytes, x, y).accuracy)


def test_quantize_aware_keras3_default_converts_to_full_int8_with_keras_accuracy(
        float_model, digits16):
    qat = _qat_fit(float_model, "default", digits16)
    names = [layer.name for layer in qat.layers]
    assert not {"bn2", "relu2", "bn3", "relu3"} & set(names)  # folded into conv2, conv3
    keras_accuracy = qat.evaluate(digits16.x_test, digits16.y_test, verbose=0)[1]
    # Chance is 10%: six float epochs and one of QAT must have learned the digits.
    assert keras_accuracy > 0.5
    tflite_bytes = _convert(qat)
    _assert_full_int8(tflite_bytes, {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                                     "SOFTMAX"})
    # The int8 kernels compute the fake-quantized graph up to one rounding step per op, which
    # can flip only predictions whose top-2 margin is that small: a few of the test images.
    few_images = 4 / len(digits16.y_test)
    tflite = _tflite_accuracy(tflite_bytes, digits16.x_test, digits16.y_test)
    assert abs(tflite - keras_accuracy) <= few_images


def _kernel_checks(model, name):
    """(zeros, zeros int8 rounding may add, size, output channels) of a layer's kernel."""
    kernel = np.asarray(model.get_layer(name).kernel)
    per_channel = kernel.ndim == 4  # convs: per output channel; Dense: per tensor
    axes = tuple(range(kernel.ndim - 1)) if per_channel else None
    # Values below half a quantization step (range / 254 in narrow range) round to 0; the
    # factor 2 leaves room for the kernels' drift during the epoch of QAT.
    step = np.max(np.abs(kernel), axis=axes, keepdims=True) / 127
    near_zero = int(np.sum((kernel != 0) & (np.abs(kernel) < step)))
    return int(np.sum(kernel == 0)), near_zero, kernel.size


@pytest.mark.parametrize("scheme", ["pqat", "pcqat"])
def test_quantize_aware_keras3_preserving_schemes_keep_zeros_and_clusters(
        float_model, digits16, scheme):
    from tflite_opt.runtime import inspect_model

    sparse = _prune_and_cluster(float_model)
    qat = _qat_fit(sparse, scheme, digits16)
    assert np.all(np.asarray(float_model.get_layer("conv2").kernel) != 0)  # caller untouched
    info = _assert_full_int8(_convert(qat), {"CONV_2D", "MAX_POOL_2D", "RESHAPE",
                                             "FULLY_CONNECTED", "SOFTMAX"})
    weights = {w["num_elements"]: w for w in info.weights
               if w.get("role") == "weight" and w["dtype"] == "int8"}
    for name in ("conv2", "dense1"):
        zeros, may_round_to_zero, size = _kernel_checks(sparse, name)
        stored = weights[size]
        assert zeros <= stored["zeros"] <= zeros + may_round_to_zero, name
        if scheme == "pcqat":
            unique = stored.get("max_unique_per_channel") or stored["unique_values"]
            assert unique <= CLUSTERS, name


def test_cqat_centroids_train_while_the_assignment_stays(float_model, digits16):
    sparse = _prune_and_cluster(float_model, names=("dense1",))
    qat = _qat_fit(sparse, "cqat", digits16)
    layer = qat.get_layer("dense1")
    kernel = np.asarray(layer.float_kernel())
    before = np.asarray(sparse.get_layer("dense1").kernel)
    assert len(np.unique(kernel)) <= CLUSTERS
    # Same clusters: weights equal before are equal after, and the centroids moved.
    _, index_before = np.unique(before, return_inverse=True)
    _, index_after = np.unique(kernel, return_inverse=True)
    pairs = np.unique(np.stack([index_before.ravel(), index_after.ravel()]), axis=1)
    assert len(np.unique(before)) == CLUSTERS and pairs.shape[1] == CLUSTERS
    assert not np.allclose(np.unique(kernel), np.unique(before))


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
def test_both_kerases_give_the_same_full_int8_file_through_quantize_aware(flavor, digits16):
    """The public entry point on either Keras: same compute ops, all int8, same weight sizes."""
    import tflite_opt
    from tflite_opt.runtime import inspect_model

    _seed()
    qat = tflite_opt.quantize_aware(digits_cnn((16, 16, 1), width=8, dense_units=32,
                                               flavor=flavor), "default")
    qat(digits16.x_train[:64], training=True)  # activation ranges from one batch
    info = _assert_full_int8(_convert(qat), {"CONV_2D", "MAX_POOL_2D", "RESHAPE",
                                             "FULLY_CONNECTED", "SOFTMAX"})
    assert {op: n for op, n in info.op_counts.items() if op not in SHAPE_OPS} == {
        "CONV_2D": 3, "MAX_POOL_2D": 2, "RESHAPE": 1, "FULLY_CONNECTED": 2, "SOFTMAX": 1}
    sizes = sorted(w["num_elements"] for w in info.weights
                   if w.get("role") == "weight" and w["dtype"] == "int8")
    assert sizes == [72, 320, 1152, 4608, 16384]  # conv1, classifier, conv2, conv3, dense1


def test_kernel_structure_reads_zeros_and_shared_values():
    kernel = np.array([[0.0, 0.5], [0.5, -1.0]], np.float32)
    both = KernelStructure.from_kernel(kernel, keep_zeros=True, keep_clusters=True)
    assert both.keep_zeros
    np.testing.assert_array_equal(both.centroids, [-1.0, 0.0, 0.5])
    np.testing.assert_array_equal(both.centroids[both.indices], kernel)
    distinct = KernelStructure.from_kernel(np.arange(4.0).reshape(2, 2), True, True)
    assert distinct.centroids is None and distinct.keep_zeros  # nothing shared, one zero
    assert not KernelStructure.from_kernel(np.ones((2, 2)), True, False).keep_zeros


def _conv_then_bn(x, kernel, bias, bn_layer, training):
    import tensorflow as tf

    y = tf.nn.conv2d(x, kernel, 1, "SAME") + bias
    return np.asarray(bn_layer(y, training=training))


def test_folded_conv_batch_norm_matches_batch_norm_in_both_modes():
    """Without fake-quant, the folded op is exactly conv + bias + BatchNormalization."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(8, 5, 5, 3)), tf.float32)
    kernel = tf.constant(rng.normal(size=(3, 3, 3, 4)), tf.float32)
    bias = tf.constant(rng.normal(size=4), tf.float32)
    bn_layer = keras.layers.BatchNormalization(momentum=0.9)
    bn_layer.build((None, 5, 5, 4))
    bn_layer.set_weights([rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4),
                          rng.uniform(0.5, 2, 4)])
    variables = folding.BatchNormVariables(
        *[tf.Variable(w, dtype=tf.float32) for w in bn_layer.get_weights()],
        epsilon=bn_layer.epsilon, momentum=bn_layer.momentum)
    # The folded op keeps the bias in the moving mean (qat.py does the same).
    variables.moving_mean.assign_sub(bias)

    def compute(k):
        return tf.nn.conv2d(x, k, 1, "SAME")

    folded = folding.folded_inference(compute, kernel, None, variables, lambda v: v, tf.identity)
    reference = _conv_then_bn(x, kernel, bias, bn_layer, training=False)
    np.testing.assert_allclose(folded, reference, rtol=1e-4, atol=1e-4)
    folded = folding.folded_training(compute, kernel, None, variables, lambda v: v, tf.identity)
    reference = _conv_then_bn(x, kernel, bias, bn_layer, training=True)
    np.testing.assert_allclose(folded, reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(variables.moving_mean.numpy() + bias.numpy(),
                               bn_layer.moving_mean.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(variables.moving_variance.numpy(),
                               bn_layer.moving_variance.numpy(), rtol=1e-4)


def _layer_and_input(cls):
    """A built float layer of ``cls`` and an input for it, plus its kernel's fan-in."""
    rng = np.random.default_rng(0)
    if cls is keras.layers.Dense:
        return keras.layers.Dense(6), rng.normal(size=(4, 10)).astype(np.float32), 10
    if cls is keras.layers.DepthwiseConv2D:
        return (keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
                rng.normal(size=(4, 6, 6, 3)).astype(np.float32), 9)
    x = rng.normal(size=(4, 7, 7, 3)).astype(np.float32)
    return keras.layers.Conv2D(6, 3, strides=2), x, 27


@pytest.mark.parametrize("cls", list(QUANTIZED_LAYERS), ids=lambda c: c.__name__)
def test_every_quantized_layer_matches_its_float_layer_and_batch_norm_within_a_step(cls):
    """Inference output of the folded, fake-quantized layer vs the float layer + BN.

    Each folded weight moves by at most half a step ``s = max|w_fold| / 127`` of its channel
    (of the tensor for Dense), so an output moves by at most ``s / 2 * fan_in * max|x|``.
    """
    layer, x, fan_in = _layer_and_input(cls)
    _seed()
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    bn(layer(x), training=False)  # builds both
    rng = np.random.default_rng(1)
    bn.set_weights([rng.uniform(0.5, 2, w.shape).astype(np.float32) if i in (0, 3)
                    else rng.normal(size=w.shape).astype(np.float32)
                    for i, w in enumerate(bn.get_weights())])
    reference = np.asarray(bn(layer(x), training=False))
    kernel = np.asarray(layer.kernel)
    weights = {"kernel": kernel, "bias": np.asarray(layer.bias)}
    weights.update(zip(folding.BATCH_NORM_WEIGHTS, bn.get_weights()))
    weights["moving_mean"] = weights["moving_mean"] - weights.pop("bias")
    config = {**layer.get_config(), "use_bias": False}
    quantized = QUANTIZED_LAYERS[cls](
        config, kernel.shape, batch_norm={"epsilon": 1e-3, "momentum": 0.99},
        initial_weights=weights)
    output = np.asarray(quantized(x, training=False))
    scale = weights["gamma"] / np.sqrt(weights["moving_variance"] + 1e-3)
    folded = kernel * scale.reshape(kernel.shape[2:]) if cls is keras.layers.DepthwiseConv2D \
        else kernel * scale
    if cls is keras.layers.Dense:
        step = np.max(np.abs(folded)) / 127
    else:  # per output channel: the last axis, or (in, multiplier) of a depthwise kernel
        channel_axes = 2 if cls is keras.layers.DepthwiseConv2D else 3
        step = np.max(np.abs(folded), axis=tuple(range(channel_axes))).reshape(-1) / 127
    bound = step / 2 * fan_in * np.max(np.abs(x)) + 1e-4
    assert np.all(np.abs(output - reference) <= bound)
    assert not np.allclose(output, reference, atol=1e-6)  # the kernel really was quantized


def test_quantize_aware_keras3_rewrites_concat_reshape_pooling_rescaling_to_int8():
    _seed()
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(2.0, offset=-1.0)(inputs)
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu6")(x)
    b = keras.layers.Conv2D(4, 1, use_bias=True)(x)
    b = keras.layers.BatchNormalization()(b)
    b = keras.layers.Activation("relu")(b)
    x = keras.layers.Concatenate()([a, b])
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(max_value=6.0)(x)
    x = keras.layers.Reshape((4 * 4 * 16,))(x)
    x = keras.layers.Dense(8)(x)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(3)(keras.layers.ReLU()(x))
    qat = quantize_aware_keras3(keras.Model(inputs, outputs), "default")
    qat(np.random.default_rng(0).random((16, 8, 8, 1), np.float32), training=True)  # ranges
    _assert_full_int8(_convert(qat), {"DEPTHWISE_CONV_2D", "CONV_2D", "CONCATENATION",
                                      "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED"})


def test_quantize_aware_keras3_takes_a_sequential_model():
    _seed()
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(name="relu"),
        keras.layers.Flatten(name="flatten"), keras.layers.Dense(3, activation="softmax",
                                                                 name="classifier")])
    qat = quantize_aware_keras3(model)
    assert [layer.name for layer in qat.layers][2:] == [
        "conv", "conv_act_quant", "flatten", "classifier", "classifier_act_quant",
        "classifier_softmax"]
    qat(np.random.default_rng(0).random((8, 8, 8, 1), np.float32), training=True)
    _assert_full_int8(_convert(qat), {"CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"})


def test_mobilenet_v2_converts_with_int8_ops_only():
    _seed()
    model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3),
                                           classes=10)
    qat = quantize_aware_keras3(model, "pcqat")
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in qat.layers)
    qat(np.random.default_rng(0).random((4, 96, 96, 3), np.float32), training=True)
    info = _assert_full_int8(_convert(qat), {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD",
                                             "MEAN", "FULLY_CONNECTED", "SOFTMAX"})
    assert info.op_counts["CONV_2D"] == 35 and info.op_counts["DEPTHWISE_CONV_2D"] == 17


def test_quantize_aware_keras3_round_trips_through_a_keras_file(float_model, digits16, tmp_path):
    qat = quantize_aware_keras3(_prune_and_cluster(float_model), "pcqat")
    qat(digits16.x_train[:32], training=True)
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(digits16.x_test[:16], verbose=0),
                               qat.predict(digits16.x_test[:16], verbose=0), atol=1e-6)


def test_quantize_aware_keras3_does_not_change_the_callers_model(float_model):
    before = [w.copy() for w in float_model.get_weights()]
    layers = list(float_model.layers)
    quantize_aware_keras3(float_model, "pcqat")
    assert float_model.layers == layers
    for old, new in zip(before, float_model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_unsupported_layer_error_names_the_layer_and_the_way_out():
    inputs = keras.Input((8, 3))
    outputs = keras.layers.Conv1D(4, 3, name="my_conv1d")(inputs)
    with pytest.raises(UnsupportedLayerError, match=r"'my_conv1d' \(Conv1D\).*skip"):
        quantize_aware_keras3(keras.Model(inputs, outputs))


def test_batch_norm_that_cannot_be_folded_is_refused_by_name():
    inputs = keras.Input((4,))
    x = keras.layers.BatchNormalization(name="lonely_bn")(inputs)
    outputs = keras.layers.Dense(2)(x)
    with pytest.raises(UnsupportedLayerError, match=r"'lonely_bn' \(BatchNormalization\)"):
        quantize_aware_keras3(keras.Model(inputs, outputs))
    # The way out it names works: the skipped layer stays float, the rest is quantized.
    qat = quantize_aware_keras3(keras.Model(inputs, outputs),
                                policy=LayerPolicy(skip=("lonely_bn",)))
    assert isinstance(qat.get_layer("lonely_bn"), keras.layers.BatchNormalization)


def test_wrapped_model_is_refused_and_the_public_entry_point_strips_it(float_model):
    import tflite_opt
    from tflite_opt.train.keras3.quant_layers import QuantizedConv2D

    pruned = tflite_opt.prune(float_model, 0.5, end_step=10)
    with pytest.raises(UnsupportedLayerError, match=r"\(PruneLowMagnitude\).*tflite_opt.strip"):
        quantize_aware_keras3(pruned)
    qat = tflite_opt.quantize_aware(pruned, "pqat")
    assert isinstance(qat.get_layer("conv2"), QuantizedConv2D)


@pytest.mark.parametrize("bad, error", [
    (dict(scheme="int4"), InvalidArgumentError),
    (dict(policy=LayerPolicy(skip=("nope",))), InvalidArgumentError),
])
def test_bad_arguments_are_refused(float_model, bad, error):
    with pytest.raises(error, match="int4|nope"):
        quantize_aware_keras3(float_model, **bad)


def test_mixed_precision_layer_is_refused_by_name():
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, dtype="mixed_float16", name="half")(inputs)
    with pytest.raises(InvalidArgumentError, match=r"'half' \(Dense\) computes in float16"):
        quantize_aware_keras3(keras.Model(inputs, outputs))


def test_tf_keras_model_is_refused_with_the_tf_keras_entry_point(tiny_cnn):
    with pytest.raises(InvalidArgumentError, match="quantize_aware"):
        quantize_aware_keras3(tiny_cnn)


def test_every_scheme_is_registered():
    assert set(KERAS3_QAT_SCHEMES) == {"default", "pqat", "cqat", "pcqat"}

"""Fixtures of the runtime tests: float and int8 .tflite files of the trained tiny CNN."""

from __future__ import annotations

import numpy as np
import pytest


def _convert(model, int8: bool, calibration: np.ndarray | None = None) -> bytes:
    from tflite_opt.convert import convert

    # Plain (dense) encoding: the inspection tests count zeros in the stored weights.
    if int8:
        return convert(model, "int8", representative_data=calibration[:50], sparsity=False,
                       progress=False).tflite_bytes
    return convert(model, "float32", sparsity=False).tflite_bytes


@pytest.fixture(scope="session")
def tflite_files(trained_tiny_cnn, digits16, tmp_path_factory):
    """{'float': path, 'int8': path, 'keras': path} of the trained tiny CNN, both conversions."""
    model, keras_path = trained_tiny_cnn
    folder = tmp_path_factory.mktemp("tflite")
    paths = {"keras": keras_path}
    for kind in ("float", "int8"):
        path = folder / f"tiny_{kind}.tflite"
        path.write_bytes(_convert(model, kind == "int8", digits16.x_train))
        paths[kind] = path
    return paths


@pytest.fixture(scope="session")
def keras_reference(trained_tiny_cnn, digits16):
    """The Keras model's predictions on the digits16 test split."""
    model, _ = trained_tiny_cnn
    return model.predict(digits16.x_test, verbose=0)


KNOWN_CENTROIDS = (-0.5, -0.1, 0.2, 0.7)


@pytest.fixture(scope="session")
def known_weights_model(tmp_path_factory):
    """A model whose weights are set directly: known sparsity and cluster count.

    ``dense_a`` kernel (16x32 = 512 values): exactly 256 zeros, the other 256 drawn
    from the 4 ``KNOWN_CENTROIDS`` (so 5 unique values, sparsity 0.5).
    ``conv_a`` kernel (3x3x1x8 = 72 values): exactly 54 zeros (sparsity 0.75), the
    rest 0.3 (2 unique values). Returns {'float': path, 'int8': path, 'model': model}.
    """
    from tflite_opt._keras import keras

    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv_a")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(16, name="dense_pre")(x)
    x = keras.layers.Dense(32, use_bias=False, name="dense_a")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="known")

    dense = np.zeros(512, np.float32)
    nonzero = rng.permutation(512)[:256]
    dense[nonzero] = rng.choice(KNOWN_CENTROIDS, size=256)
    # every centroid must occur, or the unique count would be less than 5
    dense[nonzero[:4]] = KNOWN_CENTROIDS
    model.get_layer("dense_a").set_weights([dense.reshape(16, 32)])
    conv = np.zeros(72, np.float32)
    conv[rng.permutation(72)[:18]] = 0.3
    model.get_layer("conv_a").set_weights([conv.reshape(3, 3, 1, 8)])

    folder = tmp_path_factory.mktemp("known")
    calibration = rng.random((20, 8, 8, 1)).astype(np.float32)
    paths = {"model": model}
    for kind in ("float", "int8"):
        path = folder / f"known_{kind}.tflite"
        path.write_bytes(_convert(model, kind == "int8", calibration))
        paths[kind] = path
    return paths


@pytest.fixture(scope="session")
def unsupported_gpu_models(tmp_path_factory):
    """{'cumsum_topk': path, 'flex': path}: models the GPU delegate cannot take."""
    from tflite_opt._keras import tf

    folder = tmp_path_factory.mktemp("gpu")

    @tf.function(input_signature=[tf.TensorSpec([1, 10], tf.float32)])
    def cumsum_topk(x):
        return tf.math.cumsum(x, axis=1), tf.math.top_k(x, 3).values

    @tf.function(input_signature=[tf.TensorSpec([1, 10], tf.float32)])
    def flex(x):
        return tf.raw_ops.Cumprod(x=x, axis=1)  # no TFLite builtin: becomes FlexCumprod

    paths = {}
    for name, fn, ops in (("cumsum_topk", cumsum_topk, None),
                          ("flex", flex, [tf.lite.OpsSet.TFLITE_BUILTINS,
                                          tf.lite.OpsSet.SELECT_TF_OPS])):
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [fn.get_concrete_function()], fn)
        if ops:
            converter.target_spec.supported_ops = ops
        path = folder / f"{name}.tflite"
        path.write_bytes(converter.convert())
        paths[name] = path
    return paths

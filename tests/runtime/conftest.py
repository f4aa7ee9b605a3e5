"""Fixtures of the runtime tests: float and int8 .tflite files of the trained tiny CNN."""

from __future__ import annotations

import numpy as np
import pytest


def _convert(model, int8: bool, calibration: np.ndarray | None = None) -> bytes:
    from tflite_opt._keras import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        def representative():
            for sample in calibration[:50]:
                yield [sample[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="session")
def tflite_files(trained_tiny_cnn, digits16, tmp_path_factory):
    """{'float': path, 'int8': path} of the trained tiny CNN converted both ways."""
    model, _ = trained_tiny_cnn
    folder = tmp_path_factory.mktemp("tflite")
    paths = {}
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

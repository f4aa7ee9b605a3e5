"""What a user gets by hand, written the way the TFLite and tfmot guides show it.

These are the reference points of the `compare` suite, so they deliberately use
the stock ``tf.lite.TFLiteConverter`` and ``tfmot`` calls directly and none of
tflite_opt's code.
"""

from __future__ import annotations

import numpy as np

from tflite_opt._keras import keras, tf


def hand_float32(model) -> bytes:
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def hand_dynamic_range(model) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def hand_int8(model, calibration: np.ndarray) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative_dataset():
        for sample in calibration:
            yield [sample[None].astype(np.float32)]

    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def hand_qat(model, x_train, y_train, epochs: int = 3, batch_size: int = 32
             ) -> tuple[bytes, float]:
    """tfmot's QAT guide: quantize_model, compile, fit, convert with DEFAULT optimizations.

    Returns:
        The ``.tflite`` bytes and the training seconds per epoch (wrapping, compiling and
        fitting, as the recipes' stage times count them).
    """
    import time

    import tensorflow_model_optimization as tfmot

    start = time.perf_counter()
    qat_model = tfmot.quantization.keras.quantize_model(model)
    qat_model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", ["accuracy"])
    qat_model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    seconds_per_epoch = (time.perf_counter() - start) / epochs
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert(), seconds_per_epoch


def plain_fit_seconds_per_epoch(model, x_train, y_train, epochs: int = 2,
                                batch_size: int = 32) -> float:
    """The reference for training overhead: compile and fit a copy with no wrappers or callbacks."""
    import time

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    start = time.perf_counter()
    copy.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", ["accuracy"])
    copy.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    return (time.perf_counter() - start) / epochs

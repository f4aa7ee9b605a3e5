"""evaluate_tflite inputs (numpy, tf.data, image folder, fixed batch) and (de)quantization."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.errors import DataError
from tflite_opt.runtime import dequantize_output, evaluate_tflite, quantize_input

INT8_DETAIL = {"name": "x", "dtype": np.int8, "quantization": (0.5, -10),
               "quantization_parameters": {"scales": np.array([0.5], np.float32),
                                           "zero_points": np.array([-10]),
                                           "quantized_dimension": 0}}


def test_quantize_input_rounds_and_clips_to_int8():
    x = np.array([0.0, 0.24, 0.26, 1.0, -100.0, 100.0], np.float32)
    q = quantize_input(x, INT8_DETAIL)
    assert q.dtype == np.int8
    assert q.tolist() == [-10, -10, -9, -8, -128, 127]


def test_dequantize_output_inverts_quantize_on_the_grid():
    q = np.arange(-128, 128, dtype=np.int8)
    real = dequantize_output(q, INT8_DETAIL)
    assert real.dtype == np.float32
    assert real[0] == pytest.approx((-128 + 10) * 0.5)
    np.testing.assert_array_equal(quantize_input(real, INT8_DETAIL), q)


def test_per_channel_quantization_uses_each_channel_scale():
    detail = {"name": "w", "dtype": np.int8, "quantization": (0.0, 0),
              "quantization_parameters": {"scales": np.array([1.0, 0.1], np.float32),
                                          "zero_points": np.array([0, 0]),
                                          "quantized_dimension": 1}}
    q = quantize_input(np.array([[1.0, 1.0]], np.float32), detail)
    assert q.tolist() == [[1, 10]]
    np.testing.assert_allclose(dequantize_output(q, detail), [[1.0, 1.0]], rtol=1e-6)


def test_float_tensor_passes_through_unquantized():
    detail = {"name": "x", "dtype": np.float32, "quantization": (0.0, 0),
              "quantization_parameters": {"scales": np.array([]), "zero_points": np.array([]),
                                          "quantized_dimension": 0}}
    x = np.array([0.123], np.float64)
    assert quantize_input(x, detail).dtype == np.float32
    assert quantize_input(np.array([np.nan]), detail).shape == (1,)
    with pytest.raises(DataError, match="NaN"):
        quantize_input(np.array([np.nan]), INT8_DETAIL)


def test_evaluate_tf_data_gives_same_accuracy_as_numpy(tflite_files, digits16):
    from tflite_opt._keras import tf

    plain = evaluate_tflite(tflite_files["int8"], digits16.x_test, digits16.y_test)
    dataset = tf.data.Dataset.from_tensor_slices((digits16.x_test, digits16.y_test)).batch(50)
    from_ds = evaluate_tflite(tflite_files["int8"], dataset)
    assert from_ds.num_samples == plain.num_samples
    assert from_ds.accuracy == pytest.approx(plain.accuracy)


def test_evaluate_image_folder_reads_classes_from_subfolders(tflite_files, digits16, tmp_path):
    from PIL import Image

    # Three test images of every class, so each class folder exists.
    picks = np.concatenate([np.flatnonzero(digits16.y_test == c)[:3] for c in range(10)])
    xs, ys = digits16.x_test[picks], digits16.y_test[picks]
    for i, (image, label) in enumerate(zip(xs, ys)):
        folder = tmp_path / f"{label}"  # class names "0".."9" sort like their labels
        folder.mkdir(exist_ok=True)
        Image.fromarray((image[..., 0] * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    from_folder = evaluate_tflite(tflite_files["float"], tmp_path)
    from_numpy = evaluate_tflite(tflite_files["float"], xs, ys)
    assert from_folder.num_samples == 30
    # 8-bit PNG rounding can flip a borderline sample at most.
    assert abs(from_folder.accuracy - from_numpy.accuracy) <= 2 / 30


def test_evaluate_fixed_batch_model_runs_per_sample(tflite_files, digits16, tmp_path):
    from tflite_opt._keras import keras, tf

    keras_model = keras.models.load_model(str(tflite_files["keras"]))
    fixed = keras.Sequential([keras.Input((16, 16, 1), batch_size=1), keras_model])
    path = tmp_path / "fixed.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(fixed).convert())
    fixed_acc = evaluate_tflite(path, digits16.x_test[:40], digits16.y_test[:40])
    dyn_acc = evaluate_tflite(tflite_files["float"], digits16.x_test[:40], digits16.y_test[:40])
    assert fixed_acc.batch_mode == "per_sample" and dyn_acc.batch_mode == "batched"
    assert fixed_acc.accuracy == dyn_acc.accuracy


def test_evaluate_wrong_sample_shape_and_label_count_raise(tflite_files, digits16):
    with pytest.raises(DataError, match="sample shape"):
        evaluate_tflite(tflite_files["float"], np.zeros((4, 8, 8, 1), np.float32))
    with pytest.raises(DataError, match="labels"):
        evaluate_tflite(tflite_files["float"], digits16.x_test[:4], digits16.y_test[:3])
    with pytest.raises(DataError, match="reference_outputs"):
        evaluate_tflite(tflite_files["float"], digits16.x_test[:4],
                        reference_outputs=np.zeros((4, 3)))


def test_evaluate_user_metric_is_reported(tflite_files, digits16):
    def top2_accuracy(y_true, outputs):
        top2 = np.argsort(outputs, axis=1)[:, -2:]
        return float(np.mean([y in row for y, row in zip(y_true, top2)]))

    acc = evaluate_tflite(tflite_files["float"], digits16.x_test, digits16.y_test,
                          metric=top2_accuracy)
    assert acc.metric_name == "top2_accuracy"
    assert acc.accuracy <= acc.metric_value <= 1.0

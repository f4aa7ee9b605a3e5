"""convert() inputs: files, SavedModel, concrete functions, Keras 3, QAT/PCQAT, pruned, Flex ops."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.convert import convert, io_details, tensor_dtypes
from tflite_opt.errors import ConversionError, InvalidArgumentError, ModelLoadError

from convert_testutil import run_tflite


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5")
def test_convert_keras_and_h5_files_same_outputs_as_model(tiny_mlp, calib8, tmp_path):
    reference = tiny_mlp.predict(calib8[:5], verbose=0)
    tiny_mlp.save(tmp_path / "m.keras")
    tiny_mlp.save(tmp_path / "m.h5")
    for path in (tmp_path / "m.keras", tmp_path / "m.h5"):
        result = convert(path, "float32")
        assert "file" in result.source
        np.testing.assert_allclose(run_tflite(result.tflite_bytes, calib8[:5]), reference, atol=1e-5)


def test_convert_saved_model_dir_int8_validates_against_signature(tiny_mlp, calib8, tmp_path):
    from tflite_opt._keras import tf
    from tflite_opt.errors import DataError

    tf.saved_model.save(tiny_mlp, str(tmp_path / "sm"))
    result = convert(tmp_path / "sm", "int8", calib8, progress=False)
    assert result.input_type == "int8" and result.source.startswith("SavedModel")
    with pytest.raises(DataError, match=r"expected \(N, 8, 8, 1\)"):
        convert(tmp_path / "sm", "int8", calib8[:, :4], progress=False)


def test_convert_concrete_function_int8(tiny_mlp, calib8):
    from tflite_opt._keras import tf

    fn = tf.function(lambda x: tiny_mlp(x)).get_concrete_function(
        tf.TensorSpec([None, 8, 8, 1], tf.float32))
    result = convert(fn, "int8", calib8, progress=False)
    assert result.input_type == "int8"
    reference = tiny_mlp.predict(calib8[:5], verbose=0)
    assert np.max(np.abs(run_tflite(result.tflite_bytes, calib8[:5]) - reference)) < 0.05


def test_convert_keras3_model_converts_via_export(calib8):
    import keras as keras3

    if not keras3.__version__.startswith("3"):
        pytest.skip("Keras 3 not installed")
    inputs = keras3.Input((8, 8, 1))
    outputs = keras3.layers.Dense(2)(keras3.layers.Flatten()(inputs))
    model = keras3.Model(inputs, outputs)
    result = convert(model, "int8", calib8, progress=False)
    assert result.source.startswith("Keras 3") and result.input_type == "int8"
    reference = np.asarray(model(calib8[:4]))
    assert np.max(np.abs(run_tflite(result.tflite_bytes, calib8[:4]) - reference)) < 0.1


def test_convert_missing_path_and_wrong_type_raise_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        convert(tmp_path / "nope.keras")
    with pytest.raises(InvalidArgumentError, match="accepted: a tf_keras or Keras 3 model"):
        convert(42)


def _qat_base():
    from tflite_opt._keras import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_convert_qat_model_int8_without_data_full_int8_io():
    import tensorflow_model_optimization as tfmot

    qat = tfmot.quantization.keras.quantize_model(_qat_base())
    result = convert(qat, "int8")
    assert result.quantization_aware and result.num_calibration_samples == 0
    assert result.input_type == "int8" and result.output_type == "int8"
    assert set(tensor_dtypes(result.tflite_bytes).values()) <= {"int8", "int32"}


def test_convert_pcqat_model_int8_full_int8_io():
    import tensorflow_model_optimization as tfmot

    clustered = tfmot.clustering.keras.cluster_weights(
        _qat_base(), number_of_clusters=4, preserve_sparsity=True,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR)
    stripped = tfmot.clustering.keras.strip_clustering(clustered)
    pcqat = tfmot.quantization.keras.quantize_apply(
        tfmot.quantization.keras.quantize_annotate_model(stripped),
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(True))
    result = convert(pcqat, "int8", input_type="int8", output_type="int8")
    assert result.quantization_aware
    io = io_details(result.tflite_bytes)
    assert io["inputs"][0]["dtype"] == "int8" and io["outputs"][0]["dtype"] == "int8"


def test_convert_still_wrapped_pruned_model_raises_asking_to_strip():
    import tensorflow_model_optimization as tfmot

    wrapped = tfmot.sparsity.keras.prune_low_magnitude(_qat_base())
    with pytest.raises(InvalidArgumentError, match="PruneLowMagnitude.*strip"):
        convert(wrapped)


def test_convert_sparse_weights_auto_sparsity_float32_smaller_same_outputs(calib8):
    from tflite_opt.models.builders import dense_mlp

    model = dense_mlp((8, 8, 1), hidden=(256,))
    rng = np.random.default_rng(0)
    model.set_weights([w * (rng.random(w.shape) > 0.8) if w.ndim == 2 else w
                       for w in model.get_weights()])
    dense = convert(model, "float32", sparsity=False)
    sparse = convert(model, "float32")  # sparsity="auto": 80% zeros
    assert sparse.sparsity_aware and not dense.sparsity_aware
    assert sparse.weight_sparsity == pytest.approx(0.8, abs=0.02)
    assert sparse.size_bytes < 0.5 * dense.size_bytes
    np.testing.assert_allclose(run_tflite(sparse.tflite_bytes, calib8[:4]),
                               run_tflite(dense.tflite_bytes, calib8[:4]), atol=1e-5)
    # int8: only on request (XNNPACK cannot run sparse int8 fully connected layers).
    int8_auto = convert(model, "int8", calib8, progress=False)
    int8_sparse = convert(model, "int8", calib8, sparsity=True, progress=False)
    assert not int8_auto.sparsity_aware and int8_sparse.sparsity_aware
    assert int8_sparse.size_bytes < 0.8 * int8_auto.size_bytes


def _flex_model():
    from tflite_opt._keras import keras, tf

    inputs = keras.Input((4,), name="x")
    det = keras.layers.Lambda(
        lambda t: t * tf.linalg.det(tf.reshape(tf.concat([t, t, t, t], -1), (-1, 4, 4)))[:, None],
        name="det")(inputs)
    return keras.Model(inputs, det)


def test_convert_model_needing_tf_ops_error_names_ops_and_flag():
    with pytest.raises(ConversionError, match=r"MatrixDeterminant.*allow_select_tf_ops=True.*"
                                              r"--allow_select_tf_ops.*Flex delegate"):
        convert(_flex_model())


def test_convert_allow_select_tf_ops_records_flex_ops_in_sidecar(tmp_path):
    import json

    result = convert(_flex_model(), allow_select_tf_ops=True)
    assert result.select_tf_ops == ("MatrixDeterminant",)
    assert result.requires_flex_delegate and result.to_dict()["requires_flex_delegate"]
    result.save(tmp_path / "flex.tflite")
    side = json.loads((tmp_path / "flex.json").read_text())
    assert side["requires_flex_delegate"] and side["select_tf_ops"] == ["MatrixDeterminant"]
    assert side["inputs"][0]["name"] == "serving_default_x:0"


def test_convert_qat_model_to_int16x8_raises_pointing_to_int8():
    import tensorflow_model_optimization as tfmot

    qat = tfmot.quantization.keras.quantize_model(_qat_base())
    with pytest.raises(InvalidArgumentError, match="quantization-aware.*precision='int8'"):
        convert(qat, "int16x8")

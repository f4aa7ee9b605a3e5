"""Accuracy-aware int8 and the per-layer quantization report."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.convert import (AccuracyAwareResult, QuantizationReport, convert_accuracy_aware,
                                io_details, quantization_report)
from tflite_opt.errors import InvalidArgumentError

from tflite_opt.models.builders import with_activation_outliers


@pytest.fixture(scope="module")
def outlier_case(trained_tiny_cnn, digits16):
    """The trained tiny CNN with its two most active dense1 units scaled 300x (same function)."""
    model, _ = trained_tiny_cnn
    outlier = with_activation_outliers(model, "dense1", "classifier", digits16.x_train[:200])
    return outlier, digits16


def test_outlier_model_float_function_unchanged(trained_tiny_cnn, outlier_case):
    model, _ = trained_tiny_cnn
    outlier, data = outlier_case
    np.testing.assert_allclose(outlier.predict(data.x_test[:32], verbose=0),
                               model.predict(data.x_test[:32], verbose=0), atol=1e-4)


def test_accuracy_aware_outlier_model_meets_bound_with_few_float_layers(outlier_case):
    model, data = outlier_case
    result = convert_accuracy_aware(model, data.x_train, (data.x_test, data.y_test),
                                    max_accuracy_drop=0.01, measure_latency=False, progress=False)
    assert isinstance(result, AccuracyAwareResult)
    assert result.ptq_drop > 0.05  # plain PTQ really fails on this model
    assert result.met_bound and result.accuracy_drop <= 0.01
    assert 0 < len(result.float_layers) and result.float_layer_fraction <= 1 / 3
    assert set(result.float_layers) == {"dense1", "classifier"}
    # The kept layers cost size: their weights are float again.
    assert result.size_cost_bytes > 0
    # Input/output stay int8 for the app, and the stored model is the final one.
    io = io_details(result.conversion.tflite_bytes)
    assert io["inputs"][0]["dtype"] == "int8" and io["outputs"][0]["dtype"] == "int8"
    assert result.conversion.float_nodes and len(result.conversion.float_nodes) == 2
    # Minimality: each kept layer alone is not enough (the backward pass tried it).
    singles = [t for t in result.trials if t.step == "backward" and len(t.float_nodes) == 1]
    assert singles and all(t.accuracy < result.float_accuracy - 0.01 for t in singles)
    d = result.to_dict()
    assert d["met_bound"] and d["float_layer_fraction"] == result.float_layer_fraction


def test_accuracy_aware_good_model_keeps_everything_int8(trained_tiny_cnn, digits16):
    model, _ = trained_tiny_cnn
    result = convert_accuracy_aware(model, digits16.x_train, (digits16.x_test, digits16.y_test),
                                    max_accuracy_drop=0.02, measure_latency=False, progress=False)
    assert result.met_bound and result.float_layers == () and result.trials == ()
    assert result.size_cost_bytes == 0


def test_accuracy_aware_invalid_bound_raises(tiny_cnn, calib16):
    with pytest.raises(InvalidArgumentError, match="max_accuracy_drop must be a fraction"):
        convert_accuracy_aware(tiny_cnn, calib16, (calib16, np.zeros(40)), max_accuracy_drop=5)


def test_quantization_report_flags_outlier_layer_and_writes_table_and_plot(outlier_case, tmp_path):
    model, data = outlier_case
    report = quantization_report(model, data.x_train, num_debug_samples=20)
    assert isinstance(report, QuantizationReport) and report.num_samples == 20
    by_layer = {l.layer: l for l in report.layers}
    assert {"conv1", "dense1", "classifier"} <= set(by_layer)
    # The outlier units keep the tensor SNR high, but the other channels are lost.
    assert by_layer["dense1"].channel_nsr > 0.3 > by_layer["conv1"].channel_nsr
    assert report.worst(1)[0].layer == "dense1"
    # Ordinary conv layers sit near pure rounding error (1/sqrt(12) steps).
    assert 0.1 < by_layer["conv1"].rmse_over_scale < 0.6
    assert by_layer["conv1"].snr_db > 25
    paths = report.save(tmp_path / "model.quant_report")
    assert [p.name for p in paths] == ["model.quant_report.json", "model.quant_report.md",
                                       "model.quant_report.png"]
    assert paths[2].read_bytes()[:4] == b"\x89PNG"
    assert "| dense1 | FULLY_CONNECTED |" in paths[1].read_text()

"""The contract the pipeline relies on: read_tflite, evaluate_tflite, benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tflite_opt.errors import InvalidTFLiteError
from tflite_opt.runtime import (AccuracyResult, BenchmarkResult, benchmark, evaluate_tflite,
                                read_tflite)


def test_read_tflite_valid_file_returns_its_bytes(tflite_files):
    data = read_tflite(tflite_files["float"])
    assert data == tflite_files["float"].read_bytes()
    assert read_tflite(data) == data


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"hello, this is a text file\n" * 4, "identifier"),
    (b"\x00" * 64, "identifier"),
])
def test_read_tflite_bad_content_raises_invalid_tflite(tmp_path, content, reason):
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(InvalidTFLiteError, match=reason) as info:
        read_tflite(path)
    assert "bad.tflite" in str(info.value)


def test_read_tflite_truncated_file_raises_invalid_tflite(tflite_files, tmp_path):
    data = tflite_files["float"].read_bytes()
    for cut in (16, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.tflite"
        path.write_bytes(data[:cut])
        with pytest.raises(InvalidTFLiteError, match=f"cut{cut}.tflite"):
            read_tflite(path)


def test_read_tflite_missing_file_raises_invalid_tflite(tmp_path):
    with pytest.raises(InvalidTFLiteError, match="does not exist"):
        read_tflite(tmp_path / "nope.tflite")


def test_read_tflite_oversized_file_raises_invalid_tflite(tflite_files):
    with pytest.raises(InvalidTFLiteError, match="larger than"):
        read_tflite(tflite_files["float"], max_bytes=1000)


def test_evaluate_float_model_matches_keras_exactly(tflite_files, digits16, keras_reference):
    acc = evaluate_tflite(tflite_files["float"], digits16.x_test, digits16.y_test,
                          reference_outputs=keras_reference)
    keras_accuracy = float(np.mean(np.argmax(keras_reference, 1) == digits16.y_test))
    assert isinstance(acc, AccuracyResult)
    assert acc.num_samples == len(digits16.x_test)
    assert acc.agreement == 1.0
    assert acc.max_abs_diff < 1e-4
    assert acc.accuracy == pytest.approx(keras_accuracy)
    assert acc.accuracy > 0.5  # trained: well above the 0.1 of chance
    assert acc.interpreter == "ai_edge_litert"
    assert acc.batch_mode == "batched"
    json.dumps(acc.to_dict())


def _output_scale(path) -> float:
    from ai_edge_litert.interpreter import Interpreter

    scale, _ = Interpreter(model_path=str(path)).get_output_details()[0]["quantization"]
    assert scale > 0, "the int8 file's output is not quantized"
    return float(scale)


def test_evaluate_int8_model_dequantizes_outputs_close_to_keras(tflite_files, digits16,
                                                                 keras_reference):
    captured = {}

    def keep_outputs(labels, outputs):
        captured["outputs"] = outputs
        return 0.0

    acc = evaluate_tflite(tflite_files["int8"], digits16.x_test, digits16.y_test,
                          reference_outputs=keras_reference, metric=keep_outputs)
    # Bounds in steps of the file's own output scale (1/256 for softmax), per sample: each
    # output carries half a step of rounding plus what the int8 layers before it add. Most
    # samples are within a step or two; near-ties between two classes move the softmax more, so
    # only quantiles are bounded, not the worst sample (which depends on the CPU's float math
    # during training and calibration).
    step = _output_scale(tflite_files["int8"])
    per_sample_steps = np.abs(captured["outputs"] - keras_reference).max(axis=1) / step
    assert np.median(per_sample_steps) <= 2
    assert np.quantile(per_sample_steps, 0.9) <= 8
    assert acc.mean_abs_diff <= 2 * step
    assert acc.max_abs_diff == pytest.approx(per_sample_steps.max() * step)
    assert acc.agreement >= 0.95
    # Accuracies can differ only on the samples whose top-1 class differs.
    keras_accuracy = float(np.mean(np.argmax(keras_reference, 1) == digits16.y_test))
    assert abs(acc.accuracy - keras_accuracy) <= 1 - acc.agreement + 1e-9


def test_evaluate_with_one_hot_labels_and_threads_gives_same_accuracy(tflite_files, digits16):
    plain = evaluate_tflite(tflite_files["int8"], digits16.x_test, digits16.y_test)
    one_hot = np.eye(10)[digits16.y_test]
    other = evaluate_tflite(tflite_files["int8"], digits16.x_test, one_hot, num_threads=2,
                            batch_size=7)
    assert other.accuracy == plain.accuracy
    assert plain.agreement is None and plain.max_abs_diff is None


def test_benchmark_returns_ordered_statistics(tflite_files):
    bench = benchmark(tflite_files["int8"], num_runs=20, warmup_runs=2)
    assert isinstance(bench, BenchmarkResult)
    assert bench.num_runs == 20 and len(bench.timings_us) == 20
    assert 0 < bench.min_us <= bench.median_us <= bench.p90_us <= bench.p99_us <= bench.max_us
    assert bench.min_us <= bench.mean_us <= bench.max_us
    assert bench.init_us > 0 and bench.first_inference_us > 0
    assert bench.size_bytes == tflite_files["int8"].stat().st_size
    assert 0 < bench.gzip_bytes < bench.size_bytes
    assert bench.peak_memory_bytes > 0
    assert bench.interpreter == "ai_edge_litert"
    json.dumps(bench.to_dict())


def test_isolated_benchmark_and_evaluate_match_in_process_results(tflite_files, digits16):
    acc = evaluate_tflite(tflite_files["int8"], digits16.x_test, digits16.y_test, isolate=True)
    assert acc.accuracy == evaluate_tflite(tflite_files["int8"], digits16.x_test,
                                           digits16.y_test).accuracy
    assert benchmark(tflite_files["int8"], num_runs=2, isolate=True).num_runs == 2


def test_probe_reports_a_runtime_refusal_without_raising(tflite_files):
    from tflite_opt.runtime.isolation import ensure_runs_safely, probe_in_subprocess

    data = tflite_files["float"].read_bytes()
    assert probe_in_subprocess(data).ok
    # A valid flatbuffer whose op the runtime refuses: opcode turned into an unknown custom op.
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    model.operatorCodes[0].builtinCode = 32  # CUSTOM
    model.operatorCodes[0].deprecatedBuiltinCode = 32
    model.operatorCodes[0].customCode = "NoSuchOp"
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    custom = bytes(builder.Output())
    result = probe_in_subprocess(read_tflite(custom))
    assert not result.ok and result.signal_name is None and "NoSuchOp" in result.error
    with pytest.raises(InvalidTFLiteError, match="could not be run"):
        ensure_runs_safely(custom, name="custom.tflite")
    with pytest.raises(InvalidTFLiteError, match="NoSuchOp"):
        benchmark(custom, num_runs=1)

"""End-to-end pipeline and the optimize CLI on tiny settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

TINY_RECIPE = {
    "precision": "int8",
    "stages": [
        {"type": "prune", "target_sparsity": 0.5, "epochs": 1},
        {"type": "cluster", "number_of_clusters": 8, "epochs": 1},
        {"type": "qat", "scheme": "pcqat", "epochs": 1},
    ],
}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, trained_tiny_cnn):
    """One tiny pipeline run on the user's-model path (16x16 digits), shared by the tests."""
    from tflite_opt.pipeline import PipelineConfig, run_pipeline

    _, model_path = trained_tiny_cnn
    root = tmp_path_factory.mktemp("pipeline")
    recipe = root / "recipe.json"
    recipe.write_text(json.dumps(TINY_RECIPE))
    config = PipelineConfig(output_dir=str(root / "out"), model=str(model_path), recipe=str(recipe),
                            benchmark_runs=5, num_calibration_samples=50, verbose=0)
    return run_pipeline(config)


def test_run_pipeline_user_model_writes_every_output(pipeline_run):
    names = {p.name for p in pipeline_run.output_dir.iterdir()}
    assert {"model_float32.tflite", "model_int8.tflite", "model_float32.json", "model_int8.json",
            "report.json", "report.md", "variants.png", "recipe.json"} <= names
    assert ".work" not in names  # the resume cache is removed after success
    report = json.loads((pipeline_run.output_dir / "report.json").read_text())
    assert [v["precision"] for v in report["variants"]] == ["float32", "int8"]
    assert report["recipe"]["precision"] == "int8"
    assert "| float32 |" in (pipeline_run.output_dir / "report.md").read_text()
    assert (pipeline_run.output_dir / "variants.png").read_bytes()[:4] == b"\x89PNG"


def test_run_pipeline_report_names_host_cpu_and_int8_latency_ratio(pipeline_run):
    from tflite_opt.runtime.host_cpu import host_cpu

    report = json.loads((pipeline_run.output_dir / "report.json").read_text())
    headline, cpu = report["headline"], host_cpu()
    assert headline["host_int8_dot_product"] is cpu.int8_dot_product
    assert headline["int8_vs_float_latency_ratio"] == headline["latency_ratio_vs_float"] > 0
    guidance = report["latency_guidance"]
    slower = headline["latency_ratio_vs_float"] > 1 and not headline["latency_ratio_within_noise"]
    assert guidance["slower"] is slower and bool(guidance["advice"]) is slower
    markdown = (pipeline_run.output_dir / "report.md").read_text()
    assert cpu.describe() in markdown
    assert ("### Slower than float32 on this host" in markdown) is slower


def test_run_pipeline_int8_file_has_int8_io_and_weights(pipeline_run):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(pipeline_run.output_dir / "model_int8.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    weight_types = {t["dtype"] for t in interpreter.get_tensor_details()
                    if len(t["shape"]) == 4 and t["name"].count("conv")}
    assert weight_types and weight_types <= {np.int8, np.int32}


def test_run_pipeline_reported_accuracy_equals_independent_interpreter_run(pipeline_run, digits16):
    """Runs the int8 file one sample at a time with the raw interpreter, quantizing by hand."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # The same kernels as the pipeline's run: XNNPACK and the builtin int8 kernels round
    # differently, which can move a sample (how the suite runs with TFLITE_OPT_OP_RESOLVER).
    resolver = ("BUILTIN_WITHOUT_DEFAULT_DELEGATES"
                if os.environ.get("TFLITE_OPT_OP_RESOLVER") == "no_xnnpack" else "AUTO")
    interpreter = Interpreter(model_path=str(pipeline_run.output_dir / "model_int8.tflite"),
                              experimental_op_resolver_type=getattr(OpResolverType, resolver))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    correct = 0
    for x, y in zip(digits16.x_test, digits16.y_test):
        q = np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q[None])
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == y)
    independent = correct / len(digits16.y_test)
    report = pipeline_run.report
    assert report["variants"][1]["accuracy"] == pytest.approx(independent, abs=1e-9)
    assert report["headline"]["optimized_tflite_accuracy"] == pytest.approx(independent, abs=1e-9)
    # One epoch per stage on a 16x16 toy: the point is equality above; this only rules out
    # a degenerate file (chance is 0.1). The full-size bar is checked by the pipeline suite.
    assert independent > 0.5


def _optimize(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "optimize.py"), *flags],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("make_input, expected", [
    (lambda d: ["--model", str(d / "missing.keras")], "does not exist"),
    (lambda d: ["--model", str(_write(d / "notes.keras", b"just text"))], "not a .keras model"),
    (lambda d: ["--model", str(_write(d / "weights.h5", b"\x00" * 64))], "not an HDF5 model"),
    (lambda d: ["--recipe", str(_write(d / "r.json", b'{"stages": [{"type": "prune", "target_sparsity": 1.5}]}'))],
     "sparsity"),
    (lambda d: ["--num_threads", "0"], "num_threads"),
    (lambda d: ["--no_such_flag"], "no_such_flag"),
])
def test_optimize_cli_bad_input_exits_2_with_one_line_and_no_output(tmp_path, make_input, expected):
    out = tmp_path / "out"
    result = _optimize(*make_input(tmp_path), "--output_dir", str(out))
    assert result.returncode == 2, result.stderr[-2000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and expected in error_lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_optimize_cli_data_of_wrong_shape_exits_2(tmp_path, trained_tiny_cnn):
    _, model_path = trained_tiny_cnn
    data = tmp_path / "data.npz"
    x = np.zeros((4, 8, 8, 1), np.float32)
    np.savez(data, x_train=x, y_train=np.zeros(4), x_test=x, y_test=np.zeros(4))
    result = _optimize("--model", str(model_path), "--data", str(data), "--output_dir", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "(8, 8, 1)" in result.stderr and "(16, 16, 1)" in result.stderr
    assert not (tmp_path / "o").exists()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_optimize_killed_mid_stage_writes_nothing_and_rerun_resumes(tmp_path):
    """SIGKILL during the training stages; the rerun reuses the float model and finishes."""
    import signal
    import time

    out = tmp_path / "out"
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({**TINY_RECIPE, "stages": [
        {"type": "prune", "target_sparsity": 0.5, "epochs": 3}, {"type": "qat", "epochs": 1}]}))
    args = [sys.executable, str(REPO_ROOT / "scripts" / "optimize.py"), "--output_dir", str(out),
            "--recipe", str(recipe), "--float_epochs", "2", "--benchmark_runs", "3",
            "--num_calibration_samples", "20", "--verbose", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / ".work").glob("float_*.keras")):
        time.sleep(0.2)
    time.sleep(1.0)  # into the prune stage
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list((out / ".work").glob("float_*.keras")), "the float model was never cached"
    assert not (out / "report.json").exists() and not list(out.glob("*.tflite"))

    rerun = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming: reusing the float model" in rerun.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["stages"][0]["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert not (out / ".work").exists()


def test_load_data_one_hot_labels_raise_data_error_with_fix(tmp_path):
    from tflite_opt.errors import DataError
    from tflite_opt.pipeline import load_data

    path = tmp_path / "d.npz"
    x = np.zeros((4, 16, 16, 1), np.float32)
    np.savez(path, x_train=x, y_train=np.eye(4), x_test=x, y_test=np.arange(4))
    with pytest.raises(DataError, match=r"y_train .*y.argmax"):
        load_data(str(path), (16, 16, 1))

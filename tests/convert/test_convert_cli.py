"""scripts/convert.py end to end: files written, exit code 2 with one line on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(REPO / "scripts" / "convert.py"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def model_and_data(tiny_mlp, calib8, tmp_path):
    tiny_mlp.save(tmp_path / "m.keras")
    np.save(tmp_path / "calib.npy", calib8)
    np.save(tmp_path / "bad.npy", calib8[..., 0])
    (tmp_path / "labels_in.txt").write_text("a\nb\nc\n")
    return tmp_path


def _error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_cli_int8_writes_tflite_sidecar_labels(model_and_data):
    d = model_and_data
    out = d / "out" / "m_int8.tflite"
    proc = _run(f"--model={d / 'm.keras'}", "--precision=int8", f"--output={out}",
                f"--representative_data={d / 'calib.npy'}", "--num_calibration_samples=20",
                f"--labels={d / 'labels_in.txt'}", "--pixel_scale=0.00392156862745098")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "input int8" in proc.stdout
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["inputs"][0]["dtype"] == "int8" and side["labels"] == ["a", "b", "c"]
    assert side["conversion"]["num_calibration_samples"] == 20
    assert side["normalization"]["scale"] == pytest.approx(1 / 255)
    assert (d / "out" / "labels.txt").read_text() == "a\nb\nc\n"
    assert out.read_bytes()[4:8] == b"TFL3"

    # Same output again: refused before converting, file untouched; --overwrite replaces.
    before = out.stat().st_mtime_ns
    again = _run(f"--model={d / 'm.keras'}", "--precision=float16", f"--output={out}")
    assert again.returncode == 2 and "--overwrite" in _error_line(again)
    assert out.stat().st_mtime_ns == before
    forced = _run(f"--model={d / 'm.keras'}", "--precision=float16", f"--output={out}",
                  "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(out.with_suffix(".json").read_text())["precision"] == "float16"


def test_cli_wrong_shape_data_exit_2_one_line_no_output(model_and_data):
    d = model_and_data
    out = d / "out" / "m.tflite"
    proc = _run(f"--model={d / 'm.keras'}", "--precision=int8", f"--output={out}",
                f"--representative_data={d / 'bad.npy'}")
    assert proc.returncode == 2
    line = _error_line(proc)
    assert "shape (30, 8, 8)" in line and "expected (N, 8, 8, 1)" in line
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_cli_flag_errors_exit_2(model_and_data):
    d = model_and_data
    proc = _run(f"--model={d / 'm.keras'}", "--precision=int4", f"--output={d / 'x.tflite'}")
    assert proc.returncode == 2 and "precision" in _error_line(proc)
    proc = _run(f"--model={d / 'm.keras'}", "--precision=int8", f"--output={d / 'x.tflite'}",
                f"--representative_data={d / 'calib.npy'}", "--max_accuracy_drop=0.01")
    assert proc.returncode == 2 and "--eval_data" in _error_line(proc)
    proc = _run(f"--model={d / 'missing.keras'}", f"--output={d / 'x.tflite'}")
    assert proc.returncode == 2 and "does not exist" in _error_line(proc)
    assert not (d / "x.tflite").exists()


def test_cli_accuracy_aware_with_report_writes_all_files(trained_tiny_cnn, digits16, tmp_path):
    _, model_path = trained_tiny_cnn
    np.save(tmp_path / "calib.npy", digits16.x_train[:100])
    np.savez(tmp_path / "eval.npz", x=digits16.x_test, y=digits16.y_test)
    out = tmp_path / "aa.tflite"
    proc = _run(f"--model={model_path}", "--precision=int8", f"--output={out}",
                f"--representative_data={tmp_path / 'calib.npy'}", "--max_accuracy_drop=0.02",
                f"--eval_data={tmp_path / 'eval.npz'}", "--quant_report")
    assert proc.returncode == 0, proc.stderr
    assert "accuracy-aware int8: bound met" in proc.stdout
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["inputs"][0]["dtype"] == "int8" and side["float_nodes"] == []
    for suffix in (".json", ".md", ".png"):
        assert (tmp_path / f"aa.quant_report{suffix}").stat().st_size > 0

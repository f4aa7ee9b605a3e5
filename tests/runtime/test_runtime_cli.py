"""scripts/benchmark.py and scripts/inspect.py: exit 0 with output, 2 with one line on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / script), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_inspect_cli_json_reports_ops_and_gpu(tflite_files):
    proc = _run("inspect.py", f"--model={tflite_files['int8']}", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    assert info["op_counts"]["CONV_2D"] == 3
    assert info["gpu"]["compatible"] is True
    assert info["inputs"][0]["dtype"] == "int8"


def test_benchmark_cli_compare_prints_ratios_and_writes_json(tflite_files, tmp_path):
    out = tmp_path / "bench.json"
    proc = _run("benchmark.py", f"--model={tflite_files['float']}", "--num_runs=10",
                "--warmup_runs=1", f"--output={out}", "--noprogress",
                "--compare", str(tflite_files["int8"]), str(tflite_files["float"]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pairwise ratios" in proc.stdout and "median_us" in proc.stdout
    report = json.loads(out.read_text())
    ratios = report["compare"]["ratios"]
    assert len(ratios) == 3 and all(len(row) == 3 for row in ratios.values())
    # The same file twice gets a "#2" label; three models, every pair has a ratio.
    assert len(report["compare"]["results"]) == 3


@pytest.mark.parametrize("script, content, message", [
    ("benchmark.py", b"", "empty"),
    ("inspect.py", b"just some text, not a model\n" * 8, "looks like text"),
    ("benchmark.py", None, "truncated or corrupt"),
])  # each case is a fresh process importing TensorFlow (~5 s): keep the list short
def test_cli_bad_model_exits_2_with_one_line(tflite_files, tmp_path, script, content, message):
    path = tmp_path / "bad.tflite"
    if content is None:  # truncated real model
        content = tflite_files["float"].read_bytes()[:5000]
    path.write_bytes(content)
    proc = _run(script, f"--model={path}")
    assert proc.returncode == 2
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and message in errors[0] and "bad.tflite" in errors[0]
    assert "Traceback" not in proc.stderr

"""The README's three-line example script runs and writes a pruned int8 model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from tests.conftest import REPO_ROOT


def test_train_example_script_writes_pruned_int8_tflite(tmp_path):
    output = tmp_path / "example_int8.tflite"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "train_example.py"),
                             "--output", str(output), "--epochs", "3"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dense1 sparsity 0.75" in result.stdout
    assert output.with_suffix(".json").exists()

    from tflite_opt.runtime import inspect_model

    info = inspect_model(output).to_dict()
    assert {t["dtype"] for t in info["inputs"] + info["outputs"]} == {"int8"}
    dense1 = [w for w in info["weights"] if w["layer"].endswith("dense1") and w["role"] == "weight"]
    assert dense1 and np.isclose(dense1[0]["sparsity"], 0.75, atol=0.01), dense1

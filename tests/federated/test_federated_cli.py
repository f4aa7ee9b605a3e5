"""scripts/federated.py: bad flags end as one ``error:`` line, exit code 2, and nothing written.

All cases fail before TensorFlow is imported, so each child process takes about a second.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("flag, words", [
    ("--dirichlet_alpha=0", "dirichlet_alpha"),
    ("--dropout=1.0", "dropout"),
    ("--engine=grpc", "engine"),
    ("--learning_rate=-1", "learning_rate"),
    ("--learning_rate_decay=1.5", "learning_rate_decay"),
])
def test_federated_script_bad_flag_is_one_error_line_and_exit_2(tmp_path, flag, words):
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "federated.py"), flag,
                          f"--output_dir={out}"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], run.stderr
    assert not out.exists()

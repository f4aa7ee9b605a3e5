"""Atomic output: a reader never sees a half-written file, even after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tflite_opt.errors import OutputExistsError
from tflite_opt.files import atomic_write_bytes, atomic_write_json, staged_output_dir

WRITER = """
import sys
sys.path.insert(0, {root!r})
from tflite_opt.files import atomic_write_bytes
i = 0
print("ready", flush=True)
while True:
    atomic_write_bytes({path!r}, bytes([i % 251]) * (8 << 20))  # 8 MiB of one byte value
    i += 1
"""


def test_atomic_write_bytes_existing_without_overwrite_raises_and_keeps_file(tmp_path):
    path = atomic_write_bytes(tmp_path / "a.bin", b"old")
    with pytest.raises(OutputExistsError, match="a.bin"):
        atomic_write_bytes(path, b"new", overwrite=False)
    assert path.read_bytes() == b"old"
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_atomic_write_json_numpy_values_round_trip(tmp_path):
    import json

    import numpy as np

    path = atomic_write_json(tmp_path / "r.json", {"a": np.float32(0.5), "b": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2]}


def test_atomic_write_bytes_process_killed_mid_write_leaves_whole_file(tmp_path):
    from tests.conftest import REPO_ROOT

    path = tmp_path / "big.bin"
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(REPO_ROOT), path=str(path))],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if path.exists():  # either absent or one complete payload, never a torn one
            data = path.read_bytes()
            assert len(data) == 8 << 20
            assert data.count(data[:1]) == len(data)


def test_staged_output_dir_failure_leaves_output_dir_untouched(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_output_dir(out) as stage:
            (stage / "report.json").write_text("{}")
            raise RuntimeError("conversion failed")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_staged_output_dir_success_moves_files_and_keeps_others(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with staged_output_dir(out) as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "a.txt").write_text("a")
        (stage / "report.json").write_text("{}")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "keep.txt", "report.json", "sub", "sub/a.txt"]

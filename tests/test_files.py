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
while True:
    atomic_write_bytes({path!r}, bytes([i % 251]) * (8 << 20))  # 8 MiB of one byte value
    if i == 0:
        print("ready", flush=True)  # one whole file exists from here on
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
        # A whole file was written before the kill, so the file is there and is one
        # complete payload (the old or the new one), never a torn one.
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


def test_staged_output_dir_stages_inside_the_destination(tmp_path):
    """The final renames stay in one folder, so they never cross a filesystem (EXDEV)."""
    out = tmp_path / "out"
    with staged_output_dir(out) as stage:
        assert stage.parent == out and stage.name.startswith(".")
        assert os.stat(stage).st_dev == os.stat(out).st_dev
        (stage / "a.txt").write_text("a")
    assert [p.name for p in out.iterdir()] == ["a.txt"]


def test_staged_output_dir_symlink_to_other_filesystem_moves_files(tmp_path):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or not os.access(shm, os.W_OK) \
            or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no writable tmpfs on another filesystem than tmp_path")
    import tempfile

    target = tempfile.mkdtemp(dir=shm)
    try:
        link = tmp_path / "out"
        link.symlink_to(target)
        with staged_output_dir(link) as stage:
            (stage / "model.tflite").write_bytes(b"TFL3")
        assert (link / "model.tflite").read_bytes() == b"TFL3"
        assert os.listdir(target) == ["model.tflite"]
    finally:
        import shutil

        shutil.rmtree(target, ignore_errors=True)


def test_check_output_dir_under_a_file_raises_naming_the_file(tmp_path):
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.files import check_output_dir

    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidArgumentError, match=r"--output_dir .*'.*f' is a file"):
        check_output_dir(tmp_path / "f" / "sub", "--output_dir")
    with pytest.raises(InvalidArgumentError, match="is a file"):
        with staged_output_dir(tmp_path / "f"):
            pass
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason=(
    "root ignores folder permissions, so chmod 555 makes no read-only folder; "
    "test_check_output_dir_probe_failure_names_folder_and_reason covers it for root"))
def test_check_output_dir_read_only_folder_raises(tmp_path):
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.files import check_output_dir

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(InvalidArgumentError, match="not writable"):
            check_output_dir(ro / "out", "--output_dir")
    finally:
        ro.chmod(0o755)


def test_check_output_file_input_or_folder_raises(tmp_path):
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.files import check_output_file

    model = tmp_path / "m.tflite"
    model.write_bytes(b"model")
    with pytest.raises(InvalidArgumentError, match="input file"):
        check_output_file(tmp_path / "." / "m.tflite", "--output", inputs=[model])
    with pytest.raises(InvalidArgumentError, match="is a folder"):
        check_output_file(tmp_path, "--output")
    with pytest.raises(OutputExistsError):
        check_output_file(model, "--output", overwrite=False)
    assert check_output_file(tmp_path / "new" / "r.json", "--output") == tmp_path / "new" / "r.json"
    assert model.read_bytes() == b"model" and not (tmp_path / "new").exists()


LOCKER = """
import sys, time
sys.path.insert(0, {root!r})
from tflite_opt.files import lock_output_dir
with lock_output_dir({out!r}):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_output_dir_second_holder_is_refused_with_pid(tmp_path):
    from tests.conftest import REPO_ROOT
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.files import lock_output_dir

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", LOCKER.format(root=str(REPO_ROOT), out=str(out))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(InvalidArgumentError, match=rf"in use by another run \(PID {proc.pid}\)"):
            with lock_output_dir(out):
                pass
    finally:
        proc.kill()
        proc.wait()
    with lock_output_dir(out) as lock:  # the kernel released the dead holder's lock
        assert lock.read_text().strip() == str(os.getpid())


def test_check_output_dir_probe_failure_names_folder_and_reason(tmp_path, monkeypatch):
    """What a read-only mount looks like even to root: the probe file cannot be created."""
    import errno
    import tempfile

    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.files import check_output_dir

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(InvalidArgumentError, match=r"folder '.*' is not writable \(Read-only file system\)"):
        check_output_dir(tmp_path / "new" / "out", "--output_dir")
    assert not (tmp_path / "new").exists()

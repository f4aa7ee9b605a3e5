"""KerasTuner's chief/worker mode: a chief and two workers as local processes, one oracle."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY_FLAGS = ["--architectures=mobilenet_v2_like", "--widths=0.25", "--depths=0.5",
              "--kernel_sizes=3,5", "--resolutions=8", "--precisions=float32", "--sparsities=0",
              "--clusters=0", "--epochs=1", "--benchmark_runs=5", "--oracle=random",
              "--trials=2", "--budget_latency_ms=1000", "--budget_size_kb=1000",
              # This test is about the chief and the workers: train on the images as they are,
              # score few, measure once (test_training_and_latency_check covers those).
              "--noaugmentation", "--validation_copies=1", "--latency_repeats=0",
              "--retrain_final=false"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chief_and_two_workers_share_one_oracle_and_the_chief_writes_the_outputs(tmp_path):
    port = str(_free_port())
    processes = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": port}
        processes[tuner_id] = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "search.py"), f"--output_dir={tmp_path}",
             *TINY_FLAGS], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id] = process.communicate(timeout=400)[0]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for tuner_id, process in processes.items():
        assert process.returncode == 0, f"{tuner_id}:\n{outputs[tuner_id][-3000:]}"
    assert "worker done" in outputs["tuner0"] and "worker done" in outputs["tuner1"]

    records = json.loads((tmp_path / "trials.json").read_text())
    assert len(records) == 2 and all(r["trained"] for r in records)
    assert {r["candidate"]["kernel_size"] for r in records} == {3, 5}  # two distinct trials
    assert {r["tuner_id"] for r in records} <= {"tuner0", "tuner1"}  # run by the workers
    assert (tmp_path / "pareto.csv").is_file() and (tmp_path / "best" / "model.tflite").is_file()

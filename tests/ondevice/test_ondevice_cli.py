"""scripts/ondevice.py: export then train through the file, resume from the checkpoint, refusals.

One child process runs every invocation in-process (importing TensorFlow costs seconds a
process), resetting absl's flags between them, as tests/test_bad_cli_inputs.py does.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.ondevice.conftest import Case, build_model

RUNNER = r"""
import contextlib, io, json, os, sys
sys.path.insert(0, {root!r})
from absl import flags
from tflite_opt.cli import _common
import tflite_opt.cli.ondevice as cli

results = []
for argv in json.loads({runs!r}):
    flags.FLAGS.unparse_flags()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        sys.argv = ["ondevice.py"] + argv
        try:
            _common.run(cli.main)
        except SystemExit as exc:
            code = exc.code or 0
    output = next((a.split("=", 1)[1] for a in argv if a.startswith("--output=")), "")
    report = os.path.join(output, "train_report.json")
    results.append({{"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                    "report": json.load(open(report)) if os.path.isfile(report) else None}})
print(json.dumps(results))
"""


def test_export_train_resume_and_bad_input(tmp_path, digits8):
    model = build_model(Case("keras3", "mlp", "sgd"))
    model.save(tmp_path / "mlp.keras")
    n = 200
    np.savez(tmp_path / "data.npz", x_train=digits8.x_train[:n], y_train=digits8.y_train[:n],
             x_test=digits8.x_test, y_test=digits8.y_test)
    out = tmp_path / "out"
    common = [f"--output={out}"]
    runs = [
        ["--mode=export", f"--model={tmp_path / 'mlp.keras'}", "--trainable=all",
         "--optimizer=adam", "--learning_rate=0.01", "--fresh_head", *common],
        ["--mode=train", f"--data={tmp_path / 'data.npz'}", "--epochs=3", *common],
        ["--mode=train", f"--data={tmp_path / 'data.npz'}", "--epochs=1", "--learning_rate=0.02",
         "--lr_schedule=warmup_cosine", "--warmup_steps=2", "--batch_size=32", *common],
        ["--mode=export", f"--model={tmp_path / 'mlp.keras'}", "--trainable=nope", *common,
         "--overwrite"],
        ["--mode=train", f"--tflite={tmp_path / 'missing.tflite'}", *common],
    ]
    # One 2-epoch schedule over two runs (7 steps each), then a third run past its end.
    scheduled = ["--mode=train", f"--data={tmp_path / 'data.npz'}", "--epochs=1",
                 f"--tflite={out / 'ondevice.tflite'}", f"--output={tmp_path / 'out2'}",
                 "--learning_rate=0.02", "--lr_schedule=warmup_cosine", "--warmup_steps=2",
                 "--schedule_epochs=2", "--batch_size=32"]
    runs += [scheduled + ["--norestore"], scheduled, scheduled]
    child = subprocess.run([sys.executable, "-c", RUNNER.format(root=str(REPO_ROOT),
                                                                runs=json.dumps(runs))],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    export, train, resume, bad_layer, missing, part1, part2, past_end = \
        json.loads(child.stdout.splitlines()[-1])
    assert export["code"] == 0, export["stderr"]
    description = json.loads((out / "ondevice.json").read_text())
    assert description["flex_ops"] == 0 and description["fresh_head"] is True
    assert description["trainable_layers"] == ["dense1", "classifier"]
    assert train["code"] == 0, train["stderr"]
    # "held-out accuracy 9.72% -> 81.39%; wrote ..." and "loss per epoch: a, b, c"
    line = next(t for t in train["stdout"].splitlines() if " -> " in t)
    before, after = (float(v.rstrip("%;")) / 100 for v in line.split()[2:5:2])
    losses = [float(v) for v in next(t for t in train["stdout"].splitlines()
                                     if t.startswith("loss per epoch")).split(":")[1].split(",")]
    assert len(losses) == 3 and losses[-1] < losses[0]
    # 360 held-out images, chance 10%: the fresh head learns far above it in 3 epochs.
    assert before < 0.3 and after > 0.5
    assert resume["code"] == 0, resume["stderr"]
    report = json.loads((out / "train_report.json").read_text())
    assert report["resumed"] is True and len(report["epoch_losses"]) == 1
    # 200 samples in batches of 32: 7 steps; warm-up 0.01, 0.02, then a cosine towards 0 over
    # 5 steps, whose last is 0.02 * (1 + cos(4 pi / 5)) / 2, set in the file (float32).
    assert report["learning_rate_first_step"] == 0.01
    assert report["learning_rate_last_step"] == pytest.approx(
        0.02 * (1 + np.cos(4 * np.pi / 5)) / 2, rel=1e-6)
    # The checkpoint carried the trained weights: the resumed run starts where the first ended.
    assert abs(report["before"]["accuracy"] - after) < 1e-4
    assert bad_layer["code"] == 2 and "'nope'" in bad_layer["stderr"]
    assert bad_layer["stderr"].startswith("error: ")
    assert missing["code"] == 2 and "--mode=export" in missing["stderr"]
    # warmup_cosine(0.02, 14 steps, 2 warm-up): 0.01 at step 0, then 0.01 (1 + cos(pi (s-2)/12)).
    # The second run restores step 7 and goes on from there: no second warm-up.
    def cosine(step):
        return 0.01 * (1 + np.cos(np.pi * (step - 2) / 12))

    for run, start, first_rate in ((part1, 0, 0.01), (part2, 7, cosine(7))):
        assert run["code"] == 0, run["stderr"]
        report = run["report"]
        assert (report["global_step_start"], report["global_step_end"]) == (start, start + 7)
        assert report["learning_rate_first_step"] == pytest.approx(first_rate, rel=1e-12)
        assert report["learning_rate_last_step"] == pytest.approx(cosine(start + 6), rel=1e-6)
    assert past_end["code"] == 2 and "--schedule_epochs=3 or more" in past_end["stderr"]

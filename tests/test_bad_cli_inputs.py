"""Every bad command-line input ends as one ``error:`` line, exit code 2, and nothing written.

Table-driven over the four scripts. Each case gets a folder of its own inputs; after the
run the folder must hold exactly the same files with the same bytes (no output, no orphan
sidecar, the model untouched). Importing TensorFlow costs ~5 s a process, so the cases
of one script run in one child process that calls the script's ``main`` in-process,
resetting the flags between cases (absl refuses two scripts' flags in one process), and
the four children run at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

RUNNER = r"""
import contextlib, io, json, os, sys, traceback
sys.path.insert(0, {root!r})
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from absl import flags
from tflite_opt.cli import _common
import tflite_opt.cli.{script} as cli

results = []
for argv in json.load(open({cases!r})):
    flags.FLAGS.unparse_flags()
    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        sys.argv = ["{script}.py"] + argv
        try:
            _common.run(cli.main)
        except SystemExit as exc:
            code = exc.code
        except BaseException:  # what the user would see: a traceback
            traceback.print_exc(file=err)
            code = 1
    results.append({{"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}})
json.dump(results, open({results!r}, "w"))
"""


class Case(NamedTuple):
    """One bad invocation: ``make(folder)`` writes its inputs and returns its flags."""

    id: str
    script: str
    make: Callable[[Path], list[str]]
    expected: str  # a piece of the error line, naming the flag or value at fault


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _npz(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _data(folder: Path, **override) -> Path:
    """A valid 8x8x1, 3-class .npz unless ``override`` replaces an array."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((12, 8, 8, 1), np.float32), "y_train": np.arange(12) % 3,
              "x_test": rng.random((6, 8, 8, 1), np.float32), "y_test": np.arange(6) % 3}
    arrays.update(override)
    return _npz(folder / "data.npz", **arrays)


def _nan_x(folder: Path) -> list[str]:
    x = np.random.default_rng(0).random((12, 8, 8, 1), np.float32)
    x[7, 3, 3, 0] = np.nan
    return ["--data", str(_data(folder, x_train=x))]


# Placeholders filled in per case: {model} the .keras model, {tflite} the .tflite (with its
# sidecar {tflite_json}), {calib} calibration inputs; each case's folder is `d`.
CASES = [
    # convert: every output location is checked before the (slow) conversion.
    Case("convert-output-is-folder", "convert",
         lambda d: ["--output", str(_mkdir(d / "dir.tflite")), "--overwrite"],
         "is a folder"),
    Case("convert-output-under-file", "convert",
         lambda d: ["--output", str(_write(d / "afile", b"x") / "m.tflite")], "is a file, not a folder"),
    Case("convert-labels-not-utf8", "convert",
         lambda d: ["--labels", str(_write(d / "labels.txt", b"\xff\xfecat\n\x80dog\n"))],
         "not UTF-8"),
    Case("convert-labels-count", "convert",
         lambda d: ["--labels", str(_write(d / "labels.txt", b"cat\ndog\n"))],
         "2 entries but the model's output"),
    Case("convert-pixel-mean-nan", "convert", lambda d: ["--pixel_mean=nan"], "--pixel_mean must be finite"),
    Case("convert-pixel-mean-inf", "convert", lambda d: ["--pixel_mean=0.5,inf,0.5"], "must be finite"),
    Case("convert-pixel-std-zero", "convert", lambda d: ["--pixel_std=0"], "--pixel_std must be > 0"),
    Case("convert-quant-report-exists", "convert",
         lambda d: ["--precision=int8", "--representative_data={calib}", "--quant_report",
                    "--output", str(_write(d / "m.quant_report.md", b"old report").parent / "m.tflite")],
         "m.quant_report.md already exist"),
    Case("convert-eval-labels-inf", "convert",
         lambda d: ["--precision=int8", "--representative_data={calib}", "--max_accuracy_drop=0.01",
                    "--eval_data", str(_npz(d / "eval.npz", x=np.zeros((4, 8, 8, 1), np.float32),
                                            y=np.array([0, 1, np.inf, 2])))],
         "eval_data y must hold finite numbers"),
    # inspect / benchmark: --output never replaces a model or its sidecar.
    Case("inspect-output-is-model", "inspect", lambda d: ["--model={tflite}", "--output={tflite}"],
         "is the input file"),
    Case("inspect-output-is-sidecar", "inspect",
         lambda d: ["--model={tflite}", "--output={tflite_json}"], "is the sidecar of the input model"),
    Case("inspect-output-is-folder", "inspect", lambda d: ["--model={tflite}", f"--output={d}"],
         "is a folder"),
    Case("benchmark-output-is-model", "benchmark",
         lambda d: ["--model={tflite}", "--output={tflite}", "--noprogress"], "is the input file"),
    Case("benchmark-output-is-compared-sidecar", "benchmark",
         lambda d: [f"--model={_write(d / 'other.tflite', b'')}", "--compare={tflite}",
                    "--output={tflite_json}"], "is the sidecar of the input model"),
    Case("benchmark-num-threads-huge", "benchmark", lambda d: ["--model={tflite}", "--num_threads=100000"],
         "num_threads"),
    Case("benchmark-threads-to-try-zero", "benchmark",
         lambda d: ["--model={tflite}", "--find_fastest", "--threads_to_try=0,2"], "--threads_to_try"),
    # optimize: settings and data are checked before any training.
    Case("optimize-output-dir-under-file", "optimize",
         lambda d: ["--output_dir", str(_write(d / "afile", b"x") / "out")], "is a file, not a folder"),
    Case("optimize-seed-negative", "optimize", lambda d: ["--seed=-1"], "seed"),
    Case("optimize-num-threads-huge", "optimize", lambda d: ["--num_threads=100000"], "num_threads"),
    Case("optimize-data-empty", "optimize",
         lambda d: ["--data", str(_data(d, x_test=np.zeros((0, 8, 8, 1), np.float32),
                                        y_test=np.zeros(0, np.int64)))], "x_test"),
    Case("optimize-data-y-inf", "optimize",
         lambda d: ["--data", str(_data(d, y_train=np.r_[np.arange(11) % 3, np.inf]))],
         "y_train in '{d}' has 1 NaN or inf labels"),
    Case("optimize-data-label-beyond-outputs", "optimize",
         lambda d: ["--data", str(_data(d, y_test=np.array([0, 1, 2, 0, 1, 5])))],
         "label 5, but the model has 3 outputs"),
    Case("optimize-data-nan-x", "optimize", _nan_x, "NaN or inf values in 1 of 12 samples (first at index 7)"),
    Case("optimize-output-dir-in-use", "optimize", lambda d: [], "is in use by another run (PID {pid})"),
]

DEFAULT_FLAGS = {
    "convert": ["--model={model}", "--output={out}"],
    "optimize": ["--model={model}", "--data={data}", "--output_dir={out}", "--verbose=0"],
    "inspect": [],
    "benchmark": [],
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The shared valid inputs: a 3-class 8x8 MLP (.keras and .tflite) and calibration data."""
    from tflite_opt._keras import keras
    from tflite_opt.convert import convert

    root = tmp_path_factory.mktemp("inputs")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    model.save(root / "m.keras")
    tflite = convert(model, "float32").save(root / "m.tflite")
    np.save(root / "calib.npy", np.random.default_rng(0).random((8, 8, 8, 1), np.float32))
    return {"model": root / "m.keras", "tflite": tflite, "tflite_json": tflite.with_suffix(".json"),
            "calib": root / "calib.npy"}


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


def _prepare(case: Case, root: Path, inputs: dict, stack: contextlib.ExitStack) -> dict:
    """Writes the case's inputs into its own folder; returns its argv, folder and snapshot."""
    from tflite_opt.files import lock_output_dir

    folder = root / case.id
    folder.mkdir()
    if case.id == "optimize-output-dir-in-use":  # a first run holds the folder
        stack.enter_context(lock_output_dir(folder / "out"))
    args = DEFAULT_FLAGS[case.script] + case.make(folder)
    data = folder / "data.npz" if (folder / "data.npz").exists() else _data(folder / "ok")
    out = folder / ("out.tflite" if case.script == "convert" else "out")
    names = {**{k: str(v) for k, v in inputs.items()}, "out": str(out), "data": str(data)}
    # Later flags win in absl, so a case's own --output/--data replaces the default.
    return {"argv": [a.format(**names) for a in args], "folder": folder, "data": str(data),
            "before": _snapshot(folder)}


@pytest.fixture(scope="module")
def outcomes(inputs, tmp_path_factory) -> dict:
    """Every case's exit code, stderr and folder snapshots; one child process per script,
    the four running at once."""
    root = tmp_path_factory.mktemp("cases")
    watched = [inputs["model"], inputs["tflite"], inputs["tflite_json"]]
    before_inputs = {str(p): p.read_bytes() for p in watched}
    found: dict = {}
    with contextlib.ExitStack() as stack:
        found = {case.id: _prepare(case, root, inputs, stack) for case in CASES}
        procs = {}
        for script in DEFAULT_FLAGS:
            ids = [c.id for c in CASES if c.script == script]
            cases_file, results_file = root / f"{script}_cases.json", root / f"{script}_results.json"
            cases_file.write_text(json.dumps([found[i]["argv"] for i in ids]))
            code = RUNNER.format(root=str(REPO_ROOT), script=script, cases=str(cases_file),
                                 results=str(results_file))
            procs[script] = (ids, results_file, subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, cwd=REPO_ROOT))
        for script, (ids, results_file, proc) in procs.items():
            _, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"{script}: {stderr[-3000:]}"
            for case_id, result in zip(ids, json.loads(results_file.read_text())):
                found[case_id].update(result, after=_snapshot(found[case_id]["folder"]))
    assert {str(p): p.read_bytes() for p in watched} == before_inputs, "an input file changed"
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_cli_input_exits_2_with_one_error_line_and_writes_nothing(outcomes, case):
    outcome = outcomes[case.id]
    stderr = outcome["stderr"]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert outcome["code"] == 2, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert case.expected.format(pid=os.getpid(), d=outcome["data"]) in errors[0], errors[0]
    assert outcome["after"] == outcome["before"], "the run wrote or changed files"


@pytest.mark.parametrize("settings, message", [
    ({"seed": -1}, "seed must be an integer from 0"),
    ({"num_threads": 100000}, "num_threads must be at most"),
    ({"output_dir": __file__}, "not a folder"),
])
def test_pipeline_config_bad_setting_raises_before_any_work(tmp_path, settings, message):
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.pipeline import PipelineConfig, run_pipeline

    with pytest.raises(InvalidArgumentError, match=message):
        run_pipeline(PipelineConfig(**{"output_dir": str(tmp_path / "out"), **settings}))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("settings", [{"mean": float("nan")}, {"mean": (0.5, float("inf"), 0.5)},
                                      {"std": 0.0}, {"std": float("nan")}, {"scale": float("inf")}])
def test_image_preprocessing_non_finite_or_zero_raises(settings):
    """From Python too: a NaN mean would otherwise be written into the sidecar."""
    from tflite_opt.data.calibration import ImagePreprocessing
    from tflite_opt.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match=next(iter(settings))):
        ImagePreprocessing(**settings)


def test_outputs_are_logits_from_values_not_layer_names():
    from tflite_opt.train.plan import outputs_are_logits as _outputs_are_logits

    logits = np.random.default_rng(0).normal(size=(20, 10)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert _outputs_are_logits(logits)
    assert not _outputs_are_logits(probabilities)
    # Non-negative outputs that do not sum to 1 (a ReLU head) are not probabilities either.
    assert _outputs_are_logits(np.abs(logits))


def test_image_folder_decodes_only_the_picked_files(tmp_path, monkeypatch):
    """50 images, 5 calibration samples: 5 decodes, evenly spread over the sorted names."""
    from PIL import Image

    from tflite_opt.data import calibration
    from tflite_opt.data.calibration import InputSpec, load_calibration_data

    for i in range(50):
        Image.fromarray(np.full((4, 4), i * 5, np.uint8)).save(tmp_path / f"img{i:02d}.png")
    decoded: list[str] = []
    real_load = calibration._load_images

    def counting_load(files, *args, **kwargs):
        decoded.extend(p.name for p in files)
        return real_load(files, *args, **kwargs)

    monkeypatch.setattr(calibration, "_load_images", counting_load)
    (x,) = load_calibration_data(str(tmp_path), [InputSpec("image", (4, 4, 1))], num_samples=5)
    picked = [0, 12, 24, 37, 49]  # np.linspace(0, 49, 5).round()
    assert decoded == [f"img{i:02d}.png" for i in picked]
    assert np.allclose(x[:, 0, 0, 0], np.array(picked) * 5 / 255, atol=1e-6)


def test_plan_on_logits_model_with_probabilities_loss_warns_and_uses_from_logits(digits16):
    """A model without a final softmax is trained with from_logits=True, and says so."""
    from tflite_opt._keras import keras
    from tflite_opt.train import OptimizationPlan, Recipe

    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, name="logits")])  # no softmax
    recipe = Recipe.from_dict({"precision": "int8", "stages": [
        {"type": "prune", "target_sparsity": 0.5, "epochs": 1}]})
    x, y = digits16.x_train[:256], digits16.y_train[:256]
    losses: list = []

    class RecordLoss(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            losses.append(self.model.loss)

    with pytest.warns(UserWarning, match=r"outputs logits .*'logits' has no softmax.*from_logits=True"):
        OptimizationPlan(recipe).run(model, (x, y), loss="sparse_categorical_crossentropy",
                                     callbacks=[RecordLoss()], verbose=0)
    assert losses and all(loss.get_config()["from_logits"] is True for loss in losses)
    # The same loss on a softmax model stays as given: no warning.
    softmax = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(10, activation="softmax")])
    import warnings

    losses.clear()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*outputs logits")
        OptimizationPlan(recipe).run(softmax, (x, y), callbacks=[RecordLoss()], verbose=0)
    assert losses == ["sparse_categorical_crossentropy"]

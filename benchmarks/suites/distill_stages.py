"""Suite `distill_stages`: which stage of a self-distilled recipe adds gzip size, and which adds
accuracy (issue 11's "at no larger gzip size").

The distill suite compares two whole recipes: the default (prune 75% -> 16 clusters -> PCQAT)
and the same with ``distill:`` on every stage. This suite splits the recipe in two parts and
crosses them, seed by seed:

- the prune stage, plain or self-distilled (two pruned models per seed);
- the cluster and QAT stages, plain or self-distilled, each run from both pruned models.

The second part resumes the plan from its own checkpoint folder after the prune stage
(``stage0_input.keras``, the float model that teaches, and ``stage1_input.keras``, the pruned
one, which a prune-only run saves as ``final.keras``), so the four files of a seed share their
pruned weights two by two, and both later variants start from the same random state. Each
cell's int8 file is scored through LiteRT on ``benchmarks.common.eval_data``; effects are
paired by seed (gzip: mean percent and Student-t interval over seeds; accuracy: bootstrap
over images and seeds). The self-distillation setting is the distill suite's (``SETTINGS``,
chosen there on a validation split).

Summary keys: prune_stage_gzip_change_percent, later_stages_gzip_change_percent (each with
_ci95_low/_high; the effect of self-distilling that part, averaged over the other part),
prune_stage_accuracy_points, later_stages_accuracy_points (each with _ci95_low/_high),
all_stages_gzip_change_percent and all_stages_accuracy_points (self-distilled everywhere minus
nowhere, as the distill suite compares them), dense1_entropy_bits (mean over seeds per cell:
the entropy of dense1's nonzero int8 values, what gzip pays for), seeds, cpu, wall_s.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import eval_data, example_float_model, tflite_correct
from benchmarks.suites.compare import our_recipes
from benchmarks.suites.distill import _int8, fit_recipe, paired_percent_ci, t_interval
from tflite_opt._keras import keras
from tflite_opt.files import atomic_write_json
from tflite_opt.report.significance import paired_bootstrap_difference_ci
from tflite_opt.runtime.benchmark import gzip_size
from tflite_opt.runtime.host_cpu import host_cpu
from tflite_opt.train import Recipe, SelfDistill
from tflite_opt.train.plan import STATE_FILE

SETTINGS = SelfDistill(alpha=0.5, temperature=1.0)  # the distill suite's validation choice
SEEDS = tuple(range(16))
CELLS = ((False, False), (False, True), (True, False), (True, True))  # (prune, later) distilled


def _name(cell: tuple[bool, bool]) -> str:
    return f"prune {'SD' if cell[0] else 'plain'}, cluster+QAT {'SD' if cell[1] else 'plain'}"


def _recipe(plain: Recipe, prune: bool, later: bool) -> Recipe:
    return dataclasses.replace(plain, stages=tuple(
        dataclasses.replace(stage, distill=SETTINGS if (prune if i == 0 else later) else None)
        for i, stage in enumerate(plain.stages)))


def _resume_after_prune(recipe: Recipe, model, data, pruned_dir: Path, plan_dir: Path):
    """``recipe``'s later stages, resumed as the plan resumes a run stopped after its prune
    stage: from the float model and the pruned one that ``pruned_dir``'s prune-only run saved."""
    plan_dir.mkdir()
    shutil.copy(pruned_dir / "stage0_input.keras", plan_dir / "stage0_input.keras")
    shutil.copy(pruned_dir / "final.keras", plan_dir / "stage1_input.keras")
    atomic_write_json(plan_dir / STATE_FILE, {
        "recipe": recipe.to_dict(), "stage": 1, "epoch": 0, "checkpoint": None, "seconds": 0.0,
        "completed": []})
    return fit_recipe(recipe, model, data, plan_dir)


def dense_entropy_bits(tflite: bytes, min_elements: int = 100_000) -> float:
    """Entropy (bits) of the nonzero int8 values of the file's largest 2-D int8 weight
    (dense1 in the digits CNN): what a compressor pays per nonzero weight."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite)
    largest = max((d for d in interpreter.get_tensor_details()
                   if d["dtype"] == np.int8 and len(d["shape"]) == 2
                   and int(np.prod(d["shape"])) >= min_elements),
                  key=lambda d: int(np.prod(d["shape"])))
    values = interpreter.get_tensor(largest["index"])
    _, counts = np.unique(values[values != 0], return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _pairs(part: int) -> list[tuple[tuple[bool, bool], tuple[bool, bool]]]:
    """The cells with ``part`` self-distilled, each with its twin that has it plain."""
    return [(cell, tuple(not x if i == part else x for i, x in enumerate(cell)))
            for cell in CELLS if cell[part]]


def part_gzip_change(sizes: dict, part: int) -> tuple[float, float, float]:
    """The gzip change (%) of self-distilling ``part`` (0 prune, 1 cluster+QAT): per seed, the
    mean of its two paired changes (one per variant of the other part); mean and Student-t
    95% interval over seeds."""
    return t_interval(np.mean([100 * (np.asarray(sizes[on], float) - sizes[off])
                               / np.asarray(sizes[off], float) for on, off in _pairs(part)],
                              axis=0))


def part_accuracy_change(correct: dict, part: int):
    """The accuracy change of self-distilling ``part``: both pairs' runs, paired on the same
    images, bootstrap over images and runs."""
    pairs = _pairs(part)
    return paired_bootstrap_difference_ci(np.concatenate([correct[on] for on, _ in pairs]),
                                          np.concatenate([correct[off] for _, off in pairs]))


def run(output_dir: Path, quick: bool = False) -> dict:
    start = time.perf_counter()
    data = eval_data(quick)
    teacher, teacher_source = example_float_model(data, quick)
    calibration = data.x_train[:200]
    plain = our_recipes(quick)["prune+cluster+PCQAT (tflite_opt)"]
    seeds = SEEDS[:1] if quick else SEEDS
    sizes = {cell: [] for cell in CELLS}
    correct = {cell: [] for cell in CELLS}
    entropy = {cell: [] for cell in CELLS}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            for prune in (False, True):
                pruned_dir = tmp / f"prune{int(prune)}"
                keras.utils.set_random_seed(seed)
                prune_only = _recipe(plain, prune, False)
                fit_recipe(dataclasses.replace(prune_only, stages=prune_only.stages[:1]),
                           teacher, data, pruned_dir)
                for later in (False, True):
                    keras.utils.set_random_seed(10_000 + seed)
                    model = _resume_after_prune(_recipe(plain, prune, later), teacher, data,
                                                pruned_dir, tmp / f"p{int(prune)}l{int(later)}")
                    tflite = _int8(model, calibration)
                    sizes[(prune, later)].append(gzip_size(tflite))
                    correct[(prune, later)].append(
                        tflite_correct(tflite, data.x_test, data.y_test)[1])
                    entropy[(prune, later)].append(dense_entropy_bits(tflite))
        print(f"distill_stages: seed {seed} gzip " + ", ".join(
            f"{_name(c)} {sizes[c][-1]}" for c in CELLS), flush=True)
    correct = {cell: np.stack(rows) for cell, rows in correct.items()}

    effects = {"prune_stage": (part_gzip_change(sizes, 0), part_accuracy_change(correct, 0)),
               "later_stages": (part_gzip_change(sizes, 1), part_accuracy_change(correct, 1)),
               "all_stages": (paired_percent_ci(sizes[(True, True)], sizes[(False, False)]),
                              paired_bootstrap_difference_ci(correct[(True, True)],
                                                             correct[(False, False)]))}
    summary = {}
    for part, (size, accuracy) in effects.items():
        summary.update({f"{part}_gzip_change_percent": size[0],
                        f"{part}_gzip_change_ci95_low": size[1],
                        f"{part}_gzip_change_ci95_high": size[2],
                        f"{part}_accuracy_points": 100 * accuracy.difference,
                        f"{part}_accuracy_ci95_low": 100 * accuracy.ci95_low,
                        f"{part}_accuracy_ci95_high": 100 * accuracy.ci95_high})
    summary.update({
        "dense1_entropy_bits": {_name(c): float(np.mean(entropy[c])) for c in CELLS},
        "self_distill": dataclasses.asdict(SETTINGS),
        "eval_images": len(data.y_test),
        "seeds": len(seeds),
        "cpu": host_cpu().describe(),
        "wall_s": time.perf_counter() - start,
    })
    tables = [
        {"title": f"The four halves of the recipe crossed (int8 through LiteRT, "
                  f"{len(data.y_test)} augmented held-out digits; mean over {len(seeds)} seeds; "
                  f"float model: {teacher_source})",
         "columns": ["prune stage", "cluster + QAT stages", "accuracy %", "gzip_bytes",
                     "gzip_bytes std", "dense1 entropy bits"],
         "rows": [["self-distilled" if c[0] else "plain", "self-distilled" if c[1] else "plain",
                   round(100 * float(correct[c].mean()), 3), round(float(np.mean(sizes[c]))),
                   round(float(np.std(sizes[c]))), round(float(np.mean(entropy[c])), 4)]
                  for c in CELLS],
         "note": f"Self-distillation: {dataclasses.asdict(SETTINGS)}. Per seed, both pruned "
                 "models go through both variants of the later stages (resumed from the plan's "
                 "checkpoint after the prune stage, from the same random state)."},
        {"title": "Effect of self-distilling each part (paired by seed; gzip: mean % and "
                  "Student-t 95% interval over seeds; accuracy: points, bootstrap 95% interval "
                  "over images and seeds)",
         "columns": ["self-distilled part", "gzip change %", "ci95 low", "ci95 high",
                     "accuracy points", "ci95 low", "ci95 high"],
         "rows": [[part.replace("_", " "), *(round(x, 2) for x in size),
                   round(100 * accuracy.difference, 2), round(100 * accuracy.ci95_low, 2),
                   round(100 * accuracy.ci95_high, 2)]
                  for part, (size, accuracy) in effects.items()],
         "note": "prune stage / later stages: averaged over the other part's two variants; all "
                 "stages: self-distilled everywhere minus nowhere."},
        {"title": "gzip bytes per seed",
         "columns": ["seed", *(_name(c) for c in CELLS)],
         "rows": [[seed, *(sizes[c][i] for c in CELLS)] for i, seed in enumerate(seeds)]},
    ]
    return {"summary": summary, "tables": tables,
            "details": {"recipes": {_name(c): _recipe(plain, *c).to_dict() for c in CELLS},
                        "gzip_bytes": {_name(c): sizes[c] for c in CELLS},
                        "dense1_entropy_bits": {_name(c): entropy[c] for c in CELLS}}}

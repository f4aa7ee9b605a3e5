"""Suite `nas`: a 12-trial hardware-aware architecture search, and its pick measured again.

``tflite_opt.search.run_search`` (KerasTuner's Bayesian oracle) over the three efficient
builders (width, depth, kernel, input resolution) and the recipe (int8 or float32, pruning
0/50%), ``EPOCHS`` epochs from scratch on the digits, under budgets that
bind on this host: ``LATENCY_BUDGET_US`` (median of the fastest configuration, 1 thread,
XNNPACK on/off) and ``SIZE_BUDGET_BYTES`` (the file). Float32 and wide candidates break the
size budget on their weights alone and are rejected before training; mid-sized ones train and
then break the latency budget. The chosen model's ``.tflite`` is then measured again in a
fresh process (``scripts/benchmark.py`` through ``subprocess``, same threads and kernels, 200
runs) and scored on the augmented eval set (3,240 images) with a 95% Clopper-Pearson interval.
Clustering (in ``scripts/search.py``'s default space) is left out here: it changes neither the
file size nor the latency these budgets count (only the gzip size), and its stage would take
a third of the 15 minutes the 12 trials are allowed on 2 cores.

Summary keys (stable): trials, wall_s, best_latency_us, latency_budget_us, best_size_bytes,
size_budget_bytes, best_accuracy, remeasured_latency_us, remeasured_within_budget,
rejected_before_training, duplicates (trials that repeated a candidate; figures reused),
over_budget_after_conversion, trained, best_eval_accuracy, best_eval_accuracy_ci95,
best_candidate, cpu, load_average.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tflite_opt.files import atomic_write_bytes
from tflite_opt.search import Budgets, SearchConfig, SearchSpace, run_search
from tflite_opt.search.pareto import pareto_table

TRIALS = 12
EPOCHS = 3
LATENCY_BUDGET_US = 50.0
SIZE_BUDGET_BYTES = 96 * 1024
SPACE = SearchSpace(widths=(0.25, 0.5, 1.0), depths=(0.5, 1.0), kernel_sizes=(3, 5),
                    resolutions=(16, 24, 32), precisions=("int8", "float32"),
                    sparsities=(0.0, 0.5), clusters=(0,))
REPO = Path(__file__).resolve().parents[2]


def remeasure(model: Path, num_threads: int, op_resolver: str, num_runs: int = 200) -> float:
    """Median latency of ``model`` measured by ``scripts/benchmark.py`` in a fresh process."""
    command = [sys.executable, str(REPO / "scripts" / "benchmark.py"), f"--model={model}",
               f"--num_threads={num_threads}", f"--op_resolver={op_resolver}",
               f"--num_runs={num_runs}", "--json", "--noprogress"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    return float(json.loads(out.stdout)["benchmark"]["median_us"])


def eval_accuracy(model: Path, resolution: int, quick: bool) -> tuple[float, list[float], int]:
    """Accuracy on the augmented held-out digits at the model's resolution, with a 95% CI."""
    from scipy.stats import binomtest

    from tflite_opt.data.digits_eval import load_digits_eval
    from tflite_opt.runtime import evaluate_tflite

    data = load_digits_eval(image_size=resolution, copies=3 if quick else 9)
    accuracy = evaluate_tflite(model, data.x_test, data.y_test).accuracy
    n = len(data.y_test)
    interval = binomtest(round(accuracy * n), n).proportion_ci(0.95)
    return float(accuracy), [float(interval.low), float(interval.high)], n


def run(output_dir: Path, quick: bool = False) -> dict:
    from tflite_opt.runtime.host_cpu import host_cpu

    load_before = os.getloadavg()
    search_dir = Path(output_dir) / "nas_search"
    budgets = Budgets(latency_us=LATENCY_BUDGET_US, size_bytes=SIZE_BUDGET_BYTES)
    config = SearchConfig(str(search_dir), budgets, SPACE, trials=4 if quick else TRIALS,
                          oracle="bayesian", epochs=1 if quick else EPOCHS, seed=0)
    started = time.perf_counter()
    result = run_search(config)
    wall_s = time.perf_counter() - started
    best = result.best
    summary = {
        "trials": len(result.records), "wall_s": round(wall_s, 1),
        "trained": sum(1 for r in result.records if r["trained"] and not r.get("duplicate_of")),
        "duplicates": sum(1 for r in result.records if r.get("duplicate_of")),
        "rejected_before_training": sum(1 for r in result.records if not r["trained"]),
        "over_budget_after_conversion": sum(1 for r in result.records
                                            if r["trained"] and not r["within_budget"]),
        "latency_budget_us": LATENCY_BUDGET_US, "size_budget_bytes": SIZE_BUDGET_BYTES,
        "best_latency_us": None, "best_size_bytes": None, "best_accuracy": None,
        "remeasured_latency_us": None, "remeasured_within_budget": None,
        "best_eval_accuracy": None, "best_eval_accuracy_ci95": None, "best_candidate": None,
        "cpu": host_cpu().model, "load_average": [round(v, 2) for v in load_before]}
    if best is not None:
        model = result.best_dir / "model.tflite"
        measurement = best["host_measurement"]
        again = remeasure(model, measurement["num_threads"], measurement["op_resolver"])
        accuracy, interval, n = eval_accuracy(model, best["candidate"]["resolution"], quick)
        summary.update(
            best_latency_us=round(best["latency_us"], 1), best_size_bytes=best["size_bytes"],
            best_accuracy=round(best["accuracy"], 4), remeasured_latency_us=round(again, 1),
            remeasured_within_budget=again <= LATENCY_BUDGET_US
            and best["size_bytes"] <= SIZE_BUDGET_BYTES,
            best_eval_accuracy=round(accuracy, 4),
            best_eval_accuracy_ci95=[round(v, 4) for v in interval],
            best_candidate=best["candidate"], eval_images=n)
    if (search_dir / "pareto.png").is_file():
        atomic_write_bytes(Path(output_dir) / "nas_pareto.png",
                           (search_dir / "pareto.png").read_bytes())
    trials_table = {"title": "Every trial", "columns": [
        "trial", "architecture", "width", "depth", "kernel", "resolution", "precision",
        "sparsity", "clusters", "outcome", "accuracy", "latency_us", "size_bytes", "seconds"],
        "rows": [[r["trial_id"], r["candidate"]["architecture"], r["candidate"]["width"],
                  r["candidate"]["depth"], r["candidate"]["kernel_size"],
                  r["candidate"]["resolution"], r["candidate"]["precision"],
                  r["candidate"]["sparsity"], r["candidate"]["clusters"],
                  f"same as trial {r['duplicate_of']}" if r.get("duplicate_of") else
                  ("within budget" if r["within_budget"] else "over budget") if r["trained"]
                  else f"rejected before training ({r['rejected_at']})",
                  None if r["accuracy"] is None else round(r["accuracy"], 4),
                  None if r["latency_us"] is None else round(r["latency_us"], 1),
                  r["size_bytes"] if r["trained"] else r["weight_bytes_lower_bound"],
                  round(r["seconds"], 1)] for r in result.records]}
    return {"summary": summary, "tables": [pareto_table(result.records), trials_table],
            "details": {"config": config.to_dict(), "records": list(result.records),
                        "notes": ["size_bytes of a rejected trial is its weights' lower bound",
                                  "accuracy: the .tflite on the 360-image validation split; "
                                  "best_eval_accuracy: on the augmented eval set"]}}

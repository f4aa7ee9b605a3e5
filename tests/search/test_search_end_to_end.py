"""A 2-trial search end to end: Pareto table and plot, the best model under budget, resume."""

import csv
import json

import numpy as np
import pytest

from tflite_opt.search import Budgets, SearchConfig, SearchSpace, run_search

# Two candidates at 8x8, one epoch: width 0.25 (48 KB of float32 kernels) trains; width 1.0
# (over 500 KB of kernels) breaks the 200 KB budget on its weights and is never trained.
TINY = SearchSpace(architectures=("mobilenet_v2_like",), widths=(0.25, 1.0), depths=(0.5,),
                   kernel_sizes=(3,), resolutions=(8,), precisions=("float32",),
                   sparsities=(0.0,), clusters=(0,))


def test_two_trial_search_writes_pareto_and_a_best_model_within_budget(tmp_path):
    from tflite_opt.runtime import benchmark

    budgets = Budgets(latency_us=1e6, size_bytes=200_000)
    config = SearchConfig(str(tmp_path), budgets, TINY, trials=2, oracle="random", epochs=1,
                          benchmark_runs=5, validation_copies=2, verbose=0,
                          retrain_final=False)  # test_retrain_final covers the retrain
    result = run_search(config)

    by_width = {r["candidate"]["width"]: r for r in result.records}
    assert len(result.records) == 2 and set(by_width) == {0.25, 1.0}
    wide, small = by_width[1.0], by_width[0.25]
    assert not wide["trained"] and wide["rejected_at"] == "size" and wide["score"] < 0
    assert small["trained"] and 0.0 <= small["accuracy"] <= 1.0 and small["latency_us"] > 0
    assert small["score"] == pytest.approx(small["accuracy"])  # within budget
    # Timed against the search's reference; measured again only within the margin.
    check = small["latency_check"]
    assert (tmp_path / ".tuner" / "reference.tflite").is_file()
    first = check["candidate_medians_us"][0]
    assert check["remeasured"] == (abs(first - budgets.latency_us) <= check["margin_us"])
    assert len(check["reference_medians_us"]) == len(check["candidate_medians_us"])
    assert small["latency_us"] == pytest.approx(np.median(check["candidate_medians_us"]))
    recipe = json.loads((tmp_path / "best" / "recipe.json").read_text())
    assert recipe["training"]["augmentation"] is not None  # trained as train_from_scratch does
    with open(tmp_path / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial"], r["pareto"]) for r in rows] == [(small["trial_id"], "True")]
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "pareto.md").read_text().startswith("| trial |")

    best = tmp_path / "best"
    for name in ("model.tflite", "model.json", "labels.txt", "recipe.json", "report.json",
                 "report.md"):
        assert (best / name).is_file(), name
    report = json.loads((best / "report.json").read_text())
    assert report["trial"] == small["trial_id"] and report["accuracy"] == small["accuracy"]
    assert report["size_bytes"] == (best / "model.tflite").stat().st_size <= budgets.size_bytes
    again = benchmark(best / "model.tflite", num_runs=5)  # measured again, independently
    assert again.median_us <= budgets.latency_us

    resumed = run_search(config)  # KerasTuner reloads its project: nothing is trained again
    assert [r["trial_id"] for r in resumed.records] == [r["trial_id"] for r in result.records]
    assert resumed.best["trial_id"] == result.best["trial_id"]

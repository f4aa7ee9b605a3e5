"""A 2-trial search end to end: Pareto table and plot, the best model under budget, resume."""

import csv
import json

import pytest

from tflite_opt.search import Budgets, SearchConfig, SearchSpace, run_search

# Two tiny candidates (kernel 3 or 5), 8x8 inputs, one epoch: the smallest real search.
TINY = SearchSpace(architectures=("mobilenet_v2_like",), widths=(0.25,), depths=(0.5,),
                   kernel_sizes=(3, 5), resolutions=(8,), precisions=("float32",),
                   sparsities=(0.0,), clusters=(0,))


def test_two_trial_search_writes_pareto_and_a_best_model_within_budget(tmp_path):
    from tflite_opt.runtime import benchmark

    budgets = Budgets(latency_us=1e6, size_bytes=1_000_000)
    config = SearchConfig(str(tmp_path), budgets, TINY, trials=2, oracle="random", epochs=1,
                          benchmark_runs=5, verbose=0)
    result = run_search(config)

    assert len(result.records) == 2 and all(r["trained"] for r in result.records)
    assert {r["candidate"]["kernel_size"] for r in result.records} == {3, 5}
    for record in result.records:
        assert 0.0 <= record["accuracy"] <= 1.0 and record["latency_us"] > 0
        assert record["score"] == pytest.approx(record["accuracy"])  # within budget
    with open(tmp_path / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and any(r["pareto"] == "True" for r in rows)
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "pareto.md").read_text().startswith("| trial |")

    best = tmp_path / "best"
    for name in ("model.tflite", "model.json", "labels.txt", "recipe.json", "report.json",
                 "report.md"):
        assert (best / name).is_file(), name
    report = json.loads((best / "report.json").read_text())
    assert report["accuracy"] == max(r["accuracy"] for r in result.records)
    assert report["size_bytes"] == (best / "model.tflite").stat().st_size <= budgets.size_bytes
    again = benchmark(best / "model.tflite", num_runs=5)  # measured again, independently
    assert again.median_us <= budgets.latency_us

    resumed = run_search(config)  # KerasTuner reloads its project: nothing is trained again
    assert [r["trial_id"] for r in resumed.records] == [r["trial_id"] for r in result.records]
    assert resumed.best["trial_id"] == result.best["trial_id"]

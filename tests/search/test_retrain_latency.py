"""The retrained file's latency verdict near the budget (re-timed side by side with the trial's
file, decided on the median ratio) and the report when the trial's file ships instead
(test_retrain_final runs the retrain itself, interrupted, redone and reused).

The side-by-side timings are fabricated (``time_side_by_side``): these tests check the rule,
never this CPU's speed."""

import json
from pathlib import Path

import pytest

import tflite_opt.search.latency_check as latency_check
import tflite_opt.search.tuner as tuner
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.search import Budgets, SearchConfig, check_latency_against, final_verdict
from tflite_opt.search.latency_check import Timed


def _fake_timings(monkeypatch, pairs):
    """``time_side_by_side`` answering (model, baseline) medians from ``pairs`` in turn, each
    with a 5% run-to-run spread; returns the list of calls made."""
    calls = []
    answers = iter(pairs)

    def fake(model, baseline, num_runs, num_threads, op_resolver):
        calls.append((str(model), str(baseline), num_runs, num_threads, op_resolver))
        model_us, baseline_us = next(answers)
        return Timed(model_us, 0.05), Timed(baseline_us, 0.05)

    monkeypatch.setattr(latency_check, "time_side_by_side", fake)
    return calls


def test_a_ratio_just_over_the_budget_within_the_margin_is_decided_on_the_median_ratio(
        monkeypatch):
    # Trial decided at 46 us, budget 50 us: a first ratio of 1.10 gives 50.6 us, over the
    # budget by 0.6 us, within the margin 50 x 0.05 = 2.5 us (the files' spread): timed twice
    # more.
    calls = _fake_timings(monkeypatch, [(11.0, 10.0), (9.8, 10.0), (9.9, 10.0)])
    check = check_latency_against("final.tflite", "trial.tflite", 46.0, budget_us=50.0,
                                  baseline_noise=0.01, num_runs=7, repeats=2, num_threads=1,
                                  op_resolver="no_xnnpack")
    assert len(calls) == 3
    assert calls[0] == ("final.tflite", "trial.tflite", 7, 1, "no_xnnpack")
    assert check.remeasured
    assert check.ratios == pytest.approx((1.10, 0.98, 0.99))
    assert check.ratio == pytest.approx(0.99)
    assert check.latency_us == pytest.approx(46.0 * 0.99)  # 45.5 us: within the budget
    assert check.margin_us == pytest.approx(2.5) and check.noise == pytest.approx(0.05)
    assert check.noise_source in ("model_iqr", "baseline_iqr")
    assert check.noises["baseline_decision"] == pytest.approx(0.01)
    record = json.loads(json.dumps(check.to_dict()))  # as final_record.json keeps it
    assert record["medians_us"] == [11.0, 9.8, 9.9] and record["baseline_medians_us"] == [10] * 3


def test_the_trials_own_noise_widens_the_margin_when_it_is_the_larger(monkeypatch):
    # 46 x 1.2 = 55.2 us: 5.2 us over, beyond the files' 2.5 us margin but within the trial's
    # own (50 x 0.2 = 10 us), so the verdict is at least as cautious as the trial's.
    calls = _fake_timings(monkeypatch, [(12.0, 10.0), (9.0, 10.0), (9.5, 10.0)])
    check = check_latency_against("final.tflite", "trial.tflite", 46.0, budget_us=50.0,
                                  baseline_noise=0.2, repeats=2)
    assert len(calls) == 3 and check.remeasured
    assert (check.noise_source, check.margin_us) == ("baseline_decision", pytest.approx(10.0))
    assert check.latency_us == pytest.approx(46.0 * 0.95)


def test_a_ratio_far_over_the_budget_fails_on_one_measurement(monkeypatch):
    # 46 x 1.5 = 69 us: 19 us over, beyond the 2.5 us margin; no repeat can rescue it.
    calls = _fake_timings(monkeypatch, [(15.0, 10.0)])
    check = check_latency_against("final.tflite", "trial.tflite", 46.0, budget_us=50.0,
                                  repeats=5)
    assert len(calls) == 1 and not check.remeasured
    assert check.latency_us == pytest.approx(69.0)
    assert check.latency_us > 50.0 + check.margin_us  # over the budget: the file fails


def test_latency_repeats_zero_times_the_pair_once_even_within_the_margin(monkeypatch):
    calls = _fake_timings(monkeypatch, [(11.0, 10.0)])
    check = check_latency_against("final.tflite", "trial.tflite", 46.0, budget_us=50.0,
                                  repeats=0)
    assert len(calls) == 1 and not check.remeasured and check.ratios == pytest.approx((1.1,))
    assert abs(check.latency_us - 50.0) <= check.margin_us  # within it, yet measured once
    with pytest.raises(InvalidArgumentError, match="latency_repeats"):
        check_latency_against("final.tflite", "trial.tflite", 46.0, budget_us=50.0, repeats=-1)


def test_the_retrain_is_decided_with_the_searchs_rounds_repeats_and_the_trials_configuration(
        tmp_path, monkeypatch):
    config = SearchConfig(str(tmp_path), Budgets(latency_us=50.0), latency_repeats=3,
                          benchmark_runs=7)
    best = {"latency_us": 46.0, "latency_check": {"noise": 0.01},
            "host_measurement": {"num_threads": 1, "op_resolver": "no_xnnpack"}}
    trial, final = Path("trial.tflite"), Path("final.tflite")
    # Far over (69 us, beyond the 2.5 us margin): fails on one measurement.
    calls = _fake_timings(monkeypatch, [(15.0, 10.0)])
    record = {"size_bytes": 100}
    tuner._latency_against_trial(best, trial, final, config, record)
    assert calls == [("final.tflite", "trial.tflite", 7, 1, "no_xnnpack")]
    assert not record["within_budget"] and record["violations"] == ["latency 69 us > 50 us"]
    # Just over (50.6 us): timed latency_repeats = 3 more times, median ratio 0.995: within.
    calls = _fake_timings(monkeypatch, [(11.0, 10.0), (9.8, 10.0), (9.9, 10.0), (10.0, 10.0)])
    record = {"size_bytes": 100}
    tuner._latency_against_trial(best, trial, final, config, record)
    side = record["latency_vs_trial"]
    assert len(calls) == 4 and side["remeasured"] and side["ratio"] == pytest.approx(0.995)
    assert record["within_budget"] and record["latency_us"] == pytest.approx(46.0 * 0.995)


def test_an_over_budget_retrain_ships_the_trials_file_and_the_report_says_why(tmp_path,
                                                                                monkeypatch):
    # Re-timed within the margin and still over: 46 x median(1.10, 1.12, 1.08) = 50.6 us.
    _fake_timings(monkeypatch, [(11.0, 10.0), (11.2, 10.0), (10.8, 10.0)])
    check = check_latency_against("final.tflite", "trial.tflite", 46.0, budget_us=50.0,
                                  baseline_noise=0.2, num_runs=50, repeats=2)
    budgets = Budgets(latency_us=50.0, size_bytes=1000)
    config = SearchConfig(str(tmp_path), budgets, trials=1)
    candidate = {"architecture": "mobilenet_v2_like", "width": 0.25, "depth": 0.5,
                 "kernel_size": 3, "resolution": 16, "precision": "int8", "sparsity": 0.0,
                 "clusters": 0}
    best = {"trial_id": "0", "candidate": candidate, "epochs": 1, "accuracy": 0.5,
            "latency_us": 46.0, "host_latency_us": 46.0, "size_bytes": 900, "params": 1,
            "within_budget": True, "training_images": 1149, "optimizer_steps": 36}
    final = {**best, "latency_us": check.latency_us, "size_bytes": 1100,
             "within_budget": False, "latency_vs_trial": check.to_dict(),
             "table_latency_us": None, "training_images": 1437, "optimizer_steps": 45,
             "violations": budgets.violations(check.latency_us, 1100)}
    trial_dir, final_dir = tmp_path / "trial_0", tuner._final_dir(tmp_path, "0")
    for folder, data in ((trial_dir, b"the trial's file"), (final_dir, b"the retrained file")):
        folder.mkdir(parents=True)
        (folder / "model.tflite").write_bytes(data)
        (folder / "recipe.json").write_text("{}")
    tuner._write_best(best, final, trial_dir, tmp_path / "best", config, None)

    assert (tmp_path / "best" / "model.tflite").read_bytes() == b"the trial's file"
    report = json.loads((tmp_path / "best" / "report.json").read_text())
    verdict = report["shipped_because"]
    assert report["shipped"] == "search_trial" and report["final"]["verdict"] == verdict
    assert verdict == final_verdict(final, budgets)
    assert verdict.startswith("The retrained file is over budget: latency 50.6 us > the 50 us "
                              "budget by 0.6 us (1.2%): the trial's decided 46.0 us x 1.100, ")
    assert "timed side by side 3 times (50 interleaved rounds each; re-timed because the first " \
           "ratio, 1.100, gave 50.6 us, within the 10.0 us noise margin" in verdict
    assert "the noise the trial's own latency decision used, 20.0%" in verdict
    assert "size 1100 B > the 1000 B budget by 100 B (10.0%): the file as written" in verdict
    assert verdict.endswith("The trial's own file (trained on the search's training split, not "
                            "all 1437 images) is shipped as model.tflite instead.")
    markdown = (tmp_path / "best" / "report.md").read_text()
    assert "Shipped as model.tflite: the trial's file, NOT the retrained one." in markdown
    assert verdict in markdown
    assert final_verdict({**final, "within_budget": True}, budgets).startswith(
        "The retrained file meets every budget")

"""The retrained file's latency verdict near the budget (re-timed side by side with the trial's
file, decided on the median ratio), the report when the trial's file ships instead, and an
interrupted retrain resumed.

The decision tests fabricate the side-by-side timings (``time_side_by_side``): they check the
rule, never this CPU's speed."""

import hashlib
import json
from pathlib import Path

import pytest

import tflite_opt.search.latency_check as latency_check
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.search import (Budgets, SearchConfig, SearchSpace, check_latency_against,
                               final_verdict, run_search)
from tflite_opt.search.latency_check import REFERENCE_FILE, Timed
from tflite_opt.search.tuner import FINAL_RECORD

DATA = Path(__file__).parent / "data"

# One candidate at 8x8 (as test_retrain_final): the resume test trains it four times, 1 epoch.
ONE = SearchSpace(architectures=("mobilenet_v2_like",), widths=(0.25,), depths=(0.5,),
                  kernel_sizes=(3,), resolutions=(8,), precisions=("float32",),
                  sparsities=(0.0,), clusters=(0,))


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


def test_the_verdict_on_an_over_budget_retrain_says_which_budget_by_how_much_and_how(
        monkeypatch):
    # Re-timed within the margin and still over: 46 x median(1.10, 1.12, 1.08) = 50.6 us.
    _fake_timings(monkeypatch, [(11.0, 10.0), (11.2, 10.0), (10.8, 10.0)])
    check = check_latency_against("final.tflite", "trial.tflite", 46.0, budget_us=50.0,
                                  baseline_noise=0.2, num_runs=50, repeats=2)
    budgets = Budgets(latency_us=50.0, size_bytes=1000)
    final = {"within_budget": False, "latency_us": check.latency_us, "size_bytes": 1100,
             "latency_vs_trial": check.to_dict(), "table_latency_us": None,
             "training_images": 1437}
    verdict = final_verdict(final, budgets)
    assert verdict.startswith("The retrained file is over budget: latency 50.6 us > the 50 us "
                              "budget by 0.6 us (1.2%): the trial's decided 46.0 us x 1.100, ")
    assert "timed side by side 3 times (50 interleaved rounds each; re-timed because the first " \
           "ratio, 1.100, gave 50.6 us, within the 10.0 us noise margin" in verdict
    assert "the noise the trial's own latency decision used, 20.0%" in verdict
    assert "size 1100 B > the 1000 B budget by 100 B (10.0%): the file as written" in verdict
    assert final_verdict({**final, "within_budget": True}, budgets).startswith(
        "The retrained file meets every budget")


class _Interrupted(KeyboardInterrupt):
    pass


def test_an_interrupted_retrain_is_redone_a_finished_one_reused_and_an_over_budget_one_reported(
        tmp_path, monkeypatch):
    import shutil

    from tflite_opt._keras import keras_of_flavor

    model_class = keras_of_flavor("tf_keras").Model
    real_fit, fits = model_class.fit, []

    def counted_fit(self, *args, **kwargs):
        fits.append(1)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "fit", counted_fit)
    # Any fixed .tflite serves as the search's reference; a prebuilt one saves a conversion.
    (tmp_path / ".tuner").mkdir()
    shutil.copy(DATA / "wider_int8.tflite", tmp_path / ".tuner" / REFERENCE_FILE)
    budgets = Budgets(latency_us=1e6, size_bytes=200_000)
    config = SearchConfig(str(tmp_path), budgets, ONE, trials=1, oracle="random", epochs=1,
                          augmentation=False, validation_copies=1, latency_repeats=2,
                          benchmark_runs=5, verbose=0)

    # 1. The trial, then its retrain, interrupted in the conversion of the retrained model.
    import tflite_opt.convert as convert_module
    import tflite_opt.search.tuner as tuner

    real_convert, real_retrain, retraining = convert_module.convert, tuner.retrain_final, []

    def convert_unless_retraining(*args, **kwargs):
        if retraining:
            raise _Interrupted
        return real_convert(*args, **kwargs)

    def retrain_final(*args, **kwargs):
        retraining.append(1)
        return real_retrain(*args, **kwargs)

    monkeypatch.setattr(convert_module, "convert", convert_unless_retraining)
    monkeypatch.setattr(tuner, "retrain_final", retrain_final)
    with pytest.raises(_Interrupted):
        run_search(config)
    monkeypatch.setattr(convert_module, "convert", real_convert)
    monkeypatch.setattr(tuner, "retrain_final", real_retrain)
    trial_dir = next((tmp_path / ".tuner" / "search").glob("trial_*"))
    final_dir = tmp_path / ".tuner" / f"final_{trial_dir.name}"
    assert len(fits) == 2 and retraining  # the trial's training, then the retrain's
    assert not (final_dir / FINAL_RECORD).exists() and not (final_dir / "model.tflite").exists()
    # What an interruption after the file is written leaves (the file is saved atomically, the
    # record last): a model.tflite with no record. It must not be reused.
    final_dir.mkdir(exist_ok=True)
    (final_dir / "model.tflite").write_bytes(b"a stale file of an interrupted retrain")

    # 2. Rerun: the retrain is done again; the pair times 1e9x apart, far over the budget on
    # the first ratio (no repeat), so the trial's file ships and the report says why.
    calls = _fake_timings(monkeypatch, [(1e9, 1.0)])
    result = run_search(config)
    assert len(fits) == 3 and len(calls) == 1
    final, best = result.final, result.best
    retrained = (final_dir / "model.tflite").read_bytes()
    assert retrained[4:8] == b"TFL3" and final["sha256"] == hashlib.sha256(retrained).hexdigest()
    assert not final["within_budget"]
    assert final["latency_us"] == pytest.approx(best["latency_us"] * 1e9)
    side = final["latency_vs_trial"]
    assert side["ratios"] == [1e9] and not side["remeasured"]
    assert side["baseline_latency_us"] == best["latency_us"]
    assert side["noises"]["baseline_decision"] == best["latency_check"]["noise"]
    shipped = tmp_path / "best"
    assert trial_dir.name == f"trial_{best['trial_id']}"
    assert (shipped / "model.tflite").read_bytes() == (trial_dir / "model.tflite").read_bytes()
    report = json.loads((shipped / "report.json").read_text())
    verdict = report["shipped_because"]
    assert report["shipped"] == "search_trial" and verdict == report["final"]["verdict"]
    over = final["latency_us"] - budgets.latency_us
    assert verdict.startswith("The retrained file is over budget: latency ")
    assert f"the 1000000 us budget by {over:.1f} us" in verdict
    assert "the two files timed side by side once (5 interleaved rounds;" in verdict
    assert "beyond the" in verdict and "not re-timed" in verdict
    assert "The trial's own file" in verdict
    markdown = (shipped / "report.md").read_text()
    assert verdict in markdown and "the trial's file, NOT the retrained one" in markdown

    # 3. Rerun again: the finished retrain is reused, neither trained nor timed.
    calls = _fake_timings(monkeypatch, [])
    resumed = run_search(config)
    assert len(fits) == 3 and calls == [] and resumed.final == final

"""How candidates are trained and scored (augmented, on held-out training images) and how the
latency budget is decided near its edge (re-measured against the reference, median)."""

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.search import Budgets, Candidate, SearchConfig, evaluate_candidate, run_search
from tflite_opt.search.latency_check import check_latency, reference_spread
from tflite_opt.search.tuner import search_data

DATA = Path(__file__).parent / "data"
CANDIDATE = DATA / "profiled_int8.tflite"
REFERENCE = DATA / "wider_int8.tflite"


def test_validation_split_is_augmented_held_out_training_images_never_the_test_split(tmp_path):
    from tflite_opt.data.digits import load_digits

    config = SearchConfig(str(tmp_path), validation_copies=3)
    full = load_digits(image_size=8)
    split = search_data(config, 8)
    held_out = len(full.x_train) - len(split.x_train)
    assert held_out == math.ceil(0.2 * len(full.x_train))  # 288 of the 1,437 (as sklearn)
    assert len(split.x_test) == 3 * held_out
    originals = split.x_test[::3]  # the first copy of each held-out image is the image itself
    train_rows = {row.tobytes() for row in full.x_train}
    assert all(image.tobytes() in train_rows for image in originals)
    test_rows = {row.tobytes() for row in full.x_test}
    assert not any(image.tobytes() in test_rows for image in originals)
    assert not np.array_equal(split.x_test[1::3], originals)  # the other copies are changed


class _Stop(Exception):
    pass


@pytest.mark.parametrize("augmentation", [True, False])
def test_candidates_train_through_train_from_scratch_with_augmentation_as_configured(
        tmp_path, monkeypatch, augmentation):
    import tflite_opt.models.training as training
    from tflite_opt.data.augment import Augmentation

    seen = {}

    def spy(model, data, **kwargs):
        seen.update(kwargs, n=len(data.x_train))
        raise _Stop

    monkeypatch.setattr(training, "train_from_scratch", spy)
    config = SearchConfig(str(tmp_path), augmentation=augmentation, learning_rate=5e-3,
                          validation_copies=2)
    data = search_data(config, 8)
    with pytest.raises(_Stop):
        evaluate_candidate(Candidate("mobilenet_v2_like", 0.25, 0.5, 3, 8, "float32"), data,
                           config, None, tmp_path / "trial", epochs=2)
    assert seen["augmentation"] == (Augmentation() if augmentation else None)
    assert (seen["epochs"], seen["learning_rate"], seen["n"]) == (2, 5e-3, len(data.x_train))


@pytest.mark.parametrize("change", [{"augmentation": False}, {"learning_rate": 1e-3},
                                    {"validation_copies": 3}, {"latency_repeats": 0}])
def test_resuming_with_another_training_or_measuring_setting_is_refused_naming_it(tmp_path,
                                                                                  change):
    first = SearchConfig(str(tmp_path), Budgets(latency_us=100.0), trials=2)
    (tmp_path / "search.json").write_text(json.dumps({"config": first.to_dict()}))
    with pytest.raises(InvalidArgumentError, match=next(iter(change))):
        run_search(SearchConfig(str(tmp_path), Budgets(latency_us=100.0), trials=2, **change))


def test_a_search_saved_before_augmentation_existed_is_not_resumed(tmp_path):
    old = SearchConfig(str(tmp_path), trials=2).to_dict()
    for key in ("augmentation", "learning_rate", "validation_fraction", "validation_copies",
                "latency_repeats"):
        del old[key]
    (tmp_path / "search.json").write_text(json.dumps({"config": old}))
    with pytest.raises(InvalidArgumentError, match="augmentation"):
        run_search(SearchConfig(str(tmp_path), trials=2))


def test_reference_spread_is_range_over_median():
    assert reference_spread([20.0, 25.0, 30.0]) == pytest.approx(10.0 / 25.0)
    assert reference_spread([20.0]) == 0.0


def test_far_from_the_budget_one_measurement_decides():
    check = check_latency(CANDIDATE, budget_us=1e9, reference=REFERENCE, num_runs=20,
                          repeats=3)
    assert not check.remeasured and len(check.candidate_medians_us) == 1
    assert check.latency_us == check.first.median_us == check.candidate_medians_us[0]
    assert len(check.reference_medians_us) == 1  # the reference ran in the same rounds
    assert check.ratios[0] == pytest.approx(check.candidate_medians_us[0] /
                                            check.reference_medians_us[0])
    assert check.margin_us == pytest.approx(1e9 * check.noise) and check.noise >= 0


def test_within_the_measured_spread_of_the_budget_the_median_of_repeats_decides():
    # Earlier reference medians 0.001 and 1e6 us: with this measurement's (r) in between, the
    # spread is about 1e6 / r, a margin of about 1e6 / r us at a 1 us budget, far above any
    # first figure of this tiny model (which runs in about r us).
    history = (0.001, 1e6)
    check = check_latency(CANDIDATE, budget_us=1.0, reference=REFERENCE,
                          reference_history_us=history, num_runs=5, repeats=4)
    assert check.remeasured and check.noise_source == "reference_spread"
    assert check.noise == pytest.approx(reference_spread([*history,
                                                          check.reference_medians_us[0]]))
    assert len(check.candidate_medians_us) == len(check.reference_medians_us) == 5
    assert check.latency_us == pytest.approx(statistics.median(check.candidate_medians_us))
    assert check.spread_us == pytest.approx(max(check.candidate_medians_us) -
                                            min(check.candidate_medians_us))
    record = check.to_dict()
    assert record["remeasured"] and len(record["ratios"]) == 5 and "spread_us" in record
    with pytest.raises(InvalidArgumentError, match="latency_repeats"):
        check_latency(CANDIDATE, budget_us=1.0, repeats=-1)

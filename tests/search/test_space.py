"""The search space as KerasTuner hyperparameters, and the three oracles built over it."""

import pytest

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.search import ORACLES, Candidate, SearchConfig, SearchSpace, make_oracle


def test_space_becomes_one_hyperparameter_per_candidate_field():
    space = SearchSpace(widths=(0.25, 0.5), resolutions=(16,), precisions=("int8",))
    hp = space.hyperparameters()
    assert set(hp.values) == {"architecture", "width", "depth", "kernel_size", "resolution",
                              "precision", "sparsity", "clusters"}
    assert hp.values["resolution"] == 16 and hp.values["precision"] == "int8"  # Fixed
    assert Candidate.from_values({**hp.values, "tuner/epochs": 3}).resolution == 16
    assert space.size() == 3 * 2 * 2 * 2 * 1 * 1 * 3 * 2


@pytest.mark.parametrize("field, value", [("widths", (0.0,)), ("kernel_sizes", (4,)),
                                          ("precisions", ("int4",)), ("sparsities", (1.0,)),
                                          ("clusters", (1,)), ("architectures", ("vgg",)),
                                          ("resolutions", ())])
def test_space_rejects_a_bad_choice_naming_the_field(field, value):
    with pytest.raises(InvalidArgumentError, match=field):
        SearchSpace(**{field: value})


@pytest.mark.parametrize("name", ORACLES)
def test_every_oracle_maximizes_the_score_and_stops_at_the_trial_count(tmp_path, name):
    oracle = make_oracle(SearchConfig(str(tmp_path), trials=7, oracle=name, epochs=9))
    assert oracle.objective.name == "score" and oracle.objective.direction == "max"
    assert oracle.max_trials == 7
    assert set(oracle.hyperparameters.values) >= {"architecture", "width", "clusters"}


def test_config_rejects_an_unknown_oracle(tmp_path):
    with pytest.raises(InvalidArgumentError, match="--oracle"):
        SearchConfig(str(tmp_path), oracle="grid")


def test_resuming_a_search_with_other_budgets_is_refused(tmp_path):
    import json

    from tflite_opt.search import Budgets, run_search

    first = SearchConfig(str(tmp_path), Budgets(latency_us=100.0), trials=2)
    (tmp_path / "search.json").write_text(json.dumps({"config": first.to_dict()}))
    with pytest.raises(InvalidArgumentError, match="budgets"):
        run_search(SearchConfig(str(tmp_path), Budgets(latency_us=200.0), trials=2))


def test_a_candidate_proposed_again_reuses_the_earlier_record(tmp_path):
    import json

    from tflite_opt.search.tuner import _earlier_record

    candidate = Candidate("shufflenet_v2_like", 0.5, 0.5, 5, 16, "int8")
    for trial_id, extra in (("00", {}), ("01", {"duplicate_of": "00"})):
        (tmp_path / f"trial_{trial_id}").mkdir()
        (tmp_path / f"trial_{trial_id}" / "record.json").write_text(json.dumps(
            {"candidate": candidate.to_dict(), "epochs": 3, "trial_id": trial_id, **extra}))
    assert _earlier_record(tmp_path, candidate, 3)["trial_id"] == "00"
    assert _earlier_record(tmp_path, candidate, 5) is None  # other epochs: trained again
    other = Candidate("shufflenet_v2_like", 0.25, 0.5, 5, 16, "int8")
    assert _earlier_record(tmp_path, other, 3) is None

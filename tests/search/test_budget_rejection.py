"""Budgets: the scalar objective, and candidates rejected before they are trained."""

from pathlib import Path

import pytest

from tflite_opt.search import Budgets, Candidate, SearchConfig, evaluate_candidate
from tflite_opt.search.latency_table import LatencyTable
from tflite_opt.search.space import weight_bytes_lower_bound

DATA = Path(__file__).parent / "data"


def test_score_ranks_every_candidate_within_budget_above_every_one_over_it():
    budgets = Budgets(latency_us=1000, size_bytes=10_000)
    assert budgets.score(0.42, 999, 10_000) == pytest.approx(0.42)
    # 50% over the latency budget: accuracy - 1 - 0.5
    assert budgets.score(0.99, 1500, 5_000) == pytest.approx(0.99 - 1.5)
    assert budgets.score(0.0, 1000, 10_000) > budgets.score(1.0, 1001, 10_000)
    assert budgets.violations(1500, 20_000) == ["latency 1500 us > 1000 us",
                                                "size 20000 B > 10000 B"]


def test_weight_bound_counts_kernels_times_bytes_per_weight():
    int8 = Candidate("mobilenet_v2_like", 0.25, 0.5, 3, 8, "int8")
    model = int8.build()
    kernels = sum(int(layer.weights[0].shape.num_elements()) for layer in model.layers
                  if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense"))
    assert weight_bytes_lower_bound(model, int8) == kernels
    float32 = Candidate("mobilenet_v2_like", 0.25, 0.5, 3, 8, "float32")
    assert weight_bytes_lower_bound(model, float32) == 4 * kernels
    pruned = Candidate("mobilenet_v2_like", 0.25, 0.5, 3, 8, "float32", sparsity=0.75)
    assert weight_bytes_lower_bound(model, pruned) == int(kernels * 0.25) * 4  # sparse storage


@pytest.fixture
def no_training(monkeypatch):
    """Any fit of a tf_keras model fails the test: a rejected candidate must never train."""
    from tflite_opt._keras import keras_of_flavor

    def fit(*args, **kwargs):
        raise AssertionError("a candidate over budget was trained")

    monkeypatch.setattr(keras_of_flavor("tf_keras").Model, "fit", fit)


def test_candidate_whose_weights_exceed_the_size_budget_is_never_trained(tmp_path, no_training):
    from tflite_opt.data.digits import load_digits

    candidate = Candidate("mobilenet_v2_like", 0.25, 0.5, 3, 8, "float32")
    config = SearchConfig(str(tmp_path), Budgets(size_bytes=4_000), trials=1, epochs=1)
    record = evaluate_candidate(candidate, load_digits(image_size=8), config, None,
                                tmp_path / "trial", epochs=1)
    assert record["weight_bytes_lower_bound"] > 4_000
    assert not record["trained"] and record["rejected_at"] == "size"
    assert record["score"] < 0 and record["accuracy"] is None
    assert not (tmp_path / "trial" / "model.tflite").exists()


def test_candidate_the_latency_table_prices_over_budget_is_never_trained(tmp_path, no_training):
    from tflite_opt.data.digits import load_digits

    table = LatencyTable.from_file(DATA / "profile_builtin.txt",
                                   model=DATA / "profiled_int8.tflite")
    # The profiled architecture; float32 converts faster and has the same ops and shapes.
    candidate = Candidate("mobilenet_v2_like", 0.25, 0.5, 3, 16, "float32")
    config = SearchConfig(str(tmp_path), Budgets(latency_us=100.0), trials=1, epochs=1)
    record = evaluate_candidate(candidate, load_digits(image_size=16), config, table,
                                tmp_path / "trial", epochs=1)
    table_sum = sum(r.us_per_run for r in table.rows)  # 408 us: same graph, exact matches
    assert record["rejected_at"] == "latency_table" and not record["trained"]
    estimate = record["table_estimate_before_training"]
    assert estimate["rules"] == {"exact": len(table.rows)}
    assert estimate["total_us"] == pytest.approx(table_sum)

"""The federated job end to end (what scripts/federated.py runs), at a tiny size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.federated.job import FederatedJobConfig, run_federated_job
from tflite_opt.ondevice.runner import OnDeviceTrainer


def test_federated_job_writes_table_plot_json_and_the_global_model(tmp_path):
    config = FederatedJobConfig(output_dir=str(tmp_path / "out"), clients=3, rounds=2,
                                local_epochs=1, dirichlet_alpha=1.0, image_size=8,
                                eval_copies=1, hidden_units=16, learning_rate=0.1,
                                progress=False)
    result = run_federated_job(config)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["accuracy_per_round.md", "accuracy_per_round.png", "federated.json", "model_train.tflite"]
    assert (out / "accuracy_per_round.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "accuracy_per_round.md").read_text()
    assert table.count("\n| ") == 1 + 3  # header + rounds 0, 1, 2
    summary = json.loads((out / "federated.json").read_text())
    assert summary["flex_ops"] == 0
    assert [r["round"] for r in summary["history"]] == [0, 1, 2]
    assert summary["partition"]["sizes"] == list(result.federated.client_sizes)
    assert sum(summary["partition"]["sizes"]) == 1437
    # The shipped file holds exactly the global weights and scores what the run reported.
    shipped = OnDeviceTrainer(out / "model_train.tflite")
    for a, b in zip(shipped.get_weights(), result.federated.weights):
        assert np.array_equal(a, b)
    from tflite_opt.data.digits_eval import load_digits_eval

    data = load_digits_eval(image_size=8, copies=1)
    assert shipped.evaluate(data.x_test, data.y_test)["accuracy"] == \
        pytest.approx(result.federated.accuracy)
    # The baseline trained the same file for rounds x local_epochs epochs; the paired
    # difference is the two accuracies' difference, with its interval around it.
    assert result.centralized.epochs == 2
    d = result.difference
    assert d.difference == pytest.approx(result.federated.accuracy - result.centralized.accuracy)
    assert d.ci95_low <= d.difference <= d.ci95_high
    assert not (out / ".work" / "checkpoint.npz").exists()  # removed once the run finished


def test_federated_job_refuses_an_unknown_engine(tmp_path):
    with pytest.raises(InvalidArgumentError, match="engine"):
        FederatedJobConfig(output_dir=str(tmp_path), engine="grpc")

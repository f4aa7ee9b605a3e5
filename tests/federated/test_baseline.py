"""The pooled-data baseline follows a federated run's learning-rate decay, round for round."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.federated import baseline
from tflite_opt.federated.baseline import round_equivalent_rates, train_centralized
from tflite_opt.federated.job import FederatedJobConfig
from tflite_opt.ondevice.runner import OnDeviceTrainer


def _spy_on_rates(monkeypatch) -> list:
    """Records (step about to run, rate) for every rate the baseline sets in its file."""
    calls = []
    load = baseline.load_trainer

    def load_and_spy(tflite):
        trainer = load(tflite)
        set_rate = trainer.set_learning_rate

        def recorded(rate):
            calls.append((trainer.global_step, float(rate)))
            set_rate(rate)
        trainer.set_learning_rate = recorded
        calls.append(trainer)
        return trainer

    monkeypatch.setattr(baseline, "load_trainer", load_and_spy)
    return calls


def test_train_centralized_with_decay_sets_the_jobs_round_rates_per_round_equivalent_epochs(
        tiny_run, tmp_path, monkeypatch):
    job = FederatedJobConfig(output_dir=str(tmp_path), rounds=3, local_epochs=2,
                             learning_rate=0.1, learning_rate_decay=0.5)
    rounds = job.fedavg_config()
    x, y = tiny_run.x_train[:100], tiny_run.y_train[:100]  # 4 steps an epoch at batch 32
    calls = _spy_on_rates(monkeypatch)
    # eval_every=4 splits the 6 epochs across two fit calls in the middle of round 2.
    result = train_centralized(tiny_run.tflite, x, y, tiny_run.x_test, tiny_run.y_test,
                               epochs=job.rounds * job.local_epochs, seed=0, eval_every=4,
                               learning_rate=rounds.learning_rate,
                               learning_rate_decay=job.learning_rate_decay,
                               epochs_per_round=job.local_epochs)
    expected = [rounds.round_learning_rate(r) for r in (1, 1, 2, 2, 3, 3)]
    assert expected == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    assert list(result.learning_rates) == expected
    trainer, steps = calls[0], calls[1:]
    # The file got a rate before each of the 6 x 4 steps, the epoch's own, in step order.
    assert steps == [(step, expected[step // 4]) for step in range(24)]
    assert trainer.learning_rate == np.float32(0.025)  # read back from the file
    assert [epochs for epochs, _ in result.curve] == [4, 6]
    assert result.to_dict()["learning_rates"] == expected


def test_train_centralized_without_decay_is_the_plain_fit_bit_for_bit(tiny_run):
    x, y = tiny_run.x_train[:200], tiny_run.y_train[:200]
    result = train_centralized(tiny_run.tflite, x, y, tiny_run.x_test, tiny_run.y_test,
                               epochs=3, seed=7, learning_rate=None, learning_rate_decay=1.0,
                               epochs_per_round=2)
    # What the baseline did before it knew about decays: one fit at the file's rate.
    reference = OnDeviceTrainer(tiny_run.tflite)
    losses = reference.fit(x, y, epochs=3, batch_size=32, seed=7)
    correct = np.argmax(reference.infer(tiny_run.x_test), axis=-1) == tiny_run.y_test
    assert result.epoch_losses == tuple(losses)
    assert np.array_equal(result.correct, correct.astype(np.int8))
    assert result.learning_rates == ()
    assert "learning_rates" not in result.to_dict()


def test_round_equivalent_rates_refuses_what_a_federated_run_refuses():
    assert round_equivalent_rates(3, 1, None) == (None, None, None)
    with pytest.raises(InvalidArgumentError, match="needs learning_rate"):
        round_equivalent_rates(4, 2, None, 0.9)
    with pytest.raises(InvalidArgumentError, match="epochs_per_round"):
        round_equivalent_rates(4, 0, 0.1, 0.9)


def test_federated_job_with_decay_gives_its_baseline_the_clients_round_rates(tmp_path):
    from tflite_opt.federated.job import run_federated_job

    config = FederatedJobConfig(output_dir=str(tmp_path / "out"), clients=2, rounds=2,
                                local_epochs=2, dirichlet_alpha=1.0, image_size=8, eval_copies=1,
                                hidden_units=8, learning_rate=0.1, learning_rate_decay=0.5,
                                progress=False)
    result = run_federated_job(config)
    clients = config.fedavg_config()  # what the server sent round 1 and round 2
    assert [clients.round_learning_rate(r) for r in (1, 2)] == [0.1, 0.05]
    assert list(result.centralized.learning_rates) == [0.1, 0.1, 0.05, 0.05]
    saved = json.loads((tmp_path / "out" / "federated.json").read_text())
    assert saved["centralized"]["learning_rates"] == [0.1, 0.1, 0.05, 0.05]

"""FedAvg through the .tflite train signature: real training, exact equalities, resumption."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.errors import DataError, InvalidArgumentError
from tflite_opt.federated.fedavg import (FedAvgConfig, client_seed, drops_out, load_trainer,
                                         run_fedavg, sample_clients)


def test_one_client_full_participation_equals_local_training(tiny_run):
    # One client holding everything, every round: FedAvg's average of one update is that
    # update (x * 1.0 is exact), and each round starts from it with a fresh optimizer.
    # So R rounds of E epochs are R calls of fit(E epochs) with the round's client seed, at
    # the round's learning rate (0.2, then 0.1: not the file's exported 0.1 in round 1).
    x, y = tiny_run.x_train[:300], tiny_run.y_train[:300]
    config = FedAvgConfig(rounds=2, local_epochs=2, batch_size=16, seed=5, learning_rate=0.2,
                          learning_rate_decay=0.5)
    result = run_fedavg(tiny_run.tflite, [(x, y)], tiny_run.x_test, tiny_run.y_test, config,
                        progress=False)
    trainer = load_trainer(tiny_run.tflite)
    for round_number in (1, 2):
        trainer.set_weights(trainer.get_weights(), reset_optimizer=True)
        trainer.fit(x, y, epochs=2, batch_size=16, seed=client_seed(5, round_number, 0),
                    learning_rate=0.2 * 0.5 ** (round_number - 1))
    for fed, local in zip(result.weights, trainer.get_weights()):
        assert fed.dtype == local.dtype and np.array_equal(fed, local)
    # At the file's own rate the same rounds end elsewhere: the rate reached the clients.
    plain = run_fedavg(tiny_run.tflite, [(x, y)], tiny_run.x_test, tiny_run.y_test,
                       FedAvgConfig(rounds=2, local_epochs=2, batch_size=16, seed=5),
                       progress=False)
    assert not np.array_equal(plain.weights[0], result.weights[0])


def test_short_simulation_raises_held_out_accuracy_well_above_chance(tiny_run, three_shards):
    config = FedAvgConfig(rounds=3, local_epochs=2, batch_size=16, seed=0)
    result = run_fedavg(tiny_run.tflite, three_shards, tiny_run.x_test, tiny_run.y_test, config,
                        progress=False)
    accuracies = [r.accuracy for r in result.history]
    # Chance is 10% on 10 balanced classes; with 360 test images its 99.9% binomial upper
    # bound is 0.10 + 3.3 * sqrt(0.09 / 360) = 15.2%. A random start sits near chance and
    # three rounds of the file's own training must reach several times that.
    assert accuracies[0] < 0.3
    assert accuracies[-1] > 0.6 and accuracies[-1] > accuracies[0] + 0.4
    assert [r.round for r in result.history] == [0, 1, 2, 3]
    assert all(r.aggregated == (0, 1, 2) and r.num_samples == sum(len(y) for _, y in three_shards)
               for r in result.history[1:])
    assert result.correct.shape == tiny_run.y_test.shape
    assert result.accuracy == pytest.approx(result.correct.mean())


def test_sampling_and_stragglers_follow_the_seeded_choices(tiny_run, three_shards):
    shards = three_shards + [(tiny_run.x_train[:40], tiny_run.y_train[:40])]
    config = FedAvgConfig(rounds=4, local_epochs=1, client_fraction=0.5, dropout=0.4, seed=2)
    result = run_fedavg(tiny_run.tflite, shards, tiny_run.x_test, tiny_run.y_test, config,
                        progress=False)
    sizes = [len(y) for _, y in shards]
    for r in result.history[1:]:
        assert list(r.sampled) == sample_clients(4, 0.5, r.round, 2) and len(r.sampled) == 2
        assert list(r.dropped) == [c for c in r.sampled if drops_out(c, r.round, 2, 0.4)]
        assert r.aggregated == tuple(c for c in r.sampled if c not in r.dropped)
        assert r.num_samples == sum(sizes[c] for c in r.aggregated)
    # Over 4 rounds x 2 sampled clients, a 0.4 dropout drops someone with probability
    # 1 - 0.6**8 = 98%; for this seed it does, and a round where all drop keeps its weights.
    assert any(r.dropped for r in result.history[1:])


def test_interrupted_run_resumes_from_its_checkpoint_with_identical_weights(tiny_run, three_shards,
                                                                            tmp_path):
    config = FedAvgConfig(rounds=3, local_epochs=1, client_fraction=0.67, seed=1)
    args = (tiny_run.tflite, three_shards, tiny_run.x_test, tiny_run.y_test, config)
    whole = run_fedavg(*args, progress=False)

    def crash_after_round_1(record):
        if record.round == 1:
            raise KeyboardInterrupt

    checkpoint = tmp_path / "state.npz"
    with pytest.raises(KeyboardInterrupt):
        run_fedavg(*args, checkpoint=checkpoint, progress=False, on_round=crash_after_round_1)
    resumed = run_fedavg(*args, checkpoint=checkpoint, progress=False)
    assert resumed.resumed_from == 1
    assert resumed.state.fingerprint() == whole.state.fingerprint()
    assert [r.accuracy for r in resumed.history] == [r.accuracy for r in whole.history]
    # A checkpoint of another run (other settings) is refused, not silently mixed in.
    other = FedAvgConfig(rounds=3, local_epochs=2, client_fraction=0.67, seed=1)
    with pytest.raises(InvalidArgumentError, match="another run.*local_epochs|config"):
        run_fedavg(*args[:4], other, checkpoint=checkpoint, progress=False)


def test_run_fedavg_refuses_empty_shards_and_bad_settings(tiny_run):
    with pytest.raises(DataError, match="client 1"):
        run_fedavg(tiny_run.tflite, [(tiny_run.x_train[:5], tiny_run.y_train[:5]),
                                     (tiny_run.x_train[:0], tiny_run.y_train[:0])],
                   tiny_run.x_test, tiny_run.y_test, FedAvgConfig(rounds=1), progress=False)
    with pytest.raises(InvalidArgumentError, match="dropout"):
        FedAvgConfig(dropout=1.0)
    with pytest.raises(InvalidArgumentError, match="client_fraction"):
        FedAvgConfig(client_fraction=0.0)
    for bad in ({"learning_rate": 0.0}, {"learning_rate": float("nan")},
                {"learning_rate": True}, {"learning_rate": 0.1, "learning_rate_decay": 1.5}):
        with pytest.raises(InvalidArgumentError, match="learning_rate"):
            FedAvgConfig(**bad)
    with pytest.raises(InvalidArgumentError, match="learning_rate_decay needs learning_rate"):
        FedAvgConfig(learning_rate_decay=0.9)

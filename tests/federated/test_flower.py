"""The Flower engine (Flower's FedAvg strategy, ClientApp/ServerApp, Ray simulation) reaches the
local engine's global weights bit for bit, also when stopped after a round and resumed from its
checkpoint. Two small Flower runs on one Ray instance: Ray's start costs 6-10 s."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.federated.fedavg import FedAvgConfig, run_fedavg
from tflite_opt.federated.flower import run_flower


def test_flower_stopped_and_resumed_reaches_the_local_engines_global_weights(tiny_run,
                                                                            three_shards,
                                                                            tmp_path,
                                                                            monkeypatch):
    import ray

    # Stragglers included: with dropout 0.3 and this seed some rounds lose a client, so the
    # engines must agree on who trains, not only on the arithmetic. Flower sums the accepted
    # updates in client-id order with the same float32 formula as fedavg(), and every client
    # trains through the same file with the same seed, so the weights are byte-identical.
    # A decaying learning rate, sent by the server with each round's request, is part of it.
    config = FedAvgConfig(rounds=2, local_epochs=1, batch_size=16, dropout=0.3, seed=4,
                          learning_rate=0.2, learning_rate_decay=0.5)
    args = (tiny_run.tflite, three_shards, tiny_run.x_test, tiny_run.y_test, config)
    local = run_fedavg(*args, progress=False)
    assert any(r.dropped for r in local.history[1:])
    checkpoint = tmp_path / "state.npz"

    def stop_after_round_1(record):
        if record.round == 1:
            raise KeyboardInterrupt  # what Ctrl-C does in the server's thread

    # Flower shuts Ray down after each simulation; kept up here, the resumed run reuses it
    # (run_flower starts Ray only if none runs) and the test pays Ray's start once. The second
    # run shuts it down as usual.
    monkeypatch.setattr(ray, "shutdown", lambda *a, **k: None)
    with pytest.raises(KeyboardInterrupt):
        run_flower(*args, checkpoint=checkpoint, work_dir=tmp_path / "work", progress=False,
                   on_round=stop_after_round_1)
    monkeypatch.undo()
    assert ray.is_initialized()
    flower = run_flower(*args, checkpoint=checkpoint, work_dir=tmp_path / "work",
                        progress=False)
    if ray.is_initialized():  # run_flower did not start this Ray, so it leaves it to us
        ray.shutdown()
    assert flower.engine == "flower" and flower.resumed_from == 1
    assert [(r.sampled, r.dropped, r.aggregated, r.num_samples) for r in flower.history] == \
        [(r.sampled, r.dropped, r.aggregated, r.num_samples) for r in local.history]
    assert flower.state.fingerprint() == local.state.fingerprint()
    for a, b in zip(flower.weights, local.weights):
        assert a.tobytes() == b.tobytes()
    assert [r.accuracy for r in flower.history] == [r.accuracy for r in local.history]
    assert flower.history[-1].accuracy > flower.history[0].accuracy + 0.3  # it learned
    assert np.array_equal(flower.correct, local.correct)

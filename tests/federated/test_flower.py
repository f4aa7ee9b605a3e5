"""The Flower engine (Flower's FedAvg strategy, ClientApp/ServerApp, Ray simulation) reaches the
local engine's global weights bit for bit. One small run: Ray's start costs ~10 s."""

from __future__ import annotations

import numpy as np

from tflite_opt.federated.fedavg import FedAvgConfig, run_fedavg
from tflite_opt.federated.flower import run_flower


def test_flower_simulation_reaches_the_local_engines_global_weights(tiny_run, three_shards,
                                                                    tmp_path):
    # Stragglers included: with dropout 0.3 and this seed some rounds lose a client, so the
    # engines must agree on who trains, not only on the arithmetic. Flower sums the accepted
    # updates in client-id order with the same float32 formula as fedavg(), and every client
    # trains through the same file with the same seed, so the weights are byte-identical.
    config = FedAvgConfig(rounds=2, local_epochs=1, batch_size=16, dropout=0.3, seed=4)
    args = (tiny_run.tflite, three_shards, tiny_run.x_test, tiny_run.y_test, config)
    local = run_fedavg(*args, progress=False)
    flower = run_flower(*args, checkpoint=tmp_path / "state.npz", work_dir=tmp_path / "work",
                        progress=False)
    assert flower.engine == "flower"
    assert any(r.dropped for r in local.history[1:])
    assert [(r.sampled, r.dropped, r.aggregated, r.num_samples) for r in flower.history] == \
        [(r.sampled, r.dropped, r.aggregated, r.num_samples) for r in local.history]
    assert flower.state.fingerprint() == local.state.fingerprint()
    assert [r.accuracy for r in flower.history] == [r.accuracy for r in local.history]
    assert flower.history[-1].accuracy > flower.history[0].accuracy + 0.3  # it learned
    assert np.array_equal(flower.correct, local.correct)
    assert (tmp_path / "state.npz").exists()  # checkpointed like the local engine

"""FlowerFedAvg's reply checks, without Ray: Flower's own aggregation is fed only accepted
replies, and a bad reply never reaches the global weights."""

from __future__ import annotations

import types

import numpy as np

from tflite_opt.federated.exchange import GlobalState, specs_of
from tflite_opt.federated.fedavg import Checkpoint, FedAvgConfig


class _Reply:
    """What FlowerFedAvg reads of a reply Message: content, has_error(), metadata.src_node_id.
    (A real Message needs a running Flower task to exist.)"""

    def __init__(self, node: int, content=None, error: bool = False):
        self.content = content
        self.metadata = types.SimpleNamespace(src_node_id=node)
        self._error = error

    def has_error(self) -> bool:
        return self._error


def _content(state, client, weights, *, round_number=1, version=None, samples=10):
    from flwr.app import ConfigRecord, MetricRecord, RecordDict

    from tflite_opt.federated.flower import ARRAYS, META, METRICS, NUM_EXAMPLES, _array_record

    return RecordDict({
        ARRAYS: _array_record(weights),
        METRICS: MetricRecord({NUM_EXAMPLES: samples, "train-loss": 0.5}),
        META: ConfigRecord({"client-id": client, "round": round_number,
                            "model-version": version or state.model_version,
                            "spec-digest": state.spec_digest}),
    })


def test_flower_fedavg_averages_only_the_replies_that_pass_the_checks():
    from tflite_opt.federated.flower import _flower_fedavg_class, _ServerRun

    weights = (np.zeros((3, 2), np.float32), np.zeros(2, np.float32))
    state = GlobalState(0, "v1v1v1v1v1v1v1v1", specs_of(weights), weights)
    before = state.fingerprint()
    run = _ServerRun(FedAvgConfig(rounds=1), 6, state, [], None, None, None, Checkpoint(None),
                     {}, None, None, node_of={c: 100 + c for c in range(6)},
                     client_of={100 + c: c for c in range(6)})
    run.pending = {"sampled": [0, 1, 2, 3, 4, 5], "dropped": [], "start": 0.0}
    strategy = _flower_fedavg_class()(run)
    ones = [np.ones_like(w) for w in weights]
    threes = [3 * np.ones_like(w) for w in weights]
    nan = [np.full_like(w, np.nan) for w in weights]
    replies = [
        _Reply(104, _content(state, 4, threes, samples=30)),          # good, 30 samples
        _Reply(101, _content(state, 1, nan)),                         # NaN weights
        _Reply(102, _content(state, 2, ones, version="v0v0v0v0v0v0v0v0")),  # other model
        _Reply(103, _content(state, 0, ones)),                        # speaks for client 0
        _Reply(105, error=True),                                      # the ClientApp failed
        _Reply(100, _content(state, 0, ones, samples=10)),            # good, 10 samples
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert state.fingerprint() == before  # the old state is untouched
    assert run.pending["rejected"] == {1: "non_finite", 2: "model_version", 3: "client_id",
                                       5: "client_error"}
    assert [u.client_id for u in run.pending["accepted"]] == [0, 4]
    # Flower's FedAvg over the accepted two: (10 * 1 + 30 * 3) / 40 = 2.5.
    for w in run.state.weights:
        assert np.array_equal(w, np.full_like(w, 2.5))
    assert run.state.round == 1


def test_flower_fedavg_round_without_valid_replies_keeps_the_weights():
    from tflite_opt.federated.flower import _flower_fedavg_class, _ServerRun

    weights = (np.ones((3, 2), np.float32),)
    state = GlobalState(0, "v1v1v1v1v1v1v1v1", specs_of(weights), weights)
    run = _ServerRun(FedAvgConfig(rounds=1), 1, state, [], None, None, None, Checkpoint(None),
                     {}, None, None, node_of={0: 7}, client_of={7: 0})
    run.pending = {"sampled": [0], "dropped": [], "start": 0.0}
    arrays, metrics = _flower_fedavg_class()(run).aggregate_train(
        1, [_Reply(7, _content(state, 0, [np.zeros((2, 3), np.float32)]))])
    assert arrays is None and metrics is None
    assert run.pending["rejected"] == {0: "shape"}
    assert run.state.fingerprint() == state.fingerprint() and run.state.round == 1

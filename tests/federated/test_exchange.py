"""Client updates: every wrong update is rejected with its reason, and the global model stays
byte-identical; the bytes on the wire never unpickle and are size-checked before reading."""

from __future__ import annotations

import dataclasses
import io
import zipfile

import numpy as np
import pytest

from tflite_opt.errors import DataError, UpdateRejectedError
from tflite_opt.federated.exchange import (ClientUpdate, GlobalState, WeightSpec, spec_digest,
                                           specs_of, state_from_bytes, state_to_bytes,
                                           update_from_bytes, update_to_bytes, validate_update)
from tflite_opt.federated.fedavg import aggregate, fedavg


@pytest.fixture
def state():
    rng = np.random.default_rng(0)
    weights = (rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32))
    return GlobalState(round=3, model_version="abcd1234abcd1234",
                       specs=specs_of(weights, ["dense/kernel", "dense/bias"]), weights=weights)


def _update(state, **changes):
    good = ClientUpdate(client_id=1, round=state.round + 1, model_version=state.model_version,
                        spec_digest=state.spec_digest, num_samples=40,
                        weights=tuple(np.array(w) + 1 for w in state.weights), train_loss=0.5)
    return dataclasses.replace(good, **changes)


def _bad_updates(state):
    k, b = state.weights
    return {
        "model_version": _update(state, model_version="0000000000000000"),
        "stale_round": _update(state, round=state.round),
        "future_round": _update(state, round=state.round + 2),
        "num_samples": _update(state, num_samples=0),
        "spec_digest": _update(state, spec_digest=spec_digest(specs_of([k, b], ["a", "b"]))),
        "count": _update(state, weights=(k,)),
        "shape": _update(state, weights=(k.T.copy(), b)),
        "dtype": _update(state, weights=(k.astype(np.float64), b)),
        "non_finite": _update(state, weights=(np.where(np.eye(6, 4) > 0, np.nan, k).astype(np.float32), b)),
        "client_id": _update(state, client_id=-1),
    }


def test_validate_update_accepts_a_matching_update(state):
    validate_update(_update(state), state)


@pytest.mark.parametrize("reason", ["model_version", "stale_round", "future_round", "num_samples",
                                    "spec_digest", "count", "shape", "dtype", "non_finite",
                                    "client_id"])
def test_rejected_update_names_its_reason_and_leaves_global_byte_identical(state, reason):
    before = state.fingerprint()
    bad = _bad_updates(state)[reason]
    with pytest.raises(UpdateRejectedError) as excinfo:
        validate_update(bad, state)
    assert excinfo.value.reason == reason
    assert "client 1" in str(excinfo.value) or reason == "client_id"
    # Through the server's aggregation, beside a good update: the bad one is dropped, the old
    # state's bytes are untouched, and the new weights are the good update's alone.
    good = _update(state, client_id=2)
    new_state, accepted, rejected = aggregate(state, [bad, good])
    assert state.fingerprint() == before
    assert [u.client_id for u in accepted] == [2]
    assert rejected == {int(bad.client_id): reason}
    for new, sent in zip(new_state.weights, good.weights):
        assert np.array_equal(new, sent)
    assert new_state.round == state.round + 1


def test_round_with_only_rejected_updates_keeps_the_weights(state):
    new_state, accepted, rejected = aggregate(state, [_update(state, num_samples=-5)])
    assert accepted == [] and rejected == {1: "num_samples"}
    assert new_state.fingerprint() == state.fingerprint() and new_state.round == state.round + 1


def test_global_weights_are_read_only(state):
    with pytest.raises(ValueError):
        state.weights[0][0, 0] = 7.0


def test_fedavg_equals_hand_computed_weighted_mean():
    # Two clients, 1 and 3 samples: 0.25 * [0, 4] + 0.75 * [2, 0] = [1.5, 1.0].
    mean = fedavg([[np.float32([0, 4])], [np.float32([2, 0])]], counts=[1, 3])
    assert mean[0].dtype == np.float32 and np.array_equal(mean[0], np.float32([1.5, 1.0]))
    # Random float32 weights of 5 clients: within float32 rounding of the float64 mean.
    rng = np.random.default_rng(1)
    lists = [[rng.normal(size=(7, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
             for _ in range(5)]
    counts = [10, 1, 250, 33, 7]
    got = fedavg(lists, counts)
    for i in range(2):
        exact = sum(np.float64(c) * l[i] for c, l in zip(counts, lists)) / sum(counts)
        # Each of 5 products and 4 sums rounds once (float32, eps = 2**-24 relative), on
        # terms no larger than max|w|: 9 roundings * eps * max|w| bounds the error.
        bound = 9 * 2.0**-24 * max(np.abs(l[i]).max() for l in lists)
        assert np.max(np.abs(got[i] - exact)) <= bound


def test_update_round_trips_through_bytes(state):
    update = _update(state)
    back = update_from_bytes(update_to_bytes(update), expect=state.specs)
    assert dataclasses.replace(back, weights=()) == dataclasses.replace(update, weights=())
    for a, b in zip(back.weights, update.weights):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    validate_update(back, state)


def test_update_bytes_declaring_other_shapes_are_refused_before_reading(state):
    wrong = _update(state, weights=(np.zeros((600, 400), np.float32), state.weights[1]))
    with pytest.raises(UpdateRejectedError) as excinfo:
        update_from_bytes(update_to_bytes(wrong), expect=state.specs)
    assert excinfo.value.reason == "shape"


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_update_bytes_with_pickled_objects_are_refused(state):
    good = update_to_bytes(_update(state))
    meta = np.load(io.BytesIO(good))["meta"]
    hostile = _npz(meta=meta, w0000=np.array([{"x": 1}], dtype=object), w0001=state.weights[1])
    with pytest.raises(DataError, match="never pickled"):
        update_from_bytes(hostile)


def test_update_bytes_declaring_huge_arrays_are_refused_from_the_header(state):
    # A real header declaring 8 GiB of float32, followed by no data: refused from the
    # declared size, never allocated.
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (2**31,)})
    meta = np.load(io.BytesIO(update_to_bytes(_update(state))))["meta"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        with z.open("meta.npy", "w") as f:
            np.save(f, meta)
        z.writestr("w0000.npy", buffer.getvalue())
    with pytest.raises(DataError, match="truncated"):
        update_from_bytes(archive.getvalue())


def test_update_bytes_larger_than_the_memory_limit_are_refused_before_reading(state):
    data = update_to_bytes(_update(state))  # 6*4 + 4 float32 = 112 bytes of weights
    with pytest.raises(DataError, match="more than"):
        update_from_bytes(data, max_bytes=100)
    assert len(update_from_bytes(data, max_bytes=4096).weights) == 2


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04garbage"])
def test_update_bytes_that_are_not_an_update_raise_data_error(data):
    with pytest.raises(DataError):
        update_from_bytes(data)


def test_state_round_trips_through_checkpoint_bytes(state):
    state = dataclasses.replace(state, extra={"history": [{"round": 1}]})
    back = state_from_bytes(state_to_bytes(state))
    assert back.fingerprint() == state.fingerprint()
    assert (back.round, back.model_version, back.specs, back.extra) == \
        (state.round, state.model_version, state.specs, state.extra)
    assert back.specs[0] == WeightSpec("dense/kernel", (6, 4), "float32")

"""Dirichlet shards: every sample once, seeded, skew follows alpha, bad arguments named."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.federated.partition import dirichlet_partition


@pytest.fixture(scope="module")
def labels():
    return np.repeat(np.arange(10), 60)  # 600 samples, 60 per class


@pytest.mark.parametrize("alpha", [0.1, 1.0, 100.0])
def test_dirichlet_partition_covers_every_sample_exactly_once(labels, alpha):
    p = dirichlet_partition(labels, num_clients=7, alpha=alpha, seed=3)
    joined = np.concatenate(p.indices)
    assert np.array_equal(np.sort(joined), np.arange(labels.size))  # once each, none lost
    assert min(p.sizes) >= 1
    assert p.histograms.shape == (7, 10)
    assert np.array_equal(p.histograms.sum(axis=0), np.bincount(labels))  # per class: all of it
    for k in range(7):
        assert np.array_equal(p.histograms[k], np.bincount(labels[p.indices[k]], minlength=10))


def test_dirichlet_partition_same_seed_same_split_other_seed_differs(labels):
    a = dirichlet_partition(labels, 5, 0.5, seed=1)
    b = dirichlet_partition(labels, 5, 0.5, seed=1)
    c = dirichlet_partition(labels, 5, 0.5, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices))
    assert not all(np.array_equal(x, y) for x, y in zip(a.indices, c.indices))


def test_dirichlet_partition_small_alpha_is_more_skewed_than_large(labels):
    # Share of each client's samples in its most common class, averaged over clients and
    # seeds: IID gives ~0.1 plus sampling noise; Dirichlet(0.1) concentrates most of a
    # client's data in one or two classes.
    def top_share(alpha):
        shares = []
        for seed in range(5):
            h = dirichlet_partition(labels, 5, alpha, seed=seed).histograms
            shares += list(h.max(axis=1) / h.sum(axis=1))
        return float(np.mean(shares))

    assert top_share(0.1) > 0.4
    assert top_share(1000.0) < 0.2
    assert top_share(0.1) > top_share(1.0) > top_share(1000.0)


def test_dirichlet_partition_min_samples_is_respected(labels):
    p = dirichlet_partition(labels, 10, 0.2, seed=0, min_samples=20)
    assert min(p.sizes) >= 20 and sum(p.sizes) == labels.size


def test_dirichlet_partition_shard_returns_the_clients_rows(labels):
    x = np.arange(labels.size, dtype=np.float32)[:, None]
    p = dirichlet_partition(labels, 4, 1.0, seed=0)
    xs, ys = p.shard(2, x, labels)
    assert np.array_equal(xs[:, 0].astype(int), p.indices[2])
    assert np.array_equal(ys, labels[p.indices[2]])


@pytest.mark.parametrize("kwargs, words", [
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": float("nan")}, "alpha"),
    ({"num_clients": 0}, "num_clients"),
    ({"num_clients": 700}, "fewer clients"),
    ({"min_samples": 200}, "min_samples"),
])
def test_dirichlet_partition_bad_arguments_name_the_argument(labels, kwargs, words):
    arguments = {"num_clients": 5, "alpha": 0.5, **kwargs}
    with pytest.raises(InvalidArgumentError, match=words):
        dirichlet_partition(labels, **arguments)


def test_dirichlet_partition_impossible_minimum_says_what_to_change():
    # 10 clients, 10 samples, min 1 each with alpha 0.01: nearly every draw leaves a client
    # empty, so the split gives up and says to raise alpha or use fewer clients.
    with pytest.raises(InvalidArgumentError, match="raise alpha"):
        dirichlet_partition(np.arange(10) % 2, 10, 0.01, seed=0)

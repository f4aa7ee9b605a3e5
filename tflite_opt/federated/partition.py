"""Non-IID client shards: a seeded Dirichlet split of a labelled data set.

Federated data is not shuffled across phones: one user writes mostly 1s and 7s, another
mostly 3s. The usual way to simulate this (Hsu et al. 2019, "Measuring the effects of
non-identical data distribution"; NIID-Bench) draws, for every class, the share of that
class each client gets from a Dirichlet distribution with concentration ``alpha``: a small
``alpha`` (0.1) gives clients a few classes each, a large one (100) is close to IID. The
split is redrawn (same generator, so still seeded) until every client holds at least
``min_samples`` samples, as NIID-Bench does. Written here because the library that ships
it (``flwr-datasets``) works on Hugging Face datasets, not numpy arrays, and is not installed.

Example:
    >>> shards = dirichlet_partition(data.y_train, num_clients=10, alpha=0.5, seed=0)
    >>> [len(s) for s in shards.indices][:3], shards.histograms.shape
    ([93, 211, 170], (10, 10))
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_opt.errors import InvalidArgumentError

MAX_DRAWS = 1000  # redraws before giving up on "every client gets min_samples"


@dataclasses.dataclass(frozen=True)
class Partition:
    """Which samples each client holds.

    Attributes:
        indices: One sorted int64 index array per client, into the partitioned data.
        histograms: ``(clients, classes)`` count of each class on each client.
        alpha: The Dirichlet concentration the split was drawn with.
        seed: Seed of the draw.
        draws: How many draws it took to give every client ``min_samples``.
    """

    indices: tuple[np.ndarray, ...]
    histograms: np.ndarray
    alpha: float
    seed: int
    draws: int

    @property
    def num_clients(self) -> int:
        return len(self.indices)

    @property
    def sizes(self) -> list[int]:
        return [len(i) for i in self.indices]

    def shard(self, client: int, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """The client's rows of each array (``x``, ``y``, ...), in index order.

        Example:
            >>> x0, y0 = partition.shard(0, data.x_train, data.y_train)
        """
        if not 0 <= client < self.num_clients:
            raise InvalidArgumentError(f"client must be in 0..{self.num_clients - 1}, got {client}")
        return tuple(np.asarray(a)[self.indices[client]] for a in arrays)

    def to_dict(self) -> dict:
        """Sizes and per-client class histograms, for reports (JSON-ready)."""
        return {"alpha": self.alpha, "seed": self.seed, "draws": self.draws, "sizes": self.sizes,
                "histograms": self.histograms.tolist()}


def dirichlet_partition(labels: np.ndarray, num_clients: int, alpha: float, *, seed: int = 0,
                        min_samples: int = 1, num_classes: int | None = None) -> Partition:
    """Splits sample indices among ``num_clients`` with Dirichlet(``alpha``) class proportions.

    Every sample goes to exactly one client. For each class, a proportion vector over the
    clients is drawn from ``Dirichlet(alpha, ..., alpha)`` and the class's (shuffled) samples
    are cut at those proportions.

    Args:
        labels: ``(N,)`` integer class labels.
        num_clients: Number of clients K, at least 1 and at most N / ``min_samples``.
        alpha: Dirichlet concentration, > 0: 0.1 very skewed, 1 moderate, 100 near IID.
        seed: Seed of the draws. Defaults to 0.
        min_samples: Fewest samples any client may hold. Defaults to 1.
        num_classes: Number of classes; defaults to ``max(labels) + 1``.

    Returns:
        The ``Partition``.

    Raises:
        InvalidArgumentError: Bad arguments, or no draw in ``MAX_DRAWS`` gave every client
            ``min_samples`` (the message says which argument to change).

    Example:
        >>> p = dirichlet_partition(np.repeat(np.arange(10), 50), num_clients=5, alpha=0.3, seed=1)
        >>> sum(p.sizes)
        500
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidArgumentError(f"labels must be a non-empty 1-D integer array, got shape "
                                   f"{labels.shape} dtype {labels.dtype}")
    if labels.min() < 0:
        raise InvalidArgumentError(f"labels must be >= 0, found {labels.min()}")
    classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if classes <= labels.max():
        raise InvalidArgumentError(f"num_classes={num_classes} but labels go up to {labels.max()}")
    if not (isinstance(num_clients, (int, np.integer)) and num_clients >= 1):
        raise InvalidArgumentError(f"num_clients must be an integer >= 1, got {num_clients!r}")
    if not (np.isfinite(alpha) and alpha > 0):
        raise InvalidArgumentError(f"alpha (the Dirichlet concentration) must be a finite number "
                                   f"> 0, got {alpha!r}; 0.1 is very non-IID, 100 near IID")
    if min_samples < 1 or num_clients * min_samples > labels.size:
        raise InvalidArgumentError(f"{num_clients} clients x min_samples={min_samples} needs "
                                   f"{num_clients * min_samples} samples but there are "
                                   f"{labels.size}; pass fewer clients or a smaller min_samples")
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in range(classes)]
    for draw in range(1, MAX_DRAWS + 1):
        shards: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for members in by_class:
            if members.size == 0:
                continue
            shares = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = (np.cumsum(shares)[:-1] * members.size).astype(np.int64)
            for client, part in enumerate(np.split(rng.permutation(members), cuts)):
                shards[client].append(part)
        indices = tuple(np.sort(np.concatenate(s)).astype(np.int64) for s in shards)
        if min(len(i) for i in indices) >= min_samples:
            break
    else:
        raise InvalidArgumentError(
            f"no Dirichlet(alpha={alpha}) split in {MAX_DRAWS} draws gave each of {num_clients} "
            f"clients at least {min_samples} samples; raise alpha, or pass fewer clients")
    histograms = np.stack([np.bincount(labels[i], minlength=classes) for i in indices])
    return Partition(indices, histograms, float(alpha), int(seed), draw)

"""Federated averaging (FedAvg) over clients that train through a ``.tflite`` train signature.

Each round the server samples a fraction of the clients (seeded), some sampled clients are
stragglers whose update never arrives (a seeded dropout probability), and every other one
starts from the global weights with a fresh optimizer state, trains ``local_epochs`` on its own
shard *through the ``.tflite`` file's ``train`` signature* (``OnDeviceTrainer``, what a phone
runs) and sends a ``ClientUpdate``. The server checks each update (``exchange.validate_update``)
and replaces the global weights by the mean of the accepted ones weighted by sample count
(McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from Decentralized
Data"). After each round the global model is scored on held-out data through the file's
``infer`` signature, and the server checkpoints its state atomically; a run pointed at the same
checkpoint resumes after the last completed round and ends with the same weights as one that
was never interrupted.

The same client (``train_client``), sampling, dropout and checks serve the Flower engine
(``tflite_opt.federated.flower``), so the two engines reach the same global weights.

Example:
    >>> partition = dirichlet_partition(data.y_train, num_clients=10, alpha=0.5, seed=0)
    >>> shards = [partition.shard(k, data.x_train, data.y_train) for k in range(10)]
    >>> result = run_fedavg(tflite_bytes, shards, data.x_test, data.y_test,
    ...                     FedAvgConfig(rounds=20, local_epochs=2), checkpoint="run/state.npz")
    >>> [round(r.accuracy, 3) for r in result.history][-3:]
    [0.912, 0.915, 0.917]
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tflite_opt.errors import DataError, InvalidArgumentError, UpdateRejectedError
from tflite_opt.federated.exchange import (ClientUpdate, GlobalState, WeightSpec, model_version,
                                           spec_digest, state_from_bytes, state_to_bytes,
                                           validate_update)
from tflite_opt.files import atomic_write_bytes

Shard = tuple[np.ndarray, np.ndarray]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class FedAvgConfig:
    """Settings of a federated run (JSON round-trip with ``to_dict`` / ``from_dict``).

    Attributes:
        rounds: Rounds R, 1-10000. Defaults to 20.
        local_epochs: Epochs each client trains per round. Defaults to 2.
        batch_size: Client batch size; must be one the ``.tflite`` train signature takes.
            Defaults to 32.
        client_fraction: Share of clients sampled each round, in (0, 1]; at least one client
            is always sampled. Defaults to 1.0.
        dropout: Probability that a sampled client is a straggler whose update never arrives,
            in [0, 1). Defaults to 0.0.
        seed: Seed of sampling, dropout and each client's shuffling. Defaults to 0.
        learning_rate: The clients' learning rate in round 1, set in the file through its
            ``set_learning_rate`` signature; None trains at the rate the file was exported
            with. Defaults to None.
        learning_rate_decay: Round ``r`` trains at ``learning_rate * decay ** (r - 1)`` (a
            server-side schedule, sent with each round's request), in (0, 1]; needs
            ``learning_rate``. Defaults to 1.0 (constant).
    """

    rounds: int = 20
    local_epochs: int = 2
    batch_size: int = 32
    client_fraction: float = 1.0
    dropout: float = 0.0
    seed: int = 0
    learning_rate: float | None = None
    learning_rate_decay: float = 1.0

    def __post_init__(self) -> None:
        for name, low, high in (("rounds", 1, 10000), ("local_epochs", 1, 1000),
                                ("batch_size", 1, 65536), ("seed", 0, 2**63 - 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not low <= value <= high:
                raise InvalidArgumentError(f"{name} must be an integer in {low}..{high}, got "
                                           f"{value!r}")
        if not (isinstance(self.client_fraction, (int, float)) and 0 < self.client_fraction <= 1):
            raise InvalidArgumentError(f"client_fraction must be in (0, 1], got "
                                       f"{self.client_fraction!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise InvalidArgumentError(f"dropout (the straggler probability) must be in [0, 1), "
                                       f"got {self.dropout!r}")
        if self.learning_rate is not None and not (
                _is_number(self.learning_rate) and 0 < self.learning_rate < math.inf):
            raise InvalidArgumentError(f"learning_rate must be None (the file's) or a finite "
                                       f"number > 0, got {self.learning_rate!r}")
        if not (_is_number(self.learning_rate_decay) and 0 < self.learning_rate_decay <= 1):
            raise InvalidArgumentError(f"learning_rate_decay must be in (0, 1], got "
                                       f"{self.learning_rate_decay!r}")
        if self.learning_rate_decay != 1 and self.learning_rate is None:
            raise InvalidArgumentError("learning_rate_decay needs learning_rate (the rate of "
                                       "round 1); the file's exported rate is not known here")

    def round_learning_rate(self, round_number: int) -> float | None:
        """The clients' learning rate in ``round_number`` (1-based), or None (the file's)."""
        if self.learning_rate is None:
            return None
        return float(self.learning_rate * self.learning_rate_decay ** (round_number - 1))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FedAvgConfig":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise InvalidArgumentError(f"unknown FedAvgConfig keys {sorted(unknown)}")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class RoundRecord:
    """What happened in one round.

    Attributes:
        round: 1-based round number (0: the initial model, before any round).
        sampled: Clients asked to train.
        dropped: Sampled stragglers whose update never arrived.
        rejected: Client id -> reason code of each update that failed the checks.
        aggregated: Clients whose updates were averaged.
        num_samples: Samples behind the aggregated updates.
        train_loss: Sample-weighted mean of the clients' last-epoch training loss (NaN if none).
        accuracy: Held-out accuracy of the global model after the round, through ``infer``.
        seconds: Wall time of the round (training, aggregation, evaluation).
    """

    round: int
    sampled: tuple[int, ...]
    dropped: tuple[int, ...]
    rejected: dict[int, str]
    aggregated: tuple[int, ...]
    num_samples: int
    train_loss: float
    accuracy: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rejected"] = {str(k): v for k, v in self.rejected.items()}
        d["train_loss"] = None if math.isnan(self.train_loss) else self.train_loss
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RoundRecord":
        return cls(round=int(d["round"]), sampled=tuple(d["sampled"]), dropped=tuple(d["dropped"]),
                   rejected={int(k): str(v) for k, v in d["rejected"].items()},
                   aggregated=tuple(d["aggregated"]), num_samples=int(d["num_samples"]),
                   train_loss=math.nan if d["train_loss"] is None else float(d["train_loss"]),
                   accuracy=float(d["accuracy"]), seconds=float(d["seconds"]))


@dataclasses.dataclass(frozen=True)
class FederatedResult:
    """The outcome of a federated run.

    Attributes:
        engine: ``"local"`` or ``"flower"``.
        config: The run's settings.
        num_clients: Clients K.
        client_sizes: Samples on each client.
        history: Round 0 (the initial model) and one record per round, in order.
        state: The final global state (weights, round, model version).
        correct: Per-image 0/1 correctness of the final global model on the held-out data.
        resumed_from: Round the run resumed after (0: started fresh).
    """

    engine: str
    config: FedAvgConfig
    num_clients: int
    client_sizes: tuple[int, ...]
    history: tuple[RoundRecord, ...]
    state: GlobalState
    correct: np.ndarray
    resumed_from: int = 0

    @property
    def accuracy(self) -> float:
        return self.history[-1].accuracy

    @property
    def weights(self) -> list[np.ndarray]:
        return [np.array(w) for w in self.state.weights]

    def table(self) -> dict[str, Any]:
        """Accuracy per round as a benchmark-style table (``title``, ``columns``, ``rows``)."""
        rows = [[r.round, len(r.sampled), len(r.dropped), len(r.rejected), len(r.aggregated),
                 r.num_samples, None if math.isnan(r.train_loss) else round(r.train_loss, 4),
                 round(100 * r.accuracy, 2)] for r in self.history]
        return {"title": f"FedAvg accuracy per round ({self.engine} engine, {self.num_clients} "
                         f"clients, {self.config.local_epochs} local epochs)",
                "columns": ["round", "sampled", "dropped", "rejected", "aggregated", "samples",
                            "train loss", "held-out accuracy (%)"],
                "rows": rows}

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "config": self.config.to_dict(),
                "num_clients": self.num_clients, "client_sizes": list(self.client_sizes),
                "model_version": self.state.model_version, "spec_digest": self.state.spec_digest,
                "final_accuracy": self.accuracy, "resumed_from": self.resumed_from,
                "history": [r.to_dict() for r in self.history]}


# ---- seeded choices shared by both engines -----------------------------------------------

_SAMPLING, _DROPOUT, _SHUFFLE = 1, 2, 3  # streams of one seed, so the choices never collide


def sample_clients(num_clients: int, fraction: float, round_number: int, seed: int) -> list[int]:
    """The clients sampled in ``round_number``: ``max(1, round(fraction * K))`` of them, sorted.

    Example:
        >>> sample_clients(10, 0.3, round_number=1, seed=0)
        [2, 5, 8]
    """
    count = min(num_clients, max(1, int(round(fraction * num_clients))))
    if count == num_clients:
        return list(range(num_clients))
    rng = np.random.default_rng([seed, _SAMPLING, round_number])
    return sorted(int(c) for c in rng.choice(num_clients, size=count, replace=False))


def drops_out(client: int, round_number: int, seed: int, probability: float) -> bool:
    """Whether ``client`` is a straggler in ``round_number`` (its update never arrives)."""
    if probability <= 0:
        return False
    return bool(np.random.default_rng([seed, _DROPOUT, round_number, client]).random()
                < probability)


def client_seed(seed: int, round_number: int, client: int) -> int:
    """The shuffling seed of ``client``'s local training in ``round_number``."""
    return int(np.random.SeedSequence([seed, _SHUFFLE, round_number, client])
               .generate_state(1, np.uint32)[0])


# ---- the client ---------------------------------------------------------------------------


def start_from(trainer: Any, weights: Sequence[np.ndarray]) -> None:
    """Puts ``weights`` into ``trainer`` with a fresh optimizer state (a new round's start)."""
    trainer.set_weights([np.array(w) for w in weights], reset_optimizer=True)


def train_client(trainer: Any, state: GlobalState, x: np.ndarray, y: np.ndarray, *,
                 client_id: int, round_number: int, config: FedAvgConfig,
                 learning_rate: float | None = None) -> ClientUpdate:
    """One client's round: global weights, fresh optimizer, ``local_epochs`` through the file.

    Args:
        trainer: An ``OnDeviceTrainer`` on the run's ``.tflite`` (reused across clients:
            every client starts from ``state``'s weights and a fresh optimizer).
        state: The global state the round starts from.
        x: The client's samples.
        y: Their labels.
        client_id: The client's id.
        round_number: The round being trained (``state.round + 1``).
        config: The run's settings.
        learning_rate: The rate the server sent for this round (Flower's request carries
            it); None takes ``config.round_learning_rate(round_number)``, and if that is None
            too the rate already in the file.

    Returns:
        The ``ClientUpdate`` to send.
    """
    start_from(trainer, state.weights)
    if learning_rate is None:
        learning_rate = config.round_learning_rate(round_number)
    losses = trainer.fit(x, y, epochs=config.local_epochs, batch_size=config.batch_size,
                         seed=client_seed(config.seed, round_number, client_id),
                         learning_rate=learning_rate)
    weights = tuple(np.asarray(w) for w in trainer.get_weights())
    return ClientUpdate(client_id=int(client_id), round=int(round_number),
                        model_version=state.model_version, spec_digest=spec_digest(state.specs),
                        num_samples=int(len(x)), weights=weights,
                        train_loss=float(losses[-1]) if len(losses) else math.nan)


# ---- the server ---------------------------------------------------------------------------


def fedavg(weight_lists: Sequence[Sequence[np.ndarray]], counts: Sequence[int]) -> list[np.ndarray]:
    """The mean of ``weight_lists`` weighted by ``counts`` (FedAvg's aggregation).

    The arithmetic is Flower's (``flwr.serverapp.strategy.strategy_utils.aggregate_arrayrecords``):
    each list is scaled by ``count / total`` and summed in order, in the weights' own dtype.
    Computing it the same way lets the local and the Flower engine agree bit for bit; in
    float32 the result is within a few ulps of the float64 mean (tests check the bound).

    Example:
        >>> fedavg([[np.float32([0, 4])], [np.float32([2, 0])]], counts=[1, 3])[0]
        array([1.5, 1. ], dtype=float32)
    """
    if not weight_lists or len(weight_lists) != len(counts):
        raise InvalidArgumentError(f"fedavg needs one sample count per weight list; got "
                                   f"{len(weight_lists)} lists and {len(counts)} counts")
    if any(c <= 0 for c in counts):
        raise InvalidArgumentError(f"sample counts must be > 0, got {list(counts)}")
    total = float(sum(counts))
    factors = [c / total for c in counts]
    mean = [np.asarray(w) * factors[0] for w in weight_lists[0]]
    for weights, factor in zip(weight_lists[1:], factors[1:]):
        for acc, w in zip(mean, weights):
            acc += np.asarray(w) * factor
    return mean


def screen(state: GlobalState, updates: Sequence[ClientUpdate]
           ) -> tuple[list[ClientUpdate], dict[int, str]]:
    """Checks every update against ``state``; returns the accepted ones in client-id order
    (so the average does not depend on arrival order) and client id -> reason of the others."""
    accepted, rejected = [], {}
    for update in updates:
        try:
            validate_update(update, state)
        except UpdateRejectedError as exc:
            rejected[int(update.client_id)] = exc.reason
            continue
        if any(u.client_id == update.client_id for u in accepted):
            rejected[int(update.client_id)] = "duplicate"
            continue
        accepted.append(update)
    return sorted(accepted, key=lambda u: u.client_id), rejected


def aggregate(state: GlobalState, updates: Sequence[ClientUpdate]
              ) -> tuple[GlobalState, list[ClientUpdate], dict[int, str]]:
    """Screens the updates and averages the accepted ones into a new state (the next round).

    ``state`` is never modified; a round in which no update is accepted keeps its weights.

    Returns:
        ``(new_state, accepted, rejected)`` with ``rejected`` mapping client id -> reason.
    """
    accepted, rejected = screen(state, updates)
    weights = (fedavg([u.weights for u in accepted], [u.num_samples for u in accepted])
               if accepted else state.weights)
    new_state = GlobalState(round=state.round + 1, model_version=state.model_version,
                            specs=state.specs, weights=tuple(weights), extra=dict(state.extra))
    return new_state, accepted, rejected


def evaluate_global(trainer: Any, weights: Sequence[np.ndarray], x: np.ndarray,
                    y: np.ndarray) -> np.ndarray:
    """Per-image correctness of ``weights`` on ``(x, y)``, through the file's ``infer`` signature."""
    trainer.set_weights([np.array(w) for w in weights], reset_optimizer=False)
    outputs = np.asarray(trainer.infer(x))
    return np.argmax(outputs, axis=-1) == np.asarray(y)


def load_trainer(tflite: bytes) -> Any:
    """An ``OnDeviceTrainer`` on ``tflite`` (imported here: the runner needs no TensorFlow)."""
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    return OnDeviceTrainer(tflite)


def initial_state(trainer: Any, tflite: bytes) -> GlobalState:
    """Round 0: the weights the ``.tflite`` file starts with."""
    weights = [np.array(w) for w in trainer.get_weights()]
    specs = tuple(WeightSpec.of(s) for s in trainer.weight_specs)
    return GlobalState(round=0, model_version=model_version(tflite), specs=specs,
                       weights=tuple(weights))


def check_shards(shards: Sequence[Shard], x_eval: np.ndarray, y_eval: np.ndarray) -> None:
    """Every client holds (x, y) of equal, non-zero length; the held-out set is not empty."""
    if not shards:
        raise InvalidArgumentError("a federated run needs at least one client shard")
    for k, (x, y) in enumerate(shards):
        if len(x) == 0 or len(x) != len(y):
            raise DataError(f"client {k}'s shard has {len(x)} samples and {len(y)} labels; each "
                            "client needs a non-empty shard with one label per sample")
    if len(x_eval) == 0 or len(x_eval) != len(y_eval):
        raise DataError(f"held-out data has {len(x_eval)} samples and {len(y_eval)} labels")


def check_trainer(trainer: Any, config: FedAvgConfig, shards: Sequence[Shard]) -> None:
    """Fails before round 1 if the file cannot train every client's shard with ``config``."""
    if config.learning_rate is not None:
        _ = trainer.learning_rate  # InvalidTFLiteError now if the file cannot take a rate
    fixed = getattr(trainer, "batch_size", None)
    if fixed is not None and config.batch_size != fixed:
        raise InvalidArgumentError(f"batch_size={config.batch_size} but the .tflite train "
                                   f"signature takes batches of {fixed}; pass batch_size={fixed}")
    for k, (x, _) in enumerate(shards):
        if tuple(np.shape(x)[1:]) != tuple(trainer.input_shape):
            raise DataError(f"client {k}'s samples have shape {tuple(np.shape(x)[1:])}, the "
                            f".tflite takes {tuple(trainer.input_shape)}")
        if fixed is not None and len(x) < fixed:
            raise DataError(f"client {k} holds {len(x)} samples, fewer than the file's fixed "
                            f"batch of {fixed}; export with batch_size=None or give each client "
                            f"at least {fixed} samples (dirichlet_partition(min_samples=...))")


class Checkpoint:
    """The server's state after each completed round, in one file written atomically.

    The file holds the global weights, the round, the model version, the run's settings, the
    clients' sizes and the history so far (``exchange.state_to_bytes``). A run resumes from it
    only if those match (same ``.tflite``, settings and shards); otherwise it refuses and says so.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else Path(path)

    def load(self, state0: GlobalState, run_info: dict[str, Any]) -> tuple[GlobalState,
                                                                             list[RoundRecord]]:
        """The state to start from: the checkpoint's if one exists and matches, else ``state0``."""
        if self.path is None or not self.path.exists():
            return state0, []
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise DataError(f"could not read federated checkpoint {str(self.path)!r}: {exc}") from None
        state = state_from_bytes(data, f"federated checkpoint {str(self.path)!r}")
        saved = {k: state.extra.get(k) for k in run_info}
        if state.model_version != state0.model_version or state.specs != state0.specs \
                or saved != run_info:
            differs = [k for k in run_info if saved[k] != run_info[k]]
            if state.model_version != state0.model_version:
                differs.insert(0, "model_version")
            raise InvalidArgumentError(
                f"federated checkpoint {str(self.path)!r} belongs to another run (differs in: "
                f"{', '.join(differs) or 'weight specs'}); resume with the same model, data and "
                "settings, or pass another checkpoint/output folder")
        history = [RoundRecord.from_dict(r) for r in state.extra.get("history", [])]
        return state, history

    def save(self, state: GlobalState, run_info: dict[str, Any],
             history: Sequence[RoundRecord]) -> None:
        if self.path is None:
            return
        extra = {**run_info, "history": [r.to_dict() for r in history]}
        atomic_write_bytes(self.path, state_to_bytes(dataclasses.replace(state, extra=extra)))


def run_info(config: FedAvgConfig, shards: Sequence[Shard], engine: str) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: settings and the clients' data sizes."""
    # Either engine may resume the other's checkpoint (they compute the same thing), and a run
    # may be extended by more rounds: everything but ``rounds`` must match.
    del engine
    # Learning-rate settings at their defaults are left out, so checkpoints written before
    # they existed still resume.
    defaults = {"learning_rate": None, "learning_rate_decay": 1.0}
    settings = {k: v for k, v in config.to_dict().items()
                if k != "rounds" and not (k in defaults and v == defaults[k])}
    return {"config": settings, "client_sizes": [int(len(y)) for _, y in shards]}


def start_run(tflite: Any, shards: Sequence[Shard], x_eval: np.ndarray, y_eval: np.ndarray,
              config: FedAvgConfig, checkpoint: Any, engine: str) -> tuple:
    """Checks a run's inputs and loads its checkpoint; both engines start here.

    Returns ``(tflite bytes, trainer, run info, Checkpoint, GlobalState, history)``.
    """
    tflite = _read_tflite(tflite)
    check_shards(shards, x_eval, y_eval)
    trainer = load_trainer(tflite)
    check_trainer(trainer, config, shards)
    info = run_info(config, shards, engine)
    store = Checkpoint(checkpoint)
    state, history = store.load(initial_state(trainer, tflite), info)
    return tflite, trainer, info, store, state, history


def run_fedavg(tflite: bytes | str | os.PathLike, shards: Sequence[Shard], x_eval: np.ndarray,
               y_eval: np.ndarray, config: FedAvgConfig = FedAvgConfig(), *,
               checkpoint: str | os.PathLike | None = None, progress: bool = True,
               on_round: Callable[[RoundRecord], None] | None = None) -> FederatedResult:
    """Runs FedAvg in this process: every client trains through the ``.tflite`` train signature.

    Args:
        tflite: The trainable ``.tflite`` (``tflite_opt.ondevice.export_trainable``): bytes or
            a path.
        shards: ``(x, y)`` of each client, e.g. from ``dirichlet_partition``.
        x_eval: Held-out images the global model is scored on after every round.
        y_eval: Their labels.
        config: Rounds, local epochs, batch size, sampling, dropout, seed.
        checkpoint: File for the server's state after each round; an existing one from the same
            run is resumed. None keeps no checkpoint. Defaults to None.
        progress: Show a progress bar over rounds. Defaults to True.
        on_round: Called with each new ``RoundRecord`` after its checkpoint is written.

    Returns:
        The ``FederatedResult``.

    Raises:
        DataError: An empty shard or held-out set.
        InvalidArgumentError: A checkpoint from another run.
    """
    from tqdm.auto import tqdm

    tflite, trainer, info, store, state, history = start_run(tflite, shards, x_eval, y_eval,
                                                             config, checkpoint, "local")
    resumed_from = state.round
    if not history:
        start = time.perf_counter()
        correct = evaluate_global(trainer, state.weights, x_eval, y_eval)
        history = [RoundRecord(0, (), (), {}, (), 0, math.nan, float(np.mean(correct)),
                               time.perf_counter() - start)]
    bar = tqdm(range(state.round + 1, config.rounds + 1), desc="FedAvg rounds", unit="round",
               disable=not progress, initial=state.round, total=config.rounds)
    for round_number in bar:
        start = time.perf_counter()
        sampled = sample_clients(len(shards), config.client_fraction, round_number, config.seed)
        dropped = [c for c in sampled if drops_out(c, round_number, config.seed, config.dropout)]
        updates = [train_client(trainer, state, *shards[c], client_id=c,
                                round_number=round_number, config=config)
                   for c in sampled if c not in dropped]
        state, accepted, rejected = aggregate(state, updates)
        correct = evaluate_global(trainer, state.weights, x_eval, y_eval)
        record = round_record(round_number, sampled, dropped, rejected, accepted,
                              float(np.mean(correct)), time.perf_counter() - start)
        history.append(record)
        store.save(state, info, history)
        bar.set_postfix(accuracy=f"{record.accuracy:.3f}")
        if on_round is not None:
            on_round(record)
    correct = evaluate_global(trainer, state.weights, x_eval, y_eval)
    return FederatedResult("local", config, len(shards), tuple(int(len(y)) for _, y in shards),
                           tuple(history), state, correct.astype(np.int8), resumed_from)


def round_record(round_number: int, sampled: Sequence[int], dropped: Sequence[int],
                 rejected: dict[int, str], accepted: Sequence[ClientUpdate], accuracy: float,
                 seconds: float) -> RoundRecord:
    """The ``RoundRecord`` of a finished round (both engines)."""
    samples = sum(u.num_samples for u in accepted)
    losses = [(u.train_loss, u.num_samples) for u in accepted if math.isfinite(u.train_loss)]
    loss = (sum(l * n for l, n in losses) / sum(n for _, n in losses)) if losses else math.nan
    return RoundRecord(round_number, tuple(sampled), tuple(dropped), dict(rejected),
                       tuple(u.client_id for u in accepted), samples, loss, accuracy, seconds)


def _read_tflite(tflite: bytes | str | os.PathLike) -> bytes:
    if isinstance(tflite, (bytes, bytearray, memoryview)):
        return bytes(tflite)
    path = Path(tflite)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(f"could not read the trainable .tflite {str(path)!r}: "
                                   f"{exc.strerror or exc}; pass the file "
                                   "tflite_opt.ondevice.export_trainable wrote") from None

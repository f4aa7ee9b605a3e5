"""The same FedAvg on Flower: its ServerApp, ClientApp, FedAvg strategy and simulation engine.

Where one process is not enough, Flower (``flwr`` 1.41, Message API) runs the clients: each
virtual client is a ``ClientApp`` whose ``train`` handler reads its shard from disk (what a
phone would hold), trains through the ``.tflite`` train signature with ``train_client`` and
replies with an ``ArrayRecord`` of weights, a ``MetricRecord`` with its sample count
(``num-examples``, Flower FedAvg's weighting key) and a ``ConfigRecord`` with the model version,
spec digest, client id and round. The ``ServerApp`` runs ``FlowerFedAvg``, a subclass of
Flower's own ``flwr.serverapp.strategy.FedAvg`` that adds what the local engine does:

- the same seeded client sampling and stragglers (``fedavg.sample_clients``/``drops_out``); a
  straggler is sent nothing, so its update never arrives;
- every reply is checked with ``exchange.validate_update`` before Flower averages the accepted
  ones (in client-id order, so the result does not depend on arrival order);
- the round's client learning rate (``FedAvgConfig.round_learning_rate``: a decay schedule)
  travels in the train request's ``ConfigRecord``; the client sets it in the file;
- the global model is scored after every round through the file's ``infer`` signature, and
  the state is checkpointed with the local engine's ``Checkpoint`` (either engine resumes the
  other's file; a run stopped after a round resumes with the same final weights).

Flower's simulation engine runs the ClientApps in Ray actors on this machine
(``flwr.simulation.run_simulation``). Virtual clients are mapped to shards by the
``partition-id`` Flower gives each node; the server learns node -> client from one ``query``
message per node before the first round.

Example:
    >>> result = run_flower(tflite_bytes, shards, data.x_test, data.y_test,
    ...                     FedAvgConfig(rounds=20, local_epochs=2), work_dir="outputs/fl/.work")
    >>> result.accuracy
    0.917
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from tflite_opt.errors import InvalidArgumentError, TfliteOptError, UpdateRejectedError
from tflite_opt.federated.exchange import ClientUpdate, GlobalState
from tflite_opt.federated.fedavg import (Checkpoint, FedAvgConfig, FederatedResult, RoundRecord,
                                         Shard, drops_out, evaluate_global, load_trainer,
                                         round_record, sample_clients, screen, start_run,
                                         train_client)
from tflite_opt.files import atomic_write_bytes

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
META = "meta"
NUM_EXAMPLES = "num-examples"  # Flower FedAvg's default weighting key
LEARNING_RATE = "learning-rate"  # the round's client learning rate, in the train request
PARTITION_ID = "partition-id"  # the node_config key Flower's simulation gives each virtual client
_SHARD = "client_{:05d}.npz"
RAY_OBJECT_STORE_BYTES = 80 * 2**20  # Ray's minimum is 75 MiB


# ---- client side --------------------------------------------------------------------------

_CACHE: dict[str, Any] = {}  # per worker process: the trainer and shards, loaded once


def _cached_trainer(tflite_path: str) -> Any:
    key = f"trainer:{tflite_path}"
    if key not in _CACHE:
        _CACHE[key] = load_trainer(Path(tflite_path).read_bytes())
    return _CACHE[key]


def _cached_shard(shard_dir: str, client: int) -> Shard:
    from tflite_opt.data.arrays import load_npz

    key = f"shard:{shard_dir}:{client}"
    if key not in _CACHE:
        arrays = load_npz(Path(shard_dir) / _SHARD.format(client), "client shard", keys=("x", "y"))
        _CACHE[key] = (arrays["x"], arrays["y"])
    return _CACHE[key]


def _weights_of(record: Any) -> list[np.ndarray]:
    """An ``ArrayRecord``'s arrays in key order (keys are ``w0000``, ``w0001``, ...)."""
    return [record[k].numpy() for k in sorted(record.keys())]


def _array_record(weights: Sequence[np.ndarray]) -> Any:
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({f"w{i:04d}": Array(np.ascontiguousarray(w)) for i, w in enumerate(weights)})


def make_client_app(tflite_path: str | os.PathLike, shard_dir: str | os.PathLike,
                    config: FedAvgConfig) -> Any:
    """A Flower ``ClientApp`` whose clients train their shard through the ``.tflite`` file.

    Args:
        tflite_path: The trainable ``.tflite`` every client runs.
        shard_dir: Folder of ``client_NNNNN.npz`` shards (``x``, ``y``), one per partition id.
        config: The run's settings (local epochs, batch size, seed).
    """
    from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    tflite_path, shard_dir = str(tflite_path), str(shard_dir)
    app = ClientApp()

    @app.query()
    def query(msg: Message, context: Any) -> Message:
        """Tells the server which shard this node holds."""
        return Message(RecordDict({META: ConfigRecord(
            {"client-id": int(context.node_config[PARTITION_ID])})}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Any) -> Message:
        client = int(context.node_config[PARTITION_ID])
        trainer = _cached_trainer(tflite_path)
        x, y = _cached_shard(shard_dir, client)
        settings = msg.content[CONFIG]
        round_number = int(settings["fl-round"])
        state = GlobalState(round=round_number - 1, model_version=str(settings["model-version"]),
                            specs=tuple(trainer.weight_specs),
                            weights=tuple(_weights_of(msg.content[ARRAYS])))
        rate = settings.get(LEARNING_RATE)  # the server's schedule; absent: the file's rate
        update = train_client(trainer, state, x, y, client_id=client, round_number=round_number,
                              config=config, learning_rate=None if rate is None else float(rate))
        reply = RecordDict({
            ARRAYS: _array_record(update.weights),
            METRICS: MetricRecord({NUM_EXAMPLES: update.num_samples,
                                   "train-loss": float(update.train_loss)}),
            META: ConfigRecord({"client-id": update.client_id, "round": update.round,
                                "model-version": update.model_version,
                                "spec-digest": update.spec_digest}),
        })
        return Message(reply, reply_to=msg)

    return app


def update_from_reply(content: Any) -> ClientUpdate:
    """The ``ClientUpdate`` a Flower train reply carries.

    Raises:
        UpdateRejectedError: The reply lacks a record or field (reason ``malformed``).
    """
    try:
        meta, metrics = content[META], content[METRICS]
        return ClientUpdate(client_id=int(meta["client-id"]), round=int(meta["round"]),
                            model_version=str(meta["model-version"]),
                            spec_digest=str(meta["spec-digest"]),
                            num_samples=int(metrics[NUM_EXAMPLES]),
                            weights=tuple(_weights_of(content[ARRAYS])),
                            train_loss=float(metrics.get("train-loss", math.nan)))
    except (KeyError, TypeError, ValueError) as exc:
        raise UpdateRejectedError(f"a Flower reply lacks or mistypes {exc}", "malformed") from None


# ---- server side --------------------------------------------------------------------------


def _flower_fedavg_class() -> type:
    """``FlowerFedAvg``, defined on first use so that importing this module needs no flwr."""
    from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAvg

    class FlowerFedAvg(FedAvg):
        """Flower's FedAvg with the local engine's sampling, stragglers, checks and checkpoints."""

        def __init__(self, run: "_ServerRun"):
            super().__init__(fraction_train=run.config.client_fraction, fraction_evaluate=0.0,
                             min_train_nodes=1, min_evaluate_nodes=0,
                             min_available_nodes=run.num_clients, weighted_by_key=NUM_EXAMPLES,
                             arrayrecord_key=ARRAYS, configrecord_key=CONFIG)
            self.run = run

        def configure_train(self, server_round: int, arrays: ArrayRecord, config: Any,
                            grid: Any) -> Iterable[Message]:
            run = self.run
            round_number = run.state.round + 1
            sampled = sample_clients(run.num_clients, run.config.client_fraction, round_number,
                                     run.config.seed)
            dropped = [c for c in sampled
                       if drops_out(c, round_number, run.config.seed, run.config.dropout)]
            run.pending = {"sampled": sampled, "dropped": dropped, "start": time.perf_counter()}
            config["server-round"] = server_round
            config["fl-round"] = round_number
            config["model-version"] = run.state.model_version
            rate = run.config.round_learning_rate(round_number)
            if rate is not None:
                config[LEARNING_RATE] = rate
            content = RecordDict({ARRAYS: arrays, CONFIG: config})
            return [Message(content=content, message_type=MessageType.TRAIN,
                            dst_node_id=run.node_of[c]) for c in sampled if c not in dropped]

        def aggregate_train(self, server_round: int, replies: Iterable[Message]
                            ) -> tuple[ArrayRecord | None, MetricRecord | None]:
            run = self.run
            updates, by_client, rejected = [], {}, {}
            for reply in replies:
                node_client = run.client_of.get(reply.metadata.src_node_id, -1)
                if reply.has_error():
                    rejected[node_client] = "client_error"
                    continue
                try:
                    update = update_from_reply(reply.content)
                except UpdateRejectedError as exc:
                    rejected[node_client] = exc.reason
                    continue
                if update.client_id != node_client:  # a node speaking for another client
                    rejected[node_client] = "client_id"
                    continue
                updates.append(update)
                by_client[update.client_id] = reply
            # The checks are the local engine's; the averaging is Flower's.
            accepted, more_rejected = screen(run.state, updates)
            rejected.update(more_rejected)
            run.pending.update(accepted=accepted, rejected=rejected)
            arrays, metrics = None, None
            weights = run.state.weights  # a round without accepted updates keeps them
            if accepted:
                arrays, metrics = super().aggregate_train(
                    server_round, [by_client[u.client_id] for u in accepted])
                weights = tuple(_weights_of(arrays))
            run.state = dataclasses.replace(run.state, round=run.state.round + 1, weights=weights)
            return arrays, metrics

    return FlowerFedAvg


@dataclasses.dataclass
class _ServerRun:
    """The server's side of one run, shared by the ServerApp's thread and ``run_flower``."""

    config: FedAvgConfig
    num_clients: int
    state: GlobalState
    history: list[RoundRecord]
    evaluator: Any
    x_eval: np.ndarray
    y_eval: np.ndarray
    checkpoint: Checkpoint
    info: dict[str, Any]
    on_round: Callable[[RoundRecord], None] | None
    bar: Any
    node_of: dict[int, int] = dataclasses.field(default_factory=dict)
    client_of: dict[int, int] = dataclasses.field(default_factory=dict)
    pending: dict[str, Any] = dataclasses.field(default_factory=dict)
    correct: np.ndarray | None = None
    error: BaseException | None = None

    def evaluate(self, server_round: int, arrays: Any) -> Any:
        """Flower's ``evaluate_fn``: scores the global model, records and checkpoints the round."""
        from flwr.app import MetricRecord

        correct = evaluate_global(self.evaluator, self.state.weights, self.x_eval, self.y_eval)
        self.correct = correct
        accuracy = float(np.mean(correct))
        if server_round == 0:
            if not self.history:
                self.history.append(RoundRecord(0, (), (), {}, (), 0, math.nan, accuracy, 0.0))
            return MetricRecord({"accuracy": accuracy})
        pending = self.pending
        record = round_record(self.state.round, pending["sampled"], pending["dropped"],
                              pending.get("rejected", {}), pending.get("accepted", []), accuracy,
                              time.perf_counter() - pending["start"])
        self.history.append(record)
        self.checkpoint.save(self.state, self.info, self.history)
        self.bar.set_postfix(accuracy=f"{accuracy:.3f}", refresh=False)
        self.bar.update(1)
        if self.on_round is not None:
            self.on_round(record)
        return MetricRecord({"accuracy": accuracy})


def make_server_app(run: _ServerRun) -> Any:
    """A Flower ``ServerApp`` running ``FlowerFedAvg`` for the rounds ``run`` has left."""
    from flwr.app import ConfigRecord, Message, MessageType, RecordDict
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        try:
            _discover_clients(grid, run, ConfigRecord, Message, MessageType, RecordDict)
            strategy = _flower_fedavg_class()(run)
            strategy.start(grid=grid, initial_arrays=_array_record(run.state.weights),
                           num_rounds=run.config.rounds - run.state.round,
                           evaluate_fn=run.evaluate)
        except BaseException as exc:  # noqa: BLE001 - kept, and raised by _simulate after the end
            # Raised in Flower's server thread, an Exception made Flower log it and raise its own
            # RuntimeError, and a KeyboardInterrupt (a stop in on_round) escaped Flower's
            # handler: a stray thread traceback, then a 3 s wait for the server's context.
            # Returning ends the simulation as a finished run does; the checkpoint of the last
            # completed round is on disk, so a second run resumes from it.
            run.error = exc

    return app


def _discover_clients(grid: Any, run: _ServerRun, ConfigRecord: Any, Message: Any,
                      MessageType: Any, RecordDict: Any) -> None:
    """Asks every node which shard it holds (one ``query`` message each)."""
    deadline = time.monotonic() + 120
    while len(node_ids := sorted(grid.get_node_ids())) < run.num_clients:
        if time.monotonic() > deadline:
            raise InvalidArgumentError(f"only {len(node_ids)} of {run.num_clients} Flower nodes "
                                       "came up in 120 s")
        time.sleep(0.2)
    messages = [Message(RecordDict({CONFIG: ConfigRecord()}), message_type=MessageType.QUERY,
                        dst_node_id=node) for node in node_ids]
    for reply in grid.send_and_receive(messages, timeout=600):
        if reply.has_error():
            raise InvalidArgumentError(f"Flower node {reply.metadata.src_node_id} failed to say "
                                       f"which shard it holds: {reply.error.reason}")
        client = int(reply.content[META]["client-id"])
        run.node_of[client] = reply.metadata.src_node_id
        run.client_of[reply.metadata.src_node_id] = client
    if sorted(run.node_of) != list(range(run.num_clients)):
        raise InvalidArgumentError(f"Flower nodes hold shards {sorted(run.node_of)}, expected "
                                   f"0..{run.num_clients - 1}")


def write_shards(shards: Sequence[Shard], folder: str | os.PathLike) -> Path:
    """Writes each client's ``(x, y)`` as ``client_NNNNN.npz`` (atomically) into ``folder``."""
    folder = Path(folder)
    for k, (x, y) in enumerate(shards):
        buffer = io.BytesIO()
        np.savez(buffer, x=np.asarray(x), y=np.asarray(y))
        atomic_write_bytes(folder / _SHARD.format(k), buffer.getvalue())
    return folder


class _KnownFlowerNotices(logging.Filter):
    """Drops two Flower warnings about choices made here on purpose (BUILD_NOTES.md says why):
    ``run_simulation``'s deprecation in favour of ``flwr run`` (which needs a SuperLink
    server), and "federated evaluation will be skipped" (the server evaluates instead)."""

    NOTICES = ("`run_simulation` function is deprecated", "fraction_evaluate is set to 0.0")

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg) % record.args if record.args else str(record.msg)
        return not any(notice in text for notice in self.NOTICES)


@contextlib.contextmanager
def _quiet_flower(verbose: bool) -> Iterator[None]:
    """Flower logs every round at INFO; keep its other warnings only, unless ``verbose``."""
    logger = logging.getLogger("flwr")
    level = logger.level
    notices = _KnownFlowerNotices()
    if not verbose:
        logger.setLevel(logging.WARNING)
        logger.addFilter(notices)
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.removeFilter(notices)


def run_flower(tflite: bytes | str | os.PathLike, shards: Sequence[Shard], x_eval: np.ndarray,
               y_eval: np.ndarray, config: FedAvgConfig = FedAvgConfig(), *,
               checkpoint: str | os.PathLike | None = None, work_dir: str | os.PathLike | None = None,
               max_parallel_clients: int = 1, progress: bool = True, verbose: bool = False,
               on_round: Callable[[RoundRecord], None] | None = None) -> FederatedResult:
    """Runs FedAvg on Flower's simulation engine (Ray); same arguments and result as ``run_fedavg``.

    Args:
        tflite: The trainable ``.tflite``: bytes or a path.
        shards: ``(x, y)`` of each client.
        x_eval: Held-out images scored after every round (on the server, through ``infer``).
        y_eval: Their labels.
        config: Rounds, local epochs, batch size, sampling, dropout, seed.
        checkpoint: File for the server's state after each round (resumed if it matches).
        work_dir: Folder for the file and the clients' shards that the ClientApps read.
            Defaults to a temporary folder, removed at the end.
        max_parallel_clients: Ray actors (one CPU each) training clients at once. Defaults to
            1: the cheapest, and on 2 cores a second actor competes with the server.
        progress: Show a progress bar over rounds. Defaults to True.
        verbose: Let Flower log at INFO. Defaults to False.
        on_round: Called with each new ``RoundRecord`` after its checkpoint is written.

    Returns:
        The ``FederatedResult`` (``engine="flower"``).
    """
    from tqdm.auto import tqdm

    _require_flower()
    if not (isinstance(max_parallel_clients, int) and max_parallel_clients >= 1):
        raise InvalidArgumentError(f"max_parallel_clients must be an integer >= 1, got "
                                   f"{max_parallel_clients!r}")
    tflite, evaluator, info, store, state, history = start_run(tflite, shards, x_eval, y_eval,
                                                               config, checkpoint, "flower")
    resumed_from = state.round
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="tflite_opt_fl."))
        work_dir = Path(work_dir)
        tflite_path = atomic_write_bytes(work_dir / "model_train.tflite", tflite)
        shard_dir = write_shards(shards, work_dir / "clients")
        bar = stack.enter_context(tqdm(total=config.rounds, initial=state.round,
                                       desc="FedAvg rounds (Flower)", unit="round",
                                       disable=not progress))
        run = _ServerRun(config, len(shards), state, list(history), evaluator, x_eval, y_eval,
                         store, info, on_round, bar)
        if state.round < config.rounds:
            _simulate(make_server_app(run), make_client_app(tflite_path, shard_dir, config),
                      len(shards), max_parallel_clients, verbose, run)
    correct = evaluate_global(evaluator, run.state.weights, x_eval, y_eval)
    return FederatedResult("flower", config, len(shards), tuple(int(len(y)) for _, y in shards),
                           tuple(run.history), run.state, correct.astype(np.int8), resumed_from)


def _require_flower() -> None:
    """Fails with the install command if Flower or Ray is missing (they are an extra)."""
    import importlib.util

    missing = [name for name in ("flwr", "ray") if importlib.util.find_spec(name) is None]
    if missing:
        raise InvalidArgumentError(
            f"the Flower engine needs {' and '.join(missing)}, which is not installed; install "
            "the federated extra (pip install -e '.[federated]': flwr==1.41.0, ray==2.55.1) or "
            "use the local engine (engine='local', --engine=local)")


def _simulate(server_app: Any, client_app: Any, num_clients: int, parallel: int, verbose: bool,
              run: _ServerRun) -> None:
    """``flwr.simulation.run_simulation`` on a Ray instance sized for ``parallel`` clients."""
    import ray
    from flwr.simulation import run_simulation

    started_ray = not ray.is_initialized()
    if started_ray:
        # One CPU per client actor, no dashboard, metrics or GPU, the smallest object store Ray
        # accepts (the weights travel in Flower's messages): measured 12-14 s -> 11-12 s to
        # start on 2 busy cores. Ray's own logs stay out of the user's terminal.
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a GPU tip
        ray.init(num_cpus=parallel, num_gpus=0, include_dashboard=False,
                 object_store_memory=RAY_OBJECT_STORE_BYTES,
                 _system_config={"enable_metrics_collection": False},
                 logging_level=logging.INFO if verbose else logging.ERROR,
                 log_to_driver=verbose, configure_logging=True)
    try:
        with _quiet_flower(verbose):
            try:
                run_simulation(server_app=server_app, client_app=client_app,
                               num_supernodes=num_clients,
                               backend_config={"client_resources": {"num_cpus": 1,
                                                                    "num_gpus": 0.0}},
                               verbose_logging=verbose)
            except (RuntimeError, SystemExit) as exc:
                if run.error is not None:
                    raise run.error from None
                raise TfliteOptError(f"the Flower simulation failed: {exc}") from exc
        if run.error is not None:
            raise run.error
    finally:
        if started_ray:
            ray.shutdown()

"""The federated job on the digits: shards, the trainable file, FedAvg, the baseline, the report.

``run_federated_job`` is what ``scripts/federated.py`` runs: the digits' training split is
split among ``clients`` with a Dirichlet(``dirichlet_alpha``) split, a Keras model (the default
Flatten-Dense-Dense, or ``model``) is exported as a trainable ``.tflite`` (builtin ops only),
every client trains it through its ``train`` signature for ``rounds`` rounds of FedAvg (local
engine or Flower), the same file is trained on the pooled data for the same number of epochs
as the baseline, and both are scored on the augmented held-out digits (3,240 images) through
``infer``. Output: the per-round table and plot, ``federated.json`` and ``model_train.tflite``
(the global model, still trainable). An interrupted run resumes from
``OUTPUT_DIR/.work/checkpoint.npz`` when started again with the same flags.

Example:
    >>> result = run_federated_job(FederatedJobConfig(output_dir="outputs/federated"))
    >>> result.federated.accuracy, result.centralized.accuracy
    (0.846, 0.852)
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.federated.baseline import CentralizedResult, train_centralized
from tflite_opt.federated.fedavg import FedAvgConfig, FederatedResult, run_fedavg
from tflite_opt.federated.partition import Partition, dirichlet_partition

ENGINES = ("local", "flower")
WORK = ".work"


@dataclasses.dataclass(frozen=True)
class FederatedJobConfig:
    """Settings of ``run_federated_job`` (the script's flags).

    Attributes:
        output_dir: Folder for the outputs.
        clients: Clients K. Defaults to 10.
        rounds: FedAvg rounds. Defaults to 20.
        local_epochs: Epochs per client per round. Defaults to 2.
        dirichlet_alpha: Concentration of the non-IID split (0.1 skewed .. 100 near IID).
            Defaults to 0.5.
        engine: ``"local"`` (this process) or ``"flower"`` (Flower's simulation engine on Ray).
        client_fraction: Share of clients sampled per round. Defaults to 1.0.
        dropout: Probability that a sampled client is a straggler. Defaults to 0.0.
        seed: Seed of the split, the model's initialization, sampling and shuffling.
        batch_size: Client (and baseline) batch size. Defaults to 32.
        optimizer: ``"sgd"`` or ``"adam"``, in the file's train signature. Defaults to "sgd".
        learning_rate: Its step size. Defaults to 0.05.
        learning_rate_decay: Round ``r``'s clients train at ``learning_rate * decay ** (r - 1)``
            (sent by the server), in (0, 1]; the baseline's pooled epochs of round-equivalent
            ``r`` (``local_epochs`` each) train at the same rate. Defaults to 1.0 (constant).
        hidden_units: Width of the default model's hidden layer. Defaults to 64.
        image_size: Side of the digits images. Defaults to 32.
        eval_copies: Augmented copies of each held-out image (9: 3,240 images).
        model: A Keras model file to federate instead of the default model (its input must be
            ``(image_size, image_size, 1)``, its output 10 classes).
        trainable: Layers the device trains: ``"all"``, ``"head"`` or comma-separated names.
        centralized: Also train the pooled-data baseline. Defaults to True.
        trust_model: Load ``model`` even if it would run code from the file.
        max_parallel_clients: Ray actors for ``engine="flower"``. Defaults to 1.
        progress: Progress bars. Defaults to True.
    """

    output_dir: str
    clients: int = 10
    rounds: int = 20
    local_epochs: int = 2
    dirichlet_alpha: float = 0.5
    engine: str = "local"
    client_fraction: float = 1.0
    dropout: float = 0.0
    seed: int = 0
    batch_size: int = 32
    optimizer: str = "sgd"
    learning_rate: float = 0.05
    learning_rate_decay: float = 1.0
    hidden_units: int = 64
    image_size: int = 32
    eval_copies: int = 9
    model: str | None = None
    trainable: str = "all"
    centralized: bool = True
    trust_model: bool = False
    max_parallel_clients: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InvalidArgumentError(f"engine={self.engine!r} is not one of {ENGINES}")
        if not (isinstance(self.dirichlet_alpha, (int, float)) and 0 < self.dirichlet_alpha
                < float("inf")):
            raise InvalidArgumentError(f"dirichlet_alpha must be a finite number > 0, got "
                                       f"{self.dirichlet_alpha!r}; 0.1 is very non-IID, 100 "
                                       "near IID")
        if not (isinstance(self.clients, int) and 1 <= self.clients <= 1437):
            raise InvalidArgumentError(f"clients must be in 1..1437 (the digits' training "
                                       f"images), got {self.clients!r}")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate
                < float("inf")):
            raise InvalidArgumentError(f"learning_rate must be a finite number > 0, got "
                                       f"{self.learning_rate!r}")
        if not (isinstance(self.hidden_units, int) and self.hidden_units >= 1):
            raise InvalidArgumentError(f"hidden_units must be an integer >= 1, got "
                                       f"{self.hidden_units!r}")
        self.fedavg_config()  # validates rounds, epochs, batch, fraction, dropout, seed

    def fedavg_config(self) -> FedAvgConfig:
        # The file is exported at learning_rate: the server sends rates only for a decay.
        decaying = self.learning_rate_decay != 1
        return FedAvgConfig(rounds=self.rounds, local_epochs=self.local_epochs,
                            batch_size=self.batch_size, client_fraction=self.client_fraction,
                            dropout=self.dropout, seed=self.seed,
                            learning_rate=self.learning_rate if decaying else None,
                            learning_rate_decay=self.learning_rate_decay)


@dataclasses.dataclass(frozen=True)
class FederatedJobResult:
    """What the job measured and wrote."""

    federated: FederatedResult
    centralized: CentralizedResult | None
    difference: Any | None  # report.significance.PairedDifference, federated - centralized
    partition: Partition
    files: dict[str, Path]


def _trainable(value: str) -> str | list[str]:
    return value if value in ("all", "head") else [n.strip() for n in value.split(",") if n.strip()]


def run_federated_job(config: FederatedJobConfig) -> FederatedJobResult:
    """Runs the federated job and writes its outputs (see the module docstring)."""
    from tflite_opt.files import check_output_dir, lock_output_dir, staged_output_dir

    output_dir = check_output_dir(config.output_dir, "--output_dir")  # before TF's import
    from tflite_opt.data.digits_eval import load_digits_eval
    from tflite_opt.federated.model import default_model, export_global_model
    from tflite_opt.federated.report import write_report
    from tflite_opt.ondevice.export import export_trainable
    from tflite_opt.report.significance import mcnemar_difference_ci

    with lock_output_dir(output_dir, f"{WORK}/lock", "--output_dir"):
        work = output_dir / WORK
        data = load_digits_eval(image_size=config.image_size, copies=config.eval_copies)
        partition = dirichlet_partition(data.y_train, config.clients, config.dirichlet_alpha,
                                        seed=config.seed)
        shards = [partition.shard(k, data.x_train, data.y_train)
                  for k in range(partition.num_clients)]
        if config.model:
            from tflite_opt.models.loading import load_model

            model = load_model(config.model, trust_model=config.trust_model)
        else:
            model = default_model(input_shape=data.input_shape, num_classes=data.num_classes,
                                  hidden_units=config.hidden_units, seed=config.seed)
        export = export_trainable(model, work / "model_initial_train.tflite",
                                  trainable=_trainable(config.trainable),
                                  optimizer=config.optimizer, learning_rate=config.learning_rate,
                                  overwrite=True)
        fed_config = config.fedavg_config()
        common = dict(checkpoint=work / "checkpoint.npz", progress=config.progress)
        if config.engine == "flower":
            from tflite_opt.federated.flower import run_flower

            federated = run_flower(export.path, shards, data.x_test, data.y_test, fed_config,
                                   work_dir=work / "flower",
                                   max_parallel_clients=config.max_parallel_clients, **common)
        else:
            federated = run_fedavg(export.path, shards, data.x_test, data.y_test, fed_config,
                                   **common)
        centralized = difference = None
        if config.centralized:
            centralized = train_centralized(export.path, data.x_train, data.y_train, data.x_test,
                                            data.y_test, epochs=config.rounds * config.local_epochs,
                                            batch_size=config.batch_size, seed=config.seed,
                                            progress=config.progress,
                                            learning_rate=fed_config.learning_rate,
                                            learning_rate_decay=config.learning_rate_decay,
                                            epochs_per_round=config.local_epochs)
            difference = mcnemar_difference_ci(federated.correct, centralized.correct)
        with staged_output_dir(output_dir, "--output_dir") as stage:
            files = write_report(federated, stage,
                                 centralized_accuracy=centralized.accuracy if centralized else None,
                                 partition=partition.to_dict(),
                                 extra={"difference_vs_centralized":
                                        difference.to_dict() if difference else None,
                                        "centralized": centralized.to_dict() if centralized else None,
                                        "job": dataclasses.asdict(config),
                                        "ops": list(export.op_names), "flex_ops": export.flex_ops})
            export_global_model(model, export, federated.weights, stage / "model_train.tflite")
        files = {k: output_dir / Path(p).name for k, p in files.items()}
        files["model"] = output_dir / "model_train.tflite"
        shutil.rmtree(work / "flower", ignore_errors=True)
        for name in ("checkpoint.npz", "model_initial_train.tflite"):
            (work / name).unlink(missing_ok=True)
    return FederatedJobResult(federated, centralized, difference, partition, files)

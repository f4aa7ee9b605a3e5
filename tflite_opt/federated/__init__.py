"""Federated averaging of models that train through a ``.tflite`` train signature.

K clients each hold a non-IID shard (``dirichlet_partition``), train locally through the file's
``train`` signature (``tflite_opt.ondevice.OnDeviceTrainer``: what a phone runs), and a server
averages their weights by sample count (FedAvg) for R rounds, with client sampling, stragglers,
checked updates (``exchange``) and resumable checkpoints. ``run_fedavg`` runs it in this
process; ``run_flower`` runs the same client and server logic on Flower's simulation engine.
Names resolve on first use, so neither TensorFlow nor Flower loads until needed.

Example:
    >>> from tflite_opt.federated import FedAvgConfig, dirichlet_partition, run_fedavg
    >>> p = dirichlet_partition(data.y_train, num_clients=10, alpha=0.5, seed=0)
    >>> shards = [p.shard(k, data.x_train, data.y_train) for k in range(p.num_clients)]
    >>> result = run_fedavg("train.tflite", shards, data.x_test, data.y_test, FedAvgConfig())
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    **dict.fromkeys(("Partition", "dirichlet_partition"), "tflite_opt.federated.partition"),
    **dict.fromkeys(("ClientUpdate", "GlobalState", "WeightSpec", "validate_update",
                     "update_to_bytes", "update_from_bytes", "spec_digest", "model_version"),
                    "tflite_opt.federated.exchange"),
    **dict.fromkeys(("FedAvgConfig", "FederatedResult", "RoundRecord", "fedavg", "run_fedavg",
                     "train_client"), "tflite_opt.federated.fedavg"),
    "run_flower": "tflite_opt.federated.flower",
    **dict.fromkeys(("plot_accuracy_per_round", "write_report"), "tflite_opt.federated.report"),
    **dict.fromkeys(("CentralizedResult", "train_centralized"), "tflite_opt.federated.baseline"),
    **dict.fromkeys(("default_model", "export_global_model"), "tflite_opt.federated.model"),
    **dict.fromkeys(("FederatedJobConfig", "FederatedJobResult", "run_federated_job"),
                    "tflite_opt.federated.job"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

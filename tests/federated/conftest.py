"""Fixtures of the federated tests: the digits at 8x8 and a tiny all-Dense model's trainable file.

The export converts a model (a few seconds), so one file serves every test of the session.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

IMAGE = 8  # the digits at their native 8x8: the model stays tiny (64 -> 16 -> 10)


@dataclasses.dataclass(frozen=True)
class TinyRun:
    tflite: bytes
    model: object
    export: object
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    from tflite_opt.data.digits import load_digits
    from tflite_opt.federated.model import default_model
    from tflite_opt.ondevice.export import export_trainable

    data = load_digits(image_size=IMAGE, seed=0)
    model = default_model(input_shape=(IMAGE, IMAGE, 1), hidden_units=16, seed=0)
    path = tmp_path_factory.mktemp("federated") / "tiny_train.tflite"
    export = export_trainable(model, path, trainable="all", optimizer="sgd", learning_rate=0.1)
    return TinyRun(path.read_bytes(), model, export, data.x_train, data.y_train, data.x_test,
                   data.y_test)


@pytest.fixture(scope="session")
def three_shards(tiny_run):
    from tflite_opt.federated.partition import dirichlet_partition

    partition = dirichlet_partition(tiny_run.y_train, num_clients=3, alpha=0.5, seed=0)
    return [partition.shard(k, tiny_run.x_train, tiny_run.y_train) for k in range(3)]

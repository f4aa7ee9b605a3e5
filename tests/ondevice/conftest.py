"""Fixtures of the on-device tests: tiny models of both Kerases, exported once per session.

Each export converts a model (about a second), so the files are shared by the export and the
runner tests. A case is (flavor, model kind, trainable, optimizer, loss, batch_size): together
they cover both Kerases, SGD with momentum and Adam, a frozen conv base with BatchNorm, a
logits output with one-hot labels, a fixed batch size and a frozen layer inside the head.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

IMAGE = 8  # the digits at their native 8x8: the models stay tiny


@dataclasses.dataclass(frozen=True)
class Case:
    flavor: str
    kind: str  # "mlp" (all Dense, trainable="all") or "cnn" (conv base, Dense head)
    optimizer: str
    options: tuple = ()
    loss: str = "sparse_categorical_crossentropy"
    batch_size: int | None = None
    trainable: tuple[str, ...] | None = None  # None: "all" (mlp) or dense1 + classifier (cnn)

    @property
    def id(self) -> str:
        return f"{self.flavor}-{self.kind}-{self.optimizer}"


CASES = (
    Case("tf_keras", "mlp", "sgd", (("learning_rate", 0.1), ("momentum", 0.9))),
    Case("keras3", "mlp", "adam", (("learning_rate", 0.01),)),
    Case("tf_keras", "cnn", "adam", (("learning_rate", 0.01),), loss="categorical_crossentropy"),
    # dense1 trains through a frozen classifier: gradients pass back through a constant layer.
    Case("keras3", "cnn", "sgd", (("learning_rate", 0.1),), batch_size=8, trainable=("dense1",)),
)


def build_model(case: Case) -> Any:
    """A seeded tiny model: MLP 64-16-10 softmax, or conv+BN base with a 16-10 logits head."""
    from tflite_opt._keras import keras_of_flavor

    keras = keras_of_flavor(case.flavor)
    keras.utils.set_random_seed(1)
    inputs = keras.Input((IMAGE, IMAGE, 1))
    if case.kind == "mlp":
        x = keras.layers.Flatten(name="flatten")(inputs)
        x = keras.layers.Dense(16, activation="relu", name="dense1")(x)
        outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(x)
    else:
        x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        x = keras.layers.BatchNormalization(name="bn")(x)
        x = keras.layers.ReLU(name="relu")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(16, activation="tanh", name="dense1")(x)
        x = keras.layers.Dropout(0.0, name="dropout")(x)
        outputs = keras.layers.Dense(10, name="classifier")(x)  # logits
    model = keras.Model(inputs, outputs, name=f"tiny_{case.kind}")
    if case.kind == "cnn":  # BatchNorm statistics that are not the identity
        bn = model.get_layer("bn")
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma * 1.5, beta + 0.1, mean + 0.2, var * 2.0])
    return model


def trainable_of(case: Case) -> Any:
    if case.trainable is not None:
        return list(case.trainable)
    return "all" if case.kind == "mlp" else ["dense1", "classifier"]


@dataclasses.dataclass
class Exported:
    case: Case
    model: Any
    initial_weights: list
    result: Any  # OnDeviceExport


@pytest.fixture(scope="session")
def digits8():
    from tflite_opt.data.digits import load_digits

    return load_digits(image_size=IMAGE, seed=0)


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict[str, Exported]:
    """Every case exported once: case id -> Exported."""
    from tflite_opt.ondevice.export import export_trainable

    folder = tmp_path_factory.mktemp("ondevice")
    out = {}
    for case in CASES:
        model = build_model(case)
        result = export_trainable(model, folder / f"{case.id}.tflite",
                                  trainable=trainable_of(case), optimizer=case.optimizer,
                                  loss=case.loss, batch_size=case.batch_size,
                                  **dict(case.options))
        out[case.id] = Exported(case, model, [np.array(w) for w in model.get_weights()], result)
    return out


def one_hot(y: np.ndarray, classes: int = 10) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[y]

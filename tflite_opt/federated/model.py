"""The model being federated: the trainable ``.tflite`` to start from, and the one to ship after.

The clients and the server only exchange the weights that the ``.tflite`` file trains
(``OnDeviceTrainer.weight_specs``: the trainable layers' kernels and biases, in layer order).
At the end of a run ``export_global_model`` writes them back into a copy of the Keras model and
exports it again, so the result is a new trainable ``.tflite`` (same optimizer, loss and
trainable layers) whose weights are the global model's; phones can infer with it or keep
training it. The file is read back and its weights compared with the global ones bit for bit.

Example:
    >>> export = export_trainable(model, "work/model_train.tflite", trainable="all")
    >>> ...  # run_fedavg(export.path, ...)
    >>> export_global_model(model, export, result.weights, "outputs/model_train.tflite")
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from tflite_opt.errors import InvalidArgumentError


def default_model(input_shape: tuple[int, ...] = (32, 32, 1), num_classes: int = 10,
                  hidden_units: int = 64, seed: int = 0, flavor: str = "keras3") -> Any:
    """The model the federated script and benchmark train by default: Flatten, Dense(relu), Dense.

    Every layer has a builtin-op backward pass in the on-device file, so the whole model
    trains on the device (``trainable="all"``), from a seeded random start.
    """
    from tflite_opt._keras import keras_of_flavor
    from tflite_opt.models.builders import dense_mlp

    keras_of_flavor(flavor).utils.set_random_seed(seed)
    return dense_mlp(input_shape=input_shape, num_classes=num_classes, hidden=(hidden_units,),
                     flavor=flavor)


def with_trained_weights(model: Any, trainable_layers: Sequence[str],
                         weights: Sequence[np.ndarray]) -> Any:
    """A copy of ``model`` whose ``trainable_layers`` hold ``weights`` (in ``weight_specs`` order).

    The on-device file lists each trainable layer's weights (kernel, then bias) layer after
    layer, as Keras's ``layer.get_weights()`` does; the caller's model is not modified.

    Raises:
        InvalidArgumentError: The weights do not match the layers' count or shapes.
    """
    from tflite_opt._keras import keras_flavor, keras_of_flavor

    keras = keras_of_flavor(keras_flavor(model))
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    remaining = list(weights)
    for name in trainable_layers:
        layer = copy.get_layer(name)
        current = layer.get_weights()
        if len(remaining) < len(current):
            raise InvalidArgumentError(f"{len(weights)} weights do not cover the trainable layers "
                                       f"{list(trainable_layers)}: layer {name!r} needs "
                                       f"{len(current)} more")
        taken, remaining = remaining[:len(current)], remaining[len(current):]
        for have, new in zip(current, taken):
            if np.shape(have) != np.shape(new):
                raise InvalidArgumentError(f"layer {name!r} has a weight of shape "
                                           f"{np.shape(have)}, the federated weights give "
                                           f"{np.shape(new)}")
        layer.set_weights([np.asarray(w, dtype=h.dtype) for h, w in zip(current, taken)])
    if remaining:
        raise InvalidArgumentError(f"{len(remaining)} federated weights are left over after "
                                   f"the trainable layers {list(trainable_layers)}")
    return copy


def export_global_model(model: Any, export: Any, weights: Sequence[np.ndarray],
                        path: str | os.PathLike, *, overwrite: bool = True) -> Any:
    """Writes a trainable ``.tflite`` like ``export`` whose weights are ``weights``.

    Args:
        model: The Keras model ``export`` was made from.
        export: The ``OnDeviceExport`` of the run's file (its trainable layers, optimizer,
            loss and batch size are kept).
        weights: The global weights, in the file's ``weight_specs`` order.
        path: The ``.tflite`` to write (atomically).
        overwrite: Replace an existing file. Defaults to True.

    Returns:
        The new file's ``OnDeviceExport``.

    Raises:
        InvalidArgumentError: The weights do not fit the trainable layers, or the written file
            does not hold them exactly.
    """
    from tflite_opt.ondevice.export import export_trainable
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    copy = with_trained_weights(model, export.trainable_layers, weights)
    options = {k: v for k, v in export.optimizer.defaults().items() if k != "learning_rate"}
    if export.optimizer.name == "sgd" and not options.get("momentum"):
        options.pop("momentum", None)
    written = export_trainable(copy, path, trainable=list(export.trainable_layers),
                               optimizer=export.optimizer.name,
                               learning_rate=export.optimizer.learning_rate, loss=export.loss,
                               batch_size=export.batch_size, overwrite=overwrite, **options)
    stored = OnDeviceTrainer(written.path).get_weights()
    if len(stored) != len(weights) or any(not np.array_equal(a, np.asarray(b, a.dtype))
                                          for a, b in zip(stored, weights)):
        raise InvalidArgumentError(f"the exported {str(written.path)!r} does not hold the "
                                   "federated weights exactly; this is a bug, please report it")
    return written

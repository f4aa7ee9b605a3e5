"""Exporting a Keras model as a ``.tflite`` that trains on the device, with builtin ops only.

The file has the ``train``, ``infer``, ``save`` and ``restore`` signatures of TFLite's
on-device training recipe (and ``set_learning_rate``, for schedules), but none of its Flex
ops: the loss, its gradient and the SGD/Adam update are written with builtin ops
(``ondevice/graph.py``), and ``save``/``restore`` return and take the weights instead of
calling ``tf.raw_ops.Save``/``Restore``. So LiteRT's pip
interpreter, and a phone's interpreter without the Flex delegate, run it; ``OnDeviceTrainer``
(``ondevice/runner.py``) drives it from Python and keeps checkpoints in ``.npz`` files.
Optimizer state that starts at zero (Adam's moments, SGD momentum) is created by ``FILL`` ops
when the file loads instead of stored (``ondevice/zero_fill.py``): an Adam head is stored once,
not twice.

Only the head trains (``trainable=``): by default the last layer with weights, on a base
frozen into the file as constants. The head may hold Dense layers and the weightless layers in
``ondevice/head.py``; anything else there is refused, naming the layer.

Example:
    >>> result = export_trainable(model, "outputs/digits_train.tflite", trainable="head",
    ...                           optimizer="adam")
    >>> result.flex_ops, result.signatures
    (0, ('infer', 'restore', 'save', 'set_learning_rate', 'train'))
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from tflite_opt._keras import keras_flavor, tf
from tflite_opt.convert._quiet import quiet_converter
from tflite_opt.errors import ConversionError, InvalidArgumentError
from tflite_opt.files import atomic_write_bytes, check_output_file
from tflite_opt.ondevice.graph import LOSSES, SIGNATURES, TrainingModule
from tflite_opt.ondevice.head import split_model
from tflite_opt.ondevice.optimizers import OptimizerSpec, make_optimizer
from tflite_opt.ondevice.zero_fill import fill_zero_initializers
from tflite_opt.runtime.model_file import operator_codes, read_tflite


@dataclasses.dataclass(frozen=True)
class OnDeviceExport:
    """What ``export_trainable`` wrote.

    Attributes:
        path: The ``.tflite`` file.
        size_bytes: Its size.
        signatures: Its signature names (``infer``, ``restore``, ``save``,
            ``set_learning_rate``, ``train``).
        weight_names: The trainable weights' tensor names in ``save``/``restore``, in order.
        weight_shapes: Their shapes.
        slot_names: The optimizer state's tensor names (SGD's momentum or Adam's m and v per
            weight, then the step counter).
        trainable_layers: The Keras layers the device trains.
        frozen_layers: The head's layers the device runs but does not train.
        optimizer: The optimizer and its hyperparameters.
        loss: The loss.
        batch_size: The ``train`` signature's batch size, or None (any).
        input_shape: One sample's shape.
        num_classes: Classes of the output.
        output: ``"probabilities"`` (the model ends in softmax) or ``"logits"``.
        flex_ops: Flex (Select TF) ops in the file: 0.
        custom_ops: Other custom ops in the file: 0.
        op_names: Every op in the file.
        keras_flavor: ``"keras3"`` or ``"tf_keras"``.
        zero_bytes_dropped: Bytes of stored zero initial values replaced by ``FILL`` ops.
        converter_bytes: Size of the file as the converter wrote it, before that rewrite.
    """

    path: Path
    size_bytes: int
    signatures: tuple[str, ...]
    weight_names: tuple[str, ...]
    weight_shapes: tuple[tuple[int, ...], ...]
    slot_names: tuple[str, ...]
    trainable_layers: tuple[str, ...]
    frozen_layers: tuple[str, ...]
    optimizer: OptimizerSpec
    loss: str
    batch_size: int | None
    input_shape: tuple[int, ...]
    num_classes: int
    output: str
    flex_ops: int
    custom_ops: int
    op_names: tuple[str, ...]
    keras_flavor: str
    zero_bytes_dropped: int = 0
    converter_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        return out


def _check_arguments(model: Any, loss: str, batch_size: int | None) -> tuple[tuple[int, ...], int]:
    if loss not in LOSSES:
        raise InvalidArgumentError(f"loss={loss!r} is not one of {LOSSES}; the on-device loss "
                                   "is written with builtin ops for these only")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise InvalidArgumentError(f"batch_size={batch_size!r} must be None (any batch) or an "
                                   "integer >= 1")
    input_shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else ()
    output_shape = tuple(model.outputs[0].shape[1:]) if len(model.outputs) == 1 else ()
    if any(d is None for d in input_shape) or len(output_shape) != 1 or output_shape[0] is None:
        raise InvalidArgumentError(
            f"model {model.name!r} has input shape {input_shape} and output shape "
            f"{output_shape}; on-device export needs a fixed sample shape and (batch, classes) "
            "outputs: build the model with keras.Input(shape=...) of fixed size")
    return tuple(int(d) for d in input_shape), int(output_shape[0])


def export_trainable(model: Any, path: str | os.PathLike, *,
                     trainable: str | Sequence[str] = "head", optimizer: str = "sgd",
                     learning_rate: float | None = None,
                     loss: str = "sparse_categorical_crossentropy",
                     batch_size: int | None = None, overwrite: bool = False,
                     **optimizer_options: float) -> OnDeviceExport:
    """Writes a ``.tflite`` with ``train``/``infer``/``save``/``restore``/``set_learning_rate``
    signatures on builtin ops.

    Args:
        model: A Keras model (tf_keras or Keras 3) with one input of fixed sample shape and
            one ``(batch, classes)`` output. Its current weights are the file's initial ones.
        path: The ``.tflite`` file to write (atomically).
        trainable: ``"head"`` (the last layer with weights: the classifier), ``"all"`` (every
            layer with weights: an all-Dense model) or a list of layer names. Layers before the
            first trainable one are frozen into the file. Defaults to ``"head"``.
        optimizer: ``"sgd"`` or ``"adam"``, with Keras's formulas. Defaults to ``"sgd"``.
        learning_rate: Initial step size; None takes Keras's default (SGD 0.01, Adam 0.001).
            The file's ``set_learning_rate`` signature changes it at run time (schedules,
            per-client rates).
        loss: ``"sparse_categorical_crossentropy"`` (integer labels) or
            ``"categorical_crossentropy"`` (one-hot labels). A model that ends in softmax is
            trained on the softmax's input (from logits), one that does not on its outputs
            as logits. Defaults to sparse.
        batch_size: Fixes the ``train`` signature's batch size (some phone delegates want
            fixed shapes); None accepts any batch. ``infer`` takes any batch. Defaults to None.
        overwrite: Replace an existing ``path``. Defaults to False.
        **optimizer_options: ``momentum`` for SGD; ``beta_1``, ``beta_2``, ``epsilon`` for Adam.

    Returns:
        An ``OnDeviceExport`` describing the file.

    Raises:
        InvalidArgumentError: Bad ``trainable``, ``optimizer``, ``loss`` or ``batch_size``.
        UnsupportedLayerError: A head layer has no builtin backward pass; the message names it.
        ConversionError: The converter failed, or the file would hold Flex or custom ops.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.

    Example:
        >>> export_trainable(model, "train.tflite", optimizer="adam", learning_rate=1e-3)
    """
    path = check_output_file(path, "path", overwrite=overwrite)
    flavor = keras_flavor(model)
    spec = make_optimizer(optimizer, learning_rate, **optimizer_options)
    input_shape, num_classes = _check_arguments(model, loss, batch_size)
    base, head = split_model(model, trainable)
    module = TrainingModule(base, head, spec, loss, input_shape, num_classes, batch_size)
    converted = _convert(module)
    data, zero_bytes_dropped = fill_zero_initializers(converted)
    codes = operator_codes(read_tflite(data))
    flex = sorted({c.name for c in codes if c.name.startswith("Flex")})
    custom = sorted({c.name for c in codes
                     if c.builtin == "CUSTOM" and not c.name.startswith("Flex")})
    if flex or custom:  # the point of this module; a converter change must not slip through
        raise ConversionError(f"the on-device training file would hold Flex ops {flex} and "
                              f"custom ops {custom}; it must run on builtin ops only. Make "
                              "fewer layers trainable (trainable='head')")
    atomic_write_bytes(path, data, overwrite=overwrite)
    return OnDeviceExport(
        path=path, size_bytes=len(data), signatures=tuple(sorted(SIGNATURES)),
        weight_names=tuple(module.weight_names),
        weight_shapes=tuple(tuple(int(d) for d in v.shape) for v in module.trainable_variables_),
        slot_names=tuple(module.slot_names),
        trainable_layers=tuple(layer.name for layer in head if layer.trainable),
        frozen_layers=tuple(layer.name for layer in head if not layer.trainable and layer.weights),
        optimizer=spec, loss=loss, batch_size=batch_size, input_shape=input_shape,
        num_classes=num_classes, output=module.output_kind, flex_ops=len(flex),
        custom_ops=len(custom), op_names=tuple(sorted({c.name for c in codes})),
        keras_flavor=flavor, zero_bytes_dropped=zero_bytes_dropped,
        converter_bytes=len(converted))


def _convert(module: TrainingModule) -> bytes:
    """Converts the module through a SavedModel (how the converter keeps resource variables)."""
    signatures = module.signatures()
    captured = None
    with tempfile.TemporaryDirectory(prefix="tflite_opt_ondevice_") as folder:
        try:
            with quiet_converter() as captured:
                tf.saved_model.save(module, folder, signatures=signatures)
                converter = tf.lite.TFLiteConverter.from_saved_model(
                    folder, signature_keys=list(SIGNATURES))
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
                converter.experimental_enable_resource_variables = True
                return converter.convert()
        except Exception as exc:  # noqa: BLE001 - reported with the converter's own reason
            errors = [line.strip() for line in (captured.text if captured else "").splitlines()
                      if "error" in line.lower()]
            text = " ".join(" ".join(errors[:3] or [str(exc)]).split())
            raise ConversionError(f"the on-device training graph did not convert with builtin "
                                  f"ops only: {text[:600]}") from None

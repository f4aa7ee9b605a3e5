"""Target profiles: what a consuming runtime needs from the file, applied before conversion.

A target is a registry entry (like the precisions), not a flag scattered through the
converter. The one target today is MediaPipe Tasks' image classifier
(``--target=mediapipe_image_classifier``), the high-level Android path that reads
normalization and labels from the file's metadata. Its C++ core accepts a
``1 x H x W x 3`` uint8 (or float32) image and reads one score tensor, so the
profile:

* checks the model has one 3-channel image input and one ``(batch, classes)`` output
  (a 1-channel model gets the fix: build on RGB, or add the conversion as a first layer);
* wraps it so the file takes raw uint8 RGB pixels: a ``Rescaling`` layer applies the
  model's own normalization inside the graph, exactly (a CAST, then MUL/ADD), for
  every precision, with no input quantization to match;
* keeps float32 scores as output (int8 models dequantize at the end);
* maps the calibration data back to the 0..255 pixels the file now takes;
* makes ``save()`` require labels and embed them with image metadata.

Example:
    >>> result = convert(model, "int8", representative_data=x_train[:200],
    ...                  target="mediapipe_image_classifier")
    >>> result.save("out/digits_rgb.tflite", labels=[str(d) for d in range(10)])
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable

import numpy as np

from tflite_opt.data.calibration import ImagePreprocessing, InputSpec, load_calibration_data
from tflite_opt.errors import DataError, InvalidArgumentError


class Target(str, enum.Enum):
    """A runtime the ``.tflite`` is made for, beyond the plain LiteRT Interpreter.

    Example:
        >>> Target.parse("mediapipe_image_classifier") is Target.MEDIAPIPE_IMAGE_CLASSIFIER
        True
    """

    MEDIAPIPE_IMAGE_CLASSIFIER = "mediapipe_image_classifier"

    @classmethod
    def parse(cls, value: "str | Target") -> "Target":
        """Returns the Target for ``value`` or raises a clear error."""
        try:
            return cls(value.value if isinstance(value, Target) else str(value).lower())
        except ValueError:
            raise InvalidArgumentError(f"target={value!r} is not supported; accepted: "
                                       f"{', '.join(t.value for t in cls)}") from None

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class TargetRequest:
    """A conversion request rewritten for a target: what ``convert()`` then converts.

    Attributes:
        model: The model to convert (the target's wrapper around the user's model).
        representative_data: Calibration samples for ``model`` (None if not needed).
        input_type / output_type: The converter I/O types the target needs.
    """

    model: Any
    representative_data: Any
    input_type: str
    output_type: str


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """What a target does and needs.

    Attributes:
        description: One line for ``--help`` and the docs.
        check: Raises a clear error for a Keras model the target's runtime cannot run.
        prepare: Rewrites a conversion request for the target (see ``prepare_target``).
        requires_labels: ``save()`` must be given labels.
    """

    description: str
    check: Callable[[Any], Any]
    prepare: Callable[..., TargetRequest]
    requires_labels: bool = True


def _keras_model(model: Any) -> Any:
    from tflite_opt._keras import is_keras3_object, keras, keras3

    if isinstance(model, keras.Model) or (is_keras3_object(model) and
                                          isinstance(model, keras3().Model)):
        return model
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        from tflite_opt.models.loading import load_model, model_format

        if model_format(model) != "saved_model":
            return load_model(model, keep_zeros=False)
    raise InvalidArgumentError(
        f"target='mediapipe_image_classifier' needs a Keras model or a .keras/.h5 file, got "
        f"{type(model).__name__} {str(model)[:80]!r}; load the model with tflite_opt.load_model "
        "and pass it")


def _shape(tensor: Any) -> tuple:
    """A Keras tensor's shape as a tuple (tf_keras has TensorShape, Keras 3 a tuple)."""
    shape = tensor.shape
    return tuple(shape.as_list()) if hasattr(shape, "as_list") else tuple(shape)


def _check_image_classifier(model: Any) -> tuple[int, int]:
    """(height, width) of a model MediaPipe's ImageClassifier can run, or a clear error."""
    name = f"model {model.name!r}"
    if len(model.inputs) != 1:
        raise InvalidArgumentError(
            f"{name} has {len(model.inputs)} inputs; MediaPipe's ImageClassifier feeds one image. "
            "Convert a model with a single (height, width, 3) input")
    shape = _shape(model.inputs[0])[1:]
    if len(shape) != 3:
        raise InvalidArgumentError(
            f"{name} takes input of shape {shape}; MediaPipe's ImageClassifier feeds images "
            "(height, width, 3)")
    height, width, channels = shape
    if channels == 1:
        raise InvalidArgumentError(
            f"{name} takes 1-channel (grayscale) images {shape}, but MediaPipe's ImageClassifier "
            "feeds RGB images (height x width x 3). Build the model on RGB input, or add the "
            "channel conversion as its first layer: rgb = keras.Input((H, W, 3)); gray = "
            "keras.layers.Conv2D(1, 1, use_bias=False, trainable=False)(rgb) with its kernel set "
            "to [0.299, 0.587, 0.114] (a fixed 1x1 conv saves and loads safely, a Lambda does "
            "not); model = keras.Model(rgb, model(gray))")
    if channels != 3:
        raise InvalidArgumentError(
            f"{name} takes {channels}-channel images {shape}; MediaPipe's ImageClassifier feeds "
            "RGB (3 channels): build the model on RGB input")
    if height is None or width is None:
        raise InvalidArgumentError(
            f"{name} takes images of any size {shape}; MediaPipe resizes to the model's input "
            "size, which must be fixed: rebuild it with keras.Input((height, width, 3))")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        shapes = [_shape(o) for o in model.outputs]
        raise InvalidArgumentError(
            f"{name} has outputs {shapes}; MediaPipe's ImageClassifier reads one (batch, classes) "
            "score tensor")
    return int(height), int(width)


def _to_pixels(x: np.ndarray, preprocessing: ImagePreprocessing) -> np.ndarray:
    """Inverts ``(pixel * scale - mean) / std`` and rounds to the uint8 pixels the file takes."""
    x = np.asarray(x, np.float64)
    mean = np.asarray(preprocessing.mean, np.float64)
    std = np.asarray(preprocessing.std, np.float64)
    return np.clip(np.round((x * std + mean) / preprocessing.scale), 0, 255).astype(np.uint8)


def _prepare_mediapipe_image_classifier(model: Any, representative_data: Any,
                                        num_calibration_samples: int, min_samples: int,
                                        preprocessing: ImagePreprocessing | None,
                                        needs_calibration: bool) -> TargetRequest:
    from tflite_opt._keras import is_keras3_object, keras, keras3

    model = _keras_model(model)
    height, width = _check_image_classifier(model)
    keras_module = keras3() if is_keras3_object(model) else keras  # the wrapper uses the model's
    pre = preprocessing or ImagePreprocessing()
    mean = np.broadcast_to(np.asarray(pre.mean, np.float32), (3,))
    std = np.broadcast_to(np.asarray(pre.std, np.float32), (3,))
    pixels = keras_module.Input((height, width, 3), dtype="uint8", name="image")
    # Rescaling casts its uint8 input to float: (pixel * scale - mean) / std in the graph.
    normalized = keras_module.layers.Rescaling(scale=pre.scale / std, offset=-mean / std,
                                               name="normalize")(pixels)
    wrapped = keras_module.Model(pixels, model(normalized), name=f"{model.name}_mediapipe")
    calibration = None
    if representative_data is not None and needs_calibration:
        samples = load_calibration_data(
            representative_data, [InputSpec("image", (height, width, 3))],
            num_samples=num_calibration_samples, min_samples=min_samples, preprocessing=pre)[0]
        calibration = _to_pixels(samples, pre)
    return TargetRequest(model=wrapped, representative_data=calibration,
                         input_type="float32", output_type="float32")


TARGETS: dict[Target, TargetSpec] = {
    Target.MEDIAPIPE_IMAGE_CLASSIFIER: TargetSpec(
        "MediaPipe Tasks ImageClassifier: uint8 RGB input, float32 scores, labels in metadata",
        _check_image_classifier, _prepare_mediapipe_image_classifier),
}


def check_model(target: str | Target, model: Any) -> None:
    """Raises a clear error if ``model`` (a Keras model or file) cannot be made for ``target``.

    Example:
        >>> check_model("mediapipe_image_classifier", model)   # before a long training run
    """
    TARGETS[Target.parse(target)].check(_keras_model(model))


def prepare_target(target: str | Target, model: Any, *, representative_data: Any,
                   num_calibration_samples: int, min_samples: int,
                   preprocessing: ImagePreprocessing | None, input_type: str | None,
                   output_type: str | None, needs_calibration: bool) -> TargetRequest:
    """Validates ``model`` for ``target`` and returns the request ``convert()`` runs.

    Raises:
        InvalidArgumentError: unknown target, I/O types given with a target, or a model
            the target's runtime cannot run (the message says how to fix the model).
    """
    parsed = Target.parse(target)
    for arg, value in (("input_type", input_type), ("output_type", output_type)):
        if value is not None:
            raise InvalidArgumentError(
                f"{arg}={value!r} cannot be combined with target={parsed.value!r}, which sets "
                "the I/O types itself (uint8 image in, float32 scores out); drop --"
                f"{arg}")
    return TARGETS[parsed].prepare(model, representative_data, num_calibration_samples,
                                   min_samples, preprocessing, needs_calibration)


def check_save(result: Any, labels: list[str] | None, metadata: bool = True) -> ImagePreprocessing:
    """Checks a target's file can be saved as asked; returns the normalization the app applies.

    Raises:
        DataError: labels are missing (the target's runtime names categories from them).
        InvalidArgumentError: ``metadata=False`` (the target's runtime reads it).
    """
    target = Target.parse(result.target)
    if not metadata:
        raise InvalidArgumentError(f"target={target.value!r} needs the TFLite metadata its runtime "
                                   "reads; save with metadata=True (drop --nometadata)")
    if TARGETS[target].requires_labels and not labels:
        raise DataError(
            f"target={target.value!r} needs labels: MediaPipe's ImageClassifier names each "
            "category from the labels embedded in the file; pass labels=[...] (--labels=FILE, "
            "one label per line)")
    # The file takes raw 0..255 pixels; its own normalization is inside the graph.
    return ImagePreprocessing(scale=1.0)


def to_pixels(x: np.ndarray, preprocessing: ImagePreprocessing | None = None) -> np.ndarray:
    """Model-space images back to the uint8 pixels a target's file takes.

    Example:
        >>> to_pixels(data.x_test)            # [0, 1] floats -> 0..255 uint8
    """
    return _to_pixels(x, preprocessing or ImagePreprocessing())

"""Calibration and evaluation data from any source, validated before conversion.

The TFLite converter reads a representative dataset lazily, in the middle of
conversion, and a wrong shape or dtype then surfaces as a C++ error deep inside
the calibrator. Here every source is read into numpy arrays *first* (at most
``num_samples`` of them) and checked against the model's input signature, so a
bad source fails early with a message that names the expected and the given
shape or dtype.

Sources accepted for each model input:

* a numpy array ``(N, *input_shape)``, or a ``.npy`` / ``.npz`` file path;
* a ``tf.data.Dataset`` whose elements are ``x`` or ``(x, y)``, batched or not;
* a generator function (or iterable) yielding ``x``, ``[x]`` or ``(x, y)``,
  one sample or a batch at a time (the converter's own convention is ``[x]``
  with batch 1);
* a folder of images (searched recursively), resized and normalized with an
  :class:`ImagePreprocessing`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from tflite_opt.data.arrays import load_npy, load_npz, npz_headers
from tflite_opt.errors import DataError, InvalidArgumentError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
DEFAULT_NUM_SAMPLES = 100


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Name, shape (without batch; ``None`` for any size) and dtype of one model input."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclasses.dataclass(frozen=True)
class ImagePreprocessing:
    """How raw pixels become model input: ``((pixel * scale) - mean) / std``.

    The same numbers go into the sidecar JSON next to the ``.tflite`` so that an
    Android app applies exactly the preprocessing the model was calibrated with.

    Args:
        scale: Multiplies the 0..255 pixel values first. Defaults to ``1/255``.
        mean: Subtracted after scaling, one value or one per channel. Defaults to 0.
        std: Divides after subtracting the mean, one value or one per channel.
            Defaults to 1.
        size: ``(height, width)`` to resize to; ``None`` takes the model's input
            size. Defaults to None.
        color_mode: ``"grayscale"``, ``"rgb"`` or ``None`` to follow the model's
            channel count (1 -> grayscale, 3 -> rgb). Defaults to None.

    Example:
        >>> pre = ImagePreprocessing(scale=1 / 127.5, mean=1.0)   # pixels to [-1, 1]
        >>> x = load_calibration_data("images/", [InputSpec("image", (96, 96, 3))],
        ...                           preprocessing=pre)[0]
    """

    scale: float = 1.0 / 255.0
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    size: tuple[int, int] | None = None
    color_mode: str | None = None

    def __post_init__(self) -> None:
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise InvalidArgumentError(f"ImagePreprocessing.scale must be > 0, got {self.scale}")
        means = np.atleast_1d(np.asarray(self.mean, dtype=np.float64))
        if not np.all(np.isfinite(means)):
            raise InvalidArgumentError(f"ImagePreprocessing.mean must be finite, got {self.mean}")
        stds = np.atleast_1d(np.asarray(self.std, dtype=np.float64))
        if np.any(stds <= 0) or not np.all(np.isfinite(stds)):
            raise InvalidArgumentError(f"ImagePreprocessing.std must be > 0, got {self.std}")
        if self.color_mode not in (None, "grayscale", "rgb"):
            raise InvalidArgumentError(f"ImagePreprocessing.color_mode must be 'grayscale', 'rgb' "
                                       f"or None, got {self.color_mode!r}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise InvalidArgumentError(f"ImagePreprocessing.size must be (height, width), got {self.size}")

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Maps ``uint8``-range pixels ``(..., H, W, C)`` to float32 model input."""
        x = pixels.astype(np.float32) * np.float32(self.scale)
        return ((x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        def listify(v: Any) -> Any:
            return [float(t) for t in v] if isinstance(v, (tuple, list)) else float(v)

        return {"formula": "(pixel * scale - mean) / std", "scale": float(self.scale),
                "mean": listify(self.mean), "std": listify(self.std),
                "size": list(self.size) if self.size else None, "color_mode": self.color_mode}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ImagePreprocessing":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known - {"formula"}
        if unknown:
            raise InvalidArgumentError(f"unknown normalization keys {sorted(unknown)}; accepted: {sorted(known)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kw)


def load_calibration_data(source: Any, input_specs: Sequence[InputSpec], *,
                          num_samples: int | None = DEFAULT_NUM_SAMPLES, min_samples: int = 1,
                          preprocessing: ImagePreprocessing | None = None,
                          argument: str = "representative_data") -> list[np.ndarray]:
    """Reads up to ``num_samples`` samples from ``source`` and validates them.

    Args:
        source: A numpy array (or a list/tuple of arrays, one per input), a
            ``.npy``/``.npz`` path, a ``tf.data.Dataset``, a generator function
            or iterable, or a folder of images. See the module docstring.
        input_specs: The model's inputs, in order.
        num_samples: How many samples to use; ``None`` takes all. Arrays are
            subsampled evenly (sorted data still covers every class); streams
            take their first ``num_samples``. Defaults to 100.
        min_samples: Fewer samples than this is an error. Defaults to 1.
        preprocessing: Used for image folders only. Defaults to
            ``ImagePreprocessing()`` (pixels scaled to [0, 1]).
        argument: The argument/flag name used in error messages.

    Returns:
        One float/int array per model input, each ``(n, *input_shape)`` in the
        input's dtype.

    Raises:
        DataError: the source is empty, has too few samples, NaN/inf values, or a
            shape or dtype that does not match ``input_specs`` (the message names
            both).

    Example:
        >>> specs = [InputSpec("image", (16, 16, 1), "float32")]
        >>> (x,) = load_calibration_data(data.x_train, specs, num_samples=50)
        >>> x.shape
        (50, 16, 16, 1)
    """
    if not input_specs:
        raise InvalidArgumentError("input_specs is empty; the model has no inputs to calibrate")
    if num_samples is not None and (not isinstance(num_samples, (int, np.integer)) or num_samples < 1):
        raise InvalidArgumentError(f"num_calibration_samples must be a positive integer, got {num_samples!r}")
    if min_samples < 1:
        raise InvalidArgumentError(f"min_samples must be >= 1, got {min_samples}")
    source = _open_path(source, input_specs, preprocessing, argument, num_samples)
    if isinstance(source, np.ndarray) or _is_array_list(source):
        arrays = [np.asarray(a) for a in (source if isinstance(source, (list, tuple)) else [source])]
        arrays = _subsample(arrays, num_samples, input_specs, argument)
    else:
        arrays = _read_stream(source, input_specs, num_samples, argument)
    return _validate(arrays, input_specs, min_samples, argument)


def load_evaluation_data(source: Any, argument: str = "eval_data") -> tuple[np.ndarray, np.ndarray]:
    """Loads ``(x, y)`` for measuring accuracy from a tuple or an ``.npz`` file.

    The ``.npz`` holds arrays ``x`` and ``y`` (or ``x_test``/``y_test``).

    Example:
        >>> x, y = load_evaluation_data("eval.npz")
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{argument} file {str(path)!r} does not exist; pass an .npz with arrays x and y")
        # Headers first (data/arrays.py): pickles, sizes and truncation fail before a read.
        keys = set(npz_headers(path, argument))
        for xk, yk in (("x", "y"), ("x_test", "y_test"), ("x_eval", "y_eval")):
            if {xk, yk} <= keys:
                arrays = load_npz(path, argument, keys=(xk, yk))
                source = (arrays[xk], arrays[yk])
                break
        else:
            raise DataError(f"{argument} file {str(path)!r} holds arrays {sorted(keys)[:20]}; "
                            "expected 'x' and 'y' (np.savez(path, x=x, y=y))")
    if not isinstance(source, (tuple, list)) or len(source) != 2:
        raise DataError(f"{argument} must be (x, y) arrays or an .npz path, got {type(source).__name__}")
    x, y = (np.asarray(a) for a in source)
    if len(x) == 0:
        raise DataError(f"{argument} is empty (0 samples); pass at least one labelled sample")
    if len(x) != len(y):
        raise DataError(f"{argument} has {len(x)} inputs but {len(y)} labels; they must match")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise DataError(f"{argument} x contains NaN or inf values; clean the data first")
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
        raise DataError(f"{argument} y must hold finite numbers (class indices or one-hot rows), "
                        f"got {y.dtype} with NaN, inf or non-numbers; clean the labels first")
    return x, y


# ----------------------------------------------------------------------------- helpers


def _is_array_list(source: Any) -> bool:
    return isinstance(source, (list, tuple)) and len(source) > 0 and all(
        isinstance(a, np.ndarray) for a in source)


def _open_path(source: Any, specs: Sequence[InputSpec], preprocessing: ImagePreprocessing | None,
               argument: str, num_samples: int | None = None) -> Any:
    if not isinstance(source, (str, os.PathLike)):
        return source
    path = Path(source)
    if not path.exists():
        raise DataError(f"{argument} path {str(path)!r} does not exist; pass an .npy/.npz file or "
                        "a folder of images")
    if path.is_dir():
        return _read_image_folder(path, specs, preprocessing or ImagePreprocessing(), argument,
                                  num_samples)
    suffix = path.suffix.lower()
    # Headers first (data/arrays.py): pickles, sizes and truncation fail before a read.
    if suffix == ".npy":
        return load_npy(path, argument)
    if suffix == ".npz":
        names = list(npz_headers(path, argument))
        for key in ("x", "x_train", "x_calib", "representative_data"):
            if key in names:
                return load_npz(path, argument, keys=[key])[key]
        if len(names) == 1:
            return load_npz(path, argument, keys=names)[names[0]]
        raise DataError(f"{argument} file {str(path)!r} holds arrays {sorted(names)[:20]}; "
                        "name the calibration inputs 'x' (np.savez(path, x=x))")
    raise DataError(f"{argument} file {str(path)!r} has suffix {suffix!r}; accepted: .npy, .npz, "
                    "or a folder of images")


def _read_image_folder(folder: Path, specs: Sequence[InputSpec], pre: ImagePreprocessing,
                       argument: str, num_samples: int | None = None) -> np.ndarray:
    if len(specs) != 1:
        raise DataError(f"{argument}: an image folder feeds one input, but the model has "
                        f"{len(specs)} inputs; pass a list of arrays instead")
    spec = specs[0]
    if len(spec.shape) != 3:
        raise DataError(f"{argument}: an image folder needs a model input of shape (H, W, C); "
                        f"input {spec.name!r} has shape {_fmt(spec.shape)}")
    h, w, c = spec.shape
    size = pre.size or (h, w)
    if size[0] is None or size[1] is None:
        raise DataError(f"{argument}: input {spec.name!r} has dynamic size {_fmt(spec.shape)}; set "
                        "ImagePreprocessing(size=(height, width))")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{argument} folder {str(folder)!r} has no images (looked for "
                        f"{', '.join(IMAGE_SUFFIXES)}, recursively)")
    # Pick the file names first and decode only those: a folder of 50,000 photos for
    # 100 calibration samples must not be decoded whole.
    if num_samples is not None and len(files) > num_samples:
        files = [files[i] for i in _evenly_spaced(len(files), num_samples)]
    return _load_images(files, (int(size[0]), int(size[1])), c, pre, argument)


def _load_images(files: Sequence[Path], size: tuple[int, int], channels: int,
                 pre: ImagePreprocessing, argument: str) -> np.ndarray:
    """Reads, converts, resizes (bilinear) and preprocesses image files into one array."""
    from PIL import Image

    mode = pre.color_mode or ("grayscale" if channels == 1 else "rgb")
    images = []
    for p in files:
        try:
            with Image.open(p) as im:
                im = im.convert("L" if mode == "grayscale" else "RGB")
                im = im.resize((size[1], size[0]), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001 - a broken image names its file
            raise DataError(f"{argument}: could not read image {str(p)!r}: {exc}") from exc
        images.append(arr[..., None] if arr.ndim == 2 else arr)
    return pre.apply(np.stack(images))


def load_image_folder(folder: str | os.PathLike, image_shape: tuple[int, ...],
                      preprocessing: ImagePreprocessing | None = None
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Loads a labeled ``folder/<class>/<images>`` tree for evaluation.

    Class indices follow the sorted subfolder names (as Keras'
    ``image_dataset_from_directory`` does); images are resized to ``image_shape`` and
    preprocessed like calibration images.

    Args:
        folder: The root folder, one subfolder per class.
        image_shape: ``(height, width, channels)`` of the model input.
        preprocessing: Pixel scaling; defaults to ``ImagePreprocessing()`` (pixels / 255).

    Returns:
        ``(x, y, class_names)``.

    Example:
        >>> x, y, classes = load_image_folder("eval_images", (32, 32, 1))
    """
    root = Path(folder)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise DataError(f"image folder {str(root)!r} has no class subfolders; lay it out as "
                        "FOLDER/<class name>/<image files>")
    height, width, channels = (list(image_shape) + [1])[:3]
    files, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                files.append(file)
                labels.append(label)
    if not files:
        raise DataError(f"image folder {str(root)!r} holds no {', '.join(IMAGE_SUFFIXES)} files")
    x = _load_images(files, (int(height), int(width)), int(channels),
                     preprocessing or ImagePreprocessing(), "eval_data")
    return x, np.asarray(labels, np.int64), classes


def _subsample(arrays: list[np.ndarray], n: int | None, specs: Sequence[InputSpec],
               argument: str) -> list[np.ndarray]:
    if len(arrays) != len(specs):
        raise DataError(f"{argument} has {len(arrays)} arrays but the model has {len(specs)} inputs "
                        f"({', '.join(s.name for s in specs)})")
    for a, spec in zip(arrays, specs):
        if a.ndim == 0:
            raise DataError(f"{argument} for input {spec.name!r} is a scalar; expected shape "
                            f"(N, {_fmt(spec.shape, batch=False)})")
    total = len(arrays[0])
    if any(len(a) != total for a in arrays):
        raise DataError(f"{argument} arrays have different sample counts {[len(a) for a in arrays]}")
    if n is None or total <= n:
        return arrays
    idx = _evenly_spaced(total, n)
    return [a[idx] for a in arrays]


def _evenly_spaced(total: int, n: int) -> np.ndarray:
    """``n`` indices spread over ``range(total)``, not the first ``n``: data sorted by
    class (an image folder per class) would otherwise calibrate on a few classes only."""
    return np.linspace(0, total - 1, n).round().astype(np.int64)


def _read_stream(source: Any, specs: Sequence[InputSpec], n: int | None,
                 argument: str) -> list[np.ndarray]:
    from tflite_opt._keras import tf

    if isinstance(source, tf.data.Dataset):
        iterator: Iterable[Any] = source.as_numpy_iterator()
    elif callable(source):
        try:
            iterator = source()
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{argument} generator function raised {type(exc).__name__}: {exc}") from exc
    elif isinstance(source, Iterable) and not isinstance(source, (str, bytes, Mapping)):
        iterator = source
    else:
        raise DataError(f"{argument} has type {type(source).__name__}; accepted: numpy array, "
                        ".npy/.npz path, image folder, tf.data.Dataset, or a generator function")
    if not isinstance(iterator, Iterable):
        raise DataError(f"{argument} generator function returned {type(iterator).__name__}, "
                        "not an iterable; it must yield samples")
    columns: list[list[np.ndarray]] = [[] for _ in specs]
    count = 0
    try:
        for item in iterator:
            parts = _split_item(item, specs, argument)
            batch = _batch_size(parts, specs, argument)
            for col, part in zip(columns, parts):
                col.append(part if batch is not None else part[None])
            count += batch or 1
            if n is not None and count >= n:
                break
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing user generator gets a clear message
        raise DataError(f"reading {argument} failed after {count} samples: "
                        f"{type(exc).__name__}: {exc}") from exc
    if count == 0:
        raise DataError(f"{argument} is empty: it yielded no samples; pass at least one sample")
    arrays = [np.concatenate(col) for col in columns]
    return [a[:n] for a in arrays] if n is not None else arrays


def _split_item(item: Any, specs: Sequence[InputSpec], argument: str) -> list[np.ndarray]:
    if isinstance(item, Mapping):
        missing = [s.name for s in specs if s.name not in item]
        if missing:
            raise DataError(f"{argument} yields dicts with keys {sorted(item)}; expected the input "
                            f"names {[s.name for s in specs]}")
        return [np.asarray(item[s.name]) for s in specs]
    if isinstance(item, (list, tuple)):
        if len(specs) == 1 and len(item) in (1, 2):
            # [x] (converter convention) or (x, y) (supervised datasets).
            first = item[0]
            if isinstance(first, (list, tuple)) and len(first) == 1:
                first = first[0]
            return [np.asarray(first)]
        if len(item) == len(specs):
            return [np.asarray(a) for a in item]
        if len(item) == 2 and isinstance(item[0], (list, tuple)) and len(item[0]) == len(specs):
            return [np.asarray(a) for a in item[0]]
        raise DataError(f"{argument} yields {len(item)} arrays per sample; the model has "
                        f"{len(specs)} inputs ({', '.join(s.name for s in specs)})")
    return [np.asarray(item)]


def _batch_size(parts: list[np.ndarray], specs: Sequence[InputSpec], argument: str) -> int | None:
    """Returns the batch size if the parts are batched, None if they are single samples."""
    sizes = set()
    for part, spec in zip(parts, specs):
        if part.ndim == len(spec.shape) + 1:
            sizes.add(part.shape[0])
        elif part.ndim == len(spec.shape):
            sizes.add(None)
        else:
            raise DataError(f"{argument} for input {spec.name!r}: expected samples of shape "
                            f"{_fmt(spec.shape)} (or batches (N, {_fmt(spec.shape, batch=False)})), "
                            f"given {_fmt(part.shape)}")
    if len(sizes) != 1:
        raise DataError(f"{argument} yields inputs with different batch sizes {sorted(map(str, sizes))}")
    return sizes.pop()


def _validate(arrays: list[np.ndarray], specs: Sequence[InputSpec], min_samples: int,
              argument: str) -> list[np.ndarray]:
    out = []
    for a, spec in zip(arrays, specs):
        given = a.shape[1:]
        expected = spec.shape
        if len(given) != len(expected) or any(e is not None and e != g for e, g in zip(expected, given)):
            raise DataError(
                f"{argument} for input {spec.name!r} has shape {_fmt(a.shape)}; expected "
                f"(N, {_fmt(expected, batch=False)}) to match the model input {_fmt(expected)}"
                f"{_shape_hint(given, expected)}")
        out.append(_cast(a, spec, argument))
    n = len(out[0])
    if n == 0:
        raise DataError(f"{argument} is empty (0 samples); pass at least {min_samples} samples")
    if n < min_samples:
        raise DataError(f"{argument} has only {n} samples; at least {min_samples} are needed for "
                        "a reliable calibration (100-500 is typical)")
    for a, spec in zip(out, specs):
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            bad = int(np.sum(~np.isfinite(a)))
            raise DataError(f"{argument} for input {spec.name!r} contains {bad} NaN or inf values; "
                            "calibration ranges would be meaningless, clean the data first")
    return out


def _cast(a: np.ndarray, spec: InputSpec, argument: str) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if a.dtype == want:
        return a
    if np.issubdtype(want, np.floating) and np.issubdtype(a.dtype, np.floating):
        return a.astype(want)  # float64/float16 -> float32 is a representation change only
    if np.issubdtype(want, np.integer) and np.issubdtype(a.dtype, np.integer) and a.size and \
            np.iinfo(want).min <= a.min() and a.max() <= np.iinfo(want).max:
        return a.astype(want)
    hint = ""
    if np.issubdtype(want, np.floating) and np.issubdtype(a.dtype, np.integer):
        hint = ("; integer pixels must be scaled the way the model expects, e.g. "
                "x.astype('float32') / 255")
    raise DataError(f"{argument} for input {spec.name!r} has dtype {a.dtype}; expected {want} "
                    f"(the model input's dtype){hint}")


def _shape_hint(given: tuple, expected: tuple) -> str:
    if len(given) + 1 == len(expected) and expected[-1] == 1:
        return "; add the channel axis with x[..., None]"
    return ""


def _fmt(shape: Sequence[Any], batch: bool = True) -> str:
    dims = ["None" if d is None else str(d) for d in shape]
    return ("(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")") if batch else ", ".join(dims)


def iterate_samples(arrays: Sequence[np.ndarray], progress: Callable[[Iterator], Iterator] | None = None
                    ) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Turns validated arrays into the converter's ``representative_dataset`` function.

    Each call yields ``[x_i]`` lists with a batch of one, as the converter wants;
    ``progress`` wraps the index iterator (a tqdm bar).

    Example:
        >>> converter.representative_dataset = iterate_samples([x])
    """

    def gen() -> Iterator[list[np.ndarray]]:
        indices: Iterator[int] = iter(range(len(arrays[0])))
        if progress is not None:
            indices = progress(indices)
        for i in indices:
            yield [a[i:i + 1] for a in arrays]

    return gen

"""--target=mediapipe_image_classifier: the file loads and classifies in MediaPipe Tasks.

The bar: a 3-channel classifier converted with the target loads in MediaPipe Tasks'
Python ``ImageClassifier`` (the C++ core Android runs), its category names come from
the labels embedded in the file, and its top-1 accuracy on the digits test images fed
as uint8 RGB through MediaPipe is within 1 point of the same file's accuracy on the
LiteRT interpreter.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tflite_opt.convert import convert, read_metadata
from tflite_opt.convert.targets import to_pixels
from tflite_opt.data.digits_rgb import load_digits_rgb
from tflite_opt.errors import DataError, InvalidArgumentError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "saved_models" / "digits_rgb.keras"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def digits_rgb():
    return load_digits_rgb(image_size=32, seed=0)  # the split the example was trained on


@pytest.fixture(scope="module")
def example_model():
    from tflite_opt.models.loading import load_model

    return load_model(EXAMPLE)


def _mediapipe_predictions(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(path)), max_results=1)
    indices, names = [], []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image in pixels:
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                  data=np.ascontiguousarray(image)))
            top = result.classifications[0].categories[0]
            indices.append(top.index)
            names.append(top.category_name)
    return np.asarray(indices), names


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_mediapipe_image_classifier_matches_litert(example_model, digits_rgb, tmp_path,
                                                    precision):
    from tflite_opt.runtime import evaluate_tflite

    result = convert(example_model, precision, representative_data=digits_rgb.x_train[:100],
                     target="mediapipe_image_classifier", progress=False)
    assert (result.input_type, result.output_type) == ("uint8", "float32")
    saved = result.save(tmp_path / "out" / f"digits_rgb_{precision}.tflite", labels=NAMES)
    # Only the .tflite goes to MediaPipe: the names must come from inside the file.
    alone = tmp_path / "alone" / saved.name
    alone.parent.mkdir()
    shutil.copy(saved, alone)

    pixels = to_pixels(digits_rgb.x_test)
    assert pixels.dtype == np.uint8 and pixels.shape == (360, 32, 32, 3)
    indices, names = _mediapipe_predictions(alone, pixels)
    assert names == [NAMES[i] for i in indices]
    mediapipe_accuracy = float(np.mean(indices == digits_rgb.y_test))
    litert_accuracy = evaluate_tflite(alone, pixels, digits_rgb.y_test).accuracy
    assert abs(mediapipe_accuracy - litert_accuracy) <= 0.01

    # Both run the model the Keras model is: far above chance (10%), and close to the
    # Keras accuracy in this same test (int8 rounding moves a few of the 360 images).
    keras_accuracy = float(np.mean(np.argmax(example_model.predict(
        digits_rgb.x_test, verbose=0), -1) == digits_rgb.y_test))
    assert keras_accuracy > 0.5
    assert litert_accuracy >= keras_accuracy - 0.03

    md = read_metadata(alone)
    assert md["inputs"][0]["color_space"] == "RGB" and md["outputs"][0]["labels"] == NAMES


def test_target_one_channel_model_says_build_on_rgb():
    from tflite_opt._keras import keras

    inputs = keras.Input((16, 16, 1))
    gray = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)), name="gray")
    with pytest.raises(InvalidArgumentError, match=r"model 'gray' takes 1-channel.*Build the "
                                                    r"model on RGB input, or add the channel "
                                                    r"conversion as its first layer"):
        convert(gray, "float32", target="mediapipe_image_classifier")
    # The fix the message gives: a fixed 1x1 conv from RGB to gray in front of the model.
    rgb = keras.Input((16, 16, 3))
    to_gray = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="to_gray")
    fixed = keras.Model(rgb, gray(to_gray(rgb)), name="fixed")
    to_gray.set_weights([np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 1, 3, 1)])
    result = convert(fixed, "float32", target="mediapipe_image_classifier")
    assert (result.input_type, result.output_type) == ("uint8", "float32")


def test_target_rejects_io_types_unknown_target_and_missing_labels(example_model, tmp_path):
    with pytest.raises(InvalidArgumentError, match="input_type='int8' cannot be combined"):
        convert(example_model, "int8", input_type="int8", target="mediapipe_image_classifier")
    with pytest.raises(InvalidArgumentError, match="target='android'.*mediapipe_image_classifier"):
        convert(example_model, "float32", target="android")
    result = convert(example_model, "float32", target="mediapipe_image_classifier")
    with pytest.raises(DataError, match="needs labels"):
        result.save(tmp_path / "m.tflite")
    with pytest.raises(InvalidArgumentError, match="needs the TFLite metadata"):
        result.save(tmp_path / "m.tflite", labels=NAMES, metadata=False)
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
def test_target_applies_normalization_inside_the_graph(digits_rgb, flavor):
    """A model trained on [-1, 1] inputs gets (pixel / 127.5 - 1) in the graph, either Keras."""
    from ai_edge_litert.interpreter import Interpreter

    from tflite_opt._keras import keras, keras3
    from tflite_opt.data.calibration import ImagePreprocessing

    keras = keras3() if flavor == "keras3" else keras
    inputs = keras.Input((32, 32, 3))
    identity = keras.Model(inputs, keras.layers.Flatten()(inputs), name="identity")
    pre = ImagePreprocessing(scale=1 / 127.5, mean=1.0)
    result = convert(identity, "float32", target="mediapipe_image_classifier", preprocessing=pre)
    assert (result.input_type, result.output_type) == ("uint8", "float32")
    pixels = to_pixels(digits_rgb.x_test[:1])
    it = Interpreter(model_content=result.tflite_bytes)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], pixels)
    it.invoke()
    seen = it.get_tensor(it.get_output_details()[0]["index"])
    np.testing.assert_allclose(seen[0], pre.apply(pixels).reshape(-1), atol=1e-6)


def test_convert_cli_target_writes_mediapipe_file(tmp_path, digits_rgb):
    np.save(tmp_path / "calib.npy", digits_rgb.x_train[:50])
    (tmp_path / "labels.txt").write_text("\n".join(NAMES) + "\n")
    out = tmp_path / "out" / "m.tflite"
    base = [sys.executable, str(REPO / "scripts" / "convert.py"), f"--model={EXAMPLE}",
            "--precision=int8", "--target=mediapipe_image_classifier",
            f"--representative_data={tmp_path / 'calib.npy'}", f"--output={out}"]
    refused = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "needs --labels" in refused.stderr
    proc = subprocess.run(base + [f"--labels={tmp_path / 'labels.txt'}", "--author=ACME"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "input uint8, output float32" in proc.stdout
    md = read_metadata(out)
    assert md["author"] == "ACME" and md["outputs"][0]["labels"] == NAMES


def test_digits_rgb_are_colored_seeded_and_keep_the_split(digits_rgb):
    from tflite_opt.data.digits import load_digits

    gray = load_digits(image_size=32, seed=0)
    again = load_digits_rgb(image_size=32, seed=0)
    np.testing.assert_array_equal(again.x_test, digits_rgb.x_test)  # seeded: same images
    np.testing.assert_array_equal(digits_rgb.y_test, gray.y_test)  # same split as the gray digits
    x = digits_rgb.x_train
    assert x.shape == (1437, 32, 32, 3) and 0.0 <= x.min() and x.max() <= 1.0
    # Ink and background colors differ per image and per channel: not a gray image thrice.
    assert np.mean(np.abs(x[..., 0] - x[..., 1]) > 0.05) > 0.3
    brightest = x.reshape(len(x), -1, 3).max(axis=1)
    assert np.std(brightest, axis=0).min() > 0.05
    # The digit stays where it was: the gray image is an affine function of each channel.
    ink = x[0][gray.x_train[0][..., 0] == 1.0]
    assert np.allclose(ink, ink[0], atol=1e-6)


def test_make_rgb_example_trains_saves_and_writes_mediapipe_file(tmp_path):
    out, saved = tmp_path / "rgb" / "m.tflite", tmp_path / "m.keras"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_rgb_example.py"),
                           "--epochs=1", f"--save_model={saved}", f"--output={out}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert saved.is_file() and "test accuracy: Keras" in proc.stdout
    md = read_metadata(out)
    assert md["inputs"][0]["color_space"] == "RGB"
    assert md["outputs"][0]["labels"] == [str(d) for d in range(10)]


def test_pipeline_target_needs_rgb_model_before_training(tmp_path):
    from tflite_opt.pipeline import PipelineConfig, load_data, run_pipeline

    with pytest.raises(InvalidArgumentError, match="target='mediapipe' is not supported"):
        PipelineConfig(output_dir=str(tmp_path / "a"), target="mediapipe")
    with pytest.raises(InvalidArgumentError, match="needs the TFLite metadata"):
        PipelineConfig(output_dir=str(tmp_path / "a"), target="mediapipe_image_classifier",
                       metadata=False)
    config = PipelineConfig(output_dir=str(tmp_path / "b"), target="mediapipe_image_classifier")
    with pytest.raises(InvalidArgumentError, match="needs an RGB model.*digits_rgb.keras"):
        run_pipeline(config)  # the bundled CNN is grayscale: refused before any training
    data = load_data(None, (32, 32, 3))  # an RGB model gets the painted digits
    assert data.x_train.shape[1:] == (32, 32, 3) and data.name == "digits_rgb"

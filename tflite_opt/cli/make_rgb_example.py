"""make_rgb_example: the RGB example, from nothing to a file MediaPipe Tasks' ImageClassifier loads.

    python scripts/make_rgb_example.py                 # or: make rgb-example
    python scripts/make_rgb_example.py --model=saved_models/digits_rgb.keras   # skip training

Trains a small MobileNet-like classifier on the digits painted in color (upscaled to
32x32 RGB; nothing downloads), saves it to --save_model, converts it to full int8 with
--target=mediapipe_image_classifier (uint8 RGB in, float32 scores out, labels and
metadata embedded) into --output, and prints its accuracy through the LiteRT interpreter.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from tflite_opt.cli import _common

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "An already trained RGB model (.keras/.h5) to convert instead "
                    "of training one.")
flags.DEFINE_string("save_model", "saved_models/digits_rgb.keras", "Where to save the trained "
                    "Keras model ('' to not save it).")
flags.DEFINE_string("output", "outputs/rgb/digits_rgb_int8.tflite", "The MediaPipe-ready .tflite "
                    "(its sidecar .json and labels.txt go beside it).")
flags.DEFINE_enum("precision", "int8", ["float32", "float16", "dynamic", "int8"], "Precision.")
flags.DEFINE_integer("epochs", 30, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the split, the colors and the initialization.",
                     lower_bound=0)
flags.DEFINE_bool("overwrite", False, "Replace existing output files.")


def main(argv) -> None:
    _common.reject_extra_args(argv)
    from tflite_opt.errors import InvalidArgumentError, OutputExistsError
    from tflite_opt.files import atomic_save_model

    output = Path(FLAGS.output)
    save_model = Path(FLAGS.save_model) if FLAGS.save_model and not FLAGS.model else None
    if output.suffix != ".tflite":
        raise InvalidArgumentError(f"--output={FLAGS.output!r} must end in .tflite")
    if save_model is not None and save_model.suffix not in (".keras", ".h5"):
        raise InvalidArgumentError(f"--save_model={FLAGS.save_model!r} must end in .keras or .h5")
    existing = [str(p) for p in (output, output.with_suffix(".json"), save_model)
                if p is not None and p.exists()]
    if existing and not FLAGS.overwrite:
        raise OutputExistsError(f"{', '.join(existing)} already exist(s); pass --overwrite to "
                                "replace, or choose other --output/--save_model paths")

    from tflite_opt.convert import convert
    from tflite_opt.convert.targets import to_pixels
    from tflite_opt.data.digits_rgb import load_digits_rgb
    from tflite_opt.models.loading import load_model
    from tflite_opt.models.rgb_classifier import train_rgb_classifier
    from tflite_opt.runtime import evaluate_tflite

    data = load_digits_rgb(image_size=32, seed=FLAGS.seed)
    if FLAGS.model:
        model = load_model(FLAGS.model)
    else:
        print(f"training the RGB example: {FLAGS.epochs} epochs on {len(data.x_train)} images")
        model = train_rgb_classifier(data, epochs=FLAGS.epochs, seed=FLAGS.seed)
    _, keras_accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    if save_model is not None:
        # A fresh, unbuilt optimizer keeps the file small (no Adam slots) yet ready to fit.
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        atomic_save_model(model, save_model)
        print(f"saved {save_model} (Keras test accuracy {100 * keras_accuracy:.2f}%)")

    result = convert(model, FLAGS.precision, representative_data=data.x_train[:200],
                     target="mediapipe_image_classifier")
    path = result.save(output, overwrite=FLAGS.overwrite, labels=[str(d) for d in range(10)])
    accuracy = evaluate_tflite(path, to_pixels(data.x_test), data.y_test).accuracy
    print(f"wrote {path} ({path.stat().st_size} bytes; input uint8 RGB 32x32, output float32 "
          f"scores, labels and metadata embedded)")
    print(f"test accuracy: Keras {100 * keras_accuracy:.2f}%, {FLAGS.precision} .tflite on LiteRT "
          f"{100 * accuracy:.2f}% ({len(data.y_test)} images fed as uint8 RGB)")


def cli() -> None:
    _common.run(main)


if __name__ == "__main__":
    cli()

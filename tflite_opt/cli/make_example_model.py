"""make_example_model: trains the bundled digits CNN and saves it for the README examples.

    python scripts/make_example_model.py --output=saved_models/digits_cnn.keras
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from tflite_opt.cli import _common

FLAGS = flags.FLAGS
flags.DEFINE_string("output", "saved_models/digits_cnn.keras", "Where to save the model (.keras or .h5).")
flags.DEFINE_integer("epochs", 20, "Training epochs.")
flags.DEFINE_integer("image_size", 32, "Side of the upscaled digits images.")
flags.DEFINE_integer("seed", 0, "Seed of the split and the initialization.")
flags.DEFINE_bool("overwrite", False, "Replace the output file if it exists.")


def main(argv) -> None:
    _common.reject_extra_args(argv)

    from tflite_opt.data.digits import load_digits
    from tflite_opt.errors import InvalidArgumentError, OutputExistsError
    from tflite_opt.files import atomic_save_model
    from tflite_opt.models.training import train_digits_cnn

    output = Path(FLAGS.output)
    if output.suffix not in (".keras", ".h5"):
        raise InvalidArgumentError(f"--output={FLAGS.output!r} must end in .keras or .h5")
    if output.exists() and not FLAGS.overwrite:
        raise OutputExistsError(f"{FLAGS.output!r} exists; pass --overwrite to replace it")
    data = load_digits(image_size=FLAGS.image_size, seed=FLAGS.seed)
    model = train_digits_cnn(data, epochs=FLAGS.epochs, seed=FLAGS.seed)
    _, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    # A fresh, unbuilt optimizer keeps the file small (no Adam slots) yet ready to fit.
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    atomic_save_model(model, output)
    print(f"saved {output} (test accuracy {100 * accuracy:.2f}%)")


def cli() -> None:
    _common.run(main)


if __name__ == "__main__":
    cli()

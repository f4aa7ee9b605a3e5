"""A plain Keras training script on the digits, plus the three lines that optimize it.

Everything not marked ``# tflite_opt (n/3)`` is an ordinary ``compile``/``fit`` script. The
three marked lines prune the model to 75% sparsity while it trains (the ramp ends at 60% of
training so the rest fine-tunes at full sparsity), keep the pruning schedule in step, and
write a stripped, int8 ``.tflite`` (about a quarter of the float size, and far
smaller again once gzip-compressed, since three quarters of the weights are zero).

Usage:
    python scripts/train_example.py --output=digits_pruned_int8.tflite [--epochs=12]
"""

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":
    # Replace scripts/ on sys.path so scripts/inspect.py cannot shadow the stdlib inspect.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="digits_pruned_int8.tflite", help="output .tflite")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args()

    import tflite_opt
    from tflite_opt import train
    from tflite_opt._keras import keras
    from tflite_opt.export import export

    data = tflite_opt.load_digits(image_size=32)
    batch_size = 32
    steps_per_epoch = int(np.ceil(len(data.x_train) / batch_size))

    keras.utils.set_random_seed(0)
    model = tflite_opt.digits_cnn(input_shape=data.input_shape)
    model = train.prune(model, target_sparsity=0.75, end_step=int(0.6 * args.epochs * steps_per_epoch))  # tflite_opt (1/3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=args.epochs,
              validation_data=(data.x_test, data.y_test), verbose=2,
              callbacks=[keras.callbacks.TerminateOnNaN(), *train.training_callbacks(model)])  # tflite_opt (2/3)
    path = export(model, args.output, "int8", representative_data=data.x_train[:200], overwrite=args.overwrite)  # tflite_opt (3/3)

    from tflite_opt.runtime import evaluate_tflite, gzip_size

    accuracy = evaluate_tflite(path, data.x_test, data.y_test).accuracy
    stats = train.weight_stats(train.strip(model))
    print(f"wrote {path} ({path.stat().st_size} bytes, {gzip_size(path.read_bytes())} gzipped); "
          f"int8 test accuracy {accuracy:.4f}; dense1 sparsity {stats['dense1']['sparsity']:.2f}")


if __name__ == "__main__":
    main()

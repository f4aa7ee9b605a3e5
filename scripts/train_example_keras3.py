"""A plain Keras 3 training script (``import keras``) on the digits, plus the three lines
that optimize it.

Everything not marked ``# tflite_opt (n/3)`` is an ordinary Keras 3 script: the model, the
optimizer and the callbacks are Keras 3's own, and nothing about TensorFlow's Keras setting is
changed. The three marked lines are the same as for a tf_keras script
(``scripts/train_example.py``): tflite_opt sees that the model is a Keras 3 model and prunes it
with its own Keras 3 wrappers (75% sparsity, the ramp ending at 60% of training), keeps the
schedule in step and writes a stripped, int8 ``.tflite``.

Usage:
    python scripts/train_example_keras3.py --output=digits_pruned_int8_keras3.tflite [--epochs=12]
"""

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":
    # Replace scripts/ on sys.path so scripts/inspect.py cannot shadow the stdlib inspect.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402


def build_model(input_shape: tuple[int, int, int], num_classes: int = 10):
    import keras

    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", name="conv3")(x)
    x = keras.layers.BatchNormalization(name="bn3")(x)
    x = keras.layers.ReLU(name="relu3")(x)
    x = keras.layers.MaxPooling2D(name="pool3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="digits_cnn_keras3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="digits_pruned_int8_keras3.tflite", help="output .tflite")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args()

    import keras

    import tflite_opt

    data = tflite_opt.load_digits(image_size=32)
    batch_size = 32
    steps_per_epoch = int(np.ceil(len(data.x_train) / batch_size))

    keras.utils.set_random_seed(0)
    model = build_model(data.input_shape)
    model = tflite_opt.prune(model, target_sparsity=0.75, end_step=int(0.6 * args.epochs * steps_per_epoch))  # tflite_opt (1/3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=args.epochs,
              validation_data=(data.x_test, data.y_test), verbose=2,
              callbacks=[keras.callbacks.TerminateOnNaN(), *tflite_opt.training_callbacks(model)])  # tflite_opt (2/3)
    path = tflite_opt.export(model, args.output, "int8", representative_data=data.x_train[:200], overwrite=args.overwrite)  # tflite_opt (3/3)

    from tflite_opt.runtime import evaluate_tflite, gzip_size

    accuracy = evaluate_tflite(path, data.x_test, data.y_test).accuracy
    stats = tflite_opt.weight_stats(tflite_opt.strip(model))
    print(f"wrote {path} ({path.stat().st_size} bytes, {gzip_size(path.read_bytes())} gzipped); "
          f"int8 test accuracy {accuracy:.4f}; dense1 sparsity {stats['dense1']['sparsity']:.2f}; "
          f"Keras {keras.__version__}")


if __name__ == "__main__":
    main()

"""Runs a one-epoch-per-stage plan under MirroredStrategy on two logical CPUs; prints JSON.

Run in its own process: logical devices must be configured before TensorFlow initializes.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tflite_opt._keras import keras, tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from tflite_opt.data.digits import load_digits  # noqa: E402
from tflite_opt.models.builders import digits_cnn  # noqa: E402
from tflite_opt.train import ClusterStage, OptimizationPlan, PruneStage, QATStage, Recipe  # noqa: E402


def main() -> None:
    keras.utils.set_random_seed(0)
    data = load_digits(image_size=16, seed=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = digits_cnn(input_shape=(16, 16, 1), width=8, dense_units=32)
    recipe = Recipe(stages=(PruneStage(epochs=1, schedule="constant", target_sparsity=0.5, frequency=1),
                            ClusterStage(epochs=1, number_of_clusters=8),
                            QATStage(epochs=1, scheme="pcqat")))
    result = OptimizationPlan(recipe).run(model, (data.x_train[:128], data.y_train[:128]),
                                          batch_size=32, strategy=strategy, verbose=0)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "sparsity": result.sparsity,
                      "max_unique_weights": result.max_unique_weights,
                      "stages": [s.name for s in result.stages]}))


if __name__ == "__main__":
    main()

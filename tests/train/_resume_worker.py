"""Runs a checkpointed plan; with --kill_after_epoch=N it SIGKILLs itself after epoch N.

Usage: python _resume_worker.py CHECKPOINT_DIR [KILL_AFTER_EPOCH]
Prints one JSON line with the stage records and the final stripped model's structure.
"""

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tflite_opt._keras import keras  # noqa: E402
from tflite_opt.data.digits import load_digits  # noqa: E402
from tflite_opt.models.builders import digits_cnn  # noqa: E402
from tflite_opt.train import ClusterStage, OptimizationPlan, PruneStage, Recipe, weight_stats  # noqa: E402


class KillAfterEpoch(keras.callbacks.Callback):
    """Kills the process (SIGKILL, no cleanup) at the end of the given epoch of the first fit."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.kill_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    checkpoint_dir = sys.argv[1]
    kill_after = int(sys.argv[2]) if len(sys.argv) > 2 else None
    keras.utils.set_random_seed(0)
    data = load_digits(image_size=16, seed=0)
    model = digits_cnn(input_shape=(16, 16, 1), width=8, dense_units=32)
    recipe = Recipe(stages=(PruneStage(epochs=3, target_sparsity=0.6, frequency=2),
                            ClusterStage(epochs=1, number_of_clusters=8)))
    callbacks = [KillAfterEpoch(kill_after)] if kill_after else []
    result = OptimizationPlan(recipe).run(model, (data.x_train[:192], data.y_train[:192]),
                                          batch_size=32, callbacks=callbacks,
                                          checkpoint_dir=checkpoint_dir, verbose=2)
    structure = [[layer.name, type(layer).__name__, [list(w.shape) for w in layer.weights]]
                 for layer in result.model.layers]
    print("RESULT " + json.dumps({"stages": [s.to_dict() for s in result.stages],
                                  "structure": structure, "layers": weight_stats(result.model)}))


if __name__ == "__main__":
    main()

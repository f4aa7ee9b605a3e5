"""Runs a checkpointed plan; with KILL=S:E it SIGKILLs itself after epoch E of stage S.

Usage: python _resume_worker.py CHECKPOINT_DIR [S:E|-] [cluster|qat]
The recipe is prune(3 epochs) -> cluster(1) (default) or prune(2) -> PQAT(2) (``qat``).
Prints one JSON line with the stage records and the final model's structure.
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
from tflite_opt.train import (ClusterStage, OptimizationPlan, PruneStage, QATStage, Recipe,  # noqa: E402
                              weight_stats)


class KillAfterEpoch(keras.callbacks.Callback):
    """Kills the process (SIGKILL, no cleanup) at the end of epoch E of the S-th fit (0-based)."""

    def __init__(self, stage: int, epoch: int) -> None:
        super().__init__()
        self.kill_stage, self.kill_epoch = stage, epoch
        self.fits = -1

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_epoch_end(self, epoch, logs=None):
        if self.fits == self.kill_stage and epoch + 1 == self.kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    checkpoint_dir = sys.argv[1]
    kill = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
    variant = sys.argv[3] if len(sys.argv) > 3 else "cluster"
    keras.utils.set_random_seed(0)
    data = load_digits(image_size=16, seed=0)
    model = digits_cnn(input_shape=(16, 16, 1), width=8, dense_units=32)
    if variant == "qat":
        recipe = Recipe(stages=(PruneStage(epochs=2, target_sparsity=0.6, frequency=2),
                                QATStage(epochs=2, scheme="pqat")))
    else:
        recipe = Recipe(stages=(PruneStage(epochs=3, target_sparsity=0.6, frequency=2),
                                ClusterStage(epochs=1, number_of_clusters=8)))
    callbacks = [KillAfterEpoch(*map(int, kill.split(":")))] if kill else []
    result = OptimizationPlan(recipe).run(model, (data.x_train[:192], data.y_train[:192]),
                                          batch_size=32, callbacks=callbacks,
                                          checkpoint_dir=checkpoint_dir, verbose=2)
    structure = [[layer.name, type(layer).__name__, [list(w.shape) for w in layer.weights]]
                 for layer in result.model.layers]
    print("RESULT " + json.dumps({"stages": [s.to_dict() for s in result.stages],
                                  "structure": structure, "layers": weight_stats(result.model)}))


if __name__ == "__main__":
    main()

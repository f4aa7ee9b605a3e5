"""Training-time optimization: pruning, clustering, QAT, their combination as a staged plan.

Three lines added to an existing training script::

    model = train.prune(model, 0.75, end_step=epochs * steps_per_epoch)    # 1
    model.compile(...); model.fit(..., callbacks=train.training_callbacks(model))  # 2 (callbacks)
    model = train.strip(model)                                               # 3

Or the whole collaborative-optimization chain from a recipe::

    result = OptimizationPlan(Recipe.default()).run(model, train_data=(x, y))
"""

from tflite_opt.train.callbacks import PruningStep, SparsityLogger, StageSummary
from tflite_opt.train.distill import Distiller, distill
from tflite_opt.train.plan import OptimizationPlan, PlanResult, StageRecord, fresh_optimizer
from tflite_opt.train.prune import pruning_schedule
from tflite_opt.train.qat import QAT_SCHEMES
from tflite_opt.train.recipe import (ClusterStage, DistillStage, LayerPolicy, PruneStage,
                                     QATStage, Recipe, SelfDistill)
from tflite_opt.train.scope import optimize_scope

# The public verbs take Keras 3 and tf_keras models: dispatch.py picks the implementation.
# Imported after the tf_keras modules of the same names (prune, cluster, stats), which are
# loaded first so that loading them later cannot rebind these package attributes.
from tflite_opt.train import cluster as _cluster_module, stats as _stats_module  # noqa: E402,F401
from tflite_opt.train.dispatch import (cluster, prune, quantize_aware, strip,  # noqa: E402
                                       training_callbacks, weight_stats)

__all__ = [
    "ClusterStage", "DistillStage", "Distiller", "LayerPolicy", "OptimizationPlan", "PlanResult",
    "PruneStage", "PruningStep", "QATStage", "QAT_SCHEMES", "Recipe", "SelfDistill",
    "SparsityLogger", "StageRecord", "StageSummary", "cluster", "distill", "fresh_optimizer",
    "optimize_scope", "prune", "pruning_schedule", "quantize_aware", "strip",
    "training_callbacks", "weight_stats",
]

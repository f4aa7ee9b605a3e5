"""Training-time optimization: pruning, clustering, QAT, their combination as a staged plan.

Three lines added to an existing training script::

    model = train.prune(model, 0.75, end_step=epochs * steps_per_epoch)    # 1
    model.compile(...); model.fit(..., callbacks=train.training_callbacks(model))  # 2 (callbacks)
    model = train.strip(model)                                               # 3

Or the whole collaborative-optimization chain from a recipe::

    result = OptimizationPlan(Recipe.default()).run(model, train_data=(x, y))
"""

from tflite_opt.train.callbacks import PruningStep, SparsityLogger, StageSummary, training_callbacks
from tflite_opt.train.cluster import cluster
from tflite_opt.train.plan import OptimizationPlan, PlanResult, StageRecord, fresh_optimizer
from tflite_opt.train.prune import prune, pruning_schedule, strip
from tflite_opt.train.qat import QAT_SCHEMES, quantize_aware
from tflite_opt.train.recipe import ClusterStage, LayerPolicy, PruneStage, QATStage, Recipe
from tflite_opt.train.scope import optimize_scope
from tflite_opt.train.stats import weight_stats

__all__ = [
    "ClusterStage", "LayerPolicy", "OptimizationPlan", "PlanResult", "PruneStage", "PruningStep",
    "QATStage", "QAT_SCHEMES", "Recipe", "SparsityLogger", "StageRecord", "StageSummary", "cluster",
    "fresh_optimizer", "optimize_scope", "prune", "pruning_schedule", "quantize_aware", "strip",
    "training_callbacks", "weight_stats",
]

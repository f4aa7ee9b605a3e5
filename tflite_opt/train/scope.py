"""optimize_scope: the loading scope for models saved while wrapped (prune/cluster/QAT).

Defined with the rest of model loading in ``tflite_opt.models.loading``; re-exported here
because training scripts reach for it next to ``prune``/``cluster``/``quantize_aware``.
"""

from tflite_opt.models.loading import optimize_scope

__all__ = ["optimize_scope"]

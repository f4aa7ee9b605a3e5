"""The one place that imports TensorFlow and Keras for tflite_opt.

tensorflow-model-optimization 0.8.1 only works with Keras 2 (``tf_keras``). Since
TensorFlow 2.16, ``tf.keras`` is Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set
*before TensorFlow is first imported*, so every module of the package imports
``tf`` and ``keras`` from here instead of importing TensorFlow itself.
"""

from __future__ import annotations

import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    # Too late to switch tf.keras to Keras 2; tf_keras still works when used
    # directly, which is all tflite_opt and tfmot need, so warn instead of failing.
    warnings.warn(
        "TensorFlow was imported before tflite_opt without TF_USE_LEGACY_KERAS=1; "
        "tflite_opt uses tf_keras (Keras 2) directly. Import tflite_opt first, or "
        "export TF_USE_LEGACY_KERAS=1, so that tf.keras is Keras 2 as well.",
        stacklevel=2,
    )
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]

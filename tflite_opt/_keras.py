"""The one place that imports TensorFlow and Keras for tflite_opt.

tensorflow-model-optimization 0.8.1 only works with Keras 2 (``tf_keras``). Since
TensorFlow 2.16, ``tf.keras`` is Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set
*before TensorFlow is first imported*, so every module of the package imports
``tf`` and ``keras`` from here instead of importing TensorFlow itself.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tflite_opt/__init__ set it too (and warns if late)


def _import_quietly():
    """Imports TensorFlow and tf_keras with the C++ start-up lines kept off stderr.

    TensorFlow's native code logs oneDNN/CUDA/CPU-feature notices at import and at the
    first device enumeration (through absl before its logging is initialized, so
    TF_CPP_MIN_LOG_LEVEL does not stop them); ``TFLITE_OPT_SHOW_TF_IMPORT_LOGS=1`` shows
    them. File descriptor 2 is pointed at a temporary file for the import only; if
    the import fails, what was captured is printed so nothing is lost.
    """
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
            import tf_keras

            # Enumerating devices is where the CUDA probe logs on CPU-only machines; it
            # does not initialize the runtime, so logical devices can still be set later.
            tensorflow.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tensorflow, tf_keras


if os.environ.get("TFLITE_OPT_SHOW_TF_IMPORT_LOGS") == "1":
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402
else:
    tf, keras = _import_quietly()

__all__ = ["tf", "keras"]

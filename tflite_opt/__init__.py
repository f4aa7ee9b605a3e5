"""tflite_opt: a Keras model in, a fast, small, accurate ``.tflite`` out.

The public API is re-exported here (and pinned by ``tests/test_public_api.py``).
"""

from tflite_opt import _keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads)
from tflite_opt import errors
from tflite_opt.data.digits import Dataset, load_digits
from tflite_opt.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from tflite_opt.models.builders import dense_mlp, digits_cnn, mobilenet_v2
from tflite_opt.models.loading import load_model

__version__ = "0.1.0"

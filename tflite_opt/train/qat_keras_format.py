"""tfmot's QAT layers rebuilt from a ``.keras`` file with the variables they were saved with.

Why a tfmot 0.8.1 QAT model saved as ``.keras`` does not load in tf_keras 2.21 ("Layer
'quantize_layer' expected 5 variables, but received 3"), read in tf_keras's
``saving_lib``/``base_layer`` and tfmot's ``quantize_layer.py``/``quantize_wrapper.py``:
the ``.keras`` format rebuilds each layer from its config, then calls its
``build_from_config`` (the saved input shape), then calls it on the model's tensors, and at
last restores each layer's *own* variables by position (``_trainable_weights`` then
``_non_trainable_weights``, nothing deduplicated). Two tfmot layers create other variables
along that path than they had when saved:

1. ``QuantizeLayer.build`` never marks the layer built (it does not call ``Layer.build``).
   ``build_from_config`` builds it, and the call on the model's tensors builds it again:
   5 variables where 3 were saved.
2. ``QuantizeWrapperV2.build`` first copies the wrapped layer's trainable weights into its
   own list (so that their order survives QAT), but only those that exist: when
   ``quantize_apply`` wraps a layer it is built (kernel, bias, then the kernel once more);
   when ``build_from_config`` builds the wrapper, the wrapped layer is not built yet and
   the list holds the kernel alone: 6 variables where 8 were saved.

The two classes here fix only those: a ``QuantizeLayer`` that builds once and a
``QuantizeWrapperV2`` that builds its wrapped layer first. ``tflite_opt.optimize_scope()``
(and so ``tflite_opt.load_model``) substitutes them for tfmot's classes of the same name,
for every format: the ``.h5``/SavedModel paths already built each layer once, with the same
weights. They keep tfmot's class names, because the ``.keras`` format names a layer's
weights after its class (``layers/quantize_wrapper_v2/vars/0``) and the config after its
class name: a model loaded with them saves a file that tfmot's own ``quantize_scope`` reads
as before. Nothing here runs code from a file.

Example:
    >>> qat = quantize_aware(model, "qat")
    >>> qat.save("qat.keras")
    >>> with tflite_opt.optimize_scope():        # uses these classes
    ...     again = keras.models.load_model("qat.keras")
"""

from __future__ import annotations

from typing import Any

from tflite_opt._keras import import_tfmot

import_tfmot()  # before tfmot's submodules: keeps the user's TF_USE_LEGACY_KERAS as it was

# pylint: disable=wrong-import-position
from tensorflow_model_optimization.python.core.quantization.keras import (  # noqa: E402
    quantize_layer, quantize_wrapper)


class QuantizeLayer(quantize_layer.QuantizeLayer):
    """tfmot's input ``QuantizeLayer``, built once (so a ``.keras`` file loads back).

    Example:
        >>> layer = QuantizeLayer(quantizer, name="quantize_layer")
    """

    def build(self, input_shape: Any) -> None:
        if self.built:  # built by build_from_config already: the call must not add variables
            return
        super().build(input_shape)
        self.built = True


class QuantizeWrapperV2(quantize_wrapper.QuantizeWrapperV2):
    """tfmot's ``QuantizeWrapperV2`` that builds its wrapped layer before itself.

    Its variables are then the ones ``quantize_apply`` made (the wrapped layer's trainable
    weights first), in the same order, whether the wrapped layer was built or not.

    Example:
        >>> wrapper = QuantizeWrapperV2(keras.layers.Dense(10), quantize_config)
    """

    def build(self, input_shape: Any) -> None:
        if not self.layer.built:  # as keras.layers.Wrapper.build does, but before the copy
            self.layer.build(input_shape)
            self.layer.built = True
        super().build(input_shape)


def custom_objects() -> dict[str, type]:
    """These classes under tfmot's names, to override tfmot's ``quantize_scope`` entries.

    Example:
        >>> sorted(custom_objects())
        ['QuantizeLayer', 'QuantizeWrapperV2']
    """
    return {"QuantizeLayer": QuantizeLayer, "QuantizeWrapperV2": QuantizeWrapperV2}

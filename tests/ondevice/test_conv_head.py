"""Conv2D layers in the trainable head: builtin ops only, and steps equal to Keras's."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ondevice.conftest import IMAGE


def _conv_model(flavor):
    """8x8x1 -> Conv2D(4, 3, valid, relu) -> Conv2D(6, 3, stride 2, same, tanh) -> Dense(10).

    conv2's SAME padding of 6 -> 3 at stride 2 is uneven (0 before, 1 after), and its input
    gradient reaches conv1 through a stride-2 transposed convolution."""
    from tflite_opt._keras import keras_of_flavor

    keras = keras_of_flavor(flavor)
    keras.utils.set_random_seed(2)
    inputs = keras.Input((IMAGE, IMAGE, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="tanh", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(x)
    return keras, keras.Model(inputs, outputs, name="tiny_conv")


# tf_keras with SGD+momentum, Keras 3 with Adam: both Kerases, both optimizers' state.
@pytest.mark.parametrize("flavor, optimizer, options", [
    ("tf_keras", "sgd", {"learning_rate": 0.1, "momentum": 0.9}),
    ("keras3", "adam", {"learning_rate": 0.01}),
])
def test_conv_head_trains_with_builtin_ops_like_keras(tmp_path, digits8, flavor, optimizer,
                                                      options):
    from tflite_opt.ondevice.export import export_trainable
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    keras, model = _conv_model(flavor)
    initial = [np.array(w) for w in model.get_weights()]
    result = export_trainable(model, tmp_path / "conv.tflite", trainable="all",
                              optimizer=optimizer, **options)
    assert result.flex_ops == 0 and result.custom_ops == 0
    assert {"CONV_2D", "TRANSPOSE_CONV"} <= set(result.op_names)
    assert result.trainable_layers == ("conv1", "conv2", "classifier")
    trainer = OnDeviceTrainer(result.path)
    x, y = digits8.x_train[:24], digits8.y_train[:24].astype(np.int32)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)]
    device = [trainer.train_step(bx, by) for bx, by in batches]
    _, twin = _conv_model(flavor)
    twin.set_weights(initial)
    twin.compile(optimizer=result.optimizer.keras_optimizer(keras),
                 loss="sparse_categorical_crossentropy")
    reference = [float(np.asarray(twin.train_on_batch(bx, by))) for bx, by in batches]
    # float32 in another op order: ~1e-6 relative; a wrong kernel gradient (a flipped tap,
    # a misplaced SAME pad, a missing stride) changes the second loss by far more.
    np.testing.assert_allclose(device, reference, rtol=2e-4, atol=1e-5)
    expected = [w for name in result.trainable_layers for w in twin.get_layer(name).get_weights()]
    moved = 0.0
    for got, want, start in zip(trainer.get_weights(), expected, initial):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
        moved = max(moved, float(np.abs(got - start).max()))
    assert moved > 1e-3  # the steps moved the weights by far more than the tolerance


def test_conv2d_options_without_a_backward_pass_are_refused_by_name(tmp_path):
    from tflite_opt._keras import keras_of_flavor
    from tflite_opt.errors import UnsupportedLayerError
    from tflite_opt.ondevice.export import export_trainable

    keras = keras_of_flavor("keras3")
    inputs = keras.Input((IMAGE, IMAGE, 1))
    x = keras.layers.Conv2D(2, 3, dilation_rate=2, name="dilated")(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    with pytest.raises(UnsupportedLayerError, match=r"'dilated' \(Conv2D\) has dilation_rate"):
        export_trainable(model, tmp_path / "m.tflite", trainable="all")

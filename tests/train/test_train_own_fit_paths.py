"""The README's own-training-script paths end to end: wrap, your own ``fit``, ``export``, the file.

Each case takes a trained float model through ``prune`` / ``cluster`` / ``quantize_aware`` in an
order the README and docstrings allow (``strip`` between stages), trains every stage with a
plain ``compile``/``fit`` plus ``training_callbacks``, writes the file with ``export`` and checks
the file itself: int8 input, output and kernels; the pruned zeros and the cluster count in the
large kernels; the ``.tflite``'s accuracy against the Keras model's on the same test images.
Every scheme runs on a model without BatchNormalization; the full chain also runs on one with.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings

import numpy as np
import pytest

import tflite_opt
from tflite_opt._keras import keras
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.runtime import evaluate_tflite, inspect_model

TARGET_SPARSITY = 0.75
CLUSTERS = 8
# conv2, conv3 and dense1 hold 1,152 / 4,608 / 16,384 weights; the default policy skips the
# first conv (72) and the classifier (320), so "large" is exactly the optimized kernels.
LARGE_KERNEL = 1000
# The int8 kernels compute what the Keras model's fake-quant ops simulate up to rounding (and
# BatchNorm folded after quantization), so top-1 can only flip on images whose two best
# scores are a few output steps apart: a handful of the 360 test images, never 2 points.
MAX_DIFFERING_IMAGES = 7
EPOCHS = 1
# QAT's activation ranges start at [-6, 6] and move by an EMA of decay 0.999 (tfmot), so a
# short QAT fit needs a larger learning rate than a long one for the weights to adapt.
QAT_EPOCHS, QAT_LEARNING_RATE = 2, 1e-3
NO_GRADIENT = "Gradients do not exist for variables"


def _cnn_without_batchnorm() -> keras.Model:
    """digits_cnn's layout at width 8 without BatchNormalization (same kernel sizes)."""
    inputs = keras.Input(shape=(16, 16, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.MaxPooling2D(name="pool3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense1")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="cnn_without_bn")


def _fit(model: keras.Model, data, epochs: int, learning_rate: float) -> keras.Model:
    """What a user's script does: compile, fit with tflite_opt's callbacks."""
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                  ["accuracy"])
    model.fit(data.x_train, data.y_train, batch_size=32, epochs=epochs, verbose=0,
              callbacks=tflite_opt.training_callbacks(model))
    return model


def _accuracy(model: keras.Model, data) -> float:
    return float(np.mean(np.argmax(model.predict(data.x_test, verbose=0), -1) == data.y_test))


class _Stages:
    """A float model's stage outputs, each computed once and shared by the cases using it."""

    def __init__(self, float_model: keras.Model, data) -> None:
        self.float = float_model
        self.data = data
        self.float_accuracy = _accuracy(float_model, data)

    @functools.cached_property
    def pruned_wrapped(self) -> keras.Model:
        steps = int(np.ceil(len(self.data.x_train) / 32)) * EPOCHS
        model = tflite_opt.prune(self.float, TARGET_SPARSITY, end_step=steps // 2)
        return _fit(model, self.data, EPOCHS, 1e-3)

    @functools.cached_property
    def pruned(self) -> keras.Model:
        return tflite_opt.strip(self.pruned_wrapped)

    @functools.cached_property
    def clustered(self) -> keras.Model:
        model = tflite_opt.cluster(self.float, CLUSTERS, preserve_sparsity=False)
        return tflite_opt.strip(_fit(model, self.data, EPOCHS, 1e-4))

    @functools.cached_property
    def pruned_clustered(self) -> keras.Model:
        model = tflite_opt.cluster(self.pruned, CLUSTERS, preserve_sparsity=True)
        return tflite_opt.strip(_fit(model, self.data, EPOCHS, 1e-4))


@pytest.fixture(scope="module")
def stages(digits16, trained_tiny_cnn):
    keras.utils.set_random_seed(0)
    no_bn = _cnn_without_batchnorm()
    _fit(no_bn, digits16, 6, 1e-3)
    return {"no_bn": _Stages(no_bn, digits16), "bn": _Stages(trained_tiny_cnn[0], digits16)}


@contextlib.contextmanager
def _tensorflow_log():
    """Records what the ``tensorflow`` logger emits (after its filters), as a user would see."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("tensorflow")
    handler = Collect(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


# (model, stage output the QAT step starts from, scheme): every scheme from the stage it
# preserves, quantize_aware stripping a still-wrapped pruned model itself ("auto" -> pqat),
# and the README's full chain prune -> strip -> cluster -> strip -> PCQAT with BatchNorm.
CASES = [
    ("no_bn", "float", "default"),
    ("no_bn", "pruned", "pqat"),
    ("no_bn", "clustered", "cqat"),
    ("no_bn", "pruned_clustered", "pcqat"),
    ("no_bn", "pruned_wrapped", "auto"),
    ("bn", "pruned_clustered", "pcqat"),
]


@pytest.mark.parametrize("model_kind,start,scheme", CASES,
                         ids=[f"{m}-{s}-{q}" for m, s, q in CASES])
def test_own_fit_then_export_writes_int8_file_keeping_sparsity_clusters_and_accuracy(
        stages, tmp_path, model_kind, start, scheme):
    chain = stages[model_kind]
    data = chain.data
    qat = tflite_opt.quantize_aware(getattr(chain, start), scheme=scheme)
    with _tensorflow_log() as records:
        _fit(qat, data, QAT_EPOCHS, QAT_LEARNING_RATE)
    assert not [r for r in records if r.getMessage().startswith(NO_GRADIENT)]

    path = tflite_opt.export(qat, tmp_path / "model.tflite")

    info = inspect_model(path)
    assert [t["dtype"] for t in info.inputs] == ["int8"]
    assert [t["dtype"] for t in info.outputs] == ["int8"]
    kernels = [w for w in info.weights if w["role"] == "weight"]
    assert len(kernels) == 5 and {w["dtype"] for w in kernels} == {"int8"}
    large = [w for w in kernels if w["num_elements"] >= LARGE_KERNEL]
    assert len(large) == 3
    pruned = start.startswith("pruned")
    clustered = start.endswith("clustered")
    for w in large:
        # Pruned zeros stay zero through (P)QAT and quantize to the zero point; rounding may
        # add zeros, never remove them (one element of slack for the mask's rounding).
        if pruned:
            assert w["sparsity"] >= TARGET_SPARSITY - 1 / w["num_elements"], w["name"]
        # Quantizing a channel maps its <= CLUSTERS floats to <= CLUSTERS integers.
        per_channel = w["max_unique_per_channel"] or w["unique_values"]
        if clustered:
            assert per_channel <= CLUSTERS, w["name"]
    # The checks above can fail: without the stage, the file shows it.
    if not pruned:
        assert max(w["sparsity"] for w in large) < 0.5
    if not clustered:
        assert max(w["max_unique_per_channel"] or w["unique_values"] for w in large) > CLUSTERS

    keras_outputs = qat.predict(data.x_test, verbose=0)
    keras_accuracy = float(np.mean(np.argmax(keras_outputs, -1) == data.y_test))
    result = evaluate_tflite(path, data.x_test, data.y_test, reference_outputs=keras_outputs)
    n = len(data.y_test)
    assert result.num_samples == n
    assert result.agreement >= 1 - MAX_DIFFERING_IMAGES / n
    assert abs(result.accuracy - keras_accuracy) <= MAX_DIFFERING_IMAGES / n
    # The fine-tuned model still classifies: far above chance (0.1) and near the float model
    # it started from (15 points: several times the spread of these short fits).
    assert keras_accuracy >= chain.float_accuracy - 0.15


def test_pcqat_on_plain_batchnorm_model_exports_after_own_fit(stages, tmp_path):
    """The reported failure: quantize_aware(plain, "pcqat"), fit, export raised a ValueError."""
    data = stages["bn"].data
    with pytest.warns(UserWarning, match="no zero weights"):
        qat = tflite_opt.quantize_aware(stages["bn"].float, scheme="pcqat")
    qat.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    qat.fit(data.x_train[:64], data.y_train[:64], batch_size=32, verbose=0,
            callbacks=tflite_opt.training_callbacks(qat))
    path = tflite_opt.export(qat, tmp_path / "plain_pcqat.tflite")
    info = inspect_model(path)
    assert [t["dtype"] for t in info.inputs + info.outputs] == ["int8", "int8"]
    keras_outputs = qat.predict(data.x_test, verbose=0)
    result = evaluate_tflite(path, data.x_test, reference_outputs=keras_outputs)
    assert result.agreement >= 1 - MAX_DIFFERING_IMAGES / len(data.x_test)


@pytest.mark.parametrize("start,expected", [("float", (False, False)), ("pruned", (True, False)),
                                            ("clustered", (False, True)),
                                            ("pruned_clustered", (True, True))])
def test_auto_scheme_reads_pruning_and_clusters_from_stripped_kernels(stages, start, expected):
    from tflite_opt.train.qat import optimized_from_kernels

    stats = tflite_opt.weight_stats(getattr(stages["no_bn"], start))
    assert optimized_from_kernels(stats) == expected


def test_auto_scheme_on_stripped_pruned_clustered_model_is_pcqat(stages):
    qat = tflite_opt.quantize_aware(stages["no_bn"].pruned_clustered, scheme="auto")
    _kernel, quantizer, variables = qat.get_layer("quant_conv2")._weight_vars[0]
    assert quantizer.preserve_sparsity and "cluster_centroids_tf" in variables


def test_no_gradient_warning_dropped_only_when_it_lists_only_cqat_kernels(stages):
    qat = tflite_opt.quantize_aware(stages["no_bn"].clustered, scheme="cqat")
    # The wrapper owns the kernel variable (the inner layer's ``kernel`` is its fake-quant output).
    kernel = qat.get_layer("quant_conv2").weights[0].name
    assert kernel.endswith("kernel:0")
    logger = logging.getLogger("tensorflow")
    message = NO_GRADIENT + " %s when minimizing the loss."
    with _tensorflow_log() as records:
        logger.warning(message, [kernel])
        logger.warning(message, [kernel, "my_layer/scale:0"])
    assert [r.args[0] for r in records] == [[kernel, "my_layer/scale:0"]]


def test_quantize_aware_on_unclustered_model_warns_once_naming_layers_and_fix(stages):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tflite_opt.quantize_aware(stages["no_bn"].float, scheme="cqat")
    messages = [str(w.message) for w in caught]
    # tfmot's own note, once per layer, is replaced by the one warning.
    assert not [m for m in messages if m.startswith("No clustering performed")]
    messages = [m for m in messages if m.startswith("quantize_aware(")]
    assert len(messages) == 1, messages
    assert "conv2, conv3, dense1" in messages[0] and "scheme='default'" in messages[0]
    assert "tflite_opt.cluster" in messages[0]


def test_readme_chain_quantize_aware_is_quiet_and_strip_returns_qat_model_as_is(stages, caplog):
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qat = tflite_opt.quantize_aware(stages["no_bn"].pruned_clustered, scheme="pcqat")
    # conv1 and the classifier (skipped by the policy) have no zeros: expected, not reported.
    ours_or_tfmots = ("quantize_aware(", "No clustering")
    assert not [w for w in caught if str(w.message).startswith(ours_or_tfmots)]
    assert "does not contain zero weights" not in caplog.text
    assert tflite_opt.strip(qat) is qat
    with pytest.raises(InvalidArgumentError, match="already quantization-aware.*quant_"):
        tflite_opt.quantize_aware(qat, scheme="pcqat")

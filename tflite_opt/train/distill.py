"""Knowledge distillation: a student learns from a frozen teacher's softened outputs and the labels.

The loss is Hinton et al.'s: ``alpha * student_loss(y, student) + (1 - alpha) * T**2 *
KL(softmax(teacher / T) || softmax(student / T))``. Keras 3 models use Keras's own
``keras.distillation.Distiller`` with ``LogitsDistillation`` (``alpha`` is its
``student_loss_weight``); tf_keras models, which Keras 3's class cannot hold, use
:class:`Distiller` below, written as in the Keras docs' distillation example with the same
arguments. :func:`distill` picks by the models' Keras. Either way you compile and ``fit`` the
distiller yourself and take ``distiller.student`` for conversion.

Models that end in a softmax are handled exactly: ``log(p)`` equals the logits up to a constant
per sample, which ``softmax(. / T)`` ignores, so the log-probabilities stand in for the logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tflite_opt._keras import is_keras3_object, keras, keras_flavor, tf
from tflite_opt.errors import InvalidArgumentError

# Floor of a probability before its log: keeps log(0) finite. A trained classifier gives
# most wrong classes far less than 1e-7 (the digits CNN: half of them on its training set),
# and a floor that high flattened the teacher's soft targets toward a uniform spread over
# the wrong classes. Below 1e-30 a class lies 69 logits under the top one (at T=3, a soft
# probability e^-23 of the top's), and 1 / 1e-30 keeps the log's gradient finite.
_PROBABILITY_FLOOR = 1e-30


def _check_settings(alpha: Any, temperature: Any) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise InvalidArgumentError(f"alpha is {alpha!r}; accepted: a number in [0, 1] (the weight "
                                   "of the hard-label loss; 1 - alpha weighs the teacher's)")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or \
            not 0.0 < temperature <= 100.0:
        raise InvalidArgumentError(f"temperature is {temperature!r}; accepted: a number in "
                                   "(0, 100] (typical: 2 to 10)")


def outputs_are_probabilities(model: Any) -> bool:
    """Whether ``model`` ends in a softmax, asked of its outputs on a seeded random batch
    (False for a model with several outputs: those are distilled as logits).

    Example:
        >>> outputs_are_probabilities(digits_cnn())
        True
    """
    rng = np.random.default_rng(0)
    x = [rng.uniform(0.0, 1.0, (4,) + tuple(v.shape[1:])).astype(np.float32) for v in model.inputs]
    out = model(x if len(x) > 1 else x[0], training=False)
    if isinstance(out, (list, tuple, dict)):
        return False  # several outputs: Keras's Distiller needs logits per output
    out = np.asarray(out, np.float64).reshape(4, -1)
    return bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))


def soft_target_loss(teacher_logits: Any, student_logits: Any, temperature: float) -> Any:
    """``T**2 * KL(softmax(teacher / T) || softmax(student / T))``, mean over the batch.

    The ``T**2`` keeps the soft-target gradients on the scale of the hard-label ones when T
    changes (Hinton et al., 2015).

    Example:
        >>> soft_target_loss(tf.constant([[2.0, 0.0]]), tf.constant([[0.0, 0.0]]), 2.0)
    """
    t = tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    log_t = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    log_s = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    return temperature ** 2 * tf.reduce_mean(tf.reduce_sum(t * (log_t - log_s), axis=-1))


class Distiller(keras.Model):
    """Trains a tf_keras ``student`` on the labels and on a frozen ``teacher``'s soft targets.

    The tf_keras counterpart of ``keras.distillation.Distiller`` (which holds only Keras 3
    models): ``loss = alpha * student_loss + (1 - alpha) * T**2 * KL(teacher_T || student_T)``.
    ``call`` is the student, so compiled metrics (accuracy) score the student; the logs also
    carry ``student_loss`` and ``distillation_loss``. The teacher is set non-trainable, as
    Keras's own Distiller does. Outputs may be logits or softmax probabilities (detected).

    Args:
        teacher: A trained tf_keras model (frozen during distillation).
        student: The tf_keras model to train; same input and output shapes as the teacher.
        alpha: Weight of the hard-label loss, in [0, 1]. Defaults to 0.5 (Keras's
            ``student_loss_weight`` default).
        temperature: Softmax temperature of the soft targets, > 0. Defaults to 3.0.

    Example:
        >>> distiller = Distiller(teacher, student, alpha=0.1, temperature=4.0)
        >>> distiller.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> distiller.fit(x, y, epochs=10)
        >>> small = distiller.student
    """

    def __init__(self, teacher: keras.Model, student: keras.Model, alpha: float = 0.5,
                 temperature: float = 3.0, name: str = "distiller", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        for role, model in (("teacher", teacher), ("student", student)):
            if not isinstance(model, keras.Model):
                raise InvalidArgumentError(f"{role} is a {type(model).__name__}; Distiller takes "
                                           "tf_keras models (for Keras 3 use tflite_opt.distill, "
                                           "which returns keras.distillation.Distiller)")
        _check_settings(alpha, temperature)
        _check_shapes(teacher, student)
        if len(student.outputs) != 1:
            raise InvalidArgumentError(f"student {student.name!r} has {len(student.outputs)} "
                                       "outputs; Distiller distills one classifier output")
        self.teacher = teacher
        self.student = student
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.teacher.trainable = False
        self._teacher_probabilities = outputs_are_probabilities(teacher)
        self._student_probabilities = outputs_are_probabilities(student)
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")

    def compile(self, optimizer: Any = "adam", loss: Any = None, metrics: Any = None,
                **kwargs: Any) -> None:
        """Compiles with ``loss`` as the student's hard-label loss (required)."""
        if loss is None:
            raise InvalidArgumentError("Distiller.compile needs loss=..., the student's loss on "
                                       "the labels, e.g. 'sparse_categorical_crossentropy'")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.student_loss_fn = keras.losses.get(loss)

    def call(self, inputs: Any, training: Any = None) -> Any:
        return self.student(inputs, training=training)

    @property
    def metrics(self) -> list[Any]:
        return [self.total_loss_tracker] + super().metrics + [self.student_loss_tracker,
                                                               self.distillation_loss_tracker]

    def _logits(self, outputs: Any, probabilities: bool) -> Any:
        return tf.math.log(tf.maximum(outputs, _PROBABILITY_FLOOR)) if probabilities else outputs

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                     sample_weight: Any = None) -> Any:
        student_loss = self.student_loss_fn(y, y_pred, sample_weight=sample_weight) \
            if isinstance(self.student_loss_fn, keras.losses.Loss) else \
            tf.reduce_mean(self.student_loss_fn(y, y_pred))
        teacher_pred = self.teacher(x, training=False)
        distillation_loss = soft_target_loss(
            self._logits(teacher_pred, self._teacher_probabilities),
            self._logits(y_pred, self._student_probabilities), self.temperature)
        total = self.alpha * student_loss + (1.0 - self.alpha) * distillation_loss + \
            tf.add_n(self.losses or [tf.constant(0.0)])
        self.total_loss_tracker.update_state(total)
        self.student_loss_tracker.update_state(student_loss)
        self.distillation_loss_tracker.update_state(distillation_loss)
        return total


def _check_shapes(teacher: Any, student: Any) -> None:
    for what in ("inputs", "outputs"):
        t = [tuple(v.shape[1:]) for v in getattr(teacher, what)]
        s = [tuple(v.shape[1:]) for v in getattr(student, what)]
        if t != s:
            raise InvalidArgumentError(f"teacher {teacher.name!r} has {what} of shape {t} but "
                                       f"student {student.name!r} has {s}; a student must take "
                                       "the same inputs and give the same outputs as its teacher")


def _keras3_distiller(teacher: Any, student: Any, alpha: float, temperature: float) -> Any:
    import keras as keras3

    teacher_probabilities = outputs_are_probabilities(teacher)
    student_probabilities = outputs_are_probabilities(student)

    class SoftmaxOutputsDistillation(keras3.distillation.LogitsDistillation):
        """``LogitsDistillation`` on models ending in softmax: their log-probabilities are the
        logits up to a per-sample constant, which the temperature softmax ignores."""

        def compute_loss(self, teacher_outputs: Any, student_outputs: Any, **kwargs: Any) -> Any:
            def logits(out: Any, probabilities: bool) -> Any:
                ops = keras3.ops
                return ops.log(ops.maximum(out, _PROBABILITY_FLOOR)) if probabilities else out

            return super().compute_loss(logits(teacher_outputs, teacher_probabilities),
                                        logits(student_outputs, student_probabilities))

    loss_cls = SoftmaxOutputsDistillation if (teacher_probabilities or student_probabilities) \
        else keras3.distillation.LogitsDistillation
    try:
        # A KLDivergence instance, not the default "kl_divergence": Keras 3.15 resolves that
        # string to the plain function, which skips LogitsDistillation's softmax branch and
        # compares the clipped raw logits (a loss of 0 for log-probabilities).
        return keras3.distillation.Distiller(
            teacher=teacher, student=student,
            distillation_losses=loss_cls(temperature=float(temperature),
                                         loss=keras3.losses.KLDivergence()),
            student_loss_weight=float(alpha))
    except ValueError as exc:
        raise InvalidArgumentError(f"teacher {teacher.name!r} and student {student.name!r} cannot "
                                   f"be distilled: {exc}") from exc


def distill(teacher: Any, student: Any, alpha: float = 0.5, temperature: float = 3.0) -> Any:
    """A distiller (a Keras model) that trains ``student`` from ``teacher`` in your own ``fit``.

    Keras 3 models get Keras's own ``keras.distillation.Distiller`` (``alpha`` is its
    ``student_loss_weight``, ``LogitsDistillation(temperature)`` its distillation loss);
    tf_keras models get :class:`Distiller`. Compile it with the student's loss, fit it, then
    convert ``distiller.student``.

    Args:
        teacher: A trained model (set non-trainable); the same Keras as the student.
        student: The model to train: same input and output shapes as the teacher.
        alpha: Weight of the hard-label loss in [0, 1]; ``1 - alpha`` weighs the soft targets.
            Defaults to 0.5.
        temperature: Softmax temperature of the soft targets. Defaults to 3.0.

    Raises:
        InvalidArgumentError: a bad alpha/temperature, models of two Kerases, or shapes that
            differ.

    Example:
        >>> distiller = tflite_opt.distill(teacher, student, alpha=0.1, temperature=4.0)
        >>> distiller.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> distiller.fit(x, y, epochs=10)
        >>> tflite_opt.export(distiller.student, "student.tflite", representative_data=x[:200])
    """
    _check_settings(alpha, temperature)
    teacher_flavor, student_flavor = keras_flavor(teacher), keras_flavor(student)
    if teacher_flavor != student_flavor:
        raise InvalidArgumentError(f"teacher {teacher.name!r} is a {teacher_flavor} model but "
                                   f"student {student.name!r} is a {student_flavor} model; build "
                                   "both with the same Keras")
    if is_keras3_object(teacher):
        _check_shapes(teacher, student)
        return _keras3_distiller(teacher, student, alpha, temperature)
    return Distiller(teacher, student, alpha=alpha, temperature=temperature)


def freeze_batch_norm(model: Any) -> list[Any]:
    """Makes every trainable BatchNormalization layer of ``model`` (inside wrappers and nested
    models too) normalize with its moving statistics while training, as at inference, by
    setting it non-trainable (its scale and offset then stay as they are). Call it before
    ``compile``; it returns the layers it changed, to set ``trainable = True`` again after.

    Self-distillation needs it. Its student starts as a copy of the frozen teacher, and the
    teacher runs in inference mode; a student normalizing with batch statistics gives other
    outputs for the same weights, so the soft-target loss was not zero before any compression
    and training on it pulled the student away from the teacher and the labels (a digits CNN
    self-distilled two epochs: 64.6% on a validation split, 78.0% without distillation, 92.4%
    with the student's BatchNorm frozen). Either Keras's BatchNormalization uses its moving
    statistics when not trainable.

    Example:
        >>> frozen = freeze_batch_norm(pruned)
        >>> distiller = distill(model, pruned); distiller.compile(...); distiller.fit(...)
        >>> for layer in frozen:
        ...     layer.trainable = True
    """
    import keras as keras3

    kinds = (keras.layers.BatchNormalization, keras3.layers.BatchNormalization)
    changed: list[Any] = []

    def visit(layer: Any) -> None:
        if isinstance(layer, kinds):
            if layer.trainable:
                layer.trainable = False
                changed.append(layer)
            return
        inner = getattr(layer, "layer", None)  # a pruning, clustering or QAT wrapper
        if inner is not None and inner is not layer:
            visit(inner)
        for child in getattr(layer, "layers", None) or ():  # a nested model
            visit(child)

    for layer in model.layers:
        visit(layer)
    return changed


def student_of(model: Any) -> Any:
    """The student of a distiller of either Keras, or ``model`` itself."""
    return getattr(model, "student", model)


def _builders() -> dict[str, Any]:
    """Student builder name -> builder (each takes ``flavor=`` for the Keras to build with)."""
    from tflite_opt.models.builders import dense_mlp, digits_cnn

    return {"digits_cnn": digits_cnn, "dense_mlp": dense_mlp}


STUDENT_BUILDERS = ("digits_cnn", "dense_mlp")  # the keys of _builders(); pinned by a test


def build_student(name: str, teacher: Any, options: dict[str, Any] | None = None) -> Any:
    """A fresh student from a builder name, with the teacher's input shape, classes and Keras.

    Args:
        name: A builder of ``STUDENT_BUILDERS`` (``digits_cnn``, ``dense_mlp``).
        teacher: The teacher model; its Keras and shapes are matched.
        options: The builder's keyword arguments, e.g. ``{"width": 4}``. Defaults to None.

    Raises:
        InvalidArgumentError: an unknown builder or argument.

    Example:
        >>> student = build_student("digits_cnn", teacher, {"width": 4, "dense_units": 16})
    """
    import inspect

    builders = _builders()
    if name not in builders:
        raise InvalidArgumentError(f"student builder {name!r} is unknown; accepted: "
                                   f"{', '.join(builders)} (or a .keras file)")
    builder = builders[name]
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in (options or {}).items()}
    allowed = set(inspect.signature(builder).parameters) - {"input_shape", "num_classes",
                                                             "flavor"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidArgumentError(f"student_options key {unknown[0]!r} is not an argument of "
                                   f"{name}; accepted: {', '.join(sorted(allowed))}")
    return builder(input_shape=tuple(teacher.inputs[0].shape[1:]),
                   num_classes=int(teacher.outputs[0].shape[-1]),
                   flavor="keras3" if is_keras3_object(teacher) else "tf_keras", **options)

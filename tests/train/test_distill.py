"""Knowledge distillation: the loss math, learning from a teacher in both Kerases, the recipe
stage ``distill`` and the ``distill:`` key of prune/cluster/qat stages."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.errors import InvalidArgumentError, RecipeError
from tflite_opt.train.distill import (STUDENT_BUILDERS, Distiller, _builders, build_student,
                                      distill, soft_target_loss)
from tflite_opt.train.recipe import (STUDENT_BUILDER_NAMES, DistillStage, PruneStage, QATStage,
                                     Recipe, SelfDistill)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _hand_loss(teacher_logits, student_logits, labels, alpha, temperature):
    """alpha * CE(labels, softmax(s)) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))."""
    p_t, p_s = _softmax(teacher_logits / temperature), _softmax(student_logits / temperature)
    kl = np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=-1)) * temperature ** 2
    ce = -np.mean(np.log(_softmax(student_logits)[np.arange(len(labels)), labels]))
    return alpha * ce + (1 - alpha) * kl, kl


def _linear_softmax(keras_module, kernel, name):
    inputs = keras_module.Input((4,))
    dense = keras_module.layers.Dense(3, activation="softmax", name="out")
    model = keras_module.Model(inputs, dense(inputs), name=name)
    dense.set_weights([kernel, np.zeros(3, np.float32)])
    return model


@pytest.fixture
def loss_case():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    kernels = rng.normal(size=(2, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 8)
    return x, kernels[0], kernels[1], labels


def test_soft_target_loss_matches_temperature_scaled_kl_times_t_squared():
    rng = np.random.default_rng(1)
    t, s = rng.normal(size=(2, 5, 6)) * 3
    for temperature in (1.0, 2.0, 5.0):
        _, kl = _hand_loss(t, s, np.zeros(5, int), 0.0, temperature)
        got = float(soft_target_loss(t.astype(np.float32), s.astype(np.float32), temperature))
        np.testing.assert_allclose(got, kl, rtol=1e-5)
    assert float(soft_target_loss(t.astype(np.float32), t.astype(np.float32), 3.0)) == \
        pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
@pytest.mark.parametrize("alpha,temperature", [(0.0, 4.0), (0.3, 2.0), (1.0, 3.0)])
def test_distiller_loss_is_alpha_mix_of_labels_and_soft_targets(loss_case, flavor, alpha,
                                                               temperature):
    import keras as keras3

    from tflite_opt._keras import keras as tf_keras

    keras_module = keras3 if flavor == "keras3" else tf_keras
    x, teacher_kernel, student_kernel, labels = loss_case
    teacher = _linear_softmax(keras_module, teacher_kernel, "teacher")
    student = _linear_softmax(keras_module, student_kernel, "student")
    distiller = distill(teacher, student, alpha=alpha, temperature=temperature)
    distiller.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    y_pred = student(x)
    got = float(distiller.compute_loss(x=x, y=labels, y_pred=y_pred))
    # The models end in softmax: their logits are x @ kernel (zero bias).
    expected, _ = _hand_loss(x @ teacher_kernel, x @ student_kernel, labels, alpha, temperature)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert not teacher.trainable


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
def test_distiller_loss_keeps_a_confident_teachers_small_probabilities(loss_case, flavor):
    # A trained classifier gives most wrong classes probabilities far below 1e-7 (the digits
    # CNN: half of them on its training set). Flooring them at 1e-7 before the log replaced the
    # teacher's soft targets by a near-uniform spread over the wrong classes.
    import keras as keras3

    from tflite_opt._keras import keras as tf_keras

    keras_module = keras3 if flavor == "keras3" else tf_keras
    x, teacher_kernel, student_kernel, labels = loss_case
    teacher_kernel = teacher_kernel * 40.0 / np.abs(x @ teacher_kernel).max()
    logits = x @ teacher_kernel
    assert np.mean(_softmax(logits) < 1e-7) > 0.2  # the case: many tiny probabilities
    teacher = _linear_softmax(keras_module, teacher_kernel, "teacher")
    student = _linear_softmax(keras_module, student_kernel, "student")
    distiller = distill(teacher, student, alpha=0.0, temperature=6.0)
    distiller.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    got = float(distiller.compute_loss(x=x, y=labels, y_pred=student(x)))
    expected, _ = _hand_loss(logits, x @ student_kernel, labels, 0.0, 6.0)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def _mlp(keras_module, hidden, name):
    inputs = keras_module.Input((16, 16, 1))
    h = keras_module.layers.Flatten()(inputs)
    h = keras_module.layers.Dense(hidden, activation="relu")(h)
    outputs = keras_module.layers.Dense(10, activation="softmax")(h)
    return keras_module.Model(inputs, outputs, name=name)


def _agreement(a, b, x) -> float:
    return float(np.mean(np.argmax(a.predict(x, verbose=0), -1) ==
                         np.argmax(b.predict(x, verbose=0), -1)))


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
def test_student_learns_the_teacher_from_soft_targets_alone(digits16, flavor):
    import keras as keras3

    from tflite_opt._keras import keras as tf_keras

    keras_module = keras3 if flavor == "keras3" else tf_keras
    keras_module.utils.set_random_seed(0)
    data = digits16
    teacher = _mlp(keras_module, 64, "teacher")
    teacher.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    teacher.fit(data.x_train, data.y_train, epochs=4, batch_size=32, verbose=0)
    student = _mlp(keras_module, 8, "student")
    before = _agreement(teacher, student, data.x_test)
    # alpha=0 and shuffled labels: whatever the student learns comes from the teacher.
    wrong_labels = np.random.default_rng(0).permutation(data.y_train)
    distiller = distill(teacher, student, alpha=0.0, temperature=3.0)
    distiller.compile(optimizer=keras_module.optimizers.Adam(3e-3),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = distiller.fit(data.x_train, wrong_labels, epochs=4, batch_size=32, verbose=0)
    after = _agreement(teacher, distiller.student, data.x_test)
    # Ten classes: an untrained student agrees about at chance (0.1); one that learned the
    # teacher agrees on most digits. Its loss on the soft targets falls.
    assert after > max(0.6, before + 0.3), (before, after)
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]
    assert distiller.student is student


def test_distill_refuses_mixed_kerases_bad_settings_and_shapes():
    import keras as keras3

    from tflite_opt._keras import keras as tf_keras

    a = _mlp(tf_keras, 4, "a")
    with pytest.raises(InvalidArgumentError, match="same Keras"):
        distill(a, _mlp(keras3, 4, "b"))
    with pytest.raises(InvalidArgumentError, match="alpha"):
        distill(a, _mlp(tf_keras, 4, "b"), alpha=1.5)
    with pytest.raises(InvalidArgumentError, match="temperature"):
        Distiller(a, _mlp(tf_keras, 4, "b"), temperature=0)
    inputs = tf_keras.Input((16, 16, 1))
    other = tf_keras.Model(inputs, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(inputs)))
    with pytest.raises(InvalidArgumentError, match="same inputs"):
        distill(a, other)


def test_student_builders_registry_matches_recipe_names_and_checks_options():
    from tflite_opt._keras import keras as tf_keras

    assert STUDENT_BUILDERS == STUDENT_BUILDER_NAMES == tuple(_builders())
    teacher = _mlp(tf_keras, 4, "t")
    student = build_student("dense_mlp", teacher, {"hidden": [12]})
    assert student.count_params() == 16 * 16 * 12 + 12 + 12 * 10 + 10
    with pytest.raises(InvalidArgumentError, match="width"):
        build_student("dense_mlp", teacher, {"width": 4})


@pytest.mark.parametrize("raw,key", [
    ({"type": "prune", "distill": {"alpha": 1.5}}, "distill.alpha"),
    ({"type": "cluster", "distill": {"temperature": 0}}, "distill.temperature"),
    ({"type": "qat", "distill": {"temp": 2}}, "distill.temp"),
    ({"type": "qat", "distill": [0.5, 3]}, "distill"),
    ({"type": "distill", "student": "resnet50"}, "student"),
    ({"type": "distill", "teacher": "teacher.txt"}, "teacher"),
    ({"type": "distill", "student_options": {"width": "wide"}}, "student_options"),
    ({"type": "distill", "alpha": -0.1}, "alpha"),
    ({"type": "distill", "epochs": 0}, "epochs"),
])
def test_recipe_bad_distill_value_raises_naming_the_key(raw, key):
    with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
        Recipe.from_dict({"stages": [raw]})


def test_recipe_distill_must_be_first_and_round_trips():
    with pytest.raises(RecipeError, match="first"):
        Recipe.from_dict({"stages": [{"type": "prune"}, {"type": "distill"}]})
    recipe = Recipe(stages=(DistillStage(student="dense_mlp", student_options={"hidden": [8]}),
                            PruneStage(distill=SelfDistill(0.2, 4.0)), QATStage()))
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert "distill" not in Recipe.default().to_dict()["stages"][0]  # unchanged old recipes


def _plan_data(digits16):
    return (digits16.x_train[:128], digits16.y_train[:128])


def test_plan_distill_stage_then_self_distilled_prune_trains_the_student(digits16):
    from tflite_opt._keras import keras as tf_keras
    from tflite_opt.train.plan import OptimizationPlan

    teacher = _mlp(tf_keras, 64, "teacher")
    teacher.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    teacher.fit(*_plan_data(digits16), epochs=2, verbose=0)
    recipe = Recipe.from_dict({"stages": [
        {"type": "distill", "student": "dense_mlp", "student_options": {"hidden": [24]},
         "epochs": 1, "alpha": 0.2},
        {"type": "prune", "epochs": 1, "target_sparsity": 0.5, "schedule": "constant",
         "distill": {"alpha": 0.5, "temperature": 2.0}}],
        "policy": {"skip_classifier": False}})
    result = OptimizationPlan(recipe).run(teacher, _plan_data(digits16), verbose=0)
    assert [s.name for s in result.stages] == ["distill", "prune"]
    assert result.model.count_params() == 16 * 16 * 24 + 24 + 24 * 10 + 10
    assert "distillation_loss" in result.stages[1].metrics
    # The pruning step callback ran on the student inside the distiller.
    assert result.sparsity == pytest.approx(0.5, abs=0.01)
    assert set(result.optimized_layers) == {"dense1", "classifier"}


def test_plan_self_distilled_prune_on_keras3_model(digits16):
    import keras as keras3

    from tflite_opt.train.plan import OptimizationPlan

    model = _mlp(keras3, 32, "float")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(*_plan_data(digits16), epochs=2, verbose=0)
    recipe = Recipe(stages=(PruneStage(epochs=1, target_sparsity=0.5, schedule="constant",
                                       distill=SelfDistill(0.5, 3.0)),))
    result = OptimizationPlan(recipe).run(model, _plan_data(digits16), verbose=0)
    assert isinstance(result.model, keras3.Model)
    assert "distillation_loss" in result.stages[0].metrics
    assert result.sparsity == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
def test_plan_self_distillation_student_batch_norm_computes_as_the_frozen_teacher(digits16,
                                                                                   flavor):
    # The teacher runs in inference mode. A student normalizing with batch statistics gives
    # other outputs for the same weights, so the soft-target loss trained it away from the
    # teacher; with its BatchNorm on the moving statistics, training mode computes what
    # inference mode does (no dropout here), and the layers are trainable again afterwards.
    import keras as keras3

    from tflite_opt._keras import keras as tf_keras
    from tflite_opt.train.distill import student_of
    from tflite_opt.train.plan import OptimizationPlan

    keras_module = keras3 if flavor == "keras3" else tf_keras
    keras_module.utils.set_random_seed(0)
    inputs = keras_module.Input((16, 16, 1))
    h = keras_module.layers.Flatten()(inputs)
    h = keras_module.layers.Dense(32, name="dense1")(h)
    h = keras_module.layers.BatchNormalization(name="bn")(h)
    h = keras_module.layers.ReLU()(h)
    outputs = keras_module.layers.Dense(10, activation="softmax", name="classifier")(h)
    model = keras_module.Model(inputs, outputs, name="float")
    x, y = _plan_data(digits16)
    seen = {}

    class Probe(keras_module.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                student = student_of(self.model)
                seen["trainable"] = student.get_layer("bn").trainable
                training = np.asarray(student(x[:32], training=True))  # may update masks first
                seen["gap"] = float(np.abs(training - np.asarray(student(x[:32],
                                                                         training=False))).max())

    recipe = Recipe(stages=(PruneStage(epochs=1, target_sparsity=0.5, schedule="constant",
                                       distill=SelfDistill(0.5, 3.0)),),
                    policy=Recipe.default().policy)
    result = OptimizationPlan(recipe).run(model, (x, y), batch_size=64, verbose=0,
                                          callbacks=[Probe()], run_eagerly=True)
    assert seen["gap"] < 1e-5  # float32 rounding of the same computation
    assert seen["trainable"] is False
    assert result.model.get_layer("bn").trainable


def test_plan_refuses_a_model_that_distill_froze(digits16):
    # distill() sets its teacher non-trainable; a plan on that model trained nothing, silently.
    from tflite_opt._keras import keras as tf_keras
    from tflite_opt.train.plan import OptimizationPlan

    model = _mlp(tf_keras, 16, "float")
    distill(model, _mlp(tf_keras, 8, "student"))
    recipe = Recipe(stages=(PruneStage(epochs=1, target_sparsity=0.5, schedule="constant"),),
                    policy=Recipe.default().policy)
    with pytest.raises(InvalidArgumentError, match="'float' has no trainable weights"):
        OptimizationPlan(recipe).run(model, _plan_data(digits16), verbose=0)


def test_recipe_file_distill_student_parses():
    from tests.conftest import REPO_ROOT

    recipe = Recipe.from_file(REPO_ROOT / "recipes" / "distill_student.yaml")
    assert [s.type for s in recipe.stages] == ["distill", "prune", "cluster", "qat"]
    assert all(s.distill == SelfDistill(0.5, 3.0) for s in recipe.stages[1:])


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
def test_plan_self_distilled_qat_restores_a_finished_run_from_checkpoint(digits16, tmp_path,
                                                                         flavor):
    import keras as keras3

    from tflite_opt._keras import keras as tf_keras
    from tflite_opt.train.plan import OptimizationPlan

    model = _mlp(keras3 if flavor == "keras3" else tf_keras, 16, "float")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(*_plan_data(digits16), epochs=2, verbose=0)
    recipe = Recipe(stages=(QATStage(epochs=1, scheme="default",
                                     distill=SelfDistill(0.5, 3.0)),))
    first = OptimizationPlan(recipe).run(model, _plan_data(digits16), verbose=0,
                                         checkpoint_dir=tmp_path)
    again = OptimizationPlan(recipe).run(model, _plan_data(digits16), verbose=0,
                                         checkpoint_dir=tmp_path)
    x = digits16.x_test[:64]
    np.testing.assert_allclose(again.model.predict(x, verbose=0),
                               first.model.predict(x, verbose=0), atol=1e-5)
    assert "distillation_loss" in first.stages[0].metrics


def test_plan_distill_stage_keras3_teacher_file_builds_a_keras3_student(digits16, tmp_path):
    import keras as keras3

    from tflite_opt.train.plan import OptimizationPlan

    teacher = _mlp(keras3, 32, "teacher")
    teacher.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    teacher.fit(*_plan_data(digits16), epochs=1, verbose=0)
    path = tmp_path / "teacher.keras"
    teacher.save(path)
    recipe = Recipe(stages=(DistillStage(student="digits_cnn", teacher=str(path), epochs=1,
                                         student_options={"width": 2, "dense_units": 8}),))
    given = _mlp(keras3, 4, "ignored")  # the file, not the given model, teaches
    result = OptimizationPlan(recipe).run(given, _plan_data(digits16), verbose=0)
    student = result.model
    assert isinstance(student, keras3.Model) and student.name == "digits_cnn"
    assert student.get_layer("conv1").filters == 2
    assert "distillation_loss" in result.stages[0].metrics


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
def test_own_fit_self_distilled_pruning_reaches_the_sparsity(digits16, flavor):
    import keras as keras3

    import tflite_opt
    from tflite_opt._keras import keras as tf_keras

    keras_module = keras3 if flavor == "keras3" else tf_keras
    x, y = _plan_data(digits16)
    model = _mlp(keras_module, 16, "float")
    pruned = tflite_opt.prune(model, 0.5, end_step=4, frequency=1, policy=tflite_opt.LayerPolicy(
        skip_classifier=False))
    distiller = tflite_opt.distill(model, pruned, alpha=0.5, temperature=3.0)
    distiller.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = distiller.fit(x, y, epochs=2, batch_size=64, verbose=0,
                            callbacks=tflite_opt.training_callbacks(pruned))
    assert history.history["sparsity"][-1] == pytest.approx(0.5, abs=0.01)
    stats = tflite_opt.weight_stats(tflite_opt.strip(distiller.student))
    assert set(stats) == {l.name for l in model.layers if l.weights}  # the student's only
    assert stats[model.layers[2].name]["sparsity"] == pytest.approx(0.5, abs=0.01)

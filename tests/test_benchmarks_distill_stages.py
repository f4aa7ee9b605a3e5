"""The distill_stages suite: its per-part effects, its entropy of a file's int8 kernel, and its
resume of the plan after the prune stage."""

import dataclasses
import math

import numpy as np
import pytest

from benchmarks.suites.distill_stages import (dense_entropy_bits, part_accuracy_change,
                                              part_gzip_change)

PLAIN, LATER, PRUNE, BOTH = (False, False), (False, True), (True, False), (True, True)


def test_each_part_is_paired_with_its_twin_and_averaged_over_the_other_part():
    # Two seeds; self-distilling the prune stage adds 1% against either later variant, the
    # later stages add 2% after a plain prune stage and 4% after a self-distilled one.
    sizes = {PLAIN: [100.0, 200.0], LATER: [102.0, 204.0], PRUNE: [101.0, 202.0],
             BOTH: [105.04, 210.08]}
    prune = part_gzip_change(sizes, 0)
    later = part_gzip_change(sizes, 1)
    assert later == pytest.approx((3.0, 3.0, 3.0))  # (2 + 4) / 2 on both seeds
    # prune: +1% (PRUNE vs PLAIN) and 105.04 / 102 - 1 = +2.98% (BOTH vs LATER)
    expected = (1.0 + 100 * (105.04 / 102.0 - 1)) / 2
    assert prune == pytest.approx((expected,) * 3)


def test_a_part_that_changes_nothing_has_an_interval_around_zero():
    rng = np.random.default_rng(0)
    base = rng.uniform(70_000, 80_000, size=8)
    noise = rng.normal(0, 0.01, size=(4, 8))
    sizes = {cell: list(base * (1 + noise[i])) for i, cell in enumerate((PLAIN, LATER, PRUNE,
                                                                           BOTH))}
    mean, low, high = part_gzip_change(sizes, 0)
    assert low < 0 < high and abs(mean) < 1.0


def test_accuracy_change_pairs_runs_on_the_same_images():
    images = 400
    right = np.ones((2, images))
    wrong_tenth = right.copy()
    wrong_tenth[:, :40] = 0  # 10 points lower on both runs
    correct = {PLAIN: wrong_tenth, LATER: wrong_tenth, PRUNE: right, BOTH: right}
    change = part_accuracy_change(correct, 0)
    assert change.difference == pytest.approx(0.10)
    assert 0 < change.ci95_low <= 0.10 <= change.ci95_high
    assert part_accuracy_change(correct, 1).difference == pytest.approx(0.0)


def test_dense_entropy_bits_counts_the_nonzero_int8_values():
    import tensorflow as tf

    # A 16 -> 8 Dense kernel with, per output channel, six +1, two -1 and eight zeros: int8
    # maps +1 and -1 to +127 and -127, zeros do not count, so the entropy is that of (3/4, 1/4).
    kernel = np.zeros((16, 8), np.float32)
    kernel[:6] = 1.0
    kernel[6:8] = -1.0
    inputs = tf.keras.Input((16,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(8, use_bias=False)(inputs))
    model.layers[-1].set_weights([kernel])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [np.random.default_rng(i).normal(size=(1, 16)).astype(np.float32)] for i in range(20))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    tflite = converter.convert()
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert dense_entropy_bits(tflite, min_elements=128) == pytest.approx(expected)


def test_resume_after_prune_runs_only_the_later_stages_on_the_pruned_model(digits16, tmp_path):
    # The suite writes the plan's state file by hand; if the plan stopped reading it as written,
    # the resumed run would prune again from the float model and every pair would be void.
    import json

    from benchmarks.suites.distill import fit_recipe
    from benchmarks.suites.distill_stages import _resume_after_prune
    from tflite_opt._keras import keras
    from tflite_opt.train import Recipe
    from tflite_opt.train.plan import STATE_FILE

    recipe = Recipe.from_dict({"precision": "int8", "stages": [
        {"type": "prune", "target_sparsity": 0.5, "epochs": 1},
        {"type": "cluster", "number_of_clusters": 4, "epochs": 1}]})
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu", name="hidden"),
                              keras.layers.Dense(10, activation="softmax", name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits16.x_train[:256], digits16.y_train[:256], epochs=1, verbose=0)
    fit_recipe(dataclasses.replace(recipe, stages=recipe.stages[:1]), model, digits16,
               tmp_path / "pruned")
    pruned = keras.models.load_model(tmp_path / "pruned" / "final.keras", compile=False)
    pruned_zeros = pruned.get_layer("hidden").get_weights()[0] == 0

    resumed = _resume_after_prune(recipe, model, digits16, tmp_path / "pruned", tmp_path / "rest")

    state = json.loads((tmp_path / "rest" / STATE_FILE).read_text())
    assert [record["name"] for record in state["completed"]] == ["cluster"]
    kernel = resumed.get_layer("hidden").get_weights()[0]
    assert pruned_zeros.mean() == pytest.approx(0.5, abs=0.01)
    assert np.all(kernel[pruned_zeros] == 0)  # the pruned model's zeros, kept by clustering
    assert np.unique(kernel[kernel != 0]).size <= 4

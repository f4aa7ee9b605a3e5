"""Low-rank decomposition: exact at full rank, within the discarded-energy bound below it, the
parameter formula, rank selection, both Kerases, the recipe stage and int8 conversion."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt._keras import keras, keras3
from tflite_opt.errors import InvalidArgumentError, RecipeError
from tflite_opt.train.decompose import (decompose, factor_kernels, factored_params,
                                        kernel_matrix, rank_for_energy, rank_for_params_ratio)

KERASES = {"tf_keras": lambda: keras, "keras3": keras3}
# float32 forward passes of the two models differ by rounding: relative slack on the bounds.
RTOL, ATOL = 1e-4, 1e-5


def _conv_model(K, conv_kwargs):
    inputs = K.Input((9, 10, 3), name="x")
    x = K.layers.Conv2D(6, name="conv", **conv_kwargs)(inputs)
    return K.Model(inputs, x)


@pytest.mark.parametrize("kind,shape", [("dense", (12, 7)), ("conv_channel", (3, 3, 4, 5)),
                                        ("conv_spatial", (3, 5, 4, 6))])
def test_factor_kernels_rebuild_kernel_with_discarded_energy_as_error(kind, shape):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=shape)
    s = np.linalg.svd(kernel_matrix(kernel, kind), compute_uv=False)
    for rank in (1, len(s) // 2, len(s)):
        first, second = factor_kernels(kernel, kind, rank)
        if kind == "dense":
            rebuilt = first @ second
        elif kind == "conv_channel":
            rebuilt = (first.reshape(-1, rank) @ second[0, 0]).reshape(shape)
        else:  # W[i, j, c, o] = sum_r V[i, c, r] H[j, r, o]
            rebuilt = np.einsum("icr,jro->ijco", first[:, 0], second[0])
        # Eckart-Young: the Frobenius error squared is exactly the discarded energy.
        discarded = float((s[rank:] ** 2).sum())
        assert np.sum((kernel - rebuilt) ** 2) == pytest.approx(discarded, rel=1e-4, abs=1e-8)


@pytest.mark.parametrize("flavor", sorted(KERASES))
@pytest.mark.parametrize("mode", ["channel", "spatial"])
@pytest.mark.parametrize("conv_kwargs", [
    {"kernel_size": 3, "padding": "same"},
    {"kernel_size": (3, 5), "strides": (2, 1), "padding": "same", "activation": "relu"},
    {"kernel_size": (3, 2), "strides": (1, 2), "padding": "valid"},
])
def test_decompose_conv_full_rank_exact_and_low_rank_within_energy_bound(flavor, mode,
                                                                          conv_kwargs):
    K = KERASES[flavor]()
    model = _conv_model(K, conv_kwargs)
    x = np.random.default_rng(1).normal(size=(4, 9, 10, 3)).astype(np.float32)
    reference = np.asarray(model(x))
    kernel = model.get_layer("conv").kernel.numpy()
    kh, kw = kernel.shape[:2]
    kind = "conv_spatial" if mode == "spatial" else "conv_channel"
    s = np.linalg.svd(kernel_matrix(kernel.astype(np.float64), kind), compute_uv=False)

    full = decompose(model, ranks={"conv": len(s)}, conv_mode=mode)
    assert [l.name for l in full.model.layers] == ["x", "conv_lowrank", "conv"]
    np.testing.assert_allclose(np.asarray(full.model(x)), reference, rtol=RTOL, atol=ATOL)

    rank = max(1, len(s) // 3)
    low = decompose(model, ranks={"conv": rank}, conv_mode=mode)
    error = np.linalg.norm(np.asarray(low.model(x)) - reference)
    # Each output pixel is (its kh*kw*c input patch) . (W - W_r); every input value lies in at
    # most kh*kw patches, and ||W - W_r|| as a (kh*kw*c, cout) matrix is at most its Frobenius
    # norm, the square root of the discarded energy (ReLU is 1-Lipschitz, so it keeps the bound).
    bound = np.sqrt(kh * kw) * np.linalg.norm(x) * np.sqrt((s[rank:] ** 2).sum())
    assert error <= bound * (1 + RTOL) + ATOL
    assert error > 0  # something was discarded
    assert low.layers[0].kept_energy == pytest.approx((s[:rank] ** 2).sum() / (s ** 2).sum(),
                                                      rel=1e-6)


@pytest.mark.parametrize("flavor", sorted(KERASES))
def test_decompose_dense_error_per_sample_within_next_singular_value(flavor):
    K = KERASES[flavor]()
    model = K.Sequential([K.Input((20,)), K.layers.Dense(16, name="hidden"),
                          K.layers.Dense(4, activation="softmax", name="out")])
    x = np.random.default_rng(2).normal(size=(32, 20)).astype(np.float32)
    reference = np.asarray(model.get_layer("hidden")(x))
    s = np.linalg.svd(model.get_layer("hidden").kernel.numpy().astype(np.float64),
                      compute_uv=False)
    for rank in (3, 8, 16):
        result = decompose(model, ranks={"hidden": rank})
        assert [l.name for l in result.model.layers] == ["hidden_lowrank", "hidden", "out"]
        hidden = result.model.get_layer("hidden")(result.model.get_layer("hidden_lowrank")(x))
        errors = np.linalg.norm(np.asarray(hidden) - reference, axis=1)
        # ||x (W - W_r)|| <= ||x|| * ||W - W_r||_2 = ||x|| * s[r] (0 at full rank).
        next_s = s[rank] if rank < len(s) else 0.0
        assert np.all(errors <= np.linalg.norm(x, axis=1) * next_s * (1 + RTOL) + ATOL)


@pytest.mark.parametrize("flavor", sorted(KERASES))
def test_decompose_params_match_formula(flavor):
    K = KERASES[flavor]()
    inputs = K.Input((8, 8, 2))
    x = K.layers.Conv2D(12, 3, padding="same", name="conv")(inputs)
    x = K.layers.Flatten()(x)
    x = K.layers.Dense(40, use_bias=False, name="dense")(x)
    model = K.Model(inputs, K.layers.Dense(10, name="classifier")(x))
    for mode, conv_rank in (("channel", 5), ("spatial", 4)):
        result = decompose(model, ranks={"conv": conv_rank, "dense": 7}, conv_mode=mode)
        rows = {l.name: l for l in result.layers}
        conv_after = (3 * 3 * 2 * 5 + 5 * 12 + 12 if mode == "channel"
                      else 3 * 2 * 4 + 3 * 4 * 12 + 12)
        assert rows["conv"].params_after == conv_after
        assert rows["conv"].params_before == 3 * 3 * 2 * 12 + 12
        assert rows["dense"].params_after == 7 * (768 + 40)  # no bias
        assert rows["dense"].params_before == 768 * 40
        assert "classifier" not in rows
        assert result.params_after == result.model.count_params() == \
            model.count_params() - sum(r.params_before - r.params_after for r in rows.values())


def test_rank_for_energy_picks_smallest_rank_reaching_fraction():
    rng = np.random.default_rng(3)
    for _ in range(50):
        s = np.sort(rng.exponential(size=rng.integers(2, 30)))[::-1]
        fraction = rng.uniform(0.05, 1.0)
        rank = rank_for_energy(s, fraction)
        kept = np.cumsum(s ** 2) / np.sum(s ** 2)
        assert kept[rank - 1] >= fraction - 1e-12
        assert rank == 1 or kept[rank - 2] < fraction
    assert rank_for_energy(np.array([2.0, 1.0]), 1.0) == 2


def test_rank_for_params_ratio_picks_largest_rank_within_budget():
    for shape, kind in (((300, 120), "dense"), ((3, 3, 16, 32), "conv_channel"),
                        ((5, 5, 8, 16), "conv_spatial")):
        for ratio in (0.1, 0.3, 0.5, 0.9):
            before = int(np.prod(shape)) + shape[-1]
            rank = rank_for_params_ratio(shape, kind, ratio, True)
            assert factored_params(shape, kind, rank, True) <= ratio * before
            full = min(kernel_matrix(np.zeros(shape), kind).shape)
            assert rank == full or factored_params(shape, kind, rank + 1, True) > ratio * before


@pytest.mark.parametrize("flavor", sorted(KERASES))
def test_decompose_energy_and_ratio_choose_per_layer_and_skip_unprofitable(flavor):
    K = KERASES[flavor]()
    model = K.Sequential([K.Input((64,)), K.layers.Dense(48, name="a"),
                          K.layers.Dense(3, name="b")])
    by_ratio = decompose(model, params_ratio=0.5)
    rows = {l.name: l for l in by_ratio.layers}
    assert rows["a"].decomposed and rows["a"].rank == (0.5 * (64 * 48 + 48) - 48) // (64 + 48)
    assert rows["a"].params_after <= 0.5 * rows["a"].params_before
    by_energy = decompose(model, energy=0.6, skip=["b"])
    s = np.linalg.svd(model.get_layer("a").kernel.numpy().astype(np.float64), compute_uv=False)
    assert by_energy.layers[0].rank == rank_for_energy(s, 0.6)
    assert by_energy.layers[0].kept_energy >= 0.6 and by_energy.layers[0].decomposed
    assert [l.name for l in by_energy.layers] == ["a"]
    # A 3-unit layer cannot get cheaper by factoring: left whole, and the report says why.
    whole = decompose(model, energy=1.0, only=["b"])
    assert not whole.layers[0].decomposed and "not fewer than" in whole.layers[0].reason
    assert [l.name for l in whole.model.layers] == ["a", "b"]


def test_decompose_bad_arguments_name_the_fix(tiny_cnn):
    with pytest.raises(InvalidArgumentError, match="exactly one of params_ratio"):
        decompose(tiny_cnn, params_ratio=0.5, energy=0.9)
    with pytest.raises(InvalidArgumentError, match="params_ratio is 1.5"):
        decompose(tiny_cnn, params_ratio=1.5)
    with pytest.raises(InvalidArgumentError, match="skip names 'dense9'.*its layers"):
        decompose(tiny_cnn, energy=0.9, skip=["dense9"])
    with pytest.raises(InvalidArgumentError, match="pass a list of layer names"):
        decompose(tiny_cnn, energy=0.9, only="dense1")
    with pytest.raises(InvalidArgumentError, match=r"ranks\['dense1'\] is 999, over the full"):
        decompose(tiny_cnn, ranks={"dense1": 999})
    with pytest.raises(InvalidArgumentError, match="conv_mode is 'depth'"):
        decompose(tiny_cnn, energy=0.9, conv_mode="depth")


def test_decomposed_fine_tuned_model_converts_to_int8(digits16):
    from tflite_opt.convert import convert
    from tflite_opt.runtime import evaluate_tflite, inspect_model
    from tflite_opt.models.builders import dense_mlp

    model = dense_mlp(input_shape=(16, 16, 1), hidden=(64,))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(digits16.x_train, digits16.y_train, epochs=2, batch_size=64, verbose=0)
    result = decompose(model, params_ratio=0.5, skip=["classifier"])
    small = result.model
    assert result.params_ratio < 0.55
    small.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    small.fit(digits16.x_train, digits16.y_train, epochs=1, batch_size=64, verbose=0)
    converted = convert(small, "int8", representative_data=digits16.x_train[:64], progress=False)
    inspection = inspect_model(converted.tflite_bytes)
    assert inspection.op_counts.get("FULLY_CONNECTED") == 3  # dense1 as two layers + classifier
    assert inspection.inputs[0]["dtype"] == "int8"
    accuracy = evaluate_tflite(converted.tflite_bytes, digits16.x_test, digits16.y_test).accuracy
    assert accuracy > 0.3  # three times chance: the int8 factors still classify


def test_recipe_decompose_stage_round_trips_and_must_come_first():
    from tflite_opt.train.recipe import DecomposeStage, PruneStage, Recipe

    recipe = Recipe(stages=(DecomposeStage(epochs=1, params_ratio=0.5, conv_mode="spatial"),
                            PruneStage(epochs=1)))
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    with pytest.raises(RecipeError, match="decompose.*before"):
        Recipe(stages=(PruneStage(epochs=1), DecomposeStage(epochs=1)))
    with pytest.raises(RecipeError, match="params_ratio.*energy"):
        Recipe.from_dict({"stages": [{"type": "decompose", "params_ratio": 0.5, "energy": 0.9}]})
    with pytest.raises(RecipeError, match="energy"):
        Recipe.from_dict({"stages": [{"type": "decompose", "params_ratio": None, "energy": 0}]})


@pytest.mark.parametrize("flavor", sorted(KERASES))
def test_plan_runs_decompose_before_prune(flavor, tiny_train):
    from tflite_opt.models.builders import digits_cnn
    from tflite_opt.train import OptimizationPlan
    from tflite_opt.train.recipe import DecomposeStage, PruneStage, Recipe

    model = digits_cnn((16, 16, 1), width=8, dense_units=32, flavor=flavor)
    recipe = Recipe(stages=(DecomposeStage(epochs=1, params_ratio=0.5),
                            PruneStage(epochs=1, target_sparsity=0.5)))
    result = OptimizationPlan(recipe).run(model, tiny_train, batch_size=32, verbose=0,
                                        run_eagerly=True)
    names = [l.name for l in result.model.layers]
    # The default policy skips the first conv and the classifier: only the others are factored.
    assert "conv2_lowrank" in names and "dense1_lowrank" in names
    assert "conv1_lowrank" not in names and "classifier_lowrank" not in names
    assert [s.name for s in result.stages] == ["decompose", "prune"]
    assert result.model.count_params() < model.count_params()
    assert result.layer_stats["dense1_lowrank"]["sparsity"] == pytest.approx(0.5, abs=0.02)

"""The compare suite builds each variant from its own recipe, and the one its name says."""

from __future__ import annotations

import re

import pytest

from tflite_opt.train import Recipe

# name fragment -> (stage types in order, QAT scheme)
EXPECTED = {"prune+PQAT": (["prune", "qat"], "pqat"),
            "prune+cluster+PCQAT": (["prune", "cluster", "qat"], "pcqat")}


@pytest.mark.parametrize("quick", [False, True])
def test_our_recipes_each_recipe_is_the_one_its_name_says(quick):
    from benchmarks.suites.compare import our_recipes

    recipes = our_recipes(quick)
    assert {re.sub(r" \(tflite_opt\)$", "", name) for name in recipes} == set(EXPECTED)
    for name, recipe in recipes.items():
        stages, scheme = EXPECTED[name.split(" ")[0]]
        assert [s.type for s in recipe.stages] == stages, name
        assert recipe.stage("qat").scheme == scheme, name
        assert recipe.precision == "int8"
        if "cluster" in stages:
            assert recipe.stage("cluster").preserve_sparsity, name
        assert all(s.epochs == 1 for s in recipe.stages) == quick, name
        # The name's words and the recipe's dict agree (what the JSON row records).
        as_dict = recipe.to_dict()
        assert [s["type"] for s in as_dict["stages"]] == stages
        assert Recipe.from_dict(as_dict) == recipe


def test_our_recipes_building_them_leaves_the_default_recipe_unchanged():
    from benchmarks.suites.compare import our_recipes

    before = Recipe.default().to_dict()
    first = our_recipes(quick=True)
    our_recipes(quick=False)
    assert Recipe.default().to_dict() == before
    assert first["prune+cluster+PCQAT (tflite_opt)"].stage("qat").scheme == "pcqat"
    assert before["stages"][-1]["scheme"] == "pcqat"


def test_recipe_hash_differs_between_recipes_and_is_stable():
    from benchmarks.suites.compare import our_recipes, recipe_hash

    dicts = [r.to_dict() for r in our_recipes().values()]
    hashes = [recipe_hash(d) for d in dicts]
    assert len(set(hashes)) == len(hashes)
    assert hashes == [recipe_hash(r.to_dict()) for r in our_recipes().values()]
    assert recipe_hash(None) is None and re.fullmatch(r"[0-9a-f]{12}", hashes[0])


def test_our_variants_trains_each_named_variant_with_its_own_recipe(monkeypatch):
    """The wiring, without training: every plan gets the recipe its variant's name says."""
    import types

    import numpy as np

    import tflite_opt.convert as convert_module
    import tflite_opt.train as train_module
    from benchmarks.suites import compare

    trained: list[dict] = []

    class RecordingPlan:
        def __init__(self, recipe):
            self.recipe = recipe

        def run(self, model, **kwargs):
            trained.append(self.recipe.to_dict())
            stages = [types.SimpleNamespace(epochs=s.epochs, seconds=1.0) for s in self.recipe.stages]
            return types.SimpleNamespace(model=self.recipe, stages=stages)

    def fake_convert(model, precision, **kwargs):  # the "model" is the recipe it was trained with
        return types.SimpleNamespace(tflite_bytes=repr(model.to_dict()).encode())

    def fake_aware(model, **kwargs):
        return types.SimpleNamespace(conversion=types.SimpleNamespace(tflite_bytes=b"aware"),
                                     float_layers=("classifier",))

    monkeypatch.setattr(train_module, "OptimizationPlan", RecordingPlan)
    monkeypatch.setattr(convert_module, "convert", fake_convert)
    monkeypatch.setattr(convert_module, "convert_accuracy_aware", fake_aware)
    data = types.SimpleNamespace(x_train=np.zeros((10, 4, 4, 1), np.float32), y_train=np.zeros(10))
    variants = compare._our_variants(model=None, data=data, seeds=(0, 1, 2), quick=False)

    by_name = {v.name: v for v in variants}
    assert set(by_name) == set(compare.our_recipes()) | {"accuracy-aware int8 (tflite_opt)"}
    assert len(trained) == 3 * len(compare.our_recipes())  # three seeds each
    for name, recipe in compare.our_recipes().items():
        variant = by_name[name]
        assert variant.recipe == recipe.to_dict()
        stages, scheme = EXPECTED[name.split(" ")[0]]
        assert [s["type"] for s in variant.recipe["stages"]] == stages
        assert variant.recipe["stages"][-1]["scheme"] == scheme
        # The files (seed 0 and the two retrainings) came from that recipe, not another's.
        for tflite in (variant.tflite, *variant.seed_files):
            assert tflite == repr(recipe.to_dict()).encode()
    assert by_name["accuracy-aware int8 (tflite_opt)"].recipe["convert_accuracy_aware"][
        "float_layers"] == ["classifier"]

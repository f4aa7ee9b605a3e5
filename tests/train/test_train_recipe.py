"""Recipe: defaults, JSON/YAML round trip, and errors that name the key and the file."""

from __future__ import annotations

import json

import pytest

from tflite_opt.errors import RecipeError
from tflite_opt.train import ClusterStage, LayerPolicy, PruneStage, QATStage, Recipe


def test_default_recipe_has_prune_cluster_pcqat_int8():
    recipe = Recipe.default()
    assert [s.type for s in recipe.stages] == ["prune", "cluster", "qat"]
    assert recipe.stages[0].target_sparsity == 0.75 and recipe.stages[0].schedule == "polynomial"
    assert recipe.stages[1].number_of_clusters == 16 and recipe.stages[1].preserve_sparsity
    assert recipe.stages[2].scheme == "pcqat"
    assert recipe.precision == "int8"
    assert recipe.policy.skip_first_conv and recipe.policy.skip_classifier


def test_to_dict_from_dict_round_trip_equal():
    recipe = Recipe(stages=(PruneStage(m_by_n=(2, 4), schedule="constant", target_sparsity=0.5),
                            QATStage(scheme="pqat")),
                    policy=LayerPolicy(skip=("dense1",), sparsity={"conv2": 0.6}), precision="int8")
    data = json.loads(json.dumps(recipe.to_dict()))
    assert Recipe.from_dict(data) == recipe


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_from_file_json_and_yaml_equal_default(tmp_path, suffix):
    import yaml

    path = tmp_path / f"recipe{suffix}"
    text = json.dumps(Recipe.default().to_dict()) if suffix == ".json" else \
        yaml.safe_dump(Recipe.default().to_dict())
    path.write_text(text)
    assert Recipe.from_file(path) == Recipe.default()


def test_repo_recipe_files_load_and_default_yaml_is_default():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "recipes"
    files = sorted(root.glob("*.yaml")) + sorted(root.glob("*.json"))
    assert len(files) >= 3
    for path in files:
        recipe = Recipe.from_file(path)
        assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert Recipe.from_file(root / "default.yaml") == Recipe.default()


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d.update(bogus=1), "bogus"),
    (lambda d: d["stages"][0].update(target_sparsty=0.5), "target_sparsty"),
    (lambda d: d["stages"][0].update(target_sparsity=1.0), "target_sparsity"),
    (lambda d: d["stages"][0].update(target_sparsity=-0.1), "target_sparsity"),
    (lambda d: d["stages"][1].update(number_of_clusters=1), "number_of_clusters"),
    (lambda d: d["stages"][2].update(scheme="fancy"), "scheme"),
    (lambda d: d["stages"][0].update(type="teleport"), "type"),
    (lambda d: d["policy"].update(sparsity={"dense1": 2.0}), "dense1"),
    (lambda d: d.update(precision="int4"), "precision"),
    (lambda d: d["stages"][0].update(epochs=0), "epochs"),
])
def test_from_file_bad_value_raises_recipe_error_naming_key_and_file(tmp_path, mutate, key):
    data = Recipe.default().to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecipeError) as info:
        Recipe.from_file(path)
    assert key in str(info.value) and str(path) in str(info.value)


def test_qat_not_last_raises_recipe_error():
    with pytest.raises(RecipeError, match="last"):
        Recipe(stages=(QATStage(), PruneStage()))


def test_from_file_missing_or_unparsable_raises_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        Recipe.from_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [unclosed\n")
    with pytest.raises(RecipeError, match="could not be parsed"):
        Recipe.from_file(bad)


def test_save_then_from_file_round_trip_and_refuses_overwrite(tmp_path):
    from tflite_opt.errors import OutputExistsError

    recipe = Recipe(stages=(ClusterStage(per_channel=True, init="linear"),))
    path = recipe.save(tmp_path / "recipe.json")
    assert Recipe.from_file(path) == recipe
    with pytest.raises(OutputExistsError):
        recipe.save(path)

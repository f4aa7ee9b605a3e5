"""The search's pick trained again on all the training images, shipped, resumable (redone after
an interruption, reused once finished); the skip."""

import hashlib
import json
import math

import pytest

from tflite_opt.search import Budgets, SearchConfig, SearchSpace, run_search, search_data
from tflite_opt.search.tuner import FINAL_RECORD

# One candidate at 8x8, one epoch, unaugmented and measured once: this test is about what is
# trained and shipped after the search (test_search_end_to_end covers the trials themselves).
ONE = SearchSpace(architectures=("mobilenet_v2_like",), widths=(0.25,), depths=(0.5,),
                  kernel_sizes=(3,), resolutions=(8,), precisions=("float32",),
                  sparsities=(0.0,), clusters=(0,))


def _architecture(path):
    """Ops in graph order and every tensor's shape: what the weights cannot change."""
    from tflite_opt.runtime import inspect_model

    found = inspect_model(path)
    return [n["op"] for n in found.nodes], [tuple(t["shape"]) for t in found.tensors]


class _Interrupted(KeyboardInterrupt):
    pass


def _interrupt_the_retrains_conversion(monkeypatch):
    """The retrain (not the trial) raises KeyboardInterrupt when it converts, after training;
    returns a function that undoes this."""
    import tflite_opt.convert as convert_module
    import tflite_opt.search.tuner as tuner

    real_convert, real_retrain, retraining = convert_module.convert, tuner.retrain_final, []

    def convert(*args, **kwargs):
        if retraining:
            raise _Interrupted
        return real_convert(*args, **kwargs)

    def retrain_final(*args, **kwargs):
        retraining.append(1)
        return real_retrain(*args, **kwargs)

    monkeypatch.setattr(convert_module, "convert", convert)
    monkeypatch.setattr(tuner, "retrain_final", retrain_final)

    def undo():
        monkeypatch.setattr(convert_module, "convert", real_convert)
        monkeypatch.setattr(tuner, "retrain_final", real_retrain)

    return undo


def test_pick_is_retrained_on_all_training_images_shipped_and_not_redone_on_resume(
        tmp_path, monkeypatch):
    from tflite_opt._keras import keras_of_flavor
    from tflite_opt.data.digits import load_digits
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.runtime import benchmark

    model_class = keras_of_flavor("tf_keras").Model
    real_fit, fits = model_class.fit, []

    def counted_fit(self, *args, **kwargs):
        fits.append(1)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "fit", counted_fit)
    budgets = Budgets(latency_us=1e6, size_bytes=200_000)
    config = SearchConfig(str(tmp_path), budgets, ONE, trials=1, oracle="random", epochs=1,
                          augmentation=False, validation_copies=1, latency_repeats=0,
                          benchmark_runs=5, verbose=0)

    # Interrupted: the trial, then its retrain up to its conversion; no record is written.
    undo = _interrupt_the_retrains_conversion(monkeypatch)
    with pytest.raises(_Interrupted):
        run_search(config)
    undo()
    trial_dir = next((tmp_path / ".tuner" / "search").glob("trial_*"))
    final_dir = tmp_path / ".tuner" / f"final_{trial_dir.name}"
    assert len(fits) == 2 and not (final_dir / FINAL_RECORD).exists()
    # The interrupted search kept its settings: resuming it with others is refused.
    with pytest.raises(InvalidArgumentError, match="learning_rate"):
        run_search(SearchConfig(**{**config.__dict__, "learning_rate": 1e-3}))
    # What an interruption after the retrained file is written leaves (it is saved atomically,
    # the record last): a model.tflite without a record. It must not be reused.
    final_dir.mkdir(exist_ok=True)
    (final_dir / "model.tflite").write_bytes(b"a stale file of an interrupted retrain")

    # Rerun: the retrain is done again (one more training) and its file shipped.
    result = run_search(config)
    assert len(fits) == 3
    best, final, shipped = result.best, result.final, tmp_path / "best"
    retrained = (final_dir / "model.tflite").read_bytes()
    assert retrained[4:8] == b"TFL3" and final["sha256"] == hashlib.sha256(retrained).hexdigest()
    assert (shipped / "model.tflite").read_bytes() == retrained

    all_images = len(load_digits(image_size=8).x_train)
    split_images = len(search_data(config, 8).x_train)
    assert split_images < all_images  # the trial did not see the held-out fifth
    assert best["training_images"] == split_images
    assert best["optimizer_steps"] == math.ceil(split_images / config.batch_size)
    assert final["training_images"] == all_images
    assert final["optimizer_steps"] == math.ceil(all_images / config.batch_size) * best["epochs"]

    trial_file = shipped / "search_trial_model.tflite"
    assert (shipped / "model.tflite").read_bytes() != trial_file.read_bytes()  # new weights
    assert _architecture(shipped / "model.tflite") == _architecture(trial_file)
    recipe = json.loads((shipped / "recipe.json").read_text())
    assert recipe["training"]["images"] == all_images
    assert recipe["candidate"] == best["candidate"]
    assert json.loads((shipped / "search_trial_recipe.json").read_text())["training"][
        "images"] == split_images

    report = json.loads((shipped / "report.json").read_text())
    assert report["shipped"] == "final" and report["accuracy"] == best["accuracy"]
    assert report["final"]["size_bytes"] == (shipped / "model.tflite").stat().st_size \
        <= budgets.size_bytes
    assert report["search_trial"]["size_bytes"] == trial_file.stat().st_size
    assert final["within_budget"] and final["latency_us"] <= budgets.latency_us
    # Decided side by side with the trial's file: its latency times their ratio, timed once
    # (latency_repeats=0; test_retrain_latency covers the re-timing near the budget).
    side = final["latency_vs_trial"]
    assert side["ratios"] == [side["medians_us"][0] / side["baseline_medians_us"][0]]
    assert side["baseline_latency_us"] == best["latency_us"] and not side["remeasured"]
    assert final["latency_us"] == pytest.approx(best["latency_us"] * side["ratio"])
    assert report["shipped_because"] == report["final"]["verdict"]
    assert benchmark(shipped / "model.tflite", num_runs=5).median_us <= budgets.latency_us
    assert f"{all_images} images" in (shipped / "report.md").read_text()
    # The shipped file classifies: above chance (1 in 10) by over 4 standard errors on the
    # held-out images (which it now trained on; this checks a trained file was shipped).
    from tflite_opt.runtime import evaluate_tflite

    val = search_data(config, 8)
    chance_bound = 0.1 + 4 * math.sqrt(0.1 * 0.9 / len(val.y_test))
    assert evaluate_tflite(shipped / "model.tflite", val.x_test, val.y_test).accuracy \
        > chance_bound

    # Resumed: the retrain of this trial is done, so nothing trains and its file is kept.
    def fit(*args, **kwargs):
        raise AssertionError("a model was trained")

    monkeypatch.setattr(model_class, "fit", fit)
    final_bytes = (shipped / "model.tflite").read_bytes()
    resumed = run_search(config)
    assert resumed.final == final and (shipped / "model.tflite").read_bytes() == final_bytes

    # retrain_final=False: the trial's file is shipped, and the report says so.
    skipped = run_search(SearchConfig(**{**config.__dict__, "retrain_final": False}))
    assert skipped.final is None
    assert (shipped / "model.tflite").read_bytes() == trial_file.read_bytes()
    report = json.loads((shipped / "report.json").read_text())
    assert report["shipped"] == "search_trial" and report["final"] is None
    assert report["size_bytes"] == trial_file.stat().st_size

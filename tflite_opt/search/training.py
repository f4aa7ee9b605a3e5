"""One candidate trained, compressed, converted and measured, as a trial and the retrain do it.

A search trial and the final retrain of its pick both go through these steps, so that they
train and measure alike.

``_build`` makes the candidate's untrained tf_keras model from a seed; ``_train_and_convert``
trains it as ``tflite_opt.models.training.train_from_scratch`` does, runs its compression recipe
(``OptimizationPlan``), converts it and writes ``model.tflite`` with its sidecar, labels and
``recipe.json``; ``_measure`` decides the file's latency (on this host, re-measured near the
budget, or the latency table's estimate), size and budget verdict. Each writes what it did into
the record it is given.

Example:
    >>> model = _build(candidate, data, config.seed)
    >>> path = _train_and_convert(model, candidate, data, config, 8, Path("trial"), record)
    >>> _measure(path, config, None, None, (), record)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tflite_opt.files import atomic_write_json
from tflite_opt.search.config import SearchConfig
from tflite_opt.search.latency_check import check_latency
from tflite_opt.search.latency_table import LatencyTable
from tflite_opt.search.space import Candidate

LABELS = [str(d) for d in range(10)]


def _build(candidate: Candidate, data: Any, seed: int) -> Any:
    """The candidate's untrained tf_keras model, its initial weights drawn from ``seed``."""
    from tflite_opt._keras import keras_of_flavor

    keras_of_flavor("tf_keras").utils.set_random_seed(seed)
    return candidate.build(num_classes=data.num_classes, channels=data.input_shape[-1])


def _train_and_convert(model: Any, candidate: Candidate, data: Any, config: SearchConfig,
                       epochs: int, out_dir: Path, record: dict[str, Any]) -> Path:
    """Trains ``model`` on ``data.x_train`` as ``train_from_scratch`` does, runs the
    candidate's compression recipe, converts and writes ``out_dir/model.tflite`` (with its
    sidecar, labels and ``recipe.json``); what it did goes into ``record``. A search trial
    and the final retrain of its pick both go through here, so they train alike."""
    from tflite_opt.convert import convert
    from tflite_opt.data.augment import Augmentation
    from tflite_opt.models.training import train_from_scratch

    calibration = data.x_train[:config.calibration_samples]
    train_from_scratch(model, data, epochs=epochs, batch_size=config.batch_size,
                       learning_rate=config.learning_rate,
                       augmentation=Augmentation() if config.augmentation else None,
                       seed=config.seed)
    # On the training images as fit saw them (augmented unless augmentation is off).
    record["keras_train_accuracy"] = float(model.history.history["accuracy"][-1])
    # What fit saw, counted by the optimizer: epochs x ceil(images / batch_size) steps.
    record["training_images"] = int(len(data.x_train))
    record["optimizer_steps"] = int(model.optimizer.iterations.numpy())
    recipe = candidate.recipe(epochs=config.compress_epochs)
    if recipe is not None:
        from tflite_opt.train.plan import OptimizationPlan

        plan = OptimizationPlan(recipe).run(model, (data.x_train, data.y_train),
                                            batch_size=config.batch_size, verbose=0)
        model = plan.model
        record["stages"] = [s.to_dict() for s in plan.stages]
    converted = convert(model, candidate.precision, representative_data=calibration,
                        num_calibration_samples=len(calibration), progress=False)
    path = converted.save(out_dir / "model.tflite", overwrite=True, labels=LABELS)
    atomic_write_json(out_dir / "recipe.json", {
        "candidate": candidate.to_dict(),
        "training": {"epochs": epochs, "batch_size": config.batch_size,
                     "images": record["training_images"],
                     "trainer": "tflite_opt.models.training.train_from_scratch",
                     "optimizer": "adam, cosine decay", "learning_rate": config.learning_rate,
                     "augmentation": Augmentation().to_dict() if config.augmentation else None,
                     "seed": config.seed, "flavor": "tf_keras"},
        "compression": recipe.to_dict() if recipe is not None else None})
    return path


def _measure(path: Path, config: SearchConfig, table: LatencyTable | None,
             reference: Path | None, reference_history_us: Sequence[float],
             record: dict[str, Any]) -> None:
    """Latency (host, or the table's estimate), size and the budget verdict of ``path``, into
    ``record``."""
    budgets = config.budgets
    # With a latency table the table decides the budget: the host is measured once, for the
    # record; otherwise a first figure near the budget is measured again (latency_check).
    check = check_latency(path, budgets.latency_us if table is None else None, reference,
                          reference_history_us, threads=config.measure_threads,
                          num_runs=config.benchmark_runs, repeats=config.latency_repeats)
    record["host_latency_us"] = check.latency_us
    record["host_measurement"] = check.first.to_dict()
    record["latency_check"] = check.to_dict()
    record["size_bytes"] = int(path.stat().st_size)
    latency = check.latency_us
    if table is not None:
        estimate = table.estimate(path)
        record["table_latency_us"] = estimate.total_us
        record["table_estimate"] = estimate.to_dict()
        latency = estimate.total_us
    record.update(trained=True, latency_us=latency,
                  within_budget=not budgets.violations(latency, record["size_bytes"]),
                  violations=budgets.violations(latency, record["size_bytes"]))

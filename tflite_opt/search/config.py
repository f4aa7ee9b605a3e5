"""What a search is asked to do (``SearchConfig``), and which of it a resumed search must keep.

``scripts/search.py`` fills a ``SearchConfig`` from its flags and ``search.json`` keeps it from
the start. A search resumed in the same ``output_dir`` must share every setting in
``_RESUME_KEYS`` with it (``trials``, ``verbose`` and ``retrain_final`` may change;
``_check_resume``), and the final retrain's record names the same settings
(``_resume_settings``), so a retrain made with other ones is done again.

Example:
    >>> config = SearchConfig("outputs/search", Budgets(latency_us=2000, size_bytes=200_000),
    ...                       trials=12, oracle="random")
    >>> config.to_dict()["oracle"]
    'random'
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.search.objective import Budgets
from tflite_opt.search.space import SearchSpace

ORACLES = ("random", "bayesian", "hyperband")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Everything a search needs; scripts/search.py fills it from flags.

    Args:
        output_dir: Where the Pareto table/plot, ``trials.json`` and ``best/`` go.
        budgets: Hard latency/size limits.
        space: The candidates. Defaults to ``SearchSpace()``.
        trials: Trials to run (caps Hyperband too). Defaults to 12.
        oracle: ``random``, ``bayesian`` or ``hyperband``. Defaults to bayesian.
        epochs: Float training epochs per candidate (Hyperband: its largest budget).
            Defaults to 8: with 8 augmented epochs the nas suite's pick scored 93.3% on the
            eval set, with 5 its pick scored 80.3%.
        compress_epochs: Epochs of each pruning/clustering stage. Defaults to 1.
        batch_size: Training batch size. Defaults to 32.
        learning_rate: Start of the cosine-decayed Adam learning rate (``train_from_scratch``'s).
            Defaults to 2e-3.
        augmentation: Train on randomly rotated, zoomed, shifted and noised images
            (``tflite_opt.data.augment.Augmentation()``, the eval set's ranges); False trains on
            the images as they are. Defaults to True.
        validation_fraction: Share of the training images held out to score candidates.
            Defaults to 0.2.
        validation_copies: Augmented versions of each held-out image (the first unchanged), as
            the eval set is made. Defaults to 9.
        latency_table: ``benchmark_model --enable_op_profiling`` output from the phone; then
            latency is the table's estimate (host latency is still measured and recorded).
        latency_table_model: The ``.tflite`` that table was measured on (gives shapes).
        measure_threads: Thread counts ``find_fastest_config`` tries. Defaults to (1,).
        benchmark_runs: Interleaved rounds per measurement. Defaults to 50.
        latency_repeats: Extra measurements of a candidate whose first one lies within the
            measured noise of the latency budget (``latency_check``); 0 measures once, without
            the reference. Defaults to 5.
        calibration_samples: Training images calibrating int8. Defaults to 100.
        seed: Oracle and training seed. Defaults to 0.
        verbose: 0 quiet, 1 KerasTuner's trial summaries and a line per trial. Defaults to 1.
        retrain_final: After the search, train the pick again from scratch on all the
            training images (the held-out ones too) with the trial's epochs, recipe and seed,
            convert and measure it, and ship that file as ``best/model.tflite``
            (``retrain_final``); False ships the trial's file as it is. Defaults to True.
    """

    output_dir: str
    budgets: Budgets = Budgets()
    space: SearchSpace = SearchSpace()
    trials: int = 12
    oracle: str = "bayesian"
    epochs: int = 8
    compress_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 2e-3
    augmentation: bool = True
    validation_fraction: float = 0.2
    validation_copies: int = 9
    latency_table: str | None = None
    latency_table_model: str | None = None
    measure_threads: tuple[int, ...] = (1,)
    benchmark_runs: int = 50
    latency_repeats: int = 5
    calibration_samples: int = 100
    seed: int = 0
    verbose: int = 1
    retrain_final: bool = True

    def __post_init__(self) -> None:
        if self.oracle not in ORACLES:
            raise InvalidArgumentError(f"oracle is {self.oracle!r}; accepted: "
                                       f"{', '.join(ORACLES)} (--oracle)")
        for name, low in (("trials", 1), ("epochs", 1), ("compress_epochs", 1),
                          ("batch_size", 1), ("benchmark_runs", 1), ("calibration_samples", 1),
                          ("validation_copies", 1), ("latency_repeats", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidArgumentError(f"{name} is {value!r}; accepted: an integer >= {low} "
                                           f"(--{name})")
        if not 0.0 < self.validation_fraction < 1.0:
            raise InvalidArgumentError(f"validation_fraction is {self.validation_fraction!r}; "
                                       "accepted: a number in (0, 1) (--validation_fraction)")
        if not self.learning_rate > 0:
            raise InvalidArgumentError(f"learning_rate is {self.learning_rate!r}; accepted: a "
                                       "positive number (--learning_rate)")
        if self.latency_table_model and not self.latency_table:
            raise InvalidArgumentError("latency_table_model is set without latency_table; pass "
                                       "--latency_table=FILE too, or drop --latency_table_model")
        if not isinstance(self.retrain_final, bool):
            raise InvalidArgumentError(f"retrain_final is {self.retrain_final!r}; accepted: True "
                                       "or False (--retrain_final)")
        object.__setattr__(self, "measure_threads", tuple(int(t) for t in self.measure_threads))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["budgets"], out["space"] = self.budgets.to_dict(), self.space.to_dict()
        return out


# Settings a resumed search must share with the one it continues (trials may grow).
_RESUME_KEYS = ("budgets", "space", "oracle", "epochs", "compress_epochs", "batch_size",
                "learning_rate", "augmentation", "validation_fraction", "validation_copies",
                "calibration_samples", "latency_table", "latency_table_model", "measure_threads",
                "benchmark_runs", "latency_repeats", "seed")


def _check_resume(output_dir: Path, config: SearchConfig) -> None:
    """Refuses to resume a search of ``output_dir`` made with other budgets, another space or
    other training or measuring settings (a search saved before a setting existed lacks it,
    so it counts as changed)."""
    previous = output_dir / "search.json"
    if not previous.is_file():
        return
    try:
        old = json.loads(previous.read_text())["config"]
    except (ValueError, KeyError, TypeError):
        return
    new = _resume_settings(config)
    changed = [k for k in _RESUME_KEYS if old.get(k) != new[k]]
    if changed:
        raise InvalidArgumentError(
            f"output_dir {str(output_dir)!r} holds a search made with other settings "
            f"({', '.join(changed)}); rerun it with the same flags to resume, or pass a new "
            "--output_dir")


def _resume_settings(config: SearchConfig) -> dict[str, Any]:
    """The settings a resumed search must share with the one it continues, as JSON reads them."""
    values = json.loads(json.dumps(config.to_dict()))  # tuples -> lists, as in a file
    return {key: values[key] for key in _RESUME_KEYS}

"""Hardware-aware architecture search with KerasTuner: build, train, convert, measure each trial.

KerasTuner's oracles (random, Bayesian, Hyperband) choose the candidates; :class:`SearchTuner`
overrides ``run_trial`` to do what a KerasTuner hypermodel cannot: build the candidate with a
tf_keras builder, reject it before training when the built model (weights x bytes) or the
phone's latency table already breaks a budget, otherwise train it as
``tflite_opt.models.training.train_from_scratch`` does (randomly rotated, zoomed, shifted and
noised images every epoch), run its compression recipe (``OptimizationPlan``), convert it
(``tflite_opt.convert``), score the ``.tflite`` through LiteRT on a validation split made as the
eval set is made (augmented copies of held-out training images; the digits' test split is never
read) and measure its latency against a fixed reference, re-measured when close to the budget
(``tflite_opt.search.latency_check``). Each trial reports the scalar ``score``
(``tflite_opt.search.objective``) and keeps every figure in ``trial_*/record.json``; the
Pareto front and the best model are computed from those. The best trial's candidate is then
trained again through the same code on all the training images (``retrain_final``), measured
against the budgets again and shipped as ``best/model.tflite``.

The search is resumable (KerasTuner's own project folder under ``OUTPUT_DIR/.tuner``,
``overwrite=False``) and runs distributed with KerasTuner's chief/worker mode: processes with
``KERASTUNER_TUNER_ID`` (``chief`` or a worker name), ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` share one oracle over gRPC and one ``OUTPUT_DIR``; the chief writes
the outputs when every trial has ended.

Example:
    >>> config = SearchConfig(output_dir="outputs/search", budgets=Budgets(2000, 200_000),
    ...                       trials=12)
    >>> result = run_search(config)
    >>> result.best["candidate"], result.best["latency_us"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from tflite_opt.search.latency_check import (check_latency, check_latency_against,
                                             reference_model)
from tflite_opt.search.latency_table import LatencyTable
from tflite_opt.search.objective import Budgets
from tflite_opt.search.pareto import pareto_front, write_pareto
from tflite_opt.search.space import Candidate, SearchSpace, weight_bytes_lower_bound

ORACLES = ("random", "bayesian", "hyperband")
OBJECTIVE = "score"
RECORD_FILE = "record.json"
TUNER_DIR = ".tuner"
PROJECT_NAME = "search"  # KerasTuner's project folder under TUNER_DIR: a trial per folder
LABELS = [str(d) for d in range(10)]


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


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What a search found: every trial's record, the Pareto front and the best under budget.

    ``best`` is the chosen trial's record (trained on the search's training split, scored on
    its validation split); ``final`` the record of its retrain on all training images
    (``retrain_final``; None when skipped or nothing met the budget), whose file is
    ``best_dir / "model.tflite"`` when it meets the budget too.
    """

    records: tuple[dict, ...]
    front: tuple[dict, ...]
    best: dict | None
    best_dir: Path | None
    output_dir: Path
    wall_s: float
    final: dict | None = None


def make_oracle(config: SearchConfig) -> Any:
    """The KerasTuner oracle named by ``config.oracle`` over ``config.space``."""
    import keras_tuner

    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    common = {"objective": objective, "hyperparameters": config.space.hyperparameters(),
              "tune_new_entries": False, "seed": config.seed}
    if config.oracle == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=config.trials, **common)
    if config.oracle == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=config.trials, num_initial_points=min(config.trials, 4), **common)
    oracle = keras_tuner.oracles.HyperbandOracle(max_epochs=config.epochs, factor=3, **common)
    oracle.max_trials = config.trials  # Oracle.create_trial stops there; Hyperband has no flag
    return oracle


def _tuner_class() -> type:
    import keras_tuner

    class SearchTuner(keras_tuner.Tuner):
        """KerasTuner ``Tuner`` whose trial builds, trains, converts and measures a candidate."""

        def __init__(self, config: SearchConfig, table: LatencyTable | None, **kwargs: Any):
            self.config = config
            self.table = table
            self._data: dict[int, Any] = {}
            super().__init__(oracle=make_oracle(config),
                             directory=str(Path(config.output_dir) / TUNER_DIR),
                             project_name=PROJECT_NAME, overwrite=False, **kwargs)

        def data(self, resolution: int) -> Any:
            if resolution not in self._data:
                self._data[resolution] = search_data(self.config, resolution)
            return self._data[resolution]

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            values = trial.hyperparameters.values
            candidate = Candidate.from_values(values)
            epochs = int(values.get("tuner/epochs", self.config.epochs))
            trial_dir = Path(self.get_trial_dir(trial.trial_id))
            earlier = _earlier_record(Path(self.project_dir), candidate, epochs)
            if earlier is not None:
                # Oracles can propose a finished candidate again (the Bayesian one did in the
                # nas suite); its figures are known, so the trial reuses them, untrained.
                record = {**earlier, "duplicate_of": earlier["trial_id"], "seconds": 0.0}
            else:
                reference = None  # only a re-measurement near the budget needs one
                if self.table is None and self.config.budgets.latency_us is not None \
                        and self.config.latency_repeats > 0:
                    reference = reference_model(Path(self.project_dir).parent)
                record = evaluate_candidate(
                    candidate, self.data(candidate.resolution), self.config, self.table,
                    trial_dir, epochs=epochs, reference=reference,
                    reference_history_us=_reference_history(Path(self.project_dir)))
            record["trial_id"] = trial.trial_id
            record["tuner_id"] = self.tuner_id  # which process ran it (distributed mode)
            atomic_write_json(trial_dir / RECORD_FILE, record)
            if self.config.verbose:
                print(_one_line(record), flush=True)
            metrics = {OBJECTIVE: record["score"], "trained": float(record["trained"])}
            for key in ("accuracy", "latency_us", "host_latency_us", "size_bytes"):
                if record.get(key) is not None:
                    metrics[key] = float(record[key])
            return metrics

    return SearchTuner


def search_data(config: SearchConfig, resolution: int) -> Any:
    """The digits at ``resolution`` for a search: ``x_train`` trains the candidates, ``x_test``
    is ``augmented_validation_split``'s augmented held-out training images that score them."""
    from tflite_opt.data.digits import load_digits
    from tflite_opt.data.digits_eval import augmented_validation_split

    return augmented_validation_split(load_digits(image_size=resolution, seed=config.seed),
                                      config.validation_fraction, config.validation_copies,
                                      seed=config.seed + 1, split_seed=config.seed)


def _original_records(project_dir: Path) -> Iterator[dict]:
    """The readable records of this search's finished trials (all workers') that ran their
    candidate, not copies of an earlier trial's figures."""
    for path in sorted(project_dir.glob(f"trial_*/{RECORD_FILE}")):
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        if not record.get("duplicate_of"):
            yield record


def _reference_history(project_dir: Path) -> list[float]:
    """The reference's medians in every finished trial of this search (all workers')."""
    return [median for record in _original_records(project_dir)
            for median in (record.get("latency_check") or {}).get("reference_medians_us", [])]


def _earlier_record(project_dir: Path, candidate: Candidate, epochs: int) -> dict | None:
    """The record of a finished trial of the same candidate and epochs (not itself a copy)."""
    return next((record for record in _original_records(project_dir)
                 if record.get("candidate") == candidate.to_dict()
                 and record.get("epochs") == epochs), None)


def _one_line(record: dict) -> str:
    c = record["candidate"]
    head = (f"trial {record.get('trial_id', '?')}: {c['architecture']} w={c['width']} "
            f"d={c['depth']} k={c['kernel_size']} {c['resolution']}px {c['precision']} "
            f"sparsity={c['sparsity']} clusters={c['clusters']}")
    if record.get("duplicate_of"):
        return f"{head} -> same as trial {record['duplicate_of']}: its figures reused"
    if not record["trained"]:
        return f"{head} -> rejected before training ({record['rejected']})"
    check = record.get("latency_check") or {}
    again = (f" (median of {len(check['candidate_medians_us'])} measurements: within "
             f"{check['margin_us']:.0f} us of the budget)" if check.get("remeasured") else "")
    return (f"{head} -> accuracy {100 * record['accuracy']:.2f}%, latency "
            f"{record['latency_us']:.0f} us{again}, size {record['size_bytes']} B, "
            f"{'within budget' if record['within_budget'] else 'over budget'}")


def evaluate_candidate(candidate: Candidate, data: Any, config: SearchConfig,
                       table: LatencyTable | None, trial_dir: Path, epochs: int,
                       reference: Path | None = None,
                       reference_history_us: Sequence[float] = ()) -> dict[str, Any]:
    """One trial: pre-reject or train, compress, convert, score and measure; the record.

    ``data.x_test`` scores the ``.tflite`` (``search_data`` gives the augmented validation
    split); ``reference`` and ``reference_history_us`` go to ``check_latency``.

    Example:
        >>> evaluate_candidate(Candidate(), search_data(config, 24), config, None, Path("t"),
        ...                    epochs=3)
    """
    from tflite_opt.runtime import evaluate_tflite

    budgets = config.budgets
    started = time.perf_counter()
    model = _build(candidate, data, config.seed)
    record: dict[str, Any] = {
        "candidate": candidate.to_dict(), "params": int(model.count_params()),
        "weight_bytes_lower_bound": weight_bytes_lower_bound(model, candidate),
        "trained": False, "rejected": None, "accuracy": None, "latency_us": None,
        "host_latency_us": None, "table_latency_us": None, "size_bytes": None,
        "within_budget": False, "epochs": epochs}
    if budgets.size_bytes is not None and record["weight_bytes_lower_bound"] > budgets.size_bytes:
        return _rejected(record, budgets, "size",
                         f"weights alone need {record['weight_bytes_lower_bound']} B > "
                         f"{budgets.size_bytes} B", started)
    calibration = data.x_train[:config.calibration_samples]
    if table is not None:
        # The untrained graph has the trained one's ops and shapes: price it before training.
        untrained = _convert(model, candidate.precision, calibration[:10])
        estimate = table.estimate(untrained)
        record["table_estimate_before_training"] = estimate.to_dict()
        if budgets.latency_us is not None and estimate.total_us > budgets.latency_us:
            return _rejected(record, budgets, "latency_table",
                             f"latency table says {estimate.total_us:.0f} us > "
                             f"{budgets.latency_us:.0f} us", started, latency=estimate.total_us)
    # No validation inside fit: the score is the .tflite's accuracy, taken once at the end
    # (a per-epoch Keras evaluation would trace one more graph per trial for nothing).
    path = _train_and_convert(model, candidate, data, config, epochs, trial_dir, record)
    record["accuracy"] = float(evaluate_tflite(path, data.x_test, data.y_test).accuracy)
    _measure(path, config, table, reference, reference_history_us, record)
    record.update(score=budgets.score(record["accuracy"], record["latency_us"],
                                      record["size_bytes"]),
                  seconds=time.perf_counter() - started)
    return record


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


def _convert(model: Any, precision: str, calibration: Any) -> bytes:
    from tflite_opt.convert import convert

    return convert(model, precision, representative_data=calibration,
                   num_calibration_samples=len(calibration), progress=False).tflite_bytes


def _rejected(record: dict, budgets: Budgets, stage: str, reason: str, started: float,
              latency: float | None = None) -> dict:
    size = record["weight_bytes_lower_bound"]
    record.update(rejected=f"{stage}: {reason}", rejected_at=stage,
                  score=budgets.score(0.0, latency, size), seconds=time.perf_counter() - started)
    return record


def _serve_oracle(oracle: Any, poll_s: float = 0.5) -> None:
    """KerasTuner's ``oracle_chief.start_server`` with a short poll.

    Its loop waits 20 s between checks for running trials once a worker has been told to
    stop, which would add up to 20 s to every distributed search; the service is KerasTuner's.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    if server.add_insecure_port(address) == 0:
        raise InvalidArgumentError(f"the chief could not listen on {address}; set "
                                   "KERASTUNER_ORACLE_PORT to a free port")
    server.start()
    try:
        while not (servicer.stop_triggered and exit_chief(oracle)):
            time.sleep(poll_s)
    finally:
        server.stop(grace=1)


def role() -> str:
    """``single``, ``chief`` or ``worker``, from KerasTuner's environment variables."""
    from keras_tuner.src.distribute import utils

    if not utils.has_chief_oracle():
        return "single"
    return "chief" if utils.is_chief_oracle() else "worker"


def run_search(config: SearchConfig) -> SearchResult | None:
    """Runs (or resumes) the search and writes the outputs; None on a distributed worker.

    Writes into ``config.output_dir``: ``pareto.csv``/``.md``/``.png``, ``trials.json``,
    ``search.json`` (config at the start, summary at the end) and ``best/`` (``model.tflite``,
    its sidecar
    ``model.json``, ``labels.txt``, ``recipe.json``, ``report.json``, ``report.md``, and the
    trial's own ``search_trial_model.tflite`` / ``search_trial_recipe.json``).
    ``model.tflite`` is the pick retrained on all training images (``retrain_final``) when
    ``config.retrain_final`` is set and that file meets the budgets, else the trial's.

    Raises:
        InvalidArgumentError: a bad flag value or latency table (the message names it).
    """
    started = time.perf_counter()
    table = None
    if config.latency_table:
        table = LatencyTable.from_file(config.latency_table, model=config.latency_table_model)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _check_resume(output_dir, config)
    if not (output_dir / "search.json").is_file():
        # The settings now, the summary at the end: a run interrupted before its outputs (in
        # a trial or in the retrain) is then resumed only with the same settings too.
        atomic_write_json(output_dir / "search.json", {"config": config.to_dict(),
                                                       "summary": None})
    tuner = _tuner_class()(config, table)
    where = role()
    if where == "chief":
        tuner.save()
        _serve_oracle(tuner.oracle)
    else:
        tuner.search(verbose=config.verbose)
    if where == "worker":
        return None
    return write_outputs(tuner.oracle, config, table, time.perf_counter() - started)


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
    new = json.loads(json.dumps(config.to_dict()))  # tuples -> lists, as in the file
    changed = [k for k in _RESUME_KEYS if old.get(k) != new.get(k)]
    if changed:
        raise InvalidArgumentError(
            f"output_dir {str(output_dir)!r} holds a search made with other settings "
            f"({', '.join(changed)}); rerun it with the same flags to resume, or pass a new "
            "--output_dir")


def collect_records(oracle: Any, project_dir: Path) -> list[dict]:
    """Every completed trial's record, read from its ``record.json``, in trial order."""
    records = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        path = project_dir / f"trial_{trial_id}" / RECORD_FILE
        if str(trial.status) not in ("COMPLETED", "TrialStatus.COMPLETED") or not path.is_file():
            continue
        record = json.loads(path.read_text())
        record["trial_id"] = trial_id
        records.append(record)
    return records


def best_record(records: Sequence[dict]) -> dict | None:
    """The most accurate trained record within every budget (then faster, then smaller)."""
    fits = [r for r in records if r.get("trained") and r.get("within_budget")
            and not r.get("duplicate_of")]
    return max(fits, key=lambda r: (r["accuracy"], -r["latency_us"], -r["size_bytes"]),
               default=None)


def write_outputs(oracle: Any, config: SearchConfig, table: LatencyTable | None,
                  wall_s: float) -> SearchResult:
    """Pareto table/plot, ``trials.json``, ``search.json`` and ``best/`` from the trials."""
    output_dir = Path(config.output_dir)
    project_dir = _project_dir(output_dir)
    records = collect_records(oracle, project_dir)
    write_pareto(records, output_dir, config.budgets)
    front = pareto_front(records)
    best = best_record(records)
    atomic_write_json(output_dir / "trials.json", records)
    best_dir, final = None, None
    if best is not None:
        if config.retrain_final:
            final = retrain_final(best, config, table)
        best_dir = _write_best(best, final, project_dir / f"trial_{best['trial_id']}",
                               output_dir / "best", config, table)
    summary = {
        "trials": len(records), "trained": sum(1 for r in records if r["trained"]),
        "rejected_before_training": sum(1 for r in records if not r["trained"]),
        "over_budget_after_conversion": sum(1 for r in records
                                            if r["trained"] and not r["within_budget"]),
        "duplicates": sum(1 for r in records if r.get("duplicate_of")),
        "pareto_trials": [r["trial_id"] for r in front],
        "best_trial": best["trial_id"] if best else None,
        "final_retrained": final is not None,
        "final_within_budget": final["within_budget"] if final else None, "wall_s": wall_s,
        "latency_source": "latency_table" if table else "measured on this host"}
    atomic_write_json(output_dir / "search.json", {"config": config.to_dict(), "summary": summary,
                                                   "latency_table": table.to_dict() if table
                                                   else None})
    return SearchResult(records=tuple(records), front=tuple(front), best=best, best_dir=best_dir,
                        output_dir=output_dir, wall_s=wall_s, final=final)


FINAL_RECORD = "final_record.json"


def retrain_final(best: dict, config: SearchConfig, table: LatencyTable | None) -> dict:
    """The search's pick trained again from scratch on all the training images, as its trial
    was trained (same builder, epochs, recipe, seed and calibration count), then converted and
    measured against the budget again (without a latency table: timed side by side with the
    trial's file and re-timed near the budget, ``_latency_against_trial``); its files and
    record go to ``OUTPUT_DIR/.tuner/final_trial_ID/``.

    KerasTuner's own recipe (``get_best_hyperparameters``, then build and fit on all data):
    the trial was fit on ``1 - validation_fraction`` of the images, so the file shipped has
    seen every image the search may use; the digits' test split (the eval set's source) is
    still never read. The latency and size are measured again on the new file: the
    architecture is the trial's, but a compression stage's outcome depends on the weights.
    The record is written last and atomically and names the settings it was trained with and
    the sha256 of its file; a resumed search reuses it only when all of them match (a finished
    retrain of the same trial, made with these settings, whose file is the one on disk), and
    otherwise deletes it and trains again, so an interrupted retrain (a file written, no record)
    is redone from scratch.

    Example:
        >>> final = retrain_final(result.best, config, None)
        >>> final["training_images"], final["within_budget"]
    """
    from tflite_opt.data.digits import load_digits

    output_dir = Path(config.output_dir)
    final_dir = _final_dir(output_dir, best["trial_id"])
    record_path, model_path = final_dir / FINAL_RECORD, final_dir / "model.tflite"
    settings = _resume_settings(config)
    if record_path.is_file() and model_path.is_file():
        try:
            done = json.loads(record_path.read_text())
        except ValueError:
            done = {}
        if (done.get("trial_id"), done.get("candidate"), done.get("settings"),
                done.get("sha256")) == (best["trial_id"], best["candidate"], settings,
                                        _sha256(model_path)):
            return done
    # A record that does not vouch for the files below must not outlive their rewrite: an
    # interruption after the new model.tflite is written would leave it beside that file.
    record_path.unlink(missing_ok=True)
    started = time.perf_counter()
    candidate = Candidate.from_values(best["candidate"])
    data = load_digits(image_size=candidate.resolution, seed=config.seed)
    # Only the training split: nothing downstream may read the test split by accident.
    data = dataclasses.replace(data, x_test=data.x_test[:0], y_test=data.y_test[:0])
    model = _build(candidate, data, config.seed)
    record: dict[str, Any] = {
        "trial_id": best["trial_id"], "candidate": best["candidate"], "epochs": best["epochs"],
        "params": int(model.count_params()), "table_latency_us": None,
        "trial_accuracy": best["accuracy"], "settings": settings}
    if config.verbose:
        print(f"retraining trial {best['trial_id']}'s candidate on all {len(data.x_train)} "
              f"training images ({best['epochs']} epochs)", flush=True)
    path = _train_and_convert(model, candidate, data, config, best["epochs"], final_dir, record)
    reference = None
    if table is None and config.budgets.latency_us is not None and config.latency_repeats > 0:
        reference = reference_model(output_dir / TUNER_DIR)
    _measure(path, config, table, reference, _reference_history(_project_dir(output_dir)),
             record)
    if table is None:
        trial_file = _project_dir(output_dir) / f"trial_{best['trial_id']}" / "model.tflite"
        _latency_against_trial(best, trial_file, path, config, record)
    record["seconds"] = time.perf_counter() - started
    record["sha256"] = _sha256(path)
    atomic_write_json(record_path, record)
    record = json.loads(record_path.read_text())  # as a resumed search reads it back
    if config.verbose:
        print(f"final model: latency {record['latency_us']:.0f} us, size {record['size_bytes']} "
              f"B, {'within budget' if record['within_budget'] else 'over budget: '}"
              f"{'' if record['within_budget'] else ', '.join(record['violations'])}", flush=True)
    return record


def _resume_settings(config: SearchConfig) -> dict[str, Any]:
    """The settings a resumed search must share with the one it continues, as JSON reads them."""
    values = json.loads(json.dumps(config.to_dict()))  # tuples -> lists, as in a file
    return {key: values[key] for key in _RESUME_KEYS}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _project_dir(output_dir: Path) -> Path:
    """KerasTuner's project folder of a search writing to ``output_dir`` (a trial per folder)."""
    return output_dir / TUNER_DIR / PROJECT_NAME


def _final_dir(output_dir: Path, trial_id: str) -> Path:
    """Where ``retrain_final`` writes trial ``trial_id``'s retrained files and record."""
    return output_dir / TUNER_DIR / f"final_trial_{trial_id}"


def _latency_against_trial(best: dict, trial_file: Path, final_file: Path,
                           config: SearchConfig, record: dict[str, Any]) -> None:
    """Decides the final file's latency as the trial's decided latency times the two files'
    median ratio, timed interleaved in the trial's fastest configuration and re-timed
    ``config.latency_repeats`` times when within the noise margin of the budget
    (``latency_check.check_latency_against``; the margin is at least the trial's own).

    Both files have the same ops and shapes, so the ratio is near 1 unless a compression
    stage ended differently; a measurement of the final file alone is not comparable on a
    shared host: in the nas suite the retrained copy of a trial decided at 49 us (median of
    six) measured 71 us alone a few minutes later, the host's load having changed. One ratio
    still moves (two files of one architecture measured 1.12x apart over 50 interleaved
    rounds), hence the re-timing near the budget, as a trial's latency is re-measured there.
    The figure measured alone stays in the record (``host_latency_us``, ``latency_check``).
    """
    measurement = best["host_measurement"]
    check = check_latency_against(
        final_file, trial_file, best["latency_us"], config.budgets.latency_us,
        baseline_noise=(best.get("latency_check") or {}).get("noise") or 0.0,
        num_runs=config.benchmark_runs, repeats=config.latency_repeats,
        num_threads=measurement["num_threads"], op_resolver=measurement["op_resolver"])
    violations = config.budgets.violations(check.latency_us, record["size_bytes"])
    # The baseline of the check is the trial's file, the model the retrained one.
    record["latency_vs_trial"] = check.to_dict()
    record.update(latency_us=check.latency_us, within_budget=not violations,
                  violations=violations)


def final_verdict(final: dict, budgets: Budgets) -> str:
    """Why the retrained file is shipped or not, in words: each budget it breaks, by how much
    and how that figure was measured.

    Example:
        >>> print(final_verdict(result.final, config.budgets))
    """
    if final["within_budget"]:
        return "The retrained file meets every budget: it is shipped as model.tflite."
    broken = []
    latency, size = final["latency_us"], final["size_bytes"]
    if budgets.latency_us is not None and latency > budgets.latency_us:
        over = latency - budgets.latency_us
        broken.append(f"latency {latency:.1f} us > the {budgets.latency_us:.10g} us budget by "
                      f"{over:.1f} us ({100 * over / budgets.latency_us:.1f}%): "
                      f"{_how_latency_was_decided(final, budgets.latency_us)}")
    if budgets.size_bytes is not None and size > budgets.size_bytes:
        over = size - budgets.size_bytes
        broken.append(f"size {size} B > the {budgets.size_bytes} B budget by {over} B "
                      f"({100 * over / budgets.size_bytes:.1f}%): the file as written")
    images = final.get("training_images")
    return ("The retrained file is over budget: " + "; ".join(broken) + ". The trial's own file "
            "(trained on the search's training split"
            + (f", not all {images} images" if images else "") + ") is shipped as model.tflite "
            "instead.")


# Where a retrained file's noise margin came from (``RatioCheck.noise_source``), in words.
_NOISE_SOURCES = {"model_iqr": "the retrained file's run-to-run spread",
                  "baseline_iqr": "the trial's file's run-to-run spread",
                  "baseline_decision": "the noise the trial's own latency decision used"}


def _how_latency_was_decided(final: dict, budget_us: float) -> str:
    side = final.get("latency_vs_trial")
    if final.get("table_latency_us") is not None:
        return "the latency table's estimate of the retrained file"
    if not side or "ratios" not in side:
        return "measured on this host"
    ratios, margin = side["ratios"], side["margin_us"]
    times = "once" if len(ratios) == 1 else f"{len(ratios)} times"
    how = (f"the trial's decided {side['baseline_latency_us']:.1f} us x {side['ratio']:.3f}, "
           f"the median ratio of the two files timed side by side {times} "
           f"({side['num_runs']} interleaved rounds{' each' if len(ratios) > 1 else ''}")
    first = side["baseline_latency_us"] * ratios[0]
    source = (f"{_NOISE_SOURCES.get(side['noise_source'], side['noise_source'])}, "
              f"{100 * side['noise']:.1f}%")
    if side["remeasured"]:
        return how + (f"; re-timed because the first ratio, {ratios[0]:.3f}, gave {first:.1f} "
                      f"us, within the {margin:.1f} us noise margin of the budget ({source}))")
    near = abs(first - budget_us) <= margin
    return how + (f"; the first ratio gave {first:.1f} us, "
                  + (f"within the {margin:.1f} us noise margin ({source}) but "
                     "--latency_repeats=0 times it once)" if near else
                     f"beyond the {margin:.1f} us noise margin of the budget ({source}), so it "
                     "was not re-timed)"))


def _write_best(best: dict, final: dict | None, trial_dir: Path, best_dir: Path,
                config: SearchConfig, table: LatencyTable | None) -> Path:
    """``best/``: the shipped ``model.tflite`` (the retrained file when it meets the budget,
    else the trial's), ``search_trial_model.tflite`` (the trial's, as scored) and the report."""
    ships_final = final is not None and final["within_budget"]
    shipped_dir = _final_dir(Path(config.output_dir), best["trial_id"]) if ships_final \
        else trial_dir
    for name in ("model.tflite", "model.json", "labels.txt", "recipe.json"):
        source = shipped_dir / name
        if source.is_file():
            atomic_write_bytes(best_dir / name, source.read_bytes())
    for name in ("model.tflite", "recipe.json"):
        atomic_write_bytes(best_dir / f"search_trial_{name}", (trial_dir / name).read_bytes())
    search_trial = {key: best.get(key) for key in (
        "accuracy", "latency_us", "host_latency_us", "host_measurement", "latency_check",
        "table_latency_us", "size_bytes", "within_budget", "keras_train_accuracy",
        "training_images", "optimizer_steps", "stages")}
    search_trial["file"] = "search_trial_model.tflite"
    final_report = None
    if final is not None:
        final_report = {key: final.get(key) for key in (
            "latency_us", "latency_vs_trial", "host_latency_us", "host_measurement",
            "latency_check", "table_latency_us", "size_bytes", "within_budget", "violations",
            "keras_train_accuracy", "training_images", "optimizer_steps", "stages", "seconds",
            "sha256")}
        final_report["file"] = "model.tflite" if ships_final else None
        final_report["verdict"] = final_verdict(final, config.budgets)
    shipped = final if ships_final else best
    report = {"trial": best["trial_id"], "candidate": best["candidate"],
              "shipped": "final" if ships_final else "search_trial",
              "shipped_because": final_report["verdict"] if final_report else
              "retrain_final is off: the trial's file is shipped as it is.",
              # The trial's validation score: the final file has no held-out images left.
              "accuracy": best["accuracy"], "latency_us": shipped["latency_us"],
              "latency_source": "latency_table" if table else "measured on this host",
              "host_latency_us": shipped["host_latency_us"],
              "host_measurement": shipped.get("host_measurement"),
              "latency_check": shipped.get("latency_check"),
              "table_latency_us": shipped.get("table_latency_us"),
              "size_bytes": shipped["size_bytes"], "budgets": config.budgets.to_dict(),
              "within_budget": shipped["within_budget"], "params": best["params"],
              "keras_train_accuracy": shipped.get("keras_train_accuracy"),
              "stages": shipped.get("stages", []), "epochs": best["epochs"],
              "search_trial": search_trial, "final": final_report, "host_cpu": _cpu()}
    atomic_write_json(best_dir / "report.json", report)
    c = best["candidate"]
    lines = [f"# Best candidate under the budget (trial {best['trial_id']})", "",
             f"- architecture: {c['architecture']} (width {c['width']}, depth {c['depth']}, "
             f"kernel {c['kernel_size']}, input {c['resolution']}x{c['resolution']})",
             f"- recipe: {c['precision']}, sparsity {c['sparsity']}, clusters {c['clusters']}, "
             f"{best['epochs']} epochs",
             f"- accuracy of the trial's .tflite on the validation split "
             f"({config.validation_copies} augmented copies of {config.validation_fraction:g} "
             f"of the training images): {100 * best['accuracy']:.2f}%", "",
             "| file | trained on | latency us | size B | within budget |",
             "|---|---|---|---|---|",
             _file_row("search_trial_model.tflite (the trial, as scored)", best, report)]
    if final is not None:
        name = "model.tflite (retrained, shipped)" if ships_final else \
            f"{FINAL_RECORD} (retrained, over budget: not shipped)"
        lines.append(_file_row(name, final, report))
    lines += ["", "Shipped as model.tflite: "
              + ("the retrained file." if ships_final else "the trial's file"
                 + (" (retrain_final off)." if final is None else ", NOT the retrained one.")),
              *([final_report["verdict"]] if final_report and not ships_final else []),
              f"Latency: {report['latency_source']}, host CPU {report['host_cpu']}; budgets: "
              f"{config.budgets.to_dict()}", ""]
    atomic_write_text(best_dir / "report.md", "\n".join(lines))
    return best_dir


def _file_row(name: str, record: dict, report: dict) -> str:
    images = record.get("training_images")
    return (f"| {name} | {images if images is not None else '?'} images, "
            f"{record.get('optimizer_steps', '?')} steps | {record['latency_us']:.1f} | "
            f"{record['size_bytes']} | {'yes' if record['within_budget'] else 'no'} |")


def _cpu() -> str:
    from tflite_opt.runtime.host_cpu import host_cpu

    return host_cpu().model

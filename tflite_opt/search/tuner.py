"""Hardware-aware architecture search with KerasTuner: build, train, convert, measure each trial.

KerasTuner's oracles (random, Bayesian, Hyperband) choose the candidates; :class:`SearchTuner`
overrides ``run_trial`` to do what a KerasTuner hypermodel cannot: build the candidate with a
tf_keras builder, reject it before training when the built model (weights x bytes) or the
phone's latency table already breaks a budget, otherwise train it as
``tflite_opt.models.training.train_from_scratch`` does (randomly rotated, zoomed, shifted and
noised images every epoch), run its compression recipe (``OptimizationPlan``) and convert it
(``tflite_opt.convert``): those steps are ``tflite_opt.search.training``'s, shared with the
retrain; then score the ``.tflite`` through LiteRT on a validation split made as the
eval set is made (augmented copies of held-out training images; the digits' test split is never
read) and measure its latency against a fixed reference, re-measured when close to the budget
(``tflite_opt.search.latency_check``). Each trial reports the scalar ``score``
(``tflite_opt.search.objective``) and keeps every figure in ``trial_*/record.json``; the
Pareto front and the best model are computed from those. The best trial's candidate is then
trained again through the same code on all the training images (``retrain_final``), measured
against the budgets again and shipped as ``best/model.tflite`` (``tflite_opt.search.final``).

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
import os
import time
from pathlib import Path
from typing import Any, Sequence

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.files import atomic_write_json
# ORACLES, LABELS, FINAL_RECORD, final_verdict, _final_dir and _latency_against_trial moved out
# of this module; they are imported here too, so that they stay importable from it.
from tflite_opt.search.config import ORACLES, SearchConfig, _check_resume
from tflite_opt.search.final import (FINAL_RECORD, _final_dir, _latency_against_trial,
                                     _write_best, final_verdict, retrain_final)
from tflite_opt.search.latency_check import reference_model
from tflite_opt.search.latency_table import LatencyTable
from tflite_opt.search.objective import Budgets
from tflite_opt.search.pareto import pareto_front, write_pareto
from tflite_opt.search.records import (PROJECT_NAME, RECORD_FILE, TUNER_DIR, _earlier_record,
                                       _project_dir, _reference_history, collect_records)
from tflite_opt.search.space import Candidate, weight_bytes_lower_bound
from tflite_opt.search.training import LABELS, _build, _measure, _train_and_convert

OBJECTIVE = "score"


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

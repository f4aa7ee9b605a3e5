"""After the search: its pick retrained on all training images, judged again, shipped, reported.

``retrain_final`` trains the best trial's candidate again from scratch on every training image
(the held-out validation images too) through the trial's own steps
(``tflite_opt.search.training``), and decides the new file's latency side by side with the
trial's file (``_latency_against_trial``). ``_write_best`` writes ``best/``: ``model.tflite``
(the retrained file when it meets every budget, else the trial's), the trial's own
``search_trial_model.tflite``, and ``report.json``/``report.md``, whose verdict
(``final_verdict``) says in words why that file ships.

Example:
    >>> final = retrain_final(result.best, config, None)
    >>> print(final_verdict(final, config.budgets))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from tflite_opt.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from tflite_opt.search.config import SearchConfig, _resume_settings
from tflite_opt.search.latency_check import check_latency_against, reference_model
from tflite_opt.search.latency_table import LatencyTable
from tflite_opt.search.objective import Budgets
from tflite_opt.search.records import TUNER_DIR, _project_dir, _reference_history
from tflite_opt.search.space import Candidate
from tflite_opt.search.training import _build, _measure, _train_and_convert

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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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

"""Where a search keeps its trials' records, and reading them back.

KerasTuner's project folder is ``OUTPUT_DIR/.tuner/search``, a folder per trial; each finished
trial writes its figures to ``trial_ID/record.json`` (every worker of a distributed search into
the same folder). They are read back to reuse the figures of a candidate proposed again
(``_earlier_record``), to give a latency check the reference's earlier medians
(``_reference_history``; the final retrain's check too) and for the search's outputs
(``collect_records``).

Example:
    >>> records = collect_records(tuner.oracle, _project_dir(Path("outputs/search")))
    >>> _reference_history(_project_dir(Path("outputs/search")))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from tflite_opt.search.space import Candidate

RECORD_FILE = "record.json"
TUNER_DIR = ".tuner"
PROJECT_NAME = "search"  # KerasTuner's project folder under TUNER_DIR: a trial per folder


def _project_dir(output_dir: Path) -> Path:
    """KerasTuner's project folder of a search writing to ``output_dir`` (a trial per folder)."""
    return output_dir / TUNER_DIR / PROJECT_NAME


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

"""Accuracy per round of federated runs: a markdown table and a plot. They take results, never models.

Example:
    >>> write_report(result, "outputs/fl", centralized_accuracy=0.93)
    {'table': PosixPath('outputs/fl/accuracy_per_round.md'), 'plot': ..., 'json': ...}
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from tflite_opt.federated.fedavg import FederatedResult
from tflite_opt.files import atomic_write_bytes, atomic_write_json, atomic_write_text


def markdown_table(table: Mapping[str, Any]) -> str:
    """A benchmark-style table (``title``, ``columns``, ``rows``) as markdown."""
    lines = [f"## {table['title']}", "", "| " + " | ".join(table["columns"]) + " |",
             "|" + "---|" * len(table["columns"])]
    lines += ["| " + " | ".join("-" if c is None else str(c) for c in row) + " |"
              for row in table["rows"]]
    return "\n".join(lines) + "\n"


def plot_accuracy_per_round(curves: Mapping[str, Sequence[Mapping[str, Any]]],
                            path: str | os.PathLike, *, reference: Mapping[str, float] | None = None,
                            title: str = "") -> Path:
    """Draws held-out accuracy against round for each run, with horizontal reference lines.

    Args:
        curves: Label -> the run's history (dicts with ``round`` and ``accuracy`` in [0, 1],
            as ``RoundRecord.to_dict()``).
        path: PNG file to write (atomically).
        reference: Label -> accuracy in [0, 1] drawn as a dashed line (e.g. centralized
            training). Defaults to none.
        title: Figure title. Defaults to none.

    Example:
        >>> plot_accuracy_per_round({"FedAvg": result.to_dict()["history"]}, "acc.png",
        ...                         reference={"centralized": 0.93})
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, history in curves.items():
        rounds = [r["round"] for r in history]
        ax.plot(rounds, [100 * r["accuracy"] for r in history], marker="o", markersize=3,
                label=label)
    for i, (label, accuracy) in enumerate((reference or {}).items()):
        ax.axhline(100 * accuracy, linestyle="--", color=f"C{len(curves) + i}",
                   label=f"{label} ({100 * accuracy:.2f}%)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("held-out top-1 (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "Global model accuracy per round")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def write_report(result: FederatedResult, output_dir: str | os.PathLike, *,
                 centralized_accuracy: float | None = None,
                 partition: Mapping[str, Any] | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Writes ``accuracy_per_round.md``, ``accuracy_per_round.png`` and ``federated.json``.

    Args:
        result: The run.
        output_dir: Folder to write into.
        centralized_accuracy: Accuracy of the same model trained on the pooled data, drawn as a
            reference line and stated in the table's file. Defaults to none.
        partition: ``Partition.to_dict()`` of the clients' data (class histograms), kept in
            the JSON. Defaults to none.
        extra: More JSON-ready facts for ``federated.json``. Defaults to none.
    """
    output_dir = Path(output_dir)
    table = result.table()
    text = markdown_table(table)
    if centralized_accuracy is not None:
        text += (f"\nCentralized training of the same model on the pooled data: "
                 f"{100 * centralized_accuracy:.2f}%; federated after round "
                 f"{result.history[-1].round}: {100 * result.accuracy:.2f}%.\n")
    reference = {"centralized": centralized_accuracy} if centralized_accuracy is not None else None
    plot = plot_accuracy_per_round({f"FedAvg ({result.engine})": [r.to_dict() for r in result.history]},
                                   output_dir / "accuracy_per_round.png", reference=reference,
                                   title=f"FedAvg, {result.num_clients} clients, "
                                         f"{result.config.local_epochs} local epochs")
    summary = {**result.to_dict(), "centralized_accuracy": centralized_accuracy,
               "partition": dict(partition) if partition is not None else None, **(extra or {})}
    return {"table": atomic_write_text(output_dir / "accuracy_per_round.md", text),
            "plot": plot,
            "json": atomic_write_json(output_dir / "federated.json", summary)}

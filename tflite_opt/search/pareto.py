"""The Pareto front of a search (accuracy up, latency down, size down), as a table and a plot.

A trial is on the front when no other trained trial is at least as good on all three and
better on one. Rejected-before-training trials have no accuracy, and a trial that repeated an
earlier candidate (``duplicate_of``) adds no point: both are left out of the front and the
table (they are listed in ``trials.json``).

Example:
    >>> front = pareto_front(records)
    >>> write_pareto(records, "outputs/search", budgets)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from tflite_opt.files import atomic_write_bytes, atomic_write_text

COLUMNS = ("trial", "architecture", "width", "depth", "kernel_size", "resolution", "precision",
           "sparsity", "clusters", "accuracy", "latency_us", "size_bytes", "within_budget",
           "pareto")


def dominates(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when ``a`` is no worse than ``b`` on accuracy, latency and size, better on one."""
    no_worse = (a["accuracy"] >= b["accuracy"] and a["latency_us"] <= b["latency_us"]
                and a["size_bytes"] <= b["size_bytes"])
    better = (a["accuracy"] > b["accuracy"] or a["latency_us"] < b["latency_us"]
              or a["size_bytes"] < b["size_bytes"])
    return no_worse and better


def pareto_front(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The trained records no other trained record dominates, by ascending latency.

    Example:
        >>> pareto_front([{"accuracy": .9, "latency_us": 10, "size_bytes": 5, ...}, ...])
    """
    trained = [r for r in records if r.get("trained") and not r.get("duplicate_of")]
    front = [r for r in trained if not any(dominates(o, r) for o in trained if o is not r)]
    return sorted(front, key=lambda r: (r["latency_us"], -r["accuracy"]))


def _row(record: Mapping[str, Any], on_front: bool) -> list[Any]:
    c = record["candidate"]
    return [record["trial_id"], c["architecture"], c["width"], c["depth"], c["kernel_size"],
            c["resolution"], c["precision"], c["sparsity"], c["clusters"],
            round(record["accuracy"], 4), round(record["latency_us"], 1), record["size_bytes"],
            record["within_budget"], on_front]


def pareto_table(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"title", "columns", "rows"}`` of every trained trial, front first (benchmark format)."""
    front = pareto_front(records)
    ids = {r["trial_id"] for r in front}
    rest = sorted((r for r in records if r.get("trained") and r["trial_id"] not in ids
                   and not r.get("duplicate_of")),
                  key=lambda r: -r["accuracy"])
    rows = [_row(r, True) for r in front] + [_row(r, False) for r in rest]
    return {"title": "Trained candidates (Pareto front first)", "columns": list(COLUMNS),
            "rows": rows}


def markdown(table: Mapping[str, Any]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(table["columns"]) + " |",
             "|" + "---|" * len(table["columns"])]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"


def write_pareto(records: Sequence[Mapping[str, Any]], output_dir: str | Path,
                 budgets: Any = None, title: str = "") -> dict[str, Path]:
    """Writes ``pareto.csv``, ``pareto.md`` and ``pareto.png`` (atomically) into ``output_dir``.

    Returns:
        ``{"csv": path, "md": path, "png": path}``.
    """
    import csv
    import io

    output_dir = Path(output_dir)
    table = pareto_table(records)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(table["columns"])
    writer.writerows(table["rows"])
    paths = {"csv": atomic_write_text(output_dir / "pareto.csv", buffer.getvalue()),
             "md": atomic_write_text(output_dir / "pareto.md", markdown(table))}
    paths["png"] = plot_pareto(records, output_dir / "pareto.png", budgets, title)
    return paths


def plot_pareto(records: Sequence[Mapping[str, Any]], path: str | Path, budgets: Any = None,
                title: str = "") -> Path:
    """Accuracy against latency, marker area by file size; the front joined, budgets dashed."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in records if r.get("trained") and not r.get("duplicate_of")]
    front = pareto_front(records)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if trained:
        biggest = max(r["size_bytes"] for r in trained) or 1
        for within, color, label in ((True, "tab:blue", "within budget"),
                                     (False, "tab:gray", "over budget")):
            pts = [r for r in trained if bool(r["within_budget"]) == within]
            if pts:
                ax.scatter([r["latency_us"] for r in pts], [100 * r["accuracy"] for r in pts],
                           s=[20 + 280 * r["size_bytes"] / biggest for r in pts], c=color,
                           alpha=0.6, label=f"{label} (area ~ size)")
        ax.plot([r["latency_us"] for r in front], [100 * r["accuracy"] for r in front], "-o",
                color="tab:red", markersize=3,
                label="Pareto front (accuracy, latency and size: zig-zags in 2-D)")
    if budgets is not None and getattr(budgets, "latency_us", None):
        ax.axvline(budgets.latency_us, color="k", linestyle="--", linewidth=1,
                   label=f"latency budget {budgets.latency_us:.0f} us")
    ax.set_xlabel("latency (us, median of the fastest configuration)")
    ax.set_ylabel("validation accuracy of the .tflite (%)")
    ax.set_title(title or "Architecture search: accuracy vs latency vs size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())

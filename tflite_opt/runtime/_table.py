"""Plain-text tables for the runtime command-line tools (fixed-width, numbers right-aligned)."""

from __future__ import annotations

from typing import Any, Sequence


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """Returns ``rows`` under ``columns`` as aligned text, numbers right-aligned.

    Example:
        >>> print(format_table(["op", "count"], [["CONV_2D", 3]]))
    """
    text = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and rows
               for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [title] if title else []
    out += [line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in text]
    return "\n".join(out)

"""Per-op latency tables from a phone: ``benchmark_model --enable_op_profiling=true`` output.

On the phone, ``benchmark_model --graph=ref.tflite --enable_op_profiling=true`` prints
"Operator-wise Profiling Info for Regular Benchmark Runs:" and a "Run Order" table (with
``--op_profiling_output_mode=csv --op_profiling_output_file=FILE`` the same table as CSV).
:class:`LatencyTable` reads either form and estimates a candidate ``.tflite``'s latency on that
phone from it, so a search can reject candidates before training and rank them on the phone's
numbers instead of this host's.

The format is TensorFlow's (cited so a change upstream is easy to follow):
``tensorflow/core/util/stats_calculator.cc`` (``HeaderString``/``ColumnString``: columns
``[node type] [start] [first] [avg ms] [%] [cdf%] [mem KB] [times called] [Name]``, tab-separated;
newer releases drop ``[start]``; CSV: ``node type, start, first, avg_ms, %, cdf%, mem KB,
times called, name``), ``tensorflow/lite/profiling/profile_summarizer.cc`` (a builtin op's row is
its op name and ``[output tensor names]:node_index``; a delegate's internal operator is
``Delegate/<operator>:<index>``) and ``tensorflow/lite/tools/benchmark/profiling_listener.cc``
(the section header). ``avg ms`` is per call; a row costs ``avg ms x times called`` per run.

How a candidate's node is matched (``LatencyEstimate.per_node`` says which rule applied):

1. ``exact``: the table came with the ``.tflite`` it profiled (``model=``) and a profiled node
   has the same op type and the same input and output shapes: its time.
2. ``scaled``: the op type is in the table and the profiled model is known: the node's work
   (multiply-adds for CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED; elements for the others)
   times the table's microseconds per unit of work for that op type.
3. ``type_mean``: the op type is in the table but the profiled model is not known (the table
   gives no shapes): the mean time of that op type's rows.
4. ``missing``: the op type is not in the table: counted as 0 us and listed in
   ``LatencyEstimate.missing``; ``complete`` is False and the estimate is a lower bound. Profile
   a model that has that op (for instance the candidate family's largest member) to fill it in.

XNNPACK's internal operators (``Delegate/Convolution (NHWC, QC8) IGEMM:0``) are mapped to the
TFLite op types they implement (:data:`XNNPACK_OPERATORS`) and enter the rules 2-3 (never 1:
their indices are not TFLite nodes). A row that times a whole delegated partition
(``TfLiteXNNPackDelegate``) says nothing per op and is skipped with a note.

Example:
    >>> table = LatencyTable.from_file("pixel7_profile.csv", model="profiled.tflite")
    >>> estimate = table.estimate("candidate.tflite")
    >>> estimate.total_us, estimate.complete, estimate.missing
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.runtime.model_file import ModelSource, _describe

SECTION = "Operator-wise Profiling Info for Regular Benchmark Runs"
MAX_TABLE_BYTES = 16 * 2**20  # a profile of a few hundred ops is tens of KB
# Ops whose cost is multiply-adds: output elements x (weights per output element).
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# XNNPACK's operator names (xnn_operator_type_to_string) -> the TFLite op types they run.
XNNPACK_OPERATORS: tuple[tuple[str, str], ...] = (
    (r"^Convolution .*DWConv", "DEPTHWISE_CONV_2D"),
    (r"^Convolution ", "CONV_2D"),
    (r"^Fully Connected", "FULLY_CONNECTED"),
    (r"^Add ", "ADD"),
    (r"^Multiply ", "MUL"),
    (r"^Subtract ", "SUB"),
    (r"^Global Average Pooling|^Mean ", "MEAN"),
    (r"^Average Pooling", "AVERAGE_POOL_2D"),
    (r"^Max Pooling", "MAX_POOL_2D"),
    (r"^Softmax", "SOFTMAX"),
    (r"^Concatenate|^Copy ", "CONCATENATION"),
    (r"^Transpose", "TRANSPOSE"),
    (r"^Hard Swish", "HARD_SWISH"),
    (r"^Clamp", "RELU6"),
)
# Rows that time a whole delegated partition, not one op.
_PARTITION = re.compile(r"^(TfLite\w*Delegate\w*|DELEGATE|DelegateOpInvoke)$")
_BUILTIN = re.compile(r"^[A-Z][A-Z0-9_]*$")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?"


@dataclasses.dataclass(frozen=True)
class ProfiledOp:
    """One row of the Run Order table.

    Attributes:
        op: TFLite op type (an XNNPACK operator's is the op type it implements).
        us_per_run: ``avg ms x times called``, in microseconds.
        node_index: The TFLite node (builtin rows), or None (delegate-internal rows).
        source: ``builtin`` or ``xnnpack``; ``raw_type`` is the type as printed.
    """

    op: str
    us_per_run: float
    node_index: int | None
    source: str
    raw_type: str
    name: str


@dataclasses.dataclass(frozen=True)
class LatencyEstimate:
    """A candidate's latency looked up in a table (microseconds).

    Attributes:
        total_us: Sum over the candidate's nodes.
        complete: False when some op type was missing from the table (then a lower bound).
        missing: Op types counted as 0 us because the table has none.
        per_node: Per node: op, us, rule (``exact``, ``scaled``, ``type_mean``, ``missing``).
        rules: Rule -> number of nodes it priced.
    """

    total_us: float
    complete: bool
    missing: tuple[str, ...]
    per_node: tuple[dict, ...]
    rules: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["missing"], out["per_node"] = list(self.missing), list(self.per_node)
        return out


def _graph_nodes(model: ModelSource) -> list[dict]:
    """Main-subgraph nodes with op type, input/output shapes and work (see module doc)."""
    from tflite_opt.runtime.inspection import inspect_model

    info = inspect_model(model)
    shapes = {t["index"]: tuple(t["shape"]) for t in info.tensors if t["subgraph"] == 0}
    nodes = []
    for node in (n for n in info.nodes if n["subgraph"] == 0):
        ins = tuple(shapes.get(i, ()) for i in node["inputs"] if i >= 0)
        outs = tuple(shapes.get(i, ()) for i in node["outputs"] if i >= 0)
        nodes.append({"op": node["op"], "inputs": ins, "outputs": outs,
                      "work": _work(node["op"], ins, outs)})
    return nodes


def _work(op: str, inputs: tuple, outputs: tuple) -> float:
    out_elems = float(np.prod(outputs[0])) if outputs and outputs[0] else 1.0
    if op in MAC_OPS and len(inputs) >= 2 and inputs[1]:
        weights = inputs[1]
        if op == "CONV_2D":  # filter [out, kh, kw, in]
            per_output = float(np.prod(weights[1:]))
        elif op == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, channels]
            per_output = float(np.prod(weights[1:3]))
        else:  # FULLY_CONNECTED weights [units, in]
            per_output = float(weights[-1])
        return out_elems * per_output
    in_elems = float(np.prod(inputs[0])) if inputs and inputs[0] else 1.0
    return max(out_elems, in_elems)


def _signature(node: dict) -> tuple:
    return node["op"], node["inputs"], node["outputs"]


def parse_profile(text: str, source: str = "<text>") -> tuple[list[ProfiledOp], list[str]]:
    """The rows of the Run Order table of the regular runs, and notes on skipped rows.

    Reads the table text ``benchmark_model`` logs and the CSV that
    ``--op_profiling_output_mode=csv`` writes; the columns are found by their header names.

    Raises:
        InvalidArgumentError: no Run Order table, or no row usable per op (names ``source``).

    Example:
        >>> rows, notes = parse_profile(Path("profile.txt").read_text())
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if SECTION in line), 0)
    order = next((i for i in range(start, len(lines)) if "Run Order" in lines[i]
                  and "====" in lines[i]), None)
    if order is None or order + 1 >= len(lines):
        raise InvalidArgumentError(
            f"latency table {source!r} has no 'Run Order' table; pass the output of "
            "benchmark_model --enable_op_profiling=true (the text it logs, or the file written by "
            "--op_profiling_output_mode=csv --op_profiling_output_file=FILE)")
    header = lines[order + 1].strip()
    if "[" in header:
        columns = [c.strip().lower() for c in re.findall(r"\[([^\]]+)\]", header)]
        sep = r"\s+"
    else:
        columns = [c.strip().lower() for c in header.split(",")]
        sep = r",\s*"
    if len(columns) < 4 or columns[0] != "node type" or columns[-1] != "name":
        raise InvalidArgumentError(f"latency table {source!r}: the Run Order header {header!r} "
                                   "does not start with 'node type' and end with 'name'")
    numeric = columns[1:-1]
    avg = next((i for i, c in enumerate(numeric) if c.replace("_", " ") == "avg ms"), None)
    called = next((i for i, c in enumerate(numeric) if c == "times called"), None)
    if avg is None or called is None:
        raise InvalidArgumentError(f"latency table {source!r}: the Run Order header has no "
                                   "'avg ms' or 'times called' column")
    row = re.compile(rf"^\s*(?P<type>.+?){sep}(?P<nums>(?:{_NUMBER}{sep}){{{len(numeric)}}})"
                     rf"(?P<name>\S.*?)\s*$")
    rows: list[ProfiledOp] = []
    notes: list[str] = []
    for line in lines[order + 2:]:
        if not line.strip() or line.lstrip().startswith("===="):
            break
        match = row.match(line)
        if not match:
            notes.append(f"unreadable row skipped: {line.strip()[:80]!r}")
            continue
        values = [float(v.rstrip("%")) for v in re.split(sep, match["nums"].strip(" \t,"))]
        raw_type, name = match["type"].strip(), match["name"]
        us = values[avg] * 1000.0 * max(1.0, values[called])
        index = re.search(r":(\d+)$", name)
        op = raw_type.split("/")[0]
        if name.startswith("Delegate/"):
            mapped = next((t for pattern, t in XNNPACK_OPERATORS if re.search(pattern, raw_type)),
                          None)
            if mapped is None:
                notes.append(f"delegate operator {raw_type!r} maps to no TFLite op type; skipped")
                continue
            rows.append(ProfiledOp(mapped, us, None, "xnnpack", raw_type, name))
        elif _PARTITION.match(op):
            notes.append(f"row {raw_type!r} ({name}) times a whole delegated partition, not one "
                         "op; skipped")
        elif _BUILTIN.match(op):
            rows.append(ProfiledOp(op, us, int(index[1]) if index else None, "builtin", raw_type,
                                   name))
        else:
            notes.append(f"row type {raw_type!r} is not an op; skipped")
    if not rows:
        raise InvalidArgumentError(
            f"latency table {source!r} has no per-op rows ({'; '.join(notes[:2]) or 'empty'}); "
            "rerun benchmark_model with --use_xnnpack=false (one row per TFLite op) or with a "
            "release whose XNNPACK delegate reports its operators")
    return rows, notes


class LatencyTable:
    """A phone's per-op latencies, read from ``benchmark_model`` op profiling.

    Args:
        rows: The parsed rows (:func:`parse_profile`).
        model: The ``.tflite`` the table was measured on (path or bytes); gives the rows'
            shapes, which enables the ``exact`` and ``scaled`` rules. Defaults to None.
        source: Where the rows came from, for messages. Defaults to ``"<rows>"``.
        notes: Parser notes kept for the report. Defaults to ().

    Example:
        >>> table = LatencyTable.from_file("profile.txt", model="profiled.tflite")
        >>> table.estimate("candidate.tflite").total_us
    """

    def __init__(self, rows: Sequence[ProfiledOp], model: ModelSource | None = None,
                 source: str = "<rows>", notes: Sequence[str] = ()) -> None:
        self.rows = tuple(rows)
        self.source = source
        self.notes = tuple(notes)
        self._exact: dict[tuple, list[float]] = collections.defaultdict(list)
        self._rate: dict[str, float] = {}
        by_type: dict[str, list[float]] = collections.defaultdict(list)
        for r in self.rows:
            by_type[r.op].append(r.us_per_run)
        self._mean = {op: float(np.mean(v)) for op, v in by_type.items()}
        self.model_name = _describe(model).strip("'") if model is not None else None
        if model is not None:
            self._fit_rates(model)

    def _fit_rates(self, model: ModelSource) -> None:
        nodes = _graph_nodes(model)
        time_by_type: dict[str, float] = collections.defaultdict(float)
        for r in self.rows:
            if r.source == "builtin" and r.node_index is not None:
                if r.node_index >= len(nodes) or nodes[r.node_index]["op"] != r.op:
                    found = nodes[r.node_index]["op"] if r.node_index < len(nodes) else "absent"
                    raise InvalidArgumentError(
                        f"latency table {self.source!r}: row {r.name!r} is {r.op} but node "
                        f"{r.node_index} of {self.model_name!r} is {found}; pass the .tflite the "
                        "table was measured on (--latency_table_model)")
                self._exact[_signature(nodes[r.node_index])].append(r.us_per_run)
            time_by_type[r.op] += r.us_per_run
        work_by_type: dict[str, float] = collections.defaultdict(float)
        for node in nodes:
            work_by_type[node["op"]] += node["work"]
        self._rate = {op: t / work_by_type[op] for op, t in time_by_type.items()
                      if work_by_type.get(op)}

    @classmethod
    def from_file(cls, path: str | os.PathLike, model: ModelSource | None = None) -> "LatencyTable":
        """Reads a ``benchmark_model`` profile (text log or CSV); see :func:`parse_profile`.

        Raises:
            InvalidArgumentError: the file is missing, too big, not text or has no table.
        """
        path = Path(path)
        if not path.is_file():
            raise InvalidArgumentError(f"latency table {str(path)!r} does not exist; pass "
                                       "--latency_table=FILE with benchmark_model's op profile")
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise InvalidArgumentError(f"latency table {str(path)!r} is over "
                                       f"{MAX_TABLE_BYTES} bytes; pass the op profile only")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"latency table {str(path)!r} is not UTF-8 text; pass "
                                       "benchmark_model's op profile (text or CSV)") from None
        rows, notes = parse_profile(text, str(path))
        return cls(rows, model=model, source=str(path), notes=notes)

    @property
    def op_types(self) -> tuple[str, ...]:
        """Op types the table has times for."""
        return tuple(sorted(self._mean))

    def estimate(self, model: ModelSource) -> LatencyEstimate:
        """The latency of ``model`` (a ``.tflite`` path or bytes) priced by this table.

        Example:
            >>> table.estimate(Path("candidate.tflite").read_bytes()).total_us
        """
        per_node, missing = [], []
        for node in _graph_nodes(model):
            op = node["op"]
            if _signature(node) in self._exact:
                us, rule = float(np.mean(self._exact[_signature(node)])), "exact"
            elif op in self._rate:
                us, rule = node["work"] * self._rate[op], "scaled"
            elif op in self._mean:  # no profiled model, so no shapes: the type's mean row
                us, rule = self._mean[op], "type_mean"
            else:
                us, rule = 0.0, "missing"
                if op not in missing:
                    missing.append(op)
            per_node.append({"op": op, "us": us, "rule": rule})
        rules = dict(collections.Counter(n["rule"] for n in per_node))
        return LatencyEstimate(total_us=float(sum(n["us"] for n in per_node)),
                               complete=not missing, missing=tuple(missing),
                               per_node=tuple(per_node), rules=rules)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "model": self.model_name, "rows": len(self.rows),
                "op_types": list(self.op_types), "notes": list(self.notes)}

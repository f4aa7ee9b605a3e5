"""LatencyTable: benchmark_model's op profile (text and CSV) parsed and matched to a .tflite.

The samples in data/ are written in the tool's format (see data/make_sample_profile.py for the
TensorFlow sources it follows) with synthetic times, so every figure below is known exactly.
"""

from pathlib import Path

import pytest

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.search.latency_table import LatencyTable, _graph_nodes, parse_profile

DATA = Path(__file__).parent / "data"
PROFILED = DATA / "profiled_int8.tflite"


WIDER = DATA / "wider_int8.tflite"  # the profiled architecture at width 0.5
SHUFFLE = DATA / "shufflenet_float32.tflite"  # has RESHAPE, TRANSPOSE, ... the table lacks


def test_parse_text_profile_reads_the_regular_run_order_rows_only():
    rows, notes = parse_profile((DATA / "profile_builtin.txt").read_text())
    nodes = _graph_nodes(PROFILED)
    assert [r.op for r in rows] == [n["op"] for n in nodes]  # one row per node, in order
    assert [r.node_index for r in rows] == list(range(len(nodes)))
    assert "AllocateTensors" not in {r.op for r in rows}  # the initialization table is skipped
    assert rows[0].op == "CONV_2D" and rows[0].us_per_run == pytest.approx(23.0)
    assert rows[1].op == "DEPTHWISE_CONV_2D" and rows[1].us_per_run == pytest.approx(75.0)
    assert notes == []


def test_parse_csv_profile_gives_the_same_rows_as_the_text():
    text_rows, _ = parse_profile((DATA / "profile_builtin.txt").read_text())
    csv_rows, _ = parse_profile((DATA / "profile_builtin.csv").read_text())
    assert [(r.op, r.node_index, r.name) for r in csv_rows] == \
        [(r.op, r.node_index, r.name) for r in text_rows]
    assert [r.us_per_run for r in csv_rows] == pytest.approx([r.us_per_run for r in text_rows])


def test_estimate_of_the_profiled_model_is_the_sum_of_its_rows():
    table = LatencyTable.from_file(DATA / "profile_builtin.txt", model=PROFILED)
    estimate = table.estimate(PROFILED)
    assert estimate.complete and estimate.rules == {"exact": len(table.rows)}
    assert estimate.total_us == pytest.approx(sum(r.us_per_run for r in table.rows))


def test_estimate_without_the_profiled_model_uses_each_op_types_mean():
    table = LatencyTable.from_file(DATA / "profile_builtin.csv")
    estimate = table.estimate(PROFILED)
    assert estimate.rules == {"type_mean": len(table.rows)}
    # Each type's mean times its count is that type's sum, so the total is the rows' sum.
    assert estimate.total_us == pytest.approx(sum(r.us_per_run for r in table.rows))


def test_estimate_scales_other_shapes_by_work_and_lists_missing_op_types():
    table = LatencyTable.from_file(DATA / "profile_builtin.txt", model=PROFILED)
    wider = WIDER.read_bytes()
    estimate = table.estimate(wider)
    assert estimate.complete and estimate.rules.get("scaled", 0) > 0
    # A scaled CONV_2D node costs its MACs times the table's CONV_2D us per MAC.
    profiled_nodes = _graph_nodes(PROFILED)
    rate = sum(r.us_per_run for r in table.rows if r.op == "CONV_2D") / \
        sum(n["work"] for n in profiled_nodes if n["op"] == "CONV_2D")
    node, priced = next((n, p) for n, p in zip(_graph_nodes(wider), estimate.per_node)
                        if p["rule"] == "scaled" and n["op"] == "CONV_2D")
    assert priced["us"] == pytest.approx(node["work"] * rate)

    shuffle = table.estimate(SHUFFLE)
    assert not shuffle.complete and "RESHAPE" in shuffle.missing
    assert all(p["us"] == 0.0 for p in shuffle.per_node if p["rule"] == "missing")
    assert shuffle.total_us == pytest.approx(sum(p["us"] for p in shuffle.per_node))


def test_xnnpack_operator_rows_map_to_op_types_and_partition_rows_are_skipped():
    rows, notes = parse_profile((DATA / "profile_xnnpack.txt").read_text())
    assert [(r.op, r.source) for r in rows] == [
        ("QUANTIZE", "builtin"), ("CONV_2D", "xnnpack"), ("DEPTHWISE_CONV_2D", "xnnpack"),
        ("CONV_2D", "xnnpack"), ("ADD", "xnnpack")]
    assert rows[2].us_per_run == pytest.approx(50.0 * 13)  # avg per call x times called
    assert any("Unknown Op" in n for n in notes)
    assert any("TfLiteXNNPackDelegate" in n and "partition" in n for n in notes)


def test_table_without_per_op_rows_or_of_another_model_is_refused(tmp_path):
    only_partition = tmp_path / "partition.txt"
    lines = (DATA / "profile_xnnpack.txt").read_text().splitlines()
    only_partition.write_text("\n".join(lines[:3] + [lines[-3]]) + "\n")
    with pytest.raises(InvalidArgumentError, match="use_xnnpack=false"):
        LatencyTable.from_file(only_partition)
    with pytest.raises(InvalidArgumentError, match="Run Order"):
        parse_profile("INFO: Inference timings in us: Init: 10")
    with pytest.raises(InvalidArgumentError, match="latency_table_model"):
        LatencyTable.from_file(DATA / "profile_builtin.txt", model=SHUFFLE)

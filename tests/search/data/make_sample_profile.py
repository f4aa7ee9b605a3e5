"""Writes the sample op profiles the latency-table tests read (run once; outputs are checked in).

``profiled_int8.tflite`` is an untrained ``mobilenet_v2_like`` (width 0.25, depth 0.5, 16x16x1),
full int8; ``wider_int8.tflite`` the same at width 0.5 and ``shufflenet_float32.tflite`` a
``shufflenet_v2_like`` (8x8x1), two candidates for the table to price. ``profile_builtin.txt`` and ``profile_builtin.csv`` are what
``benchmark_model --graph=profiled_int8.tflite --enable_op_profiling=true --use_xnnpack=false``
prints (text) or writes with ``--op_profiling_output_mode=csv``, laid out as
tensorflow/core/util/stats_calculator.cc (HeaderString / ColumnString) and
tensorflow/lite/profiling/profile_summarizer.cc (row names ``[outputs]:node_index``) format
them; the text has the ``[start]`` column of the TensorFlow source read, the CSV leaves it out
as newer releases do. The times are SYNTHETIC (a per-op rate times the node's work), not a
phone's: the tests check the parsing and matching arithmetic, which needs known numbers.

    python tests/search/data/make_sample_profile.py
"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
US_PER_WORK = {"CONV_2D": 0.0012, "DEPTHWISE_CONV_2D": 0.004, "FULLY_CONNECTED": 0.002}


def main() -> None:
    from tflite_opt.convert import convert
    from tflite_opt.models.efficient import mobilenet_v2_like, shufflenet_v2_like
    from tflite_opt.runtime.inspection import inspect_model
    from tflite_opt.search.latency_table import _graph_nodes

    model = mobilenet_v2_like((16, 16, 1), 10, width=0.25, depth=0.5)
    calibration = np.random.default_rng(0).random((10, 16, 16, 1), dtype=np.float32)
    data = convert(model, "int8", representative_data=calibration, progress=False,
                   num_calibration_samples=10).tflite_bytes
    (HERE / "profiled_int8.tflite").write_bytes(data)
    # Two candidates to price with the table: other shapes, and op types it lacks.
    wider = mobilenet_v2_like((16, 16, 1), 10, width=0.5, depth=0.5)
    (HERE / "wider_int8.tflite").write_bytes(convert(
        wider, "int8", representative_data=calibration, progress=False,
        num_calibration_samples=10).tflite_bytes)
    shuffle = shufflenet_v2_like((8, 8, 1), 10, width=0.25, depth=0.5)
    (HERE / "shufflenet_float32.tflite").write_bytes(
        convert(shuffle, "float32", progress=False).tflite_bytes)
    info = inspect_model(data)
    names = {t["index"]: t["name"] for t in info.tensors if t["subgraph"] == 0}
    main_nodes = [n for n in info.nodes if n["subgraph"] == 0]
    rows, start = [], 0.0
    for index, (node, shaped) in enumerate(zip(main_nodes, _graph_nodes(data))):
        us = round(shaped["work"] * US_PER_WORK.get(node["op"], 0.002) + 1.0)  # whole us
        name = "[" + ", ".join(names[o] for o in node["outputs"]) + f"]:{index}"
        rows.append((node["op"], start / 1000, us / 1000, us / 1000, name))
        start += us
    total = sum(r[3] for r in rows)
    text = ["INFO: Loaded model profiled_int8.tflite", "INFO: Num threads: [1]",
            "INFO: Inference timings in us: Init: 2519, First inference: 1203, "
            "Warmup (avg): 1094.5, Inference (avg): 1060.2",
            "Profiling Info for Benchmark Initialization:",
            "============================== Run Order ==============================",
            header_text(),
            "\t" + "\t".join(["%24s" % "AllocateTensors", "%17.3f" % 0, "%9.3f" % 0.25,
                              "%9.3f" % 0.25, "%7.3f%%" % 100, "%7.3f%%" % 100, "%10.3f" % 0,
                              "%9d" % 1, "AllocateTensors/0"]), "",
            "Operator-wise Profiling Info for Regular Benchmark Runs:",
            "============================== Run Order ==============================",
            header_text()]
    cdf = 0.0
    for op, begin, first, avg, name in rows:
        pct = 100 * avg / total
        cdf += pct
        text.append("\t" + "\t".join(["%24s" % op, "%17.3f" % begin, "%9.3f" % first,
                                      "%9.3f" % avg, "%7.3f%%" % pct, "%7.3f%%" % cdf,
                                      "%10.3f" % 0, "%9d" % 1, name]))
    text += ["", "============================== Top by Computation Time "
             "==============================", header_text(), "",
             f"Timings (microseconds): count=50 first={int(total * 1000)} "
             f"curr={int(total * 1000)} min={int(total * 1000)} max={int(total * 1000)} "
             f"avg={total * 1000:.1f} std=0", ""]
    (HERE / "profile_builtin.txt").write_text("\n".join(text))
    csv = ["Operator-wise Profiling Info for Regular Benchmark Runs:",
           "============================== Run Order ==============================",
           "node type, first, avg_ms, %, cdf%, mem KB, times called, name"]
    cdf = 0.0
    for op, _, first, avg, name in rows:
        pct = 100 * avg / total
        cdf += pct
        csv.append(f"{op}, {first:.3f}, {avg:.3f}, {pct:.3f}%, {cdf:.3f}%, 0, 1, {name}")
    (HERE / "profile_builtin.csv").write_text("\n".join(csv) + "\n\n")


def header_text() -> str:
    cells = ["%24s" % "[node type]", "%17s" % "[start]", "%9s" % "[first]", "%9s" % "[avg ms]",
             "%8s" % "[%]", "%8s" % "[cdf%]", "%10s" % "[mem KB]", "%9s" % "[times called]",
             "[Name]"]
    return "\t" + "\t".join(cells)


if __name__ == "__main__":
    main()

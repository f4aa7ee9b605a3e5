"""Suite `runtime`: float vs int8 latency on this CPU, measured interleaved, and the fastest setup.

1. **float vs int8.** The digits CNN (32x32) and, unless ``quick``, MobileNetV2
   (96x96, alpha 0.35), converted to float32 and full-integer int8, timed
   *interleaved* (every round runs each file once, order rotated) at 1 and 2
   threads. The ratio median(float) / median(int8) says whether int8 is faster
   on this machine; a ratio is called a difference only when the interquartile
   ranges do not overlap. (int8 is not always faster: on AVX2 CPUs without VNNI
   it can lose; this machine's CPU flags are recorded in the details.)
2. **Fastest configuration.** For each file: threads {1, 2} x XNNPACK on/off,
   interleaved; the winner and its speed-up over the default (1 thread, XNNPACK).
3. **Per-op profile** of the int8 files (prefix differencing; the LiteRT Python
   API has no op profiler): share of time by op type.
4. **Cross-check** against LiteRT's own ``benchmark_litert_model`` tool
   (CompiledModel API, run as a separate process) on the largest file.

Weights are untrained (latency does not depend on their values); int8
calibration uses the digits images for the CNN and uniform noise for MobileNet.

Summary keys (stable): digits_int8_speedup_1t, digits_int8_speedup_2t,
digits_float_fastest, digits_int8_fastest, digits_float_median_us_1t,
digits_int8_median_us_1t, (full run also mobilenet_* of the same names),
litert_tool_median_ms, our_median_ms_same_file, cpu_has_avx512_vnni, host_int8_dot_product,
cpu (model name and flags: every latency here is of that CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import baselines
from tflite_opt._keras import keras
from tflite_opt.data.digits import load_digits
from tflite_opt.files import atomic_write_bytes
from tflite_opt.models.builders import digits_cnn, mobilenet_v2
from tflite_opt.runtime import compare, find_fastest_config, host_cpu, profile_ops


def _models(quick: bool, folder: Path) -> dict[str, dict[str, Path]]:
    data = load_digits(image_size=32, seed=0)
    keras.utils.set_random_seed(0)
    builds = {"digits": (digits_cnn(input_shape=(32, 32, 1)), data.x_train[:100])}
    if not quick:
        rng = np.random.default_rng(0)
        builds["mobilenet"] = (mobilenet_v2(input_shape=(96, 96, 3), num_classes=10, alpha=0.35),
                               rng.random((50, 96, 96, 3), dtype=np.float32))
    files = {}
    for name, (model, calibration) in builds.items():
        files[name] = {}
        for kind in ("float", "int8"):
            path = folder / f"{name}_{kind}.tflite"
            tflite = (baselines.hand_int8(model, calibration) if kind == "int8"
                      else baselines.hand_float32(model))
            atomic_write_bytes(path, tflite)
            files[name][kind] = path
    return files


def _litert_tool(path: Path, num_runs: int) -> dict | None:
    """Runs ai_edge_litert.tools.benchmark_litert_model as a separate process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.run(
            [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model",
             f"--model={path}", f"--num_runs={num_runs}", "--warmup_runs=5", "--num_threads=1",
             f"--result_json={out}"], capture_output=True, text=True, timeout=600,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        if proc.returncode != 0 or not out.exists():
            return None
        return json.loads(out.read_text())


def _plot(rows: list[list], output_dir: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = [f"{r[0]} {r[1]}\n{r[2]}t" for r in rows]
    medians = np.array([r[4] for r in rows])
    lows = medians - np.array([r[3] for r in rows])
    highs = np.array([r[5] for r in rows]) - medians
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.9), 4))
    ax.bar(range(len(rows)), medians, yerr=[lows, highs], capsize=4,
           color=["#4c72b0" if r[1] == "float" else "#dd8452" for r in rows])
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("latency, us (bar: median; whiskers: min..max)")
    ax.set_yscale("log")
    ax.set_title("float vs int8, interleaved runs")
    fig.tight_layout()
    path = output_dir / "runtime_float_vs_int8.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def run(output_dir: Path, quick: bool = False) -> dict:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    num_runs = 100 if quick else 300
    cpu = host_cpu()
    summary: dict = {"cpu_has_avx512_vnni": "avx512_vnni" in cpu.flags,
                     "host_int8_dot_product": cpu.int8_dot_product, "cpu": cpu.describe()}
    details: dict = {"cpu": cpu.to_dict(), "num_runs": num_runs}
    compare_rows, fastest_rows, profile_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        files = _models(quick, Path(tmp))
        for name, paths in files.items():
            for threads in (1, 2):
                result = compare([paths["float"], paths["int8"]], num_runs=num_runs,
                                 warmup_runs=10, num_threads=threads)
                f_label, i_label = paths["float"].name, paths["int8"].name
                ratio = result.ratio(f_label, i_label)
                distinct = result.distinguishable[f_label][i_label]
                summary[f"{name}_int8_speedup_{threads}t"] = round(ratio, 3)
                if threads == 1:
                    summary[f"{name}_float_median_us_1t"] = round(
                        result.result(f_label).stats.median_us, 2)
                    summary[f"{name}_int8_median_us_1t"] = round(
                        result.result(i_label).stats.median_us, 2)
                for kind, label in (("float", f_label), ("int8", i_label)):
                    r = result.result(label)
                    compare_rows.append([name, kind, threads, round(r.stats.min_us, 2),
                                         round(r.stats.median_us, 2), round(r.stats.max_us, 2),
                                         round(r.stats.p90_us, 2), r.size_bytes,
                                         round(ratio, 3) if kind == "int8" else "",
                                         ("yes" if distinct else "no (noise)")
                                         if kind == "int8" else ""])
                details[f"{name}_compare_{threads}t"] = result.to_dict()
            for kind in ("float", "int8"):
                best = find_fastest_config(paths[kind], threads=(1, 2), num_runs=num_runs // 2,
                                           warmup_runs=5)
                summary[f"{name}_{kind}_fastest"] = f"{best.op_resolver}/t{best.num_threads}"
                for r in best.comparison.results:
                    fastest_rows.append([name, kind, r.candidate.label,
                                         round(r.stats.min_us, 2), round(r.stats.median_us, 2),
                                         round(r.stats.max_us, 2),
                                         "fastest" if r.candidate.label == best.comparison.fastest
                                         else ""])
                details[f"{name}_{kind}_fastest"] = best.summary
            prof = profile_ops(paths["int8"], num_runs=max(20, num_runs // 5))
            if prof.available:
                for op, v in list(prof.by_op_type.items())[:5]:
                    profile_rows.append([name, op, v["count"], round(v["us"], 2),
                                         f"{100 * v['share']:.1f}%"])
                details[f"{name}_int8_profile_noise_us"] = prof.noise_us
        largest = max((p for d in files.values() for p in d.values()),
                      key=lambda p: p.stat().st_size)
        tool = _litert_tool(largest, num_runs)
        if tool is not None:
            ours = compare([largest], num_runs=num_runs, warmup_runs=5).results[0]
            summary["litert_tool_median_ms"] = tool["latency"]["median_ms"]
            summary["our_median_ms_same_file"] = round(ours.stats.median_us / 1000, 3)
            details["litert_tool"] = tool
            details["litert_tool_file"] = largest.name
    plot = _plot(compare_rows, output_dir)
    tables = [
        {"title": f"float vs int8, interleaved (us, on {cpu.describe()})",
         "columns": ["model", "precision", "threads", "min", "median", "max", "p90", "bytes",
                     "float/int8 median", "difference beyond noise"],
         "rows": compare_rows,
         "note": "ratio > 1: int8 faster. Interleaved in one process; see the plot "
                 f"{plot}." if plot else "ratio > 1: int8 faster."},
        {"title": "interpreter configurations (threads x XNNPACK), interleaved (us)",
         "columns": ["model", "precision", "configuration", "min", "median", "max", ""],
         "rows": fastest_rows},
        {"title": "int8 per-op profile (prefix differencing)",
         "columns": ["model", "op", "nodes", "us", "share"], "rows": profile_rows},
    ]
    return {"summary": summary, "tables": tables, "details": details}

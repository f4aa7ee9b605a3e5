"""Suite `pipeline`: the main job's float32 and optimized int8 files, side by side.

The job runs as ``scripts/optimize.py`` does, on the digits' training split, but is scored
on ``benchmarks.common.eval_data`` (3,240 augmented held-out images, passed as ``--data``
``.npz``), like every suite.

Summary keys (stable): float_keras_accuracy, {float32,int8}_{size_bytes,gzip_bytes,accuracy,
median_us}, gzip_ratio_vs_float, latency_ratio_vs_float, accuracy_drop_points, pipeline_wall_s,
eval_images, host_int8_dot_product, cpu (the latencies are of that CPU).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from benchmarks.common import eval_data
from tflite_opt.files import atomic_write_bytes
from tflite_opt.pipeline import PipelineConfig, run_pipeline


def run(output_dir: Path, quick: bool = False) -> dict:
    start = time.perf_counter()
    data = eval_data(quick)
    buffer = io.BytesIO()
    np.savez(buffer, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
    data_path = atomic_write_bytes(output_dir / "pipeline_eval_data.npz", buffer.getvalue())
    config = PipelineConfig(output_dir=str(output_dir / "pipeline_outputs"), data=str(data_path),
                            float_epochs=8 if quick else 20, benchmark_runs=30 if quick else 200,
                            verbose=0)
    report = run_pipeline(config).report
    data_path.unlink()
    wall = time.perf_counter() - start
    float_variant, optimized = report["variants"][0], report["variants"][-1]
    headline = report["headline"]
    summary = {"float_keras_accuracy": headline["float_keras_accuracy"]}
    for key, variant in (("float32", float_variant), ("int8", optimized)):
        summary.update({f"{key}_size_bytes": variant["size_bytes"], f"{key}_gzip_bytes": variant["gzip_bytes"],
                        f"{key}_accuracy": variant["accuracy"], f"{key}_median_us": variant["latency"]["median_us"]})
    summary.update({"gzip_ratio_vs_float": headline["gzip_ratio_vs_float"],
                    "latency_ratio_vs_float": headline["latency_ratio_vs_float"],
                    "accuracy_drop_points": headline["accuracy_drop_points"], "pipeline_wall_s": wall,
                    "eval_images": len(data.y_test),
                    "host_int8_dot_product": headline["host_int8_dot_product"],
                    "cpu": report["host_cpu"]["description"]})
    rows = [[v["name"], v["size_bytes"], v["gzip_bytes"], round(100 * v["accuracy"], 2),
             round(100 * v["agreement"], 2), round(v["latency"]["median_us"]), round(v["latency"]["p90_us"]),
             round(v["latency"]["min_us"]), round(v["latency"]["max_us"])] for v in report["variants"]]
    table = {"title": f"Main job variants (digits CNN, 1 thread, on {report['host_cpu']['description']}; "
                      f"accuracy on {len(data.y_test)} augmented held-out images)",
             "columns": ["variant", "bytes", "gzip bytes", "accuracy %", "agreement %", "median µs",
                         "p90 µs", "min µs", "max µs"], "rows": rows,
             "note": report["latency_guidance"]["summary"] + (
                 ". " + " ".join(line.strip() for line in report["latency_guidance"]["advice"])
                 if report["latency_guidance"]["advice"] else "")}
    return {"summary": summary, "tables": [table], "details": {"report": report}}

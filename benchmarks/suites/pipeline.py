"""Suite `pipeline`: the main job's float32 and optimized int8 files, side by side.

Summary keys (stable): float_keras_accuracy, {float32,int8}_{size_bytes,gzip_bytes,accuracy,
median_us}, gzip_ratio_vs_float, latency_ratio_vs_float, accuracy_drop_points, pipeline_wall_s.
"""

from __future__ import annotations

import time
from pathlib import Path

from tflite_opt.pipeline import PipelineConfig, run_pipeline


def run(output_dir: Path, quick: bool = False) -> dict:
    start = time.perf_counter()
    config = PipelineConfig(output_dir=str(output_dir / "pipeline_outputs"),
                            float_epochs=8 if quick else 20, benchmark_runs=30 if quick else 200,
                            verbose=0)
    report = run_pipeline(config).report
    wall = time.perf_counter() - start
    float_variant, optimized = report["variants"][0], report["variants"][-1]
    headline = report["headline"]
    summary = {"float_keras_accuracy": headline["float_keras_accuracy"]}
    for key, variant in (("float32", float_variant), ("int8", optimized)):
        summary.update({f"{key}_size_bytes": variant["size_bytes"], f"{key}_gzip_bytes": variant["gzip_bytes"],
                        f"{key}_accuracy": variant["accuracy"], f"{key}_median_us": variant["latency"]["median_us"]})
    summary.update({"gzip_ratio_vs_float": headline["gzip_ratio_vs_float"],
                    "latency_ratio_vs_float": headline["latency_ratio_vs_float"],
                    "accuracy_drop_points": headline["accuracy_drop_points"], "pipeline_wall_s": wall})
    rows = [[v["name"], v["size_bytes"], v["gzip_bytes"], round(100 * v["accuracy"], 2),
             round(100 * v["agreement"], 2), round(v["latency"]["median_us"]), round(v["latency"]["p90_us"]),
             round(v["latency"]["min_us"]), round(v["latency"]["max_us"])] for v in report["variants"]]
    table = {"title": "Main job variants (digits CNN, 1 thread)",
             "columns": ["variant", "bytes", "gzip bytes", "accuracy %", "agreement %", "median µs",
                         "p90 µs", "min µs", "max µs"], "rows": rows}
    return {"summary": summary, "tables": [table], "details": {"report": report}}

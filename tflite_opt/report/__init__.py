"""Report: turns pipeline results into report.json, report.md and PNG plots."""

from tflite_opt.report.latency_guidance import LatencyGuidance, latency_guidance
from tflite_opt.report.plots import plot_variants
from tflite_opt.report.report import render_markdown, write_report
from tflite_opt.report.significance import (PairedDifference, mcnemar_difference_ci,
                                            paired_bootstrap_difference_ci)

__all__ = ["LatencyGuidance", "PairedDifference", "latency_guidance", "mcnemar_difference_ci",
           "paired_bootstrap_difference_ci", "plot_variants", "render_markdown", "write_report"]

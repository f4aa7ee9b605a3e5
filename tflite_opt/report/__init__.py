"""Report: turns pipeline results into report.json, report.md and PNG plots."""

from tflite_opt.report.plots import plot_variants
from tflite_opt.report.report import render_markdown, write_report

__all__ = ["plot_variants", "render_markdown", "write_report"]

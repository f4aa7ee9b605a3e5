"""Plots of variant results (size, accuracy, latency). They take result dicts, never models."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

from tflite_opt.files import atomic_write_bytes


def plot_variants(variants: Sequence[Mapping], path: str | Path, title: str = "") -> Path:
    """Draws size, accuracy and median latency (min-max whiskers) of each variant.

    Args:
        variants: Dicts with ``name``, ``size_bytes``, ``gzip_bytes``, ``accuracy`` and
            ``latency`` (with ``median_us``, ``min_us``, ``max_us``).
        path: PNG file to write (atomically).
        title: Figure title. Defaults to none.

    Example:
        >>> plot_variants(report["variants"], "outputs/variants.png")
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [v["name"] for v in variants]
    xs = range(len(variants))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    width = 0.38
    axes[0].bar([x - width / 2 for x in xs], [v["size_bytes"] / 1024 for v in variants], width, label="file")
    axes[0].bar([x + width / 2 for x in xs], [v["gzip_bytes"] / 1024 for v in variants], width, label="gzip")
    axes[0].set_ylabel("KiB")
    axes[0].set_title("Size")
    axes[0].legend()
    accuracy = [100 * v["accuracy"] for v in variants]
    axes[1].bar(xs, accuracy, color="tab:green")
    axes[1].set_ylim(max(0.0, min(accuracy) - 5), 100)
    axes[1].set_ylabel("test top-1 (%)")
    axes[1].set_title("Accuracy")
    for x, a in zip(xs, accuracy):
        axes[1].text(x, a, f"{a:.2f}", ha="center", va="bottom", fontsize=8)
    medians = [v["latency"]["median_us"] / 1000 for v in variants]
    lows = [m - v["latency"]["min_us"] / 1000 for m, v in zip(medians, variants)]
    highs = [v["latency"]["max_us"] / 1000 - m for m, v in zip(medians, variants)]
    axes[2].bar(xs, medians, yerr=[lows, highs], capsize=4, color="tab:orange")
    axes[2].set_ylabel("ms per inference (median, min-max)")
    axes[2].set_title("Latency")
    for ax in axes:
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=15, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())

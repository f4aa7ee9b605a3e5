"""report.json, report.md and plots for a pipeline run, from its result dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from tflite_opt.files import atomic_write_json, atomic_write_text
from tflite_opt.report.plots import plot_variants


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _count(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def _kib(value: int) -> str:
    return f"{value / 1024:.1f} KiB"


def render_markdown(report: Mapping[str, Any]) -> str:
    """Renders a pipeline report dict (``PipelineResult.to_dict()``) as markdown.

    Example:
        >>> text = render_markdown(json.load(open("outputs/report.json")))
    """
    headline = report["headline"]
    lines = [
        "# tflite_opt report", "",
        f"Model: {report['model']['source']} — input {tuple(report['model']['input_shape'])}, "
        f"{report['model']['params']:,} parameters. Data: {report['data']['name']} "
        f"({report['data']['train_samples']} train / {report['data']['test_samples']} test).", "",
        "## Headline", "",
        f"- Float Keras test accuracy: {_pct(headline['float_keras_accuracy'])}",
        f"- Optimized {report['recipe']['precision']} `.tflite` test accuracy: "
        f"{_pct(headline['optimized_tflite_accuracy'])} "
        f"(drop {headline['accuracy_drop_points']:+.2f} points vs float Keras)",
        f"- gzip size: {headline['gzip_ratio_vs_float']:.3f}x the float32 `.tflite`",
        f"- median latency: {headline['latency_ratio_vs_float']:.2f}x the float32 `.tflite`"
        f"{' (within run-to-run noise)' if headline['latency_ratio_within_noise'] else ''}, "
        "measured interleaved "
        f"({report['runtime']['interpreter']}, op resolver {report['runtime']['op_resolver']}, "
        f"{report['runtime']['num_threads']} thread(s)){_on_cpu(report)}",
        *_latency_advice(report),
        "", "## Variants", "",
        "| variant | file | size | gzip | MACs | parameters | accuracy | "
        "agreement with float Keras | max abs diff | latency median | p90 | min | max |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in report["variants"]:
        lat = v["latency"]
        cost = v.get("cost") or {}  # reports written before the cost was recorded lack it
        lines.append(
            f"| {v['name']} | `{v['file']}` | {_kib(v['size_bytes'])} | {_kib(v['gzip_bytes'])} | "
            f"{_count(cost.get('macs'))} | {_count(cost.get('parameters'))} | "
            f"{_pct(v['accuracy'])} | {_pct(v['agreement'])} | {v['max_abs_diff']:.4f} | "
            f"{lat['median_us']:.0f} µs | {lat['p90_us']:.0f} µs | {lat['min_us']:.0f} µs | "
            f"{lat['max_us']:.0f} µs |")
    notes = [f"- {v['name']}: {note}" for v in report["variants"] for note in v["latency"].get("notes", ())]
    if notes:
        lines += ["", "Runtime notes:", *notes]
    lines += ["", *render_stages(report["stages"])]
    if report.get("weight_stats"):
        lines += ["", "## Weights of the optimized model", "",
                  "| layer | weights | sparsity | unique values |", "|---|---|---|---|"]
        for name, stats in report["weight_stats"].items():
            lines.append(f"| {name} | {stats['size']} | {stats['sparsity']:.3f} | {stats['unique_values']} |")
    lines += ["", "## Recipe", "", "```json", _json(report["recipe"]), "```", "",
              "## Timings", ""]
    lines += [f"- {k}: {v:.1f} s" for k, v in report["timings_s"].items()]
    for plot in report.get("plots", []):
        lines += ["", f"![{plot}]({plot})"]
    lines += ["", f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}."]
    return "\n".join(lines) + "\n"


def render_stages(stages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The training-stages table, and per channel-pruning stage its layers and totals.

    A prune stage with ``objective: latency`` removes channels, so its kernel sparsity stays
    near 0; its row says what it removed instead (``StageRecord.channel_pruning``).

    Example:
        >>> print("\n".join(render_stages([r.to_dict() for r in plan_result.stages])))
    """
    lines = ["## Training stages", "",
             "| stage | epochs | seconds | sparsity | max unique weights | what it did | metrics |",
             "|---|---|---|---|---|---|---|"]
    channel_stages = []
    for number, s in enumerate(stages, 1):
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in s.get("metrics", {}).items()
                            if isinstance(v, (int, float)))
        pruning = s.get("channel_pruning")
        if pruning:
            channel_stages.append((number, s["name"], pruning))
            removed = sum(l["channels_before"] - l["channels_after"] for l in pruning["layers"])
            did = (f"{removed} channels removed: parameters {pruning['params_ratio']:.3f}x, "
                   f"MACs {pruning['macs_ratio']:.3f}x (stage {number} below)")
            sparsity = f"{s['sparsity']:.3f} (channels removed, not zeroed)"
        else:
            did, sparsity = "", f"{s['sparsity']:.3f}"
        lines.append(f"| {s['name']} | {s['epochs']} | {s['seconds']:.1f} | {sparsity} | "
                     f"{s['max_unique_weights']} | {did} | {metrics} |")
    for number, name, pruning in channel_stages:
        lines += ["", f"### Stage {number} ({name}, objective latency): channels kept", "",
                  f"- parameters: {pruning['params_before']:,} -> {pruning['params_after']:,} "
                  f"({pruning['params_ratio']:.3f}x)",
                  f"- MACs per inference: {pruning['macs_before']:,} -> "
                  f"{pruning['macs_after']:,} ({pruning['macs_ratio']:.3f}x)", "",
                  "| layer | kind | channels before | channels after | kept | note |",
                  "|---|---|---|---|---|---|"]
        for l in pruning["layers"]:
            note = l.get("reason") or (f"tied with {', '.join(l['tied_with'])}"
                                       if l.get("tied_with") else "")
            kept = l["channels_after"] / max(1, l["channels_before"])
            lines.append(f"| {l['name']} | {l['kind']} | {l['channels_before']} | "
                         f"{l['channels_after']} | {100 * kept:.0f}% | {note} |")
    return lines


def _on_cpu(report: Mapping[str, Any]) -> str:
    cpu = report.get("host_cpu")
    return f" on {cpu['description']}" if cpu else ""


def _latency_advice(report: Mapping[str, Any]) -> list[str]:
    """When the optimized file is slower than float here: that, why, and what to do."""
    guidance = report.get("latency_guidance") or {}
    if not guidance.get("slower"):
        return []
    lines = ["", "### Slower than float32 on this host", "", guidance["summary"] + ".", ""]
    for line in guidance["advice"]:
        # The adb command goes in a code block so it can be copied as it is.
        lines += ["```bash", line.strip(), "```"] if line.startswith("  ") else [line]
    return lines


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2)


def write_report(report: Mapping[str, Any], output_dir: str | Path) -> list[Path]:
    """Writes ``report.json``, ``report.md`` and ``variants.png`` into ``output_dir``.

    Example:
        >>> write_report(result.to_dict(), "outputs")
    """
    output_dir = Path(output_dir)
    report = dict(report)
    plot = plot_variants(report["variants"], output_dir / "variants.png",
                         title=f"{report['model']['source']}: size, accuracy, latency")
    report["plots"] = [plot.name]
    return [
        atomic_write_json(output_dir / "report.json", report),
        atomic_write_text(output_dir / "report.md", render_markdown(report)),
        plot,
    ]

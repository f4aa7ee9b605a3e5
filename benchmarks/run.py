"""Runs benchmark suites and writes ``DIR/NAME.json`` and ``DIR/NAME.md`` per suite.

Usage:
    python benchmarks/run.py --suite=pipeline --output_dir=benchmark_results
    python benchmarks/run.py --suite=all --output_dir=benchmark_results   # + summary.md

A suite is a module ``benchmarks/suites/<name>.py`` with
``run(output_dir: Path, quick: bool = False) -> dict`` returning
``{"summary": {...}, "tables": [{"title", "columns", "rows"}], "details": {...}}``.
Figures that compare variants are taken side by side in one run (ratios), because
timings on shared machines drift between runs. Each result records the commit and the
CPU (model and int8-relevant flags) it came from; accuracy is scored on the augmented
held-out digits (``benchmarks.common.eval_data``). ``benchmarks/readme_table.py``
regenerates README.md's headline table from the JSON files.
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags  # noqa: E402

from tflite_opt.cli import _common  # noqa: E402
from tflite_opt.files import atomic_write_json, atomic_write_text  # noqa: E402
from tflite_opt.runtime.host_cpu import host_cpu  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]

# Order matters for --suite=all: cheap, foundational suites first.
SUITES = ("pipeline", "train", "convert", "runtime", "compare", "keras3", "distill",
          "distill_stages", "decompose", "nas", "latency_pruning", "ondevice", "federated")

FLAGS = flags.FLAGS
flags.DEFINE_string("suite", "pipeline", f"Suite to run: one of {', '.join(SUITES)}, or 'all'.")
flags.DEFINE_string("output_dir", "benchmark_results", "Folder for NAME.json, NAME.md and plots.")
flags.DEFINE_bool("quick", False, "Smaller workloads (fewer epochs and runs) for a fast check.")


def source_commit() -> dict:
    """The commit the benchmark code came from, and whether tracked files differed from it."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=30, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_markdown(name: str, result: dict) -> str:
    """Renders a suite result as markdown: headline summary, then its tables."""
    lines = [f"# Benchmark suite `{name}`", ""]
    env = result.get("environment", {})
    if env:
        cpu = env.get("cpu", {}).get("description", env.get("machine"))
        source = env.get("source", {})
        commit = (source.get("commit") or "unknown")[:10] + (" + local changes" if source.get("dirty") else "")
        lines += [f"Run on {cpu}, {env.get('cpu_count')} CPUs, Python {env.get('python')}, "
                  f"{env.get('date')}, commit {commit}; wall {result.get('wall_s', 0):.1f} s. "
                  "Latencies are of this CPU.", ""]
    lines += ["## Summary", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in result.get("summary", {}).items()]
    for table in result.get("tables", []):
        lines += ["", f"## {table['title']}", ""]
        lines.append("| " + " | ".join(table["columns"]) + " |")
        lines.append("|" + "---|" * len(table["columns"]))
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
        if table.get("note"):
            lines += ["", table["note"]]
    for plot in result.get("plots", []):
        lines += ["", f"![{plot}]({plot})"]
    return "\n".join(lines) + "\n"


def run_suite(name: str, output_dir: Path, quick: bool = False, source: dict | None = None) -> dict:
    """Runs one suite, writes NAME.json and NAME.md, and returns its result.

    ``source`` is the commit the code came from (``source_commit()``, taken when the run began:
    other commits may land while a long run goes on).
    """
    if name not in SUITES:
        _common.fail(f"--suite={name!r} is not a suite; choose one of {', '.join(SUITES)} or 'all'")
    module = importlib.import_module(f"benchmarks.suites.{name}")
    start = time.perf_counter()
    result = module.run(output_dir, quick=quick)
    result["suite"] = name
    result["wall_s"] = round(time.perf_counter() - start, 2)
    result["quick"] = quick
    result["environment"] = {
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": host_cpu().to_dict(), "source": source or source_commit(),
    }
    result.setdefault("plots", sorted(p.name for p in output_dir.glob(f"{name}*.png")))
    atomic_write_json(output_dir / f"{name}.json", result)
    atomic_write_text(output_dir / f"{name}.md", render_markdown(name, result))
    print(f"suite {name}: {output_dir / (name + '.json')} ({result['wall_s']:.1f} s)")
    return result


def main(argv) -> None:
    _common.reject_extra_args(argv)
    output_dir = Path(FLAGS.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    names = SUITES if FLAGS.suite == "all" else (FLAGS.suite,)
    source = source_commit()
    results = {name: run_suite(name, output_dir, FLAGS.quick, source) for name in names}
    if FLAGS.suite == "all":
        text = "\n".join(render_markdown(n, r) for n, r in results.items())
        atomic_write_text(output_dir / "summary.md", text)
        print(f"summary: {output_dir / 'summary.md'}")


if __name__ == "__main__":
    _common.run(main)

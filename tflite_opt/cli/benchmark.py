"""benchmark: latency of .tflite files, measured like TFLite's benchmark_model.

    python scripts/benchmark.py --model=model.tflite [--num_threads=2] [--num_runs=100]
    python scripts/benchmark.py --model=float.tflite --compare int8.tflite pruned.tflite --json
    python scripts/benchmark.py --model=int8.tflite --find_fastest --threads_to_try=1,2

Prints a table (min / median / max so noise is visible; with --compare, the
pairwise ratios of interleaved runs) or, with --json, the results as JSON; with
--output=FILE.json the JSON is also written there. Every model is first run once
in a child process, so a file that crashes the runtime ends in a one-line error
and exit code 2, not a signal. Exit 0 on success, 2 on bad input.
"""

from __future__ import annotations

import json
import sys

from absl import flags

from tflite_opt.cli import _common
from tflite_opt.runtime.interpreter import MAX_NUM_THREADS

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The .tflite file to benchmark.")
flags.DEFINE_multi_string("compare", [], "More .tflite files to run interleaved with --model "
                          "(repeat the flag or pass several values separated by commas).")
flags.DEFINE_bool("json", False, "Print the results as JSON instead of a table.")
flags.DEFINE_string("output", None, "Also write the JSON results to this file.")
flags.DEFINE_integer("num_threads", 1, "Interpreter threads.", lower_bound=1,
                     upper_bound=MAX_NUM_THREADS)
flags.DEFINE_integer("num_runs", 50, "Timed runs (rounds with --compare).", lower_bound=1)
flags.DEFINE_integer("warmup_runs", 5, "Untimed runs after the first inference.", lower_bound=0)
flags.DEFINE_enum("op_resolver", "auto", ["auto", "no_xnnpack", "reference"],
                  "Kernels: auto (XNNPACK delegate), no_xnnpack, reference.")
flags.DEFINE_list("delegates", [], "Delegates to try: xnnpack, gpu, nnapi, hexagon, "
                  "external:/path/lib.so. Each one's outcome is reported.")
flags.DEFINE_bool("find_fastest", False, "Also time threads x XNNPACK on/off and report the "
                  "fastest configuration.")
flags.DEFINE_list("threads_to_try", ["1", "2"], "Thread counts for --find_fastest.")
flags.DEFINE_list("compiled_model", [], "Also benchmark through LiteRT CompiledModel on these "
                  "accelerators: cpu, gpu, gpu_only.")
flags.DEFINE_bool("profile", False, "Also measure time per node and per op type (prefix "
                  "differencing; the LiteRT Python API has no op profiler).")
flags.DEFINE_bool("isolate", True, "Run each model once in a child process first, so a crash "
                  "in the runtime becomes an error instead of a signal.")
flags.DEFINE_bool("progress", True, "Show a progress bar over the runs.")


def _models() -> list[str]:
    extra = [p for value in FLAGS.compare for p in value.split(",") if p]
    return [FLAGS.model] + extra


def _stats_rows(results: list) -> list[list]:
    return [[r["label"], r["interpreter"], r["num_threads"], r["min_us"], r["median_us"],
             r["mean_us"], r["std_us"], r["p90_us"], r["p99_us"], r["max_us"],
             r["init_us"], r["first_inference_us"], r["size_bytes"], r["gzip_bytes"]]
            for r in results]


_STATS_COLUMNS = ["model", "interpreter", "threads", "min_us", "median_us", "mean_us", "std_us",
                  "p90_us", "p99_us", "max_us", "init_us", "first_us", "bytes", "gzip_bytes"]


def main(argv) -> int:
    extra = list(argv[1:])
    if FLAGS.compare and extra and all(a.endswith(".tflite") for a in extra):
        # `--compare a.tflite b.tflite`: absl binds only the first file to the flag.
        FLAGS.compare = list(FLAGS.compare) + extra
        argv = argv[:1]
    _common.reject_extra_args(argv)
    from tflite_opt.runtime._table import format_table
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.files import atomic_write_json
    from tflite_opt.runtime import (benchmark, benchmark_compiled_model, compare,
                                    find_fastest_config, profile_ops, read_tflite)
    from tflite_opt.runtime.isolation import ensure_runs_safely

    if not FLAGS.model:
        raise InvalidArgumentError("--model is required: pass --model=FILE.tflite")
    try:
        threads_to_try = [int(t) for t in FLAGS.threads_to_try]
    except ValueError:
        threads_to_try = []
    if not threads_to_try or not all(1 <= t <= MAX_NUM_THREADS for t in threads_to_try):
        raise InvalidArgumentError(f"--threads_to_try must be integers from 1 to "
                                   f"{MAX_NUM_THREADS}, got {','.join(FLAGS.threads_to_try)!r}")
    models = _models()
    if FLAGS.output:  # checked before any run: the models and their sidecars must survive a typo
        _common.check_output(FLAGS.output, models=models)
    for path in models:
        data = read_tflite(path)
        if FLAGS.isolate:
            ensure_runs_safely(data, name=repr(path), num_threads=FLAGS.num_threads)

    report: dict = {"models": models}
    text: list[str] = []
    if len(models) == 1:
        result = benchmark(models[0], num_runs=FLAGS.num_runs, warmup_runs=FLAGS.warmup_runs,
                           num_threads=FLAGS.num_threads, op_resolver=FLAGS.op_resolver,
                           delegates=FLAGS.delegates, progress=FLAGS.progress)
        report["benchmark"] = result.to_dict()
        row = dict(result.to_dict(), label=models[0])
        text.append(format_table(_STATS_COLUMNS, _stats_rows([row]),
                                 f"benchmark: {FLAGS.num_runs} runs after {FLAGS.warmup_runs} "
                                 f"warm-up, op resolver {FLAGS.op_resolver} (times in us)"))
        text.append(f"peak memory: {result.peak_memory_bytes / 2**20:.1f} MiB "
                    f"({result.peak_memory_method})")
        if result.delegates:
            text.append(format_table(
                ["delegate", "status", "delegated_nodes", "cpu_nodes", "cpu_ops", "reason"],
                [[d["name"], d["status"], d["delegated_nodes"], d["cpu_nodes"],
                  ",".join(d["cpu_ops"]) if d["cpu_ops"] else None, d["reason"][:160]]
                 for d in result.delegates], "delegates"))
        text.append("on an Android phone (same settings):\n  " +
                    "\n  ".join(result.android_commands))
    else:
        result = compare(models, num_runs=FLAGS.num_runs, warmup_runs=FLAGS.warmup_runs,
                         num_threads=FLAGS.num_threads, op_resolver=FLAGS.op_resolver,
                         progress=FLAGS.progress)
        report["compare"] = result.to_dict()
        rows = [r.to_dict() for r in result.results]
        text.append(format_table(_STATS_COLUMNS, _stats_rows(rows),
                                 f"interleaved: {FLAGS.num_runs} rounds, every model once per "
                                 "round (times in us)"))
        labels = [r["label"] for r in rows]
        text.append(format_table(
            ["median ratio (row / column)"] + labels,
            [[a] + [f"{result.ratios[a][b]:.3f}" + ("" if a == b or
                                                   result.distinguishable[a][b] else "~")
                    for b in labels] for a in labels],
            "pairwise ratios: > 1 means the column model is faster; ~ marks a gap within the "
            "interquartile noise"))
        text.append(f"fastest: {result.fastest}")
    if FLAGS.find_fastest:
        fastest = find_fastest_config(models[0], threads=threads_to_try,
                                      num_runs=FLAGS.num_runs, warmup_runs=FLAGS.warmup_runs,
                                      progress=FLAGS.progress)
        report["fastest_config"] = fastest.to_dict()
        text.append(format_table(
            ["configuration", "min_us", "median_us", "max_us"],
            [[r.candidate.label, r.stats.min_us, r.stats.median_us, r.stats.max_us]
             for r in fastest.comparison.results], "interpreter configurations (interleaved)"))
        text.append(fastest.summary)
    if FLAGS.profile:
        prof = profile_ops(models[0], num_runs=FLAGS.num_runs, warmup_runs=FLAGS.warmup_runs,
                           num_threads=FLAGS.num_threads, op_resolver=FLAGS.op_resolver,
                           progress=FLAGS.progress)
        report["profile"] = prof.to_dict()
        if prof.available:
            text.append(format_table(
                ["op type", "nodes", "us", "share"],
                [[op, v["count"], v["us"], f"{100 * v['share']:.1f}%"]
                 for op, v in prof.by_op_type.items()],
                f"per-op profile of {models[0]} (noise ~{prof.noise_us:.2f} us; "
                "prefix differencing)"))
            text.append(format_table(
                ["node", "op", "us", "cumulative_us", "output"],
                [[n["node"], n["op"], n["us"], n["cumulative_us"], n["output"][:50]]
                 for n in prof.by_node], "per node"))
        else:
            text.append(f"per-op profile not available: {prof.reason}")
    if FLAGS.compiled_model:
        results = benchmark_compiled_model(models[0], accelerators=FLAGS.compiled_model,
                                           num_threads=FLAGS.num_threads,
                                           num_runs=FLAGS.num_runs,
                                           warmup_runs=FLAGS.warmup_runs)
        report["compiled_model"] = [r.to_dict() for r in results]
        text.append(format_table(
            ["accelerator", "status", "median_us", "fully_accelerated", "reason"],
            [[r.accelerator, r.status, r.benchmark.median_us if r.benchmark else None,
              r.fully_accelerated, r.reason[:120]] for r in results],
            "LiteRT CompiledModel"))
    if FLAGS.output:
        atomic_write_json(FLAGS.output, report)
    if FLAGS.json:
        json.dump(report, sys.stdout, indent=2, default=str)
        print()
    else:
        print("\n\n".join(text))
    return 0


def cli() -> None:
    flags.mark_flag_as_required("model")
    _common.run(main)


if __name__ == "__main__":
    cli()

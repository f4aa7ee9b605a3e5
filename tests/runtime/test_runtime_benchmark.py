"""Latency statistics against known workloads; benchmark, compare, delegates, CompiledModel."""

from __future__ import annotations

import importlib
import itertools
import json
import math
import os

import numpy as np
import pytest

from tflite_opt.errors import InvalidArgumentError, InvalidTFLiteError
from tflite_opt.runtime import (DELEGATES, DelegateSpec, android_benchmark_commands, benchmark,
                                benchmark_compiled_model, compare, find_fastest_config,
                                latency_stats, nearest_rank_percentile)
from tflite_opt.runtime.delegates import FAILED, NOT_AVAILABLE, USED, resolve_delegates


def test_latency_stats_of_1_to_100_are_exact():
    s = latency_stats(range(1, 101))
    assert s.count == 100
    assert s.mean_us == 50.5
    assert s.std_us == pytest.approx(math.sqrt((100**2 - 1) / 12))  # population std
    assert (s.min_us, s.median_us, s.max_us) == (1.0, 50.5, 100.0)
    assert (s.p90_us, s.p99_us) == (90.0, 99.0)  # nearest rank: measured values


def test_latency_stats_with_one_outlier_keeps_percentiles_and_shows_max():
    s = latency_stats([10.0] * 99 + [1000.0])
    assert s.median_us == 10.0 and s.p90_us == 10.0 and s.p99_us == 10.0
    assert s.max_us == 1000.0
    assert s.mean_us == pytest.approx(19.9)
    assert s.std_us == pytest.approx(np.std([10.0] * 99 + [1000.0]))


def test_latency_stats_of_one_run_and_odd_count():
    one = latency_stats([42.0])
    assert one.min_us == one.median_us == one.p99_us == one.max_us == 42.0 and one.std_us == 0
    assert latency_stats([3, 1, 2]).median_us == 2.0
    assert nearest_rank_percentile([5, 1, 4, 2, 3], 50) == 3.0


@pytest.mark.parametrize("bad", [[], [1.0, -1.0], [float("nan")], [float("inf")]])
def test_latency_stats_bad_timings_raise(bad):
    with pytest.raises(InvalidArgumentError):
        latency_stats(bad)


def test_benchmark_reports_statistics_of_the_timed_runs(tflite_files, monkeypatch):
    # Feed a known workload through the real benchmark loop: first inference 500 us,
    # then timed runs 1..20 us (warm-up runs call invoke() directly and are not timed).
    known = itertools.chain([500.0], (float(i) for i in range(1, 21)))
    # The package re-exports the benchmark() function under the module's name.
    module = importlib.import_module("tflite_opt.runtime.benchmark")
    monkeypatch.setattr(module, "_timed_invoke", lambda interpreter: next(known))
    result = benchmark(tflite_files["float"], num_runs=20, warmup_runs=3)
    assert result.first_inference_us == 500.0
    assert result.timings_us == tuple(float(i) for i in range(1, 21))
    assert (result.min_us, result.median_us, result.max_us) == (1.0, 10.5, 20.0)
    assert result.mean_us == 10.5
    assert (result.p90_us, result.p99_us) == (18.0, 20.0)
    assert result.std_us == pytest.approx(np.std(np.arange(1, 21)))


# These check XNNPACK itself, so they cannot hold when the suite runs with it forced off.
needs_xnnpack = pytest.mark.skipif(
    os.environ.get("TFLITE_OPT_OP_RESOLVER", "auto") != "auto",
    reason="checks the XNNPACK delegate; TFLITE_OPT_OP_RESOLVER turns it off for this run")


@needs_xnnpack
def test_benchmark_with_user_inputs_and_no_xnnpack(tflite_files, digits16):
    result = benchmark(tflite_files["int8"], num_runs=5, warmup_runs=1, num_threads=2,
                       op_resolver="no_xnnpack", inputs=digits16.x_test[:1],
                       delegates=["xnnpack"])
    assert result.input_source == "user" and result.num_threads == 2
    (xnn,) = result.delegates
    assert xnn["status"] == NOT_AVAILABLE and "op_resolver" in xnn["reason"]
    with_xnnpack = benchmark(tflite_files["int8"], num_runs=1, delegates=["xnnpack"])
    (xnn,) = with_xnnpack.delegates
    # XNNPACK has no int8 softmax: that node stays on the CPU kernels.
    assert xnn["cpu_ops"] == ["SOFTMAX"] and xnn["delegated_nodes"] == 8
    assert any("--use_xnnpack=false" in c and "--num_threads=2" in c
               for c in result.android_commands)


def test_benchmark_wrong_input_shape_raises_data_error(tflite_files):
    from tflite_opt.errors import DataError

    with pytest.raises(DataError, match="shape"):
        benchmark(tflite_files["float"], num_runs=1, inputs=np.zeros((1, 8, 8, 1), np.float32))


@pytest.mark.parametrize("kwargs", [{"num_runs": 0}, {"warmup_runs": -1}, {"num_threads": 0},
                                    {"op_resolver": "fast"}])
def test_benchmark_bad_arguments_raise(tflite_files, kwargs):
    with pytest.raises(InvalidArgumentError):
        benchmark(tflite_files["float"], **kwargs)


@needs_xnnpack
def test_delegates_each_get_an_outcome_and_never_raise(tflite_files, tmp_path):
    not_a_library = tmp_path / "libfake.so"
    not_a_library.write_bytes(b"\x7fELF not really")
    result = benchmark(tflite_files["float"], num_runs=2, warmup_runs=0,
                       delegates=["xnnpack", "gpu", "nnapi", "hexagon",
                                  f"external:{not_a_library}", "/no/such/libdelegate.so"])
    by_name = [(d["name"], d["status"]) for d in result.delegates]
    assert by_name[0] == ("xnnpack", USED)
    assert all(status == NOT_AVAILABLE for _, status in by_name[1:])
    xnn = result.delegates[0]
    # The XNNPACK partition took every node of the float CNN.
    assert xnn["delegated_nodes"] == 9 and xnn["cpu_nodes"] == 0 and xnn["cpu_ops"] == []
    assert "Android" in result.delegates[2]["reason"]
    assert all(d["reason"] for d in result.delegates[1:])


def test_delegate_library_without_plugin_symbols_is_reported_not_loaded():
    import ctypes.util

    libm = ctypes.util.find_library("m")
    objects, (result,) = resolve_delegates([DelegateSpec("external", library=libm)])
    assert objects == [] and result.status == NOT_AVAILABLE
    assert "tflite_plugin_create_delegate" in result.reason


def test_delegate_registry_rejects_unknown_names():
    assert set(DELEGATES) >= {"xnnpack", "gpu", "nnapi", "hexagon", "external"}
    with pytest.raises(InvalidArgumentError, match="external"):
        DelegateSpec("tpu")
    with pytest.raises(InvalidArgumentError, match="library"):
        DelegateSpec("external")
    assert FAILED == "failed"


def test_compare_interleaves_and_gives_consistent_ratios(tflite_files):
    result = compare([tflite_files["float"], tflite_files["int8"]], num_runs=30, warmup_runs=2)
    a, b = "tiny_float.tflite", "tiny_int8.tflite"
    assert [r.candidate.label for r in result.results] == [a, b]
    assert all(r.stats.count == 30 for r in result.results)
    assert result.ratio(a, a) == 1.0
    assert result.ratio(a, b) == pytest.approx(1 / result.ratio(b, a))
    assert result.ratio(a, b) == pytest.approx(
        result.result(a).stats.median_us / result.result(b).stats.median_us)
    assert result.fastest == min(result.results, key=lambda r: r.stats.median_us).candidate.label
    json.dumps(result.to_dict())


def test_find_fastest_config_tries_threads_and_xnnpack(tflite_files):
    best = find_fastest_config(tflite_files["int8"], threads=(1, 2), num_runs=10, warmup_runs=1)
    labels = {r.candidate.label for r in best.comparison.results}
    assert labels == {"auto/t1", "no_xnnpack/t1", "auto/t2", "no_xnnpack/t2"}
    assert best.num_threads in (1, 2) and best.op_resolver in ("auto", "no_xnnpack")
    assert best.median_us == min(r.stats.median_us for r in best.comparison.results)
    default = best.comparison.result("auto/t1").stats.median_us
    assert best.speedup_vs_default == pytest.approx(default / best.median_us)
    assert "fastest is" in best.summary


def test_compiled_model_cpu_runs_and_gpu_is_reported_honestly(tflite_files):
    results = benchmark_compiled_model(tflite_files["int8"], accelerators=("cpu", "gpu"),
                                       num_runs=5, warmup_runs=1)
    cpu, gpu = results
    assert cpu.status == USED and cpu.benchmark.median_us > 0
    assert cpu.benchmark.interpreter == "ai_edge_litert.CompiledModel[cpu]"
    # On a host with a WebGPU adapter the GPU path may work; either way it is reported.
    if gpu.status == USED:
        assert gpu.benchmark.median_us > 0
    else:
        assert gpu.status in (NOT_AVAILABLE, FAILED) and gpu.reason and gpu.benchmark is None


def test_android_commands_carry_threads_runs_and_delegate():
    commands = android_benchmark_commands("out/m.tflite", num_threads=4, delegate="gpu",
                                          num_runs=100, warmup_runs=10, op_profiling=True)
    assert "adb push out/m.tflite /data/local/tmp/m.tflite" in commands
    last = commands[-1]
    for flag in ("--graph=/data/local/tmp/m.tflite", "--num_threads=4", "--num_runs=100",
                 "--warmup_runs=10", "--use_gpu=true", "--enable_op_profiling=true"):
        assert flag in last
    ext = android_benchmark_commands("m.tflite", delegate="external",
                                     external_library="/x/libqnn.so")
    assert "--external_delegate_path=/data/local/tmp/libqnn.so" in ext[-1]


def test_every_entry_point_rejects_an_empty_file(tmp_path, digits16):
    from tflite_opt.runtime import evaluate_tflite, inspect_model, read_tflite

    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    calls = [lambda: read_tflite(empty), lambda: inspect_model(empty),
             lambda: benchmark(empty), lambda: compare([empty]),
             lambda: find_fastest_config(empty), lambda: benchmark_compiled_model(empty),
             lambda: evaluate_tflite(empty, digits16.x_test)]
    for call in calls:
        with pytest.raises(InvalidTFLiteError, match="empty"):
            call()


def test_profile_ops_covers_every_node_and_sums_to_the_total(tflite_files):
    from tflite_opt.runtime import profile_ops

    prof = profile_ops(tflite_files["int8"], num_runs=10, warmup_runs=1)
    assert prof.available and "prefix" in prof.method
    assert [n["node"] for n in prof.by_node] == list(range(9))
    assert prof.by_node[0]["op"] == "CONV_2D" and prof.by_node[-1]["op"] == "SOFTMAX"
    # Node times telescope: they add up to the whole graph's median.
    assert sum(n["us"] for n in prof.by_node) == pytest.approx(prof.total_us)
    assert prof.by_node[-1]["cumulative_us"] == prof.total_us
    assert set(prof.by_op_type) == {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                                    "SOFTMAX"}
    assert prof.by_op_type["CONV_2D"]["count"] == 3
    assert sum(v["share"] for v in prof.by_op_type.values()) == pytest.approx(1.0)


@needs_xnnpack
def test_default_xnnpack_failure_falls_back_and_is_reported(tflite_files, monkeypatch):
    interpreter_module = importlib.import_module("tflite_opt.runtime.interpreter")
    real_build = interpreter_module._build

    def failing_xnnpack(module, model, options, delegates):
        if options.op_resolver == "auto":
            raise RuntimeError("failed to delegate ops to XNNPack delegate (simulated)")
        return real_build(module, model, options, delegates)

    monkeypatch.setattr(interpreter_module, "_build", failing_xnnpack)
    with pytest.warns(RuntimeWarning, match="XNNPACK"):
        result = benchmark(tflite_files["int8"], num_runs=2, delegates=["xnnpack"])
    assert result.op_resolver == "no_xnnpack"
    assert any("XNNPACK" in note for note in result.notes)
    (xnn,) = result.delegates
    assert xnn["status"] == FAILED and "simulated" in xnn["reason"]
    assert not any("--use_xnnpack=true" in c for c in result.android_commands)

"""The words for a host latency ratio: slower int8 says so, why, and what to do."""

from __future__ import annotations

from tflite_opt.report.latency_guidance import latency_guidance
from tflite_opt.runtime.host_cpu import HostCPU

AVX2_ONLY = HostCPU("AMD EPYC 7B12", "x86_64", ("avx2", "fma"))
VNNI = HostCPU("Intel Xeon 8481C", "x86_64", ("avx2", "fma", "avx512f", "avx512_vnni"))
UNKNOWN = HostCPU("unknown", "arm64", (), flags_known=False)


def test_latency_guidance_int8_slower_without_dot_product_says_why_and_what_to_do():
    g = latency_guidance(1.15, False, AVX2_ONLY, "outputs/model_int8.tflite", "int8")
    assert g.slower
    assert g.summary.startswith("median latency vs float32 1.15x: int8 is SLOWER than float32")
    assert "AMD EPYC 7B12 (x86_64; avx2, fma)" in g.summary
    why, *todo = g.advice
    assert "no int8 dot-product instructions" in why and "AVX512-VNNI" in why
    text = "\n".join(todo)
    assert "adb shell /data/local/tmp/benchmark_model --graph=/data/local/tmp/model_int8.tflite" in text
    assert "--num_threads=1" in text
    assert "python scripts/benchmark.py --model=outputs/model_int8.tflite --find_fastest" in text


def test_latency_guidance_int8_slower_with_dot_product_blames_fixed_costs_not_arithmetic():
    g = latency_guidance(1.3, False, VNNI, "m.tflite", "int8", num_threads=2)
    assert g.slower
    assert "does have int8 dot-product instructions (avx512_vnni)" in g.advice[0]
    assert "--num_threads=2" in "\n".join(g.advice)


def test_latency_guidance_unknown_flags_says_unknown():
    g = latency_guidance(1.5, False, UNKNOWN, "m.tflite", "int8")
    assert "could not be read" in g.advice[0]


def test_latency_guidance_int8_faster_or_within_noise_gives_ratio_and_cpu_only():
    faster = latency_guidance(0.33, False, VNNI, "m.tflite", "int8")
    assert not faster.slower and faster.advice == ()
    assert faster.summary == ("median latency vs float32 0.33x on this host, "
                              "Intel Xeon 8481C (x86_64; avx2, fma, avx512f, avx512_vnni)")
    noisy = latency_guidance(1.04, True, AVX2_ONLY, "m.tflite", "int8")
    assert not noisy.slower and "(within run-to-run noise)" in noisy.summary


def test_render_markdown_has_slower_section_only_when_slower():
    from tflite_opt.report.report import _latency_advice

    slower = latency_guidance(1.15, False, AVX2_ONLY, "o/model_int8.tflite", "int8")
    lines = _latency_advice({"latency_guidance": slower.to_dict()})
    assert "### Slower than float32 on this host" in lines
    assert any(line.startswith("adb shell") for line in lines)  # in a code block, unindented
    faster = latency_guidance(0.5, False, AVX2_ONLY, "o/model_int8.tflite", "int8")
    assert _latency_advice({"latency_guidance": faster.to_dict()}) == []
    assert _latency_advice({}) == []  # reports written before the guidance existed

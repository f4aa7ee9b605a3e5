"""Host CPU detection from /proc/cpuinfo text: the int8 dot-product flags on x86 and ARM."""

from __future__ import annotations

import pytest

from tflite_opt.runtime.host_cpu import HostCPU, host_cpu, parse_cpuinfo

# Trimmed from real machines: an AVX2-only EPYC (the issue's), a VNNI Xeon, two ARM cores.
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
"""
XEON_VNNI = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw avx512_vnni avx_vnni amx_int8
"""
ARM_DOTPROD = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp i8mm
CPU implementer\t: 0x41
"""
ARM_V8_0 = """Processor\t: AArch64 Processor rev 4 (aarch64)
processor\t: 0
Features\t: fp asimd evtstrm crc32
"""


@pytest.mark.parametrize("text, machine, model, dot, flags", [
    (EPYC_AVX2, "x86_64", "AMD EPYC 7B12", False, ("avx2", "fma")),
    (XEON_VNNI, "x86_64", "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", True,
     ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")),
    (ARM_DOTPROD, "aarch64", None, True, ("asimddp", "i8mm")),
    (ARM_V8_0, "aarch64", "AArch64 Processor rev 4 (aarch64)", False, ()),
])
def test_parse_cpuinfo_fake_text_finds_model_and_int8_dot_product(text, machine, model, dot, flags):
    cpu = parse_cpuinfo(text, machine)
    assert cpu.int8_dot_product is dot
    assert cpu.flags == flags and cpu.flags_known
    assert cpu.machine == machine
    if model is not None:
        assert cpu.model == model
    assert cpu.to_dict()["int8_dot_product"] is dot


def test_describe_names_model_machine_and_flags():
    cpu = parse_cpuinfo(EPYC_AVX2, "x86_64")
    assert cpu.describe() == "AMD EPYC 7B12 (x86_64; avx2, fma)"
    assert "none of" in parse_cpuinfo(ARM_V8_0, "aarch64").describe()


def test_host_cpu_without_cpuinfo_says_flags_unknown(tmp_path):
    cpu = host_cpu(tmp_path / "missing")
    assert not cpu.flags_known and not cpu.int8_dot_product
    assert "flags unknown" in cpu.describe()


def test_host_cpu_reads_file(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(XEON_VNNI)
    assert host_cpu(path) == HostCPU("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
                                     host_cpu(path).machine,
                                     ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni",
                                      "amx_int8"))

"""Fuzz: 600 mutated .tflite files never crash the test process.

Every mutant goes through ``read_tflite`` in-process (pure Python, so it can only
raise); mutants it rejects must be rejected with ``InvalidTFLiteError`` by every
public entry point; mutants it accepts are inspected in-process (pure Python too)
and a seeded sample is loaded and invoked by the native runtime in child
processes, which must not die from a signal.
"""

from __future__ import annotations

import concurrent.futures
import random

import pytest

from tflite_opt.errors import InvalidTFLiteError
from tflite_opt.runtime import (benchmark, compare, evaluate_tflite, find_fastest_config,
                                inspect_model, read_tflite)
from tflite_opt.runtime.isolation import probe_in_subprocess

NUM_MUTANTS = 600
NATIVE_SAMPLE = 16


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    kind = rng.randrange(7)
    # Most of a model is weight data, where any byte is valid; aim at the
    # structure (header, tables, vtables, offsets) near both ends too.
    def pos() -> int:
        return rng.choice([rng.randrange(len(out)), rng.randrange(min(len(out), 2048)),
                           rng.randrange(max(0, len(out) - 4096), len(out))])
    if kind == 0:  # bit flips
        for _ in range(rng.randint(1, 8)):
            i = pos()
            out[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncation
        del out[rng.randrange(len(out)):]
    elif kind == 2:  # random 32-bit word (offsets, lengths)
        i = pos() & ~3
        out[i:i + 4] = rng.randbytes(4)
    elif kind == 3:  # insertion
        i = pos()
        out[i:i] = rng.randbytes(rng.randint(1, 16))
    elif kind == 4:  # deletion
        i = pos()
        del out[i:i + rng.randint(1, 64)]
    elif kind == 5:  # extreme values in a word
        i = pos() & ~3
        out[i:i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
                                   b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80"])
    else:  # byte smash
        for _ in range(rng.randint(1, 4)):
            out[pos()] = rng.randrange(256)
    return bytes(out)


@pytest.fixture(scope="module")
def mutants(tflite_files):
    rng = random.Random(1234)
    sources = [tflite_files["float"].read_bytes(), tflite_files["int8"].read_bytes()]
    return [_mutate(sources[i % 2], rng) for i in range(NUM_MUTANTS)]


def test_fuzz_mutated_models_are_rejected_or_inspected_in_process(mutants):
    rejected, inspected = 0, 0
    for mutant in mutants:
        try:
            read_tflite(mutant)
        except InvalidTFLiteError as exc:
            assert "not a valid TFLite" in str(exc) or "empty" in str(exc)
            rejected += 1
            continue
        try:  # any other exception (or a crash) fails the test
            inspection = inspect_model(mutant)
        except InvalidTFLiteError:
            continue
        assert inspection.nodes and inspection.tensors  # what a valid model has to show
        inspected += 1
    # The verifier must catch a real share of the structural damage, and enough mutants
    # (weight bytes flipped) pass it to exercise the inspection itself.
    assert rejected > NUM_MUTANTS // 4
    assert inspected > NUM_MUTANTS // 10


def test_fuzz_rejected_mutants_raise_invalid_tflite_from_every_entry_point(mutants, tmp_path,
                                                                          digits16):
    rejected = []
    for mutant in mutants:
        try:
            read_tflite(mutant)
        except InvalidTFLiteError:
            rejected.append(mutant)
    for i, mutant in enumerate(rejected[:10]):
        path = tmp_path / f"bad{i}.tflite"
        path.write_bytes(mutant)
        for call in (lambda: benchmark(path, num_runs=1), lambda: inspect_model(path),
                     lambda: compare([path], num_runs=1),
                     lambda: find_fastest_config(path, num_runs=1),
                     lambda: evaluate_tflite(path, digits16.x_test[:2])):
            with pytest.raises(InvalidTFLiteError, match=f"bad{i}.tflite"):
                call()


def test_fuzz_accepted_mutants_never_kill_the_native_runtime(mutants):
    accepted = []
    for mutant in mutants:
        try:
            accepted.append(read_tflite(mutant))
        except InvalidTFLiteError:
            pass
    sample = random.Random(99).sample(accepted, min(NATIVE_SAMPLE, len(accepted)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda data: probe_in_subprocess(data, timeout_s=60), sample))
    crashed = [r for r in results if r.signal_name]
    assert not crashed, f"{len(crashed)} of {len(sample)} mutants crashed the runtime: {crashed}"

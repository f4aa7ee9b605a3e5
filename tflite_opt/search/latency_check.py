"""The latency budget decided robustly on a busy host: measured against a reference, re-measured
when close.

On a shared machine one file's median moves with the load: the same model measured 23-37 us in
one search at load 7 on 2 cores, so a candidate near the budget fell on either side of it
depending on when it was measured. Here each candidate's ``.tflite`` is timed interleaved with
a fixed **reference** model (one file for the whole search, ``reference_model``): the
reference's median in each measurement shows the host's load at that moment, and the spread of
those medians over the search is how far one measurement of an unchanged file moves.

The decision:

1. First measurement: every configuration of the candidate (threads x XNNPACK on/off, as
   ``find_fastest_config``) and the reference, interleaved; the fastest configuration's median
   is the candidate's first figure.
2. The **margin** is ``budget x noise``, where ``noise`` (relative) is the larger of the
   candidate's run-to-run interquartile range over its median in that measurement and the
   reference's spread over the search, (max - min) / median of its medians (both measured, no
   constant). A first figure within the margin of the budget could fall on the other side in
   another measurement:
3. then the candidate (its fastest configuration) and the reference are timed ``repeats`` more
   times, interleaved, and the latency is the **median of all the candidate's medians**;
   otherwise the first figure stands.

Every median, the ratios to the reference, the margin and where it came from are kept in the
trial's record (``latency_check``).

Example:
    >>> reference = reference_model(Path("outputs/search/.tuner"))
    >>> check = check_latency("candidate.tflite", budget_us=50.0, reference=reference)
    >>> check.latency_us, check.remeasured, check.margin_us
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from pathlib import Path
from typing import Any, Sequence

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.search.objective import Measurement

REFERENCE_FILE = "reference.tflite"
REFERENCE_LABEL = "reference"
# The reference: the smallest MobileNetV2-like graph of the default space, float32, untrained
# (its weights do not change its speed), so every search and every worker builds the same file.
REFERENCE_CANDIDATE = {"architecture": "mobilenet_v2_like", "width": 0.25, "depth": 0.5,
                       "kernel_size": 3, "resolution": 16, "precision": "float32"}


@dataclasses.dataclass(frozen=True)
class LatencyCheck:
    """How a candidate's latency was decided (microseconds).

    Attributes:
        latency_us: The figure the budget is checked against.
        first: The first measurement (fastest configuration).
        candidate_medians_us: The candidate's median in each measurement, the first one first.
        reference_medians_us: The reference's median in the same measurements (empty without
            a reference).
        ratios: candidate / reference median, measurement by measurement.
        noise: The relative spread the margin was derived from.
        noise_source: ``candidate_iqr`` or ``reference_spread`` (which one was larger).
        margin_us: ``budget x noise``; None without a budget.
        remeasured: Whether the first figure fell within the margin and was measured again.
    """

    latency_us: float
    first: Measurement
    candidate_medians_us: tuple[float, ...]
    reference_medians_us: tuple[float, ...]
    ratios: tuple[float, ...]
    noise: float
    noise_source: str
    margin_us: float | None
    remeasured: bool

    @property
    def spread_us(self) -> float:
        """max - min of the candidate's medians (0 when measured once)."""
        return max(self.candidate_medians_us) - min(self.candidate_medians_us)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["first"] = self.first.to_dict()
        out["spread_us"] = self.spread_us
        return out


def reference_model(directory: Path) -> Path:
    """The search's reference ``.tflite`` in ``directory``, built there the first time.

    A resumed search and every worker of a distributed one use the file already there.
    """
    path = Path(directory) / REFERENCE_FILE
    if path.is_file():
        return path
    from tflite_opt._keras import keras_of_flavor
    from tflite_opt.convert import convert
    from tflite_opt.files import atomic_write_bytes
    from tflite_opt.search.space import Candidate

    keras_of_flavor("tf_keras").utils.set_random_seed(0)
    model = Candidate(**REFERENCE_CANDIDATE).build()
    converted = convert(model, "float32", progress=False)
    atomic_write_bytes(path, converted.tflite_bytes)
    return path


def reference_spread(medians_us: Sequence[float]) -> float:
    """(max - min) / median of the reference's medians: 0 for fewer than two."""
    if len(medians_us) < 2:
        return 0.0
    return (max(medians_us) - min(medians_us)) / statistics.median(medians_us)


def check_latency(model: str | Path, budget_us: float | None, reference: str | Path | None = None,
                  reference_history_us: Sequence[float] = (), threads: Sequence[int] = (1,),
                  num_runs: int = 50, repeats: int = 5,
                  op_resolvers: Sequence[str] = ("auto", "no_xnnpack")) -> LatencyCheck:
    """Measures ``model`` against ``reference`` and re-measures it when close to the budget.

    Args:
        model: The candidate's ``.tflite``.
        budget_us: The latency budget; None measures once.
        reference: The reference ``.tflite`` (``reference_model``); None times the candidate
            alone (the margin then comes from its run-to-run spread only).
        reference_history_us: The reference's medians in this search's earlier measurements.
        threads: Thread counts of the first measurement. Defaults to (1,).
        num_runs: Interleaved rounds per measurement. Defaults to 50.
        repeats: Extra measurements of a candidate within the margin. Defaults to 5.
        op_resolvers: Kernels of the first measurement. Defaults to XNNPACK on and off.

    Raises:
        InvalidArgumentError: ``repeats`` below 0.
    """
    from tflite_opt.runtime.compare import Candidate, run_interleaved

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
        raise InvalidArgumentError(f"latency repeats is {repeats!r}; accepted: an integer >= 0 "
                                   "(--latency_repeats)")
    model = str(model)
    configs = [Candidate(f"{r}/t{t}", model, int(t), r)
               for t, r in itertools.product(threads, op_resolvers)]
    extra = [Candidate(REFERENCE_LABEL, str(reference), 1, "auto")] if reference else []
    first = run_interleaved(configs + extra, num_runs=num_runs, warmup_runs=5)
    fastest = min((first.result(c.label) for c in configs), key=lambda r: r.stats.median_us)
    kernels = "XNNPACK" if fastest.candidate.op_resolver == "auto" else "builtin kernels"
    measurement = Measurement(
        median_us=fastest.stats.median_us, num_threads=fastest.candidate.num_threads,
        op_resolver=fastest.candidate.op_resolver,
        summary=f"fastest of {len(configs)} configurations: {fastest.candidate.num_threads} "
                f"thread(s) with {kernels} at {fastest.stats.median_us:.1f} us median")
    candidate_medians = [fastest.stats.median_us]
    reference_medians = [first.result(REFERENCE_LABEL).stats.median_us] if reference else []
    iqr = (fastest.q3_us - fastest.q1_us) / fastest.stats.median_us
    spread = reference_spread(list(reference_history_us) + reference_medians)
    noise, source = max((iqr, "candidate_iqr"), (spread, "reference_spread"))
    margin = None if budget_us is None else budget_us * noise
    remeasured = margin is not None and abs(candidate_medians[0] - budget_us) <= margin
    if remeasured:
        pair = [dataclasses.replace(fastest.candidate, label="candidate")] + extra
        for _ in range(repeats):
            again = run_interleaved(pair, num_runs=num_runs, warmup_runs=5)
            candidate_medians.append(again.result("candidate").stats.median_us)
            if reference:
                reference_medians.append(again.result(REFERENCE_LABEL).stats.median_us)
    ratios = tuple(c / r for c, r in zip(candidate_medians, reference_medians))
    return LatencyCheck(latency_us=float(statistics.median(candidate_medians)), first=measurement,
                        candidate_medians_us=tuple(candidate_medians),
                        reference_medians_us=tuple(reference_medians), ratios=ratios,
                        noise=float(noise), noise_source=source, margin_us=margin,
                        remeasured=remeasured)

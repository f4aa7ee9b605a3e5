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

A file whose latency is decided **from another's** (``check_latency_against``: the search's
pick retrained on all images, against the trial's file) goes through the same rule with ratios:
the two are timed side by side, the file's latency is the baseline's decided latency times
their median ratio, and a figure within the margin of the budget is re-timed ``repeats`` more
times and decided on the median of all the ratios. The margin there is the largest of both
files' run-to-run spread and the noise the baseline's own decision used, so the verdict is at
least as cautious as the baseline's.

Example:
    >>> reference = reference_model(Path("outputs/search/.tuner"))
    >>> check = check_latency("candidate.tflite", budget_us=50.0, reference=reference)
    >>> check.latency_us, check.remeasured, check.margin_us
    >>> retrained = check_latency_against("final.tflite", "candidate.tflite", check.latency_us,
    ...                                   budget_us=50.0, baseline_noise=check.noise)
    >>> retrained.latency_us, retrained.ratios
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

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
        remeasured: Whether the first figure fell within the margin and was measured again
            (never with ``repeats=0``).
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


@dataclasses.dataclass(frozen=True)
class NoiseMargin:
    """The band around the budget within which one measurement could fall on either side.

    Attributes:
        noise: The largest of the measured relative noises.
        source: Its name in ``noises``.
        noises: Every relative noise measured, by where it came from.
        margin_us: ``budget x noise``; None without a budget.
    """

    noise: float
    source: str
    noises: dict[str, float]
    margin_us: float | None

    @classmethod
    def of(cls, budget_us: float | None, noises: Mapping[str, float]) -> NoiseMargin:
        """The margin of ``budget_us`` from the largest of ``noises`` (name -> relative)."""
        source, noise = max(noises.items(), key=lambda item: item[1])
        return cls(noise=float(noise), source=source,
                   noises={k: float(v) for k, v in noises.items()},
                   margin_us=None if budget_us is None else budget_us * float(noise))

    def near(self, latency_us: float, budget_us: float | None) -> bool:
        """Whether ``latency_us`` lies within the margin of the budget, on either side."""
        return self.margin_us is not None and abs(latency_us - budget_us) <= self.margin_us


def _check_repeats(repeats: Any) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
        raise InvalidArgumentError(f"latency repeats is {repeats!r}; accepted: an integer >= 0 "
                                   "(--latency_repeats)")


def _figures_near_budget(first_us: float, budget_us: float | None, margin: NoiseMargin,
                         repeats: int, again: Callable[[], float]) -> tuple[list[float], bool]:
    """The latency figures the decision takes the median of, and whether it re-measured: the
    first alone, or with ``repeats`` more from ``again()`` when it lies within the margin."""
    figures = [first_us]
    remeasured = repeats > 0 and margin.near(first_us, budget_us)
    if remeasured:
        figures += [again() for _ in range(repeats)]
    return figures, remeasured


def _relative_iqr(result: Any) -> float:
    """Run-to-run interquartile range over the median of one timed file (a ``CandidateResult``)."""
    return (result.q3_us - result.q1_us) / result.stats.median_us


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

    _check_repeats(repeats)
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
    reference_medians = [first.result(REFERENCE_LABEL).stats.median_us] if reference else []
    spread = reference_spread(list(reference_history_us) + reference_medians)
    margin = NoiseMargin.of(budget_us, {"candidate_iqr": _relative_iqr(fastest),
                                        "reference_spread": spread})
    pair = [dataclasses.replace(fastest.candidate, label="candidate")] + extra

    def again() -> float:
        timed = run_interleaved(pair, num_runs=num_runs, warmup_runs=5)
        if reference:
            reference_medians.append(timed.result(REFERENCE_LABEL).stats.median_us)
        return timed.result("candidate").stats.median_us

    candidate_medians, remeasured = _figures_near_budget(fastest.stats.median_us, budget_us,
                                                         margin, repeats, again)
    ratios = tuple(c / r for c, r in zip(candidate_medians, reference_medians))
    return LatencyCheck(latency_us=float(statistics.median(candidate_medians)), first=measurement,
                        candidate_medians_us=tuple(candidate_medians),
                        reference_medians_us=tuple(reference_medians), ratios=ratios,
                        noise=margin.noise, noise_source=margin.source,
                        margin_us=margin.margin_us, remeasured=remeasured)


class Timed(NamedTuple):
    """One file's median in one interleaved run and its run-to-run spread there."""

    median_us: float
    relative_iqr: float  # (q3 - q1) / median of its rounds


def time_side_by_side(model: str | Path, baseline: str | Path, num_runs: int, num_threads: int,
                      op_resolver: str) -> tuple[Timed, Timed]:
    """``model`` and ``baseline`` timed interleaved in one run of ``num_runs`` rounds, in one
    configuration: (model, baseline)."""
    from tflite_opt.runtime.compare import Candidate, run_interleaved

    timed = run_interleaved([Candidate("model", str(model), num_threads, op_resolver),
                             Candidate("baseline", str(baseline), num_threads, op_resolver)],
                            num_runs=num_runs, warmup_runs=5)
    model_result, baseline_result = timed.result("model"), timed.result("baseline")
    return (Timed(model_result.stats.median_us, _relative_iqr(model_result)),
            Timed(baseline_result.stats.median_us, _relative_iqr(baseline_result)))


@dataclasses.dataclass(frozen=True)
class RatioCheck:
    """How a file's latency was decided from a baseline's (microseconds).

    Attributes:
        latency_us: ``baseline_latency_us x ratio``: the figure the budget is checked against.
        baseline_latency_us: The baseline's decided latency.
        ratio: The median of ``ratios``.
        ratios: model / baseline median, measurement by measurement, the first one first.
        medians_us: The model's median in each measurement.
        baseline_medians_us: The baseline's median in the same measurements.
        noise: The relative spread the margin was derived from (the largest of ``noises``).
        noise_source: ``model_iqr``, ``baseline_iqr`` (their run-to-run interquartile range
            over the median in the first measurement) or ``baseline_decision`` (the noise the
            baseline's own latency decision used).
        noises: All three.
        margin_us: ``budget x noise``; None without a budget.
        remeasured: Whether the first figure fell within the margin and the pair was timed
            again.
        num_runs: Interleaved rounds per measurement.
        num_threads: Threads of both files.
        op_resolver: Kernels of both files.
    """

    latency_us: float
    baseline_latency_us: float
    ratio: float
    ratios: tuple[float, ...]
    medians_us: tuple[float, ...]
    baseline_medians_us: tuple[float, ...]
    noise: float
    noise_source: str
    noises: dict[str, float]
    margin_us: float | None
    remeasured: bool
    num_runs: int
    num_threads: int
    op_resolver: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_latency_against(model: str | Path, baseline: str | Path, baseline_latency_us: float,
                          budget_us: float | None, baseline_noise: float = 0.0,
                          num_runs: int = 50, repeats: int = 5, num_threads: int = 1,
                          op_resolver: str = "auto") -> RatioCheck:
    """Decides ``model``'s latency as ``baseline_latency_us`` times the two files' median
    ratio, timed side by side, re-timed when close to the budget.

    Two files of one architecture timed one after the other are not comparable on a shared
    host (the load moves between the runs); interleaved, their ratio is. One ratio still moves:
    two files of the same architecture measured 1.12x apart over 50 interleaved rounds on 2
    shared cores. So a figure within the margin of the budget (``budget x`` the largest of
    both files' relative IQR in the first run and ``baseline_noise``) is timed ``repeats``
    more times and decided on the median of all the ratios, as ``check_latency`` decides a
    candidate on the median of its medians.

    Args:
        model: The ``.tflite`` whose latency is decided.
        baseline: A ``.tflite`` whose latency was decided already.
        baseline_latency_us: That decided latency.
        budget_us: The latency budget; None times the pair once.
        baseline_noise: The relative noise the baseline's decision used (its
            ``LatencyCheck.noise``). Defaults to 0.
        num_runs: Interleaved rounds per measurement. Defaults to 50.
        repeats: Extra measurements of a figure within the margin. Defaults to 5.
        num_threads: Threads of both files (the baseline's fastest configuration). Defaults
            to 1.
        op_resolver: Kernels of both files. Defaults to ``auto`` (XNNPACK).

    Raises:
        InvalidArgumentError: ``repeats`` below 0.

    Example:
        >>> check = check_latency_against("final.tflite", "trial.tflite", 46.0, budget_us=50.0)
        >>> check.latency_us, check.ratios, check.margin_us
    """
    _check_repeats(repeats)
    medians: list[float] = []
    baseline_medians: list[float] = []

    def timed() -> tuple[Timed, Timed]:
        pair = time_side_by_side(model, baseline, num_runs, num_threads, op_resolver)
        medians.append(pair[0].median_us)
        baseline_medians.append(pair[1].median_us)
        return pair

    first, first_baseline = timed()
    margin = NoiseMargin.of(budget_us, {"model_iqr": first.relative_iqr,
                                        "baseline_iqr": first_baseline.relative_iqr,
                                        "baseline_decision": baseline_noise})

    def again() -> float:
        now, now_baseline = timed()
        return baseline_latency_us * now.median_us / now_baseline.median_us

    # The figures are the ratios scaled by the baseline's latency, so their median is the
    # baseline's latency times the median ratio.
    _, remeasured = _figures_near_budget(
        baseline_latency_us * first.median_us / first_baseline.median_us, budget_us, margin,
        repeats, again)
    ratios = tuple(m / b for m, b in zip(medians, baseline_medians))
    ratio = float(statistics.median(ratios))
    return RatioCheck(latency_us=baseline_latency_us * ratio,
                      baseline_latency_us=float(baseline_latency_us), ratio=ratio,
                      ratios=ratios, medians_us=tuple(medians),
                      baseline_medians_us=tuple(baseline_medians), noise=margin.noise,
                      noise_source=margin.source, noises=margin.noises,
                      margin_us=margin.margin_us, remeasured=remeasured, num_runs=int(num_runs),
                      num_threads=int(num_threads), op_resolver=op_resolver)

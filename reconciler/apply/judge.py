"""The judge: one gate and one window of measurements in, a verdict with what was measured out.

Pure (no provider, no clock, no state): ``judge(gate, stats, ...)`` picks the series the gate
judges and the ones it compares with, and checks them as the gate's ``Analysis`` says:

- fewer than ``min_requests`` requests of the judged configuration: *inconclusive* (the caller
  follows ``on_inconclusive``);
- error rate = failed requests (5xx, timeouts, connection failures) / requests, at most
  ``max_error_rate``;
- p99 latency at most ``max_latency_p99``: an absolute limit, or a factor of the baseline's p99 in
  the same window. A baseline with fewer than ``min_requests`` requests (after the last batch no
  old instance is left) is replaced by ``earlier_baseline_p99_s``, the last window of this apply
  where it had enough; with neither, that check is inconclusive (the others still judge).

Which series: a ``batch`` gate judges the deployment's instances at ``new_digest`` (the
configuration the batch rolled out; None: all of its instances; a series without a digest, from a
provider that cannot tell configurations apart, counts whole) against its other instances,
live and mirrored responses together; a ``traffic`` gate the live responses of the deployments
whose share grew against those whose share shrank; a ``mirror`` gate a deployment's mirrored
responses against the live responses of the others.

The verdict is data (Argo Rollouts' AnalysisRun: measurements, not a log line): it goes into the
step's outcome, the CLI renders its checks as the failure table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.model.rollout import Gate, format_duration, format_number, format_rate
from reconciler.model.windows import SeriesStats, Totals, WindowStats, totals

Result = Literal["pass", "fail", "inconclusive"]


class Check(BaseModel):
    """One line of a verdict: a gate rule, the value measured and the limit (both as numbers and
    as words for the table), and its result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Literal["requests", "error_rate", "latency_p99", "metrics"]
    result: Result
    measured: float | None = None
    threshold: float | None = None
    measured_text: str = ""
    threshold_text: str = ""
    note: str = ""


class Verdict(BaseModel):
    """What a gate decided about one window, and everything it looked at."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    result: Result
    gate: Gate
    checks: list[Check] = Field(default_factory=list)
    requests: int = 0
    failed: int = 0
    latency_p99_s: float | None = None
    baseline_requests: int = 0
    baseline_p99_s: float | None = None  # the baseline's p99 in this window (None: too few requests)
    window_s: float = 0.0
    source: str = ""

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.requests if self.requests else None

    def failing(self) -> list[Check]:
        return [c for c in self.checks if c.result == "fail"]

    def summary(self) -> str:
        """``412 requests, 0.2% errors, p99 0.08s (old 0.07s)``: a progress line's numbers."""
        parts = [f"{self.requests} requests"]
        if self.error_rate is not None:
            parts.append(f"{format_rate(self.error_rate)} errors")
        if self.latency_p99_s is not None:
            old = f" ({self.gate.baseline_words()} {format_seconds(self.baseline_p99_s)})" if self.baseline_p99_s else ""
            parts.append(f"p99 {format_seconds(self.latency_p99_s)}{old}")
        return ", ".join(parts)

    def describe_failure(self) -> str:
        """``error rate 31% > 1%; p99 2.1s > 1.5x old (0.1s)`` for the step's error line."""
        return "; ".join(f"metrics could not be read: {c.note}" if c.name == "metrics"
                         else f"{c.name.replace('_', ' ')} {c.measured_text} > {c.threshold_text}" for c in self.failing())


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{format_number(round(value, 3))}s"


def _selectors(gate: Gate, new_digest: str | None) -> tuple[Callable[[SeriesStats], bool], Callable[[SeriesStats], bool]]:
    """(is judged, is baseline) for one series."""
    judged = {d.lower() for d in gate.judged}
    baseline = {d.lower() for d in gate.baseline}
    if gate.kind == "batch":
        def is_new(s: SeriesStats) -> bool:  # a series without digest: the provider cannot tell (azure)
            return s.deployment.lower() in judged and (new_digest is None or s.digest in (None, new_digest))

        def is_old(s: SeriesStats) -> bool:
            return (s.deployment.lower() in baseline and new_digest is not None and s.digest is not None
                    and s.digest != new_digest)

        return is_new, is_old
    judged_traffic = "mirror" if gate.kind == "mirror" else "live"
    return (
        lambda s: s.deployment.lower() in judged and s.traffic == judged_traffic,
        lambda s: s.deployment.lower() in baseline and s.traffic == "live",
    )


def measure(gate: Gate, stats: WindowStats, new_digest: str | None) -> tuple[Totals, Totals]:
    """(the judged series together, the baseline together)."""
    is_judged, is_baseline = _selectors(gate, new_digest)
    return totals([s for s in stats.series if is_judged(s)]), totals([s for s in stats.series if is_baseline(s)])


def judge(
    gate: Gate,
    stats: WindowStats,
    new_digest: str | None = None,
    earlier_baseline_p99_s: float | None = None,
) -> Verdict:
    """The verdict of ``gate`` on ``stats`` (see the module docstring)."""
    analysis = gate.analysis
    judged, baseline = measure(gate, stats, new_digest)
    enough_baseline = baseline.requests >= analysis.min_requests
    baseline_p99 = baseline.latency_p99_s if enough_baseline else None
    checks = [_requests_check(judged.requests, analysis.min_requests)]
    enough = judged.requests >= analysis.min_requests
    if analysis.max_error_rate is not None:
        checks.append(_error_check(judged, analysis.max_error_rate, enough))
    if analysis.max_latency_p99 is not None:
        reference = baseline_p99 if baseline_p99 is not None else earlier_baseline_p99_s
        earlier = baseline_p99 is None and earlier_baseline_p99_s is not None
        checks.append(_latency_check(gate, judged, reference, earlier, enough))
    results = {c.result for c in checks}
    result: Result = "fail" if "fail" in results else "inconclusive" if "inconclusive" in results else "pass"
    return Verdict(
        result=result,
        gate=gate,
        checks=checks,
        requests=judged.requests,
        failed=judged.failed,
        latency_p99_s=judged.latency_p99_s,
        baseline_requests=baseline.requests,
        baseline_p99_s=baseline_p99,
        window_s=stats.window_s,
        source=stats.source,
    )


def _requests_check(requests: int, minimum: int) -> Check:
    ok = requests >= minimum
    return Check(
        name="requests",
        result="pass" if ok else "inconclusive",
        measured=float(requests),
        threshold=float(minimum),
        measured_text=str(requests),
        threshold_text=f">= {minimum}",
        note="" if ok else f"fewer than {minimum} requests reached the new configuration",
    )


def _error_check(judged: Totals, limit: float, enough: bool) -> Check:
    rate = judged.error_rate
    measured_text = "-" if rate is None else f"{format_rate(rate)} ({judged.failed}/{judged.requests})"
    if not enough or rate is None:
        result: Result = "inconclusive"
    else:
        result = "fail" if rate > limit else "pass"
    return Check(name="error_rate", result=result, measured=rate, threshold=limit,
                 measured_text=measured_text, threshold_text=format_rate(limit))


def _latency_check(gate: Gate, judged: Totals, reference: float | None, earlier: bool, enough: bool) -> Check:
    assert gate.analysis.max_latency_p99 is not None
    limit = gate.analysis.max_latency_p99
    p99 = judged.latency_p99_s
    note = ""
    if limit.relative is not None:
        words = gate.baseline_words()
        if reference is None:
            threshold = None
            threshold_text = f"{format_number(limit.relative)}x {words} (no baseline)"
            note = f"{words} had fewer than {gate.analysis.min_requests} requests in this window and in every earlier one"
        else:
            threshold = limit.relative * reference
            when = "an earlier window" if earlier else "this window"
            threshold_text = f"{format_number(limit.relative)}x {words} ({format_seconds(reference)} in {when})"
    else:
        threshold = limit.absolute_s
        threshold_text = format_duration(limit.absolute_s or 0.0)
    if not enough or p99 is None or threshold is None:
        result: Result = "inconclusive"
    else:
        result = "fail" if p99 > threshold else "pass"
    return Check(name="latency_p99", result=result, measured=p99, threshold=threshold,
                 measured_text=format_seconds(p99), threshold_text=threshold_text, note=note)


def unmeasured(gate: Gate, reason: str) -> Verdict:
    """The verdict of a window whose measurements could not be read (the provider's error, after its
    own retries): a failure, since a gate never passes on numbers it does not have (Argo Rollouts
    likewise fails an analysis whose measurements keep erroring)."""
    check = Check(name="metrics", result="fail", measured_text="unreadable", threshold_text="readable", note=reason)
    return Verdict(result="fail", gate=gate, checks=[check])


def clearly_failing(gate: Gate, stats: WindowStats, new_digest: str | None = None) -> bool:
    """A window may close before its bake ends: at least ``min_requests`` requests already and an
    error rate over the limit (errors do not un-happen; a latency may still settle)."""
    limit = gate.analysis.max_error_rate
    if limit is None:
        return False
    judged, _ = measure(gate, stats, new_digest)
    rate = judged.error_rate
    return judged.requests >= gate.analysis.min_requests and rate is not None and rate > limit


__all__ = ["Check", "Verdict", "clearly_failing", "format_seconds", "judge", "measure", "unmeasured"]

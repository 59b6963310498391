"""A gate's verdict as people read it: the failure table ``apply`` prints under a failed step, and
the one-line numbers of a progress line. The verdict itself is plain data
(``reconciler.apply.judge.Verdict``); this only draws it."""

from __future__ import annotations

from reconciler.apply.judge import Check, Verdict, format_seconds
from reconciler.model.rollout import format_duration

_NAMES = {"requests": "requests", "error_rate": "error rate", "latency_p99": "p99 latency"}
_RESULTS = {"pass": "pass", "fail": "FAILED", "inconclusive": "inconclusive"}


def _threshold(check: Check) -> str:
    text = check.threshold_text
    if check.name == "error_rate":
        return f"<= {text}"
    if check.name == "latency_p99":
        return f"<= {text}"
    return text


def verdict_table(verdict: Verdict) -> list[str]:
    """The checks of ``verdict`` as an aligned table (gate, measured, threshold, result), then the
    window it judged: how long, how many requests, where the numbers come from."""
    rows = [("gate", "measured", "threshold", "result")]
    rows += [(_NAMES[c.name], c.measured_text or "-", _threshold(c), _RESULTS[c.result]) for c in verdict.checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3] for row in rows]
    window = f"window: {format_duration(verdict.window_s) if verdict.window_s else '-'}, {verdict.requests} requests"
    window += f" to the new configuration, {verdict.baseline_requests} to the baseline"
    if verdict.baseline_p99_s is not None:
        window += f" (p99 {format_seconds(verdict.baseline_p99_s)})"
    if verdict.source:
        window += f"; measured by {verdict.source}"
    notes = [c.note for c in verdict.checks if c.note and c.result != "pass"]
    return [*lines, window, *notes]


def progress_words(label: str, verdict: Verdict, elapsed: float, bake: float) -> str:
    """``batch 2/5 baking 30s (12s): 412 requests, 0.2% errors, p99 80ms (old 70ms)``."""
    return f"{label} baking {format_duration(bake)} ({format_duration(elapsed)}): {verdict.summary()}"


__all__ = ["progress_words", "verdict_table"]

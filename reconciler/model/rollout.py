"""Guarded rollouts: recon.yaml's ``rollout:`` section as recon sees it, and the gates of a plan.

A *gate* judges one step by what clients got during a window of time after it (the "bake"): after
each batch of a rolling update, after each traffic step, and on a mirrored deployment's mirrored
responses before it takes live traffic. ``rollout.analysis`` in recon.yaml says what a gate checks
(``Analysis``); without it nothing is judged and nothing waits (today's behaviour). The planner
puts one ``Gate`` (the resolved analysis for that address, what is judged, what it is compared
with) on each judged step; apply opens a window, bakes, judges (``reconciler.apply.judge``) and
goes on, rolls back or pauses (``on_failure``).

This module holds the values only (resolved, validated, JSON-serialisable: they travel in saved
plans); ``reconciler.model.rollout_checks`` reads them from recon.yaml with problems that name
their field. Durations are seconds, rates fractions (0.01 = 1%).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OnInconclusive = Literal["proceed", "wait", "fail"]
OnFailure = Literal["rollback", "pause"]
GateKind = Literal["batch", "traffic", "mirror"]

ON_INCONCLUSIVE: tuple[OnInconclusive, ...] = ("proceed", "wait", "fail")
ON_FAILURE: tuple[OnFailure, ...] = ("rollback", "pause")
DEFAULT_TRAFFIC_STEPS: tuple[int, ...] = (100,)


class LatencyLimit(BaseModel):
    """``max_latency_p99``: either ``relative`` (times the old configuration's p99 in the same
    window, > 1.0: "1.5x") or ``absolute_s`` (seconds: "500ms"); exactly one is set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    relative: float | None = None
    absolute_s: float | None = None

    def describe(self, baseline: str = "old") -> str:
        """``p99 <= 1.5x old`` or ``p99 <= 500ms``."""
        if self.relative is not None:
            return f"p99 <= {format_number(self.relative)}x {baseline}"
        return f"p99 <= {format_duration(self.absolute_s or 0.0)}"


class Analysis(BaseModel):
    """What a gate checks, with every default filled (``rollout.analysis`` or one override of it).

    ``bake_s``: how long a window is watched; ``min_requests``: fewer requests of the judged
    configuration in a window is *inconclusive*, which ``on_inconclusive`` decides (``proceed``,
    ``wait``: bake further windows until ``min_requests`` or ``max_wait_s``, then fail; ``fail``).
    ``max_error_rate``: 5xx, timeouts and connection failures over requests, as a fraction (None:
    not checked); ``max_latency_p99``: None when not checked. ``matched``: the override glob that
    chose these values, None for the section's own (display only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bake_s: float = 30.0
    min_requests: int = 50
    on_inconclusive: OnInconclusive = "proceed"
    max_wait_s: float = 300.0
    max_error_rate: float | None = 0.01
    max_latency_p99: LatencyLimit | None = None
    matched: str | None = None

    def describe(self, baseline: str = "old") -> str:
        """``bake 30s, 5xx <= 1%, p99 <= 1.5x old`` (the plan's words for a gate)."""
        parts = [f"bake {format_duration(self.bake_s)}"]
        if self.max_error_rate is not None:
            parts.append(f"5xx <= {format_rate(self.max_error_rate)}")
        if self.max_latency_p99 is not None:
            parts.append(self.max_latency_p99.describe(baseline))
        parts.append(f">= {self.min_requests} requests")
        return ", ".join(parts)


class RolloutSettings(BaseModel):
    """recon.yaml's ``rollout:``, validated. ``analysis`` None: no gates (and ``traffic_steps``
    is not used: a traffic change moves at once, as without the section).

    ``overrides``: (glob, analysis) pairs in the file's order, each analysis already holding the
    section's values under its own; the first glob matching an address wins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    analysis: Analysis | None = None
    overrides: tuple[tuple[str, Analysis], ...] = ()
    traffic_steps: tuple[int, ...] = DEFAULT_TRAFFIC_STEPS
    on_failure: OnFailure = "rollback"

    @property
    def guarded(self) -> bool:
        return self.analysis is not None

    def analysis_for(self, *addresses: str) -> Analysis | None:
        """The analysis of a step judged for ``addresses`` (the first override, in file order,
        whose glob matches any of them; else the section's own); None without analysis."""
        if self.analysis is None:
            return None
        for glob, analysis in self.overrides:
            if any(fnmatchcase(address, glob) for address in addresses):
                return analysis
        return self.analysis


class Gate(BaseModel):
    """One judged step, as the plan records it (plain data; the plan digest covers it).

    ``kind``: ``batch`` (after each batch of a rolling update: the deployment's instances at the
    new configuration against its old ones), ``traffic`` (after a traffic step: the deployments
    whose live share grew against those whose share shrank) or ``mirror`` (before a mirrored
    deployment's first live step: its mirrored responses against the live deployments).
    ``judged`` and ``baseline`` are deployment names of the endpoint (lowercase). ``once``: a batch
    gate judged after the last batch only (the provider cannot tell a deployment's configurations
    apart while both run)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: GateKind
    analysis: Analysis
    judged: list[str] = Field(default_factory=list)
    baseline: list[str] = Field(default_factory=list)
    on_failure: OnFailure = "rollback"
    once: bool = Field(default=False, exclude_if=lambda once: not once)  # a batch gate judged after the last batch only

    def baseline_words(self) -> str:
        """What a relative latency is compared with, for people: ``old`` or ``blue``."""
        if self.kind == "batch" or not self.baseline:
            return "old"
        return "+".join(self.baseline)

    def describe(self) -> str:
        return self.analysis.describe(self.baseline_words())


# -- formatting, for plans and failure tables -------------------------------------------------------
def format_number(value: float) -> str:
    """``1.5``, ``2`` (no trailing zeros)."""
    return f"{value:.6g}"


def format_rate(fraction: float) -> str:
    """``1%``, ``0.5%``, ``12.34%``."""
    return f"{fraction * 100:.4g}%"


def format_duration(seconds: float) -> str:
    """``30s``, ``5m``, ``1m30s``, ``500ms``, ``1.5s``, ``1h``: what recon.yaml accepts."""
    if seconds < 1:
        return f"{seconds * 1000:.4g}ms"
    if seconds != int(seconds) or seconds < 60:
        return f"{format_number(seconds)}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text


__all__ = [
    "ON_FAILURE",
    "ON_INCONCLUSIVE",
    "Analysis",
    "Gate",
    "GateKind",
    "LatencyLimit",
    "OnFailure",
    "OnInconclusive",
    "RolloutSettings",
    "format_duration",
    "format_number",
    "format_rate",
]

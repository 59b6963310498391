"""Guarded steps in apply: a window opened, baked, judged, and what a verdict leads to.

After each batch of a guarded rolling update and after each guarded traffic step the engine
watches what clients got (``Guard.watch``): the provider's window (``open_window`` when the step
starts or the last window was judged, ``close_window`` at the end of the bake) is judged by
``reconciler.apply.judge``. The bake sleeps through the engine's injectable ``sleep`` in slices of
``PEEK_S`` and looks at the window after each: a clear failure (enough requests, too many errors)
ends it early, and each look is a progress line ("batch 2/5 baking 30s: 412 requests, 0.2% errors,
p99 0.08s (old 0.07s)"). Time is counted in the slices slept, so a test's sleep that returns at
once bakes in no time.

Measurements the provider cannot read (its error, after its own retries) fail the gate like a
failed check (``judge.unmeasured``): a gate never passes on numbers it does not have.

Inconclusive (too few requests): ``proceed`` goes on (the hooks say so loudly), ``fail`` fails,
``wait`` keeps the window open for more bakes until it is conclusive or ``max_wait`` has passed,
then fails. A failed gate raises ``GateFailed`` after the step's ``on_failure`` was carried out
(``reconciler.apply.rollback``): the engine then records nothing more for the step (what was rolled
back, or paused, is recorded as it is).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.apply.hooks import SerialHooks
from reconciler.apply.judge import Verdict, clearly_failing, judge, unmeasured
from reconciler.apply.outcomes import CancelToken
from reconciler.model.crashpoints import crash_point
from reconciler.model.errors import PlanError, ProviderError, ReconcilerError
from reconciler.model.rollout import Gate, format_duration
from reconciler.plan.provider import ApplyRequest, Provider
from reconciler.plan.types import Step
from reconciler.state.document import State

#: how often a bake looks at its window (seconds of the engine's clock)
PEEK_S = 1.0


class GateFailed(ReconcilerError):
    """A gate failed, or stayed inconclusive where that fails. ``verdict`` is what was measured;
    ``handled``: the step's ``on_failure`` already recorded the truth (the engine must not mark
    the resource failed)."""

    def __init__(self, message: str, verdict: Verdict, handled: bool = True) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.handled = handled


@dataclass
class Watch:
    """One judged step's windows: the mark of the window open now and the baseline's last p99."""

    step: Step
    gate: Gate
    request: ApplyRequest  # the endpoint's
    mark: dict[str, object]
    baseline_p99_s: float | None = None


class Guard:
    """Opens, bakes and judges the windows of guarded steps (one per apply, shared by threads)."""

    def __init__(
        self,
        provider: Provider,
        hooks: SerialHooks,
        sleep: Callable[[float], None],
        cancel: CancelToken,
    ) -> None:
        self.provider = provider
        self.hooks = hooks
        self.sleep = sleep
        self.cancel = cancel
        # The baseline's last p99 with enough requests, per endpoint and baseline, across the steps
        # of this apply: at a traffic step of 100% the deployments losing their share have no
        # request left in the window, and the relative latency gate compares with the last window
        # of this apply in which they had enough (judge.py), which was an earlier traffic step's.
        self._baselines: dict[tuple[str, str, tuple[str, ...]], float] = {}
        self._lock = threading.Lock()

    def open(self, step: Step, gate: Gate, request: ApplyRequest) -> Watch:
        """A window opened now for ``step`` (its first; ``reopen`` opens the next ones). The
        provider's progress lines while it measures are the step's events."""
        request = dataclasses.replace(request, on_event=lambda line: self.hooks("event", step, line))
        with self._lock:
            earlier = self._baselines.get(_baseline_key(request, gate))
        return Watch(step, gate, request, self.provider.open_window(request), earlier)

    def baseline(self, request: ApplyRequest, gate: Gate) -> float | None:
        """The baseline p99 this apply remembers for ``gate`` (see ``__init__``), if any."""
        with self._lock:
            return self._baselines.get(_baseline_key(request, gate))

    def reopen(self, watch: Watch) -> None:
        watch.mark = self.provider.open_window(watch.request)

    def watch(self, watch: Watch, label: str, new_digest: str | None = None) -> Verdict:
        """Bake ``watch``'s window and judge it (see the module docstring); the verdict returned
        passes or is inconclusive-and-proceed; otherwise ``GateFailed`` is raised (after nothing:
        the caller carries out ``on_failure`` and raises it itself, see ``failed``)."""
        analysis = watch.gate.analysis
        waited = 0.0
        while True:
            elapsed, verdict = self._bake(watch, label, new_digest)
            waited += elapsed
            if verdict.baseline_p99_s is not None:
                watch.baseline_p99_s = verdict.baseline_p99_s
                with self._lock:
                    self._baselines[_baseline_key(watch.request, watch.gate)] = verdict.baseline_p99_s
            self.hooks("gate_judged", watch.step, label, verdict)
            if verdict.result != "inconclusive" or analysis.on_inconclusive != "wait" or waited >= analysis.max_wait_s:
                return verdict

    def _bake(self, watch: Watch, label: str, new_digest: str | None) -> tuple[float, Verdict]:
        """Sleep one bake in slices, looking at the window after each; (seconds baked, verdict)."""
        bake = watch.gate.analysis.bake_s
        elapsed = 0.0
        stats = None
        while elapsed < bake:
            slice_s = min(PEEK_S, bake - elapsed)
            self.sleep(slice_s)
            elapsed += slice_s
            if self.cancel.aborted:
                raise ReconcilerError(f"{watch.step.address}: the apply was interrupted while baking {label}")
            crash_point("gate.baking", f"{watch.step.id} {label}")
            try:
                stats = self.provider.close_window(watch.request, watch.mark)
            except ProviderError as exc:  # the measurements cannot be read: the gate fails, never passes
                return elapsed, unmeasured(watch.gate, str(exc)).model_copy(update={"window_s": elapsed})
            if clearly_failing(watch.gate, stats, new_digest):
                break
            so_far = judge(watch.gate, stats, new_digest, watch.baseline_p99_s)
            self.hooks("gate_progress", watch.step, label, so_far, elapsed, bake)
        if stats is None:  # a bake of nothing (never: bake > 0); read the window once
            stats = self.provider.close_window(watch.request, watch.mark)
        verdict = judge(watch.gate, stats, new_digest, watch.baseline_p99_s)
        # the window the numbers cover: the bake, or more when the provider's grain made it longer
        return elapsed, verdict.model_copy(update={"window_s": max(elapsed, stats.window_s)})


def _baseline_key(request: ApplyRequest, gate: Gate) -> tuple[str, str, tuple[str, ...]]:
    """Which remembered baseline a gate may use: a batch gate's is its deployment's old
    configuration; traffic and mirror gates compare with the same live deployments."""
    return request.address, "batch" if gate.kind == "batch" else "live", tuple(sorted(gate.baseline))


def passes(verdict: Verdict) -> bool:
    """Whether the step goes on after ``verdict``: it passed, or it is inconclusive and the gate
    says ``on_inconclusive: proceed`` (``wait`` came back inconclusive only after ``max_wait``)."""
    return verdict.result == "pass" or (
        verdict.result == "inconclusive" and verdict.gate.analysis.on_inconclusive == "proceed")


def endpoint_request(state: State, address: str) -> ApplyRequest:
    """The request the provider's windows are opened and closed with: the recorded endpoint."""
    res = state.get(address)
    if res is None:
        raise PlanError(f"{address}: cannot measure its requests, the endpoint is not recorded")
    return ApplyRequest(address, "endpoint", res.name, res.attributes.copy(),
                        res.model_copy(deep=True))


def outcome_words(verdict: Verdict, label: str) -> str:
    """``batch 1/2: error_rate 30% (30/100) > 1%`` or ``... inconclusive: 3 requests < 50``."""
    if verdict.result == "fail":
        return f"{label}: {verdict.describe_failure()}"
    analysis = verdict.gate.analysis
    return (f"{label}: inconclusive after {format_duration(verdict.window_s)}: {verdict.requests} requests, "
            f"fewer than min_requests {analysis.min_requests} (on_inconclusive: {analysis.on_inconclusive})")


__all__ = ["PEEK_S", "GateFailed", "Guard", "Watch", "endpoint_request", "outcome_words", "passes"]

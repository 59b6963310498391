"""What a failed gate leads to: ``on_failure: rollback`` (the default) or ``pause``.

Rollback of a rolling update: first the intent is recorded (the deployment at its previous
attributes, with a pending rollout back to them), then the instances that run the new
configuration are rolled back with ``roll_batch`` at the previous configuration in batches of
ceil(20%) of the deployment (SageMaker's ``RollbackMaximumBatchSize``, here the same as the
update's), each batch recorded, and last the deployment is recorded settled at its previous
configuration with a note for ``recon state history`` ("rollback of deployment.E.D: error_rate
failed"). A SIGKILL anywhere in it leaves the intent: the next plan reads a deployment with a
pending rollout and instances of two configurations, and applies it again.

Rollback of a traffic step: the endpoint is routed by the split before the traffic change began
(the plan's ``TrafficParams.restore``) and recorded with the same note.

Pause: nothing more is done; what runs is recorded as it is (a rolling update cut short keeps its
pending rollout, a traffic step its split), and ``recon plan`` shows how to go on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from reconciler.apply.guard import GateFailed
from reconciler.apply.hooks import SerialHooks
from reconciler.apply.judge import Verdict
from reconciler.apply.outcomes import StepOutcome
from reconciler.apply.recording import Recorder
from reconciler.model.crashpoints import crash_point
from reconciler.model.resources import Attributes, as_endpoint, normal_traffic
from reconciler.model.rollout import Gate
from reconciler.plan.provider import ApplyRequest, Provider
from reconciler.plan.types import Batch, Split, Step
from reconciler.state.document import Pending, State

T = TypeVar("T")
#: calls the provider with the step's retries (``StepHandlers.call``)
Caller = Callable[[Step, StepOutcome, Callable[[], T]], T]


def rollback_batches(updated: int, instances: int) -> list[Batch]:
    """The batches that take ``updated`` instances back: ceil(20%) of the deployment's
    ``instances`` at a time, at least one."""
    size = max(1, (max(instances, updated) + 4) // 5)
    return [Batch(index=i + 1, size=min(size, updated - start)) for i, start in enumerate(range(0, updated, size))]


def note_of(address: str, verdict: Verdict) -> str:
    """``rollback of deployment.ep.blue: error rate failed (batch gate)`` (the state history's note)."""
    failed = [c.name.replace("_", " ") for c in verdict.failing()] or ["min_requests"]
    return f"rollback of {address}: {', '.join(failed)} failed ({verdict.gate.kind} gate)"


class Undo:
    """Carries out ``on_failure`` for the steps of one apply (see the module docstring)."""

    def __init__(self, provider: Provider, recorder: Recorder, hooks: SerialHooks, call: Caller[Any]) -> None:
        self.provider = provider
        self.recorder = recorder
        self.hooks = hooks
        self.call = call

    def failed(self, step: Step, outcome: StepOutcome, gate: Gate, verdict: Verdict, label: str,
               rollback: Callable[[], str]) -> GateFailed:
        """The error a failed gate raises, after ``rollback`` (or nothing, for ``pause``) was done.
        A mirror gate has nothing to pause: what it guards never started (``rollback`` runs)."""
        words = verdict.describe_failure() or (
            f"inconclusive: {verdict.requests} requests, fewer than {gate.analysis.min_requests}")
        outcome.gate_failed = True
        rolls_back = gate.on_failure == "rollback" or gate.kind == "mirror"
        outcome.undone = rollback() if rolls_back else self.paused(step, outcome)
        message = f"{step.address}: the {gate.kind} gate failed after {label}: {words}; {outcome.undone}"
        return GateFailed(message, verdict)

    # -- a rolling update -------------------------------------------------------------------------
    def rollout(self, step: Step, outcome: StepOutcome, request: Callable[[Attributes], ApplyRequest],
                previous: Attributes, updated: int, verdict: Verdict) -> str:
        """Roll the ``updated`` instances back to ``previous`` (see the module docstring)."""
        address = step.address
        count = int(previous.get("instance_count") or 0)  # type: ignore[call-overload]
        batches = rollback_batches(updated, count)
        back = f"{step.id}:rollback"
        intent = Pending(step=back, kind="rollout", attributes=previous, batches=len(batches))

        def record_intent(state: State) -> None:
            res = state.resources.get(address)
            if res is not None:
                res.attributes = previous.copy()
                res.pending = intent
                res.status = "ready"

        self.recorder.change([address], record_intent)
        crash_point("rollback.intent", step.id)
        self.hooks("event", step, f"rolling back: {updated} instance(s) to the previous configuration, "
                                  f"{len(batches)} batch(es) of {batches[0].size if batches else 0}")
        note = note_of(address, verdict)
        for i, batch in enumerate(batches):
            req = request(previous)
            outputs = self.call(step, outcome, functools.partial(self.provider.roll_batch, req, batch))
            crash_point("rollback.batch", f"{step.id} batch {batch.index}")
            last = i == len(batches) - 1
            self.recorder.change([address], functools.partial(_record_back, address, outputs, last),
                                 note=note if last else None)
            self.hooks("event", step, f"rolled back batch {batch.index}/{len(batches)}")
        if not batches:  # nothing was updated: only the record goes back
            self.recorder.change([address], functools.partial(_record_back, address, {}, True), note=note)
        return f"rolled back: {updated} instance(s) to the previous configuration in {len(batches)} batch(es)"

    def not_routed(self, step: Step, verdict: Verdict) -> str:
        """A mirror gate failed before its step routed anything: the intent goes, with the note."""

        def record(state: State) -> None:
            res = state.resources.get(step.address)
            if res is not None:
                res.pending = None

        self.recorder.change([step.address], record, note=note_of(step.address, verdict))
        return "not routed: the traffic stays as it was"

    def paused(self, step: Step, outcome: StepOutcome) -> str:
        """``on_failure: pause``: nothing more is done (see the module docstring)."""
        res = self.recorder.current().get(step.address)
        left = f" ({res.pending.describe()})" if res is not None and res.pending is not None else ""
        return (f"paused where it is{left}: recon plan shows what applying again does; revert the change "
                "and apply to roll back")

    # -- a traffic step ---------------------------------------------------------------------------
    def traffic(self, step: Step, outcome: StepOutcome, request: Callable[[Split], ApplyRequest],
                restore: Split, verdict: Verdict) -> str:
        """Route the endpoint by ``restore`` again and record it."""
        traffic, mirror = normal_traffic(restore.traffic), normal_traffic(restore.mirror_traffic)
        outputs = self.call(step, outcome, lambda: self.provider.set_routing(request(restore)))
        crash_point("rollback.routed", step.id)

        def record(state: State) -> None:
            res = state.resources.get(step.address)
            if res is not None:
                recorded = as_endpoint(res.attributes)
                recorded["traffic"] = traffic
                recorded["mirror_traffic"] = mirror
                res.outputs.update(outputs)
                res.pending = None
                res.judging = None  # judged, and the verdict carried out

        self.recorder.change([step.address], record, note=note_of(step.address, verdict))
        split = ", ".join(f"{k} {v}%" for k, v in sorted(traffic.items())) or "no traffic"
        return f"rolled back: traffic restored to {split}"


def _record_back(address: str, outputs: dict[str, Any], last: bool, state: State) -> None:
    res = state.resources.get(address)
    if res is None:
        return
    res.outputs.update(outputs)
    if last:
        res.pending = None
        res.status = "ready"
    elif res.pending is not None:
        res.pending = res.pending.model_copy(update={"batches_done": res.pending.batches_done + 1})


__all__ = ["Undo", "note_of", "rollback_batches"]

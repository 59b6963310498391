"""The apply engine: carry out a saved plan, step by step, recording the state as it goes.

Like Terraform's apply walk (``internal/dag/walk.go``): a step runs only when every step it
depends on succeeded; after a failure its descendants are skipped with "upstream dependencies
failed" while independent steps finish. Independent steps run at the same time, up to
``parallelism``. Everything a step needs comes from the plan (never the configuration): the
resource's ``after``, the recorded resource as ``prior``, and the ``after`` (or recorded
attributes) of the resources it references.

Intent before action: before steps start, the state records on each resource the operation
about to change it (``StateResource.pending``: the step and the attributes it moves to; a create
adds the resource with its pending create), in one write for the steps starting together. The
state is written again after every finished step and after every rollout batch, clearing or
advancing the intent, by one writer (``recording.Recorder``, under a lock). A SIGKILL at any moment
therefore leaves either the result recorded or the intent: the next plan sees the half-done
operation and finishes or rolls it back. Retryable provider errors
are retried with bounded exponential backoff (the sleep is injectable); permanent ones never.
A ``CancelToken`` (Ctrl-C) stops new steps from starting while those in flight finish their
current batch; a second cancel stops waiting at once. The engine never prints: it reports through
``ApplyHooks`` and returns an ``ApplyResult``.

This module is the walk (which steps start, skip or are cancelled, and when);
``reconciler.apply.handlers`` carries out each kind of step and ``reconciler.apply.recording``
writes the state.
"""

from __future__ import annotations

import functools
import heapq
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from reconciler.apply.guard import GateFailed
from reconciler.apply.handlers import StepHandlers, rollout_batches
from reconciler.apply.hooks import ApplyHooks, SerialHooks
from reconciler.apply.outcomes import (
    CANCELLED,
    DONE_WORDS,
    FAILED,
    SKIPPED,
    UPSTREAM_FAILED,
    ApplyResult,
    CancelToken,
    RetryPolicy,
    StepOutcome,
)
from reconciler.apply.recording import (
    Recorder,
    StateWriter,
    record_failure,
    restore,
    set_status,
    write_intent,
)
from reconciler.model.crashpoints import crash_point
from reconciler.model.errors import PlanError, ProviderError, ReconcilerError, StalePlanError
from reconciler.plan.provider import Provider
from reconciler.plan.types import Plan, Step, StepKind
from reconciler.state.document import Pending, State, StateResource


def check_fresh(plan: Plan, state: State, desired_digest: str | None) -> None:
    """Refuse a plan made from another state or configuration (Terraform's "Saved plan is stale")."""
    if plan.errors:
        raise PlanError("the plan has errors and cannot be applied: " + "; ".join(plan.errors))
    if plan.lineage is not None and plan.lineage != state.lineage:
        raise StalePlanError(
            f"plan is stale: it was made for state lineage {plan.lineage}, but the state has lineage "
            f"{state.lineage}; run recon plan again"
        )
    if plan.serial != state.serial:
        raise StalePlanError(
            f"plan is stale: the state has serial {state.serial} (the plan was made at serial "
            f"{plan.serial}); run recon plan again"
        )
    if desired_digest is not None and plan.desired_digest and desired_digest != plan.desired_digest:
        raise StalePlanError(
            "plan is stale: the configuration changed since the plan was made (desired state "
            f"{desired_digest[:19]}, the plan's {plan.desired_digest[:19]}); run recon plan again"
        )


def apply_plan(
    plan: Plan,
    *,
    provider: Provider,
    state_manager: StateWriter,
    desired_digest: str | None,
    hooks: ApplyHooks | None = None,
    parallelism: int = 10,
    cancel: CancelToken | None = None,
    sleep: Callable[[float], None] = time.sleep,
    retry: RetryPolicy | None = None,
) -> ApplyResult:
    """Carry out ``plan`` exactly; see the module docstring. Raises ``StalePlanError`` before
    touching anything when the plan no longer matches the state or ``desired_digest`` (None:
    not checked, e.g. a destroy plan)."""
    if parallelism < 1:
        raise PlanError(f"parallelism must be at least 1, not {parallelism}")
    if plan.provider and plan.provider != provider.name:
        raise PlanError(
            f"the plan was made for provider {plan.provider!r}, but this project uses {provider.name!r}; "
            "run recon plan again"
        )
    state = state_manager.read()
    check_fresh(plan, state, desired_digest)
    engine = _Engine(
        plan,
        provider,
        state_manager,
        state,
        hooks or ApplyHooks(),
        parallelism,
        cancel or CancelToken(),
        sleep,
        retry or RetryPolicy(),
    )
    return engine.run()


class _Engine:
    """One apply run: schedules steps on a thread pool; ``StepHandlers`` carries each out."""

    def __init__(
        self,
        plan: Plan,
        provider: Provider,
        manager: StateWriter,
        state: State,
        hooks: ApplyHooks,
        parallelism: int,
        cancel: CancelToken,
        sleep: Callable[[float], None],
        retry: RetryPolicy,
    ) -> None:
        self.plan = plan
        self.hooks = SerialHooks(hooks)
        self.recorder = Recorder(manager, state, self.hooks)
        self.parallelism = parallelism
        self.cancel = cancel
        self.handlers = StepHandlers(plan, provider, self.recorder, self.hooks, cancel, sleep, retry, self._stopping)
        self.steps = {s.id: s for s in plan.steps}
        self.deps = {s.id: [d for d in s.depends_on if d in self.steps] for s in plan.steps}
        self.outcomes: dict[str, StepOutcome] = {}
        _check_acyclic(self.deps)
        # Which pending steps can be decided (all their upstream steps ended, or one failed),
        # by plan order: scheduling looks at those only, not at every pending step each time
        # (an apply of 5,000 steps would look 5,000 times at thousands of them).
        self.order = {s.id: i for i, s in enumerate(plan.steps)}
        self.dependents: dict[str, list[str]] = {sid: [] for sid in self.steps}
        self.waiting = {sid: len(deps) for sid, deps in self.deps.items()}
        for sid, deps in self.deps.items():
            for d in deps:
                self.dependents[d].append(sid)
        self.ready = [(self.order[sid], sid) for sid, n in self.waiting.items() if n == 0]
        heapq.heapify(self.ready)  # every upstream step ended
        self.blocked: list[tuple[int, str]] = []  # an upstream step failed or did not run

    # -- scheduling ------------------------------------------------------------------------------
    def run(self) -> ApplyResult:
        pending = {s.id for s in self.plan.steps}
        running: dict[Future[StepOutcome], str] = {}
        pool = ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="recon-apply")
        try:
            while pending or running:
                self._schedule(pending, running, pool)
                if not running:
                    continue  # skipping may have unblocked or finished the rest
                done, _ = wait(list(running), timeout=0.1, return_when=FIRST_COMPLETED)
                for future in done:
                    self._finish(running.pop(future), future)
                if self.cancel.aborted:
                    self._abandon(running)
                    running.clear()
        finally:
            pool.shutdown(wait=not self.cancel.aborted, cancel_futures=True)
        return self._result()

    def _stopping(self) -> str | None:
        if self.cancel.cancelled:
            return "the apply was cancelled"
        if self.recorder.error is not None:
            return "the state could not be written"
        return None

    def _schedule(
        self, pending: set[str], running: dict[Future[StepOutcome], str], pool: ThreadPoolExecutor
    ) -> None:
        stop = self._stopping()
        starting: list[Step] = []
        if stop is not None:
            for sid in sorted(pending, key=self.order.__getitem__):
                self._not_run(self.steps[sid], CANCELLED, stop)
            pending.clear()
        self._drop_blocked(pending)  # first what cannot run (each may block more downstream)
        while self.ready and len(running) + len(starting) < self.parallelism:
            _, sid = heapq.heappop(self.ready)
            if sid not in pending:
                continue
            if any(not self.outcomes[d].succeeded for d in self.deps[sid]):
                self._not_run_after(self.steps[sid])
            else:
                starting.append(self.steps[sid])
            pending.discard(sid)
        self._drop_blocked(pending)
        if not starting:
            return
        current = self.recorder.current()
        before = {s.address: current.get(s.address) for s in starting}
        self._record_intents(starting)
        if self.recorder.error is not None:  # the intent is not stored: the steps must not act
            self.recorder.change(before, functools.partial(restore, before))
            for step in starting:
                self._not_run(step, CANCELLED, "the state could not be written")
            return
        crash_point("engine.intent", " ".join(s.id for s in starting))
        for step in starting:
            running[pool.submit(self._run_step, step)] = step.id

    def _record_intents(self, steps: list[Step]) -> None:
        """One state write: each step's operation recorded on its resource before it acts."""
        intents = [(step, self._intent(step)) for step in steps]
        changes = {step.address: self.plan.change(step.address) for step in steps}

        def mutate(state: State) -> None:
            for step, intent in intents:
                if intent is not None:
                    write_intent(state, step, intent, changes[step.address], self.plan.provider)

        self.recorder.change({s.address for s in steps}, mutate)

    def _intent(self, step: Step) -> Pending | None:
        """What the step will record when done (None: a delete of what is not recorded)."""
        try:
            attributes = self.handlers.target(step)
        except PlanError:
            return None  # the step fails on its own, before acting
        if attributes is None:
            return None
        batches = len(rollout_batches(step)) if step.kind is StepKind.ROLLOUT else 0
        return Pending(step=step.id, kind=step.kind.value, attributes=attributes, batches=batches)

    def _drop_blocked(self, pending: set[str]) -> None:
        while self.blocked:
            _, sid = heapq.heappop(self.blocked)
            if sid in pending:
                self._not_run_after(self.steps[sid])
                pending.discard(sid)

    def _not_run_after(self, step: Step) -> None:
        """``step`` does not run: an upstream step failed (skipped) or was cancelled."""
        blocked = [d for d in self.deps[step.id] if d in self.outcomes and not self.outcomes[d].succeeded]
        upstream_cancelled = all(self.outcomes[d].outcome == CANCELLED for d in blocked)
        self._not_run(
            step,
            CANCELLED if upstream_cancelled else SKIPPED,
            "upstream steps were cancelled" if upstream_cancelled else UPSTREAM_FAILED,
        )

    def _not_run(self, step: Step, outcome: str, reason: str) -> None:
        self._ended(StepOutcome(step.id, step.address, step.kind, outcome, reason=reason))
        self.hooks("step_skipped", step, reason)

    def _finish(self, sid: str, future: Future[StepOutcome]) -> None:
        self._ended(future.result())

    def _ended(self, outcome: StepOutcome) -> None:
        """Record a step's outcome; its downstream steps it makes decidable are queued."""
        self.outcomes[outcome.step_id] = outcome
        for sid in self.dependents.get(outcome.step_id, ()):
            self.waiting[sid] -= 1
            if not outcome.succeeded:
                heapq.heappush(self.blocked, (self.order[sid], sid))
            elif self.waiting[sid] == 0:
                heapq.heappush(self.ready, (self.order[sid], sid))

    def _abandon(self, running: dict[Future[StepOutcome], str]) -> None:
        """Second Ctrl-C: stop waiting. What was in flight is unknown: an unfinished create is
        recorded "tainted" (the next plan replaces it), anything else "failed" (applied again)."""
        steps = [self.steps[sid] for sid in running.values()]
        for step in steps:
            self._ended(StepOutcome(step.id, step.address, step.kind, CANCELLED, reason="interrupted"))
        self.recorder.change([s.address for s in steps], lambda s: self._mark_interrupted(s, steps))

    def _mark_interrupted(self, state: State, steps: list[Step]) -> None:
        for step in steps:
            rc = self.plan.change(step.address)
            if step.kind is StepKind.CREATE and rc is not None and rc.after is not None:
                if step.address in state.resources:  # its pending create stays, for the record
                    set_status(state, {step.address}, "tainted")
                else:
                    state.resources[step.address] = StateResource(
                        address=rc.address,
                        type=rc.type,
                        name=rc.name,
                        provider=self.plan.provider,
                        attributes=rc.after.copy(),
                        depends_on=list(rc.depends_on),
                        status="tainted",
                    )
            else:
                set_status(state, {step.address}, "failed")

    def _result(self) -> ApplyResult:
        ordered = [self.outcomes[s.id] for s in self.plan.steps if s.id in self.outcomes]
        error = self.recorder.error
        return ApplyResult(
            outcomes=ordered,
            state=self.recorder.state,
            cancelled=self.cancel.cancelled,
            aborted=self.cancel.aborted,
            state_error=error,
            unsaved_state=self.recorder.state if error else None,
        )

    # -- one step --------------------------------------------------------------------------------
    def _run_step(self, step: Step) -> StepOutcome:
        self.hooks("pre_step", step)
        start = time.monotonic()
        outcome = StepOutcome(step.id, step.address, step.kind, DONE_WORDS[step.kind])
        try:
            self.handlers.carry_out(step, outcome)
        except Exception as exc:  # a provider bug must not lose track of the apply either
            if not isinstance(exc, ReconcilerError):
                exc = ProviderError(f"{step.address}: internal error: {type(exc).__name__}: {exc}")
            outcome.outcome, outcome.error = FAILED, str(exc)
            outcome.detail = list(getattr(exc, "detail", []))
            # a failed create left nothing behind (contract): its pending record goes; anything
            # else is applied again by the next plan. A failed gate recorded the truth itself (what
            # was rolled back, or where it paused): nothing more is recorded
            if not isinstance(exc, GateFailed):
                self.recorder.change([step.address], functools.partial(record_failure, step))
            self.hooks("step_failed", step, exc)
        outcome.elapsed = time.monotonic() - start
        if outcome.outcome != FAILED:
            self.hooks("post_step", step, outcome, outcome.elapsed)
        return outcome


# -- helpers ---------------------------------------------------------------------------------------
def _check_acyclic(deps: dict[str, list[str]]) -> None:
    remaining = {k: set(v) for k, v in deps.items()}
    while remaining:
        ready = [k for k, v in remaining.items() if not v]
        if not ready:
            raise PlanError(
                "the plan's steps depend on each other in a cycle: " + ", ".join(sorted(remaining))
            )
        for k in ready:
            del remaining[k]
        for v in remaining.values():
            v.difference_update(ready)


__all__ = ["StateWriter", "apply_plan", "check_fresh"]

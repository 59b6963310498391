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
advancing the intent, by one writer (``_Recorder``, under a lock). A SIGKILL at any moment
therefore leaves either the result recorded or the intent: the next plan sees the half-done
operation and finishes or rolls it back. Retryable provider errors
are retried with bounded exponential backoff (the sleep is injectable); permanent ones never.
A ``CancelToken`` (Ctrl-C) stops new steps from starting while those in flight finish their
current batch; a second cancel stops waiting at once. The engine never prints: it reports through
``ApplyHooks`` and returns an ``ApplyResult``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import heapq
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol, TypedDict, TypeVar, cast

from providers.base import ApplyRequest, Provider
from reconciler.apply.hooks import ApplyHooks
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
from reconciler.model.crashpoints import crash_point
from reconciler.model.errors import (
    PlanError,
    ProviderError,
    ReconcilerError,
    RetryableError,
    StalePlanError,
    StateError,
)
from reconciler.model.resources import (
    Attributes,
    DeploymentAttrs,
    EndpointAttrs,
    Traffic,
    as_attributes,
    as_deployment,
    as_endpoint,
    normal_traffic,
)
from reconciler.plan.types import (
    Batch,
    Plan,
    ResourceChange,
    RolloutParams,
    ScaleParams,
    Step,
    StepKind,
    TrafficParams,
)
from reconciler.state.document import Pending, State, StateResource

T = TypeVar("T")

class StateWriter(Protocol):
    """What the engine needs of the state manager (``reconciler.state.manager``): read and write."""

    def read(self) -> State: ...

    def write(self, state: State) -> State: ...


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


class _Hooks:
    """Serialises hook calls from worker threads and keeps a failing hook from stopping apply."""

    def __init__(self, hooks: ApplyHooks) -> None:
        self._hooks = hooks
        self._lock = threading.Lock()

    def __call__(self, name: str, *args: Any) -> None:
        # a display problem must not lose track of the apply
        with self._lock, contextlib.suppress(Exception):
            getattr(self._hooks, name)(*args)


class _Recorder:
    """The one writer of the state: every change is applied to a copy and written at once.

    Copy-on-write per resource: a change names the addresses it touches, and only those resources
    are copied before ``mutate`` runs; every other resource object is shared, never changed in
    place, between the recorded states, the snapshots ``current`` hands out and the state
    manager's line cache (which re-encodes only what changed). A step of a 16,000-resource apply
    costs what it changed, not two deep copies and an encoding of everything."""

    def __init__(self, manager: StateWriter, state: State, hooks: _Hooks) -> None:
        self._manager = manager
        self._state = state
        self._hooks = hooks
        self._lock = threading.Lock()
        self.error: str | None = None  # set when the backend failed; later changes stay in memory

    def current(self) -> State:
        """A snapshot to read (its resources are shared: read them, never change them)."""
        with self._lock:
            return self._state.model_copy(update={"resources": dict(self._state.resources)})

    def change(self, addresses: Iterable[str], mutate: Callable[[State], object]) -> None:
        """Apply ``mutate`` to a copy in which the resources at ``addresses`` (the only ones it may
        change or remove; it may add others) are private copies, and write it."""
        with self._lock:
            resources = dict(self._state.resources)
            for address in addresses:
                if address in resources:
                    resources[address] = resources[address].model_copy(deep=True)
            new = self._state.model_copy(update={"resources": resources})
            mutate(new)
            if self.error is not None:
                self._state = new
                return
            try:
                self._state = self._manager.write(new)
            except StateError as exc:
                self.error = str(exc)
                self._state = new
                return
        self._hooks("state_persisted", self._state.serial)

    @property
    def state(self) -> State:
        with self._lock:
            return self._state


class _Engine:
    """One apply run: schedules steps on a thread pool and carries each out."""

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
        self.provider = provider
        self.hooks = _Hooks(hooks)
        self.recorder = _Recorder(manager, state, self.hooks)
        self.parallelism = parallelism
        self.cancel = cancel
        self.sleep = sleep
        self.retry = retry
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
            self.recorder.change(before, functools.partial(_restore, before))
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
                    _write_intent(state, step, intent, changes[step.address], self.plan.provider)

        self.recorder.change({s.address for s in steps}, mutate)

    def _intent(self, step: Step) -> Pending | None:
        """What the step will record when done (None: a delete of what is not recorded)."""
        try:
            attributes = self._target(step)
        except PlanError:
            return None  # the step fails on its own, before acting
        if attributes is None:
            return None
        batches = len(_rollout_batches(step)) if step.kind is StepKind.ROLLOUT else 0
        return Pending(step=step.id, kind=step.kind.value, attributes=attributes, batches=batches)

    def _target(self, step: Step) -> Attributes | None:
        """The attributes ``step`` moves its resource to (what is recorded once it is done)."""
        prior = self.recorder.current().get(step.address)
        if step.kind is StepKind.DELETE:
            return _recorded(prior) if prior is not None else None
        if step.kind is StepKind.SCALE:
            base = as_deployment(_recorded(prior) if prior is not None else self._after(step))
            scaled: DeploymentAttrs = {**base, "instance_count": step.params_as(ScaleParams).to}
            return scaled
        if step.kind is StepKind.SET_TRAFFIC:
            rc = self.plan.change(step.address)
            if rc is not None and rc.after is not None:
                endpoint = as_endpoint(dict(rc.after))
            elif prior is not None:
                endpoint = as_endpoint(_recorded(prior))
            else:
                return None
            routed: EndpointAttrs = {**endpoint, **_traffic_params(step)}
            return routed
        after = self._after(step)
        rc = self.plan.change(step.address)
        if rc is not None and rc.type == "endpoint":  # traffic changes only in set_traffic
            return _without_traffic(as_endpoint(after), prior if step.kind is StepKind.UPDATE else None)
        return after

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
                    _set_status(state, {step.address}, "tainted")
                else:
                    state.resources[step.address] = StateResource(
                        address=rc.address,
                        type=rc.type,
                        name=rc.name,
                        provider=self.plan.provider,
                        attributes=dict(rc.after),
                        depends_on=list(rc.depends_on),
                        status="tainted",
                    )
            else:
                _set_status(state, {step.address}, "failed")

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
            self._carry_out(step, outcome)
        except Exception as exc:  # a provider bug must not lose track of the apply either
            if not isinstance(exc, ReconcilerError):
                exc = ProviderError(f"{step.address}: internal error: {type(exc).__name__}: {exc}")
            outcome.outcome, outcome.error = FAILED, str(exc)
            outcome.detail = list(getattr(exc, "detail", []))
            # a failed create left nothing behind (contract): its pending record goes; anything
            # else is applied again by the next plan
            self.recorder.change([step.address], functools.partial(_record_failure, step))
            self.hooks("step_failed", step, exc)
        outcome.elapsed = time.monotonic() - start
        if outcome.outcome != FAILED:
            self.hooks("post_step", step, outcome, outcome.elapsed)
        return outcome

    def _carry_out(self, step: Step, outcome: StepOutcome) -> None:
        handlers: dict[StepKind, Callable[[Step, StepOutcome], None]] = {
            StepKind.CREATE: self._create,
            StepKind.UPDATE: self._update,
            StepKind.SCALE: self._scale,
            StepKind.ROLLOUT: self._rollout,
            StepKind.SET_TRAFFIC: self._set_traffic,
            StepKind.DELETE: self._delete,
        }
        handlers[step.kind](step, outcome)

    def _call(self, step: Step, outcome: StepOutcome, fn: Callable[[], T]) -> T:
        """Call the provider, retrying ``RetryableError`` with bounded backoff."""
        attempt = 0
        while True:
            attempt += 1
            outcome.attempts += 1
            try:
                return fn()
            except RetryableError as exc:
                if attempt >= self.retry.max_attempts or self.cancel.aborted:
                    raise
                delay = self.retry.delay(attempt, exc)
                self.hooks("step_retrying", step, attempt, delay, exc)
                self.sleep(delay)

    def _request(self, step: Step, attributes: Attributes) -> ApplyRequest:
        rc = self.plan.change(step.address)
        state = self.recorder.current()
        prior = state.get(step.address)
        if step.kind is StepKind.CREATE and prior is not None and prior.pending is not None:
            prior = None  # only the intent is recorded: nothing of it was ever created in full
        if prior is not None:  # the provider gets copies: the recorded resources are shared
            prior = prior.model_copy(deep=True)
        if rc is None and prior is None:
            raise PlanError(f"step {step.id} names {step.address}, which neither the plan nor the state has")
        rtype, name = (rc.type, rc.name) if rc is not None else (prior.type, prior.name)  # type: ignore[union-attr]
        refs: dict[str, dict[str, Any]] = {}
        for address in _references(rtype, attributes, rc.depends_on if rc else prior.depends_on):  # type: ignore[union-attr]
            other = self.plan.change(address)
            recorded = state.get(address)
            if other is not None and other.after is not None:
                refs[address] = _plain(other.after)
            elif recorded is not None:
                refs[address] = copy.deepcopy(recorded.attributes)
        return ApplyRequest(
            step.address,
            rtype,
            name,
            _plain(attributes),
            prior,
            refs,
            on_event=lambda line: self.hooks("event", step, line),
            on_status=lambda text: self.hooks("status", step, text),
        )

    def _after(self, step: Step) -> Attributes:
        rc = self.plan.change(step.address)
        if rc is None or rc.after is None:
            raise PlanError(f"step {step.id}: the plan has no desired attributes for {step.address}")
        return as_attributes(dict(rc.after))

    # -- step kinds ------------------------------------------------------------------------------
    def _create(self, step: Step, outcome: StepOutcome) -> None:
        rc = self.plan.change(step.address)
        assert rc is not None
        after = self._after(step)
        sent = _without_traffic(as_endpoint(after), None) if rc.type == "endpoint" else after
        outputs = self._call(step, outcome, lambda: self.provider.create(self._request(step, sent)))
        crash_point("engine.acted", step.id)
        resource = StateResource(
            address=rc.address,
            type=rc.type,
            name=rc.name,
            provider=self.plan.provider,
            attributes=_plain(sent),
            depends_on=list(rc.depends_on),
            outputs=outputs,
        )
        self.recorder.change([rc.address], lambda s: s.resources.__setitem__(rc.address, resource))

    def _update(self, step: Step, outcome: StepOutcome) -> None:
        rc = self.plan.change(step.address)
        assert rc is not None
        prior = self.recorder.current().get(step.address)
        after = self._after(step)
        # routing changes only in a set_traffic step: an update keeps the recorded traffic
        sent = _without_traffic(as_endpoint(after), prior) if rc.type == "endpoint" else after
        outputs = self._call(step, outcome, lambda: self.provider.update(self._request(step, sent)))
        crash_point("engine.acted", step.id)

        def record(s: State) -> None:
            s.resources[rc.address] = StateResource(
                address=rc.address,
                type=rc.type,
                name=rc.name,
                provider=self.plan.provider,
                attributes=_plain(sent),
                depends_on=list(rc.depends_on),
                outputs={**_outputs(prior), **outputs},
            )

        self.recorder.change([rc.address], record)

    def _scale(self, step: Step, outcome: StepOutcome) -> None:
        """Scale first, template later: the instances added run the recorded configuration. A
        repair (an interrupted apply left instances of the desired configuration beside the
        recorded one) asks for the desired attributes, so that those are the instances kept."""
        params = step.params_as(ScaleParams)
        count = params.to
        prior = self.recorder.current().get(step.address)
        repair = params.repair and self.plan.change(step.address) is not None
        base = as_deployment(self._after(step) if repair or prior is None else _recorded(prior))
        sent: DeploymentAttrs = {**base, "instance_count": count}
        outputs = self._call(step, outcome, lambda: self.provider.scale(self._request(step, sent), count))
        crash_point("engine.acted", step.id)

        def record(s: State) -> None:
            res = s.resources.get(step.address)
            if res is not None:
                res.attributes["instance_count"] = count
                res.outputs.update(outputs)
                res.pending = None

        self.recorder.change([step.address], record)

    def _rollout(self, step: Step, outcome: StepOutcome) -> None:
        after = self._after(step)
        batches = _rollout_batches(step)
        for i, batch in enumerate(batches):
            if i > 0 and self._stopping() is not None:
                outcome.outcome, outcome.reason = CANCELLED, f"stopped after batch {i}/{len(batches)}"
                return
            self.hooks("batch_started", step, batch, len(batches))
            start = time.monotonic()
            request = self._request(step, after)
            outputs = self._call(step, outcome, functools.partial(self.provider.roll_batch, request, batch))
            crash_point("engine.acted", f"{step.id} batch {batch.index}")
            last = i == len(batches) - 1
            self.recorder.change(
                [step.address], functools.partial(_record_batch_into, step.address, after, outputs, last)
            )
            outcome.batches_done = i + 1
            self.hooks("batch_finished", step, batch, len(batches), time.monotonic() - start)

    def _set_traffic(self, step: Step, outcome: StepOutcome) -> None:
        routing = _traffic_params(step)
        traffic, mirror = routing["traffic"], routing["mirror_traffic"]
        state = self.recorder.current()
        endpoint = state.get(step.address)
        if endpoint is None:
            raise PlanError(f"{step.address}: cannot set traffic, the endpoint is not recorded")
        _check_routable(state, step.address, traffic, mirror)
        rc = self.plan.change(step.address)
        base = as_endpoint(dict(rc.after) if rc is not None and rc.after is not None else _recorded(endpoint))
        sent: EndpointAttrs = {**base, "traffic": traffic, "mirror_traffic": mirror}
        outputs = self._call(
            step, outcome, lambda: self.provider.set_routing(self._request(step, sent), traffic, mirror)
        )
        crash_point("engine.acted", step.id)

        def record(s: State) -> None:
            res = s.resources.get(step.address)
            if res is not None:
                res.attributes["traffic"] = normal_traffic(traffic)
                res.attributes["mirror_traffic"] = normal_traffic(mirror)
                res.outputs.update(outputs)
                res.pending = None

        self.recorder.change([step.address], record)

    def _delete(self, step: Step, outcome: StepOutcome) -> None:
        state = self.recorder.current()
        resource = state.get(step.address)
        if resource is None:
            return  # already gone from the record: nothing to delete
        if resource.type == "deployment":
            _check_drained(state, resource)
        self._call(step, outcome, lambda: self.provider.delete(resource))
        crash_point("engine.acted", step.id)
        self.recorder.change([step.address], lambda s: s.resources.pop(step.address, None))


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


def _references(rtype: str, attributes: Attributes, depends_on: list[str]) -> list[str]:
    refs: list[str | None] = list(depends_on)
    if rtype == "deployment":
        dep = as_deployment(attributes)
        refs += [dep.get("model"), dep.get("environment")]
        refs.append(f"endpoint.{str(dep.get('endpoint_name', '')).lower()}")
    return [r for i, r in enumerate(refs) if isinstance(r, str) and r and r not in refs[:i]]


def _recorded(resource: StateResource) -> Attributes:
    """A copy of the recorded attributes (the recorded resources are shared: never changed in place)."""
    return as_attributes(dict(resource.attributes))


def _plain(attrs: Attributes) -> dict[str, Any]:
    """Canonical attributes as the plain JSON data the provider interface and the state record hold."""
    return cast(dict[str, Any], attrs)


def _without_traffic(after: EndpointAttrs, prior: StateResource | None) -> EndpointAttrs:
    """An endpoint as created/updated: traffic as recorded (none on create); set_traffic sets it."""
    recorded = as_endpoint(prior.attributes) if prior is not None else None
    return {
        **after,
        "traffic": dict(recorded.get("traffic") or {}) if recorded else {},
        "mirror_traffic": dict(recorded.get("mirror_traffic") or {}) if recorded else {},
    }


def _outputs(resource: StateResource | None) -> dict[str, Any]:
    return dict(resource.outputs) if resource is not None else {}


def _rollout_batches(step: Step) -> list[Batch]:
    """A rollout's batches; one batch of one when it has no instances (the provider still applies
    the new configuration to the deployment: nothing else would)."""
    return step.params_as(RolloutParams).batches or [Batch(index=1, size=1)]


class _Routing(TypedDict):
    traffic: Traffic
    mirror_traffic: Traffic


def _traffic_params(step: Step) -> _Routing:
    params = step.params_as(TrafficParams)
    return {"traffic": dict(params.traffic), "mirror_traffic": dict(params.mirror_traffic)}


def _write_intent(state: State, step: Step, intent: Pending, rc: ResourceChange | None, provider: str) -> None:
    """Record ``intent`` on the step's resource; a create records the resource with it."""
    res = state.resources.get(step.address)
    if res is not None:
        res.pending = intent
    elif step.kind is StepKind.CREATE and rc is not None:
        state.resources[step.address] = StateResource(
            address=rc.address,
            type=rc.type,
            name=rc.name,
            provider=provider,
            attributes=dict(_plain(intent.attributes)),
            depends_on=list(rc.depends_on),
            pending=intent,
        )


def _restore(resources: dict[str, StateResource | None], state: State) -> None:
    """Put back the recorded resources as they were (None: not recorded)."""
    for address, res in resources.items():
        if res is None:
            state.resources.pop(address, None)
        else:
            state.resources[address] = res


def _record_failure(step: Step, state: State) -> None:
    """A failed step: a create left nothing (contract), anything else is applied again."""
    res = state.resources.get(step.address)
    if res is None:
        return
    if step.kind is StepKind.CREATE:
        if res.pending is not None and res.pending.kind == "create":
            del state.resources[step.address]
        return
    res.status = "failed"
    res.pending = None


def _record_batch_into(
    address: str, after: Attributes, outputs: dict[str, Any], last: bool, state: State
) -> None:
    _record_batch(state, address, after, outputs, last)


def _record_batch(
    state: State, address: str, after: Attributes, outputs: dict[str, Any], last: bool
) -> None:
    """Mid-rollout the old attributes stay (the next plan resumes); the outputs name the instances."""
    res = state.resources.get(address)
    if res is None:
        return
    res.outputs.update(outputs)
    if last:
        res.attributes = dict(_plain(after))
        res.status = "ready"
        res.pending = None
    elif res.pending is not None:
        res.pending = res.pending.model_copy(update={"batches_done": res.pending.batches_done + 1})


def _set_status(state: State, addresses: set[str], status: str) -> None:
    for address in addresses:
        res = state.resources.get(address)
        if res is not None:
            res.status = status  # type: ignore[assignment]


def _check_routable(state: State, endpoint: str, traffic: dict[str, int], mirror: dict[str, int]) -> None:
    """Never point traffic at a deployment that is not recorded as existing and ready."""
    ep = endpoint.split(".", 1)[1]
    for name in sorted({k for k, v in {**traffic, **mirror}.items() if v}):
        address = f"deployment.{ep}.{name.lower()}"
        res = state.get(address)
        if res is None or res.status != "ready" or res.pending is not None:
            why = "does not exist" if res is None else f"is {res.status}"
            if res is not None and res.pending is not None:
                why = f"has an unfinished {res.pending.kind}"
            raise PlanError(f"{endpoint}: refusing to route traffic to {address}: it {why}")


def _check_drained(state: State, deployment: StateResource) -> None:
    """Never delete a deployment that still has live or mirrored traffic (as recorded)."""
    endpoint = state.get(f"endpoint.{deployment.address.split('.')[1]}")
    if endpoint is None:
        return
    name = deployment.name.lower()
    for key in ("traffic", "mirror_traffic"):
        pct = {k.lower(): v for k, v in (endpoint.attributes.get(key) or {}).items()}.get(name)
        if pct:
            raise PlanError(
                f"refusing to delete {deployment.address}: {endpoint.address} still sends it {pct}% "
                f"{'mirrored ' if key == 'mirror_traffic' else ''}traffic; move the traffic first"
            )


__all__ = ["StateWriter", "apply_plan", "check_fresh"]

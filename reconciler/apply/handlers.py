"""Each kind of step carried out: the provider called with a request built from the plan, the result recorded.

``StepHandlers.carry_out`` runs one step: ``create`` and ``update`` send the plan's ``after`` (an
endpoint without traffic changes: only ``set_traffic`` routes), ``scale`` sends the recorded
configuration at the new count (scale first, template later; a repair sends the desired one),
``rollout`` rolls batch after batch and records each, ``set_traffic`` routes only to deployments
recorded ready, ``delete`` deletes only what no traffic reaches. Everything a step needs comes from
the plan (never the configuration): the resource's ``after``, the recorded resource as ``prior``,
and the ``after`` (or recorded attributes) of the resources it references. Retryable provider
errors are retried with bounded exponential backoff (the sleep is injectable); permanent ones
never. ``target`` says what a step records once done (the intent written before it starts).
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar

from reconciler.apply.guard import Guard, Watch, endpoint_request, passes
from reconciler.apply.hooks import SerialHooks
from reconciler.apply.judge import Verdict
from reconciler.apply.outcomes import CANCELLED, CancelToken, RetryPolicy, StepOutcome
from reconciler.apply.recording import Recorder, record_batch_into
from reconciler.apply.rollback import Undo
from reconciler.model.crashpoints import crash_point
from reconciler.model.errors import PlanError, RetryableError
from reconciler.model.resources import (
    Attributes,
    DeploymentAttrs,
    EndpointAttrs,
    Traffic,
    as_attributes,
    as_deployment,
    as_endpoint,
    endpoint_address,
    normal_traffic,
)
from reconciler.plan.provider import ApplyRequest, Provider
from reconciler.plan.types import (
    Batch,
    Plan,
    RolloutParams,
    ScaleParams,
    Split,
    Step,
    StepKind,
    TrafficParams,
)
from reconciler.state.document import Judging, State, StateResource

T = TypeVar("T")


class StepHandlers:
    """Carries out the steps of one apply, one per call (from several threads at once)."""

    def __init__(
        self,
        plan: Plan,
        provider: Provider,
        recorder: Recorder,
        hooks: SerialHooks,
        cancel: CancelToken,
        sleep: Callable[[float], None],
        retry: RetryPolicy,
        stopping: Callable[[], str | None],
    ) -> None:
        self.plan = plan
        self.provider = provider
        self.recorder = recorder
        self.hooks = hooks
        self.cancel = cancel
        self.sleep = sleep
        self.retry = retry
        self.stopping = stopping  # why no more batches may start (None: they may)
        self.guard = Guard(provider, hooks, sleep, cancel)  # guarded rollouts: windows baked and judged
        self.undo = Undo(provider, recorder, hooks, self._call)  # and what a failed gate leads to

    def target(self, step: Step) -> Attributes | None:
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

    def carry_out(self, step: Step, outcome: StepOutcome) -> None:
        """Carry out ``step`` and record its result; errors are raised (``outcome`` counts attempts and batches)."""
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
        prior = _prior_for(step, state)
        if rc is None and prior is None:
            raise PlanError(f"step {step.id} names {step.address}, which neither the plan nor the state has")
        rtype, name = (rc.type, rc.name) if rc is not None else (prior.type, prior.name)  # type: ignore[union-attr]
        depends_on = rc.depends_on if rc else prior.depends_on  # type: ignore[union-attr]
        refs = _refs(self.plan, state, _references(rtype, attributes, depends_on))
        return ApplyRequest(
            step.address,
            rtype,
            name,
            attributes,
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
            attributes=sent,
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
                attributes=sent,
                depends_on=list(rc.depends_on),
                outputs={**_outputs(prior), **outputs},
                judging=prior.judging if prior is not None else None,  # judged by its own step
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
        outputs = self._call(step, outcome, lambda: self.provider.scale(self._request(step, sent)))
        crash_point("engine.acted", step.id)

        def record(s: State) -> None:
            res = s.resources.get(step.address)
            if res is not None:
                as_deployment(res.attributes)["instance_count"] = count
                res.outputs.update(outputs)
                res.pending = None

        self.recorder.change([step.address], record)

    def _rollout(self, step: Step, outcome: StepOutcome) -> None:
        after = self._after(step)
        batches = rollout_batches(step)
        gate = step.params_as(RolloutParams).gate
        prior = self.recorder.current().get(step.address)
        previous = _recorded(prior) if prior is not None else None
        watch = None
        if gate is not None:  # the first window opens now: the old instances answer during batch 1
            endpoint = endpoint_address(str(as_deployment(after).get("endpoint_name", "")))
            watch = self.guard.open(step, gate, endpoint_request(self.recorder.current(), endpoint))
        for i, batch in enumerate(batches):
            if i > 0 and self.stopping() is not None:
                outcome.outcome, outcome.reason = CANCELLED, f"stopped after batch {i}/{len(batches)}"
                return
            self.hooks("batch_started", step, batch, len(batches))
            start = time.monotonic()
            request = self._request(step, after)
            outputs = self._call(step, outcome, functools.partial(self.provider.roll_batch, request, batch))
            crash_point("engine.acted", f"{step.id} batch {batch.index}")
            last = i == len(batches) - 1
            # a guarded rollout stays pending until its last gate passed: a SIGKILL during that bake
            # leaves it to be applied (and judged) again
            settled = last and watch is None
            self.recorder.change(
                [step.address], functools.partial(record_batch_into, step.address, after, outputs, settled)
            )
            outcome.batches_done = i + 1
            self.hooks("batch_finished", step, batch, len(batches), time.monotonic() - start)
            if watch is not None and gate is not None and (last or not gate.once):
                if gate.once:  # no configurations told apart (azure): judge what runs after the update
                    self.guard.reopen(watch)
                label = f"batch {batch.index}/{len(batches)}"
                verdict = self._judged(step, outcome, watch, label, outputs.get("config_digest"))
                if verdict is not None:
                    assert previous is not None  # a rollout rolls a recorded deployment
                    back = functools.partial(self.undo.rollout, step, outcome, functools.partial(self._request, step),
                                             previous, sum(b.size for b in batches[: i + 1]), verdict)
                    raise self.undo.failed(step, outcome, gate, verdict, label, back)
        if watch is not None:  # every gate passed: the rollout is recorded done
            self.recorder.change([step.address], functools.partial(record_batch_into, step.address, after, {}, True))

    def _judged(self, step: Step, outcome: StepOutcome, watch: Watch, label: str,
                digest: str | None = None) -> Verdict | None:
        """Bake and judge ``watch``'s window; None when the step may go on (the next window is
        open then), else the verdict that fails it."""
        verdict = self.guard.watch(watch, label, digest)
        outcome.verdicts.append(verdict)
        if passes(verdict):
            self.guard.reopen(watch)
            return None
        return verdict

    def _set_traffic(self, step: Step, outcome: StepOutcome) -> None:
        params = step.params_as(TrafficParams)
        if params.mirror_gate is not None:  # judged on its mirrored answers before anything moves
            gate = params.mirror_gate
            watch = self.guard.open(step, gate, endpoint_request(self.recorder.current(), step.address))
            verdict = self._judged(step, outcome, watch, "its mirrored answers")
            if verdict is not None:
                raise self.undo.failed(step, outcome, gate, verdict, "its mirrored answers",
                                       functools.partial(self.undo.not_routed, step, verdict))
        if params.gate is None:
            self._route(step, outcome)
            return
        gate = params.gate
        label = f"traffic step {params.part}/{params.parts}" if params.parts else "the traffic change"
        # the split and the judgment it waits for are recorded in one write, before the bake: a
        # SIGKILL while baking leaves the step to be judged again (StateResource.judging)
        request = endpoint_request(self.recorder.current(), step.address)
        earlier = self.guard.baseline(request, gate) or params.baseline_p99_s
        self._route(step, outcome, _judging(step, params, earlier))
        crash_point("gate.pending", step.id)
        watch = self.guard.open(step, gate, endpoint_request(self.recorder.current(), step.address))
        watch.baseline_p99_s = watch.baseline_p99_s or earlier
        verdict = self._judged(step, outcome, watch, label)
        if verdict is None or gate.on_failure == "pause":  # judged: nothing is pending any more
            self.recorder.change([step.address], functools.partial(_judged_into, step.address))
        if verdict is not None:
            raise self.undo.failed(step, outcome, gate, verdict, label,
                                   functools.partial(self._restore, step, outcome, params.restore, verdict))

    def _restore(self, step: Step, outcome: StepOutcome, restore: Split | None, verdict: Verdict) -> str:
        """A failed traffic step's rollback: the split before the traffic change, routed again."""
        if restore is None:
            return "nothing to restore: the split before the change was not a whole one"

        def request(split: Split) -> ApplyRequest:
            endpoint = self.recorder.current().get(step.address)
            base = as_endpoint(_recorded(endpoint)) if endpoint is not None else as_endpoint(self._after(step))
            routed: EndpointAttrs = {**base, "traffic": dict(split.traffic), "mirror_traffic": dict(split.mirror_traffic)}
            return self._request(step, routed)

        return self.undo.traffic(step, outcome, request, restore, verdict)

    def _route(self, step: Step, outcome: StepOutcome, judging: Judging | None = None) -> None:
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
            step, outcome, lambda: self.provider.set_routing(self._request(step, sent))
        )
        crash_point("engine.acted", step.id)

        def record(s: State) -> None:
            res = s.resources.get(step.address)
            if res is not None:
                recorded = as_endpoint(res.attributes)
                recorded["traffic"] = normal_traffic(traffic)
                recorded["mirror_traffic"] = normal_traffic(mirror)
                res.outputs.update(outputs)
                res.pending = None
                res.judging = judging

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


def _judging(step: Step, params: TrafficParams, baseline_p99_s: float | None) -> Judging:
    """What a guarded traffic step records with its split, until its gate's verdict is carried out."""
    assert params.gate is not None
    restore = params.restore
    return Judging(step=step.id, part=params.part, parts=params.parts, traffic=normal_traffic(params.traffic),
                   mirror_traffic=normal_traffic(params.mirror_traffic), gate=params.gate,
                   restore=dict(restore.traffic) if restore is not None else None,
                   restore_mirror=dict(restore.mirror_traffic) if restore is not None else None,
                   baseline_p99_s=baseline_p99_s)


def _judged_into(address: str, state: State) -> None:
    res = state.resources.get(address)
    if res is not None:
        res.judging = None


def _prior_for(step: Step, state: State) -> StateResource | None:
    """The recorded resource a step's provider call is given: a copy (the recorded resources are
    shared), and none for a create of which only the intent is recorded (nothing of it was ever
    created in full)."""
    prior = state.get(step.address)
    if prior is None or (step.kind is StepKind.CREATE and prior.pending is not None):
        return None
    return prior.model_copy(deep=True)


def _refs(plan: Plan, state: State, addresses: list[str]) -> dict[str, Attributes]:
    """The canonical attributes of what a resource references: the plan's desired ones, else the
    recorded ones (copies)."""
    refs: dict[str, Attributes] = {}
    for address in addresses:
        other = plan.change(address)
        recorded = state.get(address)
        if other is not None and other.after is not None:
            refs[address] = other.after
        elif recorded is not None:
            refs[address] = as_attributes(copy.deepcopy(recorded.attributes))
    return refs


def _references(rtype: str, attributes: Attributes, depends_on: list[str]) -> list[str]:
    refs: list[str | None] = list(depends_on)
    if rtype == "deployment":
        dep = as_deployment(attributes)
        refs += [dep.get("model"), dep.get("environment")]
        refs.append(f"endpoint.{str(dep.get('endpoint_name', '')).lower()}")
    return [r for i, r in enumerate(refs) if isinstance(r, str) and r and r not in refs[:i]]


def _recorded(resource: StateResource) -> Attributes:
    """A copy of the recorded attributes (the recorded resources are shared: never changed in place)."""
    return resource.attributes.copy()


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


def rollout_batches(step: Step) -> list[Batch]:
    """A rollout's batches; one batch of one when it has no instances (the provider still applies
    the new configuration to the deployment: nothing else would)."""
    return step.params_as(RolloutParams).batches or [Batch(index=1, size=1)]


class _Routing(TypedDict):
    traffic: Traffic
    mirror_traffic: Traffic


def _traffic_params(step: Step) -> _Routing:
    params = step.params_as(TrafficParams)
    return {"traffic": dict(params.traffic), "mirror_traffic": dict(params.mirror_traffic)}


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
    name, recorded = deployment.name.lower(), as_endpoint(endpoint.attributes)
    for key, split in (("traffic", recorded.get("traffic")), ("mirror_traffic", recorded.get("mirror_traffic"))):
        pct = {k.lower(): v for k, v in (split or {}).items()}.get(name)
        if pct:
            raise PlanError(
                f"refusing to delete {deployment.address}: {endpoint.address} still sends it {pct}% "
                f"{'mirrored ' if key == 'mirror_traffic' else ''}traffic; move the traffic first"
            )

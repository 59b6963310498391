"""The apply's state records: intent before action, results after, one writer.

Intent before action: before steps start, the state records on each resource the operation about
to change it (``StateResource.pending``: the step and the attributes it moves to; a create adds the
resource with its pending create: ``write_intent``), in one write for the steps starting together,
and puts back what was recorded when that write fails (``restore``). The state is written again
after every finished step and after every rollout batch (``record_batch``), clearing or advancing
the intent; a failed step leaves its resource to be applied again, or nothing for a create
(``record_failure``). One writer does all of it (``Recorder``, under a lock), copying only the
resources a change touches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from reconciler.apply.hooks import SerialHooks
from reconciler.model.errors import StateError
from reconciler.model.resources import Attributes
from reconciler.plan.types import ResourceChange, Step, StepKind
from reconciler.state.document import Pending, State, StateResource
from reconciler.state.manager import StateManager


class StateWriter(Protocol):
    """What the engine needs of the state manager (``reconciler.state.manager``): read and write."""

    def read(self) -> State: ...

    def write(self, state: State) -> State: ...


class Recorder:
    """The one writer of the state: every change is applied to a copy and written at once.

    Copy-on-write per resource: a change names the addresses it touches, and only those resources
    are copied before ``mutate`` runs; every other resource object is shared, never changed in
    place, between the recorded states, the snapshots ``current`` hands out and the state
    manager's line cache (which re-encodes only what changed). A step of a 16,000-resource apply
    costs what it changed, not two deep copies and an encoding of everything."""

    def __init__(self, manager: StateWriter, state: State, hooks: SerialHooks) -> None:
        self._manager = manager
        self._state = state
        self._hooks = hooks
        self._lock = threading.Lock()
        self.error: str | None = None  # set when the backend failed; later changes stay in memory

    def current(self) -> State:
        """A snapshot to read (its resources are shared: read them, never change them)."""
        with self._lock:
            return self._state.model_copy(update={"resources": dict(self._state.resources)})

    def change(self, addresses: Iterable[str], mutate: Callable[[State], object], note: str | None = None) -> None:
        """Apply ``mutate`` to a copy in which the resources at ``addresses`` (the only ones it may
        change or remove; it may add others) are private copies, and write it (with ``note``, why
        this version is written, kept with it in the state's history)."""
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
                if note is not None and isinstance(self._manager, StateManager):
                    self._state = self._manager.write(new, note=note)
                else:
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


def write_intent(state: State, step: Step, intent: Pending, rc: ResourceChange | None, provider: str) -> None:
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
            attributes=intent.attributes.copy(),
            depends_on=list(rc.depends_on),
            pending=intent,
        )


def restore(resources: dict[str, StateResource | None], state: State) -> None:
    """Put back the recorded resources as they were (None: not recorded)."""
    for address, res in resources.items():
        if res is None:
            state.resources.pop(address, None)
        else:
            state.resources[address] = res


def record_failure(step: Step, state: State) -> None:
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


def record_batch_into(
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
        res.attributes = after.copy()
        res.status = "ready"
        res.pending = None
    elif res.pending is not None:
        res.pending = res.pending.model_copy(update={"batches_done": res.pending.batches_done + 1})


def set_status(state: State, addresses: set[str], status: str) -> None:
    for address in addresses:
        res = state.resources.get(address)
        if res is not None:
            res.status = status  # type: ignore[assignment]

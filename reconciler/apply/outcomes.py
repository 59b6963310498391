"""What an apply reports and returns: each step's outcome, the whole result, the cancel token the
CLI sets on Ctrl-C, and the retry policy. Plain values shared by the engine, its hooks and the views."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from reconciler.apply.judge import Verdict
from reconciler.model.errors import RetryableError
from reconciler.plan.types import StepKind
from reconciler.state.document import State

# "Deployment default/foo has been ..." (controller-runtime's OperationResult naming)
DONE_WORDS: dict[StepKind, str] = {
    StepKind.CREATE: "created",
    StepKind.UPDATE: "updated",
    StepKind.SCALE: "scaled",
    StepKind.ROLLOUT: "rolled out",
    StepKind.SET_TRAFFIC: "routed",
    StepKind.DELETE: "deleted",
}
FAILED, SKIPPED, CANCELLED = "failed", "skipped", "cancelled"
UPSTREAM_FAILED = "upstream dependencies failed"


class CancelToken:
    """Set by the CLI's SIGINT handler: once = finish what is in flight; twice = stop at once."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def cancel(self) -> int:
        """Ask to stop; returns how many times it was asked."""
        with self._lock:
            self._count += 1
            return self._count

    @property
    def cancelled(self) -> bool:
        return self._count >= 1

    @property
    def aborted(self) -> bool:
        return self._count >= 2


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for ``RetryableError``: base * 2**n, capped, at most N tries."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, error: RetryableError) -> float:
        return float(min(self.max_delay, max(error.delay, self.base_delay * 2 ** (attempt - 1))))


@dataclass
class StepOutcome:
    """How one step ended: ``outcome`` completes "deployment.ep.blue has been ..."."""

    step_id: str
    address: str
    kind: StepKind
    outcome: str
    elapsed: float = 0.0
    attempts: int = 0
    error: str | None = None
    detail: list[str] = field(default_factory=list)
    reason: str | None = None  # why it was skipped or cancelled
    batches_done: int = 0
    # guarded rollouts: every window judged in the step, in order; the last one decided a failure
    verdicts: list[Verdict] = field(default_factory=list)
    gate_failed: bool = False  # failed by a gate (``on_failure`` carried out: see ``undone``)
    undone: str | None = None  # what the failure left: "rolled back ..." or "paused ..."

    @property
    def succeeded(self) -> bool:
        return self.outcome in DONE_WORDS.values()


@dataclass
class ApplyResult:
    """What an apply did. ``state`` is the last state written (``unsaved_state`` holds what could
    not be written when the state backend failed: the CLI saves it elsewhere)."""

    outcomes: list[StepOutcome]
    state: State
    cancelled: bool = False
    aborted: bool = False
    state_error: str | None = None
    unsaved_state: State | None = None

    @property
    def serial(self) -> int:
        return self.state.serial

    @property
    def errors(self) -> list[StepOutcome]:
        return [o for o in self.outcomes if o.outcome == FAILED]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.cancelled and self.state_error is None

    def outcome(self, step_id: str) -> StepOutcome | None:
        return next((o for o in self.outcomes if o.step_id == step_id), None)

    def counts(self) -> dict[str, int]:
        """Resources added, changed and destroyed (a replace counts one add and one destroy)."""
        words: dict[str, set[str]] = {}
        for o in self.outcomes:
            words.setdefault(o.address, set()).add(o.outcome)
        add = sum("created" in w for w in words.values())
        destroy = sum("deleted" in w for w in words.values())
        changing = {"updated", "scaled", "rolled out", "routed"}
        change = sum(bool(w & changing) and not w & {"created", "deleted"} for w in words.values())
        return {"add": add, "change": change, "destroy": destroy}

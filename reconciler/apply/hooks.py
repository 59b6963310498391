"""How the apply engine reports progress: hooks, like Terraform's ``internal/terraform/hook.go``.

The engine never prints. It calls these methods as it walks a plan; the CLI implements them to
draw progress for people (a live view on a terminal, plain timestamped lines in CI), tests
implement them to record.
Every method has a no-op default, so an implementation overrides only what it needs.

The engine guarantees that hook calls never overlap (``SerialHooks`` serialises them with a lock), even though
steps run on several threads: an implementation needs no locking of its own. A hook must not
raise; if it does, the engine ignores the error rather than lose track of the apply.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.apply.judge import Verdict
    from reconciler.apply.outcomes import StepOutcome
    from reconciler.plan.types import Batch, Step


class ApplyHooks:
    """No-op base class of apply progress hooks."""

    def pre_step(self, step: Step) -> None:
        """A step is about to call its provider."""

    def post_step(self, step: Step, result: StepOutcome, elapsed: float) -> None:
        """A step finished (its outcome says how: "created", "rolled out", "cancelled" ...)."""

    def step_failed(self, step: Step, error: Exception) -> None:
        """A step failed for good (after its retries); ``error.detail`` may hold log lines."""

    def step_skipped(self, step: Step, reason: str) -> None:
        """A step did not run: an upstream step failed, or the apply was cancelled."""

    def step_retrying(self, step: Step, attempt: int, delay: float, error: Exception) -> None:
        """A retryable error: the step runs again after ``delay`` seconds (attempt is 1-based)."""

    def batch_started(self, step: Step, batch: Batch, total: int) -> None:
        """One rollout batch is starting (``batch.index`` of ``total``)."""

    def batch_finished(self, step: Step, batch: Batch, total: int, elapsed: float = 0.0) -> None:
        """One rollout batch is done and recorded in the state."""

    def event(self, step: Step, line: str) -> None:
        """A progress line from the provider worth keeping ("instance 3 ready", "virtualenv ready")."""

    def status(self, step: Step, text: str) -> None:
        """What the provider is doing right now ("collecting numpy"); the next status replaces it.
        A live view shows it in place; plain output (CI logs) shows it only now and then."""

    def gate_progress(self, step: Step, label: str, verdict: Verdict, elapsed: float, bake: float) -> None:
        """A guarded step's window, looked at during its bake (``label``: "batch 2/5", "traffic
        step 1/3", "mirror"): what it holds so far, ``elapsed`` of ``bake`` seconds."""

    def gate_judged(self, step: Step, label: str, verdict: Verdict) -> None:
        """A window was judged: ``verdict.result`` is pass, fail or inconclusive (what follows an
        inconclusive one is the gate's ``on_inconclusive``)."""

    def state_persisted(self, serial: int) -> None:
        """The state was written; ``serial`` is its new serial."""


__all__ = ["ApplyHooks"]


class SerialHooks:
    """Serialises hook calls from worker threads and keeps a failing hook from stopping apply."""

    def __init__(self, hooks: ApplyHooks) -> None:
        self._hooks = hooks
        self._lock = threading.Lock()

    def __call__(self, name: str, *args: Any) -> None:
        # a display problem must not lose track of the apply
        with self._lock, contextlib.suppress(Exception):
            getattr(self._hooks, name)(*args)

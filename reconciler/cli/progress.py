"""How ``apply`` and ``destroy`` show progress: the CLI's implementation of the engine's hooks.

The engine never prints; it calls ``ApplyHooks`` (``reconciler.apply.hooks``) and ``CliHooks``
draws them, in one of two ways:

- **On a terminal**, a live view under the lines already printed: one row per step in flight with
  a spinner, what it is doing, for how long, and the provider's latest status (the package an
  environment build is collecting, the rollout batch, the instance being waited for). Lines worth
  keeping (a step finishing, warnings, batches done) are printed above it; that a step started is
  the view's to show.
- **Elsewhere** (CI logs, pipes), plain lines, each starting with the time (``12:03:04``): the same
  lines worth keeping, and for a step that runs long, a line every ``heartbeat`` seconds saying
  what it is still doing and for how long (Terraform's "Still creating... [10s elapsed]").

A failed step prints its error once, with the detail the provider gave (an instance's or a
build's last log lines); the summary at the end names the step and its error's first line only.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click

from reconciler.apply.guard import GateFailed
from reconciler.apply.hooks import ApplyHooks
from reconciler.apply.judge import Verdict
from reconciler.apply.outcomes import StepOutcome
from reconciler.plan.types import Batch, ScaleParams, Step, StepKind, TrafficParams
from reconciler.render.verdicts import progress_words, verdict_table

VERBS = {
    StepKind.CREATE: "Creating",
    StepKind.UPDATE: "Updating",
    StepKind.SCALE: "Scaling",
    StepKind.ROLLOUT: "Rolling out",
    StepKind.SET_TRAFFIC: "Setting traffic",
    StepKind.DELETE: "Deleting",
}
HEARTBEAT_S = 10.0  # plain output: a "still ..." line per running step this often


@dataclass
class _Running:
    """A step in flight: when it started and what it last said it was doing."""

    step: Step
    started: float
    status: str = ""
    batch: str = ""
    beats: int = 0  # heartbeat lines printed so far

    def doing(self) -> str:
        return " · ".join(p for p in (self.batch, self.status) if p)


@dataclass
class CliHooks(ApplyHooks):
    """Prints apply progress: a live view on a terminal, timestamped lines elsewhere.

    ``tty``: draw the live view (default: whether stdout is a terminal, not a dumb one). ``clock`` (monotonic
    seconds) and ``now`` (wall time for the timestamps) are injectable for tests, as is
    ``console`` (a rich Console) for the live view. ``heartbeat`` is the seconds between the
    plain "still ..." lines; ``start_timer`` runs the thread that prints them (tests call
    ``tick`` themselves)."""

    tty: bool | None = None
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = datetime.now
    console: Any = None
    heartbeat: float = HEARTBEAT_S
    start_timer: bool = True
    _running: dict[str, _Running] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)  # guards _running only
    _print_lock: threading.Lock = field(default_factory=threading.Lock)
    _live: Any = None
    _timer: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.tty is None:  # a dumb terminal cannot redraw a live view: plain lines there
            self.tty = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"

    # -- output ------------------------------------------------------------------------------------
    def _line(self, text: str, err: bool = False, stamp: bool = True) -> None:
        # Never call into rich holding ``_lock``: the live view's refresh thread holds rich's own
        # lock while it asks ``rows`` (which takes ``_lock``) what to draw.
        live = self._live
        if not self.tty:
            with self._print_lock:  # the heartbeat thread prints too
                click.echo(f"{self.now():%H:%M:%S} {text}" if stamp else text, err=err)
        elif live is not None and not err:  # above the live view
            live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:  # the live view redirects stderr above itself too
            click.echo(text, err=err)

    def _say(self, step: Step, text: str, err: bool = False) -> None:
        self._line(f"{step.address}: {text}", err)

    # -- the engine's hooks ----------------------------------------------------------------------
    def pre_step(self, step: Step) -> None:
        with self._lock:
            self._running[step.id] = _Running(step, self.clock())
        self._start()
        if not self.tty:  # on a terminal the live view shows it
            self._say(step, f"{VERBS[step.kind]}...{_params(step)}")

    def post_step(self, step: Step, result: StepOutcome, elapsed: float) -> None:
        self._done(step)
        if result.outcome == "cancelled":
            self._say(step, f"stopped ({result.reason}) after {elapsed:.1f}s")
        else:
            self._say(step, f"{result.outcome} after {elapsed:.1f}s{_params(step)}")

    def step_failed(self, step: Step, error: Exception) -> None:
        self._done(step)
        message = str(error).removeprefix(f"{step.address}: ")
        lines = message.splitlines() or [""]
        self._say(step, f"{step.kind} failed: {lines[0]}", err=True)
        shown = set(lines)
        for line in lines[1:]:  # continuation lines belong to the stamped line above them
            self._line(f"    {line}", err=True, stamp=False)
        if isinstance(error, GateFailed):  # what was measured, as a table under the error
            for line in verdict_table(error.verdict):
                self._line(f"    {line}", err=True, stamp=False)
        detail = [d for d in getattr(error, "detail", None) or [] if d not in shown]
        if detail:
            self._line("  its last log lines:", err=True, stamp=False)
            for line in detail:
                self._line(f"    {line}", err=True, stamp=False)

    def step_skipped(self, step: Step, reason: str) -> None:
        self._say(step, f"{step.kind} not started: {reason}")

    def step_retrying(self, step: Step, attempt: int, delay: float, error: Exception) -> None:
        self._say(step, f"temporary error (attempt {attempt}), retrying in {delay:.1f}s: {error}")

    def batch_started(self, step: Step, batch: Batch, total: int) -> None:
        with self._lock:
            running = self._running.get(step.id)
            if running is not None:
                running.batch, running.status = f"batch {batch.index}/{total}", ""
        if not self.tty:
            noun = "instance" if batch.size == 1 else "instances"
            self._say(step, f"rollout batch {batch.index}/{total} started ({batch.size} {noun})")

    def batch_finished(self, step: Step, batch: Batch, total: int, elapsed: float = 0.0) -> None:
        self._say(step, f"rollout batch {batch.index}/{total} done ({elapsed:.1f}s)")

    def event(self, step: Step, line: str) -> None:
        text = line.removeprefix(f"{step.address}: ")
        with self._lock:
            running = self._running.get(step.id)
            if running is not None:
                running.status = ""  # the line says what happened; the status said what was going on
        self._say(step, text)

    def gate_progress(self, step: Step, label: str, verdict: Verdict, elapsed: float, bake: float) -> None:
        with self._lock:  # the live line: "batch 2/5 baking 30s (12s): 412 requests, 0.2% errors, ..."
            running = self._running.get(step.id)
            if running is not None:
                running.status = progress_words(label, verdict, elapsed, bake)

    def gate_judged(self, step: Step, label: str, verdict: Verdict) -> None:
        with self._lock:
            running = self._running.get(step.id)
            if running is not None:
                running.status = ""
        if verdict.result == "pass":
            self._say(step, f"{label} passed its gate: {verdict.summary()}")
        elif verdict.result == "inconclusive":
            analysis = verdict.gate.analysis
            then = {"proceed": "going on without a verdict", "wait": "baking again (on_inconclusive: wait)",
                    "fail": "that fails it"}[analysis.on_inconclusive]
            self._say(step, f"Warning: {label} is INCONCLUSIVE: {verdict.summary()}, fewer than "
                            f"min_requests {analysis.min_requests}; {then} (on_inconclusive: "
                            f"{analysis.on_inconclusive})", err=True)

    def status(self, step: Step, text: str) -> None:
        with self._lock:
            running = self._running.get(step.id)
            if running is not None:
                running.status = text

    # -- plain output: heartbeats ----------------------------------------------------------------
    def tick(self) -> None:
        """Print a "still ..." line for each step that crossed another ``heartbeat`` seconds."""
        if self.tty:
            return
        due: list[tuple[Step, str]] = []
        with self._lock:
            now = self.clock()
            for running in self._running.values():
                elapsed = now - running.started
                if elapsed < self.heartbeat * (running.beats + 1):
                    continue
                running.beats = int(elapsed // self.heartbeat)
                doing = running.doing()
                verb = VERBS[running.step.kind].lower()
                due.append((running.step, f"still {verb} ({elapsed:.0f}s elapsed)" + (f": {doing}" if doing else "")))
        for step, text in due:
            self._say(step, text)

    def _run_timer(self) -> None:
        while not self._stop.wait(1.0):
            self.tick()

    # -- the live view -----------------------------------------------------------------------------
    def rows(self) -> list[tuple[str, str, str]]:
        """(address, what it is doing, elapsed) per step in flight: the live view's rows."""
        with self._lock:
            now = self.clock()
            out = []
            for running in self._running.values():
                doing = VERBS[running.step.kind].lower()
                if running.doing():
                    doing += f": {running.doing()}"
                out.append((running.step.address, doing, _elapsed(now - running.started)))
            return out

    def __rich__(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, style="dim")
        table.add_column(overflow="ellipsis", no_wrap=True)
        for address, doing, elapsed in self.rows():
            table.add_row(Spinner("dots"), address, elapsed, doing)
        return table

    def _start(self) -> None:
        """The live view on a terminal, the heartbeat timer elsewhere (once, at the first step;
        the engine's hook calls never overlap)."""
        if self.tty and self._live is None:
            from rich.live import Live

            self._live = Live(self, console=self.console, refresh_per_second=8, transient=True)
            self._live.start()
        elif not self.tty and self.start_timer and self._timer is None:
            self._timer = threading.Thread(target=self._run_timer, name="recon-progress", daemon=True)
            self._timer.start()

    def _done(self, step: Step) -> None:
        with self._lock:
            self._running.pop(step.id, None)

    def close(self) -> None:
        self._stop.set()
        timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=2.0)  # it wakes within a second: nothing of this run outlives it
        live, self._live = self._live, None
        if live is not None:
            live.stop()


def _params(step: Step) -> str:
    """What a scale or a traffic step sets: `` (1 -> 3 instances)``, `` (blue=90%, green=10%)``."""
    p = step.params
    if isinstance(p, ScaleParams):
        return f" ({p.from_} -> {p.to} instances)"
    if isinstance(p, TrafficParams):
        return f" ({traffic_text(p)})"
    return ""


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def traffic_text(params: TrafficParams) -> str:
    traffic, mirror = params.traffic, params.mirror_traffic
    text = ", ".join(f"{k}={v}%" for k, v in sorted(traffic.items())) or "no traffic"
    if mirror:
        text += "; mirror " + ", ".join(f"{k}={v}%" for k, v in sorted(mirror.items()))
    return text


__all__ = ["HEARTBEAT_S", "VERBS", "CliHooks", "traffic_text"]

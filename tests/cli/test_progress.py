"""``CliHooks``: how apply shows its progress. Plain timestamped lines without a terminal, with a
"still ..." line every ``heartbeat`` seconds of a long step; a live view on a terminal with one row
per step in flight (spinner, elapsed time, what it is doing). The clocks are injected: nothing here
waits or asserts a timing."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta

import pytest
from rich.console import Console

from reconciler.apply.outcomes import StepOutcome
from reconciler.cli.progress import CliHooks
from reconciler.plan.types import Batch, Step, StepKind

ENV = Step(id="create:environment.e:1", kind=StepKind.CREATE, address="environment.e:1")
BLUE = Step(
    id="rollout:deployment.ep.blue",
    kind=StepKind.ROLLOUT,
    address="deployment.ep.blue",
    params={"instances": 4, "batch_size": 1},
)
TRAFFIC = Step(
    id="set_traffic:endpoint.ep",
    kind=StepKind.SET_TRAFFIC,
    address="endpoint.ep",
    params={"traffic": {"blue": 90, "green": 10}, "mirror_traffic": {}, "phase": "final"},
)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return datetime(2026, 1, 2, 3, 4, 5) + timedelta(seconds=self.t - 100.0)


def _done(step: Step, word: str, elapsed: float) -> StepOutcome:
    return StepOutcome(step.id, step.address, step.kind, word, elapsed=elapsed)


def test_plain_lines_are_timestamped_and_a_long_step_says_what_it_still_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = Clock()
    hooks = CliHooks(tty=False, clock=clock, now=clock.wall, start_timer=False)
    hooks.pre_step(ENV)
    hooks.event(ENV, "building a virtualenv (pip install numpy); full log: .recon/logs/environments/e-1.log")
    hooks.status(ENV, "collecting numpy")
    for t in (9.0, 10.0, 15.0, 21.5):  # one line at 10 s, none at 15, one at 21.5 (the 20 s mark)
        clock.t = 100.0 + t
        hooks.tick()
    hooks.status(ENV, "installing 3 packages")
    clock.t = 130.0
    hooks.tick()
    hooks.event(ENV, "virtualenv ready in 30.0s (3 packages installed)")
    hooks.post_step(ENV, _done(ENV, "created", 30.0), 30.0)
    hooks.close()
    assert capsys.readouterr().out.splitlines() == [
        "03:04:05 environment.e:1: Creating...",
        "03:04:05 environment.e:1: building a virtualenv (pip install numpy); full log: "
        ".recon/logs/environments/e-1.log",
        "03:04:15 environment.e:1: still creating (10s elapsed): collecting numpy",
        "03:04:26 environment.e:1: still creating (22s elapsed): collecting numpy",
        "03:04:35 environment.e:1: still creating (30s elapsed): installing 3 packages",
        "03:04:35 environment.e:1: virtualenv ready in 30.0s (3 packages installed)",
        "03:04:35 environment.e:1: created after 30.0s",
    ]


def test_plain_lines_for_batches_and_traffic(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    hooks = CliHooks(tty=False, clock=clock, now=clock.wall, start_timer=False)
    hooks.pre_step(BLUE)
    hooks.batch_started(BLUE, Batch(index=1, size=1), 4)
    hooks.event(BLUE, "starting instance(s) 5")
    clock.t = 111.0
    hooks.tick()
    hooks.batch_finished(BLUE, Batch(index=1, size=1), 4, 11.0)
    hooks.post_step(BLUE, _done(BLUE, "rolled out", 11.0), 11.0)
    hooks.pre_step(TRAFFIC)
    hooks.post_step(TRAFFIC, _done(TRAFFIC, "routed", 0.0), 0.0)
    assert capsys.readouterr().out.splitlines() == [
        "03:04:05 deployment.ep.blue: Rolling out...",
        "03:04:05 deployment.ep.blue: rollout batch 1/4 started (1 instance)",
        "03:04:05 deployment.ep.blue: starting instance(s) 5",
        "03:04:16 deployment.ep.blue: still rolling out (11s elapsed): batch 1/4",
        "03:04:16 deployment.ep.blue: rollout batch 1/4 done (11.0s)",
        "03:04:16 deployment.ep.blue: rolled out after 11.0s",
        "03:04:16 endpoint.ep: Setting traffic... (blue=90%, green=10%)",
        "03:04:16 endpoint.ep: routed after 0.0s (blue=90%, green=10%)",
    ]


def test_a_failure_prints_its_error_and_detail_once_without_the_address_twice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from reconciler.model.errors import PermanentError

    clock = Clock()
    hooks = CliHooks(tty=False, clock=clock, now=clock.wall, start_timer=False)
    hooks.pre_step(BLUE)
    error = PermanentError(
        "deployment.ep.blue: instance 5 exited while starting; the old instances keep serving",
        detail=["Traceback (most recent call last):", "RuntimeError: boom"],
    )
    hooks.step_failed(BLUE, error)
    assert capsys.readouterr().err.splitlines() == [
        "03:04:05 deployment.ep.blue: rollout failed: instance 5 exited while starting; "
        "the old instances keep serving",
        "  its last log lines:",
        "    Traceback (most recent call last):",
        "    RuntimeError: boom",
    ]


def test_the_live_view_has_a_row_per_step_in_flight_with_its_elapsed_time_and_status() -> None:
    clock = Clock()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    hooks = CliHooks(tty=True, clock=clock, console=console)
    hooks.pre_step(ENV)
    hooks.pre_step(BLUE)
    hooks.status(ENV, "collecting numpy>=2")
    hooks.batch_started(BLUE, Batch(index=2, size=1), 4)
    clock.t = 175.0
    assert hooks.rows() == [
        ("environment.e:1", "creating: collecting numpy>=2", "1m15s"),
        ("deployment.ep.blue", "rolling out: batch 2/4", "1m15s"),
    ]
    frame = io.StringIO()
    Console(file=frame, width=120, color_system=None).print(hooks)
    lines = [line.rstrip() for line in frame.getvalue().splitlines()]
    assert re.fullmatch(r". environment\.e:1    1m15s creating: collecting numpy>=2", lines[0]), lines
    assert re.fullmatch(r". deployment\.ep\.blue 1m15s rolling out: batch 2/4", lines[1]), lines
    hooks.post_step(ENV, _done(ENV, "created", 75.0), 75.0)
    assert [r[0] for r in hooks.rows()] == ["deployment.ep.blue"]
    hooks.close()
    shown = out.getvalue()
    # lines worth keeping are printed above the view, without timestamps; that a step started is
    # the view's to show
    assert "environment.e:1: created after 75.0s\n" in shown and "Creating..." not in shown
    assert not re.search(r"^\d\d:\d\d:\d\d ", shown, re.MULTILINE)

"""Readiness and liveness probes: the settings a deployment's probe YAML means (with Azure's
defaults), how long an instance may take to become ready, a plain HTTP GET on loopback, and what a
batch whose new instances did not become ready reports."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

DEFAULT_PROBE = {"initial_delay": 10, "period": 10, "timeout": 2, "success_threshold": 1, "failure_threshold": 30}


@dataclass
class StartFailure:
    """New instances that did not become ready: which one, why, and the last lines of its log."""

    instance_id: int
    reason: str
    log_tail: list[str]


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


_I = TypeVar("_I", bound=_HasId)


def wait_ready(pending: Sequence[_I], probe: Mapping[str, Any] | None, poll: Callable[[_I], bool | str],
               tail: Callable[[_I], list[str]], interval: float = 0.05) -> StartFailure | None:
    """Poll every instance of ``pending`` until each is ready, within the readiness probe's budget.

    ``poll(instance)`` answers True (ready), False (not yet), or why the instance failed (it exited);
    ``tail(instance)`` gives its last log lines. The first failure is returned (None: all ready)."""
    budget = ready_budget(probe)
    deadline = time.monotonic() + budget
    waiting = list(pending)
    while waiting:
        for inst in list(waiting):
            got = poll(inst)
            if isinstance(got, str):
                return StartFailure(inst.id, got, tail(inst))
            if got:
                waiting.remove(inst)
        if waiting and time.monotonic() >= deadline:
            inst = waiting[0]
            return StartFailure(inst.id, f"instance {inst.id} was not ready after {budget:g}s "
                                "(readiness_probe: initial_delay + period * failure_threshold)", tail(inst))
        if waiting:
            time.sleep(interval)
    return None


def probe_settings(probe: Mapping[str, Any] | None) -> dict[str, float]:
    merged = {**DEFAULT_PROBE, **{k: v for k, v in (probe or {}).items() if v is not None}}
    return {k: float(merged[k]) for k in DEFAULT_PROBE}


def ready_budget(probe: Mapping[str, Any] | None) -> float:
    """How long an instance may take to become ready: initial_delay + period * failure_threshold."""
    settings = probe_settings(probe)
    return settings["initial_delay"] + settings["period"] * settings["failure_threshold"]


def http_get(port: int, path: str, timeout: float, token: str | None = None) -> tuple[int, bytes] | None:
    """GET http://127.0.0.1:PORT/PATH (with ``Authorization: Bearer TOKEN`` when given): (status, body),
    or None when nothing answered in time."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()

"""Shared helpers of the state tests (a module with a unique name, so any test file can import it)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.cli.registries import open_state_manager
from reconciler.model.settings import StateSettings
from reconciler.state.backend import StateBackend
from reconciler.state.document import State, StateResource
from reconciler.state.manager import StateManager
from states import open_backend

WORKER = Path(__file__).with_name("state_worker.py")


@dataclass
class Target:
    """One state store (a file under ``root`` or a named state in PostgreSQL) and its settings."""

    kind: str
    root: Path
    settings: dict[str, Any]
    password: str = ""
    _opened: list[Any] = field(default_factory=list)

    def backend(self) -> StateBackend:
        b = open_backend(self.root, StateSettings(**self.settings))
        self._opened.append(b)
        return b

    def manager(self) -> StateManager:
        m = open_state_manager(self.root, self.settings)
        self._opened.append(m)
        return m

    def spawn(self, mode: str, *args: str) -> subprocess.Popen[str]:
        """A separate process running tests/states/state_worker.py against this store."""
        cmd = [sys.executable, str(WORKER), mode, str(self.root), json.dumps(self.settings), *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def close(self) -> None:
        for obj in self._opened:
            close = getattr(obj, "close", None)
            if callable(close):
                close()


def res(address: str, **attrs: object) -> StateResource:
    kind, _, name = address.partition(".")
    return StateResource(address=address, type=kind, name=name, provider="fake", attributes=dict(attrs))  # type: ignore[arg-type]


def with_resources(state: State, *addresses: str) -> State:
    resources = dict(state.resources) | {a: res(a, n=1) for a in addresses}
    return state.model_copy(update={"resources": resources})


def wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 15.0) -> str:
    """The first line of ``proc``'s stdout starting with ``prefix``."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"worker never printed {prefix!r}: {proc.stderr.read()}")

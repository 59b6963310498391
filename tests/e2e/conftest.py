"""End-to-end fixtures: the real ``recon`` command in a subprocess, real processes, real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Recon:
    """Runs ``recon -C root ...`` as a user would, in its own process."""

    root: Path
    env: dict[str, str]

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler", "-C", str(self.root), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"recon {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    def keys(self, endpoint: str) -> dict[str, str]:
        return json.loads(self("keys", endpoint).stdout)

    def state(self) -> dict[str, object]:
        return json.loads(self("state", "pull").stdout)


@pytest.fixture
def recon_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    # virtual environments are shared by every test of the session (and by CI runs on one machine)
    env.setdefault("RECON_CACHE_DIR", str(Path.home() / ".cache" / "recon"))
    return env


@pytest.fixture
def make_recon(recon_env: dict[str, str]) -> Iterator[object]:
    made: list[Recon] = []

    def make(root: Path) -> Recon:
        r = Recon(root=root, env=recon_env)
        made.append(r)
        return r

    yield make
    # never leave endpoints running behind a test, whatever it asserted
    for r in made:
        if (r.root / ".recon").exists():
            r("destroy", "--auto-approve", check=False)

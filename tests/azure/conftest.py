"""Fixtures of the Azure provider's tests: an emulated workspace (ARM emulator, Azurite, test CA),
a provider on it, and the real ``recon`` command in a subprocess pointed at it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.plan.provider import ProviderContext
from tests.azure.emulator import Emulator
from tests.azure.fixtures import client_environ, emulated_workspace


@pytest.fixture
def arm() -> Iterator[Emulator]:
    with emulated_workspace() as emulator:
        yield emulator


@pytest.fixture
def make_provider(arm: Emulator, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    from providers.azure import AzureProvider

    made: list[AzureProvider] = []

    def make(**settings: Any) -> AzureProvider:
        root = tmp_path / "project"
        root.mkdir(exist_ok=True)
        context = ProviderContext(project_root=root, state_dir=root / ".recon", cache_dir=tmp_path / "cache")
        provider = AzureProvider({**arm.settings(), **settings}, context)
        made.append(provider)
        return provider

    yield make
    for p in made:
        p.close()


@dataclass
class Recon:
    """``recon -C root ...`` in its own process, with the emulator's CA and managed identity."""

    root: Path
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(self.root), *args], capture_output=True,
                              text=True, env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)
        self.outputs += [proc.stdout, proc.stderr]
        if check and proc.returncode != 0:
            raise AssertionError(f"recon {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n"
                                 f"--- stderr\n{proc.stderr}")
        return proc

    def state(self) -> dict[str, Any]:
        return json.loads(self("state", "pull").stdout)  # type: ignore[no-any-return]


@pytest.fixture
def make_recon(arm: Emulator) -> Callable[[Path], Recon]:
    def make(root: Path) -> Recon:
        env = client_environ(arm, dict(os.environ))
        env["NO_COLOR"] = "1"
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        return Recon(root, env)

    return make


def write_recon_yaml(root: Path, arm: Emulator, **extra: Any) -> None:
    settings = {k: v for k, v in arm.settings().items()}
    settings.update(extra)
    (root / "recon.yaml").write_text(yaml.safe_dump({"workspace": "azure-tests", "provider": settings}))

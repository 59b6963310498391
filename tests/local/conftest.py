"""Fixtures of the local provider tests (helpers live in tests/local/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.local import LocalProvider
from providers.shared import procs
from reconciler.plan.provider import ProviderContext
from tests.local.helpers import Project, alive_marked


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "project"
    root.mkdir()
    context = ProviderContext(project_root=root, state_dir=root / ".recon", cache_dir=tmp_path / "cache",
                              workspace="test-ws")
    provider = LocalProvider({"reuse_host_packages": True}, context)
    proj = Project(root, provider)
    yield proj
    provider.close()
    # Safety net: whatever a test left running goes (tests that check cleanup do so themselves).
    for pid in alive_marked(provider.state_dir):
        procs.stop(pid, procs.start_time(pid), grace=2.0)

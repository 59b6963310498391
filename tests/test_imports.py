"""Every entry point imports on its own, in a fresh interpreter (no import cycles hidden by order)."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "providers.docker",
    "providers.local",
    "providers.fake",
    "providers.kubernetes",
    "providers.shared.scaling",
    "providers.shared.routing_table",
    "providers.shared.endpoint_files",
    "providers.shared.rolling",
    "providers.shared.observing",
    "states.postgres",
    "reconciler.cli",
    "reconciler.apply.engine",
    "reconciler.apply.project",
    "reconciler.load.loader",
    "reconciler.plan.planner",
    "reconciler.render.markdown",
    "reconciler.render.text",
    "reconciler.state.manager",
]


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module: str) -> None:
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

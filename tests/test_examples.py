"""The shipped examples stay valid: every project under examples/ loads and plans without errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.load.loader import load_project
from reconciler.plan.planner import make_plan
from reconciler.state.document import State

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PROJECTS = sorted(
    [EXAMPLES / "quickstart"] + [p for p in (EXAMPLES / "safe-rollout").glob("0*-*") if p.is_dir()]
)


def test_examples_are_found() -> None:
    assert len(PROJECTS) == 8, PROJECTS


@pytest.mark.parametrize("root", PROJECTS, ids=lambda p: p.name)
def test_example_validates_and_plans(root: Path) -> None:
    desired = load_project(root)
    plan = make_plan(desired, State())
    assert plan.errors == []
    assert plan.counts()["add"] == len(desired.resources) > 0
    assert any(s.kind == "set_traffic" for s in plan.steps)

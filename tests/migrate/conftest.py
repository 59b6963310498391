"""Fixtures of the import-v1 tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.migrate.helpers import V1


@pytest.fixture
def v1(tmp_path: Path) -> V1:
    return V1(root=tmp_path, runner=CliRunner())

"""The log of an environment build (``providers.local.venvs._BuildLog``) with real child processes:
a private file, the command and everything it printed, the status each pip line means, the last
lines of a failed command in the error, and no URL credentials anywhere."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from providers.local.venvs import FAILED_LOG_LINES, _BuildLog, redact
from reconciler.model.errors import PermanentError

PIP_LIKE = """
print("Looking in indexes: https://pypi.org/simple, https://ci:s3cret@pkgs.example.com/simple")
print("Collecting numpy==2.3.1")
print("  Downloading numpy-2.3.1-cp311-cp311-manylinux_2_28_x86_64.whl (16.6 MB)")
print("Processing /tmp/wheels/demo_dep-1.0-py3-none-any.whl")
print("Installing collected packages: numpy, demo-dep")
print("Successfully installed demo-dep-1.0 numpy-2.3.1")
"""


def test_a_command_is_logged_whole_and_its_pip_lines_become_statuses(tmp_path: Path) -> None:
    statuses: list[str] = []
    path = tmp_path / "logs" / "environments" / "e-1.log"
    with _BuildLog(path) as log:
        log.run([sys.executable, "-c", PIP_LIKE, "--index-url", "https://ci:s3cret@pkgs.example.com/simple"],
                "pip install", statuses.append)
    assert statuses == ["collecting numpy==2.3.1", "collecting demo_dep-1.0-py3-none-any.whl", "installing 2 packages"]
    assert log.installed == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith(f"$ {sys.executable} -c ")
    assert "  Downloading numpy-2.3.1" in text and "Successfully installed demo-dep-1.0 numpy-2.3.1" in text
    assert "s3cret" not in text and "https://***@pkgs.example.com/simple" in text


def test_a_failed_command_raises_with_the_logs_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "e-1.log"
    script = "import sys\nfor i in range(50): print(f'line {i}')\nprint('ERROR: no matching distribution')\nsys.exit(3)"
    with pytest.raises(PermanentError) as err, _BuildLog(path) as log:
        log.run([sys.executable, "-c", script], "pip install", lambda _s: None)
    assert str(err.value) == f"pip install failed (exit code 3); its full log: {path}"
    assert len(err.value.detail) == FAILED_LOG_LINES
    assert err.value.detail[-1] == "ERROR: no matching distribution"
    assert "line 0" in path.read_text()  # the file keeps everything


def test_redact_leaves_urls_without_credentials_alone() -> None:
    assert redact("git+https://tok@github.com/o/r.git numpy") == "git+https://***@github.com/o/r.git numpy"
    assert redact("https://pypi.org/simple a@b") == "https://pypi.org/simple a@b"

"""What ``recon apply`` prints while the local provider builds an environment's virtualenv, through
the real CLI without a terminal (as in CI): timestamped lines, one saying what is built and where
its log is, "still creating" lines while it runs, one saying it is ready; none of pip's own output
(its progress bars, its resolver's downloads). pip's whole output is in a 0600 log file under
``.recon/logs/``; a failed build prints that log's last lines, once.

Real ``python -m venv`` and real pip, offline: the packages are wheels made here and served from a
folder (``PIP_NO_INDEX``, ``PIP_FIND_LINKS``), including a stand-in for the serving runtime the
builder adds, so the test needs no network."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ENV_YML = """\
$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json
name: {name}
version: "1"
image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
conda_file: {name}.conda.yaml
"""
CONDA = "name: {name}\ndependencies:\n  - python=3.11\n  - pip:\n      - {requirement}\n"
STAMP = re.compile(r"^\d\d:\d\d:\d\d ")


def _wheel(folder: Path, name: str, version: str) -> None:
    """A minimal pure-Python wheel (one empty module), with a correct RECORD."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{name.replace('-', '_')}/__init__.py": b"",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: recon-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as whl:
        for path, data in files.items():
            whl.writestr(path, data)


def _project(tmp_path: Path, name: str, requirement: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "recon.yaml").write_text("workspace: builds\nprovider:\n  kind: local\n")
    (root / "environment.yml").write_text(ENV_YML.format(name=name))
    (root / f"{name}.conda.yaml").write_text(CONDA.format(name=name, requirement=requirement))
    return root


def _apply(root: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    wheels = tmp_path / "wheels"
    if not wheels.is_dir():
        wheels.mkdir()
        _wheel(wheels, "azureml-inference-server-http", "1.5.1")
        _wheel(wheels, "demo-dep", "1.0")
    env = dict(os.environ)
    env.update(
        NO_COLOR="1",
        RECON_CACHE_DIR=str(tmp_path / "cache"),
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheels),
        PIP_CONFIG_FILE=os.devnull,
    )
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "apply", "--auto-approve"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )


def _progress(stdout: str) -> list[str]:
    """The progress lines: after the plan's digest line, before the closing summary."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Plan digest:")) + 1
    return [line for line in lines[start:] if line and not line.startswith("Apply complete!")]


def test_a_build_prints_a_few_timestamped_lines_and_logs_pip_to_a_private_file(tmp_path: Path) -> None:
    root = _project(tmp_path, "demo-env", "demo-dep==1.0")
    done = _apply(root, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    progress = _progress(done.stdout)
    assert all(STAMP.match(line) for line in progress), progress
    said = [STAMP.sub("", line) for line in progress if "still creating" not in line]
    log = ".recon/logs/environments/demo-env-1.log"
    assert said[:2] == [
        "environment.demo-env:1: Creating...",
        "environment.demo-env:1: building a virtualenv (pip install demo-dep==1.0 "
        f"azureml-inference-server-http); full log: {log}",
    ]
    assert re.fullmatch(r"environment\.demo-env:1: virtualenv ready in \d+\.\ds \(2 packages installed\)", said[2])
    assert said[3].startswith("environment.demo-env:1: warning: image ")  # the image cannot run locally
    assert re.fullmatch(r"environment\.demo-env:1: created after \d+\.\ds", said[4])
    assert len(said) == 5
    for line in progress:
        if "still creating" in line:  # every 10 s of a slow build: what it is doing, for how long
            assert re.search(r"still creating \(\d+s elapsed\)(: .+)?$", line), line
    everything = done.stdout + done.stderr
    for pip_says in ("Collecting", "Downloading", "Successfully installed", "━", "Looking in links"):
        assert pip_says not in everything

    path = root / log
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "--progress-bar off" in text  # the command line heads the log
    assert "Processing " in text and "demo_dep-1.0-py3-none-any.whl" in text
    assert "Successfully installed azureml-inference-server-http-1.5.1 demo-dep-1.0" in text
    assert "━" not in text


def test_a_failed_build_prints_the_last_lines_of_its_log_once(tmp_path: Path) -> None:
    root = _project(tmp_path, "broken-env", "missing-dep==9.9")
    done = _apply(root, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    err = done.stderr
    log = ".recon/logs/environments/broken-env-1.log"
    assert re.search(
        r"^\d\d:\d\d:\d\d environment\.broken-env:1: create failed: pip install failed \(exit code 1\); "
        rf"its full log: {re.escape(log)}\n  its last log lines:\n",
        err,
        re.MULTILINE,
    ), err
    assert err.count("No matching distribution found for missing-dep==9.9") == 1, err
    # the summary names the step and its error, not the log again
    assert (
        "Not done (1):\n  environment.broken-env:1: create failed: pip install failed (exit code 1); "
        f"its full log: {log}\n"
    ) in err
    assert "No matching distribution" in (root / log).read_text()
    assert not any(p.is_dir() for p in (tmp_path / "cache" / "venvs").iterdir())  # nothing half-built

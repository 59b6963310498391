"""Fixtures shared by every test folder.

- ``corpus``: Azure's own sample files (read-only, unchanged).
- ``sample_project``: a copy of the Azure ML managed sample with the scoring scripts the corpus
  lacks, written with Azure's own contract (init() loads the scikit-learn model from
  AZUREML_MODEL_DIR, run() returns predictions).
- ``runner``: click's CliRunner, as click's own tests do.
- ``retail_prices``: an emulator of the Azure Retail Prices API on 127.0.0.1 (``tests.prices_emulator``),
  in a process of its own for the whole session: ``RECON_PRICES_URL`` points every plan a test
  makes, in this process or in the ``recon`` processes it starts, at it. No test reaches the real API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

# Every state write re-serialises the whole state and compares it with the cached lines it wrote
# (reconciler.state.manager.serialise): a recorded resource changed in place fails the test that did it.
os.environ.setdefault("RECON_VERIFY_STATE_CACHE", "1")

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "azureml-examples"
if not CORPUS.is_dir():  # CI clones main with shared/ beside it
    CORPUS = Path(os.environ.get("RECON_CORPUS", "/work/shared/corpus/azureml-examples"))

ONLINE = CORPUS / "cli" / "endpoints" / "online"

# Azure's sample scoring script for model-1/model-2 (azureml-examples onlinescoring/score.py),
# rewritten here because the corpus carries data only.
SKLEARN_SCORE_PY = '''\
import json
import logging
import os

import joblib
import numpy


def init():
    global model
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model/sklearn_regression_model.pkl")
    model = joblib.load(model_path)
    logging.info("Init complete")


def run(raw_data):
    logging.info("model: request received")
    data = json.loads(raw_data)["data"]
    data = numpy.array(data)
    result = model.predict(data)
    logging.info("Request processed")
    return result.tolist()
'''


@pytest.fixture(scope="session", autouse=True)
def retail_prices() -> Iterator[str]:
    """The emulated Retail Prices API's URL, in ``RECON_PRICES_URL`` for the whole session. The
    emulator runs in a process of its own: a thread here would change how recon parses (it forks
    workers only in a process without other threads)."""
    from reconciler.apply.prices import ENV_URL

    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.prices_emulator"],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    url = proc.stdout.readline().strip().removeprefix(f"{ENV_URL}=")
    assert url.startswith("http://127.0.0.1:"), url
    before = os.environ.get(ENV_URL)
    os.environ[ENV_URL] = url
    yield url
    if before is None:
        os.environ.pop(ENV_URL, None)
    else:
        os.environ[ENV_URL] = before
    proc.stdin.close()  # the emulator stops when its stdin closes
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"the Azure ML sample corpus is missing at {CORPUS}")
    return CORPUS


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def copy_online_samples(dest: Path, *, with_scripts: bool = True) -> Path:
    """Copy model-1, model-2 and managed/sample into ``dest`` keeping Azure's relative layout.

    Returns the folder of the managed sample (``dest/managed/sample``)."""
    for part in ("model-1", "model-2"):
        shutil.copytree(ONLINE / part, dest / part)
        if with_scripts:
            code = dest / part / "onlinescoring"
            code.mkdir()
            (code / "score.py").write_text(SKLEARN_SCORE_PY)
    sample = dest / "managed" / "sample"
    shutil.copytree(ONLINE / "managed" / "sample", sample)
    return sample


@pytest.fixture
def sample_project(tmp_path: Path) -> Callable[..., Path]:
    """Build a project from the managed sample: ``sample_project("blue-deployment.yml", ...)``.

    The project root is ``tmp_path/online/managed/sample`` with only endpoint.yml and the named
    deployment files kept (the others are moved out of the project)."""

    def make(*deployments: str, endpoint: str = "endpoint.yml") -> Path:
        sample = copy_online_samples(tmp_path / "online")
        unused = tmp_path / "unused"
        unused.mkdir(exist_ok=True)
        for f in sample.iterdir():
            if f.name.endswith(".yml") and f.name not in (endpoint, *deployments):
                f.rename(unused / f.name)
        return sample

    return make

"""End to end on the local provider, through the real ``recon`` command: a v1 AksEndpoint (three
versions: the default, a control and a 10% canary, each with its own scikit-learn model) ->
``recon import-v1`` -> ``recon apply`` -> ``recon invoke`` (each deployment by name, and by the
traffic split) -> ``recon destroy``. The Kubernetes documents are served by the local provider
(``reuse_host_packages: true``: the host's scikit-learn, no virtualenv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy
import pytest
from sklearn.linear_model import LinearRegression  # type: ignore[import-untyped]

from tests.migrate.helpers import write

pytestmark = pytest.mark.slow

SCORE_PY = '''\
import glob
import json
import os

import joblib  # type: ignore[import-untyped]
import numpy


def init():
    global model
    # a model folder is served under AZUREML_MODEL_DIR in a folder of its own name, as in Azure
    (path,) = glob.glob(os.path.join(os.environ["AZUREML_MODEL_DIR"], "**", "model.pkl"), recursive=True)
    model = joblib.load(path)


def run(raw_data):
    data = numpy.array(json.loads(raw_data)["data"])
    return [round(float(x), 6) for x in model.predict(data)]
'''
CONDA = {"name": "scoring", "dependencies": ["python=3.11", {"pip": ["scikit-learn", "joblib", "numpy"]}]}
SLOPES = {"prod": 2.0, "control": 3.0, "canary": 5.0}


def _model(folder: Path, slope: float) -> Path:
    """y = slope * x + 1, fitted for real."""
    folder.mkdir(parents=True)
    x = numpy.arange(10, dtype=float).reshape(-1, 1)
    joblib.dump(LinearRegression().fit(x, slope * x.ravel() + 1.0), folder / "model.pkl")
    return folder


def _pids_of(root: Path) -> list[int]:
    """Processes started for this project (their environment or command line names its state dir)."""
    marker = str(root / ".recon").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (marker in (entry / "environ").read_bytes()
                                         or marker in (entry / "cmdline").read_bytes()):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _recon(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"recon {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _v1_files(root: Path) -> list[str]:
    (root / "src").mkdir()
    (root / "src" / "score.py").write_text(SCORE_PY)
    ic = write(root / "inferenceconfig.json", {
        "entryScript": "score.py", "sourceDirectory": "src",
        "environment": {"name": "sklearn-env", "python": {"condaDependencies": CONDA},
                        "docker": {"baseImage": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"}}})
    for name, slope in SLOPES.items():
        _model(root / "models" / name, slope)
    dc = write(root / "deploymentconfig.json", {
        "computeType": "aks", "versionName": "prod", "authEnabled": True,
        "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1},
        "livenessProbeRequirements": {"initialDelaySeconds": 5},
        "keys": {"primaryKey": "v1-primary-key-never-copied", "secondaryKey": "v1-secondary-key-never-copied"}})
    versions = write(root / "versions.yaml", [
        {"version_name": "control", "is_control_version_type": True, "traffic_percentile": 0,
         "model_path": "models/control"},
        {"version_name": "canary", "traffic_percentile": 10, "model_path": "models/canary"},
    ])
    return ["import-v1", "--dc", str(dc), "--ic", str(ic), "--versions", str(versions), "-m", "fraud:1",
            "--model-path", "models/prod", "-n", "fraud-svc", "--compute", "aks-cluster", "--out", "v2"]


def test_import_apply_invoke_destroy(tmp_path: Path) -> None:
    imported = _recon(*_v1_files(tmp_path), cwd=tmp_path)
    assert "Wrote v2/MIGRATION.md" in imported.stdout
    out = tmp_path / "v2"
    (out / "recon.yaml").write_text("provider: {kind: local, reuse_host_packages: true}\n")
    request = write(tmp_path / "request.json", {"data": [[1.0], [2.0]]})
    try:
        _recon("-C", str(out), "validate", cwd=tmp_path)
        _recon("-C", str(out), "apply", "--auto-approve", cwd=tmp_path)
        state: Any = json.loads(_recon("-C", str(out), "state", "pull", cwd=tmp_path).stdout)
        ep = state["resources"]["endpoint.fraud-svc"]["attributes"]
        assert ep["traffic"] == {"prod": 90, "canary": 10} and ep["kind"] == "kubernetes"
        dep = state["resources"]["deployment.fraud-svc.prod"]["attributes"]
        assert dep["liveness_probe"]["initial_delay"] == 5 and dep["request_settings"]["request_timeout_ms"] == 60000
        for name, slope in SLOPES.items():
            answer = _recon("-C", str(out), "invoke", "fraud-svc", "--deployment", name, "--request-file",
                            str(request), cwd=tmp_path)
            assert json.loads(answer.stdout) == pytest.approx([slope + 1.0, 2 * slope + 1.0]), name
            assert f"answered by deployment {name}" in answer.stderr
        served = set()
        for _ in range(20):  # by the split: only prod (90%) and canary (10%) may answer
            answer = _recon("-C", str(out), "invoke", "fraud-svc", "--request-file", str(request), cwd=tmp_path)
            served.add(answer.stderr.strip().rsplit(" ", 1)[-1].rstrip(")"))
        assert "prod" in served and served <= {"prod", "canary"}, served
        state_text = (out / ".recon" / "state.json").read_text()
        assert "never-copied" not in state_text
        assert _pids_of(out), "the endpoint is served by processes of this project"
    finally:
        destroyed = _recon("-C", str(out), "destroy", "--auto-approve", cwd=tmp_path, check=False)
    assert destroyed.returncode == 0, destroyed.stderr
    after: Any = json.loads(_recon("-C", str(out), "state", "pull", cwd=tmp_path).stdout)
    assert after["resources"] == {}
    assert [p for p in _pids_of(out) if p != os.getpid()] == [], "destroy leaves no process behind"


def test_aks_webservice_as_managed_endpoint(tmp_path: Path) -> None:
    """An AksWebservice from the SDK's snake_case kwargs, fixed at 2 replicas, moved to a managed
    endpoint (``--target managed --instance-type``), served, scored and destroyed."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text(SCORE_PY)
    _model(tmp_path / "model", 4.0)
    write(tmp_path / "ic.json", {"entryScript": "score.py", "sourceDirectory": "src",
                                 "environment": {"python": {"condaDependencies": CONDA}}})
    write(tmp_path / "deploy_configuration.yaml", {"autoscale_enabled": False, "num_replicas": 2,
                                                   "scoring_timeout_ms": 20000, "primary_key": "v1-kwarg-key-xyz"})
    _recon("import-v1", "--dc", "deploy_configuration.yaml", "--ic", "ic.json", "--model-path", "model",
           "-n", "scorer", "--target", "managed", "--instance-type", "Standard_DS3_v2", "--out", "v2", cwd=tmp_path)
    out = tmp_path / "v2"
    (out / "recon.yaml").write_text("provider: {kind: local, reuse_host_packages: true}\n")
    request = write(tmp_path / "request.json", {"data": [[0.0], [3.0]]})
    try:
        _recon("-C", str(out), "apply", "--auto-approve", cwd=tmp_path)
        state: Any = json.loads(_recon("-C", str(out), "state", "pull", cwd=tmp_path).stdout)
        dep = state["resources"]["deployment.scorer.blue"]
        assert dep["attributes"]["kind"] == "managed" and dep["attributes"]["instance_count"] == 2
        assert dep["attributes"]["request_settings"]["request_timeout_ms"] == 20000
        answer = _recon("-C", str(out), "invoke", "scorer", "--request-file", str(request), cwd=tmp_path)
        assert json.loads(answer.stdout) == pytest.approx([1.0, 13.0])
        assert "v1-kwarg-key-xyz" not in (out / ".recon" / "state.json").read_text()
    finally:
        destroyed = _recon("-C", str(out), "destroy", "--auto-approve", cwd=tmp_path, check=False)
    assert destroyed.returncode == 0, destroyed.stderr
    assert [p for p in _pids_of(out) if p != os.getpid()] == []

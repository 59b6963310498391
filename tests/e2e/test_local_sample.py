"""The Azure ML managed sample, applied unchanged on the local provider, through the real CLI.

The YAML files are Azure's own (copied, not edited); the corpus has no scoring scripts, so the
fixture writes Azure's score.py contract beside them. The environment is built for real from the
sample's conda file (numpy, scikit-learn, scipy, azureml-inference-server-http).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXPECTED = [11055.97724553, 4503.07953611]  # model-1 on sample-request.json (scikit-learn 1.7)


def _pids_of(root: Path) -> list[int]:
    """Processes started for this project (their environment names the project's state dir)."""
    marker = str(root / ".recon").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in environ or marker in cmdline:
            pids.append(int(entry.name))
    return pids


def test_sample_applies_unchanged_and_answers_invoke(sample_project, make_recon) -> None:
    root = sample_project("blue-deployment.yml")
    recon = make_recon(root)

    plan = recon("plan", "--format", "json")
    body = json.loads(plan.stdout)
    actions = {rc["address"]: rc["change"]["actions"] for rc in body["resource_changes"]}
    assert actions["endpoint.my-endpoint"] == ["create"]
    assert actions["deployment.my-endpoint.blue"] == ["create"]

    recon("apply", "--auto-approve", timeout=1200)
    request = root.parent.parent / "model-1" / "sample-request.json"
    # Azure's endpoint.yml declares no traffic (the tutorial routes by deployment first), so the
    # request names the deployment, as `az ml online-endpoint invoke --deployment-name blue` does
    answer = recon("invoke", "my-endpoint", "--deployment", "blue", "--request-file", str(request))
    assert json.loads(answer.stdout) == pytest.approx(EXPECTED, rel=1e-6)

    # the key is never in the state
    keys = recon.keys("my-endpoint")
    state_text = (root / ".recon" / "state.json").read_text()
    assert keys["primaryKey"] not in state_text and keys["secondaryKey"] not in state_text
    assert keys["scoring_uri"].startswith("http://127.0.0.1:")

    # nothing to do on a second plan
    again = recon("plan", "--detailed-exitcode", check=False)
    assert again.returncode == 0, again.stdout + again.stderr

    assert _pids_of(root), "the endpoint should be served by processes of this project"
    recon("destroy", "--auto-approve")
    leftovers = [p for p in _pids_of(root) if p != os.getpid()]
    for pid in leftovers:  # clean up before failing, so a failure does not leak processes
        os.kill(pid, signal.SIGKILL)
    assert leftovers == [], "destroy must leave no process behind"

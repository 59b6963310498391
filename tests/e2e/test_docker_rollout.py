"""Azure's safe-rollout sequence on the Docker provider (the twin of test_local_rollout.py).

A load generator runs through every apply: no request may fail, and the split measured over at
least 1,000 requests must be within 5 points of the declared one. Then a rolling update in
batches of ceil(0.2 * N) and a failing version that is rolled back while the old one serves.
"""

from __future__ import annotations

import json

import pytest

from tests.docker.engine import labelled_containers, require_engine
from tests.e2e.load import LoadGenerator
from tests.e2e.test_local_rollout import _edit, run_safe_rollout

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RECON_YAML = """\
workspace: docker-rollout
provider:
  kind: docker
  keep_images: true
  image_overrides:
    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest": "local/py-base:bookworm"
"""


@pytest.fixture(autouse=True)
def _engine() -> None:
    require_engine()


def test_safe_rollout_sequence_under_load_on_docker(sample_project, make_recon) -> None:
    root = sample_project("blue-deployment.yml")
    (root / "recon.yaml").write_text(RECON_YAML)
    run_safe_rollout(root, make_recon(root))
    state_dir = (root / ".recon").resolve()
    assert not [c for c in labelled_containers(state_dir) if c.labels.get("recon.deployment") == "blue"]


def test_rolling_update_in_batches_and_a_failing_version_rolls_back(sample_project, make_recon) -> None:
    root = sample_project("blue-deployment.yml")
    (root / "recon.yaml").write_text(RECON_YAML)
    endpoint = root / "endpoint.yml"
    endpoint.write_text(endpoint.read_text() + "traffic:\n  blue: 100\n")
    blue = root / "blue-deployment.yml"
    _edit(blue, "instance_count: 1", "instance_count: 3\nenvironment_variables:\n  RELEASE: \"1\"")
    recon = make_recon(root)
    recon("apply", "--auto-approve", timeout=1200)
    keys = recon.keys("my-endpoint")
    request = (root.parent.parent / "model-1" / "sample-request.json").read_bytes()
    before = {i["name"] for i in recon.state()["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"]}

    with LoadGenerator(keys["scoring_uri"], keys["primaryKey"], request, workers=2) as load:
        load.wait_for(50)
        _edit(blue, 'RELEASE: "1"', 'RELEASE: "2"')
        plan = json.loads(recon("plan", "--format", "json").stdout)
        rollout = [s for s in plan["steps"] if s["kind"] == "rollout"]
        assert len(rollout) == 1 and [b["size"] for b in rollout[0]["batches"]] == [1, 1, 1]
        recon("apply", "--auto-approve")
        state = recon.state()["resources"]["deployment.my-endpoint.blue"]
        assert state["attributes"]["environment_variables"] == {"RELEASE": "2"}
        assert len(state["outputs"]["instances"]) == 3
        assert not before & {i["name"] for i in state["outputs"]["instances"]}, "every container was replaced"
        stats = load.wait_for(100)
        assert stats.failed == 0, stats.failures[:5]

        # a new version whose init() raises: rolled back, the old one keeps serving
        score = root.parent.parent / "model-1" / "onlinescoring" / "score.py"
        score.write_text(score.read_text().replace(
            "def init():\n", "def init():\n    raise RuntimeError('model file is corrupt')\n"))
        failed = recon("apply", "--auto-approve", check=False)
        assert failed.returncode == 1
        assert "model file is corrupt" in failed.stdout + failed.stderr
        stats = load.wait_for(200)
        assert stats.failed == 0 and stats.served_by["blue"] >= 200
        assert load.total.failed == 0, load.total.failures[:5]

    state_dir = (root / ".recon").resolve()
    # the 3 recorded instances live in containers (warm starts: in pods) that all run, and nothing else does
    instances = recon.state()["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"]
    holders = {i.get("pod") or i["name"] for i in instances}
    running = [c for c in labelled_containers(state_dir) if c.labels.get("recon.role") in ("instance", "pod")]
    assert len(instances) == 3 and {c.name for c in running} == holders, (instances, [c.name for c in running])
    assert all(c.status == "running" for c in running), "the failed batch was removed"
    pending = recon("plan", "--detailed-exitcode", check=False)
    assert pending.returncode == 2, "the failed rollout is still pending work"

"""Azure's safe-rollout sequence, done declaratively on the local provider: one edit, one apply.

A load generator runs through every apply: no request may fail, and the split measured over at
least 1,000 requests must be within 5 points of the declared one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.load import LoadGenerator

pytestmark = pytest.mark.slow

RECON_YAML = "workspace: rollout-test\nprovider:\n  kind: local\n  reuse_host_packages: true\n"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _assert_split(served: dict[str, float], declared: dict[str, int]) -> None:
    for name, pct in declared.items():
        assert abs(served.get(name, 0.0) - pct) <= 5, f"measured {served}, declared {declared}"


def run_safe_rollout(root: Path, recon: Any) -> None:
    """The sequence itself, for any provider: ``root`` is the sample with its recon.yaml written."""
    endpoint = root / "endpoint.yml"
    request = (root.parent.parent / "model-1" / "sample-request.json").read_bytes()

    # 1. blue with all traffic
    endpoint.write_text(endpoint.read_text() + "traffic:\n  blue: 100\n")
    recon("apply", "--auto-approve", timeout=1200)
    keys = recon.keys("my-endpoint")

    with LoadGenerator(keys["scoring_uri"], keys["primaryKey"], request, workers=2) as load:
        assert load.wait_for(50).failed == 0

        # 2. blue scaled to 2
        _edit(root / "blue-deployment.yml", "instance_count: 1", "instance_count: 2")
        recon("apply", "--auto-approve", timeout=1200)
        state = recon.state()
        blue = state["resources"]["deployment.my-endpoint.blue"]
        assert blue["attributes"]["instance_count"] == 2

        # 3. green added, no traffic
        unused = root.parent.parent.parent / "unused"
        (unused / "green-deployment.yml").rename(root / "green-deployment.yml")
        recon("apply", "--auto-approve", timeout=1200)
        stats = load.wait_for(300)
        assert stats.failed == 0, stats.failures[:5]
        assert set(stats.served_by) == {"blue"}

        # 4. green called by header, no traffic change
        answer = recon("invoke", "my-endpoint", "--deployment", "green", "--request-file",
                       str(root.parent.parent / "model-2" / "sample-request.json"))
        assert len(json.loads(answer.stdout)) == 2

        # 5. 10% mirrored to green: live answers still all from blue
        _edit(endpoint, "traffic:\n  blue: 100\n", "traffic:\n  blue: 100\nmirror_traffic:\n  green: 10\n")
        recon("apply", "--auto-approve", timeout=1200)
        stats = load.wait_for(1000)
        assert stats.failed == 0, stats.failures[:5]
        assert set(stats.served_by) == {"blue"}

        # 6. 90/10
        _edit(endpoint, "traffic:\n  blue: 100\nmirror_traffic:\n  green: 10\n", "traffic:\n  blue: 90\n  green: 10\n")
        recon("apply", "--auto-approve", timeout=1200)
        load.reset()
        stats = load.wait_for(1200)
        assert stats.failed == 0, stats.failures[:5]
        _assert_split(stats.split(), {"blue": 90, "green": 10})

        # 7. 0/100
        _edit(endpoint, "  blue: 90\n  green: 10\n", "  blue: 0\n  green: 100\n")
        recon("apply", "--auto-approve", timeout=1200)
        load.reset()
        stats = load.wait_for(1000)
        assert stats.failed == 0, stats.failures[:5]
        _assert_split(stats.split(), {"green": 100})

        # 8. blue removed
        (root / "blue-deployment.yml").rename(unused / "blue-deployment.yml")
        _edit(endpoint, "  blue: 0\n  green: 100\n", "  green: 100\n")
        recon("apply", "--auto-approve", timeout=1200)
        stats = load.wait_for(300)
        assert stats.failed == 0, stats.failures[:5]
        assert set(stats.served_by) == {"green"}

        assert load.total.failed == 0, load.total.failures[:5]
        assert load.total.ok > 3000

    assert "deployment.my-endpoint.blue" not in recon.state()["resources"]
    drift = recon("drift", check=False)
    assert drift.returncode == 0, drift.stdout + drift.stderr


def test_safe_rollout_sequence_under_load(sample_project, make_recon) -> None:
    root = sample_project("blue-deployment.yml")
    (root / "recon.yaml").write_text(RECON_YAML)
    run_safe_rollout(root, make_recon(root))


def test_ten_instances_roll_in_five_batches_and_a_failing_version_rolls_back(sample_project, make_recon) -> None:
    root = sample_project("blue-deployment.yml")
    (root / "recon.yaml").write_text(RECON_YAML)
    endpoint = root / "endpoint.yml"
    endpoint.write_text(endpoint.read_text() + "traffic:\n  blue: 100\n")
    blue = root / "blue-deployment.yml"
    _edit(blue, "instance_count: 1", "instance_count: 10\nenvironment_variables:\n  RELEASE: \"1\"")
    recon = make_recon(root)
    recon("apply", "--auto-approve")
    keys = recon.keys("my-endpoint")
    request = (root.parent.parent / "model-1" / "sample-request.json").read_bytes()

    with LoadGenerator(keys["scoring_uri"], keys["primaryKey"], request, workers=4) as load:
        load.wait_for(50)
        _edit(blue, 'RELEASE: "1"', 'RELEASE: "2"')
        plan = json.loads(recon("plan", "--format", "json").stdout)
        rollout = [s for s in plan["steps"] if s["kind"] == "rollout"]
        assert len(rollout) == 1 and [b["size"] for b in rollout[0]["batches"]] == [2, 2, 2, 2, 2]
        recon("apply", "--auto-approve")
        state = recon.state()["resources"]["deployment.my-endpoint.blue"]
        assert state["attributes"]["environment_variables"] == {"RELEASE": "2"}
        assert len(state["outputs"]["instances"]) == 10

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

    pending = recon("plan", "--detailed-exitcode", check=False)
    assert pending.returncode == 2, "the failed rollout is still pending work"

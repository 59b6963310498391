"""What a user sees when the quickstart's scoring script fails, through the real CLI and real
processes (the local provider, the host's packages): a failed rollout's log printed once, the step
that rolls it again described in one sentence, ``logs --instance`` numbered as the instances are,
and ``invoke`` naming both the router's status and the instance's."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
RECON_YAML = "workspace: failures\nprovider:\n  kind: local\n  reuse_host_packages: true\n"


def _quickstart(tmp_path: Path) -> Path:
    root = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, root)
    (root / "recon.yaml").write_text(RECON_YAML)
    return root


def _break_init(root: Path, on: bool) -> None:
    score = root / "onlinescoring" / "score.py"
    text = score.read_text().replace('    raise RuntimeError("init failed on purpose")\n', "")
    if on:
        text = text.replace("def init():\n", 'def init():\n    raise RuntimeError("init failed on purpose")\n')
    score.write_text(text)


def test_a_failed_rollout_shows_its_log_once_and_rolls_again_in_one_sentence(tmp_path, make_recon) -> None:
    root = _quickstart(tmp_path)
    recon = make_recon(root)
    recon("apply", "--auto-approve")

    _break_init(root, on=True)
    failed = recon("apply", "--auto-approve", check=False)
    assert failed.returncode == 1
    out = failed.stdout + failed.stderr
    # the instance's log (with its traceback) once, at the failure; the summary names the step only
    assert out.count("RuntimeError: init failed on purpose") == 1, out
    assert out.count("Traceback (most recent call last)") == 1, out
    assert re.search(
        r"^\d\d:\d\d:\d\d deployment\.my-endpoint\.blue: rollout failed: instance 2 exited while "
        r"starting; the old instances keep serving\n  its last log lines:\n    ",
        failed.stderr,
        re.MULTILINE,
    ), failed.stderr
    summary = failed.stderr[failed.stderr.index("Not done (1):") :].splitlines()
    assert summary[:2] == [
        "Not done (1):",
        "  deployment.my-endpoint.blue: rollout failed: instance 2 exited while starting; "
        "the old instances keep serving",
    ]
    assert summary[2] == "Resources: 0 added, 0 changed, 0 destroyed."

    # the configuration put back: the deployment is rolled again, said in one sentence
    _break_init(root, on=False)
    plan = recon("plan")
    assert (
        "     rolling update of deployment my-endpoint/blue (all again: the last operation failed): "
        "1 instance in 1 batch of 1\n"
    ) in plan.stdout, plan.stdout
    assert "((" not in plan.stdout and "1 instances" not in plan.stdout
    recon("apply", "--auto-approve")

    # instance 1 kept serving the configuration put back; the failed instance 2 is gone
    state = recon.state()
    ids = [i["id"] for i in state["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"]]
    assert ids == [1]
    logs = recon("logs", "deployment.my-endpoint.blue", "--instance", "1")
    assert "init" in logs.stdout.lower()
    missing = recon("logs", "deployment.my-endpoint.blue", "--instance", "2", check=False)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr == "Error: deployment.my-endpoint.blue has no instance 2; its instances: 1\n"
    help_text = recon("logs", "--help").stdout
    assert "0-based" not in help_text and "numbered from 1" in help_text


def test_invoke_names_the_routers_status_and_the_instances(tmp_path, make_recon) -> None:
    root = _quickstart(tmp_path)
    recon = make_recon(root)
    recon("apply", "--auto-approve")
    bad = tmp_path / "bad-request.json"
    bad.write_text(json.dumps({"data": [[1, 2, 3]]}))  # 3 features where the model takes 10
    answer = recon("invoke", "my-endpoint", "--request-file", str(bad), check=False)
    assert answer.returncode == 1
    first = answer.stderr.splitlines()[0]
    assert first.startswith("Error: http://127.0.0.1:"), answer.stderr
    assert (
        "/score answered HTTP 424 (Failed Dependency): deployment blue's instance answered "
        "HTTP 500 (Internal Server Error)"
    ) in first, answer.stderr
    good = recon("invoke", "my-endpoint", "--request-file", str(root / "sample-request.json"))
    assert len(json.loads(good.stdout)) == 2

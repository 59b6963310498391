"""The real ``recon`` command against the emulated workspace: Azure's safe-rollout sequence end to end.

examples/safe-rollout's seven steps (create blue, scale it, add green at 0%, mirror 10% to green,
90/10, 0/100, delete blue), each applied with ``recon apply`` in a subprocess, with faults on the
way (a 429, a 409 while another operation runs, a dropped connection) that must show up in the
apply's output as progress, next to every poll of every long-running operation. After each step the
emulator must hold exactly what the step declares, and a request scored through ``recon invoke``
is answered by a deployment that should answer it. No key, token or SAS ever reaches the state, a
plan or the output.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.azure.conftest import Recon, write_recon_yaml
from tests.azure.emulator import Emulator

pytestmark = pytest.mark.azure
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {  # step -> (deployments and their instance counts, traffic, mirror traffic)
    "01-blue": ({"blue": 1}, {"blue": 100}, {}),
    "02-scale-blue": ({"blue": 2}, {"blue": 100}, {}),
    "03-add-green": ({"blue": 2, "green": 1}, {"blue": 100}, {}),
    "04-mirror-green": ({"blue": 2, "green": 1}, {"blue": 100}, {"green": 10}),
    "05-canary-10": ({"blue": 2, "green": 1}, {"blue": 90, "green": 10}, {}),
    "06-green-100": ({"blue": 2, "green": 1}, {"green": 100}, {}),
    "07-remove-blue": ({"green": 1}, {"green": 100}, {}),
}


def _live(arm: Emulator) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    ep = arm.endpoint("my-endpoint")
    assert ep is not None and ep["properties"]["provisioningState"] == "Succeeded"
    prefix = f"{arm.workspace_path}/onlineEndpoints/my-endpoint/deployments/".lower()
    deps = {p.rsplit("/", 1)[1]: r["sku"]["capacity"] for p, r in arm.resources.items() if p.startswith(prefix)}
    props = ep["properties"]
    return deps, {k: v for k, v in props["traffic"].items() if v}, {k: v for k, v in props["mirrorTraffic"].items() if v}


def _project(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLES / "safe-rollout", tmp_path / "examples" / "safe-rollout",
                    ignore=shutil.ignore_patterns("live", ".recon"))
    shutil.copytree(EXAMPLES / "quickstart", tmp_path / "examples" / "quickstart",
                    ignore=shutil.ignore_patterns(".recon"))
    live = tmp_path / "examples" / "safe-rollout" / "live"
    live.mkdir()
    return live


def _step(live: Path, arm: Emulator, name: str) -> None:
    for old in live.glob("*.yml"):
        old.unlink()
    for f in (live.parent / name).glob("*.yml"):
        shutil.copy(f, live / f.name)
    write_recon_yaml(live, arm)


def test_safe_rollout_end_to_end(arm: Emulator, make_recon: Callable[[Path], Recon], tmp_path: Path) -> None:
    live = _project(tmp_path)
    recon = make_recon(live)
    request = tmp_path / "examples" / "quickstart" / "sample-request.json"
    arm.fault("PUT", r"/deployments/green$", status=429, code="TooManyRequests", message="throttled",
              retry_after="0.05", times=1)
    arm.fault("PATCH", r"/deployments/blue$", kind="drop", times=1)
    outputs: dict[str, str] = {}
    for step in sorted(EXPECTED):
        _step(live, arm, step)
        if step == "05-canary-10":  # someone else's operation on the endpoint is running: 409, then it ends
            arm.fault("PUT", r"/onlineendpoints/my-endpoint$", status=409, code="Conflict",
                      message="an operation on my-endpoint is in progress", retry_after="0.05", times=1)
            arm.fault("PUT", r"/onlineendpoints/my-endpoint$", status=409, code="Conflict",
                      message="an operation on my-endpoint is in progress", times=1)
        applied = recon("apply", "--auto-approve")
        outputs[step] = applied.stdout + applied.stderr
        deps, traffic, mirror = _live(arm)
        assert (deps, traffic, mirror) == EXPECTED[step], (step, outputs[step])
        answer = recon("invoke", "my-endpoint", "--request-file", str(request))
        served = json.loads(answer.stdout)["deployment"]
        assert traffic.get(served), (step, served)
        assert recon("plan", "--detailed-exitcode", check=False).returncode == 0, step  # nothing left to do

    text = "\n".join(outputs.values())
    # every long-running operation is polled to its end, its states visible
    assert re.search(r"deployment\.my-endpoint\.blue: PUT deployment\.my-endpoint\.blue: Creating \(poll 1", text)
    assert "Updating (poll 2" in text and "Succeeded (poll 3" in text
    assert re.search(r"PATCH deployment\.my-endpoint\.blue sku\.capacity=2: HTTP 202, polling Location", outputs["02-scale-blue"])
    assert "InProgress (poll 1" in outputs["02-scale-blue"] and "Succeeded (poll 3" in outputs["02-scale-blue"]
    # a delete is polled to its end too (the provider interface gives delete no progress sink: the
    # emulator's log shows the polls)
    log = [(r["method"], r["path"].rsplit("/", 2)[-2], r["status"]) for r in arm.requests]
    at = log.index(("DELETE", "deployments", 202))
    assert [s for m, kind, s in log[at + 1:at + 4] if kind == "mfeOperationResults"] == [202, 202, 204]
    # the faults: azure-core's retries and recon's 409 wait, as progress
    assert "HTTP 429 Too Many Requests, Retry-After 0.05 s; azure-core retries it" in outputs["03-add-green"]
    assert "connection failed (ServiceResponseError); not resent by azure-core" in outputs["02-scale-blue"]
    assert "temporary error (attempt 1), retrying" in outputs["02-scale-blue"]
    assert "PUT onlineEndpoints/my-endpoint: HTTP 409 Conflict, Retry-After 0.05 s; azure-core retries it" \
        in outputs["05-canary-10"]
    assert "HTTP 409 Conflict (an operation on my-endpoint is in progress); another operation is running, waiting" \
        in outputs["05-canary-10"]
    # traffic only ever named deployments that had Succeeded, and left blue before it was deleted
    puts = arm.calls("PUT", r"/onlineendpoints/my-endpoint$")
    deletes = [i for i, r in enumerate(arm.requests) if r["method"] == "DELETE" and r["path"].endswith("/blue")]
    assert deletes and all("blue" not in (r["body"]["properties"]["traffic"] or {}) or
                           not r["body"]["properties"]["traffic"]["blue"]
                           for r in puts if arm.requests.index(r) > deletes[0] - 1 and r["status"] == 201)
    assert puts[0]["body"]["properties"]["traffic"] == {}  # created without traffic

    # no secret anywhere: state, plans, outputs
    state = json.dumps(recon.state())
    plan_json = recon("plan", "--format", "json").stdout
    keys = [k for pair in arm.keys.values() for k in pair.values()]
    everything = "\n".join([state, plan_json, *recon.outputs])
    for secret in keys + sorted(arm.tokens):
        assert secret not in everything
    assert "sig=" not in everything and "Bearer " not in everything
    recon("destroy", "--auto-approve")
    assert arm.endpoint("my-endpoint") is None

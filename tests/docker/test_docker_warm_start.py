"""Warm starts on the Docker provider against the real engine: instances forked in a pod container
whose launcher imported what ``init()`` loaded, one pod for every batch of a rollout, the old pod
gone after it, ``warm_start: false`` still one container per instance, cold starts when the pod
cannot start, a library that does not import named, and nothing left after a delete."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.docker import DockerProvider, pods
from reconciler.plan.provider import ApplyRequest, ProviderContext
from reconciler.plan.types import Batch
from tests.contract import conftest as contract
from tests.contract.conftest import Harness
from tests.docker.engine import OVERRIDES, labelled_containers, remove_labelled, require_engine
from tests.requests import counted, routed

pytestmark = pytest.mark.docker

BLUE = "deployment.ep.blue"
# ``xml.dom.minidom`` stands for a library: init() imports it, so host.py records it in modules.json
# and a pod's launcher imports it before it forks; the script reports whether it was there already.
SCORE_PY = """\
import json
import os
import sys

PRELOADED = "xml.dom.minidom" in sys.modules


def init():
    global release
    import xml.dom.minidom  # noqa: F401
    release = os.environ.get("RELEASE", "none")


def run(raw_data):
    return {"release": release, "preloaded": PRELOADED, "pid": os.getpid(), "ppid": os.getppid()}
"""


def _harness(tmp_path: Path, **settings: Any) -> Harness:
    root = tmp_path / "project"
    root.mkdir()
    context = ProviderContext(project_root=root, state_dir=root / ".recon", cache_dir=tmp_path / "cache",
                              workspace="docker-warm")
    return Harness("docker", DockerProvider({"image_overrides": dict(OVERRIDES), **settings}, context), root)


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    require_engine()
    monkeypatch.setattr(contract, "SCORE_PY", SCORE_PY)
    h = _harness(tmp_path)
    try:
        yield h
    finally:
        h.teardown()
        remove_labelled((h.root / ".recon").resolve())


def _roles(h: Harness) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for c in labelled_containers((h.root / ".recon").resolve()):
        out.setdefault(str(c.labels.get("recon.role")), []).append(c)
    return out


def _answers(h: Harness, n: int) -> list[dict[str, Any]]:
    """``n`` scoring requests through the endpoint's router (the only way in)."""
    ep = h.recorded["endpoint.ep"]
    h.provider.set_routing(routed(h.request("endpoint", "ep", ep.address, ep.attributes), {"blue": 100}, {}))
    keys = h.provider.credentials(ep)
    port = int(keys.scoring_uri.split(":")[2].split("/")[0])
    out = []
    for _ in range(n):
        body = b"{}"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer %s\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (keys.primary_key.encode(), len(body), body))
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:300]
        out.append(json.loads(data.split(b"\r\n\r\n", 1)[1]))
    return out


def _scale(h: Harness, count: int, **settings: Any) -> None:
    request = h.deployment(count=count)
    h.record(request, h.provider.scale(counted(request, count)))


def test_instances_fork_from_one_pod_that_imported_what_init_loaded(harness: Harness) -> None:
    harness.stack(count=1)  # one instance: a container of its own, which records what init() loaded
    state_dir = (harness.root / ".recon").resolve()
    modules = json.loads((state_dir / "run/ep/blue/warm/modules.json").read_text())["modules"]
    assert "xml.dom.minidom" in modules
    _scale(harness, 3)  # two more at once: forked in a pod
    roles = _roles(harness)
    assert len(roles["instance"]) == 1 and len(roles["pod"]) == 1, roles
    pod = roles["pod"][0]
    assert pod.labels["recon.deployment"] == "blue" and pod.labels["recon.config_digest"].startswith("sha256:")
    assert list(pod.attrs["NetworkSettings"]["Networks"]) == ["recon-ep-" + pod.name.rsplit("-", 1)[1]], \
        "a pod is on the endpoint's internal network only"
    launcher_pid = json.loads((state_dir / f"run/ep/blue/warm/{pod.name}/roster.json").read_text())["launcher"]
    recorded = harness.recorded[BLUE].outputs["instances"]
    assert sorted(i.get("pod") is not None for i in recorded) == [False, True, True]
    answers = {a["pid"]: a for a in _answers(harness, 30)}
    warm = [a for a in answers.values() if a["preloaded"]]
    cold = [a for a in answers.values() if not a["preloaded"]]
    assert len(warm) == 2 and len(cold) == 1, answers
    assert all(a["ppid"] == launcher_pid for a in warm), (answers, launcher_pid)  # forked by the pod's launcher
    obs = harness.provider.observe(harness.recorded[BLUE])
    assert obs.attributes["instance_count"] == 3 and not obs.problems and not obs.unsettled, obs
    assert any("ready: listening" in line for line in harness.provider.logs(harness.recorded[BLUE], tail=50))

    _scale(harness, 1)  # the newest go first: the pod's two, then the empty pod itself
    assert "pod" not in _roles(harness), "a pod left without instances is removed"
    harness.provider.delete(harness.recorded.pop(BLUE))
    assert "instance" not in _roles(harness) and "pod" not in _roles(harness)
    assert not (state_dir / "run/ep/blue").exists()


def test_a_rollout_forks_every_batch_from_one_pod_and_the_old_ones_go(harness: Harness) -> None:
    harness.stack(count=3)
    old = {c.name for c in _roles(harness)["pod"]}
    assert len(old) == 1
    request = harness.deployment(count=3, release="v2")
    seen: set[str] = set()
    for index in (1, 2, 3):
        harness.record(request, harness.provider.roll_batch(request, Batch(index=index, size=1)))
        seen |= {c.name for c in _roles(harness).get("pod", [])} - old
    assert len(seen) == 1, f"one pod for all the batches: {seen}"
    roles = _roles(harness)
    assert {c.name for c in roles["pod"]} == seen and "instance" not in roles, roles
    instances = harness.recorded[BLUE].outputs["instances"]
    assert {i["pod"] for i in instances} == seen and len(instances) == 3
    answers = _answers(harness, 20)
    assert {a["release"] for a in answers} == {"v2"} and all(a["preloaded"] for a in answers)


def test_warm_start_false_starts_one_container_per_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_engine()
    monkeypatch.setattr(contract, "SCORE_PY", SCORE_PY)
    h = _harness(tmp_path, warm_start=False)
    try:
        h.stack(count=2)
        roles = _roles(h)
        assert len(roles["instance"]) == 2 and "pod" not in roles, roles
        assert not (h.root / ".recon/run/ep/blue/warm").exists()
        assert not any(a["preloaded"] for a in _answers(h, 6))
    finally:
        h.teardown()
        remove_labelled((h.root / ".recon").resolve())


def test_a_pod_that_cannot_start_means_cold_starts(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pods, "launcher_command", lambda pod, first_wait: ["-c", "import sys; sys.exit(7)"])
    harness.stack(count=0)
    lines: list[str] = []
    request = harness.deployment(count=2)
    request = ApplyRequest(**{**request.__dict__, "on_event": lines.append})
    harness.record(request, harness.provider.scale(counted(request, 2)))
    assert any("warm start unavailable" in line for line in lines), lines
    roles = _roles(harness)
    assert len(roles["instance"]) == 2 and "pod" not in roles, roles


def test_a_library_that_does_not_import_is_named_and_the_rest_preloaded(harness: Harness) -> None:
    harness.stack(count=0)
    warm = (harness.root / ".recon").resolve() / "run/ep/blue/warm"
    warm.mkdir(parents=True)
    (warm / "modules.json").write_text(json.dumps({"modules": ["no_such_library_here", "xml.dom.minidom"]}))
    lines: list[str] = []
    request = harness.deployment(count=2)
    request = ApplyRequest(**{**request.__dict__, "on_event": lines.append})
    harness.record(request, harness.provider.scale(counted(request, 2)))
    assert any("not importable: no_such_library_here" in line for line in lines), lines
    assert all(a["preloaded"] for a in _answers(harness, 6))


def test_a_hung_forked_instance_fails_its_liveness_probe_and_is_replaced(harness: Harness) -> None:
    harness.stack(count=0)
    request = harness.deployment(count=2)
    probe = {"initial_delay": 0, "period": 1, "timeout": 1, "success_threshold": 1, "failure_threshold": 2}
    request = harness.request("deployment", "blue", request.address,
                              {**request.attributes, "liveness_probe": probe}, request.refs)
    harness.record(request, harness.provider.scale(counted(request, 2)))
    hung = harness.recorded[BLUE].outputs["instances"][0]
    pod = _roles(harness)["pod"][0]
    assert pod.exec_run(["sh", "-c", f"kill -STOP {hung['pid']}"]).exit_code == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        obs = harness.provider.observe(harness.recorded[BLUE])
        if any("liveness probe" in p for p in obs.problems):
            break
        time.sleep(0.5)
    assert obs.attributes["instance_count"] == 1, obs
    assert any(f"instance {hung['id']} " in p and "liveness probe" in p for p in obs.problems), obs.problems
    harness.record(request, harness.provider.scale(counted(request, 2)))  # the repair: replaced
    obs = harness.provider.observe(harness.recorded[BLUE])
    assert obs.attributes["instance_count"] == 2 and not obs.problems, obs
    assert hung["id"] not in {i["id"] for i in harness.recorded[BLUE].outputs["instances"]}

"""Drift on the Docker provider, through the real CLI: a container killed with ``docker kill``, one
recreated by hand with another environment variable, a router removed, and a stray container with
recon's labels (one container per instance, ``warm_start: false``); with warm starts, an instance
process killed in its pod and a pod killed. ``recon drift`` reports each (exit 2) and ``recon
apply`` repairs them; the stray is reported, never deleted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.docker.engine import client, labelled_containers, require_engine
from tests.e2e.test_local_resilience import _project, _set_blue

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RECON_YAML = """\
workspace: docker-drift
provider:
  kind: docker
  keep_images: true
  warm_start: false
  image_overrides:
    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest": "local/py-base:bookworm"
"""


@pytest.fixture(autouse=True)
def _engine() -> None:
    require_engine()


def _recreate_with(name: str, **env: str) -> None:
    """Remove a container and run a copy of it (same labels, mounts, network) with changed env."""
    docker = client()
    old = docker.containers.get(name)
    cfg, host = old.attrs["Config"], old.attrs["HostConfig"]
    environment = dict(e.split("=", 1) for e in cfg["Env"])
    environment.update(env)
    network = next(iter(old.attrs["NetworkSettings"]["Networks"]))
    old.remove(force=True)
    docker.containers.run(cfg["Image"], command=cfg["Cmd"], entrypoint=cfg["Entrypoint"], name=name,
                          labels=cfg["Labels"], environment=environment, volumes=host["Binds"],
                          working_dir=cfg["WorkingDir"], network=network, detach=True)


def test_killed_recreated_and_stray_containers_are_drift_and_repaired(sample_project, make_recon) -> None:
    root = _project(sample_project)
    (root / "recon.yaml").write_text(RECON_YAML)
    _set_blue(root, count=2, version="v1")
    recon = make_recon(root)
    recon("apply", "--auto-approve", timeout=1200)
    assert recon("drift", check=False).returncode == 0
    state_dir = (root / ".recon").resolve()

    # 1. docker kill of an instance
    instances = recon.state()["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"]
    client().containers.get(instances[0]["name"]).kill()
    drift = recon("drift", check=False)
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert "deployment.my-endpoint.blue" in drift.stdout and "instance_count" in drift.stdout
    recon("apply", "--auto-approve")
    assert recon("drift", check=False).returncode == 0
    blue = recon.state()["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"]
    assert len(blue) == 2 and all(client().containers.get(i["name"]).status == "running" for i in blue)

    # 2. an instance recreated by hand with another value of an environment variable
    _recreate_with(blue[1]["name"], RELEASE="tampered")
    drift = recon("drift", check=False)
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert "environment_variables" in drift.stdout and "RELEASE" in drift.stdout
    recon("apply", "--auto-approve")
    assert recon("drift", check=False).returncode == 0
    for c in labelled_containers(state_dir):
        if c.labels.get("recon.role") == "instance":
            assert "RELEASE=v1" in c.attrs["Config"]["Env"], c.name

    # 3. the router removed behind recon's back
    router = next(c for c in labelled_containers(state_dir) if c.labels.get("recon.role") == "router")
    router.remove(force=True)
    drift = recon("drift", check=False)
    assert drift.returncode == 2 and "endpoint.my-endpoint" in drift.stdout, drift.stdout
    recon("apply", "--auto-approve")
    assert recon("drift", check=False).returncode == 0
    request = root.parent.parent / "model-1" / "sample-request.json"
    recon("invoke", "my-endpoint", "--request-file", str(request))

    # 4. a container with recon's labels that no state knows: reported, never deleted
    stray = client().containers.run(
        "local/py-base:bookworm", ["sleep", "300"], detach=True, name=f"stray-{state_dir.name}-{id(root)}",
        labels={"recon.managed": "true", "recon.state_dir": str(state_dir), "recon.endpoint": "ghost",
                "recon.deployment": "old", "recon.role": "instance", "recon.instance": "1"})
    try:
        drift = recon("drift", check=False)
        assert drift.returncode == 2 and stray.name in drift.stdout, drift.stdout
        recon("apply", "--auto-approve")
        stray.reload()
        assert stray.status == "running", "recon must never delete what it does not own"
    finally:
        stray.remove(force=True)


def applied_warm(sample_project: Any, make_recon: Any) -> tuple[Path, Any, Path]:
    """The sample with warm starts on and blue at 3 instances (v1), applied: (root, recon, state dir)."""
    root = _project(sample_project)
    (root / "recon.yaml").write_text(RECON_YAML.replace("  warm_start: false\n", ""))
    _set_blue(root, count=3, version="v1")
    recon = make_recon(root)
    recon("apply", "--auto-approve", timeout=1200)
    return root, recon, (root / ".recon").resolve()


def test_a_killed_warm_instance_and_a_killed_pod_are_drift_and_repaired(sample_project, make_recon) -> None:
    root, recon, state_dir = applied_warm(sample_project, make_recon)
    instances = recon.state()["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"]
    assert len({i["pod"] for i in instances}) == 1, instances
    pod = client().containers.get(instances[0]["pod"])

    # 1. one instance process killed inside its pod
    killed = pod.exec_run(["sh", "-c", f"kill -KILL {instances[0]['pid']}"])
    assert killed.exit_code == 0, killed.output
    drift = recon("drift", check=False)
    assert drift.returncode == 2 and "instance_count" in drift.stdout, drift.stdout + drift.stderr
    recon("apply", "--auto-approve")
    assert recon("drift", check=False).returncode == 0
    assert len(recon.state()["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"]) == 3

    # 2. the whole pod killed (auto-removed: it is gone)
    pod.kill()
    drift = recon("drift", check=False)
    assert drift.returncode == 2 and "instance_count" in drift.stdout, drift.stdout + drift.stderr
    recon("apply", "--auto-approve")
    assert recon("drift", check=False).returncode == 0
    after = recon.state()["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"]
    holders = {i.get("pod") or i["name"] for i in after}
    present = {c.name for c in labelled_containers(state_dir) if c.labels.get("recon.role") in ("instance", "pod")}
    assert len(after) == 3 and present == holders, (after, present)
    request = root.parent.parent / "model-1" / "sample-request.json"
    recon("invoke", "my-endpoint", "--request-file", str(request))
    recon("destroy", "--auto-approve")
    assert not labelled_containers(state_dir), "destroy leaves no container"

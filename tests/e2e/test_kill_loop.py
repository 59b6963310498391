"""The kill loop on the local provider (real processes) and on Docker (a real engine): 28 kill
points each (four cycles of seven, one test per cycle and provider), over create, scale-up,
rolling update, a new deployment with a traffic shift, another shift (with mirroring), scale-down
and destroy, the fourth cycle guarded by gates (killed while baking, after a rollback's intent,
after a rollback batch, with the last traffic step's judgment pending, after a split was restored); see ``tests/e2e/killloop.py`` for what is checked
after every kill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.shared import procs
from tests.docker.engine import labelled_containers, labelled_networks, remove_labelled, require_engine
from tests.e2e.killloop import KillLoop, cycle, report

pytestmark = pytest.mark.slow

LOCAL_YAML = "workspace: killloop\nprovider:\n  kind: local\n  reuse_host_packages: true\n"
DOCKER_YAML = ("workspace: killloop\nprovider:\n  kind: docker\n  keep_images: true\n"
               "  router_image: local/py-base:bookworm\n")


def _local_objects(loop: KillLoop, state: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(recorded, running) processes of the project: routers and instances, by pid."""
    recorded: set[str] = set()
    for res in state["resources"].values():
        if res["type"] == "endpoint":
            recorded.add(f"pid {res['outputs']['router_pid']}")
        elif res["type"] == "deployment":
            recorded |= {f"pid {i['pid']}" for i in res["outputs"].get("instances") or []}
    state_dir = str((loop.root / ".recon").resolve())
    running = {f"pid {pid}" for pid, env in procs.marked_processes() if env.get(procs.MARK_STATE_DIR) == state_dir}
    return recorded, running


def _docker_objects(loop: KillLoop, state: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(recorded, present) containers and networks of the project: routers, instances and each
    endpoint's two networks, by name (a container that is not running counts as present: nothing
    of the project may be left behind)."""
    recorded: set[str] = set()
    for res in state["resources"].values():
        if res["type"] == "endpoint":
            network = str(res["outputs"]["network"])
            recorded |= {str(res["outputs"]["router_container"]), f"network {network}", f"network {network}-pub"}
        elif res["type"] == "deployment":
            # an instance forked in a pod (warm starts) is recorded with its pod: the container
            recorded |= {str(i.get("pod") or i["name"]) for i in res["outputs"].get("instances") or []}
    state_dir = (loop.root / ".recon").resolve()
    present = {f"network {n.name}" for n in labelled_networks(state_dir)}
    for c in labelled_containers(state_dir):
        present.add(c.name if c.status == "running" else f"{c.name} ({c.status})")
    return recorded, present


CYCLES = [1, 2, 3, 4]  # each from nothing to nothing: one test per cycle keeps a test well inside the timeout


def test_the_loop_kills_every_transition_at_28_points_without_repeating_one() -> None:
    points = [kp for n in CYCLES for kp in cycle(n)]
    assert len(points) == 28 and len({(kp.point, kp.config) for kp in points}) == 28
    guarded = {kp.point.split("@")[0] for kp in cycle(4)}
    assert {"gate.baking", "gate.pending", "rollback.intent", "rollback.batch", "rollback.routed"} <= guarded
    for n in CYCLES:  # each cycle goes through every transition once, destroy last
        kinds = [kp.label.split(":")[0] for kp in cycle(n)]
        assert kinds == ["create", "scale-up", "rolling update", "new deployment", "traffic shift", "scale-down",
                         "destroy"], kinds
    assert any(kp.rollback for kp in points) and any(kp.recover == "destroy" for kp in points)


def _run(loop: KillLoop, n: int, provider: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        for kp in cycle(n):
            loop.run(kp)
    finally:
        with capsys.disabled():
            print("\n" + report(loop.records, f"{provider}, cycle {n}"))
    assert len(loop.records) == 7


@pytest.mark.parametrize("n", CYCLES)
def test_local_apply_killed_at_each_point_converges(
    n: int, tmp_path: Path, make_recon: Any, recon_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    make_recon(root)  # destroys whatever is left when the test ends
    loop = KillLoop(root, {**recon_env, "NO_COLOR": "1"}, LOCAL_YAML, "local/py-base:bookworm", _local_objects)
    _run(loop, n, "local", capsys)


@pytest.mark.docker
@pytest.mark.parametrize("n", CYCLES)
def test_docker_apply_killed_at_each_point_converges(
    n: int, tmp_path: Path, make_recon: Any, recon_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    require_engine()
    root = tmp_path / "project"
    root.mkdir()
    make_recon(root)
    loop = KillLoop(root, {**recon_env, "NO_COLOR": "1"}, DOCKER_YAML, "local/py-base:bookworm", _docker_objects)
    try:
        _run(loop, n, "docker", capsys)
    finally:
        remove_labelled((root / ".recon").resolve())

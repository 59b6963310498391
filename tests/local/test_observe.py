"""observe() and find_unmanaged(): what changed behind recon's back is seen, through /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from providers.shared import procs
from reconciler.plan.types import Batch
from tests.local.helpers import Project, alive_marked
from tests.requests import counted


def serve(project: Project, count: int, **kw: object) -> None:
    project.create(project.endpoint())
    project.create(project.deployment(count=count, **kw))  # type: ignore[arg-type]


def test_healthy_deployment_observes_as_recorded(project: Project) -> None:
    serve(project, 2, env_vars={"VERSION": "v1"})
    seen = project.provider.observe(project.resources["deployment.ep.blue"])
    assert seen.exists and seen.problems == []
    assert seen.attributes == {"instance_count": 2}


def test_killed_instance_shows_as_instance_count_drift_and_scale_repairs_it(project: Project) -> None:
    serve(project, 2)
    dep = project.resources["deployment.ep.blue"]
    victim = dep.outputs["instances"][0]
    os.kill(victim["pid"], signal.SIGKILL)
    procs.wait_dead(victim["pid"], victim["start_time"], 5)
    seen = project.provider.observe(dep)
    assert seen.exists
    assert seen.attributes["instance_count"] == 1
    assert any(f"pid {victim['pid']}" in p and "not running" in p for p in seen.problems)
    out = project.provider.scale(counted(project.deployment(count=2), 2))
    assert len(out["instances"]) == 2 and victim["pid"] not in {i["pid"] for i in out["instances"]}
    assert project.provider.observe(project.record(project.deployment(count=2), out)).attributes == {
        "instance_count": 2
    }


def test_changed_environment_variable_is_drift_and_a_rollout_repairs_it(project: Project) -> None:
    # A cold-started instance: its own command line is what someone can restart by hand (a warm one
    # shows its launcher's).
    project.provider.warm_start = False
    serve(project, 1, env_vars={"VERSION": "v1", "MODE": "fast"})
    dep = project.resources["deployment.ep.blue"]
    inst = dep.outputs["instances"][0]
    # Someone restarts the instance by hand, same command, one variable changed.
    argv = Path(f"/proc/{inst['pid']}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    env = procs.read_environ(inst["pid"])
    cwd = os.readlink(f"/proc/{inst['pid']}/cwd")
    assert env is not None
    os.kill(inst["pid"], signal.SIGTERM)
    procs.wait_dead(inst["pid"], inst["start_time"], 10)
    env["VERSION"] = "tampered"
    port_file = Path(argv[argv.index(b"--port-file") + 1].decode())
    port_file.unlink(missing_ok=True)
    by_hand = subprocess.Popen([a.decode() for a in argv], env=env, cwd=cwd, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = project.provider.observe(dep)
        # the process restarted by hand is the instance now, but it listens on another port than
        # the router's pool names: it serves nothing, which is what the count says
        assert seen.attributes["instance_count"] == 0
        assert any("the router does not send it requests" in u for u in seen.unsettled), seen.unsettled
        assert any(f"127.0.0.1:{inst['port']}, where none" in u for u in seen.unsettled), seen.unsettled
        assert seen.attributes["environment_variables"] == {"VERSION": "tampered", "MODE": "fast"}
        assert any("other environment variables" in p for p in seen.problems)
        # The plan's repair is a rollout to the recorded configuration: the tampered one is replaced.
        out = project.provider.roll_batch(project.deployment(count=1, env_vars={"VERSION": "v1", "MODE": "fast"}),
                                          Batch(index=1, size=1))
        assert by_hand.wait(15) is not None
        assert by_hand.pid not in {i["pid"] for i in out["instances"]}
        fixed = project.provider.observe(project.resources["deployment.ep.blue"])
        assert "environment_variables" not in fixed.attributes and fixed.attributes["instance_count"] == 1
        assert fixed.unsettled == []
    finally:
        if by_hand.poll() is None:
            by_hand.kill()
            by_hand.wait()


def test_instance_failing_its_liveness_probe_is_not_counted(project: Project) -> None:
    probe = {"initial_delay": 0, "period": 1, "timeout": 0.5, "success_threshold": 1, "failure_threshold": 10}
    serve(project, 2, probe=probe)
    dep = project.resources["deployment.ep.blue"]
    frozen = dep.outputs["instances"][1]["pid"]
    os.kill(frozen, signal.SIGSTOP)
    try:
        seen = project.provider.observe(dep)
        assert seen.attributes["instance_count"] == 1
        assert any("liveness" in p for p in seen.problems)
    finally:
        os.kill(frozen, signal.SIGCONT)


def test_stray_marked_process_of_a_recorded_deployment_is_unsettled_others_unmanaged(project: Project) -> None:
    serve(project, 1)
    state_dir = project.provider.state_dir
    known = list(project.resources.values())
    dep = project.resources["deployment.ep.blue"]
    assert project.provider.find_unmanaged(known) == []
    assert project.provider.observe(dep).unsettled == []
    strays = []
    for mark in ("ep/blue/99", "ep/other/1"):
        env = {**os.environ, procs.MARK_ID: mark, procs.MARK_STATE_DIR: str(state_dir),
               procs.MARK_WORKSPACE: "test-ws", procs.MARK_ROLE: "instance"}
        strays.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env))
    try:
        # one of the recorded deployment's: the deployment is unsettled (its next operation stops it)
        seen = project.provider.observe(dep)
        assert seen.attributes["instance_count"] == 1
        assert any(f"pid {strays[0].pid}" in u and "no pid file" in u for u in seen.unsettled), seen.unsettled
        # one of a deployment no state records: unmanaged, reported, never touched
        found = project.provider.find_unmanaged(known)
        assert len(found) == 1 and "ep/other/1" in found[0] and str(strays[1].pid) in found[0]
        # without the state, the router and the instances are unmanaged too
        assert len(project.provider.find_unmanaged([])) == 4
    finally:
        for stray in strays:
            stray.kill()
            stray.wait()


def test_assets_whose_files_are_gone_do_not_exist(project: Project) -> None:
    env = project.create(project.environment())
    model = project.create(project.model())
    assert project.provider.observe(env).exists and project.provider.observe(model).exists
    project.provider.delete(model)
    assert not project.provider.observe(model).exists


def test_capacity_reports_this_machine(project: Project) -> None:
    cap = project.provider.capacity()
    assert cap.cpus == os.cpu_count()
    assert cap.memory_gb is not None and cap.memory_gb > 0.1
    assert len(alive_marked(project.provider.state_dir)) == 0

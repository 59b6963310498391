"""Crashes, drift and locks on the local provider, through the real CLI and real processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.killloop import plan_covers_drift
from tests.e2e.test_local_sample import _pids_of

pytestmark = pytest.mark.slow

RECON_YAML = "workspace: resilience\nprovider:\n  kind: local\n  reuse_host_packages: true\n"


def _project(sample_project, warm_start: bool = True) -> Path:
    root = sample_project("blue-deployment.yml")
    (root / "recon.yaml").write_text(RECON_YAML + ("" if warm_start else "  warm_start: false\n"))
    ep = root / "endpoint.yml"
    ep.write_text(ep.read_text() + "traffic:\n  blue: 100\n")
    return root


def _set_blue(root: Path, count: int, version: str) -> None:
    path = root / "blue-deployment.yml"
    lines = [
        line
        for line in path.read_text().splitlines()
        if not line.startswith(("instance_count:", "environment_variables:", "  RELEASE:"))
    ]
    lines += [f"instance_count: {count}", "environment_variables:", f"  RELEASE: \"{version}\""]
    path.write_text("\n".join(lines) + "\n")


def _expected_processes(state: dict) -> int:
    resources = state["resources"]
    instances = sum(
        r["attributes"]["instance_count"] for r in resources.values() if r["type"] == "deployment"
    )
    routers = sum(1 for r in resources.values() if r["type"] == "endpoint")
    return instances + routers


def test_apply_killed_at_random_moments_always_converges(sample_project, make_recon) -> None:
    root = _project(sample_project)
    recon = make_recon(root)
    rng = random.Random(20261122)
    recon("apply", "--auto-approve")
    for i in range(20):
        _set_blue(root, count=rng.choice([1, 2, 3]), version=f"v{i}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "-C", str(root), "apply", "--auto-approve"],
            env=recon.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.2, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the state always loads, whatever moment the apply died at, and the plan made from it
        # repairs whatever drift it shows (nothing left running belongs to no recorded resource)
        json.loads(recon("state", "pull").stdout)
        plan_covers_drift(root, f"kill {i}")
    recon("apply", "--auto-approve")
    state = recon.state()
    blue = state["resources"]["deployment.my-endpoint.blue"]
    assert blue["attributes"]["environment_variables"]["RELEASE"] == "v19"
    again = recon("plan", "--detailed-exitcode", check=False)
    assert again.returncode == 0, again.stdout
    drift = recon("drift", check=False)
    assert drift.returncode == 0, drift.stdout
    assert all("pending" not in r and r["status"] == "ready" for r in state["resources"].values())
    time.sleep(1.0)  # stopped instances may take a moment to exit
    assert len(_pids_of(root)) == _expected_processes(state), "orphaned or duplicated processes"
    assert len(blue["outputs"]["instances"]) == blue["attributes"]["instance_count"]


def test_killed_instance_and_changed_env_var_are_drift_and_repaired(sample_project, make_recon) -> None:
    # cold starts: an instance restarted by hand needs its own command line (a warm one has its launcher's)
    root = _project(sample_project, warm_start=False)
    _set_blue(root, count=2, version="v1")
    recon = make_recon(root)
    recon("apply", "--auto-approve")
    assert recon("drift", check=False).returncode == 0

    instances = recon.state()["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"]
    os.kill(instances[0]["pid"], signal.SIGKILL)
    time.sleep(0.5)
    drift = recon("drift", check=False)
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert "deployment.my-endpoint.blue" in drift.stdout
    recon("apply", "--auto-approve")
    assert recon("drift", check=False).returncode == 0

    # restart one instance by hand with another value of an environment variable
    pid = recon.state()["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"][1]["pid"]
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    env = dict(
        item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item
    )
    cwd = os.readlink(f"/proc/{pid}/cwd")
    env[b"RELEASE"] = b"tampered"
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    subprocess.Popen(
        cmd, env=env, cwd=cwd, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    drift = recon("drift", check=False)
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert "environment_variables" in drift.stdout and "RELEASE" in drift.stdout
    recon("apply", "--auto-approve")
    assert recon("drift", check=False).returncode == 0


def test_second_apply_stops_at_once_naming_the_holder(sample_project, make_recon) -> None:
    root = _project(sample_project)
    _set_blue(root, count=3, version="v1")
    recon = make_recon(root)
    cmd = [sys.executable, "-m", "reconciler", "-C", str(root), "apply", "--auto-approve"]
    started = time.monotonic()
    procs = [
        subprocess.Popen(cmd, env=recon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
        for _ in range(2)
    ]
    results: list[tuple[int, float, str, str]] = [(0, 0.0, "", "")] * 2

    def wait(i: int) -> None:  # each process's own end time, not the order we read them in
        out, err = procs[i].communicate(timeout=600)
        results[i] = (procs[i].returncode, time.monotonic() - started, out, err)

    waiters = [threading.Thread(target=wait, args=(i,)) for i in range(2)]
    for t in waiters:
        t.start()
    for t in waiters:
        t.join()
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert loser[3].startswith("Error: the state is locked by recon apply (pid "), loser[3]
    assert "lock ID " in loser[3].splitlines()[0], loser[3]
    winner = next(r for r in results if r[0] == 0)
    assert loser[1] < winner[1], "the blocked apply must stop at once, not wait for the holder"

"""Warm starts: instances forked by a launcher that imported the deployment's libraries once.

A library on the deployment's PYTHONPATH records every import of itself (the pid that imported it)
in a file, so the tests see who paid for the import: the first instance (nothing learned yet), then
one launcher per operation, never the instances it forks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from providers.local.instances import DeploymentRunner
from providers.shared import procs
from reconciler.plan.types import Batch
from tests.local.helpers import Project, alive_marked
from tests.requests import counted, routed

HEAVY_LIB = """\
import os

with open(os.environ["IMPORTS_LOG"], "a") as f:
    f.write(f"{os.getpid()}\\n")
"""

SCORE_WITH_LIB = """\
import os


def init():
    global heavy
    import heavylib  # imported in init(), as joblib.load imports scikit-learn

    heavy = heavylib


def run(raw_data):
    return {"version": os.environ.get("VERSION", "v1"), "pid": os.getpid()}
"""


def _library(project: Project) -> tuple[dict[str, str], Path]:
    lib = project.root / "site"
    lib.mkdir(exist_ok=True)
    (lib / "heavylib.py").write_text(HEAVY_LIB)
    code = project.root / "code"
    code.mkdir(exist_ok=True)
    (code / "score.py").write_text(SCORE_WITH_LIB)
    log = project.root / "imports.log"
    return {"PYTHONPATH": str(lib), "IMPORTS_LOG": str(log)}, log


def _importers(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _serve(project: Project, count: int, env: dict[str, str]) -> dict[str, object]:
    project.create(project.endpoint())
    res = project.create(project.deployment(count=count, env_vars=env))
    ep = project.endpoint(traffic={"blue": 100})
    project.record(ep, project.provider.set_routing(routed(ep, {"blue": 100}, {})))
    return res.outputs


def _runner(project: Project) -> DeploymentRunner:
    return DeploymentRunner(project.provider.state_dir, "ep", "blue", "test-ws")


def test_instances_fork_from_a_launcher_that_imported_what_init_loaded(project: Project) -> None:
    env, log = _library(project)
    first = _serve(project, 1, env)
    (only,) = first["instances"]  # type: ignore[misc]
    assert _importers(log) == [only["pid"]]  # nothing learned yet: the instance imported it itself
    learned = json.loads(_runner(project).modules_file.read_text())["modules"]
    assert "heavylib" in learned and "json" in learned
    assert "entry_module" not in learned and "score" not in learned  # the user's script is never preloaded

    out = project.provider.scale(counted(project.deployment(count=4, env_vars=env), 4))
    new = [i for i in out["instances"] if i["pid"] != only["pid"]]
    assert len(new) == 3
    importers = _importers(log)
    assert len(importers) == 2  # one more import: the launcher's, for all three new instances
    launcher_pid = importers[1]
    assert launcher_pid not in {i["pid"] for i in new}
    assert any(e.startswith(f"launcher pid {launcher_pid}:") for e in project.events)
    # the launcher was for this operation only; its instances live on, marked with its family mark
    assert procs.wait_dead(launcher_pid, None, 5.0)
    assert not list(_runner(project).launchers_dir.glob("*.json"))
    family = _runner(project).family_mark(new[0]["config_digest"])
    for inst in new:
        assert procs.is_alive(inst["pid"], inst["start_time"])
        assert procs.read_environ(inst["pid"])["RECON_INSTANCE_ID"] == family  # type: ignore[index]
    served = {project.score()[2]["pid"] for _ in range(12)}
    assert served == {i["pid"] for i in out["instances"]}  # every instance serves


def test_a_rollout_keeps_one_launcher_for_all_its_batches(project: Project) -> None:
    env, log = _library(project)
    _serve(project, 3, env)
    before = len(_importers(log))
    v2 = project.deployment(count=3, env_vars={**env, "VERSION": "v2"})
    launchers = set()
    for index in (1, 2, 3):
        out = project.provider.roll_batch(v2, Batch(index=index, size=1))
        launchers |= _runner(project).launcher_pids()
        if index < 3:
            assert len(launchers) == 1  # kept between the batches
    assert len(_importers(log)) == before + 1  # three batches, one import
    assert not _runner(project).launcher_pids()  # the last batch closed it
    assert {project.score()[2]["version"] for _ in range(9)} == {"v2"}
    assert len(out["instances"]) == 3


def test_a_launcher_ends_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "hold.py"
    script.write_text(textwrap.dedent(f"""\
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path.cwd())!r})
        from providers.local.warm_starts import Launcher
        launcher = Launcher(sys.executable, {{"PATH": "/usr/bin:/bin"}}, Path({str(tmp_path)!r}),
                            Path({str(tmp_path / "launcher.log")!r}), Path({str(tmp_path / "none.json")!r}),
                            Path({str(tmp_path / "launcher.json")!r}), 30.0)
        print(launcher.pid, flush=True)
        time.sleep(60)
        """))
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        launcher_pid = int(holder.stdout.readline())
        assert procs.is_alive(launcher_pid, None)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert procs.wait_dead(launcher_pid, None, 5.0), "the launcher outlived the CLI"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_launcher_that_cannot_start_means_cold_starts(project: Project) -> None:
    env, log = _library(project)
    _serve(project, 1, env)
    (project.root / "site" / "explodes.py").write_text("import os\nos._exit(7)\n")
    _learn_first(project, "explodes")
    out = project.provider.scale(counted(project.deployment(count=3, env_vars=env), 3))
    assert len(out["instances"]) == 3
    assert any(e.startswith("warm start unavailable") for e in project.events), project.events
    assert len(_importers(log)) == 3  # each new instance imported the library itself


def test_a_module_that_does_not_import_is_named_and_the_rest_are_preloaded(project: Project) -> None:
    env, log = _library(project)
    _serve(project, 1, env)
    _learn_first(project, "no_such_module_here")
    project.provider.scale(counted(project.deployment(count=3, env_vars=env), 3))
    assert any(e.startswith("launcher pid") and "not importable: no_such_module_here" in e
               for e in project.events), project.events
    assert len(_importers(log)) == 2  # still warm: the launcher imported the library for both


def _learn_first(project: Project, name: str) -> None:
    """Put ``name`` first in the modules the deployment's instances recorded."""
    modules_file = _runner(project).modules_file
    learned = json.loads(modules_file.read_text())["modules"]
    modules_file.write_text(json.dumps({"modules": [name, *learned]}))


def test_launchers_and_their_instances_are_owned_and_leftovers_are_not(project: Project) -> None:
    env, _ = _library(project)
    _serve(project, 2, env)
    out = project.provider.scale(counted(project.deployment(count=3, env_vars=env), 3))
    project.resources["deployment.ep.blue"] = project.resources["deployment.ep.blue"].model_copy(
        update={"outputs": out})
    known = list(project.resources.values())
    assert project.provider.find_unmanaged(known) == []
    # A process with the family mark that no pid file names (left by a crash) is a stray ...
    digest = out["instances"][0]["config_digest"]
    runner = _runner(project)
    stray_env = {**os.environ, procs.MARK_ID: runner.family_mark(digest),
                 procs.MARK_STATE_DIR: str(project.provider.state_dir), procs.MARK_ROLE: "instance"}
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=stray_env,
                             start_new_session=True)
    dep = project.resources["deployment.ep.blue"]
    try:
        assert project.provider.find_unmanaged(known) == []  # the deployment's own business:
        found = project.provider.observe(dep).unsettled  # it is unsettled
        assert len(found) == 1 and str(stray.pid) in found[0], found
        # ... and the next operation on the deployment stops it; the instances stay
        runner.live()
        assert stray.wait(10) is not None
        assert project.provider.observe(dep).unsettled == []
        assert all(procs.is_alive(i["pid"], i["start_time"]) for i in out["instances"])
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


def test_destroy_leaves_no_warm_instance(project: Project) -> None:
    env, _ = _library(project)
    _serve(project, 1, env)
    project.provider.scale(counted(project.deployment(count=3, env_vars=env), 3))
    assert len(alive_marked(project.provider.state_dir)) == 4  # router + 3 instances, no launcher
    project.provider.delete(project.resources["endpoint.ep"])
    deadline = time.monotonic() + 10
    while alive_marked(project.provider.state_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive_marked(project.provider.state_dir) == []


@pytest.mark.parametrize("warm", [True, False])
def test_warm_start_setting(project: Project, warm: bool) -> None:
    env, log = _library(project)
    project.provider.warm_start = warm
    _serve(project, 1, env)
    project.provider.scale(counted(project.deployment(count=3, env_vars=env), 3))
    assert len(_importers(log)) == (2 if warm else 3)


def test_one_more_instance_starts_cold(project: Project) -> None:
    """A launcher for a single instance would only add its own start to the instance's."""
    env, log = _library(project)
    _serve(project, 1, env)
    out = project.provider.scale(counted(project.deployment(count=2, env_vars=env), 2))
    newest = max(out["instances"], key=lambda i: i["id"])
    assert _importers(log)[-1] == newest["pid"]  # it imported the library itself
    assert not any(e.startswith("launcher pid") for e in project.events)

"""Endpoints and deployments on the local provider: real routers, real instances, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from providers.shared import procs
from reconciler.model.errors import PermanentError
from reconciler.plan.types import Batch
from tests.local.helpers import Project, alive_marked
from tests.requests import counted, routed


def serve(project: Project, count: int = 2, **kw: object) -> None:
    project.create(project.endpoint())
    project.create(project.deployment(count=count, **kw))  # type: ignore[arg-type]
    ep = project.endpoint(traffic={"blue": 100})
    project.record(ep, project.provider.set_routing(routed(ep, {"blue": 100}, {})))


def test_endpoint_keys_are_private_and_not_in_outputs(project: Project) -> None:
    res = project.create(project.endpoint())
    port = res.outputs["port"]
    assert res.outputs["scoring_uri"] == f"http://127.0.0.1:{port}/score"
    keys_file = project.provider.state_dir / "keys" / "ep.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    keys = project.provider.credentials(res)
    dumped = json.dumps(res.outputs)
    assert keys.primary_key not in dumped and keys.secondary_key not in dumped
    assert keys.primary_key != keys.secondary_key
    assert project.provider.observe(res).exists


def test_deployment_serves_through_router_with_key(project: Project) -> None:
    serve(project, count=2)
    dep = project.resources["deployment.ep.blue"]
    assert len(dep.outputs["instances"]) == 2
    assert all(i["port"] and i["pid"] and i["start_time"] for i in dep.outputs["instances"])
    pids = set()
    for _ in range(6):
        status, headers, body = project.score(body={"n": 1})
        assert status == 200, body
        assert headers["azureml-model-deployment"] == "blue"
        assert body["echo"] == {"n": 1}
        pids.add(body["pid"])
    assert pids == {i["pid"] for i in dep.outputs["instances"]}  # both instances serve
    secondary = project.provider.credentials(project.resources["endpoint.ep"]).secondary_key
    assert project.score(key=secondary)[0] == 200
    assert project.score(key="wrong")[0] == 401
    assert project.score(key=None)[0] == 401
    assert project.score(deployment="blue")[1]["azureml-model-deployment"] == "blue"


@pytest.mark.parametrize("warm", [True, False])
def test_instances_bind_loopback_only_and_carry_marks(project: Project, warm: bool) -> None:
    project.provider.warm_start = warm
    serve(project, count=2)  # warm starts need more than one instance (or a rollout's later batches)
    inst = project.resources["deployment.ep.blue"].outputs["instances"][0]
    env = procs.read_environ(inst["pid"])
    assert env is not None
    # a cold instance carries its own number; a warm one its launcher's family mark
    family = f"ep/blue/+{inst['config_digest'].removeprefix('sha256:')[:16]}"
    assert env["RECON_INSTANCE_ID"] == (family if warm else f"ep/blue/{inst['id']}")
    assert env["RECON_WORKSPACE"] == "test-ws"
    assert env["AZUREML_MODEL_DIR"]
    listening = Path("/proc/net/tcp").read_text().lower()
    assert f"0100007f:{inst['port']:04x}" in listening  # 127.0.0.1:port
    assert f"00000000:{inst['port']:04x}" not in listening  # not 0.0.0.0:port


def test_scale_up_and_down(project: Project) -> None:
    serve(project, count=2)
    req = project.deployment(count=3)
    out = project.provider.scale(counted(req, 3))
    project.record(req, out)
    assert len(out["instances"]) == 3
    assert len(alive_marked(project.provider.state_dir)) == 4  # 3 instances + router
    assert {project.score()[2]["pid"] for _ in range(9)} == {i["pid"] for i in out["instances"]}
    req = project.deployment(count=1)
    out = project.provider.scale(counted(req, 1))
    assert len(out["instances"]) == 1
    assert len(alive_marked(project.provider.state_dir)) == 2
    for _ in range(3):
        assert project.score()[2]["pid"] == out["instances"][0]["pid"]
    table = json.loads((project.provider.state_dir / "run" / "ep" / "table.json").read_text())
    assert table["deployments"]["blue"]["upstreams"] == [f"127.0.0.1:{out['instances'][0]['port']}"]


def test_code_snapshot_is_unaffected_by_project_edits(project: Project) -> None:
    serve(project, count=1)
    (project.root / "code" / "score.py").write_text("raise SystemExit('edited')\n")
    assert project.score()[2]["file"] == "v1"
    # a scale-up after the edit still runs the snapshot taken at create time
    out = project.provider.scale(counted(project.deployment(count=2), 2))
    assert len(out["instances"]) == 2
    assert {project.score()[2]["file"] for _ in range(4)} == {"v1"}


def test_failing_create_leaves_nothing(project: Project) -> None:
    project.create(project.endpoint())
    with pytest.raises(PermanentError) as err:
        project.provider.create(project.deployment(env_vars={"FAIL_INIT": "boom"}))
    assert any("init failed on purpose: boom" in line for line in err.value.detail)
    # one line that says what failed; the log lines are the detail, shown once under it
    assert str(err.value) == "deployment.ep.blue: instance 1 exited while starting; the old instances keep serving"
    assert len(alive_marked(project.provider.state_dir)) == 1  # the router only


def test_failed_rollout_is_rolled_back_and_old_instances_keep_serving(project: Project) -> None:
    serve(project, count=2)
    old = {i["pid"] for i in project.resources["deployment.ep.blue"].outputs["instances"]}
    bad = project.deployment(count=2, env_vars={"FAIL_INIT": "v2 is broken"})
    with pytest.raises(PermanentError) as err:
        project.provider.roll_batch(bad, Batch(index=1, size=1))
    assert any("v2 is broken" in line for line in err.value.detail)
    assert any("Traceback" in line or "RuntimeError" in line for line in err.value.detail)
    assert len(alive_marked(project.provider.state_dir)) == 3  # router + the 2 old instances
    for _ in range(4):
        status, _, body = project.score()
        assert status == 200 and body["pid"] in old


def test_logs_per_instance(project: Project) -> None:
    serve(project, count=2)
    dep = project.resources["deployment.ep.blue"]
    first = dep.outputs["instances"][0]["id"]
    assert any("init done v1" in line for line in project.provider.logs(dep, instance=first))
    lines = project.provider.logs(dep)
    assert sum("init done" in line for line in lines) == 2


def test_delete_leaves_no_process(project: Project) -> None:
    serve(project, count=2)
    state_dir = project.provider.state_dir
    project.provider.delete(project.resources["deployment.ep.blue"])
    assert len(alive_marked(state_dir)) == 1
    assert not project.provider.observe(project.resources["deployment.ep.blue"]).exists
    project.provider.delete(project.resources["deployment.ep.blue"])  # already gone: no error
    project.provider.delete(project.resources["endpoint.ep"])
    assert alive_marked(state_dir) == []
    assert not (state_dir / "keys" / "ep.json").exists()
    assert not project.provider.observe(project.resources["endpoint.ep"]).exists


def test_router_restart_keeps_port_keys_and_pools(project: Project) -> None:
    serve(project, count=1)
    ep = project.resources["endpoint.ep"]
    keys = project.provider.credentials(ep)
    os.kill(ep.outputs["router_pid"], signal.SIGKILL)
    procs.wait_dead(ep.outputs["router_pid"], ep.outputs["router_start_time"], 5)
    seen = project.provider.observe(ep)
    assert not seen.exists and "not running" in seen.problems[0]
    again = project.provider.create(project.endpoint(traffic={"blue": 100}))
    assert again["port"] == ep.outputs["port"] and again["router_pid"] != ep.outputs["router_pid"]
    assert project.provider.credentials(ep) == keys
    assert project.score()[0] == 200  # table (pools, traffic) survived the restart


def test_traffic_split_header_routing_and_routing_drift(project: Project) -> None:
    project.create(project.endpoint())
    project.create(project.deployment("blue", count=1, env_vars={"VERSION": "blue"}))
    project.create(project.deployment("green", count=1, env_vars={"VERSION": "green"}))
    ep = project.endpoint(traffic={"blue": 50, "green": 50})
    project.record(ep, project.provider.set_routing(routed(ep, {"blue": 50, "Green": 50, "none": 0}, {})))
    served = [project.score()[1]["azureml-model-deployment"] for _ in range(20)]
    assert served.count("blue") == served.count("green") == 10
    status, headers, body = project.score(deployment="green")
    assert status == 200 and headers["azureml-model-deployment"] == "green" and body["version"] == "green"
    seen = project.provider.observe(project.resources["endpoint.ep"])
    assert seen.attributes == {"auth_mode": "key", "traffic": {"blue": 50, "green": 50}, "mirror_traffic": {}}
    # someone edits the routing table by hand: the router still serves 50/50, and observe says both
    table_file = project.provider.state_dir / "run" / "ep" / "table.json"
    table = json.loads(table_file.read_text())
    table["traffic"] = {"blue": 100}
    table_file.write_text(json.dumps(table))
    seen = project.provider.observe(project.resources["endpoint.ep"])
    assert seen.attributes["traffic"] == {"blue": 50, "green": 50}  # what is served
    assert seen.unsettled == ["its routing table was changed without the router loading it (the router "
                              "serves blue 50%, green 50%, the table says blue 100%)"]
    # ... and reloads it: the observed traffic is the new split
    router = json.loads((project.provider.state_dir / "run" / "ep" / "router.json").read_text())
    os.kill(router["pid"], signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen = project.provider.observe(project.resources["endpoint.ep"])
        if seen.attributes["traffic"] == {"blue": 100}:
            break
        time.sleep(0.05)
    assert seen.attributes["traffic"] == {"blue": 100} and seen.unsettled == []


def test_endpoint_update_changes_auth_mode_in_place(project: Project) -> None:
    res = project.create(project.endpoint())
    req = project.endpoint()
    req.attributes["auth_mode"] = "aml_token"
    out = project.provider.update(req)
    assert out["router_pid"] == res.outputs["router_pid"] and out["port"] == res.outputs["port"]
    assert project.provider.observe(res).attributes["auth_mode"] == "aml_token"


def test_deployment_with_zero_instances_exists(project: Project) -> None:
    project.create(project.endpoint())
    dep = project.create(project.deployment(count=0))
    assert dep.outputs["instances"] == []
    seen = project.provider.observe(dep)
    assert seen.exists and seen.attributes == {"instance_count": 0}

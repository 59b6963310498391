"""The local provider's data path (issue 13, section 2): instances answer their router only, the router's
status needs a key, and every log and key file recon writes is the owner's only. Real routers, instances
(warm and cold) and HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import stat
import time
from pathlib import Path

import pytest

from providers.shared import probes
from tests.local.helpers import Project
from tests.requests import routed


def post(port: int, path: str = "/score", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, json.dumps({"n": 1}), headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def serve(project: Project, count: int) -> None:
    project.create(project.endpoint())
    project.create(project.deployment(count=count))
    ep = project.endpoint(traffic={"blue": 100})
    project.record(ep, project.provider.set_routing(routed(ep, {"blue": 100}, {})))


@pytest.mark.parametrize("warm", [True, False])
def test_no_keyless_answer_from_an_instance(project: Project, warm: bool) -> None:
    project.provider.warm_start = warm
    serve(project, count=2)
    primary, router_port = project.keys()
    for inst in project.resources["deployment.ep.blue"].outputs["instances"]:
        status, body = post(inst["port"])
        assert status == 401 and b"echo" not in body
        assert post(inst["port"], headers={"Authorization": f"Bearer {primary}"})[0] == 401
    status, _, body = project.score(body={"n": 1})
    assert status == 200 and body["echo"] == {"n": 1}


def test_router_status_needs_a_key_and_hides_upstreams(project: Project) -> None:
    serve(project, count=1)
    primary, port = project.keys()
    inst = project.resources["deployment.ep.blue"].outputs["instances"][0]
    got = probes.http_get(port, "/-/router", 5.0)
    assert got is not None and got[0] == 401 and str(inst["port"]).encode() not in got[1]
    got = probes.http_get(port, "/-/router", 5.0, primary)
    assert got is not None and got[0] == 200
    assert project.provider.observe(project.resources["endpoint.ep"]).exists  # the control plane still sees it


def test_logs_and_keys_are_owner_only(project: Project) -> None:
    project.provider.warm_start = True
    serve(project, count=2)
    state = project.provider.state_dir
    assert project.score(body={"n": 1}, key=None)[0] == 401
    logs = [p for p in (state / "logs").rglob("*.log")]
    assert any(p.name == "router.log" for p in logs) and any(p.name == "1.log" for p in logs)
    for path in [*logs, *(state / "keys").glob("*.json")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((state / "keys").stat().st_mode) == 0o700


def test_key_in_the_url_is_not_logged(project: Project) -> None:
    serve(project, count=1)
    primary, port = project.keys()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", f"/score?key={primary}&x=1", json.dumps({"n": 1}), {"Authorization": f"Bearer {primary}"})
    assert conn.getresponse().status == 200
    conn.close()
    logs = Path(project.provider.state_dir, "logs")
    deadline = time.monotonic() + 10
    text = ""
    while "x=1" not in text and time.monotonic() < deadline:  # the router flushes its log every second
        time.sleep(0.2)
        text = (logs / "ep" / "router.log").read_text(errors="replace")
    text += "".join(p.read_text(errors="replace") for p in logs.rglob("*.log"))
    assert "x=1" in text and "key=***" in text and primary not in text


def test_router_limits_setting_reaches_the_router(tmp_path: Path) -> None:
    from providers.local import LocalProvider
    from reconciler.plan.provider import ProviderContext

    root = tmp_path / "p"
    root.mkdir()
    settings = {"reuse_host_packages": True, "router_limits": {"max_connections": 500,
                                                               "endpoints": {"EP": {"max_body_bytes": 2000}}}}
    provider = LocalProvider(settings, ProviderContext(project_root=root, state_dir=root / ".recon",
                                                       cache_dir=tmp_path / "cache", workspace="w"))
    project = Project(root, provider)
    try:
        serve(project, count=1)
        table = json.loads((provider.state_dir / "run" / "ep" / "table.json").read_text())
        assert table["limits"]["max_body_bytes"] == 2000 and table["limits"]["max_connections"] == 500
        assert table["limits"]["idle_timeout_ms"] == 60_000  # the default
        assert project.score(body={"pad": "x" * 1500})[0] == 200
        assert project.score(body={"pad": "x" * 2500})[0] == 413
    finally:
        for res in ("deployment.ep.blue", "endpoint.ep"):
            if res in project.resources:
                provider.delete(project.resources[res])
        provider.close()


@pytest.mark.parametrize(("limits", "message"), [
    ({"max_body": 5}, "provider.router_limits.max_body: 5 is not valid; expected one of max_body_bytes"),
    ({"max_connections": 0}, "provider.router_limits.max_connections: 0 is not valid; expected a whole number"),
    ({"endpoints": {"ep": {"idle_timeout_ms": "1s"}}},
     "provider.router_limits.endpoints.ep.idle_timeout_ms: '1s' is not valid"),
])
def test_bad_router_limits_are_config_errors(tmp_path: Path, limits: dict[str, object], message: str) -> None:
    from providers.local import LocalProvider
    from providers.shared.routing_table import router_limits
    from reconciler.model.errors import ConfigError
    from reconciler.plan.provider import ProviderContext

    with pytest.raises(ConfigError) as err:
        router_limits({"router_limits": limits}, "ep")
    assert message in str(err.value) and "recon.yaml" in str(err.value)
    with pytest.raises(ConfigError) as err:  # the provider refuses it before anything runs
        LocalProvider({"router_limits": limits}, ProviderContext(project_root=tmp_path, state_dir=tmp_path / ".r",
                                                                 cache_dir=tmp_path / "c", workspace="w"))
    assert message in str(err.value)

"""The provider's settings and manifests as data (no cluster needed)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from providers.kubernetes import manifests as m
from providers.kubernetes.objects import ready_addresses, ready_digests
from providers.kubernetes.settings import parse_settings
from reconciler.model.errors import ConfigError


def test_unknown_and_wrong_settings_are_errors_at_their_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"kind": "kubernetes", "namespcae": "x"})
    text = info.value.diagnostics[0].format()
    assert text.startswith("recon.yaml: provider.namespcae: unknown setting 'namespcae'") and "namespace" in text
    for raw, key in (({"namespace": 3}, "namespace"), ({"image_pull_policy": "Sometimes"}, "image_pull_policy"),
                     ({"tolerations": "all"}, "tolerations"), ({"progress_deadline_seconds": -1},
                                                                "progress_deadline_seconds"),
                     ({"router_reload_check": "yes"}, "router_reload_check"), ({"router_replicas": 0}, "router_replicas"),
                     ({"router_replicas": True}, "router_replicas")):
        with pytest.raises(ConfigError) as info:
            parse_settings(raw)
        assert info.value.diagnostics[0].path == f"provider.{key}"


def test_defaults_and_image_overrides() -> None:
    s = parse_settings({"image_overrides": {"mcr.microsoft.com/azureml/x:latest": "registry.local/x:1"}})
    assert s.namespace == "default" and s.kubeconfig is None and s.image_pull_policy == "IfNotPresent"
    assert s.image("mcr.microsoft.com/azureml/x:latest") == "registry.local/x:1"
    assert s.image(None) == "python:3.12-slim"
    assert s.router() == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"  # recon's Python


@pytest.mark.parametrize(("count", "surge"), [(1, 1), (4, 1), (5, 1), (6, 2), (10, 2), (11, 3), (100, 20)])
def test_max_surge_is_ceil_of_20_percent(count: int, surge: int) -> None:
    assert m.max_surge(count) == surge


def test_names_are_dns_labels_and_unique_when_shortened() -> None:
    a = m.deployment_name("e" * 32, "d" * 32 + "1")
    b = m.deployment_name("e" * 32, "d" * 32 + "2")
    assert len(a) <= 63 and len(b) <= 63 and a != b
    assert m.deployment_name("my-endpoint", "blue") == "my-endpoint-blue"


def test_resources_from_the_yaml_else_the_catalog() -> None:
    own = {"resources": {"requests": {"cpu": "0.1", "memory": "0.1Gi"}}, "instance_type": "Standard_DS3_v2"}
    assert m.resources_for(own) == {"requests": {"cpu": "0.1", "memory": "0.1Gi"}}
    sized = m.resources_for({"instance_type": "Standard_DS3_v2"})
    assert sized["requests"] == sized["limits"] and sized["requests"]["cpu"] == "4"
    assert m.resources_for({"instance_type": "Standard_DS3_v2"}, use_catalog=False) == {}


def test_router_limits_are_checked_at_their_key() -> None:
    parse_settings({"router_limits": {"max_body_bytes": 1024, "endpoints": {"ep": {"max_connections": 10}}}})
    with pytest.raises(ConfigError) as info:
        parse_settings({"router_limits": {"max_body_bytes": 0}})
    assert info.value.diagnostics[0].path == "provider.router_limits.max_body_bytes"


def test_instances_get_the_instance_key_only() -> None:
    s = parse_settings({"namespace": "ns"})
    attrs = {"endpoint_name": "ep", "name": "blue", "instance_count": 2}
    dep = m.deployment_manifest(s, "ws", attrs, None, "img:1", "sha256:" + "a" * 64, "ep-blue-aaaa")
    pod = dep["spec"]["template"]["spec"]
    secrets = [v["secret"] for v in pod["volumes"] if "secret" in v]
    assert secrets == [{"secretName": "ep-keys", "defaultMode": 0o400,
                        "items": [{"key": "instance.json", "path": "instance.json"}]}]
    command = pod["containers"][0]["command"]
    assert command[command.index("--key-file") + 1] == "/etc/recon/instance/instance.json"


def test_the_router_pod_unpacks_httptools_and_mounts_its_keys() -> None:
    s = parse_settings({"namespace": "ns", "router_image": "registry.local/router:1"})
    *_, deployment, service, _ = m.router_manifests(s, "ws", "EP", "sha256:" + "b" * 64)
    pod = deployment["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["initContainers"] + pod["containers"]] == ["registry.local/router:1"] * 2
    assert pod["initContainers"][0]["command"][-2:] == ["/opt/recon/lib-src/httptools.tar.gz", "/opt/recon/lib"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["lib-src"]["configMap"]["name"] == "ep-router-lib"
    assert volumes["keys"]["secret"]["secretName"] == "ep-keys"
    boot = pod["containers"][0]["command"]
    assert "sys.path.append" in boot[2] and boot[3:5] == ["/opt/recon/lib", "/opt/recon/router/router.pyz"]
    assert all(c["resources"]["requests"] for c in pod["initContainers"] + pod["containers"])  # quota
    assert service["spec"]["selector"] == {"recon.io/endpoint": "ep", "recon.io/role": "router"}


def test_the_router_runs_as_its_own_service_account_that_may_only_read_pods() -> None:
    objs = m.router_manifests(parse_settings({"namespace": "ns"}), "ws", "EP", "sha256:" + "b" * 64)
    assert [o["kind"] for o in objs] == ["ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
                                        "PodDisruptionBudget"]
    account, role, binding, deployment, _, budget = objs
    assert budget["spec"] == {"selector": {"matchLabels": {"recon.io/endpoint": "ep", "recon.io/role": "router"}},
                              "maxUnavailable": 1}
    assert deployment["spec"]["replicas"] == 2  # router_replicas
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"] == "ep-router"
    assert pod["automountServiceAccountToken"] is True
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ep-router", "namespace": "ns"}]


def test_router_pods_carry_the_prometheus_annotations() -> None:
    *_, deployment, _, _ = m.router_manifests(parse_settings({"namespace": "ns"}), "ws", "ep", "sha256:" + "b" * 64)
    template = deployment["spec"]["template"]
    notes = template["metadata"]["annotations"]
    assert {k: notes[k] for k in notes if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/-/metrics"}
    assert template["spec"]["containers"][0]["ports"][0]["containerPort"] == 8080


def test_a_pool_is_written_with_each_pod_digest() -> None:
    def pod(ip: str, digest: str, ready: bool = True) -> dict[str, Any]:
        return {"metadata": {"name": ip, "annotations": {"recon.io/config-digest": digest}},
                "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": str(ready)}]}}

    pods = [pod("10.0.0.9", "sha256:new"), pod("10.0.0.2", "sha256:old"), pod("10.0.0.5", "sha256:new", False)]
    port = m.INSTANCE_PORT
    assert ready_addresses(pods) == [f"10.0.0.2:{port}", f"10.0.0.9:{port}"]
    assert ready_digests(pods) == {f"10.0.0.2:{port}": "sha256:old", f"10.0.0.9:{port}": "sha256:new"}


def test_capacity_counts_only_nodes_the_pods_tolerate() -> None:
    from providers.kubernetes.objects import tolerated

    kwok = [{"key": "recon-test/kwok", "value": "true", "effect": "NoSchedule"}]
    assert tolerated([], [])
    assert not tolerated(kwok, [])
    assert tolerated(kwok, [{"key": "recon-test/kwok", "operator": "Exists", "effect": "NoSchedule"}])
    assert tolerated(kwok, [{"key": "recon-test/kwok", "operator": "Equal", "value": "true"}])
    assert not tolerated(kwok, [{"key": "recon-test/kwok", "operator": "Equal", "value": "false"}])
    assert not tolerated(kwok, [{"key": "recon-test/kwok", "operator": "Exists", "effect": "NoExecute"}])
    assert tolerated([{"key": "x", "effect": "PreferNoSchedule"}], [])  # only a preference


@pytest.mark.parametrize("python", sorted({sys.executable, *([p] if os.path.exists(p := "/usr/bin/python3") else [])}))
def test_the_unpacker_keeps_archives_inside_their_folder(python: str, tmp_path: Path) -> None:
    """The init containers' unpacker, with and without extraction filters (Python < 3.11.4)."""
    with tarfile.open(tmp_path / "ok.tgz", "w:gz") as t:
        info = tarfile.TarInfo("code/score.py")
        info.size = 3
        t.addfile(info, io.BytesIO(b"x=1"))
    with tarfile.open(tmp_path / "bad.tgz", "w:gz") as t:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    ok = subprocess.run([python, "-c", m._EXTRACT, str(tmp_path / "ok.tgz"), str(tmp_path / "app")], capture_output=True)
    assert ok.returncode == 0 and (tmp_path / "app" / "code" / "score.py").read_text() == "x=1"
    bad = subprocess.run([python, "-c", m._EXTRACT, str(tmp_path / "bad.tgz"), str(tmp_path / "bad")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and not (tmp_path / "bad" / "link").is_symlink()

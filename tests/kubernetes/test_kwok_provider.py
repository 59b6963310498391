"""The Kubernetes provider against a real kube-apiserver and controllers, pods on kwok nodes.

kwok marks pods Running and Ready without running anything, so these tests are about the objects:
what recon applies, who owns which field, how the Deployment controller rolls, what the HPA says,
what is deleted and when.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from providers.kubernetes.client import ConflictError
from reconciler.model.errors import PermanentError, ProviderError
from reconciler.plan.types import Batch
from tests.kubernetes.conftest import Cluster, wait_until
from tests.kubernetes.helpers import Project
from tests.requests import counted

pytestmark = pytest.mark.kubernetes
BLUE = "deployment.ep.blue"


def get(cluster: Cluster, namespace: str, *what: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("-n", namespace, "get", *what, "-o", "json").stdout))


@pytest.fixture
def project(tmp_path: Path, kwok_settings: dict[str, Any]) -> Any:
    p = Project.make(tmp_path / "project", kwok_settings)
    yield p
    for res in sorted(p.recorded.values(), key=lambda r: ["deployment", "endpoint", "model", "environment"]
                      .index(r.type)):
        with contextlib.suppress(ProviderError):
            p.provider.delete(res)
    p.provider.close()


def test_manifests_labels_and_field_manager(project: Project, cluster: Cluster, namespace: str) -> None:
    made = project.stack(count=3)
    dep = get(cluster, namespace, "deployment", "ep-blue")
    spec = dep["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    labels = dep["metadata"]["labels"]
    digest = made[BLUE].outputs["config_digest"]
    assert labels["recon.io/managed"] == "true" and labels["recon.io/workspace"] == "k8s-test"
    assert labels["recon.io/endpoint"] == "ep" and labels["recon.io/deployment"] == "blue"
    assert labels["recon.io/digest"] == digest.removeprefix("sha256:")[:16]
    container = spec["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"},
                                      "limits": {"cpu": "200m", "memory": "128Mi"}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RELEASE"] == "v1" and env["AZUREML_MODEL_DIR"] == "/var/azureml-app/azureml-models/m/1"
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": 5001, "scheme": "HTTP"}
    assert container["readinessProbe"]["failureThreshold"] == 10
    assert container["livenessProbe"]["periodSeconds"] == 1
    assert spec["template"]["spec"]["initContainers"][0]["name"] == "unpack"
    shown = get(cluster, namespace, "deployment", "ep-blue", "--show-managed-fields")
    managers = {(f["manager"], f["operation"]) for f in shown["metadata"]["managedFields"]}
    assert ("recon", "Apply") in managers
    # the endpoint's objects, and its keys only in the Secret
    for kind, name in (("deployment", "ep-router"), ("service", "ep-router"), ("configmap", "ep-router"),
                       ("secret", "ep-keys"), ("configmap", "recon-model-m-1")):
        obj = get(cluster, namespace, kind, name)
        assert obj["metadata"]["labels"]["recon.io/managed"] == "true", (kind, name)
    keys = project.provider.credentials(made["endpoint.ep"])
    text = json.dumps([r.outputs for r in made.values()])
    assert keys.primary_key not in text and keys.secondary_key not in text
    table = json.loads(get(cluster, namespace, "configmap", "ep-router")["data"]["table.json"])
    assert keys.primary_key not in json.dumps(table)
    assert table["keys_file"] == "/etc/recon/keys/keys.json"
    assert table["instance_key_file"] == "/etc/recon/keys/instance.json"
    secret = get(cluster, namespace, "secret", "ep-keys")["data"]
    instance_key = json.loads(base64.b64decode(secret["instance.json"]))["instanceKey"]
    assert instance_key not in text and instance_key not in json.dumps(table) and instance_key != keys.primary_key
    assert get(cluster, namespace, "configmap", "ep-router-lib")["binaryData"]["httptools.tar.gz"]
    assert len(table["deployments"]["blue"]["upstreams"]) == 3
    assert all(u.endswith(":5001") for u in table["deployments"]["blue"]["upstreams"])
    obs = project.provider.observe(made[BLUE])
    assert obs.exists and obs.attributes["instance_count"] == 3 and obs.problems == []


def test_a_field_another_manager_owns_is_a_conflict(project: Project, cluster: Cluster, namespace: str) -> None:
    project.stack(count=2)
    # someone takes spec.replicas with their own server-side apply
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ep-blue"}, "spec": {"replicas": 4}}
    cluster.kubectl("-n", namespace, "apply", "--server-side", "--field-manager=someone-else", "--force-conflicts",
                    "-f", "-", input_text=json.dumps(patch))
    request = project.deployment(count=3)
    with pytest.raises(ConflictError) as info:
        project.provider.scale(counted(request, 3))
    text = str(info.value)
    assert "someone-else" in text and ".spec.replicas" in text
    assert isinstance(info.value, PermanentError)
    # recon did not overwrite it
    assert get(cluster, namespace, "deployment", "ep-blue")["spec"]["replicas"] == 4


def test_rollout_of_10_moves_in_batches_of_2(project: Project, cluster: Cluster, namespace: str) -> None:
    from kubernetes import client, config, watch

    project.stack(count=10)
    api = client.AppsV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    seen: list[tuple[str, int, str]] = []  # (replicaset, spec.replicas, revision)
    stop = threading.Event()
    start = api.list_namespaced_replica_set(namespace).metadata.resource_version

    def record() -> None:
        w = watch.Watch()
        for event in w.stream(api.list_namespaced_replica_set, namespace, resource_version=start,
                              timeout_seconds=120):
            rs = event["object"]
            seen.append((rs.metadata.name, int(rs.spec.replicas or 0),
                         (rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision", "")))
            if stop.is_set():
                w.stop()

    watcher = threading.Thread(target=record, daemon=True)
    watcher.start()
    request = project.deployment(count=10, release="v2")
    for index in range(1, 6):
        project.record(request, project.provider.roll_batch(request, Batch(index=index, size=2)))
    stop.set()
    # the watch ends at its next event or timeout; make one
    cluster.kubectl("-n", namespace, "annotate", "deployment", "ep-blue", "recon-test/poke=1", "--overwrite")
    watcher.join(timeout=30)
    new = [n for n, _, rev in seen if rev == "2"]
    assert new, seen
    new_name = new[0]
    sizes: dict[str, int] = {}
    peaks = []
    for name, replicas, _ in seen:
        sizes[name] = replicas
        peaks.append(sum(sizes.values()))
    steps = [r for n, r, _ in seen if n == new_name]
    distinct = [s for i, s in enumerate(steps) if i == 0 or s != steps[i - 1]]
    assert distinct[-1] == 10
    assert all(b - a <= 2 for a, b in zip([0, *distinct], distinct, strict=False)), distinct
    assert len(distinct) >= 5, distinct  # at least five steps of at most two
    assert max(peaks) <= 12, peaks  # never more than 10 + maxSurge 2 (maxUnavailable 0)
    obs = project.provider.observe(project.recorded[BLUE])
    assert obs.exists and obs.attributes["instance_count"] == 10
    assert obs.attributes.get("environment_variables", {"RELEASE": "v2"}) == {"RELEASE": "v2"}
    assert any(e.startswith("batch 1: ") for e in project.events)
    # idempotent: a repeated last batch changes nothing
    rs_before = get(cluster, namespace, "replicasets")["items"]
    project.provider.roll_batch(request, Batch(index=5, size=2))
    assert len(get(cluster, namespace, "replicasets")["items"]) == len(rs_before)


def test_target_utilization_is_an_hpa_and_its_bounds_drift(project: Project, cluster: Cluster,
                                                          namespace: str) -> None:
    scale = {"type": "target_utilization", "min_instances": 2, "max_instances": 5,
             "target_utilization_percentage": 60, "polling_interval": 10}
    made = project.stack(count=2, scale_settings=scale)
    hpa = get(cluster, namespace, "hpa", "ep-blue")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 5
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ep-blue"}
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    obs = project.provider.observe(made[BLUE])
    assert obs.attributes["scale_settings"]["max_instances"] == 5
    cluster.kubectl("-n", namespace, "patch", "hpa", "ep-blue", "--type=merge", "-p", '{"spec":{"maxReplicas":9}}')
    obs = project.provider.observe(made[BLUE])
    assert obs.attributes["scale_settings"]["max_instances"] == 9  # drift the plan repairs
    project.create(project.deployment(count=2, scale_settings=scale))  # the repair: apply again
    assert get(cluster, namespace, "hpa", "ep-blue")["spec"]["maxReplicas"] == 5
    # back to default scaling: the HPA goes
    project.create(project.deployment(count=2))
    assert cluster.kubectl("-n", namespace, "get", "hpa", "ep-blue", check=False).returncode != 0


def test_drift_is_observed(project: Project, cluster: Cluster, namespace: str) -> None:
    made = project.stack(count=2)
    cluster.kubectl("-n", namespace, "scale", "deployment", "ep-blue", "--replicas=4")
    cluster.kubectl("-n", namespace, "set", "env", "deployment/ep-blue", "RELEASE=hacked")
    obs = project.provider.observe(made[BLUE])
    assert obs.attributes["instance_count"] == 4
    assert obs.attributes["environment_variables"] == {"RELEASE": "hacked"}
    cluster.kubectl("-n", namespace, "set", "image", "deployment/ep-blue", "score=busybox:1", "unpack=busybox:1")
    obs = project.provider.observe(made[BLUE])
    assert not obs.exists and "busybox:1" in obs.problems[0]
    # a deleted Service: the endpoint is missing, create repairs it
    cluster.kubectl("-n", namespace, "delete", "service", "ep-router")
    obs = project.provider.observe(made["endpoint.ep"])
    assert not obs.exists and "Service ep-router" in obs.problems[0]
    project.create(project.endpoint())
    assert project.provider.observe(made["endpoint.ep"]).exists


def test_unmanaged_objects_are_reported(project: Project, cluster: Cluster, namespace: str) -> None:
    made = project.stack(count=1)
    stray = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stray", "labels": {
        "recon.io/managed": "true", "recon.io/workspace": "k8s-test", "recon.io/endpoint": "gone",
        "recon.io/role": "router"}}}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(stray))
    assert project.provider.find_unmanaged(list(made.values())) == [
        f"ConfigMap {namespace}/stray carries recon's labels but no recorded resource owns it"]
    everything = project.provider.find_unmanaged([])
    assert any("Deployment" in line and "ep-blue" in line for line in everything)


def test_delete_waits_until_the_pods_are_gone(project: Project, cluster: Cluster, namespace: str) -> None:
    made = project.stack(count=3)
    project.provider.delete(made[BLUE])
    pods = get(cluster, namespace, "pods", "-l", "recon.io/deployment=blue")["items"]
    assert pods == []
    assert cluster.kubectl("-n", namespace, "get", "deployment", "ep-blue", check=False).returncode != 0
    assert get(cluster, namespace, "configmaps", "-l", "recon.io/role=code")["items"] == []
    assert not project.provider.observe(made[BLUE]).exists
    project.provider.delete(made[BLUE])  # gone already: not an error
    project.provider.delete(made["endpoint.ep"])
    assert get(cluster, namespace, "pods")["items"] == []
    assert not project.provider.observe(made["endpoint.ep"]).exists
    del project.recorded[BLUE]


def test_pods_the_quota_refuses_fail_the_step_and_keep_the_template(project: Project, cluster: Cluster,
                                                                    namespace: str) -> None:
    made = project.stack(count=2)  # 2 x 100m, the router 50m
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
             "spec": {"hard": {"requests.cpu": "350m"}}}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(quota))
    wait_until(lambda: get(cluster, namespace, "resourcequota", "compute").get("status", {}).get("used"),
               what="the quota's usage")
    template = get(cluster, namespace, "deployment", "ep-blue")["spec"]["template"]["metadata"]["annotations"]
    request = project.deployment(count=4)  # the fourth pod does not fit
    with pytest.raises(PermanentError) as info:
        project.provider.scale(counted(request, 4))
    assert "exceeded quota" in str(info.value) and "compute" in str(info.value)
    assert any("FailedCreate" in line for line in info.value.detail)
    after = get(cluster, namespace, "deployment", "ep-blue")["spec"]["template"]["metadata"]["annotations"]
    assert after == template  # a scale that failed rolls nothing back
    assert made[BLUE].outputs["config_digest"] == after["recon.io/config-digest"]


def test_a_pod_the_cluster_replaces_is_not_drift_the_router_watches_its_pods(project: Project, cluster: Cluster,
                                                                            namespace: str) -> None:
    made = project.stack(count=2)
    assert project.provider.observe(made[BLUE]).attributes["instance_count"] == 2
    pods = get(cluster, namespace, "pods", "-l", "recon.io/deployment=blue")["items"]
    gone = pods[0]["metadata"]["name"]
    # As an eviction would, the pod leaves and the ReplicaSet makes another.
    cluster.kubectl("-n", namespace, "delete", "pod", gone)

    def replaced() -> bool:
        now = get(cluster, namespace, "pods", "-l", "recon.io/deployment=blue")["items"]
        return gone not in {p["metadata"]["name"] for p in now} and len(now) == 2 and all(
            c["status"] == "True" for p in now for c in p["status"].get("conditions", []) if c["type"] == "Ready")

    wait_until(replaced, what="the replacement pod")
    obs = project.provider.observe(made[BLUE])
    assert obs.attributes["instance_count"] == 2 and obs.problems == []  # the cluster's own doing: not drift
    # what the router watches (the table's discovery section) selects exactly the deployment's pods now,
    # by the API server's own label selection (tests/kubernetes/test_real_node_cluster.py: the router serves them)
    table = json.loads(get(cluster, namespace, "configmap", "ep-router")["data"]["table.json"])
    found = table["discovery"]
    assert found["namespace"] == namespace and found["groups"] == {"blue": "blue"}
    selected = get(cluster, namespace, "pods", "-l", f"{found['selector']},{found['label']}=blue")["items"]
    assert sorted(p["metadata"]["name"] for p in selected) == sorted(
        p["metadata"]["name"] for p in get(cluster, namespace, "pods", "-l", "recon.io/deployment=blue")["items"])
    assert gone not in {p["metadata"]["name"] for p in selected} and len(selected) == 2

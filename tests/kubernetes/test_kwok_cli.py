"""``recon`` itself (a subprocess, as a user runs it) on the test cluster's kwok nodes: quota at plan
time agreeing with the API server's ResourceQuota admission, drift made with kubectl reported and
repaired, unmanaged objects reported and kept, destroy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubernetes.conftest import KWOK_SETTINGS, Cluster, wait_until

pytestmark = pytest.mark.kubernetes

ENDPOINT = """\
$schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineEndpoint.schema.json
name: quota-ep
compute: azureml:inferencecompute
auth_mode: key
traffic:
  blue: 100
"""
DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json
name: blue
type: kubernetes
endpoint_name: quota-ep
model:
  path: ./model/
code_configuration:
  code: ./code/
  scoring_script: score.py
environment:
  image: local/python:3.11
environment_variables:
  RELEASE: v1
resources:
  requests:
    cpu: "500m"
    memory: "64Mi"
instance_count: {count}
"""


class Recon:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "NO_COLOR": "1"}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(self.root), *args], capture_output=True,
                              text=True, env=self.env, timeout=600, stdin=subprocess.DEVNULL)
        if check and proc.returncode not in (0, 2):
            raise AssertionError(f"recon {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc


def make_project(root: Path, cluster: Cluster, namespace: str, count: int) -> Recon:
    root.mkdir(parents=True)
    (root / "model").mkdir()
    (root / "model" / "weights.txt").write_text("1\n")
    (root / "code").mkdir()
    (root / "code" / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    (root / "endpoint.yml").write_text(ENDPOINT)
    (root / "blue.yml").write_text(DEPLOYMENT.format(count=count))
    provider: dict[str, Any] = {"kind": "kubernetes", "kubeconfig": str(cluster.kubeconfig),
                                "namespace": namespace, **KWOK_SETTINGS}
    (root / "recon.yaml").write_text(yaml.safe_dump({"workspace": "quota-test", "provider": provider}))
    return Recon(root)


def kget(cluster: Cluster, namespace: str, *what: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("-n", namespace, "get", *what, "-o", "json").stdout))


def test_quota_at_plan_time_agrees_with_admission(tmp_path: Path, cluster: Cluster, namespace: str) -> None:
    """The plan reserves ceil(1.2 x instances) of each deployment's requests (the rollout's surge) within
    the namespace's ResourceQuota; the API server's quota admission agrees both ways."""
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
             "spec": {"hard": {"requests.cpu": "2100m", "requests.memory": "1Gi"}}}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(quota))
    wait_until(lambda: kget(cluster, namespace, "resourcequota", "compute").get("status", {}).get("hard"),
               what="the quota's status")
    # 3 instances of 0.5 CPU reserve ceil(3.6) = 4 x 0.5 = 2.0 of 2.1 (the two router pods then take 0.1)
    recon = make_project(tmp_path / "p", cluster, namespace, count=3)
    plan = recon("plan", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    capacity = json.loads(recon("plan", "--format", "json").stdout)["quota"]["capacity"]
    assert capacity["rollout_reserve"] is True and capacity["needed_cpus"] == 2.0 and capacity["cpus"] == 2.1
    recon("apply", "--auto-approve")
    assert len(kget(cluster, namespace, "pods", "-l", "recon.io/deployment=blue")["items"]) == 3
    # ... and its rolling update (3 old + 1 surge pod) is admitted too
    (recon.root / "blue.yml").write_text(DEPLOYMENT.format(count=3).replace("RELEASE: v1", "RELEASE: v2"))
    recon("apply", "--auto-approve")
    dep = kget(cluster, namespace, "deployment", "quota-ep-blue")
    assert dep["status"]["updatedReplicas"] == 3 and dep["status"]["availableReplicas"] == 3
    # 4 instances reserve ceil(4.8) = 5 x 0.5 = 2.5 > 2.0 free: recon refuses at plan time ...
    (recon.root / "blue.yml").write_text(DEPLOYMENT.format(count=4).replace("RELEASE: v1", "RELEASE: v2"))
    refused = recon("plan", check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    said = refused.stdout + refused.stderr
    assert "Error: the deployments request 2.5 CPUs" in said and "rollout reserve" in said, said
    assert f"ResourceQuota {namespace}/compute" in said and "Traceback" not in said
    # ... and the API server would refuse it too: 4 pods fit, the rollout's fifth is not admitted
    cluster.kubectl("-n", namespace, "scale", "deployment", "quota-ep-blue", "--replicas=5")

    def refused_event() -> bool:
        events = kget(cluster, namespace, "events")["items"]
        return any(e.get("reason") == "FailedCreate" and "exceeded quota" in e.get("message", "") for e in events)

    wait_until(refused_event, what="the ReplicaSet's FailedCreate event")
    assert len(kget(cluster, namespace, "pods", "-l", "recon.io/deployment=blue")["items"]) == 4
    (recon.root / "blue.yml").write_text(DEPLOYMENT.format(count=3).replace("RELEASE: v1", "RELEASE: v2"))
    recon("apply", "--auto-approve")  # drift (replicas 5) repaired back to 3
    assert kget(cluster, namespace, "deployment", "quota-ep-blue")["spec"]["replicas"] == 3
    recon("destroy", "--auto-approve")


def test_drift_repair_unmanaged_and_destroy(tmp_path: Path, cluster: Cluster, namespace: str) -> None:
    recon = make_project(tmp_path / "p", cluster, namespace, count=2)
    recon("apply", "--auto-approve")
    assert recon("drift").returncode == 0
    cluster.kubectl("-n", namespace, "scale", "deployment", "quota-ep-blue", "--replicas=5")
    cluster.kubectl("-n", namespace, "set", "env", "deployment/quota-ep-blue", "RELEASE=hacked")
    cluster.kubectl("-n", namespace, "delete", "service", "quota-ep-router")
    stray = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stray", "labels": {
        "recon.io/managed": "true", "recon.io/workspace": "quota-test", "recon.io/endpoint": "other",
        "recon.io/role": "router"}}}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(stray))
    drift = recon("drift", "--format", "json")
    assert drift.returncode == 2, drift.stdout + drift.stderr
    text = drift.stdout
    assert "instance_count" in text and "environment_variables" in text
    assert "Service quota-ep-router is gone" in text
    assert f"ConfigMap {namespace}/stray" in text
    recon("apply", "--auto-approve")
    dep = kget(cluster, namespace, "deployment", "quota-ep-blue")
    assert dep["spec"]["replicas"] == 2
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RELEASE"] == "v1"
    kget(cluster, namespace, "service", "quota-ep-router")
    after = recon("drift", "--format", "json")
    assert "instance_count" not in after.stdout and "Service quota-ep-router" not in after.stdout
    kget(cluster, namespace, "configmap", "stray")  # reported, never deleted
    recon("destroy", "--auto-approve")
    assert kget(cluster, namespace, "pods")["items"] == []
    left = kget(cluster, namespace, "deployments,services,secrets,configmaps", "-l", "recon.io/managed=true")
    assert [o["metadata"]["name"] for o in left["items"]] == ["stray"]

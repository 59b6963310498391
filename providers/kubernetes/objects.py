"""What the Kubernetes provider's parts share: the namespace's scope (settings, the lazy connection), and
pure functions over the objects the API returns (pods, Deployments, nodes' taints)."""

from __future__ import annotations

from typing import Any

from providers.kubernetes import manifests as m
from providers.kubernetes.client import Kube
from providers.kubernetes.settings import KubeSettings


class ClusterScope:
    """The provider's namespace on its cluster: the settings, the workspace recon labels its objects
    with, and one connection (made on first use), shared by the parts the provider is built of
    (routers.py, rollouts.py, deployments.py)."""

    def __init__(self, settings: KubeSettings, workspace: str) -> None:
        self.settings = settings
        self.workspace = workspace
        self._kube: Kube | None = None

    @property
    def ns(self) -> str:
        return self.settings.namespace

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(self.settings)
        return self._kube

    def close(self) -> None:
        if self._kube is not None:
            self._kube.close()
            self._kube = None

    def pods(self, ep: str, dep: str) -> list[dict[str, Any]]:
        """The instance pods of deployment ``dep`` of endpoint ``ep`` that are not being deleted."""
        return [p for p in self.kube.items("Pod", pod_selector(ep, dep))
                if not (p.get("metadata") or {}).get("deletionTimestamp")]


def tolerated(taints: list[dict[str, Any]], tolerations: list[dict[str, Any]]) -> bool:
    """Whether pods with ``tolerations`` may be scheduled on a node with ``taints`` (its NoSchedule and
    NoExecute taints)."""
    return all(any(tolerates(t, taint) for t in tolerations) for taint in taints
               if taint.get("effect") in ("NoSchedule", "NoExecute"))


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Kubernetes' matching: effect (empty: any), key (empty with Exists: any), Exists or Equal value."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if not toleration.get("key"):
        return bool(toleration.get("operator") == "Exists")
    if toleration["key"] != taint.get("key"):
        return False
    return bool(toleration.get("operator") == "Exists"
                or str(toleration.get("value", "")) == str(taint.get("value", "")))


def pod_selector(ep: str, dep: str) -> dict[str, str]:
    return {m.ENDPOINT: m.label_value(ep), m.DEPLOYMENT: m.label_value(dep), m.ROLE: "instance"}


def ready_addresses(pods: list[dict[str, Any]]) -> list[str]:
    """``ip:port`` of the ready ones of ``pods``, sorted."""
    return sorted(f"{p['status']['podIP']}:{m.INSTANCE_PORT}" for p in pods
                  if pod_ready(p) and (p.get("status") or {}).get("podIP"))


def ready_digests(pods: list[dict[str, Any]]) -> dict[str, str]:
    """The routing table's ``digests`` of the ready ones of ``pods``: ``ip:port`` -> the configuration
    digest the pod runs (its ``recon.io/config-digest``)."""
    return {f"{p['status']['podIP']}:{m.INSTANCE_PORT}":
            str((p["metadata"].get("annotations") or {}).get("recon.io/config-digest") or "")
            for p in pods if pod_ready(p) and (p.get("status") or {}).get("podIP")}


def pod_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def rollout_complete(obj: dict[str, Any]) -> bool:
    """observedGeneration caught up; every replica updated and available; no old ones left."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = int(spec["replicas"]) if spec.get("replicas") is not None else 1
    return (int(status.get("observedGeneration") or 0) >= int(obj["metadata"].get("generation") or 0)
            and int(status.get("updatedReplicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("replicas") or 0) == want)


def instances_of(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"pod": p["metadata"]["name"], "ip": (p.get("status") or {}).get("podIP"), "ready": pod_ready(p),
             "config_digest": ((p["metadata"].get("annotations") or {}).get("recon.io/config-digest"))}
            for p in sorted(pods, key=lambda p: str(p["metadata"]["name"]))]

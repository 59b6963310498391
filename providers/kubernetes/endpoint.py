"""An endpoint's router on Kubernetes: its keys (a Secret), its routing table (a ConfigMap the router
pod mounts, beside the router program), and the wait until the router pods serve a new table.

The table decides which deployments get traffic and what share; where each deployment's instances are
the router learns itself, by watching their pods (the table's ``discovery`` section): its pools follow
the cluster between applies (an autoscaler, an eviction, ``kubectl scale``), recon running or not.

The table is the document of providers/shared/routing_table.py, with its operations; here it is only
stored: a write is retried on a concurrent writer's change (``resourceVersion``). The router re-reads
it when the kubelet updates the mounted ConfigMap: recon annotates the router pods with each new
version so that their kubelet syncs them at once, and reads ``GET /-/router`` through the API server's
pod proxy with the instance key in ``x-recon-instance-key`` (the proxy drops ``Authorization``).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from providers.kubernetes import manifests as m
from providers.kubernetes.client import ConflictError
from providers.kubernetes.objects import ClusterScope, pod_ready, ready_addresses, ready_digests
from providers.shared.endpoint_tokens import SIGNING_KEY, new_signing_key
from providers.shared.routing_table import Mutation, RoutingTable, new_table, router_limits, router_settings
from providers.shared.runtime import ROUTER_ARCHIVE_NAME, router_archive
from reconciler.model.errors import RetryableError
from reconciler.model.resources import DeploymentAttrs

POLL = 0.25
ROUTER_RELOAD_TIMEOUT = 150.0
KEYS_FILE = f"{m.KEYS_DIR}/{m.KEYS_FILE}"
INSTANCE_KEY_FILE = f"{m.KEYS_DIR}/{m.INSTANCE_KEY_FILE}"
INSTANCE_KEY_HEADER = "x-recon-instance-key"  # how the router takes the instance key through the pod proxy


class RouterTable(RoutingTable):
    """Endpoint ``name``'s routing table, key ``table.json`` of its router's ConfigMap."""

    def __init__(self, endpoints: Endpoints, name: str) -> None:
        self.endpoints = endpoints
        self.name = name

    def read_table(self) -> dict[str, Any]:
        obj = self.endpoints.scope.kube.get("ConfigMap", m.router_name(self.name))
        raw = ((obj or {}).get("data") or {}).get("table.json")
        if raw:
            try:
                data = json.loads(raw)
                if isinstance(data, dict):
                    return data
            except ValueError:
                pass
        return new_table(self.name, keys_file=KEYS_FILE, instance_key_file=INSTANCE_KEY_FILE)

    def table_fields(self) -> dict[str, Any]:
        return {"keys_file": KEYS_FILE, "instance_key_file": INSTANCE_KEY_FILE,
                "limits": router_limits(self.endpoints.settings, self.name)}

    def next_version(self, table: dict[str, Any], mutate: Mutation) -> int:
        """As every store's, plus the ``discovery`` section: the router fills each deployment's pool with
        the deployment's ready pods as its own watch sees them (router/discovery.py)."""
        version = super().next_version(table, mutate)
        table["discovery"] = {
            "namespace": self.endpoints.scope.ns,
            "selector": f"{m.ENDPOINT}={m.label_value(self.name)},{m.ROLE}=instance",
            "label": m.DEPLOYMENT, "port": m.INSTANCE_PORT, "digest_annotation": "recon.io/config-digest",
            "groups": {dep: m.label_value(dep) for dep in table.get("deployments") or {}},
        }
        return version

    def update_table(self, mutate: Mutation, wait: bool = True) -> int:
        """Read, change and write the table with the router program beside it; a concurrent writer's
        change is retried (resourceVersion); then (with ``wait``) until the router pods serve it."""
        scope = self.endpoints.scope
        name = m.router_name(self.name)
        for _ in range(5):
            current = scope.kube.get("ConfigMap", name)
            table = self.read_table()
            version = self.next_version(table, mutate)
            obj = m.configmap(scope.settings, name, m.labels(scope.workspace, "router", self.name),
                              data={"table.json": json.dumps(table, indent=1)},
                              binary={ROUTER_ARCHIVE_NAME: base64.b64encode(router_archive()).decode()})
            if current is not None:
                obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                scope.kube.apply(obj)
            except ConflictError:
                time.sleep(0.1)
                continue
            if wait:
                self.endpoints.wait_version(self.name, version)
            return version
        raise RetryableError(f"endpoint {self.name}: its routing table kept changing while recon wrote it")


class Endpoints:
    """The endpoints' keys, routing tables and routers in the provider's namespace."""

    def __init__(self, scope: ClusterScope, settings: dict[str, Any]) -> None:
        self.scope = scope
        self.settings = settings  # the provider's (router_limits)

    def table(self, ep: str) -> RouterTable:
        return RouterTable(self, ep)

    def has_table(self, ep: str) -> bool:
        return self.scope.kube.get("ConfigMap", m.router_name(ep)) is not None

    # -- keys ------------------------------------------------------------------------------------
    def ensure_keys(self, ep: str) -> None:
        """The endpoint's Secret: its two keys, its token signing key and the instance key, each made once
        and kept (a Secret of an older recon gets the signing key)."""
        current = self.read_secret(ep)
        wanted = {"primaryKey": secrets.token_urlsafe(32), "secondaryKey": secrets.token_urlsafe(32),
                  SIGNING_KEY: new_signing_key(), "instanceKey": secrets.token_urlsafe(32), **current}
        if wanted == current:
            return
        data = {m.KEYS_FILE: json.dumps({k: wanted[k] for k in ("primaryKey", "secondaryKey", SIGNING_KEY)}),
                m.INSTANCE_KEY_FILE: json.dumps({"instanceKey": wanted["instanceKey"]})}
        scope = self.scope
        scope.kube.apply(m.secret(scope.settings, m.keys_name(ep), m.labels(scope.workspace, "keys", ep), data))

    def read_secret(self, ep: str) -> dict[str, str]:
        """primaryKey, secondaryKey, tokenSigningKey and instanceKey from the endpoint's Secret (those it
        holds)."""
        obj = self.scope.kube.get("Secret", m.keys_name(ep))
        out: dict[str, str] = {}
        for item in (m.KEYS_FILE, m.INSTANCE_KEY_FILE):
            raw = ((obj or {}).get("data") or {}).get(item)
            try:
                data = json.loads(base64.b64decode(raw)) if raw else None
            except ValueError:
                data = None
            if isinstance(data, dict):
                out.update({k: str(v) for k, v in data.items()
                            if k in ("primaryKey", "secondaryKey", SIGNING_KEY, "instanceKey") and v})
        return out

    def read_keys(self, ep: str) -> dict[str, str] | None:
        data = self.read_secret(ep)
        if data.get("primaryKey") and data.get("secondaryKey"):
            return {"primaryKey": data["primaryKey"], "secondaryKey": data["secondaryKey"]}
        return None

    # -- outputs ---------------------------------------------------------------------------------
    def outputs(self, ep: str) -> dict[str, Any]:
        router = self.scope.kube.get("Deployment", m.router_name(ep))
        ready = bool(router) and int(((router or {}).get("status") or {}).get("availableReplicas") or 0) >= 1
        return {"router": m.router_name(ep), "service": m.router_name(ep), "namespace": self.scope.ns,
                "scoring_uri": self.scoring_uri(ep), "provisioning_state": "Succeeded" if ready else "Failed"}

    def scoring_uri(self, ep: str) -> str:
        host = self.scope.settings.scoring_host or f"{m.router_name(ep)}.{self.scope.ns}.svc.cluster.local"
        return f"http://{host}/score"

    # -- the router ------------------------------------------------------------------------------
    def _routers(self, ep: str, ready: bool = True) -> tuple[list[str], dict[str, str]]:
        """The endpoint's router pods that are not being deleted, by name (the ready ones; with ``ready``
        False every running one), and the headers that carry the instance key through the pod proxy."""
        def wanted(p: dict[str, Any]) -> bool:
            up = pod_ready(p) if ready else (p.get("status") or {}).get("phase") == "Running"
            return up and not p["metadata"].get("deletionTimestamp")

        pods = self.scope.kube.items("Pod", {m.ENDPOINT: m.label_value(ep), m.ROLE: "router"})
        key = self.read_secret(ep).get("instanceKey", "")
        return sorted(str(p["metadata"]["name"]) for p in pods if wanted(p)), {INSTANCE_KEY_HEADER: key} if key else {}

    def wait_version(self, ep: str, version: int) -> None:
        """Until the router pods serve table ``version``; bounded, and only with ``router_reload_check``.
        Each pod is annotated with the version first: its kubelet then syncs it at once, refreshing the
        mounted ConfigMap (without that, within the kubelet's sync period: a minute by default). The
        router's ``GET /-/router`` is read through the API server's pod proxy with the instance key."""
        kube = self.scope.kube
        if not self.scope.settings.router_reload_check:
            return
        names, headers = self._routers(ep)
        deadline = time.monotonic() + ROUTER_RELOAD_TIMEOUT
        for name in names:
            kube.annotate("Pod", name, {"recon.io/table-version": str(version)})
            while True:
                status = kube.proxy_get(name, m.ROUTER_PORT, "/-/router", headers=headers)
                if status is not None and int(status.get("version") or 0) >= version:
                    break
                if time.monotonic() > deadline:
                    raise RetryableError(f"endpoint {ep}: router pod {name} did not load "
                                         f"routing table version {version} within {ROUTER_RELOAD_TIMEOUT:g}s")
                time.sleep(POLL)

    def router_metrics(self, ep: str) -> list[tuple[str, str | None]]:
        """``GET /-/metrics`` of every running router pod of the endpoint (through the API server's pod
        proxy, with the instance key): ``(pod, text or None)``."""
        names, headers = self._routers(ep, ready=False)
        # a router under load on a busy node may take a few seconds to answer through the proxy
        return [(name, self.scope.kube.proxy_text(name, m.ROUTER_PORT, "/-/metrics", timeout=10.0, headers=headers))
                for name in names]

    def served_pools(self, ep: str, dep: str) -> list[tuple[str, set[str] | None]]:
        """What each ready router pod of the endpoint serves as ``dep``'s pool: ``(pod, {ip:port} or None
        when it did not answer)``."""
        names, headers = self._routers(ep)
        out: list[tuple[str, set[str] | None]] = []
        for name in names:
            status = self.scope.kube.proxy_get(name, m.ROUTER_PORT, "/-/router", headers=headers)
            deployments = (status or {}).get("deployments") or {}
            entry = next((v for k, v in deployments.items() if str(k).lower() == dep), None)
            out.append((name, None if status is None else set((entry or {}).get("upstreams") or {})))
        return out

    def ready_addresses(self, ep: str, dep: str) -> list[str]:
        """``ip:port`` of the deployment's ready pods that are not being deleted, sorted."""
        return ready_addresses(self.scope.pods(ep, dep))

    def sync_pool(self, ep: str, dep: str, attrs: DeploymentAttrs | None) -> None:
        """The router's pool of ``dep``: its ready pods now, each with the configuration it runs (with
        ``attrs``' request settings)."""
        pods = self.scope.pods(ep, dep)
        self.table(ep).set_pool(dep, ready_addresses(pods), router_settings(attrs) if attrs else None,
                                ready_digests(pods))

"""An endpoint's router on Kubernetes: its keys (a Secret), its routing table (a ConfigMap the router
pod mounts), the router's httptools, and the wait until the router pod serves a new table.

The table is the document of providers/shared/routing_table.py; the router re-reads it when the kubelet
updates the mounted ConfigMap. recon annotates the router pods with each new version so that their
kubelet syncs them at once, and reads ``GET /-/router`` through the API server's pod proxy with the
instance key in ``x-recon-instance-key`` (the proxy drops ``Authorization``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import tarfile
import time
from pathlib import Path
from typing import Any

from providers.kubernetes import manifests as m
from providers.kubernetes.client import ConflictError
from providers.kubernetes.objects import KubeParts, pod_ready, ready_addresses, ready_digests
from providers.shared.endpoint_tokens import SIGNING_KEY, new_signing_key
from providers.shared.routing_table import router_limits
from providers.shared.runtime import ROUTER_ARCHIVE_NAME, router_archive, router_digest
from providers.shared.scaling import router_settings
from reconciler.model.errors import RetryableError
from reconciler.model.resources import digest_of

POLL = 0.25
ROUTER_RELOAD_TIMEOUT = 150.0
KEYS_FILE = f"{m.KEYS_DIR}/{m.KEYS_FILE}"
INSTANCE_KEY_FILE = f"{m.KEYS_DIR}/{m.INSTANCE_KEY_FILE}"
INSTANCE_KEY_HEADER = "x-recon-instance-key"  # how the router takes the instance key through the pod proxy
_ROUTER_LIB: tuple[bytes, str] | None = None


def router_lib() -> tuple[bytes, str]:
    """recon's httptools package as a .tar.gz (its Python files and compiled modules, reproducible),
    and the digest of the router program with it: what the router pod runs."""
    global _ROUTER_LIB
    if _ROUTER_LIB is None:
        import httptools  # type: ignore[import-untyped,unused-ignore]

        package = Path(httptools.__file__).resolve().parent
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for f in sorted(package.rglob("*")):
                if f.is_file() and f.suffix in (".py", ".so") and "__pycache__" not in f.parts:
                    tar.add(f, arcname=f"httptools/{f.relative_to(package)}", filter=clean_tarinfo)
        data = buf.getvalue()
        _ROUTER_LIB = data, digest_of({"router": router_digest(),
                                       "httptools": hashlib.sha256(data).hexdigest()})
    return _ROUTER_LIB


def clean_tarinfo(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Reproducible archive members: no caches, no owners, no times."""
    if "__pycache__" in info.name.split("/"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


class EndpointParts(KubeParts):
    """Keys, routing table and router reload of the provider's endpoints."""

    def _ensure_keys(self, ep: str) -> None:
        """The endpoint's Secret: its two keys, its token signing key and the instance key, each made once
        and kept (a Secret of an older recon gets the signing key)."""
        current = self._read_secret(ep)
        wanted = {"primaryKey": secrets.token_urlsafe(32), "secondaryKey": secrets.token_urlsafe(32),
                  SIGNING_KEY: new_signing_key(), "instanceKey": secrets.token_urlsafe(32), **current}
        if wanted == current:
            return
        data = {m.KEYS_FILE: json.dumps({k: wanted[k] for k in ("primaryKey", "secondaryKey", SIGNING_KEY)}),
                m.INSTANCE_KEY_FILE: json.dumps({"instanceKey": wanted["instanceKey"]})}
        self.kube.apply(m.secret(self.kube_settings, m.keys_name(ep), m.labels(self.workspace, "keys", ep), data))

    def _endpoint_outputs(self, ep: str) -> dict[str, Any]:
        router = self.kube.get("Deployment", m.router_name(ep))
        ready = bool(router) and int(((router or {}).get("status") or {}).get("availableReplicas") or 0) >= 1
        return {"router": m.router_name(ep), "service": m.router_name(ep), "namespace": self.ns,
                "scoring_uri": self._scoring_uri(ep), "provisioning_state": "Succeeded" if ready else "Failed"}

    def _scoring_uri(self, ep: str) -> str:
        host = self.kube_settings.scoring_host or f"{m.router_name(ep)}.{self.ns}.svc.cluster.local"
        return f"http://{host}/score"

    def _read_secret(self, ep: str) -> dict[str, str]:
        """primaryKey, secondaryKey, tokenSigningKey and instanceKey from the endpoint's Secret (those it
        holds)."""
        obj = self.kube.get("Secret", m.keys_name(ep))
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

    def _read_keys(self, ep: str) -> dict[str, str] | None:
        data = self._read_secret(ep)
        if data.get("primaryKey") and data.get("secondaryKey"):
            return {"primaryKey": data["primaryKey"], "secondaryKey": data["secondaryKey"]}
        return None

    # -- the routing table (a ConfigMap the router mounts) ------------------------------------------
    def _read_table(self, ep: str) -> dict[str, Any]:
        obj = self.kube.get("ConfigMap", m.router_name(ep))
        raw = ((obj or {}).get("data") or {}).get("table.json")
        if raw:
            try:
                data = json.loads(raw)
                if isinstance(data, dict):
                    return data
            except ValueError:
                pass
        return {"version": 0, "endpoint": ep, "auth_mode": "key", "keys_file": KEYS_FILE,
                "instance_key_file": INSTANCE_KEY_FILE, "deployments": {},
                "traffic": {}, "mirror_traffic": {}}

    def _update_table(self, ep: str, mutate: Any) -> int:
        """Read, change and write the table; a concurrent writer's change is retried (resourceVersion)."""
        name = m.router_name(ep)
        for _ in range(5):
            current = self.kube.get("ConfigMap", name)
            table = self._read_table(ep)
            mutate(table)
            version = int(table.get("version") or 0) + 1
            table.update(version=version, endpoint=ep, keys_file=KEYS_FILE, instance_key_file=INSTANCE_KEY_FILE,
                         limits=router_limits(self.settings, ep))
            obj = m.configmap(self.kube_settings, name, m.labels(self.workspace, "router", ep),
                              data={"table.json": json.dumps(table, indent=1)},
                              binary={ROUTER_ARCHIVE_NAME: base64.b64encode(router_archive()).decode()})
            if current is not None:
                obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                self.kube.apply(obj)
            except ConflictError:
                time.sleep(0.1)
                continue
            self._wait_router_version(ep, version)
            return version
        raise RetryableError(f"endpoint {ep}: its routing table kept changing while recon wrote it")

    def _wait_router_version(self, ep: str, version: int) -> None:
        """Until the router pods serve table ``version``; bounded, and only with ``router_reload_check``.
        Each pod is annotated with the version first: its kubelet then syncs it at once, refreshing the
        mounted ConfigMap (without that, within the kubelet's sync period: a minute by default). The
        router's ``GET /-/router`` is read through the API server's pod proxy with the instance key."""
        if not self.kube_settings.router_reload_check:
            return
        pods = [p for p in self.kube.items("Pod", {m.ENDPOINT: m.label_value(ep), m.ROLE: "router"})
                if pod_ready(p) and not p["metadata"].get("deletionTimestamp")]
        key = self._read_secret(ep).get("instanceKey", "")
        headers = {INSTANCE_KEY_HEADER: key} if key else {}
        deadline = time.monotonic() + ROUTER_RELOAD_TIMEOUT
        for pod in pods:
            name = pod["metadata"]["name"]
            self.kube.annotate("Pod", name, {"recon.io/table-version": str(version)})
            while True:
                status = self.kube.proxy_get(name, m.ROUTER_PORT, "/-/router", headers=headers)
                if status is not None and int(status.get("version") or 0) >= version:
                    break
                if time.monotonic() > deadline:
                    raise RetryableError(f"endpoint {ep}: router pod {name} did not load "
                                         f"routing table version {version} within {ROUTER_RELOAD_TIMEOUT:g}s")
                time.sleep(POLL)

    def _router_metrics(self, ep: str) -> list[tuple[str, str | None]]:
        """``GET /-/metrics`` of every running router pod of the endpoint (through the API server's pod
        proxy, with the instance key): ``(pod, text or None)``."""
        pods = [p for p in self.kube.items("Pod", {m.ENDPOINT: m.label_value(ep), m.ROLE: "router"})
                if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        key = self._read_secret(ep).get("instanceKey", "")
        headers = {INSTANCE_KEY_HEADER: key} if key else {}
        return [(p["metadata"]["name"], self.kube.proxy_text(p["metadata"]["name"], m.ROUTER_PORT, "/-/metrics",
                                                             headers=headers))
                for p in sorted(pods, key=lambda p: str(p["metadata"]["name"]))]

    def _ready_addresses(self, ep: str, dep: str) -> list[str]:
        """``ip:port`` of the deployment's ready pods that are not being deleted, sorted."""
        return ready_addresses(self._pods(ep, dep))

    def _set_pool(self, ep: str, dep: str, attrs: dict[str, Any] | None) -> None:
        pods = self._pods(ep, dep)
        ips, digests = ready_addresses(pods), ready_digests(pods)

        def mutate(table: dict[str, Any]) -> None:
            entry = table.setdefault("deployments", {}).setdefault(dep, {})
            if attrs is not None:
                entry.update(router_settings(attrs))
            entry["upstreams"] = sorted(ips)
            entry["digests"] = digests

        self._update_table(ep, mutate)

    def _remove_from_table(self, ep: str, dep: str) -> None:
        def mutate(table: dict[str, Any]) -> None:
            table.setdefault("deployments", {}).pop(dep, None)
            for key in ("traffic", "mirror_traffic"):
                table.setdefault(key, {}).pop(dep, None)

        self._update_table(ep, mutate)

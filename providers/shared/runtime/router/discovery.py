"""Pools that follow the cluster: the router's own watch of its endpoint's instance pods.

On Kubernetes the routing table carries a ``discovery`` section (providers/kubernetes/endpoint.py): the
namespace, the label selector of the endpoint's instance pods, the label that names each pod's
deployment, the instances' port and the annotation with the configuration digest a pod runs. The router
then lists and watches those pods through the API server (its pod's ServiceAccount token, in-cluster
address and CA) and fills each deployment's pool with the pods that are ready and not terminating:

- a pod the cluster adds (the autoscaler, a ReplicaSet replacing an evicted pod, ``kubectl scale``) takes
  requests as soon as its Ready condition is seen, with or without recon running;
- a pod marked for deletion (``deletionTimestamp``: an eviction, a scale-down, a rolling update) gets no
  new request from the moment that is seen; requests in flight there finish (``Pools.update`` drains);
- which deployments get traffic, and what share, is still the table's (recon writes it only after a
  rollout is complete); the watch only says where each deployment's instances are.

The watch runs in a thread of its own with the standard library's HTTP client; each change is handed to
the event loop as one immutable mapping (``Discovered``). Until the first list succeeds the table's own
upstreams are served; after it, the last known pods are, while the watch reconnects (with a new list).
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.client import HTTPException, HTTPSConnection
from typing import Any

from .status import log
from .table import DiscoverySpec

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
WATCH_SECONDS = 240  # the API server ends a watch after this; the router watches again from where it was
RETRY_SECONDS = 1.0


# deployment label value -> ((ip:port, digest), ...) of its ready pods that are not terminating, sorted
Discovered = dict[str, tuple[tuple[str, str], ...]]


def serving(pod: dict[str, Any]) -> bool:
    """Ready, with an address, and not marked for deletion."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or not status.get("podIP"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


class PodWatch:
    """Lists and watches the pods ``spec`` selects; calls ``publish`` (from its thread) with every new
    ``Discovered``. ``state``: what ``GET /-/router`` shows of it."""

    def __init__(self, spec: DiscoverySpec, publish: Callable[[Discovered], object]) -> None:
        self.spec = spec
        self.publish = publish
        self.pods: dict[str, dict[str, Any]] = {}
        self.last: Discovered | None = None
        self.synced = False
        self.error = ""
        self.stopped = False
        self.thread = threading.Thread(target=self.run, name="pod-watch", daemon=True)

    @property
    def state(self) -> dict[str, Any]:
        return {"synced": self.synced, "pods": len(self.pods), "error": self.error}

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped = True

    # -- the API server
    def _connect(self) -> tuple[HTTPSConnection, dict[str, str]]:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = int(os.environ.get("KUBERNETES_SERVICE_PORT", "443"))
        if not host:
            raise OSError("KUBERNETES_SERVICE_HOST is not set: not in a pod")
        with open(f"{SA_DIR}/token") as f:  # read each time: projected tokens are renewed
            token = f.read().strip()
        ctx = ssl.create_default_context(cafile=f"{SA_DIR}/ca.crt")
        conn = HTTPSConnection(host, port, context=ctx, timeout=WATCH_SECONDS + 30)
        return conn, {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def _path(self, **query: str) -> str:
        q = urllib.parse.urlencode({"labelSelector": self.spec.selector, **query})
        return f"/api/v1/namespaces/{urllib.parse.quote(self.spec.namespace)}/pods?{q}"

    def run(self) -> None:
        while not self.stopped:
            try:
                self._list_and_watch()
            except (OSError, HTTPException, ValueError) as ex:
                if str(ex) != self.error:
                    log("error", f"pod watch: {ex}; watching again")
                self.error = str(ex)
            time.sleep(RETRY_SECONDS)

    def _list_and_watch(self) -> None:
        conn, headers = self._connect()
        try:
            conn.request("GET", self._path(), headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise OSError(f"listing pods: HTTP {resp.status} {body[:200]!r}")
            doc = json.loads(body)
            self.pods = {p["metadata"]["name"]: p for p in doc.get("items") or []}
            version = str((doc.get("metadata") or {}).get("resourceVersion") or "")
            self.synced, self.error = True, ""
            self._changed()
            while not self.stopped:
                version = self._watch(conn, headers, version)
                if not version:
                    return  # expired: list again
        finally:
            conn.close()

    def _watch(self, conn: HTTPSConnection, headers: dict[str, str], version: str) -> str:
        """One watch request from ``version``; the version to go on from ("" to list again)."""
        conn.request("GET", self._path(watch="1", resourceVersion=version, allowWatchBookmarks="true",
                                       timeoutSeconds=str(WATCH_SECONDS)), headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read()
            if resp.status == 410:
                return ""
            raise OSError(f"watching pods: HTTP {resp.status} {body[:200]!r}")
        while True:
            line = resp.readline()
            if not line:
                resp.read()
                return version
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                resp.close()
                return ""  # 410 Gone (too old a version) or another error: list again
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            name = str((obj.get("metadata") or {}).get("name") or "")
            if kind == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = obj
            self._changed()

    def _changed(self) -> None:
        spec = self.spec
        out: dict[str, list[tuple[str, str]]] = {}
        for pod in self.pods.values():
            meta = pod.get("metadata") or {}
            group = (meta.get("labels") or {}).get(spec.label)
            if group is None or not serving(pod):
                continue
            digest = str((meta.get("annotations") or {}).get(spec.digest_annotation) or "")
            out.setdefault(group, []).append((f"{pod['status']['podIP']}:{spec.port}", digest))
        found: Discovered = {g: tuple(sorted(ups)) for g, ups in out.items()}
        if found != self.last:
            self.last = found
            self.publish(found)

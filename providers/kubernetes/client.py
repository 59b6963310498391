"""A thin wrapper over the official ``kubernetes`` client: server-side apply, get, list, delete, logs
and events as plain dicts, with every SDK exception translated into a ``ProviderError``.

No ``kubernetes`` type or exception leaves this module. Server-side apply uses
``fieldManager: recon`` and never forces: a field another manager owns is a ``ConflictError`` that
names the fields and their owner.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from providers.kubernetes.settings import KubeSettings
from reconciler.model.errors import PermanentError, ProviderError, RetryableError

FIELD_MANAGER = "recon"


class ConflictError(PermanentError):
    """Server-side apply refused: fields recon wants to set are owned by another manager.
    ``causes``: [(field, message)] from the API's answer."""

    def __init__(self, message: str, causes: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.causes = causes or []


def _causes(exc: Any) -> list[tuple[str, str]]:
    try:
        data = json.loads(getattr(exc, "body", None) or "{}")
    except (TypeError, ValueError):
        return []
    details = data.get("details") if isinstance(data, dict) else None
    return [(str(c.get("field", "")), str(c.get("message", ""))) for c in (details or {}).get("causes") or []
            if isinstance(c, dict)]


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return str(data["message"])
        except (TypeError, ValueError):
            pass
    return str(getattr(exc, "reason", None) or exc)


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """SDK and connection errors of ``what`` as ProviderError subclasses."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ProviderError:
        raise
    except ApiException as exc:
        status = int(getattr(exc, "status", 0) or 0)
        text = f"{what}: the Kubernetes API answered {status}: {_message(exc)}"
        if status == 409:
            raise ConflictError(text, _causes(exc)) from exc
        if status in (429, 500, 502, 503, 504) or status == 0:
            raise RetryableError(text) from exc
        raise PermanentError(text) from exc
    except ConfigException as exc:
        raise PermanentError(f"{what}: no usable kubeconfig: {exc}") from exc
    except (HTTPError, OSError) as exc:
        raise RetryableError(f"{what}: the Kubernetes API is unreachable: {exc}") from exc


def _manager(message: str) -> str | None:
    """``conflict with "kubectl-scale" using apps/v1`` -> kubectl-scale."""
    match = re.search(r'conflict with "([^"]+)"', message)
    return match.group(1) if match else None


# kind -> (apiVersion, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "Deployment": ("apps/v1", "deployments", True),
    "ReplicaSet": ("apps/v1", "replicasets", True),
    "Service": ("v1", "services", True),
    "Secret": ("v1", "secrets", True),
    "ConfigMap": ("v1", "configmaps", True),
    "Pod": ("v1", "pods", True),
    "Event": ("v1", "events", True),
    "ResourceQuota": ("v1", "resourcequotas", True),
    "Namespace": ("v1", "namespaces", False),
    "Node": ("v1", "nodes", False),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers", True),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "Role": ("rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings", True),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets", True),
}


class Kube:
    """One connection to a cluster, in one namespace."""

    def __init__(self, settings: KubeSettings) -> None:
        from kubernetes import client, config

        self.settings = settings
        self.namespace = settings.namespace
        with mapped(f"load the kubeconfig {settings.kubeconfig or '(KUBECONFIG, ~/.kube/config or in-cluster)'}"
                    + (f" context {settings.context}" if settings.context else "")):
            if settings.kubeconfig is None and settings.context is None:
                try:
                    self.api = config.new_client_from_config()  # type: ignore[no-untyped-call]
                except config.ConfigException:
                    config.load_incluster_config()  # type: ignore[no-untyped-call]
                    self.api = client.ApiClient()
            else:
                self.api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=settings.kubeconfig, context=settings.context)
        self.core = client.CoreV1Api(self.api)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.api.close()

    # -- paths -----------------------------------------------------------------------------------
    def _path(self, kind: str, name: str | None = None, namespace: str | None = None) -> str:
        api_version, plural, namespaced = KINDS[kind]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced:
            base += f"/namespaces/{namespace or self.namespace}"
        base += f"/{plural}"
        return base + (f"/{name}" if name else "")

    def _call(self, method: str, path: str, what: str, *, query: list[tuple[str, str]] | None = None,
              body: Any = None, content_type: str = "application/json", timeout: float = 30.0,
              extra_headers: dict[str, str] | None = None, raw_answer: bool = False) -> Any:
        from kubernetes.client.exceptions import ApiException

        with mapped(what):
            m, url, headers, data, _ = self.api.param_serialize(
                method, path, query_params=query or [], body=body, auth_settings=["BearerToken"],
                header_params={"Accept": "application/json", "Content-Type": content_type,
                               **(extra_headers or {})})
            response = self.api.call_api(m, url, header_params=headers, body=data, _request_timeout=timeout)
            response.read()
            if not 200 <= int(response.status) < 300:
                raise ApiException(http_resp=response)
            raw = response.data
            if raw_answer:
                return raw
            return json.loads(raw) if raw else {}

    # -- verbs -----------------------------------------------------------------------------------
    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of ``obj`` as fieldManager recon.

        A conflict with fields changed imperatively (``kubectl scale``, ``set env``, ``edit``: managers
        whose operation is Update) is drift the plan showed: recon takes those fields back. A conflict
        with another server-side applier (operation Apply: a GitOps tool, a colleague's
        ``kubectl apply --server-side``) is an error naming the fields and their manager; never forced."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        what = f"apply {kind} {name}"
        query = [("fieldManager", FIELD_MANAGER)]
        try:
            return dict(self._call("PATCH", self._path(kind, name), what, query=[*query, ("force", "false")],
                                   body=obj, content_type="application/apply-patch+yaml") or {})
        except ConflictError as exc:
            managers = {mgr for _, message in exc.causes if (mgr := _manager(message)) is not None}
            if not managers:
                raise
            current = self.get(kind, name) or {}
            operations = {str(f.get("manager")): str(f.get("operation"))
                          for f in (current.get("metadata") or {}).get("managedFields") or []}
            appliers = sorted(mgr for mgr in managers if operations.get(str(mgr)) != "Update")
            if appliers:
                fields = ", ".join(sorted({f for f, msg in exc.causes if _manager(msg) in appliers}))
                raise ConflictError(
                    f"{what}: {fields} owned by field manager {', '.join(appliers)} (server-side "
                    "apply); recon does not take fields another applier owns: remove them from that manager, "
                    "or hand them to recon with `kubectl apply --server-side --field-manager=recon "
                    "--force-conflicts`", exc.causes) from None
        return dict(self._call("PATCH", self._path(kind, name), what, query=[*query, ("force", "true")],
                               body=obj, content_type="application/apply-patch+yaml") or {})

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self._call("GET", self._path(kind, name), f"read {kind} {name}") or {})
        except PermanentError as exc:
            if " 404: " in str(exc):
                return None
            raise

    def items(self, kind: str, selector: dict[str, str] | None = None, field_selector: str | None = None,
             all_namespaces: bool = False) -> list[dict[str, Any]]:
        query: list[tuple[str, str]] = []
        if selector:
            query.append(("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(selector.items()))))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        path = self._path(kind)
        if all_namespaces:
            path = path.replace(f"/namespaces/{self.namespace}", "", 1)
        data = self._call("GET", path, f"list {kind}", query=query) or {}
        return [dict(i) for i in data.get("items") or []]

    def delete(self, kind: str, name: str, propagation: str = "Foreground", wait: float = 120.0) -> bool:
        """Delete with foreground propagation and wait (at most ``wait`` seconds) until the object is gone:
        the garbage collector removes it only after its dependents (a Deployment's ReplicaSets and pods),
        and until then a read still finds it. False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            self._call("DELETE", self._path(kind, name), f"delete {kind} {name}", body=body)
        except PermanentError as exc:
            if " 404: " in str(exc):
                return False
            raise
        deadline = time.monotonic() + wait
        while self.get(kind, name) is not None:
            if time.monotonic() > deadline:
                raise RetryableError(f"delete {kind} {self.namespace}/{name}: still there after {wait:g}s "
                                     "(its finalizers or dependents are not gone yet)")
            time.sleep(0.1)
        return True

    def annotate(self, kind: str, name: str, annotations: dict[str, str]) -> bool:
        """A merge patch of ``metadata.annotations`` (False when the object is gone). On a pod this also
        makes its kubelet sync it now, refreshing its ConfigMap volumes (else: within its sync period)."""
        body = {"metadata": {"annotations": annotations}}
        try:
            self._call("PATCH", self._path(kind, name), f"annotate {kind} {name}", body=body,
                       content_type="application/merge-patch+json")
        except PermanentError as exc:
            if " 404: " in str(exc):
                return False
            raise
        return True

    def proxy_get(self, pod: str, port: int, path: str, timeout: float = 3.0,
                  headers: dict[str, str] | None = None) -> dict[str, Any] | None:
        """``GET path`` on a pod through the API server's pod proxy (None when it does not answer).
        The API server drops the ``Authorization`` header it authenticated with: a credential for the
        pod goes in a header of its own (``headers``)."""
        try:
            data = self._call("GET", f"/api/v1/namespaces/{self.namespace}/pods/{pod}:{port}/proxy{path}",
                              f"ask pod {pod}", timeout=timeout, extra_headers=headers)
        except ProviderError:
            return None
        return data if isinstance(data, dict) else None

    def proxy_text(self, pod: str, port: int, path: str, timeout: float = 3.0,
                   headers: dict[str, str] | None = None) -> str | None:
        """``proxy_get`` for an answer that is text, not JSON (a router's ``GET /-/metrics``)."""
        try:
            data = self._call("GET", f"/api/v1/namespaces/{self.namespace}/pods/{pod}:{port}/proxy{path}",
                              f"ask pod {pod}", timeout=timeout, extra_headers=headers, raw_answer=True)
        except ProviderError:
            return None
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")

    def ensure_namespace(self) -> None:
        if self.get("Namespace", self.namespace) is None:
            self._call("POST", self._path("Namespace"), f"create namespace {self.namespace}",
                       body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})

    def logs(self, pod: str, tail: int, container: str | None = None, previous: bool = False) -> list[str]:
        """The last ``tail`` lines of a container's log; none when the kubelet cannot give them (not
        started, gone, or a node without a log endpoint)."""
        try:
            with mapped(f"logs of pod {pod}"):
                text = self.core.read_namespaced_pod_log(pod, self.namespace, tail_lines=tail, container=container,
                                                         previous=previous, _request_timeout=10)
        except ProviderError:
            return []
        return str(text or "").splitlines()

    def events(self, kind: str, name: str) -> list[str]:
        items = self.items("Event", field_selector=f"involvedObject.kind={kind},involvedObject.name={name}")
        items.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        return [f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}".strip() for e in items]

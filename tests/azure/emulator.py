"""An emulator of ARM's Microsoft.MachineLearningServices API (2024-04-01), for the Azure provider's tests.

A real HTTPS server on 127.0.0.1 (a test CA, see ``tls.py``) that speaks the documented protocol:

- **Auth**: a managed-identity token endpoint (``/msi/token``, App Service style: azure-identity's
  ``ManagedIdentityCredential`` reads ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``); every ARM request
  needs ``Authorization: Bearer <a token it issued>`` (401 otherwise).
- **Resources**: online endpoints and deployments, model/environment/code versions, listKeys, token
  (an ``AMLToken`` endpoint's ``EndpointAuthToken``: ``accessToken``, ``expiryTimeUtc``,
  ``refreshAfterTimeUtc`` in Unix seconds, ``tokenType``; ``token_lifetime_s`` from now), getLogs,
  startPendingUpload (a SAS URL into Azurite), the region's usages and quotas.
- **Bodies** are validated against the resource model (``armschema``): an unknown property or a
  mistyped value is a 400 ``InvalidRequestContent``, as ARM answers; domain rules ARM enforces
  too (a deployment's endpoint exists, traffic names existing deployments and sums to 0 or 100,
  mirror traffic at most 50%, no traffic to a deployment being deleted, instanceType immutable).
- **Long-running operations**: PUT answers 201 + ``Azure-AsyncOperation``; PATCH and DELETE 202 +
  ``Location``; all with ``Retry-After`` and ``x-ms-async-operation-timeout``. Each poll moves the
  operation one state on (``Creating`` -> ``Updating`` -> ``Succeeded``; ``Scaling``; ``Deleting``),
  the resource's ``provisioningState`` following it. A write while an operation runs on the same
  resource is a 409 ``Conflict`` with ``Retry-After``.
- **Faults**, scripted by tests (``fault()``): any status (429 with Retry-After, 409, 500, 503)
  for the next N matching requests, a dropped connection, an operation that ends ``Failed`` with
  an error body, an operation that never ends (to outlive its ``x-ms-async-operation-timeout``).
- **Azure Monitor**: ``GET {endpoint id}/providers/Microsoft.Insights/metrics`` serves the online
  endpoint's ``RequestsPerMinute`` and ``RequestLatency_P99`` in the documented shape, from a model
  of the endpoint's load and each deployment's behaviour that tests set (``metrics``, see
  ``metrics.py``); faults apply to it like to any path.
- **Scoring**: ``POST /inference/{endpoint}/score`` with an endpoint key (``Key``), or an unexpired
  token of the endpoint's ``token`` action (``AMLToken``: never a key), answers which deployment served
  it (by the traffic split, or the ``azureml-model-deployment`` header), as a stand-in for the data
  plane; anything else is a 401.

``Retry-After`` is ``retry_after`` (default ``0.05``: ARM sends whole seconds, the tests send a
fraction so that a suite of long-running operations runs in seconds; azure-core reads both).
Everything it received is in ``requests`` (method, path, body, status) for assertions.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.azure import armschema as S
from tests.azure.metrics import Metrics
from tests.azure.tls import TestCA

API_VERSION = "2024-04-01"
SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
RESOURCE_GROUP = "recon-rg"
WORKSPACE = "recon-ws"
LOCATION = "eastus"
PROVIDER = "/providers/Microsoft.MachineLearningServices"

# The VM sizes tests use: vCPUs and quota family (DOMAIN.md's table, Azure's family names).
SIZES = {
    "standard_ds1_v2": (1, "standardDSv2Family"), "standard_ds2_v2": (2, "standardDSv2Family"),
    "standard_ds3_v2": (4, "standardDSv2Family"), "standard_ds4_v2": (8, "standardDSv2Family"),
    "standard_f2s_v2": (2, "standardFSv2Family"), "standard_f4s_v2": (4, "standardFSv2Family"),
    "standard_f8s_v2": (8, "standardFSv2Family"), "standard_e4s_v3": (4, "standardESv3Family"),
}
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")


@dataclass
class Fault:
    """What the next ``times`` requests matching ``method`` and ``path`` (a regex searched in the
    lower-cased path) get. ``kind``: ``status`` (answer ``status`` with an ARM error body),
    ``drop`` (close the connection, no answer), ``fail`` (accept; the operation ends ``Failed``),
    ``hang`` (accept; the operation never ends; ``timeout`` is its x-ms-async-operation-timeout)."""

    method: str
    path: str
    kind: str = "status"
    status: int = 500
    code: str = "InternalServerError"
    message: str = "emulated failure"
    times: int = 1
    retry_after: str | None = None
    timeout: str = "PT1H"
    logs: list[str] = field(default_factory=list)
    hits: int = 0


@dataclass
class Operation:
    id: str
    path: str  # the resource's (lower-cased) path
    states: list[str]  # one per poll; the last is terminal
    via: str  # "async" (Azure-AsyncOperation) or "location"
    method: str
    error: dict[str, str] | None = None
    hang: bool = False
    index: int = -1
    final_status: int = 200

    @property
    def status(self) -> str:
        return self.states[max(self.index, 0)] if not self.hang or self.index < 0 else self.states[0]

    @property
    def done(self) -> bool:
        return not self.hang and self.index >= len(self.states) - 1


class Emulator:
    """State and behaviour of the emulated ARM; ``serve()`` runs it on a loopback port."""

    def __init__(self, ca: TestCA, storage: Any = None) -> None:
        self.ca = ca
        self.storage = storage  # tests.azure.azurite.Azurite or None
        self.identity_header = secrets.token_hex(16)
        self.tokens: set[str] = set()
        self.resources: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, Operation] = {}
        self.keys: dict[str, dict[str, str]] = {}
        self.data_tokens: dict[str, dict[str, int]] = {}  # endpoint -> {token: expiry} (the token action's)
        self.token_lifetime_s = 24 * 3600
        self.logs: dict[str, list[str]] = {}
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.retry_after = "0.05"
        self.family_limits: dict[str, int] = {"standardDSv2Family": 100, "standardFSv2Family": 100,
                                              "standardESv3Family": 50}
        self.other_usage: dict[str, int] = {}
        self.workspace_quota: dict[str, int] = {}
        self.metrics = Metrics()  # Azure Monitor's metrics of the endpoints (tests/azure/metrics.py)
        self.metrics.body_of = lambda endpoint, name: json.dumps(self.deployment(endpoint, name) or {})
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    # -- names -----------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def workspace_path(self) -> str:
        return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}{PROVIDER}/workspaces/{WORKSPACE}"

    @property
    def location_path(self) -> str:
        return f"/subscriptions/{SUBSCRIPTION}{PROVIDER}/locations/{LOCATION}"

    def endpoint(self, name: str) -> dict[str, Any] | None:
        return self.resources.get(f"{self.workspace_path}/onlineEndpoints/{name}".lower())

    def deployment(self, endpoint: str, name: str) -> dict[str, Any] | None:
        return self.resources.get(f"{self.workspace_path}/onlineEndpoints/{endpoint}/deployments/{name}".lower())

    def settings(self) -> dict[str, Any]:
        """recon.yaml's ``provider:`` for this emulator."""
        return {"kind": "azure", "subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
                "workspace": WORKSPACE, "location": LOCATION, "arm_endpoint": self.base, "poll_interval": 0.05,
                "conflict_wait": 30, "retry_total": 4}

    def environ(self) -> dict[str, str]:
        """The environment a client needs: the test CA, and a managed identity at the token endpoint."""
        return {"REQUESTS_CA_BUNDLE": str(self.ca.ca_pem), "SSL_CERT_FILE": str(self.ca.ca_pem),
                "IDENTITY_ENDPOINT": f"{self.base}/msi/token", "IDENTITY_HEADER": self.identity_header}

    # -- control, for tests --------------------------------------------------------------------------
    def fault(self, method: str, path: str, **kw: Any) -> Fault:
        f = Fault(method.upper(), path.lower(), **kw)
        with self.lock:
            self.faults.append(f)
        return f

    def calls(self, method: str | None = None, path: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if (method is None or r["method"] == method)
                    and re.search(path.lower(), r["path"].lower())]

    def clear_log(self) -> None:
        with self.lock:
            self.requests.clear()

    def expire_tokens(self, endpoint: str) -> None:
        """Every token the ``token`` action gave for ``endpoint`` expires now."""
        with self.lock:
            past = int(time.time()) - 1
            self.data_tokens[endpoint.lower()] = dict.fromkeys(self.data_tokens.get(endpoint.lower(), {}), past)

    # -- serving ---------------------------------------------------------------------------------------
    def serve(self) -> Emulator:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.ca.cert_pem), str(self.ca.key_pem))
        emulator = self

        class Handler(_Handler):
            emu = emulator

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.server, self.port = server, server.server_address[1]
        threading.Thread(target=server.serve_forever, name="arm-emulator", daemon=True).start()
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # -- request handling -------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/")
        query = parse_qs(parts.query)
        if path == "/msi/token":
            return self._token(headers, query)
        if path.startswith("/inference/"):
            return self._score(path, headers, body)
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return _error(401, "AuthenticationFailed", "no valid bearer token")
        insights = path.lower().endswith("/providers/microsoft.insights/metrics")
        if not insights and query.get("api-version", [None])[0] != API_VERSION:
            return _error(400, "InvalidApiVersionParameter", f"api-version must be {API_VERSION}")
        fault = self._fault(method, path)
        if fault is not None and fault.kind == "status":
            status, hdrs, out = _error(fault.status, fault.code, fault.message)
            if fault.retry_after is not None:
                hdrs["Retry-After"] = fault.retry_after
            return status, hdrs, out
        with self.lock:
            if insights:
                return self._metrics(method, path, query)
            return self._route(method, path, body, fault)

    def _metrics(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        """Azure Monitor's ``Metrics - List`` of an online endpoint (``tests/azure/metrics.py``)."""
        if method != "GET":
            return _error(405, "MethodNotAllowed", method)
        resource = path[: -len("/providers/Microsoft.Insights/metrics")]
        prefix = f"{self.workspace_path}/onlineEndpoints/".lower()
        name = resource[len(prefix):] if resource.lower().startswith(prefix) else ""
        found = name if name and "/" not in name and self.endpoint(name) is not None else None
        return self.metrics.handle(found, resource, query)

    def _fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.method == method and f.hits < f.times and re.search(f.path, path.lower()):
                    f.hits += 1
                    return f
        return None

    def _token(self, headers: dict[str, str], query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        if headers.get("x-identity-header") != self.identity_header:
            return 401, {}, {"error": "invalid identity header"}
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        return 200, {}, {"access_token": token, "expires_on": str(int(time.time()) + 3600),
                         "resource": (query.get("resource") or [""])[0], "token_type": "Bearer"}

    def _route(self, method: str, path: str, body: Any, fault: Fault | None) -> tuple[int, dict[str, str], Any]:
        lower = path.lower()
        loc = self.location_path.lower()
        if lower.startswith(loc + "/"):
            return self._location_routes(method, lower[len(loc) + 1:])
        ws = self.workspace_path.lower()
        if not lower.startswith(ws + "/"):
            return _error(404, "ResourceNotFound", f"nothing at {path}")
        rel = path[len(ws) + 1:].split("/")
        kinds = {"onlineendpoints": self._endpoint_routes, "models": self._asset_routes,
                 "environments": self._asset_routes, "codes": self._asset_routes}
        handler = kinds.get(rel[0].lower())
        if handler is None:
            return _error(404, "ResourceNotFound", f"nothing at {path}")
        return handler(method, rel, body, fault)

    # -- operations ----------------------------------------------------------------------------------
    def _start(self, method: str, path: str, states: list[str], fault: Fault | None,
               resource: dict[str, Any] | None) -> tuple[int, dict[str, str], Any]:
        via = "async" if method == "PUT" else "location"
        op = Operation(uuid.uuid4().hex, path, states, via, method)
        timeout = "PT1H"
        if fault is not None and fault.kind == "fail":
            op.states = [*states[:-1], "Failed"]
            op.error = {"code": fault.code, "message": fault.message}
            self.logs[path] = list(fault.logs)
        if fault is not None and fault.kind == "hang":
            op.hang, timeout = True, fault.timeout
        self.operations[op.id] = op
        if resource is not None:
            resource["properties"]["provisioningState"] = states[0]
        headers = {"Retry-After": self.retry_after, "x-ms-async-operation-timeout": timeout}
        if via == "async":
            headers["Azure-AsyncOperation"] = f"{self.base}{self.location_path}/mfeOperationsStatus/{op.id}?api-version={API_VERSION}"
            return 201, headers, resource
        headers["Location"] = f"{self.base}{self.location_path}/mfeOperationResults/{op.id}?api-version={API_VERSION}"
        return 202, headers, None

    def _busy(self, path: str) -> bool:
        """An operation on ``path`` has not ended (ARM answers 409 to another write meanwhile)."""
        return any(op.path == path and not op.done for op in self.operations.values())

    def finish(self) -> None:
        """Let every operation a ``hang`` fault holds end ``Succeeded``, as Azure finishes an operation
        whether or not anyone polls it (a client killed mid-operation)."""
        with self.lock:
            for op in self.operations.values():
                if op.hang:
                    op.hang, op.index = False, len(op.states) - 1
                    target = self.resources.get(op.path)
                    if target is not None:
                        target["properties"]["provisioningState"] = op.states[-1]

    def release(self) -> None:
        """End every operation that a ``hang`` fault holds (Azure gave up on it: Canceled)."""
        with self.lock:
            for op in self.operations.values():
                if op.hang:
                    op.hang, op.states, op.index = False, ["Canceled"], 0
                    target = self.resources.get(op.path)
                    if target is not None:
                        target["properties"]["provisioningState"] = "Canceled"

    def _advance(self, op: Operation) -> None:
        if op.done or op.hang:
            return
        op.index += 1
        state = op.states[op.index]
        target = self.resources.get(op.path)
        if op.done and op.method == "DELETE" and state == "Succeeded":
            self._remove(op.path)
        elif target is not None:
            target["properties"]["provisioningState"] = state

    def _location_routes(self, method: str, rel: str) -> tuple[int, dict[str, str], Any]:
        parts = rel.split("/")
        if method == "GET" and parts == ["usages"]:
            return 200, {}, {"value": self._usages()}
        if method == "GET" and parts == ["quotas"]:
            return 200, {}, {"value": self._quotas()}
        if method != "GET" or len(parts) != 2 or parts[1] not in self.operations:
            return _error(404, "ResourceNotFound", f"no operation {rel}")
        op = self.operations[parts[1]]
        self._advance(op)
        if parts[0] == "mfeoperationsstatus":
            out: dict[str, Any] = {"id": f"{self.location_path}/mfeOperationsStatus/{op.id}", "name": op.id,
                                   "status": op.status}
            if op.status == "Failed" and op.error:
                out["error"] = op.error
            return 200, {"Retry-After": self.retry_after}, out
        if not op.done:
            return 202, {"Location": f"{self.base}{self.location_path}/mfeOperationResults/{op.id}?api-version={API_VERSION}",
                         "Retry-After": self.retry_after}, None
        if op.status == "Failed":
            return _error(400, (op.error or {}).get("code", "Failed"), (op.error or {}).get("message", "failed"))
        if op.method == "DELETE":
            return 204, {}, None
        return 200, {}, self.resources.get(op.path)

    # -- endpoints and deployments -----------------------------------------------------------------------
    def _endpoint_routes(self, method: str, rel: list[str], body: Any, fault: Fault | None) -> tuple[int, dict[str, str], Any]:
        if len(rel) == 1:
            if method != "GET":
                return _error(405, "MethodNotAllowed", method)
            prefix = f"{self.workspace_path}/onlineEndpoints/".lower()
            found = [r for p, r in self.resources.items() if p.startswith(prefix) and p.count("/") == prefix.count("/")]
            return 200, {}, {"value": found}
        name = rel[1]
        path = f"{self.workspace_path}/onlineEndpoints/{name}"
        if len(rel) == 2:
            return self._endpoint(method, path, name, body, fault)
        if len(rel) == 3 and rel[2] == "listKeys" and method == "POST":
            if self.endpoint(name) is None:
                return _error(404, "ResourceNotFound", f"no endpoint {name}")
            return 200, {}, dict(self.keys[name.lower()])
        if len(rel) == 3 and rel[2] == "token" and method == "POST":
            return self._data_token(name)
        if len(rel) >= 4 and rel[2] == "deployments":
            dpath = f"{path}/deployments/{rel[3]}"
            if len(rel) == 4:
                return self._deployment(method, dpath, name, rel[3], body, fault)
            if len(rel) == 5 and rel[4] == "getLogs" and method == "POST":
                return self._get_logs(dpath, body)
        return _error(404, "ResourceNotFound", "/".join(rel))

    def _endpoint(self, method: str, path: str, name: str, body: Any, fault: Fault | None) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        current = self.resources.get(key)
        if method == "GET":
            return (200, {}, current) if current else _error(404, "ResourceNotFound", f"endpoint {name} not found")
        if method in ("PUT", "PATCH", "DELETE") and self._busy(key):
            return _conflict(name, self.retry_after)
        if method == "DELETE":
            if current is None:
                return 204, {}, None
            return self._start("DELETE", key, ["Deleting", "Deleting", "Succeeded"], fault, current)
        if method == "PATCH":
            errors = S.validate(body, S.ENDPOINT_PATCH)
            if errors or current is None:
                return _invalid(errors) if errors else _error(404, "ResourceNotFound", name)
            current["tags"] = dict(body.get("tags") or current.get("tags") or {})
            return self._start("PATCH", key, ["Updating", "Succeeded"], fault, current)
        if method != "PUT":
            return _error(405, "MethodNotAllowed", method)
        errors = S.validate(body, S.ENDPOINT)
        if not NAME.match(name):
            errors.append(f"name {name!r} does not match {NAME.pattern}")
        errors += self._traffic_errors(name, body)
        if errors:
            return _invalid(errors)
        props = {k: v for k, v in body["properties"].items() if k not in ("provisioningState", "scoringUri")}
        props.setdefault("traffic", {})
        props.setdefault("mirrorTraffic", {})
        props["scoringUri"] = f"{self.base}/inference/{name.lower()}/score"
        resource = {"id": path, "name": name, "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
                    "location": body["location"], "tags": dict(body.get("tags") or {}),
                    "identity": {**body.get("identity", {}), "principalId": str(uuid.uuid4()), "tenantId": str(uuid.uuid4())},
                    "kind": "Managed" if "compute" not in props else "Kubernetes", "properties": props}
        self.resources[key] = resource
        self.metrics.record(name, props["traffic"], props["mirrorTraffic"])
        self.keys.setdefault(name.lower(), {"primaryKey": secrets.token_urlsafe(24), "secondaryKey": secrets.token_urlsafe(24)})
        states = ["Creating", "Updating", "Succeeded"] if current is None else ["Updating", "Succeeded"]
        return self._start("PUT", key, states, fault, resource)

    def _data_token(self, name: str) -> tuple[int, dict[str, str], Any]:
        """``OnlineEndpoints_GetToken``: a new token of an ``AMLToken`` endpoint (an opaque stand-in for
        Azure's JWT), refreshable after half its lifetime."""
        ep = self.endpoint(name)
        if ep is None:
            return _error(404, "ResourceNotFound", f"no endpoint {name}")
        if ep["properties"].get("authMode") != "AMLToken":
            return _error(400, "BadArgument", f"endpoint {name} uses auth mode {ep['properties'].get('authMode')}: "
                                              "tokens are for AMLToken endpoints (use listKeys)")
        now, token = int(time.time()), secrets.token_urlsafe(32)
        self.data_tokens.setdefault(name.lower(), {})[token] = now + self.token_lifetime_s
        return 200, {}, {"accessToken": token, "tokenType": "Bearer", "expiryTimeUtc": now + self.token_lifetime_s,
                         "refreshAfterTimeUtc": now + self.token_lifetime_s // 2}

    def _traffic_errors(self, endpoint: str, body: Any) -> list[str]:
        props = body.get("properties") or {}
        traffic, mirror = props.get("traffic") or {}, props.get("mirrorTraffic") or {}
        errors = []
        if traffic and sum(traffic.values()) not in (0, 100):
            errors.append(f"properties.traffic: the percentages add up to {sum(traffic.values())}, not 100 or 0")
        for name, pct in {**traffic, **mirror}.items():
            dep = self.deployment(endpoint, name)
            if pct and dep is None:
                errors.append(f"properties.traffic: deployment {name} does not exist")
            elif pct and dep["properties"].get("provisioningState") not in ("Succeeded",):
                errors.append(f"properties.traffic: deployment {name} is {dep['properties'].get('provisioningState')}")
        if any(v > 50 for v in mirror.values()) or len([v for v in mirror.values() if v]) > 1:
            errors.append("properties.mirrorTraffic: one deployment, at most 50 percent")
        if {k for k, v in traffic.items() if v} & {k for k, v in mirror.items() if v}:
            errors.append("properties.mirrorTraffic: a deployment with live traffic cannot get mirrored traffic")
        return errors

    def _deployment(self, method: str, path: str, endpoint: str, name: str, body: Any,
                    fault: Fault | None) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        current = self.resources.get(key)
        ep = self.endpoint(endpoint)
        if method == "GET":
            return (200, {}, current) if current else _error(404, "ResourceNotFound", f"deployment {name} not found")
        if ep is None:
            return _error(404, "ParentResourceNotFound", f"endpoint {endpoint} does not exist")
        if self._busy(key) or self._busy(f"{self.workspace_path}/onlineEndpoints/{endpoint}".lower()):
            return _conflict(name, self.retry_after)
        if method == "DELETE":
            if current is None:
                return 204, {}, None
            live = {**ep["properties"].get("traffic", {}), **ep["properties"].get("mirrorTraffic", {})}
            if {k.lower(): v for k, v in live.items()}.get(name.lower()):
                return _error(400, "BadRequest", f"deployment {name} still gets traffic; set it to 0 first")
            return self._start("DELETE", key, ["Deleting", "Deleting", "Succeeded"], fault, current)
        if method == "PATCH":
            errors = S.validate(body, S.DEPLOYMENT_PATCH)
            if errors or current is None:
                return _invalid(errors) if errors else _error(404, "ResourceNotFound", name)
            if body.get("sku", {}).get("capacity") is not None:
                current["sku"]["capacity"] = body["sku"]["capacity"]
            if body.get("tags") is not None:
                current["tags"] = dict(body["tags"])
            return self._start("PATCH", key, ["Scaling", "Scaling", "Succeeded"], fault, current)
        if method != "PUT":
            return _error(405, "MethodNotAllowed", method)
        errors = S.validate(body, S.DEPLOYMENT)
        if not NAME.match(name):
            errors.append(f"name {name!r} does not match {NAME.pattern}")
        errors += [] if errors else self._deployment_errors(body, current)
        if errors:
            return _invalid(errors)
        props = {k: v for k, v in body["properties"].items() if k != "provisioningState"}
        resource = {"id": path, "name": name, "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
                    "location": body["location"], "tags": dict(body.get("tags") or {}), "kind": props["endpointComputeType"],
                    "sku": dict(body.get("sku") or {"name": "Default", "capacity": 1}), "properties": props}
        self.resources[key] = resource
        self.logs.setdefault(key, [])
        self.logs[key] += [f"{time.strftime('%Y-%m-%dT%H:%M:%S')} azmlinfsrv INFO: scoring server for {name} "
                           f"starting ({resource['sku'].get('capacity')} instance(s))"]
        states = (["Creating", "Updating", "Succeeded"] if current is None else ["Updating", "Updating", "Succeeded"])
        return self._start("PUT", key, states, fault, resource)

    def _deployment_errors(self, body: dict[str, Any], current: dict[str, Any] | None) -> list[str]:
        props = body["properties"]
        errors = []
        if current is not None and props.get("instanceType") != current["properties"].get("instanceType"):
            errors.append("properties.instanceType: cannot be changed on an existing deployment")
        for key, kind in (("model", "models"), ("environmentId", "environments")):
            ref = props.get(key)
            if isinstance(ref, str) and ref.lower().startswith(self.workspace_path.lower()) and ref.lower() not in self.resources:
                errors.append(f"properties.{key}: {kind[:-1]} {ref.rsplit('/', 3)[-3]} version {ref.rsplit('/', 1)[-1]} not found")
        code = (props.get("codeConfiguration") or {}).get("codeId")
        if code and code.lower().startswith(self.workspace_path.lower()) and code.lower() not in self.resources:
            errors.append(f"properties.codeConfiguration.codeId: code asset {code} not found")
        return errors

    def _get_logs(self, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
        errors = S.validate(body, S.LOGS_REQUEST)
        if errors:
            return _invalid(errors)
        if path.lower() not in self.resources and path.lower() not in self.logs:
            return _error(404, "ResourceNotFound", "no such deployment")
        lines = self.logs.get(path.lower(), [])
        tail = int(body.get("tail") or len(lines) or 1)
        return 200, {}, {"content": "\n".join(lines[-tail:])}

    def _remove(self, path: str) -> None:
        self.resources.pop(path, None)
        for other in [p for p in self.resources if p.startswith(path + "/")]:
            self.resources.pop(other, None)
        name = path.rsplit("/", 1)[-1]
        if "/deployments/" not in path:
            self.keys.pop(name, None)

    # -- assets -------------------------------------------------------------------------------------------------
    def _asset_routes(self, method: str, rel: list[str], body: Any, fault: Fault | None) -> tuple[int, dict[str, str], Any]:
        if len(rel) == 2 and method == "GET":  # the container: its latest version
            return self._asset_container(rel[0], rel[1])
        if len(rel) < 4 or rel[2] != "versions":
            return _error(404, "ResourceNotFound", "/".join(rel))
        kind, name, version = rel[0].lower(), rel[1], rel[3]
        path = f"{self.workspace_path}/{rel[0]}/{name}/versions/{version}"
        key = path.lower()
        if len(rel) == 5 and rel[4] == "startPendingUpload" and method == "POST" and kind in ("models", "codes"):
            return self._pending_upload(body)
        if len(rel) != 4:
            return _error(404, "ResourceNotFound", "/".join(rel))
        current = self.resources.get(key)
        if method == "GET":
            return (200, {}, current) if current else _error(404, "ResourceNotFound", f"{kind} {name}:{version} not found")
        if method == "DELETE":
            self.resources.pop(key, None)
            return (200 if current else 204), {}, None
        if method != "PUT":
            return _error(405, "MethodNotAllowed", method)
        schema = {"models": S.MODEL_VERSION, "environments": S.ENVIRONMENT_VERSION, "codes": S.CODE_VERSION}[kind]
        errors = S.validate(body, schema)
        if not NAME.match(name):
            errors.append(f"name {name!r} does not match {NAME.pattern}")
        props = (body or {}).get("properties") or {}
        uri = props.get("modelUri") or props.get("codeUri") or (props.get("build") or {}).get("contextUri")
        stored = self.storage is not None and bool(uri) and str(uri).startswith(self.storage.account_url)
        if not errors and stored and not self.storage.has_blobs(uri):
            errors.append(f"properties: nothing was uploaded at {urlsplit(uri).path}")
        if kind == "environments" and not errors and not (props.get("image") or props.get("build")):
            errors.append("properties: an environment needs an image or a build context")
        if current is not None and not errors:
            old = current["properties"]
            for field_name in ("modelUri", "codeUri", "image", "condaFile"):
                if field_name in props and props.get(field_name) != old.get(field_name):
                    return _error(409, "Conflict", f"{kind} {name}:{version} exists with another {field_name}; "
                                                   "asset versions are immutable")
        if errors:
            return _invalid(errors)
        resource = {"id": path, "name": version, "type": f"Microsoft.MachineLearningServices/workspaces/{rel[0]}/versions",
                    "properties": {**props, "provisioningState": "Succeeded"}}
        self.resources[key] = resource
        return (200 if current else 201), {}, resource

    def _asset_container(self, kind: str, name: str) -> tuple[int, dict[str, str], Any]:
        prefix = f"{self.workspace_path}/{kind}/{name}/versions/".lower()
        versions = [k[len(prefix):] for k in self.resources if k.startswith(prefix)]
        if not versions:
            return _error(404, "ResourceNotFound", f"{kind} {name} not found")
        latest = max(versions, key=lambda v: (v.isdigit(), int(v) if v.isdigit() else 0, v))
        path = f"{self.workspace_path}/{kind}/{name}"
        return 200, {}, {"id": path, "name": name, "properties": {"latestVersion": latest}}

    def _pending_upload(self, body: Any) -> tuple[int, dict[str, str], Any]:
        errors = S.validate(body, S.PENDING_UPLOAD)
        if errors:
            return _invalid(errors)
        if self.storage is None:
            return _error(500, "InternalServerError", "no blob storage behind this emulator")
        upload_id = uuid.uuid4().hex
        blob_uri, sas_uri = self.storage.pending_upload(f"LocalUpload/{upload_id}")
        return 200, {}, {"pendingUploadId": upload_id, "pendingUploadType": "TemporaryBlobReference",
                         "blobReferenceForConsumption": {"blobUri": blob_uri, "storageAccountArmId": "/storage/emulated",
                                                         "credential": {"credentialType": "SAS", "sasUri": sas_uri}}}

    # -- quota ----------------------------------------------------------------------------------------------------
    def used_cores(self) -> dict[str, int]:
        used = dict(self.other_usage)
        for path, res in self.resources.items():
            if "/deployments/" not in path or res["properties"].get("endpointComputeType") != "Managed":
                continue
            if res["properties"].get("provisioningState") in ("Failed", "Deleting"):
                continue
            cores, family = SIZES.get(str(res["properties"].get("instanceType")).lower(), (0, ""))
            scale = res["properties"].get("scaleSettings") or {}
            n = scale.get("maxInstances", 1) if scale.get("scaleType") == "TargetUtilization" else res["sku"].get("capacity", 0)
            if family:
                used[family] = used.get(family, 0) + (6 * n + 4) // 5 * cores
        return used

    def _usages(self) -> list[dict[str, Any]]:
        used = self.used_cores()
        out = []
        for family, limit in sorted(self.family_limits.items()):
            out.append({"id": f"{self.location_path}/usages/{family}", "type": "Microsoft.MachineLearningServices/vmFamily/usages",
                        "unit": "Count", "currentValue": used.get(family, 0), "limit": limit,
                        "name": {"value": family, "localizedValue": f"{family} vCPUs"}, "amlWorkspaceLocation": LOCATION})
            mine = used.get(family, 0) - self.other_usage.get(family, 0)  # this workspace's own deployments
            out.append({"id": f"{self.workspace_path}/usages/{family}",
                        "type": "Microsoft.MachineLearningServices/workspaces/dedicatedCores/usages",
                        "unit": "Count", "currentValue": mine, "limit": self.workspace_quota.get(family, limit),
                        "name": {"value": family, "localizedValue": f"{family} vCPUs in {WORKSPACE}"},
                        "amlWorkspaceLocation": LOCATION})
        return out

    def _quotas(self) -> list[dict[str, Any]]:
        return [{"id": f"{self.workspace_path}/quotas/{family}", "type": "Microsoft.MachineLearningServices/workspaces/quotas",
                 "name": {"value": family, "localizedValue": family}, "limit": limit, "unit": "Count",
                 "amlWorkspaceLocation": LOCATION} for family, limit in sorted(self.workspace_quota.items())]

    # -- scoring ----------------------------------------------------------------------------------------------------
    def _score(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        parts = path.split("/")
        name = parts[2] if len(parts) > 2 else ""
        with self.lock:
            ep, keys = self.endpoint(name), self.keys.get(name.lower(), {})
            if ep is None:
                return 404, {}, {"error": "no such endpoint"}
            token = headers.get("authorization", "").removeprefix("Bearer ")
            if ep["properties"].get("authMode") == "AMLToken":
                expiry = self.data_tokens.get(name.lower(), {}).get(token)
                if expiry is None or time.time() >= expiry:
                    return 401, {}, {"error": "token auth failed"}
            elif not token or token not in keys.values():
                return 401, {}, {"error": "key auth failed"}
            chosen = headers.get("azureml-model-deployment") or _pick(ep["properties"].get("traffic") or {})
            if not chosen or self.deployment(name, chosen) is None:
                return 424, {}, {"error": "no deployment to serve the request"}
            dep = self.deployment(name, chosen) or {}
        answer = {"deployment": chosen.lower(), "model": dep["properties"].get("model"), "echo": body}
        return 200, {"azureml-model-deployment": chosen.lower()}, answer


def _pick(traffic: dict[str, int]) -> str | None:
    live = [(k, v) for k, v in sorted(traffic.items()) if v]
    if not live:
        return None
    roll = secrets.randbelow(sum(v for _, v in live))
    for name, pct in live:
        if roll < pct:
            return name
        roll -= pct
    return live[-1][0]


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], Any]:
    return status, {}, {"error": {"code": code, "message": message}}


def _invalid(errors: list[str]) -> tuple[int, dict[str, str], Any]:
    return _error(400, "InvalidRequestContent", "The request content was invalid: " + "; ".join(errors))


def _conflict(name: str, retry_after: str) -> tuple[int, dict[str, str], Any]:
    status, headers, body = _error(409, "Conflict", f"an operation on {name} is in progress")
    headers["Retry-After"] = retry_after
    return status, headers, body


class _Handler(BaseHTTPRequestHandler):
    emu: Emulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        fault = None
        if method != "GET" or "/msi/" not in self.path:
            with self.emu.lock:
                fault = next((f for f in self.emu.faults if f.kind == "drop" and f.method == method and f.hits < f.times
                              and re.search(f.path, urlsplit(self.path).path.lower())), None)
                if fault is not None:
                    fault.hits += 1
        if fault is not None:
            self._log(method, body, 0)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            status, out_headers, out = self.emu.handle(method, self.path, headers, body)
        except Exception as exc:  # an emulator bug is a 500 the test sees
            status, out_headers, out = _error(500, "EmulatorError", f"{type(exc).__name__}: {exc}")
        self._log(method, body, status)
        data = json.dumps(out).encode() if out is not None else b""
        self.send_response(status)
        for k, v in out_headers.items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _log(self, method: str, body: Any, status: int) -> None:
        if self.path.startswith("/msi/"):
            return
        with self.emu.lock:
            self.emu.requests.append({"t": time.monotonic(), "method": method, "path": urlsplit(self.path).path,
                                      "query": urlsplit(self.path).query, "body": body,
                                      "status": status, "auth": self.headers.get("Authorization", "")})

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

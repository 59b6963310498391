"""An endpoint's routing table: the document the control plane writes and the router program
(``runtime/router/``) serves (docs/runtime.md), and its operations, written once for every place a
table is kept (a file under the project's state folder, a Kubernetes ConfigMap).

Every change is a read-modify-write of the whole table that bumps ``version`` and then reaches the
router (``RoutingTable.update_table``: how is the store's); the operations (``set_pool``,
``remove_deployment``, ``set_split``, ``set_auth_mode``) only say what changes. Also here: what the
router enforces per endpoint (``router_limits``, from recon.yaml) and per deployment
(``router_settings``), and traffic in normal form.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.model.errors import ConfigError, Diagnostic
from reconciler.model.resources import DeploymentAttrs

Mutation = Callable[[dict[str, Any]], None]

# The router's per-endpoint limits and their defaults (runtime/router/table.py LIMITS; docs/security.md).
ROUTER_LIMITS = {"max_body_bytes": 100 * 1024 * 1024, "max_connections": 1000, "header_timeout_ms": 10_000,
                 "body_timeout_ms": 30_000, "idle_timeout_ms": 60_000}


def router_limits(settings: dict[str, Any], endpoint: str) -> dict[str, int]:
    """The limits of ``endpoint``'s router from the provider setting ``router_limits`` (recon.yaml):
    ``{<limit>: N, ..., endpoints: {<endpoint>: {<limit>: N}}}``, defaults for the rest."""
    raw = settings.get("router_limits") or {}
    where = "provider.router_limits"
    if not isinstance(raw, dict):
        raise _limit_error(where, raw, "a mapping of limit names to whole numbers")
    per = raw.get("endpoints") or {}
    if not isinstance(per, dict):
        raise _limit_error(f"{where}.endpoints", per, "a mapping of endpoint names to limits")
    out = dict(ROUTER_LIMITS)
    layers = [("", where, {k: v for k, v in raw.items() if k != "endpoints"})]
    layers += [(str(name).lower(), f"{where}.endpoints.{name}", v) for name, v in per.items()]
    for name, path, layer in layers:  # every layer is checked; the endpoint's own applies last
        if not isinstance(layer, dict):
            raise _limit_error(path, layer, "a mapping of limit names to whole numbers")
        for key, value in layer.items():
            if key not in ROUTER_LIMITS:
                raise _limit_error(f"{path}.{key}", value, "one of " + ", ".join(ROUTER_LIMITS))
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _limit_error(f"{path}.{key}", value, "a whole number of at least 1")
            if name in ("", endpoint.lower()):
                out[key] = value
    return out


def _limit_error(path: str, value: Any, want: str) -> ConfigError:
    return ConfigError(Diagnostic(f"{value!r} is not valid; expected {want}", file="recon.yaml",
                                  path=path))


def normal_traffic(traffic: Any) -> dict[str, int]:
    """Traffic in normal form: lowercased names, zero entries dropped."""
    return {str(k).lower(): int(v) for k, v in (traffic or {}).items() if int(v or 0) > 0}


def router_settings(attrs: DeploymentAttrs) -> dict[str, Any]:
    """The request settings the router enforces for a deployment (routing table entry)."""
    settings: Mapping[str, Any] = attrs.get("request_settings") or {}
    return {k: settings[k] for k in ("request_timeout_ms", "max_concurrent_requests_per_instance",
                                     "max_queue_wait_ms") if settings.get(k) is not None}


def new_table(endpoint: str, **fields: Any) -> dict[str, Any]:
    """The table of an endpoint nothing was written for yet: version 0, key auth, no deployments."""
    return {"version": 0, "endpoint": endpoint, "auth_mode": "key", **fields, "deployments": {}, "traffic": {},
            "mirror_traffic": {}}


class RoutingTable(ABC):
    """One endpoint's routing table, wherever it is kept. A store implements ``read_table``,
    ``update_table`` (atomic against concurrent writers, then the router loads the new version) and
    ``table_fields``; the operations are the same for every store."""

    name: str  # the endpoint, lowercased

    @abstractmethod
    def read_table(self) -> dict[str, Any]:
        """The table as written; ``new_table`` when none is."""

    @abstractmethod
    def update_table(self, mutate: Mutation, wait: bool = True) -> int:
        """Apply ``mutate`` to the table (``next_version``), write it, have the router load it (and,
        with ``wait``, wait until it serves it); the new version."""

    def table_fields(self) -> dict[str, Any]:
        """Fields every version of the table carries besides the version and the endpoint."""
        return {}

    def next_version(self, table: dict[str, Any], mutate: Mutation) -> int:
        """``mutate`` applied to ``table``, its version bumped and its fixed fields set: the new version."""
        mutate(table)
        version = int(table.get("version") or 0) + 1
        table.update(version=version, endpoint=self.name, **self.table_fields())
        return version

    # -- the operations ------------------------------------------------------------------------------
    def set_pool(self, deployment: str, upstreams: list[str], settings: dict[str, Any] | None = None,
                 digests: dict[str, str] | None = None) -> int:
        """Make the router's pool for ``deployment`` exactly ``upstreams`` (with its request settings) and
        the configuration digest of each upstream (``digests``: what the router's metrics label it with)."""

        def mutate(table: dict[str, Any]) -> None:
            entry = table.setdefault("deployments", {}).setdefault(deployment, {})
            entry.update(settings or {})
            entry["upstreams"] = list(upstreams)
            entry["digests"] = {u: d for u, d in (digests or {}).items() if u in upstreams}

        return self.update_table(mutate)

    def remove_deployment(self, deployment: str) -> int:
        """Take ``deployment`` out of the table: its pool, traffic and mirror entries."""

        def mutate(table: dict[str, Any]) -> None:
            table.setdefault("deployments", {}).pop(deployment, None)
            for key in ("traffic", "mirror_traffic"):
                table.setdefault(key, {}).pop(deployment, None)

        return self.update_table(mutate)

    def set_split(self, traffic: dict[str, int], mirror_traffic: dict[str, int],
                  limits: dict[str, int] | None = None) -> int:
        """The traffic split and the mirror's share (in normal form), and the router's limits."""

        def mutate(table: dict[str, Any]) -> None:
            table["traffic"] = normal_traffic(traffic)
            table["mirror_traffic"] = normal_traffic(mirror_traffic)
            if limits is not None:
                table["limits"] = limits

        return self.update_table(mutate)

    def set_auth_mode(self, auth_mode: str | None, limits: dict[str, int] | None = None, wait: bool = True) -> int:
        """The endpoint's auth mode (``key`` when unset), and the router's limits."""

        def mutate(table: dict[str, Any]) -> None:
            table["auth_mode"] = auth_mode or "key"
            if limits is not None:
                table["limits"] = limits

        return self.update_table(mutate, wait=wait)

    def routed(self, deployment: str) -> list[str] | None:
        """The upstreams the written table lists for ``deployment`` (None: it has no entry)."""
        entry = (self.read_table().get("deployments") or {}).get(deployment)
        if not isinstance(entry, dict) or entry.get("upstreams") is None:
            return None
        return [str(u) for u in entry["upstreams"]]

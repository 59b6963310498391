"""The routing table and the keys: what the control plane writes and the router serves (docs/runtime.md).

- ``parse_table``: the JSON document checked and normalised (names lowercased, 0% entries dropped);
  a ``TableError`` keeps the table in force.
- ``Credentials``: the endpoint's keys, its token signing key and the instance key, and the one place a
  request's credential is checked (``authorized``): a key under ``auth_mode: key``, a token under
  ``auth_mode: aml_token`` (``tokens``), never the other.
- ``Split``: which deployment the next request goes to (the traffic split) and whether it is copied
  (mirroring). It survives table reloads that leave the split unchanged, so a reload does not restart
  the rotation.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import tokens
from .messages import CONTROL_PATHS, Request

MAX_BODY = 100 * 1024 * 1024
# Per-endpoint limits (table "limits"): name -> default. ``Table.limit_values`` keeps this order.
LIMITS = {"max_body_bytes": MAX_BODY, "max_connections": 1000, "header_timeout_ms": 10_000,
          "body_timeout_ms": 30_000, "idle_timeout_ms": 60_000}
AUTH_MODES = ("key", "aml_token", "none")  # what the router enforces; anything else: the table is refused
TOKEN_CACHE = 1024  # tokens already verified, with their expiry: a token's next requests skip the HMAC


class TableError(ValueError):
    """The routing table cannot be used (the old one stays in force)."""


@dataclass(frozen=True)
class DeploymentSpec:
    """A deployment as the table describes it: where its instances listen and Azure's request settings."""

    name: str
    upstreams: tuple[str, ...]
    request_timeout_ms: int = 5000
    max_concurrent: int = 1
    max_queue_wait_ms: int = 500
    digests: tuple[str, ...] = ()  # the configuration each upstream runs, by position ("": not given)

    def digest_of(self, addr: str) -> str:
        """The configuration digest the table gives the upstream at ``addr`` ("" when none)."""
        for up, digest in zip(self.upstreams, self.digests, strict=False):
            if up == addr:
                return digest
        return ""


@dataclass(frozen=True)
class DiscoverySpec:
    """The table's ``discovery`` section: which pods the router watches for its pools (discovery.py)."""

    namespace: str
    selector: str  # label selector of the endpoint's instance pods
    label: str  # the label whose value names a pod's deployment
    port: int  # where instances listen
    digest_annotation: str
    groups: tuple[tuple[str, str], ...]  # (deployment name lowercased, its pods' label value)


def parse_discovery(raw: Any) -> DiscoverySpec | None:
    """The ``discovery`` section (None when the table has none); ValueError when it is malformed."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TableError("discovery: expected an object")
    try:
        groups = raw.get("groups") or {}
        return DiscoverySpec(namespace=str(raw["namespace"]), selector=str(raw["selector"]), label=str(raw["label"]),
                             port=int(raw["port"]), digest_annotation=str(raw.get("digest_annotation") or ""),
                             groups=tuple(sorted((str(k).lower(), str(v)) for k, v in dict(groups).items())))
    except (KeyError, TypeError, ValueError) as ex:
        raise TableError(f"discovery: {ex}") from None


@dataclass(frozen=True)
class Table:
    """A parsed routing table (docs/runtime.md). Names are lowercased."""

    endpoint: str
    auth_mode: str
    keys_file: str | None
    deployments: dict[str, DeploymentSpec]
    traffic: dict[str, int]
    mirror: dict[str, int]
    version: Any = None
    limits: tuple[tuple[str, int], ...] = ()
    instance_key_file: str | None = None
    discovery: DiscoverySpec | None = None

    def limit(self, name: str) -> int:
        return dict(self.limits).get(name, LIMITS[name])

    def limit_values(self) -> tuple[int, ...]:
        """Every limit, in ``LIMITS``' order (what the connections read on their hot path)."""
        return tuple(self.limit(name) for name in LIMITS)


def _int(d: dict[str, Any], key: str, default: int, where: str) -> int:
    value = d.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TableError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
    return value


def _percentages(raw: Any, where: str, deployments: dict[str, DeploymentSpec]) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TableError(f"{where}: expected an object of deployment name to percentage")
    out: dict[str, int] = {}
    for name, pct in raw.items():
        if not isinstance(pct, int) or isinstance(pct, bool) or not 0 <= pct <= 100:
            raise TableError(f"{where}.{name}: expected a whole percentage 0-100, got {pct!r}")
        if name.lower() not in deployments:
            raise TableError(f"{where}.{name}: no such deployment in 'deployments'")
        if pct:
            out[name.lower()] = pct
    return out


def _digests(raw: Any, upstreams: list[str], where: str) -> tuple[str, ...]:
    """The digest of each upstream, by position, from ``{"host:port": "digest"}`` ("" for those it
    does not name; tables written before the digests have none)."""
    if raw is None:
        return ("",) * len(upstreams)
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise TableError(f"{where}: expected an object of 'host:port' to configuration digest")
    return tuple(raw.get(addr, "") for addr in upstreams)


def _deployments(doc: dict[str, Any]) -> dict[str, DeploymentSpec]:
    deployments: dict[str, DeploymentSpec] = {}
    raw_deps = doc.get("deployments") or {}
    if not isinstance(raw_deps, dict):
        raise TableError("deployments: expected an object")
    for name, d in raw_deps.items():
        where = f"deployments.{name}"
        ups = d.get("upstreams", []) if isinstance(d, dict) else None
        if not isinstance(ups, list) or not all(isinstance(u, str) and ":" in u for u in ups):
            raise TableError(f"{where}.upstreams: expected a list of 'host:port'")
        deployments[name.lower()] = DeploymentSpec(
            name=name, upstreams=tuple(ups), digests=_digests(d.get("digests"), ups, f"{where}.digests"),
            request_timeout_ms=_int(d, "request_timeout_ms", 5000, where),
            max_concurrent=max(1, _int(d, "max_concurrent_requests_per_instance", 1, where)),
            max_queue_wait_ms=_int(d, "max_queue_wait_ms", 500, where))
    return deployments


def parse_table(doc: Any) -> Table:
    if not isinstance(doc, dict):
        raise TableError("the table must be a JSON object")
    deployments = _deployments(doc)
    auth_mode = doc.get("auth_mode", "key")
    if auth_mode not in AUTH_MODES:
        raise TableError(f"auth_mode: {auth_mode!r} is not one the router enforces ({', '.join(AUTH_MODES)})")
    keys_file = doc.get("keys_file")
    if auth_mode != "none" and not isinstance(keys_file, str):
        raise TableError(f"keys_file: required for auth_mode {auth_mode!r}")
    raw_limits = doc.get("limits") or {}
    if not isinstance(raw_limits, dict) or set(raw_limits) - set(LIMITS):
        raise TableError(f"limits: expected an object with keys among {', '.join(LIMITS)}")
    limits = tuple((k, max(1, _int(raw_limits, k, LIMITS[k], "limits"))) for k in LIMITS)
    ikf = doc.get("instance_key_file")
    if ikf is not None and not isinstance(ikf, str):
        raise TableError("instance_key_file: expected a path")
    return Table(endpoint=str(doc.get("endpoint", "")), auth_mode=auth_mode, keys_file=keys_file,
                 deployments=deployments, limits=limits, instance_key_file=ikf,
                 traffic=_percentages(doc.get("traffic"), "traffic", deployments),
                 mirror=_percentages(doc.get("mirror_traffic"), "mirror_traffic", deployments),
                 version=doc.get("version"), discovery=parse_discovery(doc.get("discovery")))


def read_instance_key(path: str | None) -> bytes:
    if not path:
        return b""
    with open(path) as f:
        key = str(json.load(f).get("instanceKey") or "")
    if not key:
        raise TableError(f"{path}: no instanceKey")
    return key.encode()


def read_keys(path: str, auth_mode: str = "key") -> tuple[tuple[bytes, ...], bytes]:
    """The endpoint's keys and its token signing key; what ``auth_mode`` needs must be there."""
    with open(path) as f:
        doc = json.load(f)
    keys = tuple(str(doc[k]).encode() for k in ("primaryKey", "secondaryKey") if doc.get(k))
    token_key = str(doc.get("tokenSigningKey") or "").encode()
    if auth_mode == "aml_token" and not token_key:
        raise TableError(f"{path}: no tokenSigningKey (auth_mode 'aml_token' verifies tokens with it)")
    if auth_mode == "key" and not keys:
        raise TableError(f"{path}: no primaryKey or secondaryKey")
    return keys, token_key


@dataclass(frozen=True)
class Credentials:
    """What a request may present: under ``auth_mode: key`` the endpoint's keys (``keys``), under
    ``aml_token`` a token of ``endpoint`` signed with ``token_key`` (and then never a key); and the
    instance key the control plane uses for the router's own URLs (and the router presents to the
    instances). ``clock``: Unix seconds, what token expiries are compared with."""

    auth_mode: str = "none"
    keys: tuple[bytes, ...] = ()
    instance_key: bytes = b""
    token_key: bytes = b""
    endpoint: str = ""
    clock: Callable[[], float] = time.time
    verified: dict[bytes, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def denial(self) -> str:
        """The 401's message: what this endpoint takes."""
        if self.auth_mode == "aml_token":
            return "Unauthorized: missing, invalid or expired token (Authorization: Bearer <accessToken>)"
        return "Unauthorized: missing or invalid key (Authorization: Bearer <key>)"

    def token_ok(self, token: bytes) -> bool:
        """``token`` is a valid token of this endpoint now (verified once, then remembered until it expires)."""
        now = self.clock()
        exp = self.verified.get(token)
        if exp is not None:
            return now < exp
        exp = tokens.verify(token, self.token_key, self.endpoint, now)
        if exp is None:
            return False
        if len(self.verified) >= TOKEN_CACHE:
            self.verified.clear()
        self.verified[token] = exp
        return True

    def authorized(self, req: Request) -> bool:
        """The endpoint's key or token (as its auth mode says); the router's own URLs (``/-/router``:
        status, upstream addresses; ``/-/metrics``) also take the instance key (what the control plane
        uses), and need one of them even when the endpoint has no auth."""
        status_url = req.target in CONTROL_PATHS
        if self.auth_mode == "none" and not (status_url and self.instance_key):
            return True
        if status_url and self.instance_key and req.instance_key:
            # the control plane's other way in: an API server's pod proxy (Kubernetes) drops the
            # Authorization header it authenticated with, so the instance key comes in its own header
            return hmac.compare_digest(req.instance_key, self.instance_key)
        auth = req.auth
        if auth[:7].lower() != b"bearer ":
            return False
        token = auth[7:].strip()
        ok = False
        if self.auth_mode == "aml_token":
            ok = self.token_ok(token)
        for key in self.keys if self.auth_mode == "key" else ():
            ok |= hmac.compare_digest(token, key)
        if status_url and self.instance_key:
            ok |= hmac.compare_digest(token, self.instance_key)
        return ok


def load(path: str) -> tuple[Table, Credentials]:
    """The table at ``path`` and the keys it names (raises OSError, ValueError or KeyError)."""
    with open(path) as f:
        table = parse_table(json.load(f))
    keys, token_key = (read_keys(table.keys_file, table.auth_mode) if table.auth_mode != "none" and table.keys_file
                       else ((), b""))
    return table, Credentials(table.auth_mode, keys, read_instance_key(table.instance_key_file), token_key,
                              table.endpoint.lower())


class Split:
    """The traffic split (smooth weighted round robin, nginx's: exact to within one request per 100)
    and the mirror's share (every ``pct`` in 100 requests routed by the split is copied)."""

    def __init__(self) -> None:
        self.weights: list[tuple[str, int]] = []
        self.current: dict[str, int] = {}
        self.mirror: tuple[str, int] | None = None
        self.mirror_acc = 0

    def update(self, table: Table) -> None:
        weights = [(n, w) for n, w in table.traffic.items() if w > 0]
        if weights != self.weights:  # an unchanged split keeps its rotation across reloads
            self.weights = weights
            self.current = {n: 0 for n, _ in weights}
        self.mirror = next(iter(table.mirror.items())) if table.mirror else None

    def pick(self) -> str | None:
        split = self.weights
        if not split:
            return None
        if len(split) == 1:
            return split[0][0]
        cur = self.current
        total = 0
        best = ""
        best_v = -1 << 30
        for name, w in split:
            v = cur[name] + w
            cur[name] = v
            total += w
            if v > best_v:
                best, best_v = name, v
        cur[best] -= total
        return best

    def mirror_choice(self) -> str | None:
        if self.mirror is None:
            return None
        name, pct = self.mirror
        self.mirror_acc += pct
        if self.mirror_acc >= 100:
            self.mirror_acc -= 100
            return name
        return None

"""Helpers every instance-running provider (local, docker) shares: one definition of how a
deployment's attributes turn into router settings, counts and drain times, and of the error a
failed start becomes."""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from providers.base import ApplyRequest, Provider
from reconciler.errors import PermanentError

if TYPE_CHECKING:  # providers.local imports this module: no import cycle at run time
    from providers.local.instances import StartFailure


def start_error(address: str, failure: StartFailure, what: str = "instance") -> PermanentError:
    """The error of a batch whose new instances did not become ready, with their last log lines."""
    lines = failure.log_tail or [f"(the {what} wrote nothing to its log)"]
    return PermanentError(f"{address}: {failure.reason}; the old instances keep serving. Last log lines:\n"
                          + "\n".join("    " + line for line in lines[-15:]), detail=lines)


def router_settings(attrs: dict[str, Any]) -> dict[str, Any]:
    """The request settings the router enforces for a deployment (routing table entry)."""
    settings = attrs.get("request_settings") or {}
    return {k: settings[k] for k in ("request_timeout_ms", "max_concurrent_requests_per_instance",
                                     "max_queue_wait_ms") if settings.get(k) is not None}


def instance_count(attrs: dict[str, Any], default: int) -> int:
    value = attrs.get("instance_count")
    return default if value is None else int(value)


def drain_timeout(attrs: dict[str, Any]) -> float:
    """How long requests in flight on a removed instance may take: its request timeout, plus 1 s."""
    timeout_ms = (attrs.get("request_settings") or {}).get("request_timeout_ms") or 5000
    return float(timeout_ms) / 1000 + 1.0


def normal_traffic(traffic: Any) -> dict[str, int]:
    """Traffic in normal form: lowercased names, zero entries dropped."""
    return {str(k).lower(): int(v) for k, v in (traffic or {}).items() if int(v or 0) > 0}


class _Instance(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def config_digest(self) -> str: ...


_I = TypeVar("_I", bound=_Instance)


# -- the arithmetic of scaling and rolling, the same for processes and containers ----------------
def running_digest(healthy: Sequence[_Instance]) -> str | None:
    """The configuration a scale-up clones: the one most healthy instances run (template changes
    come after, in the rollout, as the service does); None when nothing runs."""
    running = Counter(i.config_digest for i in healthy).most_common(1)
    return running[0][0] if running else None


def surplus(healthy: Sequence[_I], count: int, desired: str) -> list[_I]:
    """The instances a scale-down to ``count`` stops: those of an old configuration first, then
    the newest."""
    ordered = sorted(healthy, key=lambda i: (i.config_digest == desired, -i.id))
    return ordered[: max(0, len(healthy) - count)]


def batch_moves(live: Sequence[_I], stale: Sequence[_I], count: int, size: int) -> tuple[list[_I], int]:
    """One rollout batch: (the stale instances it retires, how many new ones it starts).

    ``size`` new instances come up before as many old ones go. With more live instances than
    ``count`` a batch was interrupted after its new ones started: this one only retires."""
    size = max(1, size)
    if len(live) > count:
        return list(stale[: min(size, len(live) - count)]), 0
    retire = list(stale[: min(size, len(stale))])
    return retire, len(retire)


class InstanceProvider(Provider):
    """What the providers that run instances behind a router (local, docker) do the same way:
    dispatching create and in-place update by resource type. Each names only its own pieces:
    how an environment, endpoint and deployment are made, and how a deployment's pool is set."""

    state_dir: Path
    project_root: Path

    def create(self, request: ApplyRequest) -> dict[str, Any]:
        if request.type == "environment":
            return self._create_environment(request)
        if request.type == "model":
            from providers.local import files  # here: providers.local imports this module

            path = files.place_model(self.state_dir, self.project_root, request.attributes, request.address)
            return {"model_dir": str(path)}
        if request.type == "endpoint":
            return self._create_endpoint(request)
        return self._create_deployment(request)

    def update(self, request: ApplyRequest) -> dict[str, Any]:
        prior = dict(request.prior.outputs) if request.prior else {}
        if request.type == "environment":
            return self._create_environment(request)
        if request.type == "model":
            return {**prior, **self.create(request)}
        if request.type == "endpoint":
            ep = self._endpoint(request.attributes["name"])
            ep.update_table(lambda t: t.update(auth_mode=request.attributes.get("auth_mode") or "key"))
            if ep.router() is None:
                return self._create_endpoint(request)
            return self._endpoint_outputs(ep)
        return self._repool_deployment(request, prior)

    @abstractmethod
    def _create_environment(self, request: ApplyRequest) -> dict[str, Any]: ...

    @abstractmethod
    def _create_endpoint(self, request: ApplyRequest) -> dict[str, Any]: ...

    @abstractmethod
    def _create_deployment(self, request: ApplyRequest) -> dict[str, Any]: ...

    @abstractmethod
    def _endpoint(self, name: str) -> Any: ...

    @abstractmethod
    def _endpoint_outputs(self, ep: Any) -> dict[str, Any]: ...

    @abstractmethod
    def _repool_deployment(self, request: ApplyRequest, prior: dict[str, Any]) -> dict[str, Any]:
        """An in-place, non-rolling deployment update: the live instances, pooled with the new settings."""

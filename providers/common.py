"""Helpers every instance-running provider (local, docker) shares: one definition of how a
deployment's attributes turn into router settings, counts and drain times, and of the error a
failed start becomes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

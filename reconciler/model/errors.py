"""Every error recon raises on purpose, in one place.

Hierarchy::

    ReconcilerError                 root: the CLI turns any of these into a clean message, exit 1
    ├── ConfigError                 the desired state is wrong; carries every Diagnostic of the run
    ├── MissingExtraError           a provider or state backend whose pip extra is not installed
    ├── PlanError                   a plan cannot be made or carried out (quota, capacity, ...)
    │   └── StalePlanError          a saved plan no longer matches the state or the desired state
    ├── StateError                  the state cannot be read or written
    │   ├── StateLockedError        another operation holds the lock (names the holder)
    │   └── StateConflictError      another writer changed the state since it was read
    └── ProviderError               a provider could not do what was asked
        ├── RetryableError          may succeed if tried again (bounded retries)
        └── PermanentError          will not succeed as asked; never retried

Only ``reconciler.cli`` turns these into exit codes and text. Providers translate their SDK's
exceptions into ``ProviderError`` subclasses at their boundary (``raise PermanentError(...) from exc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Diagnostic:
    """One problem in the user's input, located as precisely as the parser allows.

    ``file`` is relative to the project root when it is inside it; ``line`` is 1-based or None
    when the parser cannot know it; ``path`` is the dotted field path inside the document
    (``traffic.blue``, ``request_settings.request_timeout_ms``); ``hint`` says what would be right.
    """

    message: str
    file: str | None = None
    line: int | None = None
    path: str | None = None
    hint: str | None = None
    severity: str = "error"  # "error" | "warning"

    def location(self) -> str:
        where = self.file or "<project>"
        if self.line is not None:
            where += f":{self.line}"
        return where

    def format(self) -> str:
        """``file:line: field: message (hint)`` — one line a log search finds. Characters that are
        not printable (line breaks, escape sequences) are written as escapes: a key or value from a
        hostile file can neither forge another line of output nor drive the terminal."""
        text = f"{self.location()}: "
        if self.path:
            text += f"{self.path}: "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return printable(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }


def printable(text: str) -> str:
    """``text`` with every character that is not printable (but space) escaped as in ``repr``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ReconcilerError(Exception):
    """Root of every error recon raises on purpose."""


class ConfigError(ReconcilerError):
    """The desired state is invalid. Holds all diagnostics of the run, not just the first."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic | str) -> None:
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(diagnostics)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


class MissingExtraError(ReconcilerError):
    """The project asks for a provider or state backend whose SDK, a pip extra, is not installed.
    The message names it and the pip command (``reconciler.model.extras``)."""

    def __init__(self, message: str, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class PlanError(ReconcilerError):
    """A plan cannot be made (quota, capacity) or is not applicable as it stands."""

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None) -> None:
        self.diagnostics: list[Diagnostic] = diagnostics or []
        super().__init__(message)


class StalePlanError(PlanError):
    """A saved plan was made from another state or desired state than the current one."""


class StateError(ReconcilerError):
    """The state cannot be read, parsed or written."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or asks for) the state lock. Mirrors Terraform's LockInfo, plus the holder's
    process id and host, so that ``force-unlock`` can tell a live holder from a dead one."""

    id: str
    operation: str
    who: str
    created: str  # ISO 8601, UTC
    version: str = ""
    path: str = ""
    info: str = ""
    pid: int = 0  # the holder's process id (0: not recorded, e.g. a lock of an older release)
    host: str = ""  # the host that process runs on

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "who": self.who,
            "created": self.created,
            "version": self.version,
            "path": self.path,
            "info": self.info,
            "pid": self.pid,
            "host": self.host,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LockInfo:
        fields = {k: str(data.get(k) or "") for k in cls.__dataclass_fields__ if k not in ("pid", "host")}
        try:
            pid = int(data.get("pid") or 0)
        except (TypeError, ValueError):
            pid = 0
        return cls(**fields, pid=pid, host=str(data.get("host") or ""))

    def holder(self) -> str:
        """``recon destroy (pid 4242, alice@ci-7) since 2026-01-02 03:04:05 UTC``."""
        process = ", ".join(p for p in (f"pid {self.pid}" if self.pid else "", self.who) if p)
        since = self.created.replace("T", " ").replace("+00:00", " UTC") if self.created else "an unknown time"
        return f"recon {self.operation}" + (f" ({process})" if process else "") + f" since {since}"

    def describe(self) -> str:
        return (
            f"ID: {self.id}, operation: {self.operation}, who: {self.who}, created: {self.created}"
            + (f", pid: {self.pid}" if self.pid else "")
            + (f", path: {self.path}" if self.path else "")
        )


class StateLockedError(StateError):
    """Another operation holds the state lock; ``holder`` says who.

    The first line is complete on its own (who holds it, doing what, since when, the lock ID);
    what to do comes after it."""

    def __init__(self, holder: LockInfo | None, message: str | None = None) -> None:
        self.holder = holder
        if message is None:
            if holder is None:
                message = "the state is locked by another operation (its holder did not record itself)"
            else:
                message = (
                    f"the state is locked by {holder.holder()} (lock ID {holder.id})\n"
                    "  wait for it to finish (--lock-timeout 5m waits up to 5 minutes); if that "
                    f"operation is dead, run: recon force-unlock {holder.id}"
                )
        super().__init__(message)


class StateConflictError(StateError):
    """The state changed since it was read (compare-and-swap on the serial failed)."""


class ProviderError(ReconcilerError):
    """A provider could not carry out an operation. ``detail`` may hold log lines."""

    def __init__(self, message: str, detail: list[str] | None = None) -> None:
        self.detail: list[str] = detail or []
        super().__init__(message)


class RetryableError(ProviderError):
    """A temporary failure; the engine may retry with bounded backoff."""

    def __init__(self, message: str, delay: float = 1.0, detail: list[str] | None = None) -> None:
        self.delay = delay
        super().__init__(message, detail)


class PermanentError(ProviderError):
    """A failure that will not go away by retrying."""


__all__ = [
    "ConfigError",
    "Diagnostic",
    "LockInfo",
    "MissingExtraError",
    "PermanentError",
    "PlanError",
    "ProviderError",
    "ReconcilerError",
    "RetryableError",
    "StalePlanError",
    "StateConflictError",
    "StateError",
    "StateLockedError",
    "printable",
]

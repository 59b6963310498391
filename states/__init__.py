"""State storage backends. ``open_backend`` picks one from recon.yaml's ``state:`` settings.

```yaml
state:
  backend: file                # default; path relative to the project root
  path: .recon/state.json
---
state:
  backend: postgres            # DSN from here or, better, from RECON_STATE_DSN (no password in git)
  name: production             # one database can hold many states
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reconciler.model.errors import ConfigError, Diagnostic
from states.base import HistoryEntry, StateBackend, StoredState, SupportsHistory, SupportsLocking

DEFAULT_PATH = ".recon/state.json"
DSN_ENV = "RECON_STATE_DSN"
BACKENDS = ("file", "postgres")
_KEYS = {"file": {"backend", "path", "history"}, "postgres": {"backend", "dsn", "name", "history", "connect_timeout"}}


def _bad(message: str, path: str, hint: str | None = None) -> ConfigError:
    return ConfigError(Diagnostic(message, file="recon.yaml", path=path, hint=hint))


def state_section(settings: dict[str, Any] | None) -> dict[str, Any]:
    """The ``state:`` section, given either that section or the whole recon.yaml mapping."""
    settings = dict(settings or {})
    if "backend" not in settings and isinstance(settings.get("state"), dict):
        settings = dict(settings["state"])
    elif "backend" not in settings and "state" in settings:
        return {}
    return {k: v for k, v in settings.items() if v is not None}


def open_backend(root: Path, settings: dict[str, Any] | None) -> StateBackend:
    """The backend recon.yaml's ``state:`` names (file ``.recon/state.json`` by default)."""
    section = state_section(settings)
    kind = str(section.get("backend") or "file").lower()
    if kind not in BACKENDS:
        raise _bad(f"unknown state backend {kind!r}", "state.backend", "use one of: file, postgres")
    unknown = sorted(set(section) - _KEYS[kind])
    if unknown:
        raise _bad(
            f"unknown key {unknown[0]!r} for the {kind} state backend",
            f"state.{unknown[0]}",
            "allowed: " + ", ".join(sorted(_KEYS[kind])),
        )
    if kind == "file":
        path = Path(str(section.get("path") or DEFAULT_PATH))
        from states.file import HISTORY_KEEP as FILE_KEEP
        from states.file import FileBackend

        keep = int(section.get("history") or FILE_KEEP)
        return FileBackend(path if path.is_absolute() else Path(root) / path, history_keep=keep)
    dsn = section.get("dsn") or os.environ.get(DSN_ENV)
    if not dsn:
        raise _bad(
            "the postgres state backend needs a connection string",
            "state.dsn",
            f"set {DSN_ENV} in the environment (keeps the password out of the repository) or state.dsn",
        )
    from reconciler.model.extras import require_extra

    require_extra("postgres")  # psycopg: say so, and how to install it, before anything connects
    from states.postgres import HISTORY_KEEP, PostgresBackend

    return PostgresBackend(
        str(dsn),
        name=str(section.get("name") or "default"),
        history_keep=int(section.get("history") or HISTORY_KEEP),
        connect_timeout=int(section.get("connect_timeout") or 10),
    )


__all__ = [
    "BACKENDS",
    "DEFAULT_PATH",
    "DSN_ENV",
    "HistoryEntry",
    "StateBackend",
    "StoredState",
    "SupportsHistory",
    "SupportsLocking",
    "open_backend",
    "state_section",
]

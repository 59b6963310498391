"""State storage backends, and their registry: ``open_backend`` opens the one recon.yaml's ``state:``
names (``reconciler.model.settings.StateSettings``). Only the CLI calls it
(``reconciler.cli.registries``); the backends implement ``reconciler.state.backend``'s protocol.

```yaml
state:
  backend: file                # default; path relative to the project root
  path: .recon/state.json
  history: 20                  # versions kept besides the current one
---
state:
  backend: postgres            # DSN from here or, better, from RECON_STATE_DSN (no password in git)
  name: production             # one database can hold many states
  connect_timeout: 10          # seconds
```
"""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.model.errors import ConfigError, Diagnostic
from reconciler.model.settings import DEFAULT_STATE_PATH, StateSettings
from reconciler.state.backend import StateBackend

DSN_ENV = "RECON_STATE_DSN"
BACKENDS = ("file", "postgres")


def open_backend(root: Path, settings: StateSettings) -> StateBackend:
    """The backend recon.yaml's ``state:`` names (``StateSettings``: the loader checked its keys)."""
    if settings.backend == "file":
        path = Path(settings.path or DEFAULT_STATE_PATH)
        from states.file import HISTORY_KEEP as FILE_KEEP
        from states.file import FileBackend

        return FileBackend(path if path.is_absolute() else Path(root) / path, history_keep=settings.history or FILE_KEEP)
    dsn = settings.dsn or os.environ.get(DSN_ENV)
    if not dsn:
        raise ConfigError(
            Diagnostic(
                "the postgres state backend needs a connection string",
                file="recon.yaml",
                path="state.dsn",
                hint=f"set {DSN_ENV} in the environment (keeps the password out of the repository) or state.dsn",
            )
        )
    from reconciler.model.extras import require_extra

    require_extra("postgres")  # psycopg: say so, and how to install it, before anything connects
    from states.postgres import HISTORY_KEEP, PostgresBackend

    return PostgresBackend(
        str(dsn),
        name=settings.name or "default",
        history_keep=settings.history or HISTORY_KEEP,
        connect_timeout=settings.connect_timeout,
    )


__all__ = ["BACKENDS", "DSN_ENV", "open_backend"]

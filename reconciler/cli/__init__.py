"""recon's command line. ``main`` is the console script."""

from __future__ import annotations

import gc
import importlib

from reconciler.cli.app import cli

# Each module registers its commands on ``cli`` when imported. A module not written yet is skipped
# so that the CLI keeps working while commands are added.
for _name in ("plan_cmds", "state_cmds", "apply_cmds", "import_cmd"):
    try:
        importlib.import_module(f"reconciler.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"reconciler.cli.{_name}":
            raise
from reconciler.cli import migrate_cmds as _migrate_cmds  # noqa: E402,F401  (recon import-v1)


def main() -> None:
    # Everything imported so far lives as long as the process: keep the collector off it.
    gc.freeze()
    cli(prog_name="recon")


__all__ = ["cli", "main"]

"""recon's command line. ``main`` is the console script.

Commands live in the modules named by ``app.COMMAND_MODULES``, each imported when its command runs.
"""

from __future__ import annotations

import gc

from reconciler.cli.app import cli


def main() -> None:
    # Everything imported so far lives as long as the process: keep the collector off it.
    gc.freeze()
    cli(prog_name="recon")


__all__ = ["cli", "main"]

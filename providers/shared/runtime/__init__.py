"""Programs recon runs outside its own process, each a single file of the standard library (plus
httptools for the router), run by path in another interpreter: a deployment's own virtualenv, a
container's Python, a router pod. They import nothing of recon; recon never imports them.

- ``router.py``: an endpoint's router (key check, traffic split, mirroring, limits, hot reload).
- ``host.py``: the instance host that serves one scoring script (azmlinfsrv's contract).
- ``launcher.py``: imports a deployment's libraries once and forks warm instances.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROUTER_SCRIPT = _HERE / "router.py"
HOST_SCRIPT = _HERE / "host.py"
LAUNCHER_SCRIPT = _HERE / "launcher.py"

__all__ = ["HOST_SCRIPT", "LAUNCHER_SCRIPT", "ROUTER_SCRIPT"]

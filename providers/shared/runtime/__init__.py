"""Programs recon runs outside its own process, in another interpreter: a deployment's own virtualenv,
a container's Python, a router pod. They import nothing of recon; recon never imports them (this module
only finds and packs them).

- ``router/``: an endpoint's router (key check, traffic split, mirroring, limits, hot reload), a package
  of the standard library plus httptools, shipped and run as one zip archive (``router_zipapp``).
- ``host.py``: the instance host that serves one scoring script (azmlinfsrv's contract), with
  ``host_scoring.py`` beside it (the script and its ``/score`` answers): two files that always ship
  together (``HOST_FILES``, ``host_files()``), in the same folder, and ``host.py`` is what runs.
- ``launcher.py``: imports a deployment's libraries once and forks warm instances, one file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROUTER_PACKAGE = _HERE / "router"
HOST_SCRIPT = _HERE / "host.py"
HOST_FILES = (HOST_SCRIPT, _HERE / "host_scoring.py")  # the host and the module it imports, side by side
LAUNCHER_SCRIPT = _HERE / "launcher.py"
ROUTER_ARCHIVE_NAME = "router.pyz"
# The archive's entry point: the package is ``router`` inside it (its modules import each other relatively).
_ARCHIVE_MAIN = b"import sys\n\nfrom router.main import main\n\nsys.exit(main())\n"


@functools.cache
def router_archive() -> bytes:
    """The router package as a zip archive Python runs (``python router.pyz ...``): its modules under
    ``router/`` and a ``__main__.py``. Reproducible (sorted, fixed times and modes, stored uncompressed:
    no zlib needed to run it), so the same code gives the same bytes and ``router_digest``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        members = [("__main__.py", _ARCHIVE_MAIN)]
        members += [(f"router/{p.name}", p.read_bytes()) for p in sorted(ROUTER_PACKAGE.glob("*.py"))]
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buf.getvalue()


def host_files() -> dict[str, bytes]:
    """The host's files by name (``host.py`` first): what an image, a container or a ConfigMap gets,
    into one folder."""
    return {p.name: p.read_bytes() for p in HOST_FILES}


def router_digest() -> str:
    """What a router runs: a change of its code changes this (and replaces running routers)."""
    return hashlib.sha256(router_archive()).hexdigest()


def router_zipapp(directory: Path) -> Path:
    """``directory/router.pyz``, holding ``router_archive()``: written (atomically) only when it differs,
    so a router running from it never sees its archive change under it for nothing."""
    data = router_archive()
    path = directory / ROUTER_ARCHIVE_NAME
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{ROUTER_ARCHIVE_NAME}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return path


__all__ = ["HOST_FILES", "HOST_SCRIPT", "LAUNCHER_SCRIPT", "ROUTER_ARCHIVE_NAME", "ROUTER_PACKAGE", "host_files",
           "router_archive", "router_digest", "router_zipapp"]

"""The .tar.gz archives the Kubernetes provider delivers in ConfigMaps (no registry, no image build):
a model's folder, a deployment's code folder, and the router's copy of httptools. Reproducible: no
caches, owners or times, so the same files give the same bytes (and digests)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from providers.shared.runtime import router_digest
from reconciler.model.resources import digest_of

_ROUTER_LIB: tuple[bytes, str] | None = None


def clean_tarinfo(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Reproducible archive members: no caches, no owners, no times."""
    if "__pycache__" in info.name.split("/"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def tar_gz(source: Path, arcname: str | None) -> bytes:
    """A .tar.gz of ``source``: a folder's contents at the root (``arcname`` None) or under ``arcname``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        if arcname is not None:
            tar.add(source, arcname=arcname, filter=clean_tarinfo)
        elif source.is_dir():
            for child in sorted(source.iterdir()):
                if child.name not in ("__pycache__", ".git"):
                    tar.add(child, arcname=child.name, filter=clean_tarinfo)
    return buf.getvalue()


def router_lib() -> tuple[bytes, str]:
    """recon's httptools package as a .tar.gz (its Python files and compiled modules, reproducible),
    and the digest of the router program with it: what the router pod runs."""
    global _ROUTER_LIB
    if _ROUTER_LIB is None:
        import httptools  # type: ignore[import-untyped,unused-ignore]

        package = Path(httptools.__file__).resolve().parent
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for f in sorted(package.rglob("*")):
                if f.is_file() and f.suffix in (".py", ".so") and "__pycache__" not in f.parts:
                    tar.add(f, arcname=f"httptools/{f.relative_to(package)}", filter=clean_tarinfo)
        data = buf.getvalue()
        _ROUTER_LIB = data, digest_of({"router": router_digest(), "httptools": hashlib.sha256(data).hexdigest()})
    return _ROUTER_LIB

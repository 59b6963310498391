"""The Docker engine connection: the SDK imported lazily, its errors mapped at this boundary.

The engine is found as the docker SDK finds it (``DOCKER_HOST``, else the default socket). Every
call into the SDK runs inside ``mapped(what)``: ``docker.errors.*`` and ``requests`` errors become
``RetryableError`` (the engine is busy or restarting) or ``PermanentError`` (a bad request, a missing
object), so that no SDK type or exception leaves ``providers/docker``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from reconciler.model.errors import PermanentError, RetryableError

LABEL = "recon"  # every label recon sets starts with "recon."
START_HINT = (
    "start one (`sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST at a "
    "running engine; `docker info` must answer"
)


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Translate SDK exceptions raised while doing ``what`` into provider errors."""
    try:
        yield
    except (PermanentError, RetryableError):
        raise
    except Exception as exc:  # only SDK / transport errors reach here; mapped by class name
        raise translate(exc, what) from exc


def translate(exc: Exception, what: str) -> Exception:
    import docker.errors
    import requests.exceptions

    if isinstance(exc, docker.errors.NotFound):
        return PermanentError(f"{what}: not found: {_explain(exc)}")
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 500
        if status >= 500:
            return RetryableError(f"{what}: the Docker engine failed: {_explain(exc)}", delay=1.0)
        return PermanentError(f"{what}: the Docker engine refused it: {_explain(exc)}")
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
        return RetryableError(f"{what}: the Docker engine at {engine_address()} does not answer; {START_HINT}")
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError):
        return RetryableError(f"{what}: the Docker engine did not answer in time", delay=2.0)
    if isinstance(exc, docker.errors.DockerException):
        return PermanentError(f"{what}: {exc}")
    if isinstance(exc, OSError):
        return PermanentError(f"{what}: {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}")


def _explain(exc: Any) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def is_not_found(exc: BaseException) -> bool:
    import docker.errors

    return isinstance(exc, docker.errors.NotFound)


class Engine:
    """A lazily opened docker SDK client (opened on first use, closed by ``close``)."""

    def __init__(self) -> None:
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import docker
            except ImportError as exc:
                raise PermanentError(
                    "the Docker provider needs the docker SDK: pip install 'recon[docker]' (docker>=7)"
                ) from exc
            try:
                client = docker.from_env(timeout=120)
                client.ping()
            except Exception as exc:
                raise PermanentError(
                    f"no Docker engine answers at {engine_address()} ({type(exc).__name__}); {START_HINT}"
                ) from exc
            self._client = client
        return self._client

    @property
    def api(self) -> Any:
        return self.client.api

    def container(self, name_or_id: str) -> Any | None:
        """The container, or None when it does not exist."""
        with mapped(f"inspect container {name_or_id}"):
            try:
                return self.client.containers.get(name_or_id)
            except Exception as exc:
                if is_not_found(exc):
                    return None
                raise

    def containers(self, labels: dict[str, str]) -> list[Any]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with mapped("list containers"):
            found = self.client.containers.list(all=True, filters=filters, ignore_removed=True)
        return list(found)

    def network(self, name: str) -> Any | None:
        with mapped(f"inspect network {name}"):
            try:
                return self.client.networks.get(name)
            except Exception as exc:
                if is_not_found(exc):
                    return None
                raise

    def networks(self, labels: dict[str, str]) -> list[Any]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with mapped("list networks"):
            return list(self.client.networks.list(filters=filters))

    def image_exists(self, ref: str) -> bool:
        with mapped(f"inspect image {ref}"):
            try:
                self.client.images.get(ref)
                return True
            except Exception as exc:
                if is_not_found(exc):
                    return False
                raise

    def remove_container(self, name_or_id: str, grace: float = 10.0) -> None:
        """Stop (SIGTERM, SIGKILL after ``grace``) and remove; gone already is fine."""
        container = self.container(name_or_id)
        if container is None:
            return
        with mapped(f"remove container {name_or_id}"):
            try:
                if container.status in ("running", "restarting", "paused"):
                    container.stop(timeout=int(max(1, grace)))
                container.remove(force=True)
            except Exception as exc:
                if not is_not_found(exc) and "already in progress" not in str(exc):
                    raise

    def info(self) -> dict[str, Any]:
        with mapped("docker info"):
            return dict(self.client.info())

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

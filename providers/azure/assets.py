"""Versioned workspace assets: models, environments and code, with their files in blob storage.

Files reach the workspace through its pending-upload flow, as azure-ai-ml uploads to registries:

1. ``POST .../{models|codes}/{name}/versions/{version}/startPendingUpload``
   ``{"pendingUploadType": "TemporaryBlobReference"}`` answers a ``blobReferenceForConsumption``:
   ``blobUri`` (where the files will be read from) and ``credential.sasUri`` (a SAS URL that may
   write there);
2. every file is uploaded with azure-storage-blob under that prefix (relative paths kept);
3. ``PUT`` of the asset version names ``blobUri`` (``modelUri``, ``codeUri``, ``build.contextUri``).

Once per content digest: a code folder is the asset ``codes/{digest}/versions/1`` and is uploaded
only when that version does not exist yet; a model version that exists with the same
``recon.content_digest`` property is not uploaded again; one that exists with another digest is
an error (asset versions are immutable: bump the version). The SAS URL lives in memory for the
upload only: it is never logged, returned or part of an error message (``arm.scrub``).
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from providers.azure import bodies
from providers.azure.arm import ArmClient, ArmError, Emit, scrub
from reconciler.model.errors import PermanentError, RetryableError
from reconciler.model.remote import is_uri
from reconciler.model.resources import CodeRef, EnvironmentAttrs, ModelAttrs, digest_of

PENDING_UPLOAD = {"pendingUploadType": "TemporaryBlobReference"}


def _files(root: Path) -> list[tuple[Path, str]]:
    """(file, blob-relative name) for a file or every file of a folder, in a stable order."""
    if root.is_file():
        return [(root, root.name)]
    return [(p, p.relative_to(root).as_posix()) for p in sorted(root.rglob("*")) if p.is_file()]


class Assets:
    """Uploads and registers asset versions in one workspace."""

    def __init__(self, arm: ArmClient, project_root: Path) -> None:
        self.arm = arm
        self.project_root = project_root
        self.ws = arm.settings.workspace_path
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- paths -----------------------------------------------------------------------------------
    def path(self, kind: str, name: str, version: str) -> str:
        return bodies.asset_id(self.ws, kind, name, version)

    def _local(self, rel: str | None, what: str) -> Path:
        if not rel:
            raise PermanentError(f"{what} names no local path to upload")
        path = (self.project_root / rel).resolve()
        if not path.exists():
            raise PermanentError(f"{what}: {rel} does not exist under {self.project_root}")
        return path

    # -- code ------------------------------------------------------------------------------------
    def ensure_code(self, code: CodeRef, emit: Emit, what: str) -> str:
        """The code asset of a deployment's ``code`` {path, digest}: its ARM id, uploaded if new.

        Deployments that share a folder are applied in parallel: one of them uploads (a lock per
        digest in this process); a version registered meanwhile by another process (409) is the
        same content, so it is used as it is."""
        name = bodies.code_name(str(code["digest"]))
        path = self.path("codes", name, "1")
        with self._lock(name):
            if self.arm.get(path, emit) is not None:
                emit(f"code {code['path']} ({name[:12]}) is already in the workspace: not uploaded again")
                return path
            folder = self._local(code.get("path"), f"{what}: code_configuration.code")
            uri = self._upload(path, folder, emit, f"code {code['path']}")
            self._register(path, bodies.code_body(uri, str(code["digest"])), emit)
        return path

    def registered_code(self, code: CodeRef, emit: Emit, what: str) -> CodeRef:
        """A registered code asset ``{"asset": ...}`` with ``azureml:NAME@latest`` resolved to the
        code container's latest version (as the Azure ML CLI resolves it when it sends)."""
        m = re.fullmatch(r"azureml:([^:/@]+)@latest", str(code["asset"]))
        if m is None:
            return code
        container = self.arm.get(f"{self.ws}/codes/{m[1]}", emit)
        latest = ((container or {}).get("properties") or {}).get("latestVersion")
        if not latest:
            raise PermanentError(f"{what}: code_configuration.code {code['asset']}: the workspace has no "
                                 f"code asset {m[1]!r} (register it, or name a version: azureml:{m[1]}:VERSION)")
        return {**code, "asset": f"azureml:{m[1]}:{latest}"}

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _register(self, path: str, body: dict[str, Any], emit: Emit) -> dict[str, Any]:
        """PUT of a version named by its content digest; one another process registered first wins."""
        try:
            return self.arm.put(path, body, emit)
        except ArmError as exc:
            existing = self.arm.get(path, emit) if exc.status == 409 else None
            if existing is None:
                raise
            emit(f"{path.rsplit('/', 3)[-3][:12]} was registered meanwhile by another apply: using it")
            return existing

    # -- models ----------------------------------------------------------------------------------
    def ensure_model(self, attrs: ModelAttrs, emit: Emit, address: str) -> dict[str, Any]:
        name, version = str(attrs["name"]), str(attrs["version"])
        path = self.path("models", name, version)
        digest = str(attrs.get("content_digest"))
        existing = self.arm.get(path, emit)
        if existing is not None:
            self._same_content(existing, digest, address, "model")
            emit(f"model {name}:{version} is already registered with this content: not uploaded again")
            return self._outputs(existing, path)
        if is_uri(str(attrs.get("path") or "")):  # Azure fetches it from there: nothing to upload
            return self._outputs(self.arm.put(path, bodies.model_body(attrs, str(attrs["path"])), emit), path)
        source = self._local(attrs.get("path"), f"{address}: path")
        uri = self._upload(path, source, emit, f"model {name}:{version}")
        return self._outputs(self.arm.put(path, bodies.model_body(attrs, uri), emit), path)

    # -- environments ----------------------------------------------------------------------------
    def ensure_environment(self, attrs: EnvironmentAttrs, emit: Emit, address: str) -> dict[str, Any]:
        name, version = str(attrs["name"]), str(attrs["version"])
        path = self.path("environments", name, version)
        digest = str(attrs.get("content_digest"))
        existing = self.arm.get(path, emit)
        if existing is not None:
            self._same_content(existing, digest, address, "environment")
            emit(f"environment {name}:{version} is already registered with this content")
            return self._outputs(existing, path)
        context_uri = None
        build = attrs.get("build")
        if build:
            folder = self._local(build.get("path"), f"{address}: build.path")
            context_uri = self._context(folder, emit)
        return self._outputs(self.arm.put(path, bodies.environment_body(attrs, context_uri), emit), path)

    def _context(self, folder: Path, emit: Emit) -> str:
        """A Docker build context goes up like code (``codes/{digest}/versions/1``), once."""
        digest = digest_of([[rel, p.read_bytes().hex()] for p, rel in _files(folder)])
        name = bodies.code_name(digest)
        path = self.path("codes", name, "1")
        existing = self.arm.get(path, emit)
        if existing is not None:
            return str((existing.get("properties") or {}).get("codeUri"))
        with self._lock(name):
            existing = self.arm.get(path, emit)
            if existing is not None:
                return str((existing.get("properties") or {}).get("codeUri"))
            uri = self._upload(path, folder, emit, f"build context {folder.name}")
            registered = self._register(path, bodies.code_body(uri, digest), emit)
        return str((registered.get("properties") or {}).get("codeUri") or uri)

    # -- shared ------------------------------------------------------------------------------------
    @staticmethod
    def _same_content(existing: dict[str, Any], digest: str, address: str, kind: str) -> None:
        props = (existing.get("properties") or {}).get("properties") or {}
        seen = props.get("recon.content_digest")
        if seen is not None and seen != digest:
            raise PermanentError(
                f"{address}: this {kind} version is already registered in the workspace with other content "
                f"({seen[:19]}..., the files now give {digest[:19]}...); asset versions are immutable: "
                "bump the version")

    @staticmethod
    def _outputs(body: dict[str, Any], path: str) -> dict[str, Any]:
        props = body.get("properties") or {}
        out = {"id": path}
        for key, name in (("modelUri", "model_uri"), ("provisioningState", "provisioning_state")):
            if props.get(key):
                out[name] = str(props[key])
        return out

    def _upload(self, version_path: str, source: Path, emit: Emit, what: str) -> str:
        """Start a pending upload for ``version_path``, upload ``source`` there; its blob URI."""
        answer = self.arm.post(f"{version_path}/startPendingUpload", PENDING_UPLOAD, emit) or {}
        ref = answer.get("blobReferenceForConsumption") or {}
        blob_uri = str(ref.get("blobUri") or "")
        sas_uri = str((ref.get("credential") or {}).get("sasUri") or "")
        if not blob_uri or not sas_uri:
            raise PermanentError(f"{what}: startPendingUpload answered no blobUri/sasUri to upload to")
        files = _files(source)
        size = sum(p.stat().st_size for p, _ in files)
        emit(f"uploading {what}: {len(files)} file(s), {size} bytes, to blob storage "
             f"(pending upload {answer.get('pendingUploadId') or '?'})")
        try:
            self._put_blobs(sas_uri, files)
        except (PermanentError, RetryableError):
            raise
        except Exception as exc:  # azure.core / azure.storage errors: messages may hold the SAS URL
            raise _upload_error(what, exc) from exc
        emit(f"uploaded {what} to {urlsplit(blob_uri).path}")
        return blob_uri

    @staticmethod
    def _put_blobs(sas_uri: str, files: list[tuple[Path, str]]) -> None:
        from azure.storage.blob import BlobClient

        _redact_urllib3()
        parts = urlsplit(sas_uri)
        prefix = parts.path.rstrip("/")
        for path, rel in files:
            url = urlunsplit((parts.scheme, parts.netloc, f"{prefix}/{rel}", parts.query, ""))
            with BlobClient.from_blob_url(url, retry_total=3) as blob, open(path, "rb") as data:
                blob.upload_blob(data, overwrite=True)


class _ScrubQueries(logging.Filter):
    """Takes query strings (a SAS token is one) out of urllib3's request log lines, which name the
    full URL at DEBUG level (``"PUT /container/blob?sv=...&sig=... HTTP/1.1" 201``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


def _redact_urllib3() -> None:
    log = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _ScrubQueries) for f in log.filters):
        log.addFilter(_ScrubQueries())


def _upload_error(what: str, exc: Exception) -> PermanentError | RetryableError:
    from azure.core import exceptions as az

    text = scrub(getattr(exc, "message", None) or str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, az.ServiceRequestError | az.ServiceResponseError):
        return RetryableError(f"uploading {what} to blob storage failed: {text}", delay=5.0)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status >= 500 or status == 429):
        return RetryableError(f"uploading {what} to blob storage failed: HTTP {status}: {text}", delay=5.0)
    return PermanentError(f"uploading {what} to blob storage failed: {text}")


__all__ = ["Assets"]

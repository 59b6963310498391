"""Talking to Azure Resource Manager with the field's own libraries, and nothing of them leaking out.

- **Pipeline**: azure-core's ``PipelineClient`` with the ARM policy set: request ids, user agent,
  ``RetryPolicy`` (retries on 408/429/5xx and dropped connections, honouring ``Retry-After``,
  bounded by ``retry_total``), azure-mgmt-core's ``ARMChallengeAuthenticationPolicy`` (bearer tokens
  from azure-identity's ``DefaultAzureCredential``; azure-core refuses to send them over plain HTTP)
  and ``ARMHttpLoggingPolicy`` (``Authorization`` and other secrets redacted).
- **Long-running operations**: azure-mgmt-core's ``ARMPolling`` (``Azure-AsyncOperation``,
  ``Location``, ``provisioningState``), driven synchronously; recon adds a deadline, the
  operation's own ``x-ms-async-operation-timeout`` (else ``operation_timeout``), and a progress
  line per poll.
- **409 Conflict** (another operation on the resource is running): with ``Retry-After`` azure-core's
  ``RetryPolicy`` itself sends again (it retries any error answer that carries the header); without
  it, or once azure-core's retries are spent, recon waits (``poll_interval``) and sends again, at
  most ``conflict_wait`` seconds in all.
- **Progress**: every retry azure-core makes, every 409 wait and every poll is an ``emit``-ed line
  (``recon apply`` prints them). Lines carry method, resource path and status, never a query string
  (no SAS), a header or a body.
- **Errors**: ``azure.core.exceptions`` never leave this module. ``mapped_errors()`` turns them into
  recon's ``ProviderError`` subclasses: throttling, conflicts, 5xx and connection failures are
  ``RetryableError`` (the engine retries the step, bounded); everything else is ``PermanentError``
  with ARM's error code and message. A failed or canceled operation carries the operation's error.

The SDKs are imported when the first request is made, never at import time.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from providers.azure.settings import API_VERSION, AzureSettings
from reconciler.model.errors import PermanentError, ProviderError, RetryableError

Emit = Callable[[str], None]
USER_AGENT = "recon-azure-provider"
_CONTEXT_KEY = "recon_emit"


def _quiet(_line: str) -> None:
    return None


@dataclass(frozen=True)
class Reply:
    """One HTTP answer from ARM, as plain data (status, lower-cased headers, parsed JSON or None)."""

    status: int
    headers: dict[str, str]
    body: Any


class ArmError(PermanentError):
    """ARM answered with an error; ``status``, ``code`` (ARM's error code) and ``arm_message``."""

    def __init__(self, message: str, status: int, code: str, arm_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.arm_message = arm_message


class ArmRetryableError(RetryableError):
    """A temporary ARM answer (429, 409, 5xx) that outlived azure-core's own retries."""

    def __init__(self, message: str, status: int, code: str, delay: float) -> None:
        super().__init__(message, delay=delay)
        self.status = status
        self.code = code


class OperationFailed(PermanentError):
    """A long-running operation ended ``Failed`` or ``Canceled``: ARM's error code and message."""

    def __init__(self, message: str, status: str, code: str, arm_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.arm_message = arm_message


class OperationTimeout(PermanentError):
    """A long-running operation was still running at its deadline."""


def short_path(url: str) -> str:
    """The part of an ARM URL people recognise: from the workspace on, without the query string."""
    path = urlsplit(url).path
    m = re.search(r"/workspaces/[^/]+/(.+)$", path) or re.search(r"/(locations/.+)$", path)
    return m[1] if m else path


def iso_seconds(text: str) -> float | None:
    """Seconds of an ISO 8601 duration such as ``PT1H``, ``PT30M``, ``PT0.5S``, ``P1DT2H`` (None if not one)."""
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text.strip().upper())
    if not m or text.strip().upper() in ("P", "PT"):
        return None
    d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def arm_error(body: Any) -> tuple[str, str]:
    """(code, message) of an ARM error body ``{"error": {"code", "message"}}``, tolerant of others."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or "Unknown"), str(error.get("message") or "").strip()
    return "Unknown", ""


def _json(response: Any) -> Any:
    try:
        text = response.text()
    except Exception:  # a body that is not text: no JSON
        return None
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _reply(response: Any) -> Reply:
    headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
    return Reply(response.status_code, headers, _json(response))


def _retry_after(headers: dict[str, str], default: float) -> float:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def status_error(method: str, url: str, reply: Reply) -> ProviderError:
    """The error of an ARM answer that is not a success, classified for the engine."""
    code, message = arm_error(reply.body)
    what = f"{method} {short_path(url)}: HTTP {reply.status} {code}" + (f": {message}" if message else "")
    delay = _retry_after(reply.headers, 5.0)
    if reply.status in (408, 409, 429) or reply.status >= 500:
        return ArmRetryableError(what, reply.status, code, delay)
    if reply.status in (401, 403):
        what += (" (the identity recon runs as needs a role on the workspace such as 'AzureML Data Scientist', "
                 "or 'Contributor' on the resource group; see docs/azure.md)")
    return ArmError(what, reply.status, code, message)


@contextlib.contextmanager
def mapped_errors(what: str, delay: float = 5.0) -> Iterator[None]:
    """Turn azure-core and azure-identity exceptions into ``ProviderError``s (nothing else escapes)."""
    from azure.core import exceptions as az

    try:
        yield
    except ProviderError:
        raise
    except az.ClientAuthenticationError as exc:
        raise PermanentError(
            f"{what}: no Azure credential could be used. DefaultAzureCredential tried: environment "
            "(AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH), "
            "workload identity (AZURE_FEDERATED_TOKEN_FILE), managed identity (IDENTITY_ENDPOINT, or the "
            "instance metadata service), Azure CLI (`az login`), Azure PowerShell, Azure Developer CLI. "
            f"Its report: {_one_line(exc.message or str(exc), 3000)}"
        ) from exc
    except (az.ServiceRequestError, az.ServiceResponseError) as exc:
        raise RetryableError(f"{what}: the connection to ARM failed: {_one_line(str(exc))}", delay=delay) from exc
    except az.HttpResponseError as exc:
        response = getattr(exc, "response", None)
        if response is not None:
            reply = _reply(response)
            url = str(getattr(getattr(response, "request", None), "url", "") or "")
            raise status_error(str(getattr(response.request, "method", "")), url, reply) from exc
        raise PermanentError(f"{what}: {_one_line(str(exc))}") from exc
    except az.AzureError as exc:
        raise PermanentError(f"{what}: {_one_line(str(exc))}") from exc


def scrub(text: str) -> str:
    """``text`` without query strings of URLs (a SAS token is one) and without bearer tokens."""
    text = re.sub(r"(https?://[^\s'\"?]*)\?[^\s'\"]*", r"\1?<query removed>", str(text))
    text = re.sub(r"(/[^\s'\"?]*)\?[^\s'\"]*(sig|se|sv|sp)=[^\s'\"]*", r"\1?<query removed>", text)
    return re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+", r"\1<redacted>", text)


def _one_line(text: str, limit: int = 600) -> str:
    text = " ".join(scrub(str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _progress_policy() -> Any:
    """A per-try policy (after ``RetryPolicy``): a line for every answer worth telling and every
    dropped connection, so azure-core's retries are visible."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class ProgressPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            if _CONTEXT_KEY in request.context.options:
                request.context[_CONTEXT_KEY] = request.context.options.pop(_CONTEXT_KEY)

        def on_response(self, request: Any, response: Any) -> None:
            # what azure-core's RetryPolicy retries: any error answer with Retry-After (a 409 while
            # another operation runs, a 429), else 408/429/5xx (POST and PATCH: 500/503/504 only)
            emit = request.context.get(_CONTEXT_KEY) or _quiet
            status = response.http_response.status_code
            method = request.http_request.method
            after = response.http_response.headers.get("Retry-After")
            idempotent = method not in ("POST", "PATCH") or status in (500, 503, 504)
            if status >= 400 and (after or (idempotent and (status in (408, 429) or status >= 500))):
                wait = f", Retry-After {after} s" if after else ""
                emit(f"{method} {short_path(request.http_request.url)}: HTTP {status}"
                     f" {response.http_response.reason or ''}{wait}; azure-core retries it".replace("  ", " "))

        def on_exception(self, request: Any) -> None:
            import sys

            emit = request.context.get(_CONTEXT_KEY) or _quiet
            exc = sys.exc_info()[1]
            method = request.http_request.method
            again = "azure-core retries it" if method not in ("POST", "PATCH") else "not resent by azure-core (not idempotent)"
            emit(f"{method} {short_path(request.http_request.url)}: connection failed ({type(exc).__name__}); {again}")

    return ProgressPolicy()


class ArmClient:
    """The HTTP side of the provider: requests to ARM paths, LROs polled to their end."""

    def __init__(self, settings: AzureSettings, credential: Any = None, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self._credential = credential
        self._client: Any = None
        self._sleep = sleep

    # -- plumbing --------------------------------------------------------------------------------
    def credential(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        return self._credential

    def client(self) -> Any:
        if self._client is None:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import (
                HeadersPolicy,
                RequestIdPolicy,
                RetryPolicy,
                UserAgentPolicy,
            )
            from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

            policies = [
                RequestIdPolicy(),
                HeadersPolicy({"Accept": "application/json"}),
                UserAgentPolicy(USER_AGENT),
                RetryPolicy(retry_total=self.settings.retry_total, retry_backoff_max=30,
                            retry_on_status_codes=[408, 429, 500, 502, 503, 504]),
                ARMChallengeAuthenticationPolicy(self.credential(), self.settings.scope),
                _progress_policy(),
                ARMHttpLoggingPolicy(),
            ]
            self._client = PipelineClient(base_url=self.settings.arm_endpoint, policies=policies)
        return self._client

    def url(self, path: str) -> str:
        """The URL of an ARM path: Azure ML's api-version added unless the path names its own
        (Azure Monitor's metrics have theirs)."""
        if path.startswith("https://"):
            return path
        if "api-version=" in path:
            return f"{self.settings.arm_endpoint}{path}"
        sep = "&" if "?" in path else "?"
        return f"{self.settings.arm_endpoint}{path}{sep}api-version={API_VERSION}"

    def _pipeline_send(self, method: str, url: str, body: Any, emit: Emit) -> Any:
        from azure.core.rest import HttpRequest

        request = HttpRequest(method, url, json=body) if body is not None else HttpRequest(method, url)
        timeout = self.settings.request_timeout
        return self.client().send_request(request, stream=False, _return_pipeline_response=True,
                                          connection_timeout=min(timeout, 30.0), read_timeout=timeout,
                                          **{_CONTEXT_KEY: emit})

    # -- requests --------------------------------------------------------------------------------
    def send(self, method: str, path: str, body: Any = None, emit: Emit = _quiet, wait_conflicts: bool = True) -> Reply:
        """One request (azure-core retrying what it retries); any status returned. ``wait_conflicts``:
        a 409 means another operation on the resource runs (endpoints, deployments): wait and send
        again; for asset versions a 409 means "exists with other content" and is returned at once."""
        url = self.url(path)
        with mapped_errors(f"{method} {short_path(url)}", self.settings.poll_interval):
            return _reply(self._send_waiting(method, url, body, emit, wait_conflicts).http_response)

    def _send_waiting(self, method: str, url: str, body: Any, emit: Emit, wait_conflicts: bool = True) -> Any:
        """Send; on 409 Conflict wait for the other operation and send again (bounded)."""
        waited = 0.0
        while True:
            response = self._pipeline_send(method, url, body, emit)
            reply = _reply(response.http_response)
            if reply.status != 409 or method == "GET" or not wait_conflicts:
                return response
            code, message = arm_error(reply.body)
            delay = _retry_after(reply.headers, self.settings.poll_interval)
            if waited + delay > self.settings.conflict_wait:
                raise status_error(method, url, reply)
            emit(f"{method} {short_path(url)}: HTTP 409 {code}" + (f" ({message})" if message else "")
                 + f"; another operation is running, waiting {delay:g} s and sending again")
            self._sleep(delay)
            waited += delay

    def get(self, path: str, emit: Emit = _quiet) -> dict[str, Any] | None:
        """The resource at ``path``, or None when ARM says 404."""
        reply = self.send("GET", path, emit=emit)
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise status_error("GET", self.url(path), reply)
        return dict(reply.body or {})

    def list(self, path: str, emit: Emit = _quiet) -> list[dict[str, Any]]:
        """Every item of a paged ARM list (``value`` and ``nextLink``)."""
        items: list[dict[str, Any]] = []
        url: str | None = self.url(path)
        while url:
            reply = self.send("GET", url, emit=emit)
            if reply.status != 200:
                raise status_error("GET", url, reply)
            body = reply.body or {}
            items += [dict(v) for v in body.get("value") or []]
            url = body.get("nextLink")
        return items

    def post(self, path: str, body: Any = None, emit: Emit = _quiet) -> Any:
        reply = self.send("POST", path, body if body is not None else {}, emit=emit)
        if reply.status not in (200, 201):
            raise status_error("POST", self.url(path), reply)
        return reply.body

    def put(self, path: str, body: Any, emit: Emit = _quiet) -> dict[str, Any]:
        """A synchronous PUT (asset versions): 200 or 201 with the resource (a 409 is an error at once)."""
        reply = self.send("PUT", path, body, emit=emit, wait_conflicts=False)
        if reply.status not in (200, 201):
            raise status_error("PUT", self.url(path), reply)
        return dict(reply.body or {})

    # -- long-running operations -------------------------------------------------------------------
    def lro(self, method: str, path: str, body: Any = None, emit: Emit = _quiet, what: str = "") -> dict[str, Any] | None:
        """Start an operation and poll it to its end with ``ARMPolling``; the final resource (None
        for a delete). A DELETE of what is not there (404) is done. ``Failed``/``Canceled`` raise
        ``OperationFailed`` with ARM's error; the deadline raises ``OperationTimeout``."""
        url = self.url(path)
        what = what or f"{method} {short_path(url)}"
        with mapped_errors(what, self.settings.poll_interval):
            response = self._send_waiting(method, url, body, emit)
            reply = _reply(response.http_response)
            if method == "DELETE" and reply.status in (204, 404):
                return None
            if reply.status not in (200, 201, 202):
                raise status_error(method, url, reply)
            timeout_header = reply.headers.get("x-ms-async-operation-timeout")
            limit = iso_seconds(timeout_header) if timeout_header else None
            limit = self.settings.operation_timeout if limit is None else limit
            source = "x-ms-async-operation-timeout " + timeout_header if timeout_header else "operation_timeout"
            emit(f"{what}: HTTP {reply.status}, {self._tracking(reply)}")
            result = self._poll(response, emit, what, limit, source, final="location" if method == "DELETE" else None)
        return None if method == "DELETE" else result

    @staticmethod
    def _tracking(reply: Reply) -> str:
        if "azure-asyncoperation" in reply.headers:
            return "polling Azure-AsyncOperation"
        if "location" in reply.headers:
            return "polling Location"
        state = ((reply.body or {}).get("properties") or {}).get("provisioningState")
        return f"provisioningState {state}" if state else "done"

    def _poll(self, initial: Any, emit: Emit, what: str, limit: float, source: str, final: str | None) -> Any:
        from azure.core import exceptions as az
        from azure.mgmt.core.polling.arm_polling import ARMPolling

        outer = self
        deadline = time.monotonic() + limit
        started = time.monotonic()

        class Polling(ARMPolling):
            polls = 0

            def update_status(self) -> None:
                if time.monotonic() > deadline:
                    raise OperationTimeout(
                        f"{what}: still {self.status()} after {time.monotonic() - started:.0f} s, past its "
                        f"deadline ({source}); Azure may still finish or fail it: the next `recon plan` "
                        "reads what exists")
                super().update_status()
                Polling.polls += 1
                emit(f"{what}: {self.status()} (poll {Polling.polls}, {time.monotonic() - started:.1f} s)")

            def _sleep(self, delay: float) -> None:
                outer._sleep(min(delay, max(0.0, deadline - time.monotonic()) + 0.01))

        options = {"final-state-via": final} if final else None
        config: dict[str, Any] = {_CONTEXT_KEY: emit}
        polling = Polling(timeout=self.settings.poll_interval, lro_options=options, **config)
        polling.initialize(self.client(), initial, lambda pipeline_response: _json(pipeline_response.http_response))
        try:
            polling.run()
        except az.HttpResponseError as exc:
            status = polling.status()
            if str(status).lower() in ("failed", "canceled", "cancelled"):
                body = _json(exc.response) if exc.response is not None else None
                code, message = arm_error(body)
                raise OperationFailed(f"{what}: the operation ended {status}: {code}" + (f": {message}" if message else ""),
                                      str(status), code, message) from exc
            raise
        return polling.resource()

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        close = getattr(self._credential, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


__all__ = ["ArmClient", "ArmError", "ArmRetryableError", "OperationFailed", "OperationTimeout", "Reply",
           "iso_seconds", "mapped_errors", "scrub", "short_path"]

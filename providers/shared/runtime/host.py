"""Instance host: serves one scoring script over HTTP, keeping azmlinfsrv's contract, on 127.0.0.1 only.

Standard library only, two files (this one and ``host_scoring.py``, shipped side by side: ``HOST_FILES``):
it runs inside the deployment's own virtualenv, where recon is not installed, as
``<venv python> host.py --entry_script score.py --port N``. See docs/runtime.md.

Why not azureml-inference-server-http itself: it always binds 0.0.0.0 (a constant handed to gunicorn's
``-b``), and a scoring server open to the network without the key check is not acceptable.

Contract kept from azmlinfsrv 1.5.1 (routes.py, user_script.py, input_parsers.py):
- the script is imported, ``init()`` runs once; any failure logs the traceback and exits with code 3;
- only then does the server listen, so a refused connection means "not ready";
- ``GET /`` answers ``Healthy``; ``POST /score`` calls ``run(body_as_text)`` and sends
  ``json.dumps(result)``; ``GET /score`` passes the query parameters as a JSON string;
- errors are ``{"message": ...}`` JSON with azmlinfsrv's status codes and texts; every answer carries
  ``x-ms-run-function-failed`` and the request-id headers.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hmac
import json
import logging
import os
import re
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# The scoring side is the file beside this one (shipped with it: HOST_FILES). Run as a script, or imported
# as ``host`` by the launcher, this file is a top-level module and finds it on sys.path[0], its folder;
# read as part of recon's package (by the type checker) it is a sibling module.
try:
    from .host_scoring import Answer, Host, ScoringScript, error_answer
except ImportError:
    from host_scoring import (  # type: ignore[import-not-found, no-redef]
        Answer,
        Host,
        ScoringScript,
        error_answer,
    )

HEADER_LIMIT = 100  # azmlinfsrv refuses longer request ids with 431
EXIT_SCRIPT_FAILED = 3  # azmlinfsrv's exit code when the script cannot be loaded or init() fails
EXIT_USAGE = 2
NOT_FOUND_MESSAGE = (
    "The requested URL was not found on the server. If you entered the URL manually please check your "
    "spelling and try again."
)
INSTANCE_KEY_HEADER = "x-recon-instance-key"  # what the router presents when the host has --key-file
SECRET_PARAM = re.compile(r"((?:^|[?&;])(?:[^=&;]*(?:key|token|sig|secret|password|auth|code)[^=&;]*)=)[^&;]*",
                          re.IGNORECASE)
IDLE_TIMEOUT_S = 75.0  # keep-alive connections idle longer than this are closed (router pools reconnect)

log = logging.getLogger("host")


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler; one thread per connection (ThreadingHTTPServer)."""

    protocol_version = "HTTP/1.1"
    server_version = "recon-host/1"
    host: Host  # set on the class by main()

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(IDLE_TIMEOUT_S)
        # Headers and body go out in one write; no Nagle delay on small answers.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        # Between requests the connection is idle: SIGTERM may close it (no request is lost, the router
        # retries a request that got no byte back on a fresh connection).
        with self.host.lock:
            if self.host.stopping:
                self.close_connection = True
                return
            self.host.idle.add(self.connection)
        try:
            super().handle_one_request()
        except (ConnectionError, OSError):
            self.close_connection = True

    def parse_request(self) -> bool:
        with self.host.lock:
            self.host.idle.discard(self.connection)
        return super().parse_request()

    def finish(self) -> None:
        with self.host.lock:
            self.host.idle.discard(self.connection)
        super().finish()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _request_ids(self) -> tuple[dict[str, str], Answer | None]:
        """azmlinfsrv's request-id rules (routes.py _init_headers / populate_response_headers)."""
        out: dict[str, str] = {}
        request_id = self.headers.get("x-request-id") or str(uuid.uuid4())
        if len(request_id) > HEADER_LIMIT:
            return out, error_answer(431, f"x-request-id must not exceed {HEADER_LIMIT} characters")
        out["x-request-id"] = request_id
        legacy = self.headers.get("x-ms-request-id", "")
        client = self.headers.get("x-ms-client-request-id", "")
        if legacy:
            client = client or legacy
        else:
            legacy = client or request_id
        if len(legacy) > HEADER_LIMIT or len(client) > HEADER_LIMIT:
            return out, error_answer(
                431, f"x-ms-request-id and x-ms-client-request-id must not exceed {HEADER_LIMIT} characters"
            )
        out["x-ms-request-id"] = legacy
        if client:
            out["x-ms-client-request-id"] = client
        return out, None

    def _keyed(self) -> bool:
        key = self.host.key
        given = self.headers.get(INSTANCE_KEY_HEADER, "").encode("latin-1")
        return not key or hmac.compare_digest(given, key)

    def _dispatch(self) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        if not (url.path == "/" and self.command == "GET") and not self._keyed():
            self.close_connection = True  # the body is never read
            self._send(error_answer(401, "Unauthorized: instances answer their router only"), {})
            log.warning("%s %s 401 (no instance key)", self.command, redact(url.path))
            return
        body = self._read_body()
        ids, answer = self._request_ids()
        logged = False
        if answer is None:
            if url.path == "/score":
                logged = True
                headers = {k: v for k, v in self.headers.items() if k.lower() != INSTANCE_KEY_HEADER}
                answer = self.host.score(self.command, url.query, body, headers)
            elif url.path == "/":
                answer = (Answer(200, b"Healthy", ctype="text/html; charset=utf-8") if self.command == "GET"
                          else error_answer(405, "The method is not allowed for the requested URL."))
            else:
                answer = error_answer(404, NOT_FOUND_MESSAGE)
        if self.host.stopping:
            self.close_connection = True
        self._send(answer, ids)
        if logged:
            ms = (time.perf_counter() - started) * 1000
            path = redact(self.path)
            log.info("%s %s %d %.3fms %d", self.command, path, answer.status, ms, len(answer.body))

    # every method goes to the one dispatcher (azmlinfsrv answers 405 itself, per route)
    do_GET = do_POST = do_OPTIONS = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def _send(self, answer: Answer, ids: dict[str, str]) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.ctype)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("x-ms-run-function-failed", str(answer.failed))
        for name, value in {**answer.headers, **ids}.items():
            self.send_header(name, value)
        if "TraceId" in self.headers:
            self.send_header("TraceId", self.headers["TraceId"])
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]
        if self.command != "HEAD":
            self._headers_buffer.append(answer.body)  # type: ignore[attr-defined]
        self.flush_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug(format, *args)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        log.warning(format, *args)


class Server(ThreadingHTTPServer):
    """Threaded server that joins its request threads on close (graceful drain).

    ``serve_until_stopped`` replaces ``serve_forever``: that one notices ``shutdown()`` only at its
    next poll (0.2-0.5 s); here a stop request wakes the accept loop through a socket pair at once,
    so a SIGTERM'd instance with nothing in flight exits within milliseconds.
    """

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop_requested = False

    def serve_until_stopped(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stop_requested:
                for key, _ in sel.select():
                    if key.fileobj is self and not self._stop_requested:
                        self._handle_request_noblock()  # type: ignore[attr-defined]
                self.service_actions()

    def request_stop(self) -> None:
        """Stop accepting: the loop of ``serve_until_stopped`` returns at once (thread and signal safe)."""
        self._stop_requested = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def server_close(self) -> None:
        super().server_close()  # joins request threads: in-flight requests finish
        self._wake_r.close()
        self._wake_w.close()


def redact(target: str) -> str:
    """A URL as it may be logged: the values of query parameters that look like credentials hidden."""
    return SECRET_PARAM.sub(r"\1***", target) if "?" in target else target


def read_key(path: str | None) -> bytes:
    """The instance key (``{"instanceKey": ...}``, mode 0600) the router presents; exit 2 when unreadable."""
    if not path:
        return b""
    try:
        with open(path) as f:
            key = str(json.load(f).get("instanceKey") or "")
    except (OSError, ValueError, AttributeError) as ex:
        log.error("cannot read the instance key file %s: %s", path, ex)
        sys.exit(EXIT_USAGE)
    if not key:
        log.error("the instance key file %s has no instanceKey", path)
        sys.exit(EXIT_USAGE)
    return key.encode()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="recon instance host (azmlinfsrv contract, loopback only)")
    p.add_argument("--entry_script", default=os.environ.get("AZUREML_ENTRY_SCRIPT"))
    p.add_argument("--model_dir", default=None)
    p.add_argument("--port", type=int, default=int(os.environ.get("SERVER_PORT", "5001")))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--worker_count", type=int, default=int(os.environ.get("WORKER_COUNT", "1")))
    p.add_argument("--port-file", dest="port_file", default=None)
    p.add_argument("--modules-file", dest="modules_file", default=None,
                   help="after init(), write the library modules it imported (for warm starts)")
    p.add_argument("--key-file", dest="key_file", default=None,
                   help="JSON file with instanceKey: requests other than GET / must carry it (from the router)")
    args = p.parse_args(argv)
    if not args.entry_script:
        p.error("--entry_script is required (or set AZUREML_ENTRY_SCRIPT)")
    if args.worker_count < 1:
        p.error("--worker_count must be at least 1")
    return args


def setup_logging() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    handler = logging.StreamHandler(sys.stdout)
    fmt = "%(asctime)s %(levelname).1s [%(process)d] host - %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(os.environ.get("AZUREML_LOG_LEVEL", "INFO").upper())


def load(args: argparse.Namespace) -> ScoringScript:
    """Import the script and call init(); exit 3 with the traceback logged when either fails."""
    if args.model_dir:
        os.environ["AZUREML_MODEL_DIR"] = os.path.abspath(args.model_dir)
    app_root = os.environ.get("AML_APP_ROOT", os.getcwd())
    path = args.entry_script if os.path.isabs(args.entry_script) else os.path.join(app_root, args.entry_script)
    for folder in (app_root, os.path.dirname(os.path.abspath(path))):
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        script = ScoringScript(path)
    except BaseException:
        log.error("Failed to import user script %s:\n%s", path, traceback.format_exc())
        sys.exit(EXIT_SCRIPT_FAILED)
    log.info("Invoking user's init function")
    try:
        script.init()
    except BaseException:
        log.error("User's init function failed")
        log.error("Encountered Exception %s", traceback.format_exc())
        sys.exit(EXIT_SCRIPT_FAILED)
    log.info("Users's init has completed successfully")
    return script


def library_modules(own: list[str]) -> list[str]:
    """The modules loaded so far that are not the user's (their file is under none of ``own``),
    in the order they were imported: what a launcher imports before it forks warm instances."""
    folders = tuple(os.path.join(os.path.abspath(f), "") for f in own if f)
    names: list[str] = []
    for name, module in list(sys.modules.items()):
        if name in ("__main__", "entry_module") or module is None:
            continue
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and os.path.abspath(file).startswith(folders):
            continue
        names.append(name)
    return names


def write_modules_file(path: str, script: ScoringScript) -> None:
    app_root = os.environ.get("AML_APP_ROOT", os.getcwd())
    own = [app_root, os.path.dirname(os.path.abspath(script.path)), os.environ.get("AZUREML_MODEL_DIR", "")]
    try:
        write_atomic(path, json.dumps({"modules": library_modules(own)}), fsync=False)  # a hint, not a record
    except OSError as ex:  # warm starts are an optimisation: never a reason to fail
        log.warning("cannot record the modules init() imported in %s: %s", path, ex)


def write_atomic(path: str, text: str, fsync: bool = True) -> None:
    """Write ``text`` to a temp file beside ``path`` (fsync'd unless told not to), then rename it
    over ``path``: a reader sees the old content or the new, never part of it."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def stop(server: Server, host: Host) -> None:
    """Stop accepting, close idle keep-alive connections; busy ones close after their answer."""
    with host.lock:
        if host.stopping:
            return
        host.stopping = True
        idle = list(host.idle)
    log.info("stopping: finishing requests in flight")
    server.request_stop()
    for conn in idle:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    key = read_key(args.key_file)
    script = load(args)
    if args.modules_file:
        write_modules_file(args.modules_file, script)
    host = Host(script, args.worker_count, key)
    Handler.host = host
    try:
        server = Server((args.host, args.port), Handler)
    except OSError as ex:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, ex)
        return EXIT_USAGE
    port = server.server_address[1]

    def on_signal(signum: int, frame: Any) -> None:
        server.request_stop()  # the accept loop ends at once, even before the thread below runs
        threading.Thread(target=stop, args=(server, host), daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.port_file:
        write_atomic(args.port_file, f"{port}\n")
    log.info("ready: listening on %s:%d pid %d workers %d", args.host, port, os.getpid(), args.worker_count)
    server.serve_until_stopped()
    stop(server, host)  # idle keep-alive connections closed (also when the signal's thread has not run yet)
    server.server_close()  # joins request threads: in-flight requests finish
    log.info("stopped")
    return 0


def exit_now(code: int) -> None:
    """Exit as the interpreter would, without its module teardown.

    Non-daemon threads are joined and atexit handlers run (logging's flush among them), as at a
    normal exit; tearing down the modules of a loaded model (numpy, scikit-learn, ...) is what is
    skipped: it takes 0.3 s or more of CPU and delays the end of a rollout that waits for the
    old instances to be gone.
    """
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())

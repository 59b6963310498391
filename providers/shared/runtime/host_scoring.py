"""The scoring side of the instance host (``host.py``): the user's script as azmlinfsrv loads and calls it,
and what one request to ``/score`` answers. Standard library only; it imports nothing of recon.

It ships beside ``host.py`` wherever the host goes (``HOST_FILES`` in ``runtime/__init__.py``: the
deployment's virtualenv runs it from recon's folder, images copy it, containers and ConfigMaps carry
it): ``host.py`` run as a script finds it on ``sys.path[0]``, its own folder.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

RUN_FAILED_MESSAGE = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL_ERROR_MESSAGE = "An unexpected internal error occurred. Check the logs for more info."

log = logging.getLogger("host")


class ScoringScript:
    """The user's module: ``init()`` and ``run(data[, request_headers])``, as azmlinfsrv loads it."""

    def __init__(self, path: str) -> None:
        self.path = path
        spec = importlib.util.spec_from_file_location("entry_module", path)
        if spec is None or spec.loader is None:
            raise FileNotFoundError(f"cannot load scoring script {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name in ("init", "run"):
            if not hasattr(module, name):
                raise AttributeError(f"User script at {path} does not have a {name}() function defined.")
        # Some Azure SDKs wrap the real script in a "driver module"; azmlinfsrv calls its run() directly.
        driver = getattr(module, "driver_module", None)
        self._run: Callable[..., Any] = (
            driver.run if isinstance(driver, ModuleType) and hasattr(driver, "run") else module.run
        )
        self._init: Callable[[], Any] = module.init
        params = list(inspect.signature(self._run).parameters.values())
        if any(p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
            raise TypeError("run() cannot accept positional-only arguments, *args, or **kwargs.")
        self.wants_headers = any(p.name == "request_headers" for p in params)
        others = [p for p in params if p.name != "request_headers"]
        if not others:
            raise TypeError("run() needs to accept an argument for input data.")
        self.input_name = others[0].name

    def init(self) -> None:
        self._init()

    def run(self, data: str, headers: dict[str, str]) -> Any:
        kwargs: dict[str, Any] = {self.input_name: data}
        if self.wants_headers:
            kwargs["request_headers"] = headers
        return self._run(**kwargs)


@dataclass
class Answer:
    """One HTTP answer: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    ctype: str = "application/json"
    failed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def error_answer(status: int, message: str, failed: bool = False) -> Answer:
    return Answer(status, json.dumps({"message": message}).encode(), failed=failed)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class Host:
    """Shared state of the server: the script, the run() concurrency limit, connection bookkeeping."""

    def __init__(self, script: ScoringScript, workers: int, key: bytes = b"") -> None:
        self.script = script
        self.key = key  # when set, every request but the health check must carry it
        self.run_slots = threading.BoundedSemaphore(workers)
        self.stopping = False
        self.lock = threading.Lock()
        self.idle: set[socket.socket] = set()  # keep-alive connections waiting for a request

    def score(self, method: str, query: str, body: bytes, headers: dict[str, str]) -> Answer:
        if method == "OPTIONS":
            return Answer(200, b"", ctype="text/html; charset=utf-8")
        if method == "GET":
            params = {k: (_parse_value(v[0]) if len(v) == 1 else [_parse_value(x) for x in v])
                      for k, v in parse_qs(query, keep_blank_values=True).items()}
            data = json.dumps(params)
        elif method == "POST":
            try:
                data = str(body, "utf-8")
            except UnicodeDecodeError as ex:
                return error_answer(400, f"Input cannot be decoded as UTF-8: {ex}")
        else:
            return error_answer(405, "Method not allowed")
        started = time.perf_counter()
        with self.run_slots:
            try:
                result = self.script.run(data, headers)
            except Exception:
                log.error("Encountered Exception: %s", traceback.format_exc())
                return error_answer(500, RUN_FAILED_MESSAGE, failed=True)
        elapsed_ms = (time.perf_counter() - started) * 1000
        try:
            answer = Answer(200, json.dumps(result).encode())
        except Exception:
            log.error("Encountered Exception: %s", traceback.format_exc())
            return error_answer(500, INTERNAL_ERROR_MESSAGE)
        answer.headers["x-ms-run-fn-exec-ms"] = f"{elapsed_ms:.3f}"
        return answer


__all__ = ["INTERNAL_ERROR_MESSAGE", "RUN_FAILED_MESSAGE", "Answer", "Host", "ScoringScript", "error_answer"]

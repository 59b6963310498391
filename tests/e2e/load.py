"""A small load generator for end-to-end tests: real HTTP against a real endpoint, on loopback."""

from __future__ import annotations

import collections
import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass, field


@dataclass
class LoadStats:
    ok: int = 0
    failed: int = 0
    served_by: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    failure_times: list[float] = field(default_factory=list)  # time.monotonic() of each failure

    def failed_between(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.failure_times)

    def split(self) -> dict[str, float]:
        total = sum(self.served_by.values())
        return {k: 100.0 * v / total for k, v in self.served_by.items()} if total else {}


class LoadGenerator:
    """Sends POST /score continuously from ``workers`` threads until stopped.

    Every answer that is not 200 (or a connection error) counts as a failed request, with the time
    it came (``failure_times``). The ``azureml-model-deployment`` response header says which
    deployment served each answer.
    """

    def __init__(self, scoring_uri: str, key: str, body: bytes, workers: int = 2) -> None:
        url = urllib.parse.urlsplit(scoring_uri)
        self.host, self.port, self.path = url.hostname or "127.0.0.1", url.port or 80, url.path
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.body = body
        self.workers = workers
        self.stats = LoadStats()
        self.total = LoadStats()  # never reset: every failure during the whole run
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _worker(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        while not self._stop.is_set():
            try:
                conn.request("POST", self.path, body=self.body, headers=self.headers)
                resp = conn.getresponse()
                resp.read()
                served = resp.getheader("azureml-model-deployment") or "?"
                with self._lock:
                    for stats in (self.stats, self.total):
                        if resp.status == 200:
                            stats.ok += 1
                            stats.served_by[served] += 1
                        else:
                            stats.failed += 1
                            stats.failures.append(f"HTTP {resp.status} from {served}")
                            stats.failure_times.append(time.monotonic())
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    for stats in (self.stats, self.total):
                        stats.failed += 1
                        stats.failures.append(f"{type(exc).__name__}: {exc}")
                        stats.failure_times.append(time.monotonic())
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                time.sleep(0.01)
        conn.close()

    def reset(self) -> LoadStats:
        with self._lock:
            old, self.stats = self.stats, LoadStats()
        return old

    def __enter__(self) -> LoadGenerator:
        for _ in range(self.workers):
            t = threading.Thread(target=self._worker, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def wait_for(self, requests: int, timeout: float = 120.0) -> LoadStats:
        """Wait until at least ``requests`` answers were counted since the last reset."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.stats.ok + self.stats.failed >= requests:
                    break
            time.sleep(0.05)
        return self.reset()

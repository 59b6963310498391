"""Measuring windows (``open_window`` / ``close_window``) of the providers whose endpoints recon's router
serves, against real routers and instances under real load: local processes, and containers of a real
Docker engine. A rolling update is stopped after its first batch, so one deployment runs two
configurations: the window tells them apart by digest. A new configuration whose scoring script fails
3 requests in 10 shows 30% errors, the old one none; one that sleeps 2 s shows it in its p99."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.model.windows import SeriesStats, WindowStats
from reconciler.plan.provider import ApplyRequest
from reconciler.plan.types import Batch
from tests.contract.conftest import Harness, provider_harness
from tests.requests import routed

# Every instance counts its own requests: the 1st, 2nd and 3rd of every 10 fail with FAIL_3_IN_10 set.
SCORE_PY = """\
import json
import os
import time

count = 0


def init():
    global fail, sleep_s
    fail = bool(os.environ.get("FAIL_3_IN_10"))
    sleep_s = float(os.environ.get("SLEEP_S") or 0)


def run(raw_data):
    global count
    count += 1
    if fail and count % 10 in (1, 2, 3):
        raise RuntimeError("this release fails 3 requests in 10")
    time.sleep(sleep_s)
    return {"release": os.environ.get("RELEASE"), "echo": json.loads(raw_data)}
"""
SETTINGS = {"request_timeout_ms": 10_000, "max_concurrent_requests_per_instance": 2, "max_queue_wait_ms": 5000}


@pytest.fixture(params=["local", pytest.param("docker", marks=[pytest.mark.docker, pytest.mark.slow])])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    yield from provider_harness(request.param, request, tmp_path)


class Load:
    """``workers`` keep-alive clients scoring until stopped; what they got, by status."""

    def __init__(self, scoring_uri: str, key: str, workers: int = 4) -> None:
        url = urllib.parse.urlsplit(scoring_uri)
        self.port, self.path = int(url.port or 80), url.path
        self.key, self.workers = key, workers
        self.seen: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.worker) for _ in range(workers)]

    def worker(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        while not self.stop.is_set():
            conn.request("POST", self.path, json.dumps({"x": 1}), headers)
            resp = conn.getresponse()
            resp.read()
            with self.lock:
                self.seen[resp.status] += 1
        conn.close()

    def run_for(self, seconds: float) -> Counter[int]:
        for t in self.threads:
            t.start()
        time.sleep(seconds)
        self.stop.set()
        for t in self.threads:
            t.join()
        return self.seen


def roll_first_batch(h: Harness, env: dict[str, str]) -> tuple[ApplyRequest, str]:
    """Roll ``blue`` (2 instances) towards a configuration with ``env``, one batch of 1: one instance
    at the new configuration, one at the old; the new configuration's digest."""
    request = h.deployment("blue", 2, score=SCORE_PY, variables=env, request_settings=SETTINGS)
    outputs = h.provider.roll_batch(request, Batch(index=1, size=1))
    h.record(request, outputs)
    return request, str(outputs["config_digest"])


def measure(h: Harness, seconds: float) -> tuple[WindowStats, Counter[int]]:
    """A window of the endpoint (the protocol's request is the endpoint's) over ``seconds`` of load."""
    keys = h.provider.credentials(h.recorded["endpoint.ep"])
    request = h.endpoint()
    mark = h.provider.open_window(request)
    json.dumps(mark)  # plain data: the engine may keep it
    seen = Load(keys.scoring_uri, keys.primary_key).run_for(seconds)
    time.sleep(0.2)
    return h.provider.close_window(request, mark), seen


def blue(stats: WindowStats) -> list[SeriesStats]:
    return [s for s in stats.series if s.deployment == "blue" and s.traffic == "live"]


def one(stats: WindowStats, digest: str) -> SeriesStats:
    (series,) = [s for s in blue(stats) if s.digest == digest]
    return series


def test_a_window_tells_the_new_configuration_from_the_old(harness: Harness) -> None:
    h = harness
    assert h.provider.measuring.windows and h.provider.measuring.digests
    h.stack(names=())
    first = h.create(h.deployment("blue", 2, score=SCORE_PY, request_settings=SETTINGS))
    old = str(first.outputs["config_digest"])
    h.provider.set_routing(routed(h.endpoint(), {"blue": 100}, {}))

    # a new release that fails 3 requests in 10, after the first batch of its rolling update
    _, new = roll_first_batch(h, {"FAIL_3_IN_10": "1"})
    stats, seen = measure(h, 4.0)
    assert new != old and stats.source == "router /-/metrics x1 replica"
    assert 3.5 < stats.window_s < 30
    fresh, stale = one(stats, new), one(stats, old)
    assert fresh.requests + stale.requests == sum(seen.values()) > 100
    assert fresh.errors_5xx == seen[424] > 0  # clients get Azure's 424 for the model's 500
    assert fresh.failed / fresh.requests == pytest.approx(0.3, abs=0.02)
    assert stale.failed == 0 and stale.requests > 30
    assert fresh.timeouts == fresh.connect_failures == 0

    # the next release adds 2 s to every request: its p99 shows it, the other's does not
    _, slow = roll_first_batch(h, {"SLEEP_S": "2"})
    stats, seen = measure(h, 6.0)
    sleeping = one(stats, slow)
    others = [s for s in blue(stats) if s.digest != slow and s.requests]
    assert sleeping.requests >= 3 and sleeping.latency_p99_s is not None and sleeping.latency_p99_s >= 2.0
    assert others and all(s.latency_p99_s is not None and s.latency_p99_s < 1.0 for s in others)
    assert sum(s.requests for s in blue(stats)) == sum(seen.values())

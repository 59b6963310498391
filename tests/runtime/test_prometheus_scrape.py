"""A real Prometheus (Debian's package, .ci/setup-prometheus.sh) scrapes the real router's /-/metrics
under load, with the scrape config of docs/runtime.md; the series read back through Prometheus' HTTP
API equal what the load's clients saw, and Prometheus' histogram_quantile equals recon's
(reconciler/model/windows.py) on the same buckets."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.model.windows import histogram_quantile
from tests.runtime.conftest import PRIMARY, Proc, call
from tests.runtime.prometheus import Prometheus

pytestmark = pytest.mark.slow  # installs Debian's prometheus when it is missing

Host = Callable[..., Proc]
Router = Callable[..., tuple[Proc, Any]]
BLUE = 'deployment="blue",traffic="live"'


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], Prometheus]]:
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        server = Prometheus(tmp_path / "prometheus", targets, PRIMARY, interval=0.5).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def load(port: int, workers: int, per_worker: int) -> Counter[tuple[int, str]]:
    """``workers`` keep-alive clients at once, each sending ``per_worker`` requests of which 3 in 10
    make the scoring script raise; (status, instance that answered 200) as the clients saw them."""
    seen: Counter[tuple[int, str]] = Counter()
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {PRIMARY}", "Content-Type": "application/json"}
        for i in range(per_worker):
            conn.request("POST", "/score", json.dumps({"fail": 1} if i % 10 < 3 else {"i": i}), headers)
            resp = conn.getresponse()
            body = resp.read()
            who = json.loads(body)["name"] if resp.status == 200 else ""
            with lock:
                seen[resp.status, who] += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return seen


def eventually(read: Callable[[], float | None], want: float, timeout: float = 20.0) -> float | None:
    """Prometheus' latest value of a query once it reaches ``want`` (scrapes come every 0.5 s)."""
    deadline = time.monotonic() + timeout
    got = read()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.25)
        got = read()
    return got


def test_prometheus_scrapes_the_router_and_counts_what_clients_saw(
        start_host: Host, start_router: Router, prometheus: Callable[[list[str]], Prometheus]) -> None:
    old, new = start_host("old", workers=4), start_host("new", workers=4)
    router, _ = start_router({"blue": {"upstreams": [old.addr, new.addr],
                                       "digests": {old.addr: "sha256:old", new.addr: "sha256:new"},
                                       "max_concurrent_requests_per_instance": 4}},
                             traffic={"blue": 100})
    prom = prometheus([router.addr])
    deadline = time.monotonic() + 20
    while not prom.targets_up() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert prom.targets_up(), (prom.dir / "prometheus.log").read_text()[-2000:]

    seen = load(router.port, workers=6, per_worker=50)
    assert call(router.port, {}, key="not-the-key")[0] == 401
    assert sum(seen.values()) == 300 and seen[424, ""] == 6 * 15

    total = eventually(lambda: prom.value(f"sum(recon_router_requests_total{{{BLUE}}})"), 300)
    assert total == 300
    by_code = {r["metric"]["code"]: float(r["value"][1])
               for r in prom.query(f"sum by (code) (recon_router_requests_total{{{BLUE}}})")}
    assert by_code == {"2xx": seen[200, "old"] + seen[200, "new"], "3xx": 0, "4xx": 0, "5xx": seen[424, ""]}
    by_digest = {r["metric"]["digest"]: float(r["value"][1])
                 for r in prom.query(f'sum by (digest) (recon_router_requests_total{{{BLUE},code="2xx"}})')}
    assert by_digest == {"sha256:old": seen[200, "old"], "sha256:new": seen[200, "new"]}
    assert eventually(lambda: prom.value('sum(recon_router_responses_total{code="401"})'), 1) == 1
    assert prom.value(f"sum(recon_router_request_duration_seconds_count{{{BLUE}}})") == 300
    assert prom.value('up{job="recon-router"}') == 1

    # Prometheus' histogram_quantile and recon's agree on the same (cumulative) buckets
    text = call(router.port, method="GET", path="/-/metrics")[2].decode()
    buckets: dict[str, list[tuple[float, int]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "recon_router_request_duration_seconds_bucket" and s.labels["deployment"] == "blue":
                buckets.setdefault(s.labels["digest"], []).append((float(s.labels["le"]), int(s.value)))
    for digest, got in buckets.items():
        for q in (0.5, 0.9, 0.99):
            theirs = prom.value(f'histogram_quantile({q}, recon_router_request_duration_seconds_bucket'
                                f'{{{BLUE},digest="{digest}"}})')
            ours = histogram_quantile(q, got)
            assert theirs is not None and ours is not None
            assert ours == pytest.approx(theirs, rel=1e-9), (digest, q)

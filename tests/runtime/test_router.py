"""The endpoint router behaves as an Azure managed online endpoint (docs/runtime.md), with real hosts."""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import PRIMARY, SECONDARY, Proc, call, router_health, wait_version, write_table

Router = Callable[..., tuple[Proc, Path]]
Host = Callable[..., Proc]


def dep(*hosts: Proc, **settings: Any) -> dict[str, Any]:
    return {"upstreams": [h.addr for h in hosts], **settings}


def count_served(port: int, n: int, headers: dict[str, str] | None = None) -> collections.Counter[str]:
    """n requests over one keep-alive connection; counts the deployment named by each answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    served: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        conn.request("POST", "/score", "{}", {"Authorization": f"Bearer {PRIMARY}", **(headers or {})})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        served[resp.getheader("azureml-model-deployment") or ""] += 1
    conn.close()
    return served


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("wrong", 401), (PRIMARY, 200), (SECONDARY, 200)])
def test_key_check(start_host: Host, start_router: Router, key: str | None, status: int) -> None:
    blue = start_host("blue")
    router, _ = start_router({"blue": dep(blue)}, {"blue": 100})
    assert call(router.port, {}, key=key)[0] == status
    assert PRIMARY not in router.log_text() and SECONDARY not in router.log_text()


def test_split_within_5_points_and_served_header(start_host: Host, start_router: Router) -> None:
    blue, green = start_host("blue"), start_host("green")
    router, _ = start_router({"blue": dep(blue), "green": dep(green)}, {"blue": 70, "green": 30})
    served = count_served(router.port, 1000)
    assert abs(served["blue"] / 10 - 70) <= 5 and abs(served["green"] / 10 - 30) <= 5
    status, headers, body = call(router.port, {})
    assert headers["azureml-model-deployment"] == json.loads(body)["name"]


def test_header_routes_ignoring_split_and_unknown_is_404(start_host: Host, start_router: Router) -> None:
    blue, green = start_host("blue"), start_host("green")
    router, _ = start_router({"blue": dep(blue), "green": dep(green)}, {"blue": 100})
    assert count_served(router.port, 20, {"azureml-model-deployment": "GREEN"}) == {"green": 20}
    status, _, body = call(router.port, {}, headers={"azureml-model-deployment": "nope"})
    assert status == 404 and b"nope" in body


def test_no_traffic_answers_azure_message(start_host: Host, start_router: Router) -> None:
    router, _ = start_router({"blue": dep(start_host("blue"))}, {})
    status, _, body = call(router.port, {})
    assert status == 404
    assert json.loads(body)["message"].startswith("No valid deployments to route to")
    assert call(router.port, {}, headers={"azureml-model-deployment": "blue"})[0] == 200


def test_mirror_gets_its_share_and_live_answers_are_unaffected(start_host: Host, start_router: Router) -> None:
    blue = start_host("blue")
    shadow = start_host("shadow", workers=64, env={"SLEEP_S": "0.5"})
    router, _ = start_router({"blue": dep(blue), "shadow": dep(shadow, max_concurrent_requests_per_instance=64)},
                             {"blue": 100}, {"shadow": 20})
    times = []
    for _ in range(200):
        t0 = time.monotonic()
        status, headers, body = call(router.port, {"sleep": 0})
        times.append(time.monotonic() - t0)
        assert status == 200 and headers["azureml-model-deployment"] == "blue"
        assert json.loads(body)["name"] == "blue"
    assert max(times) < 0.4  # the shadow takes 0.5 s: nobody waited for it
    # header-routed requests are never mirrored
    count_served(router.port, 20, {"azureml-model-deployment": "blue"})
    time.sleep(1.0)
    mirrored = shadow.log_text().count("POST /score 200")
    assert 30 <= mirrored <= 50  # 20% of 200 live requests


def test_request_timeout_answers_408(start_host: Host, start_router: Router) -> None:
    slow = start_host("slow", env={"SLEEP_S": "5"})
    router, _ = start_router({"slow": dep(slow, request_timeout_ms=300)}, {"slow": 100})
    t0 = time.monotonic()
    status, headers, _ = call(router.port, {})
    assert status == 408
    assert time.monotonic() - t0 < 3.0  # the instance would answer after 5 s
    assert headers["azureml-model-deployment"] == "slow"


def test_model_error_answers_424_with_model_status(start_host: Host, start_router: Router) -> None:
    router, _ = start_router({"blue": dep(start_host("blue"))}, {"blue": 100})
    status, headers, body = call(router.port, {"fail": "x"})
    assert status == 424
    assert headers["ms-azureml-model-error-statuscode"] == "500"
    assert b"scoring script" in body


def test_over_concurrency_queues_then_429(start_host: Host, start_router: Router) -> None:
    blue = start_host("blue", env={"SLEEP_S": "1"})
    router, _ = start_router({"blue": dep(blue, max_concurrent_requests_per_instance=1, max_queue_wait_ms=200)},
                             {"blue": 100})
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(call(router.port, {})[0])) for _ in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert sorted(results) == [200, 429, 429]


def test_queued_request_is_served_when_a_slot_frees(start_host: Host, start_router: Router) -> None:
    blue = start_host("blue", env={"SLEEP_S": "0.3"})
    router, _ = start_router({"blue": dep(blue, max_concurrent_requests_per_instance=1, max_queue_wait_ms=2000)},
                             {"blue": 100})
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(call(router.port, {})[0])) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200, 200]


class Load:
    """Closed-loop load on several keep-alive connections; records every status and served deployment."""

    def __init__(self, port: int, workers: int = 4, body: Any = None) -> None:
        self.port, self.body = port, json.dumps(body or {})
        self.stop = threading.Event()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.served: collections.Counter[str] = collections.Counter()
        self.threads = [threading.Thread(target=self.work) for _ in range(workers)]

    def work(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            conn.request("POST", "/score", self.body, {"Authorization": f"Bearer {PRIMARY}"})
            resp = conn.getresponse()
            resp.read()
            self.statuses[resp.status] += 1
            self.served[resp.getheader("azureml-model-deployment") or ""] += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def test_reload_under_load_drops_nothing(start_host: Host, start_router: Router) -> None:
    b1, b2, g1 = start_host("blue"), start_host("blue"), start_host("green")
    settings = {"max_concurrent_requests_per_instance": 4}
    router, table = start_router({"blue": dep(b1, **settings), "green": dep(g1, **settings)}, {"blue": 100})
    doc = json.loads(table.read_text())
    steps: list[tuple[list[Proc], dict[str, int]]] = [
        ([b1, b2], {"blue": 100}), ([b1, b2], {"blue": 90, "green": 10}), ([b2], {"blue": 50, "green": 50}),
        ([b1], {"green": 100}), ([b1, b2], {"blue": 100})]
    with Load(router.port) as load:
        for version, (blue_hosts, traffic) in enumerate(steps * 2, start=2):
            doc["deployments"]["blue"]["upstreams"] = [h.addr for h in blue_hosts]
            doc["traffic"], doc["version"] = traffic, version
            write_table(table, doc)
            if version % 2:
                router.proc.send_signal(signal.SIGHUP)
            wait_version(router.port, version)
            time.sleep(0.15)
    assert set(load.statuses) == {200}, load.statuses
    assert sum(load.statuses.values()) > 100
    assert load.served["green"] > 0


def test_removing_an_upstream_with_requests_in_flight_drops_none(start_host: Host, start_router: Router) -> None:
    a = start_host("blue", workers=4, env={"SLEEP_S": "0.6"})
    b = start_host("blue", workers=4, env={"SLEEP_S": "0.6"})
    router, table = start_router({"blue": dep(a, b, max_concurrent_requests_per_instance=4)}, {"blue": 100})
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(call(router.port, {})[0])) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    health = router_health(router.port)
    assert health["deployments"]["blue"]["upstreams"][b.addr]["in_flight"] > 0
    doc = json.loads(table.read_text())
    doc["deployments"]["blue"]["upstreams"], doc["version"] = [a.addr], 2
    write_table(table, doc)
    router.proc.send_signal(signal.SIGHUP)
    health = wait_version(router.port, 2)
    assert health["draining"].get(b.addr, 0) > 0  # still finishing on the removed instance
    b.proc.send_signal(signal.SIGTERM)  # the control plane stops it: the host finishes what it has
    more = [call(router.port, {"sleep": 0})[0] for _ in range(5)]
    for t in threads:
        t.join()
    assert results == [200] * 6 and more == [200] * 5
    assert b.proc.wait(10) == 0
    assert router_health(router.port)["draining"] == {}


def test_invalid_table_keeps_the_old_one(start_host: Host, start_router: Router) -> None:
    router, table = start_router({"blue": dep(start_host("blue"))}, {"blue": 100})
    table.write_text('{"deployments": {"blue": {"upstreams": "oops"}}}')
    router.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert call(router.port, {})[0] == 200
    assert "table not loaded" in router.log_text()


def test_sigterm_drains_and_exits_0(start_host: Host, start_router: Router) -> None:
    router, _ = start_router({"blue": dep(start_host("blue", env={"SLEEP_S": "0.5"}))}, {"blue": 100})
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(call(router.port, {})[0]))
    t.start()
    time.sleep(0.2)
    os.kill(router.proc.pid, signal.SIGTERM)
    t.join()
    assert result == [200]
    assert router.proc.wait(10) == 0

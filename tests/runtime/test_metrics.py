"""GET /-/metrics of the real router (docs/runtime.md), parsed with prometheus_client's parser: what is
counted where (deployment, the digest the table gives the instance, live or mirrored), how a request
ends (the instance's answer by class, a timeout, a connection failure), the router's own answers, and
who may read it."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.runtime.conftest import PRIMARY, Proc, call, wait_version, write_table

Host = Callable[..., Proc]
Router = Callable[..., tuple[Proc, Any]]
LIVE = "live"


def scrape(port: int, key: str | None = PRIMARY) -> dict[str, Any]:
    """The families of ``GET /-/metrics``, by name, as prometheus_client parses them."""
    status, headers, body = call(port, method="GET", path="/-/metrics", key=key)
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(families: dict[str, Any], name: str, suffix: str = "", **labels: str) -> list[Any]:
    family = families[name]
    return [s for s in family.samples if s.name == family.name + suffix
            and all(s.labels.get(k) == v for k, v in labels.items())]


def total(families: dict[str, Any], name: str, suffix: str = "_total", **labels: str) -> float:
    return sum(s.value for s in samples(families, name, suffix, **labels))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


def test_requests_are_counted_by_deployment_digest_traffic_and_code(start_host: Host, start_router: Router) -> None:
    old, new, shadow = start_host("old"), start_host("new"), start_host("shadow")
    router, _ = start_router(
        {"blue": {"upstreams": [old.addr, new.addr], "digests": {old.addr: "sha256:old", new.addr: "sha256:new"}},
         "green": {"upstreams": [shadow.addr]}},  # no digests: a table written before them
        traffic={"blue": 100}, mirror={"green": 50})
    seen: Counter[tuple[int, str]] = Counter()
    for i in range(40):
        status, headers, _ = call(router.port, {"fail": 1} if i % 4 == 0 else {"i": i})
        seen[status, json.loads(_)["name"] if status == 200 else "?"] += 1
    assert call(router.port, {}, key="wrong")[0] == 401
    assert call(router.port, {}, headers={"azureml-model-deployment": "nope"})[0] == 404
    deadline = time.monotonic() + 10  # the last mirrored copy starts after its live answer went back
    while True:
        fams = scrape(router.port)
        copies = total(fams, "recon_router_requests", deployment="green", traffic="mirror")
        if copies + total(fams, "recon_router_mirror_dropped") == 20 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    assert fams["recon_router_requests"].type == "counter"
    assert fams["recon_router_request_duration_seconds"].type == "histogram"
    assert fams["recon_router_info"].type == "gauge"
    live = {"deployment": "blue", "traffic": LIVE}
    assert total(fams, "recon_router_requests", **live) == 40
    assert total(fams, "recon_router_requests", code="5xx", **live) == 10  # the instances' 500s (clients: 424)
    assert total(fams, "recon_router_requests", code="2xx", **live) == 30 == seen[200, "old"] + seen[200, "new"]
    by_digest = {d: total(fams, "recon_router_requests", code="2xx", digest=f"sha256:{d}", **live)
                 for d in ("old", "new")}
    assert by_digest == {"old": seen[200, "old"], "new": seen[200, "new"]}
    assert min(by_digest.values()) > 0
    # mirrored copies: every other routed request, measured apart, their answers never returned
    mirrored = total(fams, "recon_router_requests", deployment="green", traffic="mirror", digest="")
    dropped = total(fams, "recon_router_mirror_dropped", deployment="green")
    assert mirrored + dropped == 20 and mirrored > 0
    assert total(fams, "recon_router_requests", deployment="green", traffic=LIVE) == 0
    # the histogram of each series counts every request of it; buckets are cumulative up to +Inf
    for digest in ("sha256:old", "sha256:new"):
        series = {"deployment": "blue", "digest": digest, "traffic": LIVE}
        buckets = [s.value for s in samples(fams, "recon_router_request_duration_seconds", "_bucket", **series)]
        assert len(buckets) == 16 and buckets == sorted(buckets)
        assert buckets[-1] == total(fams, "recon_router_request_duration_seconds", "_count", **series) \
            == total(fams, "recon_router_requests", **series)
    # answers the router gave itself: by exact status, in no series
    assert total(fams, "recon_router_responses", code="401") == 1
    assert total(fams, "recon_router_responses", code="404") == 1
    info = samples(fams, "recon_router_info")
    assert [(s.labels, s.value) for s in info] == [({"endpoint": "ep", "version": "1"}, 1.0)]


def test_timeouts_and_connection_failures_are_5xx_of_the_instance_tried(start_host: Host,
                                                                        start_router: Router) -> None:
    slow = start_host("slow")
    nowhere = f"127.0.0.1:{closed_port()}"
    router, _ = start_router({
        "slow": {"upstreams": [slow.addr], "digests": {slow.addr: "d-slow"}, "request_timeout_ms": 300},
        "gone": {"upstreams": [nowhere], "digests": {nowhere: "d-gone"}}})
    assert call(router.port, {"sleep": 2}, headers={"azureml-model-deployment": "slow"})[0] == 408
    assert call(router.port, {}, headers={"azureml-model-deployment": "gone"})[0] == 502
    fams = scrape(router.port)
    slow_series = {"deployment": "slow", "digest": "d-slow", "traffic": LIVE}
    assert total(fams, "recon_router_upstream_timeouts", **slow_series) == 1
    assert total(fams, "recon_router_requests", code="5xx", **slow_series) == 1
    le = {s.labels["le"]: s.value for s in samples(fams, "recon_router_request_duration_seconds", "_bucket",
                                                   **slow_series)}
    assert (le["0.25"], le["0.5"]) == (0, 1)  # the 300 ms it waited
    gone = {"deployment": "gone", "digest": "d-gone", "traffic": LIVE}
    assert total(fams, "recon_router_upstream_connect_failures", **gone) == 1
    assert total(fams, "recon_router_requests", code="5xx", **gone) == 1
    assert total(fams, "recon_router_upstream_retries", **gone) == 0  # no other instance to try
    assert total(fams, "recon_router_responses") == 0


def test_a_reload_that_changes_an_instance_digest_starts_a_series_and_keeps_the_old_one(
        start_host: Host, start_router: Router) -> None:
    host = start_host()
    deployments = {"blue": {"upstreams": [host.addr], "digests": {host.addr: "d1"}}}
    router, table = start_router(deployments, traffic={"blue": 100})
    for _ in range(3):
        assert call(router.port, {})[0] == 200
    doc = json.loads(table.read_text())
    doc["deployments"]["blue"]["digests"][host.addr] = "d2"
    doc["version"] = 2
    write_table(table, doc)
    router.proc.send_signal(1)  # SIGHUP
    wait_version(router.port, 2)
    assert call(router.port, {})[0] == 200
    fams = scrape(router.port)
    assert total(fams, "recon_router_requests", digest="d1") == 3
    assert total(fams, "recon_router_requests", digest="d2") == 1
    status = call(router.port, method="GET", path="/-/router")[2]
    assert json.loads(status)["deployments"]["blue"]["upstreams"][host.addr]["digest"] == "d2"


def test_metrics_need_a_key_even_without_endpoint_auth(start_host: Host, start_router: Router,
                                                       tmp_path: Any) -> None:
    host = start_host()
    ikey = tmp_path / "instance.json"
    ikey.write_text(json.dumps({"instanceKey": "the-instance-key"}))
    router, _ = start_router({"blue": {"upstreams": [host.addr]}}, traffic={"blue": 100},
                             extra={"auth_mode": "none", "instance_key_file": str(ikey)})
    assert call(router.port, {}, key=None)[0] == 200  # scoring: no key
    assert call(router.port, method="GET", path="/-/metrics", key=None)[0] == 401
    assert call(router.port, method="GET", path="/-/metrics", key="wrong")[0] == 401
    assert total(scrape(router.port, key="the-instance-key"), "recon_router_requests") == 1
    status, _, body = call(router.port, method="GET", path="/-/metrics", key=None,
                           headers={"x-recon-instance-key": "the-instance-key"})
    assert status == 200 and b"recon_router_requests_total" in body


def test_table_digests_by_upstream_and_a_wrong_one_named() -> None:
    from providers.shared.runtime.router.table import TableError, parse_table

    table = parse_table({"auth_mode": "none", "deployments": {
        "Blue": {"upstreams": ["127.0.0.1:1", "127.0.0.1:2"], "digests": {"127.0.0.1:1": "sha256:a"}},
        "green": {"upstreams": ["127.0.0.1:3"]}}})
    blue, green = table.deployments["blue"], table.deployments["green"]
    assert [blue.digest_of(a) for a in blue.upstreams] == ["sha256:a", ""]
    assert green.digest_of("127.0.0.1:3") == ""
    for wrong in (["sha256:a"], {"127.0.0.1:1": 7}, "sha256:a"):
        with pytest.raises(TableError, match=r"^deployments\.blue\.digests: expected an object"):
            parse_table({"auth_mode": "none",
                         "deployments": {"blue": {"upstreams": ["127.0.0.1:1"], "digests": wrong}}})

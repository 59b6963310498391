"""Rolling updates under load: batches of new instances up, old ones drained and down, no failed request."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from reconciler.plan.types import Batch
from tests.local.helpers import Project, alive_marked
from tests.requests import routed


class LoadGenerator(threading.Thread):
    """Sends requests through the router until stopped (bounded: 60 s, 20,000 requests)."""

    def __init__(self, port: int, key: str) -> None:
        super().__init__(daemon=True)
        self.port, self.key = port, key
        self.stop_event = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: set[str] = set()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        while not self.stop_event.is_set() and time.monotonic() < deadline and self.ok < 20_000:
            try:
                conn.request("POST", "/score", body='{"x": 1}', headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    self.failures.append(f"{resp.status} {body[:200]!r}")
                else:
                    self.ok += 1
                    self.versions.add(json.loads(body)["version"])
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()


@pytest.mark.slow
def test_rolling_update_of_ten_instances_in_five_batches_under_load(project: Project) -> None:
    project.create(project.endpoint())
    project.create(project.deployment(count=10, env_vars={"VERSION": "v1"}))
    ep = project.endpoint(traffic={"blue": 100})
    project.record(ep, project.provider.set_routing(routed(ep, {"blue": 100}, {})))
    old = {i["pid"] for i in project.resources["deployment.ep.blue"].outputs["instances"]}
    key, port = project.keys()
    loads = [LoadGenerator(port, key) for _ in range(3)]
    for load in loads:
        load.start()
    time.sleep(0.3)
    new_req = project.deployment(count=10, env_vars={"VERSION": "v2"})
    digests = []
    for index in range(1, 6):
        out = project.provider.roll_batch(new_req, Batch(index=index, size=2))
        versions = [i["config_digest"] for i in out["instances"]]
        digests.append(versions.count(out["config_digest"]))
        assert len(out["instances"]) == 10
    time.sleep(0.3)
    for load in loads:
        load.stop_event.set()
    for load in loads:
        load.join(15)
    failures = [f for load in loads for f in load.failures]
    assert failures == []
    assert sum(load.ok for load in loads) > 100
    assert digests == [2, 4, 6, 8, 10]
    assert {v for load in loads for v in load.versions} == {"v1", "v2"}
    final = out["instances"]
    assert not old & {i["pid"] for i in final}
    assert len(alive_marked(project.provider.state_dir)) == 11  # 10 instances + the router
    # idempotent: a further batch finds nothing to replace
    again = project.provider.roll_batch(new_req, Batch(index=6, size=2))
    assert [i["pid"] for i in again["instances"]] == [i["pid"] for i in final]


def test_roll_batch_resumes_after_a_crash_between_start_and_stop(project: Project) -> None:
    project.create(project.endpoint())
    project.create(project.deployment(count=2))
    new_req = project.deployment(count=2, env_vars={"VERSION": "v2"})
    provider = project.provider
    # A crash after the new instances started but before the old were stopped: simulate by starting
    # the desired configuration by hand through the runner, as roll_batch would have.
    runner = provider._runner(new_req.attributes)
    digest, config = provider._desired(new_req, runner)
    started = runner.start(digest, config, 1)
    assert runner.wait_ready(started, config.readiness_probe) is None
    out = provider.roll_batch(new_req, Batch(index=1, size=1))
    assert len(out["instances"]) == 2  # the surplus old one went, nothing new was started
    assert started[0].pid in {i["pid"] for i in out["instances"]}
    out = provider.roll_batch(new_req, Batch(index=2, size=1))
    assert [i["config_digest"] for i in out["instances"]] == [digest, digest]
    assert len(alive_marked(provider.state_dir)) == 3


def test_process_started_but_never_recorded_is_stopped_by_the_next_operation(project: Project) -> None:
    project.create(project.endpoint())
    req = project.deployment(count=1)
    provider = project.provider
    runner = provider._runner(req.attributes)
    digest, config = provider._desired(req, runner)
    # A crash right after spawn, before the pid file was written: a marked process nobody records.
    orphan = runner.start(digest, config, 1)[0]
    (runner.inst_dir / f"{orphan.id}.json").unlink()
    out = provider.create(req)
    assert [i["pid"] for i in out["instances"]] != [orphan.pid]
    assert len(alive_marked(provider.state_dir)) == 2  # the router and exactly one instance


def test_create_after_a_crash_adopts_the_instances_already_started(project: Project) -> None:
    project.create(project.endpoint())
    req = project.deployment(count=2)
    provider = project.provider
    runner = provider._runner(req.attributes)
    digest, config = provider._desired(req, runner)
    started = runner.start(digest, config, 1)  # recorded in its pid file, never waited for
    out = provider.create(req)
    assert started[0].pid in {i["pid"] for i in out["instances"]}
    assert len(out["instances"]) == 2
    assert len(alive_marked(provider.state_dir)) == 3

"""Guarded rollouts end to end: the real ``recon`` CLI against a real provider (processes on
``local``, containers on ``docker``), judged by the router's real ``/-/metrics``, under load.

One project goes through the issue's cases in turn, with clients scoring throughout
(``tests/e2e/load.py``): a healthy release passes every gate; one whose scoring script fails 3
requests in 10 is rolled back in its first batch; one that answers 2 s slower is rolled back by the
latency gate; a new deployment that fails takes its first traffic step and gives it back; with no
clients at all, ``on_inconclusive`` decides. After each failure: the clients' failures came only
while the apply ran (the failing window) and none after it; the state and the router hold the
previous configuration and split; ``plan --detailed-exitcode`` shows the change again (2) and
``drift`` exits 0.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Recon
from tests.e2e.load import LoadGenerator, LoadStats

EP = "gate-ep"
BLUE, GREEN, ENDPOINT = f"deployment.{EP}.blue", f"deployment.{EP}.green", f"endpoint.{EP}"

# Each instance counts its requests: with FAIL_3_IN_10 the 1st, 2nd and 3rd of every 10 fail.
SCORE_PY = """\
import os
import time

count = 0


def init():
    global fail, sleep_s, release
    fail = bool(os.environ.get("FAIL_3_IN_10"))
    sleep_s = float(os.environ.get("SLEEP_S") or 0)
    release = os.environ.get("RELEASE", "none")


def run(raw_data):
    global count
    count += 1
    if fail and count % 10 in (1, 2, 3):
        raise RuntimeError("this release fails 3 requests in 10")
    time.sleep(sleep_s)
    return {"release": release}
"""

PROBE = "  initial_delay: 0\n  period: 1\n  timeout: 2\n  success_threshold: 1\n  failure_threshold: 30\n"
# windows of 5 s; a slow release gets few requests in one: on_inconclusive wait bakes on until 30
ROLLOUT = """\
rollout:
  analysis:
    bake: 5s
    min_requests: 30
    on_inconclusive: {inconclusive}
    max_wait: 60s
    max_error_rate: 1%
    max_latency_p99: 3x
  traffic_steps: [10, 50, 100]
"""
BASE_SLEEP = "0.2"  # every release answers in 200 ms: p99s far above the noise of a shared machine


@dataclass
class Timed:
    """One apply: its exit code, output, and when it started and ended (time.monotonic)."""

    code: int
    out: str
    start: float
    end: float


@dataclass
class GatedProject:
    """The project, its provider settings and the CLI."""

    root: Path
    recon: Recon
    provider_yaml: str
    image: str
    log: list[str] = field(default_factory=list)

    def write(self, blue: dict[str, str], traffic: dict[str, int], green: dict[str, str] | None = None,
              inconclusive: str = "wait", count: int = 3) -> None:
        root = self.root
        (root / "recon.yaml").write_text(self.provider_yaml + ROLLOUT.format(inconclusive=inconclusive))
        (root / "model").mkdir(exist_ok=True)
        (root / "model" / "weights.txt").write_text("0.5\n")
        (root / "code").mkdir(exist_ok=True)
        (root / "code" / "score.py").write_text(SCORE_PY)
        lines = [f"name: {EP}", "auth_mode: key", "traffic:"] + [f"  {k}: {v}" for k, v in traffic.items()]
        (root / "endpoint.yml").write_text(
            "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n"
            + "\n".join(lines) + "\n")
        self._deployment("blue", count, blue)
        if green is None:
            (root / "green.yml").unlink(missing_ok=True)
        else:
            self._deployment("green", 1, green)

    def _deployment(self, name: str, count: int, env: dict[str, str]) -> None:
        variables = "".join(f'  {k}: "{v}"\n' for k, v in {"SLEEP_S": BASE_SLEEP, **env}.items())
        (self.root / f"{name}.yml").write_text(
            "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n"
            f"name: {name}\nendpoint_name: {EP}\nmodel:\n  path: model/\ncode_configuration:\n"
            "  code: code/\n  scoring_script: score.py\n"
            f"environment:\n  image: {self.image}\ninstance_type: Standard_DS3_v2\n"
            f"instance_count: {count}\nenvironment_variables:\n{variables}"
            "request_settings:\n  request_timeout_ms: 10000\n  max_concurrent_requests_per_instance: 16\n"
            "  max_queue_wait_ms: 5000\n"
            f"readiness_probe:\n{PROBE}liveness_probe:\n{PROBE}")

    def apply(self, timeout: float = 900) -> Timed:
        start = time.monotonic()
        done = self.recon("apply", "--auto-approve", check=False, timeout=timeout)
        end = time.monotonic()
        out = done.stdout + done.stderr
        self.log.append(out)
        return Timed(done.returncode, out, start, end)

    def state(self) -> dict[str, Any]:
        return self.recon.state()["resources"]  # type: ignore[return-value]

    def releases(self, address: str) -> dict[str, str]:
        return dict(self.state()[address]["attributes"]["environment_variables"])

    def keys(self) -> dict[str, str]:
        return self.recon.keys(EP)

    def settled_again(self, label: str) -> None:
        """After a rollback: the change is planned again (2) and nothing drifted (0)."""
        plan = self.recon("plan", "--detailed-exitcode", check=False)
        assert plan.returncode == 2, f"{label}: plan after the rollback:\n{plan.stdout}\n{plan.stderr}"
        drift = self.recon("drift", check=False)
        assert drift.returncode == 0, f"{label}: drift after the rollback:\n{drift.stdout}\n{drift.stderr}"
        for address, res in self.state().items():
            assert res.get("pending") is None and res["status"] == "ready", (label, address, res)

    def router(self) -> dict[str, Any]:
        """The router's live table (GET /-/router)."""
        import http.client
        import urllib.parse

        keys = self.keys()
        # where clients score (the router of local and docker on loopback; on kubernetes the
        # provider's scoring_host, a port-forward to the router's Service)
        url = urllib.parse.urlsplit(keys["scoring_uri"])
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=10)
        try:
            conn.request("GET", "/-/router", headers={"Authorization": f"Bearer {keys['primaryKey']}"})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, body[:300]
            return dict(json.loads(body))
        finally:
            conn.close()


def none_failed(stats: LoadStats, label: str) -> bool:
    """No client saw a failure (else the first few, in the assertion's message)."""
    assert stats.failed == 0, f"{label}: {stats.failed} failed requests: {stats.failures[:5]}"
    return True


def quiet_after(load: LoadGenerator, seconds: float = 3.0) -> int:
    """Failures clients saw in the ``seconds`` after now (the load keeps going)."""
    load.reset()
    start = time.monotonic()
    time.sleep(seconds)
    stats = load.reset()
    assert stats.ok > 0, "the clients got no answer at all after the apply"
    late = [round(t - start, 2) for t in stats.failure_times[:5]]
    assert stats.failed == 0, f"{stats.failed} failures after the apply (s after it: {late}): {stats.failures[:5]}"
    return stats.failed


def failures_only_inside(load: LoadGenerator, run: Timed, label: str) -> tuple[int, float | None]:
    """Every failure the clients saw since the last check came while ``run`` ran; returns how many
    and the seconds from the first of them to the end of the apply (the state and split restored)."""
    stats = load.reset()
    inside = stats.failed_between(run.start, run.end)
    assert inside == stats.failed, f"{label}: {stats.failed - inside} failures outside the apply: {stats.failures[:5]}"
    first = min(stats.failure_times) if stats.failure_times else None
    return inside, (run.end - first if first is not None else None)


def run_gated_rollouts(project: GatedProject, workers: int = 8) -> dict[str, Any]:
    """The whole sequence (see the module docstring); returns what it measured."""
    measured: dict[str, Any] = {}
    project.write({"RELEASE": "v1"}, {"blue": 100}, inconclusive="proceed")  # no client yet
    first = project.apply()
    assert first.code == 0, first.out
    keys = project.keys()
    with LoadGenerator(keys["scoring_uri"], keys["primaryKey"], b'{"data": [1]}', workers=workers) as load:
        assert load.wait_for(50).failed == 0

        # a healthy release passes every batch's gate
        project.write({"RELEASE": "v2"}, {"blue": 100})
        healthy = project.apply()
        assert healthy.code == 0, healthy.out
        assert healthy.out.count("passed its gate") == 3, healthy.out
        assert none_failed(load.reset(), "healthy")
        measured["healthy_apply_s"] = healthy.end - healthy.start

        # a release whose scoring script fails 3 requests in 10: rolled back in its first batch
        project.write({"RELEASE": "v3", "FAIL_3_IN_10": "1"}, {"blue": 100})
        load.reset()
        failing = project.apply()
        assert failing.code == 1, failing.out
        assert "the batch gate failed after batch 1/3: error rate" in failing.out, failing.out
        assert "rolled back: 1 instance(s) to the previous configuration" in failing.out, failing.out
        failed, rollback_s = failures_only_inside(load, failing, "30% failing")
        assert failed > 0, "the failing release never answered a client"
        assert quiet_after(load) == 0
        assert project.releases(BLUE)["RELEASE"] == "v2"
        measured["failing"] = {"client_failures": failed, "first_bad_to_restored_s": rollback_s,
                               "apply_s": failing.end - failing.start}
        project.settled_again("30% failing")

        # a release 2 s slower: rolled back by the latency gate, no client failure at all
        project.write({"RELEASE": "v3", "SLEEP_S": "2.2"}, {"blue": 100})
        load.reset()
        slow = project.apply()
        assert slow.code == 1, slow.out
        assert "p99 latency" in slow.out and "FAILED" in slow.out, slow.out
        assert none_failed(load.reset(), "2 s slower") and quiet_after(load) == 0
        assert project.releases(BLUE)["RELEASE"] == "v2"
        measured["slow_apply_s"] = slow.end - slow.start
        project.settled_again("2 s slower")

        # a new deployment that fails, given traffic in steps: its first step is given back
        project.write({"RELEASE": "v2"}, {"blue": 100}, green={"RELEASE": "g1", "FAIL_3_IN_10": "1"})
        created = project.apply()
        assert created.code == 0, created.out  # green exists, without traffic: nothing to judge
        assert none_failed(load.reset(), "green created")
        project.write({"RELEASE": "v2"}, {"green": 100}, green={"RELEASE": "g1", "FAIL_3_IN_10": "1"})
        moved = project.apply()
        assert moved.code == 1, moved.out
        assert "the traffic gate failed after traffic step 1/3" in moved.out, moved.out
        failed, restore_s = failures_only_inside(load, moved, "traffic step")
        assert quiet_after(load) == 0
        assert project.state()[ENDPOINT]["attributes"]["traffic"] == {"blue": 100}
        assert project.router()["traffic"] == {"blue": 100}
        measured["traffic"] = {"client_failures": failed, "first_bad_to_restored_s": restore_s,
                               "apply_s": moved.end - moved.start}
        project.settled_again("traffic step")
        assert load.total.ok > 1000

    # no client at all: on_inconclusive decides (proceed: it goes on, and says so)
    project.write({"RELEASE": "v4"}, {"blue": 100}, inconclusive="proceed")
    quiet = project.apply()
    assert quiet.code == 0, quiet.out
    assert quiet.out.count("INCONCLUSIVE") == 3, quiet.out
    assert project.releases(BLUE)["RELEASE"] == "v4"
    return measured

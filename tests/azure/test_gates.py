"""Guarded rollouts on azure: recon's planner and engine in this process, the azure provider against
the ARM emulator and its Azure Monitor, all on one clock the test drives (the engine's bakes, the
provider's waits for whole minutes and the emulator's minutes), so minutes pass in no time.

The safe-rollout project (blue with all the traffic, green with none) moves all traffic to green in
steps of 10, 50 and 100%: a healthy green passes every step; a green that fails 30% of its requests
from 50% on passes the first step and is rolled back at the second (the split from before the change
restored by a PUT of the endpoint, before anything else is written); no requests follow
``on_inconclusive``; a metrics API that keeps failing fails the gate (and rolls back), one that
throttles is retried. A rolling update on azure is judged once, on the window after the update."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.azure import AzureProvider
from reconciler.apply.engine import ApplyResult, apply_plan
from reconciler.apply.project import Project
from reconciler.apply.refresh import refresh
from reconciler.cli.registries import open_project
from reconciler.plan.provider import ProviderContext
from reconciler.plan.types import Action, StepKind
from tests.azure.conftest import write_recon_yaml
from tests.azure.emulator import Emulator
from tests.azure.metrics import Behaviour
from tests.azure.test_monitor import T0, Clock
from tests.azure.test_rollout_cli import _live, _project, _step

pytestmark = pytest.mark.azure
EP = "endpoint.my-endpoint"
METRICS = r"/providers/microsoft\.insights/metrics$"


class Azure:
    """The project, its provider on the test's clock, and a way to plan and apply in this process."""

    def __init__(self, root: Path, arm: Emulator, clock: Clock) -> None:
        self.root, self.arm, self.clock = root, arm, clock
        context = ProviderContext(project_root=root, state_dir=root / ".recon", cache_dir=root.parent / "cache")
        self.provider = AzureProvider({**arm.settings(), "metrics_delay": 120}, context)
        self.provider.monitor.now, self.provider.monitor.sleep = clock.now, clock.sleep

    def guard(self, steps: list[int] | None = None, **analysis: Any) -> None:
        write_recon_yaml(self.root, self.arm)
        settings = yaml.safe_load((self.root / "recon.yaml").read_text())
        settings["rollout"] = {"analysis": {"bake": "1m", "min_requests": 50, "max_error_rate": "1%",
                                            "max_latency_p99": "1.5x", **analysis},
                               "traffic_steps": steps or [10, 50, 100]}
        (self.root / "recon.yaml").write_text(yaml.safe_dump(settings))

    def project(self) -> Project:
        return open_project(self.root, provider=self.provider)

    def apply(self) -> ApplyResult:
        project = self.project()
        plan = project.plan()
        assert plan.applicable, plan.errors
        return apply_plan(plan, provider=self.provider, state_manager=project.state_manager, desired_digest=None,
                          sleep=self.clock.sleep)

    def remaining(self) -> dict[str, Action]:
        plan = self.project().plan()
        return {rc.address: rc.action for rc in plan.resource_changes if rc.action is not Action.NOOP}

    def traffic_writes(self) -> list[dict[str, int]]:
        return [r["body"]["properties"]["traffic"] for r in self.arm.requests
                if r["method"] == "PUT" and r["path"].lower().endswith("/onlineendpoints/my-endpoint")
                and r["status"] == 201]


@pytest.fixture
def azure(arm: Emulator, tmp_path: Path) -> Iterator[Azure]:
    clock = Clock(T0)
    arm.metrics.clock = clock.now
    live = _project(tmp_path)
    _step(live, arm, "03-add-green")  # blue (2 instances) with all the traffic, green (1) with none
    a = Azure(live, arm, clock)
    assert a.apply().ok
    arm.metrics.load["my-endpoint"] = 1200
    arm.metrics.behave("my-endpoint", "blue", Behaviour(p99_ms=80.0))
    _step(live, arm, "06-green-100")
    yield a
    a.provider.close()


def _traffic_outcomes(result: ApplyResult) -> list[Any]:
    return [o for o in result.outcomes if o.kind is StepKind.SET_TRAFFIC]


def test_a_healthy_green_passes_every_traffic_step(azure: Azure) -> None:
    azure.arm.metrics.behave("my-endpoint", "green", Behaviour(p99_ms=90.0))
    azure.guard(max_latency_p99="1s")  # absolute: at 100% green has no baseline in the window
    azure.arm.clear_log()
    result = azure.apply()
    assert result.ok, result.errors
    verdicts = [v for o in _traffic_outcomes(result) for v in o.verdicts]
    assert [v.result for v in verdicts] == ["pass"] * 3
    assert [v.requests for v in verdicts[:2]] == [120, 600]  # green's share of 1200 a minute, a whole minute
    assert all(v.source.startswith("Azure Monitor, ") for v in verdicts)
    assert azure.traffic_writes() == [{"blue": 90, "green": 10}, {"blue": 50, "green": 50}, {"green": 100}]
    assert _live(azure.arm)[1] == {"green": 100}
    assert azure.remaining() == {}


def test_a_green_that_goes_bad_at_50_percent_is_rolled_back(azure: Azure) -> None:
    azure.arm.metrics.behave("my-endpoint", "green", Behaviour(p99_ms=90.0),
                             Behaviour(p99_ms=90.0, model_errors=0.3, from_share=50))
    azure.guard()
    azure.arm.clear_log()
    result = azure.apply()
    assert not result.ok
    [failed] = result.errors
    assert failed.gate_failed and "traffic step 2/3" in (failed.error or "")
    assert "error rate 30% (180/600) > 1%" in (failed.error or "")
    first, second = _traffic_outcomes(result)[:2]
    assert [v.result for v in first.verdicts] == ["pass"] and [v.result for v in second.verdicts] == ["fail"]
    # ARM saw 90/10, 50/50, then the split before the change; after the failing window's metrics, the
    # PUT back is the first thing written
    assert azure.traffic_writes() == [{"blue": 90, "green": 10}, {"blue": 50, "green": 50}, {"blue": 100}]
    log = azure.arm.requests
    last_metrics = max(i for i, r in enumerate(log) if r["path"].endswith("/Microsoft.Insights/metrics"))
    written = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in log[last_metrics:]
               if r["method"] != "GET" and "/mfeOperation" not in r["path"]]
    assert written == [("PUT", "my-endpoint")]
    assert _live(azure.arm)[1] == {"blue": 100}
    # the state says the truth, the history why; the next plan shows the change again; no drift
    state = azure.project().read_state()
    endpoint = state.resources[EP]
    assert endpoint.attributes["traffic"] == {"blue": 100} and endpoint.pending is None
    notes = [e.note for e in azure.project().state_manager.history() if e.note]
    assert notes == ["rollback of endpoint.my-endpoint: error rate failed (traffic gate)"]
    assert azure.remaining() == {EP: Action.UPDATE}
    _, drift = refresh(state, azure.provider)
    assert drift == []


@pytest.mark.parametrize(("on_inconclusive", "ok"), [("proceed", True), ("fail", False)])
def test_no_requests_follows_on_inconclusive(azure: Azure, on_inconclusive: str, ok: bool) -> None:
    azure.arm.metrics.load["my-endpoint"] = 0
    azure.guard(on_inconclusive=on_inconclusive)
    result = azure.apply()
    assert result.ok is ok
    verdicts = [v for o in _traffic_outcomes(result) for v in o.verdicts]
    assert verdicts and all(v.result == "inconclusive" and v.requests == 0 for v in verdicts)
    if ok:  # proceeded through every step
        assert len(verdicts) == 3 and _live(azure.arm)[1] == {"green": 100}
    else:  # failed at the first, and the split before the change is back
        assert len(verdicts) == 1 and _live(azure.arm)[1] == {"blue": 100}
        assert azure.traffic_writes()[-1] == {"blue": 100}


def test_a_throttled_metrics_api_is_retried(azure: Azure) -> None:
    azure.arm.metrics.behave("my-endpoint", "green", Behaviour(p99_ms=90.0))
    azure.guard(steps=[100], max_latency_p99="1s")
    azure.arm.fault("GET", METRICS, status=429, code="TooManyRequests", message="throttled", retry_after="0.05",
                    times=3)
    result = azure.apply()
    assert result.ok, result.errors
    [verdict] = [v for o in _traffic_outcomes(result) for v in o.verdicts]
    assert verdict.result == "pass" and verdict.requests == 1200
    assert sum(1 for r in azure.arm.requests if r["status"] == 429) == 3


def test_a_metrics_api_that_keeps_failing_fails_the_gate_and_rolls_back(azure: Azure) -> None:
    azure.arm.metrics.behave("my-endpoint", "green", Behaviour(p99_ms=90.0))
    azure.guard()
    azure.arm.fault("GET", METRICS, status=503, code="ServiceUnavailable", message="metrics store unavailable",
                    retry_after="0.05", times=10_000)
    result = azure.apply()
    assert not result.ok
    [failed] = result.errors
    assert failed.gate_failed and [c.name for c in failed.verdicts[-1].failing()] == ["metrics"]
    error = failed.error or ""
    assert "metrics could not be read" in error and "HTTP 503" in error and "metrics store unavailable" in error
    assert _live(azure.arm)[1] == {"blue": 100}  # never passed: the split before the change is back


def test_a_rolling_update_is_judged_once_on_the_window_after_it(azure: Azure) -> None:
    azure.arm.metrics.behave("my-endpoint", "blue", Behaviour(p99_ms=80.0),
                             Behaviour(p99_ms=80.0, server_errors=0.2, running="rollout-model/versions/2"))
    _step(azure.root, azure.arm, "03-add-green")
    blue = azure.root / "blue-deployment.yml"
    blue.write_text(blue.read_text().replace("rollout-model:1", "rollout-model:2"))
    (azure.root / "model-v2.yml").write_text((azure.root.parent / "05-canary-10" / "model-v2.yml").read_text())
    azure.guard()
    azure.arm.clear_log()
    result = azure.apply()
    assert not result.ok
    [failed] = result.errors
    assert failed.kind is StepKind.ROLLOUT and failed.gate_failed and len(failed.verdicts) == 1
    assert "error rate 20% (240/1200) > 1%" in (failed.error or "")  # blue's whole minute after the update
    # Azure's one PUT forward, then (after the window) one PUT of the previous body back
    puts = [r for r in azure.arm.requests if r["method"] == "PUT" and r["path"].lower().endswith("/deployments/blue")]
    assert [p["body"]["properties"]["model"].rsplit("/", 1)[-1] for p in puts] == ["2", "1"]
    opened = [i for i, r in enumerate(azure.arm.requests)
              if r["method"] == "GET" and r["path"].lower().endswith("/onlineendpoints/my-endpoint")]
    assert any(i > azure.arm.requests.index(puts[0]) for i in opened)  # the window opened after the update
    assert "rollout-model/versions/1" in azure.arm.metrics.body_of("my-endpoint", "blue")
    assert azure.remaining() == {"deployment.my-endpoint.blue": Action.UPDATE}

"""Guarded rollouts on azure through the real ``recon`` command, against the ARM emulator and its
Azure Monitor: the safe-rollout project moves all traffic from blue to green in steps of 50 and
100%, each baked a minute (Azure Monitor's grain, in real time: this test takes one to two
minutes); green fails 30% of its requests (Azure's 424, the model answered 500) from 50% on. The
50% step fails its gate at its first look, after one whole minute: the previous split is restored
by a PUT of the endpoint before anything else is written, ``apply`` exits 1 with the failure table,
the state says the truth (blue 100%, the rollback in the state's history), the next plan shows the
change again and drift is clean. (tests/azure/test_gates.py runs the same with the engine in
process on a clock the test drives: passing steps, inconclusive windows, metrics API faults.)"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.azure.conftest import Recon, write_recon_yaml
from tests.azure.emulator import Emulator
from tests.azure.metrics import Behaviour
from tests.azure.test_rollout_cli import _live, _project, _step

pytestmark = [pytest.mark.azure, pytest.mark.slow]
ANALYSIS = {"bake": "30s", "min_requests": 50, "max_error_rate": "1%", "max_latency_p99": "1.5x"}


def _guard(live: Path, arm: Emulator, **analysis: Any) -> None:
    write_recon_yaml(live, arm)
    settings = yaml.safe_load((live / "recon.yaml").read_text())
    settings["rollout"] = {"analysis": {**ANALYSIS, **analysis}, "traffic_steps": [50, 100]}
    (live / "recon.yaml").write_text(yaml.safe_dump(settings))


def _endpoint_writes(arm: Emulator) -> list[tuple[str, dict[str, int]]]:
    return [(r["method"], r["body"]["properties"]["traffic"]) for r in arm.requests
            if r["method"] == "PUT" and r["path"].lower().endswith("/onlineendpoints/my-endpoint") and r["status"] == 201]


def test_a_traffic_step_whose_metrics_go_bad_is_rolled_back(arm: Emulator, make_recon: Callable[[Path], Recon],
                                                            tmp_path: Path) -> None:
    live = _project(tmp_path)
    recon = make_recon(live)
    _step(live, arm, "03-add-green")  # blue (2 instances) takes all traffic, green (1) none
    recon("apply", "--auto-approve")
    arm.metrics.load["my-endpoint"] = 1200
    arm.metrics.behave("my-endpoint", "blue", Behaviour(p99_ms=80.0))
    arm.metrics.behave("my-endpoint", "green", Behaviour(p99_ms=90.0, model_errors=0.3))
    _step(live, arm, "06-green-100")
    _guard(live, arm)

    plan = recon("plan")
    text = plan.stdout + plan.stderr
    assert "bake 30s for" in text and "is raised to 1m: the azure provider's metrics come in 1m steps" in text
    for k, split in ((1, "{blue: 50%, green: 50%}"), (2, "{green: 100%}")):
        assert f"(traffic step {k}/2): traffic {split}" in text, text
    assert text.count("then bake 1m, 5xx <= 1%, p99 <= 1.5x blue, >= 50 requests") == 2
    assert text.count("on failure: traffic back to {blue: 100%}") == 2

    state_before = recon.state()
    arm.clear_log()
    applied = recon("apply", "--auto-approve", check=False)
    out = applied.stdout + applied.stderr
    assert applied.returncode == 1, out
    # the 50% step failed on green's errors, with the table
    assert re.search(r"error rate\s+30% \(180/600\)\s+<= 1%\s+FAILED", out), out
    assert "window: 1m, 600 requests to the new configuration" in out and "measured by Azure Monitor, " in out
    assert "Azure Monitor: waiting" in out and "for the window's first whole minute" in out
    # ARM saw 50/50, then the split before the change; nothing else written after the metrics
    assert _endpoint_writes(arm) == [("PUT", {"blue": 50, "green": 50}), ("PUT", {"blue": 100})]
    last_metrics = max(i for i, r in enumerate(arm.requests) if r["path"].endswith("/Microsoft.Insights/metrics"))
    writes_after = [r for r in arm.requests[last_metrics:] if r["method"] != "GET"
                    and "/mfeOperation" not in r["path"]]
    assert [(w["method"], w["path"].rsplit("/", 1)[-1]) for w in writes_after] == [("PUT", "my-endpoint")]
    assert _live(arm)[1] == {"blue": 100}

    state = recon.state()
    endpoint, before = state["resources"]["endpoint.my-endpoint"], state_before["resources"]["endpoint.my-endpoint"]
    assert endpoint["attributes"]["traffic"] == before["attributes"]["traffic"] == {"blue": 100}
    assert endpoint.get("pending") is None
    history = recon("state", "history").stdout
    assert "rollback" in history and "endpoint.my-endpoint" in history, history
    assert recon("plan", "--detailed-exitcode", check=False).returncode == 2  # the change, again
    assert recon("drift", check=False).returncode == 0

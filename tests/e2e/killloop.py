"""The kill loop: ``recon apply`` (and ``destroy``) SIGKILLed at chosen moments, on a real provider.

A project of one endpoint and two deployments goes through cycles of transitions (create,
scale-up, rolling update, new deployment with a traffic shift, another shift, scale-down, destroy).
Each transition is applied with ``RECON_CRASH_AT`` naming a crash point (``reconciler.model.
crashpoints``): the apply kills itself there, deterministically. Then, every time:

1. the killed process really died at that point (exit -9; the crash trace ends with the point);
2. the state loads, and a plan made from it agrees with drift: every drifted resource has a step
   in the plan, and nothing is "unmanaged" (whatever the killed apply left belongs to a recorded
   resource);
3. one apply (or, for the last destroy, one destroy) converges: ``recon plan --detailed-exitcode``
   exits 0, ``recon drift`` exits 0, no resource is pending or failed, no process or container of
   the project runs that the state does not record, the router's live split equals the state's and
   each live pool is exactly the recorded instances, and a scoring request through the router works.

``KillLoop`` holds what the providers share; ``running_objects`` (what of the project runs) is
the provider's.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.cli.registries import open_project, open_state_manager

EP = "kl-ep"

SCORE_PY = """\
import json
import os


def init():
    global release
    release = os.environ.get("RELEASE", "none")


def run(raw_data):
    return {"release": release, "pid": os.getpid()}
"""

PROBE = "  initial_delay: 0\n  period: 1\n  timeout: 2\n  success_threshold: 1\n  failure_threshold: 30\n"


@dataclass(frozen=True)
class Config:
    """One converged configuration of the project."""

    blue: int = 2
    release: str = "v1"
    green: int | None = None
    traffic: tuple[tuple[str, int], ...] = (("blue", 100),)
    mirror: tuple[tuple[str, int], ...] = ()
    gates: str | None = None  # guarded rollouts: recon.yaml's rollout.analysis with this on_inconclusive

    def guarded(self, on_inconclusive: str = "proceed", **changes: Any) -> Config:
        """This configuration judged by gates; no client sends anything in the loop, so every window
        is inconclusive: ``proceed`` goes on, ``fail`` fails the gate and rolls back."""
        return dataclasses.replace(self, gates=on_inconclusive, **changes)


@dataclass(frozen=True)
class KillPoint:
    """Apply ``config`` (``destroy``: destroy), killed at ``point`` (a ``RECON_CRASH_AT`` value);
    recover with ``recover`` ("apply" or "destroy"), after going back to ``rollback`` when given
    (the configuration is put back: the half-done step is rolled back, not finished)."""

    label: str
    point: str
    config: Config | None  # None: destroy
    recover: str = "apply"
    rollback: Config | None = None


CREATE = Config(blue=2)
SCALED = Config(blue=4)
ROLLED = Config(blue=4, release="v2")
GREEN = Config(blue=4, release="v2", green=1, traffic=(("blue", 70), ("green", 30)))
SHIFTED = Config(blue=4, release="v2", green=1, traffic=(("blue", 10), ("green", 90)))
MIRRORED = Config(blue=4, release="v2", green=1, traffic=(("green", 100),), mirror=(("blue", 20),))
SHRUNK = Config(blue=2, release="v2", green=1, traffic=(("blue", 10), ("green", 90)))
SHRUNK_MIRRORED = Config(blue=2, release="v2", green=1, traffic=(("green", 100),), mirror=(("blue", 20),))

BLUE, GREEN_ADDR, ENDPOINT = f"deployment.{EP}.blue", f"deployment.{EP}.green", f"endpoint.{EP}"


def cycle(n: int) -> list[KillPoint]:
    """The kill points of cycle ``n`` (1 to 4): each cycle goes through every transition, from
    nothing to nothing, and kills each transition at another moment. Cycle 4 is guarded (a
    ``rollout:`` section): it kills during a bake, after a rollback's intent, after a rollback batch,
    with the last traffic step's judgment pending and after a traffic step's split was restored."""
    shift = SHIFTED if n < 3 else MIRRORED
    shrunk = SHRUNK if n < 3 else SHRUNK_MIRRORED
    points = {
        1: [
            KillPoint("create: router started, not recorded", f"router.spawned@{EP}", CREATE),
            KillPoint("scale-up: new instances starting", f"instances.started@{BLUE}", SCALED),
            KillPoint("rolling update: batch 2 ready, not pooled", f"instances.ready@{BLUE}#2", ROLLED),
            KillPoint("new deployment: instances starting", f"instances.started@{GREEN_ADDR}", GREEN),
            KillPoint("traffic shift: table written, not loaded", f"table.written@{EP}", shift),
            KillPoint("scale-down: old instances drained, not stopped", f"instances.retiring@{BLUE}", shrunk),
            KillPoint("destroy: a deployment unrouted, not stopped", f"delete.unrouted@{BLUE}", None),
        ],
        2: [
            KillPoint("create: instances ready, not pooled", f"instances.ready@{BLUE}", CREATE),
            KillPoint("scale-up: pool written, not loaded", f"table.written@{EP}", SCALED),
            KillPoint("rolling update: batch 3 pooled, old not stopped; rolled back",
                      f"instances.retiring@{BLUE}#3", ROLLED, rollback=SCALED),
            KillPoint("new deployment: traffic routed, not recorded", f"engine.acted@set_traffic:{ENDPOINT}", GREEN),
            KillPoint("traffic shift: intent recorded, nothing done", f"engine.intent@set_traffic:{ENDPOINT}", shift),
            KillPoint("scale-down: scaled, not recorded", f"engine.acted@scale:{BLUE}", shrunk),
            KillPoint("destroy: endpoint's instances stopped, router not", f"delete.instances_stopped@{EP}", None),
        ],
        3: [
            KillPoint("create: traffic routed, not recorded", f"engine.acted@set_traffic:{ENDPOINT}", CREATE),
            KillPoint("scale-up: scaled, not recorded", f"engine.acted@scale:{BLUE}", SCALED),
            KillPoint("rolling update: every batch done, last not recorded",
                      f"engine.acted@rollout:{BLUE} batch 4", ROLLED),
            KillPoint("new deployment: ready, not pooled", f"instances.ready@{GREEN_ADDR}", GREEN),
            KillPoint("traffic shift: routed, not recorded", f"engine.acted@set_traffic:{ENDPOINT}", shift),
            KillPoint("scale-down: intent recorded, nothing done", f"engine.intent@scale:{BLUE}", shrunk),
            KillPoint("destroy: a deployment deleted, not recorded", f"engine.acted@delete:{GREEN_ADDR}", None,
                      recover="destroy"),
        ],
    }
    if n == 4:
        return _guarded_cycle()
    return points[n]


def _guarded_cycle() -> list[KillPoint]:
    shrunk_v3 = dataclasses.replace(SHRUNK, release="v3")
    return [
        KillPoint("create: the first traffic's window baking", f"gate.baking@set_traffic:{ENDPOINT}",
                  CREATE.guarded()),
        KillPoint("scale-up: intent recorded, nothing done (guarded)", f"engine.intent@scale:{BLUE}",
                  SCALED.guarded()),
        KillPoint("rolling update: gate failed, rollback intent recorded, nothing rolled back",
                  f"rollback.intent@rollout:{BLUE}", ROLLED.guarded("fail"), rollback=SCALED),
        KillPoint("new deployment: last traffic step routed and recorded with its judgment pending, not baked",
                  f"gate.pending@set_traffic:{ENDPOINT}#3", GREEN.guarded()),
        KillPoint("traffic shift: gate failed, split restored, not recorded",
                  f"rollback.routed@set_traffic:{ENDPOINT}:step1", SHIFTED.guarded("fail"), rollback=GREEN),
        KillPoint("scale-down: with a new release whose gate failed, a rollback batch done, not recorded",
                  f"rollback.batch@rollout:{BLUE}", shrunk_v3.guarded("fail"), rollback=SHRUNK),
        KillPoint("destroy: a deployment unrouted, not stopped (guarded)", f"delete.unrouted@{GREEN_ADDR}",
                  None),
    ]


@dataclass
class Record:
    label: str
    point: str
    seconds: float
    drift_before: int
    steps_before: int


@dataclass
class KillLoop:
    """One project on one provider, driven through kill points."""

    root: Path
    env: dict[str, str]
    recon_yaml: str
    image: str
    running_objects: Callable[[KillLoop, dict[str, Any]], tuple[set[str], set[str]]]
    records: list[Record] = field(default_factory=list)

    # -- the project ------------------------------------------------------------------------------
    def write(self, config: Config) -> None:
        root = self.root
        gates = "" if config.gates is None else (
            f"rollout:\n  analysis:\n    bake: 1s\n    on_inconclusive: {config.gates}\n"
            "  traffic_steps: [10, 50, 100]\n")
        (root / "recon.yaml").write_text(self.recon_yaml + gates)
        (root / "model").mkdir(exist_ok=True)
        (root / "model" / "weights.txt").write_text("0.5\n")
        (root / "code").mkdir(exist_ok=True)
        (root / "code" / "score.py").write_text(SCORE_PY)
        ep = [f"name: {EP}", "auth_mode: key", "traffic:"]
        ep += [f"  {k}: {v}" for k, v in config.traffic]
        if config.mirror:
            ep += ["mirror_traffic:"] + [f"  {k}: {v}" for k, v in config.mirror]
        (root / "endpoint.yml").write_text(
            "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n"
            + "\n".join(ep) + "\n")
        self._deployment("blue", config.blue, config.release)
        green = root / "green.yml"
        if config.green is None:
            green.unlink(missing_ok=True)
        else:
            self._deployment("green", config.green, "v1")

    def _deployment(self, name: str, count: int, release: str) -> None:
        (self.root / f"{name}.yml").write_text(
            "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n"
            f"name: {name}\nendpoint_name: {EP}\nmodel:\n  path: model/\ncode_configuration:\n"
            "  code: code/\n  scoring_script: score.py\n"
            f"environment:\n  image: {self.image}\ninstance_type: Standard_DS3_v2\n"
            f"instance_count: {count}\nenvironment_variables:\n  RELEASE: \"{release}\"\n"
            "request_settings:\n  request_timeout_ms: 3000\n"
            f"readiness_probe:\n{PROBE}liveness_probe:\n{PROBE}")

    # -- commands ---------------------------------------------------------------------------------
    def recon(self, *args: str, extra_env: dict[str, str] | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler", "-C", str(self.root), *args],
            capture_output=True, text=True, env={**self.env, **(extra_env or {})}, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def inprocess(self, *args: str) -> tuple[int, str]:
        """``recon ARGS`` through the real CLI, in this process (no interpreter start-up)."""
        result = CliRunner().invoke(cli, ["-C", str(self.root), *args], env=self.env, catch_exceptions=False)
        return result.exit_code, result.output

    def apply(self, destroy: bool = False) -> None:
        done = self.recon("destroy" if destroy else "apply", "--auto-approve")
        assert done.returncode == 0, f"recovery failed:\n{done.stdout}\n{done.stderr}"

    def state(self) -> dict[str, Any]:
        """The state as recon reads it (its file and the journal a killed apply left over it)."""
        if not (self.root / ".recon" / "state.json").exists():
            return {"resources": {}}
        manager = open_state_manager(self.root, None)
        try:
            return manager.read().model_dump(mode="json")
        finally:
            manager.close()

    # -- one kill point ---------------------------------------------------------------------------
    def run(self, kp: KillPoint) -> None:
        started = time.monotonic()
        if kp.config is not None:
            self.write(kp.config)
        trace = self.root.parent / "crash-trace.txt"
        trace.unlink(missing_ok=True)
        command = ("destroy",) if kp.config is None else ("apply",)
        killed = self.recon(*command, "--auto-approve",
                            extra_env={"RECON_CRASH_AT": kp.point, "RECON_CRASH_TRACE": str(trace)})
        passed = trace.read_text().splitlines() if trace.exists() else []
        assert killed.returncode == -signal.SIGKILL, (
            f"{kp.label}: kill point {kp.point} was never reached (exit {killed.returncode}); points "
            f"passed: {passed[-12:]}\n{killed.stdout[-3000:]}\n{killed.stderr[-3000:]}")
        drift_items, steps = self.check_agreement(kp)
        if kp.rollback is not None:
            self.write(kp.rollback)
        if kp.recover == "destroy":
            self.apply(destroy=True)
            self.check_destroyed(kp)
        else:
            self.apply()
            self.check_converged(kp)
            if kp.config is None:  # the next cycle starts from nothing
                self.apply(destroy=True)
                self.check_destroyed(kp)
        self.records.append(Record(kp.label, kp.point, time.monotonic() - started, drift_items, steps))

    def check_agreement(self, kp: KillPoint) -> tuple[int, int]:
        """Plan and drift, from the state the kill left: every drifted resource has a step; a kill
        while a traffic step's judgment was pending leaves that judgment the plan's first step, and
        drift reports it as a pending change, not as drift."""
        judged = kp.point.startswith(("gate.pending@set_traffic", "gate.baking@set_traffic"))
        counts = plan_covers_drift(self.root, kp.label, destroy=kp.recover == "destroy", judged=judged)
        if judged:
            code, out = self.inprocess("drift")
            assert code == 0 and f"~ {ENDPOINT}" in out, f"{kp.label}: drift with a judgment pending:\n{out}"
        return counts

    def check_converged(self, kp: KillPoint) -> None:
        code, out = self.inprocess("plan", "--detailed-exitcode")
        assert code == 0, f"{kp.label}: the plan after one apply is not empty:\n{out}"
        code, out = self.inprocess("drift")
        assert code == 0, f"{kp.label}: drift after one apply:\n{out}"
        state = self.state()
        for address, res in state["resources"].items():
            assert res.get("pending") is None and res["status"] == "ready", (kp.label, address, res)
        if kp.rollback is not None:
            blue = state["resources"][BLUE]
            assert blue["attributes"]["environment_variables"] == {"RELEASE": kp.rollback.release}
            digests = {i["config_digest"] for i in blue["outputs"]["instances"]}
            assert digests == {blue["outputs"]["config_digest"]}, (kp.label, digests)
        recorded, running = self.running_objects(self, state)
        assert running == recorded, (
            f"{kp.label}: running but not recorded: {sorted(running - recorded)}; "
            f"recorded but not running: {sorted(recorded - running)}")
        self.check_router(kp, state)

    def check_destroyed(self, kp: KillPoint) -> None:
        state = self.state()
        assert state["resources"] == {}, f"{kp.label}: destroy left {sorted(state['resources'])}"
        code, out = self.inprocess("drift")
        assert code == 0, f"{kp.label}: drift after destroy:\n{out}"
        recorded, running = self.running_objects(self, state)
        assert running == recorded == set(), f"{kp.label}: still running after destroy: {sorted(running)}"

    def check_router(self, kp: KillPoint, state: dict[str, Any]) -> None:
        """The router's live table (GET /-/router) is the state's: split, mirror, pools."""
        endpoint = state["resources"][ENDPOINT]
        keys = json.loads((self.root / ".recon" / "keys" / f"{EP}.json").read_text())
        port = int(endpoint["outputs"]["port"])
        live = _get(port, "/-/router", keys["primaryKey"])
        attrs = endpoint["attributes"]
        assert live["traffic"] == _normal(attrs.get("traffic")), (kp.label, live, attrs)
        assert live["mirror_traffic"] == _normal(attrs.get("mirror_traffic")), (kp.label, live, attrs)
        for address, res in state["resources"].items():
            if res["type"] != "deployment":
                continue
            want = {_upstream(i) for i in res["outputs"].get("instances") or []}
            pool = set((live["deployments"].get(res["name"].lower()) or {}).get("upstreams") or {})
            assert pool == want and len(want) == res["attributes"]["instance_count"], (kp.label, address, pool, want)
        answer = _post(port, "/score", keys["primaryKey"], b'{"data": [1]}')
        assert "release" in answer, (kp.label, answer)


def plan_covers_drift(root: Path, label: str, destroy: bool = False, judged: bool = False) -> tuple[int, int]:
    """The plan made from ``root``'s state (as ``recon plan`` makes it) repairs every drift item, and
    nothing is unmanaged (what a killed apply left belongs to a recorded resource). ``recon drift``
    reports exactly ``plan.drift``: both are one refresh. ``judged``: the kill left a traffic step's
    judgment pending, which the plan judges first. Returns (drift items, steps)."""
    with open_project(root) as project:
        plan = project.plan(destroy=destroy)
    if judged:
        first = plan.steps[0] if plan.steps else None
        assert first is not None and first.description.startswith("judge "), (
            f"{label}: the pending judgment is not the plan's first step: {[s.description for s in plan.steps]}")
    unmanaged = [d for d in plan.drift if d.kind == "unmanaged"]
    assert not unmanaged, f"{label}: objects no recorded resource owns: {unmanaged}"
    stepped = {s.address for s in plan.steps}
    unplanned = [d for d in plan.drift if d.address not in stepped]
    assert not unplanned, f"{label}: drift the plan does not repair: {unplanned}"
    return len(plan.drift), len(plan.steps)


def _normal(traffic: Any) -> dict[str, int]:
    return {str(k).lower(): int(v) for k, v in (traffic or {}).items() if int(v)}


def _upstream(instance: dict[str, Any]) -> str:
    if instance.get("ip"):  # a container (port 5001), or a process forked in a pod (a port of its own)
        return f"{instance['ip']}:{instance.get('port') or 5001}"
    return f"127.0.0.1:{instance['port']}"


def _request(port: int, method: str, path: str, key: str, body: bytes | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 200, (method, path, resp.status, data[:500])
        return json.loads(data)
    finally:
        conn.close()


def _get(port: int, path: str, key: str) -> Any:
    return _request(port, "GET", path, key)


def _post(port: int, path: str, key: str, body: bytes) -> Any:
    return _request(port, "POST", path, key, body)


def report(records: list[Record], provider: str) -> str:
    total = sum(r.seconds for r in records)
    lines = [f"kill loop on {provider}: {len(records)} kill points in {total:.0f}s"]
    lines += [f"  {r.seconds:5.1f}s  drift {r.drift_before:2d}  steps {r.steps_before:2d}  {r.label} ({r.point})"
              for r in records]
    return "\n".join(lines)

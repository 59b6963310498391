"""Time to read and write a recorded state of N deployments on each state backend.

The state has plan_bench's proportions: two deployments per endpoint, one model per ten
deployments, one environment per hundred, each with attributes of the canonical shape. Each
backend is timed through ``StateManager`` (serialise + store, load + parse), median of several
runs. PostgreSQL runs on a throwaway local server (tests/pgserver.py) unless --dsn is given.

    python bench/state_bench.py [--deployments 10000] [--runs 5] [--dsn postgresql://...]

Prints a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))  # last: tests/states must not hide the states package

from reconciler.cli.registries import open_state_manager  # noqa: E402
from reconciler.state.document import State, StateResource  # noqa: E402
from reconciler.state.manager import StateManager, serialise  # noqa: E402


def _deployment(i: int) -> StateResource:
    ep, name = f"ep-{i // 2:05d}", ("blue", "green")[i % 2]
    attrs: dict[str, Any] = {
        "name": name, "endpoint_name": ep, "kind": "managed",
        "model": f"model.model-{i // 10:05d}:1", "environment": f"environment.env-{i // 100:03d}:1",
        "code": {"path": "src", "digest": "sha256:" + "ab" * 32}, "scoring_script": "score.py",
        "instance_type": "Standard_DS3_v2", "instance_count": 2, "scale_settings": {"type": "default"},
        "request_settings": {"request_timeout_ms": 5000, "max_concurrent_requests_per_instance": 1,
                             "max_queue_wait_ms": 500},
        "liveness_probe": {"initial_delay": 10, "period": 10, "timeout": 2, "success_threshold": 1,
                           "failure_threshold": 30},
        "readiness_probe": {"initial_delay": 10, "period": 10, "timeout": 2, "success_threshold": 1,
                            "failure_threshold": 30},
        "environment_variables": {"WORKERS": "1"}, "resources": None, "properties": {}, "tags": {"i": str(i)},
        "description": f"deployment {i}", "app_insights_enabled": False,
        "egress_public_network_access": None, "data_collector": None, "extra": {},
    }
    outputs = {"id": f"/endpoints/{ep}/deployments/{name}", "provisioning_state": "Succeeded",
               "instances": [{"id": f"{ep}-{name}-{k}", "state": "ready", "port": 40000 + k} for k in range(2)]}
    address = f"deployment.{ep}.{name}"
    return StateResource(address=address, type="deployment", name=name, provider="local", attributes=attrs,
                         depends_on=[f"endpoint.{ep}", attrs["model"], attrs["environment"]], outputs=outputs)


def _asset(kind: str, name: str) -> StateResource:
    attrs = {"name": name, "version": "1", "description": None, "tags": {}, "content_digest": "sha256:" + "cd" * 32}
    return StateResource(address=f"{kind}.{name}:1", type=kind, name=name, provider="local",  # type: ignore[arg-type]
                         attributes=attrs, outputs={"id": f"/{kind}s/{name}/versions/1"})


def make_state(n: int) -> State:
    resources: dict[str, StateResource] = {}
    for i in range(n):
        r = _deployment(i)
        resources[r.address] = r
    for e in range((n + 1) // 2):
        ep = f"ep-{e:05d}"
        attrs = {"name": ep, "kind": "managed", "auth_mode": "key", "compute": None, "identity": None,
                 "public_network_access": None, "description": None, "tags": {},
                 "traffic": {"blue": 100}, "mirror_traffic": {}, "traffic_declared": True}
        resources[f"endpoint.{ep}"] = StateResource(
            address=f"endpoint.{ep}", type="endpoint", name=ep, provider="local", attributes=attrs,
            outputs={"scoring_uri": f"http://127.0.0.1:8000/{ep}/score", "provisioning_state": "Succeeded"})
    for m in range(max(1, n // 10)):
        r = _asset("model", f"model-{m:05d}")
        resources[r.address] = r
    for v in range(max(1, n // 100)):
        r = _asset("environment", f"env-{v:03d}")
        resources[r.address] = r
    return State(resources=resources)


def _median(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_backend(open_manager: Callable[[], StateManager], state: State, runs: int) -> dict[str, float]:
    """Full write (a manager that has encoded nothing yet), a recorded step (what the apply engine
    writes after each step: one resource copied and changed, the others shared and their lines
    cached), read, and the bytes alone."""
    mgr = open_manager()
    current = mgr.read()
    state = mgr.write(state.model_copy(update={"lineage": current.lineage}))  # creates it (and the schema)

    def full_write() -> float:
        fresh = open_manager()
        fresh.read()
        t0 = time.perf_counter()
        fresh.write(state)
        elapsed = time.perf_counter() - t0
        fresh.close()
        return elapsed

    deployments = [a for a in state.resources if a.startswith("deployment.")]
    steps = itertools.count()

    def recorded_step() -> None:
        nonlocal state
        i = next(steps)
        address = deployments[i % len(deployments)]
        changed = state.resources[address].model_copy(deep=True)
        changed.attributes["instance_count"] = 2 + i % 2
        state = mgr.write(state.model_copy(update={"resources": {**state.resources, address: changed}}))

    recorded_step()
    step = _median(recorded_step, runs * 4)
    stored = mgr.backend.read()
    assert stored is not None
    result = {
        "step": step,
        "write": statistics.median(full_write() for _ in range(runs)),
        "read": _median(mgr.read, runs),
        "backend_read": _median(mgr.backend.read, runs),
        "size_mb": len(stored.data) / 1e6,
    }
    mgr.close()
    return result


@contextmanager
def _postgres(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    import pgserver

    with pgserver.pg_server() as server:
        yield server.dsn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deployments", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dsn", default=None, help="an existing PostgreSQL (default: a throwaway local server)")
    args = ap.parse_args()

    state = make_state(args.deployments)
    pretty = _median(state.to_bytes, args.runs)
    stored = _median(lambda: serialise(state), args.runs)
    data = serialise(state)
    parse = _median(lambda: State.from_bytes(data), args.runs)
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("file", bench_backend(lambda: open_state_manager(Path(tmp), {}), state, args.runs)))
    with _postgres(args.dsn) as dsn:
        settings = {"backend": "postgres", "dsn": dsn, "name": f"bench-{uuid.uuid4().hex[:8]}"}
        rows.append(("postgres", bench_backend(lambda: open_state_manager(Path("."), settings), state, args.runs)))

    print(f"State of {args.deployments:,} deployments, {len(state.resources):,} resources, "
          f"{len(data) / 1e6:.1f} MB; median of {args.runs} runs.\n")
    print("| backend | write (serialise + store) | write after one step (apply) | read (load + parse) "
          "| load bytes only |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['write'] * 1000:.0f} ms | {r['step'] * 1000:.0f} ms | {r['read'] * 1000:.0f} ms "
              f"| {r['backend_read'] * 1000:.1f} ms |")
    print(f"| (no storage) | {stored * 1000:.0f} ms (reconciler.state.manager.serialise) | – | {parse * 1000:.0f} ms (from_bytes) | – |")
    print(f"| (no storage) | {pretty * 1000:.0f} ms (State.to_bytes, fully indented) | – | – | – |")


if __name__ == "__main__":
    main()

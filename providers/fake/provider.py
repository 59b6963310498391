"""A fake provider for testing the planner and the engine (httpx's MockTransport, Terraform's
``provider_mock.go``). It is never the only test of a real provider: the contract suite in
``tests/contract/`` runs the same checks on it and on every real provider.

The "world" lives in ``<state_dir>/fake-world.json`` so that separate ``recon`` processes see the
same objects. Every changing call is appended to the world's call log, in order, so tests can
assert the order of operations. The domain rules of DOMAIN.md are enforced as invariants: breaking
one raises ``FakeInvariantError`` and is kept in the world's ``violations`` list, so an engine test
that ends with no violation proves the engine respected them:

- a deployment is created only when its endpoint (and its model and environment) exist;
- traffic cannot be set in the request that creates an endpoint;
- traffic or mirror traffic points only at deployments of that endpoint that exist and are ready,
  live traffic sums to 100 or 0, and no deployment gets both live and mirrored traffic;
- a deployment with live or mirrored traffic is never deleted.

Settings (``provider: {kind: fake, ...}`` in recon.yaml), for fault injection:

- ``fail_on: ["create:deployment.ep.green", ...]``: that call always fails (``PermanentError``);
- ``fail_times: {"create:deployment.ep.blue": 2}``: the first 2 such calls fail with
  ``RetryableError`` (counted in the world, so across processes);
- ``fail_batch: {"deployment.ep.blue": 3}``: rollout batch 3 does not become ready; it is rolled
  back and fails with the failing instance's last log lines;
- ``delay_ms``: every changing call (and every batch) takes this long;
- ``scoring_uri: "http://127.0.0.1:8080/{name}/score"``: what endpoints report (tests serve it);
- ``capacity: {"cpus": 8, "memory_gb": 32}``;
- ``world: memory``: the world lives in this process only (nothing written: benchmarks of what recon
  itself writes); the default ``file`` shares it between processes;
- ``window_requests``: how many live requests clients send an endpoint in each measured window
  (default 1000; 0: none): guarded rollouts, simulated in ``providers.fake.windows`` (instances
  answer as their deployment's ``FAKE_ERROR_RATE`` and ``FAKE_LATENCY_S`` variables say).

``FakeWorld`` has helpers to change objects behind recon's back (drift) and to read the log.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from providers.fake import rules, windows
from providers.fake.rules import FakeInvariantError
from providers.shared import endpoint_tokens
from reconciler.model.errors import PermanentError, RetryableError
from reconciler.model.resources import DeploymentAttrs, as_observed, digest_of
from reconciler.model.windows import WindowStats
from reconciler.plan.provider import (
    ApplyRequest,
    Capacity,
    EndpointToken,
    Keys,
    Measuring,
    Observation,
    Provider,
    ProviderContext,
)
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource

WORLD_FILE = "fake-world.json"

# Deployment attributes that do not change what an instance runs: changing them needs no rollout.
NON_TEMPLATE = frozenset({"instance_count", "scale_settings", "tags", "description"})


def template_digest(attributes: DeploymentAttrs) -> str:
    """What an instance runs: every deployment attribute except count, scaling and labels."""
    return digest_of({k: v for k, v in attributes.items() if k not in NON_TEMPLATE})


def empty_world() -> dict[str, Any]:
    return {"objects": {}, "calls": [], "violations": [], "counters": {}, "keys": {}, "next_instance": 1}


class FakeWorld:
    """The fake's objects, call log and violations, in one JSON file shared by processes.

    Every read-modify-write happens in ``transaction()`` under an exclusive ``flock`` and is saved
    atomically (temporary file + rename), so a process killed at any moment leaves a whole world.
    """

    _thread_lock = threading.Lock()

    def __init__(self, path: Path, in_memory: bool = False) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._memory: dict[str, Any] | None = empty_world() if in_memory else None

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Yield the world for changing; it is saved when the block ends without an error."""
        if self._memory is not None:
            with self._thread_lock:
                yield self._memory
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            world = self._load()
            yield world
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(world, indent=1, sort_keys=True))
            os.replace(tmp, self.path)

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return empty_world()
        world: dict[str, Any] = json.loads(self.path.read_text())
        return world

    def read(self) -> dict[str, Any]:
        with self.transaction() as world:
            return copy.deepcopy(world)

    # -- reading, for tests ----------------------------------------------------------------------
    def calls(self, *, ok_only: bool = False) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.read()["calls"]
        return [c for c in calls if c["ok"]] if ok_only else calls

    def violations(self) -> list[str]:
        return list(self.read()["violations"])

    def objects(self) -> dict[str, dict[str, Any]]:
        objects: dict[str, dict[str, Any]] = self.read()["objects"]
        return objects

    # -- changing things behind recon's back (drift) ---------------------------------------------
    def set_attribute(self, address: str, path: str, value: Any) -> None:
        """Set a dotted attribute path of an object (``environment_variables.MODE``)."""
        with self.transaction() as world:
            target = world["objects"][address]["attributes"]
            *parents, last = path.split(".")
            for part in parents:
                target = target.setdefault(part, {})
            target[last] = value

    def set_traffic(self, address: str, traffic: dict[str, int]) -> None:
        with self.transaction() as world:
            world["objects"][address]["traffic"] = dict(traffic)

    def kill_instance(self, address: str, index: int = 0) -> str:
        """Mark one instance of a deployment dead; returns its id."""
        with self.transaction() as world:
            instance = world["objects"][address]["instances"][index]
            instance["alive"] = False
            return str(instance["id"])


class FakeProvider(Provider):
    """In-memory-like provider persisted to a JSON file; see the module docstring."""

    name: ClassVar[str] = "fake"
    measuring: ClassVar[Measuring] = Measuring(windows=True, source="the fake's simulated clients")

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.world = FakeWorld(Path(context.state_dir) / WORLD_FILE, in_memory=settings.get("world") == "memory")
        self._active = 0
        self.max_active = 0  # the most calls that ran at once in this process
        self._count_lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------------
    @contextmanager
    def _call(self, op: str, address: str, **extra: Any) -> Iterator[None]:
        """Count concurrency, inject faults and delay, and log the call (ok or not)."""
        with self._count_lock:
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        start = time.time()
        ok = False
        try:
            self._inject(op, address)
            self._delay()
            yield
            ok = True
        finally:
            with self._count_lock:
                self._active -= 1
            self._log(op, address, start, ok, extra)

    def _log(self, op: str, address: str, start: float, ok: bool, extra: dict[str, Any]) -> None:
        with self.world.transaction() as world:
            entry = {"seq": len(world["calls"]) + 1, "op": op, "address": address, "ok": ok}
            entry.update(pid=os.getpid(), start=start, end=time.time(), **extra)
            world["calls"].append(entry)

    def _delay(self) -> None:
        delay_ms = float(self.settings.get("delay_ms", 0) or 0)
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)

    def _inject(self, op: str, address: str) -> None:
        key = f"{op}:{address}"
        if key in (self.settings.get("fail_on") or []):
            raise PermanentError(f"{address}: injected failure of {op}", detail=[f"fake: {key} fails"])
        times = int((self.settings.get("fail_times") or {}).get(key, 0))
        if times:
            with self.world.transaction() as world:
                seen = world["counters"].get(key, 0)
                world["counters"][key] = seen + 1
            if seen < times:
                raise RetryableError(f"{address}: injected temporary failure of {op}", delay=0.01)

    def _new_instances(
        self, world: dict[str, Any], config: str, n: int, attributes: DeploymentAttrs | None = None
    ) -> list[dict[str, Any]]:
        """``n`` instances of ``config``; ``attributes`` (the deployment's) say how they answer."""
        out = []
        how = windows.behaviour((attributes.get("environment_variables") if attributes else None) or {})
        for _ in range(n):
            iid = f"i-{world['next_instance']}"
            world["next_instance"] += 1
            out.append({"id": iid, "config": config, "alive": True, "logs": [f"{iid}: init() done"], "behaviour": how})
        return out

    def _outputs(self, address: str, obj: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": f"fake://{address}", "provisioning_state": obj["state"]}
        if obj["type"] == "endpoint":
            template = str(self.settings.get("scoring_uri") or "http://fake.invalid/{name}/score")
            out["scoring_uri"] = template.format(name=obj["name"])
        if obj["type"] == "deployment":
            out["instances"] = [i["id"] for i in obj["instances"]]
            if obj.get("config_digest"):
                out["config_digest"] = obj["config_digest"]
        return out

    # -- reading ---------------------------------------------------------------------------------
    def observe(self, resource: StateResource) -> Observation:
        obj = self.world.read()["objects"].get(resource.address)
        if obj is None or "state" not in obj:
            return Observation(exists=False)
        attributes = dict(obj["attributes"])  # the world's JSON: what a cloud would show of it
        problems: list[str] = []
        if obj["type"] == "endpoint":
            attributes["traffic"] = dict(obj["traffic"])
            attributes["mirror_traffic"] = dict(obj["mirror_traffic"])
        if obj["type"] == "deployment":
            dead = [i["id"] for i in obj["instances"] if not i["alive"]]
            problems += [f"instance {iid} is not running" for iid in dead]
            attributes["instance_count"] = len(obj["instances"]) - len(dead)
        return Observation(True, as_observed(attributes), self._outputs(resource.address, obj), problems)

    def find_unmanaged(self, known: list[StateResource]) -> list[str]:
        names = {r.address for r in known}
        return sorted(a for a in self.world.read()["objects"] if a not in names)

    def capacity(self) -> Capacity | None:
        cap = self.settings.get("capacity")
        if not cap:
            return None
        return Capacity(cap.get("cpus"), cap.get("memory_gb"), "fake capacity")

    # -- changing --------------------------------------------------------------------------------
    def create(self, request: ApplyRequest) -> dict[str, Any]:
        with self._call("create", request.address):
            with self.world.transaction() as world:
                error = rules.check_create(world, request)
                if error is None:
                    obj = self._build(world, request)
                    world["objects"][request.address] = obj
            if error is not None:
                raise error
            if obj["type"] == "deployment":
                request.emit(f"instances {', '.join(i['id'] for i in obj['instances'])} ready")
            return self._outputs(request.address, obj)

    def _build(self, world: dict[str, Any], request: ApplyRequest) -> dict[str, Any]:
        """A new object; an object of that name already there is taken over (PUT semantics)."""
        obj: dict[str, Any] = {
            "type": request.type,
            "name": request.name,
            "attributes": copy.deepcopy(request.attributes),
            "state": "Succeeded",
        }
        if request.type == "endpoint":
            old = world["objects"].get(request.address) or {}
            obj["traffic"] = old.get("traffic", {})
            obj["mirror_traffic"] = old.get("mirror_traffic", {})
            world["keys"].setdefault(
                request.address, {"primary": secrets.token_hex(16), "secondary": secrets.token_hex(16),
                                  "signing": secrets.token_hex(32)}
            )
        if request.type == "deployment":
            count = int(request.deployment.get("instance_count") or 1)
            obj["config_digest"] = template_digest(request.deployment)
            obj["instances"] = self._new_instances(world, obj["config_digest"], count, request.deployment)
        return obj

    def _existing(self, world: dict[str, Any], address: str, op: str) -> dict[str, Any]:
        obj = world["objects"].get(address)
        if obj is None or "state" not in obj:
            raise PermanentError(f"{address}: cannot {op}: it does not exist")
        result: dict[str, Any] = obj
        return result

    def update(self, request: ApplyRequest) -> dict[str, Any]:
        with self._call("update", request.address), self.world.transaction() as world:
            obj = self._existing(world, request.address, "update")
            # traffic is set only by set_routing: an update never zeroes it
            obj["attributes"] = copy.deepcopy(request.attributes)
            return self._outputs(request.address, obj)

    def scale(self, request: ApplyRequest) -> dict[str, Any]:
        count = request.instance_count
        with self._call("scale", request.address, count=count), self.world.transaction() as world:
            obj = self._existing(world, request.address, "scale")
            alive = [i for i in obj["instances"] if i["alive"]]
            if len(alive) < count:
                config = template_digest(request.deployment)
                alive += self._new_instances(world, config, count - len(alive), request.deployment)
            obj["instances"] = alive[:count]
            obj["attributes"]["instance_count"] = count
            request.emit(f"{count} instances running")
            return self._outputs(request.address, obj)

    def roll_batch(self, request: ApplyRequest, batch: Batch) -> dict[str, Any]:
        with self._call("roll_batch", request.address, batch=batch.index):
            failing = (self.settings.get("fail_batch") or {}).get(request.address)
            with self.world.transaction() as world:
                obj = self._existing(world, request.address, "roll out")
                desired = template_digest(request.deployment)
                stale = [i for i in obj["instances"] if i["config"] != desired or not i["alive"]]
                if failing == batch.index and stale:
                    new = self._new_instances(world, desired, 1)[0]
                    lines = [
                        f"{new['id']}: Traceback (most recent call last):",
                        f"{new['id']}: init() raised",
                    ]
                    error = PermanentError(
                        f"{request.address}: batch {batch.index} did not become ready; rolled back",
                        detail=lines,
                    )
                else:
                    error = None
                    obj["config_digest"] = desired
                    self._replace(world, obj, stale[: batch.size], desired, request.deployment)
                    if len(stale) <= batch.size:  # every instance runs the desired configuration
                        count = len(obj["instances"])
                        obj["attributes"] = {**copy.deepcopy(request.attributes), "instance_count": count}
                outputs = self._outputs(request.address, obj)
            if error is not None:
                raise error
            request.emit(f"batch {batch.index}: new instances ready, old ones stopped")
            return outputs

    def _replace(
        self, world: dict[str, Any], obj: dict[str, Any], old: list[dict[str, Any]], config: str,
        attributes: DeploymentAttrs,
    ) -> None:
        gone = {i["id"] for i in old}
        kept = [i for i in obj["instances"] if i["id"] not in gone]
        obj["instances"] = kept + self._new_instances(world, config, len(old), attributes)

    def set_routing(self, request: ApplyRequest) -> dict[str, Any]:
        traffic, mirror_traffic = request.traffic, request.mirror_traffic
        extra = {"traffic": dict(traffic), "mirror_traffic": dict(mirror_traffic)}
        with self._call("set_routing", request.address, **extra):
            with self.world.transaction() as world:
                error = rules.check_routing(world, request, traffic, mirror_traffic)
                if error is None:
                    obj = world["objects"][request.address]
                    obj["traffic"] = {k: v for k, v in traffic.items() if v}
                    obj["mirror_traffic"] = {k: v for k, v in mirror_traffic.items() if v}
                    outputs = self._outputs(request.address, obj)
            if error is not None:
                raise error
            return outputs

    def delete(self, resource: StateResource) -> None:
        address = resource.address
        with self._call("delete", address):
            with self.world.transaction() as world:
                error = rules.check_delete(world, resource)
                if error is None:
                    rules.remove(world, resource)
            if error is not None:
                raise error

    # -- measuring (guarded rollouts) ---------------------------------------------------------------
    def open_window(self, request: ApplyRequest) -> dict[str, Any]:
        """A mark naming the endpoint and how many windows were opened before (logged as a call)."""
        with self.world.transaction() as world:
            opened = int(world["counters"].get("windows", 0)) + 1
            world["counters"]["windows"] = opened
        self._log("open_window", request.address, time.time(), True, {"window": opened})
        return {"endpoint": request.address, "window": opened}

    def close_window(self, request: ApplyRequest, mark: dict[str, Any]) -> WindowStats:
        """The window's simulated requests, as the world stands now (logged as a call)."""
        requests = int(self.settings.get("window_requests", 1000))
        with self.world.transaction() as world:
            stats = windows.window(world, str(mark["endpoint"]), requests, int(mark["window"]))
        self._log("close_window", request.address, time.time(), True, {"window": mark["window"]})
        return stats

    # -- operating -------------------------------------------------------------------------------
    def credentials(self, endpoint: StateResource) -> Keys | EndpointToken:
        """The keys; a token (signed as recon's routers take it) when the endpoint is ``aml_token``."""
        world = self.world.read()
        keys = world["keys"].get(endpoint.address)
        obj = world["objects"].get(endpoint.address)
        if keys is None or obj is None:
            raise PermanentError(f"{endpoint.address} does not exist")
        uri = self._outputs(endpoint.address, obj)["scoring_uri"]
        if obj["attributes"].get("auth_mode") == "aml_token":
            signing = keys.get("signing") or keys["primary"]
            return endpoint_tokens.issue(signing, obj["name"], uri, endpoint_tokens.token_lifetime(self.settings))
        return Keys(keys["primary"], keys["secondary"], uri)

    def logs(self, deployment: StateResource, instance: int | None = None, tail: int = 100) -> list[str]:
        obj = self.world.read()["objects"].get(deployment.address)
        if obj is None:
            raise PermanentError(f"{deployment.address} does not exist")
        # instances are numbered from 1, as the real providers number them
        instances = obj["instances"] if instance is None else obj["instances"][instance - 1 : instance]
        lines = [line for i in instances for line in i["logs"]]
        return lines[-tail:] if tail else lines


__all__ = ["FakeInvariantError", "FakeProvider", "FakeWorld", "template_digest"]

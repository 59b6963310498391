"""The engine's state writes cost what changed: copy-on-write per resource and a line cache.

What must hold for that to be safe: a written state is byte for byte what a full serialisation
gives, untouched resources are shared between the states written, and a resource changed in
place behind the recorder's back is caught (RECON_VERIFY_STATE_CACHE, set for every test).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.apply.engine import apply_plan
from reconciler.cli.registries import open_state_manager
from reconciler.model.errors import StateError
from reconciler.state.document import State, StateResource
from reconciler.state.manager import serialise

from .helpers import Env, blue_green, plan_for


def _resource(i: int) -> StateResource:
    return StateResource(address=f"model.m{i}:1", type="model", name=f"m{i}", provider="fake",
                         attributes={"name": f"m{i}", "version": "1", "n": i})


def test_cached_serialisation_is_the_full_one(tmp_path: Path) -> None:
    state = State(serial=0, resources={r.address: r for r in map(_resource, range(50))})
    cache: dict[str, tuple[StateResource, str]] = {}
    assert serialise(state, cache) == serialise(state)
    assert len(cache) == 50
    changed = dict(state.resources)
    changed["model.m7:1"] = changed["model.m7:1"].model_copy(update={"status": "failed"})
    del changed["model.m9:1"]
    changed["model.m99:1"] = _resource(99)
    later = state.model_copy(update={"resources": changed})
    assert serialise(later, cache) == serialise(later)
    assert "model.m9:1" not in cache and cache["model.m7:1"][0] is changed["model.m7:1"]


def test_a_resource_changed_in_place_is_caught(tmp_path: Path) -> None:
    manager = open_state_manager(tmp_path, None)
    state = manager.write(State(resources={r.address: r for r in map(_resource, range(3))}))
    state.resources["model.m1:1"].attributes["n"] = 1000  # behind the cache's back
    with pytest.raises(StateError, match="changed in place"):
        manager.write(state)


def test_an_apply_shares_the_resources_it_did_not_touch(env: Env) -> None:
    manager = env.manager()
    want = blue_green(env.root, traffic={"blue": 100})
    first = apply_plan(plan_for(manager, want), provider=env.provider, state_manager=manager,
                       desired_digest=want.digest)
    assert first.ok, first.errors
    want = blue_green(env.root, traffic={"blue": 100}, env_vars={"MODE": "new"})  # blue rolls
    manager = env.manager()
    plan = plan_for(manager, want)
    read = manager.read
    started_from: list[State] = []
    manager.read = lambda: started_from.append(read()) or started_from[-1]  # type: ignore[method-assign]
    result = apply_plan(plan, provider=env.provider, state_manager=manager, desired_digest=want.digest)
    assert result.ok, result.errors
    before, after = started_from[0], result.state
    assert after.serial > before.serial + 1  # written after each of the rollout's batches
    for address, res in before.resources.items():
        if address != "deployment.ep.blue":
            assert after.resources[address] is res  # never copied, never re-encoded
    assert after.resources["deployment.ep.blue"].attributes["environment_variables"] == {"MODE": "new"}
    assert before.resources["deployment.ep.blue"].attributes["environment_variables"] == {}
    stored = State.from_bytes((env.root / ".recon" / "state.json").read_bytes())
    assert stored.resources == after.resources

"""refresh() with a real (in-memory) provider, the resource graph, cycles, diff paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.apply.refresh import refresh
from reconciler.model.errors import ConfigError, ProviderError
from reconciler.plan.diff import diff_attributes
from reconciler.plan.graph import desired_graph, resource_graph, step_order
from reconciler.plan.planner import make_plan
from reconciler.plan.provider import ApplyRequest, Observation, Provider, ProviderContext
from reconciler.plan.types import Action, Batch, ScaleParams, StepKind
from reconciler.state.document import StateResource
from tests.planner.helpers import base, desired, endpoint, state


class WorldProvider(Provider):
    """Observes a dict of address -> attributes (None: gone); a string value makes observe fail."""

    name = "world"

    def __init__(self, world: dict[str, Any], unmanaged: list[str] | None = None) -> None:
        super().__init__({}, ProviderContext(Path("."), Path(".recon"), Path(".cache")))
        self.world = world
        self.unmanaged = unmanaged or []

    def observe(self, resource: StateResource) -> Observation:
        seen = self.world.get(resource.address, {})
        if seen is None:
            return Observation(exists=False, problems=["router process 4242 is gone"])
        if isinstance(seen, str):
            raise OSError(seen)
        return Observation(exists=True, attributes=seen, outputs={"seen": True})

    def find_unmanaged(self, known: list[StateResource]) -> list[str]:
        return self.unmanaged

    def create(self, request: ApplyRequest) -> dict[str, Any]:
        raise NotImplementedError

    def update(self, request: ApplyRequest) -> dict[str, Any]:
        raise NotImplementedError

    def delete(self, resource: StateResource) -> None:
        raise NotImplementedError

    def scale(self, request: ApplyRequest) -> dict[str, Any]:
        raise NotImplementedError

    def roll_batch(self, request: ApplyRequest, batch: Batch) -> dict[str, Any]:
        raise NotImplementedError

    def set_routing(self, request: ApplyRequest) -> dict[str, Any]:
        raise NotImplementedError


def test_refresh_without_drift_keeps_attributes() -> None:
    st = state(*base())
    refreshed, drift = refresh(st, WorldProvider({}))
    assert drift == []
    assert {a: r.attributes for a, r in refreshed.resources.items()} == {
        a: r.attributes for a, r in st.resources.items()
    }
    assert refreshed.resources["endpoint.my-endpoint"].outputs == {"seen": True}


def test_refresh_changed_attribute_is_drift_and_the_plan_repairs_it() -> None:
    res = base()
    st = state(*res)
    world = {"deployment.my-endpoint.blue": {"instance_count": 0, "environment_variables": {"FOO": "x"}}}
    refreshed, drift = refresh(st, WorldProvider(world))
    assert {(d.kind, d.path, d.recorded, d.actual) for d in drift} == {
        ("changed", "instance_count", 1, 0),
        ("changed", "environment_variables.FOO", None, "x"),
    }
    assert st.resources["deployment.my-endpoint.blue"].attributes["instance_count"] == 1  # input untouched
    plan = make_plan(desired(*res), refreshed, drift=drift)
    assert plan.drift == drift
    assert [s.kind for s in plan.steps] == [StepKind.SCALE, StepKind.ROLLOUT]
    assert plan.steps[0].params == ScaleParams(from_=0, to=1)


def test_refresh_missing_resource_is_dropped_so_the_plan_recreates_it() -> None:
    res = base()
    refreshed, drift = refresh(state(*res), WorldProvider({"endpoint.my-endpoint": None}))
    assert [(d.address, d.kind) for d in drift] == [("endpoint.my-endpoint", "missing")]
    assert "gone" in (drift[0].detail or "")
    assert "endpoint.my-endpoint" not in refreshed.resources
    plan = make_plan(desired(*res), refreshed)
    assert plan.change("endpoint.my-endpoint").action is Action.CREATE


def test_refresh_traffic_in_normal_form_has_no_false_drift() -> None:
    world = {"endpoint.my-endpoint": {"traffic": {"BLUE": 100, "green": 0}, "mirror_traffic": {}}}
    _, drift = refresh(state(*base()), WorldProvider(world))
    assert drift == []


def test_refresh_reports_unmanaged() -> None:
    _, drift = refresh(state(*base()), WorldProvider({}, unmanaged=["stray/router"]))
    assert [(d.address, d.kind) for d in drift] == [("stray/router", "unmanaged")]


def test_refresh_turns_provider_failures_into_provider_error() -> None:
    with pytest.raises(ProviderError, match="observing .* failed: OSError: disk on fire"):
        refresh(state(*base()), WorldProvider({"model.my-model:1": "disk on fire"}))


def test_resource_graph_edges_run_assets_to_deployments_to_endpoints() -> None:
    g = desired_graph(desired(*base()))
    assert set(g.edges) == {
        ("model.my-model:1", "deployment.my-endpoint.blue"),
        ("environment.my-env:1", "deployment.my-endpoint.blue"),
        ("deployment.my-endpoint.blue", "endpoint.my-endpoint"),
    }


def test_cycle_is_a_config_error_naming_it() -> None:
    with pytest.raises(
        ConfigError,
        match=r"cycle.*model\.a:1 -> model\.b:1 -> model\.a:1|cycle.*model\.b:1 -> model\.a:1 -> model\.b:1",
    ):
        resource_graph({"model.a:1": ("model", {}, ["model.b:1"]), "model.b:1": ("model", {}, ["model.a:1"])})


def test_step_order_keeps_listing_order_among_ready_steps() -> None:
    deps = {"a": [], "b": ["c"], "c": [], "d": ["a"]}
    assert step_order(["a", "b", "c", "d"], deps.__getitem__) == ["a", "c", "b", "d"]
    with pytest.raises(ConfigError, match="cycle"):
        step_order(["x", "y"], {"x": ["y"], "y": ["x"]}.__getitem__)


def test_diff_lists_compare_whole_and_dicts_by_leaf() -> None:
    b = {"conda": {"dependencies": ["a", "b"]}, "tags": {"x": "1"}, "n": 1}
    a = {"conda": {"dependencies": ["a", "c"]}, "tags": {}, "n": 1}
    assert [(c.path, c.before, c.after) for c in diff_attributes(b, a)] == [
        ("conda.dependencies", ["a", "b"], ["a", "c"]),
        ("tags.x", "1", None),
    ]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"A": "1", "B": "2"}, {"A": "1", "B": "3"}),
        ({"A": "1"}, {"A": "1", "C": "x"}),
        ({"A": "1", "C": "x"}, {"A": "1"}),
        ({"n": 1, "m": 2}, {"n": 1.0, "m": 3}),  # 1 -> 1.0 is a change of type, as DeepDiff says
        ({"flag": 1, "z": None}, {"flag": True, "z": 0}),
        ({}, {"only": "new"}),
    ],
)
def test_flat_dict_changes_are_what_deepdiff_reports(before: dict[str, Any], after: dict[str, Any]) -> None:
    from deepdiff import DeepDiff

    expected = set()
    for levels in DeepDiff(before, after, view="tree").values():
        for level in levels:
            (key,) = level.path(output_format="list")
            expected.add((f"env.{key}", before.get(key), after.get(key)))
    got = {(c.path, c.before, c.after) for c in diff_attributes({"env": before}, {"env": after})}
    assert got == expected and got


def test_traffic_change_only_is_a_set_traffic_step() -> None:
    res = base()
    from tests.planner.helpers import deployment

    green = deployment("green")
    plan = make_plan(
        desired(res[0], res[1], endpoint(traffic={"blue": 90, "green": 10}), res[3], green),
        state(*res, green),
    )
    assert [s.id for s in plan.steps] == ["set_traffic:endpoint.my-endpoint"]
    assert {c.path for c in plan.change("endpoint.my-endpoint").changes} == {"traffic.blue", "traffic.green"}

"""Per-resource actions, replace paths, validation that needs the state, round trip."""

from __future__ import annotations

import pytest

from reconciler.model.errors import PlanError
from reconciler.plan.planner import make_plan
from reconciler.plan.types import Action, Plan, StepKind, TrafficParams
from reconciler.state.document import State
from tests.planner.helpers import base, changed, deployment, desired, endpoint, environment, model, state


def test_everything_created_on_empty_state() -> None:
    plan = make_plan(desired(*base()), State())
    assert {rc.action for rc in plan.resource_changes} == {Action.CREATE}
    assert plan.counts() == {"add": 4, "change": 0, "destroy": 0}
    assert plan.lineage is None and plan.serial == 0
    assert plan.applicable and plan.has_changes


def test_no_changes_gives_noop_entries_with_full_after() -> None:
    res = base()
    plan = make_plan(desired(*res), state(*res))
    assert all(rc.action is Action.NOOP for rc in plan.resource_changes)
    assert len(plan.resource_changes) == 4
    assert plan.change("deployment.my-endpoint.blue").after == res[3].attributes
    assert plan.steps == [] and not plan.has_changes
    assert plan.lineage == "lineage-1" and plan.serial == 3


def test_removed_from_config_is_deleted() -> None:
    res = base()
    green = deployment("green")
    plan = make_plan(desired(*res), state(*res, green))
    rc = plan.change("deployment.my-endpoint.green")
    assert rc.action is Action.DELETE and rc.after is None and rc.before is not None
    assert [s.id for s in plan.steps] == ["delete:deployment.my-endpoint.green"]


@pytest.mark.parametrize(
    ("path", "value"),
    [("instance_type", "Standard_F4s_v2"), ("kind", "kubernetes")],
)
def test_deployment_replace_paths(path: str, value: str) -> None:
    res = base()
    new = changed(res[3], **{path: value})
    plan = make_plan(desired(*res[:3], new), state(*res))
    rc = plan.change(new.address)
    assert rc.action is Action.REPLACE
    assert rc.replace_paths == [path]
    assert rc.reason and "blue/green" in rc.reason
    assert any(c.path == path and c.forces_replacement for c in rc.changes)
    assert any("blue/green" in (w["hint"] or "") for w in plan.warnings)
    assert plan.counts() == {"add": 1, "change": 0, "destroy": 1}


@pytest.mark.parametrize(
    ("path", "value"),
    [("kind", "kubernetes"), ("compute", "azureml:k8s"), ("identity", {"type": "system_assigned"})],
)
def test_endpoint_replace_paths_take_deployments_along(path: str, value: object) -> None:
    res = base()
    new_ep = changed(res[2], **{path: value})
    plan = make_plan(desired(res[0], res[1], new_ep, res[3]), state(*res))
    assert plan.change("endpoint.my-endpoint").action is Action.REPLACE
    assert plan.change("endpoint.my-endpoint").replace_paths == [path]
    dep = plan.change("deployment.my-endpoint.blue")
    assert dep.action is Action.REPLACE and "endpoint" in (dep.reason or "")
    ids = [s.id for s in plan.steps]
    assert ids.index("delete:deployment.my-endpoint.blue") < ids.index("delete:endpoint.my-endpoint")
    assert ids.index("create:endpoint.my-endpoint") < ids.index("create:deployment.my-endpoint.blue")
    assert ids[-1] == "set_traffic:endpoint.my-endpoint"


def test_endpoint_auth_mode_updates_in_place() -> None:
    res = base()
    new_ep = changed(res[2], auth_mode="aml_token", tags={"team": "ml"})
    plan = make_plan(desired(res[0], res[1], new_ep, res[3]), state(*res))
    rc = plan.change("endpoint.my-endpoint")
    assert rc.action is Action.UPDATE
    assert {c.path for c in rc.changes} == {"auth_mode", "tags.team"}
    assert [(s.kind, s.address) for s in plan.steps] == [(StepKind.UPDATE, "endpoint.my-endpoint")]


def test_deployment_tags_only_is_an_update_step_not_a_rollout() -> None:
    res = base()
    new = changed(res[3], tags={"owner": "me"}, description="hello")
    plan = make_plan(desired(*res[:3], new), state(*res))
    assert plan.change(new.address).action is Action.UPDATE
    assert [s.kind for s in plan.steps] == [StepKind.UPDATE]


def test_field_changes_have_dotted_paths() -> None:
    res = base()
    new = changed(res[3], request_settings__request_timeout_ms=9000, environment_variables={"FOO": "1"})
    plan = make_plan(desired(*res[:3], new), state(*res))
    paths = {c.path: (c.before, c.after) for c in plan.change(new.address).changes}
    assert paths == {
        "request_settings.request_timeout_ms": (5000, 9000),
        "environment_variables.FOO": (None, "1"),
    }
    assert [s.kind for s in plan.steps] == [StepKind.ROLLOUT]


def test_tainted_resource_is_replaced() -> None:
    res = base()
    plan = make_plan(desired(*res), state(*res, status={"deployment.my-endpoint.blue": "tainted"}))
    assert plan.change("deployment.my-endpoint.blue").action is Action.REPLACE


def test_registered_asset_content_changed_without_version_bump_is_an_error() -> None:
    res = base()
    new_model = model(digest="sha256:other")
    plan = make_plan(desired(new_model, *res[1:]), state(*res))
    assert not plan.applicable
    (err,) = plan.errors
    assert "bump the version" in err and "model.yml:1" in err and "model.my-model:1" in err


def test_environment_content_changed_without_version_bump_is_an_error() -> None:
    res = base()
    plan = make_plan(
        desired(res[0], environment(digest="sha256:x", image="python:3.12"), *res[2:]), state(*res)
    )
    assert any("bump the version" in e and "environment.yml:1" in e for e in plan.errors)


def test_anonymous_asset_is_not_checked_for_version_bump() -> None:
    anon = model(name="anon", version="abc", anonymous=True)
    plan = make_plan(
        desired(model(name="anon", version="abc", anonymous=True, digest="sha256:2")), state(anon)
    )
    assert plan.applicable


def test_new_model_version_and_old_one_deleted_after_rollout() -> None:
    res = base()
    m2 = model(version="2", digest="sha256:m2")
    new = changed(res[3], model="model.my-model:2")
    plan = make_plan(desired(m2, res[1], res[2], new), state(*res))
    assert plan.applicable
    ids = [s.id for s in plan.steps]
    assert ids == [
        "create:model.my-model:2",
        "rollout:deployment.my-endpoint.blue",
        "delete:model.my-model:1",
    ]
    rollout = plan.steps[1]
    assert "create:model.my-model:2" in rollout.depends_on
    assert "rollout:deployment.my-endpoint.blue" in plan.steps[2].depends_on


@pytest.mark.parametrize("mutation", ["changed", "removed"])
def test_properties_changed_or_removed_is_an_error(mutation: str) -> None:
    res = base()
    old = changed(res[3], properties={"owner": "a"})
    new = changed(res[3], properties={"owner": "b"} if mutation == "changed" else {})
    plan = make_plan(desired(*res[:3], new), state(*res[:3], old))
    assert len(plan.errors) == 1
    assert "properties.owner" in plan.errors[0] and "blue-deployment.yml:1" in plan.errors[0]


def test_properties_added_is_fine() -> None:
    res = base()
    new = changed(res[3], properties={"owner": "a"})
    plan = make_plan(desired(*res[:3], new), state(*res))
    assert plan.applicable and plan.change(new.address).action is Action.UPDATE


def test_destroy_deletes_everything_traffic_first() -> None:
    res = base()
    plan = make_plan(desired(*res), state(*res), destroy=True)
    assert plan.destroy
    assert {rc.action for rc in plan.resource_changes} == {Action.DELETE}
    ids = [s.id for s in plan.steps]
    assert ids[0] == "set_traffic:endpoint.my-endpoint:drain"
    assert plan.steps[0].params == TrafficParams(traffic={}, mirror_traffic={}, phase="drain")
    assert ids.index("delete:deployment.my-endpoint.blue") < ids.index("delete:endpoint.my-endpoint")
    assert ids.index("delete:deployment.my-endpoint.blue") < ids.index("delete:model.my-model:1")
    assert ids.index("delete:deployment.my-endpoint.blue") < ids.index("delete:environment.my-env:1")


def test_targets_plan_only_targets_and_what_they_need() -> None:
    res = base()
    other = [endpoint("other", traffic={"a": 100}), deployment("a", "other")]
    plan = make_plan(desired(*res, *other), State(), targets=["deployment.my-endpoint.blue"])
    addresses = {rc.address for rc in plan.resource_changes}
    assert addresses == {
        "deployment.my-endpoint.blue",
        "endpoint.my-endpoint",
        "model.my-model:1",
        "environment.my-env:1",
    }
    assert plan.targets == ["deployment.my-endpoint.blue"]
    assert any("partial" in w["message"] for w in plan.warnings)


def test_unknown_target_is_an_error_naming_the_closest_addresses() -> None:
    with pytest.raises(PlanError) as err:
        make_plan(desired(*base()), State(), targets=["endpoint.my-endpiont"])
    assert str(err.value) == (
        "--target endpoint.my-endpiont: no resource has this address in the configuration or the state; "
        "did you mean endpoint.my-endpoint?"
    )


def test_destroy_target_takes_what_needs_it_not_what_it_needs() -> None:
    plan = make_plan(desired(), state(*base()), destroy=True, targets=["model.my-model:1"])
    deleted = sorted(rc.address for rc in plan.resource_changes if rc.action is Action.DELETE)
    assert deleted == ["deployment.my-endpoint.blue", "model.my-model:1"]


def test_plan_records_digest_workspace_provider_warnings_and_drift() -> None:
    from reconciler.plan.types import DriftItem

    d = desired(*base(), workspace="ws", warnings=[{"severity": "warning", "message": "loader says"}])
    drift = [
        DriftItem(
            address="endpoint.my-endpoint",
            kind="changed",
            path="auth_mode",
            recorded="key",
            actual="aml_token",
        )
    ]
    plan = make_plan(d, State(), drift=drift, recon_version="0.1.0")
    assert plan.desired_digest == d.digest and plan.workspace == "ws" and plan.provider == "local"
    assert plan.warnings[0]["message"] == "loader says"
    assert plan.drift == drift and plan.recon_version == "0.1.0"


def test_plan_round_trips_through_json() -> None:
    res = base()
    green = deployment("green", count=10, environment_variables={"A": "1"})
    ep = endpoint(traffic={"blue": 90, "green": 10})
    plan = make_plan(
        desired(
            res[0], res[1], ep, changed(res[3], instance_count=3), green, quota={"standardDSv2Family": 1000}
        ),
        state(*res),
    )
    assert plan.steps and plan.quota.families
    again = Plan.model_validate_json(plan.model_dump_json())
    assert again == plan
    assert again.digest == plan.digest


def test_a_failed_deployment_rolls_again_described_in_one_sentence() -> None:
    res = base()
    plan = make_plan(desired(*res), state(*res, status={"deployment.my-endpoint.blue": "failed"}))
    (step,) = plan.steps
    assert step.kind is StepKind.ROLLOUT
    assert step.description == (
        "rolling update of deployment my-endpoint/blue (all again: the last operation failed): "
        "1 instance in 1 batch of 1"
    )

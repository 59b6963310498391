"""The provider contract (providers/base.py), run against every provider: fake, local (+ docker).

Each test takes the ``provider`` fixture (a ``Harness`` around one provider in a temporary
project) and drives it the way the engine does: requests built from canonical attributes, outputs
recorded, ``observe`` trusted to tell what exists.
"""

from __future__ import annotations

import json
import time

import pytest

from reconciler.model.errors import ProviderError
from reconciler.plan.provider import EndpointToken, Keys, Observation
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource
from tests.requests import counted, routed

from .conftest import Harness

BLUE = "deployment.ep.blue"


def observed_count(obs: Observation, default: int) -> int:
    return int(obs.attributes.get("instance_count", default))


def test_create_then_observe_round_trip(provider: Harness) -> None:
    made = provider.stack(count=1)
    for address, res in made.items():
        obs = provider.provider.observe(res)
        assert obs.exists, (address, obs.problems)
        for key, value in obs.attributes.items():  # what a provider reports uses the canonical shape
            assert key in res.attributes, (address, key)
            if key not in ("traffic", "mirror_traffic"):
                assert value == res.attributes[key], (address, key, value)
    ep = provider.provider.observe(made["endpoint.ep"])
    assert ep.attributes.get("traffic", {}) == {}  # created without traffic
    assert observed_count(provider.provider.observe(made[BLUE]), 1) == 1
    assert "scoring_uri" in made["endpoint.ep"].outputs


def test_scale_up_and_down(provider: Harness) -> None:
    provider.stack(count=1)
    request = provider.deployment(count=2)
    provider.record(request, provider.provider.scale(counted(request, 2)))
    assert observed_count(provider.provider.observe(provider.recorded[BLUE]), 2) == 2
    request = provider.deployment(count=1)
    provider.record(request, provider.provider.scale(counted(request, 1)))
    obs = provider.provider.observe(provider.recorded[BLUE])
    assert obs.exists and observed_count(obs, 1) == 1 and obs.problems == []


def test_roll_batches_replace_instances_and_are_idempotent(provider: Harness) -> None:
    provider.stack(count=2)
    before = provider.recorded[BLUE].outputs.get("instances")
    request = provider.deployment(count=2, release="v2")
    for index in (1, 2):
        provider.record(request, provider.provider.roll_batch(request, Batch(index=index, size=1)))
    after = provider.recorded[BLUE].outputs.get("instances")
    assert after != before  # the instances were replaced
    obs = provider.provider.observe(provider.recorded[BLUE])
    assert obs.exists and observed_count(obs, 2) == 2
    assert obs.attributes.get("environment_variables", {"RELEASE": "v2"}) == {"RELEASE": "v2"}
    # resuming after a crash: instances already at the desired configuration are not replaced again
    provider.record(request, provider.provider.roll_batch(request, Batch(index=2, size=1)))
    assert provider.recorded[BLUE].outputs.get("instances") == after


def test_set_routing_round_trip(provider: Harness) -> None:
    made = provider.stack(count=1, names=("blue", "green"))
    ep = made["endpoint.ep"]
    request = provider.request("endpoint", "ep", ep.address, ep.attributes)
    cases = [({"blue": 100}, {}), ({"blue": 50, "green": 50}, {}), ({"blue": 100}, {"green": 10}), ({}, {})]
    for traffic, mirror in cases:
        provider.outputs_seen.append(provider.provider.set_routing(routed(request, traffic, mirror)))
        obs = provider.provider.observe(ep)
        assert obs.exists
        assert obs.attributes.get("traffic", {}) == traffic
        assert obs.attributes.get("mirror_traffic", {}) == mirror


def test_update_endpoint_in_place_keeps_traffic(provider: Harness) -> None:
    made = provider.stack(count=1)
    ep = made["endpoint.ep"]
    provider.provider.set_routing(routed(provider.request("endpoint", "ep", ep.address, ep.attributes), {"blue": 100}, {}))
    attrs = {**ep.attributes, "tags": {"team": "ml"}, "description": "updated"}
    provider.record(
        provider.request("endpoint", "ep", ep.address, attrs),
        provider.provider.update(provider.request("endpoint", "ep", ep.address, attrs)),
    )
    obs = provider.provider.observe(provider.recorded["endpoint.ep"])
    assert obs.exists and obs.attributes.get("traffic", {"blue": 100}) == {"blue": 100}


def test_objects_left_as_recorded_are_settled(provider: Harness) -> None:
    # Observation.unsettled is optional, but never a false alarm: a plan would repair what is fine
    made = provider.stack(count=2, names=("blue", "green"))
    ep = made["endpoint.ep"]
    provider.provider.set_routing(routed(provider.request("endpoint", "ep", ep.address, ep.attributes), {"blue": 70, "green": 30}, {}))
    request = provider.deployment(count=2, release="v2")
    for index in (1, 2):
        provider.record(request, provider.provider.roll_batch(request, Batch(index=index, size=1)))
    for address, res in provider.recorded.items():
        assert provider.provider.observe(res).unsettled == [], address


def test_create_again_after_an_interrupted_create_keeps_one_object(provider: Harness) -> None:
    # An apply killed during a create records only its intent; the next apply creates again (with
    # the same request): whatever the first create made is kept or replaced, never doubled.
    made = provider.stack(count=2)
    for address in ("endpoint.ep", BLUE):
        res = made[address]
        request = provider.request(res.type, res.name, address, res.attributes)
        provider.record(request, provider.provider.create(request))
    obs = provider.provider.observe(provider.recorded[BLUE])
    assert obs.exists and observed_count(obs, 2) == 2 and obs.unsettled == []
    assert provider.provider.observe(provider.recorded["endpoint.ep"]).unsettled == []


def test_scale_to_the_count_it_has_is_a_repair_that_changes_nothing(provider: Harness) -> None:
    # the planner's repair of an interrupted operation scales a deployment to its count
    provider.stack(count=2)
    before = provider.recorded[BLUE].outputs.get("instances")
    request = provider.deployment(count=2)
    provider.record(request, provider.provider.scale(counted(request, 2)))
    assert provider.recorded[BLUE].outputs.get("instances") == before
    obs = provider.provider.observe(provider.recorded[BLUE])
    assert observed_count(obs, 2) == 2 and obs.unsettled == []


def test_delete_then_observe_says_gone(provider: Harness) -> None:
    made = provider.stack(count=1)
    for address in (BLUE, "endpoint.ep", "model.m:1"):
        provider.provider.delete(made[address])
        obs = provider.provider.observe(made[address])
        assert obs.exists is False, (address, obs)
        provider.provider.delete(made[address])  # deleting what is gone is not an error


def test_delete_of_something_never_created_is_not_an_error(provider: Harness) -> None:
    for request in (provider.deployment(), provider.endpoint("never"), provider.model()):
        ghost = StateResource(
            address=request.address,
            type=request.type,
            name=request.name,  # type: ignore[arg-type]
            provider=provider.kind,
            attributes=request.attributes,
        )
        provider.provider.delete(ghost)
        assert provider.provider.observe(ghost).exists is False


def test_secrets_never_appear_in_outputs(provider: Harness) -> None:
    made = provider.stack(count=1)
    ep = made["endpoint.ep"]
    provider.outputs_seen.append(
        provider.provider.set_routing(routed(provider.request("endpoint", "ep", ep.address, ep.attributes), {"blue": 100}, {}))
    )
    keys = provider.provider.credentials(ep)
    assert isinstance(keys, Keys) and keys.primary_key and keys.secondary_key
    assert keys.primary_key != keys.secondary_key
    observed = [provider.provider.observe(r).outputs for r in made.values()]
    text = json.dumps([provider.outputs_seen, observed, [r.attributes for r in made.values()]], default=str)
    assert keys.primary_key not in text and keys.secondary_key not in text


def test_an_aml_token_endpoint_gives_tokens_not_keys(provider: Harness) -> None:
    """``auth_mode: aml_token``: ``credentials()`` is a fresh token in Azure's ``EndpointAuthToken`` shape
    (never a key, never a signing key, in no output); back to ``key``, it is the keys again."""
    request = provider.endpoint()
    request.attributes["auth_mode"] = "aml_token"
    ep = provider.create(request)
    assert provider.provider.observe(ep).attributes.get("auth_mode", "aml_token") == "aml_token"
    first, second = provider.provider.credentials(ep), provider.provider.credentials(ep)
    assert isinstance(first, EndpointToken) and isinstance(second, EndpointToken)
    assert first.bearer == first.access_token and first.access_token != second.access_token  # new each time
    assert first.token_type == "Bearer" and first.scoring_uri
    assert time.time() < first.refresh_after_time_utc < first.expiry_time_utc
    assert list(first.as_azure()) == ["accessToken", "expiryTimeUtc", "refreshAfterTimeUtc", "tokenType"]
    observed = [provider.provider.observe(ep).outputs, provider.outputs_seen, ep.attributes]
    assert first.access_token not in json.dumps(observed, default=str)
    attrs = {**ep.attributes, "auth_mode": "key"}
    provider.record(provider.request("endpoint", "ep", ep.address, attrs),
                    provider.provider.update(provider.request("endpoint", "ep", ep.address, attrs)))
    keys = provider.provider.credentials(provider.recorded["endpoint.ep"])
    assert isinstance(keys, Keys) and keys.bearer == keys.primary_key


def test_logs_are_lines_of_text(provider: Harness) -> None:
    made = provider.stack(count=1)
    lines = provider.provider.logs(made[BLUE], tail=10)
    assert isinstance(lines, list) and all(isinstance(line, str) for line in lines)
    assert len(lines) <= 10


def test_errors_are_provider_errors(provider: Harness) -> None:
    """What leaves a provider is a ``ProviderError``, never an SDK's or the standard library's."""
    request = provider.endpoint("never")
    ghost = StateResource(
        address=request.address,
        type="endpoint",
        name="never",
        provider=provider.kind,
        attributes=request.attributes,
    )
    with pytest.raises(ProviderError):
        provider.provider.credentials(ghost)

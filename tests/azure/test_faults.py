"""The Azure provider's error paths, each against the emulator: throttling, conflicts, transient
5xx, dropped connections, failed and timed-out operations, bodies ARM refuses, missing
credentials. What leaves the provider is always a ``ProviderError`` with a clear message, of the
kind (retryable or permanent) the engine needs, and never a secret."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from providers.azure.arm import ArmError, ArmRetryableError, OperationFailed, OperationTimeout
from reconciler.model.errors import PermanentError, ProviderError, RetryableError
from reconciler.plan.provider import ApplyRequest
from tests.azure.emulator import Emulator
from tests.contract.conftest import Harness
from tests.requests import counted, routed

pytestmark = pytest.mark.azure


@pytest.fixture
def harness(make_provider: Callable[..., Any], tmp_path: Path) -> Harness:
    provider = make_provider()
    return Harness("azure", provider, Path(provider.context.project_root))


def _with_events(request: ApplyRequest) -> tuple[ApplyRequest, list[str]]:
    lines: list[str] = []
    return dataclasses.replace(request, on_event=lines.append), lines


def _base(h: Harness) -> None:
    for r in (h.environment(), h.model(), h.endpoint()):
        h.create(r)


def test_a_failed_create_carries_azures_error_and_leaves_nothing(harness: Harness, arm: Emulator) -> None:
    _base(harness)
    arm.fault("PUT", r"/deployments/blue$", kind="fail", code="ResourceNotReady",
              message="User container has crashed or terminated", logs=["Traceback (most recent call last):",
                                                                          "ModuleNotFoundError: No module named 'sklearn'"])
    request, lines = _with_events(harness.deployment())
    with pytest.raises(PermanentError) as caught:
        harness.provider.create(request)
    assert "ended Failed: ResourceNotReady: User container has crashed or terminated" in str(caught.value)
    assert caught.value.detail[-1] == "ModuleNotFoundError: No module named 'sklearn'"
    assert any("Failed" in line and "deleting it" in line for line in lines)
    assert arm.deployment("ep", "blue") is None  # a failed create leaves nothing (the contract)
    assert harness.provider.observe(harness.record(request, {})).exists is False


def test_an_operation_past_its_timeout_is_a_clear_error_and_the_next_plan_reads_the_truth(
        harness: Harness, arm: Emulator) -> None:
    _base(harness)
    harness.create(harness.deployment())
    arm.fault("PATCH", r"/deployments/blue$", kind="hang", timeout="PT1S")
    request, lines = _with_events(harness.deployment(count=3))
    with pytest.raises(OperationTimeout) as caught:
        harness.provider.scale(counted(request, 3))
    assert "past its deadline (x-ms-async-operation-timeout PT1S)" in str(caught.value)
    assert sum("InProgress (poll" in line for line in lines) >= 2  # it polled until the deadline
    arm.release()  # Azure gives up on it: Canceled
    obs = harness.provider.observe(harness.recorded["deployment.ep.blue"])
    assert obs.exists and obs.problems == ["its provisioning state is Canceled"]


def test_throttling_is_retried_by_azure_core_then_a_retryable_error(harness: Harness, arm: Emulator) -> None:
    _base(harness)
    arm.fault("PUT", r"/deployments/blue$", status=429, code="TooManyRequests", message="slow down",
              retry_after="0.02", times=2)
    request, lines = _with_events(harness.deployment())
    harness.create(request)  # two 429s, then accepted
    assert sum("HTTP 429" in line and "azure-core retries it" in line for line in lines) == 2
    arm.fault("PATCH", r"/deployments/blue$", status=429, code="TooManyRequests", message="slow down",
              retry_after="0.02", times=50)
    with pytest.raises(ArmRetryableError) as caught:  # azure-core's retries spent: the engine's turn
        harness.provider.scale(counted(harness.deployment(count=2), 2))
    assert caught.value.status == 429 and caught.value.delay == pytest.approx(0.02)
    assert "TooManyRequests: slow down" in str(caught.value)


@pytest.mark.parametrize("status", [500, 503])
def test_transient_server_errors_are_retried(harness: Harness, arm: Emulator, status: int) -> None:
    _base(harness)
    arm.fault("PUT", r"/deployments/blue$", status=status, code="ServiceUnavailable", times=2)
    request, lines = _with_events(harness.deployment())
    harness.create(request)
    assert sum(f"HTTP {status}" in line for line in lines) == 2
    assert len(arm.calls("PUT", r"/deployments/blue$")) == 3


def test_a_conflict_is_waited_out_and_then_reported(harness: Harness, arm: Emulator, make_provider: Callable[..., Any]) -> None:
    _base(harness)
    arm.fault("PUT", r"/onlineendpoints/ep$", status=409, code="Conflict", message="busy", times=2)
    request, lines = _with_events(harness.endpoint())
    harness.provider.update(request)
    assert sum("HTTP 409 Conflict (busy); another operation is running, waiting" in line for line in lines) == 2
    impatient = make_provider(conflict_wait=0.1)
    arm.fault("PUT", r"/onlineendpoints/ep$", status=409, code="Conflict", message="busy", times=10)
    with pytest.raises(RetryableError) as caught:
        impatient.update(harness.endpoint())
    assert "HTTP 409 Conflict: busy" in str(caught.value)


def test_a_dropped_connection_is_retried(harness: Harness, arm: Emulator) -> None:
    _base(harness)
    arm.fault("PUT", r"/deployments/blue$", kind="drop", times=1)
    request, lines = _with_events(harness.deployment())
    harness.create(request)
    assert any("connection failed" in line and "azure-core retries it" in line for line in lines)
    assert arm.deployment("ep", "blue") is not None


def test_the_emulator_refuses_unknown_and_mistyped_properties(harness: Harness, arm: Emulator) -> None:
    _base(harness)
    client = harness.provider.arm  # type: ignore[attr-defined]
    path = harness.provider.deployment_path("ep", "x")  # type: ignore[attr-defined]
    body = {"location": "eastus", "sku": {"name": "Default", "capacity": 1},
            "properties": {"endpointComputeType": "Managed", "instanceCount": 2,
                           "requestSettings": {"requestTimeout": 5000}}}
    with pytest.raises(ArmError) as caught:
        client.lro("PUT", path, body)
    message = str(caught.value)
    assert caught.value.status == 400 and caught.value.code == "InvalidRequestContent"
    assert "properties.instanceCount: the resource model has no such property" in message
    assert "properties.requestSettings.requestTimeout: expected an ISO 8601 duration" in message


def test_no_credential_is_a_clear_error_listing_what_was_tried(arm: Emulator, make_provider: Callable[..., Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    monkeypatch.delenv("IDENTITY_HEADER")
    # the managed identity probe would go to the instance metadata service: keep it on loopback
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("PATH", "/nonexistent")  # no az, azd or pwsh to ask
    provider = make_provider()
    with pytest.raises(PermanentError) as caught:
        provider.capacity()
    message = str(caught.value)
    assert "no Azure credential could be used" in message
    report = message.split("Its report:", 1)[1]  # azure-identity's own account of each attempt
    for tried in ("EnvironmentCredential", "ManagedIdentityCredential", "AzureCliCredential"):
        assert tried in report
    assert not arm.requests  # nothing reached ARM without a token


def test_errors_leaving_the_provider_are_provider_errors_without_secrets(harness: Harness, arm: Emulator) -> None:
    _base(harness)
    arm.fault("PUT", r"/deployments/blue$", status=400, code="BadArgument", message="nope")
    with pytest.raises(ProviderError) as caught:
        harness.create(harness.deployment())
    assert not isinstance(caught.value, RetryableError)
    text = str(caught.value)
    assert "HTTP 400 BadArgument: nope" in text
    for token in arm.tokens:
        assert token not in text
    assert isinstance(caught.value, ArmError) and not isinstance(caught.value, OperationFailed)


def test_debug_logging_carries_no_token_key_or_sas(harness: Harness, arm: Emulator,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """With every logger at DEBUG (azure-core's HTTP logging, azure-identity, azure-storage-blob),
    a whole create, routing, keys and logs cycle logs no bearer token, endpoint key or SAS."""
    caplog.set_level("DEBUG")
    made = harness.stack(count=1)
    ep = made["endpoint.ep"]
    harness.provider.set_routing(routed(harness.request("endpoint", "ep", ep.address, ep.attributes), {"blue": 100}, {}))
    keys = harness.provider.credentials(ep)
    harness.provider.logs(made["deployment.ep.blue"])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "onlineEndpoints/ep" in text  # the HTTP logging did run
    for secret in [keys.primary_key, keys.secondary_key, *arm.tokens]:
        assert secret not in text
    assert "sig=" not in text.replace("sig=REDACTED", "")

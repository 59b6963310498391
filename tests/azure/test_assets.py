"""Assets in the emulated workspace: uploads to Azurite through the pending-upload flow, once per
content digest, immutable versions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.model.errors import PermanentError
from tests.azure.emulator import Emulator
from tests.azure.fixtures import shared_azurite
from tests.contract.conftest import Harness, tree_digest

pytestmark = pytest.mark.azure


@pytest.fixture
def harness(make_provider: Callable[..., Any]) -> Harness:
    provider = make_provider()
    return Harness("azure", provider, Path(provider.context.project_root))


def test_model_files_land_in_blob_storage_and_are_registered_once(harness: Harness, arm: Emulator) -> None:
    (harness.root / "model" / "sub").mkdir(parents=True)
    (harness.root / "model" / "sub" / "w.bin").write_bytes(b"\x00\x01")
    model = harness.create(harness.model())
    uri = model.outputs["model_uri"]
    assert shared_azurite().blobs(uri) == {"sub/w.bin": b"\x00\x01", "weights.txt": b"42\n"}
    assert len(arm.calls("POST", "models/m/versions/1/startPendingUpload")) == 1
    harness.provider.create(harness.model())  # again (a resumed apply): nothing uploaded twice
    assert len(arm.calls("POST", "startPendingUpload")) == 1


def test_a_registered_version_with_other_content_is_refused(harness: Harness, arm: Emulator) -> None:
    harness.create(harness.model())
    (harness.root / "model" / "bias.txt").write_text("7\n")  # new content, same version
    changed = harness.model()
    assert changed.attributes["content_digest"] != harness.recorded["model.m:1"].attributes["content_digest"]
    with pytest.raises(PermanentError) as caught:
        harness.provider.create(changed)
    assert "asset versions are immutable: bump the version" in str(caught.value)


def test_deployments_sharing_a_code_folder_upload_it_once_even_in_parallel(harness: Harness, arm: Emulator) -> None:
    for r in (harness.environment(), harness.model(), harness.endpoint()):
        harness.create(r)
    errors: list[BaseException] = []

    def create(name: str) -> None:
        try:
            harness.provider.create(harness.deployment(name))
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in ("blue", "green")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    code = f"codes/{tree_digest(harness.root / 'code').removeprefix('sha256:')}/versions/1"
    assert len(arm.calls("POST", f"{code}/startPendingUpload")) == 1
    assert [c["status"] for c in arm.calls("PUT", f"{code}$")] == [201]
    assert arm.deployment("ep", "blue") and arm.deployment("ep", "green")


def test_a_model_at_a_uri_is_registered_with_that_uri_and_nothing_uploaded(harness: Harness, arm: Emulator) -> None:
    request = harness.model()
    request.attributes["path"] = "azureml://datastores/workspaceblobstore/paths/models/m/"
    harness.create(request)
    [put] = arm.calls("PUT", "models/m/versions/1$")
    assert put["body"]["properties"]["modelUri"] == "azureml://datastores/workspaceblobstore/paths/models/m/"
    assert not arm.calls("POST", "startPendingUpload")


def test_a_registered_code_asset_is_named_and_latest_resolved_when_sent(harness: Harness, arm: Emulator) -> None:
    harness.stack()
    ws = arm.workspace_path
    for version in ("1", "2"):  # registered by someone else, before recon runs
        arm.resources[f"{ws}/codes/shared-code/versions/{version}".lower()] = {
            "id": f"{ws}/codes/shared-code/versions/{version}", "properties": {"codeUri": "https://x/y"}}
    for ref, expected in (("azureml:shared-code:1", f"{ws}/codes/shared-code/versions/1"),
                          ("azureml:shared-code@latest", f"{ws}/codes/shared-code/versions/2"),
                          ("azureml://registries/reg/codes/c/versions/3", "azureml://registries/reg/codes/c/versions/3")):
        request = harness.deployment("blue")
        request.attributes["code"] = {"asset": ref}
        harness.provider.update(request)
        put = arm.calls("PUT", "deployments/blue$")[-1]
        assert put["body"]["properties"]["codeConfiguration"]["codeId"] == expected, ref
    uploads = len(arm.calls("POST", "startPendingUpload"))
    request = harness.deployment("blue")
    request.attributes["code"] = {"asset": "azureml:missing-code@latest"}
    with pytest.raises(PermanentError) as caught:
        harness.provider.update(request)
    assert "no code asset 'missing-code'" in str(caught.value)
    assert len(arm.calls("POST", "startPendingUpload")) == uploads  # a registered asset is never uploaded

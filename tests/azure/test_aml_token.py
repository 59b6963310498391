"""``auth_mode: aml_token`` on Azure (the emulated workspace), through the real ``recon`` command:
``recon keys`` prints what the endpoint's ``token`` action answers (``get-credentials``' shape) and
``recon invoke`` scores with a token it asks ARM for each time, never a key."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.azure.conftest import Recon, write_recon_yaml
from tests.azure.emulator import Emulator

pytestmark = pytest.mark.azure
QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def _project(tmp_path: Path, arm: Emulator) -> Path:
    root = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, root, ignore=shutil.ignore_patterns(".recon"))
    endpoint = root / "endpoint.yml"
    endpoint.write_text(endpoint.read_text().replace("auth_mode: key", "auth_mode: aml_token"))
    write_recon_yaml(root, arm)
    return root


def _score(arm: Emulator, bearer: str) -> int:
    status, _, _ = arm.handle("POST", "/inference/my-endpoint/score", {"authorization": f"Bearer {bearer}"}, {})
    return status


def test_keys_and_invoke_use_the_token_action(arm: Emulator, make_recon: Callable[[Path], Recon],
                                              tmp_path: Path) -> None:
    root = _project(tmp_path, arm)
    recon = make_recon(root)
    recon("apply", "--auto-approve")
    assert arm.endpoint("my-endpoint")["properties"]["authMode"] == "AMLToken"  # type: ignore[index]
    doc = json.loads(recon("keys", "my-endpoint").stdout)
    assert list(doc) == ["accessToken", "expiryTimeUtc", "refreshAfterTimeUtc", "tokenType"]
    assert doc["tokenType"] == "Bearer" and doc["expiryTimeUtc"] > doc["refreshAfterTimeUtc"] > 0
    assert doc["accessToken"] in arm.data_tokens["my-endpoint"]  # ARM's own token, as ARM answered it
    assert arm.calls("POST", r"/onlineendpoints/my-endpoint/token$") and not arm.calls("POST", r"/listkeys$")
    assert _score(arm, doc["accessToken"]) == 200
    assert _score(arm, arm.keys["my-endpoint"]["primaryKey"]) == 401  # an AMLToken endpoint takes no key

    request = root / "sample-request.json"
    answer = recon("invoke", "my-endpoint", "--request-file", str(request))
    assert json.loads(answer.stdout)["deployment"] == "blue"
    # every token so far expires: invoke asks for a new one, and the expired one is refused
    arm.expire_tokens("my-endpoint")
    assert _score(arm, doc["accessToken"]) == 401
    again = recon("invoke", "my-endpoint", "--request-file", str(request))
    assert json.loads(again.stdout)["deployment"] == "blue"
    assert len(arm.calls("POST", r"/onlineendpoints/my-endpoint/token$")) == 3

    state = (root / ".recon" / "state.json").read_text()
    said = "\n".join(recon.outputs[:2] + recon.outputs[4:])  # all but keys' own output
    for token in arm.data_tokens["my-endpoint"]:
        assert token not in state and token not in said


def test_a_key_endpoint_has_no_token(arm: Emulator, make_recon: Callable[[Path], Recon], tmp_path: Path) -> None:
    root = _project(tmp_path, arm)
    endpoint = root / "endpoint.yml"
    endpoint.write_text(endpoint.read_text().replace("auth_mode: aml_token", "auth_mode: key"))
    recon = make_recon(root)
    recon("apply", "--auto-approve")
    assert set(json.loads(recon("keys", "my-endpoint").stdout)) == {"primaryKey", "secondaryKey", "scoring_uri"}
    assert not arm.calls("POST", r"/token$")
    status, _, body = arm.handle("POST", f"{arm.workspace_path}/onlineEndpoints/my-endpoint/token?api-version="
                                 "2024-04-01", {"authorization": f"Bearer {next(iter(arm.tokens))}"}, None)
    assert status == 400 and "AMLToken" in body["error"]["message"]

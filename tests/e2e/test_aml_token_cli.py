"""``auth_mode: aml_token`` through the real ``recon`` command, on the local provider (processes) and the
Docker provider (a real engine): the router takes the tokens ``recon keys`` prints (Azure's
``get-credentials`` shape) and ``recon invoke`` sends, and refuses the keys, expired tokens and tokens
changed or signed by anyone else, with 401. ``aad_token`` is refused at plan time."""

from __future__ import annotations

import base64
import http.client
import json
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.shared.endpoint_tokens import issue
from tests.docker.engine import OVERRIDES, remove_labelled, require_engine

SCORE_PY = """\
import json


def init():
    pass


def run(raw_data):
    return {"echo": json.loads(raw_data)}
"""
ENDPOINT = """\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json
name: tok-ep
auth_mode: {mode}
traffic:
  blue: 100
"""
DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
name: blue
endpoint_name: tok-ep
model:
  path: ./model
code_configuration:
  code: ./src
  scoring_script: score.py
environment:
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
instance_type: Standard_DS3_v2
instance_count: 1
"""
AZ_FIELDS = ["accessToken", "expiryTimeUtc", "refreshAfterTimeUtc", "tokenType"]


def _project(root: Path, kind: str, mode: str = "aml_token", **settings: Any) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(SCORE_PY)
    (root / "model").mkdir()
    (root / "model" / "weights.txt").write_text("42\n")
    (root / "endpoint.yml").write_text(ENDPOINT.format(mode=mode))
    (root / "blue.yml").write_text(DEPLOYMENT)
    (root / "request.json").write_text('{"data": [1, 2]}')
    provider: dict[str, Any] = {"kind": kind, **settings}
    if kind == "local":
        provider["reuse_host_packages"] = True
    else:
        provider["image_overrides"] = dict(OVERRIDES)
    (root / "recon.yaml").write_text(yaml.safe_dump({"workspace": "tokens", "provider": provider}))
    return root


def _post(uri: str, bearer: str | None) -> tuple[int, bytes]:
    host, port = uri.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {bearer}"} if bearer else {})}
    conn.request("POST", "/score", '{"x": 1}', headers)
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out


def _as_azure_ai_ml_reads_it(doc: dict[str, Any]) -> None:
    """azure-ai-ml (the SDK `az ml` runs) reads ``doc`` as the token action's answer, field for field."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its experimental, deprecation and marshmallow warnings
        from azure.ai.ml._restclient.arm_ml_service.models import EndpointAuthToken as Rest
        from azure.ai.ml.entities import EndpointAuthToken
    rest = Rest(doc)
    assert rest.as_dict() == doc
    entity = EndpointAuthToken._from_rest_object(rest)
    assert entity.access_token == doc["accessToken"] and entity.token_type == "Bearer"
    assert (entity.expiry_time_utc, entity.refresh_after_time_utc) == (doc["expiryTimeUtc"], doc["refreshAfterTimeUtc"])


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        require_engine()
    return str(request.param)


def test_aml_token_endpoint_takes_tokens_only(tmp_path: Path, make_recon: Any, kind: str) -> None:
    root = _project(tmp_path / "project", kind)
    recon = make_recon(root)
    try:
        applied = recon("apply", "--auto-approve")
        printed = recon("keys", "tok-ep").stdout
        doc = json.loads(printed)
        # what `az ml online-endpoint get-credentials` prints: the REST EndpointAuthToken, in its order
        assert list(doc) == AZ_FIELDS and doc["tokenType"] == "Bearer"
        _as_azure_ai_ml_reads_it(doc)
        claims = _claims(doc["accessToken"])
        assert claims["aud"] == "tok-ep" and doc["expiryTimeUtc"] == claims["exp"] == claims["iat"] + 24 * 3600
        assert doc["refreshAfterTimeUtc"] == claims["iat"] + 12 * 3600

        answer = recon("invoke", "tok-ep", "--request-file", "request.json")
        assert json.loads(answer.stdout) == {"echo": {"data": [1, 2]}}

        state = json.loads(recon("state", "pull").stdout)
        uri = state["resources"]["endpoint.tok-ep"]["outputs"]["scoring_uri"]
        keys = json.loads((root / ".recon" / "keys" / "tok-ep.json").read_text())
        assert _post(uri, doc["accessToken"])[0] == 200
        status, body = _post(uri, keys["primaryKey"])
        assert status == 401 and b"token" in body
        assert _post(uri, keys["secondaryKey"])[0] == 401
        assert _post(uri, None)[0] == 401
        # validly signed, but expired an hour ago; the same claims made to live longer; another key's
        expired = issue(keys["tokenSigningKey"], "tok-ep", uri, 3600, now=time.time() - 7200).access_token
        assert _post(uri, expired)[0] == 401
        head, _, sig = doc["accessToken"].split(".")
        longer = base64.urlsafe_b64encode(json.dumps({**claims, "exp": claims["exp"] + 10**6}).encode())
        assert _post(uri, f"{head}.{longer.rstrip(b'=').decode()}.{sig}")[0] == 401
        assert _post(uri, issue("someone-elses-key", "tok-ep", uri, 3600).access_token)[0] == 401

        # no secret anywhere but where the user asked for the token
        said = applied.stdout + applied.stderr + json.dumps(state) + (root / ".recon" / "state.json").read_text()
        for secret in (keys["primaryKey"], keys["secondaryKey"], keys["tokenSigningKey"]):
            assert secret not in said + printed + answer.stdout + answer.stderr
        assert "eyJ" not in said  # no token in apply's output or the state

        # back to keys: the keys are taken again and tokens are not
        (root / "endpoint.yml").write_text(ENDPOINT.format(mode="key"))
        recon("apply", "--auto-approve")
        back = recon.keys("tok-ep")
        assert set(back) == {"primaryKey", "secondaryKey", "scoring_uri"}
        assert _post(uri, back["primaryKey"])[0] == 200
        assert _post(uri, doc["accessToken"])[0] == 401
    finally:
        recon("destroy", "--auto-approve", check=False)
        if kind == "docker":
            remove_labelled((root / ".recon").resolve())


def test_token_lifetime_is_a_provider_setting(tmp_path: Path, make_recon: Any) -> None:
    root = _project(tmp_path / "project", "local", token_lifetime_s=120)
    recon = make_recon(root)
    recon("apply", "--auto-approve")
    doc = recon.keys("tok-ep")
    claims = _claims(str(doc["accessToken"]))
    assert claims["exp"] - claims["iat"] == 120 and int(doc["refreshAfterTimeUtc"]) == claims["iat"] + 60
    good = (root / "recon.yaml").read_text()
    (root / "recon.yaml").write_text(yaml.safe_dump({"provider": {"kind": "local", "token_lifetime_s": "1d"}}))
    try:
        bad = recon("keys", "tok-ep", check=False)
    finally:  # the fixture's destroy needs a recon.yaml it can read: the endpoint's processes must not outlive the test
        (root / "recon.yaml").write_text(good)
    assert bad.returncode == 1 and "provider.token_lifetime_s" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("kind", ["local", "docker", "kubernetes"])
def test_aad_token_is_refused_at_plan_time(tmp_path: Path, make_recon: Any, kind: str) -> None:
    root = _project(tmp_path / "project", "local", mode="aad_token")
    (root / "recon.yaml").write_text(yaml.safe_dump({"provider": {"kind": kind}}))
    done = make_recon(root)("validate", check=False)
    said = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in said, said
    assert "endpoint.yml:3" in said and "auth_mode" in said and f"the {kind} provider's router" in said
    assert "aml_token" in said and not (root / ".recon" / "state.json").exists()

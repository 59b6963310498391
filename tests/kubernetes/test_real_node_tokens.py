"""``auth_mode: aml_token`` on the test cluster's real node: the router pod takes the tokens ``recon keys``
prints and ``recon invoke`` sends (signed with the key in the endpoint's Secret), and refuses the keys,
expired tokens and tokens signed with another key, with 401; back to ``key``, the reverse."""

from __future__ import annotations

import base64
import http.client
import json
import time

import pytest

from providers.shared.endpoint_tokens import issue
from tests.kubernetes.conftest import Cluster
from tests.kubernetes.test_real_node import PortForward, Recon, sample  # noqa: F401 - the fixture

pytestmark = pytest.mark.kubernetes


def _post(port: int, bearer: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/score", '{"data": [[1, 2]]}', {"Authorization": f"Bearer {bearer}",
                                                         "Content-Type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    return status


def _wait_status(port: int, bearer: str, want: int, timeout: float = 90.0) -> None:
    """Until the router pods serve the table just applied (the kubelet syncs the mounted ConfigMap)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _post(port, bearer) == want:
            return
        time.sleep(0.5)
    raise AssertionError(f"never {want}")


def test_aml_token_on_the_real_node(sample: tuple[Recon, int], cluster: Cluster, namespace: str) -> None:  # noqa: F811
    recon, port = sample
    endpoint = recon.root / "kubernetes-endpoint.yml"
    keyed = endpoint.read_text() + "traffic:\n  blue: 100\n"
    endpoint.write_text(keyed.replace("auth_mode: Key", "auth_mode: aml_token"))
    recon("apply", "--auto-approve")
    secret = json.loads(cluster.kubectl("-n", namespace, "get", "secret", "my-endpoint-keys", "-o",
                                        "json").stdout)["data"]
    keys = json.loads(base64.b64decode(secret["keys.json"]))
    forward = PortForward(cluster, namespace, "my-endpoint-router", port)
    try:
        doc = json.loads(recon("keys", "my-endpoint").stdout)
        assert list(doc) == ["accessToken", "expiryTimeUtc", "refreshAfterTimeUtc", "tokenType"]
        answer = recon("invoke", "my-endpoint", "--request-file", str(recon.root / "sample-request.json"))
        assert json.loads(answer.stdout)["sums"] == [55, 55]
        assert _post(port, doc["accessToken"]) == 200
        assert _post(port, keys["primaryKey"]) == 401 and _post(port, keys["secondaryKey"]) == 401
        expired = issue(keys["tokenSigningKey"], "my-endpoint", "", 3600, now=time.time() - 7200).access_token
        assert _post(port, expired) == 401
        assert _post(port, issue("another-key", "my-endpoint", "", 3600).access_token) == 401
        endpoint.write_text(keyed)  # back to keys
        recon("apply", "--auto-approve")
        _wait_status(port, keys["primaryKey"], 200)
        assert _post(port, doc["accessToken"]) == 401
    finally:
        forward.close()

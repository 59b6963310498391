"""The router in its container keeps the data-path rules (issue 13, section 2): httptools mounted from
recon's own environment, strict parsing, the key on the headers, status behind the key, the endpoint's
router_limits. Real engine, real containers, raw sockets to the published port on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.docker import DockerProvider
from reconciler.plan.provider import ProviderContext
from tests.contract.conftest import Harness
from tests.docker.engine import OVERRIDES, remove_labelled, require_engine
from tests.requests import routed

pytestmark = pytest.mark.docker


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Harness, int, str]]:
    require_engine()
    root = tmp_path / "project"
    root.mkdir()
    context = ProviderContext(project_root=root, state_dir=root / ".recon", cache_dir=tmp_path / "cache",
                              workspace="docker-tests")
    settings = {"image_overrides": dict(OVERRIDES), "router_limits": {"endpoints": {"ep": {"max_body_bytes": 2000}}}}
    h = Harness("docker", DockerProvider(settings, context), root)
    try:
        made = h.stack(count=1)
        ep = made["endpoint.ep"]
        h.provider.set_routing(routed(h.request("endpoint", "ep", ep.address, ep.attributes), {"blue": 100}, {}))
        keys = h.provider.credentials(ep)
        port = int(keys.scoring_uri.split(":")[2].split("/")[0])
        yield h, port, keys.primary_key
    finally:
        h.teardown()
        remove_labelled((root / ".recon").resolve())


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def post(key: str, body: bytes) -> bytes:
    return (b"POST /score HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer %s\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (key.encode(), len(body), body))


def test_router_container_keeps_the_data_path_rules(served: tuple[Harness, int, str]) -> None:
    h, port, key = served
    assert status_of(raw(port, post(key, json.dumps({"n": 1}).encode()))) == 200
    assert status_of(raw(port, post(key, json.dumps({"pad": "x" * 3000}).encode()))) == 413
    no_key = raw(port, b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 99614720\r\n\r\n")
    assert status_of(no_key) == 401  # on the headers: not one body byte was sent
    status = raw(port, b"GET /-/router HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(status) == 401 and b"upstreams" not in status
    assert h.provider.observe(h.recorded["endpoint.ep"]).exists  # recon reads it with the key
    smuggled = raw(port, b"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
                   + b"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                   b"GET /-/router HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(smuggled) == 400 and smuggled.count(b"HTTP/1.1 ") == 1

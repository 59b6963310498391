"""The data path holds against clients without the key (issue 13, section 2): real hosts, a real router,
raw sockets on 127.0.0.1. Every limit is set small in the table so that each case is reached quickly."""

from __future__ import annotations

import json
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import PRIMARY, Proc, call, router_health

Host = Callable[..., Proc]
Router = Callable[..., tuple[Proc, Path]]
INSTANCE_KEY = "instance-key-abcdef0123456789"


@pytest.fixture
def instance_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "ep.instance.json"
    path.write_text(json.dumps({"instanceKey": INSTANCE_KEY}))
    path.chmod(0o600)
    return path


def dep(*hosts: Proc, **settings: Any) -> dict[str, Any]:
    return {"upstreams": [h.addr for h in hosts], **settings}


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection; everything the server sends until it closes (or times out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
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


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def keyed_pair(start_host: Host, start_router: Router, instance_key_file: Path) -> Iterator[tuple[Proc, Proc]]:
    blue = start_host("blue", args=["--key-file", str(instance_key_file)])
    router, _ = start_router({"blue": dep(blue)}, {"blue": 100},
                             extra={"instance_key_file": str(instance_key_file)})
    yield blue, router


@pytest.fixture
def pair(start_host: Host, start_router: Router, instance_key_file: Path) -> Iterator[tuple[Proc, Proc]]:
    """A plain host behind a router: what the router alone must do."""
    blue = start_host("blue")
    router, _ = start_router({"blue": dep(blue)}, {"blue": 100},
                             extra={"instance_key_file": str(instance_key_file)})
    yield blue, router


def test_instance_answers_its_router_only(keyed_pair: tuple[Proc, Proc]) -> None:
    blue, router = keyed_pair
    status, _, body = call(blue.port, {"x": 1}, key=None)  # straight to the instance: no answer
    assert status == 401 and b'"name"' not in body
    assert call(blue.port, {"x": 1}, key=PRIMARY)[0] == 401  # the endpoint's key is not the instance's
    assert call(blue.port, method="GET", path="/", key=None)[0] == 200  # liveness stays open
    status, _, body = call(router.port, {"x": 1})
    assert status == 200 and json.loads(body)["name"] == "blue"
    status, _, body = call(router.port, {"x": 1}, path="/score")
    assert INSTANCE_KEY not in body.decode()


def test_run_never_sees_the_instance_key(start_host: Host, start_router: Router, instance_key_file: Path,
                                         code_dir: Path) -> None:
    (code_dir / "score.py").write_text("def init():\n    pass\n\ndef run(raw_data, request_headers):\n"
                                       "    return {k.lower(): v for k, v in request_headers.items()}\n")
    blue = start_host("blue", args=["--key-file", str(instance_key_file)])
    router, _ = start_router({"blue": dep(blue)}, {"blue": 100}, extra={"instance_key_file": str(instance_key_file)})
    status, _, body = call(router.port, "{}")
    assert status == 200
    headers = json.loads(body)
    assert "x-recon-instance-key" not in headers and "authorization" not in headers


def test_status_needs_a_key(pair: tuple[Proc, Proc]) -> None:
    blue, router = pair
    status, _, body = call(router.port, method="GET", path="/-/router", key=None)
    assert status == 401 and str(blue.port).encode() not in body
    assert call(router.port, method="GET", path="/-/router", key="wrong")[0] == 401
    assert blue.addr in router_health(router.port)["deployments"]["blue"]["upstreams"]
    status, _, body = call(router.port, method="GET", path="/-/router", key=INSTANCE_KEY)
    assert status == 200 and blue.addr in body.decode()


def test_status_takes_the_instance_key_in_its_own_header(pair: tuple[Proc, Proc]) -> None:
    """What an API server's pod proxy lets through (it drops Authorization): x-recon-instance-key, for
    GET /-/router only; a wrong one is 401 whatever else comes with it."""
    blue, router = pair

    def get(path: str, headers: str) -> bytes:
        return raw(router.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())

    answer = get("/-/router", f"x-recon-instance-key: {INSTANCE_KEY}\r\n")
    assert status_of(answer) == 200 and blue.addr.encode() in answer
    assert status_of(get("/-/router", "x-recon-instance-key: wrong\r\n")) == 401
    assert status_of(get("/-/router", f"x-recon-instance-key: wrong\r\nAuthorization: Bearer {PRIMARY}\r\n")) == 401
    assert status_of(get("/score", f"x-recon-instance-key: {INSTANCE_KEY}\r\n")) == 401  # not a client key


def test_status_needs_the_instance_key_even_without_auth(start_host: Host, start_router: Router,
                                                         instance_key_file: Path) -> None:
    blue = start_host("blue", args=["--key-file", str(instance_key_file)])
    router, _ = start_router({"blue": dep(blue)}, {"blue": 100},
                             extra={"instance_key_file": str(instance_key_file), "auth_mode": "none"})
    assert call(router.port, {}, key=None)[0] == 200
    assert call(router.port, method="GET", path="/-/router", key=None)[0] == 401
    assert call(router.port, method="GET", path="/-/router", key=INSTANCE_KEY)[0] == 200


def test_401_on_the_headers_before_any_body(pair: tuple[Proc, Proc]) -> None:
    _, router = pair
    # 95 MB announced, not one byte sent: the answer comes anyway, and the connection is closed.
    answer = raw(router.port, b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 99614720\r\n\r\n")
    assert status_of(answer) == 401 and b"connection: close" in answer.lower()


def test_body_over_the_limit_is_413(start_host: Host, start_router: Router) -> None:
    blue = start_host("blue")
    router, _ = start_router({"blue": dep(blue)}, {"blue": 100}, extra={"limits": {"max_body_bytes": 1000}})
    assert call(router.port, {"pad": "x" * 900})[0] == 200
    assert call(router.port, {"pad": "x" * 1000})[0] == 413
    auth = f"Authorization: Bearer {PRIMARY}\r\n".encode()
    chunk = b"%x\r\n%s\r\n" % (600, b"y" * 600)
    answer = raw(router.port, b"POST /score HTTP/1.1\r\nHost: x\r\n" + auth + b"Transfer-Encoding: chunked\r\n\r\n"
                 + chunk + chunk + b"0\r\n\r\n")
    assert status_of(answer) == 413
    assert call(router.port, {"ok": 1})[0] == 200


def test_parallel_unauthenticated_large_posts_keep_rss_bounded(pair: tuple[Proc, Proc]) -> None:
    _, router = pair
    before = rss_kb(router.proc.pid)
    payload = b"z" * (1 << 20)
    answers: list[int] = []

    def flood() -> None:
        try:
            with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
                s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 99614720\r\n\r\n")
                for _ in range(95):
                    s.sendall(payload)
        except OSError:  # the router closed the connection after its 401: the rest is refused
            answers.append(1)

    threads = [threading.Thread(target=flood) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    grown_mb = (rss_kb(router.proc.pid) - before) / 1024
    assert grown_mb < 100, f"router RSS grew by {grown_mb:.0f} MB"
    assert len(answers) == 20
    assert call(router.port, {"x": 1})[0] == 200


@pytest.mark.parametrize("head", [
    b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n",
    b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
], ids=["cl-and-te", "two-cl", "te-not-chunked-last"])
def test_smuggling_shapes_are_400(pair: tuple[Proc, Proc], head: bytes) -> None:
    _, router = pair
    auth = f"Authorization: Bearer {PRIMARY}\r\n".encode()
    second = b"GET /-/router HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = raw(router.port, head.replace(b"Host: x\r\n", b"Host: x\r\n" + auth) + b"0\r\n\r\n" + second)
    assert status_of(answer) == 400
    assert answer.count(b"HTTP/1.1 ") == 1  # nothing after it was read as a second request


def test_slow_headers_are_cut_off(pair: tuple[Proc, Proc], tmp_path: Path) -> None:
    blue, router = pair
    table = tmp_path / "table.json"
    doc = json.loads(table.read_text())
    doc.update(version=2, limits={"header_timeout_ms": 3000})
    table.write_text(json.dumps(doc))
    deadline = time.monotonic() + 10
    while router_health(router.port)["version"] != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as s:
        sent = 0
        cut = False
        for byte in head:  # one byte every 2 s: 60 bytes would take two minutes
            try:
                s.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            sent += 1
            s.settimeout(2.0)
            try:
                got = s.recv(4096)
            except TimeoutError:
                continue
            cut = True
            assert got == b"" or status_of(got) == 408
            break
    assert cut and sent < len(head)


def test_idle_flood_does_not_starve_keyed_requests(start_host: Host, start_router: Router) -> None:
    # The router gets the usual 1024 descriptors; the flood is 1500 connections, the cap 100.
    blue = start_host("blue")
    router, _ = start_router({"blue": dep(blue)}, {"blue": 100}, extra={"limits": {"max_connections": 100}},
                             nofile=1024)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    idle: list[socket.socket] = []
    try:
        for i in range(1500):  # idle, or half a request line
            s = socket.create_connection(("127.0.0.1", router.port), timeout=5)
            if i % 2:
                s.sendall(b"POST /sco")
            idle.append(s)
        for _ in range(5):
            assert call(router.port, {"x": 1})[0] == 200
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connection_cap_answers_503_when_all_are_busy(
    start_host: Host, start_router: Router, tmp_path: Path
) -> None:
    release = tmp_path / "release"  # both requests are held until the test has seen the 503
    arrived = tmp_path / "arrived"
    slow = start_host("slow", workers=4, env={"HOLD_FILE": str(release), "ARRIVED_FILE": str(arrived)})
    router, _ = start_router({"slow": dep(slow, max_concurrent_requests_per_instance=4)}, {"slow": 100},
                             extra={"limits": {"max_connections": 2}})
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(call(router.port, {})[0])) for _ in range(2)]
    for t in threads:
        t.start()
    # Probe only once both requests are in flight: a connection that has not sent its request yet is
    # idle, and the router rightly closes the oldest idle connection for a new one.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(arrived.read_text().splitlines() if arrived.exists() else []) < 2:
        time.sleep(0.05)
    probe = f"GET /-/router HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PRIMARY}\r\n\r\n".encode()
    seen: list[int] = []
    deadline = time.monotonic() + 30  # a loaded CI machine: the two requests may take seconds to connect
    try:
        while time.monotonic() < deadline and 503 not in seen:  # 200 until both requests hold their connection
            seen.append(status_of(raw(router.port, probe + b"", timeout=1.0)))
    finally:
        release.touch()
    assert seen[-1] == 503 and set(seen) <= {0, 200, 503}  # 0: a probe read that timed out under load
    for t in threads:
        t.join(15)
    assert results == [200, 200]


def test_credentials_in_urls_are_not_logged(pair: tuple[Proc, Proc]) -> None:
    blue, router = pair
    secret = "leaky-query-secret-42"
    assert call(router.port, method="GET", path=f"/score?key={secret}&x=1&access_token={secret}")[0] == 200
    assert call(router.port, method="GET", path=f"/score?key={secret}", key=None)[0] == 401
    time.sleep(1.5)  # the router flushes its log every second
    for text in (router.log_text(), blue.log_text()):
        assert secret not in text and PRIMARY not in text and INSTANCE_KEY not in text
    assert "key=***" in router.log_text()

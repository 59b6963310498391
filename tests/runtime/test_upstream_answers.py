"""The router reads instances' answers with httptools' response parser: every framing an HTTP/1.1
server may use, and what it does with the connection after. The instance here is a raw socket server
on 127.0.0.1 that answers each path with fixed bytes and counts the connections it accepted."""

from __future__ import annotations

import socket
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from providers.shared.runtime import ROUTER_PACKAGE, router_archive, router_zipapp

from .conftest import Proc, call

Router = Callable[..., tuple[Proc, Path]]

ANSWERS: dict[str, tuple[bytes, bool]] = {  # path -> (bytes sent back, close the connection after)
    "/length": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", False),
    "/chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n"
                 b"4\r\nwiki\r\n6;ext=1\r\npedia \r\n0\r\nX-Trailer: dropped\r\n\r\n", False),
    "/until-close": (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body runs to the end", True),
    "/no-content": (b"HTTP/1.1 204 No Content\r\nX-Kind: empty\r\n\r\n", False),
    "/head": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Kind: head\r\n\r\n", False),
    "/interim": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    "/trailing": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE", False),
    "/close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
    "/error": (b"HTTP/1.1 500 Model Exploded\r\nContent-Length: 4\r\n\r\nboom", False),
    "/garbage": (b"this is no HTTP answer\r\n\r\n", False),
    "/truncated": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nnot a hundred bytes", True),
}


class CannedInstance:
    """Answers each request by its path (``ANSWERS``); keeps connections open unless told to close."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                length = next((int(v) for n, _, v in (h.partition(b":") for h in lines[1:])
                               if n.strip().lower() == b"content-length"), 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                answer, close = ANSWERS[lines[0].split(b" ")[1].decode()]
                conn.sendall(answer)
                if close:
                    return

    def close(self) -> None:
        self.stopping = True
        self.sock.close()


@pytest.fixture
def routed(start_router: Router) -> Iterator[tuple[CannedInstance, int]]:
    instance = CannedInstance()
    router, _ = start_router({"blue": {"upstreams": [f"127.0.0.1:{instance.port}"]}}, {"blue": 100})
    yield instance, router.port
    instance.close()


def through(port: int, path: str, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    return call(port, body=None if method in ("GET", "HEAD") else b"{}", path=path, method=method)


@pytest.mark.parametrize(("path", "status", "body", "header"), [
    ("/length", 200, b"hello", ("content-type", "text/plain")),
    ("/chunked", 200, b"wikipedia ", ("x-kind", "chunked")),
    ("/until-close", 200, b"the body runs to the end", ("content-type", "text/plain")),
    ("/no-content", 204, b"", ("x-kind", "empty")),
    ("/interim", 200, b"ok", ("azureml-model-deployment", "blue")),
])
def test_every_framing_of_an_answer_is_read_whole(routed: tuple[CannedInstance, int], path: str, status: int,
                                                  body: bytes, header: tuple[str, str]) -> None:
    _, port = routed
    got_status, headers, got_body = through(port, path)
    assert (got_status, got_body) == (status, body)
    assert headers[header[0]] == header[1]
    assert "x-trailer" not in headers and "transfer-encoding" not in headers


def test_keep_alive_answers_reuse_one_connection(routed: tuple[CannedInstance, int]) -> None:
    instance, port = routed
    for path in ("/length", "/chunked", "/no-content", "/length"):
        assert through(port, path)[0] in (200, 204)
    assert instance.accepted == 1


def test_a_head_answer_ends_with_its_headers_and_the_connection_serves_on(
        routed: tuple[CannedInstance, int]) -> None:
    instance, port = routed
    status, headers, body = through(port, "/head", method="HEAD")
    assert (status, headers["x-kind"], body) == (200, "head", b"")
    assert through(port, "/length")[2] == b"hello"
    assert instance.accepted == 1


@pytest.mark.parametrize("path", ["/trailing", "/close", "/until-close"])
def test_a_connection_not_fit_for_reuse_is_replaced(routed: tuple[CannedInstance, int], path: str) -> None:
    instance, port = routed
    assert through(port, path)[0] == 200
    assert through(port, "/length")[2] == b"hello"
    assert instance.accepted == 2


def test_an_error_answer_is_424_with_the_instances_status_and_reason(routed: tuple[CannedInstance, int]) -> None:
    _, port = routed
    status, headers, body = through(port, "/error")
    assert (status, body) == (424, b"boom")
    assert headers["ms-azureml-model-error-statuscode"] == "500"
    assert headers["ms-azureml-model-error-reason"] == "Model Exploded"


@pytest.mark.parametrize(("path", "says"), [("/garbage", "malformed answer"), ("/truncated", "closed the connection")])
def test_a_broken_answer_is_502(routed: tuple[CannedInstance, int], path: str, says: str) -> None:
    instance, port = routed
    status, _, body = through(port, path)
    assert status == 502 and says in body.decode(), body
    assert through(port, "/length")[2] == b"hello"  # a new connection serves the next request
    assert instance.accepted == 2


def test_the_archive_is_reproducible_and_holds_only_the_package(router_pyz: Path) -> None:
    names = zipfile.ZipFile(router_pyz).namelist()
    assert names == ["__main__.py", *sorted(f"router/{p.name}" for p in ROUTER_PACKAGE.glob("*.py"))]
    assert router_pyz.read_bytes() == router_archive() == router_archive.__wrapped__()  # built again
    before = router_pyz.stat().st_mtime_ns
    assert router_zipapp(router_pyz.parent) == router_pyz and router_pyz.stat().st_mtime_ns == before

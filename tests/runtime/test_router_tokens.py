"""``auth_mode: aml_token`` on the real router (its zip archive, real hosts): expiring tokens signed with
the endpoint's signing key are taken, the keys are not, and neither is any token that is expired,
tampered with, signed with another key, issued for another endpoint or not HS256 (docs/security.md)."""

from __future__ import annotations

import base64
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from providers.shared.endpoint_tokens import issue
from providers.shared.runtime.router import tokens

from .conftest import PRIMARY, SECONDARY, Proc, call, write_table

Router = Callable[..., tuple[Proc, Path]]
Host = Callable[..., Proc]
SIGNING = "signing-key-of-ep-0123456789abcdef"


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def token(now: float | None = None, lifetime: int = 3600, key: str = SIGNING, endpoint: str = "ep") -> str:
    return issue(key, endpoint, "", lifetime, now=now).access_token


def tampered_claims(good: str) -> str:
    """The same signature over claims that live a year longer."""
    head, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["exp"] += 365 * 24 * 3600
    return f"{head}.{_b64(claims)}.{sig}"


def unsigned(good: str) -> str:
    """``alg: none`` with the claims of a good token and no signature (the classic JWT forgery)."""
    body = good.split(".")[1]
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{body}."


@pytest.fixture
def token_router(start_host: Host, start_router: Router, keys_file: Path) -> tuple[Proc, Path]:
    keys_file.write_text(json.dumps({"primaryKey": PRIMARY, "secondaryKey": SECONDARY, "tokenSigningKey": SIGNING}))
    blue = start_host("blue")
    return start_router({"blue": {"upstreams": [blue.addr]}}, {"blue": 100}, extra={"auth_mode": "aml_token"})


def test_a_token_is_taken_and_the_keys_are_not(token_router: tuple[Proc, Path]) -> None:
    router, _ = token_router
    good = token()
    status, headers, body = call(router.port, {"x": 1}, key=good)
    assert status == 200 and headers["azureml-model-deployment"] == "blue"
    assert call(router.port, {"x": 1}, key=good)[0] == 200  # again (remembered until it expires)
    for key in (PRIMARY, SECONDARY, None):
        status, _, body = call(router.port, {}, key=key)
        assert status == 401, key
        assert "token" in json.loads(body)["message"]
    assert good not in router.log_text() and SIGNING not in router.log_text()


@pytest.mark.parametrize("forged", ["expired", "issued in the future", "claims changed", "other key",
                                    "other endpoint", "alg none", "garbage", "too long"])
def test_a_forged_or_expired_token_gets_401(token_router: tuple[Proc, Path], forged: str) -> None:
    router, _ = token_router
    now = time.time()
    candidate = {
        "expired": lambda: token(now=now - 7200, lifetime=3600),  # validly signed, expired an hour ago
        "issued in the future": lambda: token(now=now + 3600),
        "claims changed": lambda: tampered_claims(token(now=now - 7200, lifetime=3600)),
        "other key": lambda: token(key="not-the-signing-key"),
        "other endpoint": lambda: token(endpoint="other"),
        "alg none": lambda: unsigned(token()),
        "garbage": lambda: "a.b.c",
        "too long": lambda: token() + "A" * tokens.MAX_TOKEN,
    }[forged]()
    assert call(router.port, {}, key=candidate)[0] == 401
    assert call(router.port, {}, key=token())[0] == 200  # the router still takes a good one


def test_tokens_expire_while_in_use(token_router: tuple[Proc, Path]) -> None:
    """A token that was taken (and remembered) is refused from its expiry on."""
    router, _ = token_router
    short = token(lifetime=2)
    assert call(router.port, {}, key=short)[0] == 200
    expiry = int(json.loads(base64.urlsafe_b64decode(short.split(".")[1] + "==="))["exp"])
    time.sleep(max(0.0, expiry - time.time()) + 0.2)
    assert call(router.port, {}, key=short)[0] == 401


def test_switching_auth_mode_swaps_what_is_taken(token_router: tuple[Proc, Path]) -> None:
    router, table = token_router
    doc = json.loads(table.read_text())
    assert call(router.port, {}, key=PRIMARY)[0] == 401
    doc.update(auth_mode="key", version=2)
    write_table(table, doc)
    router.proc.send_signal(signal.SIGHUP)
    _wait(lambda: call(router.port, {}, key=PRIMARY)[0] == 200)
    assert call(router.port, {}, key=token())[0] == 401  # a key endpoint takes no token
    doc.update(auth_mode="aml_token", version=3)
    write_table(table, doc)
    router.proc.send_signal(signal.SIGHUP)
    _wait(lambda: call(router.port, {}, key=token())[0] == 200)
    assert call(router.port, {}, key=PRIMARY)[0] == 401


def test_router_own_urls_take_a_token_and_refuse_keys(token_router: tuple[Proc, Path]) -> None:
    router, _ = token_router
    status, _, body = call(router.port, method="GET", path="/-/router", key=token())
    assert status == 200 and json.loads(body)["version"] == 1
    assert call(router.port, method="GET", path="/-/metrics", key=token())[0] == 200
    for path in ("/-/router", "/-/metrics"):
        assert call(router.port, method="GET", path=path, key=PRIMARY)[0] == 401


@pytest.mark.parametrize("problem", ["no signing key", "unknown auth mode"])
def test_a_table_the_router_cannot_enforce_is_refused(start_host: Host, start_router: Router, keys_file: Path,
                                                      problem: str) -> None:
    """aml_token without a signing key, or an auth mode the router does not know (aad_token): the table is
    not loaded and the one in force stays (fail closed, never a weaker check)."""
    router, table = start_router({"blue": {"upstreams": [start_host("blue").addr]}}, {"blue": 100})
    doc = json.loads(table.read_text())
    doc.update(version=2, auth_mode="aml_token" if problem == "no signing key" else "aad_token")
    write_table(table, doc)
    router.proc.send_signal(signal.SIGHUP)
    _wait(lambda: "table not loaded" in router.log_text())
    assert call(router.port, {}, key=PRIMARY)[0] == 200  # the key table stays in force


def _wait(ok: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.05)
    raise AssertionError("not within the timeout")

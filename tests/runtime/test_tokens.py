"""The token format shared by the providers (minting) and the router (verifying), in isolation: every
claim ``verify`` checks refuses a token that fails it (runtime/router/tokens.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from providers.shared.endpoint_tokens import DEFAULT_LIFETIME_S, issue, token_lifetime
from providers.shared.runtime.router import tokens
from reconciler.model.errors import ConfigError

KEY = b"k" * 32
NOW = 1_800_000_000


def _seg(doc: Any) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=")


def signed(header: Any, claims: Any, key: bytes = KEY) -> bytes:
    """A token signed with ``key`` over any header and claims (what a forger with the key could make)."""
    signing_input = _seg(header) + b"." + _seg(claims)
    sig = base64.urlsafe_b64encode(hmac.new(key, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    return signing_input + b"." + sig


GOOD = {"iss": "recon", "aud": "ep", "iat": NOW, "exp": NOW + 60, "jti": "x"}


def test_a_minted_token_verifies_until_its_expiry() -> None:
    token = tokens.mint(KEY, "EP", NOW, NOW + 60).encode()
    assert tokens.verify(token, KEY, "ep", NOW) == NOW + 60
    assert tokens.verify(token, KEY, "ep", NOW + 59.9) == NOW + 60
    assert tokens.verify(token, KEY, "ep", NOW + 60) is None
    assert signed(tokens.HEADER, GOOD) != token and tokens.verify(signed(tokens.HEADER, GOOD), KEY, "ep", NOW)


@pytest.mark.parametrize(("header", "claims"), [
    ({"alg": "HS512", "typ": "JWT"}, GOOD),
    ({"alg": "none", "typ": "JWT"}, GOOD),
    ({"alg": "HS256"}, GOOD),
    (tokens.HEADER, {**GOOD, "iss": "azure"}),
    (tokens.HEADER, {**GOOD, "aud": "other"}),
    (tokens.HEADER, {**GOOD, "exp": "later"}),
    (tokens.HEADER, {**GOOD, "exp": True}),
    (tokens.HEADER, {k: v for k, v in GOOD.items() if k != "iat"}),
    (tokens.HEADER, {**GOOD, "iat": NOW + tokens.LEEWAY_S + 1}),
    (tokens.HEADER, [GOOD]),
])
def test_a_correctly_signed_token_with_a_wrong_header_or_claim_is_refused(header: Any, claims: Any) -> None:
    assert tokens.verify(signed(header, claims), KEY, "ep", NOW) is None


def test_no_key_no_token() -> None:
    assert tokens.verify(signed(tokens.HEADER, GOOD, b""), b"", "ep", NOW) is None
    with pytest.raises(ValueError):
        tokens.mint(b"", "ep", NOW, NOW + 1)


def test_issue_and_lifetime_setting() -> None:
    token = issue("secret", "ep", "http://x/score", 120, now=NOW)
    assert (token.expiry_time_utc, token.refresh_after_time_utc, token.token_type) == (NOW + 120, NOW + 60, "Bearer")
    assert tokens.verify(token.access_token.encode(), b"secret", "ep", NOW + 1) == NOW + 120
    assert token_lifetime({}) == DEFAULT_LIFETIME_S == 86400
    for bad in (0, -1, "1d", 1.5, True, 10**9):
        with pytest.raises(ConfigError) as caught:
            token_lifetime({"token_lifetime_s": bad})
        assert caught.value.diagnostics[0].path == "provider.token_lifetime_s"

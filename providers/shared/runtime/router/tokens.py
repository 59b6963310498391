"""``auth_mode: aml_token``: the expiring bearer tokens an endpoint takes instead of its keys.

Azure's AML tokens are JSON Web Tokens the workspace signs and the endpoint verifies (docs/security.md).
recon's tokens are JWTs too (RFC 7519), signed with HMAC-SHA256 (``HS256``, RFC 7518) by the endpoint's
own signing key: ``tokenSigningKey`` in its keys file, made and kept like the keys, never in state, plans,
logs or output. The provider mints them (``credentials()``: ``recon keys``, ``recon invoke``); the router
verifies them. One module holds both sides so that they cannot disagree on the format; it imports only
the standard library (the router runs in other interpreters).

A token is ``BASE64URL(header) . BASE64URL(claims) . BASE64URL(HMAC-SHA256(key, header . claims))``
(base64url without padding), header ``{"alg": "HS256", "typ": "JWT"}``, claims:

- ``iss``: ``"recon"``; ``aud``: the endpoint's name (lowercase): a token of one endpoint is no token of
  another, even if both had the same key;
- ``iat``: when it was issued, ``exp``: when it expires (Unix seconds); ``jti``: random, so two tokens
  issued in the same second differ.

``verify`` accepts a token only when its signature matches (compared in constant time), its header is
exactly HS256 (no ``alg: none``, no other algorithm), its issuer and audience are this endpoint's, it was
not issued in the future (``LEEWAY_S`` of clock skew) and ``now`` is before its expiry. Anything else,
including a token longer than ``MAX_TOKEN`` bytes, is refused without saying which check failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any

HEADER = {"alg": "HS256", "typ": "JWT"}
ISSUER = "recon"
MAX_TOKEN = 4096  # bytes: real tokens are ~250; longer ones are refused before any decoding
LEEWAY_S = 60  # a token issued up to this far in the future (the minting host's clock ahead) is taken


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def _segment(doc: dict[str, Any]) -> bytes:
    return _b64(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())


def _signature(key: bytes, signing_input: bytes) -> bytes:
    return _b64(hmac.new(key, signing_input, hashlib.sha256).digest())


def mint(key: bytes, endpoint: str, issued: int, expires: int) -> str:
    """A token of ``endpoint`` valid from ``issued`` until ``expires`` (Unix seconds), signed with ``key``."""
    if not key:
        raise ValueError("no signing key")
    claims = {"iss": ISSUER, "aud": endpoint.lower(), "iat": int(issued), "exp": int(expires),
              "jti": secrets.token_urlsafe(12)}
    signing_input = _segment(HEADER) + b"." + _segment(claims)
    return (signing_input + b"." + _signature(key, signing_input)).decode("ascii")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def verify(token: bytes, key: bytes, endpoint: str, now: float) -> int | None:
    """The expiry of ``token`` when it is a valid token of ``endpoint`` at ``now`` (see the module
    docstring), else None."""
    if not key or len(token) > MAX_TOKEN or token.count(b".") != 2:
        return None
    signing_input, _, signature = token.rpartition(b".")
    if not hmac.compare_digest(_signature(key, signing_input), signature):
        return None
    head, _, body = signing_input.partition(b".")
    try:
        header, claims = json.loads(_unb64(head)), json.loads(_unb64(body))
    except (ValueError, binascii.Error):  # json's errors are ValueErrors, base64's binascii.Error
        return None
    if header != HEADER or not isinstance(claims, dict):
        return None
    exp, iat = _int(claims.get("exp")), _int(claims.get("iat"))
    if claims.get("iss") != ISSUER or claims.get("aud") != endpoint.lower() or exp is None or iat is None:
        return None
    if iat > now + LEEWAY_S or now >= exp:
        return None
    return exp

"""Tokens of ``auth_mode: aml_token`` endpoints, for the providers that run recon's router (local, docker,
kubernetes): how long they live and how one is issued. The format and its verification are the router's
(``runtime/router/tokens.py``); docs/security.md says what is signed, with what, and why.

- The signing key is ``tokenSigningKey`` of the endpoint's keys document (``.recon/keys/<endpoint>.json``,
  the Kubernetes Secret ``<endpoint>-keys``), made with the keys and kept like them: never in state,
  plans, logs or output. Only ``issue`` reads it, inside the provider's ``credentials()``.
- Lifetime: the provider setting ``token_lifetime_s`` (recon.yaml), default ``DEFAULT_LIFETIME_S``.
  Azure does not document its AML tokens' lifetime; azureml-core's client assumes a token stays valid
  12 hours past its refresh time. recon's expire 24 hours after they are issued and ask to be refreshed
  after half of that (``refreshAfterTimeUtc``), which keeps that assumption true.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from providers.shared.runtime.router import tokens
from reconciler.model.errors import ConfigError, Diagnostic
from reconciler.plan.provider import EndpointToken

SIGNING_KEY = "tokenSigningKey"
DEFAULT_LIFETIME_S = 24 * 3600
MAX_LIFETIME_S = 365 * 24 * 3600
TOKEN_TYPE = "Bearer"


def new_signing_key() -> str:
    """256 random bits, as text (the keys document is JSON)."""
    return secrets.token_urlsafe(32)


def token_lifetime(settings: dict[str, Any]) -> int:
    """``provider.token_lifetime_s`` of recon.yaml, checked (whole seconds, 1 to a year)."""
    value = settings.get("token_lifetime_s", DEFAULT_LIFETIME_S)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIFETIME_S:
        raise ConfigError(Diagnostic(f"{value!r} is not valid; expected whole seconds from 1 to {MAX_LIFETIME_S} "
                                     f"(default {DEFAULT_LIFETIME_S}: 24 hours)",
                                     file="recon.yaml", path="provider.token_lifetime_s"))
    return value


def issue(signing_key: str, endpoint: str, scoring_uri: str, lifetime_s: int,
          now: float | None = None) -> EndpointToken:
    """A token of ``endpoint`` issued ``now`` (default: the clock), valid for ``lifetime_s`` seconds."""
    issued = int(time.time() if now is None else now)
    expires = issued + lifetime_s
    access = tokens.mint(signing_key.encode(), endpoint, issued, expires)
    return EndpointToken(access_token=access, expiry_time_utc=expires, refresh_after_time_utc=issued + lifetime_s // 2,
                         token_type=TOKEN_TYPE, scoring_uri=scoring_uri)

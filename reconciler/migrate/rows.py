"""One line of MIGRATION.md: a v1 setting, its value, and what it became in v2 (or why not).

Contract: ``row`` never puts a secret's value in a row (``primary_key``, ``secondary_key``,
registry passwords show as ``(withheld)``); values the file did not give show as v1's default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reconciler.migrate.models import SECRETS
from reconciler.migrate.settings import Setting


@dataclass(frozen=True)
class Row:
    """``scope``: ``endpoint`` or ``deployment NAME``; ``setting``: the key as written (or the SDK
    name when v1's default applied); ``value``: shown as given; ``became``: the v2 outcome."""

    scope: str
    setting: str
    value: str
    became: str


def show(value: Any) -> str:
    """A value as MIGRATION.md shows it (JSON, so that true/false/null read as in the file)."""
    return json.dumps(value, sort_keys=True)


def row(scope: str, s: Setting, became: str) -> Row:
    """The row of setting ``s``; a secret is withheld, a default says so."""
    if s.name in SECRETS:
        value = "(withheld)" if s.value is not None else "not set"
    elif s.key is None:
        value = "not set" if s.value is None else f"default {show(s.value)}"
    else:
        value = show(s.value)
    return Row(scope, s.key or s.name, value, became)


def plain(scope: str, setting: str, value: Any, became: str) -> Row:
    """A row for a setting that is not a ``Setting`` (model, inference config keys)."""
    return Row(scope, setting, show(value) if value is not None else "not set", became)

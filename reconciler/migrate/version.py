"""One served version of an SDK v1 service (a v2 deployment to be), shared by the service reader and
the traffic rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.migrate.files import V1File
from reconciler.migrate.settings import Setting

if TYPE_CHECKING:
    from reconciler.migrate.ignored import Ignored


@dataclass
class Version:
    """One served version: its v2 deployment name and every v1 setting it has."""

    name: str
    settings: dict[str, Setting]
    file: V1File
    at: tuple[str | int, ...]
    is_default: bool = False
    is_control: bool = False
    extra: dict[str, Setting] = field(default_factory=dict)  # model, inference config, flags
    ignored: list[Ignored] = field(default_factory=list)  # given, but v1 did not use them

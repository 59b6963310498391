"""The registries, called here and nowhere else: the provider a project's ``provider.kind`` names
(``providers.get_provider``) and the state backend its ``state:`` names (``states.open_backend``).

The stages below the CLI know only the interfaces (``reconciler.plan.provider``'s ``Provider``,
``reconciler.state.backend``'s ``StateBackend``); what implements them is chosen at this edge and
handed down (``open_project`` gives a ``Project`` both factories).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.model.settings import StateSettings
from reconciler.state.manager import StateManager

if TYPE_CHECKING:
    from reconciler.apply.project import Project
    from reconciler.plan.provider import Provider, ProviderContext


def open_state_manager(root: Path, settings: StateSettings | Mapping[str, Any] | None = None) -> StateManager:
    """A StateManager over the backend ``settings`` names (None: the file backend's defaults; a
    mapping is read as ``StateSettings``, its None values left out)."""
    from states import open_backend

    if not isinstance(settings, StateSettings):
        settings = StateSettings.model_validate({k: v for k, v in (settings or {}).items() if v is not None})
    return StateManager(open_backend(root, settings))


def make_provider(kind: str, settings: dict[str, Any], context: ProviderContext) -> Provider:
    """The provider of ``kind`` (imported only now), built with its recon.yaml settings."""
    from providers import get_provider

    return get_provider(kind, settings, context)


def open_project(root: Path | str, *, provider: Provider | None = None) -> Project:
    """The project at ``root``, its provider and state backend made by the registries on first use
    (``provider``: one already made, as tests and benches pass). Use it as a context manager."""
    from providers import PROVIDERS
    from reconciler.apply.project import Project

    return Project(
        root,
        provider_kinds=PROVIDERS,
        make_provider=make_provider,
        open_state=open_state_manager,
        provider=provider,
    )


__all__ = ["make_provider", "open_project", "open_state_manager"]

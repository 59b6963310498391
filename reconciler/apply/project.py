"""``Project``: one opened project directory, and what the commands need from it.

It owns nothing but the wiring: settings (``loader.load_settings``), the state manager and the
provider with its ``ProviderContext`` (made by the factories the CLI hands it: the registries are
called only there, ``reconciler.cli.registries.open_project``), the desired state (``loader.load_project``) and a ``plan`` convenience that reads
the state, refreshes it through the provider, calls the pure ``make_plan`` and prices the plan
(``prices.price_table``: recon.yaml's ``prices:`` and the Azure Retail Prices API, cached; then the
pure ``cost.add_cost``, which also applies recon.yaml's ``budget:``).

Everything is opened lazily, so ``recon validate`` never touches a provider. Use it as a context
manager (or call ``close``) so that provider clients and backend connections are released::

    with open_project(root) as project:  # reconciler.cli.registries
        with project.state_manager.lock("apply"):
            plan = project.plan(lock=False)

Nothing here prints; errors are ``ReconcilerError`` subclasses.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from reconciler import __version__
from reconciler.apply import gcpause
from reconciler.model.errors import ProviderError
from reconciler.model.resources import DesiredState, as_deployment
from reconciler.model.settings import ProjectSettings, StateSettings
from reconciler.plan.provider import Capacity, Provider, ProviderContext
from reconciler.plan.types import DriftItem, Plan
from reconciler.state.document import State
from reconciler.state.manager import StateManager


def cache_dir() -> Path:
    """Shared by projects: ``$RECON_CACHE_DIR`` or ``~/.cache/recon``."""
    env = os.environ.get("RECON_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "recon"


class Project:
    """A project directory: ``root`` holds the YAML files and (optionally) ``recon.yaml``.

    ``provider_kinds``: the kinds a provider can be made of (an unknown ``provider.kind`` is an error
    of recon.yaml, with its line); ``make_provider`` makes one (kind, its settings, the context) and
    ``open_state`` the state manager over the backend ``state:`` names, on first use. ``provider``
    may be given instead (tests, the engine's own instance). ``settings`` is the loader's
    ``ProjectSettings``.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        provider_kinds: Collection[str],
        make_provider: Callable[[str, dict[str, Any], ProviderContext], Provider],
        open_state: Callable[[Path, StateSettings], StateManager],
        provider: Provider | None = None,
    ) -> None:
        from reconciler.load import loader

        self.root = Path(root).resolve()
        self.settings: ProjectSettings = loader.load_settings(self.root, provider_kinds=provider_kinds)
        self._make_provider = make_provider
        self._open_state = open_state
        self._provider = provider
        self._state_manager: StateManager | None = None

    # -- parts ----------------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.root / ".recon"

    @property
    def provider_kind(self) -> str:
        return str(self.settings.provider.kind)

    def context(self) -> ProviderContext:
        return ProviderContext(
            project_root=self.root,
            state_dir=self.state_dir,
            cache_dir=cache_dir(),
            workspace=str(self.settings.workspace or ""),
        )

    @property
    def state_manager(self) -> StateManager:
        """The ``StateManager`` over the backend ``recon.yaml``'s ``state:`` names."""
        if self._state_manager is None:
            self._state_manager = self._open_state(self.root, self.settings.state)
        return self._state_manager

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = self._make_provider(
                self.provider_kind, dict(self.settings.provider.settings), self.context()
            )
        return self._provider

    # -- operations -----------------------------------------------------------------------------
    def read_state(self) -> State:
        return self.state_manager.read()

    def load_desired(self, recorded: State | Callable[[], State | None] | None = None) -> DesiredState:
        """The desired state (``loader.load_project``: ``recorded`` may be a function that reads
        it); raises ``ConfigError`` with every diagnostic."""
        from reconciler.load import loader

        return loader.load_project(self.root, recorded)

    def refresh(self, state: State) -> tuple[State, list[DriftItem]]:
        from reconciler.apply.refresh import refresh

        return refresh(state, self.provider)

    def capacity(self) -> Capacity | None:
        try:
            return self.provider.capacity()
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"reading the provider's capacity failed: {type(exc).__name__}: {exc}"
            ) from exc

    def locked(self, operation: str, lock: bool = True) -> contextlib.AbstractContextManager[Any]:
        """The state lock for ``operation`` (or nothing when ``lock`` is False)."""
        return self.state_manager.lock(operation) if lock else contextlib.nullcontext()

    def plan(
        self,
        *,
        targets: Iterable[str] = (),
        destroy: bool = False,
        refresh: bool = True,
        lock: bool = True,
        operation: str = "plan",
    ) -> Plan:
        """Read the state (under the lock unless ``lock`` is False), refresh it through the provider
        when ``refresh``, load the desired state against it and make the plan.

        The plan's lineage and serial are those of the state as read (before refresh: refresh
        does not write), so a saved plan is stale once anyone writes the state.
        """
        with self.locked(operation, lock), gcpause.paused():
            return self._plan(list(targets), destroy, refresh)

    def _plan(self, targets: list[str], destroy: bool, refresh: bool) -> Plan:
        from reconciler.plan.planner import make_plan

        drift: list[DriftItem] = []
        capacity = None
        measuring = None  # without a refresh the provider is not asked (gates are not checked against it)
        if refresh:
            recorded = self.read_state()
            prior, drift = self.refresh(recorded)
            capacity = self.capacity()
            measuring = self.provider.measuring
            desired = self.load_desired(recorded)
        else:  # nothing to ask the provider: the state is read while the files are parsed
            read_once = functools.cache(self.read_state)
            desired = self.load_desired(read_once)
            recorded = prior = read_once()
        plan = make_plan(
            desired,
            prior,
            drift=drift,
            targets=targets,
            destroy=destroy,
            capacity=capacity,
            measuring=measuring,
            recon_version=__version__,
        )
        # when it was made (display only, not in the digest): the plan JSON's created_at and Terraform's timestamp
        made = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.priced(plan.model_copy(update={"created_at": made}), prior)

    def priced(self, plan: Plan, prior: State) -> Plan:
        """``plan`` with its cost, and a budget exceeded among its errors (docs/cost.md).
        Deployments recorded in ``prior`` that the plan does not list (outside ``--target``) cost
        the same before and after. Never fails: prices that cannot be had are a reason in the plan."""
        from reconciler.apply.prices import price_table
        from reconciler.plan.cost import add_cost, api_instance_types

        listed = {rc.address for rc in plan.resource_changes}
        unchanged = {
            a: as_deployment(r.attributes)
            for a, r in prior.resources.items()
            if r.type == "deployment" and a not in listed
        }
        skus = api_instance_types(plan, unchanged, self.settings.prices)
        table = price_table(self.settings, skus, cache_dir())
        return add_cost(plan, table, self.settings.budget, unchanged)

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        if self._provider is not None:
            with contextlib.suppress(Exception):
                self._provider.close()
        if self._state_manager is not None:
            with contextlib.suppress(Exception):
                self._state_manager.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()



"""The project settings of recon.yaml as the rest of recon sees them: defaults filled, the merged
catalog of instance types. ``reconciler.load.loader.load_settings`` reads and validates the file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.model import catalog, schema
from reconciler.model.resources import InstanceType, ProviderSettings
from reconciler.model.rollout import RolloutSettings

SETTINGS_FILE = "recon.yaml"

#: The Azure Retail Prices API (public, no credentials; docs/cost.md). ``RECON_PRICES_URL`` overrides it.
RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices"
#: The currencies the Retail Prices API offers (its ``currencyCode`` parameter).
CURRENCIES: tuple[str, ...] = (
    "USD", "AUD", "BRL", "CAD", "CHF", "CNY", "DKK", "EUR", "GBP", "INR", "JPY", "KRW", "NOK", "NZD",
    "RUB", "SEK", "TWD",
)


class PricingSettings(BaseModel):
    """``pricing:`` in recon.yaml: where the hourly prices of instance types come from (docs/cost.md).

    ``region`` is the ``armRegionName`` prices are asked for (None: the provider's ``location``,
    else ``eastus``); ``cache_hours`` how long fetched prices are kept on disk; ``timeout`` the
    seconds one plan may spend asking the API; ``fetch`` False: only the ``prices:`` table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fetch: bool = True
    region: str | None = None
    currency: str = "USD"
    cache_hours: float = 24.0
    url: str = RETAIL_PRICES_URL
    timeout: float = 10.0


DEFAULT_STATE_PATH = ".recon/state.json"
#: the keys each state backend takes in recon.yaml's ``state:``
STATE_KEYS: dict[str, frozenset[str]] = {
    "file": frozenset({"backend", "path", "history"}),
    "postgres": frozenset({"backend", "dsn", "name", "history", "connect_timeout"}),
}


class StateSettings(BaseModel):
    """``state:`` in recon.yaml: where the state is stored. The one owner of the section: the loader
    checks a file's ``state:`` against it (each backend's keys: ``STATE_KEYS``; errors name the line)
    and the CLI opens the backend it names (``states.open_backend``).

    ``path``: the file backend's file, relative to the project; ``dsn``: PostgreSQL's connection
    string (None: ``$RECON_STATE_DSN``, which keeps the password out of the repository); ``name``: the
    state's name in that database; ``history``: versions kept besides the current one (None: the
    backend's default); ``connect_timeout``: seconds to wait for PostgreSQL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["file", "postgres"] = "file"
    path: str = DEFAULT_STATE_PATH
    dsn: str | None = None
    name: str = "default"
    history: int | None = None
    connect_timeout: int = 10


class Budget(BaseModel):
    """``budget:`` in recon.yaml, in the pricing currency: ``monthly`` bounds the steady monthly cost
    after the apply (the max under autoscaling), ``increase`` what one plan may add to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    monthly: float | None = None
    increase: float | None = None


class ProjectSettings(BaseModel):
    """recon.yaml, defaults filled. ``instance_types`` is the merged catalog (built-ins + additions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace: str = ""
    provider: ProviderSettings = Field(default_factory=ProviderSettings)
    quota: dict[str, int] | None = None
    instance_types: dict[str, InstanceType] = Field(default_factory=catalog.builtin_instance_types)
    custom_instance_types: dict[str, InstanceType] = Field(default_factory=dict)
    state: StateSettings = Field(default_factory=StateSettings)
    exclude: tuple[str, ...] = ()
    limits: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_LIMITS))
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    prices: dict[str, float] = Field(default_factory=dict)  # per hour, by instance type; wins over the API
    budget: Budget | None = None
    rollout: RolloutSettings | None = None  # ``rollout:`` (guarded rollouts); None: no section
    source: str | None = None  # "recon.yaml" when the file exists


# recon.yaml ``limits:``: Azure's service limits, then what recon reads from disk (see docs/security.md)
DEFAULT_LIMITS: dict[str, int] = {
    "endpoints": schema.MAX_ENDPOINTS,
    "deployments": schema.MAX_DEPLOYMENTS,
    "yaml_file_mb": 4,  # each YAML file: documents, recon.yaml, conda files
    "yaml_nodes": 100_000,  # each YAML document, after its aliases are expanded
    "tree_files": 100_000,  # each model, code or build folder
    "tree_gb": 64,  # each model, code or build folder, in total
}


__all__ = [
    "DEFAULT_STATE_PATH",
    "STATE_KEYS",
    "StateSettings",
    "Budget",
    "CURRENCIES",
    "DEFAULT_LIMITS",
    "PricingSettings",
    "ProjectSettings",
    "RETAIL_PRICES_URL",
    "SETTINGS_FILE",
]

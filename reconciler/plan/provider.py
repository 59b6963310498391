"""The one small interface every provider implements (local, docker, kubernetes, azure, fake).

It lives in the core, beside the plan it serves (``reconciler.plan``): the planner asks a provider
what it can place (``Capacity``) and measure (``Measuring``), the engine hands it one step of a saved
plan at a time (``ApplyRequest``, ``Batch`` from ``reconciler.plan.types``), and the providers
(``providers/``) implement it, importing recon's names directly from the protocol modules.

Contract (after pulumi's dynamic ResourceProvider and Terraform's provider protocol):

- ``observe(resource)`` reads what really exists for a recorded resource, never changing it.
  It returns an ``Observation``: ``exists=False`` when the object is gone; ``attributes`` holds only
  the canonical attributes the provider can see, with the values it sees (e.g. a deployment with a
  dead instance reports ``instance_count`` 1 where 2 were recorded; a changed environment variable
  reports the whole ``environment_variables`` it found). The engine overlays these on the recorded
  attributes: what differs is drift, and the next plan repairs it. ``unsettled`` (optional, default
  empty) says why an object that exists is not in the one state its record describes, in words:
  instances of two configurations (a rollout cut short), instances the router does not send
  requests to, an upstream in the router's pool that no instance serves, a router serving another
  table than the one written, processes or containers with the object's marks that it does not
  count. Refresh reports each as drift and marks the resource ``failed``; the next plan applies it
  again as a repair (a deployment: a scale to its count, then a rollout over every instance; an
  endpoint: an update, then its traffic set again), so plan and drift never disagree. Observe
  must read what really runs (the router's live table, each instance's configuration), never
  what recon last wrote.
- ``create`` returns outputs once the object exists and is ready; if it raises, the object must not
  have been created (or the provider must have cleaned it up). It must also succeed when an earlier
  create of the same object was interrupted (an apply SIGKILLed part-way records only its intent,
  and the next apply creates again): what that create left is kept when it matches the request,
  replaced when not, never doubled (PUT semantics).
- ``delete``: if it raises, the object is assumed to still exist. Deleting what is already gone is
  not an error.
- ``scale`` and ``roll_batch`` leave the deployment serving throughout. ``scale(request)`` makes
  the count ``request.instance_count`` (the request's ``instance_count`` attribute: the value is in
  the request once, never passed beside it). ``scale`` to the count a
  deployment has is the planner's repair of an interrupted operation: it makes the serving instances
  exactly ``count`` (adopting or stopping instances an interrupted apply left), preferring to keep
  those at the request's configuration, and otherwise changes nothing. ``roll_batch`` replaces
  ``batch.size`` instances that do not run the desired configuration with ones that do: start the
  new ones, wait until ready, add them to the pool, drain and stop as many old ones. If the new
  instances do not become ready it stops them, keeps the old ones serving, and raises
  ``PermanentError`` with the failing instance's last log lines in ``detail``. It is idempotent:
  instances already at the desired configuration are not replaced again (resuming after a crash).
- ``set_routing(request)`` makes an endpoint route by the request's ``traffic``/``mirror_traffic``
  (``request.traffic``, ``request.mirror_traffic``: normal form) without dropping a request. The engine only calls it when every named deployment exists and is ready.
- No SDK type or exception leaves a provider: errors are ``ProviderError`` subclasses
  (``RetryableError`` / ``PermanentError``); results are plain dicts of JSON data.
- Secrets (endpoint keys, token signing keys) never appear in outputs: ``credentials()`` reads them on
  demand and returns what ``az ml online-endpoint get-credentials`` returns for the endpoint's auth mode:
  its ``Keys`` (``auth_mode: key``) or a fresh ``EndpointToken`` (``aml_token``: minted by the provider
  from a signing key it keeps, or Azure's ``token`` action), never the signing key.
- Guarded rollouts (``measuring``, ``open_window``, ``close_window``): a provider that can measure
  what clients get says so in ``measuring`` (the plan refuses ``rollout.analysis`` otherwise).
  ``open_window(request)`` returns an opaque mark (JSON data) of an endpoint's counters now;
  ``close_window(request, mark)`` reads them again and returns what happened since as
  ``WindowStats`` (``reconciler.model.windows``: its docstring fixes what counts as a request and
  as an error). ``request`` is the endpoint's (its attributes name it). Neither changes anything:
  ``close_window`` may be called several times with one mark (the engine looks during a bake to
  stop early on a clear failure). A deployment's outputs carry ``config_digest``, the label its
  instances' series have in the stats, so the engine tells a rollout's new instances from its old.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from reconciler.model.errors import PermanentError
from reconciler.model.resources import (
    Attributes,
    DeploymentAttrs,
    EndpointAttrs,
    EnvironmentAttrs,
    ModelAttrs,
    ObservedAttrs,
    Traffic,
    as_asset,
    as_deployment,
    as_endpoint,
    as_environment,
    as_model,
    normal_traffic,
)
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource

if TYPE_CHECKING:  # only providers that measure build one; a plan does not import it (start-up)
    from reconciler.model.windows import WindowStats


@dataclass(frozen=True)
class ProviderContext:
    """Where a provider may keep things.

    ``project_root``: the project directory (paths in attributes are relative to it).
    ``state_dir``: the project's ``.recon`` folder (keys, snapshots, logs, pid files).
    ``cache_dir``: a cache shared by projects (``~/.cache/recon``: virtual environments, images).
    """

    project_root: Path
    state_dir: Path
    cache_dir: Path
    workspace: str = ""


@dataclass(frozen=True)
class Observation:
    """What a provider saw for one recorded resource.

    ``attributes``: the canonical attributes it can see, only those (``ObservedAttrs``: any subset of
    the resource type's keys). ``outputs`` is the provider's own JSON data (ids, URIs, digests), not
    canonical attributes: its keys are the provider's, so it stays a plain dict."""

    exists: bool
    attributes: ObservedAttrs = field(default_factory=dict)  # type: ignore[assignment]  # {} is every subset
    outputs: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # human words: "instance 2 (pid 4242) is not running"
    # why it is not settled in its recorded state (see the module docstring): drift, repaired by the next plan
    unsettled: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Capacity:
    """What the provider can place at most (None: unbounded / unknown).

    ``rollout_reserve``: the provider's rolling updates run ``ceil(20%)`` extra instances beside the old
    ones (Kubernetes' maxSurge), so a deployment of n instances needs ``ceil(1.2 * n)`` times its
    requests: the managed endpoints' 20% reserve rule, applied to the provider's capacity.
    ``quota``: live quota limits per VM family (vCPUs) left for the deployments recon records, as a
    cloud provider reads them (azure: the usages/quotas APIs); the plan checks them like recon.yaml's
    ``quota`` (the smaller of the two wins). None: the provider knows none.
    """

    cpus: float | None = None
    memory_gb: float | None = None
    description: str = ""
    rollout_reserve: bool = False
    quota: dict[str, int] | None = None


@dataclass(frozen=True)
class Keys:
    """Endpoint credentials, the names `az ml online-endpoint get-credentials` uses. Never stored."""

    primary_key: str
    secondary_key: str
    scoring_uri: str

    @property
    def bearer(self) -> str:
        """What a client sends: ``Authorization: Bearer <this>``."""
        return self.primary_key


@dataclass(frozen=True)
class EndpointToken:
    """An ``aml_token`` endpoint's credential, as Azure's ``token`` action answers it (``EndpointAuthToken``,
    what ``az ml online-endpoint get-credentials`` prints for such an endpoint): ``access_token`` (a bearer
    token), ``expiry_time_utc`` and ``refresh_after_time_utc`` (Unix seconds: it is refused from the first,
    ask for a new one after the second), ``token_type`` (``Bearer``). Never stored."""

    access_token: str
    expiry_time_utc: int
    refresh_after_time_utc: int
    token_type: str
    scoring_uri: str

    @property
    def bearer(self) -> str:
        """What a client sends: ``Authorization: Bearer <this>``."""
        return self.access_token

    def as_azure(self) -> dict[str, Any]:
        """Azure's names and order (the REST ``EndpointAuthToken``, ``get-credentials``' JSON)."""
        return {"accessToken": self.access_token, "expiryTimeUtc": self.expiry_time_utc,
                "refreshAfterTimeUtc": self.refresh_after_time_utc, "tokenType": self.token_type}


@dataclass(frozen=True)
class Measuring:
    """What a provider can measure for guarded rollouts (``Provider.measuring``).

    ``windows``: ``open_window``/``close_window`` work (False: the plan refuses ``rollout.analysis``).
    ``digests``: its series tell a deployment's configurations apart (old and new instances during a
    rolling update); without, a rolling update is judged once, after its last batch.
    ``min_bake_s``: the grain of its metrics (Azure Monitor: one minute); a shorter bake is raised
    to it, and the plan says so. ``source``: where the numbers come from, for people."""

    windows: bool = False
    digests: bool = True
    min_bake_s: float = 0.0
    source: str = ""


EventSink = Callable[[str], None]


@dataclass(frozen=True)
class ApplyRequest:
    """Everything a provider needs to act on one resource, taken from the plan (never the config).

    ``attributes``: the desired canonical attributes (the plan's ``after``), of the request's
    ``type``; ``endpoint``, ``deployment`` and ``asset`` give them as that type's attributes (and
    refuse another type), so a provider reads typed keys without casting.
    ``prior``: the recorded resource (None on create).
    ``refs``: canonical attributes of the resources this one references, by address (a
    deployment gets its endpoint, model and environment: ``model`` and ``environment`` give the
    ones it names, typed).
    ``on_event``: progress lines for people ("instance 3 ready"); may be ignored.
    ``on_status``: what the provider is doing right now ("collecting numpy"), replaced by the next
    status: a terminal shows it in place, plain output thins it out; may be ignored.
    """

    address: str
    type: str
    name: str
    attributes: Attributes
    prior: StateResource | None = None
    refs: dict[str, Attributes] = field(default_factory=dict)
    on_event: EventSink | None = None
    on_status: EventSink | None = None

    def emit(self, line: str) -> None:
        if self.on_event is not None:
            self.on_event(line)

    def status(self, text: str) -> None:
        if self.on_status is not None:
            self.on_status(text)

    def _of(self, *types: str) -> None:
        if self.type not in types:
            raise TypeError(f"{self.address} is a {self.type}, not {' or '.join(types)}")

    @property
    def endpoint(self) -> EndpointAttrs:
        """The desired attributes of an endpoint request (TypeError for another type)."""
        self._of("endpoint")
        return as_endpoint(self.attributes)

    @property
    def deployment(self) -> DeploymentAttrs:
        """The desired attributes of a deployment request (TypeError for another type)."""
        self._of("deployment")
        return as_deployment(self.attributes)

    @property
    def asset(self) -> ModelAttrs | EnvironmentAttrs:
        """The desired attributes of a model or environment request (their common keys)."""
        self._of("model", "environment")
        return as_asset(self.attributes)

    @property
    def model(self) -> ModelAttrs | None:
        """A deployment's model, when it names one recon manages (in ``refs``); else None."""
        ref = self._ref(self.deployment["model"])
        return None if ref is None else as_model(ref)

    @property
    def environment(self) -> EnvironmentAttrs | None:
        """A deployment's environment, when it names one recon manages (in ``refs``); else None."""
        ref = self._ref(self.deployment["environment"])
        return None if ref is None else as_environment(ref)

    def _ref(self, address: str | None) -> Attributes | None:
        return self.refs.get(address) if address else None

    @property
    def instance_count(self) -> int:
        """A deployment's desired count (``scale`` makes it so); canonical attributes always hold it."""
        return int(self.deployment["instance_count"])

    @property
    def traffic(self) -> Traffic:
        """An endpoint's live split (``set_routing`` routes by it), in normal form."""
        return normal_traffic(self.endpoint.get("traffic"))

    @property
    def mirror_traffic(self) -> Traffic:
        """An endpoint's mirrored percentages, in normal form."""
        return normal_traffic(self.endpoint.get("mirror_traffic"))


class Provider(ABC):
    """Base class of every provider. Constructed with its ``provider:`` settings from recon.yaml.

    Typed and untyped on purpose: what a provider is asked to make is canonical attributes, typed
    (``ApplyRequest``: ``Attributes`` and the per-type accessors); ``settings`` (the provider's own
    section of recon.yaml), the outputs the changing methods return and a window's ``mark`` are each
    provider's own JSON data, whose keys only that provider knows: plain dicts, not attributes.
    """

    name: ClassVar[str]
    measuring: ClassVar[Measuring] = Measuring()

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        self.settings = settings
        self.context = context

    # -- reading -------------------------------------------------------------------------------
    @abstractmethod
    def observe(self, resource: StateResource) -> Observation: ...

    def find_unmanaged(self, known: list[StateResource]) -> list[str]:
        """Objects carrying recon's marks that no recorded resource owns (reported, never deleted)."""
        return []

    def capacity(self) -> Capacity | None:
        return None

    # -- changing ------------------------------------------------------------------------------
    @abstractmethod
    def create(self, request: ApplyRequest) -> dict[str, Any]: ...

    @abstractmethod
    def update(self, request: ApplyRequest) -> dict[str, Any]:
        """In-place, non-rolling change (endpoint auth_mode/tags/description, asset metadata)."""

    @abstractmethod
    def delete(self, resource: StateResource) -> None: ...

    @abstractmethod
    def scale(self, request: ApplyRequest) -> dict[str, Any]:
        """Make the deployment's serving instances ``request.instance_count`` (module docstring)."""

    @abstractmethod
    def roll_batch(self, request: ApplyRequest, batch: Batch) -> dict[str, Any]: ...

    @abstractmethod
    def set_routing(self, request: ApplyRequest) -> dict[str, Any]:
        """Route the endpoint by ``request.traffic`` and ``request.mirror_traffic`` (module docstring)."""

    # -- measuring (guarded rollouts) ---------------------------------------------------------
    def open_window(self, request: ApplyRequest) -> dict[str, Any]:
        """An opaque mark (JSON data) of the endpoint's counters now (see the module docstring)."""
        raise PermanentError(f"provider {self.name} cannot measure requests (no metrics)")

    def close_window(self, request: ApplyRequest, mark: dict[str, Any]) -> WindowStats:
        """What the endpoint's deployments answered since ``mark``; changes nothing."""
        raise PermanentError(f"provider {self.name} cannot measure requests (no metrics)")

    # -- operating -----------------------------------------------------------------------------
    def credentials(self, endpoint: StateResource) -> Keys | EndpointToken:
        """The endpoint's keys, or a fresh token when it is an ``aml_token`` endpoint (module docstring)."""
        raise NotImplementedError(f"provider {self.name} has no endpoint keys")

    def logs(self, deployment: StateResource, instance: int | None = None, tail: int = 100) -> list[str]:
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release SDK clients and connections."""


__all__ = [
    "ApplyRequest",
    "Capacity",
    "EventSink",
    "Keys",
    "Measuring",
    "Observation",
    "Provider",
    "ProviderContext",
]

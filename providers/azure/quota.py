"""Live quota: the region's ``usages`` and ``quotas`` per VM family, as limits recon's plan checks.

``GET /subscriptions/{s}/providers/Microsoft.MachineLearningServices/locations/{l}/usages`` lists,
per VM family, the vCPUs in use and the limit (type ``.../vmFamily/usages``; Azure also lists
workspace-level usage, ``.../workspaces/dedicatedCores/usages``); ``.../locations/{l}/quotas``
lists the limits set per workspace.

recon's planner counts its own deployments with its own formula (``ceil(1.2 * instances) *
cores``, ``reserved_instances``) before, after and at the peak of an apply. What it must know is
how much of each limit is left for them: the limit, less what others use, where "others" is the
usage Azure reports minus what recon's recorded deployments (as observed just before) hold. So
``limit_for_recon = limit - (current - ours)``, the smaller of the family's and the workspace's, and
never less than ``ours`` (what recon's deployments hold is theirs: deleting or shrinking them is
never refused for quota). Without a workspace-level usage figure, the workspace's usage is taken
to be recon's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.model.catalog import lookup, merged_catalog

FAMILY_USAGE = "vmfamily/usages"
WORKSPACE_USAGE = "workspaces/dedicatedcores/usages"


@dataclass
class LiveQuota:
    """What one read of the usages/quotas APIs found, and what it leaves for recon per family."""

    limits: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def describe(self, location: str) -> str:
        if not self.lines:
            return f"Azure usages in {location}: no VM family reported"
        return f"Azure usages in {location}: " + "; ".join(self.lines)


def reserved_instances(instances: int, exempt: bool) -> int:
    """``ceil(1.2 * instances)`` in integers, as the planner counts it (reconciler/plan/quota.py; a
    provider may not import the planner, tests/azure/test_units.py checks the two agree)."""
    return instances if exempt else (6 * instances + 4) // 5


def deployment_cores(attrs: dict[str, Any]) -> tuple[str, float] | None:
    """(VM family, vCPUs reserved) of a managed deployment as Azure counts it, from observed or
    recorded canonical attributes; None for Kubernetes or unknown sizes."""
    if attrs.get("kind", "managed") != "managed" or not attrs.get("instance_type"):
        return None
    catalog = merged_catalog()
    key = lookup(catalog, str(attrs["instance_type"]))
    if key is None:
        return None
    it = catalog[key]
    scale = attrs.get("scale_settings") or {}
    n = int(scale.get("max_instances") or 1) if scale.get("type") == "target_utilization" \
        else int(attrs.get("instance_count") or 0)
    return it.family, float(reserved_instances(n, it.quota_exempt) * it.cores)


def _family(item: dict[str, Any]) -> str:
    name = item.get("name")
    return str(name.get("value") if isinstance(name, dict) else name or "")


def live_quota(usages: list[dict[str, Any]], quotas: list[dict[str, Any]], workspace_path: str,
               ours: dict[str, float]) -> LiveQuota:
    """Limits left for recon's deployments per family (see the module docstring)."""
    ws = workspace_path.lower()
    family: dict[str, tuple[float, float]] = {}
    workspace: dict[str, float] = {}
    for u in usages:
        kind = str(u.get("type") or "").lower()
        fam = _family(u)
        if not fam:
            continue
        if kind.endswith(WORKSPACE_USAGE) and str(u.get("id") or "").lower().startswith(ws):
            workspace[fam] = float(u.get("currentValue") or 0)
        elif kind.endswith(FAMILY_USAGE):
            family[fam] = (float(u.get("currentValue") or 0), float(u.get("limit") or 0))
    ws_limits = {_family(q): float(q.get("limit") or 0) for q in quotas
                 if str(q.get("id") or "").lower().startswith(ws + "/") and float(q.get("limit") or 0) > 0}
    out = LiveQuota()
    for fam in sorted(family):
        used, limit = family[fam]
        own = ours.get(fam, 0.0)
        left = limit - max(0.0, used - own)
        line = f"{fam} {used:g}/{limit:g} vCPUs used (recon's deployments here: {own:g})"
        if fam in ws_limits:
            ws_used = workspace.get(fam, own)  # no workspace-level usage reported: only recon's is known
            left = min(left, ws_limits[fam] - max(0.0, ws_used - own))
            line += f", workspace quota {ws_limits[fam]:g} ({ws_used:g} used)"
        # what recon's deployments hold is theirs: a plan that shrinks them is never refused for quota
        limit = max(int(own), int(left), 0)
        out.limits[fam] = limit
        out.lines.append(line + f", {limit} for this plan")
    return out


__all__ = ["LiveQuota", "deployment_cores", "live_quota"]

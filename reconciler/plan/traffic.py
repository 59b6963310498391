"""The planner's traffic rules (DOMAIN.md "Traffic"), as pure functions of attributes.

- Traffic has one normal form (``normal_endpoint``): names lowercased, zero entries dropped.
- Endpoint traffic absent from the file (``traffic_declared`` False) keeps the recorded traffic:
  it is never zeroed, the Azure SDK hazard (``desired_endpoint``).
- Traffic leaves a deployment before the deployment is deleted: an endpoint being deleted or
  replaced is drained to no traffic first, and a replaced deployment that carries live traffic is
  drained first, its share going to the others in proportion (``drain``, ``redistribute``); its
  traffic comes back in the final ``SET_TRAFFIC``.
- Traffic never points at a deployment that does not exist after the plan (``dangling``), and a
  deployment is not destroyed alone while its endpoint still routes to it (``kept_traffic``).

The steps that carry these out are built in ``reconciler.plan.steps``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.model.resources import EndpointAttrs, Traffic, normal_traffic


def normal_endpoint(attrs: EndpointAttrs) -> EndpointAttrs:
    """Endpoint attributes with traffic in normal form (a copy only when something changes)."""
    t, m = attrs.get("traffic"), attrs.get("mirror_traffic")
    nt, nm = normal_traffic(t), normal_traffic(m)
    if t == nt and m == nm:
        return attrs
    return {**attrs, "traffic": nt, "mirror_traffic": nm}


def desired_endpoint(attrs: EndpointAttrs, recorded: EndpointAttrs | None) -> EndpointAttrs:
    """The endpoint's desired attributes: traffic in normal form; traffic the file does not
    declare is the recorded traffic (mirror traffic too, unless the file declares some)."""
    attrs = normal_endpoint(attrs)
    if attrs.get("traffic_declared", True) or recorded is None:
        return attrs
    kept: EndpointAttrs = {**attrs, "traffic": dict(recorded.get("traffic") or {})}
    if not attrs.get("mirror_traffic"):
        kept["mirror_traffic"] = dict(recorded.get("mirror_traffic") or {})
    return kept


def describe(traffic: Mapping[str, int], mirror: Mapping[str, int]) -> str:
    """``blue=90%, green=10%; mirror green=5%`` (or ``no traffic``)."""
    text = ", ".join(f"{k}={v}%" for k, v in sorted(traffic.items())) or "no traffic"
    if mirror:
        text += "; mirror " + ", ".join(f"{k}={v}%" for k, v in sorted(mirror.items()))
    return text


def redistribute(traffic: Mapping[str, int], removed: Iterable[str]) -> dict[str, int]:
    """``traffic`` without ``removed``; their share goes to the others in proportion (whole
    percentages, largest remainder, still summing to 100), or nothing when no other is left."""
    removed = set(removed)
    keep = {k: v for k, v in traffic.items() if k not in removed and v}
    total = sum(keep.values())
    if not total:
        return {}
    target = sum(traffic.values())
    exact = {k: v * target / total for k, v in keep.items()}
    out = {k: int(x) for k, x in exact.items()}
    left = target - sum(out.values())
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[:left]:
        out[k] += 1
    return out


def drain(
    traffic: Mapping[str, int], mirror: Mapping[str, int], replaced: set[str] | None
) -> tuple[set[str], Traffic, Traffic] | None:
    """What a drain step moves before deletions: (the deployments it takes traffic from, traffic
    and mirror traffic after it), or None when nothing needs draining.

    ``replaced``: the names of the endpoint's replaced deployments, or None when the endpoint
    itself is deleted or replaced (then everything goes: no traffic at all)."""
    if not traffic and not mirror:
        return None
    if replaced is None:
        return set(traffic) | set(mirror), {}, {}
    hit = replaced & (set(traffic) | set(mirror))
    if not hit:
        return None
    return hit, redistribute(traffic, hit), {} if set(mirror) & hit else dict(mirror)


def dangling(source: str | None, address: str, endpoint: str, deployment: str, declared: bool) -> str:
    """The error for an endpoint that would route to ``deployment``, which the plan leaves absent."""
    msg = (
        f"{source + ': ' if source else ''}{address}: traffic.{deployment}: endpoint {endpoint} would "
        f"route to deployment {deployment}, which does not exist after this plan"
    )
    if not declared:
        msg += "; the file declares no traffic, so the recorded traffic is kept: declare `traffic:` for this endpoint"
    return msg


def kept_traffic(deployment: str, name: str, endpoint: str, endpoint_attrs: EndpointAttrs) -> list[str]:
    """Errors for a deployment destroyed alone (a targeted destroy) while ``endpoint``, which
    stays, still sends it live or mirrored traffic."""
    errors = []
    for key, shares in (("traffic", endpoint_attrs.get("traffic")), ("mirror_traffic", endpoint_attrs.get("mirror_traffic"))):
        pct = {k.lower(): v for k, v in (shares or {}).items()}.get(name.lower())
        if pct:
            errors.append(
                f"{deployment} cannot be destroyed alone: {endpoint} still sends it {pct}% "
                f"{'mirrored ' if key == 'mirror_traffic' else ''}traffic; move the traffic in the "
                f"endpoint's file and apply first, or destroy the endpoint too (--target {endpoint})"
            )
    return errors

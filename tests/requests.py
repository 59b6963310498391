"""Requests as the engine sends them: the value a step sets lives in the request's attributes.

``Provider.scale(request)`` reads ``request.instance_count`` and ``set_routing(request)`` reads
``request.traffic``/``request.mirror_traffic`` (reconciler/plan/provider.py); the engine builds
those attributes from the plan. Tests that scale or route by hand build them with these two.
"""

from __future__ import annotations

import dataclasses

from reconciler.plan.provider import ApplyRequest


def counted(request: ApplyRequest, count: int) -> ApplyRequest:
    """``request`` asking for ``count`` instances (what a SCALE step sends)."""
    return dataclasses.replace(request, attributes={**request.attributes, "instance_count": count})


def routed(request: ApplyRequest, traffic: dict[str, int], mirror_traffic: dict[str, int] | None = None) -> ApplyRequest:
    """``request`` routing by ``traffic`` and ``mirror_traffic`` (what a TRAFFIC step sends)."""
    attrs = {**request.attributes, "traffic": dict(traffic), "mirror_traffic": dict(mirror_traffic or {})}
    return dataclasses.replace(request, attributes=attrs)

"""What clients of a fake endpoint get in a window of time: simulated from the fake's world, so
that engine tests judge gates without processes (the real measurements are the routers', tested
on local, docker and kubernetes).

Every window holds ``window_requests`` live requests (a provider setting, default 1000; 0: no
client sends anything), split as the endpoint routes them: each deployment gets its share, spread
evenly over its live instances, and a mirrored deployment a copy of its mirror share. Each instance
answers as its configuration says, read from the deployment's environment variables when it was
started: ``FAKE_ERROR_RATE`` (the fraction answered 5xx, default 0) and ``FAKE_LATENCY_S`` (every
answer's latency, default 0.02). A window's numbers depend on the world when it is closed only, not
on time: the engine's clock is injected in tests, and a window looked at twice reads the same.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from reconciler.model.windows import SeriesStats, WindowStats

#: Prometheus' default histogram buckets, as the router's
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)
DEFAULT_LATENCY_S = 0.02


def behaviour(env: Mapping[str, str]) -> dict[str, float]:
    """How an instance started with these environment variables (its deployment's) answers."""
    return {
        "error_rate": float(env.get("FAKE_ERROR_RATE", 0) or 0),
        "latency_s": float(env.get("FAKE_LATENCY_S", DEFAULT_LATENCY_S) or DEFAULT_LATENCY_S),
    }


def _spread(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _buckets(answered: int, latency: float) -> list[tuple[float, int]]:
    return [(le, answered if latency <= le else 0) for le in BOUNDS]


def window(world: dict[str, Any], endpoint: str, requests: int, opened: int) -> WindowStats:
    """The stats of one window of ``endpoint`` (an address) as the world stands."""
    objects = world["objects"]
    ep = objects.get(endpoint) or {}
    name = endpoint.split(".", 1)[1]
    counts: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for kind, split in (("live", ep.get("traffic") or {}), ("mirror", ep.get("mirror_traffic") or {})):
        for dep, pct in sorted(split.items()):
            obj = objects.get(f"deployment.{name}.{dep}") or {}
            alive = [i for i in obj.get("instances", []) if i["alive"]]
            if not alive:
                continue
            for inst, n in zip(alive, _spread(requests * int(pct) // 100, len(alive)), strict=True):
                how = inst.get("behaviour") or behaviour({})
                key = (dep, str(inst["config"]), kind)
                counts[key][0] += n
                counts[key][1] += round(n * how["error_rate"])
                counts[key][2] = max(counts[key][2], how["latency_s"])
    series = [
        SeriesStats(deployment=dep, digest=config, traffic=kind, requests=int(n), errors_5xx=int(failed),  # type: ignore[arg-type]
                    buckets=_buckets(int(n - failed), latency))
        for (dep, config, kind), (n, failed, latency) in sorted(counts.items())
    ]
    return WindowStats(series=series, window_s=0.0, source=f"fake world (window {opened})")


__all__ = ["BOUNDS", "behaviour", "window"]

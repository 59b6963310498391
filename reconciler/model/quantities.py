"""Kubernetes resource quantities (``"500m"`` CPUs, ``"512Mi"`` memory) as numbers: the quota
check reads them from deployment YAML, the Kubernetes provider from nodes and ResourceQuotas."""

from __future__ import annotations

import re
from typing import Any

_CPU = re.compile(r"^\s*([0-9.]+)\s*(m?)\s*$")
_MEM = re.compile(r"^\s*([0-9.]+)\s*([KMGT]i?)?\s*$", re.IGNORECASE)
_MEM_UNITS = {
    "": 1 / 2**30,
    "k": 1e3 / 2**30,
    "ki": 1 / 2**20,
    "m": 1e6 / 2**30,
    "mi": 1 / 2**10,
    "g": 1e9 / 2**30,
    "gi": 1.0,
    "t": 1e12 / 2**30,
    "ti": 2**10,
}


def parse_cpu(value: Any) -> float | None:
    """Kubernetes CPU quantity: ``"500m"`` -> 0.5, ``"2"`` -> 2.0."""
    m = _CPU.match(str(value))
    if not m:
        return None
    return float(m.group(1)) / (1000 if m.group(2) else 1)


def parse_memory_gb(value: Any) -> float | None:
    """Kubernetes memory quantity in GiB: ``"512Mi"`` -> 0.5, ``"2Gi"`` -> 2.0."""
    m = _MEM.match(str(value))
    if not m:
        return None
    return float(m.group(1)) * _MEM_UNITS[(m.group(2) or "").lower()]


__all__ = [
    "parse_cpu",
    "parse_memory_gb",
]

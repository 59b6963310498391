"""The built-in catalog of managed instance types and their Azure quota families.

Numbers come from DOMAIN.md (vCPUs / memory GiB / GPUs). Quota is counted per VM family, named
as Azure names it; a few large GPU SKUs are exempt from the 20% upgrade reserve. Users add
their own types in recon.yaml (``instance_types:``); those are merged over the built-ins.
"""

from __future__ import annotations

from reconciler.model.resources import InstanceType

DSV2 = "standardDSv2Family"
FSV2 = "standardFSv2Family"
ESV3 = "standardESv3Family"
NCAS_T4 = "standardNCASv3_T4Family"
NCSV3 = "standardNCSv3Family"
NCADS_A100 = "standardNCADSA100v4Family"

# SKUs that do not need the 20% extra reservation (DOMAIN.md, seed 004).
EXEMPT_SKUS: frozenset[str] = frozenset(
    {
        "Standard_NC24ads_A100_v4",
        "Standard_NC48ads_A100_v4",
        "Standard_NC96ads_A100_v4",
        "Standard_NC40ads_H100_v5",
        "Standard_NC80adis_H100_v5",
        "Standard_ND96amsr_A100_v4",
        "Standard_ND96asr_v4",
        "Standard_ND40rs_v2",
        "Standard_ND96is_H100_v5",
        "Standard_ND96isr_H100_v5",
    }
)

# SKUs the Azure SDK warns are too small for most models.
SMALL_SKUS: frozenset[str] = frozenset({"Standard_DS1_v2", "Standard_DS2_v2"})

# name: (cores, memory GiB, gpus, family)
_BUILTIN: dict[str, tuple[float, float, int, str]] = {
    "Standard_DS1_v2": (1, 3.5, 0, DSV2),
    "Standard_DS2_v2": (2, 7, 0, DSV2),
    "Standard_DS3_v2": (4, 14, 0, DSV2),
    "Standard_DS4_v2": (8, 28, 0, DSV2),
    "Standard_DS5_v2": (16, 56, 0, DSV2),
    "Standard_F2s_v2": (2, 4, 0, FSV2),
    "Standard_F4s_v2": (4, 8, 0, FSV2),
    "Standard_F8s_v2": (8, 16, 0, FSV2),
    "Standard_F16s_v2": (16, 32, 0, FSV2),
    "Standard_F32s_v2": (32, 64, 0, FSV2),
    "Standard_F48s_v2": (48, 96, 0, FSV2),
    "Standard_F64s_v2": (64, 128, 0, FSV2),
    "Standard_F72s_v2": (72, 144, 0, FSV2),
    "Standard_E2s_v3": (2, 16, 0, ESV3),
    "Standard_E4s_v3": (4, 32, 0, ESV3),
    "Standard_NC4as_T4_v3": (4, 28, 1, NCAS_T4),
    "Standard_NC8as_T4_v3": (8, 56, 1, NCAS_T4),
    "Standard_NC16as_T4_v3": (16, 110, 1, NCAS_T4),
    "Standard_NC64as_T4_v3": (64, 440, 4, NCAS_T4),
    "Standard_NC6s_v3": (6, 112, 1, NCSV3),
    "Standard_NC12s_v3": (12, 224, 2, NCSV3),
    "Standard_NC24s_v3": (24, 448, 4, NCSV3),
    "Standard_NC24ads_A100_v4": (24, 220, 1, NCADS_A100),
    "Standard_NC48ads_A100_v4": (48, 440, 2, NCADS_A100),
    "Standard_NC96ads_A100_v4": (96, 880, 4, NCADS_A100),
}


def builtin_instance_types() -> dict[str, InstanceType]:
    """A fresh copy of the built-in catalog, keyed by Azure's spelling of the SKU."""
    return {
        name: InstanceType(
            cores=cores, memory_gb=mem, gpus=gpus, family=family, quota_exempt=name in EXEMPT_SKUS
        )
        for name, (cores, mem, gpus, family) in _BUILTIN.items()
    }


def merged_catalog(additions: dict[str, InstanceType] | None = None) -> dict[str, InstanceType]:
    """Built-ins overlaid with the user's additions (an addition may redefine a built-in)."""
    catalog = builtin_instance_types()
    catalog.update(additions or {})
    return catalog


def lookup(catalog: dict[str, InstanceType], name: str) -> str | None:
    """The catalog's spelling of ``name`` (SKU names compare case-insensitively), or None."""
    if name in catalog:
        return name
    folded = name.lower()
    for known in catalog:
        if known.lower() == folded:
            return known
    return None


__all__ = [
    "DSV2",
    "ESV3",
    "EXEMPT_SKUS",
    "FSV2",
    "NCADS_A100",
    "NCAS_T4",
    "NCSV3",
    "SMALL_SKUS",
    "builtin_instance_types",
    "lookup",
    "merged_catalog",
]

"""Everything the Azure provider takes from recon itself, in one place.

The provider depends on the provider interface (``providers.base``) and on a few of recon's own
types and helpers, all from the protocol modules (tests/layering.py): its errors, the rollout
``Batch`` type, a guarded rollout's ``WindowStats``/``SeriesStats``, the state's ``StateResource``, the VM-size catalog,
``digest_of``, ``normal_traffic`` and ``is_uri``
(which model paths Azure fetches itself). Importing them here, and only here, keeps the rest of
``providers/azure`` free of recon's module layout (one file to change when modules move).
"""

from __future__ import annotations

from reconciler.model.catalog import lookup, merged_catalog
from reconciler.model.errors import ConfigError, Diagnostic, PermanentError, ProviderError, RetryableError
from reconciler.model.remote import is_uri
from reconciler.model.resources import digest_of, normal_traffic
from reconciler.model.windows import SeriesStats, WindowStats
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource

__all__ = [
    "Batch",
    "ConfigError",
    "Diagnostic",
    "PermanentError",
    "ProviderError",
    "RetryableError",
    "SeriesStats",
    "StateResource",
    "WindowStats",
    "digest_of",
    "is_uri",
    "lookup",
    "merged_catalog",
    "normal_traffic",
]

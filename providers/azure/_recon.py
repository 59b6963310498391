"""Everything the Azure provider takes from recon itself, in one place.

The provider depends on the provider interface (``providers.base``) and on a few of recon's own
types and helpers: its errors, the rollout ``Batch`` type, the state's ``StateResource``, the
VM-size catalog and the 20% quota reserve. Importing them here, and only here, keeps the rest of
``providers/azure`` free of recon's module layout (one file to change when modules move).
"""

from __future__ import annotations

from reconciler.catalog import lookup, merged_catalog
from reconciler.errors import ConfigError, Diagnostic, PermanentError, ProviderError, RetryableError
from reconciler.plan import Batch
from reconciler.quota import reserved_instances
from reconciler.resources import digest_of
from reconciler.state import StateResource

__all__ = [
    "Batch",
    "ConfigError",
    "Diagnostic",
    "PermanentError",
    "ProviderError",
    "RetryableError",
    "StateResource",
    "digest_of",
    "lookup",
    "merged_catalog",
    "reserved_instances",
]

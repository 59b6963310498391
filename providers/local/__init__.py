"""The local provider: endpoints served by processes on this machine (no daemon, no cluster)."""

from __future__ import annotations

from providers.local.provider import LocalProvider as LocalProvider

__all__ = ["LocalProvider"]

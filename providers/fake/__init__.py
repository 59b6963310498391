"""The fake provider, for planner and engine tests (see ``providers.fake.provider``); what its
endpoints' clients get in a window of time is simulated in ``providers.fake.windows``."""

from __future__ import annotations

from providers.fake.provider import WORLD_FILE, FakeInvariantError, FakeProvider, FakeWorld, template_digest

__all__ = ["WORLD_FILE", "FakeInvariantError", "FakeProvider", "FakeWorld", "template_digest"]

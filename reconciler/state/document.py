"""The recorded state: a typed, versioned snapshot of what recon manages.

Like Terraform's ``statefile.File{Serial, Lineage, State}``: ``lineage`` names one history of a
state (made once, kept forever), ``serial`` grows by one at every write, and is how conflicting
writes and stale plans are detected. Each resource records its provider, what it depends on
(to order deletions whose configuration is gone), its attributes as last applied (canonical form,
the same shape as the planner's desired attributes) and what the provider reported (``outputs``:
ids, scoring URI, provisioning state, instances). Secrets never go in here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.model.errors import StateError
from reconciler.model.resources import ResourceType

STATE_FORMAT_VERSION = 1

class StateResource(BaseModel):
    """One managed object as last recorded.

    ``attributes``: the canonical desired attributes that were applied (what the plan's
    ``after`` was). ``outputs``: what the provider reported (ids, ``scoring_uri``,
    ``provisioning_state``, ``instances`` ...). ``status``: ``ready`` when the last operation
    finished, ``tainted``/``failed`` when it did not (the next plan repairs it).
    """

    model_config = ConfigDict(extra="forbid")

    address: str
    type: ResourceType
    name: str
    provider: str
    attributes: dict[str, Any]
    depends_on: list[str] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(default_factory=dict)
    status: Literal["ready", "failed", "tainted"] = "ready"


class State(BaseModel):
    """The whole state document."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = STATE_FORMAT_VERSION
    lineage: str = Field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    recon_version: str = ""
    workspace: str = ""
    resources: dict[str, StateResource] = Field(default_factory=dict)

    def get(self, address: str) -> StateResource | None:
        return self.resources.get(address)

    def to_bytes(self) -> bytes:
        """Deterministic JSON (sorted keys) so that equal states have equal bytes."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "state") -> State:
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StateError(f"{source} is not valid JSON: {exc}") from exc
        return cls.from_raw(raw, source)

    @classmethod
    def from_raw(cls, raw: Any, source: str = "state") -> State:
        """A state from its parsed JSON document (checked: format version, every field)."""
        if not isinstance(raw, dict):
            raise StateError(f"{source} is not a recon state document (expected a JSON object)")
        version = raw.get("format_version")
        if version != STATE_FORMAT_VERSION:
            raise StateError(
                f"{source} has format_version {version!r}; this recon reads version {STATE_FORMAT_VERSION}"
            )
        try:
            return cls.model_validate(raw)
        except ValueError as exc:
            raise StateError(f"{source} is not a valid recon state: {exc}") from exc

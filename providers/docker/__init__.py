"""The Docker provider: endpoints served by containers on a Docker engine (SDK imported lazily)."""

from __future__ import annotations

from providers.docker.provider import DockerProvider as DockerProvider

__all__ = ["DockerProvider"]

"""The Kubernetes provider: endpoints as Deployments, Services, Secrets and HPAs on a cluster."""

from __future__ import annotations

from providers.kubernetes.provider import KubernetesProvider

__all__ = ["KubernetesProvider"]

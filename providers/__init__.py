"""Providers: where endpoints really run. ``get_provider`` imports each lazily."""

from __future__ import annotations

import importlib
from typing import Any

from reconciler.plan.provider import Provider, ProviderContext

# kind -> "module:Class"; imported only when used, so that a missing SDK (docker, kubernetes, azure:
# pip extras) is an error only for projects that ask for that provider, one that names the extra.
# (azure: its SDKs are imported on the first request, so `recon validate` works without them.)
PROVIDERS: dict[str, str] = {
    "local": "providers.local:LocalProvider",
    "docker": "providers.docker:DockerProvider",
    "kubernetes": "providers.kubernetes:KubernetesProvider",
    "azure": "providers.azure:AzureProvider",
    "fake": "providers.fake:FakeProvider",
}


def get_provider(kind: str, settings: dict[str, Any], context: ProviderContext) -> Provider:
    from reconciler.model.errors import ConfigError, Diagnostic
    from reconciler.model.extras import EXTRAS, require_extra

    target = PROVIDERS.get(kind)
    if target is None:
        raise ConfigError(
            Diagnostic(
                f"unknown provider kind {kind!r}",
                file="recon.yaml",
                path="provider.kind",
                hint="use one of: " + ", ".join(sorted(k for k in PROVIDERS if k != "fake")),
            )
        )
    if kind in EXTRAS:  # its SDK, a pip extra: say which and how to install it before importing
        require_extra(kind)
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Provider] = getattr(module, class_name)
    return cls(settings, context)

"""``provider:`` settings of ``kind: azure`` (recon.yaml), each also from the environment.

Where recon talks to: an Azure ML workspace, named by subscription, resource group and workspace
name, in a region (``location``). Each comes from recon.yaml's ``provider:`` first, else from the
environment variable the Azure tools use. Credentials never come from recon.yaml: azure-identity's
``DefaultAzureCredential`` finds them (see ``providers/azure/arm.py``).

=======================  ================================  =========================================
setting                  environment variable              meaning
=======================  ================================  =========================================
subscription_id          AZURE_SUBSCRIPTION_ID             the workspace's subscription (required)
resource_group           AZURE_RESOURCE_GROUP              its resource group (required)
workspace                AZUREML_WORKSPACE_NAME            the workspace name (required)
location                 AZURE_LOCATION                    its region, for the usages/quotas APIs and
                                                           the ``location`` of tracked resources
                                                           (required)
arm_endpoint             AZURE_RESOURCE_MANAGER_ENDPOINT   ARM's base URL (default
                                                           https://management.azure.com; sovereign
                                                           clouds, tests)
=======================  ================================  =========================================

Tuning (recon.yaml only): ``poll_interval`` (seconds between polls when ARM sends no
``Retry-After``; default 5), ``operation_timeout`` (seconds an operation may run when ARM names no
``x-ms-async-operation-timeout``; default 3600), ``conflict_wait`` (seconds recon waits for
another operation on the same resource to end on a 409, in all; default 600), ``retry_total``
(azure-core's retries of one request on 408/429/5xx and dropped connections; default 6),
``request_timeout`` (seconds a single HTTP request may take; default 120), ``metrics_delay``
(guarded rollouts: seconds recon waits, after a window's last minute, for Azure Monitor to have
that minute's metrics; default 180).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model.errors import ConfigError, Diagnostic

DEFAULT_ARM = "https://management.azure.com"
API_VERSION = "2024-04-01"

# setting -> environment variable
ENVIRONMENT = {
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "resource_group": "AZURE_RESOURCE_GROUP",
    "workspace": "AZUREML_WORKSPACE_NAME",
    "location": "AZURE_LOCATION",
    "arm_endpoint": "AZURE_RESOURCE_MANAGER_ENDPOINT",
}
TUNING = {"poll_interval": 5.0, "operation_timeout": 3600.0, "conflict_wait": 600.0, "retry_total": 6,
          "request_timeout": 120.0, "metrics_delay": 180.0}
KNOWN = set(ENVIRONMENT) | set(TUNING)
WORKSPACE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class AzureSettings:
    """The workspace recon manages and how it talks to ARM. Holds no secret."""

    subscription_id: str
    resource_group: str
    workspace: str
    location: str
    arm_endpoint: str = DEFAULT_ARM
    poll_interval: float = 5.0
    operation_timeout: float = 3600.0
    conflict_wait: float = 600.0
    retry_total: int = 6
    request_timeout: float = 120.0
    metrics_delay: float = 180.0

    @property
    def scope(self) -> str:
        """The OAuth scope of tokens for ARM (``https://management.azure.com/.default``)."""
        return self.arm_endpoint.rstrip("/") + "/.default"

    @property
    def workspace_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )

    @property
    def location_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/providers/Microsoft.MachineLearningServices"
            f"/locations/{self.location}"
        )


def _error(key: str, message: str, hint: str) -> ConfigError:
    return ConfigError(Diagnostic(message, file="recon.yaml", path=f"provider.{key}", hint=hint))


def parse_settings(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> AzureSettings:
    """Settings from recon.yaml's ``provider:`` (``raw``), completed from the environment.

    Every problem is a ``ConfigError`` naming recon.yaml, the key, and what would be right; all of
    them at once.
    """
    env = os.environ if environ is None else environ
    problems: list[Diagnostic] = []
    unknown = sorted(set(raw) - KNOWN - {"kind"})
    for key in unknown:
        problems.append(_error(key, f"unknown setting {key!r} of provider kind azure",
                               "known: " + ", ".join(sorted(KNOWN))).diagnostics[0])
    values: dict[str, Any] = {}
    for key, var in ENVIRONMENT.items():
        value = raw.get(key)
        if value is None or value == "":
            value = env.get(var) or None
        if value is None and key != "arm_endpoint":
            problems.append(_error(key, f"{key} is not set",
                                   f"set provider.{key} in recon.yaml or the environment variable {var}"
                                   ).diagnostics[0])
        elif value is not None and not isinstance(value, str):
            problems.append(_error(key, f"{key} must be a string, not {type(value).__name__}",
                                   f"for example {key}: {_example(key)}").diagnostics[0])
        elif value is not None:
            values[key] = value.strip()
    for key, default in TUNING.items():
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            problems.append(_error(key, f"{key} must be a number of {'retries' if key == 'retry_total' else 'seconds'}"
                                   f" >= 0, not {value!r}", f"for example {key}: {default}").diagnostics[0])
        else:
            values[key] = int(value) if key == "retry_total" else float(value)
    problems += _check_values(values)
    if problems:
        raise ConfigError(problems)
    values["arm_endpoint"] = str(values.get("arm_endpoint") or DEFAULT_ARM).rstrip("/")
    return AzureSettings(**values)


def _check_values(values: dict[str, Any]) -> list[Diagnostic]:
    problems = []
    sub = values.get("subscription_id")
    if sub is not None and not GUID.match(sub):
        problems.append(_error("subscription_id", f"subscription_id {sub!r} is not a subscription ID",
                               "a GUID such as 00000000-1111-2222-3333-444444444444").diagnostics[0])
    ws = values.get("workspace")
    if ws is not None and not WORKSPACE_NAME.match(ws):
        problems.append(_error("workspace", f"workspace name {ws!r} is not valid",
                               "3 to 33 letters, digits, '-' or '_', starting with a letter or digit"
                               ).diagnostics[0])
    arm = values.get("arm_endpoint")
    if arm is not None and not arm.startswith("https://"):
        problems.append(_error("arm_endpoint", f"arm_endpoint {arm!r} is not an https:// URL",
                               "azure-core sends tokens only over HTTPS; for example "
                               "https://management.usgovcloudapi.net").diagnostics[0])
    return problems


def _example(key: str) -> str:
    return {
        "subscription_id": "00000000-1111-2222-3333-444444444444",
        "resource_group": "my-rg",
        "workspace": "my-workspace",
        "location": "eastus",
        "arm_endpoint": "https://management.azure.com",
    }[key]


__all__ = ["API_VERSION", "AzureSettings", "parse_settings"]

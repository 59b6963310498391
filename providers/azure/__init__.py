"""The Azure provider: recon's plans applied to Azure ML online endpoints through ARM.

``provider: {kind: azure, subscription_id, resource_group, workspace, location}`` in recon.yaml
(each also from the environment; see ``settings``). The Azure SDKs (azure-core, azure-mgmt-core,
azure-identity, azure-storage-blob: ``pip install 'recon[azure]'``) are imported on first use.
"""

from __future__ import annotations

from providers.azure.provider import AzureProvider as AzureProvider

__all__ = ["AzureProvider"]

"""The emulated Azure workspace a test runs against: ARM emulator + Azurite + test CA.

Shared by ``tests/azure`` (its conftest) and the provider contract suite (``tests/contract``), so
that both run the same thing. One test CA and one Azurite per session (started on first use,
stopped at exit); one emulator per test, so that no test sees another's resources.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.azure.azurite import Azurite
from tests.azure.emulator import Emulator
from tests.azure.tls import TestCA, make_ca

# Variables that would make DefaultAzureCredential pick another credential than the emulator's
# managed identity (or reach a real cloud): removed for the tests.
FOREIGN = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
           "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME", "AZURE_PASSWORD", "MSI_ENDPOINT", "MSI_SECRET",
           "IDENTITY_SERVER_THUMBPRINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "AZURE_SUBSCRIPTION_ID",
           "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME", "AZURE_LOCATION", "AZURE_RESOURCE_MANAGER_ENDPOINT")

_shared: dict[str, object] = {}


def shared_ca() -> TestCA:
    if "ca" not in _shared:
        _shared["ca"] = make_ca(Path(tempfile.mkdtemp(prefix="recon-test-ca-")))
    ca = _shared["ca"]
    assert isinstance(ca, TestCA)
    return ca


def shared_azurite() -> Azurite:
    if "azurite" not in _shared:
        azurite = Azurite(Path(tempfile.mkdtemp(prefix="recon-azurite-")))
        atexit.register(azurite.close)
        _shared["azurite"] = azurite
    azurite = _shared["azurite"]
    assert isinstance(azurite, Azurite)
    return azurite


def client_environ(emulator: Emulator, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without foreign Azure variables, plus the
    emulator's CA and managed identity."""
    env = {k: v for k, v in (base if base is not None else os.environ).items() if k not in FOREIGN}
    env.update(emulator.environ())
    return env


@contextlib.contextmanager
def emulated_workspace() -> Iterator[Emulator]:
    """An emulator serving on loopback, with this process's environment pointed at it meanwhile."""
    emulator = Emulator(shared_ca(), shared_azurite()).serve()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(client_environ(emulator, saved))
    try:
        yield emulator
    finally:
        os.environ.clear()
        os.environ.update(saved)
        emulator.close()

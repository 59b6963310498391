"""A project that asks for a provider or state backend whose pip extra is not installed gets one
``Error:`` line naming it and the pip command, exit 1, no traceback.

"Not installed" for real: recon runs in a child interpreter without site-packages (``python -S``)
whose path is this worktree and a folder of links to every installed package but the SDK's, so that
``import azure`` fails there as it does where ``pip install recon`` alone was run."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = (
    "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n"
    "name: my-endpoint\nauth_mode: key\n"
)
CASES = {  # extra -> (top-level packages it installs, recon.yaml, environment)
    "azure": ({"azure"}, "provider:\n  kind: azure\n  subscription_id: 00000000-1111-2222-3333-444444444444\n"
              "  resource_group: rg\n  workspace: my-workspace\n  location: westeurope\n", {}),
    "docker": ({"docker"}, "provider:\n  kind: docker\n", {}),
    "kubernetes": ({"kubernetes"}, "provider:\n  kind: kubernetes\n", {}),
    "postgres": ({"psycopg", "psycopg_binary"}, "state:\n  backend: postgres\n",
                 {"RECON_STATE_DSN": "postgresql://recon@127.0.0.1:9/recon"}),
}
WHAT = {
    "azure": "the azure provider needs the Azure SDKs (azure-core, azure-mgmt-core, azure-identity, "
             "azure-storage-blob), which is not installed (no module named 'azure.core')",
    "docker": "the docker provider needs the Docker SDK for Python (docker), which is not installed "
              "(no module named 'docker')",
    "kubernetes": "the kubernetes provider needs the Kubernetes Python client (kubernetes), which is not "
                  "installed (no module named 'kubernetes')",
    "postgres": "the postgres state backend needs psycopg 3 (psycopg[binary]), which is not installed "
                "(no module named 'psycopg')",
}


def site_without(folder: Path, hidden: set[str]) -> Path:
    """A folder of links to every entry of site-packages but ``hidden`` (import names)."""
    folder.mkdir()
    for name in ("purelib", "platlib"):
        for entry in Path(sysconfig.get_paths()[name]).iterdir():
            if entry.name not in hidden and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


def recon(site: Path, project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **env, "PYTHONPATH": f"{ROOT}{os.pathsep}{site}"}
    return subprocess.run([sys.executable, "-S", "-m", "reconciler", "-C", str(project), *args],
                          capture_output=True, text=True, timeout=120, env=environ, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("extra", sorted(CASES))
def test_a_missing_extra_is_named_with_its_pip_command(extra: str, tmp_path: Path) -> None:
    hidden, settings, env = CASES[extra]
    project = tmp_path / "project"
    project.mkdir()
    (project / "recon.yaml").write_text(settings)
    (project / "endpoint.yml").write_text(ENDPOINT)
    without = site_without(tmp_path / "site", hidden)
    done = recon(without, project, env, "plan")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == f"Error: {WHAT[extra]}: pip install 'recon[{extra}]'\n"
    assert done.stdout == ""
    # the same interpreter and folder with the SDK in it: the extra is not what fails
    with_it = site_without(tmp_path / "site-with", set())
    other = recon(with_it, project, env, "plan")
    assert f"recon[{extra}]" not in other.stderr and "Traceback" not in other.stderr


def test_validate_needs_no_provider_sdk(tmp_path: Path) -> None:
    """Checking the files asks nothing of the provider: it works without the provider's extra."""
    hidden, settings, env = CASES["azure"]
    project = tmp_path / "project"
    project.mkdir()
    (project / "recon.yaml").write_text(settings)
    (project / "endpoint.yml").write_text(ENDPOINT)
    done = recon(site_without(tmp_path / "site", hidden), project, env, "validate")
    assert done.returncode == 0, done.stderr
    assert "Success!" in done.stdout

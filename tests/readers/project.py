"""A real recon project, applied and changed, whose plan JSON the readers read: Azure's managed sample
on the fake provider, driven through the real CLI in child processes (``recon -C DIR ...``).

Applied first: endpoint my-endpoint with deployments blue, green and old. Then changed, so that the
plan has every kind of change and a repeated name:

- blue: instance_count 1 -> 3 (update), after an environment variable was set behind recon's back;
- green: instance_type Standard_DS3_v2 -> Standard_F4s_v2 (replace: it cannot change in place);
- old: its file removed (delete: no file declares it);
- my-endpoint: a ``team`` tag and traffic (update);
- other-endpoint (no tags) with its own deployment blue of 5 instances (creates).

``plan.json`` is ``recon show -json tf.plan``, ``destroy.json`` the same of a destroy plan, and
``state.json`` ``recon show -json`` of the state.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from providers.fake import WORLD_FILE, FakeWorld
from tests.conftest import copy_online_samples

KEEP = ("endpoint.yml", "blue-deployment.yml", "green-deployment.yml")


@dataclass(frozen=True)
class Project:
    root: Path
    plan: Path  # recon show -json tf.plan
    destroy: Path  # recon show -json destroy.plan
    state: Path  # recon show -json


def recon(root: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "-C", str(root), *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=root.parent,  # -C names the project
    )
    if done.returncode != 0:
        raise AssertionError(f"recon {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def build(tmp: Path) -> Project:
    sample = copy_online_samples(tmp / "online")
    for f in sample.iterdir():
        if f.suffix == ".yml" and f.name not in KEEP:
            f.unlink()
    root = sample
    (root / "recon.yaml").write_text("workspace: readers\nprovider:\n  kind: fake\n")
    old = (root / "blue-deployment.yml").read_text().replace("name: blue", "name: old")
    (root / "old-deployment.yml").write_text(old)
    recon(root, "apply", "-auto-approve")

    FakeWorld(root / ".recon" / WORLD_FILE).set_attribute(
        "deployment.my-endpoint.blue", "environment_variables.MODE", "debug"
    )  # someone on the portal
    _edit(root / "blue-deployment.yml", "instance_count: 1", "instance_count: 3")
    _edit(root / "green-deployment.yml", "instance_type: Standard_DS3_v2", "instance_type: Standard_F4s_v2")
    (root / "old-deployment.yml").unlink()
    _edit(root / "endpoint.yml", "auth_mode: key", "auth_mode: key\ntags:\n  team: ml-platform\ntraffic:\n  blue: 100")
    other = root / "other"
    other.mkdir()
    (other / "endpoint.yml").write_text(
        (root / "endpoint.yml").read_text().split("tags:")[0].replace("my-endpoint", "other-endpoint")
    )
    blue = (root / "blue-deployment.yml").read_text().replace("my-endpoint", "other-endpoint")
    (other / "blue-deployment.yml").write_text(
        blue.replace("instance_count: 3", "instance_count: 5").replace("../../", "../../../")
    )

    recon(root, "plan", "-out=tf.plan")  # Terraform's spelling, relative to -C
    plan = tmp / "plan.json"
    plan.write_text(recon(root, "show", "-json", "tf.plan"))
    recon(root, "plan", "-destroy", "-out=destroy.plan")
    destroy = tmp / "destroy.json"
    destroy.write_text(recon(root, "show", "-json", "destroy.plan"))
    state = tmp / "state.json"
    state.write_text(recon(root, "show", "-json"))
    return Project(root, plan, destroy, state)


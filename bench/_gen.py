"""Generate benchmark projects of Azure ML CLI v2 YAML, and their recorded state.

A project of D deployments has D/2 endpoints (blue + green each), D/10 registered models (one
small folder each) and D/100 registered environments (one conda file each), all with ``$schema``,
and one shared code folder with score.py. Layout::

    recon.yaml                              workspace, provider local, quota, raised limits
    code/score.py                           shared by every deployment
    environments/env-NNN/{environment.yml,conda.yaml}
    models/model-NNNNN/{model.yml,model/weights.json}
    endpoints/ep-NNNNN/{endpoint.yml,blue.yml,green.yml}

``record_state`` writes ``.recon/state.json`` from recon's own loader (the state an apply of the
project would leave), and ``change_deployments`` then edits 1% of the deployments, half by
instance_count (a scale step) and half by an environment variable (a rolling update).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

SCHEMA = "https://azuremlschemas.azureedge.net/latest/{}.schema.json"
INSTANCE_TYPE = "Standard_DS3_v2"

SCORE_PY = '''\
import json
import os

model = None


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "weights.json")) as f:
        model = json.load(f)


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return [model["bias"] + sum(w * x for w, x in zip(model["w"], row)) for row in rows]
'''


@dataclass(frozen=True)
class Shape:
    """How many of each resource a project of ``deployments`` deployments has."""

    deployments: int

    @property
    def endpoints(self) -> int:
        return max(1, self.deployments // 2)

    @property
    def models(self) -> int:
        return max(1, self.deployments // 10)

    @property
    def environments(self) -> int:
        return max(1, self.deployments // 100)

    @property
    def resources(self) -> int:
        return self.deployments + self.endpoints + self.models + self.environments


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _recon_yaml(shape: Shape) -> str:
    return (
        "workspace: bench\n"
        "provider:\n  kind: local\n"
        f"quota:\n  standardDSv2Family: {shape.deployments * 4 * 4 + 1000}\n"
        f"limits:\n  endpoints: {shape.endpoints}\n  deployments: {shape.deployments}\n"
    )


def _environment(i: int) -> tuple[str, str]:
    doc = (
        f"$schema: {SCHEMA.format('environment')}\n"
        f"name: env-{i:03d}\n"
        "version: 1\n"
        "image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest\n"
        "conda_file: conda.yaml\n"
        f"description: bench environment {i}\n"
    )
    conda = (
        f"name: env-{i:03d}\n"
        "channels:\n  - conda-forge\n"
        "dependencies:\n  - python=3.11\n  - pip\n"
        "  - pip:\n      - azureml-inference-server-http\n"
        f"      - bench-pinned-package=={i}.0\n"
    )
    return doc, conda


def _model(i: int) -> tuple[str, str]:
    doc = (
        f"$schema: {SCHEMA.format('model')}\n"
        f"name: model-{i:05d}\n"
        "version: 1\n"
        "path: model/\n"
        "type: custom_model\n"
        f"description: bench model {i}\n"
    )
    weights = json.dumps({"bias": float(i), "w": [0.5, -0.25, 1.0, 0.75, -0.5, 0.25, 2.0, -1.0, 0.1, 0.3]}) + "\n"
    return doc, weights


def _endpoint(name: str, both: bool) -> str:
    traffic = "traffic:\n  blue: 90\n  green: 10\n" if both else "traffic:\n  blue: 100\n"
    return (
        f"$schema: {SCHEMA.format('managedOnlineEndpoint')}\n"
        f"name: {name}\n"
        "auth_mode: key\n"
        f"{traffic}"
        "tags:\n  team: bench\n"
    )


def _deployment(endpoint: str, name: str, index: int, shape: Shape) -> str:
    return (
        f"$schema: {SCHEMA.format('managedOnlineDeployment')}\n"
        f"name: {name}\n"
        f"endpoint_name: {endpoint}\n"
        f"model: azureml:model-{index // 10 % shape.models:05d}:1\n"
        "code_configuration:\n  code: ../../code/\n  scoring_script: score.py\n"
        f"environment: azureml:env-{index // 100 % shape.environments:03d}:1\n"
        f"instance_type: {INSTANCE_TYPE}\n"
        f"instance_count: {1 + index % 3}\n"
        "environment_variables:\n"
        f"  BENCH_INDEX: \"{index}\"\n"
        "  LOG_LEVEL: info\n"
        "request_settings:\n"
        "  request_timeout_ms: 3000\n"
        "  max_concurrent_requests_per_instance: 2\n"
    )


def deployment_files(root: Path, shape: Shape) -> list[Path]:
    """The deployment files of a generated project, in index order."""
    out: list[Path] = []
    for e in range(shape.endpoints):
        folder = root / "endpoints" / f"ep-{e:05d}"
        out += [folder / "blue.yml", folder / "green.yml"]
    return out[: shape.deployments]


def generate(root: Path, deployments: int) -> Shape:
    """Write a fresh project of ``deployments`` deployments at ``root`` (replacing what is there)."""
    shape = Shape(deployments)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _write(root / "recon.yaml", _recon_yaml(shape))
    _write(root / "code" / "score.py", SCORE_PY)
    for i in range(shape.environments):
        doc, conda = _environment(i)
        _write(root / "environments" / f"env-{i:03d}" / "environment.yml", doc)
        _write(root / "environments" / f"env-{i:03d}" / "conda.yaml", conda)
    for i in range(shape.models):
        doc, weights = _model(i)
        _write(root / "models" / f"model-{i:05d}" / "model.yml", doc)
        _write(root / "models" / f"model-{i:05d}" / "model" / "weights.json", weights)
    index = 0
    for e in range(shape.endpoints):
        name = f"ep-{e:05d}"
        _write(root / "endpoints" / name / "endpoint.yml", _endpoint(name, index + 1 < shape.deployments))
        for colour in ("blue", "green"):
            if index < shape.deployments:
                _write(root / "endpoints" / name / f"{colour}.yml", _deployment(name, colour, index, shape))
            index += 1
    return shape


def record_state(root: Path) -> int:
    """Write ``root/.recon/state.json``: the state an apply of the project as it is would record.

    Uses recon's own loader, so the attributes are exactly its canonical form. Returns the number
    of resources recorded."""
    from reconciler.load.loader import load_project
    from reconciler.state.document import State, StateResource

    desired = load_project(root)
    resources = {
        address: StateResource(
            address=address,
            type=r.type,
            name=r.name,
            provider="local",
            attributes=r.attributes,
            depends_on=list(r.depends_on),
        )
        for address, r in desired.resources.items()
    }
    state = State(serial=1, workspace=desired.workspace, resources=resources)
    path = root / ".recon" / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(state.to_bytes())
    return len(resources)


def change_deployments(root: Path, shape: Shape, fraction: float = 0.01) -> list[str]:
    """Edit ``fraction`` of the deployments, spread evenly: even picks get one more instance,
    odd picks a new environment variable value. Returns the edited files (project-relative)."""
    files = deployment_files(root, shape)
    count = max(1, round(len(files) * fraction))
    stride = len(files) // count
    changed: list[str] = []
    for n in range(count):
        path = files[n * stride]
        text = path.read_text()
        if n % 2 == 0:
            for k in (1, 2, 3):
                if f"instance_count: {k}\n" in text:
                    text = text.replace(f"instance_count: {k}\n", f"instance_count: {k % 3 + 1}\n")
                    break
        else:
            text = text.replace("LOG_LEVEL: info\n", "LOG_LEVEL: debug\n")
        path.write_text(text)
        changed.append(path.relative_to(root).as_posix())
    return changed


def yaml_files(root: Path) -> list[Path]:
    """Every YAML file of the project (what a loader has to parse), .recon/ excluded."""
    return sorted(p for p in root.rglob("*.y*ml") if ".recon" not in p.parts)

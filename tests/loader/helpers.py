"""A tiny project builder for loader tests: a valid managed endpoint + deployment, then overrides."""

from __future__ import annotations

from pathlib import Path

from reconciler.model.errors import Diagnostic

S = "https://azuremlschemas.azureedge.net/latest/"

ENDPOINT = f"""$schema: {S}managedOnlineEndpoint.schema.json
name: my-endpoint
auth_mode: key
"""

BLUE = f"""$schema: {S}managedOnlineDeployment.schema.json
name: blue
endpoint_name: my-endpoint
model:
  path: model/
code_configuration:
  code: code/
  scoring_script: score.py
environment:
  image: python:3.11
instance_type: Standard_DS3_v2
instance_count: 1
"""


def deployment(name: str = "blue", endpoint: str = "my-endpoint", extra: str = "") -> str:
    return (
        BLUE.replace("name: blue", f"name: {name}").replace(
            "endpoint_name: my-endpoint", f"endpoint_name: {endpoint}"
        )
        + extra
    )


def project(root: Path, files: dict[str, str | None]) -> Path:
    """Write endpoint.yml + blue.yml + model/ + code/score.py, then ``files`` (None deletes)."""
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "model" / "model.pkl").write_bytes(b"weights")
    (root / "code").mkdir(exist_ok=True)
    (root / "code" / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    base: dict[str, str | None] = {"endpoint.yml": ENDPOINT, "blue.yml": BLUE}
    base.update(files)
    for rel, text in base.items():
        path = root / rel
        if text is None:
            if path.exists():
                path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def find(diags: list[Diagnostic], file: str | None, path: str | None) -> Diagnostic:
    for d in diags:
        if d.file == file and d.path == path:
            return d
    raise AssertionError(f"no diagnostic for {file}/{path} in:\n" + "\n".join(d.format() for d in diags))

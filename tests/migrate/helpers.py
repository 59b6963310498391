"""Helpers for the import-v1 tests: v1 files written the way users have them, the command run
through click's CliRunner, and the v2 files read back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from reconciler.cli import cli

SCORE_PY = """\
import json
import os


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.json")) as f:
        model = json.load(f)


def run(raw_data):
    data = json.loads(raw_data)["data"]
    return [model["slope"] * x + model["intercept"] for x in data]
"""


def nested(dotted: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` for ``"a.b"``."""
    head, _, rest = dotted.partition(".")
    return {head: nested(rest, value) if rest else value}


def write(path: Path, data: Any) -> Path:
    """``data`` as JSON (``.json``) or YAML (anything else)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2) if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return path


@dataclass
class V1:
    """A folder with the v1 files of one service, and the folder import-v1 writes into."""

    root: Path
    runner: CliRunner

    @property
    def out(self) -> Path:
        return self.root / "v2"

    def model(self, name: str = "model", slope: float = 2.0) -> Path:
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        (folder / "model.json").write_text(json.dumps({"slope": slope, "intercept": 1.0}))
        return folder

    def inference(self, name: str = "inferenceconfig.json", environment: Any = None) -> Path:
        src = self.root / "source_dir"
        src.mkdir(exist_ok=True)
        (src / "score.py").write_text(SCORE_PY)
        data: dict[str, Any] = {"entryScript": "score.py", "sourceDirectory": "./source_dir"}
        if environment is not None:
            data["environment"] = environment
        return write(self.root / name, data)

    def run(self, config: Any, *args: str, name: str = "deploymentconfig.json", model: bool = True,
            compute: bool = True) -> Result:
        """``recon import-v1 --dc <config written as name> ... --out v2``, the inference config's paths
        relative to the root folder (``--path``), as when ``az ml model deploy`` ran there."""
        dc = write(self.root / name, config)
        argv = ["import-v1", "--deployment-config", str(dc), "--endpoint", "my-service", "--out", str(self.out)]
        if "--path" not in args:
            argv += ["--path", str(self.root)]
        if model:
            argv += ["--model-path", str(self.model())]
        if compute:
            argv += ["--compute", "aks-compute"]
        return self.runner.invoke(cli, [*argv, *args])

    def ok(self, config: Any, *args: str, **kw: Any) -> Result:
        result = self.run(config, *args, **kw)
        assert result.exit_code == 0, result.output
        return result

    def doc(self, name: str) -> Any:
        return yaml.safe_load((self.out / name).read_text())

    def deployment(self, name: str = "blue") -> Any:
        return self.doc(f"{name}-deployment.yml")

    def endpoint(self) -> Any:
        return self.doc("endpoint.yml")

    def migration(self) -> str:
        return (self.out / "MIGRATION.md").read_text()


def at(doc: Any, dotted: str) -> Any:
    """The value at ``a.b.c`` of ``doc`` (keys may contain no dots except ``nvidia.com/gpu``)."""
    for part in dotted.replace("nvidia.com/gpu", "\0").split("."):
        doc = doc[part.replace("\0", "nvidia.com/gpu")]
    return doc

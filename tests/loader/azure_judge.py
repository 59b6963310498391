"""Two judges of one YAML document: Azure's own loader (azure-ai-ml) and recon's.

``azure_verdict`` runs the document through the loader the Azure ML CLI v2 picks for its kind
(``load_online_endpoint``, ``load_online_deployment``, ``load_model``, ``load_environment``: what
``az ml online-deployment create -f FILE`` and its siblings call before anything is sent).

``recon_verdict`` runs it through what ``recon validate`` runs (``load_project``, then the planner's
own checks) in a project made of the document and what it references, as a user who points recon at
that one file would have it: a deployment gets an endpoint of the kind Azure's loader gives the
deployment (``type: kubernetes`` or not), and every registered asset it names
(``azureml:NAME:VERSION``, ``azureml:NAME@latest``) gets a declaration. The project's provider is
``azure``: what Azure accepts is what recon must accept when it deploys to Azure.

Both judges read the file unchanged, where it is (the other YAML files beside it are left out of
the project by ``exclude:`` in a recon.yaml written next to it, then removed).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler.load.loader import load_project
from reconciler.model.errors import ConfigError
from reconciler.plan.planner import make_plan
from reconciler.state.document import State

S = "https://azuremlschemas.azureedge.net/latest/"
KINDS = ("endpoint", "deployment", "model", "environment")
_SCHEMA_RE = re.compile(r"([A-Za-z]+)\.schema\.json\s*$")
_FAMILY = {
    "managedonlineendpoint": "endpoint",
    "kubernetesonlineendpoint": "endpoint",
    "managedonlinedeployment": "deployment",
    "kubernetesonlinedeployment": "deployment",
    "model": "model",
    "environment": "environment",
}
JUDGE_PREFIX = "zz-judge-"  # files the harness writes beside a document (removed afterwards)


@dataclass(frozen=True)
class Verdict:
    """accepted or not, and why (the first lines of the judge's own words)."""

    accepted: bool
    detail: str = ""
    stage: str = ""  # where Azure refused: "load" (its loader) or "send" (its create command, offline)

    @property
    def word(self) -> str:
        return "accepts" if self.accepted else "refuses"


def read_yaml(path: Path) -> Any:
    """The document as PyYAML reads it, or None when it is not YAML."""
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        return None


def family(path: Path, default: str | None = None) -> str | None:
    """Which Azure loader a user runs on this file: from its ``$schema``, else ``default``."""
    doc = read_yaml(path)
    declared = doc.get("$schema") if isinstance(doc, dict) else None
    if declared is None and doc is None:  # not YAML: read the $schema line as text
        m = re.search(r"(?m)^\$schema:\s*(\S+)", path.read_text(errors="replace"))
        declared = m.group(1) if m else None
    m = _SCHEMA_RE.search(str(declared or ""))
    return _FAMILY.get(m.group(1).lower(), default) if m else default


# -- Azure's loader ---------------------------------------------------------------------------------


def azure_verdict(path: Path, kind: str) -> Verdict:
    """What the Azure ML CLI v2 says of the file before it sends anything: its loader for ``kind``
    (``stage`` "load"), then the checks its create command runs offline on what was loaded
    (``stage`` "send": names, identity, scale settings, the scoring script's syntax, an
    environment's image or build). Every error the SDK raises is a refusal, whatever its class."""
    logging.disable(logging.CRITICAL)  # the SDK logs its validation errors as well as raising them
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its experimental, deprecation and marshmallow warnings
            return _azure(path, kind)
    finally:
        logging.disable(logging.NOTSET)


def _azure(path: Path, kind: str) -> Verdict:
    import azure.ai.ml as aml

    loader = {
        "endpoint": aml.load_online_endpoint,
        "deployment": aml.load_online_deployment,
        "model": aml.load_model,
        "environment": aml.load_environment,
    }[kind]
    try:
        entity = loader(str(path))
    except Exception as exc:
        return Verdict(False, _short(f"{type(exc).__name__}: {exc}"), "load")
    try:
        _before_sending(entity)
    except Exception as exc:
        return Verdict(False, _short(f"{type(exc).__name__}: {exc}"), "send")
    return Verdict(True, type(entity).__name__)


def _before_sending(entity: Any) -> None:
    """The offline checks of ``az ml <kind> create`` (azure-ai-ml's operations), in its order."""
    from azure.ai.ml._utils._endpoint_utils import validate_scoring_script
    from azure.ai.ml._utils.utils import is_mlflow_uri, is_url, validate_ml_flow_folder
    from azure.ai.ml.entities import Environment, Model, OnlineDeployment, OnlineEndpoint

    if isinstance(entity, OnlineEndpoint):
        entity._to_rest_online_endpoint("eastus")  # validates the name and the identity type
        return
    if isinstance(entity, OnlineDeployment):
        entity._validate()  # the name; a managed deployment's scale settings
        code = entity.code_configuration.code if entity.code_configuration else None
        if isinstance(code, str) and not code.startswith("azureml:"):
            validate_scoring_script(entity)  # OnlineDeploymentOperations.begin_create_or_update
        for asset in (entity.environment, entity.model):
            if isinstance(asset, Environment | Model):
                _before_sending(asset)  # the orchestrator registers inline assets first
        return
    if isinstance(entity, Environment):
        entity.validate()  # name, and an image or a build (Environment._to_rest_object)
    elif isinstance(entity, Model) and isinstance(entity.path, str | Path):
        path = str(entity.path)
        if not (is_url(path) or is_mlflow_uri(path)):
            validate_ml_flow_folder(path, entity.type)  # ModelOperations.create_or_update


def azure_deployment_kind(doc: Any) -> str:
    """The kind azure-ai-ml gives a deployment document: ``type: kubernetes`` or managed."""
    return "kubernetes" if isinstance(doc, dict) and doc.get("type") == "kubernetes" else "managed"


def _short(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = text.split(" Visit this link")[0]
    return text[:400]


# -- recon ------------------------------------------------------------------------------------------


def recon_verdict(path: Path) -> Verdict:
    """What ``recon validate`` says of a project of ``path`` and what it references."""
    folder = path.parent
    written = _references(path)
    keep = {path.name, *written}
    others = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix in (".yml", ".yaml") and p.relative_to(folder).as_posix() not in keep
    )
    settings = folder / "recon.yaml"
    settings.write_text(yaml.safe_dump({"provider": {"kind": "azure"}, "exclude": others}))
    try:
        desired = load_project(folder)
        plan = make_plan(desired, State())
    except ConfigError as exc:
        return Verdict(False, _short("; ".join(d.format() for d in exc.diagnostics[:3])))
    finally:
        settings.unlink()
        for name in written:
            target = folder / name
            if target.is_dir():
                for f in target.iterdir():
                    f.unlink()
                target.rmdir()
            else:
                target.unlink()
    if plan.errors:
        return Verdict(False, _short("; ".join(plan.errors[:3])))
    return Verdict(True, ", ".join(sorted({r.type for r in desired.resources.values()})))


def _references(path: Path) -> list[str]:
    """Write, beside a deployment, its endpoint and the registered assets it names; their names."""
    doc = read_yaml(path)
    if not isinstance(doc, dict) or family(path, "deployment") != "deployment":
        return []
    folder = path.parent
    written: list[str] = []
    endpoint = doc.get("endpoint_name")
    if isinstance(endpoint, str) and endpoint:
        kind = azure_deployment_kind(doc)
        body: dict[str, Any] = {"$schema": f"{S}{kind}OnlineEndpoint.schema.json", "name": endpoint}
        if kind == "kubernetes":
            body["compute"] = "azureml:inferencecompute"
        written.append(_write(folder, "endpoint.yml", body))
    for key in ("model", "environment"):
        ref = doc.get(key)
        m = re.fullmatch(r"azureml:([^:@/]+)(?::([^:@/]+)|@latest)", ref) if isinstance(ref, str) else None
        if m is None:
            continue
        name, version = m.group(1), m.group(2) or "1"
        if key == "model":
            model = folder / f"{JUDGE_PREFIX}model"
            model.mkdir(exist_ok=True)
            (model / "weights.bin").write_bytes(b"weights")
            written.append(model.name)
            body = {"$schema": f"{S}model.schema.json", "name": name, "version": version, "path": model.name}
        else:
            body = {"$schema": f"{S}environment.schema.json", "name": name, "version": version, "image": "python:3.11"}
        written.append(_write(folder, f"{key}.yml", body))
    return written


def looks_like_conda(path: Path) -> bool:
    """A conda environment file (no ``$schema``; ``dependencies`` or ``channels``): neither judge reads
    it alone; both read it as an environment's ``conda_file``."""
    doc = read_yaml(path)
    return isinstance(doc, dict) and "$schema" not in doc and bool({"dependencies", "channels"} & set(doc))


def conda_environment(path: Path) -> Path:
    """An environment file beside the conda file ``path`` that names it (the document to judge)."""
    body = {"$schema": f"{S}environment.schema.json", "name": "judge-conda", "version": "1",
            "image": "python:3.11", "conda_file": path.name}
    return path.parent / _write(path.parent, f"environment-{path.stem}.yml", body)


def _write(folder: Path, name: str, body: dict[str, Any]) -> str:
    target = folder / f"{JUDGE_PREFIX}{name}"
    target.write_text(yaml.safe_dump(body, sort_keys=False))
    return target.name

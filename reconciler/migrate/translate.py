"""A loaded v1 ``Service`` -> the CLI v2 files: one endpoint, one deployment per version.

Contract: ``translate(opts, service)`` returns an ``Output``: every file to write into the output
folder (YAML documents with their ``$schema`` line, conda files, Dockerfiles), the rows of
MIGRATION.md and the files' names. It never puts a key (``primary_key``, ``secondary_key``) in a
file. Relative paths in the YAML are relative to the output folder, as v2 resolves them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.migrate.code import rel
from reconciler.migrate.deployment import deployment_fields
from reconciler.migrate.envs import code_and_environment
from reconciler.migrate.ignored import ignored_row
from reconciler.migrate.rows import Row, plain, row
from reconciler.migrate.service import Options, Service
from reconciler.migrate.version import Version
from reconciler.model.errors import ConfigError, Diagnostic

SCHEMA = "https://azuremlschemas.azureedge.net/latest/{}.schema.json"
KINDS = {
    "kubernetes": ("kubernetesOnlineEndpoint", "kubernetesOnlineDeployment"),
    "managed": ("managedOnlineEndpoint", "managedOnlineDeployment"),
}
MODEL_RE = re.compile(r"^(azureml:)?(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*):(?P<version>[1-9][0-9]*)$")


@dataclass
class Output:
    """The files of one import (path under the output folder -> text), MIGRATION.md's rows, and the
    warnings (settings v1 ignored, values recon did not take as written)."""

    files: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)


def dump(doc: dict[str, Any]) -> str:
    """A v2 document as YAML, keys in the order given (``$schema`` first)."""
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


def translate(opts: Options, svc: Service) -> Output:
    """See the module docstring."""
    out = Output(warnings=list(svc.warnings))
    endpoint = _endpoint(opts, svc, out)
    out.files["endpoint.yml"] = dump(endpoint)
    for v in svc.versions:
        name = f"{v.name}-deployment.yml"
        out.files[name] = dump(_deployment(opts, svc, v, name, out))
    return out


def _endpoint(opts: Options, svc: Service, out: Output) -> dict[str, Any]:
    s, target, rows = svc.settings, opts.target, out.rows
    doc: dict[str, Any] = {"$schema": SCHEMA.format(KINDS[target][0]), "name": svc.endpoint}
    kind = "an AksEndpoint" if str(s["compute_type"].value).lower() == "aksendpoint" else "an AksWebservice"
    rows.append(row("endpoint", s["compute_type"], f"{kind}: `{KINDS[target][0]}` (endpoint.yml)"))
    if target == "kubernetes":
        doc["compute"] = _compute(opts, svc, out)
    else:
        for name in ("compute_target_name", "compute_target"):
            rows.append(row("endpoint", s[name],
                            f"dropped: a managed endpoint has no compute (instance_type {opts.instance_type})"))
    doc["auth_mode"] = _auth(s, rows)
    doc["traffic"] = dict(svc.traffic)
    for name in ("description", "tags", "properties"):
        meta = svc.meta.get(name)
        if meta is not None and meta.value:
            doc[name] = meta.value if name == "description" else {str(k): str(v) for k, v in meta.value.items()}
    _service_rows(svc, target, rows)
    return doc


def _compute(opts: Options, svc: Service, out: Output) -> str:
    """``--compute``, else the config's compute key: ``computeTargetName`` (read by v1 for an
    AksWebservice), else ``ComputeTarget``/``computeTarget`` (in Microsoft's examples, but the v1 CLI
    took the compute from ``--ct``): a key v1 did not read is used with a warning that says so."""
    s = svc.settings
    endpoint = str(s["compute_type"].value).lower() == "aksendpoint"
    chosen = None if opts.compute else next((s[n] for n in ("compute_target_name", "compute_target")
                                             if s[n].value is not None), None)
    name = opts.compute or (chosen.value if chosen is not None else None)
    if name is None:
        raise ConfigError(Diagnostic("a Kubernetes endpoint needs the compute it runs on", file="--compute",
                                     hint="give --compute NAME (the AKS cluster attached as Kubernetes "
                                          "compute; v1's --ct) or computeTargetName in the deployment config"))
    compute = name if name.startswith("azureml:") else f"azureml:{name}"
    for n in ("compute_target_name", "compute_target"):
        setting = s[n]
        if setting.value is None:
            out.rows.append(row("endpoint", setting, "not set"))
        elif setting is not chosen:
            out.rows.append(row("endpoint", setting, f"not used: `compute: {compute}` comes from "
                                                     f"{'--compute' if opts.compute else 'computeTargetName'}"))
        else:
            unread = n == "compute_target" or (endpoint and setting.key == "computeTargetName")
            if unread:
                out.warnings.append(svc.config.diagnostic((str(setting.key),), f"the v1 CLI did not read "
                                    f"{setting.key} {'for an AksEndpoint ' if endpoint else ''}(it took the "
                                    f"compute from --ct); recon uses it as the endpoint's compute",
                                    "give --compute NAME to choose another", severity="warning"))
            out.rows.append(row("endpoint", setting, f"`compute: {compute}` (endpoint.yml)"
                                + (" (v1's CLI did not read this key: see the warning)" if unread else "")))
    if opts.compute:
        out.rows.append(plain("endpoint", "--compute", opts.compute, f"`compute: {compute}` (endpoint.yml)"))
    return compute


def _auth(s: dict[str, Any], rows: list[Row]) -> str:
    key, token = s["auth_enabled"], s["token_auth_enabled"]
    if token.value:
        rows.append(row("endpoint", token, "`auth_mode: aml_token` (endpoint.yml)"))
        rows.append(row("endpoint", key, "off: token auth replaces it" + ("" if key.key else " (its default, "
                                                                          "true, gives way to token auth)")))
        return "aml_token"
    rows.append(row("endpoint", token, "off: no token auth"))
    if key.value:
        rows.append(row("endpoint", key, "`auth_mode: key` (endpoint.yml)"))
    else:
        rows.append(row("endpoint", key, "`auth_mode: key`: v2 endpoints always authenticate "
                                         "(no anonymous mode); callers now send a key"))
    return "key"


def _service_rows(svc: Service, target: str, rows: list[Row]) -> None:
    s = svc.settings
    ns = s["namespace"]
    rows.append(row("endpoint", ns, "no field in v2 YAML: the namespace is chosen when the cluster is attached "
                                    "(`az ml compute attach --type Kubernetes --namespace NS`)"
                    if ns.value else "not set"))
    rows.append(row("endpoint", s["blobfuse_enabled"],
                    "no v2 equivalent: v2 always downloads the model into the instance"))
    for name in ("primary_key", "secondary_key"):
        rows.append(row("endpoint", s[name], "never written: v2 generates the endpoint's keys; read them with "
                                             "`az ml online-endpoint get-credentials` (or `recon keys`)"))
    if target == "managed":
        rows.append(plain("endpoint", "namespace/cpu/memory", None, "replaced by the managed instance type"))
    rows += [ignored_row("endpoint", ig) for ig in svc.ignored]


def _deployment(opts: Options, svc: Service, v: Version, file: str, out: Output) -> dict[str, Any]:
    target = opts.target
    doc: dict[str, Any] = {"$schema": SCHEMA.format(KINDS[target][1]), "name": v.name, "endpoint_name": svc.endpoint}
    if target == "kubernetes":
        doc["type"] = "kubernetes"
    doc["model"] = _model(opts, v, out)
    inference = _inference_path(opts, v)
    ce = code_and_environment(inference, opts.base or Path.cwd(), opts.out, v.name)
    out.files.update(ce.files)
    out.rows += ce.rows
    out.warnings += ce.warnings
    if ce.code_configuration is not None:
        doc["code_configuration"] = ce.code_configuration
    if ce.environment is not None:
        doc["environment"] = ce.environment
    if ce.environment_variables:
        doc["environment_variables"] = ce.environment_variables
    if target == "managed":
        doc["instance_type"] = opts.instance_type
    fields, rows = deployment_fields(v, svc, target, file)
    doc.update(fields)
    out.rows += rows + [ignored_row(f"deployment {v.name}", ig) for ig in v.ignored] + _traffic_rows(v, svc)
    return doc


def _traffic_rows(v: Version, svc: Service) -> list[Row]:
    scope, share = f"deployment {v.name}", svc.traffic.get(v.name, 0)
    named = v.extra.get("version_name")
    rows = [row(scope, named, f"`name: {v.name}` ({v.name}-deployment.yml)") if named is not None
            else plain(scope, "version_name", None, f"`name: {v.name}` (from --deployment-name, or as v1 "
                                                    "named an AksEndpoint's version: the endpoint's name)")]
    stated = v.settings["traffic_percentile"]
    if v.is_default and stated.value is not None and stated.value != share:
        rows.append(row(scope, stated, f"ignored: the default version takes the rest, `traffic.{v.name}: {share}`"))
    else:
        rows.append(row(scope, stated, f"`traffic.{v.name}: {share}` (endpoint.yml)"))
    role = "default: takes the rest of the traffic" if v.is_default else "keeps its traffic_percentile"
    rows.append(plain(scope, "is_default", v.is_default, role))
    if v.is_control:
        rows.append(plain(scope, "is_control_version_type", True,
                          f"keeps its share ({share}%): v2 has no version types, only the traffic map"))
    return rows


def _inference_path(opts: Options, v: Version) -> Path | None:
    own = v.extra.get("inference_config")
    if own is not None:
        return v.file.path.parent / str(own.value)
    return opts.inference_config


def _model(opts: Options, v: Version, out: Output) -> str | dict[str, str]:
    ref, path = opts.model, opts.model_path
    models, own_ref, own_path = v.extra.get("models"), v.extra.get("model"), v.extra.get("model_path")
    if models is not None:
        if len(models.value) != 1:
            raise ConfigError(v.file.diagnostic((*v.at, "models"), f"{len(models.value)} models given",
                                                "a v2 deployment serves one model: put the files in one folder"))
        ref, path = models.value[0], None
    if own_ref is not None:
        ref, path = str(own_ref.value), None
    if own_path is not None:
        path = v.file.path.parent / str(own_path.value)
        ref = own_ref.value if own_ref is not None else None
    return _model_field(ref, path, v, out, opts.out)


def _model_field(ref: str | None, path: Path | None, v: Version, out: Output, folder: Path) -> str | dict[str, str]:
    scope = f"deployment {v.name}"
    if path is not None and not path.exists():
        hint = "give the folder (or file) of the model"
        if "model_path" in v.extra:
            raise ConfigError(v.file.diagnostic((*v.at, str(v.extra["model_path"].key)), f"{path} does not exist",
                                                hint + ", relative to this file"))
        raise ConfigError(Diagnostic(f"{path} does not exist", file="--model-path", hint=hint))
    if ref is None and path is None:
        raise ConfigError(Diagnostic(f"no model for version {v.name!r}", file="--model",
                                     hint="give --model azureml:NAME:VERSION or --model-path DIR"))
    if ref is None:
        inline = {"path": rel(path, folder) if path else ""}
        out.rows.append(plain(scope, "model", str(path), f"`model.path: {inline['path']}` (inline model)"))
        return inline
    m = MODEL_RE.match(ref)
    if m is None:
        raise ConfigError(Diagnostic(f"model {ref!r} is not NAME:VERSION", file="--model",
                                     hint="write azureml:NAME:VERSION, e.g. azureml:my-model:1"))
    full = f"azureml:{m['name']}:{m['version']}"
    if path is not None:  # a registered model whose files are here: declare it
        name = f"{m['name']}-{m['version']}-model.yml"
        out.files[name] = dump({"$schema": SCHEMA.format("model"), "name": m["name"], "version": int(m["version"]),
                                "path": rel(path, folder)})
        out.rows.append(plain(scope, "model", full, f"`model: {full}`, declared in {name}"))
    else:
        out.rows.append(plain(scope, "model", full, f"`model: {full}` (registered: az ml resolves it; recon "
                                                    "needs it declared or recorded)"))
    return full

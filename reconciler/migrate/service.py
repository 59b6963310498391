"""The v1 service as read: service-wide settings and its versions, each with v1's defaults.

Contract: ``load_service(options)`` reads the deployment config (and the versions file), validates
every key and value, and returns a ``Service`` whose ``versions`` carry every per-version setting
(given or defaulted) and whose ``traffic`` is the v2 traffic map; any problem raises ``ConfigError``
with all the problems found. It reads no inference config or model: ``translate`` does.

Versions: without ``--versions`` the config is one AksWebservice (``computeType: AKS``), served by
one deployment named ``version_name`` or ``--deployment-name`` (default ``blue``), or one
AksEndpoint (``computeType: AKSENDPOINT``) whose version is named as v1 named it: ``versionName``,
else the endpoint's name. With ``--versions``, each entry is one ``AksEndpoint.create_version``; a
config that has ``version_name`` (or is an AKSENDPOINT) is the endpoint's first version, the default
one unless an entry says ``is_default: true``.

Settings v1 did not use for the service (``ignored``) are set aside with a warning each: they change
nothing, as in v1. ``Service.warnings`` holds those warnings, at their file, line and key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.migrate.files import V1File, read_data
from reconciler.migrate.ignored import Ignored, set_aside, warning
from reconciler.migrate.models import ACI_ONLY, DeployConfigDoc, VersionDoc
from reconciler.migrate.parse import parse
from reconciler.migrate.settings import (
    SERVICE_DEFAULTS,
    VERSION_DEFAULTS,
    Setting,
    check_service,
    check_version,
    flatten,
    with_defaults,
)
from reconciler.migrate.traffic import traffic_map
from reconciler.migrate.version import Version
from reconciler.model.errors import ConfigError, Diagnostic

META = ("tags", "properties", "description")  # the endpoint's, when the config gives them
NAME_RE = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")


@dataclass(frozen=True)
class Options:
    """What ``recon import-v1`` was asked to do (paths as given; relative to the working folder)."""

    deployment_config: Path
    out: Path
    endpoint: str
    inference_config: Path | None = None
    model: str | None = None
    model_path: Path | None = None
    versions: Path | None = None
    target: str = "kubernetes"  # kubernetes | managed
    instance_type: str | None = None
    compute: str | None = None
    deployment_name: str | None = None  # default: "blue"; an AksEndpoint's: the endpoint's name, as v1
    base: Path | None = None  # what an inference config's paths are relative to (None: the working folder)


@dataclass
class Service:
    """The whole v1 service: service-wide settings, versions, the v2 traffic map."""

    endpoint: str
    settings: dict[str, Setting]
    versions: list[Version]
    traffic: dict[str, int]
    config: V1File
    versions_file: V1File | None = None
    meta: dict[str, Setting] = field(default_factory=dict)  # the config's tags, properties, description
    warnings: list[Diagnostic] = field(default_factory=list)  # what v1 ignored, and recon says so
    ignored: list[Ignored] = field(default_factory=list)  # service-wide settings v1 ignored


def load_service(opts: Options) -> Service:
    """Read and check the deployment config and versions file (see the module docstring)."""
    problems: list[Diagnostic] = []
    cfg = read_data(opts.deployment_config)
    doc = parse(DeployConfigDoc, cfg, cfg.data)
    given = flatten(doc, cfg.data, cfg, (), problems)
    ignored = set_aside(given)
    warnings = [warning(ig, cfg, ()) for ig in ignored]
    svc = with_defaults({k: v for k, v in given.items() if k in SERVICE_DEFAULTS}, SERVICE_DEFAULTS)
    problems += check_service(svc, cfg)
    endpoint_type = str(svc["compute_type"].value).lower() == "aksendpoint"
    own = {k: v for k, v in given.items() if k in VERSION_DEFAULTS}
    meta = {k: own[k] for k in META if k in own}
    versions: list[Version] = []
    vfile = read_data(opts.versions) if opts.versions is not None else None
    name = given.get("version_name")
    if name is not None and svc["compute_type"].key is not None and not endpoint_type:
        warnings.append(cfg.diagnostic((str(name.key),), "computeType is AKS: v1 read versionName and "
                                       "trafficPercentile only for an AksEndpoint; recon reads this config as "
                                       "an AksEndpoint's version", "write computeType: AKSENDPOINT",
                                       severity="warning"))
    if vfile is None or name is not None or endpoint_type:
        default = opts.deployment_name or (opts.endpoint if endpoint_type else "blue")
        versions.append(_version(name.value if name else default, own, cfg, (), problems))
        versions[0].extra = {"version_name": name} if name else {}
        versions[0].ignored = [ig for ig in ignored if ig.setting.name not in ACI_ONLY]
    elif set(own) - set(META):
        first = next(v for k, v in own.items() if k not in META)
        problems.append(cfg.diagnostic(tuple(str(first.key).split(".")),
                                       f"{first.key} is a version setting but the config has no version_name",
                                       "add version_name (the endpoint's first version) or move it "
                                       "to a version in the versions file"))
    if vfile is not None:
        versions += _versions(vfile, problems, warnings)
    endpoint_problem = _name_problem(opts.endpoint, "endpoint")
    if endpoint_problem is not None:
        problems.append(Diagnostic(endpoint_problem[0], file="--endpoint", hint=endpoint_problem[1]))
    _check_names(opts, versions, problems)
    if problems:
        raise ConfigError(problems)
    traffic = traffic_map(versions, problems, warnings)
    if problems:
        raise ConfigError(problems)
    service = Service(opts.endpoint, svc, versions, traffic, cfg, vfile, meta, warnings=warnings)
    service.ignored = [ig for ig in ignored if ig.setting.name in ACI_ONLY]
    return service


def _version(name: str, given: dict[str, Setting], f: V1File, at: tuple[str | int, ...],
             problems: list[Diagnostic]) -> Version:
    settings = with_defaults(given, VERSION_DEFAULTS)
    problems += check_version(settings, f, at)
    return Version(name=name, settings=settings, file=f, at=at)


def _versions(f: V1File, problems: list[Diagnostic], warnings: list[Diagnostic]) -> list[Version]:
    if not isinstance(f.data, list):
        raise ConfigError(f.diagnostic((), "the versions file must be a list of versions",
                                       "write one `- version_name: NAME` entry per AksEndpoint version"))
    out = []
    for i, raw in enumerate(f.data):
        try:
            doc = parse(VersionDoc, f, raw, (i,))
        except ConfigError as exc:
            problems += exc.diagnostics
            continue
        given = flatten(doc, raw, f, (i,), problems)
        ignored = set_aside(given)
        warnings += [warning(ig, f, (i,)) for ig in ignored]
        if "version_name" not in given:
            problems.append(f.diagnostic((i,), "a version needs version_name", "add `version_name: NAME`"))
            continue
        v = _version(given["version_name"].value, {k: s for k, s in given.items() if k in VERSION_DEFAULTS},
                     f, (i,), problems)
        v.is_default = bool(doc.is_default)
        v.is_control = bool(doc.is_control_version_type)
        v.extra = {k: s for k, s in given.items() if k not in VERSION_DEFAULTS}
        v.ignored = ignored
        out.append(v)
    return out


def _check_names(opts: Options, versions: list[Version], problems: list[Diagnostic]) -> None:
    """v2's rules for the names: each must be a valid endpoint / deployment name, once."""
    seen: dict[str, Version] = {}
    for v in versions:
        where = _name_at(v)
        why = _name_problem(v.name)
        if why is None and opts.target == "kubernetes" and not 6 <= len(v.name) + len(opts.endpoint) <= 62:
            why = (f"endpoint name plus deployment name have {len(v.name) + len(opts.endpoint)} characters",
                   "on Kubernetes they must total 6 to 62")
        if why is None and v.name.lower() in seen:
            why = (f"version {v.name!r} is given twice", "give each version its own name")
        if why is not None:
            problems.append(v.file.diagnostic(where, why[0], why[1]))
        seen[v.name.lower()] = v


def _name_at(v: Version) -> tuple[str | int, ...]:
    """The key path of the version's name in its file (the entry itself when the name is not there)."""
    raw: Any = v.file.data[v.at[0]] if v.at else v.file.data
    key = next((k for k in ("version_name", "versionName") if isinstance(raw, dict) and k in raw), None)
    return (*v.at, key) if key else v.at


def _name_problem(name: str, what: str = "deployment") -> tuple[str, str] | None:
    if NAME_RE.match(name) and "--" not in name and 3 <= len(name) <= 32:
        return None
    return (f"{name!r} is not a valid v2 {what} name",
            "3 to 32 characters: start with a letter; letters, digits and single hyphens; no hyphen at the end")

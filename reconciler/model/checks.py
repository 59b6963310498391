"""The rules one document must obey alone, and problems as values.

``parse_model`` validates a parsed document against its model (``reconciler.model.schema``) and
turns pydantic's errors into ``Problem`` values that name one expected type; ``check_endpoint``,
``check_deployment``, ``check_model`` and ``check_environment`` apply the accepted values
(case-insensitively, as Azure does) and the per-document service limits.

Nothing here reads files or knows line numbers: problems come back as ``Problem`` values with a
field path, and the loader places them in a file and on a line.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from reconciler.model.collector import check_data_collector
from reconciler.model.quantities import parse_cpu, parse_memory_gb
from reconciler.model.remote import unsplittable
from reconciler.model.schema import (
    AUTH_MODES,
    DEPLOYMENT_TYPES,
    IDENTITY_TYPES,
    MAX_INSTANCES_MANAGED,
    MAX_TIMEOUT_MS,
    MODEL_TYPES,
    NAME_RE,
    NETWORK_ACCESS,
    OS_TYPES,
    PLACEHOLDER_RE,
    SCALE_TYPES,
    InlineEnvironmentDoc,
    InlineModelDoc,
    KubernetesDeploymentDoc,
    KubernetesEndpointDoc,
    ManagedDeploymentDoc,
    ManagedEndpointDoc,
    ProbeDoc,
    ResourcesDoc,
)

GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one document: dotted-path parts, message, what would be right."""

    path: tuple[str | int, ...]
    message: str
    hint: str | None = None
    severity: str = "error"

    @property
    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path)


_EXPECTED = {
    "int": "an integer",
    "string": "a string",
    "bool": "true or false",
    "dict": "a mapping",
    "model": "a mapping",
    "list": "a list",
    "float": "a number",
    "union": "a string or a number",
}


def suggest(word: str, choices: Any) -> str | None:
    """``did you mean 'x'?`` for the closest choice, or None."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, type(int | None)) or get_args(annotation):
        for arg in get_args(annotation):
            found = _submodel(arg)
            if found is not None:
                return found
    return None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names (aliases where set) allowed at ``loc`` inside ``model``."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
        current = _submodel(field.annotation) if field is not None else None
    if current is None:
        return []
    return [f.alias or n for n, f in current.model_fields.items()]


def _from_pydantic(model: type[BaseModel], exc: ValidationError, prefix: tuple[Any, ...]) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        kind = err["type"]
        where = prefix + loc
        if kind == "extra_forbidden":
            allowed = _fields_at(model, loc[:-1])
            hint = suggest(str(loc[-1]), allowed) or (
                "allowed fields: " + ", ".join(sorted(allowed)) if allowed else None
            )
            problems.append(Problem(where, f"unknown field {loc[-1]!r}", hint))
        elif kind == "missing":
            problems.append(Problem(where, "required field is missing", f"add `{loc[-1]}:`"))
        else:
            expected = _EXPECTED.get(kind.split("_")[0])
            got = err.get("input")
            message = f"wrong type: got {got!r}" if expected else err["msg"]
            hint = f"expected {expected}" if expected else None
            if kind == "int_from_float":
                hint = "expected a whole number"
            problems.append(Problem(where, message, hint))
    return problems


def parse_model(model: type[BaseModel], data: Any, prefix: tuple[Any, ...] = ()) -> tuple[Any, list[Problem]]:
    """Validate ``data`` against ``model``: (instance or None, problems)."""
    if not isinstance(data, dict):
        return None, [Problem(prefix, f"wrong type: got {type(data).__name__}", "expected a mapping")]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, _from_pydantic(model, exc, prefix)


def check_enum(
    value: str | None, allowed: tuple[str, ...], path: tuple[Any, ...], out: list[Problem]
) -> str | None:
    """Lowercased ``value`` when it is one of ``allowed`` (case-insensitive); else a problem."""
    if value is None:
        return None
    folded = str(value).lower()
    if folded in allowed:
        return folded
    hint = suggest(folded, allowed) or ""
    out.append(
        Problem(
            path,
            f"{value!r} is not an accepted value",
            f"use one of: {', '.join(allowed)}" + (f"; {hint}" if hint else ""),
        )
    )
    return None


def check_name(name: str, path: tuple[Any, ...], what: str, out: list[Problem]) -> None:
    """The SDK rule for endpoint and deployment names."""
    if PLACEHOLDER_RE.search(name):
        out.append(
            Problem(
                path,
                f"{name!r} is a template placeholder, not a {what} name",
                "render the template before running recon, or exclude this file in recon.yaml",
            )
        )
    elif not NAME_RE.match(name):
        out.append(
            Problem(
                path,
                f"{name!r} is not a valid {what} name",
                "start with a letter; use letters, digits and hyphens; do not end with a hyphen",
            )
        )
    elif not 3 <= len(name) <= 32:
        out.append(
            Problem(path, f"{what} name {name!r} has {len(name)} characters", "use 3 to 32 characters")
        )


def _positive(value: int | None, path: tuple[Any, ...], out: list[Problem], minimum: int = 1) -> None:
    if value is not None and value < minimum:
        out.append(Problem(path, f"{value} is too small", f"use an integer >= {minimum}"))


def check_endpoint(doc: ManagedEndpointDoc | KubernetesEndpointDoc) -> list[Problem]:
    out: list[Problem] = []
    check_name(doc.name, ("name",), "endpoint", out)
    check_enum(doc.auth_mode, AUTH_MODES, ("auth_mode",), out)
    if doc.identity is not None:
        check_enum(doc.identity.type.replace(" ", ""), IDENTITY_TYPES, ("identity", "type"), out)
    if isinstance(doc, ManagedEndpointDoc):
        check_enum(doc.public_network_access, NETWORK_ACCESS, ("public_network_access",), out)
    for key in ("traffic", "mirror_traffic"):
        for dep, pct in (getattr(doc, key) or {}).items():
            if not 0 <= pct <= 100:
                out.append(
                    Problem((key, dep), f"{pct} is not a percentage", "use a whole number from 0 to 100")
                )
    return out


def _check_probe(probe: ProbeDoc | None, name: str, out: list[Problem]) -> None:
    if probe is None:
        return
    for field in ("initial_delay", "period", "timeout", "success_threshold", "failure_threshold"):
        _positive(getattr(probe, field), (name, field), out, 0 if field == "initial_delay" else 1)


def check_deployment(doc: ManagedDeploymentDoc | KubernetesDeploymentDoc, kind: str) -> list[Problem]:
    """Names, enums and service limits of one deployment document (``kind``: managed|kubernetes)."""
    out: list[Problem] = []
    check_name(doc.name, ("name",), "deployment", out)
    check_name(doc.endpoint_name, ("endpoint_name",), "endpoint", out)
    check_enum(doc.type, DEPLOYMENT_TYPES, ("type",), out)  # the kind follows it (the loader's)
    if kind == "kubernetes":
        total = len(doc.name) + len(doc.endpoint_name)
        if not 6 <= total <= 62:
            out.append(
                Problem(
                    ("name",),
                    f"endpoint name plus deployment name have {total} characters",
                    "on Kubernetes they must total 6 to 62 characters",
                )
            )
    if isinstance(doc, ManagedDeploymentDoc):
        check_enum(doc.egress_public_network_access, NETWORK_ACCESS, ("egress_public_network_access",), out)
        if doc.instance_type is None:
            out.append(
                Problem(
                    ("instance_type",),
                    "a managed deployment needs an instance_type",
                    "add e.g. `instance_type: Standard_DS3_v2`",
                )
            )
    _positive(doc.instance_count, ("instance_count",), out)
    limit = MAX_INSTANCES_MANAGED if kind == "managed" else None
    if limit and doc.instance_count is not None and doc.instance_count > limit:
        out.append(
            Problem(
                ("instance_count",),
                f"{doc.instance_count} instances exceed the service limit",
                f"a managed deployment has at most {limit} instances",
            )
        )
    scale = doc.scale_settings
    if scale is not None:
        stype = check_enum(scale.type, SCALE_TYPES, ("scale_settings", "type"), out)
        _positive(scale.min_instances, ("scale_settings", "min_instances"), out)
        _positive(scale.max_instances, ("scale_settings", "max_instances"), out)
        _positive(scale.polling_interval, ("scale_settings", "polling_interval"), out)
        pct = scale.target_utilization_percentage
        if pct is not None and not 1 <= pct <= 100:
            out.append(
                Problem(
                    ("scale_settings", "target_utilization_percentage"),
                    f"{pct} is not a percentage",
                    "use 1 to 100",
                )
            )
        if limit and scale.max_instances is not None and scale.max_instances > limit:
            out.append(
                Problem(
                    ("scale_settings", "max_instances"),
                    f"{scale.max_instances} instances exceed the service limit",
                    f"a managed deployment has at most {limit} instances",
                )
            )
        lo, hi = scale.min_instances or 1, scale.max_instances
        if stype == "target_utilization" and hi is not None and lo > hi:
            out.append(
                Problem(
                    ("scale_settings", "min_instances"),
                    f"min_instances {lo} is above max_instances {hi}",
                    "make min_instances <= max_instances",
                )
            )
    rs = doc.request_settings
    if rs is not None:
        _positive(rs.request_timeout_ms, ("request_settings", "request_timeout_ms"), out)
        _positive(
            rs.max_concurrent_requests_per_instance,
            ("request_settings", "max_concurrent_requests_per_instance"),
            out,
        )
        _positive(rs.max_queue_wait_ms, ("request_settings", "max_queue_wait_ms"), out, 0)
        top = MAX_TIMEOUT_MS[kind]
        if rs.request_timeout_ms is not None and rs.request_timeout_ms > top:
            out.append(
                Problem(
                    ("request_settings", "request_timeout_ms"),
                    f"{rs.request_timeout_ms} ms exceeds the service limit",
                    f"a {kind} deployment allows at most {top} ms",
                )
            )
    _check_probe(doc.liveness_probe, "liveness_probe", out)
    _check_probe(doc.readiness_probe, "readiness_probe", out)
    if doc.data_collector is not None:
        out += [Problem(*found) for found in check_data_collector(doc.data_collector)]
    if isinstance(doc, KubernetesDeploymentDoc) and doc.resources is not None:
        _check_resources(doc.resources, out)
    return out


def _check_resources(res: ResourcesDoc, out: list[Problem]) -> None:
    """Kubernetes quantities that parse, and a GPU request equal to its limit (Kubernetes does not
    overcommit extended resources: a pod whose GPU request differs from its limit is refused)."""
    for part in ("requests", "limits"):
        amounts = getattr(res, part)
        if amounts is None:
            continue
        for key, parse, example in (("cpu", parse_cpu, '"500m" or "2"'), ("memory", parse_memory_gb, '"512Mi" or "2Gi"')):
            value = getattr(amounts, key)
            if value is not None and parse(value) is None:
                out.append(Problem(("resources", part, key), f"{value!r} is not a Kubernetes quantity",
                                   f"write e.g. {key}: {example}"))
        gpu = amounts.gpu
        if gpu is not None and not gpu.strip().isdigit():
            out.append(Problem(("resources", part, GPU), f"{gpu!r} is not a whole number of GPUs",
                               f'write e.g. {GPU}: "1"'))
    requested = res.requests.gpu if res.requests else None
    limit = res.limits.gpu if res.limits else None
    wanted = int(requested) if requested is not None and requested.strip().isdigit() else 0
    if wanted and (limit is None or (limit.strip().isdigit() and int(limit) != wanted)):
        out.append(Problem(
            ("resources", "requests", GPU),
            f"{wanted} GPU(s) requested " + (f"with a limit of {limit}" if limit else "without a GPU limit"),
            f'Kubernetes requires them equal: set resources.limits.{GPU}: "{wanted}"'))


def check_model(doc: InlineModelDoc, prefix: tuple[Any, ...] = ()) -> list[Problem]:
    out: list[Problem] = []
    _check_splittable(doc.name, None, "model", prefix, out)
    check_enum(doc.type, MODEL_TYPES, (*prefix, "type"), out)
    if doc.version is not None and not _is_positive_int(doc.version):
        out.append(
            Problem(
                (*prefix, "version"),
                f"model version {doc.version!r} is not a positive integer",
                "use 1, 2, 3 ...",
            )
        )
    return out


def _is_positive_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1
    return isinstance(value, str) and value.isdigit() and int(value) >= 1


def check_environment(doc: InlineEnvironmentDoc, prefix: tuple[Any, ...] = ()) -> list[Problem]:
    out: list[Problem] = []
    check_enum(doc.os_type, OS_TYPES, (*prefix, "os_type"), out)
    if doc.image is None and doc.build is None:
        out.append(
            Problem(
                prefix or ("image",),
                "an environment needs an image or a build context",
                "add `image: <registry/image:tag>` or `build: {path: <folder>}`",
            )
        )
    if doc.image is not None and doc.build is not None:
        out.append(Problem((*prefix, "build"), "image and build are mutually exclusive", "keep one of them"))
    if doc.build is not None and doc.conda_file is not None:
        out.append(
            Problem(
                (*prefix, "conda_file"),
                "conda_file cannot be combined with build",
                "install the conda environment in the Dockerfile",
            )
        )
    if doc.version is not None and (isinstance(doc.version, bool) or not isinstance(doc.version, str | int | float)):
        out.append(Problem((*prefix, "version"), f"wrong type: got {doc.version!r}", "expected a string"))
    elif doc.version is not None:
        _check_splittable(doc.name, str(doc.version), "environment", prefix, out)
    else:
        _check_splittable(doc.name, None, "environment", prefix, out)
    if doc.conda_file is not None and not isinstance(doc.conda_file, str | dict):
        out.append(Problem((*prefix, "conda_file"), f"wrong type: got {doc.conda_file!r}",
                           "expected the path of a conda environment file, or the environment as a mapping"))
    return out


def _check_splittable(
    name: str | None, version: str | None, kind: str, prefix: tuple[Any, ...], out: list[Problem]
) -> None:
    """An asset's name and version must stand in ``azureml:NAME:VERSION`` and ``azureml:NAME@latest``
    (Azure splits a reference at its separators: a name with a colon would name another asset)."""
    for field, text in (("name", name), ("version", version)):
        why = unsplittable(text) if text is not None else None
        if why is not None:
            ref = f"azureml:{name}:{version or 1}" if field == "name" else f"azureml:{name}:{version}"
            out.append(Problem((*prefix, field), f"{kind} {field} {text!r} contains {why}: {ref} cannot be "
                               "split into one name and one version",
                               f"use letters, digits, '-', '_' and '.' in a {kind}'s {field}"))


__all__ = [
    "GPU",
    "Problem",
    "check_deployment",
    "check_endpoint",
    "check_enum",
    "check_environment",
    "check_model",
    "check_name",
    "parse_model",
    "suggest",
]

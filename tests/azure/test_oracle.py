"""The request bodies recon sends, checked against Azure ML's own SDK v2 (azure-ai-ml) as an oracle.

For every online endpoint and deployment YAML of Azure's sample corpus (managed and Kubernetes)
that both tools load, recon's body (``providers.azure.bodies``, from recon's canonical attributes)
is compared, property by property, with what azure-ai-ml produces from the same file
(``load_online_deployment(...)._to_rest_object(location)``; its operations layer's part, uploading
assets and resolving their ARM ids, is done by giving the SDK's entity the ids recon uses).

Every property where the two differ must match one of ``DIFFERENCES``, each with its reason (also
in docs/azure.md). A difference no rule explains fails the test, and so does a rule no case needs
any more.
"""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.azure import bodies
from reconciler.load.loader import load_project
from reconciler.model.errors import ConfigError
from tests.conftest import ONLINE, SKLEARN_SCORE_PY

pytestmark = pytest.mark.azure
LOCATION = "eastus"
WS = ("/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/"
      "Microsoft.MachineLearningServices/workspaces/ws")
PROBE_DEFAULT = {"failureThreshold": 30, "successThreshold": 1, "timeout": "PT2S", "period": "PT10S",
                 "initialDelay": "PT10S"}
REQUEST_DEFAULT = {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1, "maxQueueWait": "PT0.5S"}


@dataclass(frozen=True)
class Rule:
    """A deliberate difference: where (a regex over the dotted path), and why."""

    path: str
    why: str
    accepts: Callable[[Any, Any, dict[str, Any]], bool]  # (recon's value, the SDK's, recon's whole body)


def _default_of(table: dict[str, Any]) -> Callable[[Any, Any, dict[str, Any]], bool]:
    return lambda ours, sdk, _body: sdk is None and isinstance(ours, dict) and all(
        ours.get(k) == v for k, v in table.items() if k in ours)


DIFFERENCES = [
    Rule(r"^properties\.(livenessProbe|readinessProbe)$",
         "defaults made explicit: the SDK omits a probe the file does not declare, recon sends Azure's documented "
         "defaults (failureThreshold 30, successThreshold 1, timeout PT2S, period PT10S, initialDelay PT10S), so "
         "what the plan shows is what Azure is told", _default_of(PROBE_DEFAULT)),
    Rule(r"^properties\.requestSettings$",
         "defaults made explicit: request_timeout PT5S, max_concurrent_requests_per_instance 1, max_queue_wait PT0.5S",
         _default_of(REQUEST_DEFAULT)),
    Rule(r"^properties\.requestSettings\.\w+$", "defaults made explicit (some request settings declared)",
         lambda ours, sdk, _b: sdk is None),
    Rule(r"^properties\.scaleSettings$",
         "defaults made explicit: no scale_settings is Default scaling; recon says so",
         lambda ours, sdk, _b: sdk is None and ours == {"scaleType": "Default"}),
    Rule(r"^sku\.capacity$",
         "a Kubernetes deployment with target_utilization scaling and no instance_count: the SDK sends no "
         "capacity, recon sends min_instances (what Azure starts with; it keeps instance_count canonical)",
         lambda ours, sdk, body: sdk is None and body["properties"].get("scaleSettings", {}).get("scaleType")
         == "TargetUtilization" and ours == body["properties"]["scaleSettings"].get("minInstances")),
    Rule(r"^properties\.(publicNetworkAccess|egressPublicNetworkAccess)$",
         "enum spelling: the SDK passes the file's `disabled` through, recon sends the value as the 2024-04-01 "
         "model spells it (`Disabled`; ARM compares enums case-insensitively)",
         lambda ours, sdk, _b: isinstance(sdk, str) and ours == sdk.capitalize() and ours != sdk),
    Rule(r"^properties\.properties$",
         "an endpoint's free-form `properties` is not part of recon's canonical endpoint: recon sends none; the "
         "SDK sends an empty map", lambda ours, sdk, _b: ours is None and sdk == {}),
]


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def compare(ours: dict[str, Any], sdk: dict[str, Any], used: set[str]) -> list[str]:
    """Unexplained differences, as ``path: recon=... sdk=...`` lines; ``used`` gets the rules used."""
    problems = []
    flat_ours, flat_sdk = _flat(ours), _flat(sdk)
    paths = sorted(set(flat_ours) | set(flat_sdk))
    handled: set[str] = set()
    for path in paths:
        a, b = flat_ours.get(path), flat_sdk.get(path)
        if a == b or any(path.startswith(h + ".") for h in handled):
            continue
        # a whole sub-object missing on one side is judged as one value
        parent = next((p for p in _parents(path) if (p in _flat_parents(ours)) != (p in _flat_parents(sdk))), None)
        if parent is not None:
            a, b, path = _get(ours, parent), _get(sdk, parent), parent
            handled.add(parent)
        rule = next((r for r in DIFFERENCES if re.match(r.path, path) and r.accepts(a, b, ours)), None)
        if rule is None:
            problems.append(f"{path}: recon={a!r} sdk={b!r}")
        else:
            used.add(rule.path)
    return sorted(set(problems))


def _parents(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _flat_parents(d: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        p = f"{prefix}.{k}" if prefix else k
        out.add(p)
        if isinstance(v, dict):
            out |= _flat_parents(v, p)
    return out


def _get(d: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


# -- the corpus ---------------------------------------------------------------------------------------
@dataclass
class Case:
    folder: Path
    endpoint: Path
    deployment: Path | None
    synthetic: bool = False  # an endpoint file written for a deployment whose folder has none


def _kind(path: Path) -> str:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return ""
    return str(doc.get("$schema", "")).rsplit("/", 1)[-1].split(".")[0] if isinstance(doc, dict) else ""


def _cases(root: Path) -> Iterator[Case]:
    for folder in sorted({p.parent for p in root.rglob("*.yml")}):
        files = sorted(folder.glob("*.yml"))
        endpoints = [f for f in files if _kind(f).endswith("OnlineEndpoint")]
        deployments = [f for f in files if _kind(f).endswith("OnlineDeployment")]
        paired: set[Path] = set()
        for ep in endpoints:
            name = (yaml.safe_load(ep.read_text()) or {}).get("name")
            mine = [d for d in deployments if (yaml.safe_load(d.read_text()) or {}).get("endpoint_name") == name]
            paired |= set(mine)
            yield Case(folder, ep, None)
            for dep in mine:
                yield Case(folder, ep, dep)
        for dep in sorted(set(deployments) - paired):  # its endpoint is made by a script: write one
            doc = yaml.safe_load(dep.read_text()) or {}
            kind = "kubernetes" if _kind(dep).startswith("kubernetes") else "managed"
            ep = folder / f"_oracle-endpoint-{dep.stem}.yml"
            ep.write_text(yaml.safe_dump({
                "$schema": f"https://azuremlschemas.azureedge.net/latest/{kind}OnlineEndpoint.schema.json",
                "name": doc.get("endpoint_name"), "auth_mode": "key",
                **({"compute": "azureml:inferencecompute"} if kind == "kubernetes" else {})}))
            yield Case(folder, ep, dep, synthetic=True)


@pytest.fixture(scope="module")
def corpus_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("oracle") / "online"
    shutil.copytree(ONLINE, dest)
    for f in dest.rglob("*.yml"):  # render the templates as Azure's scripts do (sed over <PLACEHOLDERS>)
        if _kind(f).endswith(("OnlineDeployment", "OnlineEndpoint")):
            text = re.sub(r"<[A-Za-z_ -]+>", "oracle-ep", f.read_text())
            if _kind(f).endswith("OnlineDeployment") and not re.search(r"(?m)^endpoint_name:", text):
                text += "\nendpoint_name: oracle-ep\n"  # given on the command line in the sample's script
            f.write_text(text)
    for f in dest.rglob("*.yml"):  # scoring scripts the corpus lacks (it carries data only)
        doc = yaml.safe_load(f.read_text()) if _kind(f).endswith("OnlineDeployment") else None
        cc = (doc or {}).get("code_configuration") or {}
        if cc.get("code") and cc.get("scoring_script"):
            script = (f.parent / cc["code"] / cc["scoring_script"])
            script.parent.mkdir(parents=True, exist_ok=True)
            if not script.exists():
                script.write_text(SKLEARN_SCORE_PY)
    return dest


def _recon_side(case: Case) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]] | None:
    keep = {case.endpoint.name} | ({case.deployment.name} if case.deployment else set())
    others = [f.name for f in case.folder.glob("*.y*ml") if f.name not in keep]
    (case.folder / "recon.yaml").write_text(yaml.safe_dump({"exclude": others}))
    try:
        desired = load_project(case.folder)
    except ConfigError:
        return None
    finally:
        (case.folder / "recon.yaml").unlink()
    ep = next(r for r in desired.resources.values() if r.type == "endpoint")
    dep = next((r for r in desired.resources.values() if r.type == "deployment"), None)
    refs = {a: r.attributes for a, r in desired.resources.items() if r.type in ("model", "environment")}
    return ep.attributes, (dep.attributes if dep else None), refs


def _sdk_endpoint(path: Path, compute: str | None) -> dict[str, Any]:
    from azure.ai.ml import load_online_endpoint

    entity = load_online_endpoint(str(path))
    if compute is not None:
        entity.compute = compute  # the SDK's operations layer resolves the name to this ARM id
    return entity._to_rest_online_endpoint(LOCATION).as_dict()  # type: ignore[no-any-return]


def _sdk_deployment(path: Path, ours: dict[str, Any]) -> dict[str, Any]:
    from azure.ai.ml import load_online_deployment

    entity = load_online_deployment(str(path))
    props = ours["properties"]
    # what the SDK's operations layer does before sending: upload, then name the assets by ARM id
    entity.model = props.get("model")
    entity.environment = props.get("environmentId")
    if entity.code_configuration is not None:
        entity.code_configuration.code = (props.get("codeConfiguration") or {}).get("codeId")
    return entity._to_rest_object(location=LOCATION).as_dict()  # type: ignore[no-any-return]


def test_request_bodies_match_azure_ml_sdk_v2(corpus_copy: Path) -> None:
    warnings.filterwarnings("ignore")  # azure-ai-ml's own deprecation and experimental warnings
    used: set[str] = set()
    problems: dict[str, list[str]] = {}
    compared = {"managed": 0, "kubernetes": 0, "endpoints": 0}
    for case in _cases(corpus_copy):
        loaded = _recon_side(case)
        if loaded is None:
            continue
        ep_attrs, dep_attrs, refs = loaded
        name = str((case.deployment or case.endpoint).relative_to(corpus_copy))
        if dep_attrs is None:
            ours = bodies.endpoint_body(ep_attrs, LOCATION, WS, {}, {})
            compute = bodies.compute_id(WS, ep_attrs.get("compute"))
            sdk = _sdk_endpoint(case.endpoint, compute)
            sdk["properties"].pop("traffic", None) if not sdk["properties"].get("traffic") else None
            sdk["properties"].pop("mirrorTraffic", None) if not sdk["properties"].get("mirrorTraffic") else None
            ours["properties"] = {k: v for k, v in ours["properties"].items() if v != {}}
            compared["endpoints"] += 1
        else:
            ours = bodies.deployment_body(dep_attrs, LOCATION, WS, refs)
            sdk = _sdk_deployment(case.deployment, ours)  # type: ignore[arg-type]
            compared[dep_attrs["kind"]] += 1
        found = compare(ours, sdk, used)
        if found:
            problems[name] = found
    assert not problems, "unexplained differences from azure-ai-ml:\n" + "\n".join(
        f"{name}:\n  " + "\n  ".join(lines) for name, lines in problems.items())
    assert compared["managed"] >= 8 and compared["kubernetes"] >= 2 and compared["endpoints"] >= 8, compared
    stale = [r.path for r in DIFFERENCES if r.path not in used]
    assert not stale, f"rules no corpus file needs any more: {stale}"

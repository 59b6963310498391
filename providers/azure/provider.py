"""``AzureProvider``: recon's plan applied to Azure ML online endpoints over ARM (2024-04-01).

What each step becomes (every long-running operation polled to its end, see ``arm.py``):

=================  ===========================================================================
step               ARM
=================  ===========================================================================
create environment PUT environments/{n}/versions/{v} (a build context uploaded first, once)
create model       startPendingUpload + blob upload + PUT models/{n}/versions/{v} (once per digest)
create endpoint    PUT onlineEndpoints/{n} without traffic (an endpoint already there keeps its live
                   traffic: the PUT carries it)
create deployment  code uploaded once per digest, PUT .../deployments/{d}; a deployment that ends
                   Failed is deleted again (the contract: a failed create leaves nothing), its
                   error and last log lines reported
update endpoint    PUT with the live traffic and mirror traffic (an update never zeroes traffic)
update deployment  PATCH sku+tags when only tags changed, else PUT
scale              PATCH {sku: {capacity}} (202 + Location)
rollout            one PUT of the new template: Azure itself replaces instances 20% at a time; the
                   plan's later batches find it done (idempotent)
set traffic        PUT of the endpoint with traffic and mirrorTraffic, after checking that every
                   named deployment is Succeeded
delete             DELETE (202 + Location; 404: already gone)
=================  ===========================================================================

Why traffic goes by PUT and not PATCH: in 2024-04-01 an endpoint's PATCH body
(``PartialMinimalTrackedResourceWithIdentity``) holds only ``tags`` and ``identity``; the split is
in ``properties``, which only PUT sets (azure-ai-ml and ``az ml`` do the same).

Guarded rollouts (``open_window``/``close_window``) read Azure Monitor's metrics of the endpoint
(``monitor.py``): minute grain (a bake is at least a minute), and one series per deployment (Azure
updates a deployment in one operation and its metrics carry no configuration: a rolling update is
judged as a whole, after it). Rolling back is the engine's: the previous split by ``set_routing``
(a PUT of the endpoint), the previous configuration by ``roll_batch`` (a PUT of the deployment).

Outputs recorded (plain JSON, never a secret): ``id`` (ARM id), ``provisioning_state``; endpoints
``scoring_uri``; deployments ``instances`` ({count, config_digest}: Azure names no individual
instance over ARM) and ``config_digest``; models ``model_uri``. Keys are read with listKeys when
``recon invoke``/``keys`` need them and held in memory only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from providers.azure import bodies
from providers.azure.arm import ArmClient, Emit, OperationFailed
from providers.azure.assets import Assets
from providers.azure.monitor import GRAIN_S, Monitor
from providers.azure.quota import deployment_cores, live_quota
from providers.azure.settings import parse_settings
from reconciler.model.errors import PermanentError
from reconciler.model.resources import as_deployment, as_environment, as_model, as_observed
from reconciler.model.windows import SeriesStats, WindowStats
from reconciler.plan.provider import (
    ApplyRequest,
    Capacity,
    EndpointToken,
    Keys,
    Measuring,
    Observation,
    Provider,
    ProviderContext,
)
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource


def _quiet(_line: str) -> None:
    return None


def _overlay(recorded: Any, observed: Any) -> Any:
    """Observed values over recorded ones, key by key inside dicts recon records whole (probes,
    request settings): a key Azure does not report (a probe's ``port``) keeps its recorded value."""
    if isinstance(recorded, dict) and isinstance(observed, dict) and recorded and "type" not in observed:
        return {**recorded, **observed}
    return observed


class AzureProvider(Provider):
    """Applies plans to an Azure ML workspace through Azure Resource Manager."""

    name: ClassVar[str] = "azure"
    measuring: ClassVar[Measuring] = Measuring(windows=True, digests=False, min_bake_s=float(GRAIN_S),
                                               source="Azure Monitor")

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.cfg = parse_settings(settings)
        self.arm = ArmClient(self.cfg)
        self.assets = Assets(self.arm, Path(context.project_root).resolve())
        self.ws = self.cfg.workspace_path
        self.monitor = Monitor(self.arm)
        self._ours: dict[str, tuple[str, float]] = {}  # deployment address -> (family, vCPUs) seen

    # == paths ======================================================================================
    def endpoint_path(self, name: str) -> str:
        return f"{self.ws}/onlineEndpoints/{name}"

    def deployment_path(self, endpoint: str, name: str) -> str:
        return f"{self.endpoint_path(endpoint)}/deployments/{name}"

    def _path(self, rtype: str, attrs: Mapping[str, Any], name: str) -> str:
        # the attributes of a resource of type ``rtype`` (recorded or desired): each branch reads its keys
        if rtype == "endpoint":
            return self.endpoint_path(str(attrs.get("name", name)))
        if rtype == "deployment":
            return self.deployment_path(str(attrs["endpoint_name"]), str(attrs.get("name", name)))
        kind = "models" if rtype == "model" else "environments"
        return bodies.asset_id(self.ws, kind, str(attrs["name"]), str(attrs["version"]))

    # == reading ====================================================================================
    def observe(self, resource: StateResource) -> Observation:
        attrs = resource.attributes
        path = self._path(resource.type, attrs, resource.name)
        body = self.arm.get(path)
        if body is None:
            self._ours.pop(resource.address, None)
            return Observation(False, problems=[f"Azure has no {resource.type} {path.rsplit('/', 1)[-1]} "
                                                f"in workspace {self.cfg.workspace}"])
        if resource.type == "endpoint":
            seen = bodies.observed_endpoint(body)
            outputs = bodies.endpoint_outputs(body)
        elif resource.type == "deployment":
            seen = self._observed_deployment(resource, body)
            outputs = bodies.deployment_outputs(body)
        else:
            seen = bodies.observed_asset(body)
            outputs = {"id": path}
        state = (body.get("properties") or {}).get("provisioningState")
        problems = [f"its provisioning state is {state}"] if state in ("Failed", "Canceled") else []
        observed = {k: _overlay(attrs.get(k), v) for k, v in seen.items() if k in attrs}  # ARM's, translated
        return Observation(True, as_observed(observed), outputs, problems)

    def _observed_deployment(self, resource: StateResource, body: dict[str, Any]) -> dict[str, Any]:
        attrs = as_deployment(resource.attributes)
        seen = bodies.observed_deployment(body)
        props = body.get("properties") or {}
        for key, kind in (("model", "models"), ("environment", "environments")):
            recorded = attrs.get(key)
            live = props.get("model" if key == "model" else "environmentId")
            if not recorded or not isinstance(live, str):
                continue
            expected = bodies.reference_id(self.ws, kind, str(recorded), {})
            if live != expected:
                seen[key] = _address_of(key, kind, live)
        code = attrs.get("code")
        code_id = str((props.get("codeConfiguration") or {}).get("codeId") or "")
        if code and "asset" in code:
            if code_id and "@" not in str(code["asset"]) and code_id != bodies.code_id(self.ws, code):
                seen["code"] = {"asset": code_id}
        elif code and code_id and not code_id.endswith(f"/codes/{bodies.code_name(code['digest'])}/versions/1"):
            seen["code"] = {**code, "digest": "sha256:" + code_id.split("/codes/")[-1].split("/")[0]}
        counted = deployment_cores({**attrs, **seen})
        if counted is not None:
            self._ours[resource.address] = counted
        return seen

    def find_unmanaged(self, known: list[StateResource]) -> list[str]:
        """Azure resources carry no mark of recon; endpoints recon does not record are someone
        else's (``recon import`` brings one under recon). Nothing is reported."""
        return []

    def capacity(self) -> Capacity:
        usages = self.arm.list(f"{self.cfg.location_path}/usages")
        quotas = self.arm.list(f"{self.cfg.location_path}/quotas")
        ours: dict[str, float] = {}
        for family, cores in self._ours.values():
            ours[family] = ours.get(family, 0.0) + cores
        live = live_quota(usages, quotas, self.ws, ours)
        return Capacity(description=live.describe(self.cfg.location), quota=live.limits)

    # == changing ===================================================================================
    def create(self, request: ApplyRequest) -> dict[str, Any]:
        emit = request.emit
        if request.type == "environment":
            return self.assets.ensure_environment(as_environment(request.asset), emit, request.address)
        if request.type == "model":
            return self.assets.ensure_model(as_model(request.asset), emit, request.address)
        if request.type == "endpoint":
            live = self.arm.get(self.endpoint_path(request.endpoint["name"]), emit)
            return self._put_endpoint(request, live)
        return self._create_deployment(request)

    def update(self, request: ApplyRequest) -> dict[str, Any]:
        emit = request.emit
        if request.type in ("model", "environment"):
            return self._update_asset(request)
        if request.type == "endpoint":
            live = self.arm.get(self.endpoint_path(request.endpoint["name"]), emit)
            return self._put_endpoint(request, live)
        attrs = request.deployment
        path = self.deployment_path(attrs["endpoint_name"], attrs["name"])
        prior: Mapping[str, Any] = request.prior.attributes if request.prior else {}
        changed = {k for k in set(attrs) | set(prior) if attrs.get(k) != prior.get(k)}
        if changed <= {"tags", "instance_count"}:
            body = self.arm.lro("PATCH", path, bodies.deployment_patch(attrs, int(attrs.get("instance_count") or 0)),
                                emit, f"PATCH {request.address}")
        else:
            body = self._put_deployment(request, emit)
        return bodies.deployment_outputs(body or {})

    def scale(self, request: ApplyRequest) -> dict[str, Any]:
        count = request.instance_count
        attrs = request.deployment
        path = self.deployment_path(attrs["endpoint_name"], attrs["name"])
        body = self.arm.lro("PATCH", path, bodies.deployment_patch(attrs, count), request.emit,
                            f"PATCH {request.address} sku.capacity={count}")
        body = body if body and "properties" in body else self.arm.get(path, request.emit) or {}
        return bodies.deployment_outputs(body)

    def roll_batch(self, request: ApplyRequest, batch: Batch) -> dict[str, Any]:
        attrs = request.deployment
        path = self.deployment_path(attrs["endpoint_name"], attrs["name"])
        desired = bodies.deployment_body(attrs, self.cfg.location, self.ws, request.refs)
        live = self.arm.get(path, request.emit)
        if live is None:
            raise PermanentError(f"{request.address}: cannot roll out: Azure has no such deployment")
        state = (live.get("properties") or {}).get("provisioningState")
        if bodies.same_template(live, desired) and state == "Succeeded":
            request.emit(f"batch {batch.index}: every instance already runs the new configuration "
                         "(Azure rolled them with the first batch)")
            return bodies.deployment_outputs(live)
        request.emit(f"batch {batch.index}: one PUT of the new configuration; Azure replaces the instances "
                     "itself, 20% at a time, while they keep serving")
        body = self._put_deployment(request, request.emit)
        return bodies.deployment_outputs(body or {})

    def set_routing(self, request: ApplyRequest) -> dict[str, Any]:
        traffic, mirror_traffic = request.traffic, request.mirror_traffic
        attrs = request.endpoint
        live = self.arm.get(self.endpoint_path(attrs["name"]), request.emit)
        if live is None:
            raise PermanentError(f"{request.address}: cannot set traffic: Azure has no such endpoint")
        for name in sorted({k for k, v in {**traffic, **mirror_traffic}.items() if v}):
            dep = self.arm.get(self.deployment_path(attrs["name"], name), request.emit)
            state = (dep or {}).get("properties", {}).get("provisioningState")
            if state != "Succeeded":
                raise PermanentError(f"{request.address}: traffic to deployment {name}, which is "
                                     f"{'missing' if dep is None else state}: only a Succeeded deployment gets traffic")
        body = bodies.endpoint_body(attrs, self.cfg.location, self.ws,
                                    {k: v for k, v in traffic.items() if v},
                                    {k: v for k, v in mirror_traffic.items() if v})
        result = self.arm.lro("PUT", self.endpoint_path(attrs["name"]), body, request.emit,
                              f"PUT {request.address} (traffic)")
        return bodies.endpoint_outputs(result or {})

    def delete(self, resource: StateResource) -> None:
        path = self._path(resource.type, resource.attributes, resource.name)
        self._ours.pop(resource.address, None)
        if resource.type in ("model", "environment"):
            reply = self.arm.send("DELETE", path)
            if reply.status not in (200, 202, 204, 404):
                from providers.azure.arm import status_error

                raise status_error("DELETE", self.arm.url(path), reply)
            return
        self.arm.lro("DELETE", path, None, _quiet, f"DELETE {resource.address}")

    # == measuring (guarded rollouts) ================================================================
    def open_window(self, request: ApplyRequest) -> dict[str, Any]:
        """A mark of now for the endpoint of ``request`` (its ARM id, the time, the mirrored deployments)."""
        path = self.endpoint_path(str(request.endpoint.get("name", request.name)))
        live = self.arm.get(path, request.emit)
        if live is None:
            raise PermanentError(f"{request.address}: cannot measure: Azure has no such endpoint in workspace "
                                 f"{self.cfg.workspace}")
        return self.monitor.mark(path, live)

    def close_window(self, request: ApplyRequest, mark: dict[str, Any]) -> WindowStats:
        """Azure Monitor's counts of each deployment over the whole minutes since ``mark`` (see monitor.py)."""
        window = self.monitor.read(mark, request.emit)
        series = [SeriesStats(deployment=name, digest=None, traffic="mirror" if name in window.mirror else "live",
                              requests=round(c.requests), errors_5xx=round(c.failed), timeouts=round(c.timeouts),
                              latency_p99_s=None if c.p99_ms is None else c.p99_ms / 1000.0)
                  for name, c in sorted(window.deployments.items())]
        return WindowStats(series=series, window_s=window.end - window.start, source=window.describe())

    # == operating ==================================================================================
    def credentials(self, endpoint: StateResource) -> Keys | EndpointToken:
        """``listKeys`` of a ``Key`` endpoint, the ``token`` action of an ``AMLToken`` one (what
        ``az ml online-endpoint get-credentials`` calls), as the live endpoint's auth mode says."""
        path = self.endpoint_path(str(endpoint.attributes.get("name", endpoint.name)))
        live = self.arm.get(path)
        if live is None:
            raise PermanentError(f"{endpoint.address}: Azure has no such endpoint in workspace {self.cfg.workspace}")
        props = live.get("properties") or {}
        mode, uri = props.get("authMode"), str(props.get("scoringUri") or "")
        if mode == "AMLToken":
            token = bodies.endpoint_token(self.arm.post(f"{path}/token") or {}, uri)
            if not token.access_token:
                raise PermanentError(f"{endpoint.address}: Azure's token action answered no accessToken")
            return token
        if mode != "Key":
            raise PermanentError(f"{endpoint.address} uses auth mode {mode}: scoring needs a Microsoft Entra token "
                                 "for https://ml.azure.com (az account get-access-token --resource "
                                 "https://ml.azure.com); recon keys and recon invoke take keys and AML tokens")
        keys = self.arm.post(f"{path}/listKeys") or {}
        return Keys(str(keys.get("primaryKey") or ""), str(keys.get("secondaryKey") or ""), uri)

    def logs(self, deployment: StateResource, instance: int | None = None, tail: int = 100) -> list[str]:
        attrs = as_deployment(deployment.attributes)
        path = self.deployment_path(str(attrs["endpoint_name"]), str(attrs["name"]))
        answer = self.arm.post(f"{path}/getLogs", {"containerType": "InferenceServer", "tail": tail or 10000}) or {}
        lines = str(answer.get("content") or "").splitlines()
        return lines[-tail:] if tail else lines

    def close(self) -> None:
        self.arm.close()

    # == endpoints ==================================================================================
    def _put_endpoint(self, request: ApplyRequest, live: dict[str, Any] | None) -> dict[str, Any]:
        """PUT the endpoint keeping whatever traffic it has live (none when it is new)."""
        props = (live or {}).get("properties") or {}
        traffic = {k: int(v) for k, v in (props.get("traffic") or {}).items() if int(v or 0)}
        mirror = {k: int(v) for k, v in (props.get("mirrorTraffic") or {}).items() if int(v or 0)}
        body = bodies.endpoint_body(request.endpoint, self.cfg.location, self.ws, traffic, mirror)
        verb = "creating" if live is None else "updating"
        result = self.arm.lro("PUT", self.endpoint_path(request.endpoint["name"]), body, request.emit,
                              f"PUT {request.address} ({verb})")
        return bodies.endpoint_outputs(result or {})

    # == deployments ================================================================================
    def _put_deployment(self, request: ApplyRequest, emit: Emit) -> dict[str, Any] | None:
        attrs = request.deployment
        code = attrs.get("code")
        if code and "asset" in code:  # registered: named as it is (@latest resolved now)
            attrs = {**attrs, "code": self.assets.registered_code(code, emit, request.address)}
        elif code:
            self.assets.ensure_code(code, emit, request.address)
        body = bodies.deployment_body(attrs, self.cfg.location, self.ws, request.refs)
        return self.arm.lro("PUT", self.deployment_path(attrs["endpoint_name"], attrs["name"]), body, emit,
                            f"PUT {request.address}")

    def _create_deployment(self, request: ApplyRequest) -> dict[str, Any]:
        try:
            body = self._put_deployment(request, request.emit)
        except OperationFailed as exc:
            detail = self._failure_logs(request)
            request.emit(f"the deployment ended {exc.status}: deleting it, so that a failed create leaves nothing")
            self.arm.lro("DELETE", self.deployment_path(request.deployment["endpoint_name"], request.deployment["name"]),
                         None, request.emit, f"DELETE {request.address} (failed create)")
            raise PermanentError(str(exc), detail=detail) from exc
        return bodies.deployment_outputs(body or {})

    def _failure_logs(self, request: ApplyRequest) -> list[str]:
        attrs = request.deployment
        path = self.deployment_path(attrs["endpoint_name"], attrs["name"])
        try:
            answer = self.arm.post(f"{path}/getLogs", {"containerType": "InferenceServer", "tail": 20}) or {}
        except PermanentError:
            return []
        return str(answer.get("content") or "").splitlines()[-20:]

    # == assets =====================================================================================
    def _update_asset(self, request: ApplyRequest) -> dict[str, Any]:
        """Description and tags of a registered version (the content is immutable)."""
        path = self._path(request.type, request.attributes, request.name)
        live = self.arm.get(path, request.emit)
        if live is None:
            return self.create(request)
        props = dict(live.get("properties") or {})
        props["description"] = request.asset.get("description")
        props["tags"] = dict(request.asset.get("tags") or {})
        props.pop("provisioningState", None)
        body = self.arm.put(path, {"properties": {k: v for k, v in props.items() if v is not None}}, request.emit)
        return {"id": path, **({"model_uri": props["modelUri"]} if props.get("modelUri") else {}),
                "provisioning_state": (body.get("properties") or {}).get("provisioningState")}


def _address_of(key: str, kind: str, arm_id: str) -> str:
    """``.../models/NAME/versions/V`` -> ``model.NAME:V`` (other references as they are)."""
    marker = f"/{kind}/"
    if marker in arm_id and "/versions/" in arm_id:
        name, _, version = arm_id.split(marker, 1)[1].partition("/versions/")
        return f"{key}.{name}:{version}"
    return arm_id


__all__ = ["AzureProvider"]

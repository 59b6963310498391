"""recon's deployments as Kubernetes Deployments: the desired configuration and its digest, the code
ConfigMap per configuration, applying the Deployment (and its autoscaler) and waiting for its rollout
(rollout.py), the router's pool brought up to date, and what observe reads of a Deployment."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from providers.kubernetes import manifests as m
from providers.kubernetes.archives import tar_gz
from providers.kubernetes.client import Kube
from providers.kubernetes.endpoint import Endpoints
from providers.kubernetes.objects import ClusterScope, instances_of, pod_ready, pod_selector, ready_addresses
from providers.kubernetes.rollout import Rollouts
from providers.shared.runtime import host_files
from reconciler.model.errors import PermanentError
from reconciler.model.resources import ModelAttrs, as_deployment, as_observed, digest_of
from reconciler.plan.provider import ApplyRequest, Observation
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource

CONFIGMAP_LIMIT = 1024 * 1024 - 4096  # the API's object size limit, less room for metadata
POOL_SETTLE = 6.0  # a router's pool may lag its pod watch this long after a pod changes before it is drift


class Deployments:
    """The provider's deployments: each a Deployment ``E-D`` and a code ConfigMap per configuration."""

    def __init__(self, scope: ClusterScope, endpoints: Endpoints, rollouts: Rollouts, project_root: Path) -> None:
        self.scope = scope
        self.endpoints = endpoints
        self.rollouts = rollouts
        self.project_root = project_root

    @property
    def kube(self) -> Kube:
        return self.scope.kube

    def observe(self, resource: StateResource) -> Observation:
        attrs = as_deployment(resource.attributes)
        ep, dep = str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()
        name = m.deployment_name(ep, dep)
        obj = self.kube.get("Deployment", name)
        if obj is None:
            return Observation(False, problems=[f"its Deployment {name} is gone"])
        spec = obj.get("spec") or {}
        container = ((spec.get("template") or {}).get("spec") or {}).get("containers", [{}])[0]
        recorded_image = resource.outputs.get("image")
        if recorded_image and container.get("image") != recorded_image:
            return Observation(False, problems=[f"its Deployment {name} runs image {container.get('image')!r}, "
                                                f"not {recorded_image!r}: apply makes it again"])
        digest = resource.outputs.get("config_digest")
        if digest and self.kube.get("ConfigMap", m.bundle_name(ep, dep, str(digest))) is None:
            return Observation(False, problems=[f"its code ConfigMap {m.bundle_name(ep, dep, str(digest))} is gone"])
        problems: list[str] = []
        observed: dict[str, Any] = {}  # read from the cluster's objects, keyed by canonical names
        scale: Mapping[str, Any] = attrs.get("scale_settings") or {}
        if scale.get("type") == "target_utilization":
            hpa = self.kube.get("HorizontalPodAutoscaler", name)
            if hpa is None:
                return Observation(False, problems=[f"its HorizontalPodAutoscaler {name} is gone"])
            hspec = hpa.get("spec") or {}
            metric = ((hspec.get("metrics") or [{}])[0].get("resource") or {}).get("target") or {}
            observed["scale_settings"] = {**scale, "min_instances": hspec.get("minReplicas"),
                                          "max_instances": hspec.get("maxReplicas"),
                                          "target_utilization_percentage": metric.get("averageUtilization")}
        else:
            observed["instance_count"] = int(spec.get("replicas") or 0)
        pods = self.scope.pods(ep, dep)
        stale = self.stale_pool(ep, dep, pods)
        if stale is not None:  # what the router really serves is the drift (apply brings the pool up to date)
            problems.append(stale[1])
            if "instance_count" in observed and observed["instance_count"] == int(attrs.get("instance_count") or 0):
                observed["instance_count"] = stale[0]
        env = {e["name"]: e.get("value", "") for e in container.get("env") or [] if e.get("name") not in m.RECON_ENV}
        declared = {str(k): str(v) for k, v in (attrs.get("environment_variables") or {}).items()}
        if env != declared:
            observed["environment_variables"] = env
            problems.append(f"its Deployment {name} has other environment variables")
        not_ready = [p["metadata"]["name"] for p in pods if not pod_ready(p)]
        if not_ready:
            problems.append(f"pods not ready: {', '.join(sorted(not_ready))}")
        outputs = {**resource.outputs, "instances": instances_of(pods)}
        return Observation(True, attributes=as_observed(observed), outputs=outputs, problems=problems)

    def stale_pool(self, ep: str, dep: str, pods: list[dict[str, Any]]) -> tuple[int, str] | None:
        """When a router pod's pool of ``dep`` is not the deployment's ready pods (the router follows them
        through its pod watch, within seconds: it is out of step only when that watch is not working):
        how many ready pods the router reaches, and why. None when every router pod's pool is right, or
        when routers are not asked (``router_reload_check`` off: nothing answers on kwok nodes)."""
        if not self.scope.settings.router_reload_check or not self.endpoints.has_table(ep):
            return None
        deadline = time.monotonic() + POOL_SETTLE
        while True:
            ready = set(ready_addresses(self.scope.pods(ep, dep)))
            wrong = [(pod, served) for pod, served in self.endpoints.served_pools(ep, dep)
                     if served is not None and served != ready]
            if not wrong:
                return None
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)  # a pod that just changed: the watch catches up within seconds
        pod, served = wrong[0]
        reached = len(ready & served)
        return reached, (f"router pod {pod}'s pool of {dep} is out of step with the cluster: it reaches {reached} "
                         f"of its {len(ready)} ready pods and lists {len(served - ready)} address(es) of no "
                         "ready pod (the router's pod watch is not following; see its log)")

    def desired(self, request: ApplyRequest) -> tuple[str, str, ModelAttrs | None]:
        """(config digest, image, model attributes) of the desired configuration."""
        attrs, model, environment = request.deployment, request.model, request.environment
        image = self.scope.settings.image(environment["image"] if environment else None)
        digest = digest_of({
            "code": attrs.get("code"), "scoring_script": attrs.get("scoring_script"),
            "model": [model.get("name"), model.get("version"), model.get("content_digest")] if model else None,
            "image": image, "environment_variables": attrs.get("environment_variables") or {},
            "request_settings": attrs.get("request_settings"), "liveness_probe": attrs.get("liveness_probe"),
            "readiness_probe": attrs.get("readiness_probe"), "instance_type": attrs.get("instance_type"),
            "resources": attrs.get("resources"), "host": digest_of({n: b.decode() for n, b in host_files().items()}),
        })
        return digest, image, model

    def bundle(self, request: ApplyRequest, ep: str, dep: str, digest: str) -> str:
        name = m.bundle_name(ep, dep, digest)
        if self.kube.get("ConfigMap", name) is not None:
            return name
        code: Mapping[str, Any] = request.deployment.get("code") or {}
        data = b""
        if code.get("path"):
            source = (self.project_root / str(code["path"])).resolve()
            if not source.is_dir():
                raise PermanentError(f"{request.address}: code folder {code['path']!r} does not exist ({source})")
            data = tar_gz(source, None)
        else:
            data = tar_gz(self.project_root / ".recon-no-code", None)
        if len(data) > CONFIGMAP_LIMIT:
            raise PermanentError(f"{request.address}: the code folder is {len(data)} bytes compressed; the "
                                 f"Kubernetes provider delivers code in a ConfigMap, at most {CONFIGMAP_LIMIT} bytes")
        lab = m.labels(self.scope.workspace, "code", ep, dep, digest)
        self.kube.apply(m.configmap(self.scope.settings, name, lab, data={n: b.decode() for n, b in host_files().items()},
                                    binary={"code.tar.gz": base64.b64encode(data).decode()}, immutable=True))
        return name

    def _ran_before(self, ep: str, dep: str, digest: str) -> bool:
        """Whether a ReplicaSet of the deployment has (had) pods of the configuration ``digest``."""
        for rs in self.kube.items("ReplicaSet", pod_selector(ep, dep)):
            template = ((rs.get("spec") or {}).get("template") or {}).get("metadata") or {}
            if (template.get("annotations") or {}).get("recon.io/config-digest") == digest:
                return True
        return False

    def apply(self, request: ApplyRequest, create: bool, until_updated: int | None = None,
                          batch: Batch | None = None) -> dict[str, Any]:
        attrs = request.deployment
        ep, dep = str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()
        name = m.deployment_name(ep, dep)
        digest, image, model = self.desired(request)
        self.kube.ensure_namespace()
        current = self.kube.get("Deployment", name)
        existed = current is not None
        old_digest = ((((current or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
            "annotations", {}).get("recon.io/config-digest")
        bundle = self.bundle(request, ep, dep, digest)
        scope = self.scope
        manifest = m.deployment_manifest(scope.settings, scope.workspace, attrs, model, image, digest, bundle)
        hpa = m.hpa_manifest(scope.settings, scope.workspace, attrs, digest)
        if hpa is not None and existed:
            manifest["spec"].pop("replicas")  # the autoscaler owns replicas once it exists
        # Between the batches of a rolling update the Deployment is paused: the controller would
        # otherwise roll on while a gate bakes (judging pods of later batches, and retiring old pods
        # the router's pool still names). A template the Deployment ran before (a rollback) is rolled
        # whole: no pod is left at the template rolled away from.
        back = existed and old_digest != digest and self._ran_before(ep, dep, digest)
        wait_for = None if back else until_updated
        manifest["spec"]["paused"] = False
        applied = self.kube.apply(manifest)
        if hpa is not None:
            self.kube.apply(hpa)
        else:
            self.kube.delete("HorizontalPodAutoscaler", name)
        count = int(manifest["spec"].get("replicas") or (applied.get("spec") or {}).get("replicas") or 1)
        try:
            self.rollouts.wait(name, pod_selector(ep, dep), count, request, until_updated=wait_for,
                               generation=int((applied.get("metadata") or {}).get("generation") or 0), batch=batch,
                               pool=(ep, dep))
        except PermanentError:
            if create and not existed:
                self.kube.delete("HorizontalPodAutoscaler", name)
                self.kube.delete("Deployment", name)
                self.rollouts.wait_gone("Deployment", name, pod_selector(ep, dep))
                self.kube.delete("ConfigMap", bundle)
            elif not create and old_digest and old_digest != digest:  # a new template failed: back to the old
                self.rollouts.undo(name, digest, request)
            raise
        if wait_for is not None and wait_for < count:
            self.kube.apply({**manifest, "spec": {**manifest["spec"], "paused": True}})
        if wait_for is None or wait_for >= count:
            for cm in self.kube.items("ConfigMap", {m.ENDPOINT: m.label_value(ep), m.DEPLOYMENT: m.label_value(dep),
                                                   m.ROLE: "code"}):
                if cm["metadata"]["name"] != bundle:
                    self.kube.delete("ConfigMap", cm["metadata"]["name"])
        if self.endpoints.has_table(ep):
            self.endpoints.sync_pool(ep, dep, attrs)
        return {"deployment": name, "namespace": scope.ns, "config_digest": digest, "image": image,
                "instances": instances_of(self.scope.pods(ep, dep)), "provisioning_state": "Succeeded"}


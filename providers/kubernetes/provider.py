"""``KubernetesProvider``: endpoints served by Deployments on a Kubernetes cluster.

What runs where (names in providers/kubernetes/manifests.py):

- environment: no object; its image (after ``image_overrides``) is what the deployment's pods run.
- model: a ConfigMap holding the model folder as a .tar.gz (at most 1 MiB, the API's object limit).
- endpoint: the router of the other providers (providers/shared/runtime/router/) as a one-replica
  Deployment and a Service; its zip archive and the routing table in a ConfigMap, the keys in a Secret.
  The router re-reads the table when the kubelet updates the mounted ConfigMap.
- deployment: a Deployment (replicas = instance_count, RollingUpdate maxSurge ceil(20%),
  maxUnavailable 0, paused between the batches of a rolling update), its code snapshot and host.py in a ConfigMap per configuration, unpacked with
  the model by an init container into an emptyDir; a HorizontalPodAutoscaler under
  ``scale_settings.type: target_utilization``. The router reaches instances by pod address.

The provider is built of parts that share one ``objects.ClusterScope`` (settings, the connection):
endpoint.py (keys, the routing table in a ConfigMap, router reloads), rollout.py (rollout waits,
failures, rollbacks), deployments.py (Deployments, their code, their observation), capacity.py (what the
namespace can place), archives.py (what ConfigMaps carry); this module is the Provider interface over
them.

Every object is written by server-side apply as fieldManager ``recon`` (conflicts are reported, never
forced) and carries recon's labels; ``find_unmanaged`` lists labelled objects no state knows.
Outputs (plain JSON, never secrets): endpoint ``router``, ``service``, ``namespace``, ``scoring_uri``,
``provisioning_state``; deployment ``deployment``, ``config_digest``, ``image``, ``instances``
[{pod, ip, ready}], ``provisioning_state``; model ``configmap``; environment ``image``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, ClassVar

from providers.kubernetes import manifests as m
from providers.kubernetes.archives import router_lib, tar_gz
from providers.kubernetes.capacity import namespace_capacity
from providers.kubernetes.client import Kube
from providers.kubernetes.deployments import CONFIGMAP_LIMIT, Deployments
from providers.kubernetes.endpoint import Endpoints
from providers.kubernetes.objects import ClusterScope, instances_of, pod_selector
from providers.kubernetes.rollout import Rollouts
from providers.kubernetes.settings import parse_settings
from providers.shared.endpoint_tokens import SIGNING_KEY, issue, token_lifetime
from providers.shared.routing_table import normal_traffic
from providers.shared.windows import RouterWindows, Scrape
from reconciler.model.errors import PermanentError
from reconciler.model.resources import as_deployment, as_environment, as_model, as_observed
from reconciler.plan.provider import (
    ApplyRequest,
    Capacity,
    EndpointToken,
    Keys,
    Observation,
    Provider,
    ProviderContext,
)
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource


class KubernetesProvider(RouterWindows, Provider):
    """Serves online endpoints as Deployments on a Kubernetes cluster: the Provider interface over its
    parts, which share one ``ClusterScope`` (the namespace, the settings, the connection)."""

    name: ClassVar[str] = "kubernetes"

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.kube_settings = parse_settings(settings)
        self.ns = self.kube_settings.namespace
        self.project_root = Path(context.project_root).resolve()
        self.workspace = context.workspace or ""
        self.scope = ClusterScope(self.kube_settings, self.workspace)
        self.endpoints = Endpoints(self.scope, settings)
        self.rollouts = Rollouts(self.scope, self.endpoints)
        self.deployments = Deployments(self.scope, self.endpoints, self.rollouts, self.project_root)

    @property
    def kube(self) -> Kube:
        return self.scope.kube

    def close(self) -> None:
        self.scope.close()

    def _router_metrics(self, endpoint: str) -> list[Scrape]:
        return self.endpoints.router_metrics(endpoint)

    # == reading ====================================================================================
    def observe(self, resource: StateResource) -> Observation:
        if resource.type == "environment":
            image = as_environment(resource.attributes).get("image")
            return Observation(True, outputs={"image": self.kube_settings.image(image)})
        if resource.type == "model":
            model = as_model(resource.attributes)
            name = m.model_name(str(model["name"]), str(model["version"]))
            if self.kube.get("ConfigMap", name) is None:
                return Observation(False, problems=[f"its ConfigMap {name} is gone"])
            return Observation(True, outputs={"configmap": name})
        if resource.type == "endpoint":
            return self._observe_endpoint(resource)
        return self.deployments.observe(resource)

    def _observe_endpoint(self, resource: StateResource) -> Observation:
        ep = str(resource.attributes.get("name", resource.name)).lower()
        router = m.router_name(ep)
        # the router's own access (its pod watch) and budget are the endpoint's too: without its RoleBinding
        # a router that starts or reconnects cannot list pods, and its pools stop following the cluster
        for kind, name in (("Deployment", router), ("Service", router), ("ConfigMap", router),
                           ("ConfigMap", m.router_lib_name(ep)), ("Secret", m.keys_name(ep)),
                           ("ServiceAccount", router), ("Role", router), ("RoleBinding", router),
                           ("PodDisruptionBudget", router)):
            if self.kube.get(kind, name) is None:
                return Observation(False, problems=[f"its {kind} {name} is gone"])
        table = self.endpoints.table(ep).read_table()
        observed = {"auth_mode": table.get("auth_mode", resource.attributes.get("auth_mode")),
                    "traffic": normal_traffic(table.get("traffic")),
                    "mirror_traffic": normal_traffic(table.get("mirror_traffic"))}
        return Observation(True, attributes=as_observed(observed), outputs=self.endpoints.outputs(ep))

    def find_unmanaged(self, known: list[StateResource]) -> list[str]:
        endpoints = {str(r.attributes.get("name", r.name)).lower() for r in known if r.type == "endpoint"}
        deployments = {(str(r.attributes.get("endpoint_name")).lower(), str(r.attributes.get("name")).lower())
                       for r in known if r.type == "deployment"}
        models = {m.model_name(str(r.attributes.get("name")), str(r.attributes.get("version")))
                  for r in known if r.type == "model"}
        selector = {m.MANAGED: "true", m.WORKSPACE: m.label_value(self.workspace)}
        found: list[str] = []
        for kind in ("Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler"):
            for obj in self.kube.items(kind, selector):
                meta = obj.get("metadata") or {}
                lab = meta.get("labels") or {}
                ep, dep = lab.get(m.ENDPOINT, ""), lab.get(m.DEPLOYMENT)
                if lab.get(m.ROLE) == "model":
                    if meta.get("name") in models:
                        continue
                elif dep is None and ep in endpoints or dep is not None and (ep, dep) in deployments:
                    continue
                found.append(f"{kind} {self.ns}/{meta.get('name')} carries recon's labels but no recorded "
                             "resource owns it")
        return found

    def capacity(self) -> Capacity:
        return namespace_capacity(self.scope)

    # == changing ===================================================================================
    def create(self, request: ApplyRequest) -> dict[str, Any]:
        if request.type == "environment":
            return {"image": self.kube_settings.image(as_environment(request.asset).get("image"))}
        if request.type == "model":
            return self._create_model(request)
        if request.type == "endpoint":
            return self._create_endpoint(request)
        return self.deployments.apply(request, create=True)

    def update(self, request: ApplyRequest) -> dict[str, Any]:
        if request.type in ("environment", "model"):
            return self.create(request)
        if request.type == "endpoint":
            ep = str(request.endpoint["name"]).lower()
            if self.kube.get("Deployment", m.router_name(ep)) is None:
                return self._create_endpoint(request)
            self.endpoints.ensure_keys(ep)  # a Secret of an older recon gets its token signing key before aml_token
            self.endpoints.table(ep).set_auth_mode(request.endpoint.get("auth_mode"))
            self._ensure_router(request, ep)  # a router of an older recon gets its pod watch
            return self.endpoints.outputs(ep)
        attrs = request.deployment
        ep, dep = str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()
        self.endpoints.sync_pool(ep, dep, attrs)
        prior = dict(request.prior.outputs) if request.prior else {}
        return {**prior, "instances": instances_of(self.scope.pods(ep, dep))}

    def delete(self, resource: StateResource) -> None:
        attrs = resource.attributes
        if resource.type == "environment":
            return
        if resource.type == "model":
            model = as_model(attrs)
            self.kube.delete("ConfigMap", m.model_name(str(model["name"]), str(model["version"])))
            return
        if resource.type == "endpoint":
            ep = str(attrs.get("name", resource.name)).lower()
            router = m.router_name(ep)
            self.kube.delete("Deployment", router)
            self.kube.delete("Service", router)
            self.rollouts.wait_gone("Deployment", router, {m.ENDPOINT: m.label_value(ep), m.ROLE: "router"})
            for kind in ("PodDisruptionBudget", "RoleBinding", "Role", "ServiceAccount"):
                self.kube.delete(kind, router)
            self.kube.delete("ConfigMap", router)
            self.kube.delete("ConfigMap", m.router_lib_name(ep))
            self.kube.delete("Secret", m.keys_name(ep))
            return
        deployment = as_deployment(attrs)
        ep, dep = str(deployment["endpoint_name"]).lower(), str(deployment["name"]).lower()
        name = m.deployment_name(ep, dep)
        if self.endpoints.has_table(ep):
            self.endpoints.table(ep).remove_deployment(dep)
        self.kube.delete("HorizontalPodAutoscaler", name)
        self.kube.delete("Deployment", name)
        self.rollouts.wait_gone("Deployment", name, pod_selector(ep, dep))
        for cm in self.kube.items("ConfigMap", {m.ENDPOINT: m.label_value(ep), m.DEPLOYMENT: m.label_value(dep),
                                               m.ROLE: "code"}):
            self.kube.delete("ConfigMap", cm["metadata"]["name"])

    def scale(self, request: ApplyRequest) -> dict[str, Any]:
        """The Deployment's replicas become ``request.instance_count`` (the request as it came: its
        count in its attributes, its ``on_event`` and ``on_status`` kept)."""
        return self.deployments.apply(request, create=False)

    def roll_batch(self, request: ApplyRequest, batch: Batch) -> dict[str, Any]:
        """The new template is applied (Kubernetes then replaces ceil(20%) pods at a time); each batch
        waits until ``batch.index * batch.size`` pods run it, reporting the ReplicaSets, and pauses the
        Deployment until the next batch (a gate judges the pods of its batch only). Back to a template
        the Deployment ran before (a rollback), it waits until every pod runs it."""
        count = int(request.deployment.get("instance_count") or 1)
        target = min(count, max(1, batch.index * max(1, batch.size)))
        return self.deployments.apply(request, create=False, until_updated=target, batch=batch)

    def set_routing(self, request: ApplyRequest) -> dict[str, Any]:
        traffic, mirror_traffic = request.traffic, request.mirror_traffic
        ep = str(request.endpoint["name"]).lower()
        for dep in sorted(set(normal_traffic(traffic)) | set(normal_traffic(mirror_traffic))):
            self.rollouts.wait_complete(ep, dep, request)
            self.endpoints.sync_pool(ep, dep, None)
        self.endpoints.table(ep).set_split(traffic, mirror_traffic)
        return self.endpoints.outputs(ep)

    # == operating ==================================================================================
    def credentials(self, endpoint: StateResource) -> Keys | EndpointToken:
        """The keys, or under ``auth_mode: aml_token`` (as the router's table says) a token signed with the
        key of the endpoint's Secret."""
        ep = str(endpoint.attributes.get("name", endpoint.name)).lower()
        secret = self.endpoints.read_secret(ep)
        if not (secret.get("primaryKey") and secret.get("secondaryKey")):
            raise PermanentError(f"endpoint {ep} has no keys: its Secret {self.ns}/{m.keys_name(ep)} is gone")
        uri = self.endpoints.scoring_uri(ep)
        if self.endpoints.table(ep).read_table().get("auth_mode") != "aml_token":
            return Keys(secret["primaryKey"], secret["secondaryKey"], uri)
        if not secret.get(SIGNING_KEY):
            raise PermanentError(f"endpoint {ep} has no token signing key in its Secret {self.ns}/"
                                 f"{m.keys_name(ep)}; run recon apply")
        return issue(secret[SIGNING_KEY], ep, uri, token_lifetime(self.settings))

    def logs(self, deployment: StateResource, instance: int | None = None, tail: int = 100) -> list[str]:
        attrs = as_deployment(deployment.attributes)
        pods = sorted(self.scope.pods(str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()),
                      key=lambda p: str(p["metadata"]["name"]))
        if instance is not None:
            pods = pods[instance - 1:instance] if 0 < instance <= len(pods) else []
        lines: list[str] = []
        for i, pod in enumerate(pods, start=1):
            lines += [f"[{instance or i}] {line}" for line in self.kube.logs(pod["metadata"]["name"], tail, "score")]
        return lines[-tail:] if tail else lines

    # == models and endpoints =======================================================================
    def _create_model(self, request: ApplyRequest) -> dict[str, Any]:
        attrs = as_model(request.asset)
        source = (self.project_root / str(attrs.get("path") or "")).resolve()
        if not attrs.get("path") or not source.exists():
            raise PermanentError(f"{request.address}: model path {attrs.get('path')!r} does not exist ({source})")
        data = tar_gz(source, source.name)
        if len(data) > CONFIGMAP_LIMIT:
            raise PermanentError(f"{request.address}: the model is {len(data)} bytes compressed; the Kubernetes "
                                 f"provider delivers models in a ConfigMap, at most {CONFIGMAP_LIMIT} bytes")
        name = m.model_name(str(attrs["name"]), str(attrs["version"]))
        self.kube.ensure_namespace()
        lab = {**m.labels(self.workspace, "model"), m.MODEL: m.label_value(f"{attrs['name']}-{attrs['version']}")}
        self.kube.apply(m.configmap(self.kube_settings, name, lab,
                                    binary={"model.tar.gz": base64.b64encode(data).decode()}))
        request.emit(f"model ConfigMap {self.ns}/{name} ({len(data)} bytes)")
        return {"configmap": name}

    def _create_endpoint(self, request: ApplyRequest) -> dict[str, Any]:
        ep = str(request.endpoint["name"]).lower()
        self.kube.ensure_namespace()
        self.endpoints.ensure_keys(ep)
        lib, code_digest = router_lib()
        self.kube.apply(m.configmap(self.kube_settings, m.router_lib_name(ep), m.labels(self.workspace, "router", ep),
                                    binary={"httptools.tar.gz": base64.b64encode(lib).decode()}))
        auth_mode = request.endpoint.get("auth_mode") or "key"
        self.endpoints.table(ep).set_auth_mode(auth_mode)
        self._ensure_router(request, ep, code_digest)
        request.emit(f"router Deployment {self.ns}/{m.router_name(ep)} ready")
        return self.endpoints.outputs(ep)

    def _ensure_router(self, request: ApplyRequest, ep: str, code_digest: str | None = None) -> None:
        """The router's objects as this recon makes them (server-side apply: unchanged ones stay; a
        changed pod template rolls the router), then until it serves the table."""
        if code_digest is None:
            code_digest = router_lib()[1]
        for obj in m.router_manifests(self.kube_settings, self.workspace, ep, code_digest):
            self.kube.apply(obj)
        self.rollouts.wait(m.router_name(ep), {m.ENDPOINT: m.label_value(ep), m.ROLE: "router"},
                           self.kube_settings.router_replicas, request, what=f"the router of endpoint {ep}")
        self.endpoints.wait_version(ep, int(self.endpoints.table(ep).read_table().get("version") or 0))

"""``KubernetesProvider``: endpoints served by Deployments on a Kubernetes cluster.

What runs where (names in providers/kubernetes/manifests.py):

- environment: no object; its image (after ``image_overrides``) is what the deployment's pods run.
- model: a ConfigMap holding the model folder as a .tar.gz (at most 1 MiB, the API's object limit).
- endpoint: the router of the other providers (providers/shared/runtime/router/) as a one-replica
  Deployment and a Service; its zip archive and the routing table in a ConfigMap, the keys in a Secret.
  The router re-reads the table when the kubelet updates the mounted ConfigMap.
- deployment: a Deployment (replicas = instance_count, RollingUpdate maxSurge ceil(20%),
  maxUnavailable 0), its code snapshot and host.py in a ConfigMap per configuration, unpacked with
  the model by an init container into an emptyDir; a HorizontalPodAutoscaler under
  ``scale_settings.type: target_utilization``. The router reaches instances by pod address.

The provider is built of parts: objects.py (settings, the connection, pure functions over pods and
Deployments), endpoint.py (keys, routing table, router reload), rollout.py (rollout waits, failures,
rollbacks); this module holds the Provider interface over them.

Every object is written by server-side apply as fieldManager ``recon`` (conflicts are reported, never
forced) and carries recon's labels; ``find_unmanaged`` lists labelled objects no state knows.
Outputs (plain JSON, never secrets): endpoint ``router``, ``service``, ``namespace``, ``scoring_uri``,
``provisioning_state``; deployment ``deployment``, ``config_digest``, ``image``, ``instances``
[{pod, ip, ready}], ``provisioning_state``; model ``configmap``; environment ``image``.
"""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path
from typing import Any, ClassVar

from providers.base import ApplyRequest, Capacity, EndpointToken, Keys, Observation, Provider, ProviderContext
from providers.kubernetes import manifests as m
from providers.kubernetes.endpoint import clean_tarinfo, router_lib
from providers.kubernetes.objects import (
    KubeParts,
    instances_of,
    pod_ready,
    pod_selector,
    ready_addresses,
    tolerated,
)
from providers.kubernetes.rollout import RolloutParts
from providers.kubernetes.settings import parse_settings
from providers.shared.endpoint_tokens import SIGNING_KEY, issue, token_lifetime
from providers.shared.runtime import HOST_SCRIPT
from providers.shared.scaling import normal_traffic
from providers.shared.windows import RouterWindows
from reconciler.model.errors import PermanentError
from reconciler.model.quantities import parse_cpu, parse_memory_gb
from reconciler.model.resources import digest_of
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource

CONFIGMAP_LIMIT = 1024 * 1024 - 4096  # the API's object size limit, less room for metadata
POLL = 0.25


def _tar_gz(source: Path, arcname: str | None) -> bytes:
    """A .tar.gz of ``source``: a folder's contents at the root (``arcname`` None) or under ``arcname``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        if arcname is not None:
            tar.add(source, arcname=arcname, filter=clean_tarinfo)
        elif source.is_dir():
            for child in sorted(source.iterdir()):
                if child.name not in ("__pycache__", ".git"):
                    tar.add(child, arcname=child.name, filter=clean_tarinfo)
    return buf.getvalue()


class KubernetesProvider(RolloutParts, RouterWindows, Provider):
    """Serves online endpoints as Deployments on a Kubernetes cluster."""

    name: ClassVar[str] = "kubernetes"

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.kube_settings = parse_settings(settings)
        self.ns = self.kube_settings.namespace
        self.project_root = Path(context.project_root).resolve()
        self.workspace = context.workspace or ""
        self._kube = None

    def close(self) -> None:
        KubeParts.close(self)

    # == reading ====================================================================================
    def observe(self, resource: StateResource) -> Observation:
        attrs = resource.attributes
        if resource.type == "environment":
            return Observation(True, outputs={"image": self.kube_settings.image(attrs.get("image"))})
        if resource.type == "model":
            name = m.model_name(str(attrs["name"]), str(attrs["version"]))
            if self.kube.get("ConfigMap", name) is None:
                return Observation(False, problems=[f"its ConfigMap {name} is gone"])
            return Observation(True, outputs={"configmap": name})
        if resource.type == "endpoint":
            return self._observe_endpoint(resource)
        return self._observe_deployment(resource)

    def _observe_endpoint(self, resource: StateResource) -> Observation:
        ep = str(resource.attributes.get("name", resource.name)).lower()
        router = m.router_name(ep)
        for kind, name in (("Deployment", router), ("Service", router), ("ConfigMap", router),
                           ("ConfigMap", m.router_lib_name(ep)), ("Secret", m.keys_name(ep))):
            if self.kube.get(kind, name) is None:
                return Observation(False, problems=[f"its {kind} {name} is gone"])
        table = self._read_table(ep)
        observed = {"auth_mode": table.get("auth_mode", resource.attributes.get("auth_mode")),
                    "traffic": normal_traffic(table.get("traffic")),
                    "mirror_traffic": normal_traffic(table.get("mirror_traffic"))}
        return Observation(True, attributes=observed, outputs=self._endpoint_outputs(ep))

    def _observe_deployment(self, resource: StateResource) -> Observation:
        attrs = resource.attributes
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
        observed: dict[str, Any] = {}
        scale = attrs.get("scale_settings") or {}
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
        pods = self._pods(ep, dep)
        stale = self._stale_pool(ep, dep, pods)
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
        return Observation(True, attributes=observed, outputs=outputs, problems=problems)

    def _stale_pool(self, ep: str, dep: str, pods: list[dict[str, Any]]) -> tuple[int, str] | None:
        """When the router's pool of ``dep`` is not its ready pods (a pod the cluster replaced on its own
        since recon last ran, or one the autoscaler added): how many ready pods the router reaches, and
        why. None when it is, or when the endpoint has no table."""
        obj = self.kube.get("ConfigMap", m.router_name(ep))
        if obj is None:
            return None
        routed = ((self._read_table(ep).get("deployments") or {}).get(dep) or {}).get("upstreams")
        if routed is None:
            return None
        ready = set(ready_addresses(pods))
        if set(routed) == ready:
            return None
        served = len(ready & set(routed))
        return served, (f"the router's pool of {dep} is out of date: it reaches {served} of its {len(ready)} ready "
                        f"pods and lists {len(set(routed) - ready)} address(es) of no ready pod")

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
        """What the namespace can still place for recon's instances: its ResourceQuota (hard requests
        less what pods other than recon's instances use, routers included), bounded by the allocatable
        CPU and memory of the schedulable nodes that match ``node_selector`` and whose NoSchedule
        taints ``tolerations`` tolerate. Rollouts surge by ceil(20%): the plan reserves that room."""
        cpus = mem = 0.0
        for node in self.kube.items("Node"):
            if (node.get("spec") or {}).get("unschedulable"):
                continue
            nlabels = (node.get("metadata") or {}).get("labels") or {}
            if any(nlabels.get(k) != v for k, v in self.kube_settings.node_selector.items()):
                continue
            if not tolerated((node.get("spec") or {}).get("taints") or [], self.kube_settings.tolerations):
                continue
            alloc = (node.get("status") or {}).get("allocatable") or {}
            cpus += parse_cpu(alloc.get("cpu", 0)) or 0.0
            mem += parse_memory_gb(alloc.get("memory", 0)) or 0.0
        description = f"the allocatable CPU and memory of the cluster's nodes ({cpus:g} CPUs, {mem:.1f} GiB)"
        mine_cpu = mine_mem = 0.0
        for pod in self.kube.items("Pod", {m.MANAGED: "true", m.ROLE: "instance"}):
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for c in (pod.get("spec") or {}).get("containers") or []:
                req = (c.get("resources") or {}).get("requests") or {}
                mine_cpu += parse_cpu(req.get("cpu", 0)) or 0.0
                mine_mem += parse_memory_gb(req.get("memory", 0)) or 0.0
        for quota in self.kube.items("ResourceQuota"):
            status = quota.get("status") or {}
            hard, used = status.get("hard") or {}, status.get("used") or {}
            qname = (quota.get("metadata") or {}).get("name")
            for key, parse, mine in (("requests.cpu", parse_cpu, mine_cpu), ("cpu", parse_cpu, mine_cpu)):
                if key in hard:
                    free = (parse(hard[key]) or 0.0) - max(0.0, (parse(used.get(key, 0)) or 0.0) - mine)
                    if free < cpus:
                        cpus = free
                        description = f"ResourceQuota {self.ns}/{qname}: {key} {hard[key]}"
            for key in ("requests.memory", "memory"):
                if key in hard:
                    free = (parse_memory_gb(hard[key]) or 0.0) - max(
                        0.0, (parse_memory_gb(used.get(key, 0)) or 0.0) - mine_mem)
                    mem = min(mem, free)
        return Capacity(cpus=round(cpus, 3), memory_gb=round(mem, 3), description=description, rollout_reserve=True)

    # == changing ===================================================================================
    def create(self, request: ApplyRequest) -> dict[str, Any]:
        if request.type == "environment":
            return {"image": self.kube_settings.image(request.attributes.get("image"))}
        if request.type == "model":
            return self._create_model(request)
        if request.type == "endpoint":
            return self._create_endpoint(request)
        return self._apply_deployment(request, create=True)

    def update(self, request: ApplyRequest) -> dict[str, Any]:
        attrs = request.attributes
        if request.type in ("environment", "model"):
            return self.create(request)
        if request.type == "endpoint":
            ep = str(attrs["name"]).lower()
            if self.kube.get("Deployment", m.router_name(ep)) is None:
                return self._create_endpoint(request)
            self._ensure_keys(ep)  # a Secret of an older recon gets its token signing key before aml_token
            self._update_table(ep, lambda t: t.update(auth_mode=attrs.get("auth_mode") or "key"))
            return self._endpoint_outputs(ep)
        ep, dep = str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()
        self._set_pool(ep, dep, attrs)
        prior = dict(request.prior.outputs) if request.prior else {}
        return {**prior, "instances": instances_of(self._pods(ep, dep))}

    def delete(self, resource: StateResource) -> None:
        attrs = resource.attributes
        if resource.type == "environment":
            return
        if resource.type == "model":
            self.kube.delete("ConfigMap", m.model_name(str(attrs["name"]), str(attrs["version"])))
            return
        if resource.type == "endpoint":
            ep = str(attrs.get("name", resource.name)).lower()
            router = m.router_name(ep)
            self.kube.delete("Deployment", router)
            self.kube.delete("Service", router)
            self._wait_gone("Deployment", router, {m.ENDPOINT: m.label_value(ep), m.ROLE: "router"})
            self.kube.delete("ConfigMap", router)
            self.kube.delete("ConfigMap", m.router_lib_name(ep))
            self.kube.delete("Secret", m.keys_name(ep))
            return
        ep, dep = str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()
        name = m.deployment_name(ep, dep)
        if self.kube.get("ConfigMap", m.router_name(ep)) is not None:
            self._remove_from_table(ep, dep)
        self.kube.delete("HorizontalPodAutoscaler", name)
        self.kube.delete("Deployment", name)
        self._wait_gone("Deployment", name, pod_selector(ep, dep))
        for cm in self.kube.items("ConfigMap", {m.ENDPOINT: m.label_value(ep), m.DEPLOYMENT: m.label_value(dep),
                                               m.ROLE: "code"}):
            self.kube.delete("ConfigMap", cm["metadata"]["name"])

    def scale(self, request: ApplyRequest, count: int) -> dict[str, Any]:
        attrs = {**request.attributes, "instance_count": count}
        return self._apply_deployment(ApplyRequest(request.address, request.type, request.name, attrs,
                                                   request.prior, request.refs, request.on_event), create=False)

    def roll_batch(self, request: ApplyRequest, batch: Batch) -> dict[str, Any]:
        """The new template is applied once (Kubernetes then replaces ceil(20%) pods at a time);
        each batch waits until ``batch.index * batch.size`` pods run it, reporting the ReplicaSets."""
        count = int(request.attributes.get("instance_count") or 1)
        target = min(count, max(1, batch.index * max(1, batch.size)))
        return self._apply_deployment(request, create=False, until_updated=target, batch=batch)

    def set_routing(self, request: ApplyRequest, traffic: dict[str, int],
                    mirror_traffic: dict[str, int]) -> dict[str, Any]:
        ep = str(request.attributes["name"]).lower()
        for dep in sorted(set(normal_traffic(traffic)) | set(normal_traffic(mirror_traffic))):
            self._wait_complete(ep, dep, request)
            self._set_pool(ep, dep, None)

        def mutate(table: dict[str, Any]) -> None:
            table["traffic"] = normal_traffic(traffic)
            table["mirror_traffic"] = normal_traffic(mirror_traffic)

        self._update_table(ep, mutate)
        return self._endpoint_outputs(ep)

    # == operating ==================================================================================
    def credentials(self, endpoint: StateResource) -> Keys | EndpointToken:
        """The keys, or under ``auth_mode: aml_token`` (as the router's table says) a token signed with the
        key of the endpoint's Secret."""
        ep = str(endpoint.attributes.get("name", endpoint.name)).lower()
        secret = self._read_secret(ep)
        if not (secret.get("primaryKey") and secret.get("secondaryKey")):
            raise PermanentError(f"endpoint {ep} has no keys: its Secret {self.ns}/{m.keys_name(ep)} is gone")
        if self._read_table(ep).get("auth_mode") != "aml_token":
            return Keys(secret["primaryKey"], secret["secondaryKey"], self._scoring_uri(ep))
        if not secret.get(SIGNING_KEY):
            raise PermanentError(f"endpoint {ep} has no token signing key in its Secret {self.ns}/"
                                 f"{m.keys_name(ep)}; run recon apply")
        return issue(secret[SIGNING_KEY], ep, self._scoring_uri(ep), token_lifetime(self.settings))

    def logs(self, deployment: StateResource, instance: int | None = None, tail: int = 100) -> list[str]:
        attrs = deployment.attributes
        pods = sorted(self._pods(str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()),
                      key=lambda p: str(p["metadata"]["name"]))
        if instance is not None:
            pods = pods[instance - 1:instance] if 0 < instance <= len(pods) else []
        lines: list[str] = []
        for i, pod in enumerate(pods, start=1):
            lines += [f"[{instance or i}] {line}" for line in self.kube.logs(pod["metadata"]["name"], tail, "score")]
        return lines[-tail:] if tail else lines

    # == models and endpoints =======================================================================
    def _create_model(self, request: ApplyRequest) -> dict[str, Any]:
        attrs = request.attributes
        source = (self.project_root / str(attrs.get("path") or "")).resolve()
        if not attrs.get("path") or not source.exists():
            raise PermanentError(f"{request.address}: model path {attrs.get('path')!r} does not exist ({source})")
        data = _tar_gz(source, source.name)
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
        ep = str(request.attributes["name"]).lower()
        self.kube.ensure_namespace()
        self._ensure_keys(ep)
        lib, code_digest = router_lib()
        self.kube.apply(m.configmap(self.kube_settings, m.router_lib_name(ep), m.labels(self.workspace, "router", ep),
                                    binary={"httptools.tar.gz": base64.b64encode(lib).decode()}))
        auth_mode = request.attributes.get("auth_mode") or "key"
        self._update_table(ep, lambda t: t.update(auth_mode=auth_mode))
        for obj in m.router_manifests(self.kube_settings, self.workspace, ep, code_digest):
            self.kube.apply(obj)
        self._wait_rollout(m.router_name(ep), {m.ENDPOINT: m.label_value(ep), m.ROLE: "router"}, 1, request,
                           what=f"the router of endpoint {ep}")
        self._wait_router_version(ep, int(self._read_table(ep).get("version") or 0))
        request.emit(f"router Deployment {self.ns}/{m.router_name(ep)} ready")
        return self._endpoint_outputs(ep)

    # == deployments ================================================================================
    def _desired(self, request: ApplyRequest) -> tuple[str, str, dict[str, Any] | None]:
        """(config digest, image, model attributes) of the desired configuration."""
        attrs = request.attributes
        model = request.refs.get(str(attrs.get("model") or "")) or None
        environment = request.refs.get(str(attrs.get("environment") or "")) or None
        image = self.kube_settings.image((environment or {}).get("image"))
        digest = digest_of({
            "code": attrs.get("code"), "scoring_script": attrs.get("scoring_script"),
            "model": [model.get("name"), model.get("version"), model.get("content_digest")] if model else None,
            "image": image, "environment_variables": attrs.get("environment_variables") or {},
            "request_settings": attrs.get("request_settings"), "liveness_probe": attrs.get("liveness_probe"),
            "readiness_probe": attrs.get("readiness_probe"), "instance_type": attrs.get("instance_type"),
            "resources": attrs.get("resources"), "host": digest_of(HOST_SCRIPT.read_text()),
        })
        return digest, image, model

    def _bundle(self, request: ApplyRequest, ep: str, dep: str, digest: str) -> str:
        name = m.bundle_name(ep, dep, digest)
        if self.kube.get("ConfigMap", name) is not None:
            return name
        code = request.attributes.get("code") or {}
        data = b""
        if code.get("path"):
            source = (self.project_root / str(code["path"])).resolve()
            if not source.is_dir():
                raise PermanentError(f"{request.address}: code folder {code['path']!r} does not exist ({source})")
            data = _tar_gz(source, None)
        else:
            data = _tar_gz(self.project_root / ".recon-no-code", None)
        if len(data) > CONFIGMAP_LIMIT:
            raise PermanentError(f"{request.address}: the code folder is {len(data)} bytes compressed; the "
                                 f"Kubernetes provider delivers code in a ConfigMap, at most {CONFIGMAP_LIMIT} bytes")
        lab = m.labels(self.workspace, "code", ep, dep, digest)
        self.kube.apply(m.configmap(self.kube_settings, name, lab, data={"host.py": HOST_SCRIPT.read_text()},
                                    binary={"code.tar.gz": base64.b64encode(data).decode()}, immutable=True))
        return name

    def _apply_deployment(self, request: ApplyRequest, create: bool, until_updated: int | None = None,
                          batch: Batch | None = None) -> dict[str, Any]:
        attrs = request.attributes
        ep, dep = str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()
        name = m.deployment_name(ep, dep)
        digest, image, model = self._desired(request)
        self.kube.ensure_namespace()
        current = self.kube.get("Deployment", name)
        existed = current is not None
        old_digest = ((((current or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
            "annotations", {}).get("recon.io/config-digest")
        bundle = self._bundle(request, ep, dep, digest)
        manifest = m.deployment_manifest(self.kube_settings, self.workspace, attrs, model, image, digest, bundle)
        hpa = m.hpa_manifest(self.kube_settings, self.workspace, attrs, digest)
        if hpa is not None and existed:
            manifest["spec"].pop("replicas")  # the autoscaler owns replicas once it exists
        applied = self.kube.apply(manifest)
        if hpa is not None:
            self.kube.apply(hpa)
        else:
            self.kube.delete("HorizontalPodAutoscaler", name)
        count = int(manifest["spec"].get("replicas") or (applied.get("spec") or {}).get("replicas") or 1)
        try:
            self._wait_rollout(name, pod_selector(ep, dep), count, request, until_updated=until_updated,
                               generation=int((applied.get("metadata") or {}).get("generation") or 0), batch=batch,
                               pool=(ep, dep))
        except PermanentError:
            if create and not existed:
                self.kube.delete("HorizontalPodAutoscaler", name)
                self.kube.delete("Deployment", name)
                self._wait_gone("Deployment", name, pod_selector(ep, dep))
                self.kube.delete("ConfigMap", bundle)
            elif not create and old_digest and old_digest != digest:  # a new template failed: back to the old
                self._undo(name, digest, request)
            raise
        if until_updated is None or until_updated >= count:
            for cm in self.kube.items("ConfigMap", {m.ENDPOINT: m.label_value(ep), m.DEPLOYMENT: m.label_value(dep),
                                                   m.ROLE: "code"}):
                if cm["metadata"]["name"] != bundle:
                    self.kube.delete("ConfigMap", cm["metadata"]["name"])
        if self.kube.get("ConfigMap", m.router_name(ep)) is not None:
            self._set_pool(ep, dep, attrs)
        return {"deployment": name, "namespace": self.ns, "config_digest": digest, "image": image,
                "instances": instances_of(self._pods(ep, dep)), "provisioning_state": "Succeeded"}


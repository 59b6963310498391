"""``KubernetesProvider``: endpoints served by Deployments on a Kubernetes cluster.

What runs where (names in providers/kubernetes/manifests.py):

- environment: no object; its image (after ``image_overrides``) is what the deployment's pods run.
- model: a ConfigMap holding the model folder as a .tar.gz (at most 1 MiB, the API's object limit).
- endpoint: the router of the other providers (providers/shared/runtime/router.py) as a one-replica
  Deployment and a Service; router.py and the routing table in a ConfigMap, the keys in a Secret.
  The router re-reads the table when the kubelet updates the mounted ConfigMap.
- deployment: a Deployment (replicas = instance_count, RollingUpdate maxSurge ceil(20%),
  maxUnavailable 0), its code snapshot and host.py in a ConfigMap per configuration, unpacked with
  the model by an init container into an emptyDir; a HorizontalPodAutoscaler under
  ``scale_settings.type: target_utilization``. The router reaches instances by pod address.

Every object is written by server-side apply as fieldManager ``recon`` (conflicts are reported, never
forced) and carries recon's labels; ``find_unmanaged`` lists labelled objects no state knows.
Outputs (plain JSON, never secrets): endpoint ``router``, ``service``, ``namespace``, ``scoring_uri``,
``provisioning_state``; deployment ``deployment``, ``config_digest``, ``image``, ``instances``
[{pod, ip, ready}], ``provisioning_state``; model ``configmap``; environment ``image``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import tarfile
import time
from pathlib import Path
from typing import Any, ClassVar

from providers.base import ApplyRequest, Capacity, Keys, Observation, Provider, ProviderContext
from providers.kubernetes import manifests as m
from providers.kubernetes.client import ConflictError, Kube
from providers.kubernetes.settings import parse_settings
from providers.shared.routing_table import router_limits
from providers.shared.runtime import HOST_SCRIPT, ROUTER_SCRIPT
from providers.shared.scaling import normal_traffic, router_settings
from reconciler.model.errors import PermanentError, RetryableError
from reconciler.model.quantities import parse_cpu, parse_memory_gb
from reconciler.model.resources import digest_of
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource

CONFIGMAP_LIMIT = 1024 * 1024 - 4096  # the API's object size limit, less room for metadata
POLL = 0.25
REFUSAL_GRACE = 10.0  # seconds a ReplicaFailure (pods refused) must last before a step fails on it
ROUTER_RELOAD_TIMEOUT = 150.0
FAILING_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CrashLoopBackOff",
                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
KEYS_FILE = f"{m.KEYS_DIR}/{m.KEYS_FILE}"
INSTANCE_KEY_FILE = f"{m.KEYS_DIR}/{m.INSTANCE_KEY_FILE}"
INSTANCE_KEY_HEADER = "x-recon-instance-key"  # how the router takes the instance key through the pod proxy
_ROUTER_LIB: tuple[bytes, str] | None = None


def router_lib() -> tuple[bytes, str]:
    """recon's httptools package as a .tar.gz (its Python files and compiled modules, reproducible),
    and the digest of router.py with it: what the router pod runs."""
    global _ROUTER_LIB
    if _ROUTER_LIB is None:
        import httptools  # type: ignore[import-untyped,unused-ignore]

        package = Path(httptools.__file__).resolve().parent
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for f in sorted(package.rglob("*")):
                if f.is_file() and f.suffix in (".py", ".so") and "__pycache__" not in f.parts:
                    tar.add(f, arcname=f"httptools/{f.relative_to(package)}", filter=_clean)
        data = buf.getvalue()
        _ROUTER_LIB = data, digest_of({"router": digest_of(ROUTER_SCRIPT.read_text()),
                                       "httptools": hashlib.sha256(data).hexdigest()})
    return _ROUTER_LIB


def _tar_gz(source: Path, arcname: str | None) -> bytes:
    """A .tar.gz of ``source``: a folder's contents at the root (``arcname`` None) or under ``arcname``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        if arcname is not None:
            tar.add(source, arcname=arcname, filter=_clean)
        elif source.is_dir():
            for child in sorted(source.iterdir()):
                if child.name not in ("__pycache__", ".git"):
                    tar.add(child, arcname=child.name, filter=_clean)
    return buf.getvalue()


def _clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if "__pycache__" in info.name.split("/"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


class KubernetesProvider(Provider):
    """Serves online endpoints as Deployments on a Kubernetes cluster."""

    name: ClassVar[str] = "kubernetes"

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.kube_settings = parse_settings(settings)
        self.ns = self.kube_settings.namespace
        self.project_root = Path(context.project_root).resolve()
        self.workspace = context.workspace or ""
        self._kube: Kube | None = None

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(self.kube_settings)
        return self._kube

    def close(self) -> None:
        if self._kube is not None:
            self._kube.close()
            self._kube = None

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
        not_ready = [p["metadata"]["name"] for p in pods if not _pod_ready(p)]
        if not_ready:
            problems.append(f"pods not ready: {', '.join(sorted(not_ready))}")
        outputs = {**resource.outputs, "instances": _instances(pods)}
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
        ready = set(_addresses(pods))
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
            if not _tolerated((node.get("spec") or {}).get("taints") or [], self.kube_settings.tolerations):
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
            self._update_table(ep, lambda t: t.update(auth_mode=attrs.get("auth_mode") or "key"))
            return self._endpoint_outputs(ep)
        ep, dep = str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()
        self._set_pool(ep, dep, attrs)
        prior = dict(request.prior.outputs) if request.prior else {}
        return {**prior, "instances": _instances(self._pods(ep, dep))}

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
        self._wait_gone("Deployment", name, _pod_selector(ep, dep))
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
    def credentials(self, endpoint: StateResource) -> Keys:
        ep = str(endpoint.attributes.get("name", endpoint.name)).lower()
        keys = self._read_keys(ep)
        if keys is None:
            raise PermanentError(f"endpoint {ep} has no keys: its Secret {self.ns}/{m.keys_name(ep)} is gone")
        return Keys(keys["primaryKey"], keys["secondaryKey"], self._scoring_uri(ep))

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

    def _ensure_keys(self, ep: str) -> None:
        """The endpoint's Secret: its two keys and the instance key, each made once and kept."""
        current = self._read_secret(ep)
        wanted = {"primaryKey": secrets.token_urlsafe(32), "secondaryKey": secrets.token_urlsafe(32),
                  "instanceKey": secrets.token_urlsafe(32), **current}
        if wanted == current:
            return
        data = {m.KEYS_FILE: json.dumps({k: wanted[k] for k in ("primaryKey", "secondaryKey")}),
                m.INSTANCE_KEY_FILE: json.dumps({"instanceKey": wanted["instanceKey"]})}
        self.kube.apply(m.secret(self.kube_settings, m.keys_name(ep), m.labels(self.workspace, "keys", ep), data))

    def _endpoint_outputs(self, ep: str) -> dict[str, Any]:
        router = self.kube.get("Deployment", m.router_name(ep))
        ready = bool(router) and int(((router or {}).get("status") or {}).get("availableReplicas") or 0) >= 1
        return {"router": m.router_name(ep), "service": m.router_name(ep), "namespace": self.ns,
                "scoring_uri": self._scoring_uri(ep), "provisioning_state": "Succeeded" if ready else "Failed"}

    def _scoring_uri(self, ep: str) -> str:
        host = self.kube_settings.scoring_host or f"{m.router_name(ep)}.{self.ns}.svc.cluster.local"
        return f"http://{host}/score"

    def _read_secret(self, ep: str) -> dict[str, str]:
        """primaryKey, secondaryKey and instanceKey from the endpoint's Secret (those it holds)."""
        obj = self.kube.get("Secret", m.keys_name(ep))
        out: dict[str, str] = {}
        for item in (m.KEYS_FILE, m.INSTANCE_KEY_FILE):
            raw = ((obj or {}).get("data") or {}).get(item)
            try:
                data = json.loads(base64.b64decode(raw)) if raw else None
            except ValueError:
                data = None
            if isinstance(data, dict):
                out.update({k: str(v) for k, v in data.items()
                            if k in ("primaryKey", "secondaryKey", "instanceKey") and v})
        return out

    def _read_keys(self, ep: str) -> dict[str, str] | None:
        data = self._read_secret(ep)
        if data.get("primaryKey") and data.get("secondaryKey"):
            return {"primaryKey": data["primaryKey"], "secondaryKey": data["secondaryKey"]}
        return None

    # -- the routing table (a ConfigMap the router mounts) ------------------------------------------
    def _read_table(self, ep: str) -> dict[str, Any]:
        obj = self.kube.get("ConfigMap", m.router_name(ep))
        raw = ((obj or {}).get("data") or {}).get("table.json")
        if raw:
            try:
                data = json.loads(raw)
                if isinstance(data, dict):
                    return data
            except ValueError:
                pass
        return {"version": 0, "endpoint": ep, "auth_mode": "key", "keys_file": KEYS_FILE,
                "instance_key_file": INSTANCE_KEY_FILE, "deployments": {},
                "traffic": {}, "mirror_traffic": {}}

    def _update_table(self, ep: str, mutate: Any) -> int:
        """Read, change and write the table; a concurrent writer's change is retried (resourceVersion)."""
        name = m.router_name(ep)
        for _ in range(5):
            current = self.kube.get("ConfigMap", name)
            table = self._read_table(ep)
            mutate(table)
            version = int(table.get("version") or 0) + 1
            table.update(version=version, endpoint=ep, keys_file=KEYS_FILE, instance_key_file=INSTANCE_KEY_FILE,
                         limits=router_limits(self.settings, ep))
            obj = m.configmap(self.kube_settings, name, m.labels(self.workspace, "router", ep),
                              data={"router.py": ROUTER_SCRIPT.read_text(), "table.json": json.dumps(table, indent=1)})
            if current is not None:
                obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                self.kube.apply(obj)
            except ConflictError:
                time.sleep(0.1)
                continue
            self._wait_router_version(ep, version)
            return version
        raise RetryableError(f"endpoint {ep}: its routing table kept changing while recon wrote it")

    def _wait_router_version(self, ep: str, version: int) -> None:
        """Until the router pods serve table ``version``; bounded, and only with ``router_reload_check``.
        Each pod is annotated with the version first: its kubelet then syncs it at once, refreshing the
        mounted ConfigMap (without that, within the kubelet's sync period: a minute by default). The
        router's ``GET /-/router`` is read through the API server's pod proxy with the instance key."""
        if not self.kube_settings.router_reload_check:
            return
        pods = [p for p in self.kube.items("Pod", {m.ENDPOINT: m.label_value(ep), m.ROLE: "router"})
                if _pod_ready(p) and not p["metadata"].get("deletionTimestamp")]
        key = self._read_secret(ep).get("instanceKey", "")
        headers = {INSTANCE_KEY_HEADER: key} if key else {}
        deadline = time.monotonic() + ROUTER_RELOAD_TIMEOUT
        for pod in pods:
            name = pod["metadata"]["name"]
            self.kube.annotate("Pod", name, {"recon.io/table-version": str(version)})
            while True:
                status = self.kube.proxy_get(name, m.ROUTER_PORT, "/-/router", headers=headers)
                if status is not None and int(status.get("version") or 0) >= version:
                    break
                if time.monotonic() > deadline:
                    raise RetryableError(f"endpoint {ep}: router pod {name} did not load "
                                         f"routing table version {version} within {ROUTER_RELOAD_TIMEOUT:g}s")
                time.sleep(POLL)

    def _ready_addresses(self, ep: str, dep: str) -> list[str]:
        """``ip:port`` of the deployment's ready pods that are not being deleted, sorted."""
        return _addresses(self._pods(ep, dep))

    def _set_pool(self, ep: str, dep: str, attrs: dict[str, Any] | None) -> None:
        ips = self._ready_addresses(ep, dep)

        def mutate(table: dict[str, Any]) -> None:
            entry = table.setdefault("deployments", {}).setdefault(dep, {})
            if attrs is not None:
                entry.update(router_settings(attrs))
            entry["upstreams"] = sorted(ips)

        self._update_table(ep, mutate)

    def _remove_from_table(self, ep: str, dep: str) -> None:
        def mutate(table: dict[str, Any]) -> None:
            table.setdefault("deployments", {}).pop(dep, None)
            for key in ("traffic", "mirror_traffic"):
                table.setdefault(key, {}).pop(dep, None)

        self._update_table(ep, mutate)

    # == deployments ================================================================================
    def _pods(self, ep: str, dep: str) -> list[dict[str, Any]]:
        return [p for p in self.kube.items("Pod", _pod_selector(ep, dep))
                if not (p.get("metadata") or {}).get("deletionTimestamp")]

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
            self._wait_rollout(name, _pod_selector(ep, dep), count, request, until_updated=until_updated,
                               generation=int((applied.get("metadata") or {}).get("generation") or 0), batch=batch,
                               pool=(ep, dep))
        except PermanentError:
            if create and not existed:
                self.kube.delete("HorizontalPodAutoscaler", name)
                self.kube.delete("Deployment", name)
                self._wait_gone("Deployment", name, _pod_selector(ep, dep))
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
                "instances": _instances(self._pods(ep, dep)), "provisioning_state": "Succeeded"}

    def _undo(self, name: str, digest: str, request: ApplyRequest) -> None:
        """Back to the newest older ReplicaSet's template (``kubectl rollout undo``): the old pods keep serving."""
        obj = self.kube.get("Deployment", name)
        if obj is None:
            return
        selector = (obj.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
        older = [rs for rs in self.kube.items("ReplicaSet", selector)
                 if ((rs.get("metadata") or {}).get("annotations") or {}).get("recon.io/config-digest") != digest
                 and (rs["spec"]["template"]["metadata"].get("annotations") or {}).get("recon.io/config-digest")
                 != digest]
        if not older:
            return
        older.sort(key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(
            "deployment.kubernetes.io/revision", 0)))
        template = older[-1]["spec"]["template"]
        template["metadata"].get("labels", {}).pop("pod-template-hash", None)
        old_digest = (template["metadata"].get("annotations") or {}).get("recon.io/config-digest", "")
        labels = {**obj["metadata"].get("labels", {}), m.DIGEST: m.short_digest(old_digest)}
        patch: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.ns, "labels": labels,
                         "annotations": {"recon.io/config-digest": old_digest}},
            "spec": {"selector": obj["spec"]["selector"], "template": template}}
        self.kube.apply(patch)
        request.emit(f"rolled {name} back to its previous template; the old pods keep serving")

    def _wait_complete(self, ep: str, dep: str, request: ApplyRequest) -> None:
        """Traffic moves only to a deployment whose rollout is complete."""
        name = m.deployment_name(ep, dep)
        deadline = time.monotonic() + 60
        while True:
            obj = self.kube.get("Deployment", name)
            if obj is None:
                raise PermanentError(f"endpoint {ep}: deployment {dep} has no Deployment {name}")
            if _complete(obj):
                return
            if time.monotonic() > deadline:
                raise RetryableError(f"endpoint {ep}: the rollout of {name} is not complete; traffic stays")
            time.sleep(POLL)

    def _wait_rollout(self, name: str, selector: dict[str, str], count: int, request: ApplyRequest,
                      what: str | None = None, until_updated: int | None = None, generation: int = 0,
                      batch: Batch | None = None, pool: tuple[str, str] | None = None) -> None:
        """Wait until ``until_updated`` (default: all) pods run the Deployment's template and are
        available; report ReplicaSet progress; fail on ProgressDeadlineExceeded, quota refusals,
        image pull errors and crashing pods with their events and last log lines.

        ``pool`` (endpoint, deployment): while waiting, the router's pool follows the ready pods: a new
        one joins when ready, and one the Deployment controller retires leaves while its preStop pause
        keeps it serving (manifests.PRESTOP_SECONDS), so no request goes to a stopped pod."""
        what = what or name
        deadline = time.monotonic() + self.kube_settings.rollout_timeout_seconds
        last = ""
        refused_since: list[float] = []  # when a ReplicaFailure condition was first seen (it must persist)
        while True:
            if pool is not None and self.kube.get("ConfigMap", m.router_name(pool[0])) is not None:
                # against the table itself: pods change between two batches too (the controller rolls on)
                routed = ((self._read_table(pool[0]).get("deployments") or {}).get(pool[1]) or {}).get("upstreams")
                if self._ready_addresses(*pool) != sorted(routed or []):
                    self._set_pool(pool[0], pool[1], None)
            obj = self.kube.get("Deployment", name)
            if obj is None:
                raise PermanentError(f"{request.address}: Deployment {self.ns}/{name} disappeared")
            status = obj.get("status") or {}
            observed = int(status.get("observedGeneration") or 0) >= max(generation,
                                                                         int(obj["metadata"].get("generation") or 0))
            available = int(status.get("availableReplicas") or 0)
            line, new_available = self._progress(obj, selector)
            if line != last:
                request.emit(f"batch {batch.index}: {line}" if batch else line)
                last = line
            # a batch is done once its share of pods runs the new template and is available, with no
            # capacity lost (maxUnavailable 0); the controller meanwhile goes on with the next ones
            if observed and (_complete(obj) or (until_updated is not None and new_available >= until_updated
                                                and available >= count)):
                return
            failure = self._failure(obj, selector, observed, refused_since)
            if failure is not None:
                raise PermanentError(f"{request.address}: {what} failed: {failure[0]}", detail=failure[1])
            if time.monotonic() > deadline:
                failure = ("not ready within "
                           f"{self.kube_settings.rollout_timeout_seconds:g}s", self._pod_detail(selector))
                raise PermanentError(f"{request.address}: {what} {failure[0]}", detail=failure[1])
            time.sleep(POLL)

    def _progress(self, obj: dict[str, Any], selector: dict[str, str]) -> tuple[str, int]:
        """The ReplicaSets as a line of text, and the new one's available pods."""
        sets = self.kube.items("ReplicaSet", selector)
        revision = (obj["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
        parts = []
        new_available = 0
        for rs in sorted(sets, key=lambda r: int((r["metadata"].get("annotations") or {}).get(
                "deployment.kubernetes.io/revision", 0))):
            spec_n = int((rs.get("spec") or {}).get("replicas") or 0)
            ready = int((rs.get("status") or {}).get("readyReplicas") or 0)
            if spec_n == 0 and ready == 0:
                continue
            rev = (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
            tag = "new" if rev == revision else "old"
            if tag == "new":
                new_available = int((rs.get("status") or {}).get("availableReplicas") or 0)
            parts.append(f"{tag} ReplicaSet {rs['metadata']['name']} {ready}/{spec_n} ready")
        return ", ".join(parts) or "no ReplicaSet yet", new_available

    def _failure(self, obj: dict[str, Any], selector: dict[str, str], observed: bool,
                 refused_since: list[float]) -> tuple[str, list[str]] | None:
        """Why the rollout cannot succeed, with details; None while it may. The Deployment's conditions
        count once the controller has seen this change (a condition of the previous one can linger), and
        ReplicaFailure (pods refused: quota) only after REFUSAL_GRACE seconds: scaling down from a
        refused size clears it at the next sync."""
        conditions = ((obj.get("status") or {}).get("conditions") or []) if observed else []
        refused = None
        for cond in conditions:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                return f"ProgressDeadlineExceeded: {cond.get('message')}", self._pod_detail(selector)
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                refused = cond
        if refused is None:
            refused_since.clear()
        elif not refused_since:
            refused_since.append(time.monotonic())
        elif time.monotonic() - refused_since[0] >= REFUSAL_GRACE:
            return f"{refused.get('reason')}: {refused.get('message')}", self._rs_events(selector)
        for pod in self._pods_by(selector):
            st = pod.get("status") or {}
            for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
                waiting = (cs.get("state") or {}).get("waiting") or {}
                terminated = (cs.get("state") or {}).get("terminated") or {}
                reason = waiting.get("reason") or ""
                if reason in FAILING_REASONS or (terminated and terminated.get("exitCode") not in (0, None)
                                                  and int(cs.get("restartCount") or 0) >= 1):
                    pname = pod["metadata"]["name"]
                    message = waiting.get("message") or terminated.get("reason") or ""
                    return (f"pod {pname} container {cs.get('name')}: {reason or 'exited'} {message}".strip(),
                            self._pod_detail(selector, only=pname))
        return None

    def _pods_by(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        return self.kube.items("Pod", selector)

    def _rs_events(self, selector: dict[str, str]) -> list[str]:
        lines: list[str] = []
        for rs in self.kube.items("ReplicaSet", selector):
            lines += [f"ReplicaSet {rs['metadata']['name']}: {e}" for e in self.kube.events("ReplicaSet",
                                                                                            rs["metadata"]["name"])]
        return lines[-15:]

    def _pod_detail(self, selector: dict[str, str], only: str | None = None) -> list[str]:
        """Events and last log lines of the pods that are not ready."""
        lines: list[str] = []
        for pod in self._pods_by(selector):
            pname = pod["metadata"]["name"]
            if (only and pname != only) or (not only and _pod_ready(pod)):
                continue
            lines += [f"pod {pname} event: {e}" for e in self.kube.events("Pod", pname)[-8:]]
            spec = pod.get("spec") or {}
            for container in [c.get("name") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]:
                tail = self.kube.logs(pname, 15, container)
                if not tail:
                    tail = self.kube.logs(pname, 15, container, previous=True)
                lines += [f"pod {pname} {container}: {line}" for line in tail]
            if only is None and len(lines) > 40:
                break
        return lines or ["(no events or log lines from the pods)"]

    def _wait_gone(self, kind: str, name: str, selector: dict[str, str]) -> None:
        """Until the object and its pods are gone (foreground deletion)."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.kube.get(kind, name) is None and not self.kube.items("Pod", selector):
                return
            time.sleep(POLL)
        raise RetryableError(f"{kind} {self.ns}/{name} or its pods are still there after 300s")


def _tolerated(taints: list[dict[str, Any]], tolerations: list[dict[str, Any]]) -> bool:
    """Whether pods with ``tolerations`` may be scheduled on a node with ``taints`` (its NoSchedule and
    NoExecute taints)."""
    return all(any(_tolerates(t, taint) for t in tolerations) for taint in taints
               if taint.get("effect") in ("NoSchedule", "NoExecute"))


def _tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Kubernetes' matching: effect (empty: any), key (empty with Exists: any), Exists or Equal value."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if not toleration.get("key"):
        return bool(toleration.get("operator") == "Exists")
    if toleration["key"] != taint.get("key"):
        return False
    return bool(toleration.get("operator") == "Exists"
                or str(toleration.get("value", "")) == str(taint.get("value", "")))


def _pod_selector(ep: str, dep: str) -> dict[str, str]:
    return {m.ENDPOINT: m.label_value(ep), m.DEPLOYMENT: m.label_value(dep), m.ROLE: "instance"}


def _addresses(pods: list[dict[str, Any]]) -> list[str]:
    """``ip:port`` of the ready ones of ``pods``, sorted."""
    return sorted(f"{p['status']['podIP']}:{m.INSTANCE_PORT}" for p in pods
                  if _pod_ready(p) and (p.get("status") or {}).get("podIP"))


def _pod_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _complete(obj: dict[str, Any]) -> bool:
    """observedGeneration caught up; every replica updated and available; no old ones left."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = int(spec["replicas"]) if spec.get("replicas") is not None else 1
    return (int(status.get("observedGeneration") or 0) >= int(obj["metadata"].get("generation") or 0)
            and int(status.get("updatedReplicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("replicas") or 0) == want)


def _instances(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"pod": p["metadata"]["name"], "ip": (p.get("status") or {}).get("podIP"), "ready": _pod_ready(p),
             "config_digest": ((p["metadata"].get("annotations") or {}).get("recon.io/config-digest"))}
            for p in sorted(pods, key=lambda p: str(p["metadata"]["name"]))]

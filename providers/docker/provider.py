"""``DockerProvider``: endpoints served by containers on a Docker engine (the control plane).

Behaviour matches the local provider (providers/local/provider.py) step for step: the same routing
table and router program, the same rollout (start new → ready → pool → drain → stop old), the same
drift rules. What differs is where things run: environments are images (``images``), an endpoint is
two networks and a router container (``endpoint``), a deployment is a set of containers
(``instances``). Everything recon made carries ``recon.*`` labels and is found again through them.

Settings (``provider:`` in recon.yaml): ``image_overrides`` {image: replacement}, ``keep_images``
(bool: destroy keeps built images), ``publish_host`` (default 127.0.0.1), ``router_image`` (default:
``python:3.12-slim``, or the replacement of Azure's base image when only that one is overridden),
``warm_start`` (bool, default true: the instances one operation starts are forked in a pod
container of their configuration whose launcher imported the deployment's libraries once; see
``pods``; false: one container per instance).

Outputs recorded per type (plain JSON, never secrets):

- environment: ``image``, ``built``, ``warnings``
- model: ``model_dir`` (the host folder mounted read-only at Azure's ``AZUREML_MODEL_DIR``)
- endpoint: ``port``, ``scoring_uri``, ``router_container``, ``network``, ``provisioning_state``
- deployment: ``instances`` [{id, container, name, ip, config_digest} (+ pod, port, pid when forked in
  a pod)], ``config_digest``, ``image``, ``provisioning_state``
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from providers.docker import pods
from providers.docker.endpoint import DockerEndpoint
from providers.docker.engine import Engine
from providers.docker.images import DEFAULT_BASE_IMAGE, NO_ENVIRONMENT, ImageBuilder
from providers.docker.instances import (
    APP_ROOT,
    ContainerInstance,
    ContainerRunner,
    DockerLaunch,
    code_mount_for,
)
from providers.shared import files
from providers.shared.observing import endpoint_observation, live_pool
from providers.shared.probes import ready_budget
from providers.shared.rolling import STOP_GRACE, config_digest, instance_count, start_error
from providers.shared.scaling import InstanceProvider
from providers.shared.warm import ready_line
from reconciler.model.catalog import lookup, merged_catalog
from reconciler.model.crashpoints import crash_point
from reconciler.model.errors import PermanentError
from reconciler.model.quantities import parse_cpu, parse_memory_gb
from reconciler.model.resources import DeploymentAttrs, as_deployment, as_environment
from reconciler.plan.provider import ApplyRequest, Capacity, Observation, ProviderContext
from reconciler.state.document import StateResource

DEFAULT_ROUTER_IMAGE = "python:3.12-slim"


class DockerProvider(InstanceProvider):
    """Serves online endpoints as containers on a Docker engine."""

    name: ClassVar[str] = "docker"

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.engine = Engine()
        overrides = dict(settings.get("image_overrides") or {})
        self.images = ImageBuilder(self.engine, overrides, self.project_root,
                                   Path(context.cache_dir).resolve() / "docker-locks", context.workspace)
        self.keep_images = bool(settings.get("keep_images", False))
        self.publish_host = str(settings.get("publish_host") or "127.0.0.1")
        default_router = overrides.get(DEFAULT_ROUTER_IMAGE) or overrides.get(DEFAULT_BASE_IMAGE)
        self.router_image = str(settings.get("router_image") or default_router or DEFAULT_ROUTER_IMAGE)
        self.router_image = overrides.get(self.router_image, self.router_image)
        self._capacity: Capacity | None = None
        self.warm_start = bool(settings.get("warm_start", True))
        # (endpoint, deployment, config digest) -> the pod kept between the batches of a rollout
        self._pods: dict[tuple[str, str, str], pods.Pod] = {}
        self._pods_lock = threading.Lock()

    # == reading ====================================================================================
    def _observe_environment(self, resource: StateResource) -> Observation:
        target = self.images.plan(as_environment(resource.attributes))
        if not self.engine.image_exists(target.tag):
            return Observation(False, problems=[f"its image {target.tag} is not on the engine"])
        return Observation(True, outputs={**resource.outputs, "image": target.tag})

    def _observe_endpoint(self, resource: StateResource) -> Observation:
        ep = self._endpoint(resource.attributes["name"])
        problem = ep.router_problem()
        live = ep.status() if problem is None else None
        if problem is None and live is None:
            problem = f"the router of endpoint {ep.name} does not answer on {self.publish_host}:{ep.chosen_port()}"
        if problem is not None:
            return Observation(False, problems=[problem])
        return endpoint_observation(ep, resource, self._endpoint_outputs(ep), live)

    instance_noun = "instance container"

    def _instance_problems(self, runner: ContainerRunner, resource: StateResource, found: list[ContainerInstance],
                           healthy: list[ContainerInstance]) -> list[str]:
        problems = []
        known = {int(i["id"]) for i in resource.outputs.get("instances") or [] if "id" in i}
        for missing in sorted(known - {i.id for i in found}):
            problems.append(f"instance {missing} (container {runner.container_name(missing)}) is gone")
        recorded_digest = resource.outputs.get("config_digest")
        for inst in healthy:
            if recorded_digest and inst.config_digest != recorded_digest and runner.load_config(
                    inst.config_digest) is None:
                problems.append(f"{inst.label} runs a configuration recon never made")
        return problems

    def find_unmanaged(self, known: list[StateResource]) -> list[str]:
        owned_endpoints = {str(r.attributes.get("name", r.name)).lower() for r in known if r.type == "endpoint"}
        owned_deployments = {(str(r.attributes.get("endpoint_name")).lower(), str(r.attributes.get("name")).lower())
                             for r in known if r.type == "deployment"}
        found = []
        for c in self.engine.containers({"recon.managed": "true", "recon.state_dir": str(self.state_dir)}):
            labels = c.labels or {}
            role, ep = labels.get("recon.role", "container"), labels.get("recon.endpoint", "")
            if role == "router" and ep in owned_endpoints:
                continue
            if role in ("instance", "pod") and (ep, labels.get("recon.deployment", "")) in owned_deployments:
                continue
            found.append(f"{role} container {c.name} ({c.status}) carries recon's labels but no recorded "
                         "resource owns it")
        return found

    def capacity(self) -> Capacity:
        if self._capacity is None:
            info = self.engine.info()
            cpus = float(info.get("NCPU") or 0) or None
            mem = round(int(info.get("MemTotal") or 0) / 1024**3, 2) or None
            self._capacity = Capacity(cpus=cpus, memory_gb=mem,
                                      description=f"the Docker engine: {cpus:g} CPUs, {mem} GB memory"
                                      if cpus else "the Docker engine")
        return self._capacity

    # == changing ===================================================================================
    def _delete_environment(self, resource: StateResource) -> None:
        if not self.keep_images:
            self.images.remove(as_environment(resource.attributes))

    def _stop_endpoint_instances(self, ep: DockerEndpoint) -> None:
        self._close_pods(lambda key: key[0] == ep.name)
        for c in self.engine.containers({"recon.state_dir": str(self.state_dir), "recon.endpoint": ep.name}):
            self.engine.remove_container(c.id, grace=STOP_GRACE)

    # == operating ==================================================================================
    def logs(self, deployment: StateResource, instance: int | None = None, tail: int = 100) -> list[str]:
        runner = self._runner(as_deployment(deployment.attributes))
        found = runner.recorded()
        if instance is not None:
            return next((runner.tail_instance(i, tail) for i in found if i.id == instance), [])
        lines: list[str] = []
        for inst in found:
            lines += [f"[{inst.id}] {line}" for line in runner.tail_instance(inst, tail)]
        return lines[-tail:] if tail else lines

    def close(self) -> None:
        self._close_pods(lambda key: True)
        self.engine.close()

    # == environments ===============================================================================
    def _create_environment(self, request: ApplyRequest) -> dict[str, Any]:
        image = self.images.ensure(as_environment(request.asset), request.address, request.emit)
        return {"image": image.tag, "built": image.built, "warnings": []}

    # == endpoints ==================================================================================
    def _endpoint(self, name: str) -> DockerEndpoint:
        return DockerEndpoint(self.engine, self.state_dir, str(name), self.context.workspace, self.router_image,
                              self.publish_host)

    def _start_router(self, ep: DockerEndpoint, request: ApplyRequest) -> str:
        if not self.engine.image_exists(self.router_image):
            self.images._pull(self.router_image, request.address, request.emit)
        ep.start_router()
        return f"container {ep.router_name} listening on {self.publish_host}:{ep.chosen_port()}"

    def _endpoint_outputs(self, ep: DockerEndpoint) -> dict[str, Any]:
        router = ep.router() or {}
        port = ep.chosen_port()
        return {"port": port, "scoring_uri": f"http://{ep.uri_host}:{port}/score",
                "router_container": ep.router_name, "network": ep.network_name,
                "provisioning_state": "Succeeded" if router else "Failed"}

    # == deployments ================================================================================
    def _runner(self, attrs: DeploymentAttrs) -> ContainerRunner:
        return ContainerRunner(self.engine, self._endpoint(str(attrs["endpoint_name"])), str(attrs["name"]),
                               record_modules=self.warm_start)

    def _keepable(self, runner: ContainerRunner, instance: ContainerInstance) -> bool:
        return runner.is_live(instance)

    def _endpoint_of(self, runner: ContainerRunner) -> DockerEndpoint:
        return runner.ep

    def _desired(self, request: ApplyRequest, runner: ContainerRunner) -> tuple[str, DockerLaunch]:
        """The desired configuration's digest and launch config (image built, files placed, saved)."""
        attrs, model = request.deployment, request.model
        env_attrs = request.environment or NO_ENVIRONMENT
        image = self.images.plan(env_attrs)
        cpus, mem = self._limits(attrs, request)
        digest = config_digest(attrs, model, image=image.tag, resources=attrs.get("resources"), limits=[cpus, mem])
        existing = runner.load_config(digest)
        if existing is not None and Path(existing.code_dir).is_dir() and self.engine.image_exists(existing.image):
            return digest, existing
        self.images.ensure(env_attrs, str(attrs.get("environment") or request.address), request.emit)
        model_dir = model_mount = None
        if model is not None:
            model_dir = str(files.place_model(self.state_dir, self.project_root, model, str(attrs.get("model"))))
            model_mount = f"{APP_ROOT}/azureml-models/{files.safe(str(model['name']))}/{files.safe(str(model['version']))}"
        snapshot = files.snapshot_code(self.state_dir, self.project_root, attrs.get("code"), request.address)
        code_mount = code_mount_for(attrs.get("code"))
        settings = attrs.get("request_settings") or {}
        config = DockerLaunch(
            image=image.tag, host_inside=image.host_inside, code_dir=str(snapshot), code_mount=code_mount,
            entry_script=f"{code_mount}/{attrs.get('scoring_script') or 'score.py'}",
            model_dir=model_dir, model_mount=model_mount,
            environment_variables={str(k): str(v) for k, v in (attrs.get("environment_variables") or {}).items()},
            worker_count=int(settings.get("max_concurrent_requests_per_instance") or 1),
            readiness_probe=dict(attrs.get("readiness_probe") or {}),
            liveness_probe=dict(attrs.get("liveness_probe") or {}),
            nano_cpus=int(cpus * 1e9) if cpus else None, mem_bytes=mem,
        )
        runner.save_config(digest, config)
        return digest, config

    def _limits(self, attrs: DeploymentAttrs, request: ApplyRequest) -> tuple[float | None, int | None]:
        """CPU and memory limits: ``resources`` (limits, else requests), else the instance type;
        capped at what the engine has (with a warning)."""
        res: Mapping[str, Any] = attrs.get("resources") or {}
        chosen = {**(res.get("requests") or {}), **(res.get("limits") or {})}
        cpus = _cpu_quantity(chosen.get("cpu")) if chosen.get("cpu") is not None else None
        mem = _memory_quantity(chosen.get("memory")) if chosen.get("memory") is not None else None
        sku = lookup(merged_catalog(), str(attrs.get("instance_type") or "")) if attrs.get("instance_type") else None
        if sku is not None:
            entry = merged_catalog()[sku]
            cpus = cpus if cpus is not None else float(entry.cores)
            mem = mem if mem is not None else int(entry.memory_gb * 1024**3)
        cap = self.capacity()
        if cpus is not None and cap.cpus and cpus > cap.cpus:
            request.emit(f"warning: {cpus:g} CPUs per instance capped at the engine's {cap.cpus:g}")
            cpus = cap.cpus
        if mem is not None and cap.memory_gb and mem > cap.memory_gb * 1024**3:
            request.emit(f"warning: {mem / 1024**3:.1f} GB memory per instance capped at the engine's "
                         f"{cap.memory_gb:g} GB")
            mem = int(cap.memory_gb * 1024**3)
        return cpus, mem

    def _start_ready(self, runner: ContainerRunner, request: ApplyRequest, digest: str,
                     config: DockerLaunch, n: int, keep_launcher: bool = False) -> list[ContainerInstance]:
        """Start ``n`` instances and wait until ready; on failure remove them and raise.

        Warm (forked in a pod of the configuration) when more than one instance starts or the
        next batches of a rollout will want the pod (``keep_launcher``), unless ``warm_start`` is
        off or the pod cannot start (then they start cold, one container each); the connection to
        the pod is closed afterwards unless ``keep_launcher`` (the pod lives on while its
        instances do)."""
        if n <= 0:
            return []
        kept = False
        # one instance and no later batch: a pod would only add its own start to the cold one
        pod = self._pod(runner, request, digest, config, n, create=n > 1 or keep_launcher)
        try:
            new = runner.start(digest, config, n, pod)
            crash_point("instances.started", request.address)
            if runner.warm_failure:
                request.emit(f"warm start failed ({runner.warm_failure}); the rest start cold")
            request.emit("starting instance(s) " + ", ".join(f"{i.id} ({i.name})" for i in new))
            failure = runner.wait_ready(new, config.readiness_probe)
            kept = keep_launcher and failure is None and not runner.warm_failure
        finally:
            if not kept:
                self._close_pod(runner, digest)
        if failure is not None:
            runner.stop(new, grace=2.0)
            raise start_error(request.address, failure, what="container")
        for inst in new:
            request.emit(f"instance {inst.id} ready ({inst.name}, {inst.upstream()})")
        crash_point("instances.ready", request.address)  # ready, not yet in the router's pool
        return new

    def _pod(self, runner: ContainerRunner, request: ApplyRequest, digest: str, config: DockerLaunch,
             n: int, create: bool) -> pods.Pod | None:
        """The pod this process keeps for the configuration, or (with ``create``) a new one; None
        for cold starts."""
        if not self.warm_start:
            return None
        key = (runner.endpoint, runner.name, digest)
        with self._pods_lock:
            pod = self._pods.get(key)
        if pod is not None or not create:
            return pod
        planned = max(n, instance_count(request.deployment, n))
        cap = self.capacity()
        nano = _pod_limit(config.nano_cpus, planned, int((cap.cpus or 0) * 1e9))
        mem = _pod_limit(config.mem_bytes, planned, int((cap.memory_gb or 0) * 1024**3))
        try:
            pod = runner.start_pod(digest, config, nano, mem, ready_budget(config.readiness_probe))
        except pods.LauncherError as ex:
            request.emit(f"warm start unavailable ({ex}); instances start cold")
            return None
        crash_point("pod.started", request.address)
        with self._pods_lock:
            self._pods[key] = pod
        request.emit(ready_line(f"pod {pod.name}", pod.preloaded, pod.import_seconds, pod.failed))
        return pod

    def _close_pod(self, runner: ContainerRunner, digest: str) -> None:
        self._close_pods(lambda key: key == (runner.endpoint, runner.name, digest))

    def _close_pods(self, which: Any) -> None:
        with self._pods_lock:
            closing = [k for k in self._pods if which(k)]
            gone = [self._pods.pop(k) for k in closing]
        for pod in gone:
            pod.close()

    def _stop(self, runner: ContainerRunner, instances: list[ContainerInstance], wait: bool) -> None:
        """Forked instances may be left to their pod's launcher to stop (``wait=False``: it
        SIGKILLs them after the grace period whatever happens to this process); containers are
        stopped and removed before this returns."""
        runner.stop(instances, grace=STOP_GRACE, wait=wait)

    def _rollout_done(self, runner: ContainerRunner) -> None:
        runner.pods.wait_stopped(timeout=STOP_GRACE + 5.0)

    def _strays(self, runner: ContainerRunner, found: list[ContainerInstance]) -> list[str]:
        return [f"pod {name} runs with no instance (left by an interrupted apply)" for name in runner.pods.empty()]

    def _settle(self, runner: ContainerRunner, instances: list[ContainerInstance],
                config: DockerLaunch) -> list[ContainerInstance]:
        """Containers a crashed apply left starting: wait until ready; remove those that never are
        (a running container is not ready before its host logs that it listens). Only those outside
        the router's pool whose health check has not passed or failed yet are waited for: one in the
        pool was ready when it was pooled (and its log, with requests, has moved on since its ready
        line); an unhealthy one is the liveness check's to replace."""
        pool = live_pool(runner.ep, runner.name) or set()
        kept: list[ContainerInstance] = []
        for inst in instances:
            if (inst.upstream() in pool or inst.health not in (None, "starting")
                    or runner.wait_ready([inst], config.readiness_probe) is None):
                kept.append(inst)
            else:
                runner.stop([inst], grace=2.0)
        return kept

    def _healthy(self, runner: ContainerRunner, live: list[ContainerInstance],
                 probe: Mapping[str, Any] | None) -> list[ContainerInstance]:
        return [i for i in live if runner.is_live(i)]

    def _config_outputs(self, runner: ContainerRunner, config: DockerLaunch | None) -> dict[str, Any]:
        return {"image": config.image if config else None}

def _pod_limit(per_instance: int | None, instances: int, engine_total: int) -> int | None:
    """A pod's CPU or memory limit: an instance's times the instances it is started for, at most
    what the engine has (``engine_total``; 0 when unknown); None when instances have no limit."""
    if not per_instance:
        return None
    return min(per_instance * instances, engine_total or per_instance * instances)


def _cpu_quantity(value: Any) -> float:
    """Kubernetes CPU quantity: ``1``, ``0.5``, ``500m``."""
    cpus = parse_cpu(value)
    if cpus is None:
        raise PermanentError(f"resources: cpu {value!r} is not a quantity such as 1, 0.5 or 500m")
    return cpus


def _memory_quantity(value: Any) -> int:
    """Kubernetes memory quantity in bytes: ``512Mi``, ``1Gi``, ``1G``, ``1000000``."""
    gib = parse_memory_gb(value)
    if gib is None:
        raise PermanentError(f"resources: memory {value!r} is not a quantity such as 512Mi or 2Gi")
    return math.ceil(gib * 2**30)

"""``DockerProvider``: endpoints served by containers on a Docker engine (the control plane).

Behaviour matches the local provider (providers/local/provider.py) step for step: the same routing
table and router program, the same rollout (start new → ready → pool → drain → stop old), the same
drift rules. What differs is where things run: environments are images (``images``), an endpoint is
two networks and a router container (``endpoint``), a deployment is a set of containers
(``instances``). Everything recon made carries ``recon.*`` labels and is found again through them.

Settings (``provider:`` in recon.yaml): ``image_overrides`` {image: replacement}, ``keep_images``
(bool: destroy keeps built images), ``publish_host`` (default 127.0.0.1), ``router_image`` (default:
``python:3.12-slim``, or the replacement of Azure's base image when only that one is overridden).

Outputs recorded per type (plain JSON, never secrets):

- environment: ``image``, ``built``, ``warnings``
- model: ``model_dir`` (the host folder mounted read-only at Azure's ``AZUREML_MODEL_DIR``)
- endpoint: ``port``, ``scoring_uri``, ``router_container``, ``network``, ``provisioning_state``
- deployment: ``instances`` [{id, container, name, ip, config_digest}], ``config_digest``, ``image``,
  ``provisioning_state``
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

from providers.base import ApplyRequest, Capacity, Keys, Observation, ProviderContext
from providers.common import (
    InstanceProvider,
    batch_moves,
    drain_timeout,
    instance_count,
    normal_traffic,
    router_settings,
    running_digest,
    start_error,
    surplus,
)
from providers.docker.endpoint import DockerEndpoint
from providers.docker.engine import Engine
from providers.docker.images import DEFAULT_BASE_IMAGE, ImageBuilder
from providers.docker.instances import (
    APP_ROOT,
    ContainerInstance,
    ContainerRunner,
    DockerLaunch,
    code_mount_for,
)
from providers.local import files, procs
from providers.local.routing import router_limits
from reconciler.catalog import lookup, merged_catalog
from reconciler.errors import PermanentError
from reconciler.plan import Batch
from reconciler.resources import digest_of
from reconciler.state import StateResource

STOP_GRACE = 10.0
DEFAULT_ROUTER_IMAGE = "python:3.12-slim"


class DockerProvider(InstanceProvider):
    """Serves online endpoints as containers on a Docker engine."""

    name: ClassVar[str] = "docker"

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.state_dir = Path(context.state_dir).resolve()
        self.project_root = Path(context.project_root).resolve()
        self.engine = Engine()
        overrides = dict(settings.get("image_overrides") or {})
        self.images = ImageBuilder(self.engine, overrides, self.project_root,
                                   Path(context.cache_dir).resolve() / "docker-locks", context.workspace)
        self.keep_images = bool(settings.get("keep_images", False))
        router_limits(settings, "")  # a bad router_limits setting is an error before anything runs
        self.publish_host = str(settings.get("publish_host") or "127.0.0.1")
        default_router = overrides.get(DEFAULT_ROUTER_IMAGE) or overrides.get(DEFAULT_BASE_IMAGE)
        self.router_image = str(settings.get("router_image") or default_router or DEFAULT_ROUTER_IMAGE)
        self.router_image = overrides.get(self.router_image, self.router_image)
        self._capacity: Capacity | None = None

    # == reading ====================================================================================
    def observe(self, resource: StateResource) -> Observation:
        attrs = resource.attributes
        if resource.type == "environment":
            target = self.images.plan(attrs)
            if not self.engine.image_exists(target.tag):
                return Observation(False, problems=[f"its image {target.tag} is not on the engine"])
            return Observation(True, outputs={**resource.outputs, "image": target.tag})
        if resource.type == "model":
            if not files.model_present(self.state_dir, attrs):
                return Observation(False, problems=[f"its folder {files.model_dir(self.state_dir, attrs)} is gone"])
            return Observation(True, outputs=resource.outputs)
        if resource.type == "endpoint":
            return self._observe_endpoint(resource)
        return self._observe_deployment(resource)

    def _observe_endpoint(self, resource: StateResource) -> Observation:
        ep = self._endpoint(resource.attributes["name"])
        problem = ep.router_problem()
        if problem is None and ep.status() is None:
            problem = f"the router of endpoint {ep.name} does not answer on {self.publish_host}:{ep.chosen_port()}"
        if problem is not None:
            return Observation(False, problems=[problem])
        table = ep.read_table()
        observed = {
            "auth_mode": table.get("auth_mode", resource.attributes.get("auth_mode")),
            "traffic": normal_traffic(table.get("traffic")),
            "mirror_traffic": normal_traffic(table.get("mirror_traffic")),
        }
        return Observation(True, attributes=observed, outputs=self._endpoint_outputs(ep))

    def _observe_deployment(self, resource: StateResource) -> Observation:
        attrs = resource.attributes
        runner = self._runner(attrs)
        found = runner.recorded()
        if not found and not runner.run.is_dir():
            return Observation(False, problems=["no instance container of it exists"])
        problems: list[str] = []
        healthy: list[ContainerInstance] = []
        recorded_digest = resource.outputs.get("config_digest")
        known = {int(i["id"]): i.get("container") for i in resource.outputs.get("instances") or [] if "id" in i}
        for inst in found:
            if not inst.alive:
                problems.append(f"instance {inst.id} (container {inst.name}) is {inst.status}")
            elif not runner.is_live(inst):
                problems.append(f"instance {inst.id} (container {inst.name}) does not answer its liveness probe")
            else:
                healthy.append(inst)
        for missing in sorted(set(known) - {i.id for i in found}):
            problems.append(f"instance {missing} (container {runner.container_name(missing)}) is gone")
        observed: dict[str, Any] = {"instance_count": len(healthy)}
        declared = dict(attrs.get("environment_variables") or {})
        for inst in healthy:
            seen = runner.check_environment(inst, declared)
            if seen is not None:
                observed["environment_variables"] = seen
                problems.append(f"instance {inst.id} (container {inst.name}) runs with other environment variables")
                break
        for inst in healthy:
            if recorded_digest and inst.config_digest != recorded_digest and runner.load_config(
                    inst.config_digest) is None:
                problems.append(f"instance {inst.id} (container {inst.name}) runs a configuration recon never made")
        outputs = {**resource.outputs, "instances": [i.to_output() for i in healthy]}
        return Observation(True, attributes=observed, outputs=outputs, problems=problems)

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
            if role == "instance" and (ep, labels.get("recon.deployment", "")) in owned_deployments:
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
    def delete(self, resource: StateResource) -> None:
        attrs = resource.attributes
        if resource.type == "model":
            files.remove_model(self.state_dir, attrs)
        elif resource.type == "environment":
            if not self.keep_images:
                self.images.remove(attrs)
        elif resource.type == "endpoint":
            ep = self._endpoint(attrs.get("name", resource.name))
            for c in self.engine.containers({"recon.state_dir": str(self.state_dir), "recon.endpoint": ep.name}):
                self.engine.remove_container(c.id, grace=STOP_GRACE)
            ep.stop_router()
            ep.remove_networks()
            ep.keys.unlink(missing_ok=True)
            shutil.rmtree(ep.run, ignore_errors=True)
        elif resource.type == "deployment":
            runner = self._runner(attrs)
            with procs.file_lock(runner.lock_path):
                live = runner.live()
                if runner.ep.table.exists():
                    runner.remove_from_router()
                    runner.ep.wait_drained(_upstreams(live), drain_timeout(attrs))
                runner.stop_all()

    def scale(self, request: ApplyRequest, count: int) -> dict[str, Any]:
        runner = self._runner(request.attributes)
        desired_digest, desired = self._desired(request, runner)
        with procs.file_lock(runner.lock_path):
            live = runner.live()
            healthy = [i for i in live if runner.is_live(i)]
            broken = [i for i in live if i not in healthy]
            if broken:
                self._retire(runner, healthy, broken, request)
            if len(healthy) < count:
                running = running_digest(healthy)
                config = runner.load_config(running) if running else None
                digest = running if running and config is not None else desired_digest
                config = config if config is not None else desired
                healthy += self._start_ready(runner, request, digest, config, count - len(healthy))
                runner.set_pool(_upstreams(healthy), router_settings(request.attributes))
            elif len(healthy) > count:
                extra = surplus(healthy, count, desired_digest)
                healthy = [i for i in healthy if i not in extra]
                self._retire(runner, healthy, extra, request)
            else:
                runner.set_pool(_upstreams(healthy), router_settings(request.attributes))
            return self._deployment_outputs(runner, healthy, desired_digest)

    def roll_batch(self, request: ApplyRequest, batch: Batch) -> dict[str, Any]:
        runner = self._runner(request.attributes)
        digest, config = self._desired(request, runner)
        declared = dict(request.attributes.get("environment_variables") or {})
        with procs.file_lock(runner.lock_path):
            live = runner.live()
            stale = [i for i in live if i.config_digest != digest or runner.check_environment(i, declared) is not None]
            current = [i for i in live if i not in stale]
            if not stale:
                runner.set_pool(_upstreams(current), router_settings(request.attributes))
                return self._deployment_outputs(runner, current, digest)
            retire, starting = batch_moves(live, stale, instance_count(request.attributes, len(live)), batch.size)
            new = self._start_ready(runner, request, digest, config, starting)
            serving = current + new + [i for i in stale if i not in retire]
            self._retire(runner, serving, retire, request)
            request.emit(f"batch {batch.index}: {len(new)} new instance(s) serving, {len(retire)} old one(s) stopped")
            return self._deployment_outputs(runner, serving, digest)

    def set_routing(
        self, request: ApplyRequest, traffic: dict[str, int], mirror_traffic: dict[str, int]
    ) -> dict[str, Any]:
        ep = self._endpoint(request.attributes["name"])

        def mutate(table: dict[str, Any]) -> None:
            table["traffic"] = normal_traffic(traffic)
            table["mirror_traffic"] = normal_traffic(mirror_traffic)
            table["limits"] = router_limits(self.settings, ep.name)

        ep.update_table(mutate)
        return self._endpoint_outputs(ep)

    # == operating ==================================================================================
    def credentials(self, endpoint: StateResource) -> Keys:
        ep = self._endpoint(endpoint.attributes.get("name", endpoint.name))
        keys = ep.read_keys()
        if keys is None:
            raise PermanentError(f"endpoint {ep.name} has no keys on this machine ({ep.keys} is missing)")
        port = ep.chosen_port() or endpoint.outputs.get("port")
        return Keys(keys["primaryKey"], keys["secondaryKey"], f"http://{self._uri_host()}:{port}/score")

    def logs(self, deployment: StateResource, instance: int | None = None, tail: int = 100) -> list[str]:
        runner = self._runner(deployment.attributes)
        found = runner.recorded()
        if instance is not None:
            return next((runner.tail(i.container, tail) for i in found if i.id == instance), [])
        lines: list[str] = []
        for inst in found:
            lines += [f"[{inst.id}] {line}" for line in runner.tail(inst.container, tail)]
        return lines[-tail:] if tail else lines

    def close(self) -> None:
        self.engine.close()

    # == environments ===============================================================================
    def _repool_deployment(self, request: ApplyRequest, prior: dict[str, Any]) -> dict[str, Any]:
        runner = self._runner(request.attributes)
        with procs.file_lock(runner.lock_path):
            live = runner.live()
            runner.set_pool(_upstreams(live), router_settings(request.attributes))
            return self._deployment_outputs(runner, live, prior.get("config_digest"))

    def _create_environment(self, request: ApplyRequest) -> dict[str, Any]:
        image = self.images.ensure(request.attributes, request.address, request.emit)
        return {"image": image.tag, "built": image.built, "warnings": []}

    # == endpoints ==================================================================================
    def _endpoint(self, name: str) -> DockerEndpoint:
        return DockerEndpoint(self.engine, self.state_dir, str(name), self.context.workspace, self.router_image,
                              self.publish_host)

    def _uri_host(self) -> str:
        return "127.0.0.1" if self.publish_host in ("0.0.0.0", "") else self.publish_host

    def _create_endpoint(self, request: ApplyRequest) -> dict[str, Any]:
        ep = self._endpoint(request.attributes["name"])
        ep.run.mkdir(parents=True, exist_ok=True)
        fresh = not ep.table.exists()
        prior_port = request.prior.outputs.get("port") if request.prior else None
        if ep.chosen_port() is None and prior_port:
            ep.portfile.write_text(f"{prior_port}\n")
        ep.ensure_keys()
        limits = router_limits(self.settings, ep.name)
        ep.update_table(lambda t: t.update(auth_mode=request.attributes.get("auth_mode") or "key", limits=limits),
                        wait=False)
        try:
            if not self.engine.image_exists(self.router_image):
                self.images._pull(self.router_image, request.address, request.emit)
            ep.start_router()
        except PermanentError:
            if fresh:
                ep.stop_router()
                ep.remove_networks()
                ep.keys.unlink(missing_ok=True)
                shutil.rmtree(ep.run, ignore_errors=True)
            raise
        request.emit(f"router container {ep.router_name} listening on {self.publish_host}:{ep.chosen_port()}")
        return self._endpoint_outputs(ep)

    def _endpoint_outputs(self, ep: DockerEndpoint) -> dict[str, Any]:
        router = ep.router() or {}
        port = ep.chosen_port()
        return {"port": port, "scoring_uri": f"http://{self._uri_host()}:{port}/score",
                "router_container": ep.router_name, "network": ep.network_name,
                "provisioning_state": "Succeeded" if router else "Failed"}

    # == deployments ================================================================================
    def _runner(self, attrs: dict[str, Any]) -> ContainerRunner:
        return ContainerRunner(self.engine, self._endpoint(str(attrs["endpoint_name"])), str(attrs["name"]))

    def _create_deployment(self, request: ApplyRequest) -> dict[str, Any]:
        runner = self._runner(request.attributes)
        digest, config = self._desired(request, runner)
        count = instance_count(request.attributes, 1)
        declared = dict(request.attributes.get("environment_variables") or {})
        runner.run.mkdir(parents=True, exist_ok=True)  # exists even with 0 instances
        with procs.file_lock(runner.lock_path):
            live = runner.live()  # left over by a crashed apply: keep what already runs as desired
            keep = [i for i in live if i.config_digest == digest and runner.check_environment(i, declared) is None]
            keep = [i for i in keep if runner.is_live(i)][:count]
            runner.stop([i for i in live if i not in keep], grace=STOP_GRACE)
            try:
                new = self._start_ready(runner, request, digest, config, count - len(keep))
            except PermanentError:
                runner.stop(keep, grace=STOP_GRACE)
                runner.remove_from_router()
                shutil.rmtree(runner.run, ignore_errors=True)
                raise
            serving = keep + new
            runner.set_pool(_upstreams(serving), router_settings(request.attributes))
            return self._deployment_outputs(runner, serving, digest)

    def _desired(self, request: ApplyRequest, runner: ContainerRunner) -> tuple[str, DockerLaunch]:
        """The desired configuration's digest and launch config (image built, files placed, saved)."""
        attrs = request.attributes
        model = request.refs.get(str(attrs.get("model") or "")) or None
        environment = request.refs.get(str(attrs.get("environment") or "")) or None
        env_attrs = environment or {"image": None, "conda": None, "build": None, "content_digest": "default"}
        image = self.images.plan(env_attrs)
        cpus, mem = self._limits(attrs, request)
        digest = digest_of({
            "code": attrs.get("code"),
            "scoring_script": attrs.get("scoring_script"),
            "model": [model.get("name"), model.get("version"), model.get("content_digest")] if model
            else attrs.get("model"),
            "image": image.tag,
            "environment_variables": attrs.get("environment_variables") or {},
            "request_settings": attrs.get("request_settings"),
            "liveness_probe": attrs.get("liveness_probe"),
            "readiness_probe": attrs.get("readiness_probe"),
            "instance_type": attrs.get("instance_type"),
            "resources": attrs.get("resources"),
            "limits": [cpus, mem],
        })
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

    def _limits(self, attrs: dict[str, Any], request: ApplyRequest) -> tuple[float | None, int | None]:
        """CPU and memory limits: ``resources`` (limits, else requests), else the instance type;
        capped at what the engine has (with a warning)."""
        res = attrs.get("resources") or {}
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
                     config: DockerLaunch, n: int) -> list[ContainerInstance]:
        """Start ``n`` containers and wait until ready; on failure remove them and raise."""
        if n <= 0:
            return []
        new = runner.start(digest, config, n)
        request.emit("starting instance(s) " + ", ".join(f"{i.id} ({i.name})" for i in new))
        failure = runner.wait_ready(new, config.readiness_probe)
        if failure is not None:
            runner.stop(new, grace=2.0)
            raise start_error(request.address, failure, what="container")
        for inst in new:
            request.emit(f"instance {inst.id} ready ({inst.name}, {inst.upstream()})")
        return new

    def _retire(self, runner: ContainerRunner, serving: list[ContainerInstance],
                retire: list[ContainerInstance], request: ApplyRequest) -> None:
        """Pool becomes ``serving``; the retired containers are drained, then stopped."""
        runner.set_pool(_upstreams(serving), router_settings(request.attributes))
        runner.ep.wait_drained(_upstreams(retire), drain_timeout(request.attributes))
        runner.stop(retire, grace=STOP_GRACE)

    def _deployment_outputs(self, runner: ContainerRunner, serving: list[ContainerInstance],
                            digest: str | None) -> dict[str, Any]:
        config = runner.load_config(digest) if digest else None
        return {
            "instances": [i.to_output() for i in sorted(serving, key=lambda i: i.id)],
            "config_digest": digest,
            "provisioning_state": "Succeeded",
            "image": config.image if config else None,
        }


def _upstreams(instances: list[ContainerInstance]) -> list[str]:
    return [i.upstream() for i in sorted(instances, key=lambda i: i.id) if i.ip]


_MEM_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
              "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


def _cpu_quantity(value: Any) -> float:
    """Kubernetes CPU quantity: ``1``, ``0.5``, ``500m``."""
    text = str(value).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError as exc:
        raise PermanentError(f"resources: cpu {value!r} is not a quantity such as 1, 0.5 or 500m") from exc


def _memory_quantity(value: Any) -> int:
    """Kubernetes memory quantity: ``512Mi``, ``1Gi``, ``1G``, ``1000000``."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGTkmgt]i?)?\s*", str(value))
    if not match:
        raise PermanentError(f"resources: memory {value!r} is not a quantity such as 512Mi or 2Gi")
    return math.ceil(float(match[1]) * _MEM_UNITS[(match[2] or "").lower()])

"""``LocalProvider``: endpoints served by processes on this machine (the control plane).

Environments are virtualenvs (``venvs``), models and code are private copies (``files``), an
endpoint is a router process with a routing table and keys (``routing``), a deployment is a set of
instance processes (``instances``). Everything recon started is found again through pid files under
``state_dir/run`` and ``/proc``; nothing relies on the CLI staying alive.

Outputs recorded per type (plain JSON, never secrets):

- environment: ``python``, ``venv`` (None for the host's python), ``warnings``
- model: ``model_dir`` (what ``AZUREML_MODEL_DIR`` is)
- endpoint: ``port``, ``scoring_uri``, ``router_pid``, ``router_start_time``, ``provisioning_state``
- deployment: ``instances`` [{id, pid, start_time, port, config_digest}], ``config_digest``,
  ``provisioning_state``, ``python``, ``log_dir``
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
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
from providers.local import files, procs
from providers.local.instances import DeploymentRunner, Instance, LaunchConfig, ready_budget
from providers.local.launchers import Launcher, LauncherError
from providers.local.routing import EndpointFiles, router_limits
from providers.local.venvs import EnvironmentBuilder
from reconciler.errors import PermanentError
from reconciler.plan import Batch
from reconciler.resources import digest_of
from reconciler.state import StateResource

STOP_GRACE = 10.0


class LocalProvider(InstanceProvider):
    """Serves online endpoints as local processes.

    Settings: ``reuse_host_packages`` (bool, default false) and ``warm_start`` (bool, default
    true: the instances one operation starts fork from a launcher that imported the deployment's
    libraries once; see ``launchers``)."""

    name: ClassVar[str] = "local"

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.state_dir = Path(context.state_dir).resolve()
        self.project_root = Path(context.project_root).resolve()
        self.builder = EnvironmentBuilder(Path(context.cache_dir).resolve(),
                                          bool(settings.get("reuse_host_packages", False)))
        self.warm_start = bool(settings.get("warm_start", True))
        router_limits(settings, "")  # a bad router_limits setting is an error before anything runs
        # (endpoint, deployment, config digest) -> the launcher kept between the batches of a rollout
        self._launchers: dict[tuple[str, str, str], Launcher] = {}
        self._launchers_lock = threading.Lock()

    def close(self) -> None:
        with self._launchers_lock:
            launchers, self._launchers = list(self._launchers.values()), {}
        for launcher in launchers:
            launcher.close()
        super().close()

    # == reading ====================================================================================
    def observe(self, resource: StateResource) -> Observation:
        attrs = resource.attributes
        if resource.type == "environment":
            if attrs.get("build"):
                return Observation(False, problems=["Docker build contexts do not run on the local provider"])
            found = self.builder.locate(attrs)
            if found is None:
                return Observation(False, problems=["its virtualenv is gone"])
            return Observation(True, outputs={**resource.outputs, "python": found.python, "venv": found.venv})
        if resource.type == "model":
            if not files.model_present(self.state_dir, attrs):
                return Observation(False, problems=[f"its folder {files.model_dir(self.state_dir, attrs)} is gone"])
            return Observation(True, outputs=resource.outputs)
        if resource.type == "endpoint":
            return self._observe_endpoint(resource)
        return self._observe_deployment(resource)

    def _observe_endpoint(self, resource: StateResource) -> Observation:
        ep = self._endpoint(resource.attributes["name"])
        if ep.router() is None or ep.status() is None:
            pid = resource.outputs.get("router_pid")
            return Observation(False, problems=[f"the router of endpoint {ep.name} (pid {pid}) is not running"])
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
        recorded = runner.recorded()
        if not recorded and not runner.inst_dir.is_dir():
            return Observation(False, problems=["no instance of it is running"])
        problems: list[str] = []
        healthy: list[Instance] = []
        answered = runner.live_map(recorded, attrs.get("liveness_probe"))
        for inst in recorded:
            if not inst.alive:
                problems.append(f"instance {inst.id} (pid {inst.pid}) is not running")
            elif not answered[inst.id]:
                problems.append(f"instance {inst.id} (pid {inst.pid}) does not answer its liveness probe")
            else:
                healthy.append(inst)
        observed: dict[str, Any] = {"instance_count": len(healthy)}
        declared = dict(attrs.get("environment_variables") or {})
        for inst in recorded:
            seen = runner.check_environment(inst, declared) if inst.alive else None
            if seen is not None:
                observed["environment_variables"] = seen
                problems.append(f"instance {inst.id} (pid {inst.pid}) runs with other environment variables")
                break
        outputs = {**resource.outputs, "instances": [i.to_output() for i in healthy]}
        return Observation(True, attributes=observed, outputs=outputs, problems=problems)

    def find_unmanaged(self, known: list[StateResource]) -> list[str]:
        owned: set[str] = set()
        owned_pids: set[int] = set()  # warm instances and launchers share a family mark: owned by pid
        for res in known:
            if res.type == "endpoint":
                owned.add(f"{str(res.attributes.get('name', res.name)).lower()}/router")
            elif res.type == "deployment":
                runner = self._runner(res.attributes)
                recorded = [i for i in res.outputs.get("instances") or [] if "id" in i]
                owned |= {runner.mark(int(i["id"])) for i in recorded}
                owned_pids |= {int(i["pid"]) for i in recorded if i.get("pid")}
                stopping = runner.stopping()  # SIGTERM'd, still exiting
                owned |= {runner.mark(i.id) for i in stopping}
                owned_pids |= {i.pid for i in stopping} | runner.launcher_pids()
        found = []
        for pid, env in procs.marked_processes():
            if env.get(procs.MARK_STATE_DIR) != str(self.state_dir):
                continue
            mark = env.get(procs.MARK_ID, "")
            if mark not in owned and pid not in owned_pids:
                role = env.get(procs.MARK_ROLE, "process")
                found.append(f"{role} {mark} (pid {pid}) runs but no recorded resource owns it")
        return found

    def capacity(self) -> Capacity:
        memory_gb: float | None = None
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    memory_gb = round(int(line.split()[1]) / 1024 / 1024, 2)
        except OSError:
            pass
        cpus = os.cpu_count()
        return Capacity(cpus=float(cpus) if cpus else None, memory_gb=memory_gb,
                        description=f"this machine: {cpus} CPUs, {memory_gb} GB memory")

    # == changing ===================================================================================
    def delete(self, resource: StateResource) -> None:
        attrs = resource.attributes
        if resource.type == "model":
            files.remove_model(self.state_dir, attrs)
        elif resource.type == "endpoint":
            ep = self._endpoint(attrs.get("name", resource.name))
            if ep.run.is_dir():
                for child in ep.run.iterdir():
                    if child.is_dir():
                        DeploymentRunner(self.state_dir, ep.name, child.name).stop_all()
            ep.stop_router()
            self._stop_marked(f"{ep.name}/")
            ep.keys.unlink(missing_ok=True)
            shutil.rmtree(ep.run, ignore_errors=True)
        elif resource.type == "deployment":
            runner = self._runner(attrs)
            with procs.file_lock(runner.lock_path):
                ep = self._endpoint(runner.endpoint)
                live = runner.live()
                if ep.table.exists():
                    runner.remove_from_router(ep)
                    ep.wait_drained(_upstreams(live), drain_timeout(attrs))
                runner.stop_all()
        # Environments are virtualenvs in a cache shared by projects: kept for reuse.

    def scale(self, request: ApplyRequest, count: int) -> dict[str, Any]:
        runner = self._runner(request.attributes)
        ep = self._endpoint(runner.endpoint)
        desired_digest, desired = self._desired(request, runner)
        with procs.file_lock(runner.lock_path):
            live = runner.live()
            answered = runner.live_map(live, request.attributes.get("liveness_probe"))
            healthy = [i for i in live if answered[i.id]]
            broken = [i for i in live if i not in healthy]
            if broken:
                self._retire(runner, ep, healthy, broken, request)
            if len(healthy) < count:
                running = running_digest(healthy)
                config = runner.load_config(running) if running else None
                digest = running if running and config is not None else desired_digest
                config = config if config is not None else desired
                new = self._start_ready(runner, request, digest, config, count - len(healthy))
                healthy += new
                runner.set_pool(ep, _upstreams(healthy), router_settings(request.attributes))
            elif len(healthy) > count:
                extra = surplus(healthy, count, desired_digest)
                healthy = [i for i in healthy if i not in extra]
                self._retire(runner, ep, healthy, extra, request)
            else:
                runner.set_pool(ep, _upstreams(healthy), router_settings(request.attributes))
            return self._deployment_outputs(runner, healthy, desired_digest)

    def roll_batch(self, request: ApplyRequest, batch: Batch) -> dict[str, Any]:
        runner = self._runner(request.attributes)
        ep = self._endpoint(runner.endpoint)
        digest, config = self._desired(request, runner)
        declared = dict(request.attributes.get("environment_variables") or {})
        with procs.file_lock(runner.lock_path):
            live = runner.live()
            stale = [i for i in live
                     if i.config_digest != digest or runner.check_environment(i, declared) is not None]
            current = self._settle(runner, [i for i in live if i not in stale], config)
            if not stale:
                runner.set_pool(ep, _upstreams(current), router_settings(request.attributes))
                runner.reap_stopping(wait=True)
                return self._deployment_outputs(runner, current, digest)
            retire, starting = batch_moves(live, stale, instance_count(request.attributes, len(live)), batch.size)
            # the launcher serves the next batches too; the last batch closes it
            new = self._start_ready(runner, request, digest, config, starting,
                                    keep_launcher=len(stale) > len(retire))
            serving = current + new + [i for i in stale if i not in retire]
            # The drained old instances get SIGTERM and the batch moves on: they exit while the next
            # batch starts (reaped there); after the last batch, wait until every one is gone.
            self._retire(runner, ep, serving, retire, request, wait=False)
            if not any(i in stale for i in serving):
                runner.reap_stopping(wait=True)
            request.emit(f"batch {batch.index}: {len(new)} new instance(s) serving, "
                         f"{len(retire)} old one(s) stopped")
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
        return Keys(keys["primaryKey"], keys["secondaryKey"], f"http://127.0.0.1:{port}/score")

    def logs(self, deployment: StateResource, instance: int | None = None, tail: int = 100) -> list[str]:
        runner = self._runner(deployment.attributes)
        if instance is not None:
            return runner.tail(instance, tail)
        ids = [i.id for i in runner.recorded()] or sorted(
            int(p.stem) for p in runner.log_dir.glob("*.log") if p.stem.isdigit()
        )
        lines: list[str] = []
        for instance_id in ids:
            lines += [f"[{instance_id}] {line}" for line in runner.tail(instance_id, tail)]
        return lines

    # == environments ===============================================================================
    def _repool_deployment(self, request: ApplyRequest, prior: dict[str, Any]) -> dict[str, Any]:
        runner = self._runner(request.attributes)
        with procs.file_lock(runner.lock_path):
            live = runner.live()
            runner.set_pool(self._endpoint(runner.endpoint), _upstreams(live), router_settings(request.attributes))
            return self._deployment_outputs(runner, live, prior.get("config_digest"))

    def _create_environment(self, request: ApplyRequest) -> dict[str, Any]:
        env = self.builder.ensure(request.attributes, request.address, request.emit)
        for warning in env.warnings:
            request.emit(f"warning: {warning}")
        return {"python": env.python, "venv": env.venv, "warnings": list(env.warnings)}

    # == endpoints ==================================================================================
    def _endpoint(self, name: str) -> EndpointFiles:
        return EndpointFiles(self.state_dir, str(name), self.context.workspace)

    def _create_endpoint(self, request: ApplyRequest) -> dict[str, Any]:
        ep = self._endpoint(request.attributes["name"])
        ep.run.mkdir(parents=True, exist_ok=True)
        fresh = not ep.table.exists()
        prior_port = (request.prior.outputs.get("port") if request.prior else None)
        if ep.chosen_port() is None and prior_port:
            ep.portfile.write_text(f"{prior_port}\n")
        ep.ensure_keys()
        limits = router_limits(self.settings, ep.name)
        ep.update_table(lambda t: t.update(auth_mode=request.attributes.get("auth_mode") or "key", limits=limits),
                        wait=False)
        marks = {procs.MARK_ID: f"{ep.name}/router", procs.MARK_STATE_DIR: str(self.state_dir),
                 procs.MARK_WORKSPACE: self.context.workspace, procs.MARK_ROLE: "router"}
        try:
            ep.start_router(marks)
        except PermanentError:
            if fresh:
                ep.keys.unlink(missing_ok=True)
                shutil.rmtree(ep.run, ignore_errors=True)
            raise
        request.emit(f"router listening on 127.0.0.1:{ep.chosen_port()}")
        return self._endpoint_outputs(ep)

    def _endpoint_outputs(self, ep: EndpointFiles) -> dict[str, Any]:
        router = ep.router() or {}
        port = ep.chosen_port() or router.get("port")
        return {"port": port, "scoring_uri": f"http://127.0.0.1:{port}/score",
                "router_pid": router.get("pid"), "router_start_time": router.get("start_time"),
                "provisioning_state": "Succeeded" if router else "Failed"}

    # == deployments ================================================================================
    def _runner(self, attrs: dict[str, Any]) -> DeploymentRunner:
        return DeploymentRunner(self.state_dir, str(attrs["endpoint_name"]), str(attrs["name"]),
                                self.context.workspace)

    def _create_deployment(self, request: ApplyRequest) -> dict[str, Any]:
        runner = self._runner(request.attributes)
        ep = self._endpoint(runner.endpoint)
        digest, config = self._desired(request, runner)
        count = instance_count(request.attributes, 1)
        declared = dict(request.attributes.get("environment_variables") or {})
        runner.inst_dir.mkdir(parents=True, exist_ok=True)  # exists even with 0 instances
        with procs.file_lock(runner.lock_path):
            live = runner.live()  # left over by a crashed apply: keep what already runs as desired
            keep = [i for i in live if i.config_digest == digest and runner.check_environment(i, declared) is None]
            keep = keep[:count]
            runner.stop([i for i in live if i not in keep], grace=STOP_GRACE)
            keep = self._settle(runner, keep, config)
            try:
                new = self._start_ready(runner, request, digest, config, count - len(keep))
            except PermanentError:
                runner.stop(keep, grace=STOP_GRACE)
                runner.remove_from_router(ep)
                shutil.rmtree(runner.run, ignore_errors=True)
                raise
            serving = keep + new
            runner.set_pool(ep, _upstreams(serving), router_settings(request.attributes))
            return self._deployment_outputs(runner, serving, digest)

    def _desired(self, request: ApplyRequest, runner: DeploymentRunner) -> tuple[str, LaunchConfig]:
        """The desired configuration's digest and launch config (built and saved)."""
        attrs = request.attributes
        model = request.refs.get(str(attrs.get("model") or "")) or None
        environment = request.refs.get(str(attrs.get("environment") or "")) or None
        digest = digest_of({
            "code": attrs.get("code"),
            "scoring_script": attrs.get("scoring_script"),
            "model": [model.get("name"), model.get("version"), model.get("content_digest")] if model
            else attrs.get("model"),
            "environment": environment.get("content_digest") if environment else attrs.get("environment"),
            "environment_variables": attrs.get("environment_variables") or {},
            "request_settings": attrs.get("request_settings"),
            "liveness_probe": attrs.get("liveness_probe"),
            "readiness_probe": attrs.get("readiness_probe"),
            "instance_type": attrs.get("instance_type"),
            "reuse_host_packages": self.builder.reuse_host_packages,
        })
        existing = runner.load_config(digest)
        if existing is not None and Path(existing.python).exists() and Path(existing.cwd).is_dir():
            return digest, existing
        if environment is not None:
            python_env = self.builder.locate(environment) or self.builder.ensure(
                environment, str(attrs.get("environment")), request.emit)
            python, isolated = python_env.python, python_env.venv is not None
        else:
            if attrs.get("environment"):
                request.emit(f"warning: environment {attrs['environment']} is not "
                             "available locally; instances run on the host's Python")
            python, isolated = sys.executable, False
        if model is not None:
            model_dir = files.place_model(self.state_dir, self.project_root, model, str(attrs.get("model")))
        else:
            model_dir = self.state_dir / "models" / "_none"
            model_dir.mkdir(parents=True, exist_ok=True)
        snapshot = files.snapshot_code(self.state_dir, self.project_root, attrs.get("code"), request.address)
        script = str(attrs.get("scoring_script") or "score.py")
        settings = attrs.get("request_settings") or {}
        config = LaunchConfig(
            python=python, entry_script=str(snapshot / script), cwd=str(snapshot), model_dir=str(model_dir),
            environment_variables={str(k): str(v) for k, v in (attrs.get("environment_variables") or {}).items()},
            worker_count=int(settings.get("max_concurrent_requests_per_instance") or 1),
            readiness_probe=dict(attrs.get("readiness_probe") or {}),
            liveness_probe=dict(attrs.get("liveness_probe") or {}), isolated=isolated,
        )
        runner.save_config(digest, config)
        return digest, config

    def _start_ready(self, runner: DeploymentRunner, request: ApplyRequest, digest: str,
                     config: LaunchConfig, n: int, keep_launcher: bool = False) -> list[Instance]:
        """Start ``n`` instances and wait until ready; on failure stop them and raise.

        Warm (forked by the configuration's launcher) when more than one instance starts or the
        next batches will want the launcher (``keep_launcher``), unless ``warm_start`` is off or
        the launcher cannot start; the launcher is closed afterwards unless ``keep_launcher``."""
        if n <= 0:
            return []
        kept = False
        # one instance and no later batch: a new launcher would only add its own start to the cold one
        launcher = self._launcher(runner, request, digest, config, create=n > 1 or keep_launcher)
        try:
            new = runner.start(digest, config, n, launcher)
            if runner.warm_failure:
                request.emit(f"warm start failed ({runner.warm_failure}); the rest start cold")
            request.emit("starting instance(s) " + ", ".join(str(i.id) for i in new))
            failure = runner.wait_ready(new, config.readiness_probe)
            kept = keep_launcher and failure is None and not runner.warm_failure
        finally:
            if not kept:
                self._close_launcher(runner, digest)
        if failure is not None:
            runner.stop(new, grace=2.0)
            raise start_error(request.address, failure)
        for inst in new:
            request.emit(f"instance {inst.id} ready (pid {inst.pid}, port {inst.port})")
        return new

    def _launcher(self, runner: DeploymentRunner, request: ApplyRequest, digest: str,
                  config: LaunchConfig, create: bool = True) -> Launcher | None:
        """The running launcher of this configuration, or (with ``create``) a new one; None for
        cold starts."""
        if not self.warm_start:
            return None
        key = (runner.endpoint, runner.name, digest)
        with self._launchers_lock:
            launcher = self._launchers.get(key)
        if launcher is not None and launcher.alive():
            return launcher
        if launcher is not None:  # it died: forget it
            self._close_launcher(runner, digest)
        if not create:
            return None
        try:
            launcher = runner.launcher(digest, config, ready_budget(config.readiness_probe))
        except LauncherError as ex:
            request.emit(f"warm start unavailable ({ex}); instances start cold")
            return None
        with self._launchers_lock:
            self._launchers[key] = launcher
        skipped = f" (not importable: {', '.join(launcher.failed[:5])})" if launcher.failed else ""
        request.emit(f"launcher pid {launcher.pid}: {launcher.preloaded} library modules imported in "
                     f"{launcher.import_seconds:.1f}s{skipped}; instances fork from it")
        return launcher

    def _close_launcher(self, runner: DeploymentRunner, digest: str) -> None:
        with self._launchers_lock:
            launcher = self._launchers.pop((runner.endpoint, runner.name, digest), None)
        if launcher is not None:
            launcher.close()

    def _settle(self, runner: DeploymentRunner, instances: list[Instance], config: LaunchConfig) -> list[Instance]:
        """Instances a crashed apply left starting: wait until ready; stop those that never are."""
        starting = [i for i in instances if i.port is None]
        if not starting:
            return instances
        ready: list[Instance] = []
        for inst in starting:
            if runner.wait_ready([inst], config.readiness_probe) is None:
                ready.append(inst)
            else:
                runner.stop([inst], grace=2.0)
        return [i for i in instances if i.port is not None or i in ready]

    def _retire(self, runner: DeploymentRunner, ep: EndpointFiles, serving: list[Instance],
                retire: list[Instance], request: ApplyRequest, wait: bool = True) -> None:
        """Pool becomes ``serving``; the retired instances are drained, then stopped (without
        ``wait``: SIGTERM'd and left to exit, see ``DeploymentRunner.begin_stop``)."""
        runner.set_pool(ep, _upstreams(serving), router_settings(request.attributes))
        ep.wait_drained(_upstreams(retire), drain_timeout(request.attributes))
        if wait:
            runner.stop(retire, grace=STOP_GRACE)
        else:
            runner.begin_stop(retire, grace=STOP_GRACE)

    def _deployment_outputs(self, runner: DeploymentRunner, serving: list[Instance],
                            digest: str | None) -> dict[str, Any]:
        config = runner.load_config(digest) if digest else None
        return {
            "instances": [i.to_output() for i in sorted(serving, key=lambda i: i.id)],
            "config_digest": digest,
            "provisioning_state": "Succeeded",
            "python": config.python if config else None,
            "log_dir": str(runner.log_dir),
        }

    def _stop_marked(self, prefix: str) -> None:
        for pid, env in procs.marked_processes():
            if env.get(procs.MARK_STATE_DIR) == str(self.state_dir) and env.get(procs.MARK_ID, "").startswith(prefix):
                procs.stop(pid, procs.start_time(pid), grace=5.0)


def _upstreams(instances: list[Instance]) -> list[str]:
    return [i.upstream() for i in sorted(instances, key=lambda i: i.id) if i.port]

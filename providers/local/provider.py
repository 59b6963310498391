"""``LocalProvider``: endpoints served by processes on this machine (the control plane).

Environments are virtualenvs (``venvs``), models and code are private copies (``providers.shared.files``), an
endpoint is a router process with a routing table and keys (``endpoint``, over ``providers.shared.endpoint_files``), a deployment is a set of
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
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from providers.local.endpoint import LocalEndpoint
from providers.local.instances import DeploymentRunner, Instance, LaunchConfig
from providers.local.venvs import EnvironmentBuilder
from providers.local.warm_starts import Launcher, LauncherError
from providers.shared import files, procs
from providers.shared.observing import endpoint_observation
from providers.shared.probes import ready_budget
from providers.shared.rolling import STOP_GRACE, config_digest, start_error
from providers.shared.scaling import InstanceProvider
from providers.shared.warm import ready_line
from reconciler.model.crashpoints import crash_point
from reconciler.model.resources import DeploymentAttrs, as_deployment, as_environment
from reconciler.plan.provider import ApplyRequest, Capacity, Observation, ProviderContext
from reconciler.state.document import StateResource


class LocalProvider(InstanceProvider):
    """Serves online endpoints as local processes.

    Settings: ``reuse_host_packages`` (bool, default false) and ``warm_start`` (bool, default
    true: the instances one operation starts fork from a launcher that imported the deployment's
    libraries once; see ``warm_starts``)."""

    name: ClassVar[str] = "local"

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.builder = EnvironmentBuilder(Path(context.cache_dir).resolve(),
                                          bool(settings.get("reuse_host_packages", False)),
                                          log_dir=Path(context.state_dir).resolve() / "logs")
        self.warm_start = bool(settings.get("warm_start", True))
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
    def _observe_environment(self, resource: StateResource) -> Observation:
        attrs = as_environment(resource.attributes)
        if attrs.get("build"):
            return Observation(False, problems=["Docker build contexts do not run on the local provider"])
        found = self.builder.locate(attrs)
        if found is None:
            return Observation(False, problems=["its virtualenv is gone"])
        return Observation(True, outputs={**resource.outputs, "python": found.python, "venv": found.venv})

    def _observe_endpoint(self, resource: StateResource) -> Observation:
        ep = self._endpoint(resource.attributes["name"])
        live = ep.status() if ep.router() is not None else None
        if live is None:
            pid = resource.outputs.get("router_pid")
            return Observation(False, problems=[f"the router of endpoint {ep.name} (pid {pid}) is not running"])
        return endpoint_observation(ep, resource, self._endpoint_outputs(ep), live)

    def find_unmanaged(self, known: list[StateResource]) -> list[str]:
        """Processes of this project's state folder that belong to no recorded endpoint or
        deployment. Those of a recorded deployment that it does not count are its own business:
        its observation reports them (unsettled) and the next operation on it adopts or stops them."""
        routers: set[str] = set()
        deployments: set[str] = set()
        for res in known:
            if res.type == "endpoint":
                routers.add(f"{str(res.attributes.get('name', res.name)).lower()}/router")
            elif res.type == "deployment":
                runner = self._runner(as_deployment(res.attributes))
                deployments.add(f"{runner.endpoint}/{runner.name}/")
        found = []
        for pid, env in procs.marked_processes():
            if env.get(procs.MARK_STATE_DIR) != str(self.state_dir):
                continue
            mark = env.get(procs.MARK_ID, "")
            if mark not in routers and not any(mark.startswith(prefix) for prefix in deployments):
                role = env.get(procs.MARK_ROLE, "process")
                found.append(f"{role} {mark} (pid {pid}) runs but no recorded resource owns it")
        return found

    def _strays(self, runner: DeploymentRunner, found: list[Instance]) -> list[str]:
        """Processes with the deployment's marks that no pid file names (a crash between spawn and
        record), and stopped instances still running past their grace period."""
        out: list[str] = []
        now = time.time()
        stopping = runner.stopping()
        for inst in stopping:
            if inst.alive and (inst.kill_after or 0.0) < now:
                out.append(f"{inst.label} was stopped and still runs past its grace period")
        known = ({i.pid for i in found if i.alive} | {i.pid for i in stopping if i.alive}
                 | runner.launcher_pids(prune=False))
        for pid in runner.marked_pids():
            if pid not in known:
                out.append(f"a process with its marks (pid {pid}) runs that no pid file records "
                           "(left by an interrupted apply)")
        return out

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
    def _stop_endpoint_instances(self, ep: LocalEndpoint) -> None:
        if ep.run.is_dir():
            for child in ep.run.iterdir():
                if child.is_dir():
                    DeploymentRunner(self.state_dir, ep.name, child.name).stop_all()
        self._stop_marked(f"{ep.name}/")

    # == operating ==================================================================================
    def logs(self, deployment: StateResource, instance: int | None = None, tail: int = 100) -> list[str]:
        runner = self._runner(as_deployment(deployment.attributes))
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
    def _create_environment(self, request: ApplyRequest) -> dict[str, Any]:
        env = self.builder.ensure(as_environment(request.asset), request.address, request.emit, request.status)
        for warning in env.warnings:
            request.emit(f"warning: {warning}")
        return {"python": env.python, "venv": env.venv, "warnings": list(env.warnings)}

    # == endpoints ==================================================================================
    def _endpoint(self, name: str) -> LocalEndpoint:
        return LocalEndpoint(self.state_dir, str(name), self.context.workspace)

    def _start_router(self, ep: LocalEndpoint, request: ApplyRequest) -> str:
        marks = {procs.MARK_ID: f"{ep.name}/router", procs.MARK_STATE_DIR: str(self.state_dir),
                 procs.MARK_WORKSPACE: self.context.workspace, procs.MARK_ROLE: "router"}
        ep.start_router(marks)
        return f"listening on 127.0.0.1:{ep.chosen_port()}"

    def _endpoint_outputs(self, ep: LocalEndpoint) -> dict[str, Any]:
        router = ep.router() or {}
        port = ep.chosen_port() or router.get("port")
        return {"port": port, "scoring_uri": f"http://127.0.0.1:{port}/score",
                "router_pid": router.get("pid"), "router_start_time": router.get("start_time"),
                "provisioning_state": "Succeeded" if router else "Failed"}

    # == deployments ================================================================================
    def _runner(self, attrs: DeploymentAttrs) -> DeploymentRunner:
        return DeploymentRunner(self.state_dir, str(attrs["endpoint_name"]), str(attrs["name"]),
                                self.context.workspace)

    def _desired(self, request: ApplyRequest, runner: DeploymentRunner) -> tuple[str, LaunchConfig]:
        """The desired configuration's digest and launch config (built and saved)."""
        attrs, model, environment = request.deployment, request.model, request.environment
        digest = config_digest(attrs, model, environment=environment.get("content_digest") if environment else attrs.get("environment"), reuse_host_packages=self.builder.reuse_host_packages)
        existing = runner.load_config(digest)
        if existing is not None and Path(existing.python).exists() and Path(existing.cwd).is_dir():
            return digest, existing
        if environment is not None:
            python_env = self.builder.locate(environment) or self.builder.ensure(
                environment, str(attrs.get("environment")), request.emit, request.status)
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
            crash_point("instances.started", request.address)
            if runner.warm_failure:
                request.emit(f"warm start failed ({runner.warm_failure}); the rest start cold")
            ids = ", ".join(str(i.id) for i in new)
            request.emit(f"starting instance(s) {ids}")
            request.status(f"waiting for instance(s) {ids} to pass the readiness probe")
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
        crash_point("instances.ready", request.address)  # ready, not yet in the router's pool
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
        request.emit(ready_line(f"launcher pid {launcher.pid}", launcher.preloaded, launcher.import_seconds,
                                launcher.failed))
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

    def _healthy(self, runner: DeploymentRunner, live: list[Instance],
                 probe: Mapping[str, Any] | None) -> list[Instance]:
        answered = runner.live_map(live, probe)
        return [i for i in live if answered[i.id]]

    def _endpoint_of(self, runner: DeploymentRunner) -> LocalEndpoint:
        return self._endpoint(runner.endpoint)

    def _rollout_done(self, runner: DeploymentRunner) -> None:
        runner.reap_stopping(wait=True)

    def _stop(self, runner: DeploymentRunner, instances: list[Instance], wait: bool) -> None:
        """Without ``wait``: SIGTERM'd and left to exit, see ``DeploymentRunner.begin_stop``."""
        if wait:
            runner.stop(instances, grace=STOP_GRACE)
        else:
            runner.begin_stop(instances, grace=STOP_GRACE)

    def _config_outputs(self, runner: DeploymentRunner, config: LaunchConfig | None) -> dict[str, Any]:
        return {"python": config.python if config else None, "log_dir": str(runner.log_dir)}

    def _stop_marked(self, prefix: str) -> None:
        for pid, env in procs.marked_processes():
            if env.get(procs.MARK_STATE_DIR) == str(self.state_dir) and env.get(procs.MARK_ID, "").startswith(prefix):
                procs.stop(pid, procs.start_time(pid), grace=5.0)

"""The instances of one deployment as containers: started, found by label, probed, stopped.

Each instance is one container ``recon-<endpoint>-<deployment>-<n>-<h>`` on the endpoint's internal
network, running ``python /opt/recon/host.py --entry_script /var/azureml-app/<code>/<script>
--host 0.0.0.0 --port 5001``. Labels (``recon.state_dir``, ``recon.endpoint``,
``recon.deployment``, ``recon.instance``, ``recon.config_digest``) are how instances are found
again: a container recreated by hand with the same labels is the instance now (and its settings are
compared with the recorded ones). Launch configs are kept per digest under
``run/<endpoint>/<deployment>/configs`` (as on the local provider), so scaling clones what runs.

Readiness: the host binds only after ``init()`` and then logs ``ready: listening on``; the host
machine cannot reach instances (internal network), so readiness is read from the container's state
and log. The deployment's probes also become the container's Docker health check (liveness).

Warm starts (``pods``): instances may instead be processes forked in a pod container of their
configuration (``warm_pods.WarmPods``: found through the pod and its roster, ready once a port file
exists, stopped through the pod's launcher). What a container is given: ``launches``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from providers.docker import pods
from providers.docker.endpoint import DockerEndpoint, project_hash
from providers.docker.engine import Engine, mapped
from providers.docker.launches import (
    APP_ROOT,
    HOST_IN_IMAGE,
    INSTANCE_PORT,
    POLL,
    READY_MARK,
    WARM_POLL,
    ContainerInstance,
    DockerLaunch,
    code_mount_for,
    container_env,
    environment,
    fname,
    python_argv,
)
from providers.docker.warm_pods import WarmPods
from providers.shared import probes, procs
from providers.shared.probes import StartFailure, probe_settings
from providers.shared.rolling import next_instance_ids


class ContainerRunner:
    """Starts, finds and stops the instance containers of ``endpoint/deployment``."""

    def __init__(self, engine: Engine, ep: DockerEndpoint, name: str, record_modules: bool = False) -> None:
        self.engine = engine
        self.record_modules = record_modules  # cold containers write warm/modules.json (warm starts on)
        self.ep = ep
        self.endpoint = ep.name
        self.name = name.lower()
        self.state_dir = ep.state_dir
        self.run = self.state_dir / "run" / self.endpoint / self.name
        self.cfg_dir = self.run / "configs"
        self.warm_dir = self.run / "warm"
        self.warm_failure: str | None = None  # why the last start() could not fork warm instances
        self.lock_path = self.state_dir / "run" / self.endpoint / f".{self.name}.lock"
        self.hash = project_hash(self.state_dir)
        self.pods = WarmPods(engine, ep, self.name, self.warm_dir, self.hash, self.containers, self.load_config)

    def exists(self) -> bool:
        """Whether the deployment was ever started here (its folder is there)."""
        return self.run.is_dir()

    def prepare(self) -> None:
        """The deployment's folder (it exists even with 0 instances)."""
        self.run.mkdir(parents=True, exist_ok=True)

    def labels(self) -> dict[str, str]:
        return {**self.ep.labels("instance"), "recon.deployment": self.name}

    def container_name(self, instance_id: int) -> str:
        return f"recon-{self.endpoint}-{self.name}-{instance_id}-{self.hash}"

    # -- configs ---------------------------------------------------------------------------------
    def save_config(self, digest: str, config: DockerLaunch) -> None:
        procs.write_json(self.cfg_dir / f"{fname(digest)}.json", config.to_json())

    def load_config(self, digest: str) -> DockerLaunch | None:
        data = procs.read_json(self.cfg_dir / f"{fname(digest)}.json")
        return DockerLaunch.from_json(data) if isinstance(data, dict) else None

    # -- finding ---------------------------------------------------------------------------------
    def containers(self) -> list[Any]:
        """Every container of this deployment: instances and pods, running or not."""
        return self.engine.containers({"recon.state_dir": str(self.state_dir), "recon.endpoint": self.endpoint,
                                       "recon.deployment": self.name})

    def recorded(self, found: list[Any] | None = None) -> list[ContainerInstance]:
        """Every instance of this deployment, running or not, by instance number: each container
        with its labels, and each instance a pod's roster lists (not those it is stopping)."""
        out = []
        for c in self.containers() if found is None else found:
            labels = c.labels or {}
            role = labels.get("recon.role")
            if role == "pod":
                out += self.pods.instances(c)
                continue
            if role != "instance" or not str(labels.get("recon.instance", "")).isdigit():
                continue
            state = c.attrs.get("State") or {}
            out.append(ContainerInstance(int(labels["recon.instance"]), c.id, c.name,
                                         str(labels.get("recon.config_digest", "")), c.status,
                                         (state.get("Health") or {}).get("Status"), container_env(c), self.ep.internal_ip(c)))
        return sorted(out, key=lambda i: (i.id, i.container))

    def live(self) -> list[ContainerInstance]:
        """Running instances; stopped containers of this deployment are removed, and so are pods
        that are not running or hold no instance (an interrupted start left them), with their
        folders."""
        found = self.containers()
        for c in found:
            if (c.labels or {}).get("recon.role") == "pod" and (
                    c.status != "running" or not pods.read_roster(self.warm_dir / c.name)):
                self.pods.remove(c.id)
        self.pods.prune_folders({c.name for c in found if c.status == "running"})
        alive = []
        for inst in self.recorded(found):
            if inst.alive:
                alive.append(inst)
            elif inst.pod is None:
                self.engine.remove_container(inst.container, grace=1.0)
        return alive

    def is_live(self, inst: ContainerInstance) -> bool:
        return inst.alive and inst.health != "unhealthy" and inst.ip is not None

    def check_environment(self, inst: ContainerInstance, declared: dict[str, str]) -> dict[str, str] | None:
        """The declared variables as the container has them, when they differ from ``declared``."""
        keys = set(declared)
        config = self.load_config(inst.config_digest)
        if config is not None:
            keys |= set(config.environment_variables)
        seen = {k: inst.env[k] for k in sorted(keys) if k in inst.env}
        return None if seen == declared else seen

    # -- starting --------------------------------------------------------------------------------
    def _next_ids(self, n: int) -> list[int]:
        return next_instance_ids(self.run, n, [i.id for i in self.recorded()])

    def start(self, digest: str, config: DockerLaunch, n: int, pod: pods.Pod | None = None) -> list[ContainerInstance]:
        """Start ``n`` instances of ``config`` (not yet ready, not in the pool): forked in ``pod``
        when given, else each its own container. When the pod fails, the rest start cold and
        ``warm_failure`` says why."""
        ids = self._next_ids(n)
        self.warm_failure = None
        started: list[ContainerInstance] = []
        while pod is not None and ids:
            try:
                started.append(self.pods.fork_one(pod, ids[0], digest, config))
                ids.pop(0)
            except pods.LauncherError as ex:
                self.warm_failure, pod = str(ex), None
        with ThreadPoolExecutor(max_workers=4) as pool:
            return started + list(pool.map(lambda i: self._start_one(i, digest, config), ids))

    def _volumes(self, config: DockerLaunch, warm: bool) -> dict[str, dict[str, str]]:
        volumes = {config.code_dir: {"bind": config.code_mount, "mode": "ro"}}
        if config.model_dir and config.model_mount:
            volumes[config.model_dir] = {"bind": config.model_mount, "mode": "ro"}
        if not config.host_inside:
            from providers.shared.runtime import HOST_FILES

            inside = HOST_IN_IMAGE.rsplit("/", 1)[0]  # host.py and the file it imports, in one folder
            volumes.update({str(path): {"bind": f"{inside}/{path.name}", "mode": "ro"} for path in HOST_FILES})
        if warm:
            self.warm_dir.mkdir(parents=True, exist_ok=True)
            self.warm_dir.chmod(0o700)  # pods' control sockets are in it: this user's (and root's) only
            volumes[str(self.warm_dir)] = {"bind": pods.WARM_MOUNT, "mode": "rw"}
        return volumes

    def start_pod(self, digest: str, config: DockerLaunch, nano_cpus: int | None, mem_bytes: int | None,
                  timeout: float) -> pods.Pod:
        """A pod of ``config`` with the deployment's volumes (``WarmPods.start``)."""
        return self.pods.start(digest, config, self._volumes(config, warm=True), nano_cpus, mem_bytes, timeout)

    def _start_one(self, instance_id: int, digest: str, config: DockerLaunch) -> ContainerInstance:
        name = self.container_name(instance_id)
        self.engine.remove_container(name, grace=1.0)  # a leftover of a crashed apply
        labels = {**self.labels(), "recon.instance": str(instance_id), "recon.config_digest": digest}
        env = environment(config)
        volumes = self._volumes(config, warm=self.record_modules)
        args = ["--entry_script", config.entry_script, "--host", "0.0.0.0", "--port", str(INSTANCE_PORT),
                "--worker_count", str(config.worker_count)]
        if self.record_modules:
            args += ["--modules-file", f"{pods.WARM_MOUNT}/modules.json"]
        entrypoint, command = python_argv(config), [HOST_IN_IMAGE, *args]
        with mapped(f"start instance {instance_id} of {self.endpoint}/{self.name}"):
            container = self.engine.client.containers.run(
                config.image, command=command, entrypoint=entrypoint, name=name, labels=labels,
                environment=env, volumes=volumes, working_dir=config.code_mount, network=self.ep.network_name,
                healthcheck=_healthcheck(config.liveness_probe), nano_cpus=config.nano_cpus,
                mem_limit=config.mem_bytes, detach=True, stop_signal="SIGTERM",
            )
        return ContainerInstance(instance_id, container.id, name, digest, "created", None, env)

    def wait_ready(self, pending: list[ContainerInstance], probe: Mapping[str, Any] | None) -> StartFailure | None:
        """Poll until every container is running and its host listens; the first failure otherwise."""

        checked: dict[int, float] = {}

        def poll(inst: ContainerInstance) -> bool | str:
            if inst.pod is not None:
                return self.pods.poll(inst, checked)
            c = self.engine.container(inst.container)
            if c is None or c.status in ("exited", "dead"):
                return f"instance {inst.id} ({inst.name}) exited while starting"
            if c.status == "running" and READY_MARK in self._logs(c, 40):
                inst.status, inst.ip = "running", self.ep.internal_ip(c)
                return inst.ip is not None
            return False

        interval = POLL if any(i.pod is None for i in pending) else WARM_POLL
        return probes.wait_ready(pending, probe, poll, lambda inst: self.tail_instance(inst), interval)

    def _logs(self, container: Any, tail: int) -> str:
        with mapped(f"logs of {container.name}"):
            return bytes(container.logs(tail=tail)).decode(errors="replace")

    # -- stopping --------------------------------------------------------------------------------
    def stop(self, instances: list[ContainerInstance], grace: float = 10.0, wait: bool = True) -> None:
        """SIGTERM (the host finishes what it has), SIGKILL after ``grace``, then remove. Forked
        instances are stopped by their pod's launcher (which SIGKILLs them after ``grace`` even if
        this process dies); with ``wait`` this returns once they are gone, and removes a pod left
        without instances."""
        cold = [i for i in instances if i.pod is None]
        by_pod: dict[str, list[ContainerInstance]] = {}
        for inst in instances:
            if inst.pod is not None:
                by_pod.setdefault(inst.pod, []).append(inst)
        for pod, group in by_pod.items():
            pods.stop_in_pod(self.engine, pod, self.warm_dir / pod, [i.id for i in group],
                             [i.pid for i in group if i.pid], grace)
        if cold:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda i: self.engine.remove_container(i.container, grace=grace), cold))
        if wait and by_pod:
            self.pods.wait_stopped(set(by_pod), grace + 5.0)

    def stop_all(self) -> None:
        """Every container of the deployment (instances and pods) removed, and its folder."""
        found = self.containers()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda c: self.engine.remove_container(c.id, grace=10.0), found))
        shutil.rmtree(self.run, ignore_errors=True)

    def tail(self, name_or_id: str, lines: int = 30) -> list[str]:
        c = self.engine.container(name_or_id)
        return self._logs(c, lines).splitlines() if c is not None else []

    def tail_instance(self, inst: ContainerInstance, lines: int = 30) -> list[str]:
        """The last lines of an instance's log: its container's, or its log file in its pod's folder."""
        if inst.pod is None:
            return self.tail(inst.container, lines)
        try:
            text = (self.warm_dir / inst.pod / f"{inst.id}.log").read_bytes()[-256 * 1024:]
        except OSError:
            return []
        out = text.decode(errors="replace").splitlines()
        return out[-lines:] if lines else out

    # -- pool ------------------------------------------------------------------------------------


def _healthcheck(probe: Mapping[str, Any] | None) -> dict[str, Any]:
    s = probe_settings(probe)
    timeout = max(1.0, s["timeout"])
    code = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{INSTANCE_PORT}/', "
            f"timeout={timeout:g})")
    return {"test": ["CMD-SHELL", f'"$(command -v python || command -v python3)" -c "{code}" || exit 1'],
            "interval": int(max(1.0, s["period"]) * 1e9), "timeout": int((timeout + 1) * 1e9),
            "retries": max(1, int(s["failure_threshold"])), "start_period": int(s["initial_delay"] * 1e9)}


__all__ = ["APP_ROOT", "ContainerInstance", "ContainerRunner", "DockerLaunch", "code_mount_for"]

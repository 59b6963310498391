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
configuration. Such an instance is found through its pod (label ``recon.role=pod``) and the pod's
roster; it is ready once its port file exists, and it is stopped through the pod's launcher.
"""

from __future__ import annotations

import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.docker import pods
from providers.docker.endpoint import DockerEndpoint, project_hash
from providers.docker.engine import Engine, mapped
from providers.shared import probes, procs
from providers.shared.probes import StartFailure, probe_settings
from providers.shared.rolling import next_instance_ids

INSTANCE_PORT = 5001
HOST_IN_IMAGE = "/opt/recon/host.py"
APP_ROOT = "/var/azureml-app"
READY_MARK = "ready: listening on"
POLL = 0.1
WARM_POLL = 0.02  # a forked instance's readiness is a file on the host: cheap to look at often


@dataclass
class DockerLaunch:
    """How the containers of one configuration start."""

    image: str
    host_inside: bool  # the image has /opt/recon/host.py and `python`; else the host is mounted
    code_dir: str  # host path of the code snapshot
    code_mount: str  # where it is in the container
    entry_script: str  # container path
    model_dir: str | None
    model_mount: str | None
    environment_variables: dict[str, str]
    worker_count: int = 1
    readiness_probe: dict[str, Any] = field(default_factory=dict)
    liveness_probe: dict[str, Any] = field(default_factory=dict)
    nano_cpus: int | None = None
    mem_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DockerLaunch:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class ContainerInstance:
    """One instance container as found on the engine."""

    id: int
    container: str
    name: str
    config_digest: str
    status: str
    health: str | None
    env: dict[str, str]
    ip: str | None = None
    port: int | None = INSTANCE_PORT  # a warm instance's: None until it listens
    pod: str | None = None  # the pod container it lives in (warm starts); None: its own container
    pid: int | None = None  # its pid in the pod

    @property
    def alive(self) -> bool:
        return self.status == "running"

    @property
    def label(self) -> str:
        if self.pod:
            return f"instance {self.id} (pid {self.pid} in pod {self.pod})"
        return f"instance {self.id} (container {self.name})"

    @property
    def down_reason(self) -> str:
        return f"is {self.status}"

    def upstream(self) -> str | None:
        """The router's address of this container (None until it has one on the internal network)."""
        return f"{self.ip}:{self.port}" if self.ip and self.port else None

    def to_output(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "container": self.container[:12], "name": self.name, "ip": self.ip,
                               "config_digest": self.config_digest}
        if self.pod:
            out.update(pod=self.pod, port=self.port, pid=self.pid)
        return out


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

    def pod_name(self, digest: str) -> str:
        """A new pod's name: its configuration and a random part (several pods of one
        configuration may live at once: one per operation that started instances)."""
        return f"recon-{self.endpoint}-{self.name}-pod-{_fname(digest)[:8]}{secrets.token_hex(2)}-{self.hash}"

    # -- configs ---------------------------------------------------------------------------------
    def save_config(self, digest: str, config: DockerLaunch) -> None:
        procs.write_json(self.cfg_dir / f"{_fname(digest)}.json", config.to_json())

    def load_config(self, digest: str) -> DockerLaunch | None:
        data = procs.read_json(self.cfg_dir / f"{_fname(digest)}.json")
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
                out += self._pod_instances(c)
                continue
            if role != "instance" or not str(labels.get("recon.instance", "")).isdigit():
                continue
            state = c.attrs.get("State") or {}
            out.append(ContainerInstance(int(labels["recon.instance"]), c.id, c.name,
                                         str(labels.get("recon.config_digest", "")), c.status,
                                         (state.get("Health") or {}).get("Status"), _env(c), self.ep.internal_ip(c)))
        return sorted(out, key=lambda i: (i.id, i.container))

    def _pod_instances(self, c: Any) -> list[ContainerInstance]:
        folder = self.warm_dir / c.name
        digest = str((c.labels or {}).get("recon.config_digest", ""))
        env, ip = _env(c), self.ep.internal_ip(c)
        out = []
        health = procs.read_json(folder / "health.json")  # the pod's health check: failures in a row
        failures = health if isinstance(health, dict) else {}
        for entry in pods.read_roster(folder) if c.status == "running" else []:
            if entry.get("stopping"):
                continue
            n = int(entry["id"])
            failed = failures.get(str(n))
            status = None if not isinstance(failed, int) else (
                "unhealthy" if failed >= self._failure_threshold(digest) else "healthy")
            out.append(ContainerInstance(n, c.id, f"{c.name}/{n}", digest, c.status, status, env, ip,
                                         port=procs.read_port(folder / f"{n}.port"), pod=c.name,
                                         pid=int(entry.get("pid") or 0)))
        return out

    def _failure_threshold(self, digest: str) -> int:
        config = self.load_config(digest)
        return int(probe_settings(config.liveness_probe if config else None)["failure_threshold"])

    def live(self) -> list[ContainerInstance]:
        """Running instances; stopped containers of this deployment are removed, and so are pods
        that are not running or hold no instance (an interrupted start left them), with their
        folders."""
        found = self.containers()
        for c in found:
            if (c.labels or {}).get("recon.role") == "pod" and (
                    c.status != "running" or not pods.read_roster(self.warm_dir / c.name)):
                self.remove_pod(c.id)
        self._prune_pod_folders({c.name for c in found if c.status == "running"})
        alive = []
        for inst in self.recorded(found):
            if inst.alive:
                alive.append(inst)
            elif inst.pod is None:
                self.engine.remove_container(inst.container, grace=1.0)
        return alive

    def _prune_pod_folders(self, running: set[str]) -> None:
        if not self.warm_dir.is_dir():
            return
        for folder in self.warm_dir.iterdir():
            if folder.is_dir() and folder.name not in running:
                shutil.rmtree(folder, ignore_errors=True)

    def empty_pods(self) -> list[str]:
        """Running pods of this deployment with no instance (left by an interrupted start)."""
        return [c.name for c in self.containers() if (c.labels or {}).get("recon.role") == "pod"
                and c.status == "running" and not pods.read_roster(self.warm_dir / c.name)]

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
                started.append(self._fork_one(pod, ids[0], digest, config))
                ids.pop(0)
            except pods.LauncherError as ex:
                self.warm_failure, pod = str(ex), None
        with ThreadPoolExecutor(max_workers=4) as pool:
            return started + list(pool.map(lambda i: self._start_one(i, digest, config), ids))

    def _fork_one(self, pod: pods.Pod, instance_id: int, digest: str, config: DockerLaunch) -> ContainerInstance:
        inside = f"{pods.WARM_MOUNT}/{pod.name}"
        args = ["--entry_script", config.entry_script, "--host", "0.0.0.0", "--port", "0",
                "--port-file", f"{inside}/{instance_id}.port", "--worker_count", str(config.worker_count),
                "--modules-file", f"{pods.WARM_MOUNT}/modules.json"]
        pid = pod.fork(instance_id, args, digest)
        return ContainerInstance(instance_id, pod.container_id, f"{pod.name}/{instance_id}", digest, "running",
                                 None, self.environment(config), pod.ip, port=None, pod=pod.name, pid=pid)

    def environment(self, config: DockerLaunch) -> dict[str, str]:
        return {**config.environment_variables, "AZUREML_MODEL_DIR": config.model_mount or "",
                "AML_APP_ROOT": config.code_mount, "AZUREML_ENTRY_SCRIPT": config.entry_script,
                "WORKER_COUNT": str(config.worker_count), "PYTHONUNBUFFERED": "1"}

    def _volumes(self, config: DockerLaunch, warm: bool) -> dict[str, dict[str, str]]:
        volumes = {config.code_dir: {"bind": config.code_mount, "mode": "ro"}}
        if config.model_dir and config.model_mount:
            volumes[config.model_dir] = {"bind": config.model_mount, "mode": "ro"}
        if not config.host_inside:
            from providers.shared.runtime import HOST_SCRIPT

            volumes[str(HOST_SCRIPT)] = {"bind": HOST_IN_IMAGE, "mode": "ro"}
        if warm:
            self.warm_dir.mkdir(parents=True, exist_ok=True)
            self.warm_dir.chmod(0o700)  # pods' control sockets are in it: this user's (and root's) only
            volumes[str(self.warm_dir)] = {"bind": pods.WARM_MOUNT, "mode": "rw"}
        return volumes

    @staticmethod
    def _python(config: DockerLaunch) -> list[str]:
        if config.host_inside:
            return ["python"]
        return ["/bin/sh", "-c", 'exec "$(command -v python || command -v python3)" "$@"', "sh"]

    def start_pod(self, digest: str, config: DockerLaunch, nano_cpus: int | None, mem_bytes: int | None,
                  timeout: float) -> pods.Pod:
        """A pod of ``config`` whose launcher has imported and listens (``LauncherError`` when it
        does not come up: it is removed, and the instances start cold)."""
        name = self.pod_name(digest)
        folder = self.warm_dir / name
        self.engine.remove_container(name, grace=1.0)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        labels = {**self.ep.labels("pod"), "recon.deployment": self.name, "recon.config_digest": digest,
                  "recon.pod": name}
        volumes = {**self._volumes(config, warm=True), **pods.launcher_volume()}
        try:
            with mapped(f"start pod {name} of {self.endpoint}/{self.name}"):
                container = self.engine.client.containers.run(
                    config.image, command=pods.launcher_command(name, pods.FIRST_WAIT),
                    entrypoint=self._python(config), name=name, labels=labels, environment=self.environment(config),
                    volumes=volumes, working_dir=config.code_mount, network=self.ep.network_name,
                    healthcheck=_pod_healthcheck(config.liveness_probe, f"{pods.WARM_MOUNT}/{name}"),
                    nano_cpus=nano_cpus, mem_limit=mem_bytes, detach=True, stop_signal="SIGTERM",
                    auto_remove=True,
                )
                container.reload()
            ip = self.ep.internal_ip(container)
            if ip is None:
                raise pods.LauncherError(f"pod {name} has no address on {self.ep.network_name}")
            return pods.wait_for_pod(self.engine, name, container, folder, ip, timeout)
        except Exception as ex:
            self.engine.remove_container(name, grace=1.0)
            if isinstance(ex, pods.LauncherError):
                raise
            raise pods.LauncherError(str(ex)) from ex

    def _start_one(self, instance_id: int, digest: str, config: DockerLaunch) -> ContainerInstance:
        name = self.container_name(instance_id)
        self.engine.remove_container(name, grace=1.0)  # a leftover of a crashed apply
        labels = {**self.labels(), "recon.instance": str(instance_id), "recon.config_digest": digest}
        env = self.environment(config)
        volumes = self._volumes(config, warm=self.record_modules)
        args = ["--entry_script", config.entry_script, "--host", "0.0.0.0", "--port", str(INSTANCE_PORT),
                "--worker_count", str(config.worker_count)]
        if self.record_modules:
            args += ["--modules-file", f"{pods.WARM_MOUNT}/modules.json"]
        entrypoint, command = self._python(config), [HOST_IN_IMAGE, *args]
        with mapped(f"start instance {instance_id} of {self.endpoint}/{self.name}"):
            container = self.engine.client.containers.run(
                config.image, command=command, entrypoint=entrypoint, name=name, labels=labels,
                environment=env, volumes=volumes, working_dir=config.code_mount, network=self.ep.network_name,
                healthcheck=_healthcheck(config.liveness_probe), nano_cpus=config.nano_cpus,
                mem_limit=config.mem_bytes, detach=True, stop_signal="SIGTERM",
            )
        return ContainerInstance(instance_id, container.id, name, digest, "created", None, env)

    def wait_ready(self, pending: list[ContainerInstance], probe: dict[str, Any] | None) -> StartFailure | None:
        """Poll until every container is running and its host listens; the first failure otherwise."""

        checked: dict[int, float] = {}

        def poll(inst: ContainerInstance) -> bool | str:
            if inst.pod is not None:
                return self._poll_warm(inst, checked)
            c = self.engine.container(inst.container)
            if c is None or c.status in ("exited", "dead"):
                return f"instance {inst.id} ({inst.name}) exited while starting"
            if c.status == "running" and READY_MARK in self._logs(c, 40):
                inst.status, inst.ip = "running", self.ep.internal_ip(c)
                return inst.ip is not None
            return False

        interval = POLL if any(i.pod is None for i in pending) else WARM_POLL
        return probes.wait_ready(pending, probe, poll, lambda inst: self.tail_instance(inst), interval)

    def _poll_warm(self, inst: ContainerInstance, checked: dict[int, float]) -> bool | str:
        """A forked instance is ready once its port file is there (read on the host: no engine
        call), and gone when its pod's roster no longer lists it (the pod is inspected each second)."""
        folder = self.warm_dir / str(inst.pod)
        port = procs.read_port(folder / f"{inst.id}.port")
        if port is not None:
            inst.port = port
            return True
        if not any(e["id"] == inst.id and not e.get("stopping") for e in pods.read_roster(folder)):
            return f"instance {inst.id} (in pod {inst.pod}) exited while starting"
        if time.monotonic() - checked.get(inst.id, 0.0) > 1.0:
            checked[inst.id] = time.monotonic()
            c = self.engine.container(inst.container)
            if c is None or c.status != "running":
                return f"pod {inst.pod} of instance {inst.id} is gone"
        return False

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
            self.wait_pods_stopped(set(by_pod), grace + 5.0)

    def wait_pods_stopped(self, names: set[str] | None = None, timeout: float = 15.0) -> None:
        """Wait until the pods ``names`` (default: all of the deployment's) stop nothing any more;
        a pod left with no instance is removed."""
        deadline = time.monotonic() + timeout
        listed = 0.0
        waiting: dict[str, Any] | None = None  # pod name -> its container (None once the engine no longer lists it)
        while True:
            if waiting is None or time.monotonic() - listed > 1.0:  # the engine once a second; rosters are files
                listed = time.monotonic()
                current = {c.name: c for c in self.containers() if (c.labels or {}).get("recon.role") == "pod"
                           and (names is None or c.name in names)}
                waiting = current if waiting is None else {name: current.get(name) for name in waiting}
            for name, c in list(waiting.items()):
                running = c is not None and c.status == "running"
                roster = pods.read_roster(self.warm_dir / name) if running else []
                if any(e.get("stopping") for e in roster) and time.monotonic() < deadline:
                    continue
                if c is not None and not [e for e in roster if not e.get("stopping")]:
                    self.remove_pod(c.id)
                del waiting[name]
            if not waiting:
                return
            time.sleep(WARM_POLL)

    def remove_pod(self, container_id: str, timeout: float = 10.0) -> None:
        """Remove a pod and wait until the engine no longer lists it (a pod whose launcher ended is
        being removed by the engine already, which ``remove_container`` does not wait for)."""
        self.engine.remove_container(container_id, grace=1.0)
        deadline = time.monotonic() + timeout
        while self.engine.container(container_id) is not None and time.monotonic() < deadline:
            time.sleep(WARM_POLL)

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


def _env(container: Any) -> dict[str, str]:
    return dict(e.split("=", 1) for e in (container.attrs.get("Config") or {}).get("Env") or [] if "=" in e)


def _healthcheck(probe: dict[str, Any] | None) -> dict[str, Any]:
    s = probe_settings(probe)
    timeout = max(1.0, s["timeout"])
    code = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{INSTANCE_PORT}/', "
            f"timeout={timeout:g})")
    return {"test": ["CMD-SHELL", f'"$(command -v python || command -v python3)" -c "{code}" || exit 1'],
            "interval": int(max(1.0, s["period"]) * 1e9), "timeout": int((timeout + 1) * 1e9),
            "retries": max(1, int(s["failure_threshold"])), "start_period": int(s["initial_delay"] * 1e9)}


def _pod_healthcheck(probe: dict[str, Any] | None, folder: str) -> dict[str, Any]:
    """The pod's Docker health check: each probe period, ``launcher.py --probe`` GETs every
    instance of the pod and counts its failures in a row in the pod's ``health.json`` (the pod
    itself stays healthy: an instance is unhealthy when its count reaches the failure threshold)."""
    s = probe_settings(probe)
    timeout = max(1.0, s["timeout"])
    command = (f'"$(command -v python || command -v python3)" {pods.LAUNCHER_IN_IMAGE} --probe {folder} '
               f"--probe-timeout {timeout:g}")
    return {"test": ["CMD-SHELL", command], "interval": int(max(1.0, s["period"]) * 1e9),
            "timeout": int((timeout + 5) * 1e9), "retries": 1, "start_period": int(s["initial_delay"] * 1e9)}


def _fname(digest: str) -> str:
    return digest.removeprefix("sha256:")[:40]


def code_mount_for(code: dict[str, Any] | None) -> str:
    if not code or not code.get("path"):
        return f"{APP_ROOT}/code"
    base = Path(str(code["path"]).rstrip("/")).name or "code"
    return f"{APP_ROOT}/{base}"

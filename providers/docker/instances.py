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
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.docker.endpoint import DockerEndpoint, project_hash
from providers.docker.engine import Engine, mapped
from providers.shared import probes, procs
from providers.shared.probes import StartFailure, probe_settings
from providers.shared.scaling import next_instance_ids

INSTANCE_PORT = 5001
HOST_IN_IMAGE = "/opt/recon/host.py"
APP_ROOT = "/var/azureml-app"
READY_MARK = "ready: listening on"
POLL = 0.1


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

    @property
    def alive(self) -> bool:
        return self.status == "running"

    @property
    def label(self) -> str:
        return f"instance {self.id} (container {self.name})"

    @property
    def down_reason(self) -> str:
        return f"is {self.status}"

    def upstream(self) -> str | None:
        """The router's address of this container (None until it has one on the internal network)."""
        return f"{self.ip}:{INSTANCE_PORT}" if self.ip else None

    def to_output(self) -> dict[str, Any]:
        return {"id": self.id, "container": self.container[:12], "name": self.name, "ip": self.ip,
                "config_digest": self.config_digest}


class ContainerRunner:
    """Starts, finds and stops the instance containers of ``endpoint/deployment``."""

    def __init__(self, engine: Engine, ep: DockerEndpoint, name: str) -> None:
        self.engine = engine
        self.ep = ep
        self.endpoint = ep.name
        self.name = name.lower()
        self.state_dir = ep.state_dir
        self.run = self.state_dir / "run" / self.endpoint / self.name
        self.cfg_dir = self.run / "configs"
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

    # -- configs ---------------------------------------------------------------------------------
    def save_config(self, digest: str, config: DockerLaunch) -> None:
        procs.write_json(self.cfg_dir / f"{_fname(digest)}.json", config.to_json())

    def load_config(self, digest: str) -> DockerLaunch | None:
        data = procs.read_json(self.cfg_dir / f"{_fname(digest)}.json")
        return DockerLaunch.from_json(data) if isinstance(data, dict) else None

    # -- finding ---------------------------------------------------------------------------------
    def recorded(self) -> list[ContainerInstance]:
        """Every container with this deployment's labels, running or not, by instance number."""
        found = []
        for c in self.engine.containers({"recon.state_dir": str(self.state_dir), "recon.endpoint": self.endpoint,
                                         "recon.deployment": self.name, "recon.role": "instance"}):
            labels = c.labels or {}
            if not str(labels.get("recon.instance", "")).isdigit():
                continue
            state = c.attrs.get("State") or {}
            env = dict(e.split("=", 1) for e in (c.attrs.get("Config") or {}).get("Env") or [] if "=" in e)
            found.append(ContainerInstance(int(labels["recon.instance"]), c.id, c.name,
                                           str(labels.get("recon.config_digest", "")), c.status,
                                           (state.get("Health") or {}).get("Status"), env, self.ep.internal_ip(c)))
        return sorted(found, key=lambda i: (i.id, i.container))

    def live(self) -> list[ContainerInstance]:
        """Running instances; stopped containers of this deployment are removed."""
        alive = []
        for inst in self.recorded():
            if inst.alive:
                alive.append(inst)
            else:
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

    def start(self, digest: str, config: DockerLaunch, n: int) -> list[ContainerInstance]:
        """Create and start ``n`` containers of ``config`` (not yet ready, not in the pool)."""
        ids = self._next_ids(n)
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda i: self._start_one(i, digest, config), ids))

    def _start_one(self, instance_id: int, digest: str, config: DockerLaunch) -> ContainerInstance:
        name = self.container_name(instance_id)
        self.engine.remove_container(name, grace=1.0)  # a leftover of a crashed apply
        labels = {**self.labels(), "recon.instance": str(instance_id), "recon.config_digest": digest}
        env = {**config.environment_variables, "AZUREML_MODEL_DIR": config.model_mount or "",
               "AML_APP_ROOT": config.code_mount, "AZUREML_ENTRY_SCRIPT": config.entry_script,
               "WORKER_COUNT": str(config.worker_count), "PYTHONUNBUFFERED": "1"}
        volumes = {config.code_dir: {"bind": config.code_mount, "mode": "ro"}}
        if config.model_dir and config.model_mount:
            volumes[config.model_dir] = {"bind": config.model_mount, "mode": "ro"}
        args = ["--entry_script", config.entry_script, "--host", "0.0.0.0", "--port", str(INSTANCE_PORT),
                "--worker_count", str(config.worker_count)]
        if config.host_inside:
            entrypoint, command = ["python"], [HOST_IN_IMAGE, *args]
        else:
            from providers.shared.runtime import HOST_SCRIPT

            volumes[str(HOST_SCRIPT)] = {"bind": HOST_IN_IMAGE, "mode": "ro"}
            entrypoint = ["/bin/sh", "-c", 'exec "$(command -v python || command -v python3)" "$@"', "sh"]
            command = [HOST_IN_IMAGE, *args]
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

        def poll(inst: ContainerInstance) -> bool | str:
            c = self.engine.container(inst.container)
            if c is None or c.status in ("exited", "dead"):
                return f"instance {inst.id} ({inst.name}) exited while starting"
            if c.status == "running" and READY_MARK in self._logs(c, 40):
                inst.status, inst.ip = "running", self.ep.internal_ip(c)
                return inst.ip is not None
            return False

        return probes.wait_ready(pending, probe, poll, lambda inst: self.tail(inst.name), POLL)

    def _logs(self, container: Any, tail: int) -> str:
        with mapped(f"logs of {container.name}"):
            return bytes(container.logs(tail=tail)).decode(errors="replace")

    # -- stopping --------------------------------------------------------------------------------
    def stop(self, instances: list[ContainerInstance], grace: float = 10.0) -> None:
        """SIGTERM (the host finishes what it has), SIGKILL after ``grace``, then remove."""
        if not instances:
            return
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: self.engine.remove_container(i.container, grace=grace), instances))

    def stop_all(self) -> None:
        self.stop(self.recorded(), grace=10.0)
        import shutil

        shutil.rmtree(self.run, ignore_errors=True)

    def tail(self, name_or_id: str, lines: int = 30) -> list[str]:
        c = self.engine.container(name_or_id)
        return self._logs(c, lines).splitlines() if c is not None else []

    # -- pool ------------------------------------------------------------------------------------


def _healthcheck(probe: dict[str, Any] | None) -> dict[str, Any]:
    s = probe_settings(probe)
    timeout = max(1.0, s["timeout"])
    code = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{INSTANCE_PORT}/', "
            f"timeout={timeout:g})")
    return {"test": ["CMD-SHELL", f'"$(command -v python || command -v python3)" -c "{code}" || exit 1'],
            "interval": int(max(1.0, s["period"]) * 1e9), "timeout": int((timeout + 1) * 1e9),
            "retries": max(1, int(s["failure_threshold"])), "start_period": int(s["initial_delay"] * 1e9)}


def _fname(digest: str) -> str:
    return digest.removeprefix("sha256:")[:40]


def code_mount_for(code: dict[str, Any] | None) -> str:
    if not code or not code.get("path"):
        return f"{APP_ROOT}/code"
    base = Path(str(code["path"]).rstrip("/")).name or "code"
    return f"{APP_ROOT}/{base}"

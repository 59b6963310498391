"""What the Docker provider's instance containers are: how one configuration starts (``DockerLaunch``),
one instance as found on the engine (``ContainerInstance``), and what every container of a
deployment is given (its environment, its Python, where its code is mounted)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.model.resources import CodeRef

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


def container_env(container: Any) -> dict[str, str]:
    return dict(e.split("=", 1) for e in (container.attrs.get("Config") or {}).get("Env") or [] if "=" in e)


def environment(config: DockerLaunch) -> dict[str, str]:
    return {**config.environment_variables, "AZUREML_MODEL_DIR": config.model_mount or "",
            "AML_APP_ROOT": config.code_mount, "AZUREML_ENTRY_SCRIPT": config.entry_script,
            "WORKER_COUNT": str(config.worker_count), "PYTHONUNBUFFERED": "1"}


def python_argv(config: DockerLaunch) -> list[str]:
    if config.host_inside:
        return ["python"]
    return ["/bin/sh", "-c", 'exec "$(command -v python || command -v python3)" "$@"', "sh"]


def fname(digest: str) -> str:
    return digest.removeprefix("sha256:")[:40]


def code_mount_for(code: CodeRef | None) -> str:
    if not code or not code.get("path"):
        return f"{APP_ROOT}/code"
    base = Path(str(code["path"]).rstrip("/")).name or "code"
    return f"{APP_ROOT}/{base}"

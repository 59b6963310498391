"""Warm starts on Docker: the pod containers of one deployment, each holding a launcher that has
imported the deployment's libraries and forks instances (``providers/docker/pods.py`` speaks to
the launcher; this module starts, finds, polls and removes the pods).

A forked instance is found through its pod (label ``recon.role=pod``) and the pod's roster; it is
ready once its port file exists in the pod's folder, and it is stopped through the pod's launcher.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from providers.docker import pods
from providers.docker.endpoint import DockerEndpoint
from providers.docker.engine import Engine, mapped
from providers.docker.launches import (
    WARM_POLL,
    ContainerInstance,
    DockerLaunch,
    container_env,
    environment,
    fname,
    python_argv,
)
from providers.shared import procs
from providers.shared.probes import probe_settings


class WarmPods:
    """The pods of ``endpoint/deployment``: ``warm_dir/<pod>`` holds each one's roster, ports and logs."""

    def __init__(self, engine: Engine, ep: DockerEndpoint, deployment: str, warm_dir: Path, project_hash: str,
                 containers: Callable[[], list[Any]], load_config: Callable[[str], DockerLaunch | None]) -> None:
        self.engine = engine
        self.ep = ep
        self.deployment = deployment
        self.warm_dir = warm_dir
        self.hash = project_hash
        self.containers = containers  # every container of the deployment (instances and pods)
        self.load_config = load_config

    def name_for(self, digest: str) -> str:
        """A new pod's name: its configuration and a random part (several pods of one
        configuration may live at once: one per operation that started instances)."""
        return f"recon-{self.ep.name}-{self.deployment}-pod-{fname(digest)[:8]}{secrets.token_hex(2)}-{self.hash}"

    def instances(self, c: Any) -> list[ContainerInstance]:
        folder = self.warm_dir / c.name
        digest = str((c.labels or {}).get("recon.config_digest", ""))
        env, ip = container_env(c), self.ep.internal_ip(c)
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

    def prune_folders(self, running: set[str]) -> None:
        if not self.warm_dir.is_dir():
            return
        for folder in self.warm_dir.iterdir():
            if folder.is_dir() and folder.name not in running:
                shutil.rmtree(folder, ignore_errors=True)

    def empty(self) -> list[str]:
        """Running pods of this deployment with no instance (left by an interrupted start)."""
        return [c.name for c in self.containers() if (c.labels or {}).get("recon.role") == "pod"
                and c.status == "running" and not pods.read_roster(self.warm_dir / c.name)]

    def fork_one(self, pod: pods.Pod, instance_id: int, digest: str, config: DockerLaunch) -> ContainerInstance:
        inside = f"{pods.WARM_MOUNT}/{pod.name}"
        args = ["--entry_script", config.entry_script, "--host", "0.0.0.0", "--port", "0",
                "--port-file", f"{inside}/{instance_id}.port", "--worker_count", str(config.worker_count),
                "--modules-file", f"{pods.WARM_MOUNT}/modules.json"]
        pid = pod.fork(instance_id, args, digest)
        return ContainerInstance(instance_id, pod.container_id, f"{pod.name}/{instance_id}", digest, "running",
                                 None, environment(config), pod.ip, port=None, pod=pod.name, pid=pid)

    def start(self, digest: str, config: DockerLaunch, volumes: dict[str, dict[str, str]], nano_cpus: int | None,
              mem_bytes: int | None, timeout: float) -> pods.Pod:
        """A pod of ``config`` whose launcher has imported and listens (``LauncherError`` when it
        does not come up: it is removed, and the instances start cold)."""
        name = self.name_for(digest)
        folder = self.warm_dir / name
        self.engine.remove_container(name, grace=1.0)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        labels = {**self.ep.labels("pod"), "recon.deployment": self.deployment, "recon.config_digest": digest,
                  "recon.pod": name}
        volumes = {**volumes, **pods.launcher_volume()}
        try:
            with mapped(f"start pod {name} of {self.ep.name}/{self.deployment}"):
                container = self.engine.client.containers.run(
                    config.image, command=pods.launcher_command(name, pods.FIRST_WAIT),
                    entrypoint=python_argv(config), name=name, labels=labels, environment=environment(config),
                    volumes=volumes, working_dir=config.code_mount, network=self.ep.network_name,
                    healthcheck=pod_healthcheck(config.liveness_probe, f"{pods.WARM_MOUNT}/{name}"),
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

    def poll(self, inst: ContainerInstance, checked: dict[int, float]) -> bool | str:
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

    def wait_stopped(self, names: set[str] | None = None, timeout: float = 15.0) -> None:
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
                    self.remove(c.id)
                del waiting[name]
            if not waiting:
                return
            time.sleep(WARM_POLL)

    def remove(self, container_id: str, timeout: float = 10.0) -> None:
        """Remove a pod and wait until the engine no longer lists it (a pod whose launcher ended is
        being removed by the engine already, which ``remove_container`` does not wait for)."""
        self.engine.remove_container(container_id, grace=1.0)
        deadline = time.monotonic() + timeout
        while self.engine.container(container_id) is not None and time.monotonic() < deadline:
            time.sleep(WARM_POLL)


def pod_healthcheck(probe: Mapping[str, Any] | None, folder: str) -> dict[str, Any]:
    """The pod's Docker health check: each probe period, ``launcher.py --probe`` GETs every
    instance of the pod and counts its failures in a row in the pod's ``health.json`` (the pod
    itself stays healthy: an instance is unhealthy when its count reaches the failure threshold)."""
    s = probe_settings(probe)
    timeout = max(1.0, s["timeout"])
    command = (f'"$(command -v python || command -v python3)" {pods.LAUNCHER_IN_IMAGE} --probe {folder} '
               f"--probe-timeout {timeout:g}")
    return {"test": ["CMD-SHELL", command], "interval": int(max(1.0, s["period"]) * 1e9),
            "timeout": int((timeout + 5) * 1e9), "retries": 1, "start_period": int(s["initial_delay"] * 1e9)}

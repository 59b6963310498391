"""An endpoint on Docker: two networks and one router container.

- ``recon-<endpoint>-<h>``: the endpoint's own network, ``internal`` and with no address on the
  host's side of the bridge (``inhibit_ipv4``): instances live there, unreachable from the host and
  from the outside world; only the router (also attached) reaches them.
- ``recon-<endpoint>-<h>-pub``: a normal bridge network used only for the router's published port,
  ``127.0.0.1:<port>`` (``publish_host`` setting), chosen once and kept in ``run/<endpoint>/port``.
- the router container runs the router program (``run/<endpoint>/router.pyz``, the zip archive of
  providers/shared/runtime/router/) with the image's ``python3``, and the httptools package recon runs
  with, mounted read-only on its ``PYTHONPATH`` (a compiled module: the image's python must be the same
  minor version as recon's, on glibc); the routing table folder (with the archive) and the keys folder
  of the project's ``.recon`` are mounted read-only at the same paths, so the table written by the
  control plane is the one it reads.
  Reload: ``docker kill -s HUP``, then a wait until ``GET /-/router`` shows the new version.

``<h>`` is a short hash of the project's state folder: two projects may use the same endpoint name.
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path
from typing import Any

from providers.docker.engine import Engine, mapped
from providers.shared.endpoint_files import EndpointFiles
from providers.shared.runtime import router_digest, router_zipapp
from reconciler.model.crashpoints import crash_point
from reconciler.model.errors import PermanentError

ROUTER_PORT = 8080
ROUTER_START_TIMEOUT = 30.0
SITE_MOUNT = "/opt/recon/site"


def httptools_dir() -> Path:
    """The httptools package the router parses HTTP with (a dependency of recon)."""
    import httptools  # type: ignore[import-untyped,unused-ignore]

    return Path(httptools.__file__).resolve().parent


def project_hash(state_dir: Path) -> str:
    return hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class DockerEndpoint(EndpointFiles):
    """The table and keys of ``EndpointFiles``, served by a router container."""

    def __init__(self, engine: Engine, state_dir: Path, name: str, workspace: str, image: str,
                 publish_host: str = "127.0.0.1") -> None:
        super().__init__(state_dir, name, workspace)
        self.engine = engine
        self.image = image
        self.publish_host = publish_host
        h = project_hash(state_dir)
        self.network_name = f"recon-{self.name}-{h}"
        self.public_network = f"recon-{self.name}-{h}-pub"
        self.router_name = f"recon-{self.name}-router-{h}"

    # -- labels ----------------------------------------------------------------------------------
    def labels(self, role: str) -> dict[str, str]:
        return {"recon.managed": "true", "recon.workspace": self.workspace, "recon.state_dir": str(self.state_dir),
                "recon.endpoint": self.name, "recon.role": role}

    def router_digest(self, port: int) -> str:
        """What the router container must run: a change means it is replaced."""
        h = hashlib.sha256()
        for part in (self.image, str(port), self.publish_host, str(self.table), str(self.keys)):
            h.update(part.encode() + b"\0")
        h.update(router_digest().encode())
        h.update(str(httptools_dir()).encode())
        return h.hexdigest()[:16]

    # -- networks --------------------------------------------------------------------------------
    def ensure_networks(self) -> None:
        for name, internal in ((self.network_name, True), (self.public_network, False)):
            if self.engine.network(name) is not None:
                continue
            options = {"com.docker.network.bridge.inhibit_ipv4": "true"} if internal else {}
            with mapped(f"create network {name}"):
                self.engine.client.networks.create(name, driver="bridge", internal=internal, options=options,
                                                   labels=self.labels("network"), check_duplicate=True)

    def remove_networks(self) -> None:
        for name in (self.network_name, self.public_network):
            net = self.engine.network(name)
            if net is None:
                continue
            with mapped(f"remove network {name}"):
                try:
                    net.reload()
                    for cid in list((net.attrs.get("Containers") or {}).keys()):
                        self.engine.remove_container(cid, grace=5.0)
                    net.remove()
                except Exception as exc:
                    if "not found" not in str(exc).lower() and "No such" not in str(exc):
                        raise

    # -- router container ------------------------------------------------------------------------
    def router(self) -> dict[str, Any] | None:
        """The router container (running, and running what it should) as a small dict."""
        if self.router_problem() is not None:
            return None
        return {"name": self.router_name, "port": self.chosen_port()}

    def router_problem(self) -> str | None:
        """Why the router is not what recon runs (None when it is)."""
        container = self.engine.container(self.router_name)
        if container is None:
            return f"the router container {self.router_name} of endpoint {self.name} is gone"
        if container.status != "running":
            return f"the router container {self.router_name} of endpoint {self.name} is {container.status}"
        port = self.chosen_port()
        if port is None or (container.labels or {}).get("recon.router_digest") != self.router_digest(port):
            return f"the router container {self.router_name} of endpoint {self.name} runs other settings"
        published = ((container.attrs.get("HostConfig") or {}).get("PortBindings") or {}).get(f"{ROUTER_PORT}/tcp")
        if not published or str(published[0].get("HostPort")) != str(port):
            return (f"the router container {self.router_name} of endpoint {self.name} does not publish "
                    f"{self.publish_host}:{port}")
        return None

    def status(self, timeout: float = 2.0) -> dict[str, Any] | None:
        port = self.chosen_port()
        if port is None:
            return None
        # no instance key on docker: the endpoint's key or a token, as the auth mode of its table says
        return self.read_status(port, self.status_tokens(), timeout)

    def metrics_address(self) -> tuple[int, str | None] | None:
        port = self.chosen_port()
        if port is None:
            return None
        # the router's own URLs need the endpoint's key, or a token under aml_token (no instance key here)
        found = self.status_tokens()
        return port, found[0] if found else None

    def instance_key_fields(self) -> dict[str, Any]:
        return {}  # containers are reached on the endpoint's internal network: no instance key

    def reload(self) -> bool:
        if self.router() is None:
            return False
        with mapped(f"reload the router of endpoint {self.name}"):
            try:
                self.engine.api.kill(self.router_name, signal="SIGHUP")
            except Exception as exc:
                if "is not running" not in str(exc):
                    raise
        return True

    def start_router(self, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run the router container (replacing one that runs other settings) and wait for it."""
        running = self.router()
        if running is not None and self.status() is not None:
            return running
        self.engine.remove_container(self.router_name, grace=5.0)
        self.ensure_networks()
        port = self.chosen_port()
        if port is None:
            port = free_port(self.publish_host)
            self.portfile.write_text(f"{port}\n")
        command = ["python3", str(router_zipapp(self.run)), "--table", str(self.table), "--host", "0.0.0.0",
                   "--port", str(ROUTER_PORT)]
        labels = {**self.labels("router"), "recon.router_digest": self.router_digest(port)}
        volumes = {str(httptools_dir()): {"bind": f"{SITE_MOUNT}/httptools", "mode": "ro"},
                   str(self.run): {"bind": str(self.run), "mode": "ro"},
                   str(self.keys.parent): {"bind": str(self.keys.parent), "mode": "ro"}}
        with mapped(f"start the router of endpoint {self.name}"):
            container = self.engine.client.containers.create(
                self.image, command=command, name=self.router_name, labels=labels, volumes=volumes,
                ports={f"{ROUTER_PORT}/tcp": (self.publish_host, port)}, network=self.public_network,
                environment={"PYTHONUNBUFFERED": "1", "PYTHONPATH": SITE_MOUNT, **(extra_env or {})},
                working_dir="/",
                stop_signal="SIGTERM", detach=True,
            )
            self.engine.client.networks.get(self.network_name).connect(container)
            container.start()
        crash_point("router.spawned", self.name)  # started, not yet answering
        deadline = time.monotonic() + ROUTER_START_TIMEOUT
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead"):
                raise PermanentError(f"endpoint {self.name}: the router container exited while starting "
                                     f"(port {self.publish_host}:{port} may be taken)", detail=self.router_logs(30))
            if self.status(timeout=1.0) is not None:
                return {"container": container.id, "name": self.router_name, "port": port}
            time.sleep(0.1)
        detail = self.router_logs(30)
        self.engine.remove_container(self.router_name, grace=2.0)
        raise PermanentError(f"endpoint {self.name}: the router did not answer within {ROUTER_START_TIMEOUT:.0f}s",
                             detail=detail)

    def stop_router(self) -> None:
        self.engine.remove_container(self.router_name, grace=10.0)

    @property
    def uri_host(self) -> str:
        """Where clients reach the published port (the loopback when it is published on every address)."""
        return "127.0.0.1" if self.publish_host in ("0.0.0.0", "") else self.publish_host

    def discard(self) -> None:
        """The router container and the networks go first, then the table, port and keys."""
        self.stop_router()
        self.remove_networks()
        super().discard()

    def router_logs(self, tail: int) -> list[str]:
        container = self.engine.container(self.router_name)
        if container is None:
            return []
        with mapped(f"logs of {self.router_name}"):
            text = str(container.logs(tail=tail).decode(errors="replace"))
        return text.splitlines()

    def internal_ip(self, container: Any) -> str | None:
        nets = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        ip = (nets.get(self.network_name) or {}).get("IPAddress")
        return str(ip) if ip else None

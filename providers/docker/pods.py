"""Warm starts on Docker: a pod container per configuration whose launcher forks its instances.

Starting an instance container is mostly its interpreter importing the scoring script's libraries
(scikit-learn and SciPy: 1.5 s of CPU for a model that loads in 20 ms), paid again by every
container of a rollout. A *pod* is one container of one deployment's configuration
(``recon-<endpoint>-<deployment>-pod<n>-<h>``, label ``recon.role=pod``) whose main process is
``launcher.py`` in resident mode (providers/shared/runtime): it imports once the library modules an
earlier instance of the deployment had loaded when ``init()`` returned (``modules.json``, written by
``host.py``), then forks each instance asked for. Its instances listen on ports of their own on the
pod's address on the endpoint's internal network: as cold containers, only the router reaches them.

On the host, ``run/<endpoint>/<deployment>/warm/`` is mounted read-write at ``/run/recon`` in the
deployment's pods (and its cold containers, which write ``modules.json``); each pod has a folder
there (made by recon before the pod starts, so that everything in it can be removed by recon)::

    warm/modules.json       library modules the last instance's init() loaded (a hint)
    warm/<pod>/ctl.sock     the launcher's control socket (``providers.shared.warm.Channel``)
    warm/<pod>/roster.json  the instances that live in the pod, kept true by the launcher
    warm/<pod>/<n>.port     written by instance n once it listens (it is ready)
    warm/<pod>/<n>.log      instance n's output

A pod is never shared: not between deployments, endpoints or configurations. It is started with
``auto_remove``, and its launcher exits (ending the container) once no instance lives in it and no
recon process is connected: a killed apply leaves no empty pod behind for long (one whose apply died
before it connected waits ``FIRST_WAIT`` seconds; the next operation on the deployment removes it).
Whatever fails here is ``LauncherError``: the instances start cold, as with ``warm_start: false``.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from providers.docker.engine import Engine, mapped
from providers.shared import procs
from providers.shared.runtime import LAUNCHER_SCRIPT
from providers.shared.warm import Channel, LauncherError

__all__ = ["LauncherError", "Pod", "connect", "read_roster", "stop_in_pod", "wait_for_pod"]

WARM_MOUNT = "/run/recon"
LAUNCHER_IN_IMAGE = "/opt/recon/launcher.py"
FIRST_WAIT = 30.0  # a pod nobody connected to ends after this long
SOCKET = "ctl.sock"
ROSTER = "roster.json"


class Pod:
    """A connection to a running pod's launcher (``fork`` and ``stop`` its instances)."""

    def __init__(self, name: str, container_id: str, folder: Path, ip: str, hello: dict[str, Any],
                 channel: Channel, import_seconds: float) -> None:
        self.name = name
        self.container_id = container_id
        self.folder = folder
        self.ip = ip
        self.channel = channel
        self.preloaded = int(hello.get("preloaded") or 0)
        self.failed = [str(n) for n in hello.get("failed") or []]
        self.import_seconds = import_seconds

    def fork(self, instance_id: int, argv: list[str], digest: str) -> int:
        """Instance ``instance_id`` (``host.main(argv)``); its pid in the pod."""
        log = self.folder / f"{instance_id}.log"
        log.touch(mode=0o600)  # made by recon, so that recon can read it whoever the pod runs as
        inside = f"{WARM_MOUNT}/{self.name}"
        return self.channel.fork(instance_id, argv, f"{inside}/{instance_id}.log", f"{inside}/{instance_id}.json",
                                 {"id": instance_id, "config_digest": digest})

    def close(self) -> None:
        self.channel.close()


def connect(folder: Path, who: str, timeout: float) -> Channel:
    """A channel to the launcher whose socket is in ``folder`` (a path of any length: through
    ``/proc/self/fd``, since a Unix socket's address is at most 108 bytes)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            sock.connect(f"/proc/self/fd/{fd}/{SOCKET}")
        finally:
            os.close(fd)
    except OSError as ex:
        sock.close()
        raise LauncherError(f"cannot connect to {who}: {ex}") from ex
    return Channel(sock, who)


def wait_for_pod(engine: Engine, name: str, container: Any, folder: Path, ip: str, timeout: float) -> Pod:
    """Wait until the pod's launcher has imported and listens; connect to it."""
    started = time.monotonic()
    deadline = started + timeout
    checked = started
    while time.monotonic() < deadline:
        if (folder / SOCKET).exists():
            channel = connect(folder, f"the launcher of pod {name}", timeout=max(1.0, deadline - time.monotonic()))
            try:
                hello = channel.greeting()
            except LauncherError:
                channel.close()
                raise
            channel.socket.settimeout(30.0)  # a fork is answered in milliseconds
            return Pod(name, container.id, folder, ip, hello, channel, time.monotonic() - started)
        if time.monotonic() - checked > 0.5:
            checked = time.monotonic()
            with mapped(f"inspect pod {name}"):
                try:
                    container.reload()
                except Exception:  # auto_remove: an exited pod may be gone already
                    raise LauncherError(f"pod {name} exited while importing") from None
            if container.status not in ("created", "running"):
                raise LauncherError(f"pod {name} is {container.status}: {_last_words(container)}")
        time.sleep(0.02)
    raise LauncherError(f"pod {name} did not listen within {timeout:g}s")


def _last_words(container: Any) -> str:
    try:
        return " | ".join(bytes(container.logs(tail=5)).decode(errors="replace").splitlines())
    except Exception:  # noqa: BLE001 - it is only for the message
        return "(no log)"


def read_roster(folder: Path) -> list[dict[str, Any]]:
    """The instances the pod's launcher says live in it (stopping ones included, marked)."""
    data = procs.read_json(folder / ROSTER)
    if not isinstance(data, dict):
        return []
    return [e for e in data.get("instances") or [] if isinstance(e, dict) and isinstance(e.get("id"), int)]


def launcher_command(pod: str, first_wait: float) -> list[str]:
    inside = f"{WARM_MOUNT}/{pod}"
    return [LAUNCHER_IN_IMAGE, "--listen", f"{inside}/{SOCKET}", "--roster", f"{inside}/{ROSTER}",
            "--modules-file", f"{WARM_MOUNT}/modules.json", "--first-wait", f"{first_wait:g}"]


def launcher_volume() -> dict[str, dict[str, str]]:
    return {str(LAUNCHER_SCRIPT): {"bind": LAUNCHER_IN_IMAGE, "mode": "ro"}}


def stop_in_pod(engine: Engine, name: str, folder: Path, ids: list[int], pids: list[int], grace: float) -> None:
    """SIGTERM instances ``ids`` of pod ``name`` (its launcher SIGKILLs them after ``grace``); when
    the launcher does not answer, the shell's ``kill`` run in the pod does it."""
    try:
        channel = connect(folder, f"the launcher of pod {name}", timeout=5.0)
        try:
            channel.greeting()
            channel.request({"op": "stop", "ids": ids, "grace": grace})
        finally:
            channel.close()
        return
    except LauncherError:
        pass
    if not pids:
        return
    with mapped(f"stop instances {ids} in pod {name}"):
        try:
            exec_id = engine.api.exec_create(name, ["sh", "-c", "kill -TERM " + " ".join(str(p) for p in pids)])
            engine.api.exec_start(exec_id)
        except Exception as exc:
            if "is not running" not in str(exc) and "No such container" not in str(exc):
                raise

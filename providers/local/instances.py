"""The instances of one deployment: server processes started, probed, pooled, drained and stopped.

Layout under ``state_dir``::

    run/<endpoint>/<deployment>/instances/<n>.json   pid file: id, pid, start_time, port, config_digest
    run/<endpoint>/<deployment>/instances/<n>.port   written by the host once it listens
    run/<endpoint>/<deployment>/stopping/<n>.json    pid file of an instance SIGTERM'd, not yet gone
    run/<endpoint>/<deployment>/configs/<digest>.json how instances of one configuration are launched
    run/<endpoint>/<deployment>/seq                  the last instance number given out
    run/<endpoint>/<deployment>/modules.json          library modules the last instance's init() loaded
    run/<endpoint>/<deployment>/launchers/<digest>.json  pid file of a launcher (warm starts) while it runs
    logs/<endpoint>/<deployment>/<n>.log             the instance's stdout and stderr
    logs/<endpoint>/<deployment>/launcher.log        the launchers' output

An instance's configuration is identified by its ``config_digest``: instances at the desired digest
are never replaced again, which is what makes a rolling update resumable after a crash. A launch
config is kept per digest so that scaling clones the configuration that runs (scale first, template
changes after, as the service does).

Warm starts (``warm_starts``): instances of one configuration may be forked by a launcher that has
imported the deployment's libraries. Such an instance carries the launcher's environment, whose
mark is the family mark ``<endpoint>/<deployment>/+<digest>`` rather than its own number; its pid
file (which it writes itself, first thing) is what names it. A process with a family mark that no
pid file names, and that is no running launcher, is a leftover and is stopped like any other.

Stopping is asynchronous where a rollout needs it (``begin_stop``): a drained instance gets SIGTERM
and its pid file moves from ``instances/`` to ``stopping/`` (written before the old one is removed,
so a crash never leaves it unrecorded); ``reap_stopping`` forgets the ones that have exited and
SIGKILLs those still there after their grace period, or waits for all of them (end of a rollout,
destroy). Stopping instances are neither in the pool nor counted, and are never taken for strays.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.local.warm_starts import Launcher, LauncherError
from providers.shared import probes, procs
from providers.shared.endpoint_files import ensure_instance_key, instance_key_path
from providers.shared.probes import StartFailure, probe_settings
from providers.shared.rolling import next_instance_ids
from providers.shared.runtime import HOST_SCRIPT

POLL = 0.05  # readiness is polled this often while starting, whatever the probe's period


@dataclass
class Instance:
    """One running (or recorded) server process."""

    id: int
    pid: int
    start_time: int | None
    config_digest: str
    port: int | None = None
    alive: bool = True
    env_drift: dict[str, str] | None = None  # declared variables as observed, when they differ
    kill_after: float | None = None  # stopping: SIGKILL after this time (epoch seconds)

    @property
    def label(self) -> str:
        return f"instance {self.id} (pid {self.pid})"

    @property
    def down_reason(self) -> str:
        return "is not running"

    def upstream(self) -> str | None:
        """The router's address of this instance (None until it listens)."""
        return f"127.0.0.1:{self.port}" if self.port else None

    def to_output(self) -> dict[str, Any]:
        return {"id": self.id, "pid": self.pid, "start_time": self.start_time, "port": self.port,
                "config_digest": self.config_digest}


@dataclass
class LaunchConfig:
    """How the instances of one configuration start."""

    python: str
    entry_script: str
    cwd: str
    model_dir: str
    environment_variables: dict[str, str]
    worker_count: int = 1
    readiness_probe: dict[str, Any] = field(default_factory=dict)
    liveness_probe: dict[str, Any] = field(default_factory=dict)
    isolated: bool = True  # a virtualenv: do not leak the CLI's PYTHONPATH into it

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LaunchConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class DeploymentRunner:
    """Starts, finds and stops the instances of ``endpoint/deployment``."""

    def __init__(self, state_dir: Path, endpoint: str, name: str, workspace: str = "") -> None:
        self.state_dir = state_dir
        self.endpoint = endpoint.lower()
        self.name = name.lower()
        self.workspace = workspace
        self.run = state_dir / "run" / self.endpoint / self.name
        self.inst_dir = self.run / "instances"
        self.stopping_dir = self.run / "stopping"
        self.cfg_dir = self.run / "configs"
        self.log_dir = state_dir / "logs" / self.endpoint / self.name
        self.lock_path = state_dir / "run" / self.endpoint / f".{self.name}.lock"
        self.launchers_dir = self.run / "launchers"
        self.modules_file = self.run / "modules.json"
        self.warm_failure: str | None = None  # why the last start() could not fork warm instances
        self._configs: dict[str, LaunchConfig | None] = {}

    def exists(self) -> bool:
        """Whether the deployment was ever started here (its folder is there)."""
        return self.inst_dir.is_dir()

    def prepare(self) -> None:
        """The deployment's folders (they exist even with 0 instances)."""
        self.inst_dir.mkdir(parents=True, exist_ok=True)

    def mark(self, instance_id: int) -> str:
        return f"{self.endpoint}/{self.name}/{instance_id}"

    def family_mark(self, digest: str) -> str:
        """The mark of a launcher of ``digest`` and of every instance it forks."""
        return f"{self.endpoint}/{self.name}/+{_fname(digest)[:16]}"

    def log_path(self, instance_id: int) -> Path:
        return self.log_dir / f"{instance_id}.log"

    # -- configs ---------------------------------------------------------------------------------
    def save_config(self, digest: str, config: LaunchConfig) -> None:
        procs.write_json(self.cfg_dir / f"{_fname(digest)}.json", config.to_json())

    def load_config(self, digest: str) -> LaunchConfig | None:
        data = procs.read_json(self.cfg_dir / f"{_fname(digest)}.json")
        return LaunchConfig.from_json(data) if isinstance(data, dict) else None

    def _config_cached(self, digest: str) -> LaunchConfig | None:
        """``load_config`` read once per digest for this runner (configs never change per digest)."""
        if digest not in self._configs:
            self._configs[digest] = self.load_config(digest)
        return self._configs[digest]

    # -- finding ---------------------------------------------------------------------------------
    def recorded(self) -> list[Instance]:
        """Every instance with a pid file, alive or not (``alive`` and ``port`` filled in)."""
        out: list[Instance] = []
        if not self.inst_dir.is_dir():
            return out
        adopted: dict[int, int] | None = None
        for path in sorted(self.inst_dir.glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0):
            data = procs.read_json(path)
            if not isinstance(data, dict) or "pid" not in data:
                continue
            inst = Instance(int(data["id"]), int(data["pid"]), data.get("start_time"),
                            str(data.get("config_digest", "")), data.get("port"))
            inst.alive = procs.is_alive(inst.pid, inst.start_time)
            if not inst.alive and adopted is None:
                adopted = self._marked()  # only scan /proc when a recorded process is gone
            if not inst.alive and adopted and inst.id in adopted:
                # Restarted by hand with recon's marks: the process is the instance now.
                inst.pid = adopted[inst.id]
                inst.start_time = procs.start_time(inst.pid)
                inst.alive = True
                inst.port = None  # it listens where its port file says
            if inst.port is None:
                inst.port = procs.read_port(self.inst_dir / f"{inst.id}.port")
            out.append(inst)
        return out

    def _marked(self) -> dict[int, int]:
        """Instance number -> pid of live processes carrying this deployment's marks."""
        prefix = f"{self.endpoint}/{self.name}/"
        found: dict[int, int] = {}
        for mark, pid in procs.find_marked(self.state_dir, prefix).items():
            tail = mark[len(prefix):]
            if tail.isdigit():
                found[int(tail)] = pid
        return found

    def live(self) -> list[Instance]:
        """Alive instances; pid files of dead ones are removed (their logs stay), and processes
        with this deployment's marks that no pid file names and that are no running launcher (a
        crash between spawn and record) stopped."""
        exiting = self.reap_stopping(wait=False)
        alive = []
        for inst in self.recorded():
            if inst.alive:
                alive.append(inst)
            else:
                self._forget(inst)
        known = {i.pid for i in alive} | {i.pid for i in exiting} | self.launcher_pids()
        for pid in self.marked_pids():
            if pid not in known:
                procs.stop(pid, procs.start_time(pid), grace=5.0)
        return alive

    def marked_pids(self) -> list[int]:
        """Pids of every live process with one of this deployment's marks, its own number or a
        family mark (launchers and the instances they forked): one scan of /proc."""
        return [pid for _mark, pid in procs.find_all_marked(self.state_dir, f"{self.endpoint}/{self.name}/")]

    def launcher_pids(self, prune: bool = True) -> set[int]:
        """Pids of the launchers of this deployment that run (their pid files; stale ones removed
        unless ``prune`` is False: observing changes nothing)."""
        pids: set[int] = set()
        if not self.launchers_dir.is_dir():
            return pids
        for path in self.launchers_dir.glob("*.json"):
            data = procs.read_json(path)
            if isinstance(data, dict) and procs.is_alive(int(data.get("pid") or 0), data.get("start_time")):
                pids.add(int(data["pid"]))
            elif prune:
                path.unlink(missing_ok=True)
        return pids

    def check_environment(self, inst: Instance, declared: dict[str, str]) -> dict[str, str] | None:
        """The declared variables as the process has them, when they differ from ``declared``."""
        env = procs.read_environ(inst.pid)
        if env is None:
            return None
        keys = set(declared)
        config = self._config_cached(inst.config_digest)
        if config is not None:
            keys |= set(config.environment_variables)
        seen = {k: env[k] for k in sorted(keys) if k in env}
        return None if seen == declared else seen

    # -- starting --------------------------------------------------------------------------------
    def _next_ids(self, n: int) -> list[int]:
        return next_instance_ids(self.run, n)

    def start(self, digest: str, config: LaunchConfig, n: int, launcher: Launcher | None = None) -> list[Instance]:
        """Start ``n`` instances of ``config`` (not yet ready, not yet in the pool): forked by
        ``launcher`` when given, else each its own interpreter. When the launcher fails, the
        rest start cold and ``warm_failure`` says why."""
        self.inst_dir.mkdir(parents=True, exist_ok=True)
        self.warm_failure = None
        key_file = instance_key_path(self.state_dir, self.endpoint)
        ensure_instance_key(key_file)  # only the router, which presents it, gets an answer
        started: list[Instance] = []
        for instance_id in self._next_ids(n):
            port_file = self.inst_dir / f"{instance_id}.port"
            port_file.unlink(missing_ok=True)
            args = ["--entry_script", config.entry_script, "--port", "0", "--port-file", str(port_file),
                    "--model_dir", config.model_dir, "--worker_count", str(config.worker_count),
                    "--modules-file", str(self.modules_file), "--key-file", str(key_file)]
            proc = None
            if launcher is not None:
                record = Instance(instance_id, 0, None, digest).to_output()
                try:
                    proc = launcher.fork(instance_id, args, self.log_path(instance_id),
                                         self.inst_dir / f"{instance_id}.json", record)
                except LauncherError as ex:
                    self.warm_failure, launcher = str(ex), None
            if proc is None:
                env = instance_environment(config, self.mark(instance_id), digest, self.state_dir, self.workspace)
                proc = procs.spawn([config.python, str(HOST_SCRIPT), *args], env, self.log_path(instance_id),
                                   cwd=Path(config.cwd))
            inst = Instance(instance_id, proc.pid, proc.start_time, digest)
            self._write(inst)
            started.append(inst)
        return started

    def launcher(self, digest: str, config: LaunchConfig, timeout: float) -> Launcher:
        """A launcher for ``config`` (raises ``LauncherError`` when it cannot start)."""
        self.launchers_dir.mkdir(parents=True, exist_ok=True)
        return Launcher(config.python, instance_environment(config, self.family_mark(digest), digest,
                                                                 self.state_dir, self.workspace),
                        Path(config.cwd), self.log_dir / "launcher.log", self.modules_file,
                        self.launchers_dir / f"{_fname(digest)}.json", timeout)

    def wait_ready(self, pending: list[Instance], probe: Mapping[str, Any] | None) -> StartFailure | None:
        """Poll until every instance answers its readiness probe; the first failure otherwise."""
        timeout = probe_settings(probe)["timeout"]

        def poll(inst: Instance) -> bool | str:
            if not procs.is_alive(inst.pid, inst.start_time):
                return f"instance {inst.id} exited while starting"
            port = procs.read_port(self.inst_dir / f"{inst.id}.port")
            got = probes.http_get(port, "/", timeout) if port is not None else None
            if port is None or got is None or got[0] != 200:
                return False
            inst.port = port
            self._write(inst)
            return True

        return probes.wait_ready(pending, probe, poll, lambda inst: self.tail(inst.id), POLL)

    def is_live(self, inst: Instance, probe: Mapping[str, Any] | None) -> bool:
        """The liveness probe, once: GET / answers 200 within the probe's timeout."""
        if not inst.alive or inst.port is None:
            return False
        got = probes.http_get(inst.port, "/", probe_settings(probe)["timeout"])
        return got is not None and got[0] == 200

    def live_map(self, instances: list[Instance], probe: Mapping[str, Any] | None) -> dict[int, bool]:
        """``is_live`` of every instance, probed at the same time (id -> answered)."""
        result: dict[int, bool] = {}
        candidates = [i for i in instances if i.alive and i.port is not None]
        for inst in instances:
            result[inst.id] = False
        if len(candidates) <= 1:
            for inst in candidates:
                result[inst.id] = self.is_live(inst, probe)
            return result

        def one(inst: Instance) -> None:
            result[inst.id] = self.is_live(inst, probe)

        threads = [threading.Thread(target=one, args=(inst,), daemon=True) for inst in candidates]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return result

    # -- stopping --------------------------------------------------------------------------------
    def stop(self, instances: list[Instance], grace: float = 10.0) -> None:
        """SIGTERM all (the host finishes what it has), SIGKILL after ``grace``; forget them."""
        for inst in instances:
            procs.signal_process(inst.pid, inst.start_time, signal.SIGTERM)
        for inst in instances:
            procs.stop(inst.pid, inst.start_time, grace=grace)
            self._forget(inst)

    def begin_stop(self, instances: list[Instance], grace: float = 10.0) -> None:
        """SIGTERM ``instances`` without waiting for them to exit: their pid files move to
        ``stopping/`` (with the time after which they are SIGKILLed) until ``reap_stopping``."""
        kill_after = time.time() + grace
        for inst in instances:
            procs.write_json(self.stopping_dir / f"{inst.id}.json", {**inst.to_output(), "kill_after": kill_after})
            self._forget(inst)
            procs.terminate(inst.pid, inst.start_time)

    def stopping(self) -> list[Instance]:
        """Instances SIGTERM'd and not yet reaped (alive or not), ``port`` None."""
        out: list[Instance] = []
        if not self.stopping_dir.is_dir():
            return out
        for path in self.stopping_dir.glob("*.json"):
            data = procs.read_json(path)
            if not isinstance(data, dict) or "pid" not in data:
                path.unlink(missing_ok=True)
                continue
            inst = Instance(int(data["id"]), int(data["pid"]), data.get("start_time"),
                            str(data.get("config_digest", "")))
            inst.alive = procs.is_alive(inst.pid, inst.start_time)
            inst.kill_after = float(data.get("kill_after") or 0.0)
            out.append(inst)
        return sorted(out, key=lambda i: i.id)

    def reap_stopping(self, wait: bool) -> list[Instance]:
        """Forget stopping instances that have exited; SIGKILL those past their grace period. With
        ``wait``, wait until every one is gone (SIGKILL at its deadline, then at most 5 s more).
        Returns those still exiting (their pid files stay)."""
        pending = self.stopping()
        give_up = max((i.kill_after or 0.0 for i in pending), default=0.0) + 5.0
        while True:
            still: list[Instance] = []
            now = time.time()
            for inst in pending:
                if not procs.is_alive(inst.pid, inst.start_time):
                    (self.stopping_dir / f"{inst.id}.json").unlink(missing_ok=True)
                    continue
                if now >= (inst.kill_after or 0.0):
                    procs.kill(inst.pid, inst.start_time)
                still.append(inst)
            if not wait or not still or now >= give_up:
                return still
            pending = still
            time.sleep(0.01)

    def stop_all(self) -> None:
        """Every instance of this deployment, recorded, stopping or only marked; then its run folder."""
        self.stop(self.recorded(), grace=10.0)
        self.reap_stopping(wait=True)
        for pid in self.marked_pids():
            procs.stop(pid, procs.start_time(pid), grace=5.0)
        shutil.rmtree(self.run, ignore_errors=True)

    def tail(self, instance_id: int, lines: int = 30) -> list[str]:
        return procs.tail(self.log_path(instance_id), lines)

    # -- pool ------------------------------------------------------------------------------------
    # -- files -----------------------------------------------------------------------------------
    def _write(self, inst: Instance) -> None:
        procs.write_json(self.inst_dir / f"{inst.id}.json", inst.to_output())

    def _forget(self, inst: Instance) -> None:
        (self.inst_dir / f"{inst.id}.json").unlink(missing_ok=True)
        (self.inst_dir / f"{inst.id}.port").unlink(missing_ok=True)


def instance_environment(config: LaunchConfig, mark: str, digest: str, state_dir: Path, workspace: str) -> dict[str, str]:
    """What an instance (or its launcher) runs with: recon's environment without its own ``RECON_``
    variables (and, isolated, without the Python of recon), the deployment's variables, azmlinfsrv's
    and the marks recon finds its processes by."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env.pop("PYTHONHOME", None)
    if config.isolated:
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
    env.update(config.environment_variables)
    env.update({
        "AZUREML_MODEL_DIR": config.model_dir,
        "AML_APP_ROOT": config.cwd,
        "AZUREML_ENTRY_SCRIPT": config.entry_script,
        "PYTHONUNBUFFERED": "1",
        procs.MARK_ID: mark,
        procs.MARK_STATE_DIR: str(state_dir),
        procs.MARK_WORKSPACE: workspace,
        procs.MARK_ROLE: "instance",
        "RECON_CONFIG_DIGEST": digest,
    })
    return env


def _fname(digest: str) -> str:
    return digest.removeprefix("sha256:")[:40]

"""Instance launcher: imports a deployment's libraries once, then forks warm instances on request.

A single file, standard library only, run by the deployment's own Python beside ``host.py``::

    <python> launcher.py --control-fd FD [--modules-file FILE]

with the environment an instance of the configuration gets. Starting an instance of a scoring
script is mostly importing its libraries (scikit-learn and SciPy: 1.5 s of CPU for a model that
loads in 20 ms). The launcher imports what an earlier instance of the deployment had loaded once
``init()`` returned (``--modules-file``, written by ``host.py``; the user's own modules excluded,
and the scoring script itself is never run here), then forks one process per instance asked for.
Each child is an ordinary instance: its own session, its own log, ``host.main`` (the script
imported and ``init()`` called in the child, as in a fresh process), and its pid file written by
itself before anything else so that a crash of the CLI at any moment never leaves it unrecorded.

Protocol on the control socket (one JSON object a line). The launcher says
``{"ready": true, "pid": N, "preloaded": N, "failed": [...]}`` once it has imported; then each
request ``{"id", "argv", "log", "pid_file", "record"}`` is answered ``{"id", "pid"}`` (or
``{"id", "error"}``). End of file on the socket (the CLI closed it, or died) ends the launcher;
the instances it forked live on.

Resident mode (``--listen SOCKET --roster FILE``, the Docker provider's warm starts): the launcher is
the main process of a container that holds the instances it forks, so it lives as long as they do.
It listens on a Unix socket (bind-mounted from the host), greets every connection as above and
also accepts ``{"op": "stop", "ids": [...], "grace": S}`` (SIGTERM now, SIGKILL after ``S``
seconds; answered ``{"stopping": [...]}`` at once). It keeps ``FILE`` (the roster) true at every
moment: ``{"launcher": pid, "instances": [{"id", "pid", "stopping"}]}``, rewritten after each fork,
stop and exit of a child, so that whoever reads it sees which instances live. SIGTERM (``docker
stop``) is passed on to every instance. It exits, ending the container, once no connection is open
and no instance lives, after a first connection (or ``--first-wait`` seconds when nothing ever
connected): a killed ``recon apply`` leaves no empty launcher behind. ``--probe FOLDER`` (the pod's Docker health
check) probes the instances the roster lists and counts their consecutive failures in
``FOLDER/health.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def preload(modules_file: str | None) -> tuple[int, list[str]]:
    """Import the modules listed in ``modules_file`` (in order); (imported, failed names)."""
    names: list[str] = []
    if modules_file:
        with contextlib.suppress(OSError, ValueError, AttributeError), open(modules_file) as f:
            names = [str(n) for n in json.load(f).get("modules", [])]
    done, failed = 0, []
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            done += 1
        except BaseException as ex:  # noqa: BLE001 - a module that does not import is only not preloaded
            if isinstance(ex, KeyboardInterrupt):
                raise
            failed.append(name)
    return done, failed


def start_time() -> int | None:
    """This process's start time in clock ticks since boot (field 22 of /proc/self/stat)."""
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        return int(stat[stat.rfind(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def become_instance(request: dict[str, Any], *inherited: socket.socket | int) -> None:
    """In the forked child: detach, record itself, and run the host. Never returns.

    ``inherited``: the launcher's sockets and descriptors, closed here (an instance must not hold
    the launcher's control socket open)."""
    code = 1
    try:
        os.setsid()
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        for held in inherited:
            with contextlib.suppress(OSError):
                os.close(held.detach() if isinstance(held, socket.socket) else held)
        devnull = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(log, 0o600)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(devnull)
        os.close(log)
        host: Any = sys.modules["host"]  # imported by the launcher before it forked
        record = {**request["record"], "pid": os.getpid(), "start_time": start_time()}
        host.write_atomic(request["pid_file"], json.dumps(record, indent=2, sort_keys=True))
        _reseed()
        code = host.main(list(request["argv"]))
        host.exit_now(code)
    except SystemExit as ex:  # host.load exits 3 when the script or init() fails
        code = ex.code if isinstance(ex.code, int) else 1
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not return into the launcher
        with contextlib.suppress(Exception):
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
    os._exit(code)


def _reseed() -> None:
    """Fresh random state, as a fresh process would have (``random`` reseeds itself at fork)."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        with contextlib.suppress(Exception):
            numpy_random.seed()


def serve(control: socket.socket, modules_file: str | None) -> int:
    sys.path.insert(0, HERE)
    importlib.import_module("host")  # once here, so that every child has it already

    preloaded, failed = preload(modules_file)
    reader = control.makefile("rb")
    writer = control.makefile("wb")

    def say(message: dict[str, Any]) -> None:
        writer.write(json.dumps(message).encode() + b"\n")
        writer.flush()

    say({"ready": True, "pid": os.getpid(), "preloaded": preloaded, "failed": failed[:20]})
    while True:
        line = reader.readline()
        if not line:
            return 0  # the CLI closed the socket or is gone
        request = parse_request(line)
        say(fork_instance(request, control)[0] if request is not None else NOT_JSON)


NOT_JSON = {"error": "not a JSON request"}


def parse_request(line: bytes) -> dict[str, Any] | None:
    """One request line of the control socket (None: not a JSON object)."""
    try:
        request = json.loads(line)
    except ValueError:
        return None
    return request if isinstance(request, dict) else None


def fork_instance(request: dict[str, Any], *inherited: socket.socket | int) -> tuple[dict[str, Any], int | None]:
    """Fork the instance ``request`` asks for (the child never returns: ``become_instance`` closes
    ``inherited``); the answer for the CLI and the child's pid (None when the fork failed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as ex:
        return {"id": request.get("id"), "error": f"fork failed: {ex}"}, None
    if pid == 0:
        become_instance(request, *inherited)
    return {"id": request.get("id"), "pid": pid}, pid


class Resident:
    """The launcher of resident mode: a Unix socket server and the parent of its instances."""

    def __init__(self, listen: str, roster: str, preloaded: int, failed: list[str]) -> None:
        self.roster_path = roster
        self.hello = {"ready": True, "pid": os.getpid(), "preloaded": preloaded, "failed": failed[:20]}
        self.children: dict[int, dict[str, Any]] = {}  # pid -> {"id", "pid", "stopping", "kill_at"}
        self.buffers: dict[socket.socket, bytes] = {}
        self.forked = False
        self.connected = False
        self.terminating = False
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        self.wake_w = wake_w
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the loop (wakeup fd)
        signal.signal(signal.SIGTERM, self._on_term)
        self.write_roster()
        with contextlib.suppress(OSError):
            os.unlink(listen)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(listen)
        os.chmod(listen, 0o666)  # the folder it is in is the deployment's own (0700 on the host)
        self.listener.listen(8)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)

    def _on_term(self, signum: int, frame: Any) -> None:
        self.terminating = True

    def write_roster(self) -> None:
        host: Any = sys.modules["host"]
        live = [{"id": c["id"], "pid": pid, "stopping": c["stopping"]} for pid, c in sorted(self.children.items())]
        host.write_atomic(self.roster_path, json.dumps({"launcher": os.getpid(), "instances": live}), fsync=False)

    def run(self, first_wait: float) -> int:
        started = time.monotonic()
        while True:
            self.reap()
            now = time.monotonic()
            if self.terminating:
                self.stop_all(now)
            self.kill_overdue(now)
            if not self.children and (self.terminating or (not self.buffers and (
                    self.forked or self.connected or now - started > first_wait))):
                return 0
            timeouts = [c["kill_at"] - now for c in self.children.values() if c["kill_at"] is not None]
            timeout = max(0.0, min([1.0, *timeouts]))
            for key, _events in self.selector.select(timeout):
                if key.fileobj is self.listener:
                    self.accept()
                elif key.fileobj == self.wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self.wake_r, 512)
                else:
                    self.read(key.fileobj)  # type: ignore[arg-type]

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        self.connected = True
        self.buffers[conn] = b""
        self.selector.register(conn, selectors.EVENT_READ)
        self.send(conn, self.hello)

    def read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(conn)
            self.buffers.pop(conn, None)
            conn.close()
            return
        buffered = self.buffers[conn] + data
        *lines, self.buffers[conn] = buffered.split(b"\n")
        for line in lines:
            if line.strip():
                self.handle(conn, line)

    def send(self, conn: socket.socket, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(message).encode() + b"\n")

    def handle(self, conn: socket.socket, line: bytes) -> None:
        request = parse_request(line)
        if request is None:
            self.send(conn, NOT_JSON)
            return
        if request.get("op") == "stop":
            self.send(conn, {"stopping": self.stop(request.get("ids") or [], float(request.get("grace") or 10.0))})
            return
        selector_fd = getattr(self.selector, "fileno", lambda: -1)()
        answer, pid = fork_instance(request, self.listener, *self.buffers, self.wake_r, self.wake_w,
                                    *([selector_fd] if selector_fd >= 0 else []))
        if pid is not None:
            self.forked = True
            self.children[pid] = {"id": request.get("id"), "stopping": False, "kill_at": None}
            self.write_roster()
        self.send(conn, answer)

    def stop(self, ids: list[Any], grace: float) -> list[Any]:
        stopping = []
        for pid, child in self.children.items():
            if child["id"] in ids and not child["stopping"]:
                _signal(pid, signal.SIGTERM)
                _signal(pid, signal.SIGCONT)  # a stopped (hung) instance gets the SIGTERM too
                child.update(stopping=True, kill_at=time.monotonic() + grace)
                stopping.append(child["id"])
        self.write_roster()
        return stopping

    def stop_all(self, now: float) -> None:
        for pid, child in self.children.items():
            if not child["stopping"]:
                _signal(pid, signal.SIGTERM)
                child.update(stopping=True, kill_at=now + 8.0)  # docker stop's own SIGKILL comes at 10 s

    def kill_overdue(self, now: float) -> None:
        for pid, child in self.children.items():
            if child["kill_at"] is not None and child["kill_at"] <= now:
                _signal(pid, signal.SIGKILL)
                child["kill_at"] = None

    def reap(self) -> None:
        changed = False
        while self.children:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            changed = self.children.pop(pid, None) is not None or changed
        if changed:
            self.write_roster()


def _signal(pid: int, sig: int) -> None:
    """Signal an instance's process group (its session: the host and anything it started)."""
    try:
        os.killpg(pid, sig)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def probe(folder: str, timeout: float) -> int:
    """Liveness of a pod's instances (run by the pod's Docker health check each probe period): GET /
    on every instance the roster lists that listens (its port file), all at once; ``health.json``
    beside the roster keeps each one's consecutive failures (0 after an answer). Always exits 0:
    the pod is healthy as long as it runs; its instances' health is the file's."""
    import threading
    import urllib.request

    try:
        with open(os.path.join(folder, "roster.json")) as f:
            roster = [e for e in json.load(f).get("instances") or [] if not e.get("stopping")]
    except (OSError, ValueError, AttributeError):
        return 0
    try:
        with open(os.path.join(folder, "health.json")) as f:
            before = {str(k): int(v) for k, v in json.load(f).items()}
    except (OSError, ValueError, AttributeError, TypeError):
        before = {}
    answered: dict[str, bool] = {}

    def check(key: str, port: int) -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as resp:
                answered[key] = resp.status == 200
        except Exception:  # noqa: BLE001 - any failure is a failed probe
            answered[key] = False

    threads = []
    for entry in roster:
        key = str(entry.get("id"))
        try:
            with open(os.path.join(folder, f"{key}.port")) as f:
                port = int(f.read().strip())
        except (OSError, ValueError):
            continue  # not ready yet: readiness is the control plane's to wait for
        threads.append(threading.Thread(target=check, args=(key, port), daemon=True))
        threads[-1].start()
        answered.setdefault(key, False)
    for t in threads:
        t.join(timeout + 1.0)
    health = {k: 0 if ok else before.get(k, 0) + 1 for k, ok in answered.items()}
    tmp = os.path.join(folder, f"health.json.tmp.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(health, f)
    os.replace(tmp, os.path.join(folder, "health.json"))
    return 0


def resident(args: argparse.Namespace) -> int:
    sys.path.insert(0, HERE)
    importlib.import_module("host")
    preloaded, failed = preload(args.modules_file)
    print(f"launcher {os.getpid()}: {preloaded} modules preloaded, not importable: {failed[:20]}", flush=True)
    return Resident(args.listen, args.roster, preloaded, failed).run(args.first_wait)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="recon instance launcher (forks warm instances)")
    p.add_argument("--control-fd", type=int, default=None)
    p.add_argument("--listen", default=None, help="resident mode: the Unix socket to listen on")
    p.add_argument("--roster", default=None, help="resident mode: the file listing the live instances")
    p.add_argument("--first-wait", dest="first_wait", type=float, default=60.0,
                   help="resident mode: exit after this long when nothing connected or was forked")
    p.add_argument("--modules-file", default=None)
    p.add_argument("--probe", default=None, metavar="FOLDER",
                   help="probe the instances of the pod whose roster is in FOLDER, then exit")
    p.add_argument("--probe-timeout", dest="probe_timeout", type=float, default=2.0)
    args = p.parse_args(argv)
    if args.probe:
        return probe(args.probe, args.probe_timeout)
    if args.listen:
        if not args.roster:
            p.error("--listen needs --roster")
        return resident(args)
    if args.control_fd is None:
        p.error("--control-fd or --listen is required")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the instances that exit
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    control = socket.socket(fileno=args.control_fd)
    started = time.monotonic()
    try:
        return serve(control, args.modules_file)
    except (BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        print(f"launcher {os.getpid()} done after {time.monotonic() - started:.1f}s", flush=True)


if __name__ == "__main__":
    os._exit(main())

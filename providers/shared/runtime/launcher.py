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
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
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


def become_instance(request: dict[str, Any], control: socket.socket) -> None:
    """In the forked child: detach, record itself, and run the host. Never returns."""
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.close(control.detach())  # the launcher's end is its own: an instance must not hold it open
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
        try:
            request = json.loads(line)
        except ValueError:
            say({"error": "not a JSON request"})
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as ex:
            say({"id": request.get("id"), "error": f"fork failed: {ex}"})
            continue
        if pid == 0:
            become_instance(request, control)
        say({"id": request.get("id"), "pid": pid})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="recon instance launcher (forks warm instances)")
    p.add_argument("--control-fd", type=int, required=True)
    p.add_argument("--modules-file", default=None)
    args = p.parse_args(argv)
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

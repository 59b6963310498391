"""The router program: arguments, the listening socket, signals, the once-a-second watch, the drain.

``python router.pyz --table FILE --host 127.0.0.1 --port P [--port-file F] [--no-access-log]
[--drain-seconds S]`` (docs/runtime.md). Exit 2: bad arguments, httptools not importable, an unreadable
table at start, or a port that cannot be bound. SIGHUP reloads the table; SIGTERM and SIGINT stop
accepting, finish the requests in flight (at most ``--drain-seconds``) and exit 0.

Only the standard library is imported until httptools is known to be importable; then every module of
the package is imported at once, before the router serves (none is imported later: the archive it
runs from may be replaced on disk while it runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from .status import log

if TYPE_CHECKING:
    from .core import Router


async def watch(router: Router) -> None:
    while True:
        await asyncio.sleep(1.0)
        router.check_files()
        router.sweep()
        sys.stdout.flush()


def raise_nofile() -> None:
    """Descriptors for the connection cap and the upstream connections (soft limit up to the hard)."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))


def _write_port(path: str, port: int) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


async def run(args: argparse.Namespace) -> int:
    from .clients import ClientConn
    from .core import Router

    raise_nofile()
    loop = asyncio.get_running_loop()
    router = Router(args.table, not args.no_access_log, loop)
    try:
        router.reload("start")
    except (OSError, ValueError, KeyError) as ex:
        log("error", f"cannot start: {ex}")
        sys.stdout.flush()
        return 2
    try:
        server = await loop.create_server(lambda: ClientConn(router), args.host, args.port,
                                          reuse_address=True, backlog=1024)
    except OSError as ex:
        log("error", f"cannot listen on {args.host}:{args.port}: {ex}")
        sys.stdout.flush()
        return 2
    port = server.sockets[0].getsockname()[1]
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, router.reload, "SIGHUP")
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)
    watcher = loop.create_task(watch(router))
    if args.port_file:
        _write_port(args.port_file, port)
    log("info", f"ready: listening on {args.host}:{port} pid {os.getpid()}")
    sys.stdout.flush()
    await done.wait()
    log("info", "stopping: finishing requests in flight")
    router.stopping = True
    server.close()
    router.close_idle_clients()
    deadline = time.monotonic() + args.drain_seconds
    while (router.active or router.mirrors) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        router.close_idle_clients()
    watcher.cancel()
    log("info", "stopped")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="recon endpoint router (docs/runtime.md)")
    p.add_argument("--table", required=True, help="routing table JSON file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--port-file", dest="port_file", default=None)
    p.add_argument("--no-access-log", dest="no_access_log", action="store_true")
    p.add_argument("--drain-seconds", dest="drain_seconds", type=float, default=30.0)
    args = p.parse_args(argv)
    try:
        import httptools  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    except ImportError:  # said at start (exit 2): the router never parses HTTP by hand
        log("error", f"cannot start: the Python package httptools is not importable by {sys.executable} "
                     "(pip install httptools, or put it on PYTHONPATH)")
        sys.stdout.flush()
        return 2
    from . import core  # noqa: F401  # every module, now (see the docstring)

    with contextlib.suppress(ImportError):
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.install()
    return asyncio.run(run(args))

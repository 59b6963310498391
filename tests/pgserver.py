"""A throwaway PostgreSQL server for tests and benchmarks.

``initdb`` and ``postgres`` refuse to run as root, so as root they run as the ``postgres`` user
(``runuser -u postgres --``). Data and socket live in a temporary folder owned by that user; the
server listens on 127.0.0.1 on a free port with fsync off. A role with a password is created so
that tests can check the password never shows in messages.

    with pg_server() as server:
        server.dsn   # postgresql://recon:<password>@127.0.0.1:<port>/recon
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "pw-Xq7-secret-9Zt"
ROLE = "recon"


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


@dataclass(frozen=True)
class PgServer:
    dsn: str
    port: int
    password: str
    datadir: Path


def find_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for bindir in candidates:
        if os.access(os.path.join(bindir, "initdb"), os.X_OK):
            return Path(bindir)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PgUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_pg(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(_as_pg(cmd), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@contextmanager
def pg_server() -> Iterator[PgServer]:
    """Start a fresh server, yield it, stop it and remove its files."""
    bindir = find_bindir()
    tmp = Path(tempfile.mkdtemp(prefix="recon-pg-"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        for p in (tmp, sock):
            shutil.chown(p, "postgres", "postgres")
    port = _free_port()
    started = False
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
              "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"])
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "-t", "60", "start"])
        started = True
        _create_role(sock, port)
        yield PgServer(
            dsn=f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{port}/{ROLE}",
            port=port,
            password=PASSWORD,
            datadir=data,
        )
    finally:
        if started:
            subprocess.run(_as_pg([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def _create_role(sock: Path, port: int) -> None:
    import psycopg

    with psycopg.connect(host=str(sock), port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute(f"CREATE DATABASE {ROLE} OWNER {ROLE}")


if __name__ == "__main__":  # manual use: print a DSN and keep the server up until Ctrl-C
    with pg_server() as srv:
        print(srv.dsn, flush=True)
        t0 = time.time()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(f"stopping after {time.time() - t0:.0f}s")

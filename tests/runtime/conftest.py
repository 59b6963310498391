"""Real processes on 127.0.0.1: instance hosts started from their file and routers from their zip
archive, as the local provider starts them (docs/runtime.md). Every process started here is stopped at
teardown."""

from __future__ import annotations

import http.client
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from providers.shared.runtime import HOST_SCRIPT, router_zipapp

PRIMARY, SECONDARY = "primary-key-0123456789", "secondary-key-9876543210"

# A scoring script with Azure's contract; NAME, SLEEP_S, HOLD_FILE, ARRIVED_FILE and FAIL_INIT steer it per instance.
SCORE_PY = '''\
import json, os, time
NAME = os.environ.get("NAME", "x")

def init():
    global model_dir
    if os.environ.get("FAIL_INIT"):
        raise RuntimeError("init exploded: " + os.environ["FAIL_INIT"])
    model_dir = os.environ.get("AZUREML_MODEL_DIR")

def run(raw_data):
    data = json.loads(raw_data) if raw_data else {}
    if data.get("fail"):
        raise ValueError("run exploded: " + str(data["fail"]))
    time.sleep(float(data.get("sleep", os.environ.get("SLEEP_S", "0"))))
    if os.environ.get("ARRIVED_FILE"):  # one line per request that reached the script
        with open(os.environ["ARRIVED_FILE"], "a") as f:
            f.write("1\\n")
    hold = os.environ.get("HOLD_FILE")  # held until the test creates this file (at most 60 s)
    deadline = time.monotonic() + 60
    while hold and not os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.05)
    if data.get("text"):
        return "plain text"
    return {"name": NAME, "model_dir": model_dir, "echo": data}
'''


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_port_file(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        if proc.poll() is not None:
            raise RuntimeError(f"process exited {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.02)
    raise RuntimeError(f"no port file after {timeout}s:\n{log.read_text()}")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in started:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    d = tmp_path / "code"
    d.mkdir()
    (d / "score.py").write_text(SCORE_PY)
    return d


@pytest.fixture
def start_host(tmp_path: Path, code_dir: Path, procs: list[subprocess.Popen[bytes]]) -> Callable[..., Proc]:
    counter = iter(range(1000))

    def start(name: str = "x", workers: int = 1, env: dict[str, str] | None = None,
              args: list[str] | None = None, wait: bool = True) -> Proc:
        i = next(counter)
        log, port_file = tmp_path / f"host-{name}-{i}.log", tmp_path / f"host-{name}-{i}.port"
        full_env = {**os.environ, "NAME": name, **(env or {})}
        cmd = [sys.executable, str(HOST_SCRIPT), "--entry_script", "score.py", "--port", "0",
               "--port-file", str(port_file), "--worker_count", str(workers), *(args or [])]
        proc = subprocess.Popen(cmd, cwd=code_dir, env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        procs.append(proc)
        port = wait_port_file(port_file, proc, log) if wait else 0
        return Proc(proc, port, log)

    return start


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"primaryKey": PRIMARY, "secondaryKey": SECONDARY}))
    path.chmod(0o600)
    return path


def write_table(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


@pytest.fixture(scope="session")
def router_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The router as the providers ship it: the zip archive of its package."""
    return router_zipapp(tmp_path_factory.mktemp("router"))


@pytest.fixture
def start_router(tmp_path: Path, keys_file: Path, router_pyz: Path,
                 procs: list[subprocess.Popen[bytes]]) -> Callable[..., tuple[Proc, Path]]:
    def start(deployments: dict[str, Any], traffic: dict[str, int] | None = None,
              mirror: dict[str, int] | None = None, version: int = 1,
              extra: dict[str, Any] | None = None, nofile: int | None = None) -> tuple[Proc, Path]:
        table = tmp_path / "table.json"
        write_table(table, {"version": version, "endpoint": "ep", "auth_mode": "key", "keys_file": str(keys_file),
                            "deployments": deployments, "traffic": traffic or {}, "mirror_traffic": mirror or {},
                            **(extra or {})})
        log, port_file = tmp_path / "router.log", tmp_path / "router.port"
        proc = subprocess.Popen([sys.executable, str(router_pyz), "--table", str(table), "--host", "127.0.0.1",
                                 "--port", "0", "--port-file", str(port_file)],
                                stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
                                if nofile else None)
        procs.append(proc)
        return Proc(proc, wait_port_file(port_file, proc, log), log), table

    return start


def call(port: int, body: Any = None, headers: dict[str, str] | None = None, method: str = "POST",
         path: str = "/score", key: str | None = PRIMARY,
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    conn.request(method, path, data, h)
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return out


def router_health(port: int) -> dict[str, Any]:
    status, _, body = call(port, method="GET", path="/-/router", key=PRIMARY)
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


def wait_version(port: int, version: int, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = router_health(port)
        if health["version"] == version:
            return health
        time.sleep(0.02)
    raise AssertionError(f"router still at version {router_health(port)['version']}, wanted {version}")

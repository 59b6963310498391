"""A real Prometheus server for tests (Debian's ``prometheus``, installed by .ci/setup-prometheus.sh):
started on 127.0.0.1 with a scrape config of the test's, its data folder in tmp, nothing that talks
to the outside (no remote write, no alerting, no service discovery beyond the static targets), and
read back through its HTTP API (``/api/v1/query``)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

SETUP = Path(__file__).resolve().parents[2] / ".ci" / "setup-prometheus.sh"


def binary() -> str:
    """The prometheus executable, installed by the CI script when missing (it is idempotent)."""
    found = shutil.which("prometheus")
    if found is None:
        subprocess.run(["bash", str(SETUP)], check=True, stdin=subprocess.DEVNULL, timeout=600)
        found = shutil.which("prometheus")
    assert found is not None, "prometheus is not installed (bash .ci/setup-prometheus.sh)"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """One server scraping ``targets`` (``host:port``) at ``/-/metrics`` every ``interval`` seconds
    with ``Authorization: Bearer <key>``."""

    def __init__(self, workdir: Path, targets: list[str], key: str, interval: float = 0.5) -> None:
        self.dir = workdir
        self.port = free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "key").write_text(key)
        (self.dir / "key").chmod(0o600)
        # the docs/runtime.md scrape config, with the test's targets and a short interval
        (self.dir / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": f"{int(interval * 1000)}ms",
                       "scrape_timeout": f"{int(interval * 1000)}ms"},
            "scrape_configs": [{
                "job_name": "recon-router",
                "metrics_path": "/-/metrics",
                "authorization": {"type": "Bearer", "credentials_file": str(self.dir / "key")},
                "static_configs": [{"targets": targets}],
            }],
        }))
        self.log = self.dir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Prometheus:
        self.proc = subprocess.Popen(
            [binary(), f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
             "--log.level=info"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc = json.loads(resp.read())
        assert doc.get("status") == "success", doc
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [t, "v"]}]``."""
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        """The one value of a query whose result is a single sample (None when empty)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def targets_up(self) -> list[dict[str, Any]]:
        return [t for t in self.get("/api/v1/targets")["activeTargets"] if t.get("health") == "up"]

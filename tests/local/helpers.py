"""Helpers for the local provider tests: a provider in a tmp project, ApplyRequests built by hand
(as the engine builds them from a plan), HTTP calls through the router, and a safety net that stops
every process a test left behind."""

from __future__ import annotations

import hashlib
import http.client
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.local import LocalProvider
from providers.shared import procs
from reconciler.model.resources import digest_of
from reconciler.plan.provider import ApplyRequest
from reconciler.state.document import StateResource

# A scoring script with Azure's contract: init() once, run(raw_data) per request.
SCORE_PY = """\
import json
import os

VERSION = "v1"


def init():
    global tag
    if os.environ.get("FAIL_INIT"):
        raise RuntimeError("init failed on purpose: " + os.environ["FAIL_INIT"])
    tag = os.environ.get("VERSION", VERSION)
    print("init done", tag, flush=True)


def run(raw_data):
    return {"version": tag, "file": VERSION, "pid": os.getpid(), "echo": json.loads(raw_data)}
"""

FAST_PROBE = {"initial_delay": 0, "period": 1, "timeout": 2, "success_threshold": 1, "failure_threshold": 10}


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
    return "sha256:" + h.hexdigest()


@dataclass
class Project:
    """A tmp project with one local provider and the resources the test made."""

    root: Path
    provider: LocalProvider
    events: list[str] = field(default_factory=list)
    resources: dict[str, StateResource] = field(default_factory=dict)

    # -- requests ------------------------------------------------------------------------------
    def request(self, kind: str, name: str, attrs: dict[str, Any], address: str | None = None,
                refs: dict[str, dict[str, Any]] | None = None) -> ApplyRequest:
        address = address or f"{kind}.{name}"
        return ApplyRequest(address=address, type=kind, name=name, attributes=attrs,  # type: ignore[arg-type]
                            prior=self.resources.get(address), refs=refs or {}, on_event=self.events.append)

    def record(self, req: ApplyRequest, outputs: dict[str, Any]) -> StateResource:
        res = StateResource(address=req.address, type=req.type, name=req.name, provider="local",  # type: ignore[arg-type]
                            attributes=req.attributes, outputs=outputs)
        self.resources[req.address] = res
        return res

    def create(self, req: ApplyRequest) -> StateResource:
        return self.record(req, self.provider.create(req))

    # -- canonical attributes --------------------------------------------------------------------
    def environment(self, name: str = "env", version: str = "1", conda: dict[str, Any] | None = None) -> ApplyRequest:
        attrs = {"name": name, "version": version, "image": None, "conda_file": "conda.yaml" if conda else None,
                 "conda": conda, "build": None, "inference_config": None, "os_type": "linux",
                 "description": None, "tags": {}, "content_digest": digest_of({"conda": conda})}
        return self.request("environment", f"{name}:{version}", attrs)

    def model(self, name: str = "m", version: str = "1", path: str = "model") -> ApplyRequest:
        src = self.root / path
        if not src.exists():
            src.mkdir(parents=True)
            (src / "weights.txt").write_text("42\n")
        attrs = {"name": name, "version": version, "path": path, "type": "custom_model", "description": None,
                 "tags": {}, "content_digest": tree_digest(src) if src.is_dir() else "sha256:file",
                 "anonymous": False}
        return self.request("model", f"{name}:{version}", attrs)

    def endpoint(self, name: str = "ep", traffic: dict[str, int] | None = None) -> ApplyRequest:
        attrs = {"name": name, "kind": "managed", "auth_mode": "key", "compute": None, "identity": None,
                 "public_network_access": None, "description": None, "tags": {}, "traffic": traffic or {},
                 "mirror_traffic": {}, "traffic_declared": traffic is not None}
        return self.request("endpoint", name, attrs)

    def deployment(self, name: str = "blue", endpoint: str = "ep", count: int = 1, code: str = "code",
                   env_vars: dict[str, str] | None = None, model: ApplyRequest | None = None,
                   environment: ApplyRequest | None = None, script: str = "score.py",
                   probe: dict[str, Any] | None = None) -> ApplyRequest:
        code_dir = self.root / code
        if not code_dir.exists():
            code_dir.mkdir(parents=True)
            (code_dir / script).write_text(SCORE_PY)
        refs: dict[str, dict[str, Any]] = {}
        if model is not None:
            refs[model.address] = model.attributes
        if environment is not None:
            refs[environment.address] = environment.attributes
        probe = probe or FAST_PROBE
        attrs = {
            "name": name, "endpoint_name": endpoint, "kind": "managed",
            "model": model.address if model else None,
            "environment": environment.address if environment else None,
            "code": {"path": code, "digest": tree_digest(code_dir)}, "scoring_script": script,
            "instance_type": "Standard_DS3_v2", "instance_count": count, "scale_settings": {"type": "default"},
            "request_settings": {"request_timeout_ms": 5000, "max_concurrent_requests_per_instance": 1,
                                 "max_queue_wait_ms": 2000},
            "liveness_probe": dict(probe), "readiness_probe": dict(probe),
            "environment_variables": env_vars or {}, "resources": None, "properties": {}, "tags": {},
            "description": None, "app_insights_enabled": False, "egress_public_network_access": None,
            "data_collector": None, "extra": {},
        }
        return self.request("deployment", f"{endpoint}.{name}", attrs, address=f"deployment.{endpoint}.{name}",
                            refs=refs)

    # -- calls -----------------------------------------------------------------------------------
    def keys(self, endpoint: str = "ep") -> tuple[str, int]:
        keys = self.provider.credentials(self.resources[f"endpoint.{endpoint}"])
        port = int(keys.scoring_uri.split(":")[2].split("/")[0])
        return keys.primary_key, port

    def score(self, endpoint: str = "ep", body: Any = None, key: str | None = "", deployment: str | None = None,
              timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        primary, port = self.keys(endpoint)
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key or primary}"
        if deployment:
            headers["azureml-model-deployment"] = deployment
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("POST", "/score", body=json.dumps(body if body is not None else {"x": 1}), headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw.decode(errors="replace")
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()


def alive_marked(state_dir: Path) -> list[int]:
    """Pids of live processes started for this project (by their marks)."""
    return [pid for pid, env in procs.marked_processes() if env.get(procs.MARK_STATE_DIR) == str(state_dir)]



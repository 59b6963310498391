"""Requests for the Kubernetes provider built from canonical attributes over real files, as the
engine builds them from a plan, and a recorder that keeps outputs as the state would."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.kubernetes import KubernetesProvider
from reconciler.plan.provider import ApplyRequest, ProviderContext
from reconciler.state.document import StateResource
from tests.canonical import deployment_attrs, endpoint_attrs, environment_attrs, model_attrs

SCORE_PY = """\
import json
import os


def init():
    global release
    release = os.environ.get("RELEASE", "none")


def run(raw_data):
    return {"release": release, "echo": json.loads(raw_data)}
"""
FAST_PROBE = {"initial_delay": 0, "period": 1, "timeout": 2, "success_threshold": 1, "failure_threshold": 10}


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
    return "sha256:" + h.hexdigest()


@dataclass
class Project:
    provider: KubernetesProvider
    root: Path
    recorded: dict[str, StateResource] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, root: Path, settings: dict[str, Any], workspace: str = "k8s-test") -> Project:
        root.mkdir(parents=True, exist_ok=True)
        context = ProviderContext(project_root=root, state_dir=root / ".recon", cache_dir=root / "cache",
                                  workspace=workspace)
        return cls(KubernetesProvider(dict(settings), context), root)

    def environment(self) -> ApplyRequest:
        attrs = environment_attrs("env", "1", image=None, content_digest="sha256:env1")
        return self.request("environment", "env", "environment.env:1", attrs)

    def model(self) -> ApplyRequest:
        folder = self.root / "model"
        folder.mkdir(exist_ok=True)
        (folder / "weights.txt").write_text("42\n")
        return self.request("model", "m", "model.m:1", model_attrs("m", "1", content_digest=tree_digest(folder)))

    def endpoint(self, name: str = "ep") -> ApplyRequest:
        return self.request("endpoint", name, f"endpoint.{name}", endpoint_attrs(name))

    def deployment(self, name: str = "blue", count: int = 1, release: str = "v1", **overrides: Any) -> ApplyRequest:
        code = self.root / "code"
        code.mkdir(exist_ok=True)
        (code / "score.py").write_text(SCORE_PY)
        model, env, ep = self.model(), self.environment(), self.endpoint()
        attrs = deployment_attrs(
            name, "ep", model=model.address, environment=env.address,
            code={"path": "code", "digest": tree_digest(code)}, instance_count=count,
            liveness_probe=dict(FAST_PROBE), readiness_probe=dict(FAST_PROBE),
            environment_variables={"RELEASE": release}, instance_type=None,
            resources={"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
        )
        attrs.update(overrides)
        refs = {model.address: model.attributes, env.address: env.attributes, ep.address: ep.attributes}
        return self.request("deployment", name, f"deployment.ep.{name}", attrs, refs)

    def request(self, type_: str, name: str, address: str, attrs: dict[str, Any],
                refs: dict[str, dict[str, Any]] | None = None) -> ApplyRequest:
        return ApplyRequest(address=address, type=type_, name=name, attributes=attrs,
                            prior=self.recorded.get(address), refs=refs or {}, on_event=self.events.append)

    def record(self, request: ApplyRequest, outputs: dict[str, Any]) -> StateResource:
        old = self.recorded.get(request.address)
        res = StateResource(address=request.address, type=request.type, name=request.name,  # type: ignore[arg-type]
                            provider="kubernetes", attributes=dict(request.attributes),
                            outputs={**(old.outputs if old else {}), **outputs})
        self.recorded[request.address] = res
        json.dumps(res.outputs)  # plain JSON
        return res

    def create(self, request: ApplyRequest) -> StateResource:
        return self.record(request, self.provider.create(request))

    def stack(self, count: int = 1, **overrides: Any) -> dict[str, StateResource]:
        made = {r.address: self.create(r) for r in (self.environment(), self.model(), self.endpoint())}
        dep = self.create(self.deployment("blue", count, **overrides))
        made[dep.address] = dep
        return made

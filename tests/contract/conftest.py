"""The ``provider`` fixture of the contract suite: one ``Harness`` per provider kind.

Every provider in ``PROVIDER_KINDS`` runs the same tests (Terraform's ``backend.TestBackendStates``
pattern). A provider whose module cannot be imported yet is skipped, naming the import error; a
provider that imports must pass. The harness builds canonical attributes over real files (a model
folder, a code folder with a scoring script that keeps Azure's contract), as the engine builds
requests from a plan, and removes whatever a test left running.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.model.errors import ProviderError
from reconciler.model.resources import digest_of
from reconciler.plan.provider import ApplyRequest, Provider, ProviderContext
from reconciler.state.document import StateResource
from tests.canonical import deployment_attrs, endpoint_attrs, environment_attrs, model_attrs
from tests.requests import routed

PROVIDER_KINDS = {
    "fake": ("providers.fake", "FakeProvider", {}),
    "local": ("providers.local", "LocalProvider", {"reuse_host_packages": True}),
    # the Azure base image is replaced by the small local one (no registry is reachable in CI)
    "docker": (
        "providers.docker",
        "DockerProvider",
        {"image_overrides": {"mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest": "local/py-base:bookworm"}},
    ),
    # against the ARM emulator of tests/azure (settings come from it)
    "azure": ("providers.azure", "AzureProvider", {}),
}

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
class Harness:
    """A provider in a temporary project, plus what the tests created (to clean up)."""

    kind: str
    provider: Provider
    root: Path
    recorded: dict[str, StateResource] = field(default_factory=dict)
    outputs_seen: list[dict[str, Any]] = field(default_factory=list)

    # -- canonical attributes ------------------------------------------------------------------
    def environment(self) -> ApplyRequest:
        attrs = environment_attrs("env", "1", image=None, content_digest=digest_of({"conda": None}))
        return self.request("environment", "env", "environment.env:1", attrs)

    def model(self) -> ApplyRequest:
        folder = self.root / "model"
        folder.mkdir(exist_ok=True)
        (folder / "weights.txt").write_text("42\n")
        attrs = model_attrs("m", "1", content_digest=tree_digest(folder))
        return self.request("model", "m", "model.m:1", attrs)

    def endpoint(self, name: str = "ep") -> ApplyRequest:
        attrs = endpoint_attrs(name)
        return self.request("endpoint", name, f"endpoint.{name}", attrs)

    def deployment(self, name: str = "blue", count: int = 1, release: str = "v1", score: str | None = None,
                   variables: dict[str, str] | None = None, request_settings: dict[str, Any] | None = None) -> ApplyRequest:
        code = self.root / "code"
        code.mkdir(exist_ok=True)
        (code / "score.py").write_text(SCORE_PY if score is None else score)  # read when called: tests patch SCORE_PY
        model, env, ep = self.model(), self.environment(), self.endpoint()
        attrs = deployment_attrs(
            name,
            "ep",
            model=model.address,
            environment=env.address,
            code={"path": "code", "digest": tree_digest(code)},
            instance_count=count,
            liveness_probe=dict(FAST_PROBE),
            readiness_probe=dict(FAST_PROBE),
            environment_variables={"RELEASE": release, **(variables or {})},
            **({"request_settings": request_settings} if request_settings else {}),
        )
        refs = {model.address: model.attributes, env.address: env.attributes, ep.address: ep.attributes}
        return self.request("deployment", name, f"deployment.ep.{name}", attrs, refs)

    def request(
        self,
        type_: str,
        name: str,
        address: str,
        attrs: dict[str, Any],
        refs: dict[str, dict[str, Any]] | None = None,
    ) -> ApplyRequest:
        return ApplyRequest(
            address=address,
            type=type_,
            name=name,
            attributes=attrs,
            prior=self.recorded.get(address),
            refs=refs or {},
        )

    # -- calls that record, as the engine does -------------------------------------------------
    def record(self, request: ApplyRequest, outputs: dict[str, Any]) -> StateResource:
        self.outputs_seen.append(outputs)
        old = self.recorded.get(request.address)
        res = StateResource(
            address=request.address,
            type=request.type,
            name=request.name,  # type: ignore[arg-type]
            provider=self.kind,
            attributes=dict(request.attributes),
            outputs={**(old.outputs if old else {}), **outputs},
        )
        self.recorded[request.address] = res
        return res

    def create(self, request: ApplyRequest) -> StateResource:
        return self.record(request, self.provider.create(request))

    def stack(self, count: int = 1, names: tuple[str, ...] = ("blue",)) -> dict[str, StateResource]:
        """environment, model, endpoint and deployments, created in the order the engine uses."""
        made = {r.address: self.create(r) for r in (self.environment(), self.model(), self.endpoint())}
        for name in names:
            dep = self.create(self.deployment(name, count))
            made[dep.address] = dep
        return made

    def teardown(self) -> None:
        ep = self.recorded.get("endpoint.ep")
        if ep is not None:
            with contextlib.suppress(ProviderError):
                self.provider.set_routing(routed(self.request("endpoint", "ep", ep.address, ep.attributes), {}, {}))
        order = {"deployment": 0, "endpoint": 1, "model": 2, "environment": 3}
        for res in sorted(self.recorded.values(), key=lambda r: order[r.type]):
            with contextlib.suppress(ProviderError):
                self.provider.delete(res)
        self.provider.close()
        if self.kind == "local":  # safety net: no process of this test outlives it
            from providers.shared import procs

            state_dir = str(Path(self.provider.context.state_dir).resolve())
            for pid, env in procs.marked_processes():
                if env.get(procs.MARK_STATE_DIR) == state_dir:
                    procs.stop(pid, procs.start_time(pid), grace=2.0)
        if self.kind == "docker":  # safety net: no container or network of this test outlives it
            from tests.docker.engine import remove_labelled

            remove_labelled(Path(self.provider.context.state_dir).resolve())


# kubernetes: the cluster of tests/kubernetes (kwok nodes), a namespace per test; marked so it runs last
PROVIDER_KINDS["kubernetes"] = ("providers.kubernetes", "KubernetesProvider", {})


@pytest.fixture(params=[pytest.param(k, marks=pytest.mark.kubernetes) if k == "kubernetes" else k
                        for k in PROVIDER_KINDS])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    yield from provider_harness(request.param, request, tmp_path)


def provider_harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The body of the ``provider`` fixture for one provider ``kind`` (other suites' fixtures use it)."""
    module_name, class_name, settings = PROVIDER_KINDS[kind]
    if kind == "kubernetes":
        from tests.kubernetes.conftest import kubernetes_contract_settings

        settings = kubernetes_contract_settings(request)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.skip(f"provider {kind} is not importable yet: {exc}")
    if kind == "docker":
        from tests.docker.engine import require_engine

        require_engine()
    stack = contextlib.ExitStack()
    if kind == "azure":
        from tests.azure.fixtures import emulated_workspace

        settings = {**settings, **stack.enter_context(emulated_workspace()).settings()}
    root = tmp_path / "project"
    root.mkdir()
    context = ProviderContext(
        project_root=root, state_dir=root / ".recon", cache_dir=tmp_path / "cache", workspace="contract"
    )
    harness = Harness(kind, getattr(module, class_name)(dict(settings), context), root)
    try:
        yield harness
    finally:
        harness.teardown()
        stack.close()

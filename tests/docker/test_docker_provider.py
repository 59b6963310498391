"""The Docker provider against the real engine: images (pull errors, builds, reuse, removal),
resource limits, health checks, and what happens without an engine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.docker import DockerProvider
from reconciler.model.errors import PermanentError, ProviderError
from reconciler.model.resources import digest_of
from reconciler.plan.provider import ApplyRequest, ProviderContext
from tests.contract.conftest import Harness
from tests.docker.engine import OVERRIDES, client, labelled_containers, remove_labelled, require_engine
from tests.requests import counted

pytestmark = pytest.mark.docker


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    require_engine()
    root = tmp_path / "project"
    root.mkdir()
    context = ProviderContext(project_root=root, state_dir=root / ".recon", cache_dir=tmp_path / "cache",
                              workspace="docker-tests")
    h = Harness("docker", DockerProvider({"image_overrides": dict(OVERRIDES)}, context), root)
    try:
        yield h
    finally:
        h.teardown()
        remove_labelled((root / ".recon").resolve())


def _env(h: Harness, name: str, **attrs: Any) -> ApplyRequest:
    base = h.environment()
    merged = {**base.attributes, "name": name, **attrs}
    merged["content_digest"] = digest_of({k: merged.get(k) for k in ("image", "conda", "build", "tag")})
    return h.request("environment", name, f"environment.{name}:1", merged)


def test_pull_failure_names_the_image_the_registry_and_image_overrides(harness: Harness) -> None:
    request = _env(harness, "missing", image="registry.invalid.example/team/none:1")
    with pytest.raises(PermanentError) as err:
        harness.provider.create(request)
    text = str(err.value)
    assert "registry.invalid.example/team/none:1" in text and "registry registry.invalid.example" in text
    assert "image_overrides" in text


def test_build_context_is_built_once_labelled_reused_and_removed(harness: Harness) -> None:
    ctx = harness.root / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM local/py-base:bookworm\nRUN echo built-by-test > /marker\n")
    request = _env(harness, "custom", build={"path": "ctx", "dockerfile_path": "Dockerfile"}, tag=str(ctx))
    lines: list[str] = []
    sink = ApplyRequest(**{**request.__dict__, "on_event": lines.append})
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(harness.provider.create(sink))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len({r["image"] for r in results}) == 1
    tag = results[0]["image"]
    assert tag.startswith("recon-env:") and len(tag.split(":")[1]) == 12
    assert lines.count(f"image {tag} built") == 1, "built once for three callers"
    assert any("built-by-test" in line or "RUN echo" in line for line in lines), "build output streamed"
    labels = client().images.get(tag).labels
    assert labels["recon.managed"] == "true" and labels["recon.environment"] == "custom:1"
    assert labels["recon.workspace"] == "docker-tests"
    res = harness.record(request, results[0])
    assert harness.provider.observe(res).exists
    harness.provider.delete(res)
    assert not client().images.list(name=tag), "delete removes the image recon built"
    assert harness.provider.observe(res).exists is False


def test_failed_build_shows_its_last_lines(harness: Harness) -> None:
    ctx = harness.root / "bad"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM local/py-base:bookworm\nRUN echo about-to-fail && exit 7\n")
    request = _env(harness, "bad", build={"path": "bad", "dockerfile_path": "Dockerfile"}, tag=str(ctx))
    with pytest.raises(PermanentError) as err:
        harness.provider.create(request)
    assert "building image" in str(err.value) and "failed" in str(err.value)
    assert any("about-to-fail" in line for line in err.value.detail), err.value.detail


def test_keep_images_keeps_built_images(harness: Harness, tmp_path: Path) -> None:
    ctx = harness.root / "keep"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM local/py-base:bookworm\nRUN echo keep > /keep\n")
    keeper = DockerProvider({"image_overrides": dict(OVERRIDES), "keep_images": True}, harness.provider.context)
    request = _env(harness, "kept", build={"path": "keep", "dockerfile_path": "Dockerfile"}, tag=str(ctx))
    res = harness.record(request, keeper.create(request))
    keeper.delete(res)
    assert client().images.list(name=res.outputs["image"]), "keep_images: true keeps the image"
    harness.provider.delete(res)  # without keep_images: removed
    assert not client().images.list(name=res.outputs["image"])


def test_limits_health_check_labels_and_capacity(harness: Harness) -> None:
    harness.stack(count=0)
    request = harness.deployment(count=1)
    attrs = {**request.attributes, "resources": {"requests": {"cpu": "250m", "memory": "128Mi"},
                                                 "limits": {"cpu": "500m", "memory": "256Mi"}}}
    request = harness.request("deployment", "blue", request.address, attrs, request.refs)
    harness.record(request, harness.provider.scale(counted(request, 1)))
    state_dir = (harness.root / ".recon").resolve()
    inst = next(c for c in labelled_containers(state_dir) if c.labels.get("recon.role") == "instance")
    host = inst.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 256 * 1024**2
    health = inst.attrs["Config"]["Healthcheck"]
    assert health["Interval"] == 1_000_000_000 and health["Retries"] == 10  # FAST_PROBE: period 1, threshold 10
    labels = inst.labels
    assert labels["recon.endpoint"] == "ep" and labels["recon.deployment"] == "blue"
    assert labels["recon.instance"].isdigit() and labels["recon.config_digest"].startswith("sha256:")
    assert labels["recon.workspace"] == "docker-tests" and labels["recon.state_dir"] == str(state_dir)
    cap = harness.provider.capacity()
    info = client().info()
    assert cap.cpus == float(info["NCPU"]) and cap.memory_gb and cap.memory_gb > 0


def test_instance_type_limits_are_capped_at_the_engine(harness: Harness) -> None:
    harness.stack(count=1)  # Standard_DS3_v2: 4 vCPUs, 14 GB
    state_dir = (harness.root / ".recon").resolve()
    inst = next(c for c in labelled_containers(state_dir) if c.labels.get("recon.role") == "instance")
    cpus = float(client().info()["NCPU"])
    assert inst.attrs["HostConfig"]["NanoCpus"] == int(min(4.0, cpus) * 1e9)


def test_no_engine_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    context = ProviderContext(project_root=tmp_path, state_dir=tmp_path / ".recon", cache_dir=tmp_path / "c")
    provider = DockerProvider({}, context)
    with pytest.raises(ProviderError) as err:
        provider.capacity()
    assert "no Docker engine answers" in str(err.value) and "dockerd" in str(err.value)
    assert "DOCKER_HOST" in str(err.value)


def test_router_recreated_with_another_port_is_reported_and_replaced(harness: Harness) -> None:
    made = harness.stack(count=0)
    ep = made["endpoint.ep"]
    state_dir = (harness.root / ".recon").resolve()
    router = next(c for c in labelled_containers(state_dir) if c.labels.get("recon.role") == "router")
    cfg, host = router.attrs["Config"], router.attrs["HostConfig"]
    router.remove(force=True)
    client().containers.run(cfg["Image"], command=cfg["Cmd"], name=router.name, labels=cfg["Labels"],
                            volumes=host["Binds"], ports={"8080/tcp": ("127.0.0.1", None)}, detach=True)
    obs = harness.provider.observe(ep)
    assert obs.exists is False and "does not publish" in obs.problems[0], obs
    harness.create(harness.endpoint())  # what the next apply does
    assert harness.provider.observe(ep).exists
    assert harness.provider.credentials(ep).scoring_uri == ep.outputs["scoring_uri"], "the port is stable"

"""Environments (virtualenvs, host packages) and models (Azure's layout) on the local provider."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from providers.local import LocalProvider
from providers.shared.requirements import RUNTIME_PACKAGE, pip_plan
from reconciler.model.errors import PermanentError
from reconciler.plan.provider import ProviderContext
from tests.conftest import ONLINE
from tests.local.helpers import Project

AZURE_CONDA = {
    "name": "model-env",
    "channels": ["conda-forge"],
    "dependencies": ["python=3.12", "numpy=2.3.1", "pip=25.1.1", "scikit-learn=1.7.0", "scipy=1.16.0",
                     {"pip": ["azureml-inference-server-http==1.4.1", "inference-schema[numpy-support]", "joblib"]}],
}


def test_conda_dependencies_become_pip_requirements() -> None:
    plan = pip_plan(AZURE_CONDA)
    assert plan.requirements == ["numpy==2.3.1", "scikit-learn==1.7.0", "scipy==1.16.0",
                                 "azureml-inference-server-http==1.4.1", "inference-schema[numpy-support]",
                                 "joblib"]
    assert plan.conda_only == {"python": "3.12", "pip": "25.1.1"}


@pytest.mark.parametrize(
    ("dep", "req"),
    [("numpy", "numpy"), ("numpy=1.26", "numpy==1.26.*"), ("conda-forge::pandas=2.2.1", "pandas==2.2.1"),
     ("scipy>=1.10", "scipy>=1.10"), ("pytorch=2.3.0", "torch==2.3.0"), ("numpy=1.26.4=py311h1", "numpy==1.26.4")],
)
def test_conda_spec_forms(dep: str, req: str) -> None:
    assert pip_plan({"dependencies": [dep]}, add_runtime=False).requirements == [req]


def test_runtime_is_added_only_when_missing() -> None:
    assert pip_plan({"dependencies": [{"pip": ["joblib"]}]}).requirements == ["joblib", RUNTIME_PACKAGE]
    assert pip_plan(None).requirements == [RUNTIME_PACKAGE]
    assert pip_plan({"dependencies": [{"pip": ["azureml_inference_server_http>=1"]}]}).requirements == [
        "azureml_inference_server_http>=1"
    ]


def test_reuse_host_packages_runs_the_host_python_and_warns(project: Project) -> None:
    req = project.environment(conda={"dependencies": ["python=3.99", "pip", {"pip": ["surely-not-installed-pkg"]}]})
    out = project.provider.create(req)
    assert out["python"] == sys.executable and out["venv"] is None
    assert any("python=3.99" in w for w in out["warnings"])
    assert any("surely-not-installed-pkg" in w for w in out["warnings"])
    assert any("warning:" in e and "python=3.99" in e for e in project.events)
    assert project.provider.observe(project.record(req, out)).exists


def test_docker_build_context_is_refused_pointing_to_docker(project: Project) -> None:
    req = project.environment()
    req.attributes["build"] = {"path": "docker-ctx", "dockerfile_path": "Dockerfile"}
    with pytest.raises(PermanentError, match="kind: docker"):
        project.provider.create(req)


def test_model_folder_is_laid_out_as_azure_does(project: Project) -> None:
    shutil.copytree(ONLINE / "model-1" / "model", project.root / "model-1" / "model")
    req = project.model("my-model", "1", path="model-1/model")
    out = project.provider.create(req)
    model_dir = Path(out["model_dir"])
    assert model_dir == project.provider.state_dir / "models" / "my-model" / "1"
    assert sorted(p.name for p in model_dir.iterdir()) == ["model"]
    assert (model_dir / "model" / "sklearn_regression_model.pkl").read_bytes() == (
        ONLINE / "model-1" / "model" / "sklearn_regression_model.pkl"
    ).read_bytes()


def test_model_copy_is_independent_of_later_project_edits(project: Project) -> None:
    req = project.model("m", "1", path="weights")
    out = project.provider.create(req)
    (project.root / "weights" / "weights.txt").write_text("changed\n")
    assert (Path(out["model_dir"]) / "weights" / "weights.txt").read_text() == "42\n"


def test_single_file_model(project: Project) -> None:
    (project.root / "model.pkl").write_bytes(b"\x80\x04K*.")
    out = project.provider.create(project.model("single", "3", path="model.pkl"))
    assert (Path(out["model_dir"]) / "model.pkl").read_bytes() == b"\x80\x04K*."


def _venv_context(tmp_path: Path) -> tuple[ProviderContext, LocalProvider]:
    ctx = ProviderContext(project_root=tmp_path, state_dir=tmp_path / ".recon", cache_dir=tmp_path / "cache")
    return ctx, LocalProvider({}, ctx)


@pytest.mark.slow
def test_real_virtualenv_build_is_shared_locked_and_reused(tmp_path: Path) -> None:
    _, provider = _venv_context(tmp_path)
    conda = {"dependencies": ["python=3.11", {"pip": ["joblib"]}]}
    proj = Project(tmp_path, provider)
    req = proj.environment("joblib-env", "1", conda=conda)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(provider.create(req))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    # Two builds of the same digest at once (two projects): one builds, the other waits and reuses.
    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert errors == [] and len(results) == 2
    assert results[0]["venv"] == results[1]["venv"]
    venv = Path(results[0]["venv"])
    assert venv.parent == tmp_path / "cache" / "venvs"
    assert [p.name for p in venv.parent.iterdir() if p.is_dir()] == [venv.name]  # no temp folder left
    check = subprocess.run([results[0]["python"], "-c", "import joblib, azureml_inference_server_http; "
                            "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == str(venv)
    assert any("pip install" in e for e in proj.events)  # pip's output streamed as events
    # another project with the same environment content reuses the virtualenv without building
    other = Project(tmp_path / "other", LocalProvider({}, ProviderContext(
        project_root=tmp_path / "other", state_dir=tmp_path / "other" / ".recon", cache_dir=tmp_path / "cache")))
    again = other.provider.create(other.environment("joblib-env", "1", conda=conda))
    assert again["venv"] == str(venv) and other.events == []


@pytest.mark.slow
def test_failed_pip_install_shows_its_last_lines(tmp_path: Path) -> None:
    _, provider = _venv_context(tmp_path)
    proj = Project(tmp_path, provider)
    req = proj.environment("broken", "1", conda={"dependencies": [{"pip": ["./no-such-local-package-dir"]}]})
    with pytest.raises(PermanentError, match="pip install failed") as err:
        provider.create(req)
    assert any("no-such-local-package-dir" in line for line in err.value.detail)
    assert not any(p.is_dir() for p in (tmp_path / "cache" / "venvs").iterdir())

"""Property-based fuzzing of what recon reads (issue 13, section 3): Azure ML documents, raw YAML
text and bytes, recon.yaml, and odd filesystem entries, checked by ``harness.check_output``.

Deterministic: ``derandomize=True`` (the cases follow from each test's name, the same on every run
and machine) and no example database, so CI runs exactly the cases a developer runs. About 2,700
cases in process and 25 through the real ``recon validate`` process; ``RECON_FUZZ_SCALE=10`` runs
ten times as many (for a longer hunt by hand; the seed stays fixed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies as fz
from tests.fuzz.harness import base_project, check_output, run_in_process, run_process

SCALE = int(os.environ.get("RECON_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples * SCALE,
        derandomize=True,
        database=None,
        deadline=None,  # hangs are caught by the harness's watchdog, not by timing each example
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RECON_STATE_DSN", raising=False)  # a generated postgres backend never connects
    monkeypatch.delenv("RECON_DEBUG", raising=False)
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    with base_project() as project:
        yield project


def write_case(
    project: Path, docs: list[dict[str, Any]], recon: str | None = None, oddities: tuple[str, ...] | list[str] = ()
) -> Path:
    """The base project with this case's documents, recon.yaml and odd entries."""
    fz.reset(project)
    for i, doc in enumerate(docs):
        (project / f"doc{i}.yml").write_text(fz.dump(doc), encoding="utf-8")
    if recon is not None:
        (project / "recon.yaml").write_text(recon, encoding="utf-8", errors="surrogatepass")
    for name in oddities:
        fz.add_oddity(project, name)
    return project


@fuzz_settings(1000)
@given(docs=st.lists(fz.documents(), min_size=1, max_size=3))
def test_documents(base: Path, docs: list[dict[str, Any]]) -> None:
    project = write_case(base, docs)
    check_output(*run_in_process(project), project)


@fuzz_settings(200)
@given(docs=st.lists(fz.documents(), min_size=1, max_size=2))
def test_documents_plan_json(base: Path, docs: list[dict[str, Any]]) -> None:
    """``plan --format json`` shows every attribute: still nothing of the files outside."""
    project = write_case(base, docs, "provider: {kind: fake}\n")
    check_output(*run_in_process(project, "plan", "--format", "json", "--detailed-exitcode"), project, (0, 1, 2))


DEPLOYMENT = {
    "$schema": fz.S.format("managedOnlineDeployment"),
    "name": "blue",
    "endpoint_name": "my-endpoint",
    "model": {"path": "model/"},
    "code_configuration": {"code": "code/", "scoring_script": "score.py"},
    "environment": {"image": "python:3.11", "conda_file": "env/conda.yml"},
    "instance_type": "Standard_DS3_v2",
}


@fuzz_settings(700)
@given(text=fz.raw_bytes, as_conda=st.booleans())
def test_raw_yaml(base: Path, text: bytes, as_conda: bool) -> None:
    """Text of YAML's sharp edges as a document, or as the conda file a valid deployment names."""
    project = write_case(base, [DEPLOYMENT] if as_conda else [])
    (project / ("env/conda.yml" if as_conda else "raw.yml")).write_bytes(text)
    check_output(*run_in_process(project), project)


@fuzz_settings(600)
@given(recon=fz.recon_yaml, docs=st.lists(fz.documents(), max_size=1))
def test_recon_yaml(base: Path, recon: str, docs: list[dict[str, Any]]) -> None:
    project = write_case(base, docs, recon)
    check_output(*run_in_process(project), project)


@fuzz_settings(200)
@given(
    oddities=st.lists(st.sampled_from(fz.ODDITIES), min_size=1, max_size=3, unique=True),
    docs=st.lists(fz.documents(), max_size=2),
)
def test_filesystem_oddities(base: Path, oddities: list[str], docs: list[dict[str, Any]]) -> None:
    project = write_case(base, docs, None, oddities)
    check_output(*run_in_process(project), project)


@fuzz_settings(25)
@given(
    docs=st.lists(fz.documents(), max_size=2),
    recon=st.none() | fz.recon_yaml,
    oddities=st.lists(st.sampled_from(fz.ODDITIES), max_size=2, unique=True),
)
def test_real_validate_process(base: Path, docs: list[dict[str, Any]], recon: str | None, oddities: list[str]) -> None:
    """The same properties through the real ``recon validate`` process (fewer: each starts Python)."""
    project = write_case(base, docs, recon, oddities)
    check_output(*run_process(project), project)

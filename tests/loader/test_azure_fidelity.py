"""recon accepts what Azure's own loader accepts and refuses what it refuses (issue 25, part 1).

Every YAML file of Azure's sample corpus, unchanged, and every file of ``azure_cases/`` (each kind,
each field, valid and invalid: one small file per case, its first line says what it tries) goes
through azure-ai-ml, the library the Azure ML CLI v2 runs (its loader, then the checks its create
command makes before it sends anything), and through ``recon validate``'s loader and planner, in a
project of the file and what it references (``azure_judge``). The two verdicts must agree.

Where recon refuses what Azure takes, on purpose, the case is in ``STRICTER`` with the reason; a
listed case that agrees again fails the test too, so the list never goes stale. ``NOT_AZURE_KINDS``
lists the corpus files that none of the four loaders reads (model packages, tool configurations):
recon refuses them in a project and says to exclude them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import CORPUS, SKLEARN_SCORE_PY
from tests.loader import azure_judge as judge

CASES = Path(__file__).parent / "azure_cases"

_LOCAL_FILES = "recon reads local files at plan time (it versions assets by their content and serves them "
_MISSING = _LOCAL_FILES + "itself); Azure's loader does not look, and its upload fails at create time"
_NOT_AN_ENDPOINT = ("the endpoint it names cannot exist: Azure's endpoint loader refuses that name, and a "
                    "deployment's endpoint must exist before it (recon declares it in the project)")
_TRAFFIC = ("traffic names a deployment the project does not declare: Azure refuses it when the endpoint is "
            "updated, after the deployments were made; recon says so before anything runs")

STRICTER: dict[str, str] = {
    # Azure's sample corpus
    "corpus:cli/endpoints/online/managed/binary-payloads/binary-payloads-deployment.yml": _NOT_AN_ENDPOINT,
    "corpus:cli/endpoints/online/managed/inference-schema/deployment-numpy.yml": _NOT_AN_ENDPOINT,
    "corpus:cli/endpoints/online/managed/inference-schema/deployment-pandas.yml": _NOT_AN_ENDPOINT,
    "corpus:cli/endpoints/online/managed/inference-schema/deployment-standard.yml": _NOT_AN_ENDPOINT,
    "corpus:cli/endpoints/online/managed/keyvault/keyvault-deployment.yml": _NOT_AN_ENDPOINT,
    "corpus:cli/endpoints/online/managed/openapi/deployment.yml": _NOT_AN_ENDPOINT,
    "corpus:cli/endpoints/online/triton/single-model/create-managed-deployment.yaml":
        "its model folder (./models) is not in the corpus, which carries data only: " + _MISSING,
    # endpoints
    "cases:endpoint/traffic-missing-deployment.yml": _TRAFFIC,
    "cases:endpoint/traffic-text-percentage.yml": _TRAFFIC + " (a percentage written as text is read as Azure reads it)",
    "cases:endpoint/mirror-traffic-over-limit.yml": _TRAFFIC + "; and Azure mirrors at most 50%",
    "cases:endpoint/kubernetes-mirror-traffic.yml": _TRAFFIC + "; and Kubernetes endpoints do not mirror traffic",
    "cases:endpoint/no-schema-name-only.yml":
        "recon reads a folder and must know each file's kind; a file with a name only says none (the CLI "
        "is told by its command); the error says to add $schema",
    "cases:endpoint/duplicate-key.yml":
        "a key written twice: PyYAML keeps the last one silently, so the file does not say what its author "
        "may think; recon names both lines",
    # deployments
    "cases:deployment/endpoint-name-invalid.yml": _NOT_AN_ENDPOINT,
    "cases:deployment/endpoint-name-placeholder.yml": _NOT_AN_ENDPOINT,
    "cases:deployment/duplicate-key.yml":
        "a key written twice: PyYAML keeps the last one silently; recon names both lines",
    "cases:deployment/model-inline-named-missing-path.yml": _MISSING,
    "cases:deployment/model-version-text.yml":
        "model versions are positive integers (Azure numbers a model's versions 1, 2, 3 ...)",
    "cases:deployment/model-no-version.yml":
        "azureml:NAME names no version: Azure's create command refuses it when it resolves the reference "
        "('Version must be provided'); recon says so at plan time",
    "cases:deployment/environment-no-version.yml":
        "azureml:NAME names no version: Azure's create command refuses it when it resolves the reference "
        "('Version must be provided'); recon says so at plan time",
    "cases:deployment/environment-three-parts.yml":
        "azureml:judge-env:1:2 does not split into one name and one version: Azure's resolver would take "
        "version '1:2', which no environment can have",
    "cases:deployment/code-no-version.yml":
        "azureml:NAME names no version: Azure's create command refuses it when it resolves the reference "
        "('Version must be provided'); recon says so at plan time",
    "cases:deployment/kubernetes-gpu-request-without-limit.yml":
        "Kubernetes requires a GPU request to equal its limit (extended resources are not overcommitted): "
        "the cluster refuses the pod when Azure creates it",
    "cases:deployment/kubernetes-gpu-request-above-limit.yml":
        "Kubernetes requires a GPU request to equal its limit: the cluster refuses the pod",
    "cases:deployment/kubernetes-memory-bad.yml":
        "not a Kubernetes quantity: the cluster refuses the pod; recon reads quantities to count capacity",
    "cases:deployment/instance-type-unknown.yml":
        "recon counts quota by the instance type's cores and memory: an unknown size must be declared "
        "under instance_types in recon.yaml (Azure refuses an unknown size at create time)",
    "cases:deployment/instance-count-zero.yml":
        "Azure's service refuses a managed deployment of 0 instances at create time; recon says so at plan time",
    "cases:deployment/instance-count-over-limit.yml":
        "a managed deployment has at most 50 instances (the service limit); recon says so at plan time",
    "cases:deployment/request-settings-over-limit.yml":
        "a managed deployment's request timeout is at most 180,000 ms (the service limit)",
    "cases:deployment/request-settings-zero-concurrency.yml":
        "0 concurrent requests per instance serves nothing: the service requires at least 1",
    "cases:deployment/probe-zero-period.yml": "a probe period of 0 seconds: the service requires at least 1",
    # models
    "cases:model/missing-path.yml": _MISSING,
    "cases:model/no-path.yml":
        "a model without files has nothing to deploy; recon versions a model by its content",
    "cases:model/version-text.yml": "model versions are positive integers (Azure numbers them 1, 2, 3 ...)",
    "cases:model/name-colon.yml":
        "azureml:judge:model:1, the reference to this model, does not split into one name and one version",
    "cases:model/version-zero.yml": "model versions are positive integers (Azure numbers them 1, 2, 3 ...)",
    # environments
    "cases:environment/conda-inline-not-conda.yml":
        "recon reads a conda environment to install it (local, docker, kubernetes) and checks that it is one; "
        "Azure's loader passes any mapping on, and its image build fails on it later",
    "cases:environment/version-colon.yml":
        "azureml:judge-env:1:2, the reference to this version, does not split into one name and one version",
    "cases:environment/name-colon.yml":
        "azureml:judge:env:1, the reference to this environment, does not split into one name and one version",
    "cases:environment/name-at.yml":
        "azureml:judge@env:1, the reference to this environment, does not split (@ starts a label)",
    "cases:environment/name-slash.yml":
        "azureml:judge/env:1, the reference to this environment, does not split: Azure's resolver refuses it "
        "('Could not parse ...')",
    "cases:environment/build-and-conda.yml":
        "a build context's Dockerfile makes the whole image: recon builds it for local, docker and kubernetes "
        "and would have to guess how the conda file fits; install it in the Dockerfile",
}

NOT_AZURE_KINDS: dict[str, str] = {
    "cli/endpoints/online/deploy-with-packages/custom-model/package-external.yml": "a model package (az ml model package)",
    "cli/endpoints/online/deploy-with-packages/custom-model/package-moe.yml": "a model package (az ml model package)",
    "cli/endpoints/online/deploy-with-packages/mlflow-model/package-external.yml": "a model package (az ml model package)",
    "cli/endpoints/online/deploy-with-packages/mlflow-model/package.yml": "a model package (az ml model package)",
    "cli/endpoints/online/deploy-with-packages/registry-model/package.yml": "a model package (az ml model package)",
    "cli/endpoints/online/triton/single-model/olive_model_analyzer/config_bert-olive.yml": "an Olive/Triton tool configuration",
    "cli/endpoints/online/triton/single-model/olive_model_analyzer/config_bert_olive_analyze.yml":
        "an Olive/Triton tool configuration",
}

# Discrepancies not yet fixed (issue 25): each is expected to disagree until it is, and fails once it agrees.
KNOWN: dict[str, str] = {}


def _files(root: Path, skip: str | None = None) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix in (".yml", ".yaml") and not (skip and p.relative_to(root).parts[0] == skip)
    )


CORPUS_FILES = _files(CORPUS)
CASE_FILES = _files(CASES, skip="files")


def _add_scoring_scripts(root: Path) -> None:
    """The corpus carries data only: write the scoring scripts its deployments name (Azure's contract)."""
    for f in root.rglob("*.y*ml"):
        doc = judge.read_yaml(f)
        cc = doc.get("code_configuration") if isinstance(doc, dict) else None
        if isinstance(cc, dict) and isinstance(cc.get("scoring_script"), str) and isinstance(cc.get("code"), str):
            script = f.parent / cc["code"] / cc["scoring_script"]
            if not script.exists():
                script.parent.mkdir(parents=True, exist_ok=True)
                script.write_text(SKLEARN_SCORE_PY)


@pytest.fixture(scope="module")
def corpus_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("fidelity") / "corpus"
    shutil.copytree(CORPUS, dest)
    _add_scoring_scripts(dest)
    return dest


@pytest.fixture(scope="module")
def cases_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("fidelity") / "cases"
    shutil.copytree(CASES, dest)
    return dest


def _judge(key: str, path: Path, default_kind: str | None) -> None:
    """Both verdicts on ``path``; fails unless they agree or the case is a listed strictness."""
    written = None
    if judge.family(path, default_kind) is None and judge.looks_like_conda(path):
        path = written = judge.conda_environment(path)
    try:
        kind = judge.family(path, default_kind)
        assert kind is not None, f"{key}: no Azure loader reads this file; list it in NOT_AZURE_KINDS"
        azure = judge.azure_verdict(path, kind)
        recon = judge.recon_verdict(path)
    finally:
        if written is not None:
            written.unlink()
    said = f"{key}: Azure {azure.word}{f' at {azure.stage}' if azure.stage else ''} ({azure.detail}); " \
           f"recon {recon.word} ({recon.detail})"
    if key in KNOWN:
        assert azure.accepted != recon.accepted, f"fixed, remove it from KNOWN: {said}"
        pytest.xfail(KNOWN[key])
    if key in STRICTER:
        assert azure.accepted and not recon.accepted, f"no longer stricter, remove it from STRICTER: {said}"
        return
    assert azure.accepted == recon.accepted, said


@pytest.mark.parametrize("rel", CORPUS_FILES)
def test_corpus_file_gets_azures_verdict(rel: str, corpus_copy: Path) -> None:
    if rel in NOT_AZURE_KINDS:
        verdict = judge.recon_verdict(corpus_copy / rel)
        assert not verdict.accepted, verdict.detail
        return
    _judge(f"corpus:{rel}", corpus_copy / rel, None)


@pytest.mark.parametrize("rel", CASE_FILES)
def test_case_gets_azures_verdict(rel: str, cases_copy: Path) -> None:
    _judge(f"cases:{rel}", cases_copy / rel, rel.split("/")[0])


def test_the_lists_name_real_files() -> None:
    assert len(CORPUS_FILES) == 88, "the corpus changed: look at what it added"
    known = {f"corpus:{r}" for r in CORPUS_FILES} | {f"cases:{r}" for r in CASE_FILES}
    assert not (set(STRICTER) | set(KNOWN)) - known
    assert not set(NOT_AZURE_KINDS) - set(CORPUS_FILES)

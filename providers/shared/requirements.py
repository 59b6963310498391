"""What pip installs for an environment's conda file: its ``pip:`` list plus the conda dependencies
pip can install (``numpy=2.3.1`` -> ``numpy==2.3.1``), and the conda-only entries it cannot (the
interpreter, conda's tooling, native libraries). The local provider builds virtualenvs from it, the
Docker provider images."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

RUNTIME_PACKAGE = "azureml-inference-server-http"

# Conda packages that are not Python packages on PyPI (the interpreter, conda's own tooling,
# native libraries). They are skipped, with a warning naming them.
CONDA_ONLY = {
    "python", "pip", "conda", "python_abi", "cudatoolkit", "cudnn", "cuda", "mkl", "mkl-service",
    "openmpi", "mpi", "nccl", "libgcc-ng", "libstdcxx-ng", "_libgcc_mutex", "_openmp_mutex", "openssl",
    "ca-certificates", "certifi-conda", "libffi", "zlib", "sqlite", "tk", "xz", "readline", "ncurses",
}
# Conda package names whose PyPI name differs.
CONDA_TO_PIP = {"pytorch": "torch", "py-xgboost": "xgboost", "pytorch-cpu": "torch", "tensorflow-cpu": "tensorflow"}

_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<op>==|>=|<=|!=|>|<|=)?\s*(?P<ver>[^=\s]*)?(?:=\S*)?$")


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)", req)
    return normalize(match.group(1)) if match else ""


@dataclass
class PipPlan:
    """What pip installs for an environment and what it cannot install."""

    requirements: list[str] = field(default_factory=list)
    conda_only: dict[str, str] = field(default_factory=dict)  # name -> version spec ("" if none)


def pip_plan(conda: dict[str, Any] | None, add_runtime: bool = True) -> PipPlan:
    """Turn a parsed conda file into pip requirements (plus the serving runtime)."""
    plan = PipPlan()
    for dep in (conda or {}).get("dependencies") or []:
        if isinstance(dep, dict):
            plan.requirements.extend(str(r) for r in dep.get("pip") or [])
            continue
        spec = str(dep).split("::")[-1].strip()
        match = _SPEC.match(spec)
        if not match:
            plan.conda_only[spec] = ""
            continue
        name, op, ver = match["name"], match["op"], match["ver"] or ""
        if name.lower() in CONDA_ONLY:
            plan.conda_only[name.lower()] = ver
            continue
        pip_name = CONDA_TO_PIP.get(name.lower(), name)
        if not op or not ver:
            plan.requirements.append(pip_name)
        elif op == "=":
            # conda's "=1.2" means 1.2.*; "=1.2.3" pins (pip's ==1.2.3 also matches 1.2.3.0).
            plan.requirements.append(f"{pip_name}=={ver}" if ver.count(".") >= 2 else f"{pip_name}=={ver}.*")
        else:
            plan.requirements.append(f"{pip_name}{op}{ver}")
    names = {requirement_name(r) for r in plan.requirements}
    if add_runtime and normalize(RUNTIME_PACKAGE) not in names:
        plan.requirements.append(RUNTIME_PACKAGE)
    return plan

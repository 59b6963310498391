"""The code keeps the shape docs/architecture.md draws (rules in tests/layering.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.layering import collect, violations

ROOT = Path(__file__).resolve().parents[1]


def test_the_source_tree_keeps_every_layering_rule() -> None:
    assert violations(ROOT) == []


def test_every_reconciler_module_sits_in_a_stage_package() -> None:
    loose = sorted(p.name for p in (ROOT / "reconciler").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == []


def test_the_checker_sees_lazy_and_type_only_imports() -> None:
    modules, imports = collect(ROOT)
    assert "reconciler.render.markdown" in modules
    pairs = {(i.module, i.target) for i in imports}
    # function-level (lazy) import in the dispatcher, and a TYPE_CHECKING import of the hooks
    assert ("reconciler.render", "reconciler.render.markdown") in pairs
    assert ("reconciler.apply.hooks", "reconciler.apply.outcomes") in pairs


@pytest.mark.parametrize(
    ("file", "line", "expected"),
    [
        ("reconciler/plan/planner.py", "from reconciler.apply.engine import apply_plan", "stage plan imports stage apply"),
        ("reconciler/model/resources.py", "from reconciler.state.document import State", "stage model imports stage state"),
        ("reconciler/load/loader.py", "from reconciler.migrate import service", "stage load imports stage migrate"),
        ("providers/docker/images.py", "from providers.local import venvs", "provider docker imports provider local"),
        ("providers/local/provider.py", "from reconciler.plan.planner import make_plan", "beyond the protocol modules"),
        ("providers/shared/scaling.py", "from providers.docker.engine import Engine", "imports provider docker"),
        ("providers/shared/runtime/router/core.py", "import reconciler", "runtime program"),
        ("providers/shared/runtime/router/table.py", "from providers.shared import procs", "runtime program"),
        ("providers/shared/runtime/router/clients.py", "from providers.shared.runtime.router import table",
         "relatively"),
        ("providers/shared/runtime/router/status.py", "from .. import router_zipapp", "runtime program"),
        ("providers/shared/runtime/host.py", "from providers.shared.runtime.router import table", "runtime program"),
        ("states/file.py", "from reconciler.state.manager import StateManager", "only reconciler.model"),
        ("reconciler/apply/project.py", "from providers import get_provider", "only the CLI calls the provider registry"),
        ("reconciler/state/manager.py", "from states import open_backend", "only the CLI uses the storage backends' registry"),
        ("reconciler/render/text.py", "from reconciler.cli.app import cli", "stage render imports stage cli"),
        ("reconciler/load/sources.py", "from providers.local import provider", "stage load imports a provider module"),
        ("reconciler/apply/project.py", "from providers.local.provider import LocalProvider",
         "stage apply imports a provider module"),
        ("reconciler/plan/planner.py", "import providers", "only the CLI calls the provider registry"),
        ("reconciler/cli/registries.py", "from states.file import FileBackend", "only through their registry"),
        ("providers/azure/provider.py", "from providers import get_provider", "a provider imports the registry"),
        ("providers/docker/provider.py", "from reconciler.apply.engine import apply_plan", "beyond the protocol modules"),
        ("providers/shared/runtime/host.py", "from reconciler.model import errors", "runtime program"),
        ("providers/shared/runtime/host_scoring.py", "from providers.shared.runtime import host", "runtime program"),
        ("providers/shared/runtime/host.py", "from providers.shared.runtime.host_scoring import Host", "runtime program"),
        ("providers/shared/runtime/router/table.py", "from reconciler.plan.provider import Provider", "runtime program"),
        ("reconciler/migrate/translate.py", "yaml.safe_load('a: 1')", "parses YAML (yaml.safe_load)"),
        ("providers/azure/bodies.py", "from yaml import compose", "parses YAML (yaml.compose)"),
    ],
)
def test_a_forbidden_import_is_reported(tmp_path: Path, file: str, line: str, expected: str) -> None:
    for pkg in ("reconciler", "providers", "states"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(tmp_path) == []
    target = tmp_path / file
    target.write_text(target.read_text() + f"\n\ndef _added() -> None:\n    {line}  # noqa\n")
    found = violations(tmp_path)
    rules = [f for f in found if "import cycle:" not in f]  # an upward import may close a cycle too
    assert len(rules) == 1 and expected in rules[0] and rules[0].startswith(file + ":"), found



def test_a_cycle_between_packages_is_reported(tmp_path: Path) -> None:
    for pkg in ("reconciler", "providers", "states"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    model = tmp_path / "reconciler/model"
    for sub, body in {"aa": {"x.py": "from reconciler.model.bb import y\n", "w.py": ""},
                      "bb": {"y.py": "", "z.py": "from reconciler.model.aa import w\n"}}.items():
        (model / sub).mkdir()
        (model / sub / "__init__.py").write_text("")
        for name, text in body.items():
            (model / sub / name).write_text(text)
    found = violations(tmp_path)  # no module imports one that imports it back: only the packages do
    assert found == ["package import cycle: reconciler.model.aa <-> reconciler.model.bb"], found


def test_an_import_cycle_is_reported(tmp_path: Path) -> None:
    for pkg in ("reconciler", "providers", "states"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    hooks = tmp_path / "reconciler/apply/outcomes.py"
    hooks.write_text(hooks.read_text() + "\n\nif False:\n    from reconciler.apply import hooks\n")
    found = violations(tmp_path)
    assert found == ["import cycle: reconciler.apply.hooks <-> reconciler.apply.outcomes"], found

"""Start-up imports only what a command needs: ``recon --version`` and ``recon plan`` in a folder
with nothing to plan load no settings, schema, planner or provider (pydantic, yaml, networkx,
deepdiff, rich), and every command is still found through ``app.COMMAND_MODULES``."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click

from reconciler.cli.app import COMMAND_MODULES, cli

HEAVY = ("pydantic", "yaml", "networkx", "deepdiff", "rich", "reconciler.apply.project", "providers")

PROBE = """
import json, sys
sys.argv = ["recon"] + json.loads(sys.argv[1])
from reconciler.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _run(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], cwd=cwd, capture_output=True,
                          text=True, timeout=60)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["code"], report["modules"], proc.stdout + proc.stderr


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY or any(m.startswith(h) for h in HEAVY)]


def test_version_imports_no_command_module(tmp_path: Path) -> None:
    code, modules, out = _run(["--version"], tmp_path)
    assert code == 0 and "recon, version" in out
    assert _heavy(modules) == [] and not any(m.startswith("reconciler.cli.") and m.endswith("_cmds") for m in modules)


def test_plan_of_an_empty_folder_is_the_error_without_loading_anything(tmp_path: Path) -> None:
    code, modules, out = _run(["plan"], tmp_path)
    assert code == 1 and "No configuration files found" in out
    assert _heavy(modules) == [], _heavy(modules)
    assert not (tmp_path / ".recon").exists()


def test_plan_of_a_folder_with_a_yaml_file_loads_the_project(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.yml").write_text("a: 1\n")
    code, modules, out = _run(["plan"], tmp_path)
    assert code == 1 and "reconciler.apply.project" in modules
    assert "No configuration files found" not in out  # the loader's own error about notes.yml


def test_hidden_folders_do_not_count_as_configuration(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.yml").write_text("a: 1\n")
    code, modules, out = _run(["validate"], tmp_path)
    assert code == 1 and "No configuration files found" in out and _heavy(modules) == []


def test_every_command_is_in_the_lazy_table_and_nothing_else() -> None:
    for module in sorted(set(COMMAND_MODULES.values())):
        importlib.import_module(f"reconciler.cli.{module}")
    assert sorted(cli.commands) == sorted(COMMAND_MODULES)
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        assert cli.get_command(ctx, name) is not None

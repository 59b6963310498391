"""Reading the example CI files: their steps, their scripts and the recon command lines inside.

Shared by the schema test and the end-to-end CI test, which runs the workflows' own scripts.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"
GITHUB = EXAMPLES / "github"
GITLAB = EXAMPLES / "gitlab" / ".gitlab-ci.yml"
WORKFLOWS = ("plan.yml", "apply.yml", "drift.yml")

# A recon invocation inside a shell script: from `recon -C` up to a pipe, redirection, `)`, `;` or
# `&&`/`||` (the options never contain those characters).
RECON_COMMAND = re.compile(r"(?<![\w.-])recon\s+-C\s[^|>;)&\n]*")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path}: not a mapping"
    if True in doc:  # YAML 1.1 reads the bare key `on` as True; GitHub reads it as "on"
        doc["on"] = doc.pop(True)
    return doc


def github_workflow(name: str) -> dict[Any, Any]:
    return load(GITHUB / name)


def step(workflow: dict[Any, Any], job: str, step_id: str) -> dict[str, Any]:
    for s in workflow["jobs"][job]["steps"]:
        if s.get("id") == step_id:
            return dict(s)
    raise KeyError(f"no step {step_id!r} in job {job!r}")


def scripts_of_github(workflow: dict[Any, Any]) -> list[str]:
    return [s["run"] for job in workflow["jobs"].values() for s in job.get("steps", []) if "run" in s]


def scripts_of_gitlab(doc: dict[Any, Any]) -> list[str]:
    out: list[str] = []
    for job in doc.values():
        if not isinstance(job, dict):
            continue
        for part in ("before_script", "script", "after_script"):
            value = job.get(part)
            if value is not None:
                out += [value] if isinstance(value, str) else list(value)
    return out


def recon_commands(script: str) -> list[list[str]]:
    """Every recon command line in ``script`` as argv (without the leading ``recon``)."""
    commands = []
    for match in RECON_COMMAND.finditer(script):
        text = re.sub(r"\s2$", "", match.group(0).rstrip())  # "2>&1" leaves a trailing "2"
        argv = shlex.split(text)
        assert argv[0] == "recon"
        commands.append(argv[1:])
    return commands


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace every ``${{ expr }}`` with ``values[expr]``; an unknown expression is an error."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise KeyError(f"the test has no value for the expression ${{{{ {m.group(1)} }}}}")
        return values[m.group(1)]

    return EXPRESSION.sub(one, text)

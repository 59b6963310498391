"""What a conda environment file (an environment's ``conda_file``) may hold.

conda's own format (``conda env create -f``): a mapping of ``name``, ``channels``, ``dependencies``
(package specs, and at most one ``pip:`` list of pip requirements), ``prefix`` and ``variables``.
recon reads only the dependencies (``providers.shared.requirements``) but checks the whole shape,
because ``conda_file`` may name any file: one that is not a conda environment is an error, and the
messages here never quote the file's values (``conda_file: /etc/shadow`` must not print its lines).
"""

from __future__ import annotations

from typing import Any

from reconciler.model.checks import Problem

KEYS = ("name", "channels", "dependencies", "prefix", "variables")
HINT = "a conda environment: `name:`, `channels: [...]` and `dependencies: [...]` with an optional `- pip: [...]` list"


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _strings(value: Any, path: tuple[Any, ...], what: str) -> list[Problem]:
    if not isinstance(value, list):
        return [Problem(path, f"`{path[-1]}` must be a list of {what}, not a {_type(value)}", HINT)]
    return [
        Problem((*path, i), f"item {i} of `{path[-1]}` must be a string, not a {_type(item)}", HINT)
        for i, item in enumerate(value)
        if not isinstance(item, str)
    ]


def check_conda(data: Any) -> list[Problem]:
    """Every way ``data`` (a parsed YAML file) is not a conda environment; [] when it is one.
    Paths are inside the conda file; messages name fields and types, never values."""
    if not isinstance(data, dict):
        return [Problem((), f"the file holds a {_type(data)}, not a conda environment mapping", HINT)]
    problems: list[Problem] = []
    for key in data:
        if key not in KEYS:
            problems.append(Problem((str(key),), "a key conda environments do not have", "allowed: " + ", ".join(KEYS)))
    if "dependencies" not in data:
        problems.append(Problem((), "the file names no `dependencies`", HINT))
    if "name" in data and not isinstance(data["name"], (str, int, float)):
        problems.append(Problem(("name",), f"`name` must be a string, not a {_type(data['name'])}", HINT))
    if "prefix" in data and not isinstance(data["prefix"], str):
        problems.append(Problem(("prefix",), f"`prefix` must be a string, not a {_type(data['prefix'])}", HINT))
    if "channels" in data:
        problems += _strings(data["channels"], ("channels",), "channel names")
    if "variables" in data:
        variables = data["variables"]
        if not isinstance(variables, dict):
            problems.append(Problem(("variables",), f"`variables` must be a mapping, not a {_type(variables)}", HINT))
        else:
            problems += [
                Problem(("variables", str(k)), "a variable's value must be a string or a number", HINT)
                for k, v in variables.items()
                if not isinstance(k, str) or isinstance(v, (dict, list)) or v is None
            ]
    if "dependencies" in data:
        problems += _dependencies(data["dependencies"])
    return problems


def _dependencies(deps: Any) -> list[Problem]:
    path: tuple[Any, ...] = ("dependencies",)
    if not isinstance(deps, list):
        return [Problem(path, f"`dependencies` must be a list, not a {_type(deps)}", HINT)]
    problems: list[Problem] = []
    pip_lists = 0
    for i, dep in enumerate(deps):
        if isinstance(dep, str):
            continue
        if isinstance(dep, dict) and list(dep) == ["pip"]:
            pip_lists += 1
            problems += _strings(dep["pip"], (*path, i, "pip"), "pip requirements")
            if pip_lists == 2:
                problems.append(Problem((*path, i), "a second `pip:` list", "merge the pip lists into one"))
            continue
        problems.append(
            Problem(
                (*path, i),
                f"item {i} of `dependencies` must be a package spec (a string) or a `pip:` list, not a {_type(dep)}",
                HINT,
            )
        )
    return problems


__all__ = [
    "HINT",
    "KEYS",
    "check_conda",
]

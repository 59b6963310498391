"""Terraform's single-dash option spellings, accepted as aliases of recon's own.

People who know Terraform type ``recon plan -out=plan.bin`` and ``recon apply -auto-approve``.
Click reads ``-out`` as the short options ``-o -u -t`` and fails, so the arguments are rewritten
before click parses them: a token ``-NAME`` or ``-NAME=VALUE`` becomes ``--NAME`` / ``--NAME=VALUE``
when the command has a ``--NAME`` option (recon's commands have no clustered short options, so a
single dash followed by a word is never anything else). Boolean flags take Terraform's ``=true`` /
``=false`` (``-refresh=false`` is ``--no-refresh``). A single-dash word that names no option is a
usage error that says how recon spells its options. After ``--`` nothing is rewritten.

The group takes Terraform's global ``-chdir=DIR`` as ``-C DIR``.
"""

from __future__ import annotations

import re

import click

# The options Terraform users type, as Terraform names them; --help lists those a command has.
TERRAFORM_NAMES = (
    "out",
    "auto-approve",
    "detailed-exitcode",
    "target",
    "parallelism",
    "lock-timeout",
    "refresh",
    "destroy",
    "json",
)
_WORD = re.compile(r"-([a-z][a-z0-9]+(?:-[a-z0-9]+)*)(?:=(.*))?", re.DOTALL)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _long_options(command: click.Command) -> dict[str, tuple[click.Option, bool]]:
    """``name -> (option, is the primary spelling)`` for every ``--name`` of ``command``."""
    found: dict[str, tuple[click.Option, bool]] = {}
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        for spelling in param.opts:
            if spelling.startswith("--"):
                found[spelling[2:]] = (param, True)
        for spelling in param.secondary_opts:
            if spelling.startswith("--"):
                found[spelling[2:]] = (param, False)
    return found


def _flag(
    option: click.Option, primary: bool, name: str, value: str, token: str, ctx: click.Context | None
) -> list[str]:
    """``-flag=true|false`` as click spells it."""
    word = value.lower()
    if word not in _TRUE | _FALSE:
        raise click.UsageError(
            f"{token}: {name} is a flag; give it alone, or as {name}=true or {name}=false", ctx
        )
    on = (word in _TRUE) == primary
    if on:
        return [next(o for o in option.opts if o.startswith("--"))]
    off = [o for o in option.secondary_opts if o.startswith("--")]
    return off[:1]  # a flag without a --no- form is simply left off


def rewrite(command: click.Command, args: list[str], ctx: click.Context | None = None) -> list[str]:
    """``args`` with Terraform's single-dash spellings turned into recon's (see the module doc)."""
    options = _long_options(command)
    out: list[str] = []
    for i, token in enumerate(args):
        if token == "--":
            out += args[i:]
            break
        match = _WORD.fullmatch(token)
        if match is None:
            out.append(token)
            continue
        name, value = match[1], match[2]
        if name not in options:
            if name == "help":
                out.append("--help")
                continue
            raise click.NoSuchOption(
                f"-{name}",
                message=f"No such option: -{name} (recon's options take two dashes, and this "
                f"command has no --{name})",
                ctx=ctx,
            )
        option, primary = options[name]
        if option.is_flag and value is not None:
            out += _flag(option, primary, f"-{name}", value, token, ctx)
        elif value is not None:
            out.append(f"--{name}={value}")
        else:
            out.append(f"--{name}")
    return out


def rewrite_global(args: list[str]) -> list[str]:
    """Terraform's ``-chdir=DIR`` (before the command name) as ``-C DIR``."""
    out: list[str] = []
    for i, token in enumerate(args):
        if not token.startswith("-"):
            return out + args[i:]
        if token.startswith("-chdir="):
            out += ["-C", token[len("-chdir=") :]]
        elif token == "-chdir":
            out.append("-C")
        else:
            out.append(token)
    return out


def terraform_spellings(command: click.Command, ctx: click.Context) -> list[str]:
    """The Terraform spellings ``command`` accepts, for its --help (``-out=FILE``), each value named
    as the option's own line names it (``-target=kubernetes|managed``, not ``-target=TARGET``)."""
    options = _long_options(command)
    shown = []
    for name in TERRAFORM_NAMES:
        if name not in options:
            continue
        option, _ = options[name]
        if option.is_flag:
            shown.append(f"-{name}" + ("=false" if option.secondary_opts else ""))
        else:
            shown.append(f"-{name}={option.make_metavar(ctx).strip('[]')}")
    return shown


class Duration(click.ParamType[float]):
    """Seconds, as a number (``300``, ``1.5``) or a duration as Terraform writes it (``30s``,
    ``5m``, ``1h``, ``1m30s``)."""

    name = "duration"
    _PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
    _UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = self._PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                self.fail(f"{value!r} is not a duration (seconds, or e.g. 30s, 5m, 1h, 1m30s)", param, ctx)
            seconds = sum(float(n) * self._UNIT[u] for n, u in parts)
        if seconds < 0:
            self.fail(f"{value!r} is negative; give 0 or more seconds", param, ctx)
        return seconds


__all__ = ["TERRAFORM_NAMES", "Duration", "rewrite", "rewrite_global", "terraform_spellings"]

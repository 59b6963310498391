"""The click group every command hangs on, and the one place errors become exit codes.

Commands live in sibling modules (``plan_cmds``, ``state_cmds``, ``apply_cmds``, ``operate_cmds``,
``import_cmd``, ``migrate_cmds``) and register on ``cli``. Each command is thin: parse, call the engine, render, return an exit code.
Exit codes: 0 success; 1 every error, usage errors included (click's own exit 2 would read as
"changes" under ``--detailed-exitcode``); 2 "changes present" / "drift" where a command documents it,
and nothing else. Errors print one line starting with ``Error:`` first, details after.

Terraform's single-dash spellings (``-out=FILE``, ``-auto-approve``...) are accepted: ``spellings``.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from reconciler import __version__
from reconciler.cli import spellings
from reconciler.model.errors import ConfigError, PlanError, ReconcilerError

# Each command's module, imported only when the command runs (or --help lists them all): start-up
# pays for what one command needs, not for every command's imports (pydantic, the planner, rich...).
COMMAND_MODULES: dict[str, str] = {
    "validate": "plan_cmds", "plan": "plan_cmds", "show": "plan_cmds", "graph": "plan_cmds",
    "apply": "apply_cmds", "destroy": "apply_cmds", "refresh": "apply_cmds", "drift": "apply_cmds",
    "invoke": "operate_cmds", "logs": "operate_cmds", "keys": "operate_cmds",
    "state": "state_cmds", "force-unlock": "state_cmds",
    "import": "import_cmd", "import-v1": "migrate_cmds",
}


@dataclass
class CliContext:
    """What every command gets: the project root (``-C DIR``)."""

    root: Path


def project_root(ctx: click.Context) -> Path:
    """The project root (``-C DIR``) of the running command."""
    obj = ctx.find_object(CliContext)
    if obj is None:  # only when a command is invoked outside the ``cli`` group
        raise click.UsageError("no project: run recon commands through the `recon` group")
    return obj.root


class ProjectPath(click.Path):
    """A ``click.Path`` option or argument whose relative value resolves against ``-C DIR``, as
    Terraform's ``-chdir`` and ``git -C`` treat every path: ``recon -C DIR plan -out=tf.plan`` writes
    ``DIR/tf.plan``. Without ``-C`` (or with the folder recon runs in) a value is left as typed;
    ``-`` (standard input) is never a path."""

    def convert(
        self, value: str | os.PathLike[str], param: click.Parameter | None, ctx: click.Context | None
    ) -> str | bytes | os.PathLike[str]:
        obj = ctx.find_object(CliContext) if ctx is not None else None
        relative = os.fspath(value) != "-" and not os.path.isabs(value)
        if obj is not None and relative and obj.root != Path.cwd().resolve():
            value = obj.root / value
        return super().convert(value, param, ctx)


def use_color() -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def format_error(exc: ReconcilerError) -> str:
    if isinstance(exc, ConfigError):
        lines = [f"Error: {d.format()}" for d in exc.diagnostics]
        n = len(exc.diagnostics)
        lines.append(f"{n} error{'s' if n != 1 else ''} in the desired state; nothing was changed.")
        return "\n".join(lines)
    if isinstance(exc, PlanError) and exc.diagnostics:
        return "\n".join([f"Error: {exc}"] + [f"  {d.format()}" for d in exc.diagnostics])
    return f"Error: {exc}"


class CommandLineError(click.ClickException):
    """A usage error (unknown option, missing argument...) shown as recon shows errors: the
    ``Error:`` line first, then the usage and where help is; exit 1."""

    exit_code = 1

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message())
        self.ctx = error.ctx

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)
        if self.ctx is not None:
            click.echo(self.ctx.get_usage(), err=True)
            click.echo(f"Try '{self.ctx.command_path} --help' for help.", err=True)


def _usage_error(error: click.UsageError) -> click.ClickException:
    if isinstance(error, click.exceptions.NoArgsIsHelpError):  # `recon` alone: help, not an error
        click.echo(error.format_message())
        raise click.exceptions.Exit(0)
    return CommandLineError(error)


class ReconCommand(click.Command):
    """A recon command: Terraform's single-dash spellings accepted and listed in --help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spellings.rewrite(self, args, ctx))

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        shown = spellings.terraform_spellings(self, ctx)
        if shown:
            formatter.write_paragraph()
            formatter.write_text("Terraform's spellings work too: " + ", ".join(shown) + ".")


class ReconGroup(click.Group):
    """Turns recon's own errors into a clean message and exit 1 (never a traceback); usage errors
    exit 1 too."""

    command_class = ReconCommand
    group_class = type  # ``recon state`` is a ReconGroup too
    lazy_commands: dict[str, str] = {}  # name -> module of reconciler.cli that registers it

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.epilog:  # unindented, as each command's line of Terraform's spellings
            formatter.write_paragraph()
            formatter.write_text(self.epilog)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = self.lazy_commands.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"reconciler.cli.{module}")  # registers its commands on ``cli``
        return super().get_command(ctx, cmd_name)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, spellings.rewrite_global(args), parent, **extra)
        except click.UsageError as exc:
            raise _usage_error(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_error(exc) from exc
        except ReconcilerError as exc:
            click.echo(format_error(exc), err=True)
            ctx.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(1)
        except Exception as exc:  # a bug: say so plainly, keep the traceback behind RECON_DEBUG
            if os.environ.get("RECON_DEBUG"):
                raise
            click.echo(
                f"Error: internal error: {type(exc).__name__}: {exc} "
                "(this is a bug in recon; set RECON_DEBUG=1 for the traceback)",
                err=True,
            )
            ctx.exit(1)


@click.group(
    cls=ReconGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Terraform's spelling works too: -chdir=DIR.",
)
@click.option(
    "-C",
    "directory",
    metavar="DIR",
    type=click.Path(path_type=Path),
    default=".",
    show_default=True,
    help="Run as if recon was started in DIR (the project root): relative paths in options and "
    "arguments resolve against it.",
)
@click.version_option(version=__version__, prog_name="recon")
@click.pass_context
def cli(ctx: click.Context, directory: Path) -> None:
    """recon: a Terraform-style reconciler for ML online endpoints (Azure ML CLI v2 YAML)."""
    root = directory.resolve()
    if root.is_file():
        raise click.ClickException(
            f"-C {directory}: {root} is a file, not a directory (give the project's folder, the one "
            f"holding recon.yaml and the YAML files: -C {directory.parent})"
        )
    if not root.is_dir():
        raise click.ClickException(
            f"-C {directory}: no such directory ({root}); give the project's folder, the one holding "
            "recon.yaml and the YAML files"
        )
    ctx.obj = CliContext(root=root)


cli.lazy_commands = COMMAND_MODULES

"""The README's Commands table stays true: every command it lists exists, and every option it names
is an option of that command."""

from __future__ import annotations

import re
from pathlib import Path

import click

from reconciler.cli import cli

README = Path(__file__).resolve().parents[2] / "README.md"


def _rows() -> list[str]:
    text = README.read_text()
    table = text[text.index("| command | what it does | exit codes |") :]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cell = re.split(r"(?<!\\)\|", line)[1]  # a "\\|" inside a cell is a literal bar
        rows.append(cell.strip().strip("`").replace("\\|", "|"))
    return rows


def _command(words: list[str]) -> click.Command:
    command: click.Command = cli
    for word in words:
        assert isinstance(command, click.Group), f"{words}: {command.name} has no subcommands"
        found = command.get_command(click.Context(command), word)
        assert found is not None, f"README lists `recon {' '.join(words)}`, which does not exist"
        command = found
    return command


def _options(command: click.Command) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            names |= set(param.opts) | set(param.secondary_opts)
    return names


def test_every_command_and_option_the_readme_table_lists_exists() -> None:
    rows = _rows()
    assert len(rows) >= 13
    for row in rows:
        words = row.split()[1:]  # after "recon"
        if words[:2] == ["[-C", "DIR]"]:
            words = words[2:]
        command = _command(words[:1])
        if isinstance(command, click.Group):  # `recon state list|show ADDR|rm ADDR|...`
            subcommands = [part.split()[0] for part in " ".join(words[1:]).split("|")]
            for sub in subcommands:
                _command([*words[:1], sub])
            assert len(subcommands) >= 7
            continue
        options = set(re.findall(r"--[a-z][a-z-]*", row))
        missing = options - _options(command)
        assert not missing, f"README: `{row}` names {sorted(missing)}, which `recon {words[0]}` lacks"


def test_every_option_of_every_command_has_help() -> None:
    missing = []

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, name
                walk(sub, [*path, name])
        missing.extend(
            f"{' '.join(path)} {p.opts[0]}"
            for p in command.params
            if isinstance(p, click.Option) and not p.hidden and not p.help
        )

    walk(cli, ["recon"])
    assert missing == []

"""SDK v1 -> CLI v2: ``recon import-v1`` turns AksWebservice / AksEndpoint configs into v2 YAML.

Data flows one way: ``files`` reads JSON or YAML; ``parse`` validates it against ``models`` (both
spellings: the SDK's snake_case kwargs and the v1 CLI's camelCase ``deploymentconfig.json``);
``settings`` merges the spellings and fills in v1's defaults; ``service`` assembles the versions and
``traffic`` their traffic map; ``translate`` (with ``deployment`` and ``envs``) builds the v2
documents; ``report`` writes MIGRATION.md. Only ``import_v1`` writes files.

Contract of ``import_v1``: either every output file is written into ``opts.out`` (YAML that recon
and ``az ml`` accept, plus MIGRATION.md) and their names are returned with the warnings (settings v1
itself ignored, each at its file, line and key), or ``ConfigError`` is raised naming each bad file
and key and nothing is written. No key is ever written.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from reconciler.migrate.report import NOT_CARRIED, migration_md
from reconciler.migrate.service import Options, Service, load_service
from reconciler.migrate.translate import translate
from reconciler.model.errors import ConfigError, Diagnostic

TARGETS = ("kubernetes", "managed")


@dataclass(frozen=True)
class Imported:
    """What ``import_v1`` wrote (names under ``opts.out``, MIGRATION.md last), the warnings, and how
    many given settings MIGRATION.md lists as not carried over."""

    files: list[str]
    warnings: list[Diagnostic] = field(default_factory=list)
    not_carried: int = 0


def import_v1(opts: Options) -> Imported:
    """Translate and write (see the module docstring)."""
    if opts.target not in TARGETS:
        raise ConfigError(Diagnostic(f"unknown target {opts.target!r}", file="--target",
                                     hint="use kubernetes or managed"))
    if opts.target == "managed" and not opts.instance_type:
        raise ConfigError(Diagnostic("a managed endpoint needs an instance type", file="--instance-type",
                                     hint="give --instance-type SKU, e.g. Standard_DS3_v2"))
    svc = load_service(opts)
    out = translate(opts, svc)
    names = sorted(out.files)
    out.warnings.sort(key=lambda d: (d.file or "", d.line or 0))
    out.files["MIGRATION.md"] = migration_md(opts, svc, out.rows, names, out.warnings)
    _no_secret(svc, out.files)
    _write(opts, out.files)
    dropped = sum(1 for r in out.rows if r.became.startswith(NOT_CARRIED) and r.value != "not set")
    return Imported([*names, "MIGRATION.md"], out.warnings, dropped)


def _no_secret(svc: Service, files: dict[str, str]) -> None:
    """A guard: no key the v1 config gave may appear in any output file."""
    secrets = [s.value for n in ("primary_key", "secondary_key") if (s := svc.settings[n]).value]
    for name, text in files.items():
        if any(secret in text for secret in secrets):
            raise AssertionError(f"a v1 key would have been written to {name}")  # a bug, never user input


def _write(opts: Options, files: dict[str, str]) -> None:
    """Each file atomically (temp file, then rename), folders as needed."""
    try:
        opts.out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            target = opts.out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, target)
    except OSError as exc:
        raise ConfigError(Diagnostic(f"cannot write the output: {exc.strerror or exc}", file=str(opts.out))) from exc


__all__ = ["Imported", "Options", "import_v1"]

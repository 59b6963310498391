"""Running one fuzz case and checking what recon did with it.

A case is a project folder; recon runs on it either in this process (click's runner, the same code
path as the command, thousands of cases a minute) or as the real ``recon`` process. Either way:

- the exit code is 0 or 1 (``validate``) or 0/1/2 (``plan --detailed-exitcode``);
- no traceback, no "internal error";
- exit 1 comes with at least one ``Error: <where>: ...`` line, and each such line names a project
  file (``blue.yml:12: field: ...``) or the project (``<project>: ...``);
- the secret planted outside the project (``strategies.SECRET``) never appears, nor any character
  that is not printable but the line break (a file's key or value cannot forge a line of output);
- the run ends within ``WATCHDOG_S`` (a hang detector, generous for a shared CI machine: the
  hostile cases of issue 13 hung for good or ran 17 s; a normal case takes milliseconds).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from click.testing import CliRunner

from reconciler.cli import cli
from tests.fuzz.strategies import SECRET, make_base

WATCHDOG_S = 5.0
ROOT = Path(__file__).resolve().parents[2]
ERROR_LINE = re.compile(r"^Error: (?P<where>[^\s:][^:]*?)(:\d+)?: \S")


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so that no ``except Exception`` in recon hides it."""


@contextlib.contextmanager
def watchdog(seconds: float = WATCHDOG_S) -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"recon ran longer than {seconds} s on this case")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


NESTING = 6  # the project sits this deep in a folder of its own: `../..` never leaves it


@contextlib.contextmanager
def base_project() -> Iterator[Path]:
    """The project every case starts from (``strategies.make_base``; a case calls
    ``strategies.reset`` first), deep inside a temporary folder of its own, so that the relative
    paths the strategies generate (at most ``NESTING`` levels up, or to a system folder) never lead
    the digest of a "model folder" into the machine's real /tmp."""
    with tempfile.TemporaryDirectory(prefix="recon-fuzz-") as tmp:
        folder = Path(tmp).joinpath(*(f"d{i}" for i in range(NESTING)))
        folder.mkdir(parents=True)
        yield make_base(folder)


def check_output(code: int, output: str, project: Path, codes: tuple[int, ...] = (0, 1)) -> None:
    assert code in codes, f"exit {code}:\n{output}"
    assert "Traceback" not in output, output
    assert "internal error" not in output, output
    assert SECRET not in output, output
    odd = {c for c in output if not c.isprintable() and c != "\n"}
    assert not odd, f"characters that forge lines or drive the terminal: {odd}\n{output}"
    if code != 1:
        return
    errors = [ln for ln in output.splitlines() if ln.startswith("Error:")]
    assert errors, f"exit 1 without an error line:\n{output}"
    for line in errors:
        match = ERROR_LINE.match(line)
        assert match, f"an error that names no file: {line!r}\n{output}"
        where = match["where"]
        assert where == "<project>" or os.path.lexists(project / where), f"an error naming {where!r}: {line}"


def run_in_process(project: Path, *args: str) -> tuple[int, str]:
    runner = CliRunner()
    with watchdog():
        result = runner.invoke(cli, ["-C", str(project), *(args or ("validate",))])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # recon let an exception escape the CLI
    return result.exit_code, result.output


def run_process(project: Path, *args: str) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), RECON_CACHE_DIR=str(project.parent / "cache"))
    env.pop("RECON_STATE_DSN", None)
    env.pop("RECON_DEBUG", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler", "-C", str(project), *(args or ("validate",))],
            cwd=project.parent,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=WATCHDOG_S * 4,  # the interpreter's start on a loaded machine comes on top
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"recon validate did not finish in {exc.timeout} s") from None
    return proc.returncode, proc.stdout + proc.stderr

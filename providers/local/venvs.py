"""Python environments for the local provider: one virtualenv per environment content digest.

An environment's conda file becomes a pip requirement list: its ``pip:`` list plus those conda
dependencies pip can install (``numpy=2.3.1`` → ``numpy==2.3.1``). Conda-only entries (``python``,
``pip``, ...) cannot be installed by pip: when they differ from what runs they are named in a
warning. The serving runtime (azureml-inference-server-http) is added when the list lacks it.

Virtualenvs live in a cache shared by projects (``cache_dir/venvs/<key>``) and are built under a
file lock (two projects may build the same one at once), in a temporary folder renamed into place
when complete, and reused when present.

A build says what it does in two lines of events (what it installs and where its log is; how long
it took), and its progress as status updates ("collecting numpy"), which a terminal shows in
place. pip's whole output (without progress bars) goes to a log file of the project,
``.recon/logs/environments/<name>-<version>.log`` (mode 0600); only a failed build shows its last
lines, in the error's ``detail``. ``reuse_host_packages: true`` runs the host's Python with its
installed packages (offline and fast): nothing is built, missing packages are named in a warning.
Docker build contexts cannot run here: ``PermanentError`` points to the Docker provider.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from providers.shared import procs
from providers.shared.requirements import PipPlan, pip_plan, requirement_name
from reconciler.model.errors import PermanentError
from reconciler.model.resources import EnvironmentAttrs

EventSink = Callable[[str], None]
FAILED_LOG_LINES = 20  # a failed build shows this many of its log's last lines
_PIP_FLAGS = ["--no-input", "--progress-bar", "off", "--disable-pip-version-check"]


@dataclass(frozen=True)
class PythonEnv:
    """Where an environment's code runs: a python executable, and how it came to be."""

    python: str
    venv: str | None  # None: the host's python itself
    key: str
    warnings: tuple[str, ...] = ()


def _python_version(python: str) -> str:
    if python == sys.executable:
        return platform.python_version()
    out = subprocess.run([python, "-c", "import platform;print(platform.python_version())"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _pick_python(wanted: str) -> str:
    """A host interpreter matching conda's ``python=X.Y`` when one is on PATH, else ours."""
    match = re.match(r"^(\d+)\.(\d+)", wanted)
    if match and f"{match[1]}.{match[2]}" != f"{sys.version_info[0]}.{sys.version_info[1]}":
        found = shutil.which(f"python{match[1]}.{match[2]}")
        if found:
            probe = subprocess.run([found, "-c", "import venv"], capture_output=True, check=False)
            if probe.returncode == 0:
                return found
    return sys.executable


def _version_matches(wanted: str, have: str) -> bool:
    wanted = wanted.rstrip("*").rstrip(".")
    return not wanted or have == wanted or have.startswith(wanted + ".")


def conda_warnings(plan: PipPlan, python_version: str, pip_version: str | None) -> list[str]:
    """Warnings for conda-only entries that differ from what runs."""
    out: list[str] = []
    for name, ver in sorted(plan.conda_only.items()):
        if name == "python":
            if not _version_matches(ver, python_version):
                out.append(f"conda file asks for python={ver}; the local provider runs Python {python_version}")
        elif name == "pip":
            if pip_version is not None and not _version_matches(ver, pip_version):
                out.append(f"conda file asks for pip={ver}; the environment has pip {pip_version}")
        else:
            out.append(f"conda package {name}{'=' + ver if ver else ''} is not installable by pip; skipped")
    return out


class EnvironmentBuilder:
    """Builds (or finds) the python an environment's instances run."""

    def __init__(self, cache_dir: Path, reuse_host_packages: bool = False, log_dir: Path | None = None) -> None:
        self.root = cache_dir / "venvs"
        self.reuse_host_packages = reuse_host_packages
        self.log_dir = log_dir  # the project's build logs (None: the cache's own folder)

    def key(self, attrs: EnvironmentAttrs) -> str:
        """The cache folder name: the environment's content digest (plus how it was built)."""
        digest = str(attrs.get("content_digest") or "").removeprefix("sha256:")
        extra = "host" if self.reuse_host_packages else f"py{sys.version_info[0]}{sys.version_info[1]}"
        return hashlib.sha256(f"{digest}:{extra}".encode()).hexdigest()[:32]

    def check(self, attrs: EnvironmentAttrs, address: str = "") -> None:
        build = attrs.get("build")
        if build:
            raise PermanentError(
                f"{address or 'environment'}: a Docker build context (build: {build.get('path')}) "
                "cannot run on the local provider; use `provider: {kind: docker}` for it, or give the "
                "environment a conda_file instead"
            )

    def locate(self, attrs: EnvironmentAttrs) -> PythonEnv | None:
        """The environment's python if it exists already (never builds)."""
        key = self.key(attrs)
        if self._host_mode(attrs):
            return PythonEnv(sys.executable, None, key)
        venv = self.root / key
        python = venv / "bin" / "python"
        if (venv / ".recon-complete").exists() and python.exists():
            return PythonEnv(str(python), str(venv), key)
        return None

    def _host_mode(self, attrs: EnvironmentAttrs) -> bool:
        return self.reuse_host_packages

    def ensure(
        self,
        attrs: EnvironmentAttrs,
        address: str = "",
        emit: EventSink | None = None,
        status: EventSink | None = None,
    ) -> PythonEnv:
        """Build the environment's virtualenv unless it exists; return where its python is.
        ``emit`` gets the lines worth keeping, ``status`` the progress (the current package)."""
        self.check(attrs, address)
        sink: EventSink = emit or (lambda _line: None)
        progress: EventSink = status or (lambda _text: None)
        plan = pip_plan(attrs.get("conda"), add_runtime=not self.reuse_host_packages)
        warnings: list[str] = []
        if attrs.get("image"):
            how = "the host's Python" if self.reuse_host_packages else (
                "a virtualenv of its conda file's packages" if attrs.get("conda")
                else "the host's packages plus the serving runtime")
            warnings.append(f"image {attrs['image']} cannot run on the local provider: the environment runs on {how}")
        if self._host_mode(attrs):
            warnings += conda_warnings(plan, platform.python_version(), _installed_version("pip"))
            warnings += _missing_on_host(plan.requirements)
            return PythonEnv(sys.executable, None, self.key(attrs), tuple(warnings))
        key = self.key(attrs)
        final = self.root / key
        with procs.file_lock(self.root / f"{key}.lock"):
            if not (final / ".recon-complete").exists():
                self._build(final, plan, attrs, sink, progress, self._log_path(attrs, key))
        python = str(final / "bin" / "python")
        pip_version = _venv_pip_version(python)
        warnings += conda_warnings(plan, _python_version(python), pip_version)
        return PythonEnv(python, str(final), key, tuple(warnings))

    def _log_path(self, attrs: EnvironmentAttrs, key: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{attrs.get('name') or 'environment'}-{attrs.get('version') or key[:12]}")
        folder = self.log_dir if self.log_dir is not None else self.root.parent / "logs"
        return folder / "environments" / f"{name}.log"

    def _build(
        self, final: Path, plan: PipPlan, attrs: EnvironmentAttrs, emit: EventSink, status: EventSink, log: Path
    ) -> None:
        tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
        for leftover in final.parent.glob(f".tmp-{final.name}-*"):  # builds killed half-way (we hold the lock)
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # a half-built leftover without the marker
        base = _pick_python(plan.conda_only.get("python", ""))
        # Image-only environments (no conda file) run on the host's packages plus the runtime.
        system_site = not attrs.get("conda")
        args = [base, "-m", "venv", *(["--system-site-packages"] if system_site else []), str(tmp)]
        started = time.monotonic()
        what = "pip install " + redact(" ".join(plan.requirements)) if plan.requirements else "no packages"
        emit(f"building a virtualenv ({what}); full log: {_shown(log)}")
        try:
            with _BuildLog(log) as out:
                status("creating the virtualenv")
                out.run(args, "python -m venv", status)
                if plan.requirements:
                    pip = [str(tmp / "bin" / "python"), "-m", "pip", "install", *_PIP_FLAGS, *plan.requirements]
                    out.run(pip, "pip install", status)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # nothing half-built is left in the shared cache
            raise
        _relocate_scripts(tmp, final)
        (tmp / ".recon-complete").write_text(" ".join(plan.requirements) + "\n")
        os.replace(tmp, final)
        installed = f"{out.installed} packages installed" if out.installed else "nothing to install"
        emit(f"virtualenv ready in {time.monotonic() - started:.1f}s ({installed})")

    def remove(self, attrs: EnvironmentAttrs) -> None:
        """Environments are cached across projects: deleting one from a project keeps the cache."""


_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` without the credentials of URLs in it (``https://user:token@host`` -> ``https://***@host``):
    a requirement or an index URL may carry a token, which must not reach output or logs."""
    return _CREDENTIALS.sub("***@", text)


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is under it (shorter in messages)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


_COLLECTING = re.compile(r"^(?:Collecting|Processing) (\S+)")
_INSTALLING = re.compile(r"^Installing collected packages: (.*)$")
_INSTALLED = re.compile(r"^Successfully installed (.*)$")


class _BuildLog:
    """One build's log file (created 0600): every line of every command run, and the status a
    line means ("collecting numpy", "installing 48 packages")."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.installed = 0
        self._file: Any = None

    def __enter__(self) -> _BuildLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a new file gets the mode below, whatever umask says
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "w", encoding="utf-8", errors="replace")
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def run(self, argv: list[str], what: str, status: EventSink) -> None:
        """Run ``argv`` with its output in the log; ``PermanentError`` with the log's last lines."""
        self._file.write("$ " + redact(" ".join(argv)) + "\n")
        self._file.flush()
        last: deque[str] = deque(maxlen=FAILED_LOG_LINES)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, errors="replace")
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = redact(raw.rstrip("\n"))
            self._file.write(line + "\n")
            last.append(line)
            self._status(line, status)
        self._file.flush()
        if proc.wait() != 0:
            raise PermanentError(
                f"{what} failed (exit code {proc.returncode}); its full log: {_shown(self.path)}",
                detail=[line for line in last if line.strip()],
            )

    def _status(self, line: str, status: EventSink) -> None:
        if match := _COLLECTING.match(line):
            status(f"collecting {match[1].rsplit('/', 1)[-1]}")
        elif match := _INSTALLING.match(line):
            count = len([p for p in match[1].split(",") if p.strip()])
            status(f"installing {count} package{'s' if count != 1 else ''}")
        elif match := _INSTALLED.match(line):
            self.installed += len(match[1].split())


def _relocate_scripts(tmp: Path, final: Path) -> None:
    """Console scripts carry the build folder in their shebang: point them at the final folder."""
    old, new = str(tmp).encode(), str(final).encode()
    for script in (tmp / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if old in data and b"\0" not in data[:1024]:
            script.write_bytes(data.replace(old, new))
    cfg = tmp / "pyvenv.cfg"
    if cfg.exists():
        cfg.write_bytes(cfg.read_bytes().replace(old, new))


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _venv_pip_version(python: str) -> str | None:
    out = subprocess.run([python, "-c", "import importlib.metadata as m;print(m.version('pip'))"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def _missing_on_host(requirements: list[str]) -> list[str]:
    missing = [r for r in requirements if _installed_version(requirement_name(r)) is None]
    if not missing:
        return []
    return [
        "reuse_host_packages: not installed on the host: " + ", ".join(missing)
        + " (pip install them, or drop reuse_host_packages to build a virtualenv)"
    ]

"""What recon agrees to read from disk, and how much of it.

A project's files come from whoever wrote the pull request, so everything the loader reads goes
through here, and a file or folder that breaks one of these rules is ``Refused`` (the loader turns
that into a diagnostic naming the file and field) before any byte of it is read:

- **Regular files only.** A FIFO, socket or device (``/dev/zero``) is refused after a ``stat``, so
  it is never opened; files are then opened non-blocking and checked again with ``fstat`` (a file
  swapped for a FIFO in between does not block either). Symbolic links are followed; a dangling
  link or a loop is named as such.
- **No system folders.** Nothing at or under ``/proc``, ``/sys``, ``/dev``, ``/run``, ``/etc``,
  ``/boot`` (their files are pseudo-files of unbounded size, devices, or the machine's secrets),
  and not the filesystem root, whichever path or link leads there. Other paths outside the project
  are fine: Azure's own samples use ``../../model-1/model/``.
- **Bounded sizes.** A YAML file (a document, recon.yaml, a conda file) is at most
  ``limits.yaml_file_mb``; a model, code or build folder at most ``limits.tree_files`` files and
  ``limits.tree_gb`` bytes in total, checked from ``stat`` sizes before any content is read.

Messages never quote a file's content: only paths, kinds of file and sizes.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

MB = 1 << 20
GB = 1 << 30
# Folders recon never reads from (nor anything below them); "/" itself is refused too.
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev", "/run", "/etc", "/boot", "/private/etc", "/private/var/run")


class Refused(Exception):
    """A path recon will not read: ``message`` says why (content-free), ``hint`` what would do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def system_folder(path: Path | str) -> str | None:
    """The system folder ``path`` resolves into (``/`` for the root itself), or None."""
    real = os.path.realpath(path)
    if real == os.sep:
        return os.sep
    return next((s for s in SYSTEM_FOLDERS if real == s or real.startswith(s + os.sep)), None)


SYSTEM_HINT = "point it at files of the project; paths outside the project are fine, system folders are not"


def in_system_folder(path: Path | str, folder: str) -> str:
    """``resolves to /etc/passwd, inside /etc, a system folder`` (``folder`` from ``system_folder``)."""
    real = os.path.realpath(path)
    if folder == os.sep:
        return "resolves to /, the filesystem root"
    return f"resolves to {real}, inside {folder}, a system folder"


def _missing(path: Path | str, exc: OSError) -> Refused:
    """Why ``stat`` of ``path`` failed, in words (a dangling link and a loop are named)."""
    if exc.errno == errno.ELOOP:
        return Refused("is a symbolic link loop", "point it at a real file or folder")
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return Refused(
            f"is a symbolic link to {os.readlink(path)}, which does not exist",
            "fix or remove the link",
        )
    if exc.errno == errno.ENOENT:
        return Refused("does not exist", "create it, or fix the path")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Refused("cannot be read: permission denied", "make it readable by the user running recon")
    return Refused(f"cannot be read: {exc.strerror or exc}", "make it a readable regular file")


def check_path(path: Path | str, want_dir: bool | None = None) -> os.stat_result:
    """``stat`` of a path recon may read: a regular file or a folder (``want_dir``: only a folder
    when True, only a file when False), outside the system folders. Raises ``Refused``."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _missing(path, exc) from None
    folder = system_folder(path)
    if folder is not None:
        raise Refused(f"{in_system_folder(path, folder)}; recon never reads there", SYSTEM_HINT)
    is_dir = stat.S_ISDIR(st.st_mode)
    if not is_dir and not stat.S_ISREG(st.st_mode):
        raise Refused(f"is {file_kind(st.st_mode)}, not a regular file", "point it at a regular file")
    if want_dir is True and not is_dir:
        raise Refused("is a file, not a folder", "point it at a folder")
    if want_dir is False and is_dir:
        raise Refused("is a folder, not a file", "point it at a file")
    return st


def _open_regular(path: Path | str, walked: bool) -> tuple[int, os.stat_result]:
    """An open descriptor of a regular file (never blocks: a FIFO is refused, not waited on).

    ``walked``: the path was found by walking a folder recon may read (no link to a folder
    followed), so only the file itself can lead elsewhere: an ``lstat`` saying "regular file"
    spares resolving every folder above it (16,000 project files pay one syscall, not a realpath)."""
    if walked:
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise _missing(path, exc) from None
        if not stat.S_ISREG(st.st_mode):  # a link or something special: the whole check
            check_path(path, want_dir=False)
    else:
        check_path(path, want_dir=False)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _missing(path, exc) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # replaced between the stat and the open
        os.close(fd)
        raise Refused(f"is {file_kind(st.st_mode)}, not a regular file", "point it at a regular file")
    return fd, st


def _too_big(size: int, limit: int) -> Refused:
    return Refused(
        f"is {size / MB:.1f} MB, more than the {limit / MB:g} MB a YAML file may have",
        "split it, or raise `limits: {yaml_file_mb: N}` in recon.yaml",
    )


def read_file(path: Path | str, max_bytes: int, walked: bool = False) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``. Raises ``Refused``.
    ``walked``: found by walking a readable folder (see ``_open_regular``)."""
    fd, st = _open_regular(path, walked)
    try:
        if st.st_size > max_bytes:
            raise _too_big(st.st_size, max_bytes)
        chunks: list[bytes] = []
        total = 0
        while True:  # a file that grows while read, or reports no size (/proc-like), is still bounded
            chunk = os.read(fd, min(MB, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise _too_big(total, max_bytes)
    except OSError as exc:
        raise Refused(f"cannot be read: {exc.strerror or exc}", "make it a readable regular file") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def chunks(path: Path | str, walked: bool = False) -> Iterator[bytes]:
    """The content of a regular file of any size, 1 MB at a time (for digests). Raises ``Refused``.
    ``walked``: found by walking a readable folder (``scan_tree``; see ``_open_regular``)."""
    fd, _ = _open_regular(path, walked)
    try:
        while chunk := os.read(fd, MB):
            yield chunk
    except OSError as exc:
        raise Refused(f"cannot be read: {exc.strerror or exc}", "make it a readable regular file") from None
    finally:
        os.close(fd)


class TreeRefused(Refused):
    """A folder recon will not digest; ``member`` is the offending entry relative to the folder
    (empty when the folder as a whole is the problem)."""

    def __init__(self, member: str, message: str, hint: str) -> None:
        super().__init__(message, hint)
        self.member = member


def scan_tree(
    root: Path, max_files: int, max_bytes: int, skip_dirs: frozenset[str], skip_suffix: str
) -> list[tuple[str, Path]]:
    """Every file a folder's digest covers, as (POSIX path relative to ``root``, path), in the
    order of ``os.walk`` with sorted names (links to folders not followed for the digest, as
    ``os.walk``; links to files are, and must lead to regular files outside system folders).

    Links to folders are followed to check them all the same, because whoever copies the folder
    (``shutil.copytree``) follows them: such a link must not lead to a system folder, nor back
    into the folder around it (a copy that never ends), and what it holds counts towards the
    limits. Only ``stat`` is used, so a folder that is too big (``max_files``, ``max_bytes``) is
    refused before any content is read. Raises ``TreeRefused``."""
    found: list[tuple[str, Path]] = []
    totals = [0, 0]  # files, bytes

    def add(rel: str, st: os.stat_result) -> None:
        totals[0] += 1
        totals[1] += st.st_size
        if totals[0] > max_files:
            raise TreeRefused(
                "",
                f"holds more than {max_files:,} files",
                "point it at the model's or code's own folder, or raise `limits: {tree_files: N}` in recon.yaml",
            )
        if totals[1] > max_bytes:
            raise TreeRefused("", f"holds more than {max_bytes / GB:g} GB", TREE_BYTES_HINT)

    def visit(folder: str, real: str, prefix: str, digest: bool, above: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise TreeRefused(prefix.rstrip("/"), f"cannot be read: {exc.strerror or exc}", "make the folder readable") from None
        subfolders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:  # a link loop: refused as a file below
                is_dir = False
            if is_dir:
                if entry.name not in skip_dirs:
                    subfolders.append(entry)
            elif not entry.name.endswith(skip_suffix):
                rel = prefix + entry.name
                add(rel, _tree_file(entry, rel))
                if digest:
                    found.append((rel, Path(entry.path)))
        for entry in subfolders:
            rel = prefix + entry.name
            if not entry.is_symlink():
                visit(entry.path, os.path.join(real, entry.name), rel + "/", digest, above)
                continue
            try:
                check_path(entry.path, want_dir=True)
            except Refused as exc:
                raise TreeRefused(rel, exc.message, exc.hint) from None
            target = os.path.realpath(entry.path)
            if any(target == a or a.startswith(target + os.sep) for a in (*above, real)):
                raise TreeRefused(
                    rel, f"is a link to {target}, a folder around it (a copy would never end)", "remove the link"
                )
            visit(entry.path, target, rel + "/", False, (*above, real))

    real_root = os.path.realpath(root)
    visit(str(root), real_root, "", True, ())
    return found


def _tree_file(entry: os.DirEntry[str], rel: str) -> os.stat_result:
    """``stat`` of a file in a folder being scanned: a regular file, or a link to one (checked)."""
    try:
        st = entry.stat(follow_symlinks=False)
        # a link may lead anywhere; a plain file lies inside the folder, which was checked
        st = check_path(entry.path, want_dir=False) if stat.S_ISLNK(st.st_mode) else st
    except OSError as exc:
        raise TreeRefused(rel, f"cannot be read: {exc.strerror or exc}", "make it readable") from None
    except Refused as exc:
        raise TreeRefused(rel, exc.message, exc.hint) from None
    if not stat.S_ISREG(st.st_mode):
        raise TreeRefused(rel, f"is {file_kind(st.st_mode)}, not a regular file", "remove it from the folder")
    return st


TREE_BYTES_HINT = "point it at the model's or code's own files, or raise `limits: {tree_gb: N}` in recon.yaml"

"""The CLI's side of a launcher's control socket (``runtime/launcher.py``), for every provider
with warm starts: one JSON object a line each way, a greeting first, then requests and answers.

``LauncherError`` means "start the instances cold": whatever goes wrong with a launcher (it did
not start, did not answer, answered something else, is gone) is never a reason to fail an apply.
"""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any


class LauncherError(Exception):
    """The launcher could not start or stopped answering: start instances without it."""


def ready_line(who: str, preloaded: int, seconds: float, failed: list[str]) -> str:
    """What a provider says once a launcher (``who``: "launcher pid 42", "pod NAME") is ready."""
    skipped = f" (not importable: {', '.join(failed[:5])})" if failed else ""
    return f"{who}: {preloaded} library modules imported in {seconds:.1f}s{skipped}; instances fork from it"


class Channel:
    """A connected control socket: ``send`` a request, ``receive`` an answer (``LauncherError``
    when the launcher is gone, says something that is not an answer, or reports an error)."""

    def __init__(self, sock: socket.socket, who: str) -> None:
        self.socket = sock
        self.who = who
        self._reader = sock.makefile("rb")
        self._writer = sock.makefile("wb")

    def send(self, message: dict[str, Any]) -> None:
        try:
            self._writer.write(json.dumps(message).encode() + b"\n")
            self._writer.flush()
        except OSError as ex:
            raise LauncherError(f"{self.who} is gone: {ex}") from ex

    def receive(self) -> dict[str, Any]:
        try:
            line = self._reader.readline()
        except (OSError, TimeoutError) as ex:
            raise LauncherError(f"{self.who} did not answer: {ex}") from ex
        if not line:
            raise LauncherError(f"{self.who} exited")
        try:
            message = json.loads(line)
        except ValueError as ex:
            raise LauncherError(f"{self.who} said {line[:200]!r}") from ex
        if not isinstance(message, dict) or "error" in message:
            raise LauncherError(f"{self.who}: {message!r}")
        return message

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        return self.receive()

    def greeting(self) -> dict[str, Any]:
        """The launcher's first line: it has imported what it preloads."""
        hello = self.receive()
        if not hello.get("ready"):
            raise LauncherError(f"{self.who}: unexpected greeting {hello!r}")
        return hello

    def fork(self, instance_id: int, argv: list[str], log: str, pid_file: str, record: dict[str, Any]) -> int:
        """Ask for one instance (``host.main(argv)``, output appended to ``log``, ``record`` with
        its pid written to ``pid_file`` by the child first); the child's pid in the launcher's view."""
        answer = self.request({"id": instance_id, "argv": argv, "log": log, "pid_file": pid_file, "record": record})
        if answer.get("id") != instance_id or not isinstance(answer.get("pid"), int):
            raise LauncherError(f"{self.who} answered {answer!r}")
        return int(answer["pid"])

    def close(self) -> None:
        for stream in (self._writer, self._reader, self.socket):
            with contextlib.suppress(OSError):
                stream.close()

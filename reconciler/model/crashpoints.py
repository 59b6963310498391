"""Crash points: named places where a test makes recon SIGKILL itself, deterministically.

A crash-safe apply has to be shown safe at the moments that matter (intent recorded but nothing
done; instances started but not ready; ready but not in the router's pool; a table written but not
loaded; a provider done but its result not recorded ...). Random delays reach them by chance; a
crash point reaches them every time, so the kill loop in ``tests/e2e/test_kill_loop.py`` is
reproducible in CI.

``crash_point(name, context)`` does nothing unless ``RECON_CRASH_AT`` is set in the environment:

    RECON_CRASH_AT="<name>[@<context>][#<n>]"

The process sends itself SIGKILL at the ``n``-th (default 1) time a crash point called ``name`` is
passed whose ``context`` contains ``<context>`` (a step id, a resource address). ``name`` may be
``*`` (any point). ``RECON_CRASH_TRACE=<file>`` appends one line per point passed
(``name context``), to choose points from. Both are for tests; nothing else reads them.
"""

from __future__ import annotations

import os
import signal
import threading

_ENV_AT = "RECON_CRASH_AT"
_ENV_TRACE = "RECON_CRASH_TRACE"
_lock = threading.Lock()
_hits = 0


def _parse(spec: str) -> tuple[str, str, int]:
    name, _, count = spec.partition("#")
    name, _, context = name.partition("@")
    try:
        n = int(count) if count else 1
    except ValueError:
        n = 1
    return name.strip(), context.strip(), max(1, n)


def crash_point(name: str, context: str = "") -> None:
    """SIGKILL this process here when ``RECON_CRASH_AT`` names this point (see the module docstring)."""
    spec = os.environ.get(_ENV_AT)
    trace = os.environ.get(_ENV_TRACE)
    if not spec and not trace:
        return
    global _hits
    with _lock:
        if trace:
            with open(trace, "a", encoding="utf-8") as out:
                out.write(f"{name} {context}\n")
        if not spec:
            return
        want, where, n = _parse(spec)
        if want not in ("*", name) or where not in context:
            return
        _hits += 1
        if _hits >= n:
            os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["crash_point"]

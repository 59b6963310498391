"""``paused()``: the cyclic garbage collector off for a stretch of allocation-heavy, cycle-free work.

Loading a large project and planning it allocate millions of small objects that all stay alive
(the parsed documents, the canonical attributes, the plan). CPython's collector runs a pass for
every 700 net allocations and, as the heap grows, full passes over everything alive: a third of
the time of a 10,000-deployment plan went into passes that free nothing. Reference counting still
frees everything that is not a cycle, and this work makes none worth keeping, so the collector is
paused while it runs and set back as it was afterwards (paused sections nest).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

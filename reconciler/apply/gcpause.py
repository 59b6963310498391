"""``paused()``: the cyclic garbage collector off for a stretch of allocation-heavy, cycle-free work.

Loading a large project and planning it allocate millions of small objects that all stay alive
(the parsed documents, the canonical attributes, the plan). CPython's collector runs a pass for
every 700 net allocations and, as the heap grows, full passes over everything alive: a third of
the time of a 10,000-deployment plan went into passes that free nothing. Reference counting still
frees everything that is not a cycle, and this work makes none worth keeping, so the collector is
paused while it runs and set back as it was afterwards (paused sections nest).

What the section allocated and kept is then moved to the permanent generation (``gc.freeze``):
re-enabled, the collector would otherwise traverse all of it at once in its next passes, which
costs what pausing saved. Frozen objects are still freed by reference counting when dropped; only
a cycle among them would outlive its last reference, and a plan holds none.
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
            gc.freeze()
            gc.enable()

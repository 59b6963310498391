"""Deployments at run time: their upstreams (instance addresses), concurrency slots and waiting requests.

``Pools.update`` is the one way the set of upstreams changes: a table reload calls it today with the
table's deployments; whatever else learns where instances listen (a watch of Kubernetes EndpointSlices,
say) calls it the same way. Its guarantees:

- an upstream that stays keeps its in-flight count and its idle keep-alive connections;
- an upstream that goes is drained: requests in flight there finish, then its connections close;
- a deployment that goes answers its queued requests at once (429), and every pool hands the free slots
  it may have gained to the requests waiting for one.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Protocol

from .table import DeploymentSpec

if TYPE_CHECKING:
    from .metrics import Series


class Connection(Protocol):
    """An idle keep-alive connection to an upstream (upstream.UpstreamConn)."""

    transport: asyncio.Transport


class Waiter(Protocol):
    """A request waiting for a free slot of a pool (upstream.Exchange)."""

    waiting: bool
    tried: set[str]

    def on_slot(self, up: Upstream) -> None: ...

    def on_queue_timeout(self) -> None: ...


class Upstream:
    """One instance address: in-flight count and a LIFO pool of idle keep-alive connections."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        host, _, port = addr.rpartition(":")
        self.host, self.port = host, int(port)
        self.in_flight = 0
        self.idle: list[Connection] = []
        self.pool: Pool | None = None  # the deployment it serves now; None once removed (draining)
        # where its requests are counted (metrics.Metrics.attach): live ones, mirrored copies
        self.live: Series | None = None
        self.mirror: Series | None = None

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.transport.close()
        self.idle.clear()


class Pool:
    """A deployment at run time: its upstreams, the concurrency limit and the queue of waiting requests."""

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.upstreams: list[Upstream] = []
        self.waiters: collections.deque[Waiter] = collections.deque()
        self.active = 0
        self.rr = 0

    def try_acquire(self, exclude: set[str] | None = None) -> Upstream | None:
        ups, limit = self.upstreams, self.spec.max_concurrent
        n = len(ups)
        best: Upstream | None = None
        best_i = 0
        for i in range(n):  # least in-flight first, round robin among equals
            j = (self.rr + i) % n
            u = ups[j]
            if u.in_flight < limit and (best is None or u.in_flight < best.in_flight) and \
                    (not exclude or u.addr not in exclude):
                best, best_i = u, j
        if best is not None:
            self.rr = (best_i + 1) % n
            best.in_flight += 1
            self.active += 1
        return best

    def may_queue(self) -> bool:
        """Azure admits at most 2 * max_concurrent * instances requests at once (in flight + waiting)."""
        capacity = self.spec.max_concurrent * len(self.upstreams)
        return self.spec.max_queue_wait_ms > 0 and self.active + len(self.waiters) < 2 * capacity

    def dispatch(self) -> None:
        """Hand free slots to waiting requests, oldest first."""
        while self.waiters:
            ex = self.waiters[0]
            if not ex.waiting:
                self.waiters.popleft()
                continue
            up = self.try_acquire(ex.tried)
            if up is None:
                return
            self.waiters.popleft()
            ex.on_slot(up)


def release(up: Upstream, pool: Pool) -> None:
    """A request is done with ``up``: its slot goes to the next waiting request; an upstream no longer
    in the table closes its connections once nothing is in flight there."""
    up.in_flight -= 1
    pool.active -= 1
    pool.dispatch()
    if up.pool is None and up.in_flight == 0:
        up.close_idle()


class Pools:
    """Every deployment's pool by lowercased name, every upstream by address, and the upstreams that
    left the table while requests were in flight there (``removed``, draining)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Pool] = {}
        self.upstreams: dict[str, Upstream] = {}
        self.removed: dict[str, Upstream] = {}

    def update(self, deployments: dict[str, DeploymentSpec]) -> None:
        """Serve ``deployments`` (lowercased name -> spec with its upstreams) from now on."""
        pools: dict[str, Pool] = {}
        upstreams: dict[str, Upstream] = {}
        previous = {**self.removed, **self.upstreams}
        for name, spec in deployments.items():
            pool = self.by_name.get(name) or Pool(spec)
            pool.spec = spec
            pool.upstreams = []
            for addr in spec.upstreams:
                up = upstreams.get(addr) or previous.get(addr) or Upstream(addr)
                up.pool = pool
                upstreams[addr] = up
                pool.upstreams.append(up)
            pool.rr %= max(1, len(pool.upstreams))
            pools[name] = pool
        self.removed = {}
        for addr, up in previous.items():
            if addr not in upstreams:  # removed: drain the requests in flight, then close
                up.pool = None
                if up.in_flight:
                    self.removed[addr] = up
                else:
                    up.close_idle()
        for name, pool in self.by_name.items():
            if name not in pools:  # a deleted deployment: its queued requests get 429 now
                for ex in list(pool.waiters):
                    ex.on_queue_timeout()
                pool.waiters.clear()
        self.by_name, self.upstreams = pools, upstreams
        for pool in pools.values():
            pool.dispatch()

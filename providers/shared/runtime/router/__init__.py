"""An endpoint's router: key check, traffic split, mirroring, header routing, limits, hot reload.

A program recon runs in another interpreter (its own Python locally, the router image's ``python3`` in
a container or a pod), shipped as one zip archive of this package (``providers.shared.runtime.
router_zipapp``): ``python router.pyz --table FILE --host 127.0.0.1 --port P``. It imports nothing of
recon (only the standard library, httptools, and uvloop when importable), and its modules import each
other relatively, so the package runs under any name. See docs/runtime.md for the table format and the
answers, which follow Azure managed online endpoints.

The modules, by concern:

- ``table``: the routing table and the keys (parsing, the key check, the traffic split);
- ``clients``: HTTP to clients (httptools' request parser, limits, deadlines);
- ``pools``: deployments' upstreams, slots and queues (``Pools.update``: the one way upstreams change);
- ``upstream``: connections to instances (httptools' response parser) and one proxied request;
- ``status``: the log, the access line of every answer, the router's own URLs (``GET /-/router``);
- ``core``: the router that ties them together; ``main``: arguments, socket, signals, drain.

Invariants:
- the routing table is swapped in one assignment on the event loop: a request sees the old or the new
  table, never a mix; requests already sent to an upstream finish there (drain);
- a request that got no byte back from an upstream (closed keep-alive connection, refused connect while
  an instance is being removed) is retried on another upstream of the same deployment;
- mirrored copies start after the live answer is written and only take a free slot: the live answer is
  never delayed or changed by them;
- the key is checked on the headers, before any body byte is read: 401 and close;
- bodies over the endpoint's limit are 413 (checked on Content-Length, and while a chunked body arrives);
- no connection outlives the header, body or idle timeout; at the connection cap the oldest idle one is
  closed for a new one (503 when every connection has a request in flight);
- keys and credentials in URLs are never logged; upstreams (instances) get the instance key, never the
  client's.
"""

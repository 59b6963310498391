"""Dependency graphs: the only module that imports ``networkx``.

Two graphs:

- the *resource graph* (:func:`resource_graph`): nodes are addresses, edges run from what is used to
  what uses it, as a reader draws it: environments and models -> deployments -> endpoints (an
  endpoint's traffic needs its deployments). A deployment also needs its endpoint to exist; that
  edge is implied by the deployment's ``endpoint_name`` and handled by the planner's step rules, not
  drawn here (it would make every endpoint a cycle). This is what ``recon graph`` renders.
- the *step graph* (:func:`step_order`): nodes are plan step ids, edges run from a step to the steps
  that wait for it; apply walks it in topological order.

A cycle is a ``ConfigError`` naming the cycle found by ``nx.find_cycle``.

``networkx`` costs about 0.2 s to import, so it is imported only where a graph is built (``recon
graph``) or a cycle is reported; the step order of every plan uses the standard library's
``graphlib`` on plain dicts.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from reconciler.model.errors import ConfigError, Diagnostic
from reconciler.model.resources import Attributes, as_deployment, as_endpoint, endpoint_address

if TYPE_CHECKING:
    import networkx as nx


def uses(rtype: str, attributes: Attributes, depends_on: Iterable[str] = ()) -> list[str]:
    """Addresses a resource needs before it can exist (for a deployment: its model and environment).

    For an endpoint: the deployments its traffic and mirror traffic name. Extra ``depends_on``
    entries (from the loader or the state) are added, except a deployment's own endpoint.
    """
    found: list[str] = []
    if rtype == "deployment":
        dep = as_deployment(attributes)
        for ref in (dep.get("model"), dep.get("environment")):
            if isinstance(ref, str) and ref:
                found.append(ref)
        own = endpoint_address(str(dep.get("endpoint_name", "")))
        found.extend(d for d in depends_on if d != own and d not in found)
    elif rtype == "endpoint":
        ep_attrs = as_endpoint(attributes)
        ep = str(ep_attrs.get("name", "")).lower()
        for shares in (ep_attrs.get("traffic"), ep_attrs.get("mirror_traffic")):
            for name, pct in (shares or {}).items():
                addr = f"deployment.{ep}.{str(name).lower()}"
                if pct and addr not in found:
                    found.append(addr)
    else:
        found.extend(depends_on)
    return found


def resource_graph(resources: Mapping[str, tuple[str, Attributes, Iterable[str]]]) -> nx.DiGraph[str]:
    """Graph of addresses: ``resources`` maps address -> (type, attributes, depends_on).

    Edges u -> v mean "v uses u". Raises ``ConfigError`` on a cycle.
    """
    import networkx as nx

    g: nx.DiGraph[str] = nx.DiGraph()
    for address, (rtype, attrs, deps) in resources.items():
        g.add_node(address, type=rtype)
        for dep in uses(rtype, attrs, deps):
            g.add_edge(dep, address)
    check_acyclic(g, "resource")
    return g


def desired_graph(desired: Any) -> nx.DiGraph[str]:
    """The resource graph of a ``DesiredState`` (the input of ``render_graph``)."""
    return resource_graph({a: (r.type, r.attributes, r.depends_on) for a, r in desired.resources.items()})


def check_acyclic(g: nx.DiGraph[str], what: str) -> None:
    import networkx as nx

    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return
    chain = " -> ".join([str(u) for u, _ in cycle] + [str(cycle[0][0])])
    raise ConfigError(
        Diagnostic(
            f"dependency cycle between {what}s: {chain}",
            hint="a resource cannot depend on itself, directly or through others",
        )
    )


def step_order(step_ids: list[str], depends_on: Callable[[str], Iterable[str]]) -> list[str]:
    """Topological order of steps, generation by generation (every step of a generation only waits
    for earlier ones); within a generation the order the steps were listed in is kept.

    Dependencies on step ids that are not in ``step_ids`` are ignored (the planner only links
    steps it made). Raises ``ConfigError`` on a cycle (a planner bug or an impossible request).
    """
    rank = {sid: i for i, sid in enumerate(step_ids)}
    preds = {sid: [dep for dep in depends_on(sid) if dep in rank] for sid in step_ids}
    sorter = graphlib.TopologicalSorter(preds)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        import networkx as nx

        g: nx.DiGraph[str] = nx.DiGraph()
        g.add_nodes_from(step_ids)
        g.add_edges_from((dep, sid) for sid, deps in preds.items() for dep in deps)
        check_acyclic(g, "step")
        raise
    order: list[str] = []
    while sorter.is_active():
        generation = sorted(sorter.get_ready(), key=rank.__getitem__)
        order.extend(generation)
        sorter.done(*generation)
    return order

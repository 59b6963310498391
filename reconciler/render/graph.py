"""The dependency graph as DOT or Mermaid (``recon graph``), sorted so that the output is stable."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["mermaid_ids", "render_graph"]

_DOT_SHAPE = {
    "environment": "component",
    "model": "cylinder",
    "endpoint": "doubleoctagon",
    "deployment": "box",
}
_MERMAID_SHAPE = {"environment": ("[[", "]]"), "model": ("[(", ")]"), "endpoint": ("([", "])")}


def render_graph(g: nx.DiGraph[str], fmt: str = "dot") -> str:
    """The dependency graph (edges dependency -> dependent) as DOT or Mermaid, sorted."""
    nodes = sorted(g.nodes, key=str)
    edges = sorted(g.edges, key=lambda e: (str(e[0]), str(e[1])))
    if fmt == "dot":
        return _dot(g, nodes, edges)
    if fmt == "mermaid":
        return _mermaid(g, nodes, edges)
    raise ValueError(f"unknown graph format {fmt!r} (expected dot or mermaid)")


def _dot_quote(text: Any) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot(g: nx.DiGraph[str], nodes: list[Any], edges: list[tuple[Any, Any]]) -> str:
    lines = ["digraph recon {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    for n in nodes:
        rtype = g.nodes[n].get("type") or str(n).partition(".")[0]
        attrs = f"label={_dot_quote(n)}"
        if rtype in _DOT_SHAPE:
            attrs += f", shape={_DOT_SHAPE[rtype]}"
        lines.append(f"  {_dot_quote(n)} [{attrs}];")
    lines += [f"  {_dot_quote(u)} -> {_dot_quote(v)};" for u, v in edges]
    return "\n".join(lines + ["}"])


def mermaid_ids(nodes: Iterable[Any]) -> dict[Any, str]:
    """Unique Mermaid-safe ids (``[A-Za-z0-9_]``, prefixed so no id is a keyword like ``end``)."""
    ids: dict[Any, str] = {}
    used: set[str] = set()
    for n in nodes:
        base = "n_" + re.sub(r"[^A-Za-z0-9_]", "_", str(n))
        nid, k = base, 2
        while nid in used:
            nid, k = f"{base}_{k}", k + 1
        used.add(nid)
        ids[n] = nid
    return ids


def _mermaid_label(text: Any) -> str:
    return '"' + str(text).replace('"', "#quot;").replace("\n", " ") + '"'


def _mermaid(g: nx.DiGraph[str], nodes: list[Any], edges: list[tuple[Any, Any]]) -> str:
    ids = mermaid_ids(nodes)
    lines = ["flowchart LR"]
    for n in nodes:
        rtype = g.nodes[n].get("type") or str(n).partition(".")[0]
        left, right = _MERMAID_SHAPE.get(rtype, ("[", "]"))
        lines.append(f"  {ids[n]}{left}{_mermaid_label(n)}{right}")
    lines += [f"  {ids[u]} --> {ids[v]}" for u, v in edges]
    return "\n".join(lines)

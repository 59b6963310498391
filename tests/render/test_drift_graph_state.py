"""recon drift, recon graph and recon state output."""

from __future__ import annotations

import json
import re

import networkx as nx
import pytest

from reconciler.plan.types import Action, DriftItem, Plan, ResourceChange
from reconciler.render import render_drift
from reconciler.render.graph import render_graph
from reconciler.render.text import render_state_list, render_state_show
from reconciler.state.document import Pending, State, StateResource
from tests.render.plans import BLUE, EP, MODEL, full_plan


def test_drift_text_names_resource_and_attribute_apart_from_changes() -> None:
    plan = full_plan()
    text = render_drift(plan.drift, "text", plan=plan)
    assert text.splitlines()[-1] == "Drift: 1 changed, 1 missing, 1 unmanaged."
    drift_part, pending = text.split("Pending changes (not drift; the next apply makes these too):")
    assert f"~ {BLUE}\n      instance_count: 2 -> 1" in drift_part
    assert "instance_count: 2 -> 10" not in text  # pending attribute changes are not drift
    # blue's change also sets code.digest, which did not drift: it is a pending change, not a repair
    assert "The next apply repairs the drift" not in text
    assert pending.splitlines()[1:6] == [
        "  + model.my-model:1",
        f"  ~ {BLUE}",
        "  -/+ deployment.my-endpoint.green",
        "  - deployment.my-endpoint.old",
        f"  ~ {EP}",
    ]
    assert not re.search(r"\x1b\[", text)


def _drift_only_plan() -> Plan:
    """The plan ``recon drift`` makes when an instance died and an environment variable was
    changed behind recon's back, and nothing changed in the files."""
    drift = [
        DriftItem(address=BLUE, kind="changed", path="instance_count", recorded=2, actual=1,
                  detail="instance 2 (pid 4242) is not running"),
        DriftItem(address=BLUE, kind="changed", path="environment_variables", recorded={"MODE": "fast"},
                  actual={"MODE": "x"}),
        DriftItem(address=EP, kind="missing", detail="the router of endpoint my-endpoint is not running"),
    ]
    before = {"name": "blue", "instance_count": 1, "environment_variables": {"MODE": "x"}}
    after = {"name": "blue", "instance_count": 2, "environment_variables": {"MODE": "fast"}}
    changes = [
        ResourceChange(address=BLUE, type="deployment", name="blue", provider="local", action=Action.UPDATE,
                       before=before, after=after),
        ResourceChange(address=EP, type="endpoint", name="my-endpoint", provider="local",
                       action=Action.CREATE, after={"name": "my-endpoint"}),
        ResourceChange(address=MODEL, type="model", name="my-model", provider="local", action=Action.NOOP,
                       before={"name": "my-model"}, after={"name": "my-model"}),
    ]
    return Plan(provider="local", serial=4, resource_changes=changes, drift=drift)


def test_drift_text_does_not_call_the_repair_of_the_drift_pending() -> None:
    plan = _drift_only_plan()
    assert render_drift(plan.drift, "text", plan=plan).splitlines()[-5:] == [
        "The next apply repairs the drift:",
        f"  ~ {BLUE}",
        f"  + {EP}",
        "",
        "Drift: 1 changed, 1 missing, 0 unmanaged.",
    ]
    doc = json.loads(render_drift(plan.drift, "json", plan=plan))
    assert doc["drift_repairs"] == [BLUE, EP]
    markdown = render_drift(plan.drift, "markdown", plan=plan)
    assert "(2 repairs of the drift, 0 other pending)" in markdown
    assert f"The next apply repairs the drift with `{BLUE}`, `{EP}`.\n" in markdown
    assert "Pending changes" not in markdown


def test_no_drift_text() -> None:
    assert render_drift([], "text") == "No drift. The real world matches the recorded state."


def test_drift_json() -> None:
    plan = full_plan()
    doc = json.loads(render_drift(plan.drift, "json", plan=plan))
    assert doc["summary"] == {"changed": 1, "missing": 1, "unmanaged": 1}
    assert doc["plan_digest"] == plan.digest
    assert doc["resource_drift"][0]["change"]["after"]["instance_count"] == 1
    assert json.loads(render_drift([], "json"))["resource_drift"] == []


def test_drift_markdown_and_bad_format() -> None:
    assert render_drift([], "markdown").startswith("<!-- recon:drift digest=sha256:")
    with pytest.raises(ValueError, match="unknown drift format"):
        render_drift([], "xml")


def _graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_node(MODEL, type="model")
    g.add_node("environment.my-env:1", type="environment")
    g.add_node(BLUE, type="deployment")
    g.add_node(EP, type="endpoint")
    g.add_node("deployment.end.end")  # no type attribute; "end" is a Mermaid keyword
    g.add_node('odd "name"')
    g.add_edge(MODEL, BLUE)
    g.add_edge("environment.my-env:1", BLUE)
    g.add_edge(EP, BLUE)
    g.add_edge(EP, "deployment.end.end")
    return g


def test_dot_declares_every_edge_endpoint_and_is_sorted() -> None:
    dot = render_graph(_graph(), "dot")
    lines = dot.splitlines()
    assert lines[0] == "digraph recon {" and lines[-1] == "}"
    declared = {m.group(1) for line in lines if (m := re.match(r'\s+("(?:[^"\\]|\\.)*") \[label=', line))}
    edges = [
        re.match(r'\s+("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*");$', line) for line in lines if " -> " in line
    ]
    assert len(edges) == 4 and all(edges)
    for m in edges:
        assert m is not None and m.group(1) in declared and m.group(2) in declared
    assert f'"{MODEL}" -> "{BLUE}";' in dot
    assert r'"odd \"name\""' in dot
    assert "shape=cylinder" in dot  # models
    assert render_graph(_graph(), "dot") == dot


def test_mermaid_ids_are_sanitised_labels_kept_edges_declared() -> None:
    text = render_graph(_graph(), "mermaid")
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    nodes = {}
    for line in lines[1:]:
        m = re.match(r"^  (\w+)[\[\(]+\"([^\"]*)\"[\]\)]+$", line)
        if m:
            nodes[m.group(1)] = m.group(2)
    edges = [re.match(r"^  (\w+) --> (\w+)$", line) for line in lines[1:] if "-->" in line]
    assert len(nodes) == 6 and len(edges) == 4
    for m in edges:
        assert m is not None and m.group(1) in nodes and m.group(2) in nodes
    assert all(re.fullmatch(r"n_[A-Za-z0-9_]+", nid) for nid in nodes)
    assert MODEL in nodes.values() and "odd #quot;name#quot;" in nodes.values()
    assert "end" not in nodes


def test_mermaid_ids_stay_unique_when_sanitising_collides() -> None:
    g = nx.DiGraph()
    g.add_edge("model.a:1", "model.a.1")
    lines = render_graph(g, "mermaid").splitlines()
    ids = [line.split("[")[0].strip() for line in lines[1:] if "[" in line]
    assert len(set(ids)) == 2


def test_graph_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="dot or mermaid"):
        render_graph(nx.DiGraph(), "svg")


def _state() -> State:
    return State(
        lineage="l",
        serial=3,
        resources={
            EP: StateResource(
                address=EP,
                type="endpoint",
                name="my-endpoint",
                provider="local",
                attributes={"auth_mode": "key"},
            ),
            BLUE: StateResource(
                address=BLUE,
                type="deployment",
                name="blue",
                provider="local",
                attributes={"instance_count": 2, "environment_variables": {"A B": "1"}, "tags": {}},
                depends_on=[EP, MODEL],
                outputs={"scoring_uri": "http://127.0.0.1:9000/score"},
                status="tainted",
            ),
        },
    )


def test_state_list_is_sorted_and_notes_status() -> None:
    assert render_state_list(_state()).splitlines() == [f"{BLUE}  (tainted)", EP]


def test_state_list_and_show_name_an_interrupted_operation() -> None:
    state = _state()
    intent = Pending(step=f"rollout:{BLUE}", kind="rollout", attributes={"instance_count": 2}, batches=2)
    state.resources[EP] = state.resources[EP].model_copy(update={"pending": Pending(step="x", kind="update")})
    state.resources[BLUE] = state.resources[BLUE].model_copy(update={"pending": intent})
    assert render_state_list(state).splitlines() == [
        f"{BLUE}  (tainted, interrupted rollout)", f"{EP}  (interrupted update)"]
    text = render_state_show(state.resources[BLUE])
    assert "    pending" in text and f'step         = "rollout:{BLUE}"' in text
    assert "pending" not in render_state_show(_state().resources[BLUE])


def test_state_show_lists_attributes_and_outputs() -> None:
    text = render_state_show(_state().resources[BLUE])
    assert text.startswith(f'# {BLUE}:\nresource "recon_deployment" "blue" {{')
    assert text.endswith("}")
    assert re.search(r"\n        instance_count +\= 2\n", text)
    assert '"A B" = "1"' in text
    assert f'"{EP}",' in text and f'"{MODEL}",' in text
    assert 'scoring_uri = "http://127.0.0.1:9000/score"' in text
    assert 'status     = "tainted"' in text

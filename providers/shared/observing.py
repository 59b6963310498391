"""What an instance-running provider (local, docker) reports from ``observe``: what runs, never what
was meant to.

It is read from the router's live table (``GET /-/router``: its version, split and pools) and from
every instance found (its configuration digest, whether it answers): a deployment counts the
instances that answer *and* are in the router's pool; every other instance found, an upstream in the
pool that no instance serves, instances of more than one configuration (or of another than the
recorded one) and processes with the deployment's marks that nothing records make it *unsettled*
(``Observation.unsettled``), which the next plan repairs. An endpoint whose router serves another
version of its table than the one written is unsettled too. Everything a killed apply can leave
behind is one of these, so a plan after a crash always sees it, and the repair adopts (pools) or stops
it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from providers.shared import files
from providers.shared.routing_table import normal_traffic
from reconciler.model.resources import ObservedDeployment, ObservedEndpoint, as_deployment, as_model
from reconciler.plan.provider import Observation
from reconciler.state.document import StateResource


def endpoint_observation(ep: Any, resource: StateResource, outputs: dict[str, Any],
                         live: dict[str, Any] | None = None) -> Observation:
    """What an endpoint whose router answers looks like: its auth mode from the table, its split
    as the router serves it (``live``: its ``GET /-/router``), unsettled when the router serves
    another version of the table than the one written (a change was not loaded)."""
    table = ep.read_table()
    live = live if live is not None else ep.status()
    serving = table
    unsettled: list[str] = []
    if live is not None:
        if live.get("version") != table.get("version"):
            unsettled.append(f"its router serves version {live.get('version')} of the routing table, but version "
                             f"{table.get('version')} was written (a change was not loaded)")
        elif "traffic" in live and any(normal_traffic(live.get(k)) != normal_traffic(table.get(k))
                                       for k in ("traffic", "mirror_traffic")):
            unsettled.append("its routing table was changed without the router loading it (the router serves "
                             f"{_split(live)}, the table says {_split(table)})")
        if "traffic" in live:  # a router of an older recon does not report its split: the table's
            serving = live
    observed: ObservedEndpoint = {
        "auth_mode": table.get("auth_mode", resource.attributes.get("auth_mode")),
        "traffic": normal_traffic(serving.get("traffic")),
        "mirror_traffic": normal_traffic(serving.get("mirror_traffic")),
    }
    return Observation(True, attributes=observed, outputs=outputs, unsettled=unsettled)


def live_pool(ep: Any, deployment: str) -> set[str] | None:
    """The upstreams the endpoint's router sends ``deployment``'s requests to: from its live table
    when it answers, else from the table written (None: there is no table)."""
    status = ep.status()
    if status is not None:
        entry = (status.get("deployments") or {}).get(deployment) or {}
        return set((entry.get("upstreams") or {}).keys())
    if not ep.table.exists():
        return None
    return set(ep.routed(deployment) or [])


def serving_instances(found: list[Any], answered: list[Any], pool: set[str] | None) -> list[Any]:
    """What a deployment counts: its instances that are alive, answer (``answered``) and are in the
    router's pool (``pool``, see ``live_pool``; None: no table, every one counts)."""
    return [i for i in found if i.alive and i in answered and (pool is None or i.upstream() in pool)]


def deployment_observation(runner: Any, resource: StateResource, found: list[Any], answered: list[Any],
                           pool: set[str] | None, noun: str, problems: list[str],
                           strays: list[str]) -> Observation:
    """A deployment of which ``found`` instances are recorded (``answered``: those alive that pass their
    liveness probe; ``pool``: the router's): it counts its ``serving_instances``. ``problems`` and
    ``strays`` (unrecorded processes with its marks): the provider's."""
    attrs = as_deployment(resource.attributes)
    alive = [i for i in found if i.alive]
    serving = serving_instances(found, answered, pool)
    seen_problems: list[str] = []
    for inst in found:
        if not inst.alive:
            seen_problems.append(f"{inst.label} {inst.down_reason}")
        elif inst not in answered:
            seen_problems.append(f"{inst.label} does not answer its liveness probe")
    seen_problems += problems
    observed: ObservedDeployment = {"instance_count": len(serving)}
    declared = dict(attrs.get("environment_variables") or {})
    recorded_digest = resource.outputs.get("config_digest")
    for inst in alive:  # an instance of another configuration is unsettled, not changed variables
        if recorded_digest and inst.config_digest != recorded_digest:
            continue
        seen = runner.check_environment(inst, declared)
        if seen is not None:
            observed["environment_variables"] = seen
            seen_problems.append(f"{inst.label} runs with other environment variables")
            break
    outputs = {**resource.outputs, "instances": [i.to_output() for i in serving]}
    unsettled = _unsettled(resource, found, serving, pool, noun) + strays
    return Observation(True, attributes=observed, outputs=outputs, problems=seen_problems, unsettled=unsettled)


def _unsettled(resource: StateResource, found: list[Any], serving: list[Any], pool: set[str] | None,
               noun: str) -> list[str]:
    """Why the deployment is not the set of serving instances of one configuration its record
    describes (see the module docstring); empty when it is."""
    out: list[str] = []
    for inst in found:
        if inst in serving:
            continue
        if not inst.alive:
            out.append(f"{inst.label} {inst.down_reason}")
        elif pool is not None and inst.upstream() not in pool:
            out.append(f"{inst.label} runs, but the router does not send it requests")
        else:
            out.append(f"{inst.label} does not answer its liveness probe")
    listening = {i.upstream() for i in found if i.alive}
    out += [f"the router sends its requests to {up}, where none of its {noun}s listens"
            for up in sorted((pool or set()) - listening)]
    digests = sorted({i.config_digest for i in serving})
    recorded = resource.outputs.get("config_digest")
    if len(digests) > 1:
        out.append(f"its instances run {len(digests)} configurations ({', '.join(map(_short, digests))}): "
                   "a rolling update did not finish")
    elif digests and recorded and digests[0] != recorded:
        out.append(f"its instances run configuration {_short(digests[0])}, the state records {_short(recorded)}")
    return out


def _split(table: dict[str, Any]) -> str:
    traffic = normal_traffic(table.get("traffic"))
    mirror = normal_traffic(table.get("mirror_traffic"))
    text = ", ".join(f"{k} {v}%" for k, v in sorted(traffic.items())) or "no traffic"
    return text + ("; mirror " + ", ".join(f"{k} {v}%" for k, v in sorted(mirror.items())) if mirror else "")


def _short(digest: str | None) -> str:
    return str(digest or "?").removeprefix("sha256:")[:12]


def model_observation(state_dir: Path, resource: StateResource) -> Observation:
    """A model is its folder of files under the project's state folder."""
    model = as_model(resource.attributes)
    if not files.model_present(state_dir, model):
        return Observation(False, problems=[f"its folder {files.model_dir(state_dir, model)} is gone"])
    return Observation(True, outputs=resource.outputs)

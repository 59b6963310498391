"""Helpers every instance-running provider (local, docker) shares: one definition of how a
deployment's attributes turn into router settings, counts and drain times, and of the error a
failed start becomes; and ``InstanceProvider``, the template both implement.

What observe reports is what runs, read from the router's live table (``GET /-/router``: its
version, split and pools) and from every instance found (its configuration digest, whether it
answers): a deployment counts the instances that answer *and* are in the router's pool; every
other instance found, an upstream in the pool that no instance serves, instances of more than one
configuration (or of another than the recorded one) and processes with the deployment's marks
that nothing records make it *unsettled* (``Observation.unsettled``), which the next plan repairs.
An endpoint whose router serves another version of its table than the one written is unsettled
too. Everything a killed apply can leave behind is one of these, so a plan after a crash always
sees it, and the repair adopts (pools) or stops it.
"""

from __future__ import annotations

import shutil
from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from providers.base import ApplyRequest, EndpointToken, Keys, Observation, Provider, ProviderContext
from providers.shared import endpoint_tokens, files, procs
from providers.shared.probes import StartFailure
from providers.shared.routing_table import pool_digests, router_limits
from providers.shared.windows import RouterWindows, Scrape
from reconciler.model.crashpoints import crash_point
from reconciler.model.errors import PermanentError
from reconciler.model.resources import digest_of
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource


def start_error(address: str, failure: StartFailure, what: str = "instance") -> PermanentError:
    """The error of a batch whose new instances did not become ready: one line that says so, and
    the last lines of the failing instance's log in ``detail`` (shown once, under the error)."""
    lines = failure.log_tail or [f"(the {what} wrote nothing to its log)"]
    return PermanentError(f"{address}: {failure.reason}; the old instances keep serving", detail=lines)


def router_settings(attrs: dict[str, Any]) -> dict[str, Any]:
    """The request settings the router enforces for a deployment (routing table entry)."""
    settings = attrs.get("request_settings") or {}
    return {k: settings[k] for k in ("request_timeout_ms", "max_concurrent_requests_per_instance",
                                     "max_queue_wait_ms") if settings.get(k) is not None}


def instance_count(attrs: dict[str, Any], default: int) -> int:
    value = attrs.get("instance_count")
    return default if value is None else int(value)


def drain_timeout(attrs: dict[str, Any]) -> float:
    """How long requests in flight on a removed instance may take: its request timeout, plus 1 s."""
    timeout_ms = (attrs.get("request_settings") or {}).get("request_timeout_ms") or 5000
    return float(timeout_ms) / 1000 + 1.0


def normal_traffic(traffic: Any) -> dict[str, int]:
    """Traffic in normal form: lowercased names, zero entries dropped."""
    return {str(k).lower(): int(v) for k, v in (traffic or {}).items() if int(v or 0) > 0}


class _Instance(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def config_digest(self) -> str: ...


_I = TypeVar("_I", bound=_Instance)


# -- the arithmetic of scaling and rolling, the same for processes and containers ----------------
def running_digest(healthy: Sequence[_Instance]) -> str | None:
    """The configuration a scale-up clones: the one most healthy instances run (template changes
    come after, in the rollout, as the service does); None when nothing runs."""
    running = Counter(i.config_digest for i in healthy).most_common(1)
    return running[0][0] if running else None


def surplus(healthy: Sequence[_I], count: int, desired: str) -> list[_I]:
    """The instances a scale-down to ``count`` stops: those of an old configuration first, then
    the newest."""
    ordered = sorted(healthy, key=lambda i: (i.config_digest == desired, -i.id))
    return ordered[: max(0, len(healthy) - count)]


def batch_moves(live: Sequence[_I], stale: Sequence[_I], count: int, size: int) -> tuple[list[_I], int]:
    """One rollout batch: (the stale instances it retires, how many new ones it starts).

    ``size`` new instances come up before as many old ones go. With more live instances than
    ``count`` a batch was interrupted after its new ones started: this one only retires."""
    size = max(1, size)
    if len(live) > count:
        return list(stale[: min(size, len(live) - count)]), 0
    retire = list(stale[: min(size, len(stale))])
    return retire, len(retire)


STOP_GRACE = 10.0  # seconds a drained instance has to finish before SIGKILL


def upstreams(instances: Sequence[Any]) -> list[str]:
    """The router addresses of the instances that have one, in instance order."""
    return [u for i in sorted(instances, key=lambda i: i.id) if (u := i.upstream()) is not None]


def next_instance_ids(run: Path, n: int, used: Sequence[int] = ()) -> list[int]:
    """``n`` new instance numbers for the deployment whose folder is ``run``: numbers grow and are
    never given twice (``run/seq`` keeps the last one, under a lock; ``used`` are numbers in use)."""
    run.mkdir(parents=True, exist_ok=True)
    with procs.file_lock(run / "seq.lock"):
        seq_file = run / "seq"
        try:
            last = int(seq_file.read_text().strip())
        except (OSError, ValueError):
            last = 0
        last = max([last, *used])
        seq_file.write_text(f"{last + n}\n")
    return list(range(last + 1, last + 1 + n))


def config_digest(attrs: dict[str, Any], model: dict[str, Any] | None, **runtime: Any) -> str:
    """The digest of a deployment's configuration: what its instances run (code, script, model,
    variables, settings, probes, instance type) plus what the provider runs them on (``runtime``:
    the environment's digest, an image, limits). Instances at the desired digest are never replaced."""
    return digest_of({
        "code": attrs.get("code"),
        "scoring_script": attrs.get("scoring_script"),
        "model": [model.get("name"), model.get("version"), model.get("content_digest")] if model
        else attrs.get("model"),
        "environment_variables": attrs.get("environment_variables") or {},
        "request_settings": attrs.get("request_settings"),
        "liveness_probe": attrs.get("liveness_probe"),
        "readiness_probe": attrs.get("readiness_probe"),
        "instance_type": attrs.get("instance_type"),
        **runtime,
    })


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
    observed = {
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
    entry = (ep.read_table().get("deployments") or {}).get(deployment) or {}
    return {str(u) for u in entry.get("upstreams") or []}


def _split(table: dict[str, Any]) -> str:
    traffic = normal_traffic(table.get("traffic"))
    mirror = normal_traffic(table.get("mirror_traffic"))
    text = ", ".join(f"{k} {v}%" for k, v in sorted(traffic.items())) or "no traffic"
    return text + ("; mirror " + ", ".join(f"{k} {v}%" for k, v in sorted(mirror.items())) if mirror else "")


def _short(digest: str | None) -> str:
    return str(digest or "?").removeprefix("sha256:")[:12]


def model_observation(state_dir: Path, resource: StateResource) -> Observation:
    """A model is its folder of files under the project's state folder."""
    if not files.model_present(state_dir, resource.attributes):
        return Observation(False, problems=[f"its folder {files.model_dir(state_dir, resource.attributes)} is gone"])
    return Observation(True, outputs=resource.outputs)


class InstanceProvider(RouterWindows, Provider):
    """What the providers that run instances behind a router (local, docker) do the same way: the
    create/update dispatch, scaling, rolling batches, routing and credentials. Each provider names
    only its own pieces: how an environment, an endpoint and a deployment's instances are made,
    started, found, pooled and stopped (the abstract methods below), on its own runner and
    instance types.

    A runner is the provider's handle on one deployment's instances (``live()``, ``load_config``,
    ``check_environment``, ``lock_path``); an instance has at least ``id`` and ``config_digest``."""

    def __init__(self, settings: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.state_dir = Path(context.state_dir).resolve()
        self.project_root = Path(context.project_root).resolve()
        router_limits(settings, "")  # a bad router_limits setting is an error before anything runs
        endpoint_tokens.token_lifetime(settings)  # so is a bad token_lifetime_s

    # == the provider interface ======================================================================
    def observe(self, resource: StateResource) -> Observation:
        if resource.type == "environment":
            return self._observe_environment(resource)
        if resource.type == "model":
            return model_observation(self.state_dir, resource)
        if resource.type == "endpoint":
            return self._observe_endpoint(resource)
        return self._observe_deployment(resource)

    def delete(self, resource: StateResource) -> None:
        attrs = resource.attributes
        if resource.type == "model":
            files.remove_model(self.state_dir, attrs)
        elif resource.type == "environment":
            self._delete_environment(resource)
        elif resource.type == "endpoint":
            ep = self._endpoint(attrs.get("name", resource.name))
            self._stop_endpoint_instances(ep)
            crash_point("delete.instances_stopped", resource.address)
            self._discard_endpoint(ep)
        elif resource.type == "deployment":
            runner = self._runner(attrs)
            with procs.file_lock(runner.lock_path):
                ep = self._endpoint_of(runner)
                live = runner.live()
                if ep.table.exists():
                    ep.remove_deployment(runner.name)
                    ep.wait_drained(upstreams(live), drain_timeout(attrs))
                crash_point("delete.unrouted", resource.address)
                runner.stop_all()

    def create(self, request: ApplyRequest) -> dict[str, Any]:
        if request.type == "environment":
            return self._create_environment(request)
        if request.type == "model":
            path = files.place_model(self.state_dir, self.project_root, request.attributes, request.address)
            return {"model_dir": str(path)}
        if request.type == "endpoint":
            return self._create_endpoint(request)
        return self._create_deployment(request)

    def update(self, request: ApplyRequest) -> dict[str, Any]:
        prior = dict(request.prior.outputs) if request.prior else {}
        if request.type == "environment":
            return self._create_environment(request)
        if request.type == "model":
            return {**prior, **self.create(request)}
        if request.type == "endpoint":
            ep = self._endpoint(request.attributes["name"])
            ep.ensure_keys()  # a keys file of an older recon gets its token signing key before aml_token
            ep.update_table(lambda t: t.update(auth_mode=request.attributes.get("auth_mode") or "key"))
            if ep.router() is None:
                return self._create_endpoint(request)
            return self._endpoint_outputs(ep)
        return self._repool_deployment(request, prior)

    def scale(self, request: ApplyRequest, count: int) -> dict[str, Any]:
        """Instances that fail their liveness probe are replaced; new ones clone the configuration
        that runs (scale first, template changes after, as the service does)."""
        runner = self._runner(request.attributes)
        desired_digest, desired = self._desired(request, runner)
        with procs.file_lock(runner.lock_path):
            live = self._settle_starting(runner, runner.live())
            healthy = self._healthy(runner, live, request.attributes.get("liveness_probe"))
            broken = [i for i in live if i not in healthy]
            if broken:
                self._retire(runner, healthy, broken, request)
            if len(healthy) < count:
                running = running_digest(healthy)
                config = runner.load_config(running) if running else None
                digest = running if running and config is not None else desired_digest
                config = config if config is not None else desired
                healthy += self._start_ready(runner, request, digest, config, count - len(healthy))
                self._pool(runner, healthy, request)
            elif len(healthy) > count:
                extra = surplus(healthy, count, desired_digest)
                healthy = [i for i in healthy if i not in extra]
                self._retire(runner, healthy, extra, request)
            else:
                self._pool(runner, healthy, request)
            return self._deployment_outputs(runner, healthy, desired_digest)

    def roll_batch(self, request: ApplyRequest, batch: Batch) -> dict[str, Any]:
        runner = self._runner(request.attributes)
        digest, config = self._desired(request, runner)
        declared = dict(request.attributes.get("environment_variables") or {})
        with procs.file_lock(runner.lock_path):
            live = runner.live()
            stale = [i for i in live
                     if i.config_digest != digest or runner.check_environment(i, declared) is not None]
            current = self._settle(runner, [i for i in live if i not in stale], config)
            if not stale:
                self._pool(runner, current, request)
                self._rollout_done(runner)
                return self._deployment_outputs(runner, current, digest)
            retire, starting = batch_moves(live, stale, instance_count(request.attributes, len(live)), batch.size)
            # a launcher (warm starts) serves the next batches too; the last batch closes it
            new = self._start_ready(runner, request, digest, config, starting,
                                    keep_launcher=len(stale) > len(retire))
            serving = current + new + [i for i in stale if i not in retire]
            # Drained old instances may be left to exit while the next batch starts (``wait=False``);
            # after the last batch, every one of them is gone.
            self._retire(runner, serving, retire, request, wait=False)
            if not any(i in stale for i in serving):
                self._rollout_done(runner)
            request.emit(f"batch {batch.index}: {len(new)} new instance(s) serving, "
                         f"{len(retire)} old one(s) stopped")
            return self._deployment_outputs(runner, serving, digest)

    def set_routing(
        self, request: ApplyRequest, traffic: dict[str, int], mirror_traffic: dict[str, int]
    ) -> dict[str, Any]:
        ep = self._endpoint(request.attributes["name"])
        limits = router_limits(self.settings, ep.name)

        def mutate(table: dict[str, Any]) -> None:
            table["traffic"] = normal_traffic(traffic)
            table["mirror_traffic"] = normal_traffic(mirror_traffic)
            table["limits"] = limits

        ep.update_table(mutate)
        return self._endpoint_outputs(ep)

    def credentials(self, endpoint: StateResource) -> Keys | EndpointToken:
        """The keys, or under ``auth_mode: aml_token`` (as the router's table says) a token it minted."""
        ep = self._endpoint(endpoint.attributes.get("name", endpoint.name))
        keys = ep.read_keys()
        if keys is None:
            raise PermanentError(f"endpoint {ep.name} has no keys on this machine ({ep.keys} is missing)")
        port = ep.chosen_port() or endpoint.outputs.get("port")
        uri = f"http://{self._uri_host()}:{port}/score"
        if ep.read_table().get("auth_mode") != "aml_token":
            return Keys(keys["primaryKey"], keys["secondaryKey"], uri)
        signing_key = ep.token_signing_key()
        if signing_key is None:
            raise PermanentError(f"endpoint {ep.name} has no token signing key on this machine; run recon apply")
        return endpoint_tokens.issue(signing_key, ep.name, uri, endpoint_tokens.token_lifetime(self.settings))

    def _router_metrics(self, endpoint: str) -> list[Scrape]:
        return list(self._endpoint(endpoint).router_metrics())

    # == shared steps ================================================================================
    def _create_deployment(self, request: ApplyRequest) -> dict[str, Any]:
        runner = self._runner(request.attributes)
        digest, config = self._desired(request, runner)
        count = instance_count(request.attributes, 1)
        declared = dict(request.attributes.get("environment_variables") or {})
        runner.prepare()  # the deployment's folders exist even with 0 instances
        with procs.file_lock(runner.lock_path):
            live = runner.live()  # left over by a crashed apply: keep what already runs as desired
            keep = [i for i in live if i.config_digest == digest and runner.check_environment(i, declared) is None
                    and self._keepable(runner, i)][:count]
            runner.stop([i for i in live if i not in keep], grace=STOP_GRACE)
            keep = self._settle(runner, keep, config)
            try:
                new = self._start_ready(runner, request, digest, config, count - len(keep))
            except PermanentError:
                runner.stop(keep, grace=STOP_GRACE)
                self._endpoint_of(runner).remove_deployment(runner.name)
                shutil.rmtree(runner.run, ignore_errors=True)
                raise
            serving = keep + new
            self._pool(runner, serving, request)
            return self._deployment_outputs(runner, serving, digest)

    def _repool_deployment(self, request: ApplyRequest, prior: dict[str, Any]) -> dict[str, Any]:
        """An in-place, non-rolling deployment update: the live instances, pooled with the new settings."""
        runner = self._runner(request.attributes)
        with procs.file_lock(runner.lock_path):
            live = runner.live()
            self._pool(runner, live, request)
            return self._deployment_outputs(runner, live, prior.get("config_digest"))

    def _pool(self, runner: Any, serving: list[Any], request: ApplyRequest) -> None:
        """The router sends the deployment's traffic to ``serving``."""
        self._endpoint_of(runner).set_pool(runner.name, upstreams(serving), router_settings(request.attributes),
                                           pool_digests(serving))

    def _retire(self, runner: Any, serving: list[Any], retire: list[Any], request: ApplyRequest,
                wait: bool = True) -> None:
        """Pool becomes ``serving``; ``retire`` is drained, then stopped (``_stop``)."""
        self._pool(runner, serving, request)
        self._endpoint_of(runner).wait_drained(upstreams(retire), drain_timeout(request.attributes))
        if retire:
            crash_point("instances.retiring", request.address)
        self._stop(runner, retire, wait)

    def _stop(self, runner: Any, instances: list[Any], wait: bool) -> None:
        """Stop drained instances (without ``wait`` they may be left to exit while the apply goes on)."""
        runner.stop(instances, grace=STOP_GRACE)

    def _observe_deployment(self, resource: StateResource) -> Observation:
        attrs = resource.attributes
        runner = self._runner(attrs)
        found = runner.recorded()
        if not found and not runner.exists():
            return Observation(False, problems=[f"no {self.instance_noun} of it is running"])
        problems: list[str] = []
        alive = [i for i in found if i.alive]
        answered = self._healthy(runner, alive, attrs.get("liveness_probe"))
        pool = live_pool(self._endpoint_of(runner), runner.name)
        serving = [i for i in alive if i in answered and (pool is None or i.upstream() in pool)]
        for inst in found:
            if not inst.alive:
                problems.append(f"{inst.label} {inst.down_reason}")
            elif inst not in answered:
                problems.append(f"{inst.label} does not answer its liveness probe")
        problems += self._instance_problems(runner, resource, found, serving)
        unsettled = self._unsettled(runner, resource, found, serving, pool)
        observed: dict[str, Any] = {"instance_count": len(serving)}
        declared = dict(attrs.get("environment_variables") or {})
        recorded_digest = resource.outputs.get("config_digest")
        for inst in alive:  # an instance of another configuration is unsettled, not changed variables
            if recorded_digest and inst.config_digest != recorded_digest:
                continue
            seen = runner.check_environment(inst, declared)
            if seen is not None:
                observed["environment_variables"] = seen
                problems.append(f"{inst.label} runs with other environment variables")
                break
        outputs = {**resource.outputs, "instances": [i.to_output() for i in serving]}
        return Observation(True, attributes=observed, outputs=outputs, problems=problems, unsettled=unsettled)

    def _unsettled(self, runner: Any, resource: StateResource, found: list[Any], serving: list[Any],
                   pool: set[str] | None) -> list[str]:
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
        out += [f"the router sends its requests to {up}, where none of its {self.instance_noun}s listens"
                for up in sorted((pool or set()) - listening)]
        digests = sorted({i.config_digest for i in serving})
        recorded = resource.outputs.get("config_digest")
        if len(digests) > 1:
            out.append(f"its instances run {len(digests)} configurations ({', '.join(map(_short, digests))}): "
                       "a rolling update did not finish")
        elif digests and recorded and digests[0] != recorded:
            out.append(f"its instances run configuration {_short(digests[0])}, the state records {_short(recorded)}")
        return out + self._strays(runner, found)

    def _strays(self, runner: Any, found: list[Any]) -> list[str]:
        """Processes or containers with the deployment's marks that are none of ``found`` (left by
        an interrupted apply before it recorded them); the next operation on it stops them."""
        return []

    def _instance_problems(self, runner: Any, resource: StateResource, found: list[Any],
                           healthy: list[Any]) -> list[str]:
        """What else is wrong with a deployment's instances (gone, unknown configurations)."""
        return []

    def _deployment_outputs(self, runner: Any, serving: list[Any], digest: str | None) -> dict[str, Any]:
        config = runner.load_config(digest) if digest else None
        return {
            "instances": [i.to_output() for i in sorted(serving, key=lambda i: i.id)],
            "config_digest": digest,
            "provisioning_state": "Succeeded",
            **self._config_outputs(runner, config),
        }

    def _keepable(self, runner: Any, instance: Any) -> bool:
        """Whether an instance a crashed apply left running at the desired configuration may be kept."""
        return True

    def _delete_environment(self, resource: StateResource) -> None:
        """Environments are kept for reuse unless the provider says otherwise."""

    def _create_endpoint(self, request: ApplyRequest) -> dict[str, Any]:
        ep, fresh = self._open_endpoint(request)
        try:
            where = self._start_router(ep, request)
        except PermanentError:
            if fresh:
                self._discard_endpoint(ep)
            raise
        request.emit(f"router {where}")
        return self._endpoint_outputs(ep)

    def _discard_endpoint(self, ep: Any) -> None:
        """Stop the endpoint's router and remove everything of it: table, port, keys."""
        ep.stop_router()
        ep.keys.unlink(missing_ok=True)
        shutil.rmtree(ep.run, ignore_errors=True)

    def _open_endpoint(self, request: ApplyRequest) -> tuple[Any, bool]:
        """The endpoint's folder, port (the recorded one kept), keys and first table; and whether it
        is new (nothing of it existed: a failed start then removes what was made)."""
        ep = self._endpoint(request.attributes["name"])
        ep.run.mkdir(parents=True, exist_ok=True)
        fresh = not ep.table.exists()
        prior_port = request.prior.outputs.get("port") if request.prior else None
        if ep.chosen_port() is None and prior_port:
            ep.portfile.write_text(f"{prior_port}\n")
        ep.ensure_keys()
        limits = router_limits(self.settings, ep.name)
        ep.update_table(lambda t: t.update(auth_mode=request.attributes.get("auth_mode") or "key", limits=limits),
                        wait=False)
        return ep, fresh

    instance_noun = "instance"

    def _uri_host(self) -> str:
        """The host of scoring URIs."""
        return "127.0.0.1"

    def _settle(self, runner: Any, instances: list[Any], config: Any) -> list[Any]:
        """Instances a crashed apply left starting: ready ones kept, the others stopped."""
        return instances

    def _settle_starting(self, runner: Any, live: list[Any]) -> list[Any]:
        """``_settle`` for instances of any configuration (an interrupted apply may have left some
        of each starting): those that become ready are kept, the others stopped."""
        by_digest: dict[str, list[Any]] = {}
        for inst in live:
            by_digest.setdefault(inst.config_digest, []).append(inst)
        settled: list[Any] = []
        for digest, group in by_digest.items():
            config = runner.load_config(digest) if digest else None
            settled += self._settle(runner, group, config) if config is not None else group
        return sorted(settled, key=lambda i: i.id)

    def _rollout_done(self, runner: Any) -> None:
        """Every batch of a rollout is done: wait for the retired instances to be gone."""

    # == each provider's own pieces ==================================================================
    @abstractmethod
    def _create_environment(self, request: ApplyRequest) -> dict[str, Any]: ...

    @abstractmethod
    def _start_router(self, ep: Any, request: ApplyRequest) -> str:
        """Start (or find running) the endpoint's router; where it listens, for the progress line."""

    @abstractmethod
    def _endpoint(self, name: str) -> Any:
        """The endpoint's ``EndpointFiles`` (table, keys, router)."""

    @abstractmethod
    def _endpoint_outputs(self, ep: Any) -> dict[str, Any]: ...

    @abstractmethod
    def _observe_environment(self, resource: StateResource) -> Observation: ...

    @abstractmethod
    def _observe_endpoint(self, resource: StateResource) -> Observation: ...

    @abstractmethod
    def _stop_endpoint_instances(self, ep: Any) -> None:
        """Stop every instance of every deployment behind the endpoint (it is being deleted)."""

    @abstractmethod
    def _endpoint_of(self, runner: Any) -> Any:
        """The ``EndpointFiles`` of the endpoint a runner's deployment is behind."""

    @abstractmethod
    def _runner(self, attrs: dict[str, Any]) -> Any:
        """The handle on one deployment's instances."""

    @abstractmethod
    def _desired(self, request: ApplyRequest, runner: Any) -> tuple[str, Any]:
        """The desired configuration's digest and launch config (prepared and saved)."""

    @abstractmethod
    def _healthy(self, runner: Any, live: list[Any], probe: dict[str, Any] | None) -> list[Any]:
        """The live instances that pass their liveness probe."""

    @abstractmethod
    def _start_ready(self, runner: Any, request: ApplyRequest, digest: str, config: Any, n: int,
                     keep_launcher: bool = False) -> list[Any]:
        """Start ``n`` instances of ``config`` and wait until ready; on failure stop them and raise."""

    @abstractmethod
    def _config_outputs(self, runner: Any, config: Any) -> dict[str, Any]:
        """What a deployment records of its configuration besides its instances (a python, an image)."""

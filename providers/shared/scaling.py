"""``InstanceProvider``: the template of the providers that run instances behind recon's router
(local, docker). Its arithmetic is in ``rolling``, what it observes in ``observing``, the routing
table in ``routing_table`` and ``endpoint_files``.
"""

from __future__ import annotations

import shutil
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from providers.shared import endpoint_tokens, files, procs
from providers.shared.observing import deployment_observation, live_pool, model_observation, serving_instances
from providers.shared.rolling import (
    STOP_GRACE,
    batch_moves,
    drain_timeout,
    instance_count,
    pool_digests,
    running_digest,
    settle_each_config,
    surplus,
    upstreams,
)
from providers.shared.routing_table import router_limits, router_settings
from providers.shared.windows import RouterWindows, Scrape
from reconciler.model.crashpoints import crash_point
from reconciler.model.errors import PermanentError
from reconciler.model.resources import DeploymentAttrs, as_deployment, as_model
from reconciler.plan.provider import ApplyRequest, EndpointToken, Keys, Observation, Provider, ProviderContext
from reconciler.plan.types import Batch
from reconciler.state.document import StateResource


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
            files.remove_model(self.state_dir, as_model(attrs))
        elif resource.type == "environment":
            self._delete_environment(resource)
        elif resource.type == "endpoint":
            ep = self._endpoint(attrs.get("name", resource.name))
            self._stop_endpoint_instances(ep)
            crash_point("delete.instances_stopped", resource.address)
            ep.discard()
        elif resource.type == "deployment":
            runner = self._runner(deployment := as_deployment(attrs))
            with procs.file_lock(runner.lock_path):
                ep = self._endpoint_of(runner)
                live = runner.live()
                if ep.table.exists():
                    ep.remove_deployment(runner.name)
                    ep.wait_drained(upstreams(live), drain_timeout(deployment))
                crash_point("delete.unrouted", resource.address)
                runner.stop_all()

    def create(self, request: ApplyRequest) -> dict[str, Any]:
        if request.type == "environment":
            return self._create_environment(request)
        if request.type == "model":
            path = files.place_model(self.state_dir, self.project_root, as_model(request.asset), request.address)
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
            ep = self._endpoint(request.endpoint["name"])
            ep.ensure_keys()  # a keys file of an older recon gets its token signing key before aml_token
            ep.set_auth_mode(request.endpoint.get("auth_mode"))
            if ep.router() is None:
                return self._create_endpoint(request)
            return self._endpoint_outputs(ep)
        return self._repool_deployment(request, prior)

    def scale(self, request: ApplyRequest) -> dict[str, Any]:
        """Instances that fail their liveness probe are replaced; new ones clone the configuration
        that runs (scale first, template changes after, as the service does)."""
        count = request.instance_count
        runner = self._runner(request.deployment)
        desired_digest, desired = self._desired(request, runner)
        with procs.file_lock(runner.lock_path):
            live = settle_each_config(runner.live(), runner.load_config,
                                      lambda group, config: self._settle(runner, group, config))
            healthy = self._healthy(runner, live, request.deployment.get("liveness_probe"))
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
        runner = self._runner(request.deployment)
        digest, config = self._desired(request, runner)
        declared = dict(request.deployment.get("environment_variables") or {})
        with procs.file_lock(runner.lock_path):
            live = runner.live()
            stale = [i for i in live
                     if i.config_digest != digest or runner.check_environment(i, declared) is not None]
            current = self._settle(runner, [i for i in live if i not in stale], config)
            if not stale:
                self._pool(runner, current, request)
                self._rollout_done(runner)
                return self._deployment_outputs(runner, current, digest)
            retire, starting = batch_moves(live, stale, instance_count(request.deployment, len(live)), batch.size)
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

    def set_routing(self, request: ApplyRequest) -> dict[str, Any]:
        traffic, mirror_traffic = request.traffic, request.mirror_traffic
        ep = self._endpoint(request.endpoint["name"])
        ep.set_split(traffic, mirror_traffic, router_limits(self.settings, ep.name))
        return self._endpoint_outputs(ep)

    def credentials(self, endpoint: StateResource) -> Keys | EndpointToken:
        """The keys, or under ``auth_mode: aml_token`` (as the router's table says) a token it minted."""
        ep = self._endpoint(endpoint.attributes.get("name", endpoint.name))
        found: Keys | EndpointToken = ep.credentials(endpoint.outputs.get("port"),
                                                      endpoint_tokens.token_lifetime(self.settings))
        return found

    def _router_metrics(self, endpoint: str) -> list[Scrape]:
        return list(self._endpoint(endpoint).router_metrics())

    # == shared steps ================================================================================
    def _create_deployment(self, request: ApplyRequest) -> dict[str, Any]:
        runner = self._runner(request.deployment)
        digest, config = self._desired(request, runner)
        count = instance_count(request.deployment, 1)
        declared = dict(request.deployment.get("environment_variables") or {})
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
        runner = self._runner(request.deployment)
        with procs.file_lock(runner.lock_path):
            live = runner.live()
            self._pool(runner, live, request)
            return self._deployment_outputs(runner, live, prior.get("config_digest"))

    def _pool(self, runner: Any, serving: list[Any], request: ApplyRequest) -> None:
        """The router sends the deployment's traffic to ``serving``."""
        self._endpoint_of(runner).set_pool(runner.name, upstreams(serving), router_settings(request.deployment),
                                           pool_digests(serving))

    def _retire(self, runner: Any, serving: list[Any], retire: list[Any], request: ApplyRequest,
                wait: bool = True) -> None:
        """Pool becomes ``serving``; ``retire`` is drained, then stopped (``_stop``)."""
        self._pool(runner, serving, request)
        self._endpoint_of(runner).wait_drained(upstreams(retire), drain_timeout(request.deployment))
        if retire:
            crash_point("instances.retiring", request.address)
        self._stop(runner, retire, wait)

    def _stop(self, runner: Any, instances: list[Any], wait: bool) -> None:
        """Stop drained instances (without ``wait`` they may be left to exit while the apply goes on)."""
        runner.stop(instances, grace=STOP_GRACE)

    def _observe_deployment(self, resource: StateResource) -> Observation:
        attrs = as_deployment(resource.attributes)
        runner = self._runner(attrs)
        found = runner.recorded()
        if not found and not runner.exists():
            return Observation(False, problems=[f"no {self.instance_noun} of it is running"])
        answered = self._healthy(runner, [i for i in found if i.alive], attrs.get("liveness_probe"))
        pool = live_pool(self._endpoint_of(runner), runner.name)
        serving = serving_instances(found, answered, pool)
        return deployment_observation(
            runner, resource, found, answered, pool, self.instance_noun,
            problems=self._instance_problems(runner, resource, found, serving), strays=self._strays(runner, found))

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
        ep = self._endpoint(request.endpoint["name"])
        prior_port = request.prior.outputs.get("port") if request.prior else None
        where = ep.create(request.endpoint.get("auth_mode"), router_limits(self.settings, ep.name), prior_port,
                          start=lambda: self._start_router(ep, request))
        request.emit(f"router {where}")
        return self._endpoint_outputs(ep)

    instance_noun = "instance"

    def _settle(self, runner: Any, instances: list[Any], config: Any) -> list[Any]:
        """Instances a crashed apply left starting: ready ones kept, the others stopped."""
        return instances

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
    def _runner(self, attrs: DeploymentAttrs) -> Any:
        """The handle on one deployment's instances."""

    @abstractmethod
    def _desired(self, request: ApplyRequest, runner: Any) -> tuple[str, Any]:
        """The desired configuration's digest and launch config (prepared and saved)."""

    @abstractmethod
    def _healthy(self, runner: Any, live: list[Any], probe: Mapping[str, Any] | None) -> list[Any]:
        """The live instances that pass their liveness probe."""

    @abstractmethod
    def _start_ready(self, runner: Any, request: ApplyRequest, digest: str, config: Any, n: int,
                     keep_launcher: bool = False) -> list[Any]:
        """Start ``n`` instances of ``config`` and wait until ready; on failure stop them and raise."""

    @abstractmethod
    def _config_outputs(self, runner: Any, config: Any) -> dict[str, Any]:
        """What a deployment records of its configuration besides its instances (a python, an image)."""

"""Deployments rolling on Kubernetes: waiting for a rollout (batch by batch, from the ReplicaSets, the
router's pool following the ready pods), its failures with the pods' events and log lines, a rollback
to the previous template, and waiting for deleted objects' pods to go."""

from __future__ import annotations

import time
from typing import Any

from providers.kubernetes import manifests as m
from providers.kubernetes.client import Kube
from providers.kubernetes.endpoint import Endpoints
from providers.kubernetes.objects import ClusterScope, pod_ready, rollout_complete
from reconciler.model.errors import PermanentError, RetryableError
from reconciler.plan.provider import ApplyRequest
from reconciler.plan.types import Batch

POLL = 0.25
REFUSAL_GRACE = 10.0  # seconds a ReplicaFailure (pods refused) must last before a step fails on it
FAILING_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CrashLoopBackOff",
                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError")


class Rollouts:
    """Rollout waits, failures and rollbacks of the provider's Deployments (and of its routers'); while
    a deployment rolls, its router's pool follows its ready pods (``endpoints``)."""

    def __init__(self, scope: ClusterScope, endpoints: Endpoints) -> None:
        self.scope = scope
        self.endpoints = endpoints

    @property
    def kube(self) -> Kube:
        return self.scope.kube

    def undo(self, name: str, digest: str, request: ApplyRequest) -> None:
        """Back to the newest older ReplicaSet's template (``kubectl rollout undo``): the old pods keep serving."""
        obj = self.kube.get("Deployment", name)
        if obj is None:
            return
        selector = (obj.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
        older = [rs for rs in self.kube.items("ReplicaSet", selector)
                 if ((rs.get("metadata") or {}).get("annotations") or {}).get("recon.io/config-digest") != digest
                 and (rs["spec"]["template"]["metadata"].get("annotations") or {}).get("recon.io/config-digest")
                 != digest]
        if not older:
            return
        older.sort(key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(
            "deployment.kubernetes.io/revision", 0)))
        template = older[-1]["spec"]["template"]
        template["metadata"].get("labels", {}).pop("pod-template-hash", None)
        old_digest = (template["metadata"].get("annotations") or {}).get("recon.io/config-digest", "")
        labels = {**obj["metadata"].get("labels", {}), m.DIGEST: m.short_digest(old_digest)}
        patch: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.scope.ns, "labels": labels,
                         "annotations": {"recon.io/config-digest": old_digest}},
            "spec": {"selector": obj["spec"]["selector"], "template": template}}
        self.kube.apply(patch)
        request.emit(f"rolled {name} back to its previous template; the old pods keep serving")

    def wait_complete(self, ep: str, dep: str, request: ApplyRequest) -> None:
        """Traffic moves only to a deployment whose rollout is complete."""
        name = m.deployment_name(ep, dep)
        deadline = time.monotonic() + 60
        while True:
            obj = self.kube.get("Deployment", name)
            if obj is None:
                raise PermanentError(f"endpoint {ep}: deployment {dep} has no Deployment {name}")
            if rollout_complete(obj):
                return
            if time.monotonic() > deadline:
                raise RetryableError(f"endpoint {ep}: the rollout of {name} is not complete; traffic stays")
            time.sleep(POLL)

    def wait(self, name: str, selector: dict[str, str], count: int, request: ApplyRequest,
                      what: str | None = None, until_updated: int | None = None, generation: int = 0,
                      batch: Batch | None = None, pool: tuple[str, str] | None = None) -> None:
        """Wait until ``until_updated`` (default: all) pods run the Deployment's template and are
        available; report ReplicaSet progress; fail on ProgressDeadlineExceeded, quota refusals,
        image pull errors and crashing pods with their events and last log lines.

        ``pool`` (endpoint, deployment): while waiting, the router's pool follows the ready pods: a new
        one joins when ready, and one the Deployment controller retires leaves while its preStop pause
        keeps it serving (manifests.PRESTOP_SECONDS), so no request goes to a stopped pod."""
        what = what or name
        deadline = time.monotonic() + self.scope.settings.rollout_timeout_seconds
        last = ""
        refused_since: list[float] = []  # when a ReplicaFailure condition was first seen (it must persist)
        while True:
            if pool is not None and self.endpoints.has_table(pool[0]):
                # against the table itself: pods change between two batches too (the controller rolls on)
                routed = self.endpoints.table(pool[0]).routed(pool[1])
                if self.endpoints.ready_addresses(*pool) != sorted(routed or []):
                    self.endpoints.sync_pool(pool[0], pool[1], None)
            obj = self.kube.get("Deployment", name)
            if obj is None:
                raise PermanentError(f"{request.address}: Deployment {self.scope.ns}/{name} disappeared")
            status = obj.get("status") or {}
            observed = int(status.get("observedGeneration") or 0) >= max(generation,
                                                                         int(obj["metadata"].get("generation") or 0))
            available = int(status.get("availableReplicas") or 0)
            line, new_available = self.progress(obj, selector)
            if line != last:
                request.emit(f"batch {batch.index}: {line}" if batch else line)
                last = line
            # a batch is done once its share of pods runs the new template and is available, with no
            # capacity lost (maxUnavailable 0); the controller meanwhile goes on with the next ones
            if observed and (rollout_complete(obj) or (until_updated is not None and new_available >= until_updated
                                                and available >= count)):
                return
            failure = self.failure(obj, selector, observed, refused_since)
            if failure is not None:
                raise PermanentError(f"{request.address}: {what} failed: {failure[0]}", detail=failure[1])
            if time.monotonic() > deadline:
                failure = ("not ready within "
                           f"{self.scope.settings.rollout_timeout_seconds:g}s", self.pod_detail(selector))
                raise PermanentError(f"{request.address}: {what} {failure[0]}", detail=failure[1])
            time.sleep(POLL)

    def progress(self, obj: dict[str, Any], selector: dict[str, str]) -> tuple[str, int]:
        """The ReplicaSets as a line of text, and the new one's available pods."""
        sets = self.kube.items("ReplicaSet", selector)
        revision = (obj["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
        parts = []
        new_available = 0
        for rs in sorted(sets, key=lambda r: int((r["metadata"].get("annotations") or {}).get(
                "deployment.kubernetes.io/revision", 0))):
            spec_n = int((rs.get("spec") or {}).get("replicas") or 0)
            ready = int((rs.get("status") or {}).get("readyReplicas") or 0)
            if spec_n == 0 and ready == 0:
                continue
            rev = (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
            tag = "new" if rev == revision else "old"
            if tag == "new":
                new_available = int((rs.get("status") or {}).get("availableReplicas") or 0)
            parts.append(f"{tag} ReplicaSet {rs['metadata']['name']} {ready}/{spec_n} ready")
        return ", ".join(parts) or "no ReplicaSet yet", new_available

    def failure(self, obj: dict[str, Any], selector: dict[str, str], observed: bool,
                 refused_since: list[float]) -> tuple[str, list[str]] | None:
        """Why the rollout cannot succeed, with details; None while it may. The Deployment's conditions
        count once the controller has seen this change (a condition of the previous one can linger), and
        ReplicaFailure (pods refused: quota) only after REFUSAL_GRACE seconds: scaling down from a
        refused size clears it at the next sync."""
        conditions = ((obj.get("status") or {}).get("conditions") or []) if observed else []
        refused = None
        for cond in conditions:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                return f"ProgressDeadlineExceeded: {cond.get('message')}", self.pod_detail(selector)
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                refused = cond
        if refused is None:
            refused_since.clear()
        elif not refused_since:
            refused_since.append(time.monotonic())
        elif time.monotonic() - refused_since[0] >= REFUSAL_GRACE:
            return f"{refused.get('reason')}: {refused.get('message')}", self.rs_events(selector)
        for pod in self.pods_by(selector):
            st = pod.get("status") or {}
            for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
                waiting = (cs.get("state") or {}).get("waiting") or {}
                terminated = (cs.get("state") or {}).get("terminated") or {}
                reason = waiting.get("reason") or ""
                if reason in FAILING_REASONS or (terminated and terminated.get("exitCode") not in (0, None)
                                                  and int(cs.get("restartCount") or 0) >= 1):
                    pname = pod["metadata"]["name"]
                    message = waiting.get("message") or terminated.get("reason") or ""
                    return (f"pod {pname} container {cs.get('name')}: {reason or 'exited'} {message}".strip(),
                            self.pod_detail(selector, only=pname))
        return None

    def pods_by(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        return self.kube.items("Pod", selector)

    def rs_events(self, selector: dict[str, str]) -> list[str]:
        lines: list[str] = []
        for rs in self.kube.items("ReplicaSet", selector):
            lines += [f"ReplicaSet {rs['metadata']['name']}: {e}" for e in self.kube.events("ReplicaSet",
                                                                                            rs["metadata"]["name"])]
        return lines[-15:]

    def pod_detail(self, selector: dict[str, str], only: str | None = None) -> list[str]:
        """Events and last log lines of the pods that are not ready."""
        lines: list[str] = []
        for pod in self.pods_by(selector):
            pname = pod["metadata"]["name"]
            if (only and pname != only) or (not only and pod_ready(pod)):
                continue
            lines += [f"pod {pname} event: {e}" for e in self.kube.events("Pod", pname)[-8:]]
            spec = pod.get("spec") or {}
            for container in [c.get("name") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]:
                tail = self.kube.logs(pname, 15, container)
                if not tail:
                    tail = self.kube.logs(pname, 15, container, previous=True)
                lines += [f"pod {pname} {container}: {line}" for line in tail]
            if only is None and len(lines) > 40:
                break
        return lines or ["(no events or log lines from the pods)"]

    def wait_gone(self, kind: str, name: str, selector: dict[str, str]) -> None:
        """Until the object and its pods are gone (foreground deletion)."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.kube.get(kind, name) is None and not self.kube.items("Pod", selector):
                return
            time.sleep(POLL)
        raise RetryableError(f"{kind} {self.scope.ns}/{name} or its pods are still there after 300s")

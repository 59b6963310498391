"""The rules that need several documents.

Checked after every document was built: each deployment belongs to an endpoint the project
declares, of the same kind (managed or Kubernetes); an endpoint has at most
``schema.MAX_DEPLOYMENTS_PER_ENDPOINT`` deployments; traffic and mirror traffic name deployments of
their endpoint once each (case-insensitively), live traffic sums to 100 (or 0), mirroring goes to
one deployment, at most 50%, never one with live traffic, and not on Kubernetes; the project stays
within the service's counts of endpoints and deployments (recon.yaml's ``limits``). Duplicate
addresses are the builder's (it sees them as it adds). Problems go to the run's diagnostics with
file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.load.run import LoadedFile, LoadRun
from reconciler.model import checks, schema


class CrossDocumentRules:
    """The rules over the endpoint files and, by endpoint address, their deployment files."""

    def __init__(
        self,
        run: LoadRun,
        limits: Mapping[str, Any],
        endpoints: Mapping[str, LoadedFile],
        deployments: Mapping[str, list[LoadedFile]],
    ) -> None:
        self.run = run
        self.limits = limits
        self.endpoints = endpoints
        self.deployments = deployments

    def check(self) -> None:
        """Report every broken rule to the run's diagnostics."""
        for address, files in self.deployments.items():
            ep_file = self.endpoints.get(address)
            for f in files:
                self._check_parent(f, ep_file)
            if ep_file is not None and len(files) > schema.MAX_DEPLOYMENTS_PER_ENDPOINT:
                self.run.error(
                    ep_file,
                    ("name",),
                    f"{len(files)} deployments declared for this endpoint",
                    f"an endpoint has at most {schema.MAX_DEPLOYMENTS_PER_ENDPOINT} deployments",
                )
        for address, f in self.endpoints.items():
            self._check_traffic(f, {d.doc.name.lower() for d in self.deployments.get(address, [])})
        n_ep = len(self.endpoints)
        n_dep = sum(len(v) for v in self.deployments.values())
        for what, count in (("endpoints", n_ep), ("deployments", n_dep)):
            limit = self.limits[what]
            if count > limit:
                self.run.error(
                    None,
                    (),
                    f"{count} {what} declared; the Azure limit is {limit} per subscription and region",
                    f"split the project, or after Azure raised your quota set `limits: {{{what}: N}}` in recon.yaml",
                )

    def _check_parent(self, f: LoadedFile, ep_file: LoadedFile | None) -> None:
        if ep_file is None:
            hint = checks.suggest(
                f.doc.endpoint_name.lower(), [e.doc.name.lower() for e in self.endpoints.values()]
            )
            self.run.error(
                f,
                ("endpoint_name",),
                f"endpoint {f.doc.endpoint_name!r} is not declared in the project",
                hint or "add an endpoint file with this name",
            )
            return
        dep_kind, ep_kind = (f.kind or "").split("_")[0], (ep_file.kind or "").split("_")[0]
        if dep_kind != ep_kind:
            self.run.error(
                f,
                ("endpoint_name",),
                f"a {dep_kind} deployment cannot belong to the {ep_kind} endpoint "
                f"{f.doc.endpoint_name!r} ({ep_file.rel})",
                f"use the {ep_kind}OnlineDeployment schema",
            )

    def _check_traffic(self, f: LoadedFile, deployments: set[str]) -> None:
        doc = f.doc
        listed = ", ".join(sorted(deployments)) or "none"
        live: set[str] = set()
        for key in ("traffic", "mirror_traffic"):
            seen: set[str] = set()
            for dep, pct in (getattr(doc, key) or {}).items():
                low = dep.lower()
                if low in seen:
                    self.run.error(
                        f,
                        (key, dep),
                        f"{dep!r} appears twice (names compare case-insensitively)",
                        "keep one entry",
                    )
                seen.add(low)
                if low not in deployments:
                    hint = checks.suggest(low, deployments)
                    self.run.error(
                        f,
                        (key, dep),
                        f"{dep!r} is not a deployment of endpoint {doc.name!r}",
                        (hint + "; " if hint else "") + f"declared deployments: {listed}",
                    )
                if key == "traffic" and pct:
                    live.add(low)
        total = sum((doc.traffic or {}).values())
        if doc.traffic and total not in (0, 100):
            self.run.error(
                f,
                ("traffic",),
                f"traffic sums to {total}%",
                "whole percentages summing to 100 (or 0 while nothing is routed)",
            )
        mirror = {k: v for k, v in (doc.mirror_traffic or {}).items() if v}
        if mirror and f.kind == "kubernetes_endpoint":
            self.run.error(
                f,
                ("mirror_traffic",),
                "Kubernetes endpoints do not support mirrored traffic",
                "remove mirror_traffic",
            )
            return
        if len(mirror) > 1:
            self.run.error(
                f,
                ("mirror_traffic",),
                f"mirror_traffic names {len(mirror)} deployments",
                "mirror to a single deployment",
            )
        for dep, pct in mirror.items():
            if pct > 50:
                self.run.error(
                    f, ("mirror_traffic", dep), f"{pct}% mirrored is above the limit", "mirror at most 50%"
                )
            if dep.lower() in live:
                self.run.error(
                    f,
                    ("mirror_traffic", dep),
                    f"{dep!r} already receives live traffic",
                    "a deployment gets live or mirrored traffic, never both",
                )

"""Validated documents -> canonical ``Resource`` values.

The loader (``reconciler.load.loader``) reads, parses, classifies and validates each file on its own;
``Builder`` turns what passed into the canonical attributes ``reconciler.model.resources`` documents
(defaults filled, values normalised, paths relative to the project), one declaration per address.
It leans on its parts: ``canonical`` (a document's own values normalised), ``assets`` (a model's and
an environment's attributes), ``digests`` (paths resolved and checked, content digests of model
folders, code folders, conda files and build contexts), ``references`` (asset references and versions
against the declared and the recorded assets), ``remote`` (what the provider fetches from outside the
project) and ``crossdoc`` (the rules that need several documents: parents, traffic and mirror rules,
the service's counts). Problems go to the run's diagnostics with file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.load import canonical
from reconciler.load.assets import AssetAttributes
from reconciler.load.crossdoc import CrossDocumentRules
from reconciler.load.digests import Digests
from reconciler.load.references import AssetIndex
from reconciler.load.remote import RemoteRules
from reconciler.load.run import LoadedFile, LoadRun
from reconciler.load.scripts import syntax_error
from reconciler.model import catalog, checks
from reconciler.model.resources import (
    Attributes,
    CodeRef,
    DeploymentAttrs,
    DesiredState,
    EnvironmentAttrs,
    ModelAttrs,
    Resource,
    SourceRef,
    asset_address,
    deployment_address,
    endpoint_address,
    fast_model,
)
from reconciler.model.settings import ProjectSettings
from reconciler.state.document import State


class Builder:
    """Turns validated documents into canonical ``Resource`` values and applies cross-document rules."""

    def __init__(self, run: LoadRun, settings: ProjectSettings, recorded: State | None) -> None:
        self.run = run
        self.settings = settings
        self.resources: dict[str, Resource] = {}
        self.origin: dict[str, tuple[LoadedFile, int]] = {}
        self.files = Digests(run, settings.limits)
        self.remote = RemoteRules(run, settings.provider.kind)
        self.assets = AssetIndex(run, recorded, self.remote)
        self.asset_attrs = AssetAttributes(run, self.files, self.remote)
        self.endpoints: dict[str, LoadedFile] = {}
        self.deployments: dict[str, list[LoadedFile]] = {}

    # -- orchestration

    def build(self, documents: list[LoadedFile]) -> DesiredState:
        by_kind: dict[str, list[LoadedFile]] = {}
        for f in documents:
            by_kind.setdefault(f.kind.split("_")[-1] if f.kind else "", []).append(f)
        assets = by_kind.get("model", []) + by_kind.get("environment", [])
        for f in assets:  # explicit versions first: they are what unversioned ones count from
            if f.doc.version is not None:
                self.assets.declare(f.kind or "", f.doc.name, str(f.doc.version))
        for f in assets:
            self._asset(f, f.doc, (), f.kind or "", f.doc.name, anonymous=False)
        for f in by_kind.get("endpoint", []):
            self._endpoint(f, f.doc)
        for f in by_kind.get("deployment", []):
            self._deployment(f, f.doc)
        CrossDocumentRules(self.run, self.settings.limits, self.endpoints, self.deployments).check()
        return DesiredState(
            root=str(self.run.root),
            workspace=self.settings.workspace,
            provider=self.settings.provider,
            quota=self.settings.quota,
            instance_types=self.settings.instance_types,
            rollout=self.settings.rollout,
            resources=dict(sorted(self.resources.items())),
            warnings=[d.to_dict() for d in self.run.diagnostics if d.severity == "warning"],
        )

    def _add(
        self,
        f: LoadedFile,
        address: str,
        rtype: Any,
        name: str,
        attrs: Attributes,
        depends_on: tuple[str, ...] = (),
        path: tuple[Any, ...] = ("name",),
    ) -> None:
        if address in self.origin:
            other, other_line = self.origin[address]
            if other is not f:
                self.run.error(
                    f,
                    path,
                    f"{address} is already declared in {other.rel}:{other_line}",
                    "each resource is declared once; rename or remove one of the two",
                )
            return
        line = f.name_line if path == ("name",) else f.line_of(path)
        self.origin[address] = (f, line or 1)
        self.resources[address] = fast_model(
            Resource,
            address=address,
            type=rtype,
            name=name,
            attributes=attrs,
            depends_on=depends_on,
            source=fast_model(SourceRef, file=f.rel, line=line),
        )

    def _asset(
        self,
        f: LoadedFile,
        doc: Any,
        prefix: tuple[Any, ...],
        kind: str,
        name: str | None,
        anonymous: bool,
        owner: str = "",
    ) -> str | None:
        """Add a model or environment; returns its address (None when it is invalid)."""
        attrs: ModelAttrs | EnvironmentAttrs | None = (
            self.asset_attrs.model(f, doc, prefix) if kind == "model" else self.asset_attrs.environment(f, doc, prefix)
        )
        if attrs is None:
            return None
        digest = attrs["content_digest"]
        if anonymous or name is None:
            name, version = owner, digest.split(":", 1)[1][:12]
            anonymous = True
        elif doc.version is not None:
            version = str(doc.version)
        else:
            version = self.assets.pick_version(kind, name, digest)
            self.assets.declare(kind, name, version)
        attrs["name"], attrs["version"], attrs["anonymous"] = name, version, anonymous
        address = asset_address(kind, name, version)
        if anonymous and address in self.origin:  # its deployment is declared twice: reported there
            return address
        self._add(f, address, kind, name, attrs, path=(*prefix, "name") if prefix else ("name",))
        return address

    # -- endpoints and deployments

    def _endpoint(self, f: LoadedFile, doc: Any) -> None:
        attrs = canonical.endpoint_attrs(f, doc)
        self.remote.auth_mode(f, attrs["auth_mode"])
        name = attrs["name"]
        address = endpoint_address(name)
        if address not in self.origin:
            self.endpoints[address] = f
        self._add(f, address, "endpoint", name, attrs)

    def _deployment(self, f: LoadedFile, doc: Any) -> None:
        k8s = f.kind == "kubernetes_deployment"
        ep, name = doc.endpoint_name.lower(), doc.name.lower()
        owner = f"{ep}-{name}"
        model = self._asset_field(f, doc.model, "model", owner)
        env = self._asset_field(f, doc.environment, "environment", owner)
        code: CodeRef | None = None
        script = None
        cc = doc.code_configuration
        if cc is not None and cc.code is not None and self.remote.is_code_asset(cc.code):
            code = self.remote.code(f, ("code_configuration", "code"), cc.code)
            script = canonical.posix_path(cc.scoring_script) if code else None
        elif cc is not None:
            where = ("code_configuration", "code")
            code_dir = self.files.local(f, cc.code or ".", where, "code", True)
            code_digest = self.files.digest(f, where, "code", code_dir) if code_dir is not None else None
            if code_dir is not None and code_digest is not None:
                code = {"path": self.run.rel(code_dir), "digest": code_digest}
                script = canonical.posix_path(cc.scoring_script)
                found = self.files.local(
                    f,
                    cc.scoring_script,
                    ("code_configuration", "scoring_script"),
                    "scoring script",
                    False,
                    base=code_dir,
                )
                if found is not None:
                    self._script_syntax(f, found)
        scale = canonical.scale_settings(doc)
        self.remote.autoscale(f, scale, managed=not k8s)
        count = doc.instance_count
        if count is None:
            count = scale.get("min_instances", 1)
        attrs: DeploymentAttrs = {
            "name": name,
            "endpoint_name": ep,
            "kind": "kubernetes" if k8s else "managed",
            "model": model,
            "environment": env,
            "code": code,
            "scoring_script": script,
            "instance_type": self._instance_type(f, doc.instance_type, k8s),
            "instance_count": count,
            "scale_settings": scale,
            "request_settings": canonical.request_settings(doc.request_settings),
            "liveness_probe": canonical.probe(doc.liveness_probe),
            "readiness_probe": canonical.probe(doc.readiness_probe),
            "environment_variables": {str(k): canonical.text(v) for k, v in (doc.environment_variables or {}).items()},
            "resources": canonical.container_resources(doc.resources) if k8s else None,
            "properties": dict(doc.properties or {}),
            "tags": {str(k): canonical.text(v) for k, v in (doc.tags or {}).items()},
            "description": doc.description,
            "app_insights_enabled": bool(doc.app_insights_enabled),
            "egress_public_network_access": None
            if k8s or doc.egress_public_network_access is None
            else doc.egress_public_network_access.lower(),
            "data_collector": f.data.get("data_collector"),  # as written (checked against Azure's schema)
            "extra": {
                k: v
                for k, v in (
                    ("model_mount_path", doc.model_mount_path),
                    ("private_network_connection", getattr(doc, "private_network_connection", None)),
                )
                if v is not None
            },
        }
        depends = (endpoint_address(ep), *(a for a in (model, env) if a and _is_address(a)))
        address = deployment_address(ep, name)
        if address not in self.origin:
            self.deployments.setdefault(endpoint_address(ep), []).append(f)
        self._add(f, address, "deployment", name, attrs, depends)

    def _script_syntax(self, f: LoadedFile, script: Path) -> None:
        """A scoring script that is not valid Python is refused, as the Azure ML CLI refuses it."""
        wrong = syntax_error(script)
        if wrong is not None:
            line, what = wrong
            at = f"line {line}: " if line else ""
            self.run.error(
                f,
                ("code_configuration", "scoring_script"),
                f"the scoring script {self.run.rel(script)} is not valid Python: {at}{what}",
                "fix the script; instances would fail at init() (Azure's CLI refuses it too, before it sends)",
            )

    def _asset_field(self, f: LoadedFile, value: Any, kind: str, owner: str) -> str | None:
        if isinstance(value, str):
            return self.assets.resolve(f, kind, value, (kind,))
        inline = f.inline.get(kind)
        if inline is None:
            return None
        named = inline.name is not None
        if named:
            self.assets.declare(kind, inline.name, None if inline.version is None else str(inline.version))
        return self._asset(f, inline, (kind,), kind, inline.name, anonymous=not named, owner=owner)

    def _instance_type(self, f: LoadedFile, value: str | None, k8s: bool) -> str | None:
        if value is None or k8s:
            return value
        known = catalog.lookup(self.settings.instance_types, value)
        if known is None:
            hint = checks.suggest(value, list(self.settings.instance_types))
            self.run.error(
                f,
                ("instance_type",),
                f"unknown instance type {value!r}",
                (hint + "; " if hint else "") + "or add it under `instance_types:` in recon.yaml",
            )
            return value
        if known in catalog.SMALL_SKUS:
            self.run.warn(
                f,
                ("instance_type",),
                f"{known} is too small for most models",
                "Standard_DS3_v2 is the smallest size Azure recommends",
            )
        return known


def _is_address(value: str) -> bool:
    return value.startswith(("model.", "environment."))

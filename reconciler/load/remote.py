"""What a project names outside itself, and which providers can use it.

Azure's loader accepts a model ``path`` that is a URI (``runs:/``, ``azureml://jobs/...``,
``azureml://datastores/...``, ``https://``, ``wasbs://``), a ``code_configuration.code`` that is a
registered code asset, and model references to a registry or an ARM id
(``reconciler.model.remote`` says which strings are which). Azure fetches them itself; the azure
provider passes them through in its ARM bodies.

The providers that run instances from the project's own files (local, docker, kubernetes:
``RUNS_PROJECT_FILES``) cannot fetch them: the plan refuses each one at the field that names it,
saying what to do instead. An environment reference is different: those providers run the
instances on a default runtime (the host's Python, a base image) and say so, so it stays a warning.

Two more rules depend on where the project deploys: Azure refuses target-utilization scaling on a
managed deployment (``ManagedOnlineEndpoint supports DefaultScaleSettings only``); recon's own
providers autoscale it, with a warning that Azure would not. And ``auth_mode: aad_token`` means
Microsoft Entra ID tokens, which only Azure can check (its identity platform signs them, with keys
published online, for a user Azure's role assignments authorise): recon's own providers refuse it
rather than serve the endpoint with a weaker check (docs/security.md).
"""

from __future__ import annotations

from typing import Any

from reconciler.load.run import LoadedFile, LoadRun
from reconciler.model.remote import CODE_FORMS, RUNS_PROJECT_FILES, code_asset, is_code_asset, is_uri
from reconciler.model.resources import CodeRef, ScaleSettings

_AZURE = "or deploy with `provider: {kind: azure}` in recon.yaml (Azure fetches it)"


class RemoteRules:
    """The rules for one load; ``provider_kind`` is recon.yaml's ``provider.kind``."""

    def __init__(self, run: LoadRun, provider_kind: str) -> None:
        self.run = run
        self.kind = provider_kind
        self.runs_project_files = provider_kind in RUNS_PROJECT_FILES

    def model_path(self, f: LoadedFile, where: tuple[Any, ...], value: str, anonymous: bool) -> bool | None:
        """True when ``value`` is a URI a plan may use, None when it is one this provider cannot
        use (an error is reported), False when it is a local path. An inline model without a name
        is uploaded as an anonymous model: Azure's loader takes only a local path there."""
        if not is_uri(value):
            return False
        if anonymous:
            self.run.error(
                f,
                where,
                f"{value} is a URI, and an inline model without a name must be a local path",
                "give the inline model a name and a version (Azure registers it from the URI), or "
                "point path at a local folder",
            )
            return None
        if self.runs_project_files:
            self.run.error(
                f,
                where,
                f"{value} is a URI: the {self.kind} provider runs models from the project's files "
                "and cannot fetch it",
                f"download the model into the project and point path at its folder, {_AZURE}",
            )
            return None
        return True

    @staticmethod
    def is_code_asset(value: str) -> bool:
        return is_code_asset(value)

    def code(self, f: LoadedFile, where: tuple[Any, ...], value: str) -> CodeRef | None:
        """A registered code asset's canonical ``code`` (``{"asset": reference}``), or None and an error."""
        found = code_asset(value)
        if isinstance(found, str):
            self.run.error(f, where, found, f"write {CODE_FORMS}")
            return None
        if self.runs_project_files:
            self.run.error(
                f,
                where,
                f"{value} is a registered code asset: the {self.kind} provider runs the scoring code "
                "from a folder of the project",
                f"point code at a folder of the project that holds the scoring code (code: ./src), {_AZURE}",
            )
            return None
        return {"asset": value}

    def external_reference(self, f: LoadedFile, where: tuple[Any, ...], kind: str, ref: str) -> bool:
        """A registry or ARM reference: a warning for an environment on recon's own providers, an
        error for a model there (they cannot run without its files); nothing on the others.
        False when it is refused."""
        if not self.runs_project_files:
            return True
        if kind == "model":
            self.run.error(
                f,
                where,
                f"{ref} is a model the {self.kind} provider cannot fetch: it runs models from the project's files",
                f"declare the model in the project (a model file whose path is a local folder), {_AZURE}",
            )
            return False
        self.run.warn(
            f,
            where,
            f"{ref} is an external {kind} reference",
            f"the {self.kind} provider cannot materialise it and runs the instances on its default runtime; "
            f"declare the {kind} in the project to run it as Azure would",
        )
        return True

    def autoscale(self, f: LoadedFile, scale: ScaleSettings, managed: bool) -> None:
        """Target-utilization scaling on a managed deployment: Azure refuses it."""
        if not managed or scale.get("type") != "target_utilization":
            return
        said = "Azure refuses target_utilization scaling on a managed deployment"
        hint = ("scale a managed deployment by instance_count (Azure Monitor autoscale moves it), "
                "or make it a Kubernetes deployment (type: kubernetes)")
        if self.runs_project_files:
            self.run.warn(f, ("scale_settings", "type"), f"{said}; the {self.kind} provider autoscales it", hint)
        else:
            self.run.error(f, ("scale_settings", "type"), said, hint)

    def auth_mode(self, f: LoadedFile, mode: str) -> None:
        """``aad_token`` on a provider that runs recon's router: refused (see the module docstring)."""
        if mode != "aad_token" or not self.runs_project_files:
            return
        self.run.error(
            f,
            ("auth_mode",),
            f"aad_token (Microsoft Entra ID tokens) cannot be checked by the {self.kind} provider's router: "
            "only Azure verifies Entra tokens and the roles that allow scoring",
            "use auth_mode: aml_token (expiring tokens recon signs: recon keys prints one) or key, "
            + _AZURE.replace("fetches it", "checks Entra tokens"),
        )

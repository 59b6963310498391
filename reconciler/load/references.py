"""Asset references: which model and environment versions exist, and what a reference names.

``AssetIndex`` knows the versions the project declares and the versions the recorded state holds
(anonymous assets excluded). It resolves ``azureml:NAME:VERSION`` and ``azureml:NAME@latest`` to
an address (registry and ARM ids stay verbatim, and so do Azure's curated ``azureml-*``
environments: ``remote.RemoteRules`` says whether the project's provider can use them), refuses a
reference that does not split into one name and one version, and picks the version of an
asset declared without one: the recorded version with the same content, else the next integer
after every known version. A reference to nothing known is an error naming the known versions or
the closest name.
"""

from __future__ import annotations

from typing import Any

from reconciler.load.remote import RemoteRules
from reconciler.load.run import LoadedFile, LoadRun
from reconciler.model import checks
from reconciler.model.remote import unsplittable
from reconciler.model.resources import EnvironmentAttrs, ModelAttrs, as_asset, asset_address
from reconciler.state.document import State


def _version_key(version: str) -> tuple[int, int, str]:
    return (1, int(version), "") if version.isdigit() else (0, 0, version)


class AssetIndex:
    """Declared and recorded versions of models and environments, by kind and name."""

    def __init__(self, run: LoadRun, recorded: State | None, remote: RemoteRules) -> None:
        self.run = run
        self.remote = remote
        self.declared: dict[str, dict[str, set[str]]] = {"model": {}, "environment": {}}
        self.recorded: dict[str, dict[str, dict[str, ModelAttrs | EnvironmentAttrs]]] = {
            "model": {},
            "environment": {},
        }
        for res in recorded.resources.values() if recorded else ():
            if res.type in self.recorded:
                name, version = res.attributes.get("name"), res.attributes.get("version")
                if name is not None and version is not None and not res.attributes.get("anonymous"):
                    self.recorded[res.type].setdefault(str(name), {})[str(version)] = as_asset(res.attributes)

    def declare(self, kind: str, name: str, version: str | None = None) -> None:
        """``name`` is declared (at ``version``, when the document gives one)."""
        versions = self.declared[kind].setdefault(name, set())
        if version is not None:
            versions.add(version)

    def pick_version(self, kind: str, name: str, digest: str) -> str:
        """The recorded version with this content, else the next integer after every known one."""
        recorded = self.recorded[kind].get(name, {})
        for version, attrs in recorded.items():
            if attrs.get("content_digest") == digest:
                return version
        known = [int(v) for v in (*recorded, *self.declared[kind].get(name, ())) if v.isdigit()]
        return str(max(known, default=0) + 1)

    def resolve(self, f: LoadedFile, kind: str, ref: str, path: tuple[Any, ...]) -> str | None:
        """``azureml:NAME:VERSION`` / ``azureml:NAME@latest`` -> an address; registry/ARM ids stay verbatim."""
        if ref.startswith("azureml://") or ref.startswith("azureml:/"):
            return ref if self.remote.external_reference(f, path, kind, ref) else None
        if not ref.startswith("azureml:"):
            self.run.error(
                f,
                path,
                f"{ref!r} is not a {kind} reference",
                f"write azureml:NAME:VERSION or azureml:NAME@latest, or define the {kind} inline",
            )
            return None
        body = ref[len("azureml:") :]
        if "@" in body:
            name, label = body.split("@", 1)
            if label != "latest":
                self.run.error(
                    f,
                    path,
                    f"label @{label} is not supported",
                    "use azureml:NAME@latest or azureml:NAME:VERSION",
                )
                return None
            versions = self.declared[kind].get(name, set()) | set(self.recorded[kind].get(name, {}))
            if not versions:
                return self._unresolved(f, kind, ref, name, path)
            version = max(versions, key=_version_key)
        elif ":" in body:
            name, version = body.split(":", 1)
            if unsplittable(version) is not None:
                self.run.error(
                    f, path, f"{ref!r} does not split into one name and one version",
                    f"write azureml:NAME:VERSION (one colon between them), e.g. azureml:{name}:1",
                )
                return None
            if kind == "model" and not (version.isdigit() and int(version) >= 1):
                self.run.error(
                    f,
                    path,
                    f"model version {version!r} is not a positive integer",
                    "use azureml:NAME:1, :2 ...",
                )
                return None
        else:
            self.run.error(
                f, path, f"{ref!r} names no version", f"write azureml:{body}:VERSION or azureml:{body}@latest"
            )
            return None
        if version in self.declared[kind].get(name, ()) or version in self.recorded[kind].get(name, {}):
            return asset_address(kind, name, version)
        return self._unresolved(f, kind, ref, name, path)

    def _unresolved(self, f: LoadedFile, kind: str, ref: str, name: str, path: tuple[Any, ...]) -> str | None:
        if kind == "environment" and name.lower().startswith("azureml-"):  # curated: Azure's own
            self.remote.external_reference(f, path, kind, ref)
            return ref
        known = sorted(
            self.declared[kind].get(name, set()) | set(self.recorded[kind].get(name, {})), key=_version_key
        )
        hint = (
            f"declared versions of {name}: {', '.join(known)}"
            if known
            else checks.suggest(name, list(self.declared[kind]) + list(self.recorded[kind]))
            or f"add a {kind} file (with `$schema: https://azuremlschemas.azureedge.net/latest/{kind}.schema.json`) that defines it"
        )
        self.run.error(f, path, f"{ref} is neither declared in the project nor recorded in the state", hint)
        return None

"""The layering rules of docs/architecture.md, checked over the source with ``ast`` (no import runs).

Every ``import`` and ``from ... import`` in ``reconciler/``, ``providers/`` and ``states/`` counts,
wherever it stands: at the top, inside a function (a lazy import is still a dependency) or under
``if TYPE_CHECKING:`` (a type-only import still ties two modules together).

The rules:

1. Stages of ``reconciler`` import only their own stage or lower ones:
   model < state < load < migrate < plan < apply < render < cli (``migrate``, the side entrance of
   ``recon import-v1``, reads its files through ``load``; nothing below the CLI imports ``migrate``).
   The interfaces live in the core: the provider protocol in ``reconciler.plan.provider``, the
   storage backend protocol in ``reconciler.state.backend``.
2. Registries are called at the edge: only ``reconciler.cli`` imports ``states`` (its registry,
   ``states.open_backend``) and ``providers`` (its registry, ``providers.get_provider``); no other
   module of ``reconciler`` imports anything of ``providers`` or ``states``.
3. ``states`` (the storage backends) imports from ``reconciler`` only ``reconciler.model.*`` and the
   backend protocol, ``reconciler.state.backend``, and nothing of ``providers``.
4. A provider package (``providers/<kind>/``, ``providers/fake/``) imports only
   ``providers.shared.*``, its own modules, and from ``reconciler`` only the protocol modules
   (``reconciler.model.*``, ``reconciler.plan.types``, ``reconciler.plan.provider``,
   ``reconciler.state.document``), each directly (no provider keeps a module of re-exports). One
   provider never imports another, nor the registry. ``providers.shared`` follows the same rule
   and imports no provider.
5. The programs in ``providers/shared/runtime/`` (the router package, host, launcher) run in other
   interpreters: they import nothing of recon. The router package's modules import only each other,
   and relatively (in its zip archive the package is ``router``); ``host`` imports only ``host_scoring``,
   relatively (the two files ship into one folder, where ``host.py`` runs as a script and imports it
   by its top-level name).
6. No import cycle: no two modules import each other, directly or through others, and no two
   packages do either (a module counts for the package that holds it; ``__main__`` for itself).
7. YAML is parsed only in ``reconciler.load.sources`` (with its limits; import-v1's data files go
   through ``reconciler.load.datafile``, which uses it): no other module calls a parsing function of
   ``yaml`` (writing YAML with ``yaml.safe_dump`` is fine).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

PACKAGES = ("reconciler", "providers", "states")
STAGES = {"model": 0, "state": 1, "load": 2, "migrate": 3, "plan": 4, "apply": 5, "render": 6, "cli": 7}
PROTOCOL = ("reconciler.model", "reconciler.plan.types", "reconciler.plan.provider", "reconciler.state.document")
ROUTER = "providers.shared.runtime.router"  # the router package: runs from its own zip archive
HOST = "providers.shared.runtime.host"  # the host: it imports host_scoring, shipped beside it (HOST_FILES)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (``from a.b import c`` is a.b.c when c is a module, else a.b)
    file: str
    line: int
    relative: bool = False  # ``from . import x`` / ``from .x import y``

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.module} imports {self.target}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect(root: Path) -> tuple[set[str], list[Import]]:
    """Every module of the three packages under ``root`` and every import between them."""
    files = sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))
    modules = {module_name(root, p) for p in files}
    imports: list[Import] = []
    for path in files:
        mod = module_name(root, path)
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            relative = False  # ``from . import x`` / ``from .x import y``
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                relative = node.level > 0
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in modules else base)
            for t in targets:
                if t.split(".")[0] in PACKAGES:
                    imports.append(Import(mod, t, str(path.relative_to(root)), node.lineno, relative))
    return modules, imports


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _stage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "reconciler" and parts[1] in STAGES else None


def _provider_package(name: str) -> str | None:
    """``local`` for providers.local.x, ``fake`` for providers.fake; None for shared and the registry."""
    parts = name.split(".")
    if parts[0] != "providers" or len(parts) < 2 or parts[1] == "shared":
        return None
    return parts[1]


def violation(imp: Import) -> str | None:
    """Why ``imp`` breaks a rule (None when it does not)."""
    src, dst = imp.module, imp.target
    if _under(src, ROUTER):
        if _under(dst, ROUTER) and imp.relative:
            return None
        return "a runtime program imports recon's modules (it runs in another interpreter; the router " \
               "package imports only its own modules, relatively)"
    if src == HOST and dst == f"{HOST}_scoring" and imp.relative:
        return None
    if _under(src, "providers.shared.runtime") and src != "providers.shared.runtime":
        return "a runtime program imports recon's modules (it runs in another interpreter)"
    if dst == "reconciler" or (src == "reconciler.__main__" and dst == "reconciler.cli"):
        return None  # the package itself (__version__); ``python -m reconciler`` runs the CLI
    src_stage, dst_stage = _stage(src), _stage(dst)
    if src.startswith("reconciler."):
        if src_stage is None:
            return f"{src} is outside every stage package"
        if dst_stage is not None and dst_stage != src_stage and STAGES[dst_stage] >= STAGES[src_stage]:
            return f"stage {src_stage} imports stage {dst_stage}, which is not below it"
        if _under(dst, "states") and src_stage != "cli":
            return "only the CLI uses the storage backends' registry (states)"
        if _under(dst, "providers"):
            if dst != "providers":
                return f"stage {src_stage} imports a provider module (the protocol is reconciler.plan.provider)"
            if src_stage != "cli":
                return "only the CLI calls the provider registry (providers.get_provider)"
        if _under(dst, "states") and dst != "states":
            return "the CLI opens storage backends only through their registry (states.open_backend)"
        return None
    if src.startswith("states"):
        if dst.startswith("reconciler") and not (_under(dst, "reconciler.model") or dst == "reconciler.state.backend"):
            return "a storage backend imports from reconciler only reconciler.model and reconciler.state.backend"
        if _under(dst, "providers"):
            return "a storage backend imports a provider module"
        return None
    if src == "providers":  # the registry names every provider, importing them lazily by string
        ok = dst == "reconciler.plan.provider" or _under(dst, "reconciler.model")
        return None if ok else "the registry imports a provider"
    if dst.startswith("reconciler") and not any(_under(dst, p) for p in PROTOCOL):
        return f"a provider module imports {dst}, beyond the protocol modules"
    if _under(dst, "states"):
        return "a provider imports a storage backend"
    if dst.startswith("providers"):
        mine, theirs = _provider_package(src), _provider_package(dst)
        if dst == "providers":
            return "a provider imports the registry"
        if theirs is not None and theirs != mine:
            return f"provider {mine or src} imports provider {theirs}"
    return None


YAML_PARSERS = frozenset({"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all",
                          "full_load_all", "unsafe_load_all", "compose", "compose_all", "parse", "scan"})
YAML_OWNER = "reconciler.load.sources"


def yaml_parsing(root: Path) -> list[str]:
    """Where a module other than ``YAML_OWNER`` parses YAML: ``yaml.<parser>(...)``, or a parser
    imported by name (``from yaml import safe_load``)."""
    found = []
    for path in sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")):
        mod = module_name(root, path)
        if mod == YAML_OWNER:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = None
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml"
                    and node.attr in YAML_PARSERS):
                name = f"yaml.{node.attr}"
            elif isinstance(node, ast.ImportFrom) and node.module == "yaml":
                name = next((f"yaml.{a.name}" for a in node.names if a.name in YAML_PARSERS), None)
            if name is not None:
                where = f"{path.relative_to(root)}:{node.lineno}"
                found.append(f"{where}: {mod} parses YAML ({name}); only {YAML_OWNER} does")
    return found


def package_of(module: str, packages: set[str]) -> str:
    """The package that holds ``module`` (a package holds itself; ``__main__`` stands alone)."""
    if module in packages or module.endswith(".__main__"):
        return module
    return module.rpartition(".")[0] or module


def cycles(edges: list[tuple[str, str]], kind: str) -> list[str]:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_edges_from((a, b) for a, b in edges if a != b)
    found = sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)
    return [f"{kind} cycle: " + " <-> ".join(c) for c in found]


def violations(root: Path) -> list[str]:
    modules, imports = collect(root)
    found = [f"{imp}: {why}" for imp in imports if (why := violation(imp)) is not None]
    inside = [(i.module, i.target) for i in imports if i.target in modules]
    found += cycles(inside, "import")
    packages = {m for m in modules if (root / m.replace(".", "/") / "__init__.py").is_file()}
    found += cycles([(package_of(a, packages), package_of(b, packages)) for a, b in inside], "package import")
    return found + yaml_parsing(root)

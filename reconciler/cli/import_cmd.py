"""``recon import``: bring objects that already exist under recon without recreating them.

Terraform's ``import``: for each ADDRESS your files declare (``endpoint.NAME``,
``deployment.ENDPOINT.NAME``, ``model.NAME:VERSION``, ``environment.NAME:VERSION``; or every
declared address with ``--all``), the provider reads the live object (the same ``observe`` that
refresh uses) and the state records it: the declared attributes, overlaid with everything the
provider reports as it really is (instance count, traffic, settings, the model or code a deployment
runs ...). Nothing is created, changed or deleted. The next ``recon plan`` shows what differs
between the live objects and your files, and ``recon apply`` changes only that.

An address already in the state is left alone (``recon refresh`` reads it again); one whose object
does not exist is an error naming it (with ``--all``: reported, and left for ``apply`` to create).
"""

from __future__ import annotations

from typing import Any

import click

from reconciler.cli.app import cli, project_root


def _normal(address: str) -> str:
    kind, _, rest = address.partition(".")
    return f"{kind}.{rest.lower()}" if kind in ("endpoint", "deployment") else address


@cli.command("import")
@click.argument("addresses", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every declared address that is not in the state yet.")
@click.pass_context
def import_cmd(ctx: click.Context, addresses: tuple[str, ...], all_: bool) -> None:
    """Record live objects your files declare in the state, changing nothing (ADDRESS...)."""
    from reconciler.cli.registries import open_project
    from reconciler.model.errors import ConfigError, ProviderError, StateError

    if not addresses and not all_:
        raise ConfigError("name the addresses to import (e.g. endpoint.my-endpoint), or use --all")
    with open_project(project_root(ctx)) as project, project.locked("import"):
        state = project.read_state()
        desired = project.load_desired(state)
        wanted = [_normal(a) for a in addresses] or sorted(a for a in desired.resources if a not in state.resources)
        unknown = [a for a in wanted if a not in desired.resources]
        if unknown:
            raise StateError(f"{', '.join(unknown)}: not declared in the project's files (declared: "
                             f"{', '.join(sorted(desired.resources)) or 'nothing'}); recon imports what you declare")
        imported, missing = [], []
        resources = dict(state.resources)
        for address in wanted:
            if address in resources:
                click.echo(f"{address}: already in the state; left as it is (recon refresh reads it again)")
                continue
            record = _import_one(project, desired.resources[address])
            if record is None:
                if not all_:
                    raise ProviderError(f"{address}: {project.provider_kind} has no such object to import")
                missing.append(address)
                continue
            resources[address] = record
            imported.append(address)
            click.echo(f"{address}: imported")
        if imported:
            project.state_manager.write(state.model_copy(update={"resources": resources}))
    for address in missing:
        click.echo(f"{address}: does not exist yet; recon apply will create it")
    click.echo(f"Imported {len(imported)} resource(s); nothing was changed. "
               "Run recon plan to see what differs from your files.")


def _import_one(project: Any, resource: Any) -> Any:
    """The state record of one declared resource as the provider sees it live, or None."""
    from reconciler.model.errors import ProviderError
    from reconciler.state.document import StateResource

    probe = StateResource(address=resource.address, type=resource.type, name=resource.name,
                          provider=project.provider_kind, attributes=resource.attributes.copy(),
                          depends_on=list(resource.depends_on))
    try:
        seen = project.provider.observe(probe)
    except ProviderError:
        raise
    except Exception as exc:  # the provider contract says ProviderError; keep it so
        raise ProviderError(f"reading {resource.address} failed: {type(exc).__name__}: {exc}") from exc
    if not seen.exists:
        return None
    live = {k: v for k, v in seen.attributes.items() if k in probe.attributes}
    return probe.model_copy(update={"attributes": {**probe.attributes, **live}, "outputs": dict(seen.outputs)})


__all__ = ["import_cmd"]

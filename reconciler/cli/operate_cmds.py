"""``recon invoke``, ``logs`` and ``keys``: operating what an apply made, through the provider.

They read the state (never the configuration) and take no lock: they change nothing. ``keys`` is
the one command that prints a secret, on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import urllib.request

from reconciler.cli.app import ProjectPath, cli, project_root
from reconciler.cli.plan_cmds import open_project
from reconciler.model.errors import ProviderError, StateError
from reconciler.model.resources import endpoint_address
from reconciler.plan.provider import EndpointToken
from reconciler.state.document import State, StateResource


def _project(ctx: click.Context) -> Any:
    project = open_project(project_root(ctx))
    ctx.call_on_close(project.close)
    return project


def _recorded(project: Any, address: str, kind: str) -> StateResource:
    state: State = project.read_state()
    resource = state.get(address)
    if resource is None:
        known = sorted(a for a, r in state.resources.items() if r.type == kind)
        raise StateError(
            f"{address} is not in the state"
            + (f" (recorded {kind}s: {', '.join(known)})" if known else f" (no {kind} is recorded)")
            + "; run recon apply first"
        )
    return resource


def _endpoint_address(name: str) -> str:
    return name.lower() if name.lower().startswith("endpoint.") else endpoint_address(name)


@cli.command("invoke")
@click.argument("endpoint")
@click.option(
    "--request-file",
    required=True,
    type=ProjectPath(exists=True, dir_okay=False, path_type=Path),
    help="The JSON body to POST (as `az ml online-endpoint invoke --request-file`).",
)
@click.option("--deployment", default=None, metavar="NAME", help="Send to this deployment, ignoring the traffic split.")
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the answer."
)
@click.pass_context
def invoke_cmd(
    ctx: click.Context, endpoint: str, request_file: Path, deployment: str | None, timeout: float
) -> None:
    """POST a request file to ENDPOINT's scoring URI with its key (or, for an aml_token endpoint, a fresh
    token) and print the answer."""
    project = _project(ctx)
    resource = _recorded(project, _endpoint_address(endpoint), "endpoint")
    credentials = project.provider.credentials(resource)
    uri = resource.outputs.get("scoring_uri") or credentials.scoring_uri
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {credentials.bearer}"}
    if deployment:
        headers["azureml-model-deployment"] = deployment
    import urllib.request  # only for invoke (it brings http.client and ssl)

    request = urllib.request.Request(uri, data=request_file.read_bytes(), headers=headers, method="POST")
    status, body, served, headers = _post(request, timeout)
    if not 200 <= status < 300:
        raise ProviderError(_http_error(uri, status, body, served, headers))
    click.echo(body.decode(errors="replace"))
    if served:
        click.echo(f"(answered by deployment {served})", err=True)


def _http_error(uri: str, status: int, body: bytes, served: str | None, headers: Any) -> str:
    """``... answered HTTP 424 (Failed Dependency): deployment blue's instance answered HTTP 500
    (Internal Server Error): <body>``: the router's status and, when the instance's answer was
    an error (Azure's 424 "model error"), the instance's own."""
    from http import HTTPStatus

    def named(code: int) -> str:
        try:
            return f"HTTP {code} ({HTTPStatus(code).phrase})"
        except ValueError:
            return f"HTTP {code}"

    text = f"{uri} answered {named(status)}"
    inner = headers.get("ms-azureml-model-error-statuscode") if headers is not None else None
    if inner and str(inner).isdigit():
        who = f"deployment {served}'s instance" if served else "the instance"
        text += f": {who} answered {named(int(inner))}"
    detail = body.decode(errors="replace").strip()
    return text + (f": {detail}" if detail else "")


def _post(request: urllib.request.Request, timeout: float) -> tuple[int, bytes, str | None, Any]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - the recorded URI
            return resp.status, resp.read(), resp.headers.get("azureml-model-deployment"), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("azureml-model-deployment"), exc.headers
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProviderError(f"cannot reach {request.full_url}: {reason}") from exc


@cli.command("logs")
@click.argument("deployment")
@click.option(
    "--instance",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only instance N. Instances are numbered from 1 and new ones get new numbers (a rollout "
    "replaces 1 and 2 with 3 and 4); `recon state show DEPLOYMENT` lists the current ones.",
)
@click.option(
    "--tail", type=click.IntRange(min=0), default=100, show_default=True, help="Last N lines (0: all)."
)
@click.pass_context
def logs_cmd(ctx: click.Context, deployment: str, instance: int | None, tail: int) -> None:
    """Print the logs of a deployment's instances (DEPLOYMENT: deployment.ENDPOINT.NAME)."""
    project = _project(ctx)
    address = deployment.lower()
    if not address.startswith("deployment."):
        address = "deployment." + address.replace("/", ".")
    resource = _recorded(project, address, "deployment")
    known = _instance_ids(resource)
    if instance is not None and known and instance not in known:
        raise StateError(
            f"{address} has no instance {instance}; its instances: {', '.join(map(str, known))}"
        )
    lines = project.provider.logs(resource, instance=instance, tail=tail)
    if instance is not None and not lines:
        raise StateError(
            f"{address}: instance {instance} has no log (it does not exist, or wrote nothing yet)"
            + (f"; its instances: {', '.join(map(str, known))}" if known else "")
        )
    for line in lines:
        click.echo(line)


def _instance_ids(resource: StateResource) -> list[int]:
    """The instance numbers the state records for a deployment (empty when the provider records
    none in this form)."""
    ids = []
    for entry in resource.outputs.get("instances") or []:
        value = entry.get("id") if isinstance(entry, dict) else entry
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            ids.append(int(value))
    return sorted(ids)


@cli.command("keys")
@click.argument("endpoint")
@click.pass_context
def keys_cmd(ctx: click.Context, endpoint: str) -> None:
    """Print ENDPOINT's credentials as JSON, as `az ml online-endpoint get-credentials` does: its keys
    and scoring URI (auth_mode: key), or a new token (auth_mode: aml_token: accessToken, expiryTimeUtc,
    refreshAfterTimeUtc, tokenType).

    This is the one command that prints a secret, on purpose."""
    project = _project(ctx)
    resource = _recorded(project, _endpoint_address(endpoint), "endpoint")
    credentials = project.provider.credentials(resource)
    if isinstance(credentials, EndpointToken):
        click.echo(json.dumps(credentials.as_azure(), indent=2))
        return
    doc = {
        "primaryKey": credentials.primary_key,
        "secondaryKey": credentials.secondary_key,
        "scoring_uri": resource.outputs.get("scoring_uri") or credentials.scoring_uri,
    }
    click.echo(json.dumps(doc, indent=2))


__all__ = ["invoke_cmd", "keys_cmd", "logs_cmd"]

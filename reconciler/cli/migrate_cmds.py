"""``recon import-v1``: SDK v1 AksWebservice / AksEndpoint configs -> CLI v2 YAML and MIGRATION.md.

Thin: parse the options, call ``reconciler.migrate.import_v1``, print what was written and a
``Warning: FILE:LINE: KEY: ...`` line (stderr) for each setting v1 itself ignored. Bad input is a
``ConfigError`` whose diagnostics name the file and key; the command prints them as ``Error: ...``
lines and exits 1, having written nothing. Relative paths in options (the configs, ``--model-path``,
``--path``, ``--out``) resolve against ``-C DIR`` as in every recon command, else against the working
folder, as the v1 CLI took them; the paths inside an inference config too (the folder
``az ml model deploy`` ran in), unless ``--path`` names the v1 project folder they are relative to.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.app import ProjectPath, cli, project_root
from reconciler.model.errors import ConfigError

_file = ProjectPath(exists=True, dir_okay=False, path_type=Path)


@cli.command("import-v1")
@click.option("--deployment-config", "--dc", "deployment_config", type=_file, required=True,
              help="deploymentconfig.json (v1 CLI, camelCase) or the deploy_configuration kwargs (JSON/YAML).")
@click.option("--inference-config", "--ic", "inference_config", type=_file,
              help="inferenceconfig.json: entryScript, sourceDirectory, environment.")
@click.option("--model", "-m", "model", metavar="azureml:NAME:VERSION", help="The registered model to serve.")
@click.option("--model-path", "model_path", type=ProjectPath(exists=True, path_type=Path),
              help="The model's files (with --model: declared as that name and version).")
@click.option("--endpoint", "-n", "endpoint", required=True, help="The endpoint name (the v1 service name).")
@click.option("--versions", "versions", type=_file,
              help="AksEndpoint versions: a list of create_version kwargs (JSON/YAML).")
@click.option("--target", type=click.Choice(["kubernetes", "managed"]), default="kubernetes", show_default=True,
              help="kubernetesOnlineEndpoint (v1 AKS ran on a cluster) or managedOnlineEndpoint.")
@click.option("--instance-type", "instance_type", metavar="SKU", help="With --target managed: the VM size.")
@click.option("--compute", metavar="NAME", help="The Kubernetes compute (default: compute_target_name).")
@click.option("--deployment-name", "deployment_name", metavar="NAME",
              help="The deployment's name when the config has no versionName (default: blue; for an "
                   "AksEndpoint, the endpoint's name, as v1 named its first version).")
@click.option("--path", "base", type=ProjectPath(exists=True, file_okay=False, path_type=Path), metavar="DIR",
              help="The v1 project folder the inference config's paths (entryScript, sourceDirectory, condaFile, "
                   "extraDockerfileSteps) are relative to, as the v1 CLI's --path (default: the current folder, "
                   "where `az ml model deploy` ran, or -C DIR).")
@click.option("--out", "out", type=ProjectPath(file_okay=False, path_type=Path), required=True, metavar="DIR",
              help="The folder to write the v2 YAML and MIGRATION.md into.")
@click.pass_context
def import_v1_cmd(ctx: click.Context, deployment_config: Path, inference_config: Path | None, model: str | None,
                  model_path: Path | None, endpoint: str, versions: Path | None, target: str,
                  instance_type: str | None, compute: str | None, deployment_name: str | None, base: Path | None,
                  out: Path) -> None:
    """Write CLI v2 YAML (endpoint, one deployment per v1 version) and MIGRATION.md from SDK v1 configs."""
    from reconciler.migrate import Options, import_v1  # only this command needs the v1 models

    opts = Options(deployment_config=deployment_config, out=out, endpoint=endpoint,
                   inference_config=inference_config, model=model, model_path=model_path, versions=versions,
                   target=target, instance_type=instance_type, compute=compute, deployment_name=deployment_name,
                   base=base if base is not None else project_root(ctx))
    try:
        done = import_v1(opts)
    except ConfigError as exc:
        for d in exc.diagnostics:
            click.echo(f"{'Warning' if d.severity == 'warning' else 'Error'}: {d.format()}", err=True)
        n = sum(1 for d in exc.diagnostics if d.severity != "warning")
        click.echo(f"{n} error{'s' if n != 1 else ''} in the v1 configuration; nothing was written.", err=True)
        ctx.exit(1)
    for w in done.warnings:
        click.echo(f"Warning: {w.format()}", err=True)
    for name in done.files:
        click.echo(f"Wrote {out / name}")
    if done.not_carried:
        click.echo(f"{done.not_carried} setting(s) the files gave have no v2 form: see 'Not carried over' in "
                   f"{out / 'MIGRATION.md'}")
    click.echo(f"Next: recon -C {out} plan (every v1 setting and what it became: {out / 'MIGRATION.md'})")

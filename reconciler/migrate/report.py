"""MIGRATION.md: every v1 setting, what it became in v2, and what has no v2 equivalent.

Contract: ``migration_md(opts, service, rows, files)`` returns the Markdown text. It lists every
row (one per v1 setting per scope, given or defaulted), then, apart, the settings that were not
carried over, so that nothing is dropped silently. It holds no secret (rows never do).
"""

from __future__ import annotations

from reconciler.migrate.rows import Row
from reconciler.migrate.service import Options, Service
from reconciler.model.errors import Diagnostic

NOT_CARRIED = ("dropped", "no ", "never written", "not kept", "ignored", "not carried")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: list[Row]) -> list[str]:
    lines = ["| scope | v1 setting | v1 value | v2 |", "| --- | --- | --- | --- |"]
    lines += [f"| {_cell(r.scope)} | `{_cell(r.setting)}` | {_cell(r.value)} | {_cell(r.became)} |" for r in rows]
    return lines


def migration_md(opts: Options, svc: Service, rows: list[Row], files: list[str],
                 warnings: list[Diagnostic] | None = None) -> str:
    """See the module docstring."""
    kind = "kubernetesOnlineEndpoint" if opts.target == "kubernetes" else "managedOnlineEndpoint"
    sources = [svc.config.label] + ([svc.versions_file.label] if svc.versions_file else [])
    if opts.inference_config is not None:
        sources.append(str(opts.inference_config))
    lines = [
        "# Migration from SDK v1",
        "",
        f"Written by `recon import-v1` from {', '.join(f'`{s}`' for s in sources)}: the v1 AKS service "
        f"`{svc.endpoint}` as a `{kind}` with {len(svc.versions)} deployment(s).",
        "Every v1 default the files were silent about is written as an explicit v2 value, so the v2 "
        "deployments behave as v1 did where v2's own defaults differ.",
        "",
        "Files: " + ", ".join(f"`{f}`" for f in files),
        "",
        "## Traffic",
        "",
        "| deployment | role | traffic |",
        "| --- | --- | --- |",
    ]
    for v in svc.versions:
        role = "default (takes the rest)" if v.is_default else ("control" if v.is_control else "version")
        lines.append(f"| {v.name} | {role} | {svc.traffic.get(v.name, 0)}% |")
    if warnings:
        lines += ["", "## Warnings", "", "Settings v1 itself did not use, or values recon did not take as written "
                  "(each also printed by `recon import-v1`):", ""]
        lines += [f"- `{_cell(w.format())}`" for w in warnings]
    lines += ["", "## Every v1 setting", ""] + _table(rows)
    dropped = [r for r in rows if r.became.startswith(NOT_CARRIED) and r.value not in ("not set",)]
    lines += ["", "## Not carried over (no v2 equivalent)", ""]
    lines += _table(dropped) if dropped else ["Nothing: every setting the files gave has a v2 form."]
    lines += ["", "## New in v2", "",
              "- `readiness_probe` (v1 AKS had none to configure) keeps v2's defaults.",
              "- Keys: v2 generates new endpoint keys; callers must switch to them.",
              "- Check the plan before anything runs: `recon plan` in this folder "
              "(or `az ml online-endpoint create -f endpoint.yml`, then each deployment file).", ""]
    return "\n".join(lines)

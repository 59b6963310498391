"""Settings a v1 file gives that v1 itself did not use for this service: set aside, and said so.

recon does not guess what such a value was meant to do. ``set_aside(given, ...)`` removes them from
``given`` (so v1's defaults apply, as they did in v1) and returns them as ``Ignored``, each with why;
the caller turns each into a warning at its key (``warning``) and a MIGRATION.md row (``row``):

- keys v1 read only for other compute types: ``AciWebservice.deploy_configuration``'s (``sslEnabled``,
  ``location``, ``dnsNameLabel``...) and a LocalWebservice's ``port``;
- ``containerResourceRequirements.gpu``: the v1 CLI read the GPU count from ``gpuCores`` only;
- autoscale bounds (``minReplicas``, ``maxReplicas``, ``refreshPeriodInSeconds``, ``targetUtilization``)
  without ``autoscaleEnabled: true``: v1 applied none of them (azureml-core refuses them as "provided
  without enabling autoscaling").
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.migrate.files import V1File
from reconciler.migrate.models import ACI_ONLY
from reconciler.migrate.rows import Row, row
from reconciler.migrate.settings import Setting
from reconciler.model.errors import Diagnostic

BOUNDS = ("autoscale_min_replicas", "autoscale_max_replicas", "autoscale_refresh_seconds",
          "autoscale_target_utilization")


@dataclass(frozen=True)
class Ignored:
    """A given setting v1 did not use: ``why`` (and ``hint``, what to write for it to count)."""

    setting: Setting
    why: str
    hint: str


def set_aside(given: dict[str, Setting]) -> list[Ignored]:
    """Remove and return the settings of ``given`` that v1 did not use (see the module docstring)."""
    out: list[Ignored] = []
    for name, what in ACI_ONLY.items():
        if name in given:
            kind = "a LocalWebservice" if name == "port" else "ACI services"
            out.append(Ignored(given.pop(name), f"v1 read it only for {kind} ({what}); an AKS service "
                                                "ignored it, and v2 has no such field",
                               _ACI_HINT.get(name, "remove it")))
    gpu = given.pop("container_gpu", None)
    if gpu is not None:
        used = given.get("gpu_cores")
        now = f"gpuCores ({used.value}) is used" if used is not None else "no gpuCores: 0 GPUs, as in v1"
        out.append(Ignored(gpu, f"the v1 CLI read the GPU count from gpuCores, never from here; {now}",
                           f"write \"gpuCores\": {gpu.value} at the top level to request GPUs"))
    auto = given.get("autoscale_enabled")
    if auto is None or not auto.value:
        state = "autoscaleEnabled is false" if auto is not None else "autoscaleEnabled is not set"
        for name in BOUNDS:
            if name in given:
                out.append(Ignored(given.pop(name), f"{state}: v1 applied no autoscale bound without it "
                                                    "(azureml-core refuses it as provided without enabling "
                                                    "autoscaling)", "set autoscaleEnabled: true for it to apply"))
    return out


_ACI_HINT = {
    "ssl_enabled": "TLS for a Kubernetes endpoint is set when the Azure ML extension is installed on the cluster "
                   "(sslCertPemFile, sslKeyPemFile, sslCname); managed endpoints always use HTTPS",
    "ssl_cert_pem_file": "give the certificate to the cluster's Azure ML extension (sslCertPemFile)",
    "ssl_key_pem_file": "give the key to the cluster's Azure ML extension (sslKeyPemFile)",
    "ssl_cname": "give the host name to the cluster's Azure ML extension (sslCname)",
}


def warning(ig: Ignored, f: V1File, at: tuple[str | int, ...]) -> Diagnostic:
    """The warning at the setting's key in ``f`` (``at``: the entry's path in the file)."""
    key = ig.setting.key or ig.setting.name
    return f.diagnostic((*at, *key.split(".")), f"ignored: {ig.why}", ig.hint, severity="warning")


def ignored_row(scope: str, ig: Ignored) -> Row:
    """The MIGRATION.md row of ``ig``."""
    return row(scope, ig.setting, f"ignored: {ig.why} ({ig.hint})")

"""The Kubernetes objects recon makes, as plain dicts (what server-side apply sends).

Names (all in the provider's namespace; DNS-1123, at most 63 characters, hashed when longer):

- endpoint ``E``: Deployment + Service ``E-router`` (the router, providers/shared/runtime/router/), and
  ServiceAccount + Role + RoleBinding ``E-router`` (the router watches its instance pods),
  ConfigMap ``E-router`` (router.pyz, the router's zip archive, and the routing table), ConfigMap
  ``E-router-lib`` (the httptools package the router parses HTTP with, as a .tar.gz), Secret ``E-keys``
  (the two keys, and the instance key the router presents to the instances);
- deployment ``D`` of ``E``: Deployment ``E-D`` (its instances), ConfigMap ``E-D-<digest>`` (the code
  snapshot and host.py, one per configuration), HorizontalPodAutoscaler ``E-D`` under
  ``scale_settings.type: target_utilization``;
- model ``M:V``: ConfigMap ``recon-model-M-V`` (the model folder as a .tar.gz).

Every object carries recon's labels: ``recon.io/managed``, ``recon.io/workspace``,
``recon.io/endpoint``, ``recon.io/deployment``, ``recon.io/role``, ``recon.io/digest``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

from providers.kubernetes.settings import KubeSettings
from providers.shared.probes import probe_settings
from reconciler.model.catalog import lookup, merged_catalog
from reconciler.model.resources import CodeRef, DeploymentAttrs, ModelAttrs

MANAGED = "recon.io/managed"
WORKSPACE = "recon.io/workspace"
ENDPOINT = "recon.io/endpoint"
DEPLOYMENT = "recon.io/deployment"
ROLE = "recon.io/role"
DIGEST = "recon.io/digest"
MODEL = "recon.io/model"

INSTANCE_PORT = 5001
ROUTER_PORT = 8080
# The usual annotations a Prometheus' kubernetes_sd pod job keeps (docs/runtime.md: the scrape needs the key).
PROMETHEUS_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/port": str(ROUTER_PORT),
                          "prometheus.io/path": "/-/metrics"}
APP_ROOT = "/var/azureml-app"
HOST_PATH = "/opt/recon/host.py"
BUNDLE_MOUNT = "/opt/recon/bundle"
MODEL_MOUNT = "/opt/recon/model"
ROUTER_DIR = "/opt/recon/router"
ROUTER_LIB_SRC = "/opt/recon/lib-src"
ROUTER_LIB = "/opt/recon/lib"
KEYS_DIR = "/etc/recon/keys"
INSTANCE_KEY_DIR = "/etc/recon/instance"
KEYS_FILE = "keys.json"  # in Secret E-keys: {"primaryKey", "secondaryKey", "tokenSigningKey"}
INSTANCE_KEY_FILE = "instance.json"  # in Secret E-keys: {"instanceKey"}, also mounted into instances
# An instance pod keeps serving this long after it is marked for deletion, before its SIGTERM: the time
# recon takes to see it and take it out of the router's table (providers/kubernetes/rollout.py).
PRESTOP_SECONDS = 5
ROUTER_REQUESTS = {"cpu": "50m", "memory": "64Mi"}  # what a router pod asks for (not counted in plans)
# Instance containers: the entries recon adds to the declared environment variables.
RECON_ENV = ("AZUREML_MODEL_DIR", "AML_APP_ROOT", "AZUREML_ENTRY_SCRIPT", "WORKER_COUNT", "PYTHONUNBUFFERED")


def dns_name(*parts: str) -> str:
    """``a-b-c`` in DNS-1123 form, at most 63 characters (a hash keeps long names unique)."""
    raw = "-".join(p for p in parts if p)
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-") or "x"
    if len(name) > 63 or name != raw.lower():
        tag = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{tag}"
    return name


def label_value(value: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63].strip("-_.")
    return text


def short_digest(digest: str | None) -> str:
    return (digest or "").removeprefix("sha256:")[:16]


def router_name(endpoint: str) -> str:
    return dns_name(endpoint, "router")


def router_lib_name(endpoint: str) -> str:
    return dns_name(endpoint, "router-lib")


def keys_name(endpoint: str) -> str:
    return dns_name(endpoint, "keys")


def deployment_name(endpoint: str, deployment: str) -> str:
    return dns_name(endpoint, deployment)


def bundle_name(endpoint: str, deployment: str, digest: str) -> str:
    return dns_name(endpoint, deployment, short_digest(digest)[:10])


def model_name(name: str, version: str) -> str:
    return dns_name("recon-model", name, version)


def labels(workspace: str, role: str, endpoint: str | None = None, deployment: str | None = None,
           digest: str | None = None) -> dict[str, str]:
    out = {MANAGED: "true", WORKSPACE: label_value(workspace), ROLE: role}
    if endpoint is not None:
        out[ENDPOINT] = label_value(endpoint.lower())
    if deployment is not None:
        out[DEPLOYMENT] = label_value(deployment.lower())
    if digest:
        out[DIGEST] = short_digest(digest)
    return out


def meta(name: str, namespace: str, lab: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "namespace": namespace, "labels": lab}
    if annotations:
        out["annotations"] = annotations
    return out


# -- resources ------------------------------------------------------------------------------------
def max_surge(count: int) -> int:
    """``ceil(20% of instances)``, at least 1."""
    return max(1, math.ceil(count * 0.2))


def resources_for(attrs: DeploymentAttrs, use_catalog: bool = True) -> dict[str, dict[str, str]]:
    """``resources`` from the YAML (requests and limits), else the instance type's catalog entry."""
    res: Mapping[str, Any] = attrs.get("resources") or {}
    requests = {str(k): str(v) for k, v in (res.get("requests") or {}).items() if v is not None}
    limits = {str(k): str(v) for k, v in (res.get("limits") or {}).items() if v is not None}
    if use_catalog and not requests and not limits and attrs.get("instance_type"):
        catalog = merged_catalog()
        sku = lookup(catalog, str(attrs["instance_type"]))
        if sku is not None:
            entry = catalog[sku]
            size = {"cpu": f"{entry.cores:g}", "memory": f"{int(entry.memory_gb * 1024)}Mi"}
            requests, limits = dict(size), dict(size)
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def probe(spec: Mapping[str, Any] | None, liveness: bool) -> dict[str, Any]:
    s = probe_settings(spec)
    return {
        "httpGet": {"path": "/", "port": INSTANCE_PORT},
        "initialDelaySeconds": int(s["initial_delay"]),
        "periodSeconds": max(1, int(s["period"])),
        "timeoutSeconds": max(1, int(s["timeout"])),
        "successThreshold": 1 if liveness else max(1, int(s["success_threshold"])),
        "failureThreshold": max(1, int(s["failure_threshold"])),
    }


def placement(settings: KubeSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if settings.node_selector:
        out["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        out["tolerations"] = [dict(t) for t in settings.tolerations]
    return out


def code_mount(code: CodeRef | None) -> str:
    if not code or not code.get("path"):
        return f"{APP_ROOT}/code"
    base = str(code["path"]).rstrip("/").split("/")[-1] or "code"
    return f"{APP_ROOT}/{base}"


# Unpacks recon's archives (pairs of archive, folder). Pythons before 3.11.4 (Debian 12's 3.11.2) have no
# extraction filters: there every name and link target must stay inside the folder.
_EXTRACT = ("import sys, tarfile\n"
            "for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):\n"
            "    with tarfile.open(src) as t:\n"
            "        if hasattr(tarfile, 'data_filter'):\n"
            "            t.extractall(dst, filter='data')\n"
            "            continue\n"
            "        for x in t.getmembers():\n"
            "            for n in (x.name, x.linkname if x.issym() or x.islnk() else ''):\n"
            "                if n.startswith('/') or '..' in n.split('/'):\n"
            "                    sys.exit(f'{src}: {x.name}: a path outside the folder')\n"
            "        t.extractall(dst)\n")


def deployment_manifest(
    settings: KubeSettings, workspace: str, attrs: DeploymentAttrs, model: ModelAttrs | None,
    image: str, digest: str, bundle: str,
) -> dict[str, Any]:
    """The Deployment of one recon deployment: replicas = instance_count, RollingUpdate with
    maxSurge = ceil(20%) and maxUnavailable 0, probes, resources, environment variables; the code
    (ConfigMap ``bundle``) and the model (its ConfigMap) unpacked by an init container into an emptyDir."""
    endpoint, name = str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()
    ns = settings.namespace
    count = int(attrs.get("instance_count") or 1)
    scale = attrs.get("scale_settings") or {}
    if scale.get("type") == "target_utilization":
        count = max(count, int(scale.get("min_instances") or 1))
    mount = code_mount(attrs.get("code"))
    entry = f"{mount}/{attrs.get('scoring_script') or 'score.py'}"
    req = attrs.get("request_settings") or {}
    workers = int(req.get("max_concurrent_requests_per_instance") or 1)
    model_dir = ""
    extract = [f"{BUNDLE_MOUNT}/code.tar.gz", mount]
    volumes: list[dict[str, Any]] = [
        {"name": "app", "emptyDir": {}},
        {"name": "bundle", "configMap": {"name": bundle}},
        # only the instance key of the endpoint's Secret: the router presents it, nothing else gets an answer
        {"name": "instance-key", "secret": {"secretName": keys_name(endpoint), "defaultMode": 0o400,
                                            "items": [{"key": INSTANCE_KEY_FILE, "path": INSTANCE_KEY_FILE}]}},
    ]
    init_mounts = [{"name": "app", "mountPath": APP_ROOT}, {"name": "bundle", "mountPath": BUNDLE_MOUNT}]
    if model is not None:
        model_dir = f"{APP_ROOT}/azureml-models/{model['name']}/{model['version']}"
        extract += [f"{MODEL_MOUNT}/model.tar.gz", model_dir]
        volumes.append({"name": "model", "configMap": {"name": model_name(str(model["name"]), str(model["version"]))}})
        init_mounts.append({"name": "model", "mountPath": MODEL_MOUNT})
    env = [{"name": str(k), "value": str(v)} for k, v in sorted((attrs.get("environment_variables") or {}).items())]
    env += [{"name": "AZUREML_MODEL_DIR", "value": model_dir}, {"name": "AML_APP_ROOT", "value": mount},
            {"name": "AZUREML_ENTRY_SCRIPT", "value": entry}, {"name": "WORKER_COUNT", "value": str(workers)},
            {"name": "PYTHONUNBUFFERED", "value": "1"}]
    container: dict[str, Any] = {
        "name": "score",
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python3", f"{BUNDLE_MOUNT}/host.py", "--entry_script", entry, "--host", "0.0.0.0",
                    "--port", str(INSTANCE_PORT), "--worker_count", str(workers),
                    "--key-file", f"{INSTANCE_KEY_DIR}/{INSTANCE_KEY_FILE}"],
        "workingDir": mount,
        "env": env,
        "ports": [{"name": "http", "containerPort": INSTANCE_PORT}],
        "readinessProbe": probe(attrs.get("readiness_probe"), liveness=False),
        "livenessProbe": probe(attrs.get("liveness_probe"), liveness=True),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "volumeMounts": [{"name": "app", "mountPath": APP_ROOT, "readOnly": True},
                         {"name": "bundle", "mountPath": BUNDLE_MOUNT, "readOnly": True},
                         {"name": "instance-key", "mountPath": INSTANCE_KEY_DIR, "readOnly": True}],
    }
    resources = resources_for(attrs, settings.catalog_resources)
    if resources:
        container["resources"] = resources
    init: dict[str, Any] = {"name": "unpack", "image": image, "imagePullPolicy": settings.image_pull_policy,
                            "command": ["python3", "-c", _EXTRACT, *extract], "volumeMounts": init_mounts}
    if resources:  # a ResourceQuota on requests needs them on every container; the pod's size is unchanged
        init["resources"] = resources
    selector = {ENDPOINT: label_value(endpoint), DEPLOYMENT: label_value(name), ROLE: "instance"}
    pod_labels = {**labels(workspace, "instance", endpoint, name, digest)}
    timeout_ms = int(req.get("request_timeout_ms") or 5000)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(deployment_name(endpoint, name), ns, labels(workspace, "instance", endpoint, name, digest),
                         {"recon.io/config-digest": digest}),
        "spec": {
            "replicas": count,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": max_surge(count), "maxUnavailable": 0}},
            "progressDeadlineSeconds": settings.progress_deadline_seconds,
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {"recon.io/config-digest": digest}},
                "spec": {
                    "initContainers": [init],
                    "containers": [container],
                    "volumes": volumes,
                    "enableServiceLinks": False,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": PRESTOP_SECONDS + max(10, math.ceil(timeout_ms / 1000) + 5),
                    **placement(settings),
                },
            },
        },
    }


def hpa_manifest(settings: KubeSettings, workspace: str, attrs: DeploymentAttrs, digest: str) -> dict[str, Any] | None:
    """``scale_settings.type: target_utilization`` as an autoscaling/v2 HorizontalPodAutoscaler."""
    scale = attrs.get("scale_settings") or {}
    if scale.get("type") != "target_utilization":
        return None
    endpoint, name = str(attrs["endpoint_name"]).lower(), str(attrs["name"]).lower()
    target = deployment_name(endpoint, name)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(target, settings.namespace, labels(workspace, "autoscaler", endpoint, name, digest)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": int(scale.get("min_instances") or 1),
            "maxReplicas": int(scale.get("max_instances") or 1),
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": int(scale.get("target_utilization_percentage") or 70)}}}],
        },
    }


def configmap(settings: KubeSettings, name: str, lab: dict[str, str], data: dict[str, str] | None = None,
              binary: dict[str, str] | None = None, immutable: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, settings.namespace, lab)}
    if data:
        out["data"] = data
    if binary:
        out["binaryData"] = binary
    if immutable:
        out["immutable"] = True
    return out


def secret(settings: KubeSettings, name: str, lab: dict[str, str], data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta(name, settings.namespace, lab),
            "stringData": data}


# The router's command: recon's httptools (unpacked by the init container) goes at the end of sys.path,
# so an httptools the router image brings wins; then router.pyz (the router's zip archive) runs as __main__.
_ROUTER_BOOT = ("import runpy, sys\n"
                "sys.path.append(sys.argv[1])\n"
                "sys.argv = sys.argv[2:]\n"
                "runpy.run_path(sys.argv[0], run_name='__main__')\n")


# What the router's ServiceAccount may do: watch its namespace's pods (the instances of its deployments:
# RBAC cannot narrow a rule by label, the router's watch does, with the table's selector).
ROUTER_RULES = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


def router_access(settings: KubeSettings, workspace: str, endpoint: str) -> list[dict[str, Any]]:
    """The router's ServiceAccount ``E-router``, its Role (``ROUTER_RULES``) and their RoleBinding: the
    router watches its instance pods through the API server (router/discovery.py)."""
    name = router_name(endpoint.lower())
    lab = labels(workspace, "router", endpoint.lower())
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, settings.namespace, lab),
         "automountServiceAccountToken": False},
        {"apiVersion": rbac, "kind": "Role", "metadata": meta(name, settings.namespace, lab), "rules": ROUTER_RULES},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": meta(name, settings.namespace, lab),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": settings.namespace}]},
    ]


def router_manifests(settings: KubeSettings, workspace: str, endpoint: str, code_digest: str) -> list[dict[str, Any]]:
    """The router's ServiceAccount, Role and RoleBinding (``router_access``), its Deployment
    (``router_replicas`` pods running router.pyz with the ServiceAccount's token, spread over the nodes),
    its Service (port 80) and its PodDisruptionBudget, in the order they are applied.

    ``code_digest``: of the router's archive and the httptools archive; a change rolls the router pod (the
    running router re-reads its table, never its code)."""
    endpoint = endpoint.lower()
    name = router_name(endpoint)
    lab = labels(workspace, "router", endpoint)
    selector = {ENDPOINT: label_value(endpoint), ROLE: "router"}
    image = settings.router()
    requests = {"requests": dict(ROUTER_REQUESTS)}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, settings.namespace, lab),
        "spec": {
            "replicas": settings.router_replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": lab, "annotations": {"recon.io/router-digest": short_digest(code_digest),
                                                            **PROMETHEUS_ANNOTATIONS}},
                "spec": {
                    "initContainers": [{
                        "name": "unpack",
                        "image": image,
                        "imagePullPolicy": settings.image_pull_policy,
                        "command": ["python3", "-c", _EXTRACT, f"{ROUTER_LIB_SRC}/httptools.tar.gz", ROUTER_LIB],
                        "resources": requests,  # a ResourceQuota on requests needs them on every container
                        "volumeMounts": [{"name": "lib-src", "mountPath": ROUTER_LIB_SRC, "readOnly": True},
                                         {"name": "lib", "mountPath": ROUTER_LIB}],
                    }],
                    "containers": [{
                        "name": "router",
                        "image": image,
                        "imagePullPolicy": settings.image_pull_policy,
                        "command": ["python3", "-c", _ROUTER_BOOT, ROUTER_LIB, f"{ROUTER_DIR}/router.pyz",
                                    "--table", f"{ROUTER_DIR}/table.json", "--host", "0.0.0.0",
                                    "--port", str(ROUTER_PORT)],
                        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
                        "ports": [{"name": "http", "containerPort": ROUTER_PORT}],
                        "readinessProbe": {"tcpSocket": {"port": ROUTER_PORT}, "periodSeconds": 1},
                        # a router pod being deleted keeps serving while kube-proxy takes it out of the
                        # Service (new connections go to the others), then drains (SIGTERM)
                        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
                        "resources": requests,
                        "volumeMounts": [{"name": "router", "mountPath": ROUTER_DIR, "readOnly": True},
                                         {"name": "lib", "mountPath": ROUTER_LIB, "readOnly": True},
                                         {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True}],
                    }],
                    "volumes": [{"name": "router", "configMap": {"name": name}},
                                {"name": "lib-src", "configMap": {"name": router_lib_name(endpoint)}},
                                {"name": "lib", "emptyDir": {}},
                                {"name": "keys", "secret": {"secretName": keys_name(endpoint), "defaultMode": 0o400}}],
                    "enableServiceLinks": False,
                    "serviceAccountName": name,
                    "automountServiceAccountToken": True,  # the router's pod watch (ROUTER_RULES)
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                   "whenUnsatisfiable": "ScheduleAnyway",
                                                   "labelSelector": {"matchLabels": selector}}],
                    **placement(settings),
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, settings.namespace, lab),
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": ROUTER_PORT}]},
    }
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, settings.namespace, lab),
        "spec": {"selector": {"matchLabels": selector}, "maxUnavailable": 1},  # evictions: one router pod at a time
    }
    return [*router_access(settings, workspace, endpoint), deployment, service, budget]

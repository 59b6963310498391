"""What the provider's namespace can still place for recon's instances (``Provider.capacity``)."""

from __future__ import annotations

from providers.kubernetes import manifests as m
from providers.kubernetes.objects import ClusterScope, tolerated
from reconciler.model.quantities import parse_cpu, parse_memory_gb
from reconciler.plan.provider import Capacity


def namespace_capacity(scope: ClusterScope) -> Capacity:
    """What the namespace can still place for recon's instances: its ResourceQuota (hard requests
    less what pods other than recon's instances use, routers included), bounded by the allocatable
    CPU and memory of the schedulable nodes that match ``node_selector`` and whose NoSchedule
    taints ``tolerations`` tolerate. Rollouts surge by ceil(20%): the plan reserves that room."""
    cpus = mem = 0.0
    for node in scope.kube.items("Node"):
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        nlabels = (node.get("metadata") or {}).get("labels") or {}
        if any(nlabels.get(k) != v for k, v in scope.settings.node_selector.items()):
            continue
        if not tolerated((node.get("spec") or {}).get("taints") or [], scope.settings.tolerations):
            continue
        alloc = (node.get("status") or {}).get("allocatable") or {}
        cpus += parse_cpu(alloc.get("cpu", 0)) or 0.0
        mem += parse_memory_gb(alloc.get("memory", 0)) or 0.0
    description = f"the allocatable CPU and memory of the cluster's nodes ({cpus:g} CPUs, {mem:.1f} GiB)"
    mine_cpu = mine_mem = 0.0
    for pod in scope.kube.items("Pod", {m.MANAGED: "true", m.ROLE: "instance"}):
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for c in (pod.get("spec") or {}).get("containers") or []:
            req = (c.get("resources") or {}).get("requests") or {}
            mine_cpu += parse_cpu(req.get("cpu", 0)) or 0.0
            mine_mem += parse_memory_gb(req.get("memory", 0)) or 0.0
    for quota in scope.kube.items("ResourceQuota"):
        status = quota.get("status") or {}
        hard, used = status.get("hard") or {}, status.get("used") or {}
        qname = (quota.get("metadata") or {}).get("name")
        for key, parse, mine in (("requests.cpu", parse_cpu, mine_cpu), ("cpu", parse_cpu, mine_cpu)):
            if key in hard:
                free = (parse(hard[key]) or 0.0) - max(0.0, (parse(used.get(key, 0)) or 0.0) - mine)
                if free < cpus:
                    cpus = free
                    description = f"ResourceQuota {scope.ns}/{qname}: {key} {hard[key]}"
        for key in ("requests.memory", "memory"):
            if key in hard:
                free = (parse_memory_gb(hard[key]) or 0.0) - max(
                    0.0, (parse_memory_gb(used.get(key, 0)) or 0.0) - mine_mem)
                mem = min(mem, free)
    return Capacity(cpus=round(cpus, 3), memory_gb=round(mem, 3), description=description, rollout_reserve=True)

"""Quota per VM family: the 20% reserve, exempt SKUs, target_utilization, the blue/green peak."""

from __future__ import annotations

from reconciler.model.quantities import parse_cpu, parse_memory_gb
from reconciler.plan.planner import make_plan
from reconciler.plan.provider import Capacity
from reconciler.plan.quota import check_quota, reserved_instances
from reconciler.state.document import State
from tests.planner.helpers import CATALOG, base, changed, deployment, desired, endpoint, state

DS = "standardDSv2Family"


def test_reserved_instances_uses_integer_ceiling() -> None:
    assert reserved_instances(10, False) == 12  # float 1.2 * 10 would ceil to 13
    assert reserved_instances(1, False) == 2
    assert reserved_instances(5, False) == 6
    assert reserved_instances(10, True) == 10


def test_quota_error_in_the_service_terms() -> None:
    res = base()
    other = deployment("other", "other-ep", count=1)  # 2 instances x 4 cores = 8 used elsewhere
    blue = changed(res[3], instance_count=10)
    d = desired(
        res[0], res[1], res[2], blue, endpoint("other-ep", traffic={"other": 100}), other, quota={DS: 40}
    )
    plan = make_plan(d, state(endpoint("other-ep", traffic={"other": 100}), other))
    assert plan.quota.checked
    assert plan.errors == [
        "deployment my-endpoint/blue needs 48 cores of standardDSv2Family "
        "(ceil(1.2 x 10) = 12 instances x 4 cores); limit 40, already used 8"
    ]
    (fam,) = plan.quota.families
    assert fam.after == 56 and fam.limit == 40 and not fam.ok


def test_quota_fits() -> None:
    plan = make_plan(desired(*base(), quota={DS: 8}), State())
    assert plan.applicable and plan.quota.families[0].after == 8 and plan.quota.families[0].ok


def test_no_quota_means_not_checked() -> None:
    blue = changed(base()[3], instance_count=50)
    plan = make_plan(desired(*base()[:3], blue), State())
    assert not plan.quota.checked and plan.applicable
    assert plan.quota.families[0].after == 240  # still reported


def test_family_without_limit_is_reported_not_checked() -> None:
    blue = changed(base()[3], instance_count=50)
    plan = make_plan(desired(*base()[:3], blue, quota={"standardFSv2Family": 1}), State())
    assert plan.applicable and plan.quota.families[0].limit is None


def test_exempt_sku_has_no_20_percent_reserve() -> None:
    gpu = changed(base()[3], instance_type="Standard_NC24ads_A100_v4", instance_count=2)
    fam = "standardNCADSA100v4Family"
    ok = make_plan(desired(*base()[:3], gpu, quota={fam: 48}), State())
    assert ok.applicable and ok.quota.families[0].after == 48
    assert ok.quota.families[0].usages[0].exempt
    bad = make_plan(desired(*base()[:3], gpu, quota={fam: 47}), State())
    assert "exempt from the 20% reserve" in bad.errors[0]


def test_target_utilization_reserves_max_instances() -> None:
    blue = changed(
        base()[3],
        scale_settings={
            "type": "target_utilization",
            "min_instances": 1,
            "max_instances": 5,
            "polling_interval": 1,
            "target_utilization_percentage": 70,
        },
    )
    plan = make_plan(desired(*base()[:3], blue, quota={DS: 100}), State())
    usage = plan.quota.families[0].usages[0]
    assert usage.instances == 5 and usage.reserved_instances == 6 and usage.cores == 24


def test_kubernetes_deployments_are_not_counted() -> None:
    k8s = changed(base()[3], kind="kubernetes", instance_count=10)
    plan = make_plan(desired(*base()[:3], k8s, quota={DS: 1}), State())
    assert plan.applicable and plan.quota.families == []


def test_blue_green_fits_after_but_not_at_peak() -> None:
    res = base()
    blue = changed(res[3], instance_count=4)  # 5 x 4 = 20 cores
    green = deployment("green", count=4)  # 20 cores
    plan = make_plan(
        desired(res[0], res[1], endpoint(traffic={"green": 100}), green, quota={DS: 30}),
        state(res[0], res[1], res[2], blue),
    )
    (fam,) = plan.quota.families
    assert (fam.before, fam.after, fam.peak) == (20, 20, 40)
    assert not fam.ok
    (err,) = plan.errors
    assert err.startswith("deployment my-endpoint/green needs 20 cores of standardDSv2Family")
    assert "already used 20 at the peak" in err


def test_replace_is_not_doubled_at_peak() -> None:
    res = base()
    old = changed(res[3], instance_type="Standard_DS2_v2", instance_count=4)  # 5 x 2 = 10
    new = changed(res[3], instance_count=4)  # 5 x 4 = 20
    plan = make_plan(desired(*res[:3], new, quota={DS: 20}), state(*res[:3], old))
    assert plan.quota.families[0].peak == 20 and plan.applicable


def test_in_place_growth_counts_the_larger_size() -> None:
    res = base()
    new = changed(res[3], instance_count=5)
    report = check_quota({"d": res[3].attributes}, {"d": new.attributes}, CATALOG, {DS: 100})
    assert report.families[0].peak == 24 and report.families[0].before == 8


def test_provider_capacity_enforces_explicit_requests() -> None:
    blue = changed(base()[3], instance_count=3, resources={"requests": {"cpu": "4", "memory": "2Gi"}})
    cap = Capacity(cpus=8, memory_gb=64, description="this machine")
    plan = make_plan(desired(*base()[:3], blue), State(), capacity=cap)
    assert plan.quota.capacity["needed_cpus"] == 12
    assert any("12 CPUs" in e and "8" in e and "this machine" in e for e in plan.errors)
    fits = make_plan(desired(*base()[:3], blue), State(), capacity=Capacity(cpus=16, memory_gb=64))
    assert fits.applicable


def test_provider_capacity_only_warns_for_vm_sizes() -> None:
    blue = changed(base()[3], instance_count=3)  # 3 x DS3_v2 = 12 vCPUs on Azure
    plan = make_plan(desired(*base()[:3], blue), State(), capacity=Capacity(cpus=2))
    assert plan.applicable and plan.quota.capacity["catalog_cpus"] == 12
    assert any("12 vCPUs" in w["message"] for w in plan.warnings)


def test_kubernetes_resources_count_for_capacity() -> None:
    k8s = changed(
        base()[3],
        kind="kubernetes",
        instance_count=2,
        resources={"requests": {"cpu": "500m", "memory": "512Mi"}},
    )
    plan = make_plan(desired(*base()[:3], k8s), State(), capacity=Capacity(cpus=0.5))
    assert plan.quota.capacity["needed_cpus"] == 1.0 and plan.errors
    assert parse_cpu("250m") == 0.25 and parse_memory_gb("2Gi") == 2.0


def test_a_rollout_reserve_counts_ceil_of_1_2_instances() -> None:
    """A provider whose rollouts surge (Kubernetes' maxSurge ceil(20%)) reserves room for it."""
    k8s = changed(base()[3], kind="kubernetes", instance_count=4, resources={"requests": {"cpu": "500m"}})
    fits = make_plan(desired(*base()[:3], k8s), State(), capacity=Capacity(cpus=2.5, rollout_reserve=True))
    assert fits.applicable and fits.quota.capacity["needed_cpus"] == 2.5  # ceil(4.8) = 5 x 0.5
    refused = make_plan(desired(*base()[:3], k8s), State(), capacity=Capacity(cpus=2.0, rollout_reserve=True))
    assert any("2.5 CPUs" in e and "rollout reserve" in e for e in refused.errors)
    plain = make_plan(desired(*base()[:3], k8s), State(), capacity=Capacity(cpus=2.0))
    assert plain.applicable  # without the reserve: 4 x 0.5 fits

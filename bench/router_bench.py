"""Router benchmark: direct to one instance vs through the recon router vs through nginx.

Starts two instance hosts (a trivial score.py), the recon router with a 50/50 split over them, and
nginx from Debian's packages (when installed) with the same split as upstream weights; measures
requests/s and p50/p99 latency at 1 and 32 connections with wrk (a Python load generator when wrk is
missing) and prints a markdown table. All traffic stays on 127.0.0.1.

    python bench/router_bench.py [--duration 5] [--connections 1,32] [--rounds 1] [--router NAME=PROGRAM ...]

``--router`` (repeatable) measures other router programs beside each other against the same instances
(a router.py of an older commit, a router.pyz); the default is the router of this checkout, as the
providers ship it (its zip archive). ``--rounds N`` measures each target N times, the targets taking
turns, and reports medians (run one program twice under two names to see the noise first).

Targets (docs/runtime.md, issue 3): at 1 connection the router adds at most 0.5 ms at p50 over the
direct path; at 32 connections it keeps at least 80% of nginx's throughput.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST_PY = ROOT / "providers" / "shared" / "runtime" / "host.py"
KEY = "bench-primary-key"
BODY = '{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}'
SCORE = '''
import json
def init():
    pass
def run(raw_data):
    return {"n": len(json.loads(raw_data)["data"])}
'''


@dataclass
class Result:
    target: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us: float | None = None  # the router's CPU time (user + system) per request, routers only


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str = "/", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer within {timeout}s")


def nginx_conf(tmp: Path, port: int, ups: list[int]) -> Path:
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (tmp / d).mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/client_body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  upstream split {{ server 127.0.0.1:{ups[0]} weight=50; server 127.0.0.1:{ups[1]} weight=50; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://split; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
    return conf


def parse_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(name: str, port: int, conns: int, duration: float, tmp: Path) -> Result:
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{BODY}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
    )
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(conns), "-d", f"{max(1, round(duration))}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/score"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = parse_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = parse_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in errs.groups()) if errs else 0)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return Result(name, conns, rps, p50, p99, errors, total)


def run_python_load(name: str, port: int, conns: int, duration: float) -> Result:
    """Fallback load generator: one thread per connection, keep-alive, closed loop."""
    lat: list[list[float]] = [[] for _ in range(conns)]
    errors = [0] * conns
    stop = time.monotonic() + duration
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/score", BODY, headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    errors[i] += 1
            except OSError:
                errors[i] += 1
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            lat[i].append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_lat = sorted(x for per in lat for x in per)
    q = statistics.quantiles(all_lat, n=100)
    return Result(name, conns, len(all_lat) / duration, q[49], q[98], sum(errors), len(all_lat))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_result(runs: list[Result]) -> Result:
    """One target at one connection level over several rounds: medians, errors and requests added up."""
    cpu = [r.cpu_us for r in runs if r.cpu_us is not None]
    return Result(runs[0].target, runs[0].connections, statistics.median(r.rps for r in runs),
                  statistics.median(r.p50_ms for r in runs), statistics.median(r.p99_ms for r in runs),
                  sum(r.errors for r in runs), sum(r.requests for r in runs), statistics.median(cpu) if cpu else None)


def start(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=cwd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def table_md(results: list[Result]) -> str:
    by = {(r.target, r.connections): r for r in results}
    lines = ["| target | conns | req/s | p50 ms | p99 ms | errors | req/s vs nginx | p50 over direct | CPU us/req |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        ng = by.get(("nginx", r.connections))
        direct = by.get(("direct", r.connections))
        ratio = f"{r.rps / ng.rps:.2f}x" if ng else "-"
        over = f"{r.p50_ms - direct.p50_ms:+.3f} ms" if direct and r.target != "direct" else "-"
        cpu = f"{r.cpu_us:.0f}" if r.cpu_us is not None else "-"
        lines.append(f"| {r.target} | {r.connections} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | "
                     f"{r.errors} | {ratio} | {over} | {cpu} |")
    return "\n".join(lines)


def routers(given: list[str], tmp: Path) -> dict[str, Path]:
    """NAME -> router program from ``--router NAME=PROGRAM``; this checkout's router when none is given."""
    if not given:
        sys.path.insert(0, str(ROOT))
        from providers.shared.runtime import router_zipapp

        return {"router": router_zipapp(tmp)}
    out: dict[str, Path] = {}
    for item in given:
        name, sep, program = item.partition("=")
        if not sep or not name or name in ("direct", "nginx") or not Path(program).is_file():
            raise SystemExit(f"--router {item}: expected NAME=PROGRAM, a router program file (not {name!r})")
        out[name] = Path(program).resolve()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", default="1,32")
    ap.add_argument("--rounds", type=int, default=1, help="runs per target, the targets taking turns; medians")
    ap.add_argument("--router", action="append", default=[], metavar="NAME=PROGRAM",
                    help="a router program to measure (repeatable; default: this checkout's, as router)")
    args = ap.parse_args()
    conn_levels = [int(c) for c in args.connections.split(",")]
    use_wrk = shutil.which("wrk") is not None
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="router-bench-") as d:
        tmp = Path(d)
        (tmp / "score.py").write_text(SCORE)
        (tmp / "keys.json").write_text(json.dumps({"primaryKey": KEY, "secondaryKey": "other"}))
        os.chmod(tmp / "keys.json", 0o600)
        ups = [free_port(), free_port()]
        targets: dict[str, int] = {"direct": ups[0]}
        try:
            for i, p in enumerate(ups):
                procs.append(start([sys.executable, str(HOST_PY), "--entry_script", "score.py", "--port", str(p),
                                    "--worker_count", "64"], tmp / f"host{i}.log", tmp))
            table = {"version": 1, "endpoint": "bench", "auth_mode": "key", "keys_file": str(tmp / "keys.json"),
                     "deployments": {n: {"upstreams": [f"127.0.0.1:{p}"], "max_concurrent_requests_per_instance": 64}
                                     for n, p in zip(("blue", "green"), ups, strict=True)},
                     "traffic": {"blue": 50, "green": 50}}
            (tmp / "table.json").write_text(json.dumps(table))
            router_pids: dict[str, int] = {}
            for name, program in routers(args.router, tmp).items():
                targets[name] = free_port()
                procs.append(start([sys.executable, str(program), "--table", str(tmp / "table.json"),
                                    "--host", "127.0.0.1", "--port", str(targets[name]), "--no-access-log"],
                                   tmp / f"{name}.log", tmp))
                router_pids[name] = procs[-1].pid
            if nginx:
                targets["nginx"] = free_port()
                conf = nginx_conf(tmp, targets["nginx"], ups)
                procs.append(start([nginx, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"],
                                   tmp / "nginx.log", tmp))
            for p in ups:
                wait_http(p)
            for name in targets.keys() - {"direct", "nginx"}:
                wait_http(targets[name], "/-/router")
            if nginx:
                wait_http(targets["nginx"])
            results: list[Result] = []
            for conns in conn_levels:
                runs: dict[str, list[Result]] = {name: [] for name in targets}
                for round_ in range(max(1, args.rounds)):  # the targets take turns: load swings hit all alike
                    for name, port in targets.items():
                        if use_wrk and round_ == 0:
                            run_wrk(name, port, conns, 1.0, tmp)  # warm-up: pools, caches
                        pid = router_pids.get(name)
                        before = cpu_seconds(pid) if pid else 0.0
                        result = (run_wrk(name, port, conns, args.duration, tmp) if use_wrk
                                  else run_python_load(name, port, conns, args.duration))
                        if pid and result.requests:  # CPU per request: what a busy, shared machine blurs least
                            result.cpu_us = (cpu_seconds(pid) - before) / result.requests * 1e6
                        runs[name].append(result)
                results += [median_result(r) for r in runs.values()]
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    tool = "wrk" if use_wrk else "python load generator"
    print(f"load: {tool}, {args.duration:g}s per run, medians of {max(1, args.rounds)}, POST /score ({len(BODY)} bytes), split 50/50 over 2 instances")
    print(f"nginx: {'worker_processes 1, keepalive 64' if nginx else 'not installed (apt-get install nginx)'}\n")
    print(table_md(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

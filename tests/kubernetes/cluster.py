"""The test cluster as one process-wide object: built (waited for) and started at first use by any
test folder, stopped at exit. See tests/kubernetes/conftest.py."""

from __future__ import annotations

import atexit
import fcntl
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / ".ci" / "setup-kubernetes.sh"
CACHE = Path(os.environ.get("RECON_K8S_CACHE", "/var/cache/recon-k8s"))
RUN = Path(os.environ.get("RECON_K8S_RUN", str(CACHE / "run")))
BUILD_WAIT = float(os.environ.get("RECON_K8S_BUILD_WAIT", "2400"))
# What the Kubernetes tests take once the cluster is up (measured: 7.7 min, plus 6.5 min of guarded rollouts and
# 3 min of the data path following the cluster on the real node, on 2 shared cores), with room; plus 2 min for
# the HPA's scale-down, the router SIGKILL and the pool out of step (measured 90 s in a 907 s session of
# tests/kubernetes, 134 s alone).
TESTS_NEED = 1380.0


def build_deadline() -> tuple[float, str]:
    """When waiting for the build must stop (monotonic), and why: RECON_K8S_BUILD_WAIT, or earlier when
    .ci/test.sh's pytest limit (RECON_PYTEST_DEADLINE, epoch seconds) would leave the tests no time."""
    deadline, why = time.monotonic() + BUILD_WAIT, f"within {BUILD_WAIT:.0f}s (RECON_K8S_BUILD_WAIT)"
    limit = os.environ.get("RECON_PYTEST_DEADLINE")
    if limit:
        left = float(limit) - time.time() - TESTS_NEED
        if time.monotonic() + left < deadline:
            deadline = time.monotonic() + left
            why = (f"in time for the Kubernetes tests ({TESTS_NEED:.0f}s) before .ci/test.sh's pytest limit; "
                   "the build goes on in the background and a later run finds it done")
    return deadline, why


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    env: dict[str, str]

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=self.env, timeout=timeout,
                              input=input_text)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc


_cluster: Cluster | None = None
_failed: str | None = None


def _status() -> str:
    proc = subprocess.run(["bash", str(SETUP), "status"], capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() or "absent"


def _log_tail(n: int = 25) -> str:
    try:
        return "\n".join((CACHE / "build.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no build log)"


def wait_for_build(say: Callable[[str], None] = lambda line: None) -> None:
    """Until setup-kubernetes.sh's build is done; a failed or absent build fails with its log."""
    deadline, why = build_deadline()
    absent_since: float | None = None
    started = time.monotonic()
    said = 0.0
    while True:
        status = _status()
        if status == "ok":
            if time.monotonic() - started > 5:
                say(f"the Kubernetes build is done (waited {time.monotonic() - started:.0f}s)")
            return
        if status == "failed":
            pytest.fail(f"the Kubernetes build failed ({CACHE}/build.log):\n{_log_tail()}", pytrace=False)
        if status == "absent":
            absent_since = absent_since or time.monotonic()
            if time.monotonic() - absent_since > 60:
                pytest.fail(f"no Kubernetes build is running or done in {CACHE}: run `bash {SETUP} build` "
                            "(.ci/test.sh starts it in the background)", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"the Kubernetes build did not finish {why}:\n{_log_tail()}", pytrace=False)
        if time.monotonic() - said > 60:
            said = time.monotonic()
            last = _log_tail(1).strip() or "(no log line yet)"
            say(f"waiting for the Kubernetes build ({CACHE}/build.log: {last})")
        time.sleep(5)


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{CACHE / 'bin'}:{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(RUN / "admin.kubeconfig")}


def prepare(say: Callable[[str], None] = lambda line: None) -> None:
    """Wait for the build and start the cluster (once). Called before the first Kubernetes test's
    timeout is armed (tests/kubernetes/conftest.py): a cold build can take most of a CI run. A failure
    is kept and reported by every test that asks for the cluster."""
    global _cluster, _failed
    if _cluster is not None or _failed is not None:
        return
    try:
        wait_for_build(say)
    except pytest.fail.Exception as exc:
        _failed = str(exc)
        return
    env = _env()
    _use()
    started = time.monotonic()
    # on a running cluster (another test session's) up-real keeps it and starts only what is missing
    proc = subprocess.run(["bash", str(SETUP), "up-real"], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        _failed = f"setup-kubernetes.sh up-real failed:\n{proc.stderr[-4000:]}"
        return
    say(f"the Kubernetes test cluster is up ({time.monotonic() - started:.0f}s)")
    _cluster = Cluster(RUN / "admin.kubeconfig", env)
    atexit.register(stop_cluster)


# Test sessions share the machine's one cluster: each holds a shared lock on USERS while it may use it,
# and the last one to leave (the exclusive lock is free) stops it.
USERS = CACHE / "cluster-users.lock"
_users: int | None = None


def _use() -> None:
    global _users
    if _users is None:
        USERS.parent.mkdir(parents=True, exist_ok=True)
        _users = os.open(USERS, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(_users, fcntl.LOCK_SH)


def get_cluster() -> Cluster:
    """The running test cluster (kwok nodes and the real node ``localhost``), started once."""
    prepare()
    if _cluster is None:
        pytest.fail(_failed or "the Kubernetes test cluster is not up", pytrace=False)
    return _cluster


def stop_cluster() -> None:
    """Stop the cluster when no other test session uses it (else leave it running for them)."""
    global _cluster, _users
    if _cluster is None or _users is None:
        return
    try:
        fcntl.flock(_users, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # another session uses it
    else:
        subprocess.run(["bash", str(SETUP), "down"], env=_cluster.env, capture_output=True, timeout=300)
    os.close(_users)
    _cluster, _users = None, None


RBAC = ROOT / "examples" / "kubernetes" / "rbac.yaml"


def restricted_kubeconfig(cluster: Cluster, namespace: str, folder: Path) -> Path:
    """A kubeconfig for the user ``recon`` (a client certificate of the test cluster's CA) bound to
    exactly the rules of examples/kubernetes/rbac.yaml in ``namespace``."""
    pki = RUN / "pki"
    folder.mkdir(parents=True, exist_ok=True)
    key, csr, crt = folder / "recon.key", folder / "recon.csr", folder / "recon.crt"
    ext = folder / "recon.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n")
    for argv in (["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                  "-subj", "/CN=recon"],
                 ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
                  "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext)]):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    cluster.kubectl("apply", "-f", "-", input_text=RBAC.read_text().replace("NAMESPACE", namespace))
    config = folder / "recon.kubeconfig"
    config.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: recon-test
  cluster: {{server: "https://127.0.0.1:6443", certificate-authority: "{pki / 'ca.crt'}"}}
users:
- name: recon
  user: {{client-certificate: "{crt}", client-key: "{key}"}}
contexts:
- name: recon-test
  context: {{cluster: recon-test, user: recon}}
current-context: recon-test
""")
    return config

"""The instance host keeps azmlinfsrv's contract and listens on 127.0.0.1 only."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Proc, call


def test_init_and_run_answer_json_with_model_dir(start_host: Callable[..., Proc], tmp_path: Path) -> None:
    model_dir = tmp_path / "azureml-models" / "m" / "1"
    model_dir.mkdir(parents=True)
    host = start_host(env={"AZUREML_MODEL_DIR": str(model_dir)})
    status, headers, body = call(host.port, {"a": 1}, key=None)
    assert status == 200
    assert json.loads(body) == {"name": "x", "model_dir": str(model_dir), "echo": {"a": 1}}
    assert headers["content-type"] == "application/json"
    assert headers["x-ms-run-function-failed"] == "False"
    assert float(headers["x-ms-run-fn-exec-ms"]) >= 0


def test_model_dir_flag_sets_azureml_model_dir(start_host: Callable[..., Proc], tmp_path: Path) -> None:
    host = start_host(args=["--model_dir", str(tmp_path)])
    assert json.loads(call(host.port, {}, key=None)[2])["model_dir"] == str(tmp_path)


def test_str_result_is_sent_as_json_string(start_host: Callable[..., Proc]) -> None:
    host = start_host()
    assert call(host.port, {"text": 1}, key=None)[2] == b'"plain text"'


def test_liveness_and_request_ids(start_host: Callable[..., Proc]) -> None:
    host = start_host()
    status, headers, body = call(host.port, method="GET", path="/", key=None)
    assert (status, body) == (200, b"Healthy")
    _, headers, _ = call(host.port, {}, key=None, headers={"x-request-id": "abc", "x-ms-client-request-id": "c1"})
    assert headers["x-request-id"] == "abc"
    assert headers["x-ms-client-request-id"] == "c1"
    assert headers["x-ms-request-id"] == "c1"
    assert call(host.port, {}, key=None, headers={"x-request-id": "x" * 101})[0] == 431
    status, _, body = call(host.port, method="GET", path="/nope", key=None)
    assert status == 404 and "message" in json.loads(body)


def test_run_exception_answers_500_and_logs_traceback(start_host: Callable[..., Proc]) -> None:
    host = start_host()
    status, headers, body = call(host.port, {"fail": "kaboom"}, key=None)
    assert status == 500
    assert json.loads(body) == {
        "message": "An unexpected error occurred in scoring script. Check the logs for more info."}
    assert headers["x-ms-run-function-failed"] == "True"
    time.sleep(0.1)
    assert "ValueError: run exploded: kaboom" in host.log_text()
    assert call(host.port, {}, key=None)[0] == 200  # the instance keeps serving


def test_init_failure_exits_3_with_traceback_in_log(start_host: Callable[..., Proc]) -> None:
    host = start_host(env={"FAIL_INIT": "no model"}, wait=False)
    assert host.proc.wait(20) == 3
    log = host.log_text()
    assert "User's init function failed" in log
    assert "RuntimeError: init exploded: no model" in log


def test_runs_up_to_worker_count_at_once(start_host: Callable[..., Proc]) -> None:
    host = start_host(workers=4)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(call(host.port, {"sleep": 1.0}, key=None)[0]))
               for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4
    assert time.monotonic() - t0 < 3.0  # concurrently, not 4 x 1 s


def test_sigterm_finishes_requests_in_flight(start_host: Callable[..., Proc]) -> None:
    host = start_host()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(call(host.port, {"sleep": 0.8}, key=None)[0]))
    t.start()
    time.sleep(0.3)
    host.proc.send_signal(signal.SIGTERM)
    t.join()
    assert result == [200]
    assert host.proc.wait(10) == 0


def _non_loopback_addresses() -> list[str]:
    """This machine's own IPv4 addresses other than loopback (from the kernel, no packet sent)."""
    addrs: set[str] = set()
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
        addrs.update(a for a in out.split() if "." in a)
    except (OSError, subprocess.SubprocessError):
        pass
    return sorted(a for a in addrs if not a.startswith("127."))


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        hex_addr, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(hex_addr)[::-1]))
    return found


def test_binds_loopback_only(start_host: Callable[..., Proc]) -> None:
    host = start_host()
    assert call(host.port, method="GET", path="/", key=None)[0] == 200
    assert _listening_addresses(host.port) == {"127.0.0.1"}
    for addr in _non_loopback_addresses():
        with pytest.raises(OSError), socket.create_connection((addr, host.port), timeout=2):
            pass

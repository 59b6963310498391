"""recon apply / destroy / refresh / drift / invoke / logs / keys on Azure's managed sample, with
the fake provider standing in for the service (its world lives in ``.recon/fake-world.json``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from providers.fake import WORLD_FILE, FakeWorld
from reconciler.cli import apply_cmds, cli

BLUE = "deployment.my-endpoint.blue"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_COLOR", "1")


def fake_project(make: Any, **settings: Any) -> Path:
    root: Path = make("blue-deployment.yml")
    ep = root / "endpoint.yml"
    ep.write_text(ep.read_text() + "traffic:\n  blue: 100\n")
    configure(root, **settings)
    return root


def configure(root: Path, **settings: Any) -> None:
    lines = ["workspace: enginetest", "provider:", "  kind: fake"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in settings.items()]
    (root / "recon.yaml").write_text("\n".join(lines) + "\n")


def set_blue(root: Path, *, count: int | None = None, release: str | None = None) -> None:
    path = root / "blue-deployment.yml"
    keep = [
        line
        for line in path.read_text().splitlines()
        if not line.startswith(("instance_count:", "environment_variables:", "  RELEASE:"))
    ]
    text = "\n".join(keep) + "\n"
    if count is not None:
        text += f"instance_count: {count}\n"
    if release is not None:
        text += f'environment_variables:\n  RELEASE: "{release}"\n'
    path.write_text(text)


@pytest.fixture
def project(sample_project: Any) -> Path:
    return fake_project(sample_project)


def world(root: Path) -> FakeWorld:
    return FakeWorld(root / ".recon" / WORLD_FILE)


def run(runner: CliRunner, root: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["-C", str(root), *args], input=input)
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_apply_without_a_terminal_needs_auto_approve(runner: CliRunner, project: Path) -> None:
    code, _, err = run(runner, project, "apply")
    assert code == 1
    assert "no terminal" in err and "--auto-approve" in err
    assert not (project / ".recon" / WORLD_FILE).exists()


def test_apply_asks_on_a_terminal_and_only_yes_approves(
    runner: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_cmds, "stdin_is_terminal", lambda: True)
    code, out, err = run(runner, project, "apply", input="y\n")
    assert code == 1 and "Only 'yes' will be accepted" in out
    assert "Apply cancelled" in err
    assert world(project).calls() == []
    code, out, _ = run(runner, project, "apply", input="yes\n")
    assert code == 0, out
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in out


def test_apply_reports_each_step_and_converges(runner: CliRunner, project: Path) -> None:
    code, out, _ = run(runner, project, "apply", "--auto-approve")
    assert code == 0, out
    assert "endpoint.my-endpoint: Creating..." in out
    assert f"{BLUE}: created after " in out
    assert "endpoint.my-endpoint: Setting traffic... (blue=100%)" in out
    assert out.rstrip().endswith("Apply complete! Resources: 4 added, 0 changed, 0 destroyed.")
    code, _, _ = run(runner, project, "plan", "--detailed-exitcode")
    assert code == 0
    state = (project / ".recon" / "state.json").read_text()
    keys = world(project).read()["keys"]["endpoint.my-endpoint"]
    assert keys["primary"] not in state and keys["secondary"] not in state  # secrets never in state
    assert world(project).violations() == []


def test_rollout_progress_is_plain_lines_without_a_terminal(runner: CliRunner, project: Path) -> None:
    set_blue(project, count=10)
    assert run(runner, project, "apply", "--auto-approve")[0] == 0
    set_blue(project, count=10, release="v2")
    code, out, _ = run(runner, project, "apply", "--auto-approve")
    assert code == 0, out
    for i in range(1, 6):
        assert f"{BLUE}: rollout batch {i}/5 done (" in out
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in out


def test_failed_apply_says_what_was_done_and_what_was_not(sample_project: Any, runner: CliRunner) -> None:
    root = fake_project(sample_project, fail_on=[f"create:{BLUE}"])
    code, out, err = run(runner, root, "apply", "--auto-approve")
    assert code == 1
    assert "Error: Apply failed: 1 step failed." in err
    assert "Done (3):" in err and "endpoint.my-endpoint: created" in err
    assert f"{BLUE}: create failed: injected failure of create\n" in err
    assert err.count(f"fake: create:{BLUE} fails") == 1  # the provider's detail, once
    assert "endpoint.my-endpoint: set_traffic skipped: upstream dependencies failed" in err
    assert "Resources: 3 added, 0 changed, 0 destroyed." in err
    configure(root)
    code, out, _ = run(runner, root, "plan")
    assert "Plan: 1 to add, 1 to change, 0 to destroy." in out, out
    assert run(runner, root, "apply", "--auto-approve")[0] == 0


def test_saved_plan_is_applied_once_then_stale(runner: CliRunner, project: Path, tmp_path: Path) -> None:
    planfile = tmp_path / "tfplan"
    assert run(runner, project, "plan", "--out", str(planfile))[0] == 0
    code, out, _ = run(runner, project, "apply", str(planfile))
    assert code == 0 and "Apply complete! Resources: 4 added" in out
    serial = json.loads((project / ".recon" / "state.json").read_text())["serial"]
    code, _, err = run(runner, project, "apply", str(planfile))
    assert code == 1
    assert (
        f"plan is stale: the state has serial {serial} (the plan was made at serial 0); run recon plan again"
        in err
    )


def test_saved_plan_is_stale_when_the_configuration_changed(
    runner: CliRunner, project: Path, tmp_path: Path
) -> None:
    planfile = tmp_path / "tfplan"
    assert run(runner, project, "plan", "--out", str(planfile))[0] == 0
    set_blue(project, count=2)
    code, _, err = run(runner, project, "apply", str(planfile))
    assert code == 1 and "plan is stale: the configuration changed" in err
    assert world(project).calls() == []


def test_apply_a_file_that_is_not_a_plan(runner: CliRunner, project: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "plan.json"
    bogus.write_text('{"steps": 3}')
    code, _, err = run(runner, project, "apply", str(bogus))
    assert code == 1 and "not a recon plan file" in err
    bogus.write_text('{"provider": "local"}')
    code, _, err = run(runner, project, "apply", str(bogus))
    assert code == 1 and "the plan was made for provider 'local', but this project uses 'fake'" in err


def test_destroy_removes_everything_traffic_first(runner: CliRunner, project: Path) -> None:
    assert run(runner, project, "apply", "--auto-approve")[0] == 0
    assert run(runner, project, "destroy")[0] == 1  # no terminal, no --auto-approve
    code, out, _ = run(runner, project, "destroy", "--auto-approve")
    assert code == 0, out
    assert "Destroy complete! Resources: 0 added, 0 changed, 4 destroyed." in out
    assert world(project).objects() == {}
    calls = [c for c in world(project).calls() if c["op"] in ("set_routing", "delete")]
    assert calls[-5]["op"] == "set_routing" and calls[-5]["traffic"] == {}
    assert world(project).violations() == []


def test_drift_is_named_and_repaired(runner: CliRunner, project: Path) -> None:
    set_blue(project, count=2)
    assert run(runner, project, "apply", "--auto-approve")[0] == 0
    assert run(runner, project, "drift")[0] == 0
    world(project).kill_instance(BLUE, 0)
    code, out, _ = run(runner, project, "drift")
    assert code == 2
    assert BLUE in out and "instance_count" in out
    code, out, _ = run(runner, project, "drift", "--format", "json", "--detailed-exitcode")
    assert code == 2 and BLUE in json.loads(out).__repr__()
    code, out, _ = run(runner, project, "apply", "--auto-approve")
    assert code == 0, out
    assert run(runner, project, "drift")[0] == 0


def test_refresh_writes_what_it_observed(runner: CliRunner, project: Path) -> None:
    assert run(runner, project, "apply", "--auto-approve")[0] == 0
    serial = json.loads((project / ".recon" / "state.json").read_text())["serial"]
    world(project).set_attribute(BLUE, "environment_variables.MODE", "tampered")
    code, out, _ = run(runner, project, "refresh")
    assert code == 0 and "environment_variables" in out and f"State refreshed: serial {serial + 1}." in out
    state = json.loads((project / ".recon" / "state.json").read_text())
    assert state["resources"][BLUE]["attributes"]["environment_variables"] == {"MODE": "tampered"}


class _Scoring(BaseHTTPRequestHandler):
    key = ""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        deployment = self.headers.get("azureml-model-deployment") or "blue"
        if self.headers.get("Authorization") != f"Bearer {self.key}":
            status, answer = 401, b"bad key"
        elif deployment == "broken":
            status, answer = 503, b"no healthy upstream"
        else:
            status, answer = 200, json.dumps({"echo": json.loads(body), "deployment": deployment}).encode()
        self.send_response(status)
        self.send_header("azureml-model-deployment", deployment)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scoring_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scoring)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_keys_invoke_and_logs(
    runner: CliRunner, sample_project: Any, scoring_server: ThreadingHTTPServer
) -> None:
    port = scoring_server.server_address[1]
    root = fake_project(sample_project, scoring_uri=f"http://127.0.0.1:{port}/{{name}}/score")
    assert run(runner, root, "apply", "--auto-approve")[0] == 0
    code, out, _ = run(runner, root, "keys", "my-endpoint")
    keys = json.loads(out)
    assert code == 0 and set(keys) == {"primaryKey", "secondaryKey", "scoring_uri"}
    assert keys["scoring_uri"] == f"http://127.0.0.1:{port}/my-endpoint/score"
    _Scoring.key = keys["primaryKey"]
    request = root / "sample-request.json"
    code, out, err = run(runner, root, "invoke", "my-endpoint", "--request-file", str(request))
    assert code == 0, err
    assert json.loads(out) == {"echo": json.loads(request.read_text()), "deployment": "blue"}
    code, out, _ = run(
        runner, root, "invoke", "my-endpoint", "--request-file", str(request), "--deployment", "green"
    )
    assert json.loads(out)["deployment"] == "green"
    code, _, err = run(
        runner, root, "invoke", "my-endpoint", "--request-file", str(request), "--deployment", "broken"
    )
    assert code == 1 and "answered HTTP 503 (Service Unavailable): no healthy upstream" in err
    code, _, err = run(runner, root, "invoke", "nope", "--request-file", str(request))
    assert code == 1 and "endpoint.nope is not in the state" in err and "endpoint.my-endpoint" in err

    code, out, _ = run(runner, root, "logs", BLUE)
    assert code == 0 and "init() done" in out
    code, out, _ = run(runner, root, "logs", "my-endpoint/blue", "--instance", "1", "--tail", "1")
    assert code == 0 and len(out.splitlines()) == 1
    code, out, err = run(runner, root, "logs", "my-endpoint/blue", "--instance", "7")
    assert code == 1 and out == ""
    assert err == (
        f"Error: {BLUE}: instance 7 has no log (it does not exist, or wrote nothing yet)\n"
    )
    code, _, err = run(runner, root, "logs", "my-endpoint/blue", "--instance", "0")
    assert code == 1 and "0 is not in the range x>=1" in err

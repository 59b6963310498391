"""Bad v1 files: one clear ``Error:`` line per problem naming the file, line and key, exit 1, nothing
written, never a traceback (through click's CliRunner and through the real ``recon`` command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.migrate.helpers import V1, write

CASES: list[tuple[str, Any, str, str]] = [
    # (id, deploymentconfig.json content, "line: key", words in the message)
    ("unknown key", {"computeType": "aks", "autoscaleEnable": True}, "3: autoscaleEnable",
     "unknown key 'autoscaleEnable' (did you mean 'autoscale_enabled'?)"),
    ("unknown nested key", {"autoScaler": {"minReplica": 1}}, "3: autoScaler.minReplica",
     "unknown key 'minReplica' (did you mean 'minReplicas'?)"),
    ("string for an integer", {"numReplicas": "3"}, "2: numReplicas", "wrong type: got '3' (expected a whole number)"),
    ("bool for a number", {"containerResourceRequirements": {"cpu": True}}, "3: containerResourceRequirements.cpu",
     "wrong type: got True (expected a number)"),
    ("float for an integer", {"scoringTimeoutMs": 1.5}, "2: scoringTimeoutMs", "expected a whole number"),
    ("both auth modes", {"authEnabled": True, "tokenAuthEnabled": True}, "3: tokenAuthEnabled",
     "cannot enable both key auth and token auth (both are true)"),
    ("same setting twice", {"num_replicas": 2, "numReplicas": 3}, "3: numReplicas", "repeats 'num_replicas'"),
    ("flat and nested spellings", {"cpu_cores": 1, "containerResourceRequirements": {"cpu": 2}},
     "4: containerResourceRequirements.cpu", "sets the same setting as 'cpu_cores'"),
    ("autoscale with replicas", {"autoScaler": {"autoscaleEnabled": True}, "numReplicas": 2}, "5: numReplicas",
     "autoscale is enabled and num_replicas is set"),
    ("min above max", {"autoScaler": {"autoscaleEnabled": True, "minReplicas": 5, "maxReplicas": 2}},
     "4: autoScaler.minReplicas", "above autoscale_max_replicas 2"),
    ("not a percentage", {"autoScaler": {"autoscaleEnabled": True, "targetUtilization": 150}},
     "4: autoScaler.targetUtilization", "150 is not a percentage"),
    ("autoscale off without replicas", {"autoScaler": {"autoscaleEnabled": False}}, "3: autoScaler.autoscaleEnabled",
     "autoscale is disabled and num_replicas is not set"),
    ("zero queue wait", {"maxQueueWaitMs": 0}, "2: maxQueueWaitMs", "0 is too small (v1 refused it too)"),
    ("zero liveness delay", {"livenessProbeRequirements": {"initialDelaySeconds": 0}},
     "3: livenessProbeRequirements.initialDelaySeconds", "0 is too small"),
    ("limit below request", {"containerResourceRequirements": {"memoryInGB": 2, "memoryInGBLimit": 1}},
     "4: containerResourceRequirements.memoryInGBLimit", "the limit 1 is below the request 2"),
    ("zero replicas", {"numReplicas": 0}, "2: numReplicas", "0 is too small"),
    ("not an AKS service", {"computeType": "ACI"}, "2: computeType",
     "computeType 'ACI': an Azure Container Instances service, not an AKS one"),
    ("a local service", {"computeType": "local"}, "2: computeType", "a local Docker service"),
    ("bad namespace", {"namespace": "Prod_NS"}, "2: namespace", "'Prod_NS' is not a Kubernetes namespace"),
    ("timeout above v2's limit", {"scoringTimeoutMs": 400000}, "2: scoringTimeoutMs",
     "400000 ms is above v2's limit for kubernetes deployments (use at most 300000 ms)"),
    ("a list, not settings", [1, 2], "1", "expected a mapping of settings, got list"),
]


def _errors(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("Error: ")]


@pytest.mark.parametrize("config,where,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_deployment_config(v1: V1, config: Any, where: str, words: str) -> None:
    result = v1.run(config)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = _errors(result.output)
    assert len(errors) == 1, result.output
    assert f"deploymentconfig.json:{where}: " in errors[0], errors[0]
    assert words in errors[0], errors[0]
    assert "nothing was written" in result.output
    assert not v1.out.exists()


def test_every_problem_of_a_file_is_reported_at_once(v1: V1) -> None:
    result = v1.run({"numReplicas": "two", "autoScaler": {"maxReplica": 3}, "bogus": 1})
    assert result.exit_code == 1
    errors = _errors(result.output)
    assert len(errors) == 3, result.output
    assert "3 errors in the v1 configuration" in result.output


def test_a_wrong_key_value_is_never_echoed(v1: V1) -> None:
    result = v1.run({"keys": {"primaryKey": 98765432123}})
    assert result.exit_code == 1
    assert "keys.primaryKey: wrong type" in result.output
    assert "98765432123" not in result.output


def test_invalid_json_names_the_line(v1: V1) -> None:
    path = v1.root / "deploymentconfig.json"
    path.write_text('{\n  "numReplicas": 2,\n  "authEnabled": tru\n}\n')
    result = v1.runner.invoke(__import__("reconciler.cli", fromlist=["cli"]).cli,
                              ["import-v1", "--dc", str(path), "-n", "my-service", "--out", str(v1.out),
                               "--model-path", str(v1.model()), "--compute", "aks"])
    assert result.exit_code == 1
    assert "deploymentconfig.json:3: not valid JSON" in result.output


@pytest.mark.parametrize("inference,where,words", [
    ({"entryScript": "score.py", "sourceDirectory": "./source_dir", "entry": 1}, ":4: entry:", "unknown key 'entry'"),
    ({"entryScript": "missing.py", "sourceDirectory": "./source_dir"}, ":2: entryScript:", "does not exist"),
    ({"entryScript": "score.py", "sourceDirectory": "./nowhere"}, ":3: sourceDirectory:", "nowhere does not exist"),
    ({"entryScript": "score.py", "sourceDirectory": "./source_dir/score.py"}, ":3: sourceDirectory:",
     "is a file, not a folder"),
    ({"entryScript": "score.txt", "sourceDirectory": "./source_dir"}, ":2: entryScript:", "is not a .py file"),
    ({"entryScript": "score.py", "sourceDirectory": "./source_dir", "runtime": "spark-py"}, ":4: runtime:",
     "runtime 'spark-py' has no v2 equivalent"),
    ({"entryScript": "score.py", "sourceDirectory": "./source_dir", "cudaVersion": "11.0"}, ":4: cudaVersion:",
     "cudaVersion '11.0' is not one v1 supported"),
    ({"entryScript": "score.py", "sourceDirectory": "./source_dir", "condaFile": "env.yml",
      "environment": {"name": "x"}}, ":5: environment:", "environment is given with conda_file"),
    ({"entryScript": "score.py", "sourceDirectory": "./source_dir", "extraDockerfileSteps": "steps.docker"},
     ":4: extraDockerfileSteps:", "steps.docker does not exist"),
    ({"entryScript": "score.py", "sourceDirectory": "./source_dir", "environment": {"python": {"condaDependencies": 3}}},
     ":6: environment.python.condaDependencies:", "expected a mapping"),
    ({"sourceDirectory": "./source_dir"}, ":1: ", "entryScript is missing"),
])
def test_bad_inference_config(v1: V1, inference: dict[str, Any], where: str, words: str) -> None:
    v1.inference()  # writes source_dir/score.py
    (v1.root / "source_dir" / "score.txt").write_text("")
    ic = write(v1.root / "inferenceconfig.json", inference)
    result = v1.run({}, "--inference-config", str(ic))
    assert result.exit_code == 1, result.output
    line = _errors(result.output)[0]
    assert f"inferenceconfig.json{where}" in line and words in line, line


@pytest.mark.parametrize("args,model,compute,words", [
    (["--model", "my-model"], False, True, "--model: model 'my-model' is not NAME:VERSION"),
    ([], False, True, "--model: no model for version 'blue'"),
    ([], True, False, "--compute: a Kubernetes endpoint needs the compute it runs on"),
    (["--target", "managed"], True, False, "--instance-type: a managed endpoint needs an instance type"),
])
def test_bad_options(v1: V1, args: list[str], model: bool, compute: bool, words: str) -> None:
    result = v1.run({}, *args, model=model, compute=compute)
    assert result.exit_code == 1, result.output
    assert f"Error: {words}" in result.output


def test_bad_endpoint_name(v1: V1, tmp_path: Path) -> None:
    dc = write(tmp_path / "dc.json", {})
    result = v1.runner.invoke(__import__("reconciler.cli", fromlist=["cli"]).cli,
                              ["import-v1", "--dc", str(dc), "-n", "9lives", "--out", str(v1.out),
                               "--model-path", str(v1.model()), "--compute", "aks"])
    assert result.exit_code == 1
    assert "Error: --endpoint: '9lives' is not a valid v2 endpoint name" in result.output


def test_the_recon_command_exits_1_with_one_line_per_error(tmp_path: Path) -> None:
    dc = write(tmp_path / "deploymentconfig.json", {"computeType": "aks", "authEnabled": True,
                                                    "tokenAuthEnabled": True, "numReplicas": 2})
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "import-v1", "--dc", str(dc), "-n", "my-service",
         "--model-path", str(tmp_path), "--compute", "aks", "--out", str(tmp_path / "v2")],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines == [f"Error: {dc}:4: tokenAuthEnabled: cannot enable both key auth and token auth (both are "
                     "true), as in v1 (set auth_enabled: false to use token auth, or drop token_auth_enabled)",
                     "1 error in the v1 configuration; nothing was written."]
    assert not (tmp_path / "v2").exists()


def test_a_scoring_script_that_is_not_python_names_its_line(v1: V1) -> None:
    ic = v1.inference()
    (v1.root / "source_dir" / "score.py").write_text("def init():\n    pass\n\ndef run(data)\n    return data\n")
    result = v1.run({}, "--ic", str(ic))
    assert result.exit_code == 1, result.output
    (line,) = _errors(result.output)
    assert "inferenceconfig.json:2: entryScript: " in line and "score.py is not valid Python" in line
    assert "at line 4 of the script" in line, line


def test_a_key_given_twice_in_json_is_an_error_at_its_line(v1: V1) -> None:
    dc = v1.root / "deploymentconfig.json"
    dc.write_text('{\n  "numReplicas": 2,\n  "autoScaler": {"autoscaleEnabled": false},\n  "numReplicas": 3\n}\n')
    result = v1.runner.invoke(__import__("reconciler.cli", fromlist=["cli"]).cli,
                              ["import-v1", "--dc", str(dc), "-n", "my-service", "--out", str(v1.out),
                               "--model-path", str(v1.model()), "--compute", "aks"])
    assert result.exit_code == 1
    assert f"Error: {dc}:4: numReplicas: 'numReplicas' is given twice in the same mapping" in result.output


def test_tab_indented_json_is_read_and_errors_name_its_lines(v1: V1) -> None:
    dc = v1.root / "deploymentconfig.json"
    dc.write_text('{\n\t"computeType": "aks",\n\t"containerResourceRequirements": {\n\t\t"cpu": "half"\n\t}\n}\n')
    result = v1.runner.invoke(__import__("reconciler.cli", fromlist=["cli"]).cli,
                              ["import-v1", "--dc", str(dc), "-n", "my-service", "--out", str(v1.out),
                               "--model-path", str(v1.model()), "--compute", "aks"])
    assert result.exit_code == 1
    assert f"Error: {dc}:4: containerResourceRequirements.cpu: wrong type: got 'half'" in result.output


def test_a_byte_order_mark_is_allowed(v1: V1) -> None:
    dc = v1.root / "deploymentconfig.json"
    dc.write_bytes(b'\xef\xbb\xbf{"computeType": "aks", "numReplicas": 2}')
    result = v1.runner.invoke(__import__("reconciler.cli", fromlist=["cli"]).cli,
                              ["import-v1", "--dc", str(dc), "-n", "my-service", "--out", str(v1.out),
                               "--model-path", str(v1.model()), "--compute", "aks"])
    assert result.exit_code == 0, result.output
    assert v1.deployment()["instance_count"] == 2


@pytest.mark.parametrize("name,content,words", [
    ("big.yaml", b"a: " + b"x" * (5 << 20) + b"\n", "MB, more than the 4 MB a YAML file may have"),
    ("bomb.yaml", b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
        b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n" % ((c,) * 2 + (c - 1,) * 10)
        for c in range(ord("b"), ord("i"))) + b"numReplicas: 2\n", "its aliases expand to more than 100,000 nodes"),
    ("latin1.json", b'{"description": "caf\xe9"}', "not UTF-8"),
])
def test_files_are_read_within_the_limits_of_project_files(v1: V1, name: str, content: bytes, words: str) -> None:
    dc = v1.root / name
    dc.write_bytes(content)
    result = v1.runner.invoke(__import__("reconciler.cli", fromlist=["cli"]).cli,
                              ["import-v1", "--dc", str(dc), "-n", "my-service", "--out", str(v1.out),
                               "--model-path", str(v1.model()), "--compute", "aks"])
    assert result.exit_code == 1, result.output
    (line,) = _errors(result.output)
    assert line.startswith(f"Error: {dc}") and words in line, line


def test_a_fifo_is_refused_without_blocking(v1: V1) -> None:
    import os

    fifo = v1.root / "deploymentconfig.json"
    os.mkfifo(fifo)
    ic = v1.root / "inferenceconfig.json"
    os.mkfifo(ic)
    for args in (["--dc", str(fifo)], ["--dc", str(write(v1.root / "dc.json", {})), "--ic", str(ic)]):
        result = v1.runner.invoke(__import__("reconciler.cli", fromlist=["cli"]).cli,
                                  ["import-v1", *args, "-n", "my-service", "--out", str(v1.out),
                                   "--model-path", str(v1.model()), "--compute", "aks"])
        assert result.exit_code != 0
        assert "FIFO" in result.output or "is not a file" in result.output or "regular file" in result.output, \
            result.output


def test_paths_resolve_against_the_working_folder_and_say_how_to_change_it(v1: V1, monkeypatch: Any) -> None:
    ic = v1.inference()
    elsewhere = v1.root / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = v1.run({}, "--ic", str(ic), "--path", str(elsewhere))
    assert result.exit_code == 1
    (line,) = _errors(result.output)
    assert ":3: sourceDirectory: " in line and f"{elsewhere}/source_dir does not exist" in line
    assert f"it exists relative to the inference config's folder: give --path {v1.root}" in line
    monkeypatch.chdir(v1.root)  # where the v1 command ran: no --path needed
    result = v1.runner.invoke(__import__("reconciler.cli", fromlist=["cli"]).cli,
                              ["import-v1", "--dc", str(write(v1.root / "dc.json", {})), "--ic", "inferenceconfig.json",
                               "-n", "my-service", "--out", "v2", "--model-path", "model", "--compute", "aks"])
    assert result.exit_code == 0, result.output
    assert v1.deployment()["code_configuration"] == {"code": "../source_dir", "scoring_script": "score.py"}

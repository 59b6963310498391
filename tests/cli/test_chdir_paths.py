"""``recon -C DIR`` (and Terraform's ``-chdir=DIR``) is "run as if recon was started in DIR": relative
paths in options and arguments resolve against DIR, as with ``terraform -chdir`` and ``git -C``. Run as
a user runs it: the real CLI in a child process whose working folder is elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.migrate.helpers import V1


@pytest.fixture
def project(sample_project) -> Path:  # type: ignore[no-untyped-def]
    root: Path = sample_project("blue-deployment.yml")
    (root / "recon.yaml").write_text("workspace: chdir\nprovider:\n  kind: fake\n")
    return root


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def recon(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_plan_out_show_and_apply_of_a_plan_file_are_in_the_project(project: Path, elsewhere: Path) -> None:
    done = recon(elsewhere, "-C", str(project), "plan", "-out=tf.plan")
    assert done.returncode == 0, done.stderr
    assert (project / "tf.plan").is_file() and not (elsewhere / "tf.plan").exists()
    assert f"Saved the plan to {project / 'tf.plan'}." in done.stderr
    shown = recon(elsewhere, f"-chdir={project}", "show", "-json", "tf.plan")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["resource_changes"][0]["change"]["actions"] == ["create"]
    applied = recon(elsewhere, "-C", str(project), "apply", "tf.plan")
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete! Resources: 4 added" in applied.stdout


def test_an_absolute_path_and_a_plain_run_are_left_as_they_are(project: Path, elsewhere: Path) -> None:
    done = recon(elsewhere, "-C", str(project), "plan", "--out", str(elsewhere / "abs.plan"))
    assert done.returncode == 0 and (elsewhere / "abs.plan").is_file()
    done = recon(project, "plan", "-out=here.plan")  # no -C: the working folder, as always
    assert done.returncode == 0 and (project / "here.plan").is_file()
    assert "Saved the plan to here.plan." in done.stderr


def test_request_files_and_state_files_resolve_against_the_project(project: Path, elsewhere: Path) -> None:
    (project / "request.json").write_text('{"data": [[1, 2, 3, 4]]}')
    done = recon(elsewhere, "-C", str(project), "invoke", "my-endpoint", "--request-file", "request.json")
    # the file was found in the project: what fails is that nothing is applied yet
    assert done.returncode == 1 and "request.json" not in done.stderr, done.stderr
    assert "endpoint.my-endpoint" in done.stderr
    assert recon(elsewhere, "-C", str(project), "apply", "-auto-approve").returncode == 0
    pulled = recon(elsewhere, "-C", str(project), "state", "pull")
    (project / "copy.json").write_text(pulled.stdout)
    pushed = recon(elsewhere, "-C", str(project), "state", "push", "--force", "copy.json")
    assert pushed.returncode == 0, pushed.stderr
    assert f"Pushed {project / 'copy.json'}" in pushed.stdout
    missing = recon(elsewhere, "-C", str(project), "invoke", "my-endpoint", "--request-file", "nope.json")
    assert missing.returncode == 1 and str(project / "nope.json") in missing.stderr


def test_import_v1_reads_and_writes_in_the_folder_named_by_c(tmp_path: Path, elsewhere: Path) -> None:
    from click.testing import CliRunner

    v1 = V1(root=tmp_path / "service", runner=CliRunner())
    v1.root.mkdir()
    v1.model()
    v1.inference()  # entryScript score.py in ./source_dir: relative to where `az ml model deploy` ran
    (v1.root / "deploymentconfig.json").write_text(json.dumps({"computeType": "aks", "numReplicas": 1}))
    done = recon(elsewhere, "-C", str(v1.root), "import-v1", "--dc", "deploymentconfig.json", "--ic",
                 "inferenceconfig.json", "--endpoint", "my-service", "--model-path", "model", "--compute",
                 "aks-compute", "--out", "v2")
    assert done.returncode == 0, done.stderr
    assert (v1.root / "v2" / "endpoint.yml").is_file() and not (elsewhere / "v2").exists()
    assert (v1.root / "v2" / "MIGRATION.md").is_file()
    assert "score.py" in (v1.root / "v2" / "blue-deployment.yml").read_text()


def test_a_wrong_c_says_what_it_is_and_what_to_give(project: Path, elsewhere: Path) -> None:
    missing = recon(elsewhere, "-C", "nowhere", "plan")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.splitlines() == [
        f"Error: -C nowhere: no such directory ({elsewhere / 'nowhere'}); give the project's folder, "
        "the one holding recon.yaml and the YAML files"
    ]
    a_file = recon(elsewhere, f"-chdir={project / 'recon.yaml'}", "validate")  # the file, not its folder
    assert a_file.returncode == 1 and a_file.stdout == ""
    assert a_file.stderr.splitlines() == [
        f"Error: -C {project / 'recon.yaml'}: {project / 'recon.yaml'} is a file, not a directory (give the "
        f"project's folder, the one holding recon.yaml and the YAML files: -C {project})"
    ]


def test_help_names_c_and_chdir_as_the_readme_does(elsewhere: Path) -> None:
    helptext = recon(elsewhere, "--help").stdout
    assert "  -C DIR  " in helptext and "DIRECTORY" not in helptext
    assert "\nTerraform's spelling works too: -chdir=DIR.\n" in helptext

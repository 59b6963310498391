"""Hostile files (issue 13, section 3): each case an error naming file and field, exit 1, never a
hang, a traceback, "internal error", or a file's content in the output.

Cases that hung before are run through the real ``recon validate`` process with a timeout (a hang
fails the test with ``TimeoutExpired``); the others through click's runner.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import providers
from reconciler.cli import cli
from reconciler.model.errors import StateError
from states.file import FileBackend
from tests.loader.helpers import BLUE, ENDPOINT, project

ROOT = Path(__file__).resolve().parents[2]
HANG_TIMEOUT_S = 60  # a hang detector for a loaded CI machine, not a timing assertion


def blue_with(old: str, new: str) -> str:
    assert old in BLUE
    return BLUE.replace(old, new)


def with_conda(path: str) -> str:
    return blue_with("  image: python:3.11\n", f"  image: python:3.11\n  conda_file: {path}\n")


def run_process(root: Path, *args: str) -> tuple[int, str]:
    """The real ``recon`` (this tree's code) as a process: exit code and all of its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), RECON_CACHE_DIR=str(root.parent / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "-C", str(root), *(args or ("validate",))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT_S,
    )
    return proc.returncode, proc.stdout + proc.stderr


def run_cli(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-C", str(root), *(args or ("validate",))])
    return result.exit_code, result.output  # stdout and stderr as the terminal shows them


def assert_error(code: int, output: str, file: str, field: str | None, *words: str) -> str:
    """Exit 1 with an ``Error: file[:line]: field: ...`` line holding ``words``; returns that line."""
    assert code == 1, output
    assert "Traceback" not in output and "internal error" not in output, output
    where = re.escape(file) + r"(:\d+)?: " + (re.escape(field) + ": " if field else "")
    lines = [ln for ln in output.splitlines() if re.match(r"Error: " + where, ln)]
    found = [ln for ln in lines if all(w in ln for w in words)]
    assert found, f"no error at {file} {field} with {words} in:\n{output}"
    return found[0]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path / "cache"))


# --- conda files --------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["/etc/shadow", "/etc/passwd"])
def test_conda_file_etc_shadow_is_an_error_and_no_line_of_it_is_printed(tmp_path: Path, secret: str) -> None:
    root = project(tmp_path / "p", {"blue.yml": with_conda(secret)})
    for args in (("validate",), ("plan", "--format", "json")):
        code, out = run_cli(root, *args)
        assert_error(code, out, "blue.yml", "environment.conda_file", "/etc", "system folder")
        if os.access(secret, os.R_OK):
            lines = [ln for ln in Path(secret).read_text(errors="replace").splitlines() if len(ln) > 3]
            assert lines and not any(ln in out for ln in lines)


def test_conda_file_that_is_not_a_conda_environment_is_an_error_without_its_content(tmp_path: Path) -> None:
    # a copy of the kind of file /etc/shadow is, outside the system folders: plain text lines
    secret = tmp_path / "secrets" / "shadow"
    secret.parent.mkdir()
    secret.write_text("root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\nsvc:$6$pepper$otherhash:19000::::::\n")
    root = project(tmp_path / "p", {"blue.yml": with_conda("../secrets/shadow")})
    for args in (("validate",), ("plan", "--format", "json")):
        code, out = run_cli(root, *args)
        assert_error(code, out, "blue.yml", "environment.conda_file", "not a conda environment", "line 1")
        assert "hashhash" not in out and "saltsalt" not in out and "pepper" not in out and "svc" not in out


def test_conda_file_that_is_a_yaml_mapping_of_secrets_never_prints_keys_or_values(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"env/conda.yml": "name: x\ndependencies: [numpy]\ndb_password: s3cr3t-value\napi_token: tok-12345\n",
         "blue.yml": with_conda("env/conda.yml")},
    )
    code, out = run_cli(root, "plan", "--format", "json")
    line = assert_error(code, out, "blue.yml", "environment.conda_file", "env/conda.yml", "line 3")
    assert "a key conda environments do not have" in line and "and 1 more" in line
    assert "s3cr3t" not in out and "tok-12345" not in out and "db_password" not in out


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("- numpy\n- pandas\n", 1, "holds a list"),
        ("just a line of text, no mapping\n", 1, "holds a str"),
        ("name: x\nchannels: [conda-forge]\n", 1, "no `dependencies`"),
        ("name: x\ndependencies: numpy\n", 2, "must be a list, not a str"),
        ("name: x\ndependencies:\n  - numpy\n  - {numpy: 1}\n", 4, "item 1 of `dependencies`"),
        ("name: x\ndependencies:\n  - pip:\n    - ok\n    - [not, a, string]\n", 5, "item 1 of `pip`"),
        ("name: x\ndependencies:\n  - pip: [a]\n  - pip: [b]\n", 4, "a second `pip:` list"),
        ("name: x\nchannels: conda-forge\ndependencies: []\n", 2, "`channels` must be a list"),
        ("name: [x]\ndependencies: []\n", 1, "`name` must be a string"),
        ("name: x\ndependencies: []\nvariables: [A]\n", 3, "`variables` must be a mapping"),
        ("name: x\ndependencies: [\n", 3, "not valid YAML"),
    ],
)
def test_conda_file_of_the_wrong_shape_is_an_error_at_its_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    root = project(tmp_path, {"env/conda.yml": text, "blue.yml": with_conda("env/conda.yml")})
    code, out = run_cli(root)
    assert_error(code, out, "blue.yml", "environment.conda_file", "env/conda.yml", f"line {line}", words)


def test_conda_environment_with_a_pip_list_is_accepted(tmp_path: Path) -> None:
    conda = (
        "name: model-env\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - numpy=1.26\n"
        "  - pip:\n    - scikit-learn==1.5.0\nvariables:\n  OMP_NUM_THREADS: 1\n"
    )
    root = project(tmp_path, {"env/conda.yml": conda, "blue.yml": with_conda("env/conda.yml")})
    code, out = run_cli(root, "plan", "--format", "json")
    assert code == 0, out
    assert '"conda":{"name":"model-env","channels":["conda-forge"],"dependencies":["python=3.11","numpy=1.26",' \
        '{"pip":["scikit-learn==1.5.0"]}],"variables":{"OMP_NUM_THREADS":1}}' in out


# --- hangs ----------------------------------------------------------------------------------------


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The 9-level "billion laughs" of the issue: 9**9 strings once every alias is written out."""
    lines = ["  a: &a [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"  {cur}: &{cur} [" + ", ".join([f"*{prev}"] * width) + "]")
    return "tags:\n" + "\n".join(lines) + "\n"


def test_alias_bomb_under_tags_fails_fast(tmp_path: Path) -> None:
    bomb = alias_bomb()
    assert len(bomb) < 1000
    root = project(tmp_path / "p", {"endpoint.yml": ENDPOINT + bomb})
    code, out = run_process(root)
    line = assert_error(code, out, "endpoint.yml", "tags", "aliases expand to more than 100,000 nodes")
    assert line.startswith("Error: endpoint.yml:4: tags:")


def test_alias_bomb_in_a_conda_file_fails_fast(tmp_path: Path) -> None:
    conda = "name: x\ndependencies: [numpy]\nvariables:\n" + alias_bomb().split("\n", 1)[1]
    conda = conda.replace("\n  a:", "\n  a:", 1)
    root = project(tmp_path / "p", {"env/conda.yml": conda, "blue.yml": with_conda("env/conda.yml")})
    code, out = run_process(root)
    assert_error(code, out, "blue.yml", "environment.conda_file", "aliases expand to more than")


def test_recursive_alias_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {"endpoint.yml": ENDPOINT + "tags: &t\n  self: *t\n"})
    code, out = run_cli(root)
    assert_error(code, out, "endpoint.yml", "tags", "recursive data")


def test_aliases_within_the_limit_are_read_as_pyyaml_reads_them(tmp_path: Path) -> None:
    root = project(tmp_path, {"endpoint.yml": ENDPOINT + "tags: {a: &v shared, b: *v}\n", "recon.yaml": "limits: {yaml_nodes: 50}\n"})
    code, out = run_cli(root, "plan", "--format", "json")
    assert code == 0, out
    assert '"tags":{"a":"shared","b":"shared"}' in out


def test_node_limit_is_configurable(tmp_path: Path) -> None:
    bomb = alias_bomb(levels=3, width=9)  # 9 + 81 + 729 strings
    root = project(tmp_path, {"endpoint.yml": ENDPOINT + bomb})
    (root / "recon.yaml").write_text("limits: {yaml_nodes: 500}\n")
    assert_error(*run_cli(root), "endpoint.yml", "tags", "more than 500 nodes")
    (root / "recon.yaml").write_text("limits: {yaml_nodes: 2000}\n")
    code, out = run_cli(root)
    assert code == 0, out


def test_fifo_named_yml_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {})
    os.mkfifo(root / "pipe.yml")
    code, out = run_process(root)
    assert_error(code, out, "pipe.yml", None, "FIFO", "not a regular file")


def test_symlink_to_dev_zero_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {})
    (root / "zero.yml").symlink_to("/dev/zero")
    code, out = run_process(root)
    assert_error(code, out, "zero.yml", None, "/dev/zero", "system folder")


def test_conda_file_dev_zero_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"blue.yml": with_conda("/dev/zero")})
    code, out = run_process(root)
    assert_error(code, out, "blue.yml", "environment.conda_file", "/dev/zero", "system folder")


def test_conda_file_fifo_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"blue.yml": with_conda("env/conda.yml")})
    (root / "env").mkdir()
    os.mkfifo(root / "env" / "conda.yml")
    code, out = run_process(root)
    assert_error(code, out, "blue.yml", "environment.conda_file", "FIFO")
    assert_error(code, out, "env/conda.yml", None, "FIFO")  # found by discovery too


def test_yaml_file_over_the_size_limit_is_an_error_and_the_limit_can_be_raised(tmp_path: Path) -> None:
    padding = "# " + "x" * 1000 + "\n"
    big = ENDPOINT + padding * (5 * 1024)  # about 5 MB of comments
    root = project(tmp_path, {"endpoint.yml": big})
    assert_error(*run_cli(root), "endpoint.yml", None, "more than the 4 MB a YAML file may have", "yaml_file_mb")
    (root / "recon.yaml").write_text("limits: {yaml_file_mb: 8}\n")
    code, out = run_cli(root)
    assert code == 0, out


def test_sparse_model_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    root = project(tmp_path, {"blue.yml": blue_with("  path: model/\n", "  path: model/huge.bin\n")})
    with open(root / "model" / "huge.bin", "wb") as fh:
        fh.truncate(3 << 30)  # 3 GB of nothing: reading it would take long, stat says its size
    (root / "recon.yaml").write_text("limits: {tree_gb: 2}\n")
    assert_error(*run_cli(root), "blue.yml", "model.path", "model/huge.bin is 3.0 GB, more than 2 GB")


# --- "internal error" -------------------------------------------------------------------------------


def test_model_path_up_to_etc_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {"blue.yml": blue_with("  path: model/\n", "  path: ../../../../../../../../../../etc\n")})
    assert_error(*run_cli(root), "blue.yml", "model.path", "resolves to /etc, inside /etc, a system folder")


def test_code_root_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {"blue.yml": blue_with("  code: code/\n", "  code: /\n")})
    assert_error(*run_cli(root), "blue.yml", "code_configuration.code", "resolves to /, the filesystem root")


def test_model_path_proc_self_mem_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {"blue.yml": blue_with("  path: model/\n", "  path: /proc/self/mem\n")})
    assert_error(*run_cli(root), "blue.yml", "model.path", "inside /proc, a system folder")


def test_symlink_loop_as_model_path_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {"blue.yml": blue_with("  path: model/\n", "  path: loop1\n")})
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    assert_error(*run_cli(root), "blue.yml", "model.path", "model path loop1 is a symbolic link loop")


def test_symlink_loop_inside_a_model_folder_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    (root / "model" / "loop1").symlink_to("loop2")
    (root / "model" / "loop2").symlink_to("loop1")
    assert_error(*run_cli(root), "blue.yml", "model.path", "model path model/loop1 is a symbolic link loop")


def test_symlink_loop_named_yml_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    (root / "a.yml").symlink_to("b.yml")
    (root / "b.yml").symlink_to("a.yml")
    code, out = run_cli(root)
    assert_error(code, out, "a.yml", None, "symbolic link loop")
    assert_error(code, out, "b.yml", None, "symbolic link loop")


def test_dangling_link_inside_a_code_folder_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    (root / "code" / "helper.py").symlink_to("gone.py")
    assert_error(
        *run_cli(root), "blue.yml", "code_configuration.code", "code/helper.py is a symbolic link to gone.py, which does not exist"
    )


def test_fifo_inside_a_model_folder_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {})
    os.mkfifo(root / "model" / "weights.pipe")
    code, out = run_process(root)
    assert_error(code, out, "blue.yml", "model.path", "model/weights.pipe is a FIFO")


def test_link_inside_a_model_folder_to_a_system_file_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    (root / "model" / "passwd").symlink_to("/etc/passwd")
    assert_error(*run_cli(root), "blue.yml", "model.path", "model/passwd resolves to /etc/passwd")


@pytest.mark.parametrize(
    ("link", "words"),
    [
        ("/etc", "model/cfg resolves to /etc, inside /etc, a system folder"),
        ("/", "model/cfg resolves to /, the filesystem root"),
        ("..", "model/cfg is a link to {root}, a folder around it"),
        (".", "model/cfg is a link to {root}/model, a folder around it"),
        ("missing", "model/cfg is a symbolic link to missing, which does not exist"),
    ],
)
def test_link_to_a_folder_inside_a_model_folder_is_checked_as_a_copy_would_follow_it(
    tmp_path: Path, link: str, words: str
) -> None:
    root = project(tmp_path, {})
    (root / "model" / "cfg").symlink_to(link)
    assert_error(*run_cli(root), "blue.yml", "model.path", words.format(root=root))


def test_files_behind_a_link_to_a_folder_count_towards_the_limits(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(5):
        (shards / f"s{i}").write_bytes(b"w")
    root = project(tmp_path / "p", {"recon.yaml": "limits: {tree_files: 4}\n"})
    (root / "model" / "shards").symlink_to(shards)
    assert_error(*run_cli(root), "blue.yml", "model.path", "holds more than 4 files")
    (root / "recon.yaml").write_text("limits: {tree_files: 6}\n")
    code, out = run_cli(root)
    assert code == 0, out


def test_folder_with_more_files_than_the_limit_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {"recon.yaml": "limits: {tree_files: 3}\n"})
    for i in range(5):
        (root / "model" / f"shard-{i}.bin").write_bytes(b"w")
    assert_error(*run_cli(root), "blue.yml", "model.path", "holds more than 3 files", "tree_files")


def test_paths_outside_the_project_are_allowed(tmp_path: Path) -> None:
    # Azure's own samples: model: path: ../../model-1/model/ and code: ../../model-1/onlinescoring/
    shared = tmp_path / "model-1"
    (shared / "model").mkdir(parents=True)
    (shared / "model" / "m.pkl").write_bytes(b"weights")
    (shared / "onlinescoring").mkdir()
    (shared / "onlinescoring" / "score.py").write_text("def init():\n    pass\n")
    blue = blue_with("  path: model/\n", "  path: ../../model-1/model/\n").replace(
        "  code: code/\n", "  code: ../../model-1/onlinescoring/\n"
    )
    root = project(tmp_path / "managed" / "sample", {"blue.yml": blue})
    code, out = run_cli(root)
    assert code == 0, out


# --- accepted silently before ------------------------------------------------------------------------


def test_recon_yaml_as_a_folder_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    (root / "recon.yaml").mkdir()
    assert_error(*run_cli(root), "recon.yaml", None, "is a folder")


def test_recon_yaml_as_a_dangling_symlink_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    (root / "recon.yaml").symlink_to("shared/recon.yaml")
    assert_error(*run_cli(root), "recon.yaml", None, "symbolic link to shared/recon.yaml, which does not exist")


@pytest.mark.parametrize(("kind", "words"), [("kubernetes9", "unknown provider kind 'kubernetes9'"), ("''", "is empty")])
def test_unknown_provider_kind_is_an_error_of_validate(tmp_path: Path, kind: str, words: str) -> None:
    root = project(tmp_path, {"recon.yaml": f"workspace: w\nprovider:\n  kind: {kind}\n"})
    line = assert_error(*run_cli(root), "recon.yaml", "provider.kind", words)
    assert line.startswith("Error: recon.yaml:3: provider.kind:") and "local" in line and "fake" not in line


def test_provider_kinds_come_from_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, {"recon.yaml": "provider: {kind: acme-cloud}\n"})
    assert_error(*run_cli(root), "recon.yaml", "provider.kind", "unknown provider kind 'acme-cloud'")
    monkeypatch.setitem(providers.PROVIDERS, "acme-cloud", "providers.acme:AcmeProvider")  # a kind just added
    code, out = run_cli(root)
    assert code == 0, out
    for kind in providers.PROVIDERS:  # every registered kind (azure once its branch is merged) validates
        (root / "recon.yaml").write_text(f"provider: {{kind: {kind}}}\n")
        code, out = run_cli(root)
        assert code == 0, (kind, out)


def test_state_path_dev_null_is_an_error_and_no_lock_is_made(tmp_path: Path) -> None:
    assert not os.path.exists("/dev/null.lock"), "left by something else: remove it to run this test"
    root = project(tmp_path, {"recon.yaml": "state:\n  path: /dev/null\n"})
    for args in (("validate",), ("plan",)):
        assert_error(*run_cli(root, *args), "recon.yaml", "state.path", "/dev/null", "system folder")
    assert not os.path.exists("/dev/null.lock")


@pytest.mark.parametrize("what", ["folder", "fifo", "under a file"])
def test_state_path_that_is_not_a_regular_file_is_an_error(tmp_path: Path, what: str) -> None:
    root = project(tmp_path, {})
    if what == "folder":
        (root / "state").mkdir()
        path, words = "state", "is a folder"
    elif what == "fifo":
        os.mkfifo(root / "state.json")
        path, words = "state.json", "is a FIFO"
    else:
        path, words = "endpoint.yml/state.json", "endpoint.yml is not a folder"
    (root / "recon.yaml").write_text(f"state:\n  path: {path}\n")
    assert_error(*run_cli(root), "recon.yaml", "state.path", words)


def test_file_backend_refuses_a_special_state_path(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "state.json")
    backend = FileBackend(tmp_path / "state.json")
    with pytest.raises(StateError, match="not a regular file"):
        backend.read()  # a FIFO would block this read
    with pytest.raises(StateError, match="not a regular file"):
        FileBackend(Path("/dev/null")).lock_info()
    assert not os.path.exists("/dev/null.lock")


def test_unknown_or_wrong_limit_is_an_error_at_its_key(tmp_path: Path) -> None:
    root = project(tmp_path, {"recon.yaml": "limits:\n  endpoints: 10\n  yaml_mb: 3\n  tree_files: 0\n"})
    code, out = run_cli(root)
    assert_error(code, out, "recon.yaml", "limits.yaml_mb", "unknown limit 'yaml_mb'", "yaml_file_mb")
    assert_error(code, out, "recon.yaml", "limits.tree_files", "0 is not a whole number >= 1")


# --- found by the fuzz suite (tests/fuzz) ------------------------------------------------------------


def test_nul_character_in_a_path_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, {"blue.yml": blue_with("  path: model/\n", '  path: "model\\0x"\n')})
    (root / "recon.yaml").write_text('state: {path: "state\\0.json"}\n')
    code, out = run_cli(root)
    assert_error(code, out, "recon.yaml", "state.path", "contains a NUL character")
    (root / "recon.yaml").unlink()
    assert_error(*run_cli(root), "blue.yml", "model.path", "model path contains a NUL character")


def test_line_breaks_and_escapes_in_a_key_cannot_forge_output(tmp_path: Path) -> None:
    root = project(tmp_path, {"recon.yaml": '"x\\rSuccess! The configuration is valid\\n\\e[2J": 1\n'})
    code, out = run_cli(root)
    assert_error(code, out, "recon.yaml", r"x\rSuccess! The configuration is valid\n\x1b[2J", "unknown field")
    assert not any(line.startswith("Success") for line in out.splitlines()) and "\x1b" not in out, out


def test_line_breaks_in_a_warning_cannot_forge_output(tmp_path: Path) -> None:
    blue = blue_with("environment:\n  image: python:3.11\n",
                     'environment: "azureml://registries/r/environments/e\\rSuccess! forged\\e[2J"\n')
    code, out = run_cli(project(tmp_path, {"blue.yml": blue}))
    assert code == 0, out
    warning = next(line for line in out.splitlines() if line.startswith("Warning: blue.yml:9: environment:"))
    assert "e\\rSuccess! forged\\x1b[2J is an external environment reference" in warning
    assert "\r" not in out and "\x1b" not in out

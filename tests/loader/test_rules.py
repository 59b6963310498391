"""One bad file per validation rule: each diagnostic names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.load.loader import load_project
from reconciler.model.errors import ConfigError
from tests.loader.helpers import BLUE, ENDPOINT, S, deployment, find, project

K8S_ENDPOINT = f"$schema: {S}kubernetesOnlineEndpoint.schema.json\nname: my-endpoint\ncompute: azureml:k8s\n"
K8S_BLUE = BLUE.replace("managedOnlineDeployment", "kubernetesOnlineDeployment") + "type: kubernetes\n"
GREEN = deployment("green")
LONG = "a" + "b" * 31

# (id, files, file, line, field path, words the message must contain)
CASES: list[tuple[str, dict[str, str | None], str | None, int | None, str | None, str]] = [
    (
        "endpoint-name-chars",
        {"endpoint.yml": ENDPOINT.replace("my-endpoint", "my_endpoint")},
        "endpoint.yml",
        2,
        "name",
        "not a valid endpoint name",
    ),
    (
        "endpoint-name-short",
        {"endpoint.yml": ENDPOINT.replace("my-endpoint", "ab")},
        "endpoint.yml",
        2,
        "name",
        "2 characters",
    ),
    (
        "deployment-name-hyphen",
        {"blue.yml": BLUE.replace("name: blue", "name: blue-")},
        "blue.yml",
        2,
        "name",
        "not a valid deployment name",
    ),
    (
        "unknown-field",
        {"blue.yml": BLUE + "instance_cont: 2\n"},
        "blue.yml",
        13,
        "instance_cont",
        "unknown field",
    ),
    (
        "unknown-nested-field",
        {"blue.yml": BLUE + "request_settings:\n  request_timeout: 9\n"},
        "blue.yml",
        14,
        "request_settings.request_timeout",
        "unknown field",
    ),
    (
        "wrong-type",
        {"blue.yml": BLUE.replace("instance_count: 1", "instance_count: two")},
        "blue.yml",
        12,
        "instance_count",
        "wrong type",
    ),
    (
        "enum",
        {"endpoint.yml": ENDPOINT.replace("auth_mode: key", "auth_mode: password")},
        "endpoint.yml",
        3,
        "auth_mode",
        "not an accepted value",
    ),
    (
        "traffic-sum",
        {"endpoint.yml": ENDPOINT + "traffic:\n  blue: 60\n"},
        "endpoint.yml",
        4,
        "traffic",
        "sums to 60",
    ),
    (
        "traffic-unknown-deployment",
        {"endpoint.yml": ENDPOINT + "traffic:\n  blue: 0\n  red: 100\n"},
        "endpoint.yml",
        6,
        "traffic.red",
        "not a deployment",
    ),
    (
        "traffic-fraction",
        {"endpoint.yml": ENDPOINT + "traffic:\n  blue: 50.5\n"},
        "endpoint.yml",
        5,
        "traffic.blue",
        "wrong type",
    ),
    (
        "traffic-over-100",
        {"endpoint.yml": ENDPOINT + "traffic:\n  blue: 120\n"},
        "endpoint.yml",
        5,
        "traffic.blue",
        "not a percentage",
    ),
    (
        "mirror-over-50",
        {
            "green.yml": GREEN,
            "endpoint.yml": ENDPOINT + "traffic:\n  blue: 100\nmirror_traffic:\n  green: 60\n",
        },
        "endpoint.yml",
        7,
        "mirror_traffic.green",
        "above the limit",
    ),
    (
        "mirror-live",
        {"endpoint.yml": ENDPOINT + "traffic:\n  blue: 100\nmirror_traffic:\n  blue: 10\n"},
        "endpoint.yml",
        7,
        "mirror_traffic.blue",
        "live traffic",
    ),
    (
        "mirror-two",
        {"green.yml": GREEN, "endpoint.yml": ENDPOINT + "mirror_traffic:\n  blue: 10\n  green: 10\n"},
        "endpoint.yml",
        4,
        "mirror_traffic",
        "single deployment",
    ),
    (
        "mirror-kubernetes",
        {"endpoint.yml": K8S_ENDPOINT + "mirror_traffic:\n  blue: 10\n", "blue.yml": K8S_BLUE},
        "endpoint.yml",
        4,
        "mirror_traffic",
        "Kubernetes",
    ),
    (
        "endpoint-undeclared",
        {"blue.yml": deployment(endpoint="other-endpoint")},
        "blue.yml",
        3,
        "endpoint_name",
        "not declared",
    ),
    ("kind-mismatch", {"blue.yml": K8S_BLUE}, "blue.yml", 3, "endpoint_name", "cannot belong"),
    (
        "duplicate-resource",
        {"blue-copy.yml": BLUE},
        "blue.yml",
        2,
        "name",
        "already declared in blue-copy.yml:2",
    ),
    (
        "instance-count-limit",
        {"blue.yml": BLUE.replace("instance_count: 1", "instance_count: 51")},
        "blue.yml",
        12,
        "instance_count",
        "exceed the service limit",
    ),
    (
        "instance-count-zero",
        {"blue.yml": BLUE.replace("instance_count: 1", "instance_count: 0")},
        "blue.yml",
        12,
        "instance_count",
        "too small",
    ),
    (
        "max-instances-limit",
        {"blue.yml": BLUE + "scale_settings:\n  type: target_utilization\n  max_instances: 60\n"},
        "blue.yml",
        15,
        "scale_settings.max_instances",
        "exceed",
    ),
    (
        "timeout-managed",
        {"blue.yml": BLUE + "request_settings:\n  request_timeout_ms: 200000\n"},
        "blue.yml",
        14,
        "request_settings.request_timeout_ms",
        "180000",
    ),
    (
        "timeout-kubernetes",
        {
            "endpoint.yml": K8S_ENDPOINT,
            "blue.yml": K8S_BLUE + "request_settings:\n  request_timeout_ms: 400000\n",
        },
        "blue.yml",
        15,
        "request_settings.request_timeout_ms",
        "300000",
    ),
    (
        "unknown-instance-type",
        {"blue.yml": BLUE.replace("Standard_DS3_v2", "Standard_DS3v2")},
        "blue.yml",
        11,
        "instance_type",
        "unknown instance type",
    ),
    (
        "managed-needs-instance-type",
        {"blue.yml": BLUE.replace("instance_type: Standard_DS3_v2\n", "")},
        "blue.yml",
        1,
        "instance_type",
        "needs an instance_type",
    ),
    (
        "model-version",
        {"m.yml": f"$schema: {S}model.schema.json\nname: m1\nversion: abc\npath: model\n"},
        "m.yml",
        3,
        "version",
        "positive integer",
    ),
    (
        "model-ref-version",
        {"blue.yml": BLUE.replace("model:\n  path: model/", "model: azureml:my-model:abc\n#")},
        "blue.yml",
        4,
        "model",
        "positive integer",
    ),
    (
        "unresolvable-ref",
        {"blue.yml": BLUE.replace("model:\n  path: model/", "model: azureml:nope:1\n#")},
        "blue.yml",
        4,
        "model",
        "neither declared",
    ),
    (
        "environment-needs-image",
        {"blue.yml": BLUE.replace("  image: python:3.11", "  description: none")},
        "blue.yml",
        9,
        "environment",
        "needs an image or a build",
    ),
    (
        "missing-model-path",
        {"blue.yml": BLUE.replace("path: model/", "path: nothing/")},
        "blue.yml",
        5,
        "model.path",
        "not found: nothing",
    ),
    (
        "missing-conda-file",
        {
            "blue.yml": BLUE.replace(
                "  image: python:3.11\n", "  image: python:3.11\n  conda_file: envs/conda.yml\n"
            )
        },
        "blue.yml",
        11,
        "environment.conda_file",
        "not found: envs/conda.yml",
    ),
    (
        "duplicate-key",
        {"blue.yml": BLUE + "instance_count: 2\n"},
        "blue.yml",
        13,
        "instance_count",
        "duplicate key",
    ),
    ("ambiguous-kind", {"other.yml": "name: thing\ndescription: x\n"}, "other.yml", 1, None, "cannot tell"),
    (
        "unknown-schema",
        {"job.yml": f"$schema: {S}commandJob.schema.json\ncommand: echo\n"},
        "job.yml",
        1,
        "$schema",
        "not a kind recon manages",
    ),
    (
        "placeholder",
        {"blue.yml": BLUE.replace("endpoint_name: my-endpoint", 'endpoint_name: "{{ENDPOINT_NAME}}"')},
        "blue.yml",
        3,
        "endpoint_name",
        "placeholder",
    ),
    (
        "kubernetes-name-length",
        {
            "endpoint.yml": K8S_ENDPOINT.replace("my-endpoint", LONG),
            "blue.yml": K8S_BLUE.replace("name: blue", f"name: {LONG}").replace(
                "endpoint_name: my-endpoint", f"endpoint_name: {LONG}"
            ),
        },
        "blue.yml",
        2,
        "name",
        "6 to 62",
    ),
    (
        "settings-unknown-key",
        {"recon.yaml": "workspace: ws-1\nquotas: {}\n"},
        "recon.yaml",
        2,
        "quotas",
        "unknown field",
    ),
    (
        "settings-workspace",
        {"recon.yaml": "workspace: a\n"},
        "recon.yaml",
        1,
        "workspace",
        "not a valid workspace name",
    ),
    (
        "settings-quota-type",
        {"recon.yaml": "quota:\n  standardDSv2Family: many\n"},
        "recon.yaml",
        2,
        "quota.standardDSv2Family",
        "wrong type",
    ),
    (
        "settings-backend",
        {"recon.yaml": "state:\n  backend: s3\n"},
        "recon.yaml",
        2,
        "state.backend",
        "not an accepted value",
    ),
    (
        "endpoint-limit",
        {"recon.yaml": "limits:\n  endpoints: 1\n", "e2.yml": ENDPOINT.replace("my-endpoint", "second")},
        None,
        None,
        None,
        "2 endpoints",
    ),
]


@pytest.mark.parametrize(
    ("files", "file", "line", "path", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_file_is_reported(
    tmp_path: Path,
    files: dict[str, str | None],
    file: str | None,
    line: int | None,
    path: str | None,
    words: str,
) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(project(tmp_path, files))
    diag = find(info.value.diagnostics, file, path)
    assert words in diag.message + " " + (diag.hint or "")
    assert diag.line == line
    assert diag.hint, "every error says what would be right"


def test_unknown_field_hint_suggests_the_right_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(project(tmp_path, {"blue.yml": BLUE + "instance_cont: 2\n"}))
    assert find(info.value.diagnostics, "blue.yml", "instance_cont").hint == "did you mean 'instance_count'?"


def test_unknown_instance_type_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(project(tmp_path, {"blue.yml": BLUE.replace("Standard_DS3_v2", "Standard_DS3v2")}))
    assert "Standard_DS3_v2" in (find(info.value.diagnostics, "blue.yml", "instance_type").hint or "")


def test_too_many_deployments_per_endpoint(tmp_path: Path) -> None:
    files: dict[str, str | None] = {f"d{i}.yml": deployment(f"dep{i}") for i in range(21)}
    files["blue.yml"] = None
    with pytest.raises(ConfigError) as info:
        load_project(project(tmp_path, files))
    diag = find(info.value.diagnostics, "endpoint.yml", "name")
    assert "21 deployments" in diag.message and diag.line == 2


def test_syntax_error_reports_parser_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(project(tmp_path, {"blue.yml": BLUE.replace("instance_count: 1", "instance_count: [1")}))
    [diag] = info.value.diagnostics
    assert diag.file == "blue.yml" and diag.line is not None and diag.line >= 12
    assert "invalid YAML" in diag.message


def test_unquoted_placeholder_is_a_config_error(tmp_path: Path) -> None:
    # `name: {{X}}` is a YAML flow mapping with a mapping key: the parser itself refuses it
    with pytest.raises(ConfigError) as info:
        load_project(project(tmp_path, {"blue.yml": BLUE.replace("name: blue", "name: {{DEPLOYMENT_NAME}}")}))
    assert any(d.file == "blue.yml" for d in info.value.diagnostics)


def test_all_errors_are_reported_together(tmp_path: Path) -> None:
    files: dict[str, str | None] = {
        "endpoint.yml": ENDPOINT.replace("auth_mode: key", "auth_mode: pwd") + "traffic:\n  blue: 50\n",
        "blue.yml": BLUE.replace("instance_count: 1", "instance_count: 99") + "colour: blue\n",
        "recon.yaml": "workspace: x\n",
    }
    with pytest.raises(ConfigError) as info:
        load_project(project(tmp_path, files))
    located = {(d.file, d.path) for d in info.value.diagnostics}
    assert {
        ("endpoint.yml", "auth_mode"),
        ("endpoint.yml", "traffic"),
        ("blue.yml", "instance_count"),
        ("blue.yml", "colour"),
        ("recon.yaml", "workspace"),
    } <= located


def test_small_instance_type_is_a_warning(tmp_path: Path) -> None:
    desired = load_project(
        project(tmp_path, {"blue.yml": BLUE.replace("Standard_DS3_v2", "standard_ds2_v2")})
    )
    assert desired.resources["deployment.my-endpoint.blue"].attributes["instance_type"] == "Standard_DS2_v2"
    [warning] = desired.warnings
    assert (warning["file"], warning["line"], warning["path"]) == ("blue.yml", 11, "instance_type")


@pytest.mark.parametrize(
    "text",
    [
        "- a\n- b\n",
        "just a string\n",
        "\x00\x01binary",
        "a: b: c\n",
        "? [a]\n: b\n",
        "x: !!python/object:os.system ls\n",
    ],
)
def test_garbage_is_a_config_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(project(tmp_path, {"junk.yml": text}))
    assert all(d.file == "junk.yml" for d in info.value.diagnostics)

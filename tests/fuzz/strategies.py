"""Hypothesis strategies for hostile projects: Azure ML documents with fields replaced by anything,
raw YAML text made of YAML's sharp edges, recon.yaml of every shape, and odd filesystem entries.

Every case runs in a fresh copy of the same small project (``make_base``): a valid endpoint,
model folder, code folder and conda file, plus targets a hostile document may point at (a FIFO,
links to ``/dev/zero``, a link loop, a dangling link, and "secret" files outside the project whose
content carries ``SECRET``: no output may ever show it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

SECRET = "SECRET-7f3a9c"  # in files outside the project; must never appear in any output
S = "https://azuremlschemas.azureedge.net/latest/{}.schema.json"
SCHEMA_KINDS = [
    "managedOnlineEndpoint",
    "managedOnlineDeployment",
    "kubernetesOnlineEndpoint",
    "kubernetesOnlineDeployment",
    "model",
    "environment",
    "commandJob",
    "",
]

# paths a document may name: the project's own, the hostile targets of make_base, system ones
PATHS = [
    "model/",
    "model/m.pkl",
    "code/",
    "code/score.py",
    "score.py",
    "env/conda.yml",
    ".",
    "..",
    "",
    "/",
    "//",
    "~",
    "/dev/zero",
    "/dev/null",
    "/proc/self/mem",
    "/proc/self/environ",
    "/etc/shadow",
    "/etc",
    "/sys",
    "../../../../../../../../etc",
    "../../../../../../../../../..",
    "model/../../..",
    "fifo.pipe",
    "zero-link",
    "loop-a",
    "dangling",
    "big-tree",
    "../outside/secret.txt",
    "../outside/secret.yml",
    "../outside/",
    "missing/x.pkl",
    "a" * 300,
    "dir.yml",
    "has\x00nul",
    "C:\\models\\m",
    "model/\u00e9\u00e8",
]
REFS = [
    "azureml:m:1",
    "azureml:m:0",
    "azureml:m:x",
    "azureml:m@latest",
    "azureml:m@prod",
    "azureml:m",
    "azureml:",
    "azureml://registries/r/models/m/versions/1",
    "azureml:AzureML-sklearn-1.0:1",
    "https://example.invalid/m",
    "azureml://registries/r/models/m\rSuccess!\x1b[2J",  # a warning quoting it must not forge a line
]
NAMES = ["my-endpoint", "blue", "green", "MY-ENDPOINT", "m", "e", "-bad", "x" * 80, "a_b", "{{ name }}", "1"]
FIELDS = [
    "$schema", "name", "version", "description", "tags", "properties", "auth_mode", "identity", "traffic",
    "mirror_traffic", "public_network_access", "kind", "compute", "endpoint_name", "type", "model",
    "code_configuration", "environment", "environment_variables", "instance_type", "instance_count",
    "scale_settings", "request_settings", "liveness_probe", "readiness_probe", "app_insights_enabled",
    "data_collector", "model_mount_path", "egress_public_network_access", "resources", "path", "image",
    "conda_file", "build", "inference_config", "os_type", "flavors", "code", "scoring_script", "requests",
    "limits", "cpu", "memory", "nvidia.com/gpu", "min_instances", "max_instances", "dockerfile_path",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 100, 101, 50, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(PATHS + REFS + NAMES + ["Standard_DS3_v2", "Standard_F2s_v2", "key", "aml_token", "kubernetes"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def shared(draw: st.DrawFn) -> Any:
    """A value nested by repeating one object: ``yaml.safe_dump`` writes it with anchors and
    aliases, so deep ones are alias bombs (``width ** levels`` nodes once expanded)."""
    levels, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    node: Any = draw(scalars)
    for _ in range(levels):
        node = [node] * width if draw(st.booleans()) else {f"k{i}": node for i in range(width)}
    return node


field_values = st.one_of(values, st.sampled_from(PATHS), st.sampled_from(REFS), shared())


def _inline_model(path: str) -> dict[str, Any]:
    return {"path": path}


def _inline_env(image: Any, conda: Any, build: Any) -> dict[str, Any]:
    env: dict[str, Any] = {}
    for key, value in (("image", image), ("conda_file", conda), ("build", build)):
        if value is not None:
            env[key] = value
    return env


paths = st.sampled_from(PATHS) | st.text(max_size=10)
models = st.one_of(st.builds(_inline_model, paths), st.sampled_from(REFS), values)
inline_environments = st.builds(
    _inline_env,
    st.none() | st.just("python:3.11") | scalars,
    st.none() | paths,
    st.none() | st.builds(lambda p: {"path": p}, paths),
)
environments = st.one_of(inline_environments, st.sampled_from(REFS), values)
code_configurations = st.one_of(
    st.builds(lambda c, s: {"code": c, "scoring_script": s}, paths, paths),
    values,
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """An Azure ML document: a valid-looking base of some kind, then fields replaced, added, removed."""
    kind = draw(st.sampled_from(["endpoint", "deployment", "k8s_endpoint", "k8s_deployment", "model", "environment"]))
    doc: dict[str, Any]
    if kind == "endpoint":
        doc = {"$schema": S.format("managedOnlineEndpoint"), "name": "my-endpoint", "auth_mode": "key"}
    elif kind == "k8s_endpoint":
        doc = {"$schema": S.format("kubernetesOnlineEndpoint"), "name": "k8s-ep", "compute": "azureml:k8s"}
    elif kind in ("deployment", "k8s_deployment"):
        doc = {
            "$schema": S.format("managedOnlineDeployment" if kind == "deployment" else "kubernetesOnlineDeployment"),
            "name": draw(st.sampled_from(NAMES)),
            "endpoint_name": "my-endpoint" if kind == "deployment" else "k8s-ep",
            "model": draw(models),
            "code_configuration": draw(code_configurations),
            "environment": draw(environments),
            "instance_type": "Standard_DS3_v2",
            "instance_count": 1,
            **({"type": "kubernetes"} if kind == "k8s_deployment" else {}),
        }
    elif kind == "model":
        doc = {"$schema": S.format("model"), "name": "m", "version": 1, "path": draw(paths)}
    else:
        doc = {"$schema": S.format("environment"), "name": "e", "version": 1, **draw(inline_environments)}
    for key in draw(st.lists(st.sampled_from(sorted(doc)), max_size=2)):
        doc.pop(key, None)
    doc.update(draw(st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=3)))
    if draw(st.booleans()) and "$schema" in doc:
        doc["$schema"] = S.format(draw(st.sampled_from(SCHEMA_KINDS)))
    return doc


_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_DUMPER, allow_unicode=True, sort_keys=False, width=1000)


TOKENS = [
    "a: ", "name: ", "tags: ", "path: ", "model: ", "endpoint_name: my-endpoint\n", "$schema: " + S.format("model") + "\n",
    "\n", "\n  ", "  ", "\t", "- ", "? ", ": ", ", ", "{", "}", "[", "]", "'", '"', "|\n", ">-\n", "# c\n",
    "&a ", "&b ", "*a", "*b", "<<: *a\n", "<<: [*a, *b]\n", "!!str ", "!!int ", "!!float ", "!!binary ", "!!set ",
    "!!omap ", "!!map ", "!!seq ", "!!timestamp ", "!!python/object/apply:os.system ['true'] ", "!Ref ", "!<tag:x> ",
    "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "{{ name }}", "x", "1", "0x1f", "1_000", "2001-12-14",
    "~", "null", "yes", ".inf", ".nan", "\u00e9", "\ufeff", "\x85", "\\x00", "\"\\0\"", "\"\\ud800\"", "&l [1, *l]\n",
    "a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n",
]  # fmt: skip
raw_text = st.lists(st.sampled_from(TOKENS) | st.text(max_size=4), max_size=40).map("".join)
raw_bytes = st.one_of(
    raw_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=64),
    st.just(b"name: caf\xe9\n"),
    st.just(b"\xef\xbb\xbfname: bom\n"),
    st.just(b""),
)

LIMIT_KEYS = ["endpoints", "deployments", "yaml_file_mb", "yaml_nodes", "tree_files", "tree_gb", "yaml_mb", "files"]
recon_yaml_values = st.fixed_dictionaries(
    {},
    optional={
        "workspace": st.sampled_from(["my-workspace", "", "x" * 40, "a b", "-x"]) | scalars,
        "provider": st.one_of(
            st.fixed_dictionaries(
                {"kind": st.sampled_from(["local", "docker", "kubernetes", "fake", "kubernetes9", "", "LOCAL", "azure"]) | scalars},
                optional={"reuse_host_packages": values, "warm_start": values, "router_limits": values, "namespace": values},
            ),
            values,
        ),
        "quota": st.dictionaries(st.sampled_from(["standardDSv2Family", "x"]) | st.text(max_size=5), values, max_size=3) | values,
        "instance_types": st.dictionaries(
            st.sampled_from(["Custom_1", "Standard_DS3_v2"]) | st.text(max_size=5),
            st.fixed_dictionaries(
                {"cores": values, "memory_gb": values, "family": values}, optional={"gpus": values, "quota_exempt": values}
            )
            | values,
            max_size=2,
        ),
        # never a dsn: validate would connect to it
        "state": st.fixed_dictionaries(
            {}, optional={"backend": st.sampled_from(["file", "postgres", "s3", ""]) | scalars, "path": paths, "name": scalars}
        )
        | values,
        "limits": st.dictionaries(st.sampled_from(LIMIT_KEYS), st.sampled_from([1, 2, 3, 0, -1, 10**12, True, "4"]) | scalars, max_size=4)
        | values,
        "exclude": st.lists(st.sampled_from(["ci/*", "**", "[", "*.yml", "/", "", "model/", "../*"]) | st.text(max_size=5), max_size=3)
        | values,
        "unknown_key": values,
    },
)
recon_yaml = st.one_of(recon_yaml_values.map(dump), raw_text, values.map(dump))

# odd entries in the project folder, made by ``add_oddity``
ODDITIES = [
    "fifo.yml",
    "zero.yml",
    "loop.yml",
    "dangling.yml",
    "dir.yml",
    "recon.yaml-dir",
    "recon.yaml-dangling",
    "recon.yaml-fifo",
    "recon.yaml-zero",
    "unreadable-model",
    "fifo-in-model",
    "loop-in-code",
    "secret-link.yml",
    "dirlink-up-in-model",
    "dirlink-etc-in-code",
    "dirlink-outside-in-model",
]

ENDPOINT = {"$schema": S.format("managedOnlineEndpoint"), "name": "my-endpoint", "auth_mode": "key"}
CONDA = "name: env\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip:\n    - numpy\n"


SCORE_PY = "def init():\n    pass\n\n\ndef run(raw):\n    return raw\n"
# the base project's files (relative path -> content); ``reset`` puts exactly these back
BASE_FILES = {
    "model/m.pkl": "weights",
    "code/score.py": SCORE_PY,
    "env/conda.yml": CONDA,
    "endpoint.yml": dump(ENDPOINT),
    **{f"big-tree/f{i}": "x" for i in range(12)},
}
BASE_LINKS = {"zero-link": "/dev/zero", "loop-a": "loop-b", "loop-b": "loop-a", "dangling": "nowhere"}


def make_base(root: Path) -> Path:
    """A small valid project under ``root/p`` and the hostile targets beside it; returns the project."""
    outside = root / "outside"
    outside.mkdir(parents=True)
    (outside / "secret.txt").write_text(f"token={SECRET}\npassword: {SECRET}\n")
    (outside / "secret.yml").write_text(f"name: x\ndependencies: [numpy]\napi_key: {SECRET}\n")
    (outside / "m.pkl").write_text(SECRET)
    project = root / "p"
    project.mkdir()
    os.mkfifo(project / "fifo.pipe")
    for name, target in BASE_LINKS.items():
        (project / name).symlink_to(target)
    reset(project)
    return project


def reset(project: Path) -> None:
    """Bring a project made by ``make_base`` back to its base state: what a case added removed,
    what it changed written again (cheaper than a new project for every case)."""
    keep = {"fifo.pipe", *BASE_LINKS, *BASE_FILES, *(rel.split("/")[0] for rel in BASE_FILES)}
    for folder, dirs, names in os.walk(project, topdown=False):
        for name in names + dirs:
            path = Path(folder) / name
            if path.relative_to(project).as_posix() not in keep:
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
    for rel, content in BASE_FILES.items():
        path = project / rel
        if not path.is_file() or path.is_symlink() or path.read_bytes() != content.encode():
            path.parent.mkdir(exist_ok=True)
            path.unlink(missing_ok=True)
            path.write_text(content)


def add_oddity(project: Path, name: str) -> None:
    """Put one odd entry into the project (``ODDITIES``)."""
    if name == "fifo.yml":
        os.mkfifo(project / name)
    elif name == "zero.yml":
        (project / name).symlink_to("/dev/zero")
    elif name == "loop.yml":
        (project / name).symlink_to("loop.yml")
    elif name == "dangling.yml":
        (project / name).symlink_to("gone.yml")
    elif name == "dir.yml":
        (project / name).mkdir()
        (project / name / "inner.yml").write_text(dump(ENDPOINT | {"name": "inner"}))
    elif name.startswith("recon.yaml-"):
        target = project / "recon.yaml"
        if target.is_dir() and not target.is_symlink():
            target.rmdir()
        else:
            target.unlink(missing_ok=True)
        how = name.split("-", 1)[1]
        if how == "dir":
            target.mkdir()
        elif how == "dangling":
            target.symlink_to("nowhere.yaml")
        elif how == "fifo":
            os.mkfifo(target)
        else:
            target.symlink_to("/dev/zero")
    elif name == "unreadable-model":
        (project / "model" / "m.pkl").unlink()
        (project / "model" / "m.pkl").symlink_to("/proc/self/mem")
    elif name == "fifo-in-model":
        os.mkfifo(project / "model" / "w.pipe")
    elif name == "loop-in-code":
        (project / "code" / "x.py").symlink_to("x.py")
    elif name == "secret-link.yml":
        (project / name).symlink_to(project.parent / "outside" / "secret.txt")
    elif name == "dirlink-up-in-model":
        (project / "model" / "up").symlink_to("..")
    elif name == "dirlink-etc-in-code":
        (project / "code" / "etc").symlink_to("/etc")
    elif name == "dirlink-outside-in-model":
        (project / "model" / "outside").symlink_to(project.parent / "outside")

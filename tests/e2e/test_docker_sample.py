"""The Azure ML managed sample, applied unchanged on the Docker provider, through the real CLI.

The environment (Azure's base image + the sample's conda file) is built into a derived image FROM
the small local base image (``image_overrides``); ``keep_images: true`` keeps it for the other
Docker tests of the session (and later runs), so it is built once.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.docker.engine import client, labelled_containers, labelled_networks, require_engine

pytestmark = [pytest.mark.docker, pytest.mark.slow]

EXPECTED = [11055.97724553, 4503.07953611]  # model-1 on sample-request.json (scikit-learn 1.7)
RECON_YAML = """\
workspace: docker-sample
provider:
  kind: docker
  keep_images: true
  image_overrides:
    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest": "local/py-base:bookworm"
"""


@pytest.fixture(autouse=True)
def _engine() -> None:
    require_engine()


def _answers_healthy(url: str) -> bool:
    """True only when the instance host itself answered (GET / → 200 ``Healthy``)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200 and resp.read().strip() == b"Healthy"
    except (TimeoutError, OSError, urllib.error.URLError):
        return False


def test_sample_applies_on_docker_and_only_the_router_reaches_instances(sample_project, make_recon) -> None:
    root = sample_project("blue-deployment.yml")
    (root / "recon.yaml").write_text(RECON_YAML)
    recon = make_recon(root)
    recon("apply", "--auto-approve", timeout=1200)

    request = root.parent.parent / "model-1" / "sample-request.json"
    answer = recon("invoke", "my-endpoint", "--deployment", "blue", "--request-file", str(request))
    assert json.loads(answer.stdout) == pytest.approx(EXPECTED, rel=1e-6)

    keys = recon.keys("my-endpoint")
    assert keys["scoring_uri"].startswith("http://127.0.0.1:")
    state_text = (root / ".recon" / "state.json").read_text()
    assert keys["primaryKey"] not in state_text and keys["secondaryKey"] not in state_text

    # without the key the router refuses
    body = request.read_bytes()
    anonymous = urllib.request.Request(keys["scoring_uri"], data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=10)
    assert refused.value.code == 401

    # an instance is reachable only through the router: the host gets no answer from its address,
    # while the router container (on the endpoint's internal network) does
    state_dir = (root / ".recon").resolve()
    blue = recon.state()["resources"]["deployment.my-endpoint.blue"]["outputs"]["instances"][0]
    assert blue["ip"], blue
    assert not _answers_healthy(f"http://{blue['ip']}:5001/"), "the host reached an instance directly"
    router = next(c for c in labelled_containers(state_dir) if c.labels.get("recon.role") == "router")
    probe = router.exec_run(["python3", "-c", f"import urllib.request;print(urllib.request.urlopen("
                                              f"'http://{blue['ip']}:5001/', timeout=3).read().decode())"])
    assert probe.exit_code == 0 and b"Healthy" in probe.output, probe.output
    instance = client().containers.get(blue["name"])
    assert instance.attrs["HostConfig"]["PortBindings"] in (None, {}), "instances publish no port"
    networks = instance.attrs["NetworkSettings"]["Networks"]
    assert len(networks) == 1 and client().networks.get(next(iter(networks))).attrs["Internal"] is True
    env = dict(e.split("=", 1) for e in instance.attrs["Config"]["Env"])
    assert env["AZUREML_MODEL_DIR"].startswith("/var/azureml-app/azureml-models/")
    mounts = {m["Destination"]: m for m in instance.attrs["Mounts"]}
    assert mounts[env["AZUREML_MODEL_DIR"]]["RW"] is False
    assert mounts["/var/azureml-app/onlinescoring"]["RW"] is False

    again = recon("plan", "--detailed-exitcode", check=False)
    assert again.returncode == 0, again.stdout + again.stderr

    recon("destroy", "--auto-approve")
    assert labelled_containers(state_dir) == [], "destroy must remove every container"
    assert labelled_networks(state_dir) == [], "destroy must remove every network"

"""Azure's own sample (model-1, scikit-learn) served by the local provider, scoring script unchanged.

Needs scikit-learn and joblib on the host (``reuse_host_packages: true``)."""

from __future__ import annotations

import json
import shutil

from tests.conftest import ONLINE, SKLEARN_SCORE_PY
from tests.local.helpers import Project
from tests.requests import routed


def test_azure_sklearn_sample_answers_predictions(project: Project) -> None:
    shutil.copytree(ONLINE / "model-1", project.root / "model-1")
    (project.root / "model-1" / "onlinescoring").mkdir()
    (project.root / "model-1" / "onlinescoring" / "score.py").write_text(SKLEARN_SCORE_PY)
    env = project.environment("sklearn-env", "1", conda=None)
    model = project.model("my-model", "1", path="model-1/model")
    project.create(env)
    project.create(model)
    project.create(project.endpoint("my-endpoint"))
    dep = project.deployment("blue", "my-endpoint", count=1, code="model-1/onlinescoring", model=model,
                             environment=env)
    project.create(dep)
    ep = project.endpoint("my-endpoint", traffic={"blue": 100})
    project.provider.set_routing(routed(ep, {"blue": 100}, {}))
    request = json.loads((ONLINE / "model-1" / "sample-request.json").read_text())
    status, headers, body = project.score("my-endpoint", body=request)
    assert status == 200, body
    assert headers["azureml-model-deployment"] == "blue"
    assert [round(x, 3) for x in body] == [11055.977, 4503.080]

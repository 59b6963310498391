"""Scoring script with Azure ML's contract: init() once, run(raw_data) per request.

The model is a JSON file of linear-regression coefficients, so the environment needs no numeric
packages. AZUREML_MODEL_DIR points at the folder the model was copied to (Azure puts the model's
own folder inside it), so model.json is looked up below it.
"""

import json
import logging
import os
from pathlib import Path

model = None


def _find_model(model_dir: str) -> Path:
    direct = Path(model_dir) / "model.json"
    if direct.is_file():
        return direct
    found = sorted(Path(model_dir).rglob("model.json"))
    if not found:
        raise FileNotFoundError(f"no model.json under AZUREML_MODEL_DIR={model_dir}")
    return found[0]


def init():
    global model
    path = _find_model(os.environ["AZUREML_MODEL_DIR"])
    model = json.loads(path.read_text())
    if len(model["coefficients"]) != model["features"]:
        raise ValueError(f"{path}: {len(model['coefficients'])} coefficients for {model['features']} features")
    logging.info("Init complete: %s", path)


def run(raw_data):
    """{"data": [[x1..x10], ...]} -> [prediction, ...]"""
    rows = json.loads(raw_data)["data"]
    coefficients, intercept = model["coefficients"], model["intercept"]
    predictions = []
    for row in rows:
        if len(row) != len(coefficients):
            raise ValueError(f"expected {len(coefficients)} features per row, got {len(row)}")
        predictions.append(intercept + sum(c * float(x) for c, x in zip(coefficients, row, strict=True)))
    logging.info("Request processed: %d rows", len(rows))
    return predictions

"""A deployment's ``data_collector``, as Azure ML's own schema reads it.

azure-ai-ml's ``DataCollectorSchema``: ``collections`` (required: a mapping of collection name,
``model_inputs``, ``model_outputs``, ``request``, ``response`` or a name of the user's own, to a
collection), ``rolling_rate`` (``minute``, ``hour`` or ``day``), ``sampling_rate`` (0.0 to 1.0)
and ``request_logging`` (``capture_headers``: header names). A collection has ``enabled``
(required: the text ``'true'`` or ``'false'``, as Azure spells it; a YAML boolean is refused, as
Azure refuses it), ``data`` (a data asset: a string, or ``name``/``path``/``version``/``data_id``
strings) and ``client_id``. Unknown keys are refused at every level.

The models here give the shapes; ``check_data_collector`` the values (problems as
``(path, message, hint)``, for the caller to make ``Problem`` values of).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

ROLLING_RATES = ("minute", "hour", "day")
ENABLED = ("true", "false")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataAssetDoc(_Strict):
    name: str | None = None
    path: str | None = None
    version: str | None = None
    data_id: str | None = None


class CollectionDoc(_Strict):
    enabled: str
    data: Any = None  # a string or a DataAssetDoc: checked by check_data_collector
    client_id: str | None = None


class RequestLoggingDoc(_Strict):
    capture_headers: list[str] | None = None


class DataCollectorDoc(_Strict):
    collections: dict[str, CollectionDoc]
    rolling_rate: str | None = None
    sampling_rate: float | None = None
    request_logging: RequestLoggingDoc | None = None


Found = tuple[tuple[Any, ...], str, str]


def check_data_collector(doc: DataCollectorDoc, prefix: tuple[Any, ...] = ("data_collector",)) -> list[Found]:
    """The values Azure refuses in a ``data_collector`` that has the right shape."""
    out: list[Found] = []
    rate = doc.rolling_rate
    if rate is not None and rate.lower() not in ROLLING_RATES:
        out.append(((*prefix, "rolling_rate"), f"{rate!r} is not a rolling rate", "use one of: minute, hour, day"))
    if doc.sampling_rate is not None and not 0.0 <= doc.sampling_rate <= 1.0:
        out.append(((*prefix, "sampling_rate"), f"{doc.sampling_rate:g} is not a sampling rate",
                    "a fraction of requests from 0.0 to 1.0, e.g. 0.25"))
    for name, collection in doc.collections.items():
        where = (*prefix, "collections", name)
        if collection.enabled.lower() not in ENABLED:
            out.append(((*where, "enabled"), f"{collection.enabled!r} is not 'true' or 'false'",
                        "write enabled: 'true' or enabled: 'false' (quoted: Azure reads text here)"))
        out += _check_data(collection.data, (*where, "data"))
    return out


def _check_data(data: Any, where: tuple[Any, ...]) -> list[Found]:
    if data is None or isinstance(data, str):
        return []
    if not isinstance(data, dict):
        return [(where, f"wrong type: got {data!r}", "expected a data asset name or a mapping of name, path, version")]
    out: list[Found] = []
    known = set(DataAssetDoc.model_fields)
    for key, value in data.items():
        if key not in known:
            out.append(((*where, key), f"unknown field {key!r}", "allowed fields: " + ", ".join(sorted(known))))
        elif value is not None and not isinstance(value, str):
            out.append(((*where, key), f"wrong type: got {value!r}", f"expected a string: {key}: \"{value}\""))
    return out


__all__ = [
    "CollectionDoc",
    "DataAssetDoc",
    "DataCollectorDoc",
    "ENABLED",
    "Found",
    "ROLLING_RATES",
    "RequestLoggingDoc",
    "check_data_collector",
]

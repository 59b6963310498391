"""Validation of v1 data against the models, with one ``Diagnostic`` per problem.

Contract: ``parse(model, file, data, at)`` returns the model instance or raises ``ConfigError``
carrying every problem of that mapping, each naming the file, the line, the key path as the user
wrote it, what is wrong and what would be right. A secret's value is never put in a message.
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, ValidationError

from reconciler.migrate.files import V1File
from reconciler.migrate.models import ENDPOINT_ONLY, SECRETS
from reconciler.model.errors import ConfigError, Diagnostic

M = TypeVar("M", bound=BaseModel)
Path = tuple[str | int, ...]

_EXPECTED = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "dict": "a mapping",
    "model": "a mapping",
    "list": "a list",
}


def spellings(model: type[BaseModel], name: str) -> tuple[str, ...]:
    """Every key that sets field ``name`` of ``model`` (the SDK's name first where it has two)."""
    alias = model.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(c) for c in alias.choices)
    return (name,)


def allowed_keys(model: type[BaseModel]) -> list[str]:
    return sorted({s for n in model.model_fields for s in spellings(model, n)})


def parse(model: type[M], f: V1File, data: Any, at: Path = ()) -> M:
    """``data`` (the mapping at key path ``at`` of ``f``) as a ``model``; ``ConfigError`` otherwise."""
    if not isinstance(data, dict):
        got = type(data).__name__ if data is not None else "nothing"
        raise ConfigError(f.diagnostic(at, f"expected a mapping of settings, got {got}",
                                       "write `key: value` pairs (a JSON object)"))
    problems, repeated = _twice(model, f, data, at)
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not (e["type"] == "extra_forbidden" and e["loc"] in repeated)]
        problems += [_problem(model, f, at, err) for err in errors]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return result


def _twice(model: type[BaseModel], f: V1File, data: dict[str, Any], at: Path) -> tuple[list[Diagnostic], set[Any]]:
    """A setting given under both of its spellings in one mapping (pydantic would keep one and call
    the other unknown): the problems, and the ``loc`` of each repeated key."""
    out, repeated = [], set()
    for name in model.model_fields:
        given = [s for s in spellings(model, name) if s in data]
        for again in given[1:]:
            repeated.add((again,))
            out.append(f.diagnostic((*at, again), f"{again!r} repeats {given[0]!r} (the same setting)",
                                    "keep one of the two spellings"))
    return out, repeated


def _problem(model: type[BaseModel], f: V1File, at: Path, err: Any) -> Diagnostic:
    loc: Path = (*at, *err["loc"])
    kind = str(err["type"])
    secret = any(str(part) in SECRETS or str(part) in ("primaryKey", "secondaryKey") for part in loc)
    if kind == "extra_forbidden":
        return f.diagnostic(loc, f"unknown key {loc[-1]!r}", _unknown_hint(model, err["loc"]))
    if kind == "missing":
        return f.diagnostic(loc, "required key is missing", f"add `{loc[-1]}:`")
    expected = _EXPECTED.get(kind.split("_")[0])
    if expected is None:
        return f.diagnostic(loc, str(err["msg"]))
    got = "a value of the wrong type" if secret else f"{err.get('input')!r}"
    return f.diagnostic(loc, f"wrong type: got {got}", f"expected {expected}")


def _unknown_hint(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    key = str(loc[-1])
    inner = _model_at(model, loc[:-1])
    if inner is not None and key in ENDPOINT_ONLY and "auth_enabled" not in inner.model_fields:
        return f"{key} is a setting of the whole endpoint: put it in the deployment config"
    choices = allowed_keys(inner) if inner is not None else []
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "accepted keys: " + ", ".join(choices) if choices else "remove it"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: type[BaseModel] = model
    for part in loc:
        field = next((fl for n, fl in current.model_fields.items() if part in spellings(current, n)), None)
        sub = _submodel(field.annotation) if field is not None else None
        if sub is None:
            return None
        current = sub
    return current


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _submodel(arg)
        if found is not None:
            return found
    return None

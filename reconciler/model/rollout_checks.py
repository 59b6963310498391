"""Reading recon.yaml's ``rollout:`` section: its values parsed, every mistake a ``Problem``.

What is accepted (the README's "Guarded rollouts" section shows it whole)::

    rollout:
      analysis:
        bake: 30s                 # a duration: 30s, 5m, 1m30s, 500ms, 1.5s, 1h (or a number of seconds); > 0
        min_requests: 50          # a whole number >= 1
        on_inconclusive: proceed  # proceed | wait | fail
        max_wait: 5m              # on_inconclusive: wait bakes more windows until min_requests, up to this
        max_error_rate: 1%        # "N%" (0..100) or a fraction 0..1
        max_latency_p99: 1.5x     # "Nx" (N > 1: times the old configuration's p99) or a duration
        overrides:                # first match wins: fnmatch globs on addresses; any key above
          - match: "deployment.my-endpoint.*"
            bake: 60s
      traffic_steps: [10, 50, 100]  # strictly increasing whole percentages in 1..100, ending at 100
      on_failure: rollback        # rollback | pause

Nothing here knows files or lines: problems carry the field path under ``rollout`` and the loader
places them (``reconciler.load.loader``). Unknown keys are errors with a "did you mean".
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.model.checks import Problem, suggest
from reconciler.model.rollout import (
    DEFAULT_TRAFFIC_STEPS,
    ON_FAILURE,
    ON_INCONCLUSIVE,
    Analysis,
    LatencyLimit,
    OnFailure,
    RolloutSettings,
    format_duration,
)

SECTION_KEYS = ("analysis", "traffic_steps", "on_failure")
ANALYSIS_KEYS = ("bake", "min_requests", "on_inconclusive", "max_wait", "max_error_rate", "max_latency_p99")
_DURATION_RE = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?(?:(?P<s>\d+(?:\.\d+)?)s)?(?:(?P<ms>\d+(?:\.\d+)?)ms)?$"
)
_DURATION_HINT = "a duration such as 30s, 5m, 1m30s or 500ms"
_RATE_HINT = "a percentage such as 1% or 0.5%, or a fraction from 0 to 1 such as 0.01"
_LATENCY_HINT = "a factor of the old configuration's p99 above 1, such as 1.5x, or a duration such as 500ms or 2s"
_STEPS_HINT = "strictly increasing whole percentages from 1 to 100 that end at 100, such as [10, 50, 100]"

Path = tuple[str | int, ...]


def parse_duration(value: Any) -> float | None:
    """Seconds from ``30s``, ``5m``, ``1m30s``, ``500ms``, ``1.5s``, ``1h`` or a number of seconds;
    None when ``value`` is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace(" ", "")
    match = _DURATION_RE.match(text)
    if not text or match is None or not any(match.groupdict().values()):
        return None
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    return parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0) + parts.get("ms", 0) / 1000


def parse_rate(value: Any) -> float | None:
    """A fraction from ``1%`` / ``0.5 %`` / ``0.01``; None when it is not a number or a percentage
    (the range is checked by the caller, to say which bound was crossed)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1].strip()) / 100
        except ValueError:
            return None
    return None


def parse_latency(value: Any) -> LatencyLimit | str:
    """A ``LatencyLimit`` from ``1.5x`` or a duration, or the problem's message."""
    if isinstance(value, str) and value.strip().lower().endswith("x"):
        try:
            factor = float(value.strip()[:-1])
        except ValueError:
            return f"{value!r} is not a factor"
        if factor <= 1.0:
            return f"{value!r} is not above 1x (the old configuration's own noise would fail every step)"
        return LatencyLimit(relative=factor)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value!r} has no unit: write {value}x for a factor of the old p99, or {value}s for seconds"
    seconds = parse_duration(value)
    if seconds is None:
        return f"{value!r} is neither a factor nor a duration"
    if seconds <= 0:
        return f"{value!r} is not above zero"
    return LatencyLimit(absolute_s=seconds)


class _Reader:
    """Collects problems while reading one section."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, path: Path, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(("rollout", *path), message, hint))

    def warn(self, path: Path, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(("rollout", *path), message, hint, severity="warning"))

    def mapping(self, value: Any, path: Path, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """``value`` as a mapping whose keys are all in ``keys`` (unknown ones reported)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, not {_kind(value)}", "keys: " + ", ".join(keys))
            return None
        for key in value:
            if key not in keys:
                hint = suggest(str(key), keys)
                self.error((*path, key), f"unknown key {key!r}", (hint + "; " if hint else "") + "known keys: " + ", ".join(keys))
        return value

    def analysis(self, raw: dict[str, Any], base: Analysis, path: Path) -> Analysis:
        """``base`` with the keys of ``raw`` read over it."""
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key in ANALYSIS_KEYS:
                read = getattr(self, "_" + key)((*path, key), value)
                if read is not None:
                    values.update(read)
        analysis = base.model_copy(update=values)
        if analysis.on_inconclusive == "wait" and analysis.max_wait_s < analysis.bake_s:
            where = "max_wait" if "max_wait" in raw else ("bake" if "bake" in raw else "on_inconclusive")
            self.error(
                (*path, where),
                f"max_wait {format_duration(analysis.max_wait_s)} is shorter than one bake of "
                f"{format_duration(analysis.bake_s)}",
                "make max_wait at least as long as bake",
            )
        return analysis

    def _duration(self, path: Path, value: Any) -> float | None:
        seconds = parse_duration(value)
        if seconds is None:
            self.error(path, f"{value!r} is not a duration", _DURATION_HINT)
        elif seconds <= 0:
            self.error(path, f"{value!r} is not above zero", _DURATION_HINT)
        else:
            return seconds
        return None

    def _bake(self, path: Path, value: Any) -> dict[str, Any] | None:
        seconds = self._duration(path, value)
        return None if seconds is None else {"bake_s": seconds}

    def _max_wait(self, path: Path, value: Any) -> dict[str, Any] | None:
        seconds = self._duration(path, value)
        return None if seconds is None else {"max_wait_s": seconds}

    def _min_requests(self, path: Path, value: Any) -> dict[str, Any] | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.error(path, f"{value!r} is not a whole number >= 1", "e.g. min_requests: 50")
            return None
        return {"min_requests": value}

    def _on_inconclusive(self, path: Path, value: Any) -> dict[str, Any] | None:
        return self._choice(path, value, ON_INCONCLUSIVE, "on_inconclusive")

    def _choice(self, path: Path, value: Any, choices: tuple[str, ...], key: str) -> dict[str, Any] | None:
        if value not in choices:
            hint = suggest(str(value), choices) if isinstance(value, str) else None
            self.error(path, f"{value!r} is not one of {', '.join(choices)}", (hint + "; " if hint else "") + "use one of: " + ", ".join(choices))
            return None
        return {key: value}

    def _max_error_rate(self, path: Path, value: Any) -> dict[str, Any] | None:
        rate = parse_rate(value)
        if rate is None:
            self.error(path, f"{value!r} is not a rate", _RATE_HINT)
        elif rate < 0:
            self.error(path, f"{value!r} is below zero", _RATE_HINT)
        elif rate > 1 and isinstance(value, str):
            self.error(path, f"{value!r} is over 100%", _RATE_HINT)
        elif rate > 1:
            self.error(path, f"{value!r} is over 1 (a fraction)", f"write {value}% for a percentage, or {_RATE_HINT}")
        else:
            return {"max_error_rate": rate}
        return None

    def _max_latency_p99(self, path: Path, value: Any) -> dict[str, Any] | None:
        limit = parse_latency(value)
        if isinstance(limit, str):
            self.error(path, limit, _LATENCY_HINT)
            return None
        return {"max_latency_p99": limit}

    def traffic_steps(self, value: Any) -> tuple[int, ...]:
        path: Path = ("traffic_steps",)
        if not isinstance(value, list) or not value:
            self.error(path, f"must be a non-empty list, not {_kind(value)}", _STEPS_HINT)
            return DEFAULT_TRAFFIC_STEPS
        ok = True
        for i, step in enumerate(value):
            if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 100:
                self.error((*path, i), f"{step!r} is not a whole percentage from 1 to 100", _STEPS_HINT)
                ok = False
            elif i and isinstance(value[i - 1], int) and step <= value[i - 1]:
                self.error((*path, i), f"{step} does not come after {value[i - 1]}", _STEPS_HINT)
                ok = False
        if ok and value[-1] != 100:
            self.error((*path, len(value) - 1), f"the last step is {value[-1]}%, not 100%", _STEPS_HINT)
            ok = False
        return tuple(value) if ok else DEFAULT_TRAFFIC_STEPS

    def overrides(self, value: Any, base: Analysis) -> tuple[tuple[str, Analysis], ...]:
        path: Path = ("analysis", "overrides")
        if value is None:
            return ()
        example = 'e.g. [{match: "deployment.my-endpoint.*", bake: 60s}]'
        if not isinstance(value, list):
            self.error(path, f"must be a list, not {_kind(value)}", example)
            return ()
        found: list[tuple[str, Analysis]] = []
        for i, raw in enumerate(value):
            entry = self.mapping(raw, (*path, i), ("match", *ANALYSIS_KEYS))
            if entry is None:
                continue
            glob = entry.get("match")
            if not isinstance(glob, str) or not glob.strip():
                self.error((*path, i, "match"), "each override needs a `match:` glob of addresses", example)
                continue
            rest = {k: v for k, v in entry.items() if k != "match"}
            found.append((glob, self.analysis(rest, base, (*path, i)).model_copy(update={"matched": glob})))
        return tuple(found)


def parse_rollout(raw: Any) -> tuple[RolloutSettings | None, list[Problem]]:
    """recon.yaml's ``rollout`` value (None: absent) read into settings, and what is wrong with it.

    With errors the settings returned are None (the loader refuses the file anyway)."""
    if raw is None:
        return None, []
    reader = _Reader()
    section = reader.mapping(raw, (), SECTION_KEYS)
    if section is None:
        return None, reader.problems
    analysis: Analysis | None = None
    overrides: tuple[tuple[str, Analysis], ...] = ()
    if section.get("analysis") is not None:
        body = reader.mapping(section["analysis"], ("analysis",), (*ANALYSIS_KEYS, "overrides"))
        if body is not None:
            analysis = reader.analysis({k: v for k, v in body.items() if k != "overrides"}, Analysis(), ("analysis",))
            overrides = reader.overrides(body.get("overrides"), analysis)
    steps: tuple[int, ...] = DEFAULT_TRAFFIC_STEPS
    if "traffic_steps" in section:
        steps = reader.traffic_steps(section["traffic_steps"])
        if analysis is None and steps != DEFAULT_TRAFFIC_STEPS:
            reader.warn(("traffic_steps",), "traffic_steps has no effect without rollout.analysis: "
                        "a traffic change moves at once", "add `analysis:` (even `analysis: {}`) to judge each step")
    on_failure: OnFailure = "rollback"
    if "on_failure" in section:
        chosen = reader._choice(("on_failure",), section["on_failure"], ON_FAILURE, "on_failure")
        on_failure = chosen["on_failure"] if chosen else on_failure
    if any(p.severity == "error" for p in reader.problems):
        return None, reader.problems
    settings = RolloutSettings(analysis=analysis, overrides=overrides, traffic_steps=steps, on_failure=on_failure)
    return settings, reader.problems


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {"str": "a string", "int": "a number", "float": "a number", "bool": "true/false", "list": "a list",
            "dict": "a mapping"}.get(type(value).__name__, type(value).__name__)


__all__ = ["ANALYSIS_KEYS", "SECTION_KEYS", "parse_duration", "parse_latency", "parse_rate", "parse_rollout"]

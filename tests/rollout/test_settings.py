"""recon.yaml's ``rollout:`` section: accepted values, defaults, overrides, and errors that name
recon.yaml, the line and the field (through the real loader)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.load.loader import load_settings
from reconciler.model.errors import ConfigError
from reconciler.model.rollout import Analysis, LatencyLimit, RolloutSettings, format_duration, format_rate
from reconciler.model.rollout_checks import parse_duration, parse_latency, parse_rate, parse_rollout

FULL = """\
workspace: ws1
rollout:
  analysis:
    bake: 1m30s
    min_requests: 20
    on_inconclusive: wait
    max_wait: 5m
    max_error_rate: 2%
    max_latency_p99: 1.5x
    overrides:
      - match: "deployment.my-endpoint.*"
        bake: 60s
        max_latency_p99: 800ms
      - match: "endpoint.*"
        min_requests: 5
  traffic_steps: [10, 50, 100]
  on_failure: pause
"""


def errors_of(tmp_path: Path, text: str) -> list[tuple[int | None, str | None, str]]:
    (tmp_path / "recon.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert all(d.file == "recon.yaml" for d in info.value.diagnostics)
    return [(d.line, d.path, d.message) for d in info.value.diagnostics]


def test_no_section_means_no_gates(tmp_path: Path) -> None:
    (tmp_path / "recon.yaml").write_text("workspace: ws1\n")
    assert load_settings(tmp_path).rollout is None
    (tmp_path / "recon.yaml").unlink()
    assert load_settings(tmp_path).rollout is None


def test_full_section_is_read(tmp_path: Path) -> None:
    (tmp_path / "recon.yaml").write_text(FULL)
    rollout = load_settings(tmp_path).rollout
    assert rollout is not None and rollout.guarded
    assert rollout.analysis == Analysis(
        bake_s=90, min_requests=20, on_inconclusive="wait", max_wait_s=300, max_error_rate=0.02,
        max_latency_p99=LatencyLimit(relative=1.5),
    )
    assert rollout.traffic_steps == (10, 50, 100) and rollout.on_failure == "pause"
    blue = rollout.analysis_for("deployment.my-endpoint.blue")
    assert blue is not None and blue.bake_s == 60 and blue.max_latency_p99 == LatencyLimit(absolute_s=0.8)
    assert blue.min_requests == 20 and blue.max_error_rate == 0.02 and blue.matched == "deployment.my-endpoint.*"
    # first match wins, in file order; any address given may match
    ep = rollout.analysis_for("endpoint.my-endpoint", "deployment.other.green")
    assert ep is not None and ep.min_requests == 5 and ep.bake_s == 90
    both = rollout.analysis_for("endpoint.my-endpoint", "deployment.my-endpoint.green")
    assert both is not None and both.matched == "deployment.my-endpoint.*"
    assert rollout.analysis_for("deployment.other.green") == rollout.analysis


def test_empty_analysis_takes_every_default(tmp_path: Path) -> None:
    (tmp_path / "recon.yaml").write_text("rollout:\n  analysis: {}\n")
    rollout = load_settings(tmp_path).rollout
    assert rollout == RolloutSettings(analysis=Analysis())
    assert rollout.analysis is not None and rollout.analysis.describe() == "bake 30s, 5xx <= 1%, >= 50 requests"


def test_without_analysis_traffic_steps_warn_and_nothing_is_judged(tmp_path: Path) -> None:
    settings, problems = parse_rollout({"traffic_steps": [50, 100]})
    assert settings is not None and not settings.guarded and settings.analysis_for("endpoint.e") is None
    assert [p.severity for p in problems] == ["warning"] and "no effect" in problems[0].message


def test_settings_change_the_desired_digest_only_when_present(tmp_path: Path) -> None:
    from tests.engine.helpers import desired

    plain = desired(tmp_path)
    guarded = plain.model_copy(update={"rollout": RolloutSettings(analysis=Analysis())})
    other = plain.model_copy(update={"rollout": RolloutSettings(analysis=Analysis(bake_s=60))})
    assert len({plain.digest, guarded.digest, other.digest}) == 3
    assert plain.model_copy(update={"rollout": None}).digest == plain.digest


@pytest.mark.parametrize(
    ("text", "line", "path", "words"),
    [
        ("rollout:\n  analysis:\n    bak: 30s\n", 3, "rollout.analysis.bak", "unknown key 'bak'"),
        ("rollout:\n  analyses: {}\n", 2, "rollout.analyses", "unknown key 'analyses'"),
        ("rollout:\n  analysis:\n    bake: soon\n", 3, "rollout.analysis.bake", "is not a duration"),
        ("rollout:\n  analysis:\n    bake: 0s\n", 3, "rollout.analysis.bake", "not above zero"),
        ("rollout:\n  analysis:\n    min_requests: 0\n", 3, "rollout.analysis.min_requests", "whole number >= 1"),
        ("rollout:\n  analysis:\n    min_requests: true\n", 3, "rollout.analysis.min_requests", "whole number"),
        ("rollout:\n  analysis:\n    on_inconclusive: wiat\n", 3, "rollout.analysis.on_inconclusive", "not one of"),
        ("rollout:\n  analysis:\n    max_error_rate: 101%\n", 3, "rollout.analysis.max_error_rate", "over 100%"),
        ("rollout:\n  analysis:\n    max_error_rate: 5\n", 3, "rollout.analysis.max_error_rate", "over 1"),
        ("rollout:\n  analysis:\n    max_error_rate: -1%\n", 3, "rollout.analysis.max_error_rate", "below zero"),
        ("rollout:\n  analysis:\n    max_latency_p99: 1.0x\n", 3, "rollout.analysis.max_latency_p99", "not above 1x"),
        ("rollout:\n  analysis:\n    max_latency_p99: 0.5x\n", 3, "rollout.analysis.max_latency_p99", "not above 1x"),
        ("rollout:\n  analysis:\n    max_latency_p99: 2\n", 3, "rollout.analysis.max_latency_p99", "has no unit"),
        ("rollout:\n  analysis:\n    max_latency_p99: fast\n", 3, "rollout.analysis.max_latency_p99", "neither"),
        ("rollout:\n  analysis:\n    on_inconclusive: wait\n    max_wait: 10s\n", 4, "rollout.analysis.max_wait",
         "shorter than one bake"),
        ("rollout:\n  traffic_steps: [10, 50]\n", 2, "rollout.traffic_steps.1", "not 100%"),
        ("rollout:\n  traffic_steps: [50, 10, 100]\n", 2, "rollout.traffic_steps.1", "does not come after 50"),
        ("rollout:\n  traffic_steps: [0, 100]\n", 2, "rollout.traffic_steps.0", "from 1 to 100"),
        ("rollout:\n  traffic_steps: [10, 50, 150]\n", 2, "rollout.traffic_steps.2", "from 1 to 100"),
        ("rollout:\n  traffic_steps: 100\n", 2, "rollout.traffic_steps", "non-empty list"),
        ("rollout:\n  on_failure: rollbak\n", 2, "rollout.on_failure", "not one of rollback, pause"),
        ("rollout: [1]\n", 1, "rollout", "must be a mapping"),
        ("rollout:\n  analysis:\n    overrides:\n      - bake: 60s\n", 4, "rollout.analysis.overrides.0.match",
         "needs a `match:`"),
        ("rollout:\n  analysis:\n    overrides:\n      - match: 'endpoint.*'\n        bak: 60s\n", 5,
         "rollout.analysis.overrides.0.bak", "unknown key"),
        ("rollout:\n  analysis:\n    overrides:\n      - match: 'endpoint.*'\n        max_error_rate: 200%\n", 5,
         "rollout.analysis.overrides.0.max_error_rate", "over 100%"),
    ],
)
def test_bad_values_name_file_line_and_field(tmp_path: Path, text: str, line: int, path: str, words: str) -> None:
    found = errors_of(tmp_path, text)
    assert any(ln == line and p == path and words in msg for ln, p, msg in found), found


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    found = errors_of(tmp_path, "rollout:\n  analysis:\n    bake: x\n    min_requests: 0\n  on_failure: no\n")
    assert [p for _, p, _ in found] == ["rollout.analysis.bake", "rollout.analysis.min_requests", "rollout.on_failure"]


def test_unknown_key_suggests_the_right_one() -> None:
    _, problems = parse_rollout({"analysis": {"max_error": "1%"}})
    assert problems[0].hint is not None and "did you mean 'max_error_rate'?" in problems[0].hint


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1m30s", 90), ("500ms", 0.5), ("1.5s", 1.5), ("1h", 3600), ("2m 5s", 125), (45, 45)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5", "5 minutes", "m5", "1s1m", True, None, [1]])
def test_not_durations(text: object) -> None:
    assert parse_duration(text) is None


def test_rates_and_latencies() -> None:
    assert parse_rate("1%") == 0.01 and parse_rate("0.5 %") == 0.005 and parse_rate(0.02) == 0.02
    assert parse_rate("one") is None and parse_rate(True) is None
    assert parse_latency("1.5x") == LatencyLimit(relative=1.5)
    assert parse_latency("2S") == LatencyLimit(absolute_s=2.0)
    assert parse_latency("250ms") == LatencyLimit(absolute_s=0.25)
    assert isinstance(parse_latency("1x"), str)


def test_formatting_round_trips_what_recon_yaml_accepts() -> None:
    for seconds in (0.25, 1.5, 30, 60, 90, 300, 3600, 3725):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
    assert format_duration(90) == "1m30s" and format_duration(0.5) == "500ms"
    assert format_rate(0.01) == "1%" and format_rate(0.005) == "0.5%"

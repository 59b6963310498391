"""The v2 traffic map of an AksEndpoint's versions, by v1's rules.

Contract: ``traffic_map(versions, problems)`` returns ``{deployment: percent}`` summing to 100, or
appends a diagnostic and returns ``{}``. Rules (AksEndpoint): exactly one version is the default
(a single version is; otherwise the one marked ``is_default``, else the config's own version);
every other version, control or treatment, keeps its ``traffic_percentile`` (absent: 0); those
shares may total at most 100, and the default version takes the rest. The default version's own
``traffic_percentile`` is not a share of its own (v1 gave it what the others left): when it states
another number, a warning says so and the rest is what it takes.
"""

from __future__ import annotations

from reconciler.migrate.version import Version
from reconciler.model.errors import Diagnostic


def _share(v: Version) -> int:
    value = v.settings["traffic_percentile"].value
    return int(value) if value is not None else 0


def _key(v: Version, name: str) -> tuple[str | int, ...]:
    s = v.settings.get(name) or v.extra.get(name)
    key = s.key if s is not None and s.key else name
    return (*v.at, *key.split("."))


def pick_default(versions: list[Version], problems: list[Diagnostic]) -> Version | None:
    """The default version (marking it), or None with a problem."""
    marked = [v for v in versions if v.is_default]
    if len(marked) > 1:
        second = marked[1]
        problems.append(second.file.diagnostic(
            _key(second, "is_default"),
            f"versions {marked[0].name!r} and {second.name!r} are both is_default: true",
            "an AksEndpoint has one default version: keep is_default on one"))
        return None
    if marked:
        return marked[0]
    own = [v for v in versions if not v.at]  # the deployment config's version
    if len(versions) == 1 or own:
        chosen = own[0] if own else versions[0]
        chosen.is_default = True
        return chosen
    first = versions[0]
    problems.append(first.file.diagnostic((), "no version is the default (is_default: true)",
                                          "mark the version that takes the rest of the traffic"))
    return None


def traffic_map(versions: list[Version], problems: list[Diagnostic], warnings: list[Diagnostic]) -> dict[str, int]:
    """See the module docstring."""
    default = pick_default(versions, problems)
    if default is None:
        return {}
    others = [v for v in versions if v is not default]
    taken = sum(_share(v) for v in others)
    if taken > 100:
        shares = ", ".join(f"{v.name} {_share(v)}%" for v in others if _share(v))
        last = next(v for v in reversed(others) if _share(v))
        problems.append(last.file.diagnostic(
            _key(last, "traffic_percentile"),
            f"the versions besides the default take {taken}% ({shares})",
            f"v1 allowed at most 100% besides the default version {default.name!r}, which takes the rest"))
        return {}
    rest = 100 - taken
    stated = default.settings["traffic_percentile"].value
    if stated is not None and stated != rest:
        warnings.append(default.file.diagnostic(
            _key(default, "traffic_percentile"),
            f"ignored: {default.name!r} is the default version: it takes the traffic the others leave, {rest}%, "
            f"not the {stated}% it states (as in v1)", f"drop its traffic_percentile or make it {rest}",
            severity="warning"))
    return {v.name: (rest if v is default else _share(v)) for v in versions}

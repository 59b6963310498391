"""The arithmetic of scaling and rolling a deployment's instances, the same for processes and
containers (local, docker): which configuration a scale-up clones, which instances a scale-down or a
rollout batch retires, instance numbers, the configuration digest, drain times, and the error a failed
start becomes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from providers.shared import procs
from providers.shared.probes import StartFailure
from reconciler.model.errors import PermanentError
from reconciler.model.resources import DeploymentAttrs, ModelAttrs, digest_of


def start_error(address: str, failure: StartFailure, what: str = "instance") -> PermanentError:
    """The error of a batch whose new instances did not become ready: one line that says so, and
    the last lines of the failing instance's log in ``detail`` (shown once, under the error)."""
    lines = failure.log_tail or [f"(the {what} wrote nothing to its log)"]
    return PermanentError(f"{address}: {failure.reason}; the old instances keep serving", detail=lines)


def instance_count(attrs: DeploymentAttrs, default: int) -> int:
    value = attrs.get("instance_count")
    return default if value is None else int(value)


def drain_timeout(attrs: DeploymentAttrs) -> float:
    """How long requests in flight on a removed instance may take: its request timeout, plus 1 s."""
    timeout_ms = (attrs.get("request_settings") or {}).get("request_timeout_ms") or 5000
    return float(timeout_ms) / 1000 + 1.0


class _Instance(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def config_digest(self) -> str: ...


_I = TypeVar("_I", bound=_Instance)


def running_digest(healthy: Sequence[_Instance]) -> str | None:
    """The configuration a scale-up clones: the one most healthy instances run (template changes
    come after, in the rollout, as the service does); None when nothing runs."""
    running = Counter(i.config_digest for i in healthy).most_common(1)
    return running[0][0] if running else None


def settle_each_config(live: Sequence[_I], load_config: Callable[[str], Any],
                       settle: Callable[[list[_I], Any], list[_I]]) -> list[_I]:
    """``settle`` (keep those that become ready, stop the others) for instances of any configuration
    (an interrupted apply may have left some of each starting), one configuration at a time;
    instances of a configuration that cannot be loaded are kept as they are."""
    groups: dict[str, list[_I]] = {}
    for inst in live:
        groups.setdefault(inst.config_digest, []).append(inst)
    settled: list[_I] = []
    for digest, group in groups.items():
        config = load_config(digest) if digest else None
        settled += settle(group, config) if config is not None else group
    return sorted(settled, key=lambda i: i.id)


def surplus(healthy: Sequence[_I], count: int, desired: str) -> list[_I]:
    """The instances a scale-down to ``count`` stops: those of an old configuration first, then
    the newest."""
    ordered = sorted(healthy, key=lambda i: (i.config_digest == desired, -i.id))
    return ordered[: max(0, len(healthy) - count)]


def batch_moves(live: Sequence[_I], stale: Sequence[_I], count: int, size: int) -> tuple[list[_I], int]:
    """One rollout batch: (the stale instances it retires, how many new ones it starts).

    ``size`` new instances come up before as many old ones go. With more live instances than
    ``count`` a batch was interrupted after its new ones started: this one only retires."""
    size = max(1, size)
    if len(live) > count:
        return list(stale[: min(size, len(live) - count)]), 0
    retire = list(stale[: min(size, len(stale))])
    return retire, len(retire)


STOP_GRACE = 10.0  # seconds a drained instance has to finish before SIGKILL


def upstreams(instances: Sequence[Any]) -> list[str]:
    """The router addresses of the instances that have one, in instance order."""
    return [u for i in sorted(instances, key=lambda i: i.id) if (u := i.upstream()) is not None]


def pool_digests(instances: Sequence[Any]) -> dict[str, str]:
    """The routing table's ``digests`` of ``instances`` (each with ``config_digest`` and ``upstream()``,
    its address or None): address -> the configuration it runs."""
    return {u: str(i.config_digest or "") for i in instances if (u := i.upstream()) is not None}


def next_instance_ids(run: Path, n: int, used: Sequence[int] = ()) -> list[int]:
    """``n`` new instance numbers for the deployment whose folder is ``run``: numbers grow and are
    never given twice (``run/seq`` keeps the last one, under a lock; ``used`` are numbers in use)."""
    run.mkdir(parents=True, exist_ok=True)
    with procs.file_lock(run / "seq.lock"):
        seq_file = run / "seq"
        try:
            last = int(seq_file.read_text().strip())
        except (OSError, ValueError):
            last = 0
        last = max([last, *used])
        seq_file.write_text(f"{last + n}\n")
    return list(range(last + 1, last + 1 + n))


def config_digest(attrs: DeploymentAttrs, model: ModelAttrs | None, **runtime: Any) -> str:
    """The digest of a deployment's configuration: what its instances run (code, script, model,
    variables, settings, probes, instance type) plus what the provider runs them on (``runtime``:
    the environment's digest, an image, limits). Instances at the desired digest are never replaced."""
    return digest_of({
        "code": attrs.get("code"),
        "scoring_script": attrs.get("scoring_script"),
        "model": [model.get("name"), model.get("version"), model.get("content_digest")] if model
        else attrs.get("model"),
        "environment_variables": attrs.get("environment_variables") or {},
        "request_settings": attrs.get("request_settings"),
        "liveness_probe": attrs.get("liveness_probe"),
        "readiness_probe": attrs.get("readiness_probe"),
        "instance_type": attrs.get("instance_type"),
        **runtime,
    })

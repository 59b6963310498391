"""providers.shared.rolling: the scaling and rolling arithmetic the local and Docker providers share."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from providers.shared.rolling import batch_moves, running_digest, surplus


@dataclass(frozen=True)
class Inst:
    id: int
    config_digest: str


def _fleet(*digests: str) -> list[Inst]:
    return [Inst(i + 1, d) for i, d in enumerate(digests)]


def test_a_scale_up_clones_what_most_instances_run() -> None:
    assert running_digest(_fleet("old", "old", "new")) == "old"
    assert running_digest([]) is None


def test_a_scale_down_stops_old_configurations_first_then_the_newest() -> None:
    fleet = _fleet("new", "old", "new", "old", "new")
    assert [i.id for i in surplus(fleet, 3, "new")] == [4, 2]
    assert [i.id for i in surplus(fleet, 1, "new")] == [4, 2, 5, 3]
    assert surplus(fleet, 5, "new") == [] and surplus(fleet, 9, "new") == []


@pytest.mark.parametrize(
    ("instances", "size", "batches"),
    [(10, 2, 5), (5, 1, 5), (4, 1, 4), (1, 1, 1), (3, 2, 2)],
)
def test_batches_replace_every_stale_instance_and_never_exceed_count_plus_size(
    instances: int, size: int, batches: int
) -> None:
    live = _fleet(*["old"] * instances)
    done = 0
    while True:
        stale = [i for i in live if i.config_digest == "old"]
        if not stale:
            break
        retire, starting = batch_moves(live, stale, instances, size)
        assert len(retire) == starting <= size
        assert len(live) + starting <= instances + size  # the surge the 20% reserve pays for
        live = [i for i in live if i not in retire] + [Inst(100 + done * size + k, "new") for k in range(starting)]
        done += 1
    assert done == batches and len(live) == instances


def test_a_batch_interrupted_after_its_new_instances_started_only_retires() -> None:
    live = _fleet("new", "new", "old", "old", "old", "old")  # count 4: two new ones came up, nothing retired
    retire, starting = batch_moves(live, live[2:], 4, 2)
    assert [i.id for i in retire] == [3, 4] and starting == 0

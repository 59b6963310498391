"""A second process for the state tests: ``state_worker.py MODE ROOT SETTINGS_JSON [ARGS]``.

Modes:
- ``hold``: take the lock, print ``LOCKED <id>``, sleep until killed.
- ``race-lock N TAG START_AT``: N times: take the lock, read, add ``TAG-i``, write; print ``OK <serial>``
  or ``LOCKED`` / ``CONFLICT`` per attempt, starting at the epoch time START_AT.
- ``race-cas N TAG``: the same without the lock (compare-and-swap alone guards the writes).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from reconciler.model.errors import StateConflictError, StateLockedError
from reconciler.state.document import State, StateResource
from reconciler.state.manager import StateManager, open_state_manager


def _add(mgr: StateManager, tag: str) -> int:
    state = mgr.read()
    resources = dict(state.resources)
    resources[f"model.{tag}:1"] = StateResource(
        address=f"model.{tag}:1", type="model", name=tag, provider="fake", attributes={"tag": tag}
    )
    return mgr.write(State.model_validate(state.model_dump() | {"resources": resources})).serial


def main() -> None:
    mode, root, settings = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    mgr = open_state_manager(root, settings)
    if mode == "hold":
        with mgr.lock("apply") as info:
            print(f"LOCKED {info.id}", flush=True)
            time.sleep(600)
        return
    n, tag, start_at = int(sys.argv[4]), sys.argv[5], float(sys.argv[6])
    mgr.read()  # connect (and create the schema) before the start line
    time.sleep(max(0.0, start_at - time.time()))  # both racers start together
    for i in range(n):
        try:
            if mode == "race-lock":
                with mgr.lock("apply"):
                    serial = _add(mgr, f"{tag}-{i}")
            else:
                serial = _add(mgr, f"{tag}-{i}")
            print(f"OK {tag}-{i} {serial}", flush=True)
        except StateLockedError:
            print("LOCKED", flush=True)
        except StateConflictError:
            print("CONFLICT", flush=True)
        time.sleep(random.uniform(0, 0.004))  # let the other racer in between attempts
    mgr.close()


if __name__ == "__main__":
    main()

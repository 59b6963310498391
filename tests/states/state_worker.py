"""A second process for the state tests: ``state_worker.py MODE ROOT SETTINGS_JSON [ARGS]``.

Modes:
- ``hold``: take the lock, print ``LOCKED <id>``, sleep until killed.
- ``race-lock N TAG START_AT``: N times: take the lock, read, add ``TAG-i``, write; print ``OK <serial>``
  or ``LOCKED`` / ``CONFLICT`` per attempt, starting at the epoch time START_AT.
- ``race-cas N TAG``: the same without the lock (compare-and-swap alone guards the writes).
- ``journal N SIZE``: write a state of SIZE models, then, journaled, N writes that each set
  ``model.m0:1``'s ``step`` to the serial written (``STEP <serial>`` after each), then compact
  (``COMPACTED``); an apply's pattern, killed at random moments by the tests.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

from reconciler.cli.registries import open_state_manager
from reconciler.model.errors import StateConflictError, StateLockedError
from reconciler.state.document import State, StateResource
from reconciler.state.manager import StateManager


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
    if mode == "journal":  # as an apply runs it: without the tests' full check of every write
        os.environ.pop("RECON_VERIFY_STATE_CACHE", None)
        mgr = open_state_manager(root, settings)
        _journal(mgr, int(sys.argv[4]), int(sys.argv[5]))
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


def journal_model(i: int, step: int) -> StateResource:
    return StateResource(address=f"model.m{i}:1", type="model", name=f"m{i}", provider="fake",
                         attributes={"path": f"models/m{i}", "digest": "sha256:" + "ab" * 32, "step": step})


def _journal(mgr: StateManager, n: int, size: int) -> None:
    state = mgr.read()
    resources = {f"model.m{i}:1": journal_model(i, 0) for i in range(size)}
    state = mgr.write(state.model_copy(update={"resources": resources}))
    print(f"BASE {state.serial}", flush=True)
    with mgr.journaled():
        for _ in range(n):
            resources = dict(state.resources)
            resources["model.m0:1"] = journal_model(0, state.serial + 1)
            state = mgr.write(state.model_copy(update={"resources": resources}))
            print(f"STEP {state.serial}", flush=True)
    print("COMPACTED", flush=True)
    mgr.close()


if __name__ == "__main__":
    main()

"""One contract suite, run against every state backend (file and PostgreSQL)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from reconciler.model.errors import LockInfo, StateConflictError, StateError, StateLockedError
from reconciler.state.backend import SupportsHistory, SupportsLocking
from reconciler.state.document import State
from tests.states.state_support import Target, res, wait_line, with_resources


def _doc(serial: int, lineage: str = "lin-a", **extra: object) -> bytes:
    """The bytes of a real state document (the file backend reads serial/lineage from them)."""
    return State(serial=serial, lineage=lineage, workspace=str(extra)).to_bytes()


def _info(op: str = "apply") -> LockInfo:
    import uuid

    return LockInfo(id=str(uuid.uuid4()), operation=op, who="alice@ci-7", created="2024-01-01T00:00:00+00:00")


def test_empty_backend_reads_none_and_manager_gives_fresh_state(target: Target) -> None:
    assert target.backend().read() is None
    mgr = target.manager()
    state = mgr.read()
    assert state.serial == 0 and state.resources == {} and len(state.lineage) == 36
    assert mgr.history() == []


def test_write_read_round_trip(target: Target) -> None:
    b = target.backend()
    b.write(_doc(1), 1, "lin-a", None)
    got = b.read()
    assert got is not None and (got.data, got.serial, got.lineage) == (_doc(1), 1, "lin-a")

    mgr = target.manager()
    mgr2 = target.manager()
    written = mgr2.write(with_resources(mgr2.read(), "endpoint.a"), force=True)
    again = mgr.read()
    assert again == written and again.serial == 2 and again.get("endpoint.a") is not None


def test_manager_serials_grow_by_one_and_lineage_is_kept(target: Target) -> None:
    mgr = target.manager()
    first = mgr.write(with_resources(mgr.read(), "model.m:1"))
    second = mgr.write(with_resources(first, "model.n:1"))
    assert (first.serial, second.serial) == (1, 2)
    assert second.lineage == first.lineage == target.manager().read().lineage


def test_write_refuses_another_lineage_unless_forced(target: Target) -> None:
    mgr = target.manager()
    mgr.write(mgr.read())
    other = State(resources={"endpoint.x": res("endpoint.x")})
    with pytest.raises(StateError, match="lineage"):
        mgr.write(other)
    assert mgr.write(other, force=True).lineage == other.lineage


def test_compare_and_swap_refuses_a_stale_writer(target: Target) -> None:
    a, b = target.manager(), target.manager()
    sa, sb = a.read(), b.read()
    a.write(with_resources(sa, "endpoint.a"))
    with pytest.raises(StateConflictError, match=r"another apply changed the state \(serial 1, expected None\)"):
        b.write(with_resources(sb, "endpoint.b"))
    a.write(with_resources(a.read(), "endpoint.c"))
    b.read()
    b2 = target.manager()
    stale = b2.read()
    b.write(with_resources(b.read(), "endpoint.d"))
    with pytest.raises(StateConflictError, match=r"serial 3, expected 2"):
        b2.write(stale)
    final = target.manager().read()
    assert final.serial == 3 and sorted(final.resources) == ["endpoint.a", "endpoint.c", "endpoint.d"]


def test_backend_write_is_compare_and_swap(target: Target) -> None:
    b = target.backend()
    b.write(_doc(1, "L"), 1, "L", None)
    with pytest.raises(StateConflictError):
        b.write(_doc(1, "L", x=1), 1, "L", None)
    with pytest.raises(StateConflictError):
        b.write(_doc(2, "L"), 2, "L", 0)
    got = b.read()
    assert got is not None and got.serial == 1 and got.data == _doc(1, "L")


def test_history_and_read_serial(target: Target) -> None:
    mgr = target.manager()
    state = mgr.read()
    for i in range(3):
        state = mgr.write(with_resources(state, f"model.m{i}:1"))
    assert isinstance(mgr.backend, SupportsHistory)
    assert [e.serial for e in mgr.history()] == [3, 2, 1]
    assert all(e.lineage == state.lineage and e.size > 0 for e in mgr.history())
    v2 = mgr.read_serial(2)
    assert v2.serial == 2 and sorted(v2.resources) == ["model.m0:1", "model.m1:1"]
    with pytest.raises(StateError, match="no kept version with serial 9"):
        mgr.read_serial(9)


def test_history_is_bounded(target: Target) -> None:
    target.settings["history"] = 3
    mgr = target.manager()
    state = mgr.read()
    for i in range(6):
        state = mgr.write(with_resources(state, f"model.m{i}:1"))
    assert [e.serial for e in mgr.history()] == [6, 5, 4]
    with pytest.raises(StateError):
        mgr.read_serial(2)


def test_lock_unlock_and_lock_info(target: Target) -> None:
    b = target.backend()
    assert isinstance(b, SupportsLocking) and b.lock_info() is None
    info = _info()
    assert b.lock(info) == info.id
    assert target.backend().lock_info() == info  # seen from another connection/handle
    b.unlock(info.id)
    assert target.backend().lock_info() is None
    b.lock(_info())  # free again


def test_second_locker_fails_at_once_naming_the_holder(target: Target) -> None:
    first, second = target.backend(), target.backend()
    info = _info("apply")
    first.lock(info)
    t0 = time.monotonic()
    with pytest.raises(StateLockedError) as err:
        second.lock(_info("plan"))
    assert time.monotonic() - t0 < 1.0
    assert err.value.holder is not None and err.value.holder.id == info.id
    assert "alice@ci-7" in str(err.value) and f"recon force-unlock {info.id}" in str(err.value)
    first.unlock(info.id)
    second.lock(_info("plan"))


def test_a_holder_between_its_lock_and_its_record_is_still_named(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder takes the lock, then records who it is: a second locker in between waits for
    the record (briefly) instead of reporting an anonymous holder."""
    first, second = target.backend(), target.backend()
    info = _info("apply")
    locked = threading.Event()
    if target.kind == "file":
        import states.file_lock

        real_write = states.file_lock.atomic_write

        def slow_write(path: object, data: bytes) -> None:
            locked.set()  # the flock is taken, the info not written yet
            time.sleep(0.3)
            real_write(path, data)  # type: ignore[arg-type]

        monkeypatch.setattr(states.file_lock, "atomic_write", slow_write)
    else:
        real_connect = first._connect  # type: ignore[attr-defined]

        def slow_connect() -> object:
            conn = real_connect()
            real_execute = conn.execute

            def execute(sql: str, *args: object) -> object:
                if sql.lstrip().startswith("INSERT INTO recon_locks"):
                    locked.set()  # the advisory lock is taken, the row not written yet
                    time.sleep(0.3)
                return real_execute(sql, *args)

            conn.execute = execute
            return conn

        monkeypatch.setattr(first, "_connect", slow_connect)
    holder = threading.Thread(target=first.lock, args=(info,))
    holder.start()
    try:
        assert locked.wait(10)
        with pytest.raises(StateLockedError) as err:
            second.lock(_info("plan"))
        assert err.value.holder is not None and err.value.holder.id == info.id
    finally:
        holder.join()
        first.unlock(info.id)


def test_unlock_checks_the_id(target: Target) -> None:
    b = target.backend()
    info = _info()
    b.lock(info)
    with pytest.raises(StateError, match="does not match"):
        b.unlock("not-the-id")
    assert target.backend().lock_info() == info


def test_lock_in_another_process_names_its_holder(target: Target) -> None:
    proc = target.spawn("hold")
    try:
        lock_id = wait_line(proc, "LOCKED").split()[1]
        with pytest.raises(StateLockedError) as err, target.manager().lock("apply"):
            pass
        assert err.value.holder is not None and err.value.holder.id == lock_id
        assert err.value.holder.operation == "apply" and "@" in err.value.holder.who
    finally:
        proc.kill()
        proc.wait()


def test_lock_is_released_when_the_holder_is_killed(target: Target) -> None:
    proc = target.spawn("hold")
    wait_line(proc, "LOCKED")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    mgr = target.manager()
    while True:
        try:
            with mgr.lock("apply") as info:
                assert mgr.lock_info() == info
            break
        except StateLockedError:
            assert time.monotonic() - killed < 1.0, "lock still held 1 s after its holder was SIGKILLed"
            time.sleep(0.02)
    assert time.monotonic() - killed < 1.0


def test_stale_lock_record_is_ignored_after_holder_died(target: Target) -> None:
    proc = target.spawn("hold")
    wait_line(proc, "LOCKED")
    proc.kill()
    proc.wait()
    time.sleep(0.3)  # PostgreSQL notices the dropped connection
    assert target.backend().lock_info() is None


def test_force_unlock_frees_a_stuck_holder(target: Target) -> None:
    proc = target.spawn("hold")
    try:
        lock_id = wait_line(proc, "LOCKED").split()[1]
        mgr = target.manager()
        with pytest.raises(StateError, match="does not match"):
            mgr.force_unlock("wrong-id")
        with pytest.raises(StateLockedError):
            mgr.backend.lock(_info())  # type: ignore[attr-defined]
        mgr.force_unlock(lock_id)
        with mgr.lock("apply") as info:
            assert mgr.lock_info() == info
    finally:
        proc.kill()
        proc.wait()


def test_force_unlock_of_a_dead_holders_record(target: Target) -> None:
    proc = target.spawn("hold")
    lock_id = wait_line(proc, "LOCKED").split()[1]
    proc.kill()
    proc.wait()
    mgr = target.manager()
    mgr.force_unlock(lock_id)  # clears the leftover record
    with pytest.raises(StateError, match="not locked"):
        mgr.force_unlock(lock_id)


def _run_race(target: Target, mode: str, n: int = 20) -> list[str]:
    start_at = str(time.time() + 1.5)
    procs = [target.spawn(mode, str(n), tag, start_at) for tag in ("p", "q")]
    lines: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        lines += out.splitlines()
    return lines


@pytest.mark.parametrize("mode", ["race-lock", "race-cas"])
def test_two_processes_racing_lose_no_write(target: Target, mode: str) -> None:
    mgr = target.manager()
    base = mgr.write(with_resources(mgr.read(), "endpoint.base"))
    lines = _run_race(target, mode)
    assert len(lines) == 40
    ok = [line.split()[1] for line in lines if line.startswith("OK")]
    print(mode, target.kind, "succeeded:", len(ok), "of 40")
    assert ok, lines
    final = target.manager().read()
    # every successful write is there, and the serial moved by exactly that many
    assert final.serial == base.serial + len(ok)
    assert sorted(final.resources) == sorted(["endpoint.base"] + [f"model.{t}:1" for t in ok])
    assert [e.serial for e in mgr.history(limit=len(ok) + 1)][: min(len(ok), 20)] == list(
        range(final.serial, final.serial - min(len(ok), 20), -1)
    )


def test_manager_writes_from_threads_are_serialised(target: Target) -> None:
    mgr = target.manager()
    state = mgr.read()
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(5):
                mgr.write(with_resources(state, f"model.t{k}-{i}:1"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.manager().read().serial == 20


def test_push_follows_terraform_rules(target: Target) -> None:
    mgr = target.manager()
    s1 = mgr.write(with_resources(mgr.read(), "endpoint.a"))
    s2 = mgr.write(with_resources(s1, "endpoint.b"))
    with pytest.raises(StateError, match="lower than the stored serial 2"):
        mgr.push(s1)
    with pytest.raises(StateError, match="lineage"):
        mgr.push(State(serial=9))
    with pytest.raises(StateError, match="different content"):
        mgr.push(with_resources(s2, "endpoint.c"))
    pushed = mgr.push(s1, force=True)
    assert pushed.serial == 3 and sorted(target.manager().read().resources) == ["endpoint.a"]
    newer = with_resources(s2, "endpoint.z").model_copy(update={"serial": 7})
    assert mgr.push(newer).serial == 4


def test_password_never_appears_in_messages(pg_target: Target) -> None:
    target = pg_target
    holder, other = target.backend(), target.backend()
    info = _info()
    holder.lock(info)
    with pytest.raises(StateLockedError) as locked:
        other.lock(_info())
    bad = dict(target.settings, dsn=target.settings["dsn"].replace(target.password, target.password + "x"))
    from reconciler.model.settings import StateSettings
    from states import open_backend

    with pytest.raises(StateError) as denied:
        open_backend(target.root, StateSettings(**bad)).read()
    for text in (str(locked.value), str(denied.value), other.describe()):
        assert target.password not in text
    assert "password authentication failed" in str(denied.value)
    assert "psycopg" not in type(denied.value).__module__

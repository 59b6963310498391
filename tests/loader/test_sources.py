"""reconciler.load.sources: the fast parse gives exactly what PyYAML's safe loader gives, serial or split."""

from __future__ import annotations

import os
import pickle
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.load import discovery, parallel, sources
from tests.conftest import CORPUS

SAFE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Documents that exercise every branch of the fast walk and every reason to fall back to PyYAML.
CASES = {
    "plain": "name: blue\ncount: 3\nratio: 0.5\non: yes\nnothing: ~\nquoted: '3'\n",
    "yaml 1.1 scalars": "- 017\n- 0o17\n- 0x1f\n- 1_000\n- 1:30\n- .inf\n- -.Inf\n- .nan\n- NO\n- off\n- ''\n",
    "timestamps": "day: 2001-12-14\nwhen: 2001-12-14t21:59:43.10-05:00\n",
    "binary": "blob: !!binary aGVsbG8=\n",
    "explicit tags": "a: !!str 123\nb: !!int '12'\nc: !!float '1'\nd: !!bool 'true'\ne: !!null ''\n",
    "non-string keys": "1: one\ntrue: yes\n~: none\n2001-01-01: day\n3.5: x\n",
    "anchors": "base: &b {x: 1, y: [1, 2]}\nsame: *b\nlist: &l [a, b]\nagain: *l\nscalar: &s v\ncopy: *s\n",
    "merge keys": "base: &b {x: 1, y: 2}\nchild:\n  <<: *b\n  y: 3\n",
    "merge list": "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n",
    "set and omap": "s: !!set {a: null, b: null}\no: !!omap [a: 1, b: 2]\np: !!pairs [a: 1, a: 2]\n",
    "recursive": "a: &a\n  self: *a\n",
    "recursive list": "&l [1, *l]\n",
    "flow and block": "a: {b: [1, {c: d}], e: [[], {}]}\nf:\n  - g: h\n    i: [j]\n",
    "unicode": "name: caf\u00e9\nemoji: \"\\U0001F600\"\n",
    "empty": "",
    "comment only": "# nothing\n",
    "scalar document": "just text\n",
    "sequence document": "- 1\n- two\n",
}

BAD = {
    "syntax": "a: [1, 2\n",
    "tab": "a:\n\tb: 1\n",
    "custom tag": "a: !Ref thing\n",
    "value key": "a: =\n",
    "unhashable key": "? [1, 2]\n: x\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "map tag on a scalar": "a: !!map x\n",
}


def _same(a: Any, b: Any) -> bool:
    """Equality that also holds for recursive structures (compared by shape, to a depth)."""
    return pickle.dumps(a) == pickle.dumps(b)


@pytest.mark.parametrize("name", list(CASES))
def test_parse_text_equals_pyyaml(name: str) -> None:
    text = CASES[name]
    parsed = sources.parse_text(text, max_nodes=None)
    assert parsed.problem is None
    assert _same(parsed.data, yaml.load(text, Loader=SAFE))
    assert _same(parsed.data, yaml.load(text, Loader=yaml.SafeLoader))
    assert _same(sources.parse_text(text.encode(), max_nodes=None).data, parsed.data)
    # with the default node limit: the same data, except that recursive data is refused
    limited = sources.parse_text(text)
    if name.startswith("recursive"):
        assert limited.data is None and limited.problem is not None
        assert "recursive data" in limited.problem.message and limited.problem.line == 1
    else:
        assert limited.problem is None and _same(limited.data, parsed.data)


def test_aliases_are_the_same_object_as_in_pyyaml() -> None:
    data = sources.parse_text(CASES["anchors"]).data
    assert data["same"] is data["base"] and data["again"] is data["list"]
    loop = sources.parse_text(CASES["recursive"], max_nodes=None).data
    assert loop["a"]["self"] is loop["a"]


@pytest.mark.parametrize("name", list(BAD))
def test_parse_errors_are_problems_like_pyyaml(name: str) -> None:
    text = BAD[name]
    with pytest.raises(yaml.YAMLError) as expected:
        yaml.load(text, Loader=SAFE)
    parsed = sources.parse_text(text)
    assert parsed.data is None
    assert parsed.problem is not None
    assert parsed.problem.message.startswith("invalid YAML: ")
    mark = getattr(expected.value, "problem_mark", None) or getattr(expected.value, "context_mark", None)
    assert parsed.problem.line == (mark.line + 1 if mark else None)


@pytest.mark.parametrize(
    "text",
    [
        "a: !!int abc\n",
        "a: !!float x\n",
        "a: !!timestamp 2001-13-45\n",
        "a: !!bool x\n",  # KeyError in PyYAML
        "a: !!float ''\n",  # IndexError
        "a: !!int ''\n",
        "a: !!timestamp ''\n",  # AttributeError (found by tests/fuzz)
    ],
)
def test_a_value_that_does_not_fit_its_tag_is_a_problem(text: str) -> None:
    with pytest.raises((ValueError, LookupError, AttributeError)):  # PyYAML itself lets these escape
        yaml.load(text, Loader=SAFE)
    parsed = sources.parse_text(text)
    assert parsed.data is None
    assert parsed.problem is not None and "does not fit its tag" in parsed.problem.message


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    parsed = sources.parse_text("[" * 5000 + "]" * 5000)
    assert parsed.problem is not None and "nested too deeply" in parsed.problem.message


@pytest.mark.parametrize(
    ("text", "duplicated"),
    [
        ("a: 1\nb: 2\na: 3\n", True),
        ("a: {x: 1, x: 2}\n", True),
        ("- {k: 1}\n- {k: 2, k: 3}\n", True),
        ("base: &b {x: 1}\nc:\n  <<: *b\n  x: 2\n", False),  # a merge key may be overridden
        ("base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n  y: 3\n", True),  # the fallback path notices too
        ("a: 1\nb: {a: 2}\n", False),
    ],
)
def test_duplicate_keys_are_noticed(text: str, duplicated: bool) -> None:
    assert sources.parse_text(text).duplicate_keys is duplicated


def test_name_line_and_placeholder() -> None:
    parsed = sources.parse_text("$schema: x\n\ndescription: d\nname: {{ NAME }}\n")
    assert parsed.problem is not None  # `{{ NAME }}` is a flow mapping with a mapping key
    parsed = sources.parse_text("$schema: x\n\ndescription: '{{ d }}'\nname: blue\n")
    assert parsed.name_line == 4 and parsed.placeholder is True
    assert sources.parse_text("name: blue\n").placeholder is False


def test_every_corpus_file_parses_as_pyyaml_does() -> None:
    files = sorted(CORPUS.rglob("*.y*ml"))
    assert len(files) > 50
    for path in files:
        text = path.read_text(encoding="utf-8")
        parsed = sources.parse_text(text)
        try:
            expected = yaml.load(text, Loader=SAFE)
        except yaml.YAMLError as exc:  # a template in the corpus: the same problem, on the same line
            mark = getattr(exc, "problem_mark", None)
            assert parsed.problem is not None and parsed.problem.line == (mark.line + 1 if mark else None), path
            continue
        assert parsed.problem is None and parsed.data == expected, path


def _tree(root: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = root / f"d{i % 7}" / f"f{i:04d}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = f"name: n{i}\nindex: {i}\nlist: [{i}, x]\n" if i % 50 else "a: [1\n"  # some are broken
        path.write_text(body)
        paths.append(path)
    paths[1].write_bytes(b"name: \xff\n")  # not UTF-8
    return paths


def count_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the workers ``parse_files`` forks from now on (in this process), in a process that
    may fork as recon's CLI does (``alone``)."""
    alone(monkeypatch)
    forks: list[int] = []
    real_fork = parallel.os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(parallel.os, "fork", counting_fork)
    return forks


def alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """``parse_files`` forks only in a process without other threads, as recon's CLI is when it parses.
    A thread an earlier test of this long session left behind is waited for (10 s); one still running
    then is named in a warning and not counted, so these tests see the split the CLI sees. (The rule
    itself is ``test_parse_files_does_not_fork_beside_other_threads``'s, with a thread of its own.)"""
    deadline = time.monotonic() + 10
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    strays = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if not strays:
        return
    warnings.warn(f"threads left running by earlier tests: {', '.join(t.name for t in strays)}", stacklevel=2)

    def can_fork() -> bool:
        return (os.cpu_count() or 1) > 1 and threading.active_count() == 1 + sum(t.is_alive() for t in strays)

    monkeypatch.setattr(parallel, "_can_fork", can_fork)


def test_parse_files_split_over_a_worker_equals_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _tree(tmp_path, 301)
    serial = [sources.read_and_parse(p) for p in paths]
    assert serial[1].problem is not None and serial[1].problem.message.startswith("cannot read the file")
    assert serial[0].problem is not None and serial[0].problem.line == 2
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FILES", 10)
    forks = count_forks(monkeypatch)
    assert parallel.parse_files(paths) == serial
    assert len(forks) == 1  # the split really ran


def test_parse_files_survives_a_failing_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _tree(tmp_path, 120)
    serial = [sources.read_and_parse(p) for p in paths]
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FILES", 10)

    def broken_dump(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the worker cannot send")

    monkeypatch.setattr(parallel.pickle, "dump", broken_dump)  # the forked worker inherits it
    assert parallel.parse_files(paths) == serial


def test_parse_files_does_not_fork_beside_other_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _tree(tmp_path, 40)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FILES", 10)

    def no_fork() -> int:
        raise AssertionError("forked while another thread runs")

    monkeypatch.setattr(parallel.os, "fork", no_fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert parallel.parse_files(paths) == [sources.read_and_parse(p) for p in paths]
    finally:
        stop.set()
        other.join()


def test_discover_order_and_skips(tmp_path: Path) -> None:
    for rel in ("b.yml", "a.yaml", "z/x.yml", "z/y/w.yml", "m/n.yml", ".hidden.yml", ".git/c.yml",
                "recon.yaml", "notes.txt", "ci/pipeline.yml"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a: 1\n")
    (tmp_path / "link").symlink_to(tmp_path / "z", target_is_directory=True)
    found = [rel for _, rel in discovery.discover(tmp_path, frozenset({"recon.yaml"}), ("ci/**",))]
    assert found == ["a.yaml", "b.yml", "m/n.yml", "z/x.yml", "z/y/w.yml"]


def test_parse_files_shares_chunks_and_runs_meanwhile_while_the_worker_parses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunks go to whichever process is free: while this process is busy in ``meanwhile``
    (the state read), the worker takes more of them; the result is the serial one all the same."""
    paths = _tree(tmp_path, 400)
    serial = [sources.read_and_parse(p) for p in paths]
    alone(monkeypatch)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FILES", 10)
    monkeypatch.setattr(parallel, "CHUNK_FILES", 8)
    log = tmp_path / "who.log"
    real = sources.read_and_parse

    def logged(p: Any, *args: Any) -> Any:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{os.getpid()}\n".encode())  # one short append: atomic between processes
        os.close(fd)
        return real(p, *args)

    monkeypatch.setattr(sources, "read_and_parse", logged)
    calls: list[int] = []

    def meanwhile() -> None:
        calls.append(os.getpid())
        time.sleep(0.5)

    assert parallel.parse_files(paths, meanwhile=meanwhile) == serial
    assert calls == [os.getpid()]
    pids = log.read_text().split()
    mine, theirs = pids.count(str(os.getpid())), len(pids) - pids.count(str(os.getpid()))
    assert mine + theirs == len(paths)
    assert theirs > mine  # the worker parsed while this process slept


def test_parse_files_meanwhile_error_goes_up_and_leaves_no_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _tree(tmp_path, 200)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FILES", 10)

    forks = count_forks(monkeypatch)

    def broken() -> None:
        raise ValueError("the state cannot be read")

    with pytest.raises(ValueError, match="state cannot be read"):
        parallel.parse_files(paths, meanwhile=broken)
    assert len(forks) == 1
    with pytest.raises(ChildProcessError):  # the worker was reaped: it is no child of ours any more
        os.waitpid(forks[0], os.WNOHANG)
    calls: list[int] = []
    assert parallel.parse_files(paths[:5], meanwhile=lambda: calls.append(1)) == [
        sources.read_and_parse(p) for p in paths[:5]
    ]
    assert calls == [1]  # without a worker too, once

"""
put_many: each file gets what put gives it (result, verification, refusal), one file's failure stops no
other, and on a local disk the flushes are grouped: every file fsync-ed before its rename, each directory
fsync-ed once, after the renames and before the call returns. Nothing is ever left under a temporary name.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import IO

import pytest
from storage_support import local_file, make_local_se

from failover.errors import FailoverError, SourceMissing, StorageRefused, TransferCorrupted
from failover.storage import LocalBackend, PutItem, PutResult, StorageElement
from fsm.crashpoints import CRASH_AT, CRASH_EXIT_CODE


def _items(tmp_path: Path, count: int, directories: int = 2) -> list[PutItem]:
    return [
        PutItem(
            local_file(tmp_path, f"file {i}\n".encode() * (i + 1), f"f{i}"), f"/vo/d{i % directories}/f{i}"
        )
        for i in range(count)
    ]


def _results(outcomes: list[PutResult | FailoverError]) -> list[PutResult]:
    assert all(isinstance(o, PutResult) for o in outcomes), outcomes
    return [o for o in outcomes if isinstance(o, PutResult)]


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_each_file_gets_what_put_would_give_it(tmp_path: Path, kind: str) -> None:
    many = make_local_se(kind, tmp_path, "many")
    one = make_local_se(kind, tmp_path, "one")
    items = _items(tmp_path, 7)

    results = _results(many.put_many(items))

    for item, result in zip(items, results, strict=True):
        alone = one.put(item.local_path, item.lfn)
        assert (result.lfn, result.size, result.checksums) == (alone.lfn, alone.size, alone.checksums)
        assert result.pfn == many.pfn(item.lfn) and not result.already_present
        with many.open_read(item.lfn) as stream:
            assert stream.read() == Path(item.local_path).read_bytes()
    assert list(many.list_temporary()) == []


def test_flushes_are_grouped_every_file_before_its_rename_each_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    se = make_local_se("file", tmp_path)
    events: list[tuple[str, str]] = []
    real = (LocalBackend.flush_file, LocalBackend.rename, LocalBackend.flush_directory)

    def flush_file(self: LocalBackend, stream: IO[bytes]) -> None:
        events.append(("flush_file", stream.name))  # type: ignore[arg-type]
        real[0](self, stream)

    def rename(self: LocalBackend, temporary: str, final: str) -> None:
        events.append(("rename", temporary))
        real[1](self, temporary, final)

    def flush_directory(self: LocalBackend, directory: str) -> None:
        events.append(("flush_directory", directory))
        real[2](self, directory)

    for spy in (flush_file, rename, flush_directory):
        monkeypatch.setattr(LocalBackend, spy.__name__, spy)
    items = _items(tmp_path, 6, directories=2)

    _results(se.put_many(items))

    kinds = [kind for kind, _ in events]
    assert Counter(kinds) == {"flush_file": 6, "rename": 6, "flush_directory": 2}
    assert kinds.index("flush_directory") > max(i for i, k in enumerate(kinds) if k == "rename")
    for temporary in (path for kind, path in events if kind == "rename"):
        assert ("flush_file", temporary) in events[: events.index(("rename", temporary))]


def test_one_bad_file_stops_no_other(tmp_path: Path) -> None:
    se = make_local_se("file", tmp_path)
    items = _items(tmp_path, 4)
    se.put(local_file(tmp_path, b"other content", "other"), items[2].lfn)
    items[1] = PutItem(tmp_path / "job" / "missing", "/vo/d1/missing")

    outcomes = se.put_many(items)

    assert isinstance(outcomes[1], SourceMissing)
    assert isinstance(outcomes[2], StorageRefused) and "different content" in str(outcomes[2])
    assert [isinstance(outcomes[i], PutResult) for i in (0, 3)] == [True, True]
    assert sorted(se.list_lfns()) == sorted([items[0].lfn, items[2].lfn, items[3].lfn])
    assert list(se.list_temporary()) == []


def test_the_same_content_already_there_is_not_written_again(tmp_path: Path) -> None:
    se = make_local_se("file", tmp_path)
    items = _items(tmp_path, 3)
    se.put(items[0].local_path, items[0].lfn)
    before = os.stat(se.root + items[0].lfn).st_ino

    outcomes = _results(se.put_many(items))

    assert [o.already_present for o in outcomes] == [True, False, False]
    assert os.stat(se.root + items[0].lfn).st_ino == before


def test_a_file_that_fails_verification_is_removed_and_the_others_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    se = make_local_se("file", tmp_path)
    items = _items(tmp_path, 3)
    real = LocalBackend.flush_file

    def lose_bytes_of_the_second(self: LocalBackend, stream: object) -> None:
        if "/.f1.failover-tmp-" in stream.name:  # type: ignore[attr-defined]
            stream.truncate(3)  # type: ignore[attr-defined]
        real(self, stream)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalBackend, "flush_file", lose_bytes_of_the_second)

    outcomes = se.put_many(items)

    assert isinstance(outcomes[1], TransferCorrupted)
    assert not se.exists(items[1].lfn)
    assert [se.exists(items[i].lfn) for i in (0, 2)] == [True, True]
    assert list(se.list_temporary()) == []


def test_an_interrupted_group_leaves_no_temporary_and_no_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    se = make_local_se("file", tmp_path)
    items = _items(tmp_path, 5)
    real = LocalBackend.flush_file

    def interrupted(self: LocalBackend, stream: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalBackend, "flush_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        se.put_many(items)
    monkeypatch.setattr(LocalBackend, "flush_file", real)

    assert list(se.list_temporary()) == []
    assert list(se.list_lfns()) == []
    assert [o.lfn for o in _results(se.put_many(items))] == [i.lfn for i in items]


@pytest.mark.parametrize("point", ["before-publish@3", "after-publish@2"])
def test_a_crash_mid_group_leaves_complete_objects_that_the_next_put_finds(
    tmp_path: Path, point: str
) -> None:
    """A real process dies in the middle of publishing; every final name holds complete bytes."""
    root = tmp_path / "se-a"
    items = _items(tmp_path, 4)
    pid = os.fork()
    if pid == 0:
        os.environ[CRASH_AT] = point
        StorageElement("se-a", root.as_uri()).put_many(items)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == CRASH_EXIT_CODE
    se = StorageElement("se-a", root.as_uri())
    published = set(se.list_lfns())
    assert published and len(published) < len(items)
    for item in items:
        if item.lfn in published:
            with se.open_read(item.lfn) as stream:
                assert stream.read() == Path(item.local_path).read_bytes()

    outcomes = _results(se.put_many(items))

    assert [o.already_present for o in outcomes] == [i.lfn in published for i in items]
    se.remove_temporary()
    assert list(se.list_temporary()) == []


def _exit_code(pid: int, *, within: float) -> int | None:
    """The child's exit code; None if it is still running after ``within`` seconds (it is killed)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_a_process_forked_after_a_group_flushes_its_own_groups(tmp_path: Path) -> None:
    """The flush threads are kept between groups; a forked child, which has none of them, starts its own."""
    items = _items(tmp_path, 6)
    StorageElement("se-a", (tmp_path / "se-a").as_uri()).put_many(items[:3])  # the parent's threads start
    pid = os.fork()
    if pid == 0:
        outcomes = StorageElement("se-b", (tmp_path / "se-b").as_uri()).put_many(items[3:])
        os._exit(0 if all(isinstance(o, PutResult) for o in outcomes) else 1)
    assert _exit_code(pid, within=60.0) == 0
    assert sorted(StorageElement("se-b", (tmp_path / "se-b").as_uri()).list_lfns()) == sorted(
        item.lfn for item in items[3:]
    )


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_copy_many_to_gives_each_object_what_copy_to_would(tmp_path: Path, kind: str) -> None:
    source = make_local_se("file", tmp_path, "source")
    many, one = (make_local_se(kind, tmp_path, name) for name in ("many", "one"))
    items = _items(tmp_path, 5)
    _results(source.put_many(items))
    lfns = [item.lfn for item in items] + ["/vo/d0/never-put"]

    outcomes = source.copy_many_to(many, lfns)

    assert isinstance(outcomes[-1], SourceMissing)
    for lfn, result in zip(lfns, _results(outcomes[:-1]), strict=False):
        alone = source.copy_to(one, lfn)
        assert (result.lfn, result.size, result.checksums) == (alone.lfn, alone.size, alone.checksums)
        with many.open_read(lfn) as stream:
            assert stream.read() == Path(items[lfns.index(lfn)].local_path).read_bytes()
    assert list(many.list_temporary()) == []

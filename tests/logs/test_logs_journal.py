"""The collector's journal: what it remembers, and what remembering costs.

A SliceStore in this process on a tmpfs (fsync costs nothing there, so a few
thousand commits take a second); bytes written are the kernel's count for
this process (/proc/self/io wchar).
"""

from __future__ import annotations

import json
from pathlib import Path

from logs_harness import tmpfs
from shipyard_logs.forward import EventTime, Frame
from shipyard_logs.slices import SliceLayout, SliceStore

HOUR_10 = EventTime(1795168800)


def written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def commit(store: SliceStore, first: int, count: int = 1) -> None:
    frames = [
        Frame("t.j", [(HOUR_10, {"n": n, "source_host": "h"})], {"chunk": f"c{n}"})
        for n in range(first, first + count)
    ]
    store.store(frames, "127.0.0.1")


def test_at_the_chunk_id_cap_a_commit_writes_its_line_not_the_journal(tmp_path: Path):
    cap = 20_000
    with tmpfs(tmp_path / "store", "256m") as root:
        store = SliceStore(root, SliceLayout(), max_chunk_ids=cap)
        store.open()
        for first in range(0, cap, 500):
            commit(store, first, 500)
        journal = store.journal_path.stat().st_size
        assert journal > 150_000  # 20,000 ids: a full rewrite would be this much per commit
        before = written()
        commits = 2000
        for n in range(cap, cap + commits):
            commit(store, n)
        per_commit = (written() - before) / commits
        # Its slice line and journal line are about 150 bytes; a rewrite of the
        # journal is paid for by as many appended bytes, so at most about as much again.
        assert per_commit < 1000, per_commit
        store.close()
        # Memory keeps the newest `cap` ids, and so does a restart.
        reopened = SliceStore(root, SliceLayout(), max_chunk_ids=cap)
        reopened.open()
        assert reopened.seen("c" + str(cap + commits - 1))
        assert reopened.seen("c" + str(commits))
        assert not reopened.seen("c" + str(commits - 1))
        reopened.close()


def test_a_torn_line_in_the_middle_does_not_hide_the_commits_after_it(tmp_path: Path):
    store = SliceStore(tmp_path, SliceLayout())
    store.open()
    commit(store, 0)
    commit(store, 1)
    store.close()
    # What a short write followed by later commits left before rollbacks existed.
    lines = store.journal_path.read_bytes().splitlines(keepends=True)
    torn = b'{"t":1,"c":["s:c9"],"f":{"logs/x'
    store.journal_path.write_bytes(b"".join([*lines[:-1], torn + b"\n", lines[-1]]))
    reopened = SliceStore(tmp_path, SliceLayout())
    reopened.open()
    assert reopened.seen("c0") and reopened.seen("c1") and not reopened.seen("c9")
    rel = "logs/20261120/h-10.log"
    assert [
        json.loads(x.split("\t")[2])["n"] for x in (tmp_path / rel).read_text().splitlines()
    ] == [0, 1]


def test_a_last_line_without_its_newline_was_never_committed(tmp_path: Path):
    store = SliceStore(tmp_path, SliceLayout())
    store.open()
    commit(store, 0)
    store.close()
    # A crash between writing a line and its newline: whole JSON, but never fsync'd whole.
    with store.journal_path.open("ab") as journal:
        journal.write(b'{"t":1,"c":["s:c7"],"f":{}}')
    reopened = SliceStore(tmp_path, SliceLayout())
    reopened.open()
    assert reopened.seen("c0") and not reopened.seen("c7")
    commit(reopened, 1)
    reopened.close()
    again = SliceStore(tmp_path, SliceLayout())
    again.open()
    assert again.seen("c0") and again.seen("c1") and not again.seen("c7")

#!/usr/bin/env python3
"""What a commit costs the collector's journal when it remembers 1,000,000 chunk ids.

A SliceStore (slices.py) in this process, on the file system of --dir (a
real disk by default, so every fsync counts). Each commit is one frame of
one record with its own chunk id, as an agent's small batch would be.

  empty       commits into a fresh store: the baseline
  at cap      commits once max_chunk_ids (1,000,000) ids are remembered
  old policy  the same, rewriting the whole journal on every commit, as the
              collector did at the cap before compaction was amortised
  compaction  one rewrite of the journal at the cap: what the amortised
              policy pays once per journal's worth of appended lines

Bytes are the kernel's count of bytes this process wrote (/proc/self/io).
Goals: at the cap a commit writes at most 4x the bytes and takes at most 2x
the time of a commit into an empty store.

Usage: bench/journal.py [--ids 1000000] [--commits 2000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from shipyard_logs.forward import EventTime, Frame
from shipyard_logs.slices import SliceLayout, SliceStore

HOUR = EventTime(1_767_225_600)


def written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def frames(first: int, count: int) -> list[Frame]:
    return [
        Frame("t.bench", [(HOUR, {"n": n, "source_host": "bench"})], {"chunk": f"{n:024d}"})
        for n in range(first, first + count)
    ]


def measure(
    store: SliceStore, first: int, commits: int, rewrite: bool = False
) -> tuple[float, float]:
    """(microseconds, bytes written) per commit."""
    batches = [frames(n, 1) for n in range(first, first + commits)]
    before, started = written(), time.perf_counter()
    for batch in batches:
        store.store(batch, "127.0.0.1")
        if rewrite:
            store._compact()  # the old policy, for the comparison
    elapsed = time.perf_counter() - started
    return elapsed / commits * 1e6, (written() - before) / commits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--dir", default=None)
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=options.dir) as workdir:
        empty = SliceStore(Path(workdir) / "empty", SliceLayout(), max_chunk_ids=options.ids)
        empty.open()
        base = measure(empty, 0, options.commits)
        empty.close()

        store = SliceStore(Path(workdir) / "full", SliceLayout(), max_chunk_ids=options.ids)
        store.open()
        filled = time.perf_counter()
        for first in range(0, options.ids, 5000):
            store.store(frames(first, 5000), "127.0.0.1")
        filled = time.perf_counter() - filled
        journal = store.journal_path.stat().st_size
        at_cap = measure(store, options.ids, options.commits)
        old = measure(store, options.ids + options.commits, 5, rewrite=True)
        before, started = written(), time.perf_counter()
        store._compact()  # one rewrite, timed alone
        compaction = ((time.perf_counter() - started) * 1e6, written() - before)
        store.close()

    print(f"\njournal at {options.ids:,} ids: {journal / 1e6:.1f} MB (filled in {filled:.0f} s)")
    print(f"{'commit':<12} {'us/commit':>10} {'bytes/commit':>13}")
    for name, (micros, size) in (
        ("empty", base),
        ("at cap", at_cap),
        ("old policy", old),
        ("compaction", compaction),
    ):
        print(f"{name:<12} {micros:>10,.0f} {size:>13,.0f}")
    bytes_ratio, time_ratio = at_cap[1] / base[1], at_cap[0] / base[0]
    print(f"at cap / empty: {bytes_ratio:.2f}x bytes, {time_ratio:.2f}x time")
    print(f"old policy / at cap: {old[1] / at_cap[1]:,.0f}x bytes, {old[0] / at_cap[0]:,.0f}x time")
    met = bytes_ratio <= 4 and time_ratio <= 2
    print(f"goal (at cap <= 4x bytes, <= 2x time of empty): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

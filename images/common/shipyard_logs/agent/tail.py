"""Tailing: the open files of a source, read into batches of packed entries.

Like fluentd's in_tail: a watcher per file (rotated ones included), followed
by inode; whole lines only, a line longer than max_line_bytes shipped in
pieces; lines that do not parse go under `<tag>.unparsed`.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import forward
from ..forward import EventTime
from ..parsers import Parser, now
from .config import AgentConfig, Source
from .positions import Position, read_positions

log = logging.getLogger("shipyard_logs.agent")

# How many of the bytes before its offset a watcher remembers: enough of a
# line (a time stamp, an address, a request) that other lines written at the
# same place after a truncation do not repeat them.
SEEN_BYTES = 64


@dataclass
class Watcher:
    """One open file of a source; `offset` is the start of the first unread line."""

    path: str
    inode: int
    offset: int
    fd: int
    rotated_at: float | None = None
    start: int = -1  # the offset it was opened at: committed, as far as anyone knows
    # The last bytes before `offset`, as they were read. A file truncated and
    # written past the offset again between two looks (copytruncate under a
    # busy writer) is no shorter than the offset, but has other bytes there.
    seen: bytes = b""

    def __post_init__(self) -> None:
        if self.start < 0:
            self.start = self.offset

    def remember(self) -> None:
        """Take `seen` from the file as it is now, for an offset found rather than read to."""
        back = min(self.offset, SEEN_BYTES)
        try:
            self.seen = os.pread(self.fd, back, self.offset - back) if back else b""
        except OSError:
            self.seen = b""

    def advance(self, data: bytes, count: int) -> None:
        """Move past the first `count` bytes of `data`, just read from the offset."""
        self.offset += count
        self.seen = (self.seen + data[max(count - SEEN_BYTES, 0) : count])[-SEEN_BYTES:]

    def rewind(self) -> None:
        """The file was truncated: read it again from its start."""
        self.offset, self.seen = 0, b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_watcher(path: str, offset: int, inode: int | None = None) -> Watcher | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    st = os.fstat(fd)
    if inode is not None and st.st_ino != inode:
        os.close(fd)
        return None
    watcher = Watcher(path, st.st_ino, min(offset, st.st_size) if inode is None else offset, fd)
    if watcher.offset <= st.st_size:
        watcher.remember()
    return watcher


def find_inode(directory: str, inode: int) -> str | None:
    """A rotated file is still in its directory under another name, usually."""
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file() and entry.inode() == inode:
                    return entry.path
    return None


def _parse(parser: Parser, line: str) -> tuple[EventTime, dict[str, Any]] | None:
    try:
        return parser(line) if line else None
    except RecursionError:
        return None


@dataclass
class Batch:
    """Entries packed as they are parsed: bytes weigh a fraction of the dicts they came from."""

    entries: dict[str, list[bytes]] = field(default_factory=dict)
    lines: int = 0
    size: int = 0
    started: float = 0.0
    by_source: dict[str, int] = field(default_factory=dict)  # lines per source tag

    def add(self, tag: str, entry: bytes, size: int, source: str) -> None:
        if not self.lines:
            self.started = time.monotonic()
        self.entries.setdefault(tag, []).append(entry)
        self.lines += 1
        self.size += size
        self.by_source[source] = self.by_source.get(source, 0) + 1


class Tail:
    """The watchers of one source and its position file."""

    def __init__(self, source: Source, config: AgentConfig) -> None:
        self.source = source
        self.config = config
        self.watchers: list[Watcher] = []
        self._started = False
        self._known_paths: set[str] = set()
        self._packer = forward.EntryPacker()

    def restore(self) -> None:
        """Reopen what the position file names, following files renamed meanwhile."""
        for path, offset, inode in read_positions(self.source.pos_file):
            self._known_paths.add(path)
            watcher = open_watcher(path, offset, inode)
            if watcher is None:
                moved = find_inode(str(Path(path).parent), inode)
                watcher = open_watcher(moved, offset, inode) if moved else None
                if watcher is None:
                    log.warning("%s (inode %d) is gone; its unread tail is lost", path, inode)
                    continue
                log.info(
                    "%s rotated while the agent was down; reading inode %d at %s to its end",
                    path,
                    inode,
                    moved,
                )
                watcher.path = path
                watcher.rotated_at = time.monotonic()
            elif os.fstat(watcher.fd).st_size < offset:
                log.info("%s truncated while the agent was down; reading from 0", path)
                watcher.rewind()
            self.watchers.append(watcher)

    def positions(self) -> list[Position]:
        return [Position(w.path, w.offset, w.inode) for w in self.watchers]

    def current(self, path: str) -> Watcher | None:
        return next((w for w in self.watchers if w.path == path and w.rotated_at is None), None)

    def refresh(self, scan: bool) -> None:
        """Notice rotations and truncations; with scan, also files newly matching the glob."""
        now_m = time.monotonic()
        for watcher in [w for w in self.watchers if w.rotated_at is None]:
            try:
                st = Path(watcher.path).stat()
            except FileNotFoundError:
                # Moved away, its replacement not created yet: the glob scan
                # picks that up, read from its start.
                log.info("%s rotated (moved away, inode %d)", watcher.path, watcher.inode)
                watcher.rotated_at = now_m
                continue
            if st.st_ino != watcher.inode:
                watcher.rotated_at = now_m
                log.info("%s rotated (inode %d -> %d)", watcher.path, watcher.inode, st.st_ino)
                self._add(watcher.path, from_head=True)
            elif st.st_size < watcher.offset:
                log.info(
                    "%s truncated (%d < %d); reading from 0",
                    watcher.path,
                    st.st_size,
                    watcher.offset,
                )
                watcher.rewind()
        if scan:
            for pattern in self.source.paths:
                for path in sorted(glob.glob(pattern)):  # noqa: PTH207 - patterns are absolute
                    if self.current(path) is None and Path(path).is_file():
                        head = self._started or self.source.read_from_head
                        self._add(path, from_head=head or path in self._known_paths)
            self._started = True

    def _add(self, path: str, from_head: bool) -> None:
        watcher = open_watcher(path, 0 if from_head else 2**63)
        if watcher is not None and all(w.inode != watcher.inode for w in self.watchers):
            self.watchers.append(watcher)
            self._known_paths.add(path)
        elif watcher is not None:
            watcher.close()

    def expire(self, watcher: Watcher, at_end: bool) -> bool:
        """Drop a rotated file once it is read to its end and rotate_wait has passed."""
        if watcher.rotated_at is None or not at_end:
            return False
        return time.monotonic() - watcher.rotated_at >= self.config.rotate_wait

    def full(self, batch: Batch) -> bool:
        return batch.lines >= self.config.batch_lines or batch.size >= self.config.batch_bytes

    def read(self, batch: Batch) -> int:
        """Move whole lines into the batch up to its limits; returns how many."""
        added = 0
        for watcher in list(self.watchers):
            at_end = False
            while not at_end and not self.full(batch):
                got, at_end = self._read_some(watcher, batch)
                added += got
            if at_end and self.expire(watcher, at_end):
                added += self._drain_partial(watcher, batch)
                watcher.close()
                self.watchers.remove(watcher)
        return added

    def _read_some(self, watcher: Watcher, batch: Batch) -> tuple[int, bool]:
        """Read whole lines from one file; the flag says nothing whole is left for now."""
        cfg = self.config
        want = max(cfg.batch_bytes - batch.size, cfg.max_line_bytes + 1)
        back = len(watcher.seen)
        try:
            data = os.pread(watcher.fd, want, watcher.offset)
            # Read after the data (a truncation in between shows here too),
            # and apart from it: a slice of the data would copy all of it.
            before = os.pread(watcher.fd, back, watcher.offset - back) if back else b""
        except OSError as exc:
            log.warning("cannot read %s: %s", watcher.path, exc)
            return 0, True
        if before != watcher.seen:
            log.info(
                "%s truncated and written again past the position (%d); reading from 0",
                watcher.path,
                watcher.offset,
            )
            watcher.rewind()
            return 0, False
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) <= cfg.max_line_bytes:
                return 0, True  # only the start of a line so far
            # A line without end would stall the file forever: ship it in pieces.
            self._emit(data[: cfg.max_line_bytes], batch)
            watcher.advance(data, cfg.max_line_bytes)
            return 1, False
        # At most the lines the batch has room for; the last piece is whatever
        # follows them, a partial line or lines for the next batch.
        lines = data.split(b"\n", max(cfg.batch_lines - batch.lines, 0))
        lines.pop()
        count, pos = self._emit_lines(lines, batch)
        watcher.advance(data, pos)
        return count, pos > end and len(data) < want

    def _drain_partial(self, watcher: Watcher, batch: Batch) -> int:
        """A rotated file can end without a newline: that last line is still a line."""
        try:
            rest = os.pread(watcher.fd, self.config.max_line_bytes, watcher.offset)
        except OSError:
            return 0
        if not rest:
            return 0
        self._emit(rest, batch)
        watcher.advance(rest, len(rest))
        return 1

    def _emit(self, raw: bytes, batch: Batch) -> None:
        line = raw.decode("utf-8", "backslashreplace").rstrip("\r")
        parsed = _parse(self.source.parser, line)
        entry = self._pack(parsed) if parsed is not None else None
        if entry is None:
            batch.add(*self._unparsed(line), len(raw) + 1, self.source.tag)
            return
        batch.add(self.source.tag, entry, len(raw) + 1, self.source.tag)

    def _emit_lines(self, lines: list[bytes], batch: Batch) -> tuple[int, int]:
        """_emit for whole lines, until the batch is full; returns (lines, bytes) taken.

        Lookups and counters are kept out of the per-line loop: at tens of
        thousands of lines a second they cost about a quarter of what parsing does.
        """
        cfg = self.config
        max_line, batch_bytes = cfg.max_line_bytes, cfg.batch_bytes
        host_key, host = cfg.host_key, cfg.host
        parser, tag, pack = self.source.parser, self.source.tag, self._packer.pack
        # Fetched at the first parsed line, so the tags keep their order in the batch.
        entries: list[bytes] | None = None
        if not batch.lines:
            batch.started = time.monotonic()
        count = taken = 0
        size = batch.size
        for whole in lines:
            if size >= batch_bytes:
                break
            taken += len(whole) + 1
            raw = whole[:max_line] if len(whole) > max_line else whole
            size += len(raw) + 1
            count += 1
            line = raw.decode("utf-8", "backslashreplace").rstrip("\r")
            try:
                parsed = parser(line) if line else None
            except RecursionError:
                parsed = None  # JSON nested past Python's stack: ship the line itself
            if parsed is None:
                unparsed_tag, entry = self._unparsed(line)
                batch.entries.setdefault(unparsed_tag, []).append(entry)
                continue
            stamp, record = parsed
            record.setdefault(host_key, host)
            try:
                entry = pack(stamp, record)
            except (ValueError, TypeError, OverflowError):
                entry = None  # nested past msgpack's limit, say: ship the line itself
            if entry is None:
                unparsed_tag, entry = self._unparsed(line)
                batch.entries.setdefault(unparsed_tag, []).append(entry)
                continue
            if entries is None:
                entries = batch.entries.setdefault(tag, [])
            entries.append(entry)
        batch.lines += count
        batch.size = size
        if count:
            batch.by_source[tag] = batch.by_source.get(tag, 0) + count
        return count, taken

    def _pack(self, parsed: tuple[EventTime, dict[str, Any]]) -> bytes | None:
        stamp, record = parsed
        record.setdefault(self.config.host_key, self.config.host)
        try:
            return self._packer.pack(stamp, record)
        except (ValueError, TypeError, OverflowError):
            return None

    def _unparsed(self, line: str) -> tuple[str, bytes]:
        record = {"message": line}
        record.setdefault(self.config.host_key, self.config.host)
        return f"{self.source.tag}.unparsed", self._packer.pack(now(), record)

"""shipyard log agent: tails files like fluentd's in_tail and forwards them with acks.

    python3 -m shipyard_logs.agent [--config FILE] [--check-config]

Each source (a path or glob, a tag, a format) keeps a position file with one
line per watched file, `path<TAB>offset<TAB>inode` in hex as fluentd writes
it. Lines are parsed, tagged, batched and sent as PackedForward frames, each
with a unique `chunk` id. Positions move only after the collector acked every
frame of a batch, so the backlog stays in the log files themselves.

Shipping runs in its own thread, so reading and parsing go on while batches
are in flight: up to `max_inflight` batches are sent before the oldest is
acked, and acks commit positions strictly in batch order. Every batch not yet
committed is in `<pos_dir>/inflight.msgpack`, written before the batch is
sent: after a crash or a lost connection they are resent in order with the
same chunk ids, which the collector recognises, so nothing is duplicated.

Rotation: when a path names a new inode (rename and create), the old file is
read to its end and dropped `rotate_wait` seconds later while the new one is
read from its start; when a file shrinks below the position (copytruncate), it
is read again from 0.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import itertools
import logging
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from . import forward
from .config import (
    ABSOLUTE_PATH,
    LOG_LEVEL,
    OPTIONAL_PATH,
    PORT,
    Between,
    ConfigError,
    Matches,
    OneOf,
    Setting,
    config_from_cli,
    load_file,
    merge,
)
from .durable import write_atomically
from .parsers import PARSERS, Parser, now

log = logging.getLogger("shipyard_logs.agent")

INFLIGHT = "inflight.msgpack"

MiB = 1024 * 1024
# Seconds: a floor keeps a zero from turning a wait into a hot loop, a
# ceiling keeps a typo from stalling shipping for days.
DEFAULTS: dict[str, Any] = {
    "collector_host": Setting(
        "127.0.0.1", Matches(r"[^\s/]+", "a host name or an IP address", 255)
    ),
    "collector_port": Setting(24224, PORT),
    "pos_dir": Setting("/var/lib/shipyard/log-agent", ABSOLUTE_PATH),
    "host": Setting("", Matches(r"\S*", "empty or a host name", 253)),
    "host_key": Setting("source_host", Matches(r"[A-Za-z_@][A-Za-z0-9_.@-]*", "a record key", 64)),
    "batch_lines": Setting(1000, Between(1, 100_000)),
    "batch_bytes": Setting(1 * MiB, Between(64, 64 * MiB)),
    "flush_interval": Setting(1.0, Between(0.01, 3600)),
    "poll_interval": Setting(0.25, Between(0.01, 60)),
    "refresh_interval": Setting(5.0, Between(0.1, 3600)),
    "rotate_wait": Setting(5.0, Between(0, 3600)),
    "read_from_head": False,
    "connect_timeout": Setting(5.0, Between(0.1, 300)),
    "ack_timeout": Setting(30.0, Between(1, 3600)),
    "retry_max_interval": Setting(30.0, Between(0.1, 3600)),
    "max_inflight": Setting(4, Between(1, 64)),
    "compress": Setting("gzip", OneOf(("gzip", "text"))),
    "max_line_bytes": Setting(1 * MiB, Between(16, 64 * MiB)),
    "log_level": Setting("INFO", LOG_LEVEL),
}
SOURCE_DEFAULTS: dict[str, Any] = {
    "path": "",
    # The tag names the position file <pos_dir>/<tag>.pos: no `/`, no `..`.
    "tag": Setting(
        "",
        Matches(r"([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)?", "dot-separated words of A-Za-z0-9_-", 128),
    ),
    "format": Setting("none", OneOf(tuple(sorted(PARSERS)))),
    "read_from_head": None,
    "pos_file": Setting("", OPTIONAL_PATH),
}


@dataclass(frozen=True)
class Source:
    paths: tuple[str, ...]
    tag: str
    format: str
    read_from_head: bool
    pos_file: Path

    @property
    def parser(self) -> Parser:
        return PARSERS[self.format]


@dataclass(frozen=True)
class AgentConfig:
    collector: tuple[str, int]
    pos_dir: Path
    host: str
    host_key: str
    batch_lines: int
    batch_bytes: int
    flush_interval: float
    poll_interval: float
    refresh_interval: float
    rotate_wait: float
    connect_timeout: float
    ack_timeout: float
    retry_max_interval: float
    max_inflight: int
    compress: bool
    max_line_bytes: int
    log_level: str
    sources: tuple[Source, ...]


def _source(index: int, given: object, top: dict[str, Any], pos_dir: Path) -> Source:
    where = f"sources[{index}]"
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a table")
    raw = merge(SOURCE_DEFAULTS, given, "\0", where)  # sources take no env overrides
    paths = raw["path"] if isinstance(raw["path"], list) else str(raw["path"]).split(",")
    paths = tuple(p.strip() for p in paths if isinstance(p, str) and p.strip())
    if not paths:
        raise ConfigError(f"{where}.path is required")
    if not raw["tag"]:
        raise ConfigError(f"{where}.tag is required")
    head = top["read_from_head"] if raw["read_from_head"] is None else bool(raw["read_from_head"])
    pos_file = Path(raw["pos_file"]) if raw["pos_file"] else pos_dir / f"{raw['tag']}.pos"
    return Source(paths, raw["tag"], raw["format"], head, pos_file)


def load_config(path: str | None, env: dict[str, str] | None = None) -> AgentConfig:
    env = dict(os.environ) if env is None else env
    data = load_file(path or env.get("SHIPYARD_AGENT_CONFIG"))
    sources = data.pop("sources", [])
    top = merge(DEFAULTS, data, "SHIPYARD_AGENT_", "agent", env)
    if not isinstance(sources, list) or not sources:
        raise ConfigError("agent: at least one [[sources]] entry is required")
    pos_dir = Path(top["pos_dir"])
    parsed = tuple(_source(i, s, top, pos_dir) for i, s in enumerate(sources))
    if len({s.pos_file for s in parsed}) != len(parsed):
        raise ConfigError("agent: two sources share a pos_file (give each a distinct tag)")
    return AgentConfig(
        collector=(top["collector_host"], int(top["collector_port"])),
        pos_dir=pos_dir,
        host=top["host"] or socket.gethostname(),
        host_key=top["host_key"],
        batch_lines=int(top["batch_lines"]),
        batch_bytes=int(top["batch_bytes"]),
        flush_interval=float(top["flush_interval"]),
        poll_interval=float(top["poll_interval"]),
        refresh_interval=float(top["refresh_interval"]),
        rotate_wait=float(top["rotate_wait"]),
        connect_timeout=float(top["connect_timeout"]),
        ack_timeout=float(top["ack_timeout"]),
        retry_max_interval=float(top["retry_max_interval"]),
        max_inflight=int(top["max_inflight"]),
        compress=top["compress"] == "gzip",
        max_line_bytes=int(top["max_line_bytes"]),
        log_level=str(top["log_level"]).upper(),
        sources=parsed,
    )


# ------------------------------------------------------------------ durable files


Position = tuple[str, int, int]  # path, inode, offset


def read_positions(path: Path) -> list[Position]:
    """fluentd's pos_file lines: `path<TAB>offset(16 hex)<TAB>inode(16 hex)`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    found = []
    for line in text.splitlines():
        parts = line.rsplit("\t", 2)
        if len(parts) != 3:
            continue
        with contextlib.suppress(ValueError):
            found.append((parts[0], int(parts[2], 16), int(parts[1], 16)))
    return found


def render_positions(positions: list[Position]) -> bytes:
    return "".join(f"{p}\t{off:016x}\t{ino:016x}\n" for p, ino, off in positions).encode()


# ------------------------------------------------------------------ tailing


@dataclass
class Watcher:
    """One open file of a source; `offset` is the start of the first unread line."""

    path: str
    inode: int
    offset: int
    fd: int
    rotated_at: float | None = None

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
    return Watcher(path, st.st_ino, min(offset, st.st_size) if inode is None else offset, fd)


def find_inode(directory: str, inode: int) -> str | None:
    """A rotated file is still in its directory under another name, usually."""
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file() and entry.inode() == inode:
                    return entry.path
    return None


@dataclass
class Batch:
    """Entries packed as they are parsed: bytes weigh a fraction of the dicts they came from."""

    entries: dict[str, list[bytes]] = field(default_factory=dict)
    lines: int = 0
    size: int = 0
    started: float = 0.0

    def add(self, tag: str, entry: bytes, size: int) -> None:
        if not self.lines:
            self.started = time.monotonic()
        self.entries.setdefault(tag, []).append(entry)
        self.lines += 1
        self.size += size


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
        for path, inode, offset in read_positions(self.source.pos_file):
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
                watcher.offset = 0
            self.watchers.append(watcher)

    def positions(self) -> list[Position]:
        return [(w.path, w.inode, w.offset) for w in self.watchers]

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
                watcher.offset = 0
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
        try:
            data = os.pread(watcher.fd, want, watcher.offset)
        except OSError as exc:
            log.warning("cannot read %s: %s", watcher.path, exc)
            return 0, True
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) <= cfg.max_line_bytes:
                return 0, True  # only the start of a line so far
            # A line without end would stall the file forever: ship it in pieces.
            self._emit(data[: cfg.max_line_bytes], batch)
            watcher.offset += cfg.max_line_bytes
            return 1, False
        # At most the lines the batch has room for; the last piece is whatever
        # follows them, a partial line or lines for the next batch.
        lines = data.split(b"\n", max(cfg.batch_lines - batch.lines, 0))
        lines.pop()
        count, pos = self._emit_lines(lines, batch)
        watcher.offset += pos
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
        watcher.offset += len(rest)
        return 1

    def _emit(self, raw: bytes, batch: Batch) -> None:
        line = raw.decode("utf-8", "backslashreplace").rstrip("\r")
        parsed = self.source.parser(line) if line else None
        if parsed is None:
            batch.add(*self._unparsed(line), len(raw) + 1)
            return
        stamp, record = parsed
        record.setdefault(self.config.host_key, self.config.host)
        batch.add(self.source.tag, self._packer.pack(stamp, record), len(raw) + 1)

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
            parsed = parser(line) if line else None
            if parsed is None:
                unparsed_tag, entry = self._unparsed(line)
                batch.entries.setdefault(unparsed_tag, []).append(entry)
                continue
            stamp, record = parsed
            record.setdefault(host_key, host)
            if entries is None:
                entries = batch.entries.setdefault(tag, [])
            entries.append(pack(stamp, record))
        batch.lines += count
        batch.size = size
        return count, taken

    def _unparsed(self, line: str) -> tuple[str, bytes]:
        record = {"message": line}
        record.setdefault(self.config.host_key, self.config.host)
        return f"{self.source.tag}.unparsed", self._packer.pack(now(), record)


# ------------------------------------------------------------------ shipping


def new_chunk_id() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


# How long a stopping agent still waits for the acks of batches already sent:
# the images give it 1 s to stop, and whatever is not acked is resent later.
STOP_GRACE = 0.5


@dataclass
class Sent:
    """One batch on its way: its frames, and the positions just past its lines."""

    frames: list[tuple[str, bytes]]
    positions: dict[str, list[Position]]
    lines: int
    waiting: set[str] = field(default_factory=set)

    def record(self) -> dict[str, Any]:
        return {"frames": self.frames, "positions": self.positions, "lines": self.lines}


def read_inflight(path: Path) -> list[Sent]:
    """The batches a previous run had not committed, oldest first."""
    try:
        record = msgpack.unpackb(path.read_bytes(), raw=False)
        # Before pipelining the file held one batch, not a list of them.
        batches = record.get("batches", [record])
        return [
            Sent([(str(c), bytes(d)) for c, d in b["frames"]], b["positions"], int(b["lines"]))
            for b in batches
        ]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError, msgpack.UnpackException):
        # write_atomically renames a complete file into place; a bad one was
        # never sent, and its lines are still past the committed positions.
        log.warning("ignoring unreadable %s", path)
        path.unlink(missing_ok=True)
        return []


class Shipper:
    """A thread that keeps up to max_inflight batches in flight and commits them in order.

    Invariants: a batch is in the inflight file before its first byte is
    sent; positions are written only for a batch whose frames, and those of
    every batch before it, are acked; after a failure every batch not yet
    committed is resent, oldest first, with its original chunk ids.
    """

    def __init__(self, config: AgentConfig, stop: threading.Event, inflight: Path) -> None:
        self.config = config
        self.stop = stop
        self.inflight = inflight
        # One batch waits here while the next is parsed: together with the
        # window, that bounds what the agent holds in memory.
        self.queue: queue.Queue[Sent] = queue.Queue(maxsize=1)
        self.pending: deque[Sent] = deque()
        self.sock: socket.socket | None = None
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1024 * 1024)
        self.failures = 0
        self.retry_at = 0.0
        self.deadline = 0.0
        self.shipped = 0
        self.crashed = False
        # Set once the batches replayed at start are committed: only then do
        # the position files say where the tails go on.
        self.settled = threading.Event()
        self._written: dict[str, bytes] = {}
        self._thread = threading.Thread(target=self._run, name="shipper", daemon=True)

    # -- called from the main thread

    def start(self, replay: list[Sent]) -> None:
        self.pending.extend(replay)  # already in the inflight file; sent on connect
        if not replay:
            self.settled.set()
        self._thread.start()

    def submit(self, sent: Sent) -> bool:
        """Hand a batch over, waiting while the window is full; False once stopping."""
        while not self.stop.is_set():
            try:
                self.queue.put(sent, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def join(self) -> None:
        self._thread.join()

    # -- the shipper thread

    def _run(self) -> None:
        try:
            stopping_at: float | None = None
            while True:
                if self.stop.is_set():
                    stopping_at = stopping_at or time.monotonic() + STOP_GRACE
                    if not self.pending or self.sock is None or time.monotonic() > stopping_at:
                        break
                self._step(stopping=stopping_at is not None)
        except Exception:
            log.exception("the shipper failed; stopping")
            self.crashed = True
            self.stop.set()
        finally:
            self._close()

    def _step(self, stopping: bool) -> None:
        try:
            if self.sock is None:
                self._connect()
            elif not stopping and len(self.pending) < self.config.max_inflight:
                # Short waits on either side: new batches and acks both keep coming.
                self._take(wait=0.02 if self.pending else 0.2)
                self._receive(timeout=0.0)
            else:
                self._receive(timeout=0.1)
        except (OSError, forward.ForwardError, ValueError) as exc:
            self._fail(exc)

    def _connect(self) -> None:
        delay = self.retry_at - time.monotonic()
        if delay > 0:
            self.stop.wait(min(delay, 0.2))
            return
        if not self.pending and self.queue.empty():
            self.stop.wait(0.2)  # connect when there is something to send
            return
        sock = socket.create_connection(self.config.collector, timeout=self.config.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1024 * 1024)
        if self.pending:
            log.info("resending %d unacked lines", sum(s.lines for s in self.pending))
        for sent in self.pending:
            self._transmit(sent)

    def _take(self, wait: float) -> None:
        try:
            sent = self.queue.get(timeout=wait)
        except queue.Empty:
            return
        self._persist([*self.pending, sent])
        self.pending.append(sent)
        self._transmit(sent)

    def _persist(self, batches: list[Sent]) -> None:
        record = {"batches": [sent.record() for sent in batches]}
        try:
            write_atomically(self.inflight, msgpack.packb(record, use_bin_type=True))
        except OSError as exc:
            # Not a collector problem to retry: a batch that cannot be kept
            # must not be sent.
            raise RuntimeError(f"cannot write {self.inflight}: {exc}") from exc

    def _transmit(self, sent: Sent) -> None:
        assert self.sock is not None
        sent.waiting = {chunk for chunk, _ in sent.frames}
        self.sock.settimeout(self.config.ack_timeout)
        self.sock.sendall(b"".join(data for _, data in sent.frames))
        self.deadline = time.monotonic() + self.config.ack_timeout

    def _receive(self, timeout: float) -> None:
        """Read the acks that came in within timeout; commit what they complete."""
        if self.sock is None or not self.pending:
            self.stop.wait(timeout)
            return
        if select.select([self.sock], [], [], timeout)[0]:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionResetError("collector closed the connection")
            self.unpacker.feed(data)
            self._acked([forward.decode_ack(reply) for reply in self.unpacker])
        if self.pending and time.monotonic() > self.deadline:
            raise TimeoutError(f"no ack within {self.config.ack_timeout:.0f}s")

    def _acked(self, chunks: list[Any]) -> None:
        for chunk in chunks:
            for sent in self.pending:
                sent.waiting.discard(chunk)
        done = list(itertools.takewhile(lambda sent: not sent.waiting, self.pending))
        if not done:
            return
        self.failures = 0
        self.deadline = time.monotonic() + self.config.ack_timeout
        # Only the newest positions matter: they include every older batch.
        self._commit(done[-1].positions)
        for sent in done:
            self.pending.popleft()
            self.shipped += sent.lines
        if not self.pending:
            # The file now names only committed batches; a crash before the
            # next _persist would resend them, which the collector drops.
            self.inflight.unlink(missing_ok=True)
            self.settled.set()

    def _commit(self, positions: dict[str, list[Position]]) -> None:
        for pos_file, entries in positions.items():
            data = render_positions([tuple(e) for e in entries])
            if self._written.get(pos_file) != data:  # an idle source costs no fsync
                write_atomically(Path(pos_file), data)
                self._written[pos_file] = data

    def _fail(self, exc: Exception) -> None:
        self._close()
        self.failures += 1
        delay = min(0.2 * 2 ** (self.failures - 1), self.config.retry_max_interval)
        self.retry_at = time.monotonic() + delay
        log.warning(
            "collector %s:%d: %s; retrying in %.1fs",
            *self.config.collector,
            exc or type(exc).__name__,
            delay,
        )

    def _close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


# ------------------------------------------------------------------ the agent


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.tails = [Tail(source, config) for source in config.sources]
        self.inflight = config.pos_dir / INFLIGHT
        self.shipper = Shipper(config, self.stop, self.inflight)

    def run(self) -> int:
        self.config.pos_dir.mkdir(parents=True, exist_ok=True)
        for source in self.config.sources:
            source.pos_file.parent.mkdir(parents=True, exist_ok=True)
        replay = read_inflight(self.inflight)
        if replay:
            log.info(
                "resending %d unacked lines from the previous run", sum(s.lines for s in replay)
            )
        self.shipper.start(replay)
        # The tails start from the committed positions, so the replay has to
        # be committed first, or its lines would be read again under new ids.
        while not self.shipper.settled.is_set() and not self.stop.is_set():
            self.stop.wait(0.05)
        if not self.stop.is_set():
            self._tail()
        self.shipper.join()
        for tail in self.tails:
            for watcher in tail.watchers:
                watcher.close()
        log.info("stopped; %d lines shipped", self.shipper.shipped)
        return 1 if self.shipper.crashed else 0

    def _tail(self) -> None:
        for tail in self.tails:
            tail.restore()
            tail.refresh(scan=True)
        next_scan = time.monotonic() + self.config.refresh_interval
        batch = Batch()
        while not self.stop.is_set():
            scan = time.monotonic() >= next_scan
            if scan:
                next_scan = time.monotonic() + self.config.refresh_interval
            for tail in self.tails:
                tail.refresh(scan)
            added = sum(tail.read(batch) for tail in self.tails)
            full = batch.lines >= self.config.batch_lines or batch.size >= self.config.batch_bytes
            due = batch.lines and time.monotonic() - batch.started >= self.config.flush_interval
            if full or due:
                if not self.shipper.submit(self._sent(batch)):
                    break
                batch = Batch()
            elif not added:
                self.stop.wait(self.config.poll_interval)

    def _sent(self, batch: Batch) -> Sent:
        frames = []
        for tag, entries in batch.entries.items():
            chunk = new_chunk_id()
            stream = b"".join(entries)
            data = forward.encode_packed_stream(
                tag, stream, len(entries), chunk, self.config.compress
            )
            frames.append((chunk, data))
        positions = {str(t.source.pos_file): t.positions() for t in self.tails}
        return Sent(frames, positions, batch.lines)


def iter_signals() -> Iterator[signal.Signals]:
    yield from (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    config = config_from_cli(
        "shipyard-log-agent", __doc__.split("\n")[0], "SHIPYARD_AGENT_CONFIG", load_config, argv
    )
    if isinstance(config, int):
        return config
    agent = Agent(config)
    for signum in iter_signals():
        signal.signal(signum, lambda *_: agent.stop.set())
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())

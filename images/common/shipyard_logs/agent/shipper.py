"""Shipping: a thread that keeps batches in flight to the collector and commits them in order."""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
import os
import queue
import select
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from .. import forward
from ..durable import write_atomically
from ..handshake import HandshakeError
from .config import AgentConfig
from .link import is_helo, open_link
from .positions import Position, render_positions

log = logging.getLogger("shipyard_logs.agent")


def new_chunk_id() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


# inflight.msgpack since positions were stored in the order of a position
# file line, (path, offset, inode); files without it hold (path, inode, offset).
INFLIGHT_FORMAT = 2

# How long a stopping agent still waits for the acks of batches already sent:
# the images give it 1 s to stop, and whatever is not acked is resent later.
STOP_GRACE = 0.5


@dataclass
class Sent:
    """One batch on its way: its frames, and the positions just past its lines."""

    frames: list[tuple[str, bytes]]
    positions: dict[str, list[Position]]
    lines: int
    by_source: dict[str, int] = field(default_factory=dict)  # lines per source tag
    waiting: set[str] = field(default_factory=set)

    def record(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "positions": self.positions,
            "lines": self.lines,
            "by_source": self.by_source,
        }


def read_inflight(path: Path) -> list[Sent]:
    """The batches a previous run had not committed, oldest first."""
    try:
        record = msgpack.unpackb(path.read_bytes(), raw=False)
        # Before pipelining the file held one batch, not a list of them.
        batches = record.get("batches", [record])
        older = record.get("format") != INFLIGHT_FORMAT
        return [
            Sent(
                [(str(c), bytes(d)) for c, d in b["frames"]],
                {
                    str(pos_file): [_position(entry, older) for entry in entries]
                    for pos_file, entries in b["positions"].items()
                },
                int(b["lines"]),
                {str(k): int(v) for k, v in b.get("by_source", {}).items()},
            )
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


def _position(entry: list[Any], older: bool) -> Position:
    if older:
        path, inode, offset = entry
        return Position(str(path), int(offset), int(inode))
    path, offset, inode = entry
    return Position(str(path), int(offset), int(inode))


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
        # For stats.json: read by the main thread, written here.
        self.connected = False
        self.last_ack: float | None = None  # wall-clock time of the last ack
        self.shipped_by_source: dict[str, int] = {}
        self.committed: dict[str, list[Position]] = {}
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
        except (OSError, forward.ForwardError, HandshakeError, ValueError) as exc:
            self._fail(exc)

    def _connect(self) -> None:
        delay = self.retry_at - time.monotonic()
        if delay > 0:
            self.stop.wait(min(delay, 0.2))
            return
        if not self.pending and self.queue.empty():
            self.stop.wait(0.2)  # connect when there is something to send
            return
        self.sock, self.unpacker = open_link(self.config)
        self.connected = True
        if self.pending:
            log.info("resending %d unacked lines", sum(s.lines for s in self.pending))
        for sent in self.pending:
            self._transmit(sent)

    def _take(self, wait: float) -> None:
        if not self.pending and self._closed_by_collector():
            # An idle connection the collector let go (idle_timeout): not a failure.
            self._close()
            return
        try:
            sent = self.queue.get(timeout=wait)
        except queue.Empty:
            return
        self._persist([*self.pending, sent])
        self.pending.append(sent)
        self._transmit(sent)

    def _persist(self, batches: list[Sent]) -> None:
        record = {"format": INFLIGHT_FORMAT, "batches": [sent.record() for sent in batches]}
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

    def _readable(self, timeout: float) -> bool:
        assert self.sock is not None
        # TLS may hold decrypted bytes the socket no longer shows as readable.
        pending = getattr(self.sock, "pending", None)
        return bool(pending and pending()) or bool(select.select([self.sock], [], [], timeout)[0])

    def _recv_now(self) -> bytes | None:
        """What can be read without waiting: b"" when the collector closed, None for nothing.

        Readable is not the same as data: a TLS 1.3 server sends session
        tickets after the handshake, and a blocking read past them would
        wait for an ack that is not coming.
        """
        assert self.sock is not None
        self.sock.settimeout(0.0)
        try:
            return self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            return None
        finally:
            self.sock.settimeout(self.config.ack_timeout)

    def _closed_by_collector(self) -> bool:
        if self.sock is None or not self._readable(0.0):
            return False
        data = self._recv_now()
        if data:
            self.unpacker.feed(data)  # stray bytes: checked as acks when some are due
        return data == b""

    def _receive(self, timeout: float) -> None:
        """Read the acks that came in within timeout; commit what they complete."""
        if self.sock is None or not self.pending:
            self.stop.wait(timeout)
            return
        if self._readable(timeout):
            data = self._recv_now()
            if data == b"":
                raise ConnectionResetError("collector closed the connection")
            if data:
                self.unpacker.feed(data)
                self._acked([self._ack(reply) for reply in self.unpacker])
        if self.pending and time.monotonic() > self.deadline:
            raise TimeoutError(f"no ack within {self.config.ack_timeout:.0f}s")

    @staticmethod
    def _ack(reply: object) -> Any:  # noqa: ANN401 - echoes the chunk id
        if is_helo(reply):
            raise HandshakeError("the collector asks for the <security> handshake: set shared_key")
        return forward.decode_ack(reply)

    def _acked(self, chunks: list[Any]) -> None:
        for chunk in chunks:
            for sent in self.pending:
                sent.waiting.discard(chunk)
        done = list(itertools.takewhile(lambda sent: not sent.waiting, self.pending))
        if not done:
            return
        self.failures = 0
        self.deadline = time.monotonic() + self.config.ack_timeout
        self.last_ack = time.time()
        # Only the newest positions matter: they include every older batch.
        self._commit(done[-1].positions)
        for sent in done:
            self.pending.popleft()
            self.shipped += sent.lines
            for tag, lines in sent.by_source.items():
                self.shipped_by_source[tag] = self.shipped_by_source.get(tag, 0) + lines
        if not self.pending:
            # The file now names only committed batches; a crash before the
            # next _persist would resend them, which the collector drops.
            self.inflight.unlink(missing_ok=True)
            self.settled.set()

    def _commit(self, positions: dict[str, list[Position]]) -> None:
        for pos_file, entries in positions.items():
            data = render_positions(entries)
            if self._written.get(pos_file) != data:  # an idle source costs no fsync
                write_atomically(Path(pos_file), data)
                self._written[pos_file] = data
        self.committed = {**self.committed, **positions}

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
        self.connected = False
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

"""Shipping: a thread that keeps batches in flight to the collectors and commits them in order.

Each batch goes to the collector the pool picks (balance.py), over one
connection per collector (a Link). A batch's frames wait for their acks on
the link they were sent on. When a link fails (a connect or send error, the
collector closing it, no ack within ack_timeout, its heartbeats missed), its
collector is detached and the frames of its batches that are not acked yet
are sent again, oldest first and under their chunk ids, to the collector the
pool picks next: another one when there is one, else the same after its
back-off. Positions are committed in batch order whichever collector acked.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
import os
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
from .balance import Node, Pool
from .config import AgentConfig
from .heartbeat import Connect, Heartbeats
from .link import is_helo, open_link
from .positions import Position, render_positions

log = logging.getLogger("shipyard_logs.agent")


def new_chunk_id() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


# inflight.msgpack since positions were stored in the order of a position
# file line, (path, offset, inode); files without it hold (path, inode, offset).
INFLIGHT_FORMAT = 2

# How long a stopping agent still sends its last batch and waits for the acks
# of what it sent: the images give it 1 s to stop, and whatever is not acked
# by then is resent at the next start.
STOP_GRACE = 0.5


@dataclass
class Sent:
    """One batch on its way: its frames, and the positions just past its lines."""

    frames: list[tuple[str, bytes]]
    positions: dict[str, list[Position]]
    lines: int
    by_source: dict[str, int] = field(default_factory=dict)  # lines per source tag
    # The chunk ids not acked yet, and the link they were last sent on (None: to send).
    waiting: set[str] = field(default_factory=set)
    link: Link | None = None
    resent: bool = False  # sent before, on a link that failed

    def __post_init__(self) -> None:
        if not self.waiting:
            self.waiting = {chunk for chunk, _ in self.frames}

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


class Link:
    """The connection to one collector."""

    def __init__(self, node: Node, sock: socket.socket, unpacker: msgpack.Unpacker) -> None:
        self.node = node
        self.sock = sock
        self.unpacker = unpacker
        self.deadline = 0.0  # no ack by then, with frames waiting: the link failed

    @property
    def label(self) -> str:
        return self.node.server.label


class Handoff:
    """One batch from the tailing thread to the shipper, which can look before it takes.

    A batch is taken only once a collector is there to send it to, so while
    none is, it waits here unpersisted and the tail waits behind it.
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._batch: Sent | None = None
        self._closed = False

    def put(self, sent: Sent, timeout: float) -> bool:
        with self._ready:
            if not self._ready.wait_for(lambda: self._batch is None or self._closed, timeout):
                return False
            if self._closed:
                return False
            self._batch = sent
            self._ready.notify_all()
            return True

    def ready(self, timeout: float) -> bool:
        """A batch waits; a wait ends early once the handoff is closed."""
        with self._ready:
            self._ready.wait_for(lambda: self._batch is not None or self._closed, timeout)
            return self._batch is not None

    def close(self) -> None:
        """No batch comes after this one: the tailing thread is done."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def drained(self) -> bool:
        with self._ready:
            return self._closed and self._batch is None

    def take(self) -> Sent:
        with self._ready:
            sent, self._batch = self._batch, None
            self._ready.notify_all()
        assert sent is not None
        return sent


LINK_ERRORS = (OSError, forward.ForwardError, HandshakeError, ValueError)


class Shipper:
    """A thread that keeps up to max_inflight batches in flight and commits them in order.

    Invariants: a batch is in the inflight file before its first byte is
    sent; positions are written only for a batch whose frames, and those of
    every batch before it, are acked; after a failure every frame not yet
    acked is sent again, oldest batch first, with its original chunk id.
    """

    def __init__(
        self,
        config: AgentConfig,
        stop: threading.Event,
        inflight: Path,
        pool: Pool | None = None,
        connect: Connect = open_link,
    ) -> None:
        self.config = config
        self.stop = stop
        self.inflight = inflight
        self.pool = pool or Pool(config.servers, config.heartbeat, config.retry_max_interval)
        self.connect = connect
        # One batch waits here while the next is parsed: together with the
        # window, that bounds what the agent holds in memory.
        self.handoff = Handoff()
        self.pending: deque[Sent] = deque()
        self.links: dict[Node, Link] = {}
        self.shipped = 0
        self.crashed = False
        # For stats.json: read by the main thread, written here.
        self.current: Node = self.pool.nodes[0]  # the collector of the latest batch
        self.last_ack: float | None = None  # wall-clock time of the last ack
        self.shipped_by_source: dict[str, int] = {}
        self.committed: dict[str, list[Position]] = {}
        # Set once the batches replayed at start are committed: only then do
        # the position files say where the tails go on.
        self.settled = threading.Event()
        self._written: dict[str, bytes] = {}
        self._thread = threading.Thread(target=self._run, name="shipper", daemon=True)
        self._heartbeats = Heartbeats(config, self.pool, stop, connect)

    @property
    def connected(self) -> bool:
        return self.current in self.links

    # -- called from the main thread

    def start(self, replay: list[Sent]) -> None:
        self.pending.extend(replay)  # already in the inflight file; sent on connect
        if not replay:
            self.settled.set()
        self._heartbeats.start()
        self._thread.start()

    def submit(self, sent: Sent) -> bool:
        """Hand a batch over, waiting while the window is full; False once stopping."""
        while not self.stop.is_set():
            if self.handoff.put(sent, timeout=0.1):
                return True
        return False

    def submit_last(self, sent: Sent | None) -> None:
        """Hand over the stopping agent's last batch, if the shipper can still take it.

        The services a container runs stop before its agent, so this batch
        holds their last lines. Whatever is not taken within the grace is
        read again at the next start: its positions were never committed.
        """
        if sent is not None:
            self.handoff.put(sent, timeout=STOP_GRACE)
        self.handoff.close()

    def join(self) -> None:
        self._thread.join()
        self._heartbeats.join()

    # -- the shipper thread

    def _run(self) -> None:
        try:
            stopping_at: float | None = None
            while True:
                if self.stop.is_set():
                    stopping_at = stopping_at or time.monotonic() + STOP_GRACE
                    if time.monotonic() > stopping_at or self._done_stopping():
                        break
                self._step(stopping=stopping_at is not None)
        except Exception:
            log.exception("the shipper failed; stopping")
            self.crashed = True
            self.stop.set()
        finally:
            for link in list(self.links.values()):
                self._close(link)

    def _awaiting(self) -> bool:
        """Frames sent on a live link and not acked yet."""
        return any(sent.link is not None and sent.waiting for sent in self.pending)

    def _can_send_last(self) -> bool:
        """Stopping, a last batch goes out only on the live link, behind nothing unsent."""
        return self.connected and all(sent.link is not None for sent in self.pending)

    def _may_take(self, stopping: bool) -> bool:
        if len(self.pending) >= self.config.max_inflight:
            return False
        return not stopping or (self._can_send_last() and not self.handoff.drained())

    def _done_stopping(self) -> bool:
        if self._awaiting():
            return False
        return self.handoff.drained() or not self._can_send_last()

    def _step(self, stopping: bool) -> None:
        for node in self.pool.tick(self.pool.clock()):
            link = self.links.get(node)
            if link is not None:
                self._fail(link, node.reason, counted=True)
        if not stopping:
            self._dispatch()
        if self._may_take(stopping):
            # Short waits on either side: new batches and acks both keep coming.
            self._take(wait=0.02 if self.pending else 0.2)
            self._receive(timeout=0.0)
        else:
            self._receive(timeout=0.1)

    def _dispatch(self) -> None:
        """Send the batches on no link (replayed, or their link failed), oldest first."""
        resent: dict[Link, int] = {}
        for sent in list(self.pending):
            if sent.link is not None:
                continue
            link = self._next_link()
            if link is None or not self._transmit(link, sent):
                break
            if sent.resent:
                resent[link] = resent.get(link, 0) + sent.lines
        for link, lines in resent.items():
            log.info("resending %d unacked lines to %s", lines, link.label)

    def _next_link(self) -> Link | None:
        """A connection to the collector of the next batch; None when there is none yet."""
        node = self.pool.select()
        alone = node is None
        if node is None:
            node = self.pool.fallback(self.pool.clock())
        if node is None:
            # Every collector detached and backing off: wait a little for the first.
            delay = self.pool.next_retry() - self.pool.clock()
            self.stop.wait(min(max(delay, 0.0), 0.2))
            return None
        link = self.links.get(node)
        if link is not None:
            return link
        try:
            sock, unpacker = self.connect(self.config, node.server)
        except LINK_ERRORS as exc:
            self._failed(node, exc)
            return None
        link = self.links[node] = Link(node, sock, unpacker)
        if alone:
            self.pool.connected(node)
        return link

    def _take(self, wait: float) -> None:
        if any(sent.link is None for sent in self.pending):
            return  # what waits to be resent goes first
        if not self.handoff.ready(wait):
            return
        link = self._next_link()
        if link is None:
            return
        sent = self.handoff.take()
        self._persist([*self.pending, sent])
        self.pending.append(sent)
        self._transmit(link, sent)

    def _persist(self, batches: list[Sent]) -> None:
        record = {"format": INFLIGHT_FORMAT, "batches": [sent.record() for sent in batches]}
        try:
            write_atomically(self.inflight, msgpack.packb(record, use_bin_type=True))
        except OSError as exc:
            # Not a collector problem to retry: a batch that cannot be kept
            # must not be sent.
            raise RuntimeError(f"cannot write {self.inflight}: {exc}") from exc

    def _transmit(self, link: Link, sent: Sent) -> bool:
        """Send what of the batch is not acked yet; False when the link failed."""
        if not self._waiting_on(link):
            link.deadline = time.monotonic() + self.config.ack_timeout
        sent.link = link
        self.current = link.node
        try:
            link.sock.settimeout(self.config.ack_timeout)
            link.sock.sendall(b"".join(d for chunk, d in sent.frames if chunk in sent.waiting))
        except LINK_ERRORS as exc:
            self._fail(link, exc)
            return False
        return True

    def _waiting_on(self, link: Link) -> bool:
        return any(sent.link is link and sent.waiting for sent in self.pending)

    @staticmethod
    def _readable(link: Link) -> bool:
        # TLS may hold decrypted bytes the socket no longer shows as readable.
        pending = getattr(link.sock, "pending", None)
        return bool(pending and pending())

    def _recv_now(self, link: Link) -> bytes | None:
        """What can be read without waiting: b"" when the collector closed, None for nothing.

        Readable is not the same as data: a TLS 1.3 server sends session
        tickets after the handshake, and a blocking read past them would
        wait for an ack that is not coming.
        """
        link.sock.settimeout(0.0)
        try:
            return link.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            return None
        finally:
            link.sock.settimeout(self.config.ack_timeout)

    def _receive(self, timeout: float) -> None:
        """Read the acks that came in within timeout; commit what they complete."""
        links = list(self.links.values())
        if not links:
            self.stop.wait(timeout)
            return
        ready = [link for link in links if self._readable(link)]
        if not ready:
            socks = {link.sock: link for link in links}
            ready = [socks[s] for s in select.select(list(socks), [], [], timeout)[0]]
        for link in ready:
            try:
                self._read(link)
            except LINK_ERRORS as exc:
                self._fail(link, exc)
        now = time.monotonic()
        for link in list(self.links.values()):
            if now > link.deadline and self._waiting_on(link):
                self._fail(link, TimeoutError(f"no ack within {self.config.ack_timeout:g}s"))

    def _read(self, link: Link) -> None:
        data = self._recv_now(link)
        if data == b"":
            if not self._waiting_on(link):
                # An idle connection the collector let go (idle_timeout): not a failure.
                self._close(link)
                return
            raise ConnectionResetError("the collector closed the connection")
        if data:
            link.unpacker.feed(data)
            self._acked(link, [self._ack(reply) for reply in link.unpacker])

    @staticmethod
    def _ack(reply: object) -> Any:  # noqa: ANN401 - echoes the chunk id
        if is_helo(reply):
            raise HandshakeError("the collector asks for the <security> handshake: set shared_key")
        return forward.decode_ack(reply)

    def _acked(self, link: Link, chunks: list[Any]) -> None:
        if not chunks:
            return
        for chunk in chunks:
            for sent in self.pending:
                sent.waiting.discard(chunk)
        link.deadline = time.monotonic() + self.config.ack_timeout
        self.pool.acked(link.node)
        self.last_ack = time.time()
        done = list(itertools.takewhile(lambda sent: not sent.waiting, self.pending))
        if not done:
            return
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

    def _fail(self, link: Link, exc: Exception | str, counted: bool = False) -> None:
        """The link is gone: its unacked batches are to be sent again, its collector detached."""
        self._close(link)
        for sent in self.pending:
            if sent.link is link:
                sent.link = None
                sent.resent = True
        if not counted:
            self._failed(link.node, exc)

    def _failed(self, node: Node, exc: Exception | str) -> None:
        reason = str(exc) or type(exc).__name__
        delay = self.pool.failed(node, reason)
        label = node.server.label
        if self.pool.rotation():
            log.warning("collector %s: %s; detached, the others take its batches", label, reason)
        else:
            log.warning("collector %s: %s; retrying in %.1fs", label, reason, delay)

    def _close(self, link: Link) -> None:
        if self.links.get(link.node) is link:
            del self.links[link.node]
        with contextlib.suppress(OSError):
            link.sock.close()

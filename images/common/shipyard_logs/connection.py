"""The collector's connections: admitted, secured, decoded fairly, within one memory budget.

A connection goes through, in order, each with its own refusal:

1. admission: the listener's allow_peers, max_connections across the
   collector and max_connections_per_peer on the listener;
2. TLS (the listener's [transport]) and the `<security>` handshake, both
   within handshake_timeout;
3. frames: decoded a step at a time (decoder.py), each frame within
   frame_timeout of its first byte and at most idle_timeout between frames;
   stored, then acked.

Decoding is the costly part, so the steps of all connections take turns in
a Scheduler that runs the connection which used the least decoding time
lately first: a peer sending cheap frames waits at most one step behind one
sending expensive ones. What every connection holds for the frames it is
receiving, decoding and storing counts against max_decode_memory; past it,
the connection decoding the most is refused, so the rest go on.

Every refusal is logged with the listener, the peer and the reason; a burst
of the same refusal from one peer is logged once and then counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import resource
import ssl
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack

from . import forward
from .decoder import FrameDecoder
from .forward import ForwardError, Frame, Limits
from .handshake import MAX_MESSAGE_BYTES, ServerHandshake
from .listeners import ListenerConfig
from .slices import StoreError

log = logging.getLogger("shipyard_logs.collector")

READ_SIZE = 256 * 1024
# The decoding time a connection used fades with this time constant (s).
USAGE_DECAY = 1.0
REFUSAL_LOG_INTERVAL = 10.0

Store = Callable[[list[Frame], str], Awaitable[Any]]


def peak_resident() -> int:
    """The most resident memory this process has had, in bytes: one cheap getrusage.

    The decoder's estimate cannot see what msgpack allocates for a container
    before its items arrive (1,024 nested arrays declared in 3 KB); the peak
    growing during a connection's steps can. A peak is what the bound is on.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RefusedError(Exception):
    """A connection or frame turned away; the message is the reason for the log."""


class RefusalLog:
    """A refusal is logged at once, the same one from the same peer again once per interval."""

    def __init__(self, interval: float = REFUSAL_LOG_INTERVAL) -> None:
        self.interval = interval
        self._next: dict[tuple[str, str, str], float] = {}
        self._held: Counter[tuple[str, str, str]] = Counter()

    def warn(
        self, listener: str, peer: str, kind: str, message: str, key: str | None = None
    ) -> None:
        """key: what makes two refusals the same (default: the message itself)."""
        same = (listener, peer, f"{kind} {message if key is None else key}")
        now = time.monotonic()
        if now < self._next.get(same, 0.0):
            self._held[same] += 1
            return
        held = self._held.pop(same, 0)
        more = f" ({held} more since the last report)" if held else ""
        log.warning("%s: %s %s: %s%s", listener, kind, peer, message, more)
        self._next[same] = now + self.interval
        if len(self._next) > 10_000:  # a flood from many addresses must not grow this
            self._next = {k: t for k, t in self._next.items() if t > now}
            self._held = Counter({k: n for k, n in self._held.items() if k in self._next})


class Scheduler:
    """One decoding step at a time, the least-served waiting connection first."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def turn(self, conn: Connection) -> None:
        if not self._busy and not self._waiting:
            self._busy = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (conn.usage(), next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(conn, 0.0)  # the turn was given as the task was cancelled
            raise

    def release(self, conn: Connection, seconds: float) -> None:
        conn.used(seconds)
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)
                return
        self._busy = False


class Server:
    """What the listeners share: the connections, the budget, the scheduler, the counters."""

    def __init__(
        self, limits: Limits, max_connections: int, max_decode_memory: int, store: Store
    ) -> None:
        self.limits = limits
        self.max_connections = max_connections
        self.max_decode_memory = max_decode_memory
        self.store = store
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.per_peer: Counter[tuple[str, str]] = Counter()
        self.scheduler = Scheduler()
        self.refusals = RefusalLog()
        self.held = 0  # bytes all connections hold, by their estimates
        self.refused_frames = 0
        self.refused_connections = 0
        self.lines = 0
        self.stats: Any = None  # the collector's stats.json, which counts refused frames too

    def refuse_frame(self) -> None:
        self.refused_frames += 1
        if self.stats is not None:
            self.stats.refused_frames += 1

    def handler(
        self, listener: ListenerConfig
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.serve(listener, reader, writer)

        return handle

    async def serve(
        self, listener: ListenerConfig, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) else "unknown"
        task = asyncio.current_task()
        reason = self._admission(listener, peer)
        if reason is not None:
            self.refused_connections += 1
            self.refusals.warn(listener.name, peer, "refusing a connection from", reason)
            writer.transport.abort()  # no FIN dance for a flood
            return
        conn = Connection(self, listener, reader, writer, peer)
        self.connections.add(conn)
        self.per_peer[(listener.name, peer)] += 1
        if task is not None:
            self.tasks.add(task)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            self.per_peer[(listener.name, peer)] -= 1
            if not self.per_peer[(listener.name, peer)]:
                del self.per_peer[(listener.name, peer)]
            self.held -= conn.cost
            if task is not None:
                self.tasks.discard(task)

    def _admission(self, listener: ListenerConfig, peer: str) -> str | None:
        if not listener.allows_peer(peer):
            return "the address is not in allow_peers"
        if len(self.connections) >= self.max_connections:
            return f"the collector has max_connections ({self.max_connections}) open"
        if self.per_peer[(listener.name, peer)] >= listener.max_connections_per_peer:
            return f"it has max_connections_per_peer ({listener.max_connections_per_peer}) open"
        return None

    def account(self, conn: Connection, cost: int) -> None:
        """Set what conn holds; past the budget, refuse the frame of whoever decodes the most."""
        self.held += cost - conn.cost
        conn.cost = cost
        if self.held <= self.max_decode_memory:
            return
        candidates = [c for c in self.connections if not c.storing and c.cost > 0]
        if not candidates:
            return
        victim = max(candidates, key=lambda c: c.cost)
        mib = 1024 * 1024
        victim.evict(
            f"the frames being decoded hold {self.held // mib} MiB, past max_decode_memory "
            f"({self.max_decode_memory // mib} MiB), and this connection the most "
            f"({victim.cost // mib} MiB)"
        )


class Connection:
    def __init__(
        self,
        server: Server,
        listener: ListenerConfig,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> None:
        self.server = server
        self.listener = listener
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.decoder = FrameDecoder(server.limits, listener.allow_tags)
        self.cost = 0
        self.grown = 0  # the process's peak memory grown during this connection's steps
        self.storing = False
        self.evicted: str | None = None
        self._stage = "handshake"  # then "idle" or "frame": which timeout applies
        self._usage = 0.0
        self._usage_at = time.monotonic()

    # -- the scheduler's view

    def usage(self) -> float:
        now = time.monotonic()
        self._usage *= math.exp(-(now - self._usage_at) / USAGE_DECAY)
        self._usage_at = now
        return self._usage

    def used(self, seconds: float) -> None:
        self._usage = self.usage() + seconds

    def evict(self, reason: str) -> None:
        if self.evicted is None:
            self.evicted = reason
            self.writer.transport.abort()

    # -- the connection

    async def run(self) -> None:
        listener = self.listener
        try:
            async with asyncio.timeout(listener.handshake_timeout):
                if listener.tls is not None:
                    await self._start_tls(listener.tls)
                leftover = b""
                if listener.security is not None:
                    leftover = await self._handshake()
            self.decoder.feed(leftover)
            await self._frames()
        except BaseException as exc:
            self._refused(exc)
        finally:
            # A refusal's traceback holds this connection's frames in a reference
            # cycle until the garbage collector's next full run; its buffers go now.
            self.decoder.close()
            self.writer.close()
            # asyncio.timeout, not wait_for, which on Python 3.11 can swallow
            # the collector's own cancellation at shutdown.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.writer.wait_closed()

    def _refused(self, exc: BaseException) -> None:
        """Log why the connection ends; the traceback's frames let go of what they held."""
        listener, peer, server = self.listener, self.peer, self.server
        traceback.clear_frames(exc.__traceback__)
        if isinstance(exc, RefusedError):
            server.refused_connections += 1
            server.refusals.warn(listener.name, peer, "refusing", str(exc))
        elif isinstance(exc, ForwardError):
            server.refuse_frame()
            reason = self.evicted or str(exc)
            server.refusals.warn(
                listener.name, peer, "refusing a frame from", f"{reason}; closing the connection"
            )
        elif isinstance(exc, StoreError):
            # Logged by the store when it started failing; the client resends.
            log.info(
                "%s: closing the connection from %s without ack: its frames could not be stored",
                listener.name,
                peer,
            )
        elif isinstance(exc, TimeoutError):
            if self._stage == "idle":
                log.info("%s: closing the idle connection from %s", listener.name, peer)
            else:
                server.refused_connections += self._stage == "handshake"
                server.refusals.warn(listener.name, peer, "closing", self._timeout_reason())
        elif isinstance(exc, ConnectionError | ssl.SSLError | asyncio.IncompleteReadError):
            if self.evicted is not None:
                server.refuse_frame()
                server.refusals.warn(
                    listener.name, peer, "refusing a frame from", f"{self.evicted}; closing"
                )
            else:
                log.debug("%s: connection from %s ended: %r", listener.name, peer, exc)
        elif isinstance(exc, asyncio.CancelledError):
            pass  # the collector is stopping
        elif isinstance(exc, Exception):
            # A failed write (disk full, permissions) was not acked, so the
            # client resends it; the other connections go on.
            log.error("%s: closing the connection from %s", listener.name, peer, exc_info=exc)
        else:
            raise exc

    def _timeout_reason(self) -> str:
        listener = self.listener
        if self._stage == "handshake":
            limit = listener.handshake_timeout
            return f"TLS and handshake not done within handshake_timeout ({limit:g} s)"
        return f"a frame not complete within frame_timeout ({listener.frame_timeout:g} s)"

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        try:
            await self.writer.start_tls(context)
        except ssl.SSLError as exc:
            raise RefusedError(f"TLS handshake failed: {exc.reason or exc}") from exc
        # A peer that closes before its ClientHello is a port probe (the
        # image's readiness check), not a refusal worth a warning.

    async def _handshake(self) -> bytes:
        """HELO, PING, PONG; returns what the client sent after its PING."""
        security = self.listener.security
        assert security is not None
        handshake = ServerHandshake(security)
        self.writer.write(forward.packb(handshake.helo()))
        await self.writer.drain()
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_MESSAGE_BYTES)
        ping: object = None
        received = 0
        while True:
            data = await self.reader.read(MAX_MESSAGE_BYTES)
            if not data and not received:
                raise asyncio.CancelledError  # a probe of the port (readiness checks): no news
            if not data:
                raise RefusedError("the client closed the connection during the handshake")
            received += len(data)
            try:
                unpacker.feed(data)
                ping = unpacker.unpack()
                break
            except msgpack.OutOfData:
                continue
            except (ValueError, TypeError, msgpack.UnpackException):
                ping = None  # not msgpack, or too big to be a PING
                break
        pong, reason = handshake.check(ping)
        self.writer.write(forward.packb(pong))
        await self.writer.drain()
        if reason is not None:
            raise RefusedError(f"the handshake failed: {reason}")
        return unpacker.read_bytes(MAX_MESSAGE_BYTES)

    async def _frames(self) -> None:
        listener, decoder = self.listener, self.decoder
        frame_started = 0.0
        while True:
            if decoder.in_frame:
                self._stage = "frame"
                frame_started = frame_started or time.monotonic()
                timeout = frame_started + listener.frame_timeout - time.monotonic()
            else:
                self._stage = "idle"
                frame_started = 0.0
                timeout = listener.idle_timeout
            if not decoder.busy:
                async with asyncio.timeout(max(timeout, 0.0)):
                    data = await self.reader.read(READ_SIZE)
                if not data:
                    if self.evicted is not None:  # aborted while it waited for bytes
                        raise ForwardError(self.evicted)
                    return
                decoder.feed(data)
            frames = await self._decode()
            if frames:
                await self._store(frames)

    async def _decode(self) -> list[Frame]:
        """Steps until the decoder needs more bytes; a refusal still stores the frames before it."""
        frames: list[Frame] = []
        scheduler = self.server.scheduler
        try:
            while self.decoder.busy:
                await scheduler.turn(self)
                if self.evicted is not None:
                    scheduler.release(self, 0.0)
                    raise ForwardError(self.evicted)
                began, peak = time.perf_counter(), peak_resident()
                try:
                    frames.extend(self.decoder.step())
                finally:
                    scheduler.release(self, time.perf_counter() - began)
                    self.grown += peak_resident() - peak
                held = sum(f.cost for f in frames)
                self.server.account(self, max(self.decoder.memory() + held, self.grown))
                if self.evicted is not None:
                    raise ForwardError(self.evicted)
        except ForwardError:
            if frames:
                await self._store(frames)
                frames.clear()  # stored: the traceback need not keep them
            raise
        finally:
            if not self.decoder.in_frame:
                self._report_invalid()  # once a frame, not once a step
        return frames

    def _report_invalid(self) -> None:
        invalid = self.decoder.invalid
        if not invalid:
            return
        self.decoder.invalid = Counter()
        for (tag, reason), count in invalid.items():
            self.server.refusals.warn(
                self.listener.name,
                self.peer,
                "dropping invalid events from",
                f"{count} of tag {tag!r}: {reason} (acked: a resend could not succeed)",
                key=f"{tag} {reason}",
            )

    async def _store(self, frames: list[Frame]) -> None:
        self.storing = True
        try:
            result = await self.server.store(frames, self.peer)
        finally:
            self.storing = False
            if not self.decoder.in_frame:
                self.grown = 0  # what the stored frames held is free again
            self.server.account(self, max(self.decoder.memory(), self.grown))
        self.server.lines += getattr(result, "lines", 0)
        acks = b"".join(forward.encode_ack(f.chunk) for f in frames if f.chunk is not None)
        if acks:
            self.writer.write(acks)
            async with asyncio.timeout(self.listener.frame_timeout):
                await self.writer.drain()

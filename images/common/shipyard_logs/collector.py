"""shipyard log collector: a Fluentd Forward Protocol v1 server writing time-sliced files.

    python3 -m shipyard_logs.collector [--config FILE] [--check-config]

It accepts Message, Forward, PackedForward and CompressedPackedForward frames
on TCP (default 0.0.0.0:24224) and answers heartbeats on UDP at the same port.
Each listener may ask for fluentd's `<security>` handshake and TLS, and
fence who may connect and which tags they may send (listeners.py); every
connection is admitted, decoded and bounded as connection.py describes.
Records land in `ROOT/logs/<time_slice_format>.log`, or with `[[match]]`
tables in the store of the first match for their tag (routing.py); a frame
carrying a `chunk` is acked only after its lines and its chunk id are fsync'd
(see slices.py), and a replayed chunk id is acked without writing it again. With an
`[s3]` bucket configured, closed slices are shipped to S3 (uploader.py). With
no configuration at all it listens on 24224 and writes under /var/log/shipyard.

Configuration: the file named by --config or $SHIPYARD_COLLECTOR_CONFIG (TOML,
or JSON when it ends in .json), then environment variables
SHIPYARD_COLLECTOR_<KEY> for top-level keys and SHIPYARD_COLLECTOR_S3_<KEY>
for the [s3] table, SHIPYARD_COLLECTOR_MATCH_<N>_S3_<KEY> for the [match.s3]
table of the N-th (0-based) [[match]]. boto3 also reads the usual AWS_* variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import forward
from .config import (
    ABSOLUTE_PATH,
    LOG_LEVEL,
    PORT,
    Between,
    ConfigError,
    Matches,
    Setting,
    config_from_cli,
    load_file,
    merge,
)
from .connection import Server
from .listeners import TOP_DEFAULTS, ListenerConfig, limits_from, parse_listeners
from .routing import TIME_SLICE_WAIT, MatchConfig, Router, TagMatcher, parse_matches, s3_settings
from .slices import DEFAULT_TIME_SLICE_FORMAT, LayoutError, SliceLayout, StoreError, StoreResult
from .stats import CollectorStats, StoreView
from .uploader import RULE_ID, S3Settings, Uploader

log = logging.getLogger("shipyard_logs.collector")

MAX_HEARTBEAT_BYTES = 1024
# How long a read's frames wait for a store that cannot write (a full disk)
# before their connection is closed unacked; the client then resends them.
HOLD_SECONDS = 20.0
MiB = 1024 * 1024
_LIMITS = forward.Limits()

DEFAULTS: dict[str, Any] = {
    **TOP_DEFAULTS,  # the main listener's keys and the decoder's bounds (listeners.py)
    "bind": Setting(
        "0.0.0.0",  # noqa: S104 - a collector in a container serves its network
        Matches(r"[^\s/]+", "a host name or an IP address", 255),
    ),
    "port": Setting(24224, PORT),
    "root": Setting("/var/log/shipyard", ABSOLUTE_PATH),
    "time_slice_format": DEFAULT_TIME_SLICE_FORMAT,  # SliceLayout checks it
    "time_slice_wait": Setting(600.0, TIME_SLICE_WAIT),
    # A replay is recognised only while its chunk id is remembered.
    "chunk_id_retention": Setting(86400.0, Between(60, 30 * 86400)),
    # About 100 bytes of memory each, and 30 in the journal.
    "max_chunk_ids": Setting(1_000_000, Between(1000, 10_000_000)),
    "max_frame_bytes": Setting(_LIMITS.max_frame_bytes, Between(64 * 1024, 256 * MiB)),
    "max_decompressed_bytes": Setting(
        _LIMITS.max_decompressed_bytes, Between(64 * 1024, 1024 * MiB)
    ),
    "heartbeat": True,
    # Added to every record of a frame with a chunk id: "<chunk>-<index>".
    "record_id_key": Setting(
        "_record_id", Matches(r"([A-Za-z_@][A-Za-z0-9_.@-]*)?", "empty or a record key", 64)
    ),
    # Names this collector in its S3 keys (uploader.py): collectors that share
    # a bucket each need their own. Empty: keys without a name, for one collector.
    "collector_name": Setting(
        "", Matches(r"([A-Za-z0-9][A-Za-z0-9_.-]*)?", "empty or a name of A-Z a-z 0-9 _ . -", 64)
    ),
    "log_level": Setting("INFO", LOG_LEVEL),
}


@dataclass(frozen=True)
class CollectorConfig:
    bind: str
    port: int
    root: Path
    layout: SliceLayout
    time_slice_wait: float
    chunk_id_retention: float
    max_chunk_ids: int
    limits: forward.Limits
    listeners: tuple[ListenerConfig, ...]  # the main one (bind, port) first
    max_connections: int
    max_decode_memory: int
    heartbeat: bool
    record_id_key: str
    collector_name: str
    log_level: str
    s3: S3Settings | None  # the top-level [s3]; always None with [[match]] tables
    # [[match]] tables in order; without any, one catch-all "**" match at root
    # made of the top-level settings, which is the collector without routing.
    matches: tuple[MatchConfig, ...]
    routed: bool  # [[match]] tables were given: unmatched tags go to ROOT/unmatched/


def load_config(path: str | None, env: dict[str, str] | None = None) -> CollectorConfig:
    env = dict(os.environ) if env is None else env
    data = load_file(path or env.get("SHIPYARD_COLLECTOR_CONFIG"))
    s3_given = data.pop("s3", {})
    raw_matches = data.pop("match", None)
    security, transport = data.pop("security", None), data.pop("transport", None)
    extra_listeners = data.pop("listeners", None)
    top = merge(DEFAULTS, data, "SHIPYARD_COLLECTOR_", "collector", env)
    limits = limits_from(top)
    listeners = parse_listeners(top, security, transport, extra_listeners, env)
    # The top-level lifecycle rule keeps its historical id whatever the prefix.
    s3 = s3_settings(s3_given, "collector.s3", "SHIPYARD_COLLECTOR_S3_", env, rule_id=RULE_ID)
    try:
        layout = SliceLayout(top["time_slice_format"])
    except LayoutError as exc:
        raise ConfigError(f"collector.time_slice_format: {exc}") from exc
    matches = parse_matches(raw_matches, top, env)
    if matches and s3 is not None:
        # Uploading nothing while a bucket is configured would look like success.
        raise ConfigError(
            "collector.s3.bucket is not used with [[match]] tables: "
            "give each match of type s3 its own [match.s3] table"
        )
    name = str(top["collector_name"])
    if s3 is not None:
        s3 = replace(s3, collector=name)
    matches = tuple(
        replace(m, s3=replace(m.s3, collector=name)) if m.s3 is not None else m for m in matches
    )
    routed = bool(matches)
    if not routed:
        matches = (
            MatchConfig(
                name="default",
                matcher=TagMatcher("**"),
                type="file" if s3 is None else "s3",
                path="",
                layout=layout,
                time_slice_wait=float(top["time_slice_wait"]),
                s3=s3,
            ),
        )
    return CollectorConfig(
        bind=top["bind"],
        port=int(top["port"]),
        root=Path(top["root"]),
        layout=layout,
        time_slice_wait=float(top["time_slice_wait"]),
        chunk_id_retention=float(top["chunk_id_retention"]),
        max_chunk_ids=int(top["max_chunk_ids"]),
        limits=limits,
        listeners=listeners,
        max_connections=int(top["max_connections"]),
        max_decode_memory=int(top["max_decode_memory"]),
        heartbeat=bool(top["heartbeat"]),
        record_id_key=str(top["record_id_key"]),
        collector_name=name,
        log_level=str(top["log_level"]).upper(),
        s3=s3,
        matches=matches,
        routed=routed,
    )


class HeartbeatProtocol(asyncio.DatagramProtocol):
    """Answers each heartbeat datagram with its own bytes, as fluentd's in_forward does."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # Same size back: no amplification for a spoofed source.
        if len(data) <= MAX_HEARTBEAT_BYTES:
            self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class Collector:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.router = Router(
            config.root,
            config.matches,
            config.chunk_id_retention,
            config.max_chunk_ids,
            unmatched_layout=config.layout if config.routed else None,
            record_id_key=config.record_id_key,
        )
        # One writer thread owns the files of every store: commits are serialised, so file
        # lengths in the journal are exact, and fsync never blocks the loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer")
        self._servers: list[asyncio.base_events.Server] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._uploader_tasks: list[asyncio.Task[None]] = []
        self.server = Server(
            config.limits, config.max_connections, config.max_decode_memory, self.store
        )
        self._uploaders: dict[str, Uploader] = {}
        self._stats_task: asyncio.Task[None] | None = None
        self.stats: CollectorStats | None = None

    @property
    def lines(self) -> int:
        return self.server.lines

    async def writer(self, func: Any, *args: Any) -> Any:  # noqa: ANN401
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def start(self) -> None:
        await self.writer(self.router.open)
        cfg = self.config
        for listener in cfg.listeners:
            server = await asyncio.start_server(
                self.server.handler(listener), listener.bind, listener.port, reuse_address=True
            )
            self._servers.append(server)
            log.info(
                "%s: listening on %s:%d (%s)",
                listener.name,
                listener.bind,
                listener.port,
                listener.describe(),
            )
        if cfg.heartbeat:
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                HeartbeatProtocol, local_addr=(cfg.bind, cfg.port)
            )
        self._start_uploaders()
        views = [
            StoreView(r.name, "s3" if r.s3 else "file", r.store, self._uploaders.get(r.name))
            for r in self.router.all_routes
        ]
        self.stats = CollectorStats(cfg.root, views, lambda: len(self.server.connections))
        self.server.stats = self.stats
        self._stats_task = asyncio.create_task(self.stats.run())
        log.info("writing under %s", cfg.root)

    def _start_uploaders(self) -> None:
        # Uploaders sharing a bucket share its lock: each rewrites the bucket's
        # lifecycle configuration to add its own rule.
        locks: dict[tuple[str, str], asyncio.Lock] = {}
        for route in self.router.routes:
            if route.s3 is None:
                continue
            lock = locks.setdefault((route.s3.endpoint_url, route.s3.bucket), asyncio.Lock())
            uploader = Uploader(route.store, self.writer, route.s3, route.time_slice_wait, lock)
            self._uploaders[route.name] = uploader
            self._uploader_tasks.append(asyncio.create_task(uploader.run()))
            log.info(
                "%s: uploading closed slices under %s to %r", route.name, route.store.root, route.s3
            )
        for route in self.router.all_routes:
            if route.s3 is None:
                log.info("%s: keeping slices under %s", route.name, route.store.root)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        if self._udp is not None:
            self._udp.close()
        for task in [*self._uploader_tasks, *filter(None, [self._stats_task])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tasks = list(self.server.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self.writer(self.router.close)
        self._executor.shutdown(wait=True)

    async def store(self, frames: list[forward.Frame], peer: str) -> StoreResult:
        """Commit whole frames (held while the disk is full); the connection acks them after."""
        result = await self._commit(frames, peer)
        if result.duplicates:
            log.info("dropped %d replayed records from %s", result.duplicates, peer)
        return result

    async def _commit(self, frames: list[forward.Frame], peer: str) -> StoreResult:
        """Store the frames, waiting while a store cannot write (e.g. a full disk).

        A failed commit is rolled back (slices.py), so a retry loses and repeats
        nothing. The frames wait here, and their acks with them, up to
        HOLD_SECONDS, trying again with a growing pause: space that comes back
        is used at once, without the client's own back-off. Past that the
        connection is closed unacked, and the client resends the frames later.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD_SECONDS
        total = StoreResult()
        pause = 0.1
        while True:
            try:
                result = await self.writer(self.router.store, frames, peer)
                break
            except StoreError as exc:
                total.add(exc.stored)
                frames = exc.remaining
                if loop.time() + pause > deadline:
                    self._count(total)
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
        total.add(result)
        self._count(total)
        return total

    def _count(self, result: StoreResult) -> None:
        if self.stats is not None:
            self.stats.count(result)


# Decoded records are acyclic and live only until they are stored, so the
# cyclic garbage collector has nothing to find in them; run by allocation
# counts it would walk all of a large frame's objects again and again, for
# tenths of a second each time. Young objects are still collected, the rest
# on a timer.
GC_THRESHOLDS = (100_000, 50, 1_000_000)
GC_FULL_INTERVAL = 30.0


# glibc raises its mmap threshold after freeing a large block, and the next
# ones come from the heap, which keeps what a refused 16 MiB frame freed: a
# fixed threshold keeps large buffers in mmap, so freeing them returns them.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def _libc() -> Any:  # noqa: ANN401 - ctypes.CDLL
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            return libc
    return None  # not glibc: its allocator's own ways


async def _collect_garbage(libc: Any) -> None:  # noqa: ANN401 - ctypes.CDLL
    while True:
        await asyncio.sleep(GC_FULL_INTERVAL)
        gc.collect()
        if libc is not None:
            libc.malloc_trim(0)


async def serve(config: CollectorConfig) -> int:
    gc.freeze()  # what start-up made is there to stay
    gc.set_threshold(*GC_THRESHOLDS)
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    collector = Collector(config)
    await collector.start()
    collecting = asyncio.create_task(_collect_garbage(libc))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    await stop.wait()
    log.info("stopping after %.0fs, %d lines stored", time.monotonic() - started, collector.lines)
    collecting.cancel()
    await collector.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    config = config_from_cli(
        "shipyard-log-collector",
        __doc__.split("\n")[0],
        "SHIPYARD_COLLECTOR_CONFIG",
        load_config,
        argv,
    )
    if isinstance(config, int):
        return config
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())

"""The agent: tails read and parse while the shipper sends, positions committed after acks."""

from __future__ import annotations

import logging
import threading
import time

from .. import forward
from .config import AgentConfig
from .shipper import Sent, Shipper, new_chunk_id, read_inflight
from .stats import FILE as STATS_FILE
from .stats import Stats
from .tail import Batch, Tail

log = logging.getLogger("shipyard_logs.agent")

INFLIGHT = "inflight.msgpack"


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.tails = [Tail(source, config) for source in config.sources]
        self.inflight = config.pos_dir / INFLIGHT
        self.shipper = Shipper(config, self.stop, self.inflight)
        self.stats = Stats(config.pos_dir / STATS_FILE)

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
        last = None
        try:
            if not self.stop.is_set():
                last = self._tail()
        finally:
            self.shipper.submit_last(last)
        self.shipper.join()
        self._write_stats()
        for tail in self.tails:
            for watcher in tail.watchers:
                watcher.close()
        log.info("stopped; %d lines shipped", self.shipper.shipped)
        return 1 if self.shipper.crashed else 0

    def _tail(self) -> Sent | None:
        """Tail until stopped; returns the last batch, read once more after the stop."""
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
            if self.stats.due():
                self._write_stats()
        # The services stopped before the agent: what they wrote last goes
        # with this batch now rather than at the next start.
        for tail in self.tails:
            tail.read(batch)
        return self._sent(batch) if batch.lines else None

    def _write_stats(self) -> None:
        try:
            self.stats.write(self.tails, self.shipper)
        except OSError as exc:  # a full disk must not stop shipping
            log.warning("cannot write %s: %s", self.stats.path, exc)

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
        return Sent(frames, positions, batch.lines, batch.by_source)

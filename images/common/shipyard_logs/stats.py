"""The collector's stats file: `ROOT/.collector/stats.json`, rewritten every few seconds.

    {"updated", "started", "lines_total", "lines_by_tag": {tag: n},
     "lines_by_host": {host: n}, "connections", "refused_frames", "disk_full",
     "stores": [{"name", "type", "path", "pending_slices", "pending_bytes",
                 "last_upload": {"key", "time"} | null, "upload_errors",
                 "disk_full", "error"}]}

Times are UTC ISO 8601; counts are since `started`. Tags and hosts are chosen
by clients, so at most MAX_KEYS of each are named and the rest are counted
under "_other". The file is replaced atomically without needing free space
once it exists (durable.publish), so it still says `"disk_full": true` on
the full disk it is about.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .durable import publish
from .slices import SliceStore, StoreResult
from .uploader import Uploader

log = logging.getLogger("shipyard_logs.stats")

STATS_NAME = ".collector/stats.json"
INTERVAL = 2.0
MAX_KEYS = 256
OTHER = "_other"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


@dataclass
class StoreView:
    """One store as the stats see it: its name, its store, its uploader if it ships."""

    name: str
    type: str
    store: SliceStore
    uploader: Uploader | None


class CollectorStats:
    def __init__(
        self, root: Path, stores: Sequence[StoreView], connections: Callable[[], int]
    ) -> None:
        self.path = root / STATS_NAME
        self.stores = list(stores)
        self.connections = connections
        self.started = time.time()
        self.lines_total = 0
        self.refused_frames = 0
        self.lines_by_tag: dict[str, int] = {}
        self.lines_by_host: dict[str, int] = {}
        self._warned = False

    def count(self, result: StoreResult) -> None:
        self.lines_total += result.lines
        _add(self.lines_by_tag, result.by_tag)
        _add(self.lines_by_host, result.by_host)

    @property
    def disk_full(self) -> bool:
        return any(v.store.failure is not None and v.store.failure.disk_full for v in self.stores)

    def snapshot(self) -> dict[str, Any]:
        stores = []
        for view in self.stores:
            files, size = view.store.pending()
            failure = view.store.failure
            upload = view.uploader.stats if view.uploader else None
            stores.append(
                {
                    "name": view.name,
                    "type": view.type,
                    "path": str(view.store.root),
                    "pending_slices": files,
                    "pending_bytes": size,
                    "last_upload": (
                        {"key": upload.last_key, "time": iso(upload.last_time)}
                        if upload and upload.last_key
                        else None
                    ),
                    "upload_errors": upload.errors if upload else 0,
                    "disk_full": bool(failure and failure.disk_full),
                    "error": str(failure.error.strerror or failure.error) if failure else None,
                }
            )
        return {
            "updated": iso(time.time()),
            "started": iso(self.started),
            "lines_total": self.lines_total,
            "lines_by_tag": dict(self.lines_by_tag),
            "lines_by_host": dict(self.lines_by_host),
            "connections": self.connections(),
            "refused_frames": self.refused_frames,
            "disk_full": self.disk_full,
            "stores": stores,
        }

    def write(self) -> None:
        data = (json.dumps(self.snapshot(), sort_keys=True) + "\n").encode()
        try:
            publish(self.path, data)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot write %s: %s", self.path, exc)
            self._warned = True
        else:
            self._warned = False

    async def run(self, interval: float = INTERVAL) -> None:
        while True:
            await asyncio.to_thread(self.write)
            await asyncio.sleep(interval)


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    for key, n in more.items():
        if key not in counts and len(counts) >= MAX_KEYS:
            key = OTHER
        counts[key] = counts.get(key, 0) + n

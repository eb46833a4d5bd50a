"""`<pos_dir>/stats.json`: what the agent has shipped, and how far behind it is.

    {"updated", "started", "collector": "host:port", "connected": bool,
     "last_ack", "sources": {tag: {"lines_shipped", "bytes_behind", "files"}},
     "servers": [{"name", "host", "port", "weight", "standby", "attached",
                  "connected", "detached_because"}]}

Times are UTC ISO 8601 (last_ack null before the first ack). `collector` is
the server the latest batch went to (the first one before any), `connected`
whether the agent holds a connection to it; `servers` lists every server,
`attached` while it is in the rotation (balance.py). lines_shipped
counts lines acked since the agent started; bytes_behind is what the files
of a source hold past their committed positions; files is how many it has
open. The file is replaced atomically at most every INTERVAL seconds.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..durable import write_atomically
from .shipper import Shipper
from .tail import Tail

FILE = "stats.json"
INTERVAL = 5.0


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


class Stats:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.time()
        self._next = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def write(self, tails: list[Tail], shipper: Shipper) -> None:
        self._next = time.monotonic() + INTERVAL
        write_atomically(self.path, json.dumps(self.snapshot(tails, shipper), indent=1).encode())

    def snapshot(self, tails: list[Tail], shipper: Shipper) -> dict[str, Any]:
        committed = {
            (p.path, p.inode): p.offset for entries in shipper.committed.values() for p in entries
        }
        shipped = dict(shipper.shipped_by_source)
        sources = {}
        for tail in tails:
            behind = 0
            for watcher in tail.watchers:
                try:
                    size = os.fstat(watcher.fd).st_size
                except OSError:
                    continue
                done = committed.get((watcher.path, watcher.inode), watcher.start)
                behind += max(0, size - done)
            sources[tail.source.tag] = {
                "lines_shipped": shipped.get(tail.source.tag, 0),
                "bytes_behind": behind,
                "files": len(tail.watchers),
            }
        links = shipper.links.copy()  # the shipper's thread changes it
        servers = [
            {
                "name": node.server.name,
                "host": node.server.host,
                "port": node.server.port,
                "weight": node.server.weight,
                "standby": node.server.standby,
                "attached": node.available,
                "connected": node in links,
                "detached_because": None if node.available else node.reason,
            }
            for node in shipper.pool.nodes
        ]
        return {
            "updated": iso(time.time()),
            "started": iso(self.started),
            "collector": shipper.current.server.address,
            "connected": shipper.current in links,
            "last_ack": iso(shipper.last_ack),
            "sources": sources,
            "servers": servers,
        }

"""The health file shipyard-init's `status` reads (services.toml `health_file`).

It says whether the backups are in order and, when not, why, in one line. The
supervisor counts it only while the pid in it is the service's current
process, so a file left by an earlier run cannot speak for this one.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("shipyard-backup")
# An unreachable S3 also fails the archive and the backups: it goes first.
TOPIC_ORDER = ("s3", "start", "archive", "full", "differential")


class Health:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._problems: dict[str, str] = {}
        self._last: tuple[bool, str] | None = None
        # The service's loop, its backup thread and its check thread all
        # report; one writer at a time, and one temporary file.
        self._lock = threading.RLock()

    def problem(self, topic: str, message: str | None) -> None:
        """Set (or, with None, clear) the problem of one topic: s3, archive, full, ..."""
        with self._lock:
            if message is None:
                self._problems.pop(topic, None)
            else:
                self._problems[topic] = message

    @property
    def message(self) -> str:
        """The problems, the one that explains the others first (the status line is cut at 500)."""
        order = {topic: i for i, topic in enumerate(TOPIC_ORDER)}
        with self._lock:
            topics = sorted(self._problems, key=lambda t: (order.get(t, len(order)), t))
            return "; ".join(self._problems[t] for t in topics)

    def publish(self, extra: dict[str, object] | None = None) -> None:
        with self._lock:
            self._publish(extra)

    def _publish(self, extra: dict[str, object] | None) -> None:
        healthy = not self._problems
        state = (healthy, self.message)
        if state != self._last:
            # A log line for every change, so `docker logs` tells the story too.
            if healthy:
                log.info("backups are healthy")
            else:
                log.warning("backups are degraded: %s", self.message)
            self._last = state
        document = {
            "pid": os.getpid(),
            "healthy": healthy,
            "message": self.message,
            "updated": time.time(),
            **(extra or {}),
        }
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(document) + "\n", encoding="utf-8")
            tmp.replace(self._path)
        except OSError as exc:
            log.warning("cannot write %s: %s", self._path, exc.strerror)

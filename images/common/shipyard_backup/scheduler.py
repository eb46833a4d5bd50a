"""The supervised backup service: scheduled backups, archiving watch, health.

One loop, one second per turn: it archives (MariaDB's binary logs are
uploaded in its turn), starts each scheduled backup (in a thread, so the
archiving goes on meanwhile) and rewrites the health file shipyard-init's
`status` reads. Every check_interval a thread of its own asks S3 and the
archiver how they are, and rewrites the health file too: an upload that a
lost S3 holds for its read timeout must not hold the report back with it.
A backup that was due while the container was down is taken at start and
shows as missed until it is done.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from . import engine as engines
from .config import Settings
from .cron import Cron
from .health import Health
from .runner import StepError, limit_cpus
from .timeparse import iso

log = logging.getLogger("shipyard-backup")
# How far back a missed schedule is looked for.
MISSED_HORIZON = timedelta(days=400)
RETRY_AFTER = 300.0


class Scheduler:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = engines.for_settings(settings)
        self.health = Health(settings.health_file)
        self.stop = threading.Event()
        self.running: threading.Thread | None = None
        self.next_due: dict[str, datetime | None] = {}
        self.retry_at: dict[str, float] = {}
        self.last_result: dict[str, Any] = {}
        self.ready = False
        self.s3_down = False

    def schedules(self) -> dict[str, Cron]:
        out = {"full": self.settings.schedule_full}
        if self.settings.schedule_differential is not None:
            out["differential"] = self.settings.schedule_differential
        return out

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        limit_cpus(self.settings.cpus)
        if not self.settings.archiving:
            why = "no s3_bucket" if not self.settings.enabled else "mode restore-only"
            log.info("scheduled backups are off (%s)", why)
            self.health.publish({"mode": "off"})
            self.stop.wait()
            return 0
        threading.Thread(target=self.watch, name="watch", daemon=True).start()
        while not self.stop.is_set():
            if not self.ready:
                self.start_up()
            if self.ready:
                self.engine.tick(self.health)
                self.start_due()
            self.publish()
            self.stop.wait(1.0)
        if self.running is not None:
            log.info("stopping: the backup in progress is abandoned; the next one starts over")
        return 0

    def start_up(self) -> None:
        try:
            self.engine.start(self.health)
        except StepError as exc:
            self.health.problem("start", f"cannot start backups: {exc}")
            return
        self.health.problem("start", None)
        self.ready = True
        now = datetime.now(UTC)
        last = self.engine.last_backups()
        for kind, cron in self.schedules().items():
            due = cron.last_before(now, MISSED_HORIZON)
            latest = last.get(kind) if kind == "differential" else last.get("full")
            if kind == "differential":
                latest = max(
                    filter(None, (last.get("full"), last.get("differential"))), default=None
                )
            if latest is None and kind == "full":
                # A new database: nothing was missed, but nothing protects it yet.
                log.info("no full backup yet; taking one now")
                self.next_due[kind] = now
            elif due is not None and latest is not None and latest < due:
                self.health.problem(
                    kind,
                    f"missed the {kind} backup due at {iso(due)} "
                    f"(last at {iso(latest)}); taking it now",
                )
                self.next_due[kind] = now
            else:
                self.next_due[kind] = cron.next_after(now)

    def start_due(self) -> None:
        if self.running is not None and self.running.is_alive():
            return
        now = datetime.now(UTC)
        for kind in ("full", "differential"):
            due = self.next_due.get(kind)
            if due is None or due > now or time.monotonic() < self.retry_at.get(kind, 0):
                continue
            # A full backup due at the same time makes the differential moot.
            if (
                kind == "full"
                and self.next_due.get("differential")
                and self.next_due["differential"] <= now
            ):
                self.next_due["differential"] = self.schedules()["differential"].next_after(now)
            self.running = threading.Thread(target=self.take, args=(kind,), daemon=True)
            self.running.start()
            return

    def take(self, kind: str) -> None:
        started = datetime.now(UTC)
        log.info("starting the scheduled %s backup", kind)
        try:
            result = self.engine.backup(kind)
        except Exception as exc:
            log.error("the %s backup failed: %s", kind, exc)
            self.health.problem(kind, f"the {kind} backup started at {iso(started)} failed: {exc}")
            self.retry_at[kind] = time.monotonic() + max(RETRY_AFTER, self.settings.check_interval)
            self.last_result[kind] = {"time": iso(started), "ok": False}
            return
        log.info("the %s backup %s is done", kind, result.get("id"))
        self.health.problem(kind, None)
        self.last_result[kind] = {"time": iso(started), "ok": True, "id": result.get("id")}
        self.next_due[kind] = self.schedules()[kind].next_after(datetime.now(UTC))

    def watch(self) -> None:
        """Check now and every check_interval until stopped, publishing each outcome."""
        while True:
            self.check()
            self.publish()
            if self.stop.wait(self.settings.check_interval):
                return

    def publish(self) -> None:
        # Copies: the other thread may be changing them.
        next_due = {kind: iso(due) for kind, due in dict(self.next_due).items()}
        self.health.publish({"next": next_due, "last": dict(self.last_result)})

    def check(self) -> None:
        try:
            self.engine.probe()
        except StepError as exc:
            self.health.problem("s3", f"S3 does not answer: {exc}")
            self.s3_down = True
        else:
            self.health.problem("s3", None)
            if self.s3_down and self.retry_at:
                # The outage is what failed them: waiting out RETRY_AFTER now
                # would only leave the databases unprotected for longer.
                log.info("S3 answers again; retrying the failed backups now")
                self.retry_at.clear()
            self.s3_down = False
        if self.ready:
            try:
                self.health.problem("archive", self.engine.archive_problem())
            except StepError as exc:
                self.health.problem("archive", f"cannot read the archiver's state: {exc}")

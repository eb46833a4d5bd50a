"""One interface over both engines, for the scheduler and the command line."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from .config import Settings
from .health import Health
from .runner import StepError

log = logging.getLogger("shipyard-backup")


def _when(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text)


class PostgreSQL:
    def __init__(self, settings: Settings) -> None:
        from . import pg

        self.settings = settings
        self.pg = pg
        self.started: datetime | None = None

    def prepare(self) -> None:
        self.pg.prepare(self.settings)

    def start(self, health: Health) -> None:
        del health
        self.started = datetime.now(UTC)
        if self.pg.stanza_create(self.settings):
            log.info(
                "created the pgBackRest stanza in s3://%s/%s",
                self.settings.bucket,
                self.settings.prefix,
            )

    def tick(self, health: Health) -> None:
        del health

    def probe(self) -> None:
        self.pg.probe(self.settings)

    def archive_problem(self) -> str | None:
        try:
            status = self.pg.archiver_status(self.settings)
        except Exception as exc:
            raise StepError(str(exc)) from None
        # Pushes before the stanza existed (the first start) fail by design.
        failed = status["last_failed_time"]
        if failed is not None and self.started is not None and failed < self.started:
            return None
        return self.pg.archive_problem(status)

    def backup(self, kind: str) -> dict[str, Any]:
        return self.pg.backup(self.settings, kind)

    def backups(self) -> list[dict[str, Any]]:
        return self.pg.backups(self.settings)

    def last_backups(self) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        for item in self.backups():
            moment = _when(item["start"])
            if moment is not None:
                out[item["type"]] = moment
        return out

    def listing(self) -> dict[str, Any]:
        found = self.backups()
        archive = self.pg.archive_range(self.settings)
        latest = None
        try:
            status = self.pg.archiver_status(self.settings)
            latest = status["last_archived_time"]
        except Exception:
            latest = None
        return {
            "engine": "postgresql",
            "backups": found,
            "archive": archive,
            "restorable": {
                "from": found[0]["stop"] if found else None,
                "to": latest.astimezone(UTC).isoformat(timespec="seconds")
                if latest
                else (found[-1]["stop"] if found else None),
            },
        }

    def restore(self, target: datetime | None, point: object, *, register: bool) -> dict[str, Any]:
        del register  # pgBackRest's timelines are PostgreSQL's own
        return self.pg.restore(self.settings, target, str(point) if point else None)

    def restore_marked(self, target: datetime | None, point: object) -> dict[str, Any]:
        """A restore that marks the data directory unfinished until it is done."""
        return self.pg.restore(self.settings, target, str(point) if point else None, mark=True)

    def data_dir_empty(self) -> bool:
        return self.pg.data_dir_empty(self.settings)

    def verify_point(self, query: str | None) -> dict[str, Any]:
        found = self.backups()
        if found:
            # pgBackRest reads every file of the set and checks it against its manifest.
            self.pg.verify_repository(self.settings, found[-1]["id"])
        point = self.pg.verify_point(self.settings, query)
        point["backup"] = found[-1]["id"] if found else None
        return point

    def check(self, query: str | None) -> dict[str, Any]:
        return self.pg.check(self.settings, query)

    def record(self, backup: str, note: dict[str, str]) -> None:
        self.pg.annotate(self.settings, backup, note)

    def check_settings(self) -> None:
        self.pg.check_credentials(self.settings)
        self.pg.probe(self.settings)
        self.pg.info_json(self.settings)


class MariaDB:
    def __init__(self, settings: Settings) -> None:
        from . import maria

        self.settings = settings
        self.maria = maria
        self.archiver: Any = None
        self.upload_error: str | None = None

    def prepare(self) -> None:
        self.maria.prepare(self.settings)

    def start(self, health: Health) -> None:
        del health
        from .s3 import Bucket

        # Wait for the server the service starts after; it may still be recovering.
        deadline = time.monotonic() + 60
        while True:
            try:
                self.maria.connect(self.settings).close()
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise StepError(f"cannot connect to the server: {exc}") from None
                time.sleep(1)
        Bucket(self.settings).abort_stale_uploads()
        self.archiver = self.maria.Archiver(self.settings)
        self.archiver.start()

    def tick(self, health: Health) -> None:
        try:
            self.archiver.tick()
        except Exception as exc:
            message = f"binary log archiving fails: {exc}"
            if message != self.upload_error:
                log.error("%s", message)
            self.upload_error = message
        else:
            self.upload_error = None
        waiting = self.archiver.waiting_bytes
        if self.upload_error is None and waiting > self.settings.archive_queue_max:
            health.problem("archive", f"{waiting} bytes of binary logs wait to be archived")

    def probe(self) -> None:
        from .s3 import Bucket

        Bucket(self.settings).probe()

    def archive_problem(self) -> str | None:
        if self.upload_error:
            waiting = self.archiver.waiting_bytes if self.archiver else 0
            return f"{self.upload_error}; {waiting} bytes of binary logs wait in the data directory"
        return None

    def backup(self, kind: str) -> dict[str, Any]:
        return self.maria.backup(self.settings, kind)

    def backups(self) -> list[dict[str, Any]]:
        from .s3 import Bucket

        out = []
        for m in self.maria.manifests(Bucket(self.settings)):
            out.append(
                {
                    "id": m["id"],
                    "type": m["type"],
                    "start": m["start"],
                    "stop": m["stop"],
                    "size": None,
                    "stored": m["object"]["size"],
                    "base": m["base"],
                    "timeline": m["timeline"],
                    "annotation": m.get("verify") or {},
                    "error": False,
                }
            )
        return out

    def last_backups(self) -> dict[str, datetime]:
        tl = self.maria.timeline(self.settings)
        out: dict[str, datetime] = {}
        for item in self.backups():
            moment = _when(item["start"])
            if moment is not None and item["timeline"] == tl:
                out[item["type"]] = moment
        return out

    def listing(self) -> dict[str, Any]:
        from .s3 import Bucket

        bucket = Bucket(self.settings)
        found = self.backups()
        lines = self.maria.timelines(bucket)
        latest = None
        if lines:
            current = max(lines.values(), key=lambda d: d["created"])["id"]
            index = self.maria.binlog_index(bucket, current)
            stamps = [d["last"] for d in index if d.get("last")]
            if stamps:
                latest = datetime.fromtimestamp(max(stamps), UTC).isoformat(timespec="seconds")
        return {
            "engine": "mariadb",
            "backups": found,
            "timelines": sorted(lines),
            "restorable": {
                "from": found[0]["stop"] if found else None,
                "to": latest or (found[-1]["stop"] if found else None),
            },
        }

    def restore(self, target: datetime | None, point: object, *, register: bool) -> dict[str, Any]:
        stop = point if isinstance(point, dict) else None
        return self.maria.restore(self.settings, target, stop, register=register)

    def data_dir_empty(self) -> bool:
        return self.maria.data_dir_empty(self.settings)

    def verify_point(self, query: str | None) -> dict[str, Any]:
        point = self.maria.verify_point(self.settings, query)
        found = self.backups()
        point["backup"] = found[-1]["id"] if found else None
        return point

    def check(self, query: str | None) -> dict[str, Any]:
        return self.maria.check(self.settings, query)

    def record(self, backup: str, note: dict[str, str]) -> None:
        from .s3 import Bucket

        bucket = Bucket(self.settings)
        key = bucket.key("backups", backup, "manifest.json")
        manifest = bucket.get_json(key)
        manifest["verify"] = note
        bucket.put_json(key, manifest)

    def check_settings(self) -> None:
        from .s3 import Bucket

        Bucket(self.settings).probe()


Engine = PostgreSQL | MariaDB


def for_settings(settings: Settings) -> Engine:
    return PostgreSQL(settings) if settings.engine == "postgresql" else MariaDB(settings)

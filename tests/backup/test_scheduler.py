"""The backup service's scheduling: what an S3 outage leaves behind once it ends.

The engine here stands in for pgBackRest or mariadb-backup behind an S3 that
can be switched off: the scheduling decisions are what is under test; the
molecule backup scenario runs the same loop against the real tools and S3.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest
from shipyard_backup import scheduler as scheduling
from shipyard_backup.config import load
from shipyard_backup.runner import StepError

ENV = {
    "SHIPYARD_BACKUP_ENGINE": "postgresql",
    "SHIPYARD_BACKUP_DATA_DIR": "/var/lib/postgresql/data",
    "SHIPYARD_BACKUP_SOCKET_DIR": "/run/postgresql",
    "SHIPYARD_BACKUP_S3_BUCKET": "shipyard-backups",
    "SHIPYARD_BACKUP_S3_ENDPOINT": "https://s3:5443",
    "SHIPYARD_BACKUP_S3_ACCESS_KEY_ID_FILE": "/run/secrets/id",
    "SHIPYARD_BACKUP_S3_SECRET_ACCESS_KEY_FILE": "/run/secrets/secret",
    "SHIPYARD_BACKUP_ENCRYPTION_KEY_FILE": "/run/secrets/key",
    "SHIPYARD_BACKUP_CHECK_INTERVAL": "5",
}


class OutageEngine:
    """A repository behind an S3 that answers only while `up` is true."""

    def __init__(self) -> None:
        self.up = True
        self.backups: list[str] = []

    def _reach(self) -> None:
        if not self.up:
            raise StepError("Could not connect to the endpoint URL")

    def start(self, health: Any) -> None:
        self._reach()

    def last_backups(self) -> dict[str, Any]:
        return {}

    def tick(self, health: Any) -> None:
        pass

    def probe(self) -> None:
        self._reach()

    def archive_problem(self) -> str | None:
        return None

    def backup(self, kind: str) -> dict[str, Any]:
        self._reach()
        self.backups.append(kind)
        return {"id": f"{kind}-{len(self.backups)}"}


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, OutageEngine]:
    engine = OutageEngine()
    monkeypatch.setattr(scheduling.engines, "for_settings", lambda settings: engine)
    settings = load(tmp_path / "none.toml", ENV | {"SHIPYARD_BACKUP_STATE_DIR": str(tmp_path)})
    return scheduling.Scheduler(settings), engine


def turn(service: Any) -> dict[str, Any]:
    """One turn of the service's loop with a check, and the health it publishes."""
    service.check()
    service.start_due()
    if service.running is not None:
        service.running.join(10)
    service.health.publish()
    return json.loads(service.settings.health_file.read_text())


def test_a_backup_the_outage_failed_is_retried_as_soon_as_s3_answers(service) -> None:
    scheduler, engine = service
    scheduler.start_up()  # a new database: its first full backup is due now
    engine.up = False
    health = turn(scheduler)
    assert not health["healthy"] and health["message"].startswith("S3 does not answer")
    assert "the full backup started at" in health["message"]
    engine.up = True
    # The next check finds S3 again; the backup does not wait out RETRY_AFTER.
    health = turn(scheduler)
    assert engine.backups == ["full"]
    assert health["healthy"], health["message"]


def test_a_backup_that_fails_with_s3_up_waits_out_its_retry(service) -> None:
    scheduler, engine = service
    scheduler.start_up()
    engine.backup = lambda kind: (_ for _ in ()).throw(StepError("disk full"))  # type: ignore[method-assign]
    health = turn(scheduler)
    assert "failed: disk full" in health["message"]
    engine.backup = OutageEngine.backup.__get__(engine)  # type: ignore[method-assign]
    health = turn(scheduler)
    # S3 never went away: nothing tells the service the cause is gone.
    assert engine.backups == [] and not health["healthy"]


def test_an_on_demand_backup_keeps_to_the_cpu_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipyard_backup.__main__ import dispatch

    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs a machine with two CPUs or more")
    seen: list[set[int]] = []
    engine = OutageEngine()
    engine.backup = lambda kind: seen.append(os.sched_getaffinity(0)) or {"id": kind}  # type: ignore[method-assign]
    monkeypatch.setattr(scheduling.engines, "for_settings", lambda settings: engine)
    monkeypatch.setattr("shipyard_backup.__main__.become_engine_user", lambda settings: None)
    settings = load(tmp_path / "none.toml", ENV | {"SHIPYARD_BACKUP_STATE_DIR": str(tmp_path)})
    before = os.sched_getaffinity(0)
    try:
        dispatch(settings, argparse.Namespace(verb="backup", type="full"))
    finally:
        os.sched_setaffinity(0, before)
    assert len(seen[0]) == settings.cpus == 1


def test_an_upload_hung_on_a_lost_s3_does_not_hold_back_its_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MariaDB's archiver uploads in the loop's tick; S3 lost mid-upload held that
    tick for its read timeout, and with it the check and the health file."""
    import threading
    import time

    engine = OutageEngine()
    hung, release = threading.Event(), threading.Event()

    def tick(health: Any) -> None:
        if not engine.up:
            hung.set()
            release.wait(30)

    engine.tick = tick  # type: ignore[method-assign]
    monkeypatch.setattr(scheduling.engines, "for_settings", lambda settings: engine)
    env = ENV | {"SHIPYARD_BACKUP_STATE_DIR": str(tmp_path), "SHIPYARD_BACKUP_CHECK_INTERVAL": "1"}
    settings = load(tmp_path / "none.toml", env)
    monkeypatch.setattr(scheduling.Scheduler, "start_due", lambda self: None)
    scheduler = scheduling.Scheduler(settings)
    monkeypatch.setattr(scheduling.signal, "signal", lambda *args: None)
    loop = threading.Thread(target=scheduler.run, daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while not settings.health_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        engine.up = False
        assert hung.wait(10), "the tick never ran with S3 down"
        # Two check intervals: the one running when S3 went, and the next.
        deadline = time.monotonic() + 2 * settings.check_interval + 1
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = json.loads(settings.health_file.read_text())
            if "S3 does not answer" in health["message"]:
                break
            time.sleep(0.1)
        assert "S3 does not answer" in health["message"], health
        assert not health["healthy"]
    finally:
        release.set()
        scheduler.stop.set()
        loop.join(10)
    assert not loop.is_alive()

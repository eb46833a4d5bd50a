"""shipyard-backup's settings and schedules: every bad value fails where it is read, naming it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from shipyard_backup.config import ConfigError, load, parse_size
from shipyard_backup.cron import Cron, CronError
from shipyard_backup.timeparse import parse_target

BASE = {
    "SHIPYARD_BACKUP_ENGINE": "postgresql",
    "SHIPYARD_BACKUP_STATE_DIR": "/run/x",
    "SHIPYARD_BACKUP_DATA_DIR": "/var/lib/postgresql/data",
    "SHIPYARD_BACKUP_SOCKET_DIR": "/run/postgresql",
}
ON = BASE | {
    "SHIPYARD_BACKUP_S3_BUCKET": "shipyard-backups",
    "SHIPYARD_BACKUP_S3_ENDPOINT": "https://s3:5443",
    "SHIPYARD_BACKUP_S3_ACCESS_KEY_ID_FILE": "/run/secrets/id",
    "SHIPYARD_BACKUP_S3_SECRET_ACCESS_KEY_FILE": "/run/secrets/secret",
    "SHIPYARD_BACKUP_ENCRYPTION_KEY_FILE": "/run/secrets/key",
}


def settings(tmp_path: Path, **env: str):
    return load(tmp_path / "none.toml", ON | env)


def test_backups_are_off_without_a_bucket(tmp_path: Path) -> None:
    off = load(tmp_path / "none.toml", BASE)
    assert not off.enabled and not off.archiving


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "SHIPYARD_BACKUP_S3_ENDPOINT",
            "http://s3:5000",
            "s3_endpoint (SHIPYARD_BACKUP_S3_ENDPOINT)",
        ),
        ("SHIPYARD_BACKUP_S3_BUCKET", "Bad_Bucket", "s3_bucket (SHIPYARD_BACKUP_S3_BUCKET)"),
        ("SHIPYARD_BACKUP_S3_PREFIX", "a/../b", "s3_prefix"),
        ("SHIPYARD_BACKUP_ENCRYPTION", "rot13", "encryption (SHIPYARD_BACKUP_ENCRYPTION)"),
        ("SHIPYARD_BACKUP_ENCRYPTION_KEY_FILE", "", "encryption_key_file"),
        ("SHIPYARD_BACKUP_S3_SECRET_ACCESS_KEY_FILE", "relative", "s3_secret_access_key_file"),
        ("SHIPYARD_BACKUP_SCHEDULE_FULL", "61 * * * *", "schedule_full"),
        ("SHIPYARD_BACKUP_SCHEDULE_DIFFERENTIAL", "* * *", "schedule_differential"),
        ("SHIPYARD_BACKUP_ARCHIVE_TIMEOUT", "1", "archive_timeout"),
        ("SHIPYARD_BACKUP_RETENTION_FULL", "two", "retention_full"),
        ("SHIPYARD_BACKUP_ARCHIVE_QUEUE_MAX", "lots", "archive_queue_max"),
        ("SHIPYARD_BACKUP_MODE", "sometimes", "mode"),
        ("SHIPYARD_BACKUP_RESTORE", "2026-12-01 12:00:00", "restore"),
    ],
)
def test_a_bad_setting_fails_naming_it(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings(tmp_path, **{variable: value})


def test_an_unknown_key_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "backup.toml"
    path.write_text('s3_buckett = "x"\n')
    with pytest.raises(ConfigError, match="unknown key 's3_buckett'"):
        load(path, ON)


def test_secrets_are_read_from_files_and_name_the_setting(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sekrit\n")
    s = settings(
        tmp_path,
        SHIPYARD_BACKUP_ENCRYPTION_KEY_FILE=str(key),
        SHIPYARD_BACKUP_STATE_DIR=str(tmp_path / "state"),
    )
    assert s.secret("encryption_key_file") == "sekrit"
    empty = tmp_path / "empty"
    empty.write_text("")
    s = settings(
        tmp_path,
        SHIPYARD_BACKUP_S3_ACCESS_KEY_ID_FILE=str(empty),
        SHIPYARD_BACKUP_STATE_DIR=str(tmp_path / "state"),
    )
    with pytest.raises(ConfigError, match=r"s3_access_key_id_file \(.*\): .* is empty"):
        s.secret("s3_access_key_id_file")


def test_sizes() -> None:
    assert parse_size("k", "1GiB") == 1 << 30
    assert parse_size("k", "512M") == 512 << 20
    assert parse_size("k", "100") == 100


def test_restore_targets_need_an_offset() -> None:
    assert parse_target("latest") is None
    assert parse_target("2026-12-01 12:00:00+00") == datetime(2026, 12, 1, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_target("2026-12-01 12:00:00")


def test_cron_next_and_last() -> None:
    weekly = Cron.parse("0 1 * * 0")
    tuesday = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert weekly.next_after(tuesday) == datetime(2026, 12, 6, 1, tzinfo=UTC)
    assert weekly.last_before(tuesday, timedelta(days=8)) == datetime(2026, 11, 29, 1, tzinfo=UTC)
    every5 = Cron.parse("*/5 * * * *")
    assert every5.next_after(datetime(2026, 12, 1, 0, 3, tzinfo=UTC)).minute == 5
    sunday7 = Cron.parse("0 0 * * 7")
    assert sunday7.matches(datetime(2026, 12, 6, tzinfo=UTC))
    # Both day fields restricted: either one matches, as in cron.
    either = Cron.parse("0 0 1 * 1")
    assert either.matches(datetime(2026, 12, 7, tzinfo=UTC))  # a Monday
    assert either.matches(datetime(2026, 12, 1, tzinfo=UTC))  # the 1st
    assert Cron.parse("0 0 31 2 *").next_after(tuesday) is None


@pytest.mark.parametrize(
    "text", ["* * * *", "60 * * * *", "*/0 * * * *", "a * * * *", "5-1 * * * *"]
)
def test_bad_cron_expressions(text: str) -> None:
    with pytest.raises(CronError):
        Cron.parse(text)


def test_binary_logs_rotate_early_enough_for_slow_uploads() -> None:
    """A commit just after a rotation waits one interval, one loop turn and one upload."""
    from collections import deque
    from types import SimpleNamespace

    from shipyard_backup.maria import Archiver

    archiver = Archiver.__new__(Archiver)
    archiver.settings = SimpleNamespace(archive_timeout=60)
    archiver.overruns = deque(maxlen=5)
    assert archiver.interval() == 55
    # Quick uploads leave the fixed margin alone.
    archiver.overruns.append(3.0)
    assert archiver.interval() == 55
    # A slow one moves the next rotations earlier, by what it took.
    archiver.overruns.append(9.5)
    assert archiver.interval() == 50
    archiver.settings = SimpleNamespace(archive_timeout=10)
    archiver.overruns.clear()
    assert archiver.interval() == 8
    archiver.overruns.append(4.0)
    assert archiver.interval() == 5.5
    archiver.overruns.append(30.0)
    assert archiver.interval() == 1


def test_the_health_message_puts_an_unreachable_s3_first(tmp_path: Path) -> None:
    """shipyard-init cuts a status line at 500 characters: the cause must not be cut off."""
    from shipyard_backup.health import Health

    health = Health(tmp_path / "health.json")
    health.problem("archive", "binary log archiving fails: " + "x" * 600)
    health.problem("full", "the full backup failed")
    health.problem("s3", "S3 does not answer: no answer within 5 s")
    assert health.message.startswith("S3 does not answer: no answer within 5 s; binary log")
    health.problem("s3", None)
    assert health.message.startswith("binary log archiving fails")


def test_a_timeline_the_repository_lost_is_started_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data directory whose timeline the bucket has no record of archives under a new one."""
    from types import SimpleNamespace

    from shipyard_backup import maria

    class Bucket:
        def __init__(self) -> None:
            self.docs: dict[str, object] = {}

        def key(self, *parts: str) -> str:
            return "/".join(parts)

        def put_json(self, key: str, doc: object) -> None:
            self.docs[key] = doc

        def get_json(self, key: str) -> object:
            return self.docs[key]

        def list(self, *parts: str) -> list[dict[str, str]]:
            prefix = "/".join(parts)
            return [{"Key": k} for k in self.docs if k.startswith(prefix)]

    archiver = maria.Archiver.__new__(maria.Archiver)
    archiver.settings = SimpleNamespace(data_dir=tmp_path)
    archiver.bucket = Bucket()
    monkeypatch.setattr(maria, "mysql", lambda: None)  # the test runs as whoever it is
    first = archiver.resume_timeline()
    assert archiver.resume_timeline() == first, "a recorded timeline goes on"
    archiver.bucket.docs.clear()  # the bucket was emptied; the volume kept its timeline
    second = archiver.resume_timeline()
    assert second != first
    assert archiver.bucket.docs[f"timelines/{second}.json"]["parent"] is None
    assert (tmp_path / maria.TIMELINE_FILE).read_text().strip() == second

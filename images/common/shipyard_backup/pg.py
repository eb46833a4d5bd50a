"""PostgreSQL: pgBackRest's configuration, backups, restores and the check query.

pgBackRest does the heavy lifting (WAL archiving, full and differential
backups, retention, encryption, checksummed restores). This module renders
its configuration from the settings, runs it as the user postgres, and adds
what it lacks: a verified restore point and the check query.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import Settings
from .runner import (
    RESTORE_MARKER,
    Account,
    StepError,
    account,
    copy_secrets,
    make_dir,
    run,
    tail,
    write_private,
)
from .sqltypes import Connection, Cursor
from .timeparse import iso

log = logging.getLogger("shipyard-backup")

STANZA = "main"
PGBACKREST_CONF = "pgbackrest.conf"
# postgresql.conf includes this (include_if_exists), written at every start.
SERVER_CONF = Path("/run/postgresql/shipyard-backup.conf")
SERVER_CONFIG_FILE = "/etc/postgresql/postgresql.conf"
KINDS = {"full": "full", "differential": "diff"}
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
# Seconds a probe of the repository may take before S3 counts as unreachable.
PROBE_TIMEOUT = 10
ARCHIVE_WAIT = 120.0


def postgres() -> Account | None:
    return account("postgres")


# Seconds of silence from S3 after which an archive-push gives up.
ARCHIVE_PUSH_IO_TIMEOUT = 20


def conf_path(settings: Settings) -> Path:
    return settings.state_dir / PGBACKREST_CONF


def render_pgbackrest(settings: Settings) -> str:
    """pgbackrest.conf, secrets included: it is written 0600 for postgres only."""
    lines = [
        "[global]",
        "repo1-type=s3",
        f"repo1-s3-bucket={settings.bucket}",
        f"repo1-s3-endpoint={settings.endpoint_host}",
        f"repo1-storage-port={settings.endpoint_port}",
        f"repo1-s3-region={settings.region}",
        f"repo1-s3-uri-style={settings.uri_style}",
        f"repo1-s3-key={settings.secret('s3_access_key_id_file')}",
        f"repo1-s3-key-secret={settings.secret('s3_secret_access_key_file')}",
        f"repo1-path=/{settings.prefix}",
        f"repo1-retention-full={settings.retention_full}",
        "repo1-retention-full-type=count",
    ]
    if settings.ca_file:
        lines.append(f"repo1-storage-ca-file={settings.ca_path}")
    if settings.encryption != "none":
        lines += [
            f"repo1-cipher-type={settings.encryption}",
            f"repo1-cipher-pass={settings.secret('encryption_key_file')}",
        ]
    lines += [
        # One process and zstd at a low level: a backup's CPU stays within a core.
        "process-max=1",
        # Small files travel in bundles: one request per ~20 MiB, not per file.
        "repo1-bundle=y",
        "repo1-block=y",
        "compress-type=zst",
        "compress-level=3",
        # A failing archive_command must not fill pg_wal: past this, pgBackRest
        # drops WAL (and says so in the server's log) rather than stop the server.
        f"archive-push-queue-max={settings.archive_queue_max}",
        "start-fast=y",
        "delta=y",
        "log-level-console=info",
        "log-level-stderr=warn",
        "log-level-file=off",
        f"lock-path={settings.state_dir / 'lock'}",
        f"log-path={settings.state_dir / 'log'}",
        f"spool-path={settings.state_dir / 'spool'}",
        "",
        # A restore is latency-bound (one ranged GET per bundled file), not CPU-bound.
        "[global:restore]",
        "process-max=4",
        "",
        # A segment push that S3 does not answer fails within this, not the
        # default minute, so a failing archive shows in health and in the
        # server's log promptly; it is a silence timeout, not a total one.
        "[global:archive-push]",
        f"io-timeout={ARCHIVE_PUSH_IO_TIMEOUT}",
        "",
        f"[{STANZA}]",
        f"pg1-path={settings.data_dir}",
        f"pg1-socket-path={settings.socket_dir}",
        "pg1-port=5432",
        f"pg1-user={settings.db_user or 'postgres'}",
    ]
    return "\n".join(lines) + "\n"


def archive_timeout(settings: Settings) -> int:
    """The server's archive_timeout: the setting less the time a segment's upload takes.

    The setting bounds the committed data a lost volume may cost; the segment
    has to be switched early enough to be in S3 by then.
    """
    margin = min(5, settings.archive_timeout // 4)
    return max(1, settings.archive_timeout - margin)


def render_server(settings: Settings, *, archiving: bool) -> str:
    if not archiving:
        return "# shipyard-backup: WAL archiving is off\narchive_mode = off\n"
    command = f"pgbackrest --config={conf_path(settings)} --stanza={STANZA} archive-push %p"
    return (
        "# shipyard-backup: continuous WAL archiving to the S3 repository\n"
        "archive_mode = on\n"
        f"archive_command = '{command}'\n"
        f"archive_timeout = {archive_timeout(settings)}\n"
    )


def prepare(settings: Settings) -> None:
    """Write pgBackRest's and the server's backup configuration (every start, as root)."""
    owner = postgres()
    make_dir(settings.state_dir, owner)
    for sub in ("lock", "log", "spool"):
        make_dir(settings.state_dir / sub, owner)
    if not settings.enabled:
        write_private(SERVER_CONF, render_server(settings, archiving=False), owner, 0o644)
        conf_path(settings).unlink(missing_ok=True)
        return
    copy_secrets(settings, owner)
    write_private(conf_path(settings), render_pgbackrest(settings), owner)
    write_private(SERVER_CONF, render_server(settings, archiving=settings.archiving), owner, 0o644)


# ------------------------------------------------------------------ pgBackRest


def pgbackrest(
    settings: Settings, *args: str, timeout: float | None = None, what: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = ["pgbackrest", f"--config={conf_path(settings)}", f"--stanza={STANZA}", *args]
    return run(argv, user=postgres(), timeout=timeout, what=what or f"pgbackrest {args[-1]}")


def stanza_create(settings: Settings) -> bool:
    """Create the stanza when the repository has none; True when it was created."""
    info = info_json(settings)
    status = info[0]["status"]["code"] if info else 1
    if status == 0 or (info and info[0].get("db")):
        return False
    pgbackrest(settings, "stanza-create", timeout=300)
    return True


def info_json(settings: Settings) -> list[dict[str, Any]]:
    proc = pgbackrest(settings, "--output=json", "info", timeout=120)
    return json.loads(proc.stdout or "[]")


def probe(settings: Settings) -> None:
    """One cheap request to the repository; raises StepError when S3 does not answer."""
    # Bounded by the check interval, so an outage shows within one.
    limit = max(2, min(PROBE_TIMEOUT, settings.check_interval))
    pgbackrest(
        settings,
        f"--io-timeout={limit}",
        "--db-timeout=10",
        "repo-ls",
        timeout=limit,
        what="listing the repository",
    )


def verify_repository(settings: Settings, label: str) -> None:
    proc = run(
        [
            "pgbackrest",
            f"--config={conf_path(settings)}",
            f"--stanza={STANZA}",
            f"--set={label}",
            "--log-level-console=warn",
            "verify",
        ],
        user=postgres(),
        what="pgbackrest verify",
        check=False,
    )
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "invalid" in text or "ERROR" in text:
        raise StepError(
            f"backup_verify: pgbackrest verify found backup {label} damaged: {tail(text)}"
        )


def check_credentials(settings: Settings) -> None:
    """A GET, whose refusal carries S3's error code (a HEAD's has no body to say which key)."""
    proc = run(
        [
            "pgbackrest",
            f"--config={conf_path(settings)}",
            f"--stanza={STANZA}",
            f"--io-timeout={PROBE_TIMEOUT}",
            "repo-get",
            "backup/main/backup.info",
        ],
        user=postgres(),
        timeout=PROBE_TIMEOUT * 3,
        what="reading the repository",
        check=False,
    )
    text = proc.stderr + proc.stdout
    if proc.returncode != 0 and "missing file" not in text and "unable to open" not in text:
        raise StepError(f"reading the repository failed: {tail(text)}")


def backup(settings: Settings, kind: str, lock_wait: float = 3600) -> dict[str, Any]:
    """One backup; waits (up to lock_wait seconds) for one already running to finish."""
    deadline = time.monotonic() + lock_wait
    while True:
        try:
            pgbackrest(settings, f"--type={KINDS[kind]}", "backup", what=f"{kind} backup")
            break
        except StepError as exc:
            if "unable to acquire lock" not in str(exc) or time.monotonic() > deadline:
                raise
            log.info("another backup is running; waiting for it")
            time.sleep(5)
    latest = backups(settings)
    return latest[-1] if latest else {}


def backups(settings: Settings) -> list[dict[str, Any]]:
    """The repository's backups, oldest first, in one shape for both engines."""
    info = info_json(settings)
    out = []
    for item in info[0].get("backup", []) if info else []:
        out.append(
            {
                "id": item["label"],
                "type": {"full": "full", "diff": "differential", "incr": "incremental"}[
                    item["type"]
                ],
                "start": iso(datetime.fromtimestamp(item["timestamp"]["start"], UTC)),
                "stop": iso(datetime.fromtimestamp(item["timestamp"]["stop"], UTC)),
                "size": item["info"]["size"],
                "stored": item["info"]["repository"]["delta"],
                "base": item.get("prior"),
                "annotation": item.get("annotation") or {},
                "error": bool(item.get("error")),
            }
        )
    return out


def archive_range(settings: Settings) -> dict[str, Any]:
    info = info_json(settings)
    archives = info[0].get("archive", []) if info else []
    if not archives:
        return {"min": None, "max": None}
    return {"min": archives[0].get("min"), "max": archives[-1].get("max")}


# ------------------------------------------------------------------ SQL


@contextmanager
def connect(settings: Settings, database: str = "postgres") -> Iterator[Connection]:
    import psycopg2

    conn = psycopg2.connect(
        host=str(settings.socket_dir),
        port=5432,
        dbname=database,
        user=settings.db_user or "postgres",
        connect_timeout=10,
        application_name="shipyard-backup",
    )
    try:
        yield conn
    finally:
        conn.close()


def archiver_status(settings: Settings) -> dict[str, Any]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT archived_count, last_archived_wal, last_archived_time, failed_count,"
            " last_failed_wal, last_failed_time FROM pg_stat_archiver"
        )
        row = cur.fetchone()
        cur.execute("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")
        waiting = cur.fetchone()[0]
    keys = (
        "archived_count",
        "last_archived_wal",
        "last_archived_time",
        "failed_count",
        "last_failed_wal",
        "last_failed_time",
    )
    status = dict(zip(keys, row, strict=True))
    status["waiting"] = waiting
    return status


def archive_problem(status: Mapping[str, Any]) -> str | None:
    failed, archived = status["last_failed_time"], status["last_archived_time"]
    if failed is None or (archived is not None and archived >= failed):
        return None
    return (
        f"WAL archiving fails since {iso(failed)} (segment {status['last_failed_wal']}); "
        f"{status['waiting']} segments wait in pg_wal"
    )


def _tables(cur: Cursor) -> list[tuple[str, str]]:
    cur.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname <> ALL(%s)"
        " AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'"
        " ORDER BY 1, 2",
        (list(SYSTEM_SCHEMAS),),
    )
    return [(s, t) for s, t in cur.fetchall()]


def databases(settings: Settings) -> list[str]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"
        )
        return [name for (name,) in cur.fetchall()]


def _check(cur: Cursor, query: str | None) -> dict[str, Any]:
    from psycopg2 import sql

    if query:
        cur.execute(query)
        return {"query": [list(map(str, row)) for row in cur.fetchall()]}
    counts = {}
    for schema, table in _tables(cur):
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        )
        counts[f"{schema}.{table}"] = cur.fetchone()[0]
    return counts


def check(settings: Settings, query: str | None = None) -> dict[str, Any]:
    """The check query in every database: by default each table's row count."""
    result = {}
    for name in databases(settings):
        with connect(settings, name) as conn, conn.cursor() as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            result[name] = _check(cur, query)
            conn.rollback()
    return result


def verify_point(settings: Settings, query: str | None = None) -> dict[str, Any]:
    """A restore point and the check query's result exactly at it.

    Every user table of every database is locked in SHARE mode (writers wait,
    readers do not) just long enough to export a snapshot and write the
    restore point, so the snapshot's view is the state at the restore point.
    The check query then runs in the imported snapshot, the locks released.
    """
    from psycopg2 import sql

    name = f"shipyard-verify-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    lockers, readers, snapshots = [], [], {}
    try:
        for db in databases(settings):
            with connect(settings, db) as conn, conn.cursor() as cur:
                tables = _tables(cur)
            conn = _open(settings, db)
            lockers.append(conn)
            cur = conn.cursor()
            # LOCK takes no snapshot: the view freezes at the export below,
            # once no writer can be between its statements.
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SET LOCAL lock_timeout = '30s'")
            if tables:
                cur.execute(
                    sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                        sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
                    )
                )
            cur.execute("SELECT pg_export_snapshot()")
            snapshots[db] = cur.fetchone()[0]
        with connect(settings) as conn, conn.cursor() as cur:
            conn.autocommit = True
            cur.execute("SELECT pg_create_restore_point(%s)", (name,))
            cur.execute("SELECT pg_walfile_name(pg_switch_wal())")
            segment = cur.fetchone()[0]
        for db, snapshot in snapshots.items():
            conn = _open(settings, db)
            readers.append(conn)
            cur = conn.cursor()
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
        for conn in lockers:
            conn.rollback()
        result = {}
        for db, conn in zip(snapshots, readers, strict=True):
            result[db] = _check(conn.cursor(), query)
    finally:
        for conn in lockers + readers:
            conn.close()
    wait_archived(settings, segment)
    return {"point": name, "segment": segment, "time": iso(datetime.now(UTC)), "check": result}


def _open(settings: Settings, database: str) -> Connection:
    import psycopg2

    return psycopg2.connect(
        host=str(settings.socket_dir),
        port=5432,
        dbname=database,
        user=settings.db_user or "postgres",
        connect_timeout=10,
        application_name="shipyard-backup",
    )


def wait_archived(settings: Settings, segment: str, timeout: float = ARCHIVE_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = archiver_status(settings)
        last = status["last_archived_wal"] or ""
        # Compared without the timeline: a promotion may have moved on to the next.
        if len(last) >= 24 and last[8:24] >= segment[8:24]:
            return
        if time.monotonic() > deadline:
            problem = archive_problem(status) or "the archiver has not reached it"
            raise StepError(f"WAL segment {segment} not archived within {timeout:g} s: {problem}")
        time.sleep(0.5)


# ------------------------------------------------------------------ restore


def data_dir_empty(settings: Settings) -> bool:
    return not any(settings.data_dir.iterdir()) if settings.data_dir.exists() else True


def restore(
    settings: Settings, target: datetime | None, point: str | None, *, mark: bool = False
) -> dict[str, Any]:
    """Restore into the data directory (delta over what is there), then recover and promote.

    The server runs here, on the unix socket only, until recovery reached the
    target and promoted, and stops with a checkpoint: the container that
    starts next finds a consistent, writable cluster.
    """
    owner = postgres()
    pid_file = settings.data_dir / "postmaster.pid"
    if pid_file.exists():
        # Restores run with the database's container stopped; a pid file
        # left by a killed server would only make pgBackRest refuse.
        pid_file.unlink()
    args = []
    if point:
        args += ["--type=name", f"--target={point}", "--target-action=promote"]
    elif target is not None:
        args += ["--type=time", f"--target={target.isoformat(sep=' ')}", "--target-action=promote"]
    if not settings.data_dir.exists():
        make_dir(settings.data_dir, owner)
    marker = settings.data_dir / RESTORE_MARKER
    started = time.monotonic()
    pgbackrest(settings, *args, "restore", what="pgbackrest restore")
    if mark:
        marker.touch()  # after pgBackRest, which restores only into an empty directory
    fetched = time.monotonic() - started
    try:
        recover(settings, owner)
    except StepError as exc:
        if target is None or "before configured recovery target was reached" not in str(exc):
            raise
        # PostgreSQL knows it passed a time only from a later commit. The
        # archive has none after the target: every commit in it is older, so
        # recovering to its end is recovering to the target.
        log.warning("no commit after %s in the archive: recovering to its end", iso(target))
        pgbackrest(settings, "--type=default", "restore", what="pgbackrest restore")
        if mark:
            marker.touch()
        recover(settings, owner)
    return {
        "restored_seconds": round(fetched, 1),
        "recovered_seconds": round(time.monotonic() - started - fetched, 1),
    }


def recover(settings: Settings, owner: Account | None) -> None:
    options = (
        f"-c config_file={SERVER_CONFIG_FILE} -c listen_addresses='' -c logging_collector=off"
        " -c log_destination=stderr"
    )
    server_log = settings.state_dir / "recovery.log"
    make_dir(settings.state_dir, owner)
    server_log.unlink(missing_ok=True)
    try:
        run(
            [
                "pg_ctl",
                f"--pgdata={settings.data_dir}",
                "--wait",
                "--timeout=86400",
                "--silent",
                f"--options={options}",
                f"--log={server_log}",
                "start",
            ],
            user=owner,
            env=dict(os.environ),
            what="starting the server for recovery",
        )
        _wait_promoted(settings, owner)
    except StepError as exc:
        text = server_log.read_text(errors="replace") if server_log.exists() else ""
        lines = [line for line in text.splitlines() if "FATAL" in line or "ERROR" in line]
        raise StepError(f"{exc}; the server said: {' | '.join(lines[-3:]) or tail(text)}") from None
    finally:
        run(
            [
                "pg_ctl",
                f"--pgdata={settings.data_dir}",
                "--mode=fast",
                "--wait",
                "--silent",
                "stop",
            ],
            user=owner,
            check=False,
        )
        if server_log.exists():
            sys.stderr.write(server_log.read_text(errors="replace")[-4000:])


def _wait_promoted(settings: Settings, owner: Account | None) -> None:
    deadline = time.monotonic() + 86400
    while time.monotonic() < deadline:
        state = run(["pg_ctl", f"--pgdata={settings.data_dir}", "status"], user=owner, check=False)
        if state.returncode != 0:
            raise StepError("the server stopped during recovery")
        answer = run(
            [
                "psql",
                "--no-psqlrc",
                "--no-align",
                "--tuples-only",
                "--host",
                str(settings.socket_dir),
                "--username",
                settings.db_user or "postgres",
                "--dbname",
                "postgres",
                "--command",
                "SELECT pg_is_in_recovery()",
            ],
            user=owner,
            check=False,
        )
        if answer.stdout.strip() == "f":
            return
        time.sleep(0.5)
    raise StepError("recovery did not finish")


def annotate(settings: Settings, label: str, note: Mapping[str, str]) -> None:
    args = [f"--set={label}"] + [f"--annotation={k}={v}" for k, v in note.items()]
    pgbackrest(settings, *args, "annotate", timeout=120)

"""MariaDB: mariadb-backup streamed to S3, binary logs archived, restores to any point.

Layout under the prefix (docs/architecture.md, decision 21):

    timelines/<tl>.json               one per data directory's history, with its parent
    backups/<id>/data.mbstream.zst[.enc]   mariadb-backup's stream, compressed, encrypted
    backups/<id>/manifest.json        written last: a backup without one does not exist
    binlog/<tl>/<file>.zst[.enc]      every closed binary log, and <file>.json beside it

A restore fetches a full backup (and the differential on top), prepares it,
moves it into the data directory, and replays the archived binary logs up to
the target on a server that writes no binary log of its own. The restored
data directory starts a new timeline, whose parent records where it branched,
so "latest" and every later point follow the history that is current.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from .config import Settings
from .runner import RESTORE_MARKER, Account, StepError, account, copy_secrets, make_dir, run, tail
from .s3 import Bucket, Stored
from .sqltypes import Connection, Cursor
from .timeparse import iso

log = logging.getLogger("shipyard-backup")

SOCKET = "/run/mysqld/mysqld.sock"
RESTORE_SOCKET = "/run/mysqld/shipyard-restore.sock"
TIMELINE_FILE = "shipyard-backup-timeline"
BINLOG_MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIII")  # timestamp, type, server id, event size, next position
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
KINDS = ("full", "differential")
BINLOG_INFO_RE = re.compile(r"filename '([^']+)', position '(\d+)'")
OPENSSL_ITER = "100000"


def mysql() -> Account | None:
    return account("mysql")


def key_path(settings: Settings) -> Path:
    return settings.secret_copy("encryption_key_file")


def prepare(settings: Settings) -> None:
    """The key file openssl reads, private to mysql (every start, as root)."""
    owner = mysql()
    # mariadb-init makes the socket directory too; a restore before it needs it
    # first. One the image or lamp-prepare made keeps its mode (any uid may use it).
    if not Path(SOCKET).parent.exists():
        make_dir(Path(SOCKET).parent, owner, 0o755)
    make_dir(settings.state_dir, owner)
    if settings.enabled:
        copy_secrets(settings, owner)


# ------------------------------------------------------------------ SQL


def connect(settings: Settings, socket: str = SOCKET) -> Connection:
    import pymysql

    # The OS user mysql is mysql@localhost by the socket's peer credentials.
    return pymysql.connect(
        unix_socket=socket, user=settings.db_user or "mysql", connect_timeout=10, autocommit=True
    )


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _tables(cur: Cursor) -> list[tuple[str, str]]:
    cur.execute(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_type = 'BASE TABLE' AND table_schema NOT IN %s ORDER BY 1, 2",
        (SYSTEM_SCHEMAS,),
    )
    return [(s, t) for s, t in cur.fetchall()]


def _check(cur: Cursor, query: str | None, tables: list[tuple[str, str]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if query:
        cur.execute(query)
        return {"query": [list(map(str, row)) for row in cur.fetchall()]}
    for schema, table in tables:
        cur.execute(f"SELECT COUNT(*) FROM {_quote(schema)}.{_quote(table)}")  # noqa: S608 (quoted)
        result.setdefault(schema, {})[table] = cur.fetchone()[0]
    return result


def check(settings: Settings, query: str | None = None, socket: str = SOCKET) -> dict[str, Any]:
    conn = connect(settings, socket)
    try:
        cur = conn.cursor()
        tables = _tables(cur)
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        result = _check(cur, query, tables)
        conn.rollback()
    finally:
        conn.close()
    return result


# ------------------------------------------------------------------ timelines


def timeline(settings: Settings) -> str | None:
    path = settings.data_dir / TIMELINE_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="utf-8").strip() or None
    return None


def new_timeline(settings: Settings, bucket: Bucket, parent: dict[str, Any] | None) -> str:
    ident = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    bucket.put_json(
        bucket.key("timelines", f"{ident}.json"),
        {"id": ident, "created": iso(datetime.now(UTC)), "parent": parent},
    )
    path = settings.data_dir / TIMELINE_FILE
    path.write_text(ident + "\n", encoding="utf-8")
    owner = mysql()
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)
    return ident


def timelines(bucket: Bucket) -> dict[str, dict[str, Any]]:
    out = {}
    for item in bucket.list("timelines/"):
        if item["Key"].endswith(".json"):
            doc = bucket.get_json(item["Key"])
            out[doc["id"]] = doc
    return out


# ------------------------------------------------------------------ pipelines


def _stages(settings: Settings) -> list[list[str]]:
    stages = [["zstd", "-3", "-T1", "-q", "-c"]]
    if settings.encryption != "none":
        stages.append(
            [
                "openssl",
                "enc",
                "-e",
                f"-{settings.encryption}",
                "-pbkdf2",
                "-iter",
                OPENSSL_ITER,
                "-salt",
                "-pass",
                f"file:{key_path(settings)}",
            ]
        )
    return stages


def _reverse_stages(settings: Settings) -> list[list[str]]:
    stages = []
    if settings.encryption != "none":
        stages.append(
            [
                "openssl",
                "enc",
                "-d",
                f"-{settings.encryption}",
                "-pbkdf2",
                "-iter",
                OPENSSL_ITER,
                "-pass",
                f"file:{key_path(settings)}",
            ]
        )
    stages.append(["zstd", "-d", "-q", "-c"])
    return stages


def suffix(settings: Settings) -> str:
    return ".zst" + ("" if settings.encryption == "none" else ".enc")


@dataclass
class Pipeline:
    procs: list[subprocess.Popen[bytes]]
    names: list[str]
    errors: list[IO[bytes]]

    def wait(self) -> None:
        problems = []
        for proc, name, err in zip(self.procs, self.names, self.errors, strict=True):
            code = proc.wait()
            err.seek(0)
            text = err.read()
            err.close()
            if code != 0:
                problems.append(f"{name} exited {code}: {tail(text)}")
        if problems:
            raise StepError("; ".join(problems))

    def kill(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


def pipeline(
    commands: list[list[str]],
    stdin: IO[bytes] | int | None,
    stdout: IO[bytes] | int | None = subprocess.PIPE,
) -> Pipeline:
    procs, errors = [], []
    source: Any = stdin
    for index, argv in enumerate(commands):
        err = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Pipeline.wait)
        last = index == len(commands) - 1
        proc = subprocess.Popen(
            argv, stdin=source, stdout=stdout if last else subprocess.PIPE, stderr=err
        )
        if procs and procs[-1].stdout is not None:
            procs[-1].stdout.close()  # the next stage owns it now
        procs.append(proc)
        errors.append(err)
        source = proc.stdout
    return Pipeline(procs, [c[0] for c in commands], errors)


def upload_pipeline(
    bucket: Bucket,
    key: str,
    commands: list[list[str]],
    stdin: IO[bytes] | int | None = subprocess.DEVNULL,
) -> Stored:
    pipe = pipeline(commands, stdin)
    out = pipe.procs[-1].stdout
    assert out is not None
    try:
        stored = bucket.put_stream(key, out)
    except BaseException:
        pipe.kill()
        with contextlib.suppress(StepError):
            pipe.wait()
        raise
    try:
        pipe.wait()
    except StepError:
        # A stage that failed leaves a truncated object: never keep it.
        bucket.delete([key])
        raise
    return stored


@contextlib.contextmanager
def download_pipeline(
    bucket: Bucket, key: str, expect: Stored, commands: list[list[str]]
) -> Iterator[IO[bytes]]:
    """Yield the decoded stream of an object; checksum or stage failures raise at the end."""
    pipe = pipeline(commands, subprocess.PIPE)
    feeder_error: list[BaseException] = []
    import threading

    def feed() -> None:
        sink = pipe.procs[0].stdin
        assert sink is not None
        try:
            for chunk in bucket.chunks(key, expect):
                sink.write(chunk)
        except BrokenPipeError:
            pass
        except BaseException as exc:
            feeder_error.append(exc)
        finally:
            with contextlib.suppress(OSError):
                sink.close()

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    out = pipe.procs[-1].stdout
    assert out is not None
    try:
        yield out
    finally:
        thread.join()
        out.close()
        try:
            pipe.wait()
        finally:
            if feeder_error:
                raise feeder_error[0]


# ------------------------------------------------------------------ backups


def _lock(settings: Settings) -> IO[str]:
    make_dir(settings.state_dir, None) if not settings.state_dir.exists() else None
    handle = (settings.state_dir / "backup.lock").open("w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def manifests(bucket: Bucket) -> list[dict[str, Any]]:
    out = []
    for item in bucket.list("backups/"):
        if item["Key"].endswith("/manifest.json"):
            out.append(bucket.get_json(item["Key"]))
    return sorted(out, key=lambda m: m["stop"])


def _read_info(directory: Path) -> dict[str, str]:
    info: dict[str, str] = {}
    for name in ("mariadb_backup_checkpoints", "mariadb_backup_info"):
        with contextlib.suppress(FileNotFoundError):
            for line in (directory / name).read_text(encoding="utf-8").splitlines():
                key, _, value = line.partition(" = ")
                info[key.strip()] = value.strip()
    return info


def backup(settings: Settings, kind: str) -> dict[str, Any]:
    """One full or differential backup; returns its manifest."""
    bucket = Bucket(settings)
    tl = timeline(settings)
    if tl is None:
        raise StepError("the data directory has no timeline yet; the scheduler creates it")
    with _lock(settings):
        base = None
        if kind == "differential":
            fulls = [m for m in manifests(bucket) if m["type"] == "full" and m["timeline"] == tl]
            if not fulls:
                log.info("no full backup on this timeline yet: taking a full one")
                kind = "full"
            else:
                base = fulls[-1]
        started = datetime.now(UTC)
        ident = f"{started:%Y%m%dT%H%M%SZ}{'F' if kind == 'full' else 'D'}"
        key = bucket.key("backups", ident, "data.mbstream" + suffix(settings))
        with tempfile.TemporaryDirectory(prefix="shipyard-backup-") as work:
            lsn_dir = Path(work) / "lsn"
            argv = [
                "mariadb-backup",
                "--backup",
                "--stream=mbstream",
                f"--target-dir={work}",
                f"--extra-lsndir={lsn_dir}",
                f"--user={settings.db_user or 'mysql'}",
                f"--socket={SOCKET}",
                f"--datadir={settings.data_dir}",
            ]
            if base is not None:
                argv.append(f"--incremental-lsn={base['lsn']['to']}")
            stored = upload_pipeline(bucket, key, [argv, *_stages(settings)])
            info = _read_info(lsn_dir)
        match = BINLOG_INFO_RE.search(info.get("binlog_pos", ""))
        if not match:
            bucket.delete([key])
            raise StepError("mariadb-backup recorded no binary log position (is log_bin on?)")
        manifest = {
            "id": ident,
            "type": kind,
            "base": base["id"] if base else None,
            "timeline": tl,
            "start": iso(started),
            "stop": iso(datetime.now(UTC)),
            "lsn": {"from": int(info.get("from_lsn", 0)), "to": int(info["to_lsn"])},
            "binlog": {"file": match.group(1), "pos": int(match.group(2))},
            "object": {"key": key, "size": stored.size, "sha256": stored.sha256},
            "encryption": settings.encryption,
            "compression": "zstd",
            "server": info.get("server_version", ""),
        }
        bucket.put_json(bucket.key("backups", ident, "manifest.json"), manifest)
        expire(settings, bucket)
    return manifest


def expire(settings: Settings, bucket: Bucket) -> list[str]:
    """Keep retention_full full backups (and what depends on them); drop older objects."""
    found = manifests(bucket)
    fulls = [m for m in found if m["type"] == "full"]
    if len(fulls) <= settings.retention_full:
        return []
    keep_from = fulls[-settings.retention_full]["stop"]
    doomed = [m for m in found if m["stop"] < keep_from]
    keys = []
    for m in doomed:
        keys += [m["object"]["key"], bucket.key("backups", m["id"], "manifest.json")]
    # Binary logs older than the oldest kept backup's position cannot be replayed onto anything.
    oldest = fulls[-settings.retention_full]
    for item in bucket.list("binlog", oldest["timeline"] + "/"):
        name = item["Key"].rsplit("/", 1)[-1].split(".zst")[0].removesuffix(".json")
        if name < oldest["binlog"]["file"]:
            keys.append(item["Key"])
    bucket.delete(keys)
    log.info("expired %d backups (retention_full = %d)", len(doomed), settings.retention_full)
    return [m["id"] for m in doomed]


# ------------------------------------------------------------------ binary logs


def binlog_times(path: Path) -> tuple[int | None, int | None]:
    """The first and last event timestamps of a closed binary log (unix seconds)."""
    first = last = None
    with path.open("rb") as handle:
        if handle.read(4) != BINLOG_MAGIC:
            raise StepError(f"{path} is not a binary log")
        while True:
            header = handle.read(19)
            if len(header) < 19:
                break
            stamp, _, _, size, _ = HEADER.unpack_from(header)
            if size < 19:
                raise StepError(f"{path}: bad event size {size}")
            first = stamp if first is None else first
            last = stamp
            handle.seek(size - 19, os.SEEK_CUR)
    return first, last


class Archiver:
    """Closes the binary log every archive interval and uploads each closed one once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = Bucket(settings)
        self.timeline: str | None = None
        self.archived: set[str] = set()
        self.last_rotate = 0.0
        self.size_at_rotate: int | None = None
        self.last_archived_time: int | None = None
        self.waiting_bytes = 0
        # What the last rotations took beyond their interval: the service's
        # loop turn (how late a due rotation may be noticed) and the upload.
        self.overruns: deque[float] = deque(maxlen=5)
        self.last_tick: float | None = None

    def start(self) -> None:
        self.timeline = self.resume_timeline()
        for item in self.bucket.list("binlog", self.timeline + "/"):
            if item["Key"].endswith(".json"):
                self.archived.add(item["Key"].rsplit("/", 1)[-1].removesuffix(".json"))
        # Whatever the current log holds from before this start goes out now.
        self.rotate()

    def resume_timeline(self) -> str:
        """The data directory's timeline, or a new one when the repository has no record of it.

        A repository that lost the record (a new or emptied bucket: the dev
        S3 keeps everything in memory) could never restore what is archived
        under it: the history before is not in this repository, so a new
        timeline without a parent starts here, and a full backup with it.
        """
        known = timeline(self.settings)
        if known is not None and known in timelines(self.bucket):
            return known
        if known is not None:
            log.warning(
                "timeline %s of this data directory is not in the repository (a new or emptied"
                " bucket): starting a new one",
                known,
            )
        ident = new_timeline(self.settings, self.bucket, None)
        log.info("new timeline %s for this data directory", ident)
        return ident

    def interval(self) -> float:
        """Seconds between rotations, so a commit reaches S3 within archive_timeout.

        A commit just after a rotation waits for the next one and its upload:
        the margin is 5 s (or a quarter of the setting when shorter), or more
        when the last uploads arrived later than that, on a slow S3 or a busy
        host: rotations then come earlier instead of the loss window growing.
        """
        margin = float(min(5, self.settings.archive_timeout // 4))
        if self.overruns:
            margin = max(margin, max(self.overruns) + 0.5)
        return max(1.0, self.settings.archive_timeout - margin)

    def _logs(self, cur: Cursor) -> list[tuple[str, int]]:
        cur.execute("SHOW BINARY LOGS")
        return [(row[0], int(row[1])) for row in cur.fetchall()]

    def rotate(self) -> None:
        conn = connect(self.settings)
        try:
            cur = conn.cursor()
            cur.execute("FLUSH BINARY LOGS")
            self.size_at_rotate = self._logs(cur)[-1][1]
        finally:
            conn.close()
        self.last_rotate = time.monotonic()

    def tick(self) -> None:
        """Rotate when due and there is something new, then upload what is closed."""
        now = time.monotonic()
        turn = min(now - (self.last_tick or now), float(self.settings.archive_timeout))
        self.last_tick = now
        conn = connect(self.settings)
        try:
            cur = conn.cursor()
            logs = self._logs(cur)
            current_name, current_size = logs[-1]
            due = now - self.last_rotate >= self.interval()
            rotated: float | None = None
            if due and self.size_at_rotate is not None and current_size > self.size_at_rotate:
                rotated = time.monotonic()
                cur.execute("FLUSH BINARY LOGS")
                logs = self._logs(cur)
                self.size_at_rotate = logs[-1][1]
                self.last_rotate = time.monotonic()
            closed = [name for name, _ in logs[:-1]]
            pending = [n for n in closed if n not in self.archived]
            self.waiting_bytes = sum(size for name, size in logs[:-1] if name in pending)
            for name in pending:
                self.upload(name)
            if rotated is not None:
                self.overruns.append(turn + time.monotonic() - rotated)
            if closed and all(n in self.archived for n in closed):
                cur.execute(f"PURGE BINARY LOGS TO '{logs[-1][0]}'")
                self.waiting_bytes = 0
            del current_name
        finally:
            conn.close()

    def upload(self, name: str) -> None:
        path = self.settings.data_dir / name
        first, last = binlog_times(path)
        key = self.bucket.key("binlog", f"{self.timeline}", name + suffix(self.settings))
        with path.open("rb") as source:
            stored = upload_pipeline(self.bucket, key, _stages(self.settings), stdin=source)
        self.bucket.put_json(
            self.bucket.key("binlog", f"{self.timeline}", name + ".json"),
            {
                "file": name,
                "size": path.stat().st_size,
                "first": first,
                "last": last,
                "object": {"key": key, "size": stored.size, "sha256": stored.sha256},
            },
        )
        self.archived.add(name)
        self.last_archived_time = last


def binlog_index(bucket: Bucket, tl: str) -> list[dict[str, Any]]:
    docs = [
        bucket.get_json(item["Key"])
        for item in bucket.list("binlog", tl + "/")
        if item["Key"].endswith(".json")
    ]
    return sorted(docs, key=lambda d: d["file"])


def wait_archived(settings: Settings, tl: str, name: str, timeout: float = 120) -> None:
    bucket = Bucket(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(d["file"] >= name for d in binlog_index(bucket, tl)):
            return
        time.sleep(1)
    raise StepError(f"binary log {name} not archived within {timeout:g} s (see the backup service)")


def verify_point(settings: Settings, query: str | None = None) -> dict[str, Any]:
    """The check query in one consistent snapshot and the binary log position it matches."""
    tl = timeline(settings)
    if tl is None:
        raise StepError("the data directory has no timeline yet")
    conn = connect(settings)
    try:
        cur = conn.cursor()
        tables = _tables(cur)
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
        status = dict(cur.fetchall())
        result = _check(cur, query, tables)
        conn.rollback()
        point = {
            "timeline": tl,
            "file": status["Binlog_snapshot_file"],
            "pos": int(status["Binlog_snapshot_position"]),
        }
        cur.execute("FLUSH BINARY LOGS")
    finally:
        conn.close()
    wait_archived(settings, tl, point["file"])
    return {"point": point, "time": iso(datetime.now(UTC)), "check": result}


# ------------------------------------------------------------------ restore


@dataclass
class Segment:
    timeline: str
    docs: list[dict[str, Any]]
    start_pos: int | None
    stop: dict[str, Any] | None  # {"time": iso} | {"file", "pos"} | None (to the end)


def _plan(
    bucket: Bucket,
    found: list[dict[str, Any]],
    lines: dict[str, dict[str, Any]],
    tl: str,
    stop: dict[str, Any] | None,
) -> tuple[dict[str, Any], list[Segment]]:
    """The backup to start from and the binary log segments to replay after it."""
    if stop is not None and "time" in stop:
        candidates = [m for m in found if m["timeline"] == tl and m["stop"] <= stop["time"]]
    elif stop is not None:
        candidates = [
            m
            for m in found
            if m["timeline"] == tl
            and (m["binlog"]["file"], m["binlog"]["pos"]) <= (stop["file"], stop["pos"])
        ]
    else:
        candidates = [m for m in found if m["timeline"] == tl]
    index = binlog_index(bucket, tl)
    if candidates:
        base = candidates[-1]
        docs = [d for d in index if d["file"] >= base["binlog"]["file"]]
        return base, [Segment(tl, docs, base["binlog"]["pos"], stop)]
    parent = lines.get(tl, {}).get("parent")
    if not parent:
        when = stop["time"] if stop and "time" in stop else "that point"
        raise StepError(f"no backup older than {when} on timeline {tl}")
    base, segments = _plan(bucket, found, lines, parent["timeline"], parent["stop"])
    return base, [*segments, Segment(tl, index, None, stop)]


def plan(
    settings: Settings, target: datetime | None, point: dict[str, Any] | None
) -> tuple[dict[str, Any], list[Segment], str]:
    bucket = Bucket(settings)
    found = [m for m in manifests(bucket)]
    lines = timelines(bucket)
    if not lines:
        raise StepError(f"no backups under s3://{settings.bucket}/{settings.prefix}/")
    if point is not None:
        tl, stop = point["timeline"], {"file": point["file"], "pos": point["pos"]}
    else:
        tl = max(lines.values(), key=lambda d: d["created"])["id"]
        stop = None if target is None else {"time": iso(target)}
        # Follow the current timeline back to the one that was live at the target.
        while target is not None and iso(target) < lines[tl]["created"] and lines[tl]["parent"]:
            tl = lines[tl]["parent"]["timeline"]
    base, segments = _plan(bucket, found, lines, tl, stop)
    return base, segments, tl


def _fetch(settings: Settings, bucket: Bucket, manifest: dict[str, Any], into: Path) -> None:
    into.mkdir(parents=True)
    obj = manifest["object"]
    expect = Stored(obj["key"], obj["size"], obj["sha256"])
    with download_pipeline(bucket, obj["key"], expect, _reverse_stages(settings)) as stream:
        run_stream(["mbstream", "-x", "-C", str(into)], stream, what=f"unpacking {manifest['id']}")


def run_stream(argv: list[str], stream: IO[bytes], what: str) -> None:
    proc = subprocess.run(argv, stdin=stream, capture_output=True, check=False)
    if proc.returncode != 0:
        raise StepError(f"{what} failed: {tail(proc.stderr)}")


def _empty(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.name == RESTORE_MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def restore(
    settings: Settings, target: datetime | None, point: dict[str, Any] | None, *, register: bool
) -> dict[str, Any]:
    """Restore into the (emptied) data directory; the server must not be running."""
    bucket = Bucket(settings)
    base, segments, tl = plan(settings, target, point)
    owner = mysql()
    started = time.monotonic()
    found = {m["id"]: m for m in manifests(bucket)}
    chain = [base] if base["type"] == "full" else [found[base["base"]], base]
    # The work happens on the data volume itself, so moving the prepared
    # files into place is a rename, and a large restore does not fill /tmp.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _empty(settings.data_dir)
    work = settings.data_dir / ".shipyard-restore"
    work.mkdir()
    try:
        full_dir = work / "full"
        _fetch(settings, bucket, chain[0], full_dir)
        run(
            ["mariadb-backup", "--prepare", f"--target-dir={full_dir}"],
            what="preparing the full backup",
        )
        if len(chain) == 2:
            diff_dir = work / "diff"
            _fetch(settings, bucket, chain[1], diff_dir)
            run(
                [
                    "mariadb-backup",
                    "--prepare",
                    f"--target-dir={full_dir}",
                    f"--incremental-dir={diff_dir}",
                ],
                what="applying the differential backup",
            )
        run(
            [
                "mariadb-backup",
                "--move-back",
                "--force-non-empty-directories",
                f"--target-dir={full_dir}",
                f"--datadir={settings.data_dir}",
            ],
            what="moving the backup into place",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fetched = time.monotonic() - started
    if owner is not None:
        run(["chown", "-R", f"{owner.uid}:{owner.gid}", str(settings.data_dir)])
    # Beside the data directory, not in it: the server would take it for a database.
    parent = settings.data_dir.parent
    logs = Path(
        tempfile.mkdtemp(
            prefix="shipyard-binlog-", dir=parent if os.access(parent, os.W_OK) else None
        )
    )
    try:
        end = _replay(settings, bucket, segments, logs, owner)
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    result = {
        "backup": base["id"],
        "timeline": tl,
        "replayed_to": end,
        "restored_seconds": round(fetched, 1),
        "recovered_seconds": round(time.monotonic() - started - fetched, 1),
    }
    (settings.data_dir / TIMELINE_FILE).unlink(missing_ok=True)
    if register:
        stop = (
            {"time": iso(target)}
            if target is not None and point is None
            else {"file": end["file"], "pos": end["pos"]}
            if end
            else None
        )
        result["new_timeline"] = new_timeline(settings, bucket, {"timeline": tl, "stop": stop})
    return result


def _error_log_tail() -> str:
    """The server's last words: with log_error set, they are in that file, not on stderr."""
    options = run(["my_print_defaults", "mariadbd"], check=False).stdout
    path = next(
        (line.split("=", 1)[1] for line in options.splitlines() if line.startswith("--log_error=")),
        "",
    )
    if not path:
        return "see its output above"
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"cannot read its log {path}: {exc.strerror}"
    return f"the last lines of {path}: " + " | ".join(lines[-8:])


@contextlib.contextmanager
def temp_server(settings: Settings, owner: Account | None) -> Iterator[None]:
    argv = [
        "mariadbd",
        f"--datadir={settings.data_dir}",
        f"--socket={RESTORE_SOCKET}",
        "--skip-networking",
        "--skip-log-bin",
        # The image's configuration names a certificate in the data directory,
        # which mariadb-first-run makes at the next start: a restored one has
        # none yet, and this server speaks over its socket alone.
        "--skip-ssl",
        "--wsrep-on=OFF",
        "--loose-innodb-buffer-pool-load-at-startup=0",
    ]
    if owner is not None:
        argv.insert(1, f"--user={owner.name}")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise StepError(f"the restore server exited while starting: {_error_log_tail()}")
            # As mysql, whom the socket's peer credentials let in (we may be root).
            probe = run(
                [
                    "mariadb",
                    "--no-defaults",
                    f"--socket={RESTORE_SOCKET}",
                    # The client asks for TLS by default; this server has none.
                    "--skip-ssl",
                    f"--user={settings.db_user or 'mysql'}",
                    "--execute=SELECT 1",
                ],
                user=owner,
                check=False,
            )
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise StepError("the restore server did not start within 120 s")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()


def _replay(
    settings: Settings, bucket: Bucket, segments: list[Segment], work: Path, owner: Account | None
) -> dict[str, Any] | None:
    end: dict[str, Any] | None = None
    with temp_server(settings, owner):
        for segment in segments:
            docs = segment.docs
            stop = segment.stop
            if stop is not None and "file" in stop:
                docs = [d for d in docs if d["file"] <= stop["file"]]
            if not docs:
                continue
            files = []
            for doc in docs:
                path = work / "binlog" / segment.timeline / doc["file"]
                path.parent.mkdir(parents=True, exist_ok=True)
                obj = doc["object"]
                with (
                    download_pipeline(
                        bucket,
                        obj["key"],
                        Stored(obj["key"], obj["size"], obj["sha256"]),
                        _reverse_stages(settings),
                    ) as stream,
                    path.open("wb") as sink,
                ):
                    shutil.copyfileobj(stream, sink, 1024 * 1024)
                files.append(str(path))
            argv = ["mariadb-binlog", "--disable-log-bin"]
            if segment.start_pos is not None:
                argv.append(f"--start-position={segment.start_pos}")
            if stop is not None and "file" in stop and docs[-1]["file"] == stop["file"]:
                argv.append(f"--stop-position={stop['pos']}")
                end = {"timeline": segment.timeline, "file": stop["file"], "pos": stop["pos"]}
            elif stop is not None and "time" in stop:
                # Binary log times are whole seconds: the target's second is included.
                moment = datetime.fromisoformat(stop["time"]).replace(microsecond=0)
                argv.append(f"--stop-datetime={(moment + timedelta(seconds=1)):%Y-%m-%d %H:%M:%S}")
            else:
                end = {
                    "timeline": segment.timeline,
                    "file": docs[-1]["file"],
                    "pos": docs[-1]["size"],
                }
            binlog = subprocess.Popen(
                [*argv, *files],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "TZ": "UTC"},
            )
            assert binlog.stdout is not None
            client = subprocess.run(
                [
                    "mariadb",
                    "--no-defaults",
                    f"--socket={RESTORE_SOCKET}",
                    "--skip-ssl",
                    f"--user={settings.db_user or 'mysql'}",
                    "--binary-mode",
                ],
                stdin=binlog.stdout,
                capture_output=True,
                check=False,
                **({"user": owner.uid, "group": owner.gid} if owner else {}),
            )
            binlog.stdout.close()
            errors = binlog.stderr.read() if binlog.stderr else b""
            if binlog.wait() != 0 or client.returncode != 0:
                raise StepError(
                    f"replaying the binary logs of {segment.timeline} failed: "
                    f"{tail(errors + client.stderr)}"
                )
    return end


def archive_status(settings: Settings) -> dict[str, Any]:
    tl = timeline(settings)
    return {"timeline": tl}


def data_dir_empty(settings: Settings) -> bool:
    if not settings.data_dir.exists():
        return True
    return not (settings.data_dir / "mysql").exists()


def json_dump(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True)

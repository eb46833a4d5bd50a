"""Time-sliced log files and the journal that makes the collector's writes exactly-once.

A slice is `ROOT/logs/<time_slice_format>.log`, chosen from each record's own
event time (UTC) and its source host, one line `time<TAB>tag<TAB>json` each.
ROOT is one store's directory: the collector's root, or with `[[match]]`
tables a directory under it per match (routing.py), each with its own journal.

The journal (`ROOT/.collector/journal`, JSON lines, fsync'd) records, for every
commit, the chunk ids it stored and the length every touched slice file had
after it. Data and chunk id become durable in the same journal line, so:

* a chunk id in the journal means its lines are on disk: a replay is dropped;
* bytes past a file's last journaled length belong to a commit that never
  finished (and was never acked): recovery truncates them, the client resends.

A file is journaled (with its length before the write) before the first write
to it, so even a brand-new file's torn append is cut back on recovery.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .durable import fsync_dir, write_all, write_atomically, write_synced
from .forward import EventTime, Frame

log = logging.getLogger("shipyard_logs.slices")

DEFAULT_TIME_SLICE_FORMAT = "%Y%m%d/${host}-%H"
HOST_PLACEHOLDER = "${host}"
HOST_KEYS = ("source_host", "hostname", "host")
_DIRECTIVES = {
    "Y": r"(?P<Y>\d{4})",
    "m": r"(?P<m>\d{2})",
    "d": r"(?P<d>\d{2})",
    "H": r"(?P<H>\d{2})",
    "M": r"(?P<M>\d{2})",
    "j": r"(?P<j>\d{3})",
}
_UNSAFE_HOST = re.compile(r"[^A-Za-z0-9._-]")
JOURNAL_NAME = ".collector/journal"
MAX_JOURNAL_BYTES = 8 * 1024 * 1024
MAX_OPEN_FILES = 64


class LayoutError(ValueError):
    """A time_slice_format that cannot name slice files."""


def safe_host(name: str) -> str:
    """A host name usable as a file name component, whatever the record carried."""
    cleaned = _UNSAFE_HOST.sub("_", name)[:128].lstrip(".")
    return cleaned or "unknown"


class SliceLayout:
    """Maps (event time, host) to a slice file and a slice file back to its time span."""

    def __init__(self, time_slice_format: str = DEFAULT_TIME_SLICE_FORMAT) -> None:
        fmt = time_slice_format
        # With a host of up to 128 characters, names stay within a file system's 255.
        if len(fmt) > 100:
            raise LayoutError("time_slice_format must be at most 100 characters")
        if fmt.count(HOST_PLACEHOLDER) != 1:
            raise LayoutError("time_slice_format must contain ${host} exactly once")
        directives = re.findall(r"%(.)", fmt)
        if any(d not in _DIRECTIVES for d in directives) or "Y" not in directives:
            raise LayoutError("time_slice_format may use %Y %m %d %j %H %M only, and needs %Y")
        if ".." in fmt or fmt.startswith("/"):
            raise LayoutError("time_slice_format must stay below logs/")
        if "@" in fmt:
            # "@" parts a slice from the collector's name in S3 keys (uploader.py).
            raise LayoutError("time_slice_format must not contain @")
        self.format = fmt
        if "M" in directives:
            self.seconds = 60
        elif "H" in directives:
            self.seconds = 3600
        elif "d" in directives or "j" in directives:
            self.seconds = 86400
        else:
            raise LayoutError("time_slice_format needs at least a day (%d or %j)")
        pattern, rest = "", fmt
        for piece in re.split(r"(%.|\$\{host\})", rest):
            if piece == HOST_PLACEHOLDER:
                pattern += r"(?P<host>[A-Za-z0-9._-]+?)"
            elif piece.startswith("%") and len(piece) == 2:
                pattern += _DIRECTIVES[piece[1]]
            else:
                pattern += re.escape(piece)
        self._regex = re.compile(r"logs/" + pattern + r"\.log")
        self._cache: dict[tuple[int, str], str] = {}

    def slice_start(self, seconds: int) -> int:
        return seconds - seconds % self.seconds

    def relpath(self, seconds: int, host: str) -> str:
        """`logs/<format>.log` for the slice holding `seconds`, relative to the root."""
        key = (self.slice_start(seconds), host)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            stamp = datetime.fromtimestamp(key[0], UTC)
            name = stamp.strftime(self.format.replace(HOST_PLACEHOLDER, "\x1f"))
            found = "logs/" + name.replace("\x1f", safe_host(host)) + ".log"
            self._cache[key] = found
        return found

    def parse(self, relpath: str) -> tuple[str, int] | None:
        """(host, slice start) of a slice file's relative path, None for other files."""
        match = self._regex.fullmatch(relpath)
        if not match:
            return None
        parts = match.groupdict()
        try:
            if parts.get("j"):
                day = datetime.strptime(f"{parts['Y']}{parts['j']}", "%Y%j").replace(tzinfo=UTC)
            else:
                day = datetime(
                    int(parts["Y"]), int(parts.get("m") or 1), int(parts.get("d") or 1), tzinfo=UTC
                )
        except ValueError:
            return None
        start = day.timestamp() + int(parts.get("H") or 0) * 3600 + int(parts.get("M") or 0) * 60
        return parts["host"], int(start)


def iso_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def chunk_key(chunk: object) -> str:
    """A journal-safe string for a chunk id of any msgpack type the client chose."""
    if isinstance(chunk, str):
        return "s:" + chunk
    if isinstance(chunk, bytes):
        return "b:" + base64.b64encode(chunk).decode("ascii")
    return "j:" + json.dumps(chunk, sort_keys=True, default=repr)


def record_host(record: dict[str, Any], peer: str) -> str:
    """The host a record is sliced under: see HOST_KEYS, else the peer's address."""
    for key in HOST_KEYS:
        value = record.get(key)
        if isinstance(value, str) and value:
            return value
    return peer


def _json_default(obj: object) -> Any:  # noqa: ANN401 - json hook contract
    if isinstance(obj, EventTime):
        return float(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "backslashreplace")
    return repr(obj)


def _line_encoder() -> Callable[[dict[str, Any]], str]:
    """JSON text of one record, compact and UTF-8, made by one encoder kept for good.

    json.dumps builds a JSONEncoder per call, and JSONEncoder.encode builds the
    C encoder per call: together half the cost of a record. The C encoder keeps
    no state between calls, so one serves every thread. It is made without the
    circular-reference check: a record comes from msgpack, which cannot build a
    cycle, and its depth is bounded by the decoder (max_depth).
    """
    make = json.encoder.c_make_encoder
    if make is None or json.encoder.c_encode_basestring is None:  # no _json accelerator
        return json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), default=_json_default
        ).encode
    # (markers, default, encoder, indent, key and item separators, sort_keys,
    # skipkeys, allow_nan): what JSONEncoder(ensure_ascii=False, separators=
    # (",", ":"), check_circular=False) passes.
    encode = make(
        None, _json_default, json.encoder.c_encode_basestring, None, ":", ",", False, False, True
    )
    return lambda record: "".join(encode(record, 0))


_json_line = _line_encoder()


def _encode_text(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Undecodable bytes from the client arrive as surrogate escapes; keep
        # the file valid UTF-8 and still show them. The handler replaces only
        # what cannot be encoded, so a whole file's text encodes as its lines do.
        return text.encode("utf-8", "backslashreplace")


def record_id_base(chunk: object) -> str:
    """The chunk part of a record id: a str chunk as it is, bytes as base64url."""
    if isinstance(chunk, bytes):
        return base64.urlsafe_b64encode(chunk).decode("ascii")
    return str(chunk)


@dataclass
class StoreResult:
    lines: int = 0
    duplicates: int = 0
    by_tag: dict[str, int] = field(default_factory=dict)
    by_host: dict[str, int] = field(default_factory=dict)

    def add(self, other: StoreResult) -> None:
        self.lines += other.lines
        self.duplicates += other.duplicates
        for mine, theirs in ((self.by_tag, other.by_tag), (self.by_host, other.by_host)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class StoreError(Exception):
    """A commit that did not happen: none of its bytes count, none of it may be acked.

    `disk_full` tells a full file system (or quota) from other write errors.
    """

    def __init__(self, root: Path, error: OSError) -> None:
        super().__init__(f"{root}: {error.strerror or error}")
        self.root = root
        self.error = error
        self.disk_full = error.errno in DISK_FULL_ERRNOS
        # Set by the router: what a multi-store commit stored, what it did not.
        self.stored = StoreResult()
        self.remaining: list[Frame] = []


class SliceStore:
    """Appends frames to slice files; every public method runs on one writer thread.

    A failed write never leaves bytes that count: the commit is rolled back
    (journal first, then the slice files, each cut to its committed length), and
    if even that fails the store stays *broken* until a later call manages to
    cut the files and write a fresh journal from what it knows is committed.
    Until then it commits nothing, so nothing is acked.
    """

    def __init__(
        self,
        root: Path,
        layout: SliceLayout,
        chunk_retention: float = 86400.0,
        max_chunk_ids: int = 1_000_000,
        record_id_key: str = "",
    ) -> None:
        self.root = root
        self.layout = layout
        self.chunk_retention = chunk_retention
        self.max_chunk_ids = max_chunk_ids
        self.record_id_key = record_id_key
        self.journal_path = root / JOURNAL_NAME
        self._sizes: dict[str, int] = {}  # committed length of each tracked file
        self._touched: dict[str, float] = {}  # when each tracked file was last written
        # Where each slice's next file starts in the slice's whole byte stream:
        # the bytes before it are in S3 (uploader.py names parts by it).
        self._origins: dict[str, int] = {}
        self._origin_times: dict[str, float] = {}  # when each origin last moved
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._journal_fd = -1
        self._journal_bytes = 0
        self._compacted_bytes = 0  # the journal's size right after its last rewrite
        self._broken: OSError | None = None  # a failed rollback: see _recover
        # Files that may hold bytes of a failed commit, and the length to cut them to.
        self._dirty: dict[str, int] = {}
        self._valid_end = 0  # where the journal's last whole line ends, at replay
        self._iso_cache: dict[int, str] = {}
        # The failure that stops this store from committing, and since when.
        self.failure: StoreError | None = None
        self.failing_since = 0.0
        self.journal_bytes_written = 0  # appended and rewritten, for the benchmark

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Replay the journal, cut uncommitted tails, and start a compacted journal."""
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self._replay()
        for rel, size in list(self._sizes.items()):
            path = self.root / rel
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                self._untrack(rel)  # uploaded and removed
                continue
            if actual > size:
                log.warning("cutting %d uncommitted bytes from %s", actual - size, rel)
                _cut(path, size)
            else:
                self._sizes[rel] = actual
        # The replayed ids are kept as they are: an agent replays its unacked
        # chunk when it reconnects, however long the collector was down.
        try:
            self._compact(prune=False)
        except OSError as exc:
            # No room for a second copy: go on appending to the journal as it
            # is, without its torn end, and compact once there is room.
            log.warning("journal %s: not compacted at start: %s", self.journal_path, exc)
            self._broken = None
            self._reopen_journal()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1

    def _replay(self) -> None:
        self._valid_end = 0
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        # After the last newline: a line whose write never finished, so never
        # acked, even where what got written happens to be whole JSON.
        torn = 1 if lines.pop() else 0
        offset = 0
        for raw in lines:
            offset += len(raw) + 1
            if not raw:
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                # A commit whose line did not get written whole: it was never
                # acked. Only the last line can be torn by a crash (each line
                # is fsync'd before the next); a failed write is cut back at
                # once. Lines after one are still read, so nothing acked after
                # it is lost whatever left it there.
                torn += 1
                continue
            stamp = float(entry.get("t", 0.0))
            for key in entry.get("c", []):
                self._seen[key] = stamp
            for rel, size in entry.get("f", {}).items():
                self._sizes[rel] = int(size)
                self._touched[rel] = stamp
            for rel, origin in entry.get("o", {}).items():
                # Incremental lines give the offset; compacted ones [offset, time].
                start, when = origin if isinstance(origin, list) else (origin, stamp)
                self._origins[rel] = int(start)
                self._origin_times[rel] = float(when)
            self._valid_end = offset
        if torn:
            log.warning("journal %s: skipped %d torn line(s)", self.journal_path, torn)
        while len(self._seen) > self.max_chunk_ids:
            self._seen.popitem(last=False)

    def _compact(self, prune: bool = True) -> None:
        """Rewrite the journal as one line of file lengths and the remembered chunk ids."""
        now = time.time()
        if prune:
            horizon = now - self.chunk_retention
            for rel in [r for r, t in self._touched.items() if t < horizon]:
                self._untrack(rel)
            for rel in [r for r, t in self._origin_times.items() if t < horizon]:
                if rel not in self._sizes:
                    self._set_origin(rel, None)
            while self._seen and next(iter(self._seen.values())) < horizon:
                self._seen.popitem(last=False)
        origins = {r: [o, self._origin_times.get(r, now)] for r, o in self._origins.items()}
        lines = [json.dumps({"t": now, "f": self._sizes, "o": origins})]
        batch: list[str] = []
        stamp = now
        for key, stamp in self._seen.items():
            batch.append(key)
            if len(batch) >= 1000:
                lines.append(json.dumps({"t": stamp, "c": batch}))
                batch = []
        if batch:
            lines.append(json.dumps({"t": stamp, "c": batch}))
        body = ("\n".join(lines) + "\n").encode("utf-8")
        tmp = self.journal_path.with_suffix(".tmp")
        try:
            write_synced(tmp, body)
        except OSError:
            tmp.unlink(missing_ok=True)  # a half-written copy must not hold the space
            raise
        tmp.replace(self.journal_path)
        self._valid_end = len(body)
        self.journal_bytes_written += len(body)
        # From the rename on, only the new file is the journal: a line appended
        # through the old descriptor would be lost, so a failed open breaks the store.
        old, self._journal_fd = self._journal_fd, -1
        if old >= 0:
            os.close(old)
        try:
            fsync_dir(self.journal_path.parent)
            self._journal_fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            self._broken = exc
            raise
        self._journal_bytes = self._compacted_bytes = len(body)

    def _reopen_journal(self) -> None:
        """Append to the journal as it is on disk, cut after its last whole line."""
        self.journal_path.touch(mode=0o640, exist_ok=True)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
        try:
            os.ftruncate(fd, self._valid_end)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            raise
        self._journal_fd = fd
        self._journal_bytes = self._compacted_bytes = self._valid_end

    def _journal(self, entry: dict[str, Any]) -> None:
        data = (json.dumps(entry, separators=(",", ":")) + "\n").encode("utf-8")
        write_all(self._journal_fd, data)
        os.fsync(self._journal_fd)
        self._journal_bytes += len(data)
        self.journal_bytes_written += len(data)

    def _maybe_compact(self) -> None:
        """Rewrite the journal once it holds as much again as its last rewrite.

        Each rewrite is paid for by at least as many appended bytes, so a commit
        costs at most about twice its own journal line, however many chunk ids
        are remembered; ids past max_chunk_ids are forgotten in memory at once
        and leave the file at the next rewrite.
        """
        if self._journal_bytes <= max(MAX_JOURNAL_BYTES, 2 * self._compacted_bytes):
            return
        try:
            self._compact()
        except OSError as exc:
            # The commit that got here is durable; the journal is merely long.
            log.warning("journal %s: compaction failed, kept as it is: %s", self.journal_path, exc)

    # ------------------------------------------------------------ failures

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def _ensure_healthy(self) -> None:
        if self._broken is not None:
            self._recover()

    def _recover(self) -> None:
        """Make disk match memory again after a rollback failed, or raise StoreError.

        Memory holds exactly what was committed. Every file a failed commit
        touched is cut to its committed length, then the journal is rewritten
        from memory, replacing whatever the failed commit left in it.
        """
        try:
            for rel, size in sorted(self._dirty.items()):
                path = self.root / rel
                if path.exists() and path.stat().st_size > size:
                    _cut(path, size)
                del self._dirty[rel]
            self._compact(prune=False)
        except OSError as exc:
            self._broken = exc
            raise StoreError(self.root, exc) from exc
        self._broken = None

    def _rollback(self, journal_mark: int, cut_to: dict[str, int], fresh: Iterable[str]) -> None:
        """Undo a failed commit: the journal back to journal_mark, files to cut_to."""
        for rel in fresh:
            self._sizes.pop(rel, None)  # the line that tracks it may be cut below
        self._dirty.update(cut_to)
        if self._broken is not None:
            return
        try:
            # The journal first: while it may hold the commit's line, the
            # files must keep the bytes that line would vouch for.
            os.ftruncate(self._journal_fd, journal_mark)
            self._journal_bytes = journal_mark
        except OSError as exc:
            self._broken = exc
            log.error("journal %s: cannot undo a failed commit: %s", self.journal_path, exc)
            return
        for rel, size in list(self._dirty.items()):
            path = self.root / rel
            try:
                if path.exists() and path.stat().st_size > size:
                    _cut(path, size)
            except OSError as exc:
                self._broken = exc
                log.error("%s: cannot cut a failed commit's bytes: %s", path, exc)
                return
            del self._dirty[rel]

    # ------------------------------------------------------------ writing

    def seen(self, chunk: object) -> bool:
        return chunk_key(chunk) in self._seen

    def store(self, frames: Iterable[Frame], peer: str) -> StoreResult:
        """Append the frames' records durably; replayed chunks are skipped, not written.

        Raises StoreError when the commit could not be made; then nothing of it
        counts and the caller must not ack.
        """
        try:
            result = self._store(frames, peer)
        except StoreError as exc:
            if self.failure is None:
                self.failing_since = time.time()
                log.warning(
                    "cannot store under %s (%s): not acking until it can; clients keep their data",
                    self.root,
                    exc.error.strerror or exc.error,
                )
            self.failure = exc
            raise
        if self.failure is not None and result.lines:
            log.info(
                "storing under %s again after %.0fs", self.root, time.time() - self.failing_since
            )
            self.failure = None
        return result

    def _store(self, frames: Iterable[Frame], peer: str) -> StoreResult:
        self._ensure_healthy()
        pending: dict[str, list[str]] = {}
        keys: list[str] = []
        result = StoreResult()
        for frame in frames:
            if frame.chunk is not None:
                key = chunk_key(frame.chunk)
                if key in self._seen or key in keys:
                    result.duplicates += len(frame.entries)
                    continue
                keys.append(key)
            self._format(frame, peer, pending, result)
        if not pending and not keys:
            return result
        now = time.time()
        mark = self._journal_bytes
        fresh = {rel: self._current_size(rel) for rel in pending if rel not in self._sizes}
        try:
            if fresh:
                self._journal({"t": now, "f": fresh})
                self._sizes.update(fresh)
            after: dict[str, int] = {}
            for rel, texts in pending.items():
                data = _encode_text("".join(texts))
                fd = self._fd(rel)
                write_all(fd, data)
                os.fsync(fd)
                after[rel] = self._sizes[rel] + len(data)
            self._journal({"t": now, "c": keys, "f": after})
        except BaseException as exc:
            # Each file back to its length before this commit (fresh: as found).
            cut_to = {rel: fresh.get(rel, self._sizes.get(rel, 0)) for rel in pending}
            self._rollback(mark, cut_to, fresh)
            if isinstance(exc, OSError):
                raise StoreError(self.root, exc) from exc
            raise
        self._sizes.update(after)
        for rel in after:
            self._touched[rel] = now
        for key in keys:
            self._seen[key] = now
        while len(self._seen) > self.max_chunk_ids:
            self._seen.popitem(last=False)
        self._maybe_compact()
        return result

    def _format(
        self, frame: Frame, peer: str, pending: dict[str, list[str]], result: StoreResult
    ) -> None:
        tag = frame.tag.replace("\t", " ").replace("\n", " ")
        id_key = self.record_id_key if frame.chunk is not None else ""
        id_base = record_id_base(frame.chunk) + "-" if id_key else ""
        by_host = result.by_host
        # A frame's records mostly share one second and one host: the line
        # prefix and the slice are looked up again only when either changes.
        last_seconds, last_host = -1, ""
        prefix = ""
        lines: list[str] = []
        append = lines.append
        encode = _json_line
        run = 0  # records of last_host since it was last counted
        for index, (stamp, record) in enumerate(frame.entries):
            if id_key and id_key not in record:
                # A resent chunk has the same id and entries: the same record ids.
                record[id_key] = id_base + str(index)
            host = record.get("source_host")  # the usual key first, without a call
            if type(host) is not str or not host:
                host = record_host(record, peer)
            seconds = stamp.seconds
            if seconds != last_seconds or host != last_host:
                if run:
                    by_host[last_host] = by_host.get(last_host, 0) + run
                    run = 0
                last_seconds, last_host = seconds, host
                prefix = f"{self._iso(seconds)}\t{tag}\t"
                lines = pending.setdefault(self.layout.relpath(seconds, host), [])
                append = lines.append
            run += 1
            append(prefix + encode(record) + "\n")
        if run:
            by_host[last_host] = by_host.get(last_host, 0) + run
        count = len(frame.entries)
        result.lines += count
        result.by_tag[frame.tag] = result.by_tag.get(frame.tag, 0) + count

    def _iso(self, seconds: int) -> str:
        iso = self._iso_cache.get(seconds)
        if iso is None:
            if len(self._iso_cache) > 65536:
                self._iso_cache.clear()
            iso = self._iso_cache[seconds] = iso_time(seconds)
        return iso

    def _current_size(self, rel: str) -> int:
        try:
            return (self.root / rel).stat().st_size
        except FileNotFoundError:
            return 0

    def _fd(self, rel: str) -> int:
        fd = self._fds.get(rel)
        if fd is not None:
            self._fds.move_to_end(rel)
            return fd
        path = self.root / rel
        created_dir = not path.parent.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            # A new file or directory is only durable once its directory entry is.
            if not existed:
                fsync_dir(path.parent)
            if created_dir:
                fsync_dir(path.parent.parent)
        except OSError:
            os.close(fd)
            raise
        self._fds[rel] = fd
        while len(self._fds) > MAX_OPEN_FILES:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def _untrack(self, rel: str) -> None:
        fd = self._fds.pop(rel, None)
        if fd is not None:
            os.close(fd)
        self._sizes.pop(rel, None)
        self._touched.pop(rel, None)

    # ------------------------------------------------------------ uploads

    def slice_files(self) -> list[str]:
        """Every slice file under logs/, as relative paths."""
        base = self.root / "logs"
        found = []
        for path in base.rglob("*.log"):
            rel = path.relative_to(self.root).as_posix()
            if self.layout.parse(rel) is not None:
                found.append(rel)
        return sorted(found)

    def seal(self, rel: str) -> tuple[int, int]:
        """(origin, committed length) of a slice file, for an upload of its committed bytes.

        The origin is where the file's first byte sits in the slice's whole
        stream of bytes, counting what earlier uploads already shipped.
        """
        fd = self._fds.pop(rel, None)
        if fd is not None:
            os.close(fd)
        return self._origins.get(rel, 0), self._sizes.get(rel, self._current_size(rel))

    def pending(self) -> tuple[int, int]:
        """(slice files, bytes) under logs/ waiting to be shipped or kept."""
        files = self.slice_files()
        return len(files), sum(self._sizes.get(r, self._current_size(r)) for r in files)

    def release(self, rel: str, uploaded: int) -> None:
        """Drop the first `uploaded` bytes of a slice that are now safe in S3.

        Late records appended while the upload ran stay in the file, which then
        holds only them and is uploaded as a further part, starting in the
        slice's stream where this one ended. Raises StoreError when the bytes
        cannot be dropped yet (e.g. no space for the tail's copy); the file is
        then as it was, and the next upload finds its bytes already shipped.
        """
        self._ensure_healthy()
        path = self.root / rel
        origin, size = self.seal(rel)
        end = origin + uploaded
        mark = self._journal_bytes
        entry: dict[str, Any] = {"t": time.time(), "o": {rel: end}}
        try:
            if size <= uploaded:
                path.unlink(missing_ok=True)
                self._untrack(rel)
                self._set_origin(rel, end)
                fsync_dir(path.parent)
            else:
                with path.open("rb") as src:
                    src.seek(uploaded)
                    tail = src.read(size - uploaded)
                write_atomically(path, tail)
                # The file on disk now holds the tail alone, journaled or not.
                self._sizes[rel] = len(tail)
                self._set_origin(rel, end)
                entry["f"] = {rel: len(tail)}
            self._journal(entry)
        except OSError as exc:
            # A journal that still gives the old, longer length would hide a
            # torn append behind it: it is rewritten from memory before the
            # next commit.
            self._rollback(mark, {}, ())
            self._broken = self._broken or exc
            raise StoreError(self.root, exc) from exc

    def rebase(self, rel: str, origin: int) -> None:
        """Move a slice file's origin: S3 already holds the slice's bytes up to it."""
        self._ensure_healthy()
        mark = self._journal_bytes
        self._set_origin(rel, origin)
        try:
            self._journal({"t": time.time(), "o": {rel: origin}})
        except OSError as exc:
            self._rollback(mark, {}, ())
            self._broken = self._broken or exc
            raise StoreError(self.root, exc) from exc

    def _set_origin(self, rel: str, origin: int | None) -> None:
        if origin is None:
            self._origins.pop(rel, None)
            self._origin_times.pop(rel, None)
        else:
            self._origins[rel] = origin
            self._origin_times[rel] = time.time()


def _cut(path: Path, size: int) -> None:
    """Truncate a file to `size` bytes, durably."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)

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
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
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
        if fmt.count(HOST_PLACEHOLDER) != 1:
            raise LayoutError("time_slice_format must contain ${host} exactly once")
        directives = re.findall(r"%(.)", fmt)
        if any(d not in _DIRECTIVES for d in directives) or "Y" not in directives:
            raise LayoutError("time_slice_format may use %Y %m %d %j %H %M only, and needs %Y")
        if ".." in fmt or fmt.startswith("/"):
            raise LayoutError("time_slice_format must stay below logs/")
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


# json.dumps with any option builds a new encoder per call, a third of the cost
# of a record; encode() keeps no state between calls, so one serves every thread.
_json_line = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_json_default
).encode


def _encode_text(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Undecodable bytes from the client arrive as surrogate escapes; keep
        # the file valid UTF-8 and still show them. The handler replaces only
        # what cannot be encoded, so a whole file's text encodes as its lines do.
        return text.encode("utf-8", "backslashreplace")


@dataclass
class StoreResult:
    lines: int
    duplicates: int


class SliceStore:
    """Appends frames to slice files; every public method runs on one writer thread."""

    def __init__(
        self,
        root: Path,
        layout: SliceLayout,
        chunk_retention: float = 86400.0,
        max_chunk_ids: int = 1_000_000,
    ) -> None:
        self.root = root
        self.layout = layout
        self.chunk_retention = chunk_retention
        self.max_chunk_ids = max_chunk_ids
        self.journal_path = root / JOURNAL_NAME
        self._sizes: dict[str, int] = {}  # committed length of each tracked file
        self._touched: dict[str, float] = {}  # when each tracked file was last written
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._journal_fd = -1
        self._journal_bytes = 0
        self._iso_cache: dict[int, str] = {}

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
                os.truncate(path, size)
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                self._sizes[rel] = actual
        # The replayed ids are kept as they are: an agent replays its unacked
        # chunk when it reconnects, however long the collector was down.
        self._compact(prune=False)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1

    def _replay(self) -> None:
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return
        for raw in data.split(b"\n"):
            if not raw:
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                # Only the last line can be torn (every line is fsync'd before
                # the next is written); its commit never finished.
                log.warning("journal ends in a torn line; its commit is rolled back")
                break
            stamp = float(entry.get("t", 0.0))
            for key in entry.get("c", []):
                self._seen[key] = stamp
            for rel, size in entry.get("f", {}).items():
                self._sizes[rel] = int(size)
                self._touched[rel] = stamp

    def _compact(self, prune: bool = True) -> None:
        now = time.time()
        if prune:
            horizon = now - self.chunk_retention
            for rel in [r for r, t in self._touched.items() if t < horizon]:
                self._untrack(rel)
            while self._seen and next(iter(self._seen.values())) < horizon:
                self._seen.popitem(last=False)
        while len(self._seen) > self.max_chunk_ids:
            self._seen.popitem(last=False)
        tmp = self.journal_path.with_suffix(".tmp")
        lines = [json.dumps({"t": now, "f": self._sizes})]
        batch: list[str] = []
        for key, stamp in self._seen.items():
            batch.append(key)
            if len(batch) >= 1000:
                lines.append(json.dumps({"t": stamp, "c": batch}))
                batch = []
        if batch:
            lines.append(json.dumps({"t": stamp, "c": batch}))
        body = ("\n".join(lines) + "\n").encode("utf-8")
        write_synced(tmp, body)
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
        tmp.replace(self.journal_path)
        fsync_dir(self.journal_path.parent)
        self._journal_fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
        self._journal_bytes = len(body)

    def _journal(self, entry: dict[str, Any]) -> None:
        data = (json.dumps(entry, separators=(",", ":")) + "\n").encode("utf-8")
        write_all(self._journal_fd, data)
        os.fsync(self._journal_fd)
        self._journal_bytes += len(data)

    # ------------------------------------------------------------ writing

    def seen(self, chunk: object) -> bool:
        return chunk_key(chunk) in self._seen

    def store(self, frames: Iterable[Frame], peer: str) -> StoreResult:
        """Append the frames' records durably; replayed chunks are skipped, not written."""
        pending: dict[str, list[str]] = {}
        keys: list[str] = []
        lines = duplicates = 0
        for frame in frames:
            if frame.chunk is not None:
                key = chunk_key(frame.chunk)
                if key in self._seen or key in keys:
                    duplicates += len(frame.entries)
                    continue
                keys.append(key)
            lines += self._format(frame, peer, pending)
        if not pending and not keys:
            return StoreResult(0, duplicates)
        now = time.time()
        fresh = {rel: self._current_size(rel) for rel in pending if rel not in self._sizes}
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
        self._sizes.update(after)
        for rel in after:
            self._touched[rel] = now
        for key in keys:
            self._seen[key] = now
        if self._journal_bytes > MAX_JOURNAL_BYTES or len(self._seen) > self.max_chunk_ids:
            self._compact()
        return StoreResult(lines, duplicates)

    def _format(self, frame: Frame, peer: str, pending: dict[str, list[str]]) -> int:
        tag = frame.tag.replace("\t", " ").replace("\n", " ")
        # A frame's records mostly share one second and one host: the line
        # prefix and the slice are looked up again only when either changes.
        last_seconds, last_host = -1, ""
        prefix = ""
        lines: list[str] = []
        for stamp, record in frame.entries:
            host = record_host(record, peer)
            seconds = stamp.seconds
            if seconds != last_seconds or host != last_host:
                last_seconds, last_host = seconds, host
                prefix = f"{self._iso(seconds)}\t{tag}\t"
                lines = pending.setdefault(self.layout.relpath(seconds, host), [])
            lines.append(prefix + _json_line(record) + "\n")
        return len(frame.entries)

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
        # A new file or directory is only durable once its directory entry is.
        if not existed:
            fsync_dir(path.parent)
        if created_dir:
            fsync_dir(path.parent.parent)
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

    def seal(self, rel: str) -> int:
        """Stop appending through a cached descriptor and return the committed length."""
        fd = self._fds.pop(rel, None)
        if fd is not None:
            os.close(fd)
        return self._sizes.get(rel, self._current_size(rel))

    def release(self, rel: str, uploaded: int) -> None:
        """Drop the first `uploaded` bytes of a slice that are now safe in S3.

        Late records appended while the upload ran stay in the file, which then
        holds only them and is uploaded as a further part.
        """
        path = self.root / rel
        size = self.seal(rel)
        if size <= uploaded:
            path.unlink(missing_ok=True)
            self._untrack(rel)
            fsync_dir(path.parent)
            return
        with path.open("rb") as src:
            src.seek(uploaded)
            tail = src.read(size - uploaded)
        write_atomically(path, tail)
        self._journal({"t": time.time(), "f": {rel: len(tail)}})
        self._sizes[rel] = len(tail)

"""shipyard log rotation: size-based, inside the container, without losing a line.

    python3 -m shipyard_logs.rotate [--config FILE] [--check-config]

Every `interval` seconds, each `[[files]]` path larger than `size` gets a second
name `<path>.<UTC time>` (a hard link), a new empty file with the same owner and
mode takes its place in one rename, and the writer is told to reopen it (a
signal to the pid in a pid file, or a command). Generations beyond `keep` are
deleted, oldest first. Entries with `rotate = false` name files their writer
rotates itself (PostgreSQL's log_rotation_size): only the old ones are pruned.

The log agent's position files (`pos_dir/*.pos`) guard the backlog. A file is
rotated only once its inode is in them, so the agent follows every generation
(by its open file or, after a restart, by inode); a generation the agent has
not read to its end (for `rotate = false`: not yet found either) is kept
beyond `keep`. While the agent cannot ship (no collector), the file grows up
to `max_size` and is then rotated anyway, and old files the agent has not read
are deleted once there are more than 2 x `keep`: disk space wins, and that is
logged.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .agent.positions import read_positions
from .config import (
    LOG_LEVEL,
    OPTIONAL_PATH,
    Between,
    ConfigError,
    Setting,
    config_from_cli,
    load_file,
    merge,
)

log = logging.getLogger("shipyard_logs.rotate")

DEFAULTS: dict[str, Any] = {
    "interval": Setting(10.0, Between(0.1, 86400)),
    "size": "10M",
    "max_size": "",  # default: 4 x size
    # The newest generation is still being written until the writer reopens.
    "keep": Setting(4, Between(1, 1000)),
    "pos_dir": Setting("/var/lib/shipyard/log-agent", OPTIONAL_PATH),  # "" = no agent
    "log_level": Setting("INFO", LOG_LEVEL),
}
FILE_DEFAULTS: dict[str, Any] = {
    "path": "",
    "rotate": True,
    "reopen_signal": "",
    "reopen_pid_file": Setting("", OPTIONAL_PATH),
    "reopen_command": [],
}
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
STAMP = "%Y%m%dT%H%M%SZ"
GENERATION = r"\.\d{8}T\d{6}Z(?:\.\d+)?"


@dataclass(frozen=True)
class Reopen:
    """How a writer is made to open its log file again after a rotation."""

    signal: signal.Signals | None
    pid_file: Path | None
    command: tuple[str, ...]


@dataclass(frozen=True)
class LogFile:
    path: str
    rotate: bool
    reopen: Reopen | None


@dataclass(frozen=True)
class RotateConfig:
    interval: float
    size: int
    max_size: int
    keep: int
    pos_dir: Path | None
    log_level: str
    files: tuple[LogFile, ...]


def parse_size(text: str, key: str = "size") -> int:
    """Bytes from `123`, `64k`, `10M`, `10MB`, `1G` (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[bB]?\s*", str(text))
    if not match or int(match[1]) <= 0:
        raise ConfigError(f"rotate.{key}: {text!r} is not a size such as 10M")
    return int(match[1]) * UNITS[match[2].upper()]


def _reopen(where: str, raw: dict[str, Any]) -> Reopen | None:
    name, pid_file, command = raw["reopen_signal"], raw["reopen_pid_file"], raw["reopen_command"]
    if name and command:
        raise ConfigError(f"{where}: reopen_signal and reopen_command exclude each other")
    if command:
        if not all(isinstance(arg, str) for arg in command):
            raise ConfigError(f"{where}.reopen_command must be a list of strings")
        return Reopen(None, None, tuple(command))
    if not name:
        return None
    try:
        signum = signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except KeyError:
        raise ConfigError(f"{where}.reopen_signal: unknown signal {name!r}") from None
    if not pid_file:
        raise ConfigError(f"{where}.reopen_pid_file is required with reopen_signal")
    return Reopen(signum, Path(pid_file), ())


def _file(index: int, given: object) -> LogFile:
    where = f"files[{index}]"
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a table")
    raw = merge(FILE_DEFAULTS, given, "\0", where)  # entries take no env overrides
    if not str(raw["path"]).startswith("/"):
        raise ConfigError(f"{where}.path must be an absolute path")
    reopen = _reopen(where, raw)
    if not raw["rotate"] and reopen is not None:
        raise ConfigError(f"{where}: a file with rotate = false has nothing to reopen")
    return LogFile(str(raw["path"]), bool(raw["rotate"]), reopen)


def load_config(path: str | None, env: dict[str, str] | None = None) -> RotateConfig:
    env = dict(os.environ) if env is None else env
    data = load_file(path or env.get("SHIPYARD_ROTATE_CONFIG"))
    files = data.pop("files", [])
    top = merge(DEFAULTS, data, "SHIPYARD_ROTATE_", "rotate", env)
    if not isinstance(files, list) or not files:
        raise ConfigError("rotate: at least one [[files]] entry is required")
    size = parse_size(top["size"])
    max_size = parse_size(top["max_size"], "max_size") if top["max_size"] else 4 * size
    if max_size < size:
        raise ConfigError("rotate.max_size must not be smaller than rotate.size")
    return RotateConfig(
        interval=float(top["interval"]),
        size=size,
        max_size=max_size,
        keep=int(top["keep"]),
        pos_dir=Path(top["pos_dir"]) if top["pos_dir"] else None,
        log_level=str(top["log_level"]).upper(),
        files=tuple(_file(i, f) for i, f in enumerate(files)),
    )


# ------------------------------------------------------------------ the agent's view


def agent_offsets(pos_dir: Path | None) -> dict[int, int] | None:
    """Inode -> committed offset over all position files; None when no agent is tracked."""
    if pos_dir is None:
        return None
    offsets: dict[int, int] = {}
    for pos_file in sorted(pos_dir.glob("*.pos")):
        for position in read_positions(pos_file):
            inode, offset = position.inode, position.offset
            offsets[inode] = min(offset, offsets.get(inode, offset))
    return offsets


def unread(st: os.stat_result, offsets: dict[int, int] | None, known: bool) -> bool:
    """The agent has not committed this file's end yet.

    known: every generation was in the agent's positions before it was made
    (rename rotation), so one missing from them was read and dropped. Files a
    writer rotates itself may not have been found by the agent's glob yet.
    """
    if offsets is None:
        return False
    if st.st_ino not in offsets:
        return not known
    return offsets[st.st_ino] < st.st_size


# ------------------------------------------------------------------ files


def generations(entry: LogFile) -> list[Path]:
    """Old generations, oldest first; for rotate = false, every match but the newest."""
    if entry.rotate:
        path = Path(entry.path)
        pattern = re.compile(re.escape(path.name) + GENERATION)
        candidates = path.parent.glob(f"{glob.escape(path.name)}.*")
        found = [p for p in candidates if pattern.fullmatch(p.name)]
    else:
        found = [Path(p) for p in glob.glob(entry.path)]  # noqa: PTH207 - absolute patterns
    dated = []
    for candidate in found:
        with contextlib.suppress(FileNotFoundError):
            dated.append((candidate.stat().st_mtime, candidate.name, candidate))
    ordered = [p for _, _, p in sorted(dated)]
    return ordered if entry.rotate else ordered[:-1]


def generation_name(path: Path, when: float) -> Path:
    base = f"{path.name}.{time.strftime(STAMP, time.gmtime(when))}"
    candidate, n = path.with_name(base), 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{base}.{n}")
    return candidate


def rotate_file(path: Path) -> Path:
    """Link the file to its generation name, then rename a fresh empty file over it.

    The path never goes missing, so a writer that opens it per line (PHP's
    error_log) always finds it; the old inode keeps its data under the new name.
    """
    st = path.stat()
    fresh = path.with_name(f".{path.name}.new")
    fresh.unlink(missing_ok=True)
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, st.st_mode & 0o7777)
    finally:
        os.close(fd)
    target = generation_name(path, time.time())
    os.link(path, target)
    fresh.replace(path)
    return target


def reopen(action: Reopen) -> None:
    if action.command:
        proc = subprocess.run(
            action.command, capture_output=True, text=True, timeout=30, check=False
        )
        if proc.returncode != 0:
            log.warning(
                "%s exited with %d: %s", action.command[0], proc.returncode, proc.stderr.strip()
            )
        return
    assert action.signal is not None and action.pid_file is not None
    pid = int(action.pid_file.read_text().strip())
    os.kill(pid, action.signal)


# ------------------------------------------------------------------ the loop


class Rotator:
    def __init__(self, config: RotateConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self._told: set[tuple[str, int]] = set()  # (what, inode) already logged

    def run(self) -> int:
        log.info(
            "rotating above %d bytes every %gs, keeping %d; forced at %d bytes",
            self.config.size,
            self.config.interval,
            self.config.keep,
            self.config.max_size,
        )
        while True:
            self.run_once()
            if self.stop.wait(self.config.interval):
                return 0

    def run_once(self) -> None:
        offsets = agent_offsets(self.config.pos_dir)
        actions: list[Reopen] = []
        for entry in self.config.files:
            try:
                if entry.rotate and self._rotate(entry, offsets) and entry.reopen:
                    actions.append(entry.reopen)
                self._prune(entry, offsets)
            except OSError as exc:
                log.warning("%s: %s", entry.path, exc)
        for action in dict.fromkeys(actions):
            try:
                reopen(action)
            except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
                log.warning("cannot make the writer reopen its log: %s", exc)

    def _rotate(self, entry: LogFile, offsets: dict[int, int] | None) -> bool:
        path = Path(entry.path)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if st.st_size <= self.config.size:
            return False
        if offsets is not None and st.st_ino not in offsets:
            if st.st_size < self.config.max_size:
                self._once(
                    "defer",
                    st.st_ino,
                    "deferring rotation of %s (%d bytes): the log "
                    "agent has not shipped from it yet",
                    path,
                    st.st_size,
                )
                return False
            log.warning(
                "rotating %s at %d bytes although the log agent has not shipped from "
                "it (max_size reached)",
                path,
                st.st_size,
            )
        target = rotate_file(path)
        log.info("rotated %s (%d bytes) to %s", path, st.st_size, target.name)
        return True

    def _prune(self, entry: LogFile, offsets: dict[int, int] | None) -> None:
        """Delete generations older than the newest `keep`, unless the agent still reads them.

        The newest ones are never candidates: right after a rotation the
        writer may not have reopened yet, and the agent may not have noticed.
        Past 2 x keep old files disk space wins, as max_size does for rotation.
        """
        old = generations(entry)
        forced = len(old) - 2 * self.config.keep
        for index, candidate in enumerate(old[: -self.config.keep]):
            st = candidate.stat()
            if unread(st, offsets, known=entry.rotate):
                if index >= forced:
                    self._once(
                        "keep",
                        st.st_ino,
                        "keeping %s beyond keep=%d: the log agent has not read it to its end",
                        candidate,
                        self.config.keep,
                    )
                    continue
                log.warning(
                    "removing %s although the log agent has not read it to its end "
                    "(more than 2 x keep old files)",
                    candidate,
                )
            candidate.unlink()
            log.info("removed %s", candidate)

    def _once(self, what: str, inode: int, message: str, *args: object) -> None:
        if (what, inode) not in self._told:
            self._told.add((what, inode))
            log.info(message, *args)


def main(argv: list[str] | None = None) -> int:
    config = config_from_cli(
        "shipyard-log-rotate", __doc__.split("\n")[0], "SHIPYARD_ROTATE_CONFIG", load_config, argv
    )
    if isinstance(config, int):
        return config
    rotator = Rotator(config)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: rotator.stop.set())
    return rotator.run()


if __name__ == "__main__":
    sys.exit(main())

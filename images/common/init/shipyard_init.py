#!/usr/bin/python3
"""shipyard-init: the service supervisor that runs under tini in shipyard images.

It reads a declarative TOML service file, runs one-shot steps and long-running
services in order, gates each long-running service on a readiness probe, and
stops everything in reverse order with per-service signals and timeouts.
docs/architecture.md, decision 3, explains why this exists instead of supervisord, runit
or s6.

Usage:
    shipyard-init [--config PATH] [run [--] [ARG...]]
                                            supervise the services; ARGs are appended to
                                            the command of every service marked
                                            pass_arguments (the image's server)
    shipyard-init [--config PATH] status [--wait SECONDS]
                                            readiness query; --wait blocks until ready
    shipyard-init [--config PATH] restart NAME [--timeout S]
                                            restart a non-critical service (e.g. after
                                            its configuration changed) and wait until
                                            it is ready again
    shipyard-init [--config PATH] --check-config

SHIPYARD_INIT_PROFILES selects the services of some profiles only (the
service file's `profiles`); unset, every service runs.

Exit codes: 0 after a requested stop; the failing service's code (or
128+signal) when a one-shot fails or a critical service dies; 1 when a probe
times out; 126/127 when a command cannot be executed; 78 for config errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import json
import math
import os
import pwd
import re
import select
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import IO
from urllib.parse import urlsplit

PROG = "shipyard-init"
DEFAULT_CONFIG = "/etc/shipyard/services.toml"
DEFAULT_STATUS_FILE = "/run/shipyard/init-status.json"
# Present exactly while every service is ready: the images' HEALTHCHECK is
# `test -e` on it, a check that costs no interpreter start.
DEFAULT_READY_FILE = "/run/shipyard/ready"
DEFAULT_STOP_BUDGET = 9.0
# Which profiles run (names, separated by commas or spaces): one image, and
# one service file, in several modes. Unset, every service runs.
PROFILES_VARIABLE = "SHIPYARD_INIT_PROFILES"
PROFILE_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 64
EX_SOFTWARE = 70
EX_CONFIG = 78
EX_NOEXEC = 126
EX_NOTFOUND = 127

ONESHOT = "oneshot"
LONGRUN = "longrun"
PROBE_KINDS = ("command", "tcp", "unix", "file", "http")
STOP_REQUEST_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
STOP_SIGNALS = {
    name: signal.Signals[f"SIG{name}"]
    for name in ("TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "WINCH", "KILL")
}
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")

SERVICE_KEYS = frozenset(
    {
        "name",
        "type",
        "command",
        "user",
        "environment",
        "workdir",
        "order",
        "critical",
        "start_timeout",
        "stop_signal",
        "stop_timeout",
        "ready",
        "ready_interval",
        "pass_arguments",
        "secrets",
        "health_file",
        "profiles",
    }
)
LONGRUN_ONLY_KEYS = frozenset({"critical", "ready", "ready_interval", "health_file"})
SUPERVISOR_KEYS = frozenset({"status_file", "ready_file", "stop_budget", "secret_variables"})

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
# SIGKILL cannot be ignored, but a process stuck in uninterruptible sleep can
# outlive it; past this grace the stop sequence moves on rather than hang.
KILL_GRACE = 2.0
# One probe attempt may hang (a filtered port, a wedged pg_isready); the
# attempt is abandoned after this long so the next one can run.
PROBE_ATTEMPT_MAX = 5.0
READ_CHUNK = 65536
# Lines longer than this are split so a service without newlines cannot grow
# the buffer without bound.
MAX_LINE = 65536
# `status --wait` rereads the status file this often.
WAIT_POLL = 0.05
# The supervisor rereads the services' health files this often, so the ready
# marker goes within about a second of a service reporting itself degraded.
HEALTH_POLL = 1.0
PR_SET_CHILD_SUBREAPER = 36


# --------------------------------------------------------------------------- output


def _write_all(fd: int, data: bytes) -> None:
    """Write everything, tolerating a non-blocking or closed descriptor.

    Losing log lines is preferable to crashing the supervisor when whoever
    reads the container's output has gone away.
    """
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        except OSError:
            return
        view = view[written:]


def log(message: str) -> None:
    _write_all(2, f"{PROG} | {message}\n".encode(errors="replace"))


class LinePump:
    """Copies one service pipe to our stdout or stderr, prefixing each line.

    Reads are driven by the event loop and never wait for a newline, so a
    service that writes a lot (or writes half a line and stops) cannot stall
    the supervisor.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, stream: IO[bytes], out_fd: int, name: str
    ) -> None:
        self._loop = loop
        self._stream = stream
        self._fd = stream.fileno()
        self._out_fd = out_fd
        self._prefix = f"{name} | ".encode()
        self._buffer = b""
        self.closed = False
        os.set_blocking(self._fd, False)
        loop.add_reader(self._fd, self._read_once)

    def _read_once(self) -> bool:
        """Return False once the pipe is exhausted for now (or for good)."""
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.close()
            return False
        self._feed(data)
        return True

    def _feed(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) >= MAX_LINE:
            lines.append(self._buffer)
            self._buffer = b""
        if lines:
            _write_all(self._out_fd, b"".join(self._prefix + line + b"\n" for line in lines))

    def drain(self, max_reads: int = 64) -> None:
        """Copy what is already in the pipe, so it is logged before the exit that follows it."""
        for _ in range(max_reads):
            if self.closed or not self._read_once():
                return

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._buffer:
            _write_all(self._out_fd, self._prefix + self._buffer + b"\n")
            self._buffer = b""
        self._loop.remove_reader(self._fd)
        self._stream.close()


# --------------------------------------------------------------------------- config


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


@dataclass(frozen=True)
class Probe:
    kind: str
    target: str = ""
    command: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "command":
            return f"command {list(self.command)}"
        return f"{self.kind} {self.target}"


@dataclass(frozen=True)
class Service:
    name: str
    command: tuple[str, ...]
    kind: str = LONGRUN
    user: Account | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    order: int = 0
    position: int = 0
    critical: bool = True
    start_timeout: float = 30.0
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 5.0
    ready: Probe | None = None
    ready_interval: float = 0.2
    pass_arguments: bool = False
    secrets: bool = False
    health_file: str | None = None
    # Empty: the service runs in every mode; else only when one is selected.
    profiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    status_file: Path
    stop_budget: float
    services: tuple[Service, ...]
    ready_file: Path = Path(DEFAULT_READY_FILE)
    # Glob patterns of environment variable names that only services with
    # secrets = true receive; no other service and no probe ever does.
    secret_variables: tuple[str, ...] = ()

    def with_arguments(self, arguments: Iterable[str]) -> Config:
        """The services with `pass_arguments` get the container's arguments appended."""
        extra = tuple(arguments)
        if not extra:
            return self
        services = tuple(
            dataclasses.replace(s, command=s.command + extra) if s.pass_arguments else s
            for s in self.services
        )
        return dataclasses.replace(self, services=services)

    @property
    def takes_arguments(self) -> bool:
        return any(s.pass_arguments for s in self.services)

    def with_profiles(self, selection: str | None) -> Config:
        """Only the services of the selected profiles, and those of none.

        `selection` is the value of SHIPYARD_INIT_PROFILES; unset or blank,
        every service runs. A profile that no service names is a mistake
        (a typo would silently start nothing of that mode).
        """
        chosen = set((selection or "").replace(",", " ").split())
        if not chosen:
            return self
        known = {profile for s in self.services for profile in s.profiles}
        unknown = sorted(chosen - known)
        if unknown:
            names = ", ".join(sorted(known)) or "none"
            raise ConfigError(
                f"{PROFILES_VARIABLE}: unknown profile '{unknown[0]}' "
                f"(the service file's profiles: {names})"
            )
        services = tuple(s for s in self.services if not s.profiles or chosen & set(s.profiles))
        return dataclasses.replace(self, services=services)


def _toml_type(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string"}
    names |= {list: "array", dict: "table"}
    return names.get(type(value), type(value).__name__)


class _Table:
    """Typed access to one TOML table, so that every error names its key."""

    def __init__(self, data: Mapping[str, object], where: str, allowed: Iterable[str]) -> None:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})"
            )
        self._data = data
        self.where = where

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: key '{key}': {problem}")

    def _typed(self, key: str, kinds: tuple[type, ...], expected: str) -> object:
        value = self._data.get(key)
        # bool is an int subclass in Python but a distinct type in TOML.
        if value is not None and (
            not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        ):
            raise self.error(key, f"expected {expected}, got {_toml_type(value)}")
        return value

    def string(self, key: str) -> str | None:
        value = self._typed(key, (str,), "a string")
        if value == "":
            raise self.error(key, "must not be empty")
        return value if isinstance(value, str) else None

    def path(self, key: str) -> str | None:
        value = self.string(key)
        if value is not None and not value.startswith("/"):
            raise self.error(key, f"expected an absolute path, got '{value}'")
        return value

    def number(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        value = self._typed(key, (int, float), "a number of seconds")
        if not isinstance(value, int | float):
            return default
        if not math.isfinite(value) or value < 0:
            raise self.error(key, f"expected a finite non-negative number, got {value}")
        if value == 0 and not allow_zero:
            raise self.error(key, "must be greater than 0")
        return float(value)

    def integer(self, key: str, default: int) -> int:
        value = self._typed(key, (int,), "an integer")
        return value if isinstance(value, int) else default

    def boolean(self, key: str, default: bool) -> bool:
        value = self._typed(key, (bool,), "true or false")
        return value if isinstance(value, bool) else default

    def table(self, key: str) -> Mapping[str, object] | None:
        value = self._typed(key, (dict,), "a table")
        return value if isinstance(value, dict) else None

    def tables(self, key: str) -> list[object]:
        value = self._typed(key, (list,), "an array of tables ([[service]])")
        return value if isinstance(value, list) else []

    def argv(self, key: str) -> tuple[str, ...] | None:
        value = self.strings(key)
        if value is None:
            return None
        if not value:
            raise self.error(key, "must not be empty")
        if not value[0]:
            raise self.error(key, "the program name must not be empty")
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self._typed(key, (list,), "a list of strings")
        if not isinstance(value, list):
            return None
        for item in value:
            if not isinstance(item, str) or "\0" in item:
                raise self.error(key, f"expected a list of strings, found {_toml_type(item)}")
        return tuple(value)

    def raw(self, key: str) -> object:
        return self._data.get(key)


def _split_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected 'host:port', got '{value}'")
    return host, int(port)


def _check_probe_target(kind: str, target: str) -> None:
    if kind == "tcp":
        _split_host_port(target)
    elif kind in ("unix", "file") and not target.startswith("/"):
        raise ValueError(f"expected an absolute path, got '{target}'")
    elif kind == "http":
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http:// URL with a host, got '{target}'")
        _ = parts.port  # raises ValueError for a malformed port


def _parse_probe(table: _Table) -> Probe | None:
    spec = table.table("ready")
    if spec is None:
        return None
    if len(spec) != 1:
        found = ", ".join(sorted(spec)) or "nothing"
        raise table.error("ready", f"expected exactly one of {', '.join(PROBE_KINDS)}; got {found}")
    kind, value = next(iter(spec.items()))
    key = f"ready.{kind}"
    if kind not in PROBE_KINDS:
        raise table.error(key, f"unknown probe kind (expected one of {', '.join(PROBE_KINDS)})")
    if kind == "command":
        argv = _Table({key: value}, table.where, {key}).argv(key)
        return Probe(kind, command=argv or ())
    if not isinstance(value, str):
        raise table.error(key, f"expected a string, got {_toml_type(value)}")
    try:
        _check_probe_target(kind, value)
    except ValueError as exc:
        raise table.error(key, str(exc)) from None
    return Probe(kind, target=value)


def _resolve_user(table: _Table) -> Account | None:
    value = table.raw("user")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or value in ("", -1):
        raise table.error("user", f"expected a user name or uid, got {value!r}")
    # Resolved now, so that --check-config (run at image build time) catches
    # a user the image does not have.
    try:
        numeric = isinstance(value, int) or (value.isascii() and value.isdigit())
        entry = pwd.getpwuid(int(value)) if numeric else pwd.getpwnam(str(value))
    except (KeyError, OverflowError, ValueError):
        raise table.error("user", f"no such user: {value!r}") from None
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


def _parse_environment(table: _Table) -> dict[str, str]:
    env = table.table("environment") or {}
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            raise table.error(f"environment.{key}", "invalid variable name")
        if not isinstance(value, str) or "\0" in value:
            raise table.error(f"environment.{key}", f"expected a string, got {_toml_type(value)}")
    return dict(env)


def _parse_signal(table: _Table) -> signal.Signals:
    name = table.string("stop_signal") or "TERM"
    short = name.removeprefix("SIG")
    if short not in STOP_SIGNALS:
        raise table.error(
            "stop_signal", f"unknown signal '{name}' (expected one of {', '.join(STOP_SIGNALS)})"
        )
    return STOP_SIGNALS[short]


def _service_header(raw: object, index: int) -> tuple[Mapping[str, object], str, str]:
    """Validate the name and type first, so later errors can name the service."""
    if not isinstance(raw, dict):
        raise ConfigError(f"service #{index + 1}: expected a table, got {_toml_type(raw)}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(
            f"service #{index + 1}: key 'name': expected a name matching [A-Za-z0-9_.-]+, "
            f"got {name!r}"
        )
    if name == PROG:
        raise ConfigError(
            f"service #{index + 1}: key 'name': '{PROG}' marks the supervisor's lines"
        )
    where = f"service '{name}'"
    kind = raw.get("type", LONGRUN)
    if kind not in (ONESHOT, LONGRUN):
        raise ConfigError(f"{where}: key 'type': expected 'oneshot' or 'longrun', got {kind!r}")
    longrun_only = sorted(LONGRUN_ONLY_KEYS & set(raw))
    if kind == ONESHOT and longrun_only:
        raise ConfigError(f"{where}: key '{longrun_only[0]}': applies to longrun services only")
    return raw, name, str(kind)


def _parse_profiles(table: _Table) -> tuple[str, ...]:
    profiles = table.strings("profiles") or ()
    for profile in profiles:
        if not PROFILE_RE.fullmatch(profile):
            raise table.error(
                "profiles", f"expected names matching [a-z0-9][a-z0-9_-]*, got {profile!r}"
            )
    return profiles


def _parse_service(raw: object, index: int) -> Service:
    data, name, kind = _service_header(raw, index)
    table = _Table(data, f"service '{name}'", SERVICE_KEYS)
    command = table.argv("command")
    if command is None:
        raise table.error("command", "is required")
    return Service(
        name=name,
        command=command,
        kind=kind,
        user=_resolve_user(table),
        environment=_parse_environment(table),
        workdir=table.path("workdir"),
        order=table.integer("order", 0),
        position=index,
        critical=table.boolean("critical", True),
        start_timeout=table.number("start_timeout", 30.0),
        stop_signal=_parse_signal(table),
        stop_timeout=table.number("stop_timeout", 5.0, allow_zero=True),
        ready=_parse_probe(table),
        ready_interval=table.number("ready_interval", 0.2),
        pass_arguments=table.boolean("pass_arguments", False),
        secrets=table.boolean("secrets", False),
        health_file=table.path("health_file"),
        profiles=_parse_profiles(table),
    )


def _check_names(services: Iterable[Service]) -> None:
    seen: set[str] = set()
    for service in services:
        if service.name in seen:
            raise ConfigError(f"service '{service.name}': key 'name': duplicate service name")
        seen.add(service.name)


def _check_stop_budget(services: Iterable[Service], budget: float) -> None:
    # Services stop one after another, so their timeouts add up; the sum has
    # to fit inside Docker's stop timeout or the engine SIGKILLs everything.
    longruns = [s for s in services if s.kind == LONGRUN]
    total = sum(s.stop_timeout for s in longruns)
    if total > budget:
        parts = ", ".join(f"{s.name}={s.stop_timeout:g}" for s in longruns)
        raise ConfigError(
            f"[supervisor]: key 'stop_budget': the long-running services' stop_timeout "
            f"values add up to {total:g} s ({parts}), more than stop_budget = {budget:g} s"
        )


def _parse_secret_variables(sup: _Table) -> tuple[str, ...]:
    patterns = sup.strings("secret_variables") or ()
    for pattern in patterns:
        if not re.fullmatch(r"[A-Za-z0-9_*?\[\]!-]+", pattern):
            raise sup.error(
                "secret_variables",
                f"expected variable names or glob patterns ([A-Za-z0-9_] and * ? [...]), "
                f"got {pattern!r}",
            )
    return patterns


def parse_config(data: Mapping[str, object]) -> Config:
    top = _Table(data, "top level", {"supervisor", "service"})
    sup = _Table(top.table("supervisor") or {}, "[supervisor]", SUPERVISOR_KEYS)
    status_file = Path(sup.path("status_file") or DEFAULT_STATUS_FILE)
    ready_file = Path(sup.path("ready_file") or DEFAULT_READY_FILE)
    if ready_file == status_file:
        raise sup.error("ready_file", "must differ from status_file")
    stop_budget = sup.number("stop_budget", DEFAULT_STOP_BUDGET)
    secret_variables = _parse_secret_variables(sup)
    raw_services = top.tables("service")
    if not raw_services:
        raise ConfigError("top level: key 'service': at least one [[service]] is required")
    services = [_parse_service(raw, index) for index, raw in enumerate(raw_services)]
    _check_names(services)
    _check_stop_budget(services, stop_budget)
    services.sort(key=lambda s: (s.order, s.position))
    return Config(status_file, stop_budget, tuple(services), ready_file, secret_variables)


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data)


# --------------------------------------------------------------------------- processes


def exit_status(returncode: int) -> int:
    """Shell convention: a death by signal N is reported as 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


class SpawnError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(eq=False)
class Child:
    """One process we started: its exit status arrives on `exited`."""

    pid: int
    exited: asyncio.Future[int]
    pumps: tuple[LinePump, ...] = ()

    def send(self, sig: signal.Signals) -> None:
        # Until we have reaped it the pid cannot have been reused, so this
        # check is what makes signalling by pid safe.
        if not self.exited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def drain(self) -> None:
        for pump in self.pumps:
            pump.drain()


class Reaper:
    """Collects exit statuses with waitpid(-1) whenever SIGCHLD arrives.

    One reaper for every child (rather than asyncio's per-process watchers)
    also collects orphans re-parented to us in subreaper mode, and reacts to
    an exit as soon as the signal is delivered.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._procs: dict[int, tuple[subprocess.Popen[bytes], asyncio.Future[int]]] = {}

    def watch(self, proc: subprocess.Popen[bytes]) -> asyncio.Future[int]:
        future: asyncio.Future[int] = self._loop.create_future()
        self._procs[proc.pid] = (proc, future)
        return future

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self._procs.pop(pid, None)
            if entry is None:
                continue  # an adopted orphan: reaping it is all it needs
            proc, future = entry
            returncode = os.waitstatus_to_exitcode(status)
            # Popen would otherwise waitpid() this pid again when collected,
            # possibly stealing the status of a newer child that reused it.
            proc.returncode = returncode
            if not future.done():
                future.set_result(returncode)


def is_secret(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def environment(
    service: Service, secret_variables: tuple[str, ...], *, probe: bool
) -> dict[str, str]:
    """What a service's process (or its probe) gets: ours, less the secrets it may not hold.

    The one rule for secrets: a variable whose name matches secret_variables
    reaches a service only when it says secrets = true, and a probe never.
    """
    keep = service.secrets and not probe
    env = {k: v for k, v in os.environ.items() if keep or not is_secret(k, secret_variables)}
    if service.user is not None:
        user = service.user
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    env.update(service.environment)
    if service.health_file:
        env["SHIPYARD_HEALTH_FILE"] = service.health_file
    return env


def switching_users() -> bool:
    """Only root can run a service as its own user; anyone else runs every service as itself.

    That is how an image runs under an arbitrary uid (`docker run --user
    12345:0`, OpenShift): the service's files must then be writable by that
    uid, which the image's first-run steps check.
    """
    return os.geteuid() == 0


def _popen(
    service: Service, argv: tuple[str, ...], capture: bool, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    stream = subprocess.PIPE if capture else subprocess.DEVNULL
    user = service.user if switching_users() else None
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=stream,
            env=env,
            cwd=service.workdir,
            # Own process group: killpg() then reaches the service's helpers
            # too, and a terminal's Ctrl-C does not hit services directly.
            start_new_session=True,
            user=user.uid if user else None,
            group=user.gid if user else None,
            extra_groups=list(user.groups) if user else None,
        )
    except FileNotFoundError as exc:
        raise SpawnError(str(exc), EX_NOTFOUND) from None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SpawnError(str(exc), EX_NOEXEC) from None


# --------------------------------------------------------------------------- probes


async def _connect(opening: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    _, writer = await opening
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _http_probe(url: str) -> str | None:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        host = parts.netloc.rpartition("@")[2]
        request = f"GET {target} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: {PROG}\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    fields = status_line.split()
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        return f"malformed HTTP status line {status_line[:80]!r}"
    code = int(fields[1])
    return None if 200 <= code < 400 else f"HTTP status {code}"


async def _network_probe(probe: Probe) -> str | None:
    if probe.kind == "tcp":
        host, port = _split_host_port(probe.target)
        await _connect(asyncio.open_connection(host, port))
    elif probe.kind == "unix":
        await _connect(asyncio.open_unix_connection(probe.target))
    elif probe.kind == "http":
        return await _http_probe(probe.target)
    elif not Path(probe.target).exists():
        return "does not exist yet"
    return None


# --------------------------------------------------------------------------- supervisor


@dataclass(eq=False)
class Runtime:
    """What the supervisor knows about one service while it runs."""

    service: Service
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    state: str = "pending"
    child: Child | None = None
    probe_task: asyncio.Task[None] | None = None
    restart_timer: asyncio.TimerHandle | None = None
    restarts: int = 0
    failures: int = 0
    launched_at: float = 0.0
    last_probe_error: str = ""

    @property
    def is_ready(self) -> bool:
        return self.state == ("done" if self.service.kind == ONESHOT else "ready")

    def snapshot(self) -> dict[str, object]:
        running = self.child is not None and not self.child.exited.done()
        return {
            "name": self.service.name,
            "type": self.service.kind,
            "critical": self.service.critical,
            "state": self.state,
            "ready": self.is_ready,
            "pid": self.child.pid if running and self.child else None,
            "restarts": self.restarts,
            "health_file": self.service.health_file,
        }


class StatusFile:
    """The JSON file `shipyard-init status` reads, and the ready marker the HEALTHCHECK tests.

    The JSON is replaced atomically on every change. The marker exists only
    while every service is ready; it is removed before anything starts, so
    one a killed supervisor left behind never outlives the next start-up.
    """

    def __init__(self, path: Path, ready_path: Path) -> None:
        self._path = path
        self._ready_path = ready_path
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._marked: bool | None = None
        self._warned = False

    def write(self, document: Mapping[str, object], *, ready: bool) -> None:
        data = json.dumps(document, indent=2).encode() + b"\n"
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            if self._marked is not False and not ready:
                self._ready_path.unlink(missing_ok=True)
            self._tmp.write_bytes(data)
            self._tmp.replace(self._path)
            if ready and not self._marked:
                self._mark()
        except OSError as exc:
            # Health reporting is not worth taking the services down for.
            if not self._warned:
                log(
                    f"warning: cannot write status file {self._path} or ready marker"
                    f" {self._ready_path}: {exc}"
                )
                self._warned = True
            return
        self._marked = ready

    def _mark(self) -> None:
        tmp = self._ready_path.with_name(f".{self._ready_path.name}.{os.getpid()}.tmp")
        self._ready_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(f"{os.getpid()}\n".encode())
        tmp.replace(self._ready_path)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Return (state, start time in clock ticks) from /proc/PID/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


class Supervisor:
    def __init__(self, config: Config) -> None:
        self._loop = asyncio.get_running_loop()
        self._reaper = Reaper(self._loop)
        self._runtimes = [Runtime(service) for service in config.services]
        self._launched: list[Runtime] = []
        self._pumps: set[LinePump] = set()
        self._outcome: asyncio.Future[int] = self._loop.create_future()
        self._state = "starting"
        self._exit_code: int | None = None
        self._status = StatusFile(config.status_file, config.ready_file)
        self._secret_variables = config.secret_variables
        # Services whose health file says they are running but not well.
        self._degraded: dict[str, str] = {}
        stat = _proc_stat(os.getpid())
        # The start time tells `status` whether the recorded pid is still us
        # and not some later process that reused the number.
        self._start_ticks = stat[1] if stat else None

    @property
    def stopping(self) -> bool:
        return self._outcome.done()

    async def run(self) -> int:
        self._install_signal_handlers()
        self._publish()
        if not switching_users() and any(rt.service.user for rt in self._runtimes):
            log(f"running as uid {os.geteuid()}, not root: every service runs as this uid")
        starter = self._loop.create_task(self._start_all())
        starter.add_done_callback(self._on_starter_done)
        watcher = self._loop.create_task(self._watch_health())
        code = await self._outcome
        starter.cancel()
        watcher.cancel()
        await asyncio.gather(starter, watcher, return_exceptions=True)
        await self._stop_all()
        self._close_pumps()
        self._state, self._exit_code = "exited", code
        self._publish()
        log(f"exiting with code {code}")
        self._release_signal_handlers()
        return code

    # ---- signals and outcome

    def _install_signal_handlers(self) -> None:
        self._loop.add_signal_handler(signal.SIGCHLD, self._reaper.reap)
        for sig in STOP_REQUEST_SIGNALS:
            self._loop.add_signal_handler(sig, self._on_stop_signal, sig)

    def _release_signal_handlers(self) -> None:
        # Everything is down: a late signal must not turn a clean exit into
        # a death by signal between here and the interpreter's exit.
        for sig in STOP_REQUEST_SIGNALS:
            self._loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
        self._loop.remove_signal_handler(signal.SIGCHLD)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        if self.stopping:
            log(f"received {sig.name} while already stopping")
            return
        log(f"received {sig.name}; stopping services")
        self._finish(EX_OK)

    def _finish(self, code: int) -> None:
        """Decide the exit code; the first decision wins and starts the stop."""
        if self.stopping:
            return
        self._state = "stopping"
        self._outcome.set_result(code)
        self._publish()

    def _on_starter_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log(f"internal error during start-up: {task.exception()!r}")
            self._finish(EX_SOFTWARE)

    def _publish(self) -> None:
        supervisor = {
            "pid": os.getpid(),
            "start_ticks": self._start_ticks,
            "state": self._state,
            "exit_code": self._exit_code,
            "updated": time.time(),
        }
        services = [runtime.snapshot() for runtime in self._runtimes]
        ready = (
            self._state == "running"
            and all(rt.is_ready for rt in self._runtimes)
            and not self._degraded
        )
        self._status.write({"supervisor": supervisor, "services": services}, ready=ready)

    async def _watch_health(self) -> None:
        """Follow the health files, so the ready marker (the HEALTHCHECK) says what status says."""
        watched = [rt for rt in self._runtimes if rt.service.health_file]
        while watched:
            await asyncio.sleep(HEALTH_POLL)
            degraded: dict[str, str] = {}
            for runtime in watched:
                problem = _degraded(runtime.snapshot())
                if problem is not None:
                    degraded[runtime.service.name] = problem
            if degraded == self._degraded:
                continue
            for name in sorted(degraded.keys() - self._degraded.keys()):
                log(f"health: {degraded[name]}")
            for name in sorted(self._degraded.keys() - degraded.keys()):
                log(f"health: {name} is well again")
            self._degraded = degraded
            self._publish()

    # ---- starting

    async def _start_all(self) -> None:
        for runtime in self._runtimes:
            if runtime.service.kind == ONESHOT:
                started = await self._start_oneshot(runtime)
            else:
                started = await self._start_longrun(runtime)
            if not started:
                return
        if not any(rt.service.kind == LONGRUN for rt in self._runtimes):
            log("all one-shot services completed; nothing left to supervise")
            self._finish(EX_OK)
            return
        self._state = "running"
        self._publish()
        ready = sum(rt.is_ready for rt in self._runtimes)
        log(f"start-up complete: {ready} of {len(self._runtimes)} services ready")

    async def _start_oneshot(self, runtime: Runtime) -> bool:
        service = runtime.service
        child = self._launch(runtime)
        if child is None:
            return False
        if not await self._wait_exit(child, service.start_timeout):
            log(
                f"one-shot {service.name} did not finish within start_timeout = "
                f"{service.start_timeout:g} s; aborting start-up"
            )
            self._finish(EX_FAILURE)
            return False
        child.drain()
        # A one-shot runs in the foreground; anything it left behind (say, a
        # temporary server it failed to shut down) would collide with the
        # services that follow.
        child.kill_group()
        returncode = child.exited.result()
        if returncode != 0:
            runtime.state = "failed"
            log(f"one-shot {service.name} {describe_exit(returncode)}; aborting start-up")
            self._finish(exit_status(returncode))
            return False
        runtime.state = "done"
        self._publish()
        log(f"one-shot {service.name} completed")
        return True

    async def _start_longrun(self, runtime: Runtime) -> bool:
        service = runtime.service
        child = self._launch(runtime)
        if child is None:
            # A non-critical service's restart is already scheduled.
            return not service.critical
        if await self._ready_or_exit(runtime, child):
            return True
        if child.exited.done():
            # The exit handler has logged it and either aborted start-up
            # (critical) or scheduled a restart; the rest need not wait.
            if not service.critical:
                log(f"continuing start-up without non-critical {service.name}")
            return not service.critical
        detail = f" (last probe: {runtime.last_probe_error})" if runtime.last_probe_error else ""
        if service.critical:
            log(
                f"{service.name} was not ready within start_timeout = "
                f"{service.start_timeout:g} s{detail}; aborting start-up"
            )
            self._finish(EX_FAILURE)
            return False
        log(
            f"warning: non-critical {service.name} is not ready after "
            f"{service.start_timeout:g} s{detail}; starting the rest anyway"
        )
        return True

    async def _ready_or_exit(self, runtime: Runtime, child: Child) -> bool:
        """Wait up to start_timeout for readiness; return early if the process exits."""
        ready = self._loop.create_task(runtime.ready.wait())
        try:
            await asyncio.wait(
                {ready, child.exited},
                timeout=runtime.service.start_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        return runtime.ready.is_set()

    def _spawn(self, service: Service, argv: tuple[str, ...], *, capture: bool) -> Child:
        # Only probes run uncaptured: their output is not logged, and they never get secrets.
        env = environment(service, self._secret_variables, probe=not capture)
        proc = _popen(service, argv, capture, env)
        exited = self._reaper.watch(proc)
        if not capture or proc.stdout is None or proc.stderr is None:
            return Child(proc.pid, exited)
        self._pumps = {pump for pump in self._pumps if not pump.closed}
        pumps = (
            LinePump(self._loop, proc.stdout, 1, service.name),
            LinePump(self._loop, proc.stderr, 2, service.name),
        )
        self._pumps.update(pumps)
        return Child(proc.pid, exited, pumps)

    def _launch(self, runtime: Runtime) -> Child | None:
        service = runtime.service
        runtime.launched_at = self._loop.time()
        try:
            child = self._spawn(service, service.command, capture=True)
        except SpawnError as exc:
            log(f"cannot start {service.name}: {exc}")
            self._on_spawn_failure(runtime, exc.code)
            return None
        runtime.child, runtime.state = child, "starting"
        runtime.ready.clear()
        if runtime not in self._launched:
            self._launched.append(runtime)
        log(f"started {service.name} (pid {child.pid})")
        if service.kind == LONGRUN:
            child.exited.add_done_callback(partial(self._on_longrun_exit, runtime, child))
            runtime.probe_task = self._loop.create_task(self._await_ready(runtime, child))
        self._publish()
        return child

    def _on_spawn_failure(self, runtime: Runtime, code: int) -> None:
        runtime.state = "failed"
        service = runtime.service
        if service.kind == LONGRUN and not service.critical:
            self._schedule_restart(runtime, "could not be started")
        else:
            self._finish(code)
        self._publish()

    # ---- readiness

    async def _await_ready(self, runtime: Runtime, child: Child) -> None:
        probe = runtime.service.ready
        while probe is not None:
            error = await self._probe_once(runtime.service, probe)
            if error is None:
                break
            runtime.last_probe_error = error
            await asyncio.sleep(runtime.service.ready_interval)
        if child is runtime.child and not child.exited.done():
            runtime.state = "ready"
            runtime.ready.set()
            self._publish()
            elapsed = self._loop.time() - runtime.launched_at
            log(f"{runtime.service.name} is ready ({elapsed:.2f} s after start)")

    async def _probe_once(self, service: Service, probe: Probe) -> str | None:
        timeout = min(service.start_timeout, PROBE_ATTEMPT_MAX)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the
        # result of an attempt that finished just as the stop cancelled the
        # probe, so the cancellation was lost and the stop waited forever.
        try:
            async with asyncio.timeout(timeout):
                if probe.kind == "command":
                    error = await self._command_probe(service, probe)
                else:
                    error = await _network_probe(probe)
        except TimeoutError:
            error = f"no answer within {timeout:g} s"
        # Whatever goes wrong in one attempt (refused, reset, a bad host name)
        # just means "not ready yet".
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        return None if error is None else f"{probe.describe()}: {error}"

    async def _command_probe(self, service: Service, probe: Probe) -> str | None:
        try:
            child = self._spawn(service, probe.command, capture=False)
        except SpawnError as exc:
            return f"cannot run it: {exc}"
        try:
            returncode = await asyncio.shield(child.exited)
        except asyncio.CancelledError:
            child.kill_group()
            raise
        return None if returncode == 0 else describe_exit(returncode)

    # ---- unexpected exits

    def _on_longrun_exit(self, runtime: Runtime, child: Child, exited: asyncio.Future[int]) -> None:
        returncode = exited.result()
        child.drain()
        # Helpers left behind in the service's group would hold its ports and
        # pipes; a restart or the stop sequence should start from a clean slate.
        child.kill_group()
        if runtime.probe_task is not None:
            runtime.probe_task.cancel()
        if runtime.state == "stopping":
            return
        if self.stopping:
            log(f"{runtime.service.name} {describe_exit(returncode)} during shutdown")
            runtime.state = "exited"
            return
        was_starting = runtime.state == "starting"
        runtime.state = "exited"
        runtime.ready.clear()
        if runtime.service.critical:
            self._on_critical_exit(runtime, returncode, was_starting)
        else:
            self._schedule_restart(runtime, describe_exit(returncode))
        self._publish()

    def _on_critical_exit(self, runtime: Runtime, returncode: int, was_starting: bool) -> None:
        name, what = runtime.service.name, describe_exit(returncode)
        if was_starting:
            log(f"{name} {what} while starting; aborting start-up")
            self._finish(exit_status(returncode) or EX_FAILURE)
        else:
            log(f"critical service {name} {what}; stopping the other services")
            self._finish(exit_status(returncode))

    def _schedule_restart(self, runtime: Runtime, reason: str) -> None:
        if self._loop.time() - runtime.launched_at >= BACKOFF_MAX:
            runtime.failures = 0  # it ran for a good while: not a crash loop
        delay = min(BACKOFF_FIRST * 2 ** min(runtime.failures, 10), BACKOFF_MAX)
        runtime.failures += 1
        runtime.state = "backoff"
        log(f"non-critical {runtime.service.name} {reason}; restarting in {delay:g} s")
        runtime.restart_timer = self._loop.call_later(delay, self._restart, runtime)

    def _restart(self, runtime: Runtime) -> None:
        runtime.restart_timer = None
        if not self.stopping:
            runtime.restarts += 1
            self._launch(runtime)

    # ---- stopping

    async def _stop_all(self) -> None:
        probes = []
        for runtime in self._runtimes:
            if runtime.restart_timer is not None:
                runtime.restart_timer.cancel()
            if runtime.probe_task is not None:
                runtime.probe_task.cancel()
                probes.append(runtime.probe_task)
        await asyncio.gather(*probes, return_exceptions=True)
        for runtime in reversed(self._launched):
            await self._stop(runtime)

    async def _stop(self, runtime: Runtime) -> None:
        service, child = runtime.service, runtime.child
        if child is None or child.exited.done():
            return
        runtime.state = "stopping"
        self._publish()
        began = self._loop.time()
        log(f"stopping {service.name} (pid {child.pid}) with {service.stop_signal.name}")
        child.send(service.stop_signal)
        if not await self._wait_exit(child, service.stop_timeout):
            log(
                f"warning: {service.name} did not stop within stop_timeout = "
                f"{service.stop_timeout:g} s; sending SIGKILL to its process group"
            )
            child.kill_group()
            if not await self._wait_exit(child, KILL_GRACE):
                log(f"warning: {service.name} survived SIGKILL for {KILL_GRACE:g} s; moving on")
        child.kill_group()
        child.drain()
        runtime.state = "stopped"
        self._publish()
        outcome = describe_exit(child.exited.result()) if child.exited.done() else "still running"
        log(f"{service.name} stopped after {self._loop.time() - began:.3f} s ({outcome})")

    @staticmethod
    async def _wait_exit(child: Child, timeout: float) -> bool:
        # asyncio.timeout for the reason given in _probe_once: a cancelled
        # start-up must not go on to the next service.
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(child.exited)
        except TimeoutError:
            return False
        return True

    def _close_pumps(self) -> None:
        for pump in self._pumps:
            pump.drain()
            pump.close()
        self._pumps.clear()


async def supervise(config: Config) -> int:
    return await Supervisor(config).run()


# --------------------------------------------------------------------------- status query


@dataclass(frozen=True)
class Readiness:
    problems: tuple[str, ...]
    # A live supervisor that is stopping or has exited: it will not turn ready.
    final: bool = False


def _readiness(path: Path) -> Readiness:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Readiness((f"supervisor has not started (no {path})",))
    except (OSError, ValueError) as exc:
        return Readiness((f"cannot read {path}: {exc}",))
    try:
        supervisor, services = document["supervisor"], document["services"]
        pid, state = int(supervisor["pid"]), supervisor["state"]
        stat = _proc_stat(pid)
        if stat is None or stat[0] in "ZXx" or stat[1] != supervisor["start_ticks"]:
            return Readiness((f"supervisor (pid {pid}) is not running (last state: {state})",))
        problems = [] if state == "running" else [f"supervisor is {state}"]
        problems += [f"{s['name']} ({s['state']})" for s in services if not s["ready"]]
        problems += [p for s in services if (p := _degraded(s)) is not None]
    except (KeyError, TypeError, ValueError, AttributeError):
        return Readiness((f"malformed status file {path}",))
    return Readiness(tuple(problems), final=state in ("stopping", "exited"))


def _degraded(entry: Mapping[str, object]) -> str | None:
    """A ready service's own report that it is not well, from its health_file.

    The service rewrites the file (SHIPYARD_HEALTH_FILE in its environment);
    only a report carrying the pid of its current process counts, so one left
    by an earlier run says nothing. No file, or no "healthy": false, is no
    complaint.
    """
    path = entry.get("health_file")
    if not path or not entry.get("ready"):
        return None
    try:
        report = json.loads(Path(str(path)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("pid") != entry.get("pid"):
        return None
    if report.get("healthy") is not False:
        return None
    return f"{entry['name']} (degraded: {str(report.get('message') or 'no reason given')[:500]})"


def _status_problems(path: Path) -> list[str]:
    return list(_readiness(path).problems)


def query_status(path: Path, wait: float | None = None) -> int:
    """0 when every service is ready. With `wait`, poll until then, for at most `wait` s.

    A supervisor that is not running yet (the file is missing, or left by a
    previous start of the container) is waited for; one that is stopping is not.
    """
    deadline = time.monotonic() + (wait or 0.0)
    while True:
        readiness = _readiness(path)
        if not readiness.problems:
            print("ready")
            return EX_OK
        if wait is None or readiness.final or time.monotonic() >= deadline:
            after = f" after {wait:g} s" if wait is not None and not readiness.final else ""
            print(f"not ready{after}: {', '.join(readiness.problems)}")
            return EX_FAILURE
        time.sleep(WAIT_POLL)


# --------------------------------------------------------------------------- restart


def _running_service(path: Path, name: str) -> dict[str, object] | str:
    """The status entry of `name` while the supervisor runs, else why not."""
    problems = _status_problems(path)
    if problems and problems[0].startswith(("supervisor", "cannot read", "malformed")):
        return problems[0]
    services = json.loads(path.read_text(encoding="utf-8"))["services"]
    found = [entry for entry in services if entry["name"] == name]
    return found[0] if found else f"no service named {name!r}"


def restart_service(config: Config, name: str, timeout: float) -> int:
    """Stop one non-critical service with its own signal; the supervisor starts it again.

    Only non-critical long-running services: the supervisor answers a critical
    one's exit by stopping the container, which is `docker restart`'s job.
    """
    service = next((s for s in config.services if s.name == name), None)
    if service is None or service.kind != LONGRUN or service.critical:
        what = "unknown" if service is None else "not a non-critical long-running service"
        print(f"cannot restart {name!r}: {what}", file=sys.stderr)
        return EX_USAGE
    entry = _running_service(config.status_file, name)
    if isinstance(entry, str):
        print(f"cannot restart {name!r}: {entry}", file=sys.stderr)
        return EX_FAILURE
    old_pid, old_restarts = entry["pid"], entry["restarts"]
    if isinstance(old_pid, int):
        with contextlib.suppress(ProcessLookupError):
            os.kill(old_pid, service.stop_signal)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = _running_service(config.status_file, name)
        if isinstance(entry, str):
            print(f"cannot restart {name!r}: {entry}", file=sys.stderr)
            return EX_FAILURE
        if entry["restarts"] != old_restarts and entry["ready"] and entry["pid"] != old_pid:
            print(f"{name} restarted (pid {entry['pid']})")
            return EX_OK
        time.sleep(0.1)
    print(f"{name} not ready again after {timeout:g} s", file=sys.stderr)
    return EX_FAILURE


# --------------------------------------------------------------------------- entry point


def _become_subreaper() -> None:
    """Adopt orphans ourselves; only useful when no tini (or tini -s) is above us."""
    if os.environ.get("SHIPYARD_INIT_SUBREAPER") != "1":
        return
    import ctypes  # only this rarely used mode needs it

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log(f"warning: cannot become a child subreaper: {os.strerror(ctypes.get_errno())}")
    else:
        log("acting as child subreaper")


def _split_run_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """Everything after `run` (and an optional `--`) is for the services, never for us."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "run":
            rest = argv[index + 1 :]
            return argv[: index + 1], rest[1:] if rest[:1] == ["--"] else rest
        # The value of --config is not a verb, even when it is the word "run".
        index += 2 if word == "--config" else 1
    return argv, []


def _seconds(text: str) -> float:
    import argparse

    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number of seconds, got {text}")
    return value


def _default_config() -> Path:
    return Path(os.environ.get("SHIPYARD_INIT_CONFIG") or DEFAULT_CONFIG)


def _parse_args(argv: list[str] | None) -> SimpleNamespace:
    words, arguments = _split_run_arguments(list(sys.argv[1:] if argv is None else argv))
    if words in ([], ["run"]):
        # Every container start comes this way (`shipyard-init run -- ARGS`):
        # with nothing to parse, argparse is not imported, a sixth of the
        # supervisor's start-up.
        return SimpleNamespace(
            config=_default_config(), check_config=False, command="run", arguments=arguments
        )
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG, description="Supervise the services of a container."
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=_default_config(),
        help=f"service file (default: $SHIPYARD_INIT_CONFIG or {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--check-config", action="store_true", help="validate the service file and exit"
    )
    verbs = parser.add_subparsers(dest="command", metavar="{run,status,restart}")
    verbs.add_parser(
        "run",
        help="supervise the services (the default); arguments after it are appended to the"
        " command of every service with pass_arguments = true",
    )
    status = verbs.add_parser("status", help="exit 0 only when every service is ready")
    status.add_argument(
        "--wait",
        type=_seconds,
        metavar="SECONDS",
        help="block until every service is ready, at most SECONDS, then exit 1 naming what is not",
    )
    restart = verbs.add_parser(
        "restart", help="restart a non-critical service and wait until it is ready"
    )
    restart.add_argument("service", help="the service to restart")
    restart.add_argument(
        "--timeout", type=_seconds, default=60.0, help="seconds to wait (default 60)"
    )
    args = parser.parse_args(words)
    args.command = args.command or "run"
    args.arguments = arguments
    return SimpleNamespace(**vars(args))


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        config = load_config(args.config).with_profiles(os.environ.get(PROFILES_VARIABLE))
    except ConfigError as exc:
        log(f"config error: {exc}")
        # Docker reserves health-check exit codes above 1.
        return EX_FAILURE if args.command == "status" and not args.check_config else EX_CONFIG
    if args.check_config:
        names = ", ".join(service.name for service in config.services)
        print(f"{args.config}: OK ({len(config.services)} services: {names})")
        return EX_OK
    if args.command == "status":
        return query_status(config.status_file, args.wait)
    if args.command == "restart":
        return restart_service(config, args.service, args.timeout)
    if args.arguments and not config.takes_arguments:
        log(f"{args.config}: no service takes arguments (pass_arguments), got {args.arguments}")
        return EX_USAGE
    _become_subreaper()
    code = asyncio.run(supervise(config.with_arguments(args.arguments)))
    # Every service is down and every line went out through os.write();
    # interpreter teardown would only add tens of milliseconds to `docker stop`.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())

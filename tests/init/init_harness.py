"""Runs shipyard-init as a real process against throw-away service files.

Nothing here mocks processes or signals: the supervisor, tini and the stub
services are real processes, and every wait is bounded so a broken
supervisor fails a test instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INIT = ROOT / "images" / "common" / "init" / "shipyard_init.py"
STUB = Path(__file__).with_name("service_stub.py")
TINI = "/usr/bin/tini"
# The images run the supervisor on Debian's python3 (3.13 in trixie); point
# this at another interpreter to run the suite against it.
INIT_PYTHON = os.environ.get("SHIPYARD_INIT_PYTHON") or sys.executable
MARKER_VAR = "SHIPYARD_INIT_TEST_RUN"


# ------------------------------------------------------------------ TOML


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"cannot render {value!r} as TOML")


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def render_config(supervisor: dict[str, object], services: list[dict[str, object]]) -> str:
    lines = ["[supervisor]"]
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in supervisor.items()]
    for service in services:
        lines += ["", "[[service]]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in service.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ /proc


def proc_table() -> dict[int, tuple[str, int]]:
    """pid -> (state, ppid) for every process visible now."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw.rpartition(")")[2].split()
        table[int(entry.name)] = (fields[0], int(fields[1]))
    return table


def zombies_under(ancestor: int) -> list[int]:
    table = proc_table()
    found = []
    for pid, (state, _) in table.items():
        if state != "Z":
            continue
        parent = table[pid][1]
        while parent > 1 and parent != ancestor and parent in table:
            parent = table[parent][1]
        if parent == ancestor:
            found.append(pid)
    return found


def is_alive(pid: int) -> bool:
    """True for a running process; a zombie is dead for this purpose."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return raw.rpartition(")")[2].split()[0] not in ("Z", "X")


def pids_of_run(run_id: str) -> list[int]:
    needle = f"{MARKER_VAR}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# ------------------------------------------------------------------ runner


@dataclass(frozen=True)
class Event:
    time: float
    kind: str
    name: str
    details: tuple[str, ...]


class InitRunner:
    """One supervisor under test, with its service file, output and events."""

    def __init__(self, directory: Path, run_id: str) -> None:
        self.dir = directory
        self.run_id = run_id
        self.config_path = directory / "services.toml"
        self.status_file = directory / "status.json"
        self.ready_file = directory / "ready"
        self.events_path = directory / "events.log"
        self.stdout_path = directory / "stdout.log"
        self.stderr_path = directory / "stderr.log"
        self.env = {**os.environ, MARKER_VAR: run_id}
        self.env.pop("SHIPYARD_INIT_CONFIG", None)
        self.env.pop("SHIPYARD_INIT_SUBREAPER", None)
        self.proc: subprocess.Popen[bytes] | None = None

    # -- configuration

    def stub(self, name: str, *args: object) -> list[str]:
        """Command line for the stub service (see service_stub.py)."""
        events = str(self.events_path)
        return [sys.executable, "-S", str(STUB), name, "--events", events, *map(str, args)]

    def service(self, name: str, *args: object, **keys: object) -> dict[str, object]:
        """A long-running stub service.

        Unless the test brings its own probe, the service is gated on a file
        the stub creates once its signal handlers are in place; without a
        probe the next service would start before this one's first line ran.
        """
        if "ready" not in keys:
            flag = self.dir / f"{name}.ready"
            args = (*args, "--ready-file", flag)
            keys = {"ready": {"file": str(flag)}, "ready_interval": 0.02, **keys}
        return {"name": name, "command": self.stub(name, *args), **keys}

    def write_config(self, services: list[dict[str, object]], **supervisor: object) -> Path:
        supervisor.setdefault("status_file", str(self.status_file))
        supervisor.setdefault("ready_file", str(self.ready_file))
        self.config_path.write_text(render_config(supervisor, services))
        return self.config_path

    # -- running

    def argv(self, *args: str) -> list[str]:
        return [INIT_PYTHON, str(INIT), "--config", str(self.config_path), *args]

    def cli(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run a short-lived command (status, --check-config) and capture its output."""
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env
        )

    def start(
        self,
        *args: str,
        tini: bool = False,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
        config_from_env: bool = False,
    ) -> None:
        """Start the supervisor; `args` follow its options (run -- ...), `prefix` precedes it.

        `config_from_env`: no --config, the file named by SHIPYARD_INIT_CONFIG
        instead, as the images' entrypoints call it (`shipyard-init run -- ARGS`).
        """
        env = dict(env or {})
        if config_from_env:
            env["SHIPYARD_INIT_CONFIG"] = str(self.config_path)
            argv = [*prefix, INIT_PYTHON, str(INIT), *args]
        else:
            argv = [*prefix, *self.argv(*args)]
        if tini:
            argv = [TINI, "-s", "--", *argv]
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=err, env={**self.env, **env}, cwd=self.dir
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"supervisor still running after {timeout} s\n{self.diagnostics()}")

    def stop(
        self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0
    ) -> tuple[int, float]:
        """Send `sig` and return (exit code, seconds until the process was gone)."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(sig)
        code = self.wait(timeout)
        return code, time.monotonic() - began

    def run_to_exit(self, timeout: float = 10.0) -> int:
        self.start()
        return self.wait(timeout)

    # -- observing

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def diagnostics(self) -> str:
        events = self.events_path.read_text() if self.events_path.exists() else ""
        return f"--- stderr\n{self.stderr}\n--- stdout\n{self.stdout[-4000:]}\n--- events\n{events}"

    def events(self, kind: str | None = None) -> list[Event]:
        if not self.events_path.exists():
            return []
        found = []
        for line in self.events_path.read_text().splitlines():
            stamp, event, name, *details = line.split()
            if kind is None or event == kind:
                found.append(Event(float(stamp), event, name, tuple(details)))
        return found

    def names(self, kind: str) -> list[str]:
        return [event.name for event in self.events(kind)]

    def event(self, kind: str, name: str) -> Event:
        matches = [e for e in self.events(kind) if e.name == name]
        assert matches, f"no '{kind}' event for {name}\n{self.diagnostics()}"
        return matches[0]

    def wait_for(self, predicate: Callable[[], object], what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}\n{self.diagnostics()}")
            time.sleep(0.01)

    def wait_event(self, kind: str, name: str, timeout: float = 5.0) -> Event:
        self.wait_for(
            lambda: any(e.name == name for e in self.events(kind)), f"{kind} {name}", timeout
        )
        return self.event(kind, name)

    def status_document(self) -> dict[str, object] | None:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return None

    def supervisor_state(self) -> object:
        document = self.status_document()
        return document["supervisor"]["state"] if document else None  # type: ignore[index]

    def wait_running(self, timeout: float = 5.0) -> None:
        self.wait_for(lambda: self.supervisor_state() == "running", "start-up", timeout)

    # -- cleanup

    def cleanup(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()
        # Services live in their own sessions, so killing the supervisor does
        # not reach them; the run id in their environment finds them.
        for pid in pids_of_run(self.run_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

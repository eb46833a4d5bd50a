"""Real processes and sockets for the log shipping tests.

The collector, the agent and moto's S3 server run as subprocesses on free
ports; clients are plain sockets. Every wait is bounded, so a broken program
fails its test instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from helpers import free_port
from shipyard_logs import forward

ROOT = Path(__file__).resolve().parents[2]
COMMON = ROOT / "images" / "common"

PYTHON = os.environ.get("SHIPYARD_LOGS_PYTHON") or sys.executable
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def check_config(program: str, path: Path) -> subprocess.CompletedProcess[str]:
    """`python -m shipyard_logs.<program> --config PATH --check-config`, as the images run it."""
    return subprocess.run(
        [PYTHON, "-m", f"shipyard_logs.{program}", "--config", str(path), "--check-config"],
        env={"PYTHONPATH": str(COMMON)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def toml(data: dict[str, Any]) -> str:
    """Enough TOML for the configs here: scalars, one level of tables, arrays of tables."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(f"\n[{key}]")
            tables += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                tables.append(f"\n[[{key}]]")
                tables += [f"{k} = {json.dumps(v)}" for k, v in item.items()]
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines + tables) + "\n"


class Program:
    """One of the shipyard_logs programs as a subprocess."""

    def __init__(self, module: str, config: Path, log: Path, env: dict[str, str] | None = None):
        self.module = module
        self.config = config
        self.log = log
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Program:
        env = {**os.environ, **S3_ENV, **self.env, "PYTHONPATH": str(COMMON)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", f"shipyard_logs.{self.module}", "--config", str(self.config)],
                stdout=log,
                stderr=log,
                env=env,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10) -> int:
        assert self.proc is not None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"{self.module} ignored SIGTERM for {timeout}s") from None
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Collector(Program):
    def __init__(self, workdir: Path, **settings: Any) -> None:
        self.port = settings.pop("port", None) or free_port()
        self.root = Path(settings.pop("root", workdir / "root"))
        self.workdir = workdir
        super().__init__("collector", workdir / "collector.toml", workdir / "collector.log")
        self.configure(**settings)

    def configure(self, **settings: Any) -> Collector:
        """(Re)write the config file; the next start reads it."""
        config = {"bind": "127.0.0.1", "port": self.port, "root": str(self.root), **settings}
        # toml() writes one level of tables; listeners and users nest deeper.
        tables = [v for v in config.values() if isinstance(v, dict)]
        tables += [t for v in config.values() if isinstance(v, list) for t in v]
        nested = any(
            isinstance(t, dict) and any(isinstance(x, dict | list) for x in t.values())
            for t in tables
        )
        self.config = self.workdir / ("collector.json" if nested else "collector.toml")
        self.config.write_text(json.dumps(config) if nested else toml(config))
        return self

    def start(self) -> Collector:
        super().start()
        wait_for(lambda: port_open(self.port) or not self.alive(), 15, "the collector to listen")
        assert self.alive(), self.output()
        return self

    def lines(self) -> list[list[str]]:
        """Every stored line as [time, tag, json] across all slice files.

        A read can race the collector's append: the text after the last
        newline is a line still being written, not a stored one.
        """
        found = []
        for path in sorted((self.root / "logs").rglob("*.log")):
            text = path.read_text()
            for line in text[: text.rfind("\n") + 1].splitlines():
                found.append(line.split("\t", 2))
        return found


class ForwardClient:
    """A raw Forward Protocol client over a plain socket."""

    def __init__(self, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.sock.settimeout(timeout)
        self.unpacker = forward.new_unpacker()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ack(self) -> object:
        while True:
            with contextlib.suppress(StopIteration):
                return forward.decode_ack(next(self.unpacker))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("collector closed the connection")
            self.unpacker.feed(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ForwardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MotoServer:
    """moto's S3 API in server mode, as the dev environment runs it."""

    def __init__(
        self, workdir: Path, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.port = port or free_port()
        self.log = workdir / f"moto-{self.port}.log"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=log,
                env={**os.environ, **S3_ENV, **self.env},
            )
        wait_for(self._answers, 20, "moto_server to answer")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"moto_server exited: {self.log.read_text()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(self.url, timeout=1):  # noqa: S310
            return True
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def client(self, service: str = "s3", key: str = "", secret: str = "") -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=key or S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=secret or S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        ).client(service, endpoint_url=self.url)


@contextlib.contextmanager
def running(*programs: Program) -> Iterator[None]:
    try:
        yield
    finally:
        for program in programs:
            program.kill()


APACHE_LINE = (
    '10.0.{a}.{b} - - [{time}] "GET /page/{page}?id={id} HTTP/1.1" 200 {size} "-" "tester/1.0"'
)


def apache_line(ident: int, when: str = "20/Nov/2026:10:15:00 +0000") -> str:
    return APACHE_LINE.format(
        a=ident % 250, b=ident % 200, time=when, page=ident % 37, id=ident, size=100 + ident % 900
    )


class S3Proxy:
    """An HTTP proxy in front of moto that can swallow the answers to PUTs.

    The put reaches S3 and is stored; the uploader never hears back. That is
    the state a lost answer leaves, or a collector killed between the put and
    its local clean-up. The next `drops` PUTs whose path holds `hold` are
    swallowed: `stored` is set once S3 has the first, whose answer is held
    until `release` is set; each is dropped with its connection.
    """

    def __init__(self, upstream_port: int) -> None:
        import http.client
        import http.server

        proxy = self
        self.hold = ""  # a path fragment whose PUT answers are swallowed
        self.drops = 0
        self.stored = threading.Event()
        self.release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                try:
                    upstream.request(self.command, self.path, body, dict(self.headers.items()))
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                if self.command == "PUT" and proxy.drops and proxy.hold in self.path:
                    proxy.drops -= 1
                    proxy.stored.set()
                    proxy.release.wait(60)
                    self.close_connection = True
                    return
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> S3Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def fill(path: Path) -> Path:
    """Fill the file system holding `path` until a write fails; returns the filler file."""
    filler = path / f".filler-{uuid.uuid4().hex[:8]}"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                handle.write(b"\0")
        except OSError:
            pass
    return filler


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at path (root only, as in CI), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)

"""A configurable fake service that the shipyard-init tests run under the supervisor.

Every step it takes is appended to an events file as one line
`<monotonic time> <event> <name> [details]`, written with O_APPEND so lines
from several services never interleave. CLOCK_MONOTONIC is system-wide on
Linux, so times from different processes can be compared.
"""

import argparse
import codecs
import os
import resource
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CAUGHT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)

NAME = ""
EVENTS_FD = -1
READY = threading.Event()
KEEP: list[object] = []  # sockets and servers that must stay open


def record(event: str, *details: object) -> None:
    line = " ".join([f"{time.monotonic():.6f}", event, NAME, *map(str, details)])
    os.write(EVENTS_FD, f"{line}\n".encode())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--events", required=True)
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument("--ready-file")
    parser.add_argument("--tcp", type=int)
    parser.add_argument("--unix")
    parser.add_argument("--http", type=int)
    parser.add_argument("--ignore-stop", action="store_true")
    parser.add_argument("--helper", action="store_true")
    parser.add_argument("--wait-for")
    parser.add_argument("--exit-after", type=float)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--kill-self")
    parser.add_argument("--stdout", default="")
    parser.add_argument("--stderr", default="")
    parser.add_argument("--chatty", type=int, default=0, help="line length to print forever")
    parser.add_argument("--fork-orphans", type=int, default=0)
    parser.add_argument("--orphan-pids")
    parser.add_argument("--env-file", help="write the environment and argv here at start")
    # After `--`: arguments the supervisor appended (pass_arguments), kept as they are.
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.rest = argv[cut + 1 :]
    return args


def dump_environment(path: str, rest: list[str]) -> None:
    """NAME=value lines, then `argv` and the appended arguments, NUL-separated."""
    lines = [f"{key}={value}" for key, value in sorted(os.environ.items())]
    lines += ["argv", *rest]
    Path(path).write_text("\0".join(lines))


def on_stop(signum: int, _frame: object) -> None:
    record("stop", signal.Signals(signum).name)
    os._exit(0)


def on_ignored(signum: int, _frame: object) -> None:
    record("ignored", signal.Signals(signum).name)


def start_helper() -> None:
    """A child in the service's process group that only SIGKILL can end."""
    pid = os.fork()
    if pid == 0:
        for sig in CAUGHT_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        while True:
            time.sleep(60)
    record("helper", pid)


def fork_orphans(count: int, pids_path: str) -> None:
    """Leave `count` grandchildren behind, blocked until SIGUSR1 closes their pipe."""
    read_end, write_end = os.pipe()
    out = os.open(pids_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            grandchild = os.fork()
            if grandchild == 0:
                os.close(write_end)
                os.read(read_end, 1)
                os._exit(0)
            os.write(out, f"{grandchild}\n".encode())
            os._exit(0)
        os.waitpid(pid, 0)
    os.close(read_end)
    os.close(out)

    def release(_signum: int, _frame: object) -> None:
        os.close(write_end)
        record("released")

    signal.signal(signal.SIGUSR1, release)
    record("forked", count)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if READY.is_set():
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
        else:
            self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def serve_http(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    KEEP.append(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def become_ready(args: argparse.Namespace) -> None:
    # Recorded before the resource exists, so a probe can never pass before
    # the line is in the file.
    record("ready")
    if args.ready_file:
        Path(args.ready_file).touch()
    if args.tcp:
        KEEP.append(socket.create_server(("127.0.0.1", args.tcp)))
    if args.unix:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(args.unix)
        sock.listen()
        KEEP.append(sock)
    READY.set()


def finish(args: argparse.Namespace) -> None:
    if args.wait_for:
        while not Path(args.wait_for).exists():
            time.sleep(0.01)
    time.sleep(args.exit_after)
    if args.kill_self:
        sig = signal.Signals[args.kill_self]
        record("kill-self", sig.name)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        time.sleep(10)
    record("exit", args.exit_code)
    os._exit(args.exit_code)


def chatter(length: int) -> None:
    body = (NAME * length)[:length]
    counter = 0
    while True:
        os.write(1, f"{body} {counter}\n".encode())
        counter += 1


def main() -> None:
    global NAME, EVENTS_FD
    args = parse_args()
    NAME = args.name
    EVENTS_FD = os.open(args.events, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    for sig in CAUGHT_SIGNALS:
        signal.signal(sig, on_ignored if args.ignore_stop else on_stop)
    record("start", os.getpid())
    if args.env_file:
        dump_environment(args.env_file, args.rest)
    os.write(1, codecs.decode(args.stdout, "unicode_escape").encode())
    os.write(2, codecs.decode(args.stderr, "unicode_escape").encode())
    if args.helper:
        start_helper()
    if args.fork_orphans:
        fork_orphans(args.fork_orphans, args.orphan_pids)
    if args.http:
        serve_http(args.http)
    time.sleep(args.ready_after)
    become_ready(args)
    if args.exit_after is not None:
        finish(args)
    if args.chatty:
        chatter(args.chatty)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())

"""A long-running log writer for the rotation tests: reopens its file on SIGUSR1, like Apache.

    python3 log_writer.py PATH PID_FILE COUNT [LINES_PER_SECOND]

It appends COUNT numbered access log lines (ids 0..COUNT-1), one write each,
then waits to be terminated; `done` is printed on stdout once every line is written.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

# Run as a script, so its own directory (tests/logs) is on sys.path already;
# the tests' path, for the harness's own imports, comes in PYTHONPATH.
from logs_harness import apache_line

reopen_requested = False


def request_reopen(*_: object) -> None:
    global reopen_requested
    reopen_requested = True


def open_log(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)


def reopen_if_asked(fd: int, path: str) -> int:
    global reopen_requested
    if not reopen_requested:
        return fd
    reopen_requested = False
    os.close(fd)
    return open_log(path)


def main() -> None:
    path, pid_file, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pause = 1 / float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    signal.signal(signal.SIGUSR1, request_reopen)
    fd = open_log(path)
    Path(pid_file).write_text(f"{os.getpid()}\n")
    for ident in range(count):
        fd = reopen_if_asked(fd, path)
        os.write(fd, (apache_line(ident) + "\n").encode())
        if pause:
            time.sleep(pause)
    print("done", flush=True)
    while True:
        signal.pause()
        fd = reopen_if_asked(fd, path)


if __name__ == "__main__":
    main()

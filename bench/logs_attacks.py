#!/usr/bin/env python3
"""Attacks on the log collector, and what they cost a well-behaved agent beside them.

For each attack, a fresh collector (a host process, files only) receives a
steady stream from shipyard's agent, RATE access lines per second for
DURATION seconds, while an attacker process does its worst beside it. The
agent authenticates with the shared key; so do the attackers of the
decoding attacks, which play a client whose key was stolen. Reported: the
collector's peak RSS (VmHWM), whether it is still up, the latency of the
agent's lines (written to the log -> in a slice file: p50, p99, max), lines
missing or duplicated, and the refusals the collector logged.

  none       no attack: the baseline of the same run
  flood      16 threads opening connections from 8 addresses as fast as they can,
             holding them open without a handshake, or closing them at once
  frames     4 clients sending 64 MiB frames: a 64 MiB bin, and a Forward array
             declared with 4 million entries
  bombs      4 clients sending gzip payloads of 300 MiB of one entry (300 KiB),
             and 32 KiB ones of zeros
  nesting    4 clients sending records nested 1,000 deep (dropped, acked) and
             2,000 deep (past msgpack: the connection is closed)
  lengths    16 clients declaring arrays, maps and strings of 2^32 - 1 items or
             bytes, and 1,000 nested arrays of 65,535 or 1,024 items each, which
             they keep open
  slowloris  connections from 8 addresses, up to the per-peer cap, trickling a
             PING or a frame one byte a second
  objects    4 clients sending 8 MiB PackedForward payloads of tiny nested
             objects (1.2 million entries each), the case that took 440 MiB, and
             Forward frames of 65,535 such entries

Goals (per attack): collector RSS <= 256 MB, the agent's p99 <= 2 s, zero
lost, zero duplicated. With --code DIR the collector and agent come from
another tree (an older one, without security: the attackers then skip the
handshake), to see what the same attacks did before.

Usage: bench/logs_attacks.py [--attacks none,flood,...] [--duration 15] [--rate 1000]
                             [--json FILE] [--code DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from logs import (  # bench/logs.py, this directory
    COMMON,
    HOST,
    TAG,
    BenchError,
    Procs,
    SliceTail,
    agent_overrides,
    free_port,
    peak_rss_mb,
    percentile,
    sigterm_as_exit,
    wait_for_port,
    warm_up,
)

ATTACKS = ("none", "flood", "frames", "bombs", "nesting", "lengths", "slowloris", "objects")
GOAL_RSS_MB = 256.0
GOAL_P99_S = 2.0
SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]
MIB = 1024 * 1024
ATTACK_TAG = "attack.junk"


# ------------------------------------------------------------------ the attacker


class Attacker:
    """Threads doing one attack until the deadline; counts what happened to them."""

    def __init__(self, port: int, key: str | None, deadline: float) -> None:
        self.port = port
        self.key = key
        self.deadline = deadline
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def note(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    def connect(self, source: str, handshake: bool = True, timeout: float = 10) -> socket.socket:
        sock = socket.create_connection(
            ("127.0.0.1", self.port), timeout=timeout, source_address=(source, 0)
        )
        if handshake and self.key is not None:
            import msgpack
            from shipyard_logs import forward
            from shipyard_logs.handshake import ClientHandshake, ClientSecurity

            unpacker = msgpack.Unpacker(raw=False)
            hs = ClientHandshake(ClientSecurity(f"attacker-{source}", self.key))
            sock.sendall(forward.packb(hs.ping(_message(sock, unpacker))))
            hs.check(_message(sock, unpacker))
        self.note("connections")
        return sock

    def loop(self, threads: int, body: Callable[[int], None]) -> None:
        def run(n: int) -> None:
            while self.running():
                try:
                    body(n)
                except Exception as exc:  # refused, reset, a handshake failed: go on
                    self.note(f"error: {type(exc).__name__}")
                    time.sleep(0.05)

        workers = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(max(0.0, self.deadline - time.monotonic()) + 15)


def _message(sock: socket.socket, unpacker: Any) -> object:  # noqa: ANN401
    import msgpack

    while True:
        try:
            return unpacker.unpack()
        except msgpack.OutOfData:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the handshake") from None
            unpacker.feed(data)


def _tag() -> bytes:
    from shipyard_logs import forward

    return forward.packb(ATTACK_TAG)


def _drain(sock: socket.socket, seconds: float) -> None:
    """Read what comes back (acks) until closed or quiet for `seconds`."""
    sock.settimeout(seconds)
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass


def attack_flood(a: Attacker) -> None:
    held: list[socket.socket] = []
    lock = threading.Lock()

    def body(n: int) -> None:
        source = SOURCES[n % len(SOURCES)]
        sock = a.connect(source, handshake=False, timeout=2)
        if n % 2:
            sock.close()  # churn
            return
        with lock:
            held.append(sock)
            while len(held) > 2000:
                held.pop(0).close()

    a.loop(16, body)
    for sock in held:
        sock.close()


def attack_frames(a: Attacker) -> None:
    chunk = bytes(MIB)

    def body(n: int) -> None:
        sock = a.connect(SOURCES[n % len(SOURCES)])
        if n % 2:  # PackedForward: a bin of 64 MiB
            sock.sendall(b"\x93" + _tag() + b"\xc6" + (64 * MIB).to_bytes(4, "big"))
        else:  # Forward: 4 Mi entries, of zeros
            sock.sendall(b"\x92" + _tag() + b"\xdd" + (4 * MIB).to_bytes(4, "big"))
        sent = 0
        with sock:
            while sent < 64 * MIB and a.running():
                sock.sendall(chunk)
                sent += len(chunk)
                a.note("MiB sent")

    a.loop(4, body)


def _bombs() -> list[bytes]:
    from shipyard_logs import forward
    from shipyard_logs.forward import EventTime

    packer = __import__("zlib").compressobj(9, wbits=31)
    entries = forward.packb([EventTime(int(time.time())), {"m": "x" * 1000}]) * 1000
    big = b"".join(packer.compress(entries) for _ in range(300)) + packer.flush()
    small = gzip.compress(bytes(32 * 1024 * 1000))  # about 32 KiB
    return [
        forward.packb([ATTACK_TAG, payload, {"compressed": "gzip", "chunk": f"bomb{n}"}])
        for n, payload in enumerate((big, small))
    ]


def attack_bombs(a: Attacker) -> None:
    frames = _bombs()

    def body(n: int) -> None:
        with a.connect(SOURCES[n % len(SOURCES)]) as sock:
            sock.sendall(frames[n % 2])
            a.note("bombs sent")
            _drain(sock, 5)

    a.loop(4, body)


def attack_nesting(a: Attacker) -> None:
    from shipyard_logs import forward
    from shipyard_logs.forward import EventTime

    stamp = forward.packb(EventTime(int(time.time())))
    tag = forward.packb(ATTACK_TAG)
    deep = b"\x94" + tag + stamp + b"\x81\xa1n" * 999 + b"\x80" + forward.packb({"chunk": "d"})
    deeper = b"\x93" + tag + stamp + b"\x81\xa1n" * 2000 + b"\x80"

    def body(n: int) -> None:
        with a.connect(SOURCES[n % len(SOURCES)]) as sock:
            for _ in range(20):
                sock.sendall(deep)
                sock.settimeout(10)
                if sock.recv(100):
                    a.note("deep records acked")
            sock.sendall(deeper)
            a.note("deeper records sent")
            _drain(sock, 5)

    a.loop(4, body)


def attack_lengths(a: Attacker) -> None:
    tag = _tag()
    heads = [
        b"\x93" + tag + b"\x01\x81\xa1k\xdd\xff\xff\xff\xff",  # array of 2^32 - 1
        b"\x93" + tag + b"\x01\xdf\xff\xff\xff\xff",  # map
        b"\x92" + tag + b"\xdd\xff\xff\xff\xff",  # Forward entries
        b"\x93" + tag + b"\x01\x81\xa1k\xdb\xff\xff\xff\xff" + bytes(64 * 1024),  # str
        # 1,000 nested arrays, declared and never filled, held open: msgpack
        # allocates each before its items come.
        b"\x93" + tag + b"\x01\x81\xa1k" + b"\xdc\xff\xff" * 1000,
        b"\x93" + tag + b"\x01\x81\xa1k" + b"\xdc\x04\x00" * 1000,  # 1,024 each
    ]
    turns = iter(range(10**9))

    def body(n: int) -> None:
        with a.connect(SOURCES[n % len(SOURCES)]) as sock:
            sock.sendall(heads[next(turns) % len(heads)])
            a.note("declarations sent")
            _drain(sock, 30)

    a.loop(16, body)


def attack_slowloris(a: Attacker) -> None:
    from shipyard_logs import forward

    frame = forward.packb([ATTACK_TAG, [[1, {"m": "x" * 200}]], {"chunk": "slow"}])
    ping = forward.packb(["PING", "slow", "salt", "0" * 128, "", ""])

    def body(n: int) -> None:
        authenticated = n % 2 == 0
        sock = a.connect(SOURCES[n % len(SOURCES)], handshake=authenticated, timeout=5)
        data = frame if authenticated else ping
        with sock:
            for byte in data:
                if not a.running():
                    return
                sock.sendall(bytes([byte]))
                a.note("bytes trickled")
                time.sleep(1.0)

    a.loop(8 * 32, body)


def attack_objects(a: Attacker) -> None:
    from shipyard_logs import forward

    entry = b"\x92\x00\x81\xa1a\x91\x90"  # [0, {"a": [[]]}]
    payload = entry * (8 * MIB // len(entry))
    frames = [
        forward.packb([ATTACK_TAG, payload, {"chunk": "objects"}]),
        # Forward: as many entries as max_array_length lets in, checked one by one.
        b"\x93" + _tag() + b"\xdc\xff\xff" + entry * 0xFFFF + forward.packb({"chunk": "f"}),
    ]

    def body(n: int) -> None:
        with a.connect(SOURCES[n % len(SOURCES)]) as sock:
            sock.sendall(frames[n % 2])
            a.note("frames of tiny objects sent")
            _drain(sock, 5)

    a.loop(4, body)


def run_attacker(name: str, port: int, key_file: str, duration: float) -> int:
    key = Path(key_file).read_text().strip() if key_file else None
    attacker = Attacker(port, key, time.monotonic() + duration)
    if name != "none":
        globals()[f"attack_{name}"](attacker)
    else:
        time.sleep(duration)
    print(json.dumps(attacker.counts))
    return 0


# ------------------------------------------------------------------ one measurement


@dataclass
class Result:
    attack: str
    lines: int
    p50: float
    p99: float
    max: float
    missing: int
    duplicates: int
    peak_rss_mb: float
    rss_during_mb: float
    collector_alive: bool
    refusals: int
    refusal_example: str
    attacker: dict[str, int]
    reasons: list[str]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def collector_settings(workdir: Path, port: int, key_file: Path | None) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bind": "127.0.0.1",
        "port": port,
        "root": str(workdir / "store"),
        "time_slice_wait": 30 * 86400,  # the longest allowed: nothing closes
        "heartbeat": False,
        "log_level": "INFO",
    }
    if key_file is not None:
        settings["security"] = {"self_hostname": "collector", "shared_key_file": str(key_file)}
    return settings


def measure(attack: str, options: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-attacks-") as tmp:
        workdir = Path(tmp)
        if options.keep:  # the logs of every process, to read afterwards
            workdir = Path(tempfile.mkdtemp(prefix=f"shipyard-bench-attacks-{attack}-"))
            print(f"  {attack}: keeping {workdir}", file=sys.stderr)
        procs = Procs(workdir, Path(options.code))
        try:
            return _measure(attack, workdir, procs, options)
        finally:
            procs.stop_all()


def _measure(attack: str, workdir: Path, procs: Procs, options: argparse.Namespace) -> Result:
    port = free_port()
    secure = options.code == str(COMMON)
    key_file = None
    if secure:
        key_file = workdir / "shared_key"
        key_file.write_text(f"bench-key-{os.urandom(8).hex()}\n")
    config = workdir / "collector.json"
    settings = {**collector_settings(workdir, port, key_file), **options.collector_set}
    config.write_text(json.dumps(settings))
    collector = procs.start("collector", ["-m", "shipyard_logs.collector", "--config", str(config)])
    wait_for_port(port, collector)
    log = workdir / "access.log"
    log.touch()
    agent_config = workdir / "agent.json"
    agent: dict[str, Any] = {
        "collector_host": "127.0.0.1",
        "collector_port": port,
        "pos_dir": str(workdir / "pos"),
        "host": HOST,
        "sources": [{"path": str(log), "tag": TAG, "format": "apache2", "read_from_head": True}],
    }
    if key_file is not None:
        agent["shared_key_file"] = str(key_file)
    agent_config.write_text(json.dumps(agent))
    sender = procs.start("agent", ["-m", "shipyard_logs.agent", "--config", str(agent_config)])
    lines = int(options.rate * options.duration)
    tail = SliceTail(workdir / "store", lines)
    warm_up(log, tail, [collector, sender])
    attacker = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--role",
            "attacker",
            "--attacks",
            attack,
            "--port",
            str(port),
            "--key-file",
            str(key_file or ""),
            "--duration",
            str(options.duration),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(COMMON)),
    )
    time.sleep(min(2.0, options.duration / 5))  # the attack is under way first
    writer = procs.start(
        "writer",
        [
            str(Path(__file__).with_name("logs.py")),
            "--role",
            "writer",
            "--path",
            str(log),
            "--lines",
            str(lines),
            "--rate",
            str(options.rate),
        ],
    )
    rss_during = 0.0
    deadline = time.monotonic() + options.duration + options.settle + 60
    writer_done_at: float | None = None
    while time.monotonic() < deadline:
        if tail.poll() == 0:
            time.sleep(0.05)
        if collector.alive():
            rss_during = max(rss_during, rss_mb(collector.popen.pid))
        if writer_done_at is None and not writer.alive():
            writer_done_at = time.time()
        if tail.seen >= lines:
            break
        if writer_done_at and time.time() - max(writer_done_at, tail.last_new) > options.settle:
            break
    try:
        out, _ = attacker.communicate(timeout=options.duration + 60)
        counts = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    except (subprocess.TimeoutExpired, ValueError):
        attacker.kill()
        counts = {}
    time.sleep(1.0)  # a late resend would show up as a duplicate
    tail.poll()
    alive = collector.alive()
    peak = peak_rss_mb(collector.popen.pid) if alive else float("nan")
    refusals = [
        line.split(" WARNING ", 1)[-1]
        for line in collector.log_tail(10_000_000).splitlines()
        if " WARNING " in line
    ]
    reasons = sorted({re.sub(r"127\.0\.0\.\d+", "PEER", r)[:160] for r in refusals})
    seen = [i for i, count in enumerate(tail.counts) if count]
    latencies = sorted(tail.latency[i] for i in seen)
    return Result(
        attack=attack,
        lines=lines,
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        max=latencies[-1] if latencies else float("nan"),
        missing=lines - len(seen),
        duplicates=sum(c - 1 for c in tail.counts if c > 1) + tail.overflow,
        peak_rss_mb=peak,
        rss_during_mb=rss_during,
        collector_alive=alive,
        refusals=len(refusals),
        refusal_example=refusals[0][:200] if refusals else "",
        reasons=reasons,
        attacker=counts,
    )


# ------------------------------------------------------------------ the report


def print_table(results: list[Result], options: argparse.Namespace) -> None:
    tree = "this tree" if options.code == str(COMMON) else options.code
    print(
        f"\n{options.rate:,.0f} agent lines/s for {options.duration:g} s beside each attack "
        f"({tree})\n"
    )
    print(
        "| attack | collector peak RSS (MB) | up | agent p50 (s) | p99 (s) | max (s) "
        "| missing | dup | refusals logged |"
    )
    print("|---|---:|:-:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.attack} | {r.peak_rss_mb:.0f} | {'yes' if r.collector_alive else 'NO'} "
            f"| {r.p50:.2f} | {r.p99:.2f} | {r.max:.2f} | {r.missing} | {r.duplicates} "
            f"| {r.refusals} |"
        )
    print("\nwarnings the collector logged, per attack (peers as PEER):")
    for r in results:
        for reason in r.reasons:
            print(f"  {r.attack}: {reason}")
    print("\ngoals:")
    for r in results:
        met = (
            r.collector_alive
            and r.peak_rss_mb <= GOAL_RSS_MB
            and r.p99 <= GOAL_P99_S
            and not r.missing
            and not r.duplicates
        )
        print(
            f"  {r.attack}: RSS <= {GOAL_RSS_MB:.0f} MB, p99 <= {GOAL_P99_S:g} s, "
            f"0 lost, 0 duplicated -> {'met' if met else 'NOT met'}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per attack (15)")
    parser.add_argument("--rate", type=float, default=1000.0, help="agent lines/s (1000)")
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--code", default=str(COMMON), help="the images/common to run")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory and logs")
    parser.add_argument(
        "--collector-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a collector setting (JSON value), e.g. handshake_timeout=2",
    )
    parser.add_argument("--role", choices=("attacker",), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key-file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.attacks = [a for a in args.attacks.split(",") if a]
    if not set(args.attacks) <= set(ATTACKS):
        parser.error(f"--attacks takes {','.join(ATTACKS)}")
    args.code = str(Path(args.code).resolve())
    try:
        args.collector_set = agent_overrides(args.collector_set)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.role == "attacker":
        return run_attacker(options.attacks[0], options.port, options.key_file, options.duration)
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start "
        "(the machine is shared: compare with the run's own baseline)",
        flush=True,
    )
    results = []
    try:
        with sigterm_as_exit():
            for attack in options.attacks:
                result = measure(attack, options)
                results.append(result)
                print(
                    f"  {attack:<10} rss {result.peak_rss_mb:6.0f} MB  p99 {result.p99:6.2f} s"
                    f"  missing {result.missing}  dup {result.duplicates}"
                    f"  up {result.collector_alive}  {result.attacker}",
                    file=sys.stderr,
                    flush=True,
                )
    except BenchError as exc:
        sys.exit(f"bench/logs_attacks.py: {exc}")
    print_table(results, options)
    if options.json:
        Path(options.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

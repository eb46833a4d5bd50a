#!/usr/bin/env python3
"""Collector capacity: several load generators into one collector, lines/s per core of its CPU.

Each generator is a process that sends what shipyard's agent sends, batches
of 1,000 parsed access lines as CompressedPackedForward frames with chunk
ids, keeping up to 4 batches in flight and counting the acks. The collector
(a host process: files only, nothing is uploaded) stores them as it would,
slice files, fsync and journal. Reported per setup: lines acked, the wall-clock
rate, the collector's CPU (user + system, /proc/<pid>/stat), and lines per
second per core of collector CPU = lines / CPU seconds, the figure that does
not depend on how busy the shared machine is.

  plain        plain TCP, no handshake
  tls+key      TLS and the shared-key handshake, as the dev environment runs

Goal: >= 200,000 lines/s per core of collector CPU (plain).

Usage: bench/logs_capacity.py [--generators 4] [--lines 400000] [--setups plain,tls+key]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from logs import (  # bench/logs.py, this directory
    COMMON,
    HOST,
    TAG,
    BenchError,
    Procs,
    access_line,
    cpu_seconds,
    free_port,
    load_test_pki,
    peak_rss_mb,
    wait_for_port,
)

SETUPS = ("plain", "tls+key")
GOAL_PER_CORE = 200_000
BATCH = 1000
WINDOW = 4
KEY = "capacity-bench-key"


# ------------------------------------------------------------------ a generator


def payloads(count: int, seed: int) -> list[tuple[bytes, int]]:
    """count gzip'd PackedForward payloads of BATCH apache records, as the agent makes them."""
    import gzip

    from shipyard_logs import forward
    from shipyard_logs.parsers import parse_apache2

    packer = forward.EntryPacker()
    out = []
    stamp = 1_767_225_600
    clf = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(stamp))
    for n in range(count):
        entries = []
        for i in range(BATCH):
            parsed = parse_apache2(
                access_line(seed * 10**7 + n * BATCH + i, stamp, clf).rstrip("\n")
            )
            assert parsed is not None
            time_, record = parsed
            record["source_host"] = f"{HOST}{seed}"
            entries.append(packer.pack(time_, record))
        out.append(
            (gzip.compress(b"".join(entries), compresslevel=forward.GZIP_LEVEL, mtime=0), BATCH)
        )
    return out


def generate(port: int, lines: int, seed: int, ca: str, key: str) -> int:
    import msgpack
    from shipyard_logs import forward
    from shipyard_logs.handshake import ClientHandshake, ClientSecurity

    batches = payloads(20, seed)
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    if ca:
        sock = ssl.create_default_context(cafile=ca).wrap_socket(sock, server_hostname="localhost")
    unpacker = msgpack.Unpacker(raw=False)

    def message() -> object:
        while True:
            try:
                return unpacker.unpack()
            except msgpack.OutOfData:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the collector closed the connection") from None
                unpacker.feed(data)

    if key:
        handshake = ClientHandshake(ClientSecurity(f"generator-{seed}", key))
        sock.sendall(forward.packb(handshake.ping(message())))
        handshake.check(message())
    sent = acked = 0
    pending: set[str] = set()
    while acked < lines:
        while len(pending) < WINDOW and sent < lines:
            payload, size = batches[(sent // BATCH) % len(batches)]
            chunk = f"{seed}-{sent}"
            option = {"size": size, "compressed": "gzip", "chunk": chunk}
            sock.sendall(forward.packb([TAG, payload, option]))
            pending.add(chunk)
            sent += size
        reply = message()
        pending.discard(forward.decode_ack(reply))
        acked = sent - len(pending) * BATCH
    sock.close()
    print(json.dumps({"acked": acked}))
    return 0


# ------------------------------------------------------------------ one measurement


def measure(setup: str, options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-capacity-") as tmp:
        workdir = Path(tmp)
        procs = Procs(workdir)
        try:
            return _measure(setup, workdir, procs, options)
        finally:
            procs.stop_all()


def _measure(
    setup: str, workdir: Path, procs: Procs, options: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    settings: dict[str, Any] = {
        "bind": "127.0.0.1",
        "port": port,
        "root": str(workdir / "store"),
        "time_slice_wait": 30 * 86400,  # the longest allowed: nothing closes
        "heartbeat": False,
    }
    ca = key = ""
    if setup == "tls+key":
        certs = load_test_pki(workdir / "pki")
        (workdir / "key").write_text(KEY)
        settings["security"] = {
            "self_hostname": "collector",
            "shared_key_file": str(workdir / "key"),
        }
        settings["transport"] = {
            "tls": True,
            "cert_path": str(certs.server.cert),
            "private_key_path": str(certs.server.key),
        }
        ca, key = str(certs.ca), KEY
    config = workdir / "collector.json"
    config.write_text(json.dumps(settings))
    collector = procs.start("collector", ["-m", "shipyard_logs.collector", "--config", str(config)])
    wait_for_port(port, collector)
    per_generator = options.lines // options.generators
    cpu0 = cpu_seconds(collector.popen.pid)
    began = time.monotonic()
    generators = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--role",
                "generator",
                "--port",
                str(port),
                "--lines",
                str(per_generator),
                "--seed",
                str(n),
                "--ca",
                ca,
                "--key",
                key,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(COMMON)),
        )
        for n in range(options.generators)
    ]
    acked = 0
    for gen in generators:
        out, err = gen.communicate(timeout=options.timeout)
        if gen.returncode != 0:
            raise BenchError(f"a generator failed:\n{err[-2000:]}\n{collector.log_tail()}")
        acked += json.loads(out.strip().splitlines()[-1])["acked"]
    wall = time.monotonic() - began
    collector.check()
    cpu = cpu_seconds(collector.popen.pid) - cpu0
    return {
        "setup": setup,
        "lines": acked,
        "wall_rate": acked / wall,
        "cpu": cpu,
        "per_core": acked / cpu if cpu else float("nan"),
        "rss": peak_rss_mb(collector.popen.pid),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generators", type=int, default=4)
    parser.add_argument("--lines", type=int, default=400_000, help="in all, per setup")
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--role", choices=("generator",), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ca", default="", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.role == "generator":
        return generate(options.port, options.lines, options.seed, options.ca, options.key)
    setups = [s for s in options.setups.split(",") if s]
    if not set(setups) <= set(SETUPS):
        parser.error(f"--setups takes {','.join(SETUPS)}")
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start "
        "(lines per core of collector CPU does not depend on it; the wall rate does)",
        flush=True,
    )
    results = []
    try:
        for setup in setups:
            results.append(measure(setup, options))
    except BenchError as exc:
        sys.exit(f"bench/logs_capacity.py: {exc}")
    print(f"\n{options.generators} generators, {options.lines:,} lines per setup\n")
    print(
        "| setup | lines acked | wall lines/s | collector CPU (s) | lines/s per core "
        "| peak RSS (MB) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['setup']} | {r['lines']:,} | {r['wall_rate']:,.0f} | {r['cpu']:.2f} "
            f"| {r['per_core']:,.0f} | {r['rss']:.0f} |"
        )
    print("\ngoals:")
    for r in results:
        met = r["per_core"] >= GOAL_PER_CORE
        print(
            f"  {r['setup']}: >= {GOAL_PER_CORE:,} lines/s per core of collector CPU: "
            f"{r['per_core']:,.0f} -> {'met' if met else 'NOT met'}"
        )
    if len(results) == 2 and results[0]["per_core"]:
        print(f"  tls+key / plain per core: {results[1]['per_core'] / results[0]['per_core']:.2f}")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""CPU per line of the log agent and the collector, in process, next to naive versions.

bench/logs.py measures the whole pipeline, but on a shared two-core machine its
wall-clock figures move with the load. This one runs each path in this process
and counts process CPU (time.process_time: user + system), so a change to the
agent's or the collector's per-line cost shows up however busy the machine is.

  agent       shipyard's Tail over a file of LINES access lines (bench/logs.py's
              generator), batches of batch_lines, gzip'd PackedForward frames
              with chunk ids and positions, as the agent hands them to its shipper
  agent.naive readline, the same apache2 parser, one msgpack Message per line
  collector   those frames, one socket read per batch, through the connection's
              bounded decoder, step by step (decode), then the router and the slice
              store: slice lines, write, fsync, journal (store)
  coll.naive  one Message per line unpacked, json.dumps, a buffered write

Each path runs REPEAT times; the table shows the fastest run, the one least
disturbed by other processes, as microseconds of CPU per line and the lines/s
one core would sustain at that cost.

Usage: bench/logs_cpu.py [--lines 200000] [--repeat 3] [--dir DIR] [--profile PATH]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from logs import HOST, TAG, access_line  # bench/logs.py, this directory
from shipyard_logs import collector
from shipyard_logs.agent.config import AgentConfig, load_config
from shipyard_logs.agent.daemon import Agent
from shipyard_logs.agent.shipper import Sent
from shipyard_logs.agent.tail import Batch
from shipyard_logs.decoder import FrameDecoder
from shipyard_logs.parsers import parse_apache2

# Lines per second of event time: records spread over several seconds, as in
# bench/logs.py's writer, so per-second caches see their real hit rate.
LINES_PER_SECOND = 50_000
START = 1_767_225_600  # 2026-01-01T00:00:00Z


def write_access_log(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for first in range(0, lines, 500):
            stamp = START + first // LINES_PER_SECOND
            clf = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(stamp))
            out.write("".join(access_line(i, stamp, clf) for i in range(first, first + 500)))


# ------------------------------------------------------------------ agent


def agent_config(workdir: Path, log: Path) -> AgentConfig:
    path = workdir / "agent.json"
    source = {"path": str(log), "tag": TAG, "format": "apache2", "read_from_head": True}
    config = {"pos_dir": str(workdir / "pos"), "host": HOST, "sources": [source]}
    path.write_text(json.dumps(config))
    return load_config(str(path), env={})


def run_agent(config: AgentConfig) -> list[Sent]:
    """The agent's main loop without the clock: read, batch, frame; nothing is sent."""
    runner = Agent(config)
    for tail in runner.tails:
        tail.refresh(scan=True)
    sent = []
    while True:
        batch = Batch()
        if not sum(tail.read(batch) for tail in runner.tails):
            break
        sent.append(runner._sent(batch))
    for tail in runner.tails:
        for watcher in tail.watchers:
            watcher.close()
    return sent


def run_naive_agent(log: Path) -> list[bytes]:
    """bench/logs.py's naive sender, minus the socket."""
    out = []
    with log.open("rb") as file:
        for raw in file:
            line = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
            parsed = parse_apache2(line)
            if parsed is None:
                out.append(msgpack.packb([TAG + ".unparsed", int(time.time()), {"message": line}]))
                continue
            stamp, record = parsed
            record["source_host"] = HOST
            out.append(msgpack.packb([TAG, stamp.seconds, record]))
    return out


# ------------------------------------------------------------------ collector


def new_collector(root: Path) -> collector.Collector:
    config = collector.load_config(None, env={"SHIPYARD_COLLECTOR_ROOT": str(root)})
    coll = collector.Collector(config)
    coll.router.open()
    return coll


def run_collector(coll: collector.Collector, data: list[bytes]) -> tuple[float, float, int]:
    """Each socket read decoded, then stored, as the connection handler does it.

    Returns the CPU seconds of decoding and of storing, and the lines stored.
    Timing each read keeps a read's frames alive only until they are stored,
    as in the collector, so the garbage collector sees the same heap.
    """
    decoder = FrameDecoder(coll.config.limits)
    decoding = storing = 0.0
    lines = 0
    for chunk in data:
        began = time.process_time()
        decoder.feed(chunk)
        frames = []
        while decoder.busy:
            frames += decoder.step()
        decoded = time.process_time()
        lines += coll.router.store(frames, "127.0.0.1").lines
        decoding += decoded - began
        storing += time.process_time() - decoded
    return decoding, storing, lines


def run_naive_collector(messages: list[bytes], out: Path) -> None:
    with out.open("w", encoding="utf-8") as file:
        for message in messages:
            tag, seconds, record = msgpack.unpackb(message, raw=False)
            file.write(f"{seconds}\t{tag}\t{json.dumps(record)}\n")


# ------------------------------------------------------------------ measuring


def cpu(func: Callable[[], Any], profile: cProfile.Profile | None) -> tuple[float, Any]:
    began = time.process_time()
    result = func() if profile is None else profile.runcall(func)
    return time.process_time() - began, result


def socket_reads(sent: list[Sent]) -> list[bytes]:
    """One read per batch: the agent sends a batch's frames in one sendall."""
    return [b"".join(data for _, data in s.frames) for s in sent]


def measure(options: argparse.Namespace, workdir: Path) -> dict[str, float]:
    log = workdir / "access.log"
    write_access_log(log, options.lines)
    config = agent_config(workdir, log)
    profiles = {name: cProfile.Profile() for name in ("agent", "collector")}
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    for run in range(options.repeat):
        profile = profiles if options.profile and run == 0 else {}
        seconds, sent = cpu(lambda: run_agent(config), profile.get("agent"))
        keep("agent", seconds)
        seconds, messages = cpu(lambda: run_naive_agent(log), None)
        keep("agent.naive", seconds)

        coll = new_collector(workdir / f"store{run}")
        data = socket_reads(sent)
        prof = profile.get("collector")
        _, (decoding, storing, lines) = cpu(lambda c=coll, d=data: run_collector(c, d), prof)
        keep("collector.decode", decoding)
        keep("collector.store", storing)
        coll.router.close()
        if lines != options.lines:
            sys.exit(f"the collector stored {lines} of {options.lines} lines")
        seconds, _ = cpu(lambda m=messages: run_naive_collector(m, workdir / "naive.log"), None)
        keep("coll.naive", seconds)
    best["collector"] = best["collector.decode"] + best["collector.store"]
    if options.profile:
        for name, prof in profiles.items():
            prof.dump_stats(f"{options.profile}.{name}")
            print(f"\n== {name} (cProfile, first run)")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    return best


def print_table(best: dict[str, float], lines: int) -> None:
    print(f"{'path':<20} {'us/line':>8} {'lines/s/core':>13}")
    order = ["agent", "agent.naive", "collector", "collector.decode", "collector.store"]
    for name in [*order, "coll.naive"]:
        per_line = best[name] / lines * 1e6
        label = name if name in ("agent", "collector") or "naive" in name else "  " + name
        print(f"{label:<20} {per_line:>8.2f} {1e6 / per_line:>13,.0f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="where the log and the slices go (default: a temp dir)")
    parser.add_argument("--profile", help="also profile the first run; stats to PATH.<path>")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.lines % 500:
        sys.exit("--lines must be a multiple of 500")
    with tempfile.TemporaryDirectory(dir=options.dir, prefix="logs_cpu.") as tmp:
        best = measure(options, Path(tmp))
    print(f"\n{options.lines} lines, best of {options.repeat} runs, process CPU")
    print_table(best, options.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Log shipping: shipyard's agent and collector against a naive tail-and-send script.

Both run as host processes into the real collector (files only, nothing is
uploaded), each in its own temporary directory:

  shipyard  python -m shipyard_logs.agent: in_tail, apache2 parser, batches of
            gzip'd PackedForward with chunk ids, positions moved after the ack
  shipyard-tls  the same, with TLS (verified against a CA made for the run) and
            the <security> shared-key handshake, as the dev environment ships
  naive     this script as a sender: tail -F by polling, the same apache2
            parser, one Forward Message per line over TCP, no batching, no acks

A writer process appends LINES Apache combined-format lines to access.log,
each carrying a unique id and the writer's wall-clock time in its path
(/item?id=0000123&t=1700000000.123456). This process tails the collector's
slice files and records when each id first appears, so latency is "in the
slice file" minus "written to the log". Two phases per system:

  max   the writer appends as fast as it can: sustained throughput (latency
        there is mostly queueing behind the backlog)
  rate  the writer paces itself at RATE lines/s: latency at that load

Throughput is lines seen / (last appearance - first write). CPU is user+sys of
the shipping process over the phase (/proc/<pid>/stat), RSS its VmHWM. Systems
alternate within every run, so drift in the load of a shared machine hits both;
figures are medians over RUNS.

Usage: bench/logs.py [--lines 200000] [--rate 50000] [--runs 1] [--phases max,rate]
                     [--agent-set batch_lines=5000] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMON = ROOT / "images/common"
TAG = "apache.access"
HOST = "bench"
ID_DIGITS = 7
# The slice line is `time<TAB>tag<TAB>json`; a regex over whole chunks keeps this
# process cheap, since it shares the two cores with the pipeline it measures.
ID_AND_TIME = re.compile(rb"id=(\d{%d})&t=(\d+\.\d+)" % ID_DIGITS)
WARMUP_ID = "warmup"
POLL = 0.02
GOAL_LINES_PER_S = 50_000
GOAL_P99_S = 2.0
GOAL_RSS_MB = 30.0
AGENTS = ("shipyard", "shipyard-tls", "naive")
GOAL_TLS_COST = 0.15  # TLS and the shared key may cost at most this share of throughput
TLS_KEY = "bench-shared-key"


class BenchError(Exception):
    """A run that cannot give a figure: the message says why."""


# ------------------------------------------------------------------ the writer


def access_line(i: int, stamp: float, clf: str) -> str:
    """A combined-format line, varied like real traffic so parsing costs what it would."""
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    code, size = ("200", str(512 + i % 40000)) if i % 10 else ("304", "-")
    user = "alice" if i % 50 == 0 else "-"
    return (
        f'{ip} - {user} [{clf}] "GET /item?id={i:0{ID_DIGITS}d}&t={stamp:.6f} HTTP/1.1" '
        f'{code} {size} "https://shop.example.com/list?page={i % 97}" '
        '"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) '
        'Chrome/124.0.0.0 Safari/537.36"\n'
    )


def clf_now(now: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


def write_lines(path: str, lines: int, rate: float) -> None:
    """Append `lines` lines, paced at `rate` lines/s (0: as fast as possible).

    Lines go out in small groups, one write() each and stamped just before it,
    like a busy Apache whose children each append whole lines.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    began = time.time()
    written = 0
    while written < lines:
        now = time.time()
        due = lines if rate <= 0 else min(lines, int((now - began) * rate) + 1)
        if due <= written:
            time.sleep(0.002)
            continue
        upto = min(due, written + 500)
        clf = clf_now(now)
        data = "".join(access_line(i, now, clf) for i in range(written, upto))
        os.write(fd, data.encode())
        written = upto
    os.close(fd)


# ------------------------------------------------------------------ the naive sender


class Stop:
    """Set by SIGTERM/SIGINT, so the loop ends between two lines."""

    def __init__(self) -> None:
        self.set = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.set = True


def naive_send(path: str, port: int, poll: float) -> None:
    """tail -F by polling, parse, and one Message per line: the afternoon version."""
    # Imported here: only this role needs them, and PYTHONPATH is set for it.
    import msgpack
    from shipyard_logs.parsers import parse_apache2

    stop = Stop()
    sock = socket.create_connection(("127.0.0.1", port))
    file = Path(path).open("rb")  # noqa: SIM115 - reopened on rotation
    partial = b""
    while not stop.set:
        chunk = file.readline()
        if chunk.endswith(b"\n"):
            line = (partial + chunk).decode("utf-8", "backslashreplace").rstrip("\r\n")
            partial = b""
            parsed = parse_apache2(line)
            if parsed is None:
                unparsed = [TAG + ".unparsed", int(time.time()), {"message": line}]
                sock.sendall(msgpack.packb(unparsed))
                continue
            stamp, record = parsed
            record["source_host"] = HOST
            sock.sendall(msgpack.packb([TAG, stamp.seconds, record]))
            continue
        partial += chunk
        file = reopen_if_rotated(file, path)
        time.sleep(poll)
    sock.close()


def reopen_if_rotated(file: Any, path: str) -> Any:  # noqa: ANN401 - a binary file object
    """tail -F: follow the name when the inode changes or the file shrinks."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return file
    if st.st_ino != os.fstat(file.fileno()).st_ino or st.st_size < file.tell():
        file.close()
        return Path(path).open("rb")
    return file


# ------------------------------------------------------------------ processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def check(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")


class Procs:
    """Every child of a measurement; all stopped on the way out, whatever happened."""

    def __init__(self, workdir: Path, code: Path = COMMON) -> None:
        self.workdir = workdir
        self.code = code  # where shipyard_logs is: this tree's, or another one's to compare
        self.started: list[Proc] = []

    def start(self, name: str, args: list[str]) -> Proc:
        log = self.workdir / f"{name}.log"
        env = dict(os.environ, PYTHONPATH=str(self.code), PYTHONDONTWRITEBYTECODE="1")
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):  # the senders before the collector
            proc.stop()


def free_port() -> int:
    """Free for TCP and UDP on 127.0.0.1: the collector answers heartbeats on the same port."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise BenchError("no port free for both TCP and UDP in 50 tries")


def wait_for_port(port: int, proc: Proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise BenchError(f"the collector did not listen on {port} within {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process; fields counted after the ')' of its name."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------ configs


def load_test_pki(directory: Path) -> Any:  # noqa: ANN401 - tests/logs/pki.py's Pki
    """The tests' small CA (tests/logs/pki.py), loaded by its path: bench and tests share it."""
    spec = importlib.util.spec_from_file_location("pki", ROOT / "tests" / "logs" / "pki.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pki"] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module.make_pki(directory)


def secure(workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The collector's and the agent's settings for TLS and the shared key."""
    pki = load_test_pki(workdir / "pki")
    key = workdir / "shared_key"
    key.write_text(TLS_KEY)
    collector = {
        "security": {"self_hostname": "collector", "shared_key_file": str(key)},
        "transport": {
            "tls": True,
            "cert_path": str(pki.server.cert),
            "private_key_path": str(pki.server.key),
        },
    }
    agent = {
        "collector_host": "localhost",
        "shared_key_file": str(key),
        "tls": True,
        "tls_ca_path": str(pki.ca),
    }
    return collector, agent


def collector_config(workdir: Path, port: int, extra: dict[str, Any]) -> Path:
    path = workdir / "collector.json"
    config = {
        "bind": "127.0.0.1",
        "port": port,
        "root": str(workdir / "store"),
        "time_slice_wait": 30 * 86400,  # the longest allowed: nothing is closed, nothing uploaded
        "heartbeat": False,  # no UDP socket needed, one port fewer to collide
        "log_level": "INFO",
        **extra,
    }
    path.write_text(json.dumps(config))
    return path


def agent_config(workdir: Path, port: int, log: Path, overrides: dict[str, Any]) -> Path:
    path = workdir / "agent.json"
    config = {
        "collector_host": "127.0.0.1",
        "collector_port": port,
        "pos_dir": str(workdir / "pos"),
        "host": HOST,
        "log_level": "INFO",
        **overrides,
        "sources": [{"path": str(log), "tag": TAG, "format": "apache2", "read_from_head": True}],
    }
    path.write_text(json.dumps(config))
    return path


def sender_args(
    agent: str,
    workdir: Path,
    port: int,
    log: Path,
    options: argparse.Namespace,
    extra: dict[str, Any],
) -> list[str]:
    if agent == "naive":
        return [__file__, "--role", "naive", "--path", str(log), "--port", str(port)]
    config = agent_config(workdir, port, log, {**extra, **options.agent_set})
    args = ["-m", "shipyard_logs.agent", "--config", str(config)]
    if options.profile:
        return ["-m", "cProfile", "-o", str(workdir / "agent.prof"), *args]
    return args


# ------------------------------------------------------------------ watching the output


class SliceTail:
    """Follows every slice file under the collector's root and notes when ids appear."""

    def __init__(self, root: Path, lines: int) -> None:
        self.root = root
        self.offsets: dict[Path, int] = {}
        self.partial: dict[Path, bytes] = {}
        self.counts = bytearray(lines)
        self.latency = [0.0] * lines
        self.written = [0.0] * lines
        self.seen = 0
        self.last_new = 0.0
        self.overflow = 0  # ids beyond --lines would mean a broken line

    def poll(self) -> int:
        new = 0
        for path in sorted(self.root.glob("logs/*/*.log")):
            new += self._read(path)
        return new

    def contains(self, needle: bytes) -> bool:
        return any(needle in path.read_bytes() for path in self.root.glob("logs/*/*.log"))

    def _read(self, path: Path) -> int:
        offset = self.offsets.get(path, 0)
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read()
        if not data:
            return 0
        self.offsets[path] = offset + len(data)
        data = self.partial.pop(path, b"") + data
        end = data.rfind(b"\n") + 1
        if end < len(data):
            self.partial[path] = data[end:]
        now = time.time()
        new = 0
        for raw_id, raw_t in ID_AND_TIME.findall(data, 0, end):
            new += self._note(int(raw_id), float(raw_t), now)
        return new

    def _note(self, ident: int, written: float, now: float) -> int:
        if ident >= len(self.counts):
            self.overflow += 1
            return 0
        count = self.counts[ident]
        self.counts[ident] = min(count + 1, 255)
        if count:
            return 0
        self.latency[ident] = now - written
        self.written[ident] = written
        self.seen += 1
        self.last_new = now
        return 1


def validate(root: Path) -> int:
    """Lines that are not `time<TAB>apache.access<TAB>{json with the apache2 fields}`."""
    bad = 0
    wanted = {"host", "user", "method", "path", "code", "size", "referer", "agent"}
    for path in root.glob("logs/*/*.log"):
        with path.open(encoding="utf-8") as file:
            for line in file:
                parts = line.rstrip("\n").split("\t", 2)
                ok = len(parts) == 3 and parts[1] == TAG
                ok = ok and wanted <= json.loads(parts[2]).keys()
                bad += not ok and WARMUP_ID not in line
    return bad


# ------------------------------------------------------------------ one measurement


@dataclass
class Result:
    agent: str
    phase: str
    lines: int
    throughput: float
    p50: float
    p99: float
    max: float
    missing: int
    duplicates: int
    cpu: float
    rss: float
    collector_cpu: float
    malformed: int


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def warm_up(log: Path, tail: SliceTail, procs: list[Proc], timeout: float = 30.0) -> None:
    """One line through the whole pipeline: both ends are up and connected."""
    with log.open("a") as file:
        now = time.time()
        file.write(access_line(0, now, clf_now(now)).replace("id=0000000", f"id={WARMUP_ID}"))
    deadline = time.monotonic() + timeout
    while not tail.contains(f"id={WARMUP_ID}".encode()):
        for proc in procs:
            proc.check()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in procs)
            raise BenchError(
                f"the warm-up line did not reach the slice file in {timeout:.0f} s\n{logs}"
            )
        time.sleep(0.05)
    tail.poll()  # move past the warm-up line


def follow(tail: SliceTail, writer: Proc, watched: list[Proc], options: argparse.Namespace) -> None:
    """Poll until every id is in, or the output stalls after the writer is done."""
    began = last_progress = time.monotonic()
    total = len(tail.counts)
    writer_done = False
    while True:
        new = tail.poll()
        now = time.monotonic()
        if new:
            last_progress = now
        for proc in watched:
            proc.check()
        if not writer_done and not writer.alive():
            if writer.popen.returncode != 0:
                raise BenchError(f"the writer failed:\n{writer.log_tail()}")
            writer_done, last_progress = True, now
        if tail.seen >= total:
            time.sleep(options.linger)  # a late resend would show up as a duplicate
            tail.poll()
            return
        if writer_done and now - last_progress > options.settle:
            return  # what is still missing is lost
        if now - began > options.timeout:
            raise BenchError(
                f"timed out after {options.timeout:.0f} s with {tail.seen}/{total} lines in; "
                "raise --timeout or lower --lines"
            )
        time.sleep(POLL)


def measure(agent: str, phase: str, options: argparse.Namespace) -> Result:
    rate = options.rate if phase == "rate" else 0.0
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-logs-") as tmp:
        workdir = Path(tmp)
        procs = Procs(workdir)
        try:
            return _measure(agent, phase, rate, workdir, procs, options)
        finally:
            procs.stop_all()
            if options.profile and agent == "shipyard" and (workdir / "agent.prof").exists():
                print_profile(workdir / "agent.prof", phase)


def _measure(
    agent: str,
    phase: str,
    rate: float,
    workdir: Path,
    procs: Procs,
    options: argparse.Namespace,
) -> Result:
    port = free_port()
    log = workdir / "access.log"
    log.touch()
    collector_extra, agent_extra = secure(workdir) if agent == "shipyard-tls" else ({}, {})
    collector = procs.start(
        "collector",
        [
            "-m",
            "shipyard_logs.collector",
            "--config",
            str(collector_config(workdir, port, collector_extra)),
        ],
    )
    wait_for_port(port, collector)
    sender = procs.start(agent, sender_args(agent, workdir, port, log, options, agent_extra))
    tail = SliceTail(workdir / "store", options.lines)
    warm_up(log, tail, [collector, sender])
    cpu0, collector_cpu0 = cpu_seconds(sender.popen.pid), cpu_seconds(collector.popen.pid)
    writer = procs.start(
        "writer",
        [
            __file__,
            "--role",
            "writer",
            "--path",
            str(log),
            "--lines",
            str(options.lines),
            "--rate",
            str(rate),
        ],
    )
    follow(tail, writer, [collector, sender], options)
    cpu = cpu_seconds(sender.popen.pid) - cpu0
    collector_cpu = cpu_seconds(collector.popen.pid) - collector_cpu0
    rss = peak_rss_mb(sender.popen.pid)
    return summarise(agent, phase, tail, cpu, rss, collector_cpu)


def summarise(
    agent: str, phase: str, tail: SliceTail, cpu: float, rss: float, collector_cpu: float
) -> Result:
    seen = [i for i, count in enumerate(tail.counts) if count]
    latencies = sorted(tail.latency[i] for i in seen)
    first = min((tail.written[i] for i in seen), default=0.0)
    span = tail.last_new - first
    return Result(
        agent=agent,
        phase=phase,
        lines=len(tail.counts),
        throughput=len(seen) / span if seen and span > 0 else 0.0,
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        max=latencies[-1] if latencies else float("nan"),
        missing=len(tail.counts) - len(seen),
        duplicates=sum(count - 1 for count in tail.counts if count > 1) + tail.overflow,
        cpu=cpu,
        rss=rss,
        collector_cpu=collector_cpu,
        malformed=validate(tail.root),
    )


def print_profile(path: Path, phase: str) -> None:
    import pstats

    print(f"\n--- agent profile, phase {phase} (cProfile, top 25 by own time)", file=sys.stderr)
    stats = pstats.Stats(str(path), stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


# ------------------------------------------------------------------ the report


@dataclass
class Metric:
    label: str
    attr: str
    fmt: str
    total: bool = False  # summed over runs (loss), not a median


METRICS = [
    Metric("throughput (lines/s)", "throughput", "{:,.0f}"),
    Metric("latency p50 (s)", "p50", "{:.3f}"),
    Metric("latency p99 (s)", "p99", "{:.3f}"),
    Metric("latency max (s)", "max", "{:.3f}"),
    Metric("missing (all runs)", "missing", "{:d}", total=True),
    Metric("duplicates (all runs)", "duplicates", "{:d}", total=True),
    Metric("malformed lines (all runs)", "malformed", "{:d}", total=True),
    Metric("sender CPU (s)", "cpu", "{:.2f}"),
    Metric("sender peak RSS (MB)", "rss", "{:.1f}"),
    Metric("collector CPU (s)", "collector_cpu", "{:.2f}"),
]


@dataclass
class Runs:
    results: list[Result] = field(default_factory=list)

    def value(self, agent: str, phase: str, metric: Metric) -> float:
        values = [
            getattr(r, metric.attr) for r in self.results if r.agent == agent and r.phase == phase
        ]
        if not values:
            return float("nan")
        return sum(values) if metric.total else statistics.median(values)

    def worst(self, agent: str, attr: str) -> float:
        return max(getattr(r, attr) for r in self.results if r.agent == agent)


def ratio(naive: float, shipyard: float) -> str:
    if naive != naive or shipyard != shipyard:  # NaN: one side was not run
        return "n/a"
    if shipyard == 0:
        return "n/a" if naive == 0 else "inf"
    return f"{naive / shipyard:.2f}x"


def print_table(runs: Runs, phase: str, options: argparse.Namespace) -> None:
    load = "as fast as possible" if phase == "max" else f"paced at {options.rate:,.0f} lines/s"
    print(
        f"\nphase {phase}: {options.lines:,} lines written {load}, {options.runs} run(s), medians\n"
    )
    print("| metric | shipyard | shipyard TLS+key | naive | TLS+key/shipyard | naive/shipyard |")
    print("|---|---:|---:|---:|---:|---:|")
    for metric in METRICS:
        ours = runs.value("shipyard", phase, metric)
        secured = runs.value("shipyard-tls", phase, metric)
        theirs = runs.value("naive", phase, metric)
        cells = [fmt_value(metric, v) for v in (ours, secured, theirs)]
        print(
            f"| {metric.label} | {cells[0]} | {cells[1]} | {cells[2]} "
            f"| {ratio(secured, ours)} | {ratio(theirs, ours)} |"
        )


def fmt_value(metric: Metric, value: float) -> str:
    if value != value:  # NaN: nothing measured
        return "n/a"
    return metric.fmt.format(int(value) if metric.fmt == "{:d}" else value)


def print_goals(runs: Runs, options: argparse.Namespace) -> None:
    print("\ngoals (shipyard):")
    goals: list[tuple[str, float | None, bool | None]] = []
    phases = set(options.phases)
    if "max" in phases:
        got = runs.value("shipyard", "max", METRICS[0])
        goals.append((f">= {GOAL_LINES_PER_S:,} lines/s sustained", got, got >= GOAL_LINES_PER_S))
    if "rate" in phases:
        got = runs.value("shipyard", "rate", METRICS[2])
        goals.append(
            (f"p99 <= {GOAL_P99_S} s at {options.rate:,.0f} lines/s", got, got <= GOAL_P99_S)
        )
    ours = [a for a in ("shipyard", "shipyard-tls") if a in options.agents]
    lost = sum(r.missing + r.duplicates for r in runs.results if r.agent in ours)
    goals.append(("zero loss, zero duplicates (every run)", lost, lost == 0))
    rss = max(runs.worst(a, "rss") for a in ours)
    goals.append((f"agent peak RSS <= {GOAL_RSS_MB:.0f} MB (worst run)", rss, rss <= GOAL_RSS_MB))
    if "max" in phases and set(ours) == {"shipyard", "shipyard-tls"}:
        plain = runs.value("shipyard", "max", METRICS[0])
        secured = runs.value("shipyard-tls", "max", METRICS[0])
        cost = 1 - secured / plain if plain else float("nan")
        goals.append(
            (
                f"TLS + shared key cost <= {GOAL_TLS_COST:.0%} of throughput",
                cost,
                cost <= GOAL_TLS_COST,
            )
        )
    for label, got, met in goals:
        print(f"  {label}: {got:,.3f} -> {'met' if met else 'NOT met'}")


# ------------------------------------------------------------------ main


def agent_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--agent-set key=value`, the value read as JSON when it parses (numbers, booleans)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--agent-set wants key=value, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200_000, help="lines per phase (200000)")
    parser.add_argument(
        "--rate",
        type=float,
        default=float(GOAL_LINES_PER_S),
        help="lines/s of the rate phase (50000, the goal)",
    )
    parser.add_argument("--runs", type=int, default=1, help="repetitions; medians (1)")
    parser.add_argument("--phases", default="max,rate", help="max,rate (both)")
    parser.add_argument(
        "--agents", default=",".join(AGENTS), help="shipyard,shipyard-tls,naive (all three)"
    )
    parser.add_argument(
        "--agent-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an agent setting, e.g. batch_lines=5000",
    )
    parser.add_argument("--profile", action="store_true", help="run the agent under cProfile")
    parser.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help="seconds without new lines, after the writer is done, "
        "before the rest counts as lost (20)",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=1.0,
        help="seconds to watch for duplicates once all are in (1)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase (600)")
    # The writer and the naive sender are this script in another process.
    parser.add_argument("--role", choices=("writer", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.phases = [p for p in args.phases.split(",") if p]
    args.agents = [a for a in args.agents.split(",") if a]
    if not set(args.phases) <= {"max", "rate"} or not set(args.agents) <= set(AGENTS):
        parser.error("--phases takes max,rate and --agents shipyard,shipyard-tls,naive")
    if args.lines <= 0 or args.lines >= 10**ID_DIGITS:
        parser.error(f"--lines must be between 1 and {10**ID_DIGITS - 1}")
    try:
        args.agent_set = agent_overrides(args.agent_set)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    return args


def run_all(options: argparse.Namespace) -> Runs:
    runs = Runs()
    for run in range(options.runs):
        for phase in options.phases:
            for agent in options.agents:  # alternate, so load drift hits both alike
                result = measure(agent, phase, options)
                runs.results.append(result)
                print(
                    f"  run {run + 1} {phase:<4} {agent:<8} {result.throughput:>9,.0f} lines/s"
                    f"  p99 {result.p99:6.3f} s  missing {result.missing}"
                    f"  dup {result.duplicates}  cpu {result.cpu:.2f} s  rss {result.rss:.1f} MB",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop children and remove files."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.role == "writer":
        write_lines(options.path, options.lines, options.rate)
        return 0
    if options.role == "naive":
        naive_send(options.path, options.port, 0.25)
        return 0
    try:
        import msgpack  # noqa: F401 - the children need it
    except ImportError:
        sys.exit("msgpack is missing: run this with the project's .venv/bin/python")
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start "
        "(the machine is shared: compare ratios, not absolutes)",
        flush=True,
    )
    try:
        with sigterm_as_exit():
            runs = run_all(options)
    except BenchError as exc:
        sys.exit(f"bench/logs.py: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted; children stopped, temporary files removed")
    for phase in options.phases:
        print_table(runs, phase, options)
    if {"shipyard", "shipyard-tls"} & set(options.agents):
        print_goals(runs, options)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

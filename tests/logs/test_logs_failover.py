"""Two collectors per agent: failover, return, and every line once in the daily merge.

The rules of the pool (weights, standbys, the phi accrual detector, recovery)
run in process on an injected clock. Everything else runs real programs: the
agent, two collector processes, moto's S3 server and the daily merge, with a
TCP proxy in front of collector A that can hold its acks back (the state a
lost ack or a collector dying between its write and its ack leaves).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from logs_harness import (
    COMMON,
    PYTHON,
    ROOT,
    S3_ENV,
    Collector,
    MotoServer,
    Program,
    apache_line,
    toml,
    wait_for,
)
from pki import make_pki
from shipyard_logs.agent.balance import Pool
from shipyard_logs.agent.servers import HeartbeatConfig, ServerConfig

ID = re.compile(r"id=(\d+)")
DAY = "2026-11-20"  # apache_line's default time: a closed slice, uploaded at once


# ------------------------------------------------------------------ the pool, in process


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool(*servers: ServerConfig, **heartbeat: object) -> tuple[Pool, Clock]:
    clock = Clock()
    config = HeartbeatConfig(**{"interval": 1.0, "recover_wait": 3.0, **heartbeat})  # type: ignore[arg-type]
    return Pool(servers, config, retry_max_interval=5.0, clock=clock), clock


def picks(pool: Pool, count: int) -> list[str]:
    return [node.server.name if (node := pool.select()) else "-" for _ in range(count)]


def test_batches_go_round_the_servers_by_weight_interleaved():
    p, _ = pool(
        ServerConfig("a", 1, name="a", weight=60), ServerConfig("b", 1, name="b", weight=40)
    )
    assert picks(p, 5) == ["a", "b", "a", "b", "a"]
    assert Counter(picks(p, 500)) == {"a": 300, "b": 200}


def test_a_standby_stands_in_only_while_a_regular_server_is_detached():
    a, b = ServerConfig("a", 1, name="a"), ServerConfig("b", 1, name="b", standby=True)
    p, clock = pool(a, b)
    assert set(picks(p, 10)) == {"a"}
    p.failed(p.nodes[0], "connection refused")
    assert set(picks(p, 10)) == {"b"}
    # Back after recover_wait / interval heartbeat answers, not at the first one.
    for _ in range(3):
        clock.now += 1
        p.heartbeat(p.nodes[0], clock.now)
    assert not p.nodes[0].available
    clock.now += 1
    p.heartbeat(p.nodes[0], clock.now)
    assert p.nodes[0].available
    assert set(picks(p, 10)) == {"a"}


def test_missed_heartbeats_detach_by_phi_before_hard_timeout():
    p, clock = pool(ServerConfig("a", 1, name="a"), ServerConfig("b", 1, name="b"))
    for _ in range(30):
        clock.now += 1
        for node in p.nodes:
            p.heartbeat(node, clock.now)
    detached_at = None
    while detached_at is None and clock.now < 2000:
        clock.now += 0.5
        p.heartbeat(p.nodes[1], clock.now)  # b keeps answering, a is silent
        if p.tick(clock.now):
            detached_at = clock.now
    assert detached_at is not None
    silent = detached_at - (1000 + 30)
    # phi_threshold 16 at a steady 1 s interval: about 37 s, under hard_timeout's 60.
    assert 30 <= silent <= 45, silent
    assert "phi" in p.nodes[0].reason
    assert [n.server.name for n in p.rotation()] == ["b"]


def test_without_the_phi_detector_hard_timeout_detaches():
    p, clock = pool(
        ServerConfig("a", 1, name="a"),
        ServerConfig("b", 1, name="b"),
        phi_failure_detector=False,
        hard_timeout=5.0,
    )
    clock.now += 4.9
    assert p.tick(clock.now) == []
    clock.now += 0.2
    assert {n.server.name for n in p.tick(clock.now)} == {"a", "b"}
    assert "hard_timeout (5 s)" in p.nodes[0].reason


def test_with_every_server_detached_the_first_to_answer_is_attached_at_once():
    p, clock = pool(ServerConfig("a", 1, name="a"), ServerConfig("b", 1, name="b"))
    for node in p.nodes:
        p.failed(node, "connection refused")
    assert p.select() is None
    clock.now += 1
    p.heartbeat(p.nodes[1], clock.now)
    assert picks(p, 3) == ["b", "b", "b"]


@pytest.mark.parametrize(
    "key",
    [
        "logs/20261120/web1-10.log.gz",
        "logs/20261120/web1-10.000000004096.log.gz",
        "logs/20261120/web1-10@log-a.log.gz",
        "logs/20261120/web1-10@log-b.000000004096.log.gz",
    ],
)
def test_the_merge_reads_every_collectors_parts_as_one_slice(key):
    from shipyard_analytics.sources import make_layout, parse_name

    assert parse_name(make_layout(), key) == ("web1", 1795168800)


# ------------------------------------------------------------------ real programs


class AckHold:
    """A TCP proxy in front of a collector that forwards frames and can swallow the acks.

    With `hold` set, what the collector answers is dropped: it stores the
    frames and the agent never hears so. `down()` closes the port and every
    connection (a host gone), `up()` opens the same port again.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.hold = threading.Event()
        self.port = 0
        self.held = 0  # bytes of acks swallowed
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def down(self) -> None:
        self.server.close()
        with self._lock:
            socks, self._socks = self._socks, set()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks |= {client, up}
            threading.Thread(target=self._pump, args=(client, up, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, acks: bool) -> None:
        try:
            while data := src.recv(65536):
                if acks and self.hold.is_set():
                    self.held += len(data)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class Agent(Program):
    def __init__(self, workdir: Path, servers: list[dict[str, object]], **settings: object):
        self.logdir = workdir / "logs"
        self.logdir.mkdir()
        self.pos_dir = workdir / "pos"
        config = {
            "pos_dir": str(self.pos_dir),
            "host": "web1",
            "batch_lines": 200,
            "flush_interval": 0.1,
            "poll_interval": 0.05,
            "refresh_interval": 0.2,
            "ack_timeout": 2.0,
            "connect_timeout": 1.0,
            "retry_max_interval": 0.5,
            "heartbeat_interval": 0.2,
            "recover_wait": 1.0,
            "hard_timeout": 3.0,
            **settings,
            "servers": servers,
            "sources": [
                {
                    "path": str(self.logdir / "access.log"),
                    "tag": "apache.access",
                    "format": "apache2",
                    "read_from_head": True,
                }
            ],
        }
        path = workdir / "agent.toml"
        path.write_text(toml(config))
        super().__init__("agent", path, workdir / "agent.log")

    def stats(self) -> dict:
        path = self.pos_dir / "stats.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def attached(self) -> dict[str, bool]:
        return {s["name"]: s["attached"] for s in self.stats().get("servers", [])}


class Writer:
    def __init__(self, path: Path) -> None:
        self.handle = path.open("a", buffering=1)
        self.next_id = 0

    def write(self, count: int) -> None:
        for _ in range(count):
            self.handle.write(apache_line(self.next_id) + "\n")
            self.next_id += 1


def ids_in(collector: Collector) -> Counter[int]:
    found: Counter[int] = Counter()
    for _, _, body in collector.lines():
        if match := ID.search(json.loads(body).get("path", "")):
            found[int(match.group(1))] += 1
    return found


def server(name: str, port: int, **extra: object) -> dict[str, object]:
    return {"name": name, "host": "127.0.0.1", "port": port, **extra}


@pytest.fixture
def pair(tmp_path, collector_factory):
    """Collectors A (behind an AckHold proxy) and B; A is not started."""
    a = collector_factory(time_slice_wait=3600)
    b = collector_factory(time_slice_wait=3600).start()
    proxy = AckHold(a.port)
    try:
        yield a, b, proxy
    finally:
        proxy.down()


def test_a_collector_that_refuses_connections_is_detached_and_comes_back(tmp_path, pair):
    a, b, _ = pair
    agent = Agent(tmp_path, [server("a", a.port), server("b", b.port)])
    writer = Writer(agent.logdir / "access.log")
    agent.start()
    try:
        writer.write(2000)
        wait_for(lambda: len(ids_in(b)) >= 2000, 30, "every line at B while A is down")
        wait_for(lambda: agent.attached() == {"a": False, "b": True}, 10, "A detached in stats")
        a.start()
        wait_for(lambda: agent.attached() == {"a": True, "b": True}, 20, "A attached again")
        writer.write(2000)
        wait_for(lambda: len(ids_in(a) + ids_in(b)) >= 4000, 30, "every line")
        time.sleep(0.5)
        both = ids_in(a) + ids_in(b)
    finally:
        agent.stop()
    assert set(both) == set(range(4000))
    assert set(both.values()) == {1}, "a line went to both collectors"
    assert len(ids_in(a)) > 500, "A took no share after it came back"
    assert "collector a (127.0.0.1:" in agent.output()
    assert "is back" in agent.output()


def test_transport_heartbeats_over_tls_and_the_handshake_bring_a_collector_back_quietly(
    tmp_path, collector_factory
):
    """Each heartbeat is a whole TLS connection and handshake; the collectors log none of them."""
    pki = make_pki(tmp_path / "pki")
    key = tmp_path / "shared_key"
    key.write_text("failover-shared-key\n")
    key.chmod(0o600)
    secure = {
        "security": {"self_hostname": "collector", "shared_key_file": str(key)},
        "transport": {
            "tls": True,
            "cert_path": str(pki.server.cert),
            "private_key_path": str(pki.server.key),
        },
    }
    a = collector_factory(time_slice_wait=3600, **secure)
    b = collector_factory(time_slice_wait=3600, **secure).start()
    agent = Agent(
        tmp_path,
        [
            {"name": "a", "host": "localhost", "port": a.port},
            {"name": "b", "host": "127.0.0.1", "port": b.port, "tls_server_name": "localhost"},
        ],
        shared_key_file=str(key),
        tls=True,
        tls_ca_path=str(pki.ca),
    )
    writer = Writer(agent.logdir / "access.log")
    agent.start()
    try:
        writer.write(1000)
        wait_for(lambda: len(ids_in(b)) >= 1000, 30, "every line at B while A is down")
        a.start()
        wait_for(lambda: agent.attached() == {"a": True, "b": True}, 20, "A attached again")
        time.sleep(2)  # ten more heartbeats to each
        writer.write(2000)
        wait_for(lambda: len(ids_in(a) + ids_in(b)) >= 3000, 30, "every line")
    finally:
        agent.stop()
    assert ids_in(a), "A took no share after it came back"
    assert set(ids_in(a) + ids_in(b)) == set(range(3000))
    for collector in (a, b):
        assert " WARNING " not in collector.output(), collector.output()[-2000:]


def test_no_ack_within_ack_timeout_fails_over_with_the_same_chunk_ids(tmp_path, pair):
    a, b, proxy = pair
    a.start()
    proxy.hold.set()
    agent = Agent(tmp_path, [server("a", proxy.port), server("b", b.port)], ack_timeout=1.0)
    writer = Writer(agent.logdir / "access.log")
    agent.start()
    try:
        writer.write(3000)
        wait_for(lambda: len(ids_in(b)) >= 3000, 30, "every line at B")
        time.sleep(0.5)
    finally:
        agent.stop()
    assert "no ack within 1s" in agent.output()
    assert proxy.held > 0
    at_a, at_b = ids_in(a), ids_in(b)
    assert at_a, "A never stored what it did not ack"
    # What A stored without its ack reaching the agent went to B under the
    # same chunk ids: the record ids agree, so the merge keeps one.
    assert set(at_b) == set(range(3000))
    assert set(at_b.values()) == {1}
    ids_a = record_ids(a, set(at_a))
    assert ids_a and ids_a <= record_ids(b, set(at_a))


def record_ids(collector: Collector, lines: set[int]) -> set[str]:
    found = set()
    for _, _, body in collector.lines():
        record = json.loads(body)
        if (match := ID.search(record.get("path", ""))) and int(match.group(1)) in lines:
            found.add(record["_record_id"])
    return found


def test_missed_heartbeats_detach_a_frozen_collector_before_ack_timeout(tmp_path, pair):
    """A stopped process: TCP still connects to its backlog, UDP heartbeats go unanswered."""
    a, b, _ = pair
    a.start()
    agent = Agent(
        tmp_path,
        [server("a", a.port), server("b", b.port)],
        heartbeat_type="udp",
        ack_timeout=60.0,  # only the heartbeats can tell in time
        hard_timeout=2.0,
    )
    writer = Writer(agent.logdir / "access.log")
    agent.start()
    assert a.proc is not None
    try:
        writer.write(1000)
        wait_for(lambda: len(ids_in(a) + ids_in(b)) >= 1000, 30, "the first lines")
        a.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        writer.write(2000)
        wait_for(lambda: agent.attached().get("a") is False, 15, "A detached")
        detached = time.monotonic() - stopped
        wait_for(lambda: len(set(ids_in(b)) | set(ids_in(a))) >= 3000, 30, "every line")
        a.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: agent.attached() == {"a": True, "b": True}, 20, "A attached again")
    finally:
        with contextlib.suppress(OSError):
            a.proc.send_signal(signal.SIGCONT)
        agent.stop()
    assert detached < 15  # generous: hard_timeout is 2 s, ack_timeout 60 s
    assert (
        "no heartbeat answer for hard_timeout (2 s)" in agent.output()
        or "missed heartbeats" in (agent.output())
    )
    assert set(ids_in(a)) | set(ids_in(b)) == set(range(3000))


def stored(collector: Collector) -> int:
    """Lines the collector stored since it started (its slices go once uploaded)."""
    path = collector.root / ".collector" / "stats.json"
    return json.loads(path.read_text())["lines_total"] if path.exists() else 0


def merge_day(bucket: str, endpoint: str, warehouse: Path) -> Counter[int]:
    """Run the daily merge over the bucket; each line's count in its output."""
    env = {**os.environ, **S3_ENV, "PYTHONPATH": f"{COMMON}{os.pathsep}{ROOT}"}
    run = subprocess.run(
        [
            *(PYTHON, "-m", "shipyard_analytics", "merge", "--date", DAY),
            *("--s3", f"s3://{bucket}", "--warehouse", str(warehouse), "--endpoint-url", endpoint),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    files = [str(p) for p in warehouse.rglob("*.parquet") if "tag=apache.access" in str(p)]
    assert files, run.stderr
    paths = duckdb.connect().execute("SELECT path FROM read_parquet(?)", [files]).fetchall()
    return Counter(int(m.group(1)) for (path,) in paths if (m := ID.search(path or "")))


def objects(s3, bucket: str) -> list[str]:
    with contextlib.suppress(s3.exceptions.NoSuchBucket):
        return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return []


def uploaded_ids(s3, bucket: str) -> Counter[int]:
    found: Counter[int] = Counter()
    for key in objects(s3, bucket):
        text = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).decode()
        found.update(int(m.group(1)) for m in ID.finditer(text))
    return found


def test_collector_killed_mid_stream_every_line_once_in_the_merged_day(
    tmp_path, collector_factory, moto: MotoServer
):
    """SIGKILL collector A with frames stored and not acked, restart it later; merge the day."""
    bucket = f"logs-{uuid.uuid4().hex[:12]}"

    def s3(name: str) -> dict[str, object]:
        return {
            "collector_name": name,
            "time_slice_wait": 1,
            "s3": {
                "bucket": bucket,
                "endpoint_url": moto.url,
                "create_bucket": True,
                "upload_interval": 0.5,
                "retry_max_interval": 1.0,
            },
        }

    a = collector_factory(**s3("log-a")).start()
    b = collector_factory(**s3("log-b")).start()
    proxy = AckHold(a.port)
    agent = Agent(tmp_path, [server("a", proxy.port), server("b", b.port)], ack_timeout=3.0)
    writer = Writer(agent.logdir / "access.log")
    client = moto.client()
    total = 20_000
    agent.start()
    try:
        writer.write(5000)
        wait_for(lambda: stored(a) >= 1500, 30, "A to take its share")
        # A goes on storing what it gets, but its acks are lost, then it dies.
        proxy.hold.set()
        before = stored(a)
        writer.write(3000)
        wait_for(lambda: stored(a) > before + 200, 30, "A to store unacked frames")
        a.kill()
        proxy.down()
        proxy.hold.clear()
        writer.write(7000)
        wait_for(lambda: agent.attached().get("a") is False, 15, "A detached")
        time.sleep(1.0)
        a.start()  # its journal and slices are where it left them
        proxy.up()
        wait_for(lambda: agent.attached() == {"a": True, "b": True}, 30, "A attached again")
        writer.write(total - writer.next_id)
        uploaded = wait_for(
            lambda: len(found := uploaded_ids(client, bucket)) >= total and found,
            90,
            "every line in S3",
            interval=1.0,
        )
    finally:
        agent.stop()
        proxy.down()
    keys = objects(client, bucket)
    assert any("@log-a" in k for k in keys) and any("@log-b" in k for k in keys), keys
    duplicated = sum(n - 1 for n in uploaded.values())
    assert duplicated > 0, "the failover left no duplicate in S3: the merge proved nothing"
    merged = merge_day(bucket, moto.url, tmp_path / "warehouse")
    assert set(merged) == set(range(total)), f"{total - len(merged)} lines lost"
    assert set(merged.values()) == {1}, "a line appears twice in the merged day"

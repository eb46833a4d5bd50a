"""The agent tailing real files into a real collector: exactly once through rotations and kills."""

import itertools
import json
import queue
import re
import shutil
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import msgpack
import pytest
from logs_harness import Collector, Program, apache_line, forward, toml, wait_for
from shipyard_logs.decoder import FrameDecoder
from shipyard_logs.forward import Limits

ID = re.compile(r"id=(\d+)|garbage-(\d+)")


class Agent(Program):
    def __init__(self, workdir: Path, collector: Collector, **settings: object) -> None:
        self.logdir = workdir / "logs"
        self.logdir.mkdir()
        self.pos_dir = workdir / "pos"
        sources = settings.pop("sources", None) or [
            {
                "path": str(self.logdir / "access.log"),
                "tag": "apache.access",
                "format": "apache2",
                "read_from_head": True,
            }
        ]
        config = {
            "collector_host": "127.0.0.1",
            "collector_port": collector.port,
            "pos_dir": str(self.pos_dir),
            "host": "lamp-test",
            "batch_lines": 500,
            "flush_interval": 0.1,
            "poll_interval": 0.05,
            "refresh_interval": 0.2,
            "rotate_wait": 1.0,
            "ack_timeout": 5.0,
            "connect_timeout": 1.0,
            "retry_max_interval": 0.5,
            **settings,
            "sources": sources,
        }
        path = workdir / "agent.toml"
        path.write_text(toml(config))
        super().__init__("agent", path, workdir / "agent.log")


def line_count(collector: Collector) -> int:
    return sum(p.read_bytes().count(b"\n") for p in (collector.root / "logs").rglob("*.log"))


def shipped_ids(collector: Collector) -> Counter[int]:
    ids: Counter[int] = Counter()
    for _, _, body in collector.lines():
        record = json.loads(body)
        text = record.get("path") or record.get("message") or ""
        match = ID.search(text)
        if match:
            ids[int(match.group(1) or match.group(2))] += 1
    return ids


class Writer:
    """Appends numbered lines the way a web server does, one write per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.next_id = 0
        self.handle = path.open("a", buffering=1)

    def write(self, count: int) -> None:
        for _ in range(count):
            self.handle.write(apache_line(self.next_id) + "\n")
            self.next_id += 1

    def garbage(self) -> None:
        self.handle.write(f"garbage-{self.next_id} this is no access log line\n")
        self.next_id += 1

    def reopen(self) -> None:
        self.handle.close()
        self.handle = self.path.open("a", buffering=1)


def wait_all(collector: Collector, count: int, timeout: float = 30) -> Counter[int]:
    return wait_for(
        lambda: (ids := shipped_ids(collector)) and len(ids) >= count and ids,
        timeout,
        f"{count} distinct lines in the slices",
        interval=0.2,
    )


def test_exactly_once_through_rotation_truncation_and_kills(tmp_path, collector_factory):
    collector = collector_factory(time_slice_wait=3600).start()
    agent = Agent(tmp_path, collector)
    writer = Writer(agent.logdir / "access.log")
    agent.start()
    try:
        writer.write(2000)
        writer.garbage()
        # A file renamed away before the agent ever opened it is not followed
        # (nor by fluentd): let the agent start reading first.
        wait_all(collector, 1)

        # logrotate's default: rename, create, and the server keeps writing to
        # the old file until it reopens its logs.
        (agent.logdir / "access.log").rename(agent.logdir / "access.log.1")
        writer.write(300)
        writer.reopen()
        writer.write(2000)

        collector.kill()  # the agent retries and keeps its backlog in the file
        writer.write(1000)
        time.sleep(0.5)
        collector.start()
        writer.write(1500)

        agent.kill()  # mid-stream, possibly with a batch in flight
        writer.write(500)
        agent.start()
        writer.write(1500)

        # copytruncate loses what the agent has not read before the truncate,
        # in fluentd as here; so truncate once the agent has caught up.
        wait_all(collector, writer.next_id)
        shutil.copyfile(agent.logdir / "access.log", agent.logdir / "access.log.2")
        (agent.logdir / "access.log").open("r+").truncate(0)
        time.sleep(0.3)
        writer.write(1500)
        writer.garbage()

        ids = wait_all(collector, writer.next_id, timeout=40)
        time.sleep(0.5)  # anything duplicated late would land by now
        ids = shipped_ids(collector)
    finally:
        agent.kill()
    assert writer.next_id >= 10_000
    assert set(ids) == set(range(writer.next_id))
    duplicated = {i: n for i, n in ids.items() if n != 1}
    assert not duplicated, f"{len(duplicated)} lines arrived more than once"
    unparsed = [
        json.loads(body) for _, tag, body in collector.lines() if tag == "apache.access.unparsed"
    ]
    assert sorted(r["message"].split()[0] for r in unparsed) == sorted(
        ["garbage-2000", f"garbage-{writer.next_id - 1}"]
    )
    assert {r["source_host"] for r in unparsed} == {"lamp-test"}
    slices = {p.name for p in (collector.root / "logs").rglob("*.log")}
    assert "lamp-test-10.log" in slices
    assert all(name.startswith("lamp-test-") for name in slices)
    assert "rotated" in agent.output() and "truncated" in agent.output()


def test_a_file_copytruncated_and_written_past_the_position_before_a_look_is_read_from_0(
    tmp_path, collector_factory
):
    """The writer goes on at once after copytruncate, as a busy server does.

    By the agent's next look the file is longer than the position again, so
    its size alone does not show the truncation: the bytes before the
    position do, since they are other lines now.
    """
    collector = collector_factory(time_slice_wait=3600).start()
    # A long poll: the writer's burst lands well within one of the agent's sleeps.
    agent = Agent(tmp_path, collector, poll_interval=1.0, refresh_interval=1.0)
    writer = Writer(agent.logdir / "access.log")
    agent.start()
    try:
        writer.write(200)
        wait_all(collector, 200)
        log = agent.logdir / "access.log"
        shutil.copyfile(log, agent.logdir / "access.log.1")
        log.open("r+").truncate(0)
        writer.write(600)  # three times what the agent had read
        # Lost lines never come: wait a bounded while, then say which are missing.
        deadline = time.monotonic() + 15
        while len(shipped_ids(collector)) < writer.next_id and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # a line read twice would land by now
        ids = shipped_ids(collector)
    finally:
        agent.kill()
    missing = sorted(set(range(writer.next_id)) - set(ids))
    assert not missing, f"{len(missing)} lines lost, {missing[0]}..{missing[-1]}"
    assert all(n == 1 for n in ids.values()), "a line arrived twice"
    assert "truncated" in agent.output()


def test_agent_records_and_throughput(tmp_path, collector_factory):
    collector = collector_factory(time_slice_wait=3600).start()
    agent = Agent(tmp_path, collector, batch_lines=2000)
    total = 20_000
    with (agent.logdir / "access.log").open("w") as handle:
        for n in range(total):
            handle.write(apache_line(n) + "\n")
    started = time.monotonic()
    agent.start()
    try:
        # Count newlines only: parsing every line while waiting would steal
        # the CPU being measured.
        wait_for(lambda: line_count(collector) >= total, 40, f"{total} lines", interval=0.05)
        elapsed = time.monotonic() - started
        assert len(wait_all(collector, total)) == total
    finally:
        agent.stop()
    print(f"\nagent -> collector: {total} lines in {elapsed:.2f}s = {total / elapsed:,.0f} lines/s")
    _, tag, body = collector.lines()[0]
    assert tag == "apache.access"
    record = json.loads(body)
    assert record.pop("_record_id").endswith("-0")  # the first record of its chunk
    assert record == {
        "host": "10.0.0.0",
        "user": None,
        "method": "GET",
        "path": "/page/0?id=0",
        "code": 200,
        "size": 100,
        "referer": None,
        "agent": "tester/1.0",
        "source_host": "lamp-test",
    }
    positions = (agent.pos_dir / "apache.access.pos").read_text().split("\t")
    assert int(positions[1], 16) == (agent.logdir / "access.log").stat().st_size
    assert not (agent.pos_dir / "inflight.msgpack").exists()


def test_files_existing_at_start_are_tailed_from_the_end_unless_read_from_head(
    tmp_path, collector_factory
):
    collector = collector_factory().start()
    agent = Agent(
        tmp_path,
        collector,
        sources=[{"path": str(tmp_path / "logs" / "*.json"), "tag": "app", "format": "json"}],
    )
    old = agent.logdir / "old.json"
    old.write_text(json.dumps({"id": "before-start"}) + "\n")
    agent.start()
    try:
        time.sleep(0.5)
        with old.open("a") as handle:
            handle.write(
                json.dumps({"message": "garbage-1 after start", "time": 1795449909}) + "\n"
            )
        (agent.logdir / "new.json").write_text(json.dumps({"message": "garbage-2 new file"}) + "\n")
        ids = wait_all(collector, 2)
    finally:
        agent.stop()
    assert ids == {1: 1, 2: 1}
    times = {json.loads(b)["message"]: t for t, _, b in collector.lines()}
    assert times["garbage-1 after start"] == "2026-11-23T16:05:09+00:00"


# ------------------------------------------------------------------ pipelining


class FakeCollector:
    """Keeps every frame it reads, as the collector writes before it acks, and acks late.

    Each frame is acked `ack_delay` after it arrived, so several batches are in
    flight at once. With `drop_after`, the first connection is cut once that
    many frames arrived, their acks unsent. Before every ack it checks that the
    agent's committed position is not past the first line still unacked.
    """

    def __init__(self, ack_delay: float, drop_after: int | None = None) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.ack_delay = ack_delay
        self.drop_after = drop_after
        self.lock = threading.Lock()
        self.frames: list[tuple[int, str, list[int]]] = []  # connection, chunk, ids
        self.acked: set[str] = set()
        self.max_unacked = 0
        self.violations: list[str] = []
        self.pos_file: Path | None = None
        self.line_starts: list[int] = []
        self.connections = 0
        self.cut: list[str] = []  # unacked when the first connection was dropped
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            number, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        decoder = FrameDecoder(Limits())
        due: queue.Queue[tuple[float, str] | None] = queue.Queue()
        dropped = threading.Event()
        threading.Thread(target=self._ack, args=(conn, due, dropped), daemon=True).start()
        received = 0
        with conn:
            while data := _recv(conn):
                decoder.feed(data)
                frames = []
                while decoder.busy:
                    frames += decoder.step()
                for frame in frames:
                    ids = [int(ID.search(r["path"]).group(1)) for _, r in frame.entries]
                    with self.lock:
                        self.frames.append((number, frame.chunk, ids))
                        unacked = sum(c not in self.acked for n, c, _ in self.frames if n == number)
                        self.max_unacked = max(self.max_unacked, unacked)
                    due.put((time.monotonic() + self.ack_delay, frame.chunk))
                    received += 1
                    if number == 0 and received == self.drop_after:
                        with self.lock:
                            dropped.set()
                            self.cut = [c for n, c, _ in self.frames if c not in self.acked]
                        return
        due.put(None)

    def _ack(
        self,
        conn: socket.socket,
        due: queue.Queue[tuple[float, str] | None],
        dropped: threading.Event,
    ) -> None:
        while (item := due.get()) is not None:
            at, chunk = item
            time.sleep(max(0.0, at - time.monotonic()))
            self._check_position()
            with self.lock:
                if dropped.is_set():
                    return
                self.acked.add(chunk)
            try:
                conn.sendall(forward.encode_ack(chunk))
            except OSError:
                return

    def _check_position(self) -> None:
        if self.pos_file is None or not self.pos_file.exists():
            return
        committed = int(self.pos_file.read_text().split("\t")[1], 16)
        with self.lock:
            acked_ids = {i for _, c, ids in self.frames if c in self.acked for i in ids}
        first_unacked = next(i for i in range(len(self.line_starts)) if i not in acked_ids)
        if committed > self.line_starts[first_unacked]:
            self.violations.append(f"position {committed} past unacked line {first_unacked}")

    def unacked(self) -> list[str]:
        with self.lock:
            return [c for _, c, _ in self.frames if c not in self.acked]

    def delivered(self) -> Counter[int]:
        """Lines once per distinct chunk id: the collector's dedup."""
        with self.lock:
            by_chunk = {chunk: ids for _, chunk, ids in self.frames}
        return Counter(i for ids in by_chunk.values() for i in ids)

    def close(self) -> None:
        self.server.close()


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(65536)
    except OSError:
        return b""


def backlog(agent: Agent, fake: FakeCollector, count: int) -> None:
    """count lines already in the file; the fake learns where each one starts."""
    lines = [apache_line(i) + "\n" for i in range(count)]
    (agent.logdir / "access.log").write_text("".join(lines))
    fake.line_starts = list(itertools.accumulate((len(x) for x in lines), initial=0))
    fake.pos_file = agent.pos_dir / "apache.access.pos"


def wait_delivered(fake: FakeCollector, count: int, timeout: float = 40) -> Counter[int]:
    return wait_for(
        lambda: (ids := fake.delivered()) and len(ids) >= count and ids,
        timeout,
        f"{count} distinct lines at the fake collector",
        interval=0.1,
    )


def test_a_stopped_agent_ships_the_lines_it_holds_and_those_written_last(
    tmp_path, collector_factory
):
    # The images stop their agent after the services it tails, so the lines
    # a server writes as it shuts down are in the files when the agent is
    # told to stop. They ship then, not at the next start.
    collector = collector_factory(time_slice_wait=3600).start()
    agent = Agent(tmp_path, collector, batch_lines=500, flush_interval=3600.0)
    writer = Writer(agent.logdir / "access.log")
    agent.start()
    try:
        writer.write(600)  # one full batch ships; 100 lines wait for the flush
        wait_all(collector, 500)
        writer.write(50)  # the server's last lines, then at once the stop
        assert agent.stop() == 0, agent.output()
    finally:
        agent.stop()
    ids = shipped_ids(collector)
    assert set(ids) == set(range(650)), f"missing: {sorted(set(range(650)) - set(ids))[:5]}..."
    assert set(ids.values()) == {1}
    positions = (agent.pos_dir / "apache.access.pos").read_text().split("\t")
    assert int(positions[1], 16) == (agent.logdir / "access.log").stat().st_size
    assert not (agent.pos_dir / "inflight.msgpack").exists()


def test_pipelined_batches_survive_a_dropped_connection_with_their_chunk_ids(tmp_path):
    fake = FakeCollector(ack_delay=0.15, drop_after=6)
    agent = Agent(tmp_path, fake, batch_lines=100, max_inflight=4)  # type: ignore[arg-type]
    total = 3000
    backlog(agent, fake, total)
    agent.start()
    try:
        ids = wait_delivered(fake, total)
        time.sleep(0.5)  # a late resend would show up now
        ids = fake.delivered()
    finally:
        agent.stop()
        fake.close()
    assert set(ids) == set(range(total))
    assert set(ids.values()) == {1}, "lines resent under new chunk ids"
    assert 2 <= fake.max_unacked <= 4, "batches were not pipelined, or past the window"
    assert not fake.violations
    # What the first connection never acked came first on the second, in order
    # and under the same chunk ids.
    second = [c for n, c, _ in fake.frames if n == 1]
    assert fake.cut, "the drop came after every ack"
    assert second[: len(fake.cut)] == fake.cut
    assert (
        int((agent.pos_dir / "apache.access.pos").read_text().split("\t")[1], 16)
        == (fake.line_starts[-1])
    )
    assert not (agent.pos_dir / "inflight.msgpack").exists()


def test_agent_killed_with_batches_in_flight_resends_them_after_restart(tmp_path):
    fake = FakeCollector(ack_delay=0.3)
    agent = Agent(tmp_path, fake, batch_lines=100, max_inflight=4)  # type: ignore[arg-type]
    total = 4000
    backlog(agent, fake, total)
    agent.start()
    try:
        wait_for(lambda: len(fake.frames) >= 8 and len(fake.unacked()) >= 2, 20, "frames in flight")
        agent.kill()
        in_flight = fake.unacked()
        agent.start()
        ids = wait_delivered(fake, total)
        time.sleep(0.5)
        ids = fake.delivered()
    finally:
        agent.stop()
        fake.close()
    assert len(in_flight) >= 2
    assert set(ids) == set(range(total))
    assert set(ids.values()) == {1}, "lines resent under new chunk ids"
    resent = [c for n, c, _ in fake.frames if n == 1]
    assert set(in_flight) <= set(resent[: len(in_flight) + 4])  # first, with the same ids
    assert not fake.violations
    assert "unacked lines from the previous run" in agent.output()


def test_killed_repeatedly_during_a_backlog_the_collector_has_every_line_once(
    tmp_path, collector_factory
):
    collector = collector_factory(time_slice_wait=3600).start()
    agent = Agent(tmp_path, collector, batch_lines=200, max_inflight=4)
    total = 20_000
    with (agent.logdir / "access.log").open("w") as handle:
        handle.writelines(apache_line(n) + "\n" for n in range(total))
    try:
        for shipped in (2000, 7000, 12_000):
            agent.start()
            wait_for(lambda n=shipped: line_count(collector) >= n, 40, f"{shipped} lines")
            agent.kill()
        agent.start()
        ids = wait_all(collector, total, timeout=60)
        time.sleep(0.5)
        ids = shipped_ids(collector)
    finally:
        agent.stop()
    assert set(ids) == set(range(total))
    duplicated = {i: n for i, n in ids.items() if n != 1}
    assert not duplicated, f"{len(duplicated)} lines arrived more than once"


# ------------------------------------------------------------------ batching, in process


def tail_batches(tmp_path: Path, content: bytes, **settings: object) -> list[tuple[object, int]]:
    """Every batch one Tail makes of a file, with the file offset after it."""
    from shipyard_logs.agent.config import load_config
    from shipyard_logs.agent.tail import Batch, Tail

    tmp_path.mkdir(exist_ok=True)
    log = tmp_path / "access.log"
    log.write_bytes(content)
    config_file = tmp_path / "agent.json"
    source = {"path": str(log), "tag": "apache.access", "format": "apache2", "read_from_head": True}
    config_file.write_text(
        json.dumps({"pos_dir": str(tmp_path), "host": "h", **settings, "sources": [source]})
    )
    config = load_config(str(config_file), env={})
    tail = Tail(config.sources[0], config)
    tail.refresh(scan=True)
    batches = []
    while True:
        batch = Batch()
        if not tail.read(batch):
            return batches
        batches.append((batch, tail.watchers[0].offset))


def records(batch: object, tag: str) -> list[dict[str, object]]:
    return [
        msgpack.unpackb(e, ext_hook=forward.event_time_hook)[1] for e in batch.entries.get(tag, [])
    ]


def test_a_batch_ends_at_batch_lines_or_once_batch_bytes_is_reached(tmp_path):
    lines = [apache_line(n).encode() for n in range(10)]
    content = b"".join(line + b"\n" for line in lines)
    by_lines = tail_batches(tmp_path / "a", content, batch_lines=4)
    assert [b.lines for b, _ in by_lines] == [4, 4, 2]
    assert [off for _, off in by_lines] == [sum(len(x) + 1 for x in lines[:n]) for n in (4, 8, 10)]
    # A line is taken while the batch holds less than batch_bytes.
    limit = 2 * len(lines[0]) + 5
    by_bytes = tail_batches(tmp_path / "b", content, batch_bytes=limit)
    assert [b.lines for b, _ in by_bytes] == [3, 3, 3, 1]
    assert all(b.size == sum(len(x) + 1 for x in lines[:3]) for b, _ in by_bytes[:3])
    paths = [r["path"] for b, _ in by_bytes for r in records(b, "apache.access")]
    assert paths == [re.search(r'"GET (\S+)', x.decode())[1] for x in lines]


def test_long_lines_are_cut_and_unparsed_lines_keep_their_place(tmp_path):
    good = apache_line(1)
    content = f"garbage-1\r\n{good}\r\n{'x' * 300}\n{good}\n\n".encode()
    [(batch, offset)] = tail_batches(tmp_path, content, max_line_bytes=len(good) + 1)
    assert offset == len(content)
    assert batch.lines == 5
    assert batch.size == len(content) - 300 + len(good) + 1
    assert list(batch.entries) == ["apache.access.unparsed", "apache.access"]
    unparsed = [r["message"] for r in records(batch, "apache.access.unparsed")]
    assert unparsed == ["garbage-1", "x" * (len(good) + 1), ""]
    assert [r["source_host"] for r in records(batch, "apache.access")] == ["h", "h"]


# ------------------------------------------------------------------ positions, in-flight file


def test_a_position_reads_in_the_order_of_its_line(tmp_path):
    from shipyard_logs.agent.positions import Position, read_positions, render_positions

    pos = tmp_path / "a.pos"
    pos.write_bytes(render_positions([Position("/var/log/a.log", offset=0x1F, inode=0x2A)]))
    # fluentd's pos_file line: path, offset, inode, in hex.
    assert pos.read_text() == "/var/log/a.log\t000000000000001f\t000000000000002a\n"
    (position,) = read_positions(pos)
    assert position == ("/var/log/a.log", 0x1F, 0x2A)
    assert (position.offset, position.inode) == (0x1F, 0x2A)


def test_an_inflight_file_of_an_older_agent_keeps_its_offsets_and_inodes(tmp_path):
    from shipyard_logs.agent.positions import Position
    from shipyard_logs.agent.shipper import read_inflight

    # Written before positions took the order of the position file: (path, inode, offset).
    older = {
        "batches": [{"frames": [["c1", b"x"]], "positions": {"p.pos": [["/a", 7, 99]]}, "lines": 1}]
    }
    path = tmp_path / "inflight.msgpack"
    path.write_bytes(msgpack.packb(older, use_bin_type=True))
    (sent,) = read_inflight(path)
    assert sent.positions == {"p.pos": [Position("/a", offset=99, inode=7)]}
    assert sent.frames == [("c1", b"x")]


def test_a_source_path_may_be_a_list_of_files_and_globs(tmp_path):
    from shipyard_logs.agent.config import load_config
    from shipyard_logs.agent.tail import Batch, Tail

    (tmp_path / "fpm.log").write_text("from fpm\n")
    (tmp_path / "php").mkdir()
    (tmp_path / "php" / "error-1.log").write_text("from php one\n")
    (tmp_path / "php" / "error-2.log").write_text("from php two\n")
    config_file = tmp_path / "agent.toml"
    source = {
        "path": [str(tmp_path / "fpm.log"), str(tmp_path / "php" / "*.log")],
        "tag": "php.error",
        "read_from_head": True,
    }
    config_file.write_text(toml({"pos_dir": str(tmp_path), "host": "h", "sources": [source]}))
    config = load_config(str(config_file), env={})
    assert config.sources[0].paths == (str(tmp_path / "fpm.log"), str(tmp_path / "php/*.log"))
    tail = Tail(config.sources[0], config)
    tail.refresh(scan=True)
    batch = Batch()
    assert tail.read(batch) == 3
    messages = sorted(r["message"] for r in records(batch, "php.error"))
    assert messages == ["from fpm", "from php one", "from php two"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ('["/a.log", 1]', "sources[0].path must be a string or a list of strings"),
        ("[]", "sources[0].path is required"),
        ('" , "', "sources[0].path is required"),
        ("7", "sources[0].path must be a string or a list of strings"),
    ],
)
def test_a_bad_source_path_is_refused_naming_it(tmp_path, path, message):
    from shipyard_logs.agent.config import load_config
    from shipyard_logs.config import ConfigError

    config_file = tmp_path / "agent.toml"
    config_file.write_text(f'[[sources]]\npath = {path}\ntag = "t"\n')
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(str(config_file), env={})


@pytest.mark.parametrize("tag", ["bad tag", "../up", "a..b", "a.", ""])
def test_a_tag_that_is_no_fluentd_tag_is_refused_naming_it(tmp_path, tag):
    from shipyard_logs.agent.config import load_config
    from shipyard_logs.config import ConfigError

    config_file = tmp_path / "agent.toml"
    config_file.write_text(toml({"sources": [{"path": "/a.log", "tag": tag}]}))
    with pytest.raises(ConfigError, match=r"sources\[0\]\.tag"):
        load_config(str(config_file), env={})

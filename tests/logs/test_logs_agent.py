"""The agent tailing real files into a real collector: exactly once through rotations and kills."""

import json
import re
import shutil
import time
from collections import Counter
from pathlib import Path

from logs_harness import Collector, Program, apache_line, toml, wait_for

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
    assert json.loads(body) == {
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

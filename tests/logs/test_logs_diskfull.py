"""A full disk under the collector, on real small file systems (tmpfs of a fixed size).

Writes fail where they fail on a real disk: a write that crosses into a block
the file system cannot give is short, the next one gets ENOSPC. Whatever
failed and wherever, the slices and the journal must come back to exactly
what was acked: nothing acked cut off, nothing unacked counted or shipped.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from logs_harness import Collector, ForwardClient, MotoServer, fill, forward, tmpfs, wait_for
from shipyard_logs.forward import EventTime
from test_logs_agent import Agent, Writer
from test_logs_uploader import all_records, objects

HOUR_10 = EventTime(1795168800)  # 2026-11-20T10:00:00+00:00, long closed
PAGE = 4096


def frame(chunk: str, records: list[dict]) -> bytes:
    return forward.encode_packed_forward("t.full", [(HOUR_10, r) for r in records], chunk=chunk)


def deliver(port: int, data: bytes, chunk: str, timeout: float = 60) -> None:
    """Send a frame until it is acked, reconnecting and resending as an agent does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with ForwardClient(port, timeout=5) as client:
                client.send(data)
                if client.ack() == chunk:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{chunk} was never acked")


def try_once(port: int, data: bytes, chunk: str, wait: float) -> ForwardClient | None:
    """Send a frame; None once it is acked, else its connection (waiting, or closed)."""
    client = ForwardClient(port, timeout=wait)
    client.send(data)
    try:
        if client.ack() == chunk:
            client.close()
            return None
    except (TimeoutError, ConnectionError):
        return client
    raise AssertionError("unexpected ack")


def stored(collector: Collector) -> list[dict]:
    """Every record in the store's slices, open (.log) or kept after upload (.log.gz)."""
    import gzip

    found = []
    for path in sorted((collector.root / "logs").rglob("*.log*")):
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            text = gzip.decompress(data).decode()
        else:  # past the last newline: a line the collector is still appending
            text = data[: data.rfind(b"\n") + 1].decode()
        found += [json.loads(line.split("\t", 2)[2]) for line in text.splitlines()]
    return found


def test_a_short_journal_write_cuts_off_no_acked_commit(collector_factory):
    collector = collector_factory(time_slice_wait=3600)
    with tmpfs(collector.root / ".collector", "64k") as journal_fs:
        collector.start()
        filler = fill(journal_fs)
        frames = {f"c{n}": frame(f"c{n}", [{"m": f"m{n}"}]) for n in range(400)}
        # Commits go on while the journal's last block has room; the one that
        # needs a new block is written short and fails, and is not acked.
        held = None
        for chunk, data in frames.items():
            held = try_once(collector.port, data, chunk, wait=3)
            if held is not None:
                break
        assert held is not None, "the journal never filled up"
        filler.unlink()
        with contextlib.suppress(OSError):
            held.ack()  # space is back: the waiting frame is stored and acked
        held.close()
        deliver(collector.port, frames[chunk], chunk)  # and a resend changes nothing
        rest = list(frames)[list(frames).index(chunk) + 1 :]
        for later in rest[:50]:
            deliver(collector.port, frames[later], later)
        sent = list(frames)[: list(frames).index(chunk) + 51]
        expected = Counter({f"m{name[1:]}": 1 for name in sent})
        collector.kill()
        collector.start()
        # Every acked commit survives the restart (no agent would send it again)...
        assert Counter(r["m"] for r in stored(collector)) == expected
        # ...and its chunk id is remembered: a replay changes nothing.
        for name in sent:
            deliver(collector.port, frames[name], name)
        assert Counter(r["m"] for r in stored(collector)) == expected


def line_bytes(record: dict) -> int:
    """The length of the slice line the collector writes for a record of t.full at HOUR_10."""
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    return len(f"2026-11-20T10:00:00+00:00\tt.full\t{body}\n".encode())


def sized(host: str, name: str, chunk: str, index: int, length: int) -> dict:
    """A record whose slice line is `length` bytes long (record id included)."""
    record = {"m": name, "source_host": host, "pad": "", "_record_id": f"{chunk}-{index}"}
    record["pad"] = "x" * (length - line_bytes(record))
    del record["_record_id"]  # the collector adds it, in the same place
    return record


def test_a_commit_failing_across_slice_files_leaves_no_unacked_byte(
    tmp_path: Path, moto: MotoServer, collector_factory
):
    bucket = f"full-{uuid.uuid4().hex[:12]}"
    collector = collector_factory(time_slice_wait=3600)
    hosts = ["h1", "h2", "h3"]
    with tmpfs(collector.root, "256k"):
        collector.start()
        deliver(
            collector.port,
            frame("seed", [{"m": f"seed-{h}", "source_host": h} for h in hosts]),
            "seed",
        )
        filler = fill(collector.root)
        room = {
            h: -(collector.root / f"logs/20261120/{h}-10.log").stat().st_size % PAGE for h in hosts
        }
        # One commit for three files: h1's lines fit in its last block, h2's
        # do not (a short write, then ENOSPC), h3's are never reached.
        records = [
            sized("h1", "f-h1", "F", 0, room["h1"] // 2),
            sized("h2", "f-h2", "F", 1, room["h2"] + 1000),
            sized("h3", "f-h3", "F", 2, 200),
        ]
        held = try_once(collector.port, frame("F", records), "F", wait=3)
        assert held is not None, "the commit did not fail"
        held.close()  # the client gives up on this connection and will resend
        filler.unlink()
        deliver(collector.port, frame("F", records), "F")
        deliver(collector.port, frame("G", [{"m": f"g-{h}", "source_host": h} for h in hosts]), "G")
        collector.kill()
        # Restarted with S3: the slices are shipped, and kept gzipped beside.
        collector.configure(
            time_slice_wait=1,
            s3={
                "bucket": bucket,
                "endpoint_url": moto.url,
                "create_bucket": True,
                "upload_interval": 0.3,
                "retry_max_interval": 1.0,
                "retention_days": 1,
            },
        ).start()
        s3 = moto.client()
        wait_for(lambda: len(objects(s3, bucket)) == 3, 20, "three slices in S3")
        wait_for(lambda: not list((collector.root / "logs").rglob("*.log")), 10, "local clean-up")
        expected = Counter(f"{kind}-{h}" for kind in ("seed", "f", "g") for h in hosts)
        assert Counter(r["m"] for r in stored(collector)) == expected
        assert Counter(r["m"] for r in all_records(s3, bucket)) == expected


def stats(collector: Collector) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((collector.root / ".collector" / "stats.json").read_bytes())
    return {}


def request_ids(records: list[dict]) -> Counter[int]:
    return Counter(
        int(r["path"].split("id=")[1]) for r in records if "id=" in (r.get("path") or "")
    )


@pytest.mark.parametrize("full", ["store", "journal"])
def test_a_disk_filling_up_during_a_stream_loses_and_repeats_nothing(
    tmp_path: Path, moto: MotoServer, collector_factory, full: str
):
    """The agent streams; the slices' (or only the journal's) file system fills up and frees."""
    collector = collector_factory(time_slice_wait=3600)
    where = collector.root if full == "store" else collector.root / ".collector"
    total = 12_000
    with tmpfs(where, "8m" if full == "store" else "256k") as small:
        collector.start()
        # Small batches for the journal: one line of it per commit.
        agent = Agent(
            tmp_path, collector, ack_timeout=3.0, batch_lines=500 if full == "store" else 20
        )
        writer = Writer(agent.logdir / "access.log")
        agent.start()
        done = threading.Event()

        def stream() -> None:
            for _ in range(total // 200):
                writer.write(200)
                time.sleep(0.1)
            done.set()

        threading.Thread(target=stream, daemon=True).start()
        try:
            wait_for(lambda: request_ids(stored(collector)), 20, "the first lines")
            filler = fill(small)
            wait_for(
                lambda: "cannot store under" in collector.output(), 20, "the collector to stop"
            )
            wait_for(lambda: stats(collector).get("disk_full"), 10, "stats saying the disk is full")
            before = len(request_ids(stored(collector)))
            time.sleep(2)  # nothing is acked meanwhile; the agent keeps its lines
            assert len(request_ids(stored(collector))) == before
            filler.unlink()
            wait_for(lambda: "storing under" in collector.output(), 30, "the collector to resume")
            wait_for(lambda: stats(collector).get("disk_full") is False, 10, "stats to say so")
            assert done.wait(60)
            collector.kill()
            collector.start()
            expected = set(range(total))
            wait_for(lambda: set(request_ids(stored(collector))) == expected, 60, "every line")
            local = request_ids(stored(collector))
            assert set(local.values()) == {1}, local.most_common(3)
        finally:
            agent.kill()
        # Shipped after a restart with S3: every line once in the objects.
        bucket = f"stream-{uuid.uuid4().hex[:12]}"
        collector.kill()
        collector.configure(
            time_slice_wait=1,
            s3={"bucket": bucket, "endpoint_url": moto.url, "create_bucket": True},
        ).start()
        s3 = moto.client()
        wait_for(lambda: not list((collector.root / "logs").rglob("*.log")), 60, "the upload")
        shipped = request_ids(all_records(s3, bucket))
        assert set(shipped) == expected and set(shipped.values()) == {1}

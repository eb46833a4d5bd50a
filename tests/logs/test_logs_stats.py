"""What the collector adds and reports: record ids, and ROOT/.collector/stats.json."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from datetime import datetime

from logs_harness import Collector, ForwardClient, MotoServer, forward, wait_for
from shipyard_logs.forward import EventTime

HOUR_10 = EventTime(1795168800)  # 2026-11-20T10:00:00+00:00


def records(collector: Collector) -> list[dict]:
    return [json.loads(body) for _, _, body in collector.lines()]


def test_records_of_chunked_frames_carry_ids_a_replay_repeats(collector_factory):
    collector = collector_factory(time_slice_wait=3600).start()
    chunk = b"\x00\xffchunk-id-bytes"
    entries = [(HOUR_10, {"n": 0}), (HOUR_10, {"n": 1, "_record_id": "mine"}), (HOUR_10, {"n": 2})]
    with ForwardClient(collector.port) as client:
        client.send(forward.packb(["t.ids", [[t, r] for t, r in entries], {"chunk": chunk}]))
        assert client.ack() == chunk
        client.send(forward.encode_packed_forward("t.ids", [(HOUR_10, {"n": 3})], chunk="s-chunk"))
        assert client.ack() == "s-chunk"
        client.send(forward.encode_message("t.ids", HOUR_10, {"n": 4}))  # no chunk: no id
    wait_for(lambda: len(collector.lines()) == 5, 10, "five records")
    ids = {r["n"]: r.get("_record_id") for r in records(collector)}
    base = base64.urlsafe_b64encode(chunk).decode()
    assert ids == {0: f"{base}-0", 1: "mine", 2: f"{base}-2", 3: "s-chunk-0", 4: None}


def test_record_id_key_names_the_key_or_switches_ids_off(collector_factory):
    named = collector_factory(time_slice_wait=3600, record_id_key="rid").start()
    off = collector_factory(time_slice_wait=3600, record_id_key="").start()
    for collector in (named, off):
        with ForwardClient(collector.port) as client:
            client.send(forward.encode_packed_forward("t", [(HOUR_10, {"n": 0})], chunk="c"))
            assert client.ack() == "c"
    assert records(named) == [{"n": 0, "rid": "c-0"}]
    assert records(off) == [{"n": 0}]


def stats(collector: Collector) -> dict:
    return json.loads((collector.root / ".collector" / "stats.json").read_bytes())


def test_stats_count_lines_refusals_uploads_and_pending_slices(moto: MotoServer, collector_factory):
    bucket = f"stats-{uuid.uuid4().hex[:12]}"
    open_hour = EventTime(int(time.time()))
    collector = collector_factory(
        time_slice_wait=1,
        s3={
            "bucket": bucket,
            "endpoint_url": moto.url,
            "create_bucket": True,
            "upload_interval": 0.3,
        },
    ).start()
    with ForwardClient(collector.port) as client:
        old = [(HOUR_10, {"source_host": "web1"})] * 3
        client.send(forward.encode_packed_forward("apache.access", old, chunk="a"))
        assert client.ack() == "a"
        now = [(open_hour, {"source_host": "db1"})] * 2
        client.send(forward.encode_packed_forward("postgresql", now, chunk="b"))
        assert client.ack() == "b"
    with ForwardClient(collector.port) as bad:
        bad.send(b"\xc1\xc1\xc1")
        with contextlib.suppress(OSError):  # the collector closes it: no ack
            bad.ack()
    found = wait_for(
        lambda: (s := stats(collector))["stores"][0]["last_upload"] and s["refused_frames"] and s,
        20,
        "an upload and a refusal in the stats",
    )
    assert found["lines_total"] == 5
    assert found["lines_by_tag"] == {"apache.access": 3, "postgresql": 2}
    assert found["lines_by_host"] == {"web1": 3, "db1": 2}
    assert found["refused_frames"] == 1
    assert found["disk_full"] is False
    assert found["connections"] == 0
    (store,) = found["stores"]
    assert store["name"] == "default" and store["type"] == "s3"
    assert store["last_upload"]["key"] == "logs/20261120/web1-10.log.gz"
    assert store["pending_slices"] == 1  # the open hour of db1
    assert store["pending_bytes"] == sum(
        p.stat().st_size for p in (collector.root / "logs").rglob("*.log")
    )
    assert store["upload_errors"] == 0
    for key in ("updated", "started"):
        assert datetime.fromisoformat(found[key]).utcoffset().total_seconds() == 0
    assert datetime.fromisoformat(store["last_upload"]["time"]).utcoffset().total_seconds() == 0

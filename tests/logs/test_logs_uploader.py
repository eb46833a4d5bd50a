"""The collector's uploader against moto's S3 server: keys, idempotence, lifecycle, outages."""

import gzip
import time
import uuid
from pathlib import Path

from logs_harness import Collector, ForwardClient, MotoServer, forward, free_port, wait_for
from shipyard_logs.forward import EventTime

HOUR_10 = EventTime(1795168800)  # 2026-11-20T10:00:00+00:00, long closed


def s3_settings(endpoint: str, bucket: str) -> dict[str, object]:
    return {
        "time_slice_wait": 1,
        "s3": {
            "bucket": bucket,
            "endpoint_url": endpoint,
            "create_bucket": True,
            "upload_interval": 0.3,
            "retry_max_interval": 1.0,
        },
    }


def send(collector: Collector, chunk: str, messages: list[str], host: str = "web1") -> None:
    entries = [(HOUR_10, {"m": m, "source_host": host}) for m in messages]
    with ForwardClient(collector.port) as client:
        client.send(forward.encode_packed_forward("apache.access", entries, chunk=chunk))
        assert client.ack() == chunk


def objects(s3, bucket: str) -> dict[str, str]:
    try:
        listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    except s3.exceptions.NoSuchBucket:
        return {}  # the collector has not created it yet
    return {o["Key"]: o["ETag"] for o in listing}


def lifecycle_rules(s3, bucket: str) -> list[dict]:
    try:
        return s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except s3.exceptions.ClientError:
        return []  # the collector has not created the bucket yet


def body(s3, bucket: str, key: str) -> str:
    return gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).decode()


def test_closed_slices_are_uploaded_once_under_deterministic_keys(
    moto: MotoServer, collector_factory
):
    bucket = f"logs-{uuid.uuid4().hex[:12]}"
    collector = collector_factory(**s3_settings(moto.url, bucket)).start()
    s3 = moto.client()
    local = collector.root / "logs" / "20261120" / "web1-10.log"
    send(collector, "a", ["one", "two"])
    send(collector, "b", ["three"], host="db1")

    key = "logs/20261120/web1-10.log.gz"
    found = wait_for(lambda: len(objects(s3, bucket)) == 2 and objects(s3, bucket), 20, "uploads")
    assert set(found) == {key, "logs/20261120/db1-10.log.gz"}
    text = body(s3, bucket, key)
    assert [line.split("\t")[2] for line in text.splitlines()] == [
        '{"m":"one","source_host":"web1"}',
        '{"m":"two","source_host":"web1"}',
    ]
    wait_for(lambda: not local.exists(), 10, "the local slice to be removed after the put")

    # The same slice again (a crash between put and delete leaves it): same key, same bytes.
    local.write_text(text)
    wait_for(lambda: not local.exists(), 10, "the re-uploaded slice to be removed")
    assert objects(s3, bucket) == found

    # Late records for a slice already shipped must not overwrite it.
    send(collector, "late", ["late"])
    after = wait_for(lambda: len(objects(s3, bucket)) == 3 and objects(s3, bucket), 20, "late part")
    (part,) = set(after) - set(found)
    assert part.startswith("logs/20261120/web1-10.") and part.endswith(".log.gz")
    assert '"m":"late"' in body(s3, bucket, part)
    assert body(s3, bucket, key) == text

    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Filter"] == {"Prefix": "logs/"}
    assert rule["Transitions"] == [{"Days": 7, "StorageClass": "GLACIER"}]
    assert "testing-secret" not in collector.output()


def test_open_slices_stay_local(moto: MotoServer, collector_factory):
    bucket = f"logs-{uuid.uuid4().hex[:12]}"
    collector = collector_factory(**s3_settings(moto.url, bucket)).start()
    now = EventTime(int(time.time()))
    with ForwardClient(collector.port) as client:
        client.send(forward.encode_message("t", now, {"source_host": "web1"}, chunk="now"))
        assert client.ack() == "now"
    s3 = moto.client()
    wait_for(lambda: lifecycle_rules(s3, bucket), 20, "the lifecycle rule")
    time.sleep(1.0)
    assert objects(s3, bucket) == {}
    assert len(list((collector.root / "logs").rglob("*.log"))) == 1


def test_slice_waits_while_s3_is_down_and_ships_when_it_returns(tmp_path: Path, collector_factory):
    port = free_port()
    bucket = "logs-outage"
    settings = s3_settings(f"http://127.0.0.1:{port}", bucket)
    settings["s3"]["retention_days"] = 1  # type: ignore[index]
    collector = collector_factory(**settings).start()
    send(collector, "x", ["during the outage"])
    local = collector.root / "logs" / "20261120" / "web1-10.log"
    wait_for(lambda: "not ready" in collector.output(), 20, "a failed S3 attempt")
    assert local.exists()
    assert collector.alive()

    server = MotoServer(tmp_path, port).start()
    try:
        s3 = server.client()
        wait_for(lambda: not local.exists(), 30, "the slice to ship once S3 is back")
        key = "logs/20261120/web1-10.log.gz"
        assert "during the outage" in body(s3, bucket, key)
        # retention_days keeps the shipped bytes locally, under the object's name
        copy = collector.root / key
        assert gzip.decompress(copy.read_bytes()).decode() == body(s3, bucket, key)
    finally:
        server.stop()

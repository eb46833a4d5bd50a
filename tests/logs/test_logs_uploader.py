"""The collector's uploader against moto's S3 server: keys, idempotence, lifecycle, outages."""

import gzip
import hashlib
import json
import time
import uuid
from pathlib import Path

import pytest
from helpers import free_port
from logs_harness import (
    Collector,
    ForwardClient,
    MotoServer,
    S3Proxy,
    forward,
    wait_for,
)
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


def records(text: str) -> list[dict]:
    return [json.loads(line.split("\t")[2]) for line in text.splitlines()]


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
        '{"m":"one","source_host":"web1","_record_id":"a-0"}',
        '{"m":"two","source_host":"web1","_record_id":"a-1"}',
    ]
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"] == {
        "shipyard-slice": "logs/20261120/web1-10.log",
        "shipyard-start": "0",
        "shipyard-end": str(len(text.encode())),
        "shipyard-sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    wait_for(lambda: not local.exists(), 10, "the local slice to be removed after the put")

    # Late records for a slice already shipped go to the part that starts
    # where the first one ended, and never replace it.
    send(collector, "late", ["late"])
    after = wait_for(lambda: len(objects(s3, bucket)) == 3 and objects(s3, bucket), 20, "late part")
    (part,) = set(after) - set(found)
    assert part == f"logs/20261120/web1-10.{len(text.encode()):012d}.log.gz"
    assert [r["m"] for r in records(body(s3, bucket, part))] == ["late"]
    assert body(s3, bucket, key) == text

    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Filter"] == {"Prefix": "logs/"}
    assert rule["Transitions"] == [{"Days": 7, "StorageClass": "GLACIER"}]
    assert "testing-secret" not in collector.output()


def all_records(s3, bucket: str) -> list[dict]:
    return [r for key in sorted(objects(s3, bucket)) for r in records(body(s3, bucket, key))]


@pytest.mark.parametrize("fault", ["lost answer", "collector killed"])
def test_a_put_that_landed_unanswered_is_never_shipped_twice(
    moto: MotoServer, collector_factory, fault: str
):
    """S3 stored the part, the collector never heard so, and late records came in between."""
    bucket = f"logs-{uuid.uuid4().hex[:12]}"
    proxy = S3Proxy(moto.port).start()
    try:
        # The botocore client tries a put twice: both answers are lost.
        proxy.hold, proxy.drops = "/web1-10.log.gz", 2
        settings = s3_settings(proxy.url, bucket)
        collector = collector_factory(**settings).start()
        s3 = moto.client()
        send(collector, "first", ["one", "two"])
        assert proxy.stored.wait(20), collector.output()
        # The put is in S3, its answer held: more records for the same slice arrive.
        send(collector, "late", ["three"])
        if fault == "collector killed":
            collector.kill()  # between the put and the local clean-up
            proxy.release.set()
            collector.start()
        else:
            proxy.release.set()  # the answer never comes: the uploader retries
        wait_for(
            lambda: sorted(r["m"] for r in all_records(s3, bucket)) == ["one", "three", "two"],
            30,
            "every record in S3",
        )
        local = collector.root / "logs" / "20261120" / "web1-10.log"
        wait_for(lambda: not local.exists(), 10, "the slice to be released")
        time.sleep(1.0)  # a few more upload rounds: nothing more may appear
        assert sorted(r["_record_id"] for r in all_records(s3, bucket)) == [
            "first-0",
            "first-1",
            "late-0",
        ]
        first = "logs/20261120/web1-10.log.gz"
        assert [r["m"] for r in records(body(s3, bucket, first))] == ["one", "two"]
    finally:
        proxy.stop()


def test_uploads_resume_after_the_bucket_disappears(moto: MotoServer, collector_factory):
    bucket = f"logs-{uuid.uuid4().hex[:12]}"
    collector = collector_factory(**s3_settings(moto.url, bucket)).start()
    s3 = moto.client()
    send(collector, "a", ["before"])
    wait_for(lambda: len(objects(s3, bucket)) == 1, 20, "the first upload")
    before = all_records(s3, bucket)
    for key in objects(s3, bucket):
        s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_bucket(Bucket=bucket)  # as when moto restarts
    send(collector, "b", ["after"], host="db1")
    wait_for(lambda: len(objects(s3, bucket)) == 1, 20, "the bucket back and the slice in it")
    assert [r["m"] for r in before + all_records(s3, bucket)] == ["before", "after"]
    wait_for(lambda: lifecycle_rules(s3, bucket), 10, "the lifecycle rule set again")
    assert "not ready" in collector.output() or "failed" in collector.output()


def test_a_key_without_lifecycle_permission_uploads_and_warns(tmp_path: Path, collector_factory):
    # moto checks keys after 4 requests: its readiness probe (one) and the three IAM calls.
    server = MotoServer(tmp_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"}).start()
    try:
        iam = server.client("iam")
        iam.create_user(UserName="shipper")
        deny_lifecycle = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                {
                    "Effect": "Deny",
                    "Action": ["s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration"],
                    "Resource": "*",
                },
            ],
        }
        iam.put_user_policy(
            UserName="shipper", PolicyName="no-lifecycle", PolicyDocument=json.dumps(deny_lifecycle)
        )
        key = iam.create_access_key(UserName="shipper")["AccessKey"]
        settings = s3_settings(server.url, "logs-no-lifecycle")
        settings["s3"]["access_key_id"] = key["AccessKeyId"]  # type: ignore[index]
        settings["s3"]["secret_access_key"] = key["SecretAccessKey"]  # type: ignore[index]
        collector = collector_factory(**settings).start()
        send(collector, "a", ["shipped anyway"])
        s3 = server.client("s3", key["AccessKeyId"], key["SecretAccessKey"])
        wait_for(lambda: objects(s3, "logs-no-lifecycle"), 20, "the upload")
        warning = "cannot set lifecycle rule shipyard-archive-logs"
        assert warning in collector.output() and "AccessDenied" in collector.output()
        assert key["SecretAccessKey"] not in collector.output()
    finally:
        server.stop()


def test_a_key_taken_by_another_object_is_never_overwritten(moto: MotoServer, collector_factory):
    bucket = f"logs-{uuid.uuid4().hex[:12]}"
    s3 = moto.client()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="logs/20261120/web1-10.log.gz", Body=b"put by hand")
    collector = collector_factory(**s3_settings(moto.url, bucket)).start()
    send(collector, "a", ["mine"])
    part = "logs/20261120/web1-10.000000000001.log.gz"
    wait_for(lambda: part in objects(s3, bucket), 20, "the slice under the next free key")
    assert [r["m"] for r in records(body(s3, bucket, part))] == ["mine"]
    got = s3.get_object(Bucket=bucket, Key="logs/20261120/web1-10.log.gz")["Body"].read()
    assert got == b"put by hand"


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


def test_collectors_sharing_a_bucket_each_ship_their_own_keys(moto: MotoServer, collector_factory):
    """Two collectors, one bucket and prefix, the same slice: neither takes the other's key."""
    bucket = f"logs-{uuid.uuid4().hex[:12]}"
    collectors = [
        collector_factory(**s3_settings(moto.url, bucket), collector_name=name).start()
        for name in ("log-a", "log-b")
    ]
    s3 = moto.client()
    send(collectors[0], "a", ["one", "two"])
    send(collectors[1], "b", ["three"])
    send(collectors[1], "a", ["one", "two"])  # a chunk resent after a failover

    found = wait_for(lambda: len(objects(s3, bucket)) == 2 and objects(s3, bucket), 20, "uploads")
    a, b = "logs/20261120/web1-10@log-a.log.gz", "logs/20261120/web1-10@log-b.log.gz"
    assert set(found) == {a, b}
    assert [r["m"] for r in records(body(s3, bucket, a))] == ["one", "two"]
    assert [r["_record_id"] for r in records(body(s3, bucket, b))] == ["b-0", "a-0", "a-1"]
    for collector in collectors:
        assert "holds other bytes" not in collector.output()

    # Late records go to each collector's own later part.
    send(collectors[0], "late", ["late"])
    after = wait_for(lambda: len(objects(s3, bucket)) == 3 and objects(s3, bucket), 20, "late part")
    (part,) = set(after) - set(found)
    assert part.startswith("logs/20261120/web1-10@log-a.0")

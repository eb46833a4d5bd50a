"""The merge from S3 and its bad input: clear messages, non-zero exits, no partial objects."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import DAY, Day, analytics, s3_client, s3_url, snapshot, upload_day

from shipyard_analytics.errors import EX_DATAERR, EX_NOINPUT
from shipyard_analytics.s3 import WAREHOUSE_RULE_ID

DATE = DAY.isoformat()
SLICES = f"logs/{DAY:%Y%m%d}"


def s3_args(moto: Any) -> list[str]:
    return ["--endpoint-url", s3_url(moto)]


def objects(client: Any, bucket: str, prefix: str = "") -> dict[str, tuple[str, Any]]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listed}


@pytest.fixture
def bucket(moto: Any, request: pytest.FixtureRequest) -> str:
    name = "b-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50].strip("-")
    s3_client(moto).create_bucket(Bucket=name)
    return name


def test_merge_from_s3_into_s3_is_idempotent(moto: Any, bucket: str, day_small: Day) -> None:
    client = s3_client(moto)
    upload_day(client, bucket, day_small)
    slices_before = objects(client, bucket, "logs/")
    args = [
        "merge",
        "--date",
        DATE,
        "--s3",
        f"s3://{bucket}",
        *s3_args(moto),
        "--warehouse",
        f"s3://{bucket}/warehouse/",
        "--archive-after-days",
        "45",
    ]
    first = analytics(*args)
    assert first.rc == 0, first.stderr
    written = objects(client, bucket, "warehouse/")
    tags = sorted(day_small.truth.by_tag)
    assert sorted(written) == sorted(
        [f"warehouse/logs/dt={DATE}/tag={t}/part-0.parquet" for t in tags]
        + [f"warehouse/reports/dt={DATE}/daily.json"]
    )
    rule = next(
        r
        for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        if r["ID"] == WAREHOUSE_RULE_ID
    )
    assert rule["Filter"] == {"Prefix": "warehouse/logs/"}
    assert rule["Transitions"][0]["Days"] == 45

    second = analytics(*args)
    assert second.rc == 0, second.stderr
    assert f"0 of {len(tags) + 1} objects changed" in second.stderr
    assert objects(client, bucket, "warehouse/") == written
    assert objects(client, bucket, "logs/") == slices_before  # slices untouched


def test_lifecycle_rule_keeps_the_collectors(moto: Any, bucket: str, day_small: Day) -> None:
    client = s3_client(moto)
    upload_day(client, bucket, day_small)
    collector_rule = {
        "ID": "shipyard-archive-logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Transitions": [{"Days": 7, "StorageClass": "GLACIER"}],
    }
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [collector_rule]}
    )
    run = analytics(
        "merge",
        "--date",
        DATE,
        "--s3",
        f"s3://{bucket}",
        *s3_args(moto),
        "--warehouse",
        f"s3://{bucket}/wh/",
    )
    assert run.rc == 0, run.stderr
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["shipyard-archive-logs"]["Filter"] == {"Prefix": "logs/"}
    assert rules[WAREHOUSE_RULE_ID]["Filter"] == {"Prefix": "wh/logs/"}
    assert rules[WAREHOUSE_RULE_ID]["Transitions"][0]["Days"] == 30


def test_a_day_without_data(tmp_path: Path, day_small: Day) -> None:
    warehouse = tmp_path / "wh"
    run = analytics(
        "merge",
        "--date",
        "2026-12-02",
        "--root",
        str(day_small.root),
        "--warehouse",
        str(warehouse),
    )
    assert run.rc == EX_NOINPUT
    assert "no slices for 2026-12-02" in run.stderr
    assert "Traceback" not in run.stderr
    assert not warehouse.exists()


def test_a_day_of_empty_slices(tmp_path: Path) -> None:
    (tmp_path / "store" / SLICES).mkdir(parents=True)
    (tmp_path / "store" / SLICES / "web-1-10.log").write_bytes(b"")
    run = analytics(
        "merge",
        "--date",
        DATE,
        "--root",
        str(tmp_path / "store"),
        "--warehouse",
        str(tmp_path / "wh"),
    )
    assert run.rc == EX_NOINPUT
    assert "hold no records" in run.stderr
    assert not (tmp_path / "wh").exists()


def corrupt_copy(day: Day, target: Path) -> Path:
    shutil.copytree(day.root, target)
    return target


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated-gzip", "not a readable gzip file"),
        ("bad-json", "line 3: the record is not JSON"),
        ("bad-time", "line 3: the time is not ISO 8601"),
        ("two-fields", "line 3: 2 tab-separated fields, not 3"),
        ("not-an-object", "line 3: the record is not a JSON object"),
    ],
)
def test_a_corrupt_slice_leaves_the_warehouse_as_it_was(
    tmp_path: Path, day_small: Day, damage: str, message: str
) -> None:
    store = corrupt_copy(day_small, tmp_path / "store")
    warehouse = tmp_path / "wh"
    args = ["merge", "--date", DATE, "--root", str(store), "--warehouse", str(warehouse)]
    good = analytics(*args)
    assert good.rc == 0, good.stderr
    before = snapshot(warehouse)

    victim = store / SLICES / "web-3-07.log.gz"
    lines = gzip.decompress(victim.read_bytes()).split(b"\n")
    if damage == "truncated-gzip":
        victim.write_bytes(victim.read_bytes()[:-200])
    else:
        time, tag, record = lines[2].split(b"\t")
        lines[2] = {
            "bad-json": time + b"\t" + tag + b"\t{" + record[5:],
            "bad-time": b"yesterday\t" + tag + b"\t" + record,
            "two-fields": time + b"\t" + record,
            "not-an-object": time + b"\t" + tag + b"\t[1, 2]",
        }[damage]
        victim.write_bytes(gzip.compress(b"\n".join(lines)))
    bad = analytics(*args)
    assert bad.rc == EX_DATAERR, bad.stderr
    assert f"corrupt slice: {victim}" in bad.stderr and message in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    assert snapshot(warehouse) == before


def test_records_of_another_day_in_a_slice(tmp_path: Path) -> None:
    folder = tmp_path / "store" / SLICES
    folder.mkdir(parents=True)
    (folder / "web-1-23.log").write_text(
        '2026-12-01T23:59:59+00:00\tapp\t{"message":"a"}\n'
        '2026-12-02T00:00:01+00:00\tapp\t{"message":"b"}\n'
    )
    run = analytics(
        "merge",
        "--date",
        DATE,
        "--root",
        str(tmp_path / "store"),
        "--warehouse",
        str(tmp_path / "wh"),
    )
    assert run.rc == EX_DATAERR
    assert "records dated" in run.stderr
    assert not (tmp_path / "wh").exists()


@pytest.mark.parametrize("which", ["source", "warehouse"])
def test_a_missing_bucket(moto: Any, bucket: str, day_small: Day, which: str) -> None:
    upload_day(s3_client(moto), bucket, day_small)
    source = "s3://no-such-bucket" if which == "source" else f"s3://{bucket}"
    warehouse = "s3://no-such-bucket/wh/" if which == "warehouse" else f"s3://{bucket}/wh/"
    run = analytics(
        "merge", "--date", DATE, "--s3", source, "--warehouse", warehouse, *s3_args(moto)
    )
    assert run.rc == EX_NOINPUT, run.stderr
    assert "no such bucket: no-such-bucket" in run.stderr
    assert objects(s3_client(moto), bucket, "wh/") == {}


def test_a_missing_store_directory(tmp_path: Path) -> None:
    run = analytics(
        "merge",
        "--date",
        DATE,
        "--root",
        str(tmp_path / "nowhere"),
        "--warehouse",
        str(tmp_path / "wh"),
    )
    assert run.rc == EX_NOINPUT
    assert f"no such directory: {tmp_path / 'nowhere'}" in run.stderr

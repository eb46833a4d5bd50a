"""Fixtures for the warehouse tests: generated days, moto's S3 API, the job's CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from shipyard_analytics.synth import Truth, generate

DAY = date(2026, 12, 1)
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Day:
    root: Path  # a collector store: root/logs/YYYYMMDD/...
    truth: Truth


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str


def analytics(*args: str, timeout: float = 900) -> Run:
    """The job's real command line, as a scheduler would run it."""
    proc = subprocess.run(
        [sys.executable, "-m", "shipyard_analytics", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **S3_ENV},
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def day_1m(tmp_path_factory: pytest.TempPathFactory) -> Day:
    """A day of 1,000,000 records over eight hosts, with resent chunks."""
    root = tmp_path_factory.mktemp("day1m")
    return Day(root, generate(root, DAY, 1_000_000, seed=11))


@pytest.fixture(scope="session")
def day_small(tmp_path_factory: pytest.TempPathFactory) -> Day:
    root = tmp_path_factory.mktemp("daysmall")
    return Day(root, generate(root, DAY, 20_000, seed=5, resend_share=0.2))


@pytest.fixture(scope="session")
def moto() -> Iterator[Any]:
    """moto's S3 API in server mode on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def s3_url(server: Any) -> str:
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


def s3_client(server: Any) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    ).client("s3", endpoint_url=s3_url(server))


def upload_day(client: Any, bucket: str, day: Day, prefix: str = "") -> None:
    """Put a generated store's slices where the collector's uploader puts them."""
    for path in sorted((day.root / "logs").rglob("*.log.gz")):
        key = prefix + path.relative_to(day.root).as_posix()
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root: (size, mtime in ns), to see what a run touched."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }

"""The daily report over a generated day, local and from S3, checked against the generator."""

import gzip
import json
import os
import random
import subprocess
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from logs_harness import COMMON, PYTHON, S3_ENV, MotoServer

DAY = "20261120"
PATHS = ["/", "/index.php", "/a b", "/shop?item=1", "/shop?item=2", "/ünï", "/z"]


def generate(root: Path, seed: int = 7) -> tuple[Counter[str], list[str]]:
    """Write a day of slices (some gzipped) plus a neighbouring day; return the truth."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    truth: Counter[str] = Counter()
    day_lines: list[str] = []
    start = datetime(2026, 11, 20, tzinfo=UTC)
    for day_offset, date in ((0, DAY), (1, "20261121")):
        folder = root / "logs" / date
        folder.mkdir(parents=True)
        for host in ("web1", "web2", "db1"):
            for hour in (0, 7, 13, 23):
                lines = []
                for _ in range(rng.randint(20, 200)):
                    when = start + timedelta(
                        days=day_offset, hours=hour, seconds=rng.randint(0, 3599)
                    )
                    stamp = when.isoformat()
                    kind = rng.random()
                    path = rng.choice(PATHS)
                    if kind < 0.7:
                        tag, record = "apache.access", {"path": path, "code": 200}
                        if date == DAY:
                            truth[path] += 1
                    elif kind < 0.8:
                        tag, record = "apache.access.unparsed", {"message": f"junk {path}"}
                    elif kind < 0.9:
                        tag, record = "apache.access", {"path": None, "method": "GET"}
                    else:
                        tag, record = "app", {"path": path}
                    record["source_host"] = host
                    lines.append(f"{stamp}\t{tag}\t{json.dumps(record, ensure_ascii=False)}")
                rng.shuffle(lines)  # arrival order, not time order
                data = ("\n".join(lines) + "\n").encode()
                name = f"{host}-{hour:02d}.log"
                if rng.random() < 0.5:
                    (folder / f"{name}.gz").write_bytes(gzip.compress(data))
                else:
                    (folder / name).write_bytes(data)
                if date == DAY:
                    day_lines += lines
    return truth, day_lines


def run_report(*args: str, cwd: Path) -> tuple[Counter[str], list[str], list[str]]:
    proc = subprocess.run(
        [PYTHON, "-m", "shipyard_logs.report", "--date", DAY, "--output", "day.log", *args],
        cwd=cwd,
        env={**os.environ, **S3_ENV, "PYTHONPATH": str(COMMON)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    counts = Counter({path: int(n) for path, n in rows})
    order = [path for path, _ in rows]
    merged = (cwd / "day.log").read_text().splitlines()
    return counts, order, merged


def check(counts: Counter[str], order: list[str], merged: list[str], truth, day_lines) -> None:
    assert counts == truth
    assert order == sorted(order)
    assert Counter(merged) == Counter(day_lines)
    times = [datetime.fromisoformat(line.split("\t", 1)[0]) for line in merged]
    assert times == sorted(times)


def test_report_from_local_slices(tmp_path: Path):
    truth, day_lines = generate(tmp_path / "root")
    assert len(truth) == len(PATHS) and sum(truth.values()) > 500
    counts, order, merged = run_report("--root", str(tmp_path / "root"), cwd=tmp_path)
    check(counts, order, merged, truth, day_lines)


def test_report_from_s3_and_both(tmp_path: Path, moto: MotoServer):
    root = tmp_path / "root"
    truth, day_lines = generate(root, seed=11)
    s3 = moto.client()
    bucket = f"report-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    for path in root.rglob("*.log*"):
        data = path.read_bytes()
        name = path.name if path.name.endswith(".gz") else path.name + ".gz"
        body = data if path.name.endswith(".gz") else gzip.compress(data)
        key = f"team/logs/{path.parent.name}/{name}"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3_args = ("--s3", f"{bucket}/team", "--endpoint-url", moto.url)
    counts, order, merged = run_report(*s3_args, cwd=tmp_path)
    check(counts, order, merged, truth, day_lines)

    # Locally kept copies of shipped slices are the same data: read once, not twice.
    gz_only = tmp_path / "gz-root"
    for path in root.rglob("*.log.gz"):
        target = gz_only / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    counts, order, merged = run_report("--root", str(gz_only), *s3_args, cwd=tmp_path)
    check(counts, order, merged, truth, day_lines)

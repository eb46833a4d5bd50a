#!/usr/bin/env python3
"""The daily log job: today's pure-Python report against DuckDB and Spark local mode.

    .venv/bin/python bench/report.py [--sizes 1000000,10000000] [--engines today,duckdb,spark]

For each size, a synthetic day (shipyard_analytics.synth: eight hosts, 24
hourly slices each, resent chunks, records without ids) is generated once
into --data and then merged by each engine in a fresh process:

* today: `python -m shipyard_logs.report` (merge and sort the text, hits per path);
* duckdb: `python -m shipyard_analytics merge` (merge, dedupe, sort, Parquet,
  the five reports), and `report` alone (the reports over the merged Parquet);
* spark: the same merge with `--engine spark` (local mode, all cores).

Wall time, peak RSS (the process tree's, sampled from /proc, so Spark's JVM
counts) and output size, Parquet against the gzipped slices it read. The
ratios are against today's report in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

DAY = date(2026, 12, 1)
PY = sys.executable


@dataclass
class Measure:
    seconds: float
    peak_rss: int  # bytes


def _tree_rss(root: int) -> int:
    """Summed VmRSS of `root` and its descendants."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        parents[int(entry.name)] = int(fields.get("PPid", "0").strip())
        rss[int(entry.name)] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def measure(args: list[str], log: Path) -> Measure:
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        done.set()
        sampler.join()
    seconds = time.monotonic() - started
    if rc != 0:
        sys.exit(f"{' '.join(args)} exited {rc}; see {log}")
    return Measure(seconds, peak)


def day_data(data: Path, records: int) -> Path:
    root = data / f"day-{records}"
    marker = root / "complete"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"generating a day of {records} records into {root} ...", flush=True)
        subprocess.run(
            [
                PY,
                "-m",
                "shipyard_analytics",
                "generate",
                "--date",
                DAY.isoformat(),
                "--records",
                str(records),
                "--out",
                str(root),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        marker.touch()
    return root


def size_of(root: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in root.rglob(pattern))


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--engines", default="today,duckdb,spark")
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "shipyard-bench-report"
    )
    parser.add_argument("--memory-limit", default="512MB", help="DuckDB's memory_limit")
    args = parser.parse_args()
    engines = args.engines.split(",")
    args.data.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[int, str, Measure, int, int]] = []
    for records in (int(s) for s in args.sizes.split(",")):
        root = day_data(args.data, records)
        gz = size_of(root / "logs", "*.log.gz")
        with tempfile.TemporaryDirectory(dir=args.data) as scratch:
            work = Path(scratch)
            common = ["--date", DAY.isoformat(), "--staging", str(work / "staging")]
            for engine in engines:
                log = work / f"{engine}.log"
                print(f"{records:>10} {engine} ...", flush=True)
                if engine == "today":
                    run = measure(
                        [
                            PY,
                            "-m",
                            "shipyard_logs.report",
                            "--date",
                            f"{DAY:%Y%m%d}",
                            "--root",
                            str(root),
                            "--output",
                            str(work / "today.log"),
                        ],
                        log,
                    )
                    rows.append((records, "today's report", run, gz, size_of(work, "today.log")))
                    (work / "today.log").unlink()
                    continue
                warehouse = work / f"wh-{engine}"
                run = measure(
                    [
                        PY,
                        "-m",
                        "shipyard_analytics",
                        "merge",
                        "--root",
                        str(root),
                        "--warehouse",
                        str(warehouse),
                        "--engine",
                        engine,
                        "--memory-limit",
                        args.memory_limit,
                        *common,
                    ],
                    log,
                )
                parquet = size_of(warehouse / "logs", "*.parquet")
                rows.append((records, f"{engine} merge + reports", run, gz, parquet))
                if engine == "duckdb":
                    again = measure(
                        [
                            PY,
                            "-m",
                            "shipyard_analytics",
                            "report",
                            "--warehouse",
                            str(warehouse),
                            "--memory-limit",
                            args.memory_limit,
                            *common,
                        ],
                        work / "duckdb-report.log",
                    )
                    rows.append((records, "duckdb reports from Parquet", again, gz, parquet))
                shutil.rmtree(warehouse)
    print_table(rows)
    return 0


def print_table(rows: list[tuple[int, str, Measure, int, int]]) -> None:
    baseline = {r[0]: r[2].seconds for r in rows if r[1] == "today's report"}
    print()
    header = (
        "records",
        "run",
        "wall s",
        "vs today",
        "peak RSS MB",
        "gzip in MB",
        "out MB",
        "out/gzip",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for records, name, run, gz, out in rows:
        ratio = f"{baseline[records] / run.seconds:.1f}x" if records in baseline else "-"
        print(
            f"| {records:,} | {name} | {run.seconds:.1f} | {ratio} | {mb(run.peak_rss)} | "
            f"{mb(gz)} | {mb(out)} | {out / gz:.0%} |"
        )
    print()
    for records in sorted({r[0] for r in rows}):
        for name, run, gz, out in ((r[1], r[2], r[3], r[4]) for r in rows if r[0] == records):
            if not name.startswith("duckdb"):
                continue
            if records in baseline:
                speed = baseline[records] / run.seconds
                print(
                    f"goal {records:,} {name}: >= 10x today's report: {speed:.1f}x, "
                    f"{'met' if speed >= 10 else 'NOT met'}"
                )
            print(
                f"goal {records:,} {name}: peak RSS <= 1 GB: {mb(run.peak_rss)} MB, "
                f"{'met' if run.peak_rss <= 1e9 else 'NOT met'}"
            )
            if "merge" in name:
                print(
                    f"goal {records:,} Parquet <= 25% of the gzip text: {out / gz:.0%}, "
                    f"{'met' if out <= 0.25 * gz else 'NOT met'}"
                )


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The daily log job: today's pure-Python report against DuckDB and Spark local mode.

    .venv/bin/python bench/report.py [--sizes 1000000,10000000] [--engines today,duckdb,spark]

For each size, a synthetic day (shipyard_analytics.synth: eight hosts, 24
hourly slices each, resent chunks, records without ids) is generated once
into --data and then merged by each engine in a fresh process:

* today: `python -m shipyard_logs.report` (merge and sort the text into one
  file, hits per path; it keeps duplicates and runs one report, so the
  comparison flatters it);
* duckdb: `python -m shipyard_analytics merge` (merge, dedupe, sort, Parquet,
  the five reports), and `report` alone (the reports over the merged Parquet);
* spark: the same merge with `--engine spark` (local mode, all cores).

Two more rows put the DuckDB merge in context, and are not the goal's
comparison: `duckdb reports from Parquet` runs the reports over a day
already merged, and `duckdb read + parse only` reads every slice and parses
every record's JSON into the columns in one query with nothing else (no
dedupe, sort or write): a floor under any merge of the text on this machine.

Wall time, peak RSS (the process tree's, sampled from /proc, so Spark's JVM
counts), the 1-minute load average when the run started and ended (the
machine is shared), and output size, Parquet against the gzipped slices it
read. The ratios are against today's report in the same run.

Goals: the embedded engine's merge and reports >= 10x faster than today's
report on 10M records (the table states it at every size), in <= 1 GB of
peak RSS, and Parquet <= 25% of the gzip text.
"""

from __future__ import annotations

import argparse
import os
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
    load: tuple[float, float]  # 1-minute load average at the start and at the end


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
    load = os.getloadavg()[0]
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
    return Measure(seconds, peak, (load, os.getloadavg()[0]))


def parse_only(root: Path, memory_limit: str) -> int:
    """Read and parse every slice of the day, and nothing else (run in a child process)."""
    from shipyard_analytics import engine_duckdb, sqlfiles
    from shipyard_analytics.sources import local_day, make_layout

    files = local_day(root, DAY, make_layout())
    with tempfile.TemporaryDirectory() as scratch:
        settings = engine_duckdb.DuckSettings(memory_limit=memory_limit)
        con = engine_duckdb.connect(Path(scratch), settings)
        con.execute("CREATE TEMP TABLE slice_files (file VARCHAR, host VARCHAR)")
        con.executemany("INSERT INTO slice_files VALUES (?, ?)", [(f.name, f.host) for f in files])
        con.execute(engine_duckdb._lines_view([Path(f.name) for f in files]))
        con.execute(f"CREATE TEMP VIEW records AS {sqlfiles.read('records.duckdb')}")
        rows, *_ = con.execute(
            "SELECT count(*), count(record_id), count(path), count(agent), sum(size), "
            "count(record), bit_xor(tie) FROM records"
        ).fetchone()
    print(f"{rows} records parsed")
    return 0


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
    return f"{n / 1e6:,.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--engines", default="today,duckdb,spark")
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "shipyard-bench-report"
    )
    parser.add_argument("--memory-limit", default="512MB", help="DuckDB's memory_limit")
    parser.add_argument("--parse-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.parse_only:
        return parse_only(args.parse_only, args.memory_limit)
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
                    floor = measure(
                        [
                            PY,
                            __file__,
                            "--parse-only",
                            str(root),
                            "--memory-limit",
                            args.memory_limit,
                        ],
                        work / "duckdb-parse.log",
                    )
                    rows.append((records, "duckdb read + parse only", floor, gz, 0))
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
        "load start-end",
        "gzip in MB",
        "out MB",
        "out/gzip",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for records, name, run, gz, out in rows:
        ratio = f"{baseline[records] / run.seconds:.1f}x" if records in baseline else "-"
        share = f"{out / gz:.1%}" if out else "-"
        print(
            f"| {records:,} | {name} | {run.seconds:.1f} | {ratio} | {mb(run.peak_rss)} | "
            f"{run.load[0]:.1f}-{run.load[1]:.1f} | {mb(gz)} | {mb(out) if out else '-'} | "
            f"{share} |"
        )
    print()
    for records, name, run, gz, out in rows:
        if name != "duckdb merge + reports":
            continue
        if records in baseline:
            speed = baseline[records] / run.seconds
            print(
                f"goal {records:,} records: the DuckDB merge + reports >= 10x today's report: "
                f"{speed:.1f}x, {'met' if speed >= 10 else 'NOT met'}"
            )
        print(
            f"goal {records:,} records: the DuckDB merge's peak RSS <= 1 GB: "
            f"{mb(run.peak_rss)} MB, {'met' if run.peak_rss <= 1e9 else 'NOT met'}"
        )
        print(
            f"goal {records:,} records: Parquet <= 25% of the gzip text: {out / gz:.1%}, "
            f"{'met' if out <= 0.25 * gz else 'NOT met'}"
        )
        floor = next((r[2] for r in rows if r[0] == records and "parse only" in r[1]), None)
        if floor is not None and records in baseline:
            print(
                f"  reading and parsing the slices alone takes {floor.seconds:.1f} s, "
                f"{baseline[records] / floor.seconds:.1f}x today's report: no merge of the "
                f"text here can be faster"
            )


if __name__ == "__main__":
    sys.exit(main())

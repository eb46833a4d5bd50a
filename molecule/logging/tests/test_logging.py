"""Verify the log path end to end: agents -> collector -> slices -> S3.

The LAMP container's access log carries 20,000 requests, each with a unique
id, in one run through every fault at once: the collector SIGKILLed twice,
the agent SIGKILLed once, the LAMP container restarted, the access log
rotated both ways (rename-and-create, by the image's own size-based rotation
and by hand, and copytruncate with the writer going on at once), S3 off the
network for 30 s, and the bucket deleted (its objects kept aside by the test)
and recreated by the collector. Every
request must then appear exactly once in the collector's slice files and in
the objects uploaded to S3. The rest checks the other sources, interop with
Docker's fluentd log driver and the fluent-logger package, the daily report,
the collector's stats, and bad input.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import http.client
import json
import os
import re
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from io import BytesIO
from pathlib import Path

import boto3
import pytest
from container_checks import address, docker, wait_healthy
from fluent import sender

S3 = "shipyard-molecule-logging-s3"
NETWORK = "shipyard-molecule-logging"  # molecule.yml; the collector finds S3 there as `s3`
COLLECTOR = "shipyard-molecule-logging-collector"
LAMP = "shipyard-molecule-logging-lamp"
PG = "shipyard-molecule-logging-pg"
ROOT = "/var/log/shipyard"
BUCKET, PREFIX = "shipyard-logs", "molecule/"
S3_KEYS = {"aws_access_key_id": "molecule-access", "aws_secret_access_key": "molecule-s3-Secret-1"}
SCENARIO = Path(__file__).resolve().parent.parent
PROJECT = SCENARIO.parent.parent
RUN = uuid.uuid4().hex[:8]
PHASES, PHASE_REQUESTS = 10, 2000
S3_OUTAGE = 30.0
# The bucket's objects from before the test deleted it, by key: S3 keeps one
# object per key, and so does this count.
DELETED_OBJECTS: dict[str, bytes] = {}
ACCESS_LOG = "/var/log/apache2/access.log"
POSITIONS = "/var/lib/shipyard/log-agent/apache.access.pos"  # the agent's, for ACCESS_LOG
# The shared key and TLS guard 24224; clients without them (Docker's log
# driver, Python's fluent-logger) use the plain listener, fenced by tags and peers.
PLAIN_PORT = 24225


Record = tuple[str, str, dict]  # time, tag, record


# ------------------------------------------------------------------ reading the output


def parse_lines(data: bytes) -> list[Record]:
    records = []
    for line in data.decode().splitlines():
        stamp, tag, body = line.split("\t", 2)
        records.append((stamp, tag, json.loads(body)))
    return records


def local_records(subdir: str = "") -> list[Record]:
    """Every record in the collector's slice files (open .log and kept .log.gz)."""
    base = f"{ROOT}/{subdir}".rstrip("/") + "/logs"
    proc = subprocess.run(
        ["docker", "cp", f"{COLLECTOR}:{base}", "-"], capture_output=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        return []
    records = []
    with tarfile.open(fileobj=BytesIO(proc.stdout)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                continue
            data = handle.read()
            if member.name.endswith(".log.gz"):
                records += parse_lines(gzip.decompress(data))
            elif member.name.endswith(".log"):
                records += parse_lines(data)
    return records


def s3_client():  # noqa: ANN201 - boto3 clients are untyped
    return boto3.client(
        "s3", endpoint_url=f"http://{address(S3)}:5000", region_name="us-east-1", **S3_KEYS
    )


def bucket_objects() -> dict[str, bytes]:
    """What the bucket holds now (nothing while it does not exist)."""
    client = s3_client()
    found = {}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX)
    try:
        for page in pages:
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                found[item["Key"]] = body
    except client.exceptions.NoSuchBucket:
        return {}
    return found


def s3_objects() -> dict[str, bytes]:
    """Every object the collector put: the bucket now, and what it held before its deletion."""
    return {**DELETED_OBJECTS, **bucket_objects()}


def s3_records(objects: dict[str, bytes] | None = None) -> list[Record]:
    found = s3_objects() if objects is None else objects
    return [r for body in found.values() for r in parse_lines(gzip.decompress(body))]


def request_ids(records: Iterable[Record]) -> collections.Counter[str]:
    marker = f"/logtest/{RUN}/"
    return collections.Counter(
        rec["path"].split(marker, 1)[1]
        for _, tag, rec in records
        if tag == "apache.access" and marker in (rec.get("path") or "")
    )


def wait_until(
    predicate: Callable[[], object],
    what: str,
    timeout: float,
    explain: Callable[[], str] | None = None,
) -> None:
    """Wait for predicate; on a timeout, fail with what `explain` says is still wrong."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(2)


# ------------------------------------------------------------------ sending requests


class Requests:
    """Unique GET requests to the LAMP container, from a few keep-alive clients.

    A request that fails on the client side is retried under a new id: Apache
    may still have logged the failed attempt, which must not look like a
    duplicate made by the log path.
    """

    def __init__(self) -> None:
        self.acknowledged: list[str] = []
        self.attempted: list[str] = []
        self.acked_at: dict[str, float] = {}  # wall-clock time of each acknowledgement
        self._state = threading.Condition()  # guards the lists and the two below
        self._paused = False
        self._in_flight = 0
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(address(LAMP), 80, timeout=30)
            self._local.conn = conn
        return conn

    def _get(self, rid: str) -> bool:
        try:
            conn = self._connection()
            conn.request("GET", f"/logtest/{RUN}/{rid}")
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            self._local.conn = None
            return False
        return True

    def _one(self, number: int) -> None:
        for attempt in range(20):
            rid = f"{number:05d}-{attempt}"
            with self._state:
                self._state.wait_for(lambda: not self._paused)
                self._in_flight += 1
                self.attempted.append(rid)
            ok = False
            try:
                ok = self._get(rid)
            finally:
                with self._state:
                    self._in_flight -= 1
                    if ok:
                        self.acknowledged.append(rid)
                        self.acked_at[rid] = time.time()
                    self._state.notify_all()
            if ok:
                return
            time.sleep(0.2)
        pytest.fail(f"request {number} failed 20 times")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No request is in flight, and none starts, until the block ends."""
        with self._state:
            self._paused = True
            if not self._state.wait_for(lambda: self._in_flight == 0, 60):
                pytest.fail("requests still in flight after 60 s")
        try:
            yield
        finally:
            with self._state:
                self._paused = False
                self._state.notify_all()

    def send(
        self, numbers: range, during: Callable[[], None] | None = None, after: float = 0.25
    ) -> None:
        """The requests, six at a time; `during` runs once the share `after` of them is done."""
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(self._one, n) for n in numbers]
            if during is not None:
                # Part of the phase is already on its way when the disruption happens.
                while sum(f.done() for f in futures) < int(len(futures) * after):
                    time.sleep(0.01)
                during()
            for future in futures:
                future.result()
        self._local = threading.local()


def agent_caught_up() -> bool:
    """The agent's committed position for the current access log is its end.

    The position file keeps a line per file it follows (rotated ones too,
    under the same path), so the current file is found by its inode.
    """
    proc = docker(
        "exec",
        LAMP,
        "sh",
        "-c",
        f"stat -c '%s %i' {ACCESS_LOG}; cat {POSITIONS}",
        check=False,
    )
    lines = proc.stdout.split("\n")
    if proc.returncode != 0 or len(lines[0].split()) != 2:
        return False
    size, inode = (int(field) for field in lines[0].split())
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) == 3 and fields[0] == ACCESS_LOG and int(fields[2], 16) == inode:
            return int(fields[1], 16) == size
    return False


def supervisor_ready(container: str) -> bool:
    """Readiness as the container's supervisor knows it, without Docker's probe timeout."""
    return docker("exec", container, "shipyard-init", "status", check=False).returncode == 0


def kill_and_restart_collector() -> None:
    docker("kill", "--signal", "KILL", COLLECTOR)
    time.sleep(2)  # requests keep arriving; the agent must hold them
    docker("start", COLLECTOR)
    wait_until(lambda: supervisor_ready(COLLECTOR), "the collector to be ready again", 180)


# The agent's pid, found by its arguments (python3 .../shipyard-logs agent ...),
# which this script's own command line does not have; shipyard-init restarts it.
KILL_AGENT = """
procs=$(echo /proc/[0-9]*)
set -f  # the arguments below are split into words, never globbed
for proc in $procs; do
  set -- $(tr '\\0' ' ' < "$proc/cmdline" 2>/dev/null)
  if [ "${2:-}" = /usr/local/bin/shipyard-logs ] && [ "${3:-}" = agent ]; then
    kill -KILL "${proc#/proc/}" && echo killed
  fi
done 2>/dev/null
exit 0
"""


def kill_agent() -> None:
    assert "killed" in docker("exec", LAMP, "sh", "-c", KILL_AGENT).stdout


def s3_outage() -> threading.Thread:
    """S3 leaves the network for S3_OUTAGE seconds (its name stops resolving); its data stays."""
    docker("network", "disconnect", NETWORK, S3)

    def resume() -> None:
        time.sleep(S3_OUTAGE)
        docker("network", "connect", "--alias", "s3", NETWORK, S3)

    thread = threading.Thread(target=resume)
    thread.start()
    return thread


def delete_bucket() -> None:
    """Keep the bucket's objects aside, empty it, delete it; the collector makes it again."""
    client = s3_client()
    while True:
        for key, body in bucket_objects().items():
            DELETED_OBJECTS[key] = body
            client.delete_object(Bucket=BUCKET, Key=key)
        try:
            client.delete_bucket(Bucket=BUCKET)
            return
        except client.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "BucketNotEmpty":
                raise  # an upload landed meanwhile: keep that one aside too


def bucket_exists() -> bool:
    try:
        s3_client().head_bucket(Bucket=BUCKET)
    except s3_client().exceptions.ClientError:
        return False
    return True


# Rename the access log once the agent follows it (its inode is in the
# agent's positions; the check and the rename microseconds apart), then make
# Apache reopen it. The image's own rotation may have just put a new file
# there: renamed away before the agent opened it, that file would never be
# read (nor by fluentd's in_tail), and the image's rotation waits for the
# agent in the same way.
RENAME_FOLLOWED = """
import os, signal, sys, time
log, positions, pid_file = sys.argv[1:]
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    inode = f"{os.stat(log).st_ino:016x}"
    with open(positions) as lines:
        if any(line.rstrip("\\n").rsplit("\\t", 1)[-1] == inode for line in lines):
            os.rename(log, log + ".manual")
            with open(pid_file) as pid:
                os.kill(int(pid.read()), signal.SIGUSR1)
            sys.exit(0)
    time.sleep(0.01)
sys.exit(f"the agent did not follow {log} within 60 s")
"""


def rotate_by_rename() -> None:
    pid_file = "/run/apache2/apache2.pid"
    docker("exec", LAMP, "python3", "-c", RENAME_FOLLOWED, ACCESS_LOG, POSITIONS, pid_file)


def rotate_by_copytruncate(requests: Requests) -> None:
    """copytruncate twice, twenty requests apart, while the requests go on.

    copytruncate loses lines written between the copy and the truncate that
    the agent had not read (fluentd's in_tail has the same window), so the
    writer pauses and the agent has read everything when it happens. Then
    the writer goes on at once, as a busy server does. The second time the
    file holds only those twenty lines: it is longer than the agent's old
    position again within milliseconds, before the agent next looks.
    """
    copytruncate_once(requests)
    done, deadline = len(requests.acknowledged) + 20, time.monotonic() + 60
    while len(requests.acknowledged) < done:  # closely: the requests take milliseconds
        assert time.monotonic() < deadline, "no twenty requests within 60 s"
        time.sleep(0.001)
    copytruncate_once(requests)


def copytruncate_once(requests: Requests) -> None:
    with requests.paused():
        wait_until(agent_caught_up, "the agent to reach the end of the access log", 120)
        docker("exec", LAMP, "sh", "-c", f"cp {ACCESS_LOG} {ACCESS_LOG}.copy && : > {ACCESS_LOG}")


# What each phase of the stream goes through, in order.
PHASE_NAMES = (
    "the collector SIGKILLed during it",
    "after the LAMP container's restart",
    "the access log renamed during it",
    "the access log copytruncated twice early in it",
    "the agent SIGKILLed during it",
    "S3 away",
    "S3 away",
    "the bucket deleted during it",
    "the collector SIGKILLed during it",
    "the image's own rotation only",
)
# (wall-clock time, what happened) during the stream, for a failure to place its ids.
TIMELINE: list[tuple[float, str]] = []


def mark(what: str) -> None:
    TIMELINE.append((time.time(), what))


def marked(what: str, action: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        mark(f"{what} begins")
        action()
        mark(f"{what} done")

    return run


@pytest.fixture(scope="module")
def stream() -> Requests:
    """20,000 requests in ten phases, most with their own disruption."""
    assert len(PHASE_NAMES) == PHASES
    requests = Requests()
    phases = iter(range(PHASES))

    def send(during: Callable[[], None] | None = None, after: float = 0.25) -> None:
        phase = next(phases)
        mark(f"phase {phase} begins")
        start = phase * PHASE_REQUESTS
        requests.send(range(start, start + PHASE_REQUESTS), during, after)
        mark(f"phase {phase} done")

    send(marked("collector SIGKILL", kill_and_restart_collector))
    marked("LAMP restart", lambda: (docker("restart", "--time", "10", LAMP), wait_healthy(LAMP)))()
    send()
    send(marked("rename rotation", rotate_by_rename))
    send(marked("copytruncate", lambda: rotate_by_copytruncate(requests)), after=0.01)
    send(marked("agent SIGKILL", kill_agent))
    mark("S3 outage begins")
    outage = s3_outage()  # two phases go on while S3 is away
    send()
    send()
    outage.join()
    mark("S3 outage done")
    send(marked("bucket deletion", delete_bucket))
    wait_until(bucket_exists, "the collector to create the bucket again", 120)
    send(marked("collector SIGKILL", kill_and_restart_collector))
    send()  # the image's own rotation runs all along (256K files)
    return requests


# ------------------------------------------------------------------ exactly once


def phase_of(rid: str) -> int:
    return int(rid.split("-")[0]) // PHASE_REQUESTS


def clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]


def sample(items: list[str], count: int = 12) -> list[str]:
    """The first and last few, and some spread evenly between them."""
    if len(items) <= count:
        return items
    step = len(items) / count
    return sorted({items[0], items[-1], *(items[int(i * step)] for i in range(count))})


# Where each id is in the LAMP container's access logs, and where the agent is in them.
FIND_IDS = f"""
cat > /tmp/missing-ids
cd {Path(ACCESS_LOG).parent}
for f in {Path(ACCESS_LOG).name}*; do
  echo "file $(stat -c '%n %i %s' "$f")"
  grep -boF -f /tmp/missing-ids "$f" | cut -d: -f1
done
echo positions
cat {POSITIONS}
"""


def access_log_places(missing: list[str]) -> list[str]:
    """Each access log file with the missing ids in it: how many, at which bytes."""
    patterns = "".join(f"/logtest/{RUN}/{rid} \n" for rid in missing)
    proc = subprocess.run(
        ["docker", "exec", "-i", LAMP, "sh", "-c", FIND_IDS],
        input=patterns,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines, offsets, found = [], [], 0
    header = ""

    def close_file() -> None:
        if header:
            where = f", bytes {offsets[0]}-{offsets[-1]}" if offsets else ""
            lines.append(f"    {header}: {len(offsets)} of them{where}")

    rest = proc.stdout.splitlines()
    while rest:
        line = rest.pop(0)
        if line.startswith("file "):
            close_file()
            name, inode, size = line[5:].split()
            header, offsets = f"{name} (inode {inode}, {size} bytes)", []
        elif line == "positions":
            close_file()
            header = ""
            lines.append("    the agent's positions (path, offset, inode):")
            lines += [
                f"      {path} {int(offset, 16)} {int(inode, 16)}"
                for path, offset, inode in (p.split("\t") for p in rest if p.count("\t") == 2)
            ]
            break
        elif line.isdigit():
            offsets.append(int(line))
            found += 1
    close_file()
    if proc.returncode != 0:
        lines.append(f"    (reading them failed: {proc.stderr.strip()})")
    return [f"  in the LAMP container's access logs, {found} of {len(missing)}:", *lines]


AGENT_EVENTS = re.compile(r"rotat|truncat|gone|resending|collector .*:|unacked")


def agent_events() -> list[str]:
    """What the LAMP container's agent and rotation said about files and collectors."""
    proc = docker("logs", "--timestamps", LAMP, check=False)
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if AGENT_EVENTS.search(ln)]
    return ["  the LAMP container's log agent and rotation said (last 60):", *said[-60:]]


def explain_missing(requests: Requests, counts: collections.Counter[str], where: str) -> str:
    """Which acknowledged requests are missing, in which phase, near which event, on which file."""
    missing = sorted(set(requests.acknowledged) - counts.keys())
    if not missing:
        return f"no acknowledged request is missing from {where}"
    lines = [
        f"{len(missing)} of {len(set(requests.acknowledged))} acknowledged requests "
        f"are missing from {where}:"
    ]
    for phase, count in sorted(collections.Counter(map(phase_of, missing)).items()):
        ids = [rid for rid in missing if phase_of(rid) == phase]
        lines.append(f"  phase {phase} ({PHASE_NAMES[phase]}): {count}, {ids[0]} .. {ids[-1]}")
    lines.append("  e.g., with the last event before each acknowledgement:")
    for rid in sample(missing):
        at = requests.acked_at[rid]
        when, what = max(((t, w) for t, w in TIMELINE if t <= at), default=(at, "the start"))
        lines.append(f"    {rid} acknowledged {clock(at)}, {at - when:.2f} s after {what}")
    lines.append("  the fault run:")
    lines += [f"    {clock(at)} {what}" for at, what in TIMELINE]
    lines += access_log_places(missing)
    lines += agent_events()
    return "\n".join(lines)


def check_exactly_once(counts: collections.Counter[str], requests: Requests, where: str) -> None:
    acknowledged = set(requests.acknowledged)
    assert len(acknowledged) == PHASES * PHASE_REQUESTS
    missing = acknowledged - counts.keys()
    assert not missing, explain_missing(requests, counts, where)
    twice = {rid: n for rid, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} requests more than once in {where}: {list(twice.items())[:5]}"
    assert counts.keys() <= set(requests.attempted), f"unknown ids in {where}"


def test_every_request_is_in_the_slice_files_exactly_once(stream: Requests) -> None:
    wait_until(
        lambda: set(stream.acknowledged) <= request_ids(local_records()).keys(),
        "every request in the collector's slice files",
        300,
        lambda: explain_missing(stream, request_ids(local_records()), "the slice files"),
    )
    check_exactly_once(request_ids(local_records()), stream, "the slice files")


def test_every_request_is_in_s3_exactly_once(stream: Requests) -> None:
    # Minute slices close 5 s after their minute; then they are uploaded.
    wait_until(
        lambda: set(stream.acknowledged) <= request_ids(s3_records()).keys(),
        "every request in the uploaded objects",
        240,
        lambda: explain_missing(stream, request_ids(s3_records()), "S3"),
    )
    check_exactly_once(request_ids(s3_records()), stream, "S3")
    keys = list(s3_objects())
    assert all(k.startswith(f"{PREFIX}logs/") and k.endswith(".log.gz") for k in keys), keys


def test_records_carry_fluentd_apache2_fields(stream: Requests) -> None:
    records = [r for r in local_records() if r[1] == "apache.access" and RUN in r[2]["path"]]
    assert records
    for stamp, _, rec in records[:200]:
        datetime.fromisoformat(stamp)  # ISO 8601 with its zone
        assert stamp.endswith(("Z", "+00:00"))
        assert set(rec) >= {"host", "user", "method", "path", "code", "size", "referer", "agent"}
        assert rec["method"] == "GET"
        assert rec["code"] == 404
        assert isinstance(rec["size"], int)
        assert rec["source_host"] == "lamp"


SLICE_NAME = r"[a-z0-9._-]+-\d{2}(\d{2})?(\.[0-9a-f]+)?\.log(\.gz)?"


def test_slices_are_per_host_and_time(stream: Requests) -> None:
    proc = docker("exec", COLLECTOR, "find", f"{ROOT}/logs", "-type", "f")
    names = [Path(p) for p in proc.stdout.split()]
    for path in names:
        assert re.fullmatch(r"\d{8}", path.parent.name), path  # %Y%m%d
        # <host>-%H%M here; lines the agents sent before converge applied the
        # matches went to the image's default hourly slices (<host>-%H).
        assert re.fullmatch(SLICE_NAME, path.name), path
    assert any(re.fullmatch(r"lamp-\d{4}\.log(\.gz)?", p.name) for p in names), names


def test_the_image_rotated_the_access_log_under_load(stream: Requests) -> None:
    proc = docker("exec", LAMP, "sh", "-c", f"ls {ACCESS_LOG}.*")
    # access.log.<UTC time> from the size-based rotation; not the test's own.
    rotated = [n for n in proc.stdout.split() if not n.endswith((".manual", ".copy"))]
    assert rotated, proc.stdout


# ------------------------------------------------------------------ other sources


def wait_for_record(predicate: Callable[[Record], bool], what: str, subdir: str = "other") -> None:
    wait_until(lambda: any(predicate(r) for r in local_records(subdir)), what, 120)


def test_postgresql_lines_arrive_tagged() -> None:
    marker = f"shipyard_missing_{RUN}"
    proc = docker(
        "exec",
        "-u",
        "postgres",
        PG,
        "psql",
        "-X",
        "-h",
        "/run/postgresql",
        "-d",
        "postgres",
        "-c",
        f"SELECT {marker}()",
        check=False,
    )
    assert proc.returncode != 0
    wait_for_record(
        lambda r: (
            r[1] == "postgresql" and marker in json.dumps(r[2]) and r[2]["source_host"] == "pg"
        ),
        "the PostgreSQL error record",
    )


def test_mariadb_lines_arrive_tagged() -> None:
    wait_for_record(
        lambda r: r[1] == "mariadb.error" and "ready for connections" in r[2].get("message", ""),
        "MariaDB's start-up line",
    )


def test_malformed_line_arrives_as_unparsed() -> None:
    marker = f"not an access log line {RUN}"
    docker("exec", LAMP, "sh", "-c", f"echo '{marker}' >> {ACCESS_LOG}")
    wait_for_record(
        lambda r: r[1] == "apache.access.unparsed" and r[2].get("message") == marker,
        "the unparsable line",
        subdir="",
    )


# ------------------------------------------------------------------ interop


def test_docker_fluentd_log_driver_delivers_with_ack() -> None:
    marker = f"from-docker-{RUN}"
    docker(
        "run",
        "--rm",
        "--log-driver",
        "fluentd",
        "--log-opt",
        f"fluentd-address=tcp://{address(COLLECTOR)}:{PLAIN_PORT}",
        "--log-opt",
        "fluentd-request-ack=true",
        "--log-opt",
        "tag=docker.interop",
        "--entrypoint",
        "sh",
        "shipyard/log-collector:latest",
        "-c",
        f"echo {marker}",
    )
    wait_for_record(
        lambda r: r[1] == "docker.interop" and r[2].get("log") == marker, "the log driver's line"
    )


def test_fluent_logger_package_delivers() -> None:
    marker = f"from-python-{RUN}"
    logger = sender.FluentSender("interop", host=address(COLLECTOR), port=PLAIN_PORT)
    try:
        assert logger.emit("python", {"marker": marker}), logger.last_error
    finally:
        logger.close()
    wait_for_record(
        lambda r: r[1] == "interop.python" and r[2].get("marker") == marker,
        "the fluent-logger record",
    )


# ------------------------------------------------------------------ report


def test_report_matches_an_independent_count(stream: Requests) -> None:
    # The report reads the bucket as it is, without what was deleted from it.
    records = [r for r in s3_records(bucket_objects()) if r[1] == "apache.access"]
    first_day = records[0][0][:10]  # YYYY-MM-DD of an ISO 8601 time
    expected = collections.Counter(r[2]["path"] for r in records if r[0].startswith(first_day))
    day = first_day.replace("-", "")
    env = [
        f"--env=AWS_ACCESS_KEY_ID={S3_KEYS['aws_access_key_id']}",
        f"--env=AWS_SECRET_ACCESS_KEY={S3_KEYS['aws_secret_access_key']}",
    ]
    proc = docker(
        "exec",
        *env,
        COLLECTOR,
        "shipyard-logs",
        "report",
        "--date",
        day,
        "--output",
        "/dev/null",
        "--s3",
        f"{BUCKET}/{PREFIX.rstrip('/')}",
        "--endpoint-url",
        "http://s3:5000",
    )
    got = {}
    for line in proc.stdout.splitlines():
        path, count = line.rsplit("\t", 1)
        got[path] = int(count)
    assert got == dict(expected)
    assert list(got) == sorted(got)


def test_the_collector_reports_its_stores_and_the_lines_it_stored(stream: Requests) -> None:
    stats = json.loads(docker("exec", COLLECTOR, "cat", f"{ROOT}/.collector/stats.json").stdout)
    assert stats["disk_full"] is False
    assert stats["lines_by_tag"].get("apache.access", 0) > 0  # since its last restart
    assert stats["lines_by_host"].get("lamp", 0) > 0
    stores = {store["name"]: store for store in stats["stores"]}
    assert stores["match[0]"]["type"] == "s3"
    assert stores["match[0]"]["last_upload"]["key"].startswith(f"{PREFIX}logs/")
    assert stores["match[1]"]["type"] == "file"


# ------------------------------------------------------------------ bad input


def test_malformed_frame_is_rejected_without_losing_others() -> None:
    before = docker("inspect", "-f", "{{.State.StartedAt}}", COLLECTOR).stdout
    with socket.create_connection((address(COLLECTOR), PLAIN_PORT), timeout=10) as bad:
        bad.sendall(b"\x93\xa3tag\xc1\xc1garbage" * 100)
        bad.settimeout(10)
        try:
            while bad.recv(4096):
                pass
        except ConnectionResetError:
            pass  # closed by the collector: what we expect
    marker = f"after-garbage-{RUN}"
    logger = sender.FluentSender("interop", host=address(COLLECTOR), port=PLAIN_PORT)
    try:
        assert logger.emit("after", {"marker": marker}), logger.last_error
    finally:
        logger.close()
    wait_for_record(lambda r: r[2].get("marker") == marker, "a good client's record")
    assert docker("inspect", "-f", "{{.State.StartedAt}}", COLLECTOR).stdout == before


def run_role(*extra: str, verbose: bool = False) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
    )
    return subprocess.run(
        [
            str(PROJECT / ".venv/bin/ansible-playbook"),
            *(["-v"] if verbose else []),
            # The scenario's inventory, as converge had it: the project's
            # describes the dev environment, which this scenario does not run.
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            *extra,
            str(SCENARIO / "converge.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def collector_config() -> str:
    return docker("exec", COLLECTOR, "cat", "/etc/shipyard/collector.toml").stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('{"log_shipping_matches": [{"pattern": "**", "type": "ftp"}]}', "log_shipping_matches"),
        ('{"log_shipping_matches": [{"pattern": "**", "buckit": "x"}]}', "buckit"),
        (
            '{"log_shipping_matches": [{"pattern": "**", "type": "s3"}]}',
            "collector.match[0].s3.bucket is required for type s3",
        ),
        (
            '{"log_shipping_sources": [{"container": "'
            + LAMP
            + '", "path": "/a", "tag": "bad tag"}]}',
            "sources[0].tag must be dot-separated words",
        ),
        ('{"log_shipping_collector_port": "many"}', "log_shipping_collector_port"),
    ],
)
def test_invalid_variable_fails_early_naming_it(override: str, message: str) -> None:
    before = collector_config()
    proc = run_role("-e", override)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]
    assert "Write the collector" not in proc.stdout
    assert collector_config() == before


def test_second_run_changes_nothing_and_secrets_stay_out_of_the_output() -> None:
    proc = run_role(verbose=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "changed=0" in proc.stdout
    assert S3_KEYS["aws_secret_access_key"] not in proc.stdout + proc.stderr
    mode = docker("exec", COLLECTOR, "stat", "-c", "%a %u", "/etc/shipyard/collector.toml")
    assert mode.stdout.split() == ["600", "999"]

"""The log-collector and s3 images on a real engine, built by playbooks/images.yml.

Both run on a user-defined network as the dev environment runs them: the
collector reaches moto as `s3`, the host reaches both through ports
published on 127.0.0.1 only.
"""

from __future__ import annotations

import gzip
import json
import secrets
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import PlaybookRun, docker, run_playbook, wait_ready
from logs_harness import ForwardClient, forward, wait_for
from shipyard_logs.forward import EventTime

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_IMAGE = "shipyard/log-collector"
S3_IMAGE = "shipyard/s3"
INPUT_HASH = "io.shipyard.input-hash"
ACCESS_KEY = "shipyard-test"

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# A slice long closed: with time_slice_wait = 1 the uploader ships it at once.
PAST = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PAST_PATHS = [f"/past/{n % 7}" for n in range(60)]
# Next hour: that slice stays open (and local) for the whole test.
FUTURE = datetime.fromtimestamp((int(time.time()) // 3600 + 1) * 3600 + 125, UTC)
FUTURE_PATHS = [f"/now/{n % 3}" for n in range(20)]


def build() -> PlaybookRun:
    return run_playbook("playbooks/images.yml", tags="log-collector,s3", timeout=1800)


@pytest.fixture(scope="module")
def builds(docker_engine: str) -> tuple[PlaybookRun, PlaybookRun]:
    first = build()
    assert first.rc == 0, first.raw
    second = build()
    assert second.rc == 0, second.raw
    return first, second


def inspect(ref: str) -> dict[str, Any]:
    return json.loads(docker("image", "inspect", ref))[0]


def state(container: str) -> dict[str, Any]:
    return json.loads(docker("inspect", "--format", "{{json .State}}", container))


def logs(container: str) -> str:
    proc = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, check=False
    )
    return proc.stdout + proc.stderr


def published(container: str, port: str) -> int:
    """The host port Docker published `port` on, on 127.0.0.1."""
    line = docker("port", container, port).splitlines()[0]
    host, _, number = line.rpartition(":")
    assert host == "127.0.0.1", line
    return int(number)


def stop(container: str) -> tuple[int, float]:
    began = time.monotonic()
    docker("stop", container)
    return state(container)["ExitCode"], time.monotonic() - began


def exec_text(container: str, *args: str) -> str:
    return docker("exec", container, *args)


def exists_in(container: str, path: str) -> bool:
    probe = subprocess.run(["docker", "exec", container, "test", "-e", path], check=False)
    return probe.returncode == 0


def stamp(when: datetime) -> EventTime:
    return EventTime(int(when.timestamp()))


def access_records(paths: list[str], host: str) -> list[dict[str, Any]]:
    return [
        {"source_host": host, "host": "10.0.0.9", "method": "GET", "path": p, "code": 200}
        for p in paths
    ]


def send_acked(port: int, tag: str, when: datetime, records: list[dict[str, Any]]) -> None:
    """Records in chunked frames of ten, alternating plain and gzip, each acked."""
    with ForwardClient(port) as client:
        for first in range(0, len(records), 10):
            entries = [(stamp(when), r) for r in records[first : first + 10]]
            chunk = f"{tag}-{when:%H}-{first}-{uuid.uuid4().hex[:6]}"
            client.send(forward.encode_packed_forward(tag, entries, chunk, first % 20 == 0))
            assert client.ack() == chunk


def expected_counts(paths: list[str]) -> str:
    counts = Counter(paths)
    return "".join(f"{path}\t{counts[path]}\n" for path in sorted(counts))


@dataclass
class Stack:
    network: str
    s3: str
    collector: str
    volume: str
    bucket: str
    secret: str
    created: list[str]

    def moto(self) -> Any:
        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        ).client("s3", endpoint_url=f"http://127.0.0.1:{published(self.s3, '5000/tcp')}")


@pytest.fixture(scope="module")
def stack(builds: tuple[PlaybookRun, PlaybookRun]) -> Iterator[Stack]:
    tag = uuid.uuid4().hex[:8]
    stack = Stack(
        network=f"shipyard-test-logs-{tag}",
        s3=f"shipyard-test-s3-{tag}",
        collector=f"shipyard-test-collector-{tag}",
        volume=f"shipyard-test-collector-{tag}",
        bucket=f"shipyard-test-{tag}",
        secret=secrets.token_hex(16),
        created=[],
    )
    docker("network", "create", stack.network)
    try:
        docker(
            "run",
            "--detach",
            "--name",
            stack.s3,
            "--network",
            stack.network,
            "--network-alias",
            "s3",
            "--publish",
            "127.0.0.1::5000",
            f"{S3_IMAGE}:latest",
        )
        stack.created.append(stack.s3)
        docker(
            "run",
            "--detach",
            "--name",
            stack.collector,
            "--network",
            stack.network,
            "--publish",
            "127.0.0.1::24224/tcp",
            "--publish",
            "127.0.0.1::24224/udp",
            "--volume",
            f"{stack.volume}:/var/log/shipyard",
            "--env",
            f"SHIPYARD_COLLECTOR_S3_BUCKET={stack.bucket}",
            "--env",
            "SHIPYARD_COLLECTOR_S3_ENDPOINT_URL=http://s3:5000",
            "--env",
            "SHIPYARD_COLLECTOR_S3_CREATE_BUCKET=true",
            "--env",
            "SHIPYARD_COLLECTOR_S3_UPLOAD_INTERVAL=1",
            "--env",
            "SHIPYARD_COLLECTOR_TIME_SLICE_WAIT=1",
            "--env",
            f"SHIPYARD_COLLECTOR_S3_ACCESS_KEY_ID={ACCESS_KEY}",
            "--env",
            f"SHIPYARD_COLLECTOR_S3_SECRET_ACCESS_KEY={stack.secret}",
            f"{COLLECTOR_IMAGE}:latest",
        )
        stack.created.append(stack.collector)
        wait_ready(stack.s3)
        wait_ready(stack.collector)
        port = published(stack.collector, "24224/tcp")
        send_acked(port, "apache.access", PAST, access_records(PAST_PATHS, "web-past"))
        send_acked(port, "apache.access", FUTURE, access_records(FUTURE_PATHS, "web-now"))
        send_acked(port, "php.error", FUTURE, [{"source_host": "web-now", "path": "/now/0"}])
        yield stack
    finally:
        for container in stack.created:
            docker("rm", "--force", "--volumes", container, check=False)
        docker("volume", "rm", "--force", stack.volume, check=False)
        docker("network", "rm", stack.network, check=False)


def test_images_build_and_a_second_run_changes_nothing(builds):
    first, second = builds
    assert second.changed == 0, second.raw
    assert any("shipyard/s3:latest, 0.1.0 is up to date" in m for m in second.messages)
    for name in (COLLECTOR_IMAGE, S3_IMAGE):
        latest, version = inspect(f"{name}:latest"), inspect(f"{name}:0.1.0")
        assert latest["Id"] == version["Id"]
        assert len(latest["Config"]["Labels"][INPUT_HASH]) == 64
        size = latest["Size"] / 1e6
        print(f"{name}: {size:.0f} MB, first run {first.seconds:.0f} s")


PROBE = """
import json, shutil, subprocess, sys
import moto
package = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "python3-moto"],
                         capture_output=True, text=True, check=True).stdout
print(json.dumps({"version": moto.__version__, "module": moto.__file__, "package": package,
                  "server": shutil.which("moto_server"), "venv": sys.prefix != sys.base_prefix}))
"""


def test_moto_is_debians_package_and_nothing_is_fetched_for_it(builds):
    found = json.loads(
        docker("run", "--rm", "--entrypoint", "python3", f"{S3_IMAGE}:latest", "-c", PROBE)
    )
    print(f"moto in {S3_IMAGE}: {found}")
    assert found["version"].startswith("5.1."), found
    assert found["package"].startswith(found["version"] + "-"), found
    assert found["module"] == "/usr/lib/python3/dist-packages/moto/__init__.py"
    assert found["server"] == "/usr/bin/moto_server"
    assert not found["venv"]
    # The build reads only committed files: nothing is downloaded beside the
    # Dockerfile (moto-server is this project's TLS and key check around moto).
    assert sorted(p.name for p in (ROOT / "images" / "s3").iterdir()) == [
        "Dockerfile",
        "README.md",
        "image.yml",
        "moto-server",
        "services.toml",
    ]


def test_plain_docker_build_without_ansible_serves_s3(builds, base_image: str):
    tag = uuid.uuid4().hex[:8]
    image, name = f"shipyard-test/s3-plain:{tag}", f"shipyard-test-s3-plain-{tag}"
    docker(
        "build",
        "--quiet",
        "--file",
        str(ROOT / "images" / "s3" / "Dockerfile"),
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "--tag",
        image,
        str(ROOT / "images"),
    )
    try:
        docker("run", "--detach", "--name", name, "--publish", "127.0.0.1::5000", image)
        wait_ready(name)
        client = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secrets.token_hex(16),
            region_name="us-east-1",
        ).client("s3", endpoint_url=f"http://127.0.0.1:{published(name, '5000/tcp')}")
        client.create_bucket(Bucket="plain")
        client.put_object(Bucket="plain", Key="a/b.txt", Body=b"built by docker alone")
        body = client.get_object(Bucket="plain", Key="a/b.txt")["Body"].read()
        assert body == b"built by docker alone"
        uid = exec_text(name, "id", "-u", "moto").strip()
        assert uid != "0"
        rows = [
            line.split(None, 2)
            for line in docker("top", name, "-eo", "uid,pid,args").splitlines()[1:]
        ]
        users = {args: row_uid for row_uid, _, args in rows}
        assert users["/usr/bin/python3 /usr/local/bin/moto-server"] == uid, rows
        code, took = stop(name)
        assert code == 0, logs(name)
        assert took < 9, f"docker stop took {took:.1f} s"
    finally:
        docker("rm", "--force", name, check=False)
        docker("image", "rm", image, check=False)


def test_image_contract(builds):
    collector = inspect(f"{COLLECTOR_IMAGE}:latest")["Config"]
    assert set(collector["ExposedPorts"]) == {"24224/tcp", "24224/udp"}
    assert set(collector["Volumes"]) == {"/var/log/shipyard"}
    s3 = inspect(f"{S3_IMAGE}:latest")["Config"]
    # 5443 is HTTPS, served once a certificate is given (pgBackRest speaks only TLS).
    assert set(s3["ExposedPorts"]) == {"5000/tcp", "5443/tcp"}
    for config in (collector, s3):
        assert config["Entrypoint"] == ["/usr/bin/tini", "--", "/usr/local/bin/shipyard-init"]
        assert config["Healthcheck"]["Test"][1:] == ["/usr/bin/test", "-e", "/run/shipyard/ready"]


def test_slices_land_in_the_volume_as_time_tag_json(stack: Stack):
    rel = f"logs/{FUTURE:%Y%m%d}/web-now-{FUTURE:%H}.log"
    text = exec_text(stack.collector, "cat", f"/var/log/shipyard/{rel}")
    lines = [line.split("\t") for line in text.splitlines()]
    assert all(len(fields) == 3 for fields in lines), text
    assert {when for when, _, _ in lines} == {FUTURE.isoformat()}
    assert Counter(tag for _, tag, _ in lines) == {"apache.access": 20, "php.error": 1}
    paths = [json.loads(body)["path"] for _, tag, body in lines if tag == "apache.access"]
    assert paths == FUTURE_PATHS
    owner = exec_text(stack.collector, "stat", "-c", "%U", f"/var/log/shipyard/{rel}").strip()
    assert owner == "collector"


@pytest.fixture(scope="module")
def shipped(stack: Stack) -> str:
    """The key of the past slice, once the collector has uploaded it."""
    client = stack.moto()
    key = f"logs/{PAST:%Y%m%d}/web-past-{PAST:%H}.log.gz"

    def uploaded() -> bool:
        listing = client.list_objects_v2(Bucket=stack.bucket, Prefix="logs/")
        return key in [o["Key"] for o in listing.get("Contents", [])]

    wait_for(uploaded, 30, f"s3://{stack.bucket}/{key}", interval=0.5)
    return key


def test_closed_slice_is_uploaded_gzipped_with_the_lifecycle_rule(stack: Stack, shipped: str):
    client = stack.moto()
    key = shipped
    body = gzip.decompress(client.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    lines = [line.split("\t") for line in body.decode().splitlines()]
    assert [json.loads(b)["path"] for _, _, b in lines] == PAST_PATHS
    assert {(when, tag) for when, tag, _ in lines} == {(PAST.isoformat(), "apache.access")}
    (rule,) = client.get_bucket_lifecycle_configuration(Bucket=stack.bucket)["Rules"]
    assert rule["ID"] == "shipyard-archive-logs"
    assert rule["Filter"] == {"Prefix": "logs/"}
    assert rule["Transitions"] == [{"Days": 7, "StorageClass": "GLACIER"}]
    # The local copy goes only after the put succeeded.
    local = f"/var/log/shipyard/logs/{PAST:%Y%m%d}/web-past-{PAST:%H}.log"
    wait_for(
        lambda: not exists_in(stack.collector, local),
        10,
        f"{local} to be removed after its upload",
        interval=0.3,
    )


PUT_TWICE = """
import json, sys
sys.path.insert(0, "/usr/local/lib/shipyard")
import botocore
from shipyard_logs.uploader import S3Settings, make_client, put_part
settings = S3Settings(
    bucket=sys.argv[1], endpoint_url="http://s3:5000", access_key_id="k", secret_access_key="s"
)
client = make_client(settings)
client.create_bucket(Bucket=settings.bucket)
rel = "logs/20260102/web-03.log"
first = put_part(client, settings, rel, 0, b"one\\n")
# The same part again with a late record appended: the key is taken, and
# its object holds a prefix of these bytes, so only that prefix counts.
again = put_part(client, settings, rel, 0, b"one\\ntwo\\n")
listing = client.list_objects_v2(Bucket=settings.bucket)["Contents"]
head = client.head_object(Bucket=settings.bucket, Key=first[0])
print(json.dumps({
    "botocore": botocore.__version__,
    "first": first,
    "again": again,
    "keys": [o["Key"] for o in listing],
    "metadata": head["Metadata"],
}))
"""


def test_conditional_puts_work_between_the_images(stack: Stack):
    """The collector image's botocore and the s3 image's moto agree on If-None-Match."""
    bucket = f"conditional-{uuid.uuid4().hex[:8]}"
    found = json.loads(exec_text(stack.collector, "python3", "-c", PUT_TWICE, bucket))
    key = "logs/20260102/web-03.log.gz"
    assert found["first"] == [key, 4]
    assert found["again"] == [key, 4]
    assert found["keys"] == [key]
    assert found["metadata"]["shipyard-end"] == "4"
    print(f"botocore {found['botocore']} in the collector image")


def test_report_runs_in_the_collector_container(stack: Stack, shipped: str):
    local = docker(
        "exec",
        stack.collector,
        "shipyard-logs",
        "report",
        "--date",
        f"{FUTURE:%Y%m%d}",
        "--root",
        "/var/log/shipyard",
        "--output",
        "/tmp/future.log",
    )
    assert local == expected_counts(FUTURE_PATHS)
    assert exec_text(stack.collector, "wc", "-l", "/tmp/future.log").split()[0] == "21"
    # The past day is only in S3 now; report reads it with the usual AWS_* variables.
    remote = docker(
        "exec",
        "--env",
        f"AWS_ACCESS_KEY_ID={ACCESS_KEY}",
        "--env",
        f"AWS_SECRET_ACCESS_KEY={stack.secret}",
        "--env",
        "AWS_DEFAULT_REGION=us-east-1",
        stack.collector,
        "shipyard-logs",
        "report",
        "--date",
        f"{PAST:%Y%m%d}",
        "--root",
        "/var/log/shipyard",
        "--s3",
        stack.bucket,
        "--endpoint-url",
        "http://s3:5000",
        "--output",
        "/tmp/past.log",
    )
    assert remote == expected_counts(PAST_PATHS)


def test_collector_runs_as_an_unprivileged_user(stack: Stack):
    uid = exec_text(stack.collector, "id", "-u", "collector").strip()
    assert uid != "0"
    rows = [
        line.split(None, 2)
        for line in docker("top", stack.collector, "-eo", "uid,pid,args").splitlines()[1:]
    ]
    users = {args: row_uid for row_uid, _, args in rows}
    assert users["/usr/bin/python3 /usr/local/bin/shipyard-logs collector"] == uid
    assert users["/usr/bin/python3 /usr/local/bin/shipyard-init"] == "0"


def test_heartbeat_is_answered_over_the_published_udp_port(stack: Stack):
    port = published(stack.collector, "24224/udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        for _ in range(5):  # the docker-proxy for UDP may need a moment
            sock.sendto(b"\xc0", ("127.0.0.1", port))
            try:
                data, _ = sock.recvfrom(16)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("no heartbeat answer")
    assert data == b"\xc0"


def test_no_secret_in_the_images_or_the_output(stack: Stack, shipped: str):
    # The secret was in use (the upload worked); it shows nowhere it could leak.
    for image in (f"{COLLECTOR_IMAGE}:latest", f"{S3_IMAGE}:latest"):
        history = docker("history", "--no-trunc", image)
        config = docker("image", "inspect", image)
        assert stack.secret not in history + config
        env = inspect(image)["Config"]["Env"]
        names = [item.partition("=")[0] for item in env]
        assert not [n for n in names if any(w in n for w in ("SECRET", "KEY", "PASSWORD"))], env
        assert not [n for n in names if n.startswith("AWS_")], env
    assert stack.secret not in logs(stack.collector)
    assert stack.secret not in logs(stack.s3)
    config = exec_text(stack.collector, "cat", "/etc/shipyard/collector.toml")
    assert "access_key" not in config.replace("# ", "")


def test_docker_stop_exits_0_quickly_and_moto_forgets_on_restart(stack: Stack, shipped: str):
    for container in (stack.collector, stack.s3):
        code, took = stop(container)
        print(f"docker stop {container}: exit {code} in {took:.2f} s")
        assert code == 0, logs(container)
        assert took < 9, f"docker stop of {container} took {took:.1f} s"
    docker("start", stack.s3)
    wait_ready(stack.s3)
    assert stack.moto().list_buckets()["Buckets"] == []


def stream(port: int, acked: list[str], stop_after: Callable[[], bool]) -> None:
    """Frames of 50 records until the collector goes away; acked chunk ids recorded."""
    now = datetime.now(UTC)
    try:
        with ForwardClient(port, timeout=15) as client:
            n = 0
            while not stop_after():
                chunk = f"busy-{n}"
                entries = [
                    (stamp(now), {"source_host": "busy", "chunk": chunk, "i": i}) for i in range(50)
                ]
                client.send(forward.encode_packed_forward("t.busy", entries, chunk, n % 2 == 0))
                if client.ack() != chunk:
                    return
                acked.append(chunk)
                n += 1
    except OSError:
        return


def test_zero_config_collector_keeps_every_acked_chunk_across_docker_stop(builds):
    name = f"shipyard-test-collector0-{uuid.uuid4().hex[:8]}"
    docker(
        "run",
        "--detach",
        "--name",
        name,
        "--publish",
        "127.0.0.1::24224",
        f"{COLLECTOR_IMAGE}:latest",
    )
    try:
        wait_ready(name)
        assert "uploading" not in logs(name)
        acked: list[str] = []
        done = threading.Event()
        sender = threading.Thread(
            target=stream, args=(published(name, "24224/tcp"), acked, done.is_set), daemon=True
        )
        sender.start()
        wait_for(lambda: len(acked) >= 20, 30, "the first acks")
        code, took = stop(name)
        done.set()
        sender.join(20)
        print(f"docker stop under load: exit {code} in {took:.2f} s, {len(acked)} chunks acked")
        assert code == 0, logs(name)
        assert took < 9, f"docker stop took {took:.1f} s under load"
        docker("start", name)
        wait_ready(name)
        text = exec_text(name, "sh", "-c", "cat /var/log/shipyard/logs/*/busy-*.log")
        per_chunk = Counter(json.loads(line.split("\t")[2])["chunk"] for line in text.splitlines())
        # Every acked chunk is there, whole and once; an unacked one is all or nothing.
        assert all(per_chunk[c] == 50 for c in acked)
        assert set(per_chunk.values()) == {50}
        code, _ = stop(name)
        assert code == 0
    finally:
        docker("rm", "--force", "--volumes", name, check=False)

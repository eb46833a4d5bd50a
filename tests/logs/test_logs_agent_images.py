"""The log agent and rotation inside the LAMP and PostgreSQL images, against a real collector.

The collector runs on the host (shipyard_logs.collector through logs_harness);
the containers reach it at the Docker bridge's gateway address.
The images are the ones playbooks/images.yml builds.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import docker, run_playbook, wait_ready
from logs_harness import Collector, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LAMP = "shipyard/lamp:latest"
POSTGRESQL = "shipyard/postgresql:17"
HOSTNAME = "shipyard-logs-host"
# Small sizes and a fast loop, so rotations happen within a test.
ROTATION = {
    "SHIPYARD_ROTATE_SIZE": "64k",
    "SHIPYARD_ROTATE_INTERVAL": "0.5",
    "SHIPYARD_ROTATE_KEEP": "2",
}
REQUEST_ID = re.compile(r"[?&]rid=(\d+)")
RAISED = re.compile(r"^shipyard-logs-test (\d+)$")


@pytest.fixture(scope="module")
def images(base_image: str) -> tuple[str, str]:
    run = run_playbook("playbooks/images.yml", tags="lamp,postgresql", timeout=1800)
    assert run.rc == 0, run.raw[-3000:]
    return LAMP, POSTGRESQL


@pytest.fixture(scope="module")
def gateway(docker_engine: str) -> str:
    """The default bridge's address on the host: containers reach host services there.

    The engine reports it only where it was configured; otherwise, as Docker
    assigns it, it is the first address of the bridge's subnet.
    """
    config = json.loads(docker("network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"))
    return config[0].get("Gateway") or str(next(ipaddress.ip_network(config[0]["Subnet"]).hosts()))


@pytest.fixture
def collector(collector_factory: Callable[..., Collector]) -> Collector:
    # All addresses: the harness checks 127.0.0.1, the containers use the gateway.
    return collector_factory(bind="0.0.0.0").start()  # noqa: S104


@pytest.fixture
def containers() -> Iterator[Callable[..., str]]:
    names: list[str] = []

    def run(image: str, env: dict[str, str]) -> str:
        name = f"shipyard-logs-test-{uuid.uuid4().hex[:8]}"
        names.append(name)
        flags = [f"--env={k}={v}" for k, v in env.items()]
        docker("run", "--detach", "--name", name, "--hostname", HOSTNAME, *flags, image)
        return name

    try:
        yield run
    finally:
        for name in names:
            docker("rm", "--force", "--volumes", name, check=False)


def logs(container: str) -> str:
    proc = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, check=False
    )
    return proc.stdout + proc.stderr


def state(container: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State}}", container))


def wait_healthy(container: str, timeout: float = 180) -> None:
    def healthy() -> bool:
        current = state(container)
        assert current["Running"], logs(container)[-3000:]
        return current.get("Health", {}).get("Status") == "healthy"

    wait_for(healthy, timeout, f"{container} to turn healthy", interval=0.5)


def address(container: str) -> str:
    return docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", container).strip()


def records(collector: Collector, tag: str) -> list[dict]:
    return [json.loads(body) for _, t, body in collector.lines() if t == tag]


def agent_env(collector: Collector, gateway: str) -> dict[str, str]:
    return {
        "SHIPYARD_AGENT_COLLECTOR_HOST": gateway,
        "SHIPYARD_AGENT_COLLECTOR_PORT": str(collector.port),
    }


def lamp(containers: Callable[..., str], env: dict[str, str]) -> str:
    name = containers(LAMP, {"MARIADB_ROOT_PASSWORD": "logs-test-root", **env})
    wait_ready(name)
    return name


def request(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - test URL
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def requests(container: str, ids: range, workers: int = 8) -> None:
    base = f"http://{address(container)}/shipyard-logs-test"
    with ThreadPoolExecutor(workers) as pool:
        codes = Counter(pool.map(lambda i: request(f"{base}?rid={i}"), ids))
    assert codes == {404: len(ids)}


def request_ids(collector: Collector) -> Counter[int]:
    found: Counter[int] = Counter()
    for record in records(collector, "apache.access"):
        match = REQUEST_ID.search(record.get("path") or "")
        if match:
            found[int(match[1])] += 1
    return found


def raised_ids(collector: Collector) -> Counter[int]:
    found: Counter[int] = Counter()
    for record in records(collector, "postgresql"):
        match = RAISED.match(record.get("message", ""))
        if match:
            found[int(match[1])] += 1
    return found


def stop_order(container: str) -> list[str]:
    return re.findall(r"shipyard-init \| stopping (\S+) \(pid", logs(container))


def timed_stop(container: str) -> float:
    began = time.monotonic()
    docker("stop", container)
    return time.monotonic() - began


def test_lamp_ships_every_service_log_with_its_fields(images, collector, gateway, containers):
    name = lamp(containers, agent_env(collector, gateway))
    php = "<?php trigger_error('shipyard-logs-test php warning', E_USER_WARNING); echo 'ok';"
    docker("exec", name, "sh", "-c", f'echo "{php}" > /var/www/html/warn.php')
    assert request(f"http://{address(name)}/warn.php") == 200
    requests(name, range(200))

    wait_for(lambda: len(request_ids(collector)) >= 200, 60, "200 access records")
    access = [r for r in records(collector, "apache.access") if "rid=" in (r["path"] or "")]
    first = access[0]
    assert first["method"] == "GET"
    assert first["code"] == 404
    assert first["host"] == gateway  # the client, as Apache saw it
    assert first["source_host"] == HOSTNAME
    assert first["agent"].startswith("Python-urllib")
    assert set(request_ids(collector).values()) == {1}

    def tagged(tag: str, text: str) -> list[dict]:
        return [r for r in records(collector, tag) if text in json.dumps(r)]

    assert wait_for(lambda: tagged("mariadb.error", "ready for connections"), 30, "MariaDB's log")
    assert wait_for(
        lambda: tagged("php.error", "shipyard-logs-test php warning"), 30, "the PHP warning"
    )
    assert all(r["source_host"] == HOSTNAME for r in records(collector, "mariadb.error"))

    took = timed_stop(name)
    assert state(name)["ExitCode"] == 0
    assert took < 10, f"docker stop took {took:.1f} s"
    # First up, last down; log-rotate, started last, goes first.
    assert stop_order(name) == ["backup", "log-rotate", "apache", "php-fpm", "mariadb", "log-agent"]
    assert "SIGKILL" not in logs(name).split("received SIGTERM")[-1]


def test_lamp_rotation_under_load_loses_no_request(images, collector, gateway, containers):
    name = lamp(containers, {**agent_env(collector, gateway), **ROTATION})
    count = 6000
    requests(name, range(count))

    wait_for(lambda: len(request_ids(collector)) >= count, 120, f"{count} access records")
    time.sleep(2)  # a duplicate would arrive by now
    ids = request_ids(collector)
    assert sorted(ids) == list(range(count))
    assert set(ids.values()) == {1}, [i for i, n in ids.items() if n > 1][:10]

    output = logs(name)
    assert output.count("rotated /var/log/apache2/access.log") >= 3, output[-3000:]
    kept = docker("exec", name, "sh", "-c", "ls /var/log/apache2/access.log.*").split()
    assert 1 <= len(kept) <= 2 + 1  # keep=2, plus one the agent may still read
    took = timed_stop(name)
    assert state(name)["ExitCode"] == 0 and took < 10, f"docker stop took {took:.1f} s"


def test_postgresql_ships_its_jsonlog_through_its_own_rotation(
    images, collector, gateway, containers
):
    env = {"POSTGRES_PASSWORD": "logs-test", **agent_env(collector, gateway), **ROTATION}
    name = containers(POSTGRESQL, env)
    wait_ready(name)
    count = 3000
    # A pause every 600 lines: the file name has whole seconds, and a rotation
    # within the same second reopens the same name.
    raise_log = (
        f"DO $$ BEGIN FOR i IN 1..{count} LOOP "
        "RAISE LOG 'shipyard-logs-test %', i; "
        "IF i % 600 = 0 THEN PERFORM pg_sleep(1.1); END IF; END LOOP; END $$"
    )
    docker("exec", "--user", "postgres", name, "psql", "--quiet", "-c", raise_log)

    wait_for(lambda: len(raised_ids(collector)) >= count, 120, f"{count} PostgreSQL records")
    time.sleep(2)
    ids = raised_ids(collector)
    assert sorted(ids) == list(range(1, count + 1))
    assert set(ids.values()) == {1}
    sample = next(r for r in records(collector, "postgresql") if RAISED.match(r["message"]))
    assert sample["error_severity"] == "LOG"
    assert sample["source_host"] == HOSTNAME
    assert not records(collector, "postgresql.unparsed")

    # The server started new files at 64 kB; log-rotate pruned the old ones.
    wait_for(lambda: "removed /var/log/postgresql/" in logs(name), 30, "old files pruned")
    files = docker("exec", name, "sh", "-c", "ls /var/log/postgresql/*.json").split()
    assert 2 <= len(files) <= 1 + 2 + 1, files

    took = timed_stop(name)
    assert state(name)["ExitCode"] == 0 and took < 10, f"docker stop took {took:.1f} s"
    assert stop_order(name) == ["backup", "log-rotate", "postgres", "log-agent"]


def test_without_a_collector_the_images_work_and_the_agents_back_off_quietly(images, containers):
    # Both images side by side: the same 30 s of back-off is watched once.
    names = {
        LAMP: containers(LAMP, {"MARIADB_ROOT_PASSWORD": "x"}),
        POSTGRESQL: containers(POSTGRESQL, {"POSTGRES_PASSWORD": "x"}),
    }
    for name in names.values():
        wait_healthy(name)
    time.sleep(20)
    for image, name in names.items():
        assert state(name)["Health"]["Status"] == "healthy", image
        agent_lines = [line for line in logs(name).splitlines() if line.startswith("log-agent |")]
        retries = [line for line in agent_lines if "retrying in" in line]
        # Exponential back-off: about 8 attempts in the first 30 s, where a
        # fixed 1 s retry would make 30.
        assert 1 <= len(retries) <= 10, (image, "\n".join(agent_lines))
        held = docker("exec", name, "ls", "/var/lib/shipyard/log-agent").split()
        # Positions have not moved: the backlog stays in the log files. The
        # batch waiting for a connection is persisted only once it is sent;
        # stats.json is the agent's own report of what it shipped, not a
        # position, and it says nothing was shipped.
        assert set(held) <= {"inflight.msgpack", "stats.json"}, (image, held)
        stats = json.loads(docker("exec", name, "cat", "/var/lib/shipyard/log-agent/stats.json"))
        assert stats["connected"] is False and stats["last_ack"] is None, image
        assert stats["sources"], image
        assert all(s["lines_shipped"] == 0 for s in stats["sources"].values()), image
        took = timed_stop(name)
        assert state(name)["ExitCode"] == 0 and took < 10, f"{image}: docker stop took {took:.1f} s"
        assert "SIGKILL" not in logs(name).split("received SIGTERM")[-1], image

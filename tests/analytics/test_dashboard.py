"""The dashboard of the running dev environment, in Debian's headless Chromium.

A known pattern of requests goes through the LAMP container's Apache, the
agent, the collector and S3; `make report`'s playbook merges the day; then
the page must show every service up and healthy, the pattern's exact counts
in its charts, and the stats files' numbers, on a desktop and a phone-sized
screen, with every request to anything but this machine refused.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from helpers import ROOT, run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE = "http://127.0.0.1:8080"
S3 = "http://127.0.0.1:9000"
BUCKET = "shipyard-logs"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / ".artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Name resolution fails for every host but the loopback address.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
PATTERN = {"alpha": 40, "beta": 25}
CONTAINERS = {
    "web": "shipyard-lamp",
    "mariadb": "shipyard-lamp",
    "postgresql": "shipyard-postgresql",
    "collector": "shipyard-log-collector",
    "s3": "shipyard-s3",
}


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=60
    )


def s3() -> Any:
    import boto3

    secrets = ROOT / ".shipyard" / "secrets"
    return boto3.session.Session(
        aws_access_key_id=(secrets / "s3-access-key-id").read_text().strip(),
        aws_secret_access_key=(secrets / "s3-secret-access-key").read_text().strip(),
        region_name="us-east-1",
    ).client("s3", endpoint_url=S3)


def shipped_access_records(day: datetime) -> list[dict[str, Any]]:
    """Every access record the lamp host shipped today, once each, read the plain way."""
    client = s3()
    seen: set[str] = set()
    out = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"logs/{day:%Y%m%d}/lamp-"
    )
    for obj in (o for page in pages for o in page.get("Contents", [])):
        body = gzip.decompress(client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
        for line in body.decode().splitlines():
            stamp, tag, text = line.split("\t", 2)
            record = json.loads(text)
            rid = record.get("_record_id")
            if tag != "apache.access" or (rid is not None and rid in seen):
                continue
            if rid is not None:
                seen.add(rid)
            record["time"] = stamp
            out.append(record)
    return out


@pytest.fixture(scope="module")
def environment() -> None:
    state = docker("inspect", "--format", "{{.State.Health.Status}}", "shipyard-lamp")
    if state.returncode != 0:
        pytest.fail(f"the dev environment is not up (run `make up`): {state.stderr.strip()}")
    # Right after `make up` Docker's first health check may not have run yet.
    wait_healthy()


@pytest.fixture(scope="module")
def traffic(environment: None) -> dict[str, Any]:
    """The known pattern, shipped to S3 and merged into the warehouse by `make report`."""
    token = uuid.uuid4().hex[:10]
    day = datetime.now(UTC)
    paths = {f"/shipyard-test/{token}/{name}": n for name, n in PATTERN.items()}
    for path, count in paths.items():
        for _ in range(count):
            try:
                urllib.request.urlopen(BASE + path, timeout=10).close()  # noqa: S310
            except urllib.error.HTTPError as exc:
                assert exc.code == 404
    deadline = time.monotonic() + 300
    while True:
        records = shipped_access_records(day)
        shipped = Counter(r["path"] for r in records if r.get("path") in paths)
        if shipped == Counter(paths):
            break
        assert time.monotonic() < deadline, f"shipped after 300 s: {shipped}"
        time.sleep(5)
    wait_healthy()
    run = run_playbook("playbooks/report.yml", {"sample_app_report_date": f"{day:%Y-%m-%d}"})
    assert run.rc == 0, run.raw[-3000:]
    snapshot = docker("exec", "shipyard-lamp", "cat", "/etc/shipyard/dashboard-status.json")
    assert snapshot.returncode == 0, snapshot.stderr
    return {"paths": paths, "records": records, "day": day, "status": json.loads(snapshot.stdout)}


def wait_healthy(timeout: float = 120) -> None:
    """Every container healthy, so that the snapshot the report takes next says so too."""
    deadline = time.monotonic() + timeout
    while True:
        states = docker("inspect", "--format", "{{.State.Health.Status}}", *CONTAINERS.values())
        if states.stdout.split() == ["healthy"] * len(CONTAINERS):
            return
        assert time.monotonic() < deadline, states.stdout
        time.sleep(1)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        context.refused = []  # type: ignore[attr-defined]

        def only_this_machine(route: Any) -> None:
            host = urlsplit(route.request.url).hostname
            if host in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                context.refused.append(route.request.url)  # type: ignore[attr-defined]
                route.abort("blockedbyclient")

        context.route("**/*", only_this_machine)
        try:
            yield context
        finally:
            context.close()


def open_dashboard(browser: Any, width: int, height: int) -> Any:
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": height})
    response = page.goto(f"{BASE}/dashboard.php", wait_until="load")
    assert response is not None and response.status == 200
    return page


def test_health_table(browser: Any, traffic: dict[str, Any]) -> None:
    page = open_dashboard(browser, 1280, 900)
    rows = page.locator("#health tr[data-service]")
    services = {rows.nth(i).get_attribute("data-service") for i in range(rows.count())}
    assert services == {"web", "mariadb", "postgresql", "collector", "s3"}
    recorded = {c["name"]: c for c in traffic["status"]["containers"]}
    for service, container in CONTAINERS.items():
        row = page.locator(f'#health tr[data-service="{service}"]')
        probe = row.locator("td").nth(1)
        # The note is the probe's time or its error: the reason a service is down.
        if probe.locator(".badge").inner_text() != "up":
            tail = docker("logs", "--tail", "30", container)
            pytest.fail(f"{service}: {probe.inner_text()}\n{tail.stdout}{tail.stderr}")
        # The page shows what the snapshot recorded, and it was taken with all healthy.
        assert row.locator("td.health").inner_text() == recorded[container]["health"] == "healthy"
        assert "0.1.0" in row.locator("td.image").inner_text(), service

    def version(service: str) -> str:
        return str(page.locator(f'#health tr[data-service="{service}"] td.version').inner_text())

    assert version("mariadb").startswith("11.8")
    assert version("postgresql").startswith("17")
    assert "PHP 8.4" in version("web") and "Apache" in version("web")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-desktop.png"), full_page=True)
    assert browser.refused == []


def test_charts_show_the_pattern(browser: Any, traffic: dict[str, Any]) -> None:
    page = open_dashboard(browser, 1280, 900)
    for path, count in traffic["paths"].items():
        bar = page.locator(f'#hits-per-path g.bar[data-label="{path}"]')
        assert bar.count() == 1, f"{path} not in the chart"
        assert bar.get_attribute("data-value") == str(count)
        assert bar.locator("text.value").text_content() == str(count)
    # The codes per hour, counted here from the shipped slices themselves.
    expected: Counter[tuple[int, str]] = Counter()
    for record in traffic["records"]:
        code = record.get("code")
        klass = f"{code // 100}xx" if isinstance(code, int) and 200 <= code < 600 else "other"
        expected[(datetime.fromisoformat(record["time"]).hour, klass)] += 1
    shown: Counter[tuple[int, str]] = Counter()
    rects = page.locator("#codes-per-hour g.hour rect")
    for i in range(rects.count()):
        rect = rects.nth(i)
        hour = int(rect.locator("xpath=..").get_attribute("data-hour"))
        shown[(hour, rect.get_attribute("data-class"))] = int(rect.get_attribute("data-value"))
    hour = traffic["day"].hour
    assert shown[(hour, "4xx")] >= sum(PATTERN.values())
    # Records shipped after the merge are not in the report yet: the report may
    # only hold fewer, never other, counts than the slices read afterwards.
    assert all(shown[k] <= expected[k] for k in shown), (shown, expected)
    assert browser.refused == []


def test_shipping_state_from_the_stats_files(browser: Any, traffic: dict[str, Any]) -> None:
    page = open_dashboard(browser, 1280, 900)
    agent = docker("exec", "shipyard-lamp", "cat", "/var/lib/shipyard/log-agent/stats.json")
    if agent.returncode == 0:
        stats = json.loads(agent.stdout)
        row = page.locator('#sources tr[data-agent="lamp"][data-tag="apache.access"]')
        shown = int(row.locator("td.lines").inner_text())
        assert 0 < shown <= stats["sources"]["apache.access"]["lines_shipped"]
        assert shown >= sum(PATTERN.values())
    else:
        assert "No agent stats in the snapshot." in page.locator("#sources").inner_text()
    collector = docker(
        "exec", "shipyard-log-collector", "cat", "/var/log/shipyard/.collector/stats.json"
    )
    if collector.returncode == 0:
        stores = page.locator("#collector tr.store")
        assert stores.count() == len(json.loads(collector.stdout)["stores"])
    else:
        assert "No collector stats in the snapshot." in page.locator("#shipping").inner_text()


def test_phone_screen(browser: Any, traffic: dict[str, Any]) -> None:
    page = open_dashboard(browser, 390, 844)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow}px wider than the screen"
    chart = page.locator("#hits-per-path").bounding_box()
    assert chart is not None and 300 <= chart["width"] <= 390
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)


def test_only_this_machine_is_reached(browser: Any, traffic: dict[str, Any]) -> None:
    page = browser.new_page()
    with pytest.raises(Exception, match="ERR_"):
        page.goto("http://example.com/", timeout=10_000)  # refused by the route: the block works
    browser.refused.clear()
    page = open_dashboard(browser, 1280, 900)
    assert page.locator("#hits-per-path g.bar").count() > 0
    assert browser.refused == []
    assert "<script" not in page.content()

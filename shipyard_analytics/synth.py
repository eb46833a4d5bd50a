"""A synthetic day of collector slices with known contents, for tests and benchmarks.

    python -m shipyard_analytics generate --date 2026-12-01 --records 1000000 --out DIR

Writes `DIR/logs/YYYYMMDD/<host>-HH.log.gz` in the collector's format (one
`time<TAB>tag<TAB>json` line per record, gzipped as the uploader does) for
several hosts, the way a real day arrives:

* access records in agent batches (chunks); their records carry the
  collector's `_record_id` (`<chunk id>-<index>`, docs/architecture.md);
* some chunks resent: the same records again, in a later part
  `<host>-HH.<md5>.log.gz` as a second collector's upload would leave them;
* records without an id (frames without a chunk, such as Docker's fluentd log
  driver sends), among them identical lines that are distinct events;
* error-log lines, unparsed lines, and records with keys outside the schema;
* chunks written out of time order within a slice.

`Truth` is counted while writing, independently of any engine.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ACCESS_TAG = "apache.access"
HOSTS = ("web-0", "web-1", "web-2", "web-3", "web-4", "web-5", "api-0", "api-1")
METHODS = ("GET",) * 17 + ("POST", "POST", "HEAD")
CODES = (200,) * 80 + (304,) * 8 + (404,) * 7 + (301, 302, 500, 503, 403)
PLATFORMS = (
    "Windows NT 10.0; Win64; x64",
    "Macintosh; Intel Mac OS X 10_15_7",
    "X11; Linux x86_64",
    "iPhone; CPU iPhone OS 17_5 like Mac OS X",
    "Linux; Android 14; Pixel 8",
)
REFERRERS = ("https://www.google.com/", "https://duckduckgo.com/", "https://news.ycombinator.com/")
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass
class Truth:
    """What the generated day holds, once each: the expected result of the merge."""

    records: int = 0  # distinct records of the day, every tag
    lines: int = 0  # lines written, duplicates included
    duplicates: int = 0  # lines that repeat a record id already written
    by_tag: Counter[str] = field(default_factory=Counter)
    hits_per_path: Counter[str] = field(default_factory=Counter)
    input_bytes: int = 0  # gzip bytes written for the day


def _paths(rng: random.Random, count: int) -> list[str]:
    sections = ("", "/shop", "/blog", "/api/v1/items", "/static/css", "/static/js", "/user")
    found = ["/", "/index.php", "/health", "/a b", "/ünï", "/search?q=x%20y"]
    while len(found) < count:
        found.append(f"{rng.choice(sections)}/{rng.randrange(100000)}")
    return found


def _agents(rng: random.Random) -> list[str]:
    """A few hundred browser strings, as a day of real traffic has, and some robots."""
    found = ["curl/8.11.1", "Googlebot/2.1 (+http://www.google.com/bot.html)", "kube-probe/1.31"]
    for platform in PLATFORMS:
        for version in range(110, 131):
            found.append(
                f"Mozilla/5.0 ({platform}) AppleWebKit/537.36 (KHTML, like Gecko) "
                f"Chrome/{version}.0.{rng.randrange(6000, 7000)}.{rng.randrange(200)} Safari/537.36"
            )
            found.append(
                f"Mozilla/5.0 ({platform}; rv:{version}.0) Gecko/20100101 Firefox/{version}.0"
            )
    rng.shuffle(found)
    return found


def _referer(rng: random.Random, host: str) -> str | None:
    roll = rng.random()
    if roll < 0.5:
        return None
    if roll < 0.85:
        return f"https://{host}.example.com/{rng.choice(('', 'shop', 'blog', 'user'))}"
    return rng.choice(REFERRERS)


def _chunk_id(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(16)).decode("ascii")


def generate(
    out: Path, day: date, records: int, seed: int = 1, resend_share: float = 0.03
) -> Truth:
    """Write about `records` distinct records for `day` under `out/logs/`; return the truth."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    truth = Truth()
    folder = out / "logs" / day.strftime("%Y%m%d")
    folder.mkdir(parents=True, exist_ok=True)
    paths = _paths(rng, 2000)
    # A path answers with about the same bytes each time: fixed for static
    # files and most pages, a few percent of jitter for the dynamic ones.
    sizes = {path: (int(rng.lognormvariate(8, 1.2)), rng.random() < 0.3) for path in paths}
    path_weights = [1.0 / (i + 1) for i in range(len(paths))]
    agents = _agents(rng)
    agent_weights = [1.0 / (i + 1) for i in range(len(agents))]
    clients = [
        f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(5000)
    ]
    client_weights = [1.0 / (i + 1) ** 0.8 for i in range(len(clients))]
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    per_slice = max(1, records // (len(HOSTS) * 24))
    for host in HOSTS:
        with_duration = host.startswith("api-")
        for hour in range(24):
            base = start + timedelta(hours=hour)
            stamps = [base.isoformat()[:19]]  # cached per second below
            seconds = sorted(rng.randrange(3600) for _ in range(per_slice))
            chunks: list[list[str]] = []
            resent: list[list[str]] = []
            picked_paths = rng.choices(paths, path_weights, k=per_slice)
            picked_clients = rng.choices(clients, client_weights, k=per_slice)
            picked_agents = rng.choices(agents, agent_weights, k=per_slice)
            i = 0
            while i < per_slice:
                size = min(rng.randint(50, 800), per_slice - i)
                kind = rng.random()
                chunk = _chunk_id(rng) if kind < 0.93 else None
                lines = []
                for index in range(size):
                    second = seconds[i + index]
                    stamps[0] = (base + timedelta(seconds=second)).isoformat()
                    tag, record = _record(
                        rng,
                        host,
                        picked_paths[i + index],
                        picked_clients[i + index],
                        picked_agents[i + index],
                        sizes[picked_paths[i + index]],
                        with_duration,
                        kind,
                    )
                    if chunk is not None:
                        record["_record_id"] = f"{chunk}-{index}"
                    line = f"{stamps[0]}\t{tag}\t{_encode(record)}"
                    lines.append(line)
                    truth.records += 1
                    truth.by_tag[tag] += 1
                    if tag == ACCESS_TAG:
                        truth.hits_per_path[record["path"]] += 1
                    if chunk is None and rng.random() < 0.01:
                        # The same event logged twice in one second: two records, no id.
                        lines.append(line)
                        truth.records += 1
                        truth.by_tag[tag] += 1
                        if tag == ACCESS_TAG:
                            truth.hits_per_path[record["path"]] += 1
                chunks.append(lines)
                if chunk is not None and rng.random() < resend_share:
                    resent.append(lines)
                    truth.duplicates += len(lines)
                i += size
            if len(chunks) > 2 and rng.random() < 0.3:
                # A late batch: the agent retried it after the next one landed.
                chunks[0], chunks[1] = chunks[1], chunks[0]
            truth.input_bytes += _write(folder / f"{host}-{hour:02d}.log.gz", chunks, truth)
            if resent:
                body = _gzip(resent, truth)
                md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()[:12]
                (folder / f"{host}-{hour:02d}.{md5}.log.gz").write_bytes(body)
                truth.input_bytes += len(body)
    return truth


def _record(
    rng: random.Random,
    host: str,
    path: str,
    client: str,
    agent: str,
    size: tuple[int, bool],
    with_duration: bool,
    kind: float,
) -> tuple[str, dict[str, object]]:
    roll = rng.random()
    if kind >= 0.93 and roll < 0.3:
        # Docker's fluentd log driver: its own keys, outside the warehouse's columns.
        return "docker.app", {
            "container_id": "3f1c0ffee" + host,
            "container_name": "/app-" + host,
            "source": "stdout",
            "log": f"handled {path}",
        }
    if roll < 0.01:
        return "apache.error", {
            "level": "error",
            "pid": str(rng.randrange(100, 30000)),
            "client": client,
            "message": f"File does not exist: /var/www/html{path}",
            "source_host": host,
        }
    if roll < 0.015:
        return "apache.access.unparsed", {"message": f"garbage {path}", "source_host": host}
    code = rng.choice(CODES)
    record: dict[str, object] = {
        "host": client,
        "user": None,
        "method": rng.choice(METHODS),
        "path": path,
        "code": code,
        "size": None if code == 304 else _size(rng, size),
        "referer": _referer(rng, host),
        "agent": agent,
    }
    if with_duration:
        record["duration_us"] = int(rng.lognormvariate(9, 1))
    record["source_host"] = host
    return ACCESS_TAG, record


def _size(rng: random.Random, size: tuple[int, bool]) -> int:
    base, dynamic = size
    return base + rng.randrange(max(1, base // 20)) if dynamic else base


def _gzip(chunks: list[list[str]], truth: Truth) -> bytes:
    text = "".join(line + "\n" for lines in chunks for line in lines)
    truth.lines += text.count("\n")
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


def _write(path: Path, chunks: list[list[str]], truth: Truth) -> int:
    body = _gzip(chunks, truth)
    path.write_bytes(body)
    return len(body)


def truth_json(truth: Truth) -> str:
    return json.dumps(
        {
            "records": truth.records,
            "lines": truth.lines,
            "duplicates": truth.duplicates,
            "by_tag": dict(truth.by_tag),
            "input_bytes": truth.input_bytes,
        },
        indent=2,
    )

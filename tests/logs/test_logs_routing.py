"""[[match]] routing: fluentd patterns, one store per match, S3 per match, unmatched tags."""

import gzip
import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from logs_harness import COMMON, PYTHON, Collector, ForwardClient, MotoServer, forward, wait_for
from shipyard_logs.forward import EventTime
from shipyard_logs.routing import PatternError, TagMatcher

HOUR_10 = EventTime(1795168800)  # 2026-11-20T10:00:00+00:00, long closed
SLICE = "logs/20261120/web1-10.log"


@pytest.mark.parametrize(
    ("pattern", "tag", "matches"),
    [
        ("a.*", "a.b", True),
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("a.*", "ab", False),
        ("*", "a", True),
        ("*", "a.b", False),
        ("a.**", "a", True),
        ("a.**", "a.b", True),
        ("a.**", "a.b.c", True),
        ("a.**", "ab", False),
        ("a.**", "b.a", False),
        ("**", "a", True),
        ("**", "a.b.c", True),
        ("**.error", "error", True),
        ("**.error", "php.fpm.error", True),
        ("**.error", "php.errors", False),
        ("a.**.z", "a.z", True),
        ("a.**.z", "a.b.c.z", True),
        ("a.**.z", "a.bz", False),
        ("{x,y}.*", "x.a", True),
        ("{x,y}.*", "y.a", True),
        ("{x,y}.*", "z.a", False),
        ("{x,y}.*", "x.a.b", False),
        ("{x,y}.*", "xy.a", False),
        ("a.{b,c.**}", "a.c.d.e", True),
        ("a.{b,c.**}", "a.b.d", False),
        ("{a,b}{c,d}", "bc", True),
        ("apache.** php.*", "apache", True),
        ("apache.** php.*", "apache.access", True),
        ("apache.** php.*", "php.error", True),
        ("apache.** php.*", "php.fpm.error", False),
        ("apache.** php.*", "mariadb.error", False),
        ("a.b", "a.b", True),
        ("a.b", "aXb", False),  # '.' is a literal separator, not a regex wildcard
        ("a+b", "a+b", True),
        ("a+b", "aab", False),
        (r"a\*", "a*", True),
        (r"a\*", "ab", False),
    ],
)
def test_fluentd_pattern_semantics(pattern: str, tag: str, matches: bool):
    assert TagMatcher(pattern)(tag) is matches


@pytest.mark.parametrize("pattern", ["", "   ", "a.", "{a,b", "a}", "/a.*/", "a\\"])
def test_patterns_fluentd_would_misread_are_refused(pattern: str):
    with pytest.raises(PatternError):
        TagMatcher(pattern)


def routed_collector(
    make: Callable[..., Collector], body: str, env: dict[str, str] | None = None
) -> Collector:
    """A collector whose config file is hand-written TOML (the harness has no nested tables)."""
    collector = make()
    head = f'bind = "127.0.0.1"\nport = {collector.port}\nroot = "{collector.root}"\n'
    collector.config.write_text(head + body)
    collector.env = env or {}
    return collector.start()


def send_frames(collector: Collector, frames: list[tuple[str, str, str]]) -> None:
    """(tag, chunk, message) frames in one write, so one read routes them to several stores."""
    data = b"".join(
        forward.encode_packed_forward(tag, [(HOUR_10, {"m": m, "source_host": "web1"})], chunk)
        for tag, chunk, m in frames
    )
    with ForwardClient(collector.port) as client:
        client.send(data)
        assert sorted(str(client.ack()) for _ in frames) == sorted(c for _, c, _ in frames)


def tags_in(path: Path) -> Counter[str]:
    return Counter(line.split("\t")[1] for line in path.read_text().splitlines())


def s3_objects(s3, bucket: str) -> dict[str, str]:
    try:
        listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    except s3.exceptions.NoSuchBucket:
        return {}
    return {o["Key"]: o["ETag"] for o in listing}


def s3_tags(s3, bucket: str, key: str) -> Counter[str]:
    body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).decode()
    return Counter(line.split("\t")[1] for line in body.splitlines())


NO_AMBIENT_CREDENTIALS = {
    # boto3 treats empty variables as unset: only the match's own keys can sign.
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def test_matches_route_tags_to_their_own_stores_and_only_s3_matches_upload(
    moto: MotoServer, collector_factory, tmp_path: Path
):
    bucket = f"routes-{uuid.uuid4().hex[:12]}"
    key_file = tmp_path / "access_key_id"
    key_file.write_text("route-key\n")
    s3_common = f"""bucket = "{bucket}"
endpoint_url = "{moto.url}"
create_bucket = true
upload_interval = 0.3
retry_max_interval = 1.0
"""
    collector = routed_collector(
        collector_factory,
        f"""
[[match]]
pattern = "apache.** php.*"
type = "s3"
path = "web"
time_slice_wait = 1
[match.s3]
prefix = "web"
access_key_id_file = "{key_file}"
{s3_common}
[[match]]
pattern = "mariadb.* postgresql"
type = "file"
path = "db"
time_slice_wait = 1

[[match]]
pattern = "audit.**"
type = "s3"
path = "audit"
time_slice_wait = 1
[match.s3]
prefix = "audit/"
{s3_common}""",
        env={
            **NO_AMBIENT_CREDENTIALS,
            "SHIPYARD_COLLECTOR_MATCH_0_S3_SECRET_ACCESS_KEY": "route-secret-0",
            "SHIPYARD_COLLECTOR_MATCH_2_S3_ACCESS_KEY_ID": "audit-key",
            "SHIPYARD_COLLECTOR_MATCH_2_S3_SECRET_ACCESS_KEY": "route-secret-2",
        },
    )
    send_frames(
        collector,
        [
            ("apache.access", "c1", "hit"),
            ("php.error", "c2", "warning"),
            ("mariadb.error", "c3", "db"),
            ("postgresql", "c4", "pg"),
            ("audit.login", "c5", "login"),
            ("other.thing", "c6", "stray 1"),
            ("php.fpm.error", "c7", "php.* is one part only"),
        ],
    )
    send_frames(collector, [("other.thing", "c8", "stray 2")])

    s3 = moto.client()
    web_key, audit_key = f"web/{SLICE}.gz", f"audit/{SLICE}.gz"
    found = wait_for(
        lambda: len(s3_objects(s3, bucket)) == 2 and s3_objects(s3, bucket),
        20,
        "both s3 matches to upload",
    )
    assert set(found) == {web_key, audit_key}
    assert s3_tags(s3, bucket, web_key) == {"apache.access": 1, "php.error": 1}
    assert s3_tags(s3, bucket, audit_key) == {"audit.login": 1}
    root = collector.root
    wait_for(lambda: not (root / "web" / SLICE).exists(), 10, "the shipped web slice to go")
    wait_for(lambda: not (root / "audit" / SLICE).exists(), 10, "the shipped audit slice to go")

    # The file match is never shipped: its closed slice stays, with its tags only.
    assert tags_in(root / "db" / SLICE) == {"mariadb.error": 1, "postgresql": 1}
    assert tags_in(root / "unmatched" / SLICE) == {"other.thing": 2, "php.fpm.error": 1}
    assert set(s3_objects(s3, bucket)) == {web_key, audit_key}
    for store in ("web", "db", "audit", "unmatched"):
        assert (root / store / ".collector" / "journal").is_file()
    assert not (root / "logs").exists()  # no match has path "": nothing at the root

    # Two matches in one bucket: each keeps its own archive rule.
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert sorted(r["Filter"]["Prefix"] for r in rules) == ["audit/logs/", "web/logs/"]
    assert len({r["ID"] for r in rules}) == 2

    output = collector.output()
    assert output.count("'other.thing' matches no [[match]] pattern") == 1
    assert output.count("'php.fpm.error' matches no [[match]] pattern") == 1
    for secret in ("route-secret-0", "route-secret-2", "route-key"):
        assert secret not in output


def test_first_match_wins_and_replays_are_stored_once_per_store_across_sigkill(
    collector_factory,
):
    collector = routed_collector(
        collector_factory,
        """
[[match]]
pattern = "app.*"
type = "file"
path = "app"

[[match]]
pattern = "app.* **"
type = "file"
path = "rest"
""",
    )
    frames = [
        ("app.web", "r1", "first match"),
        ("app.web.slow", "r2", "only the catch-all"),
        ("sys", "r3", "catch-all too"),
        ("app.db", "r4", "first match again"),
    ]
    send_frames(collector, frames)
    send_frames(collector, frames)  # an agent that missed the acks resends as is
    collector.kill()
    collector.start()
    send_frames(collector, [*frames, ("app.web", "r5", "new after restart")])

    root = collector.root
    assert tags_in(root / "app" / SLICE) == {"app.web": 2, "app.db": 1}
    assert tags_in(root / "rest" / SLICE) == {"app.web.slow": 1, "sys": 1}
    messages = [
        json.loads(line.split("\t")[2])["m"]
        for store in ("app", "rest")
        for line in (root / store / SLICE).read_text().splitlines()
    ]
    assert sorted(messages) == sorted([m for _, _, m in frames] + ["new after restart"])
    assert list((root / "unmatched" / "logs").rglob("*.log")) == []
    assert "matches no [[match]] pattern" not in collector.output()


def test_without_match_tables_everything_stays_at_the_root(collector: Collector):
    send_frames(collector, [("any.tag", "d1", "x"), ("other", "d2", "y")])
    assert tags_in(collector.root / SLICE) == {"any.tag": 1, "other": 1}
    assert not (collector.root / "unmatched").exists()


MATCH = '[[match]]\npattern = "a.**"\ntype = "file"\npath = "a"\n'


@pytest.mark.parametrize(
    ("config", "env", "message"),
    [
        ('[[match]]\ntype = "file"\n', {}, "collector.match[0].pattern: is empty"),
        (
            MATCH + '[[match]]\npattern = "{b,c"\ntype = "file"\n',
            {},
            "collector.match[1].pattern: '{b,c' has a '{' without '}'",
        ),
        (
            '[[match]]\npattern = "a"\ntype = "kafka"\n',
            {},
            "collector.match[0].type must be file or s3, not 'kafka'",
        ),
        ('[[match]]\npattern = "a"\n', {}, "collector.match[0].type must be file or s3"),
        (MATCH + MATCH, {}, 'collector.match[1].path "a" is used by match[0]'),
        (
            '[[match]]\npattern = "a"\ntype = "file"\n[[match]]\npattern = "b"\ntype = "file"\n',
            {},
            'collector.match[1].path "" is used by match[0]',
        ),
        (
            '[[match]]\npattern = "a"\ntype = "file"\npath = "../x"\n',
            {},
            'collector.match[0].path "../x" must be one directory name',
        ),
        (
            '[[match]]\npattern = "a"\ntype = "file"\npath = "unmatched"\n',
            {},
            'collector.match[0].path "unmatched"',
        ),
        (
            '[[match]]\npattern = "a"\ntype = "file"\npath = "logs"\n',
            {},
            'collector.match[0].path "logs"',
        ),
        (
            '[[match]]\npattern = "a"\ntype = "s3"\n',
            {},
            "collector.match[0].s3.bucket is required for type s3",
        ),
        (
            '[[match]]\npattern = "a"\ntype = "s3"\n[match.s3]\nprefix = "p"\n',
            {},
            "collector.match[0].s3.bucket is required for type s3",
        ),
        (
            MATCH + '[[match]]\npattern = "b"\ntype = "file"\npath = "b"\ncolour = "red"\n',
            {},
            "collector.match[1]: unknown key(s) colour",
        ),
        (
            '[[match]]\npattern = "a"\ntype = "s3"\n[match.s3]\nbucket = "bkt"\nbukket = "c"\n',
            {},
            "collector.match[0].s3: unknown key(s) bukket",
        ),
        (
            '[[match]]\npattern = "a"\ntype = "file"\n[match.s3]\nbucket = "bkt"\n',
            {},
            "collector.match[0].s3 is only used with type s3",
        ),
        (
            '[[match]]\npattern = "a"\ntype = "file"\ntime_slice_format = "%Y%m%d"\n',
            {},
            "collector.match[0].time_slice_format: time_slice_format must contain ${host}",
        ),
        (
            '[[match]]\npattern = "a"\ntype = "file"\ntime_slice_wait = "soon"\n',
            {},
            "collector.match[0].time_slice_wait: expected float",
        ),
        (
            '[[match]]\npattern = "a"\ntype = "s3"\n[match.s3]\nbucket = "bkt"\n'
            '[[match]]\npattern = "b"\ntype = "s3"\npath = "b"\n[match.s3]\nbucket = "bkt"\n',
            {},
            'collector.match[1].s3.prefix "" in bucket "bkt" is used by match[0]',
        ),
        ('match = "a.**"\n', {}, "collector.match must be an array of tables"),
        ('[s3]\nbucket = "bkt"\n' + MATCH, {}, "collector.s3.bucket is not used with [[match]]"),
        (
            MATCH,
            {"SHIPYARD_COLLECTOR_S3_BUCKET": "bkt"},
            "collector.s3.bucket is not used with [[match]]",
        ),
        (
            MATCH,
            {"SHIPYARD_COLLECTOR_MATCH_3_S3_ACCESS_KEY_ID": "k"},
            "SHIPYARD_COLLECTOR_MATCH_3_S3_ACCESS_KEY_ID: there is no collector.match[3]",
        ),
        (
            MATCH,
            {"SHIPYARD_COLLECTOR_MATCH_0_S3_ACCESS_KEY_ID": "k"},
            "SHIPYARD_COLLECTOR_MATCH_0_S3_ACCESS_KEY_ID: collector.match[0] is not of type s3",
        ),
        (
            "",
            {"SHIPYARD_COLLECTOR_MATCH_0_PATTERN": "a"},
            "SHIPYARD_COLLECTOR_MATCH_0_PATTERN: expected SHIPYARD_COLLECTOR_MATCH_<N>_S3_<KEY>",
        ),
        (
            '[[match]]\npattern = "a"\ntype = "s3"\n[match.s3]\nbucket = "bkt"\n'
            'secret_access_key_file = "/nonexistent/secret"\naccess_key_id = "k"\n',
            {},
            "collector.match[0].s3.secret_access_key_file: cannot read /nonexistent/secret",
        ),
        (
            '[[match]]\npattern = "a"\ntype = "s3"\n[match.s3]\nbucket = "bkt"\n'
            'access_key_id = "k"\n',
            {},
            "collector.match[0].s3: access_key_id and secret_access_key go together",
        ),
    ],
)
def test_configuration_errors_name_the_key(tmp_path: Path, config: str, env: dict, message: str):
    code, output = check_config(tmp_path, config, env)
    assert code == 78, output
    assert output.startswith(message), output


def test_empty_secret_file_is_refused_naming_the_key(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    config = (
        '[[match]]\npattern = "a"\ntype = "s3"\n[match.s3]\nbucket = "bkt"\n'
        f'access_key_id_file = "{empty}"\nsecret_access_key = "s"\n'
    )
    assert check_config(tmp_path, config, {}) == (
        78,
        f"collector.match[0].s3.access_key_id_file: {empty} is empty",
    )


def check_config(tmp_path: Path, config: str, env: dict[str, str]) -> tuple[int, str]:
    """Exit code and output of --check-config, without the program name."""
    path = tmp_path / "collector.toml"
    path.write_text(config)
    proc = subprocess.run(
        [PYTHON, "-m", "shipyard_logs.collector", "--config", str(path), "--check-config"],
        env={"PYTHONPATH": str(COMMON), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = (proc.stderr + proc.stdout).strip()
    return proc.returncode, output.removeprefix("shipyard-log-collector: ")


def test_secrets_come_from_files_and_per_match_environment(tmp_path: Path):
    from shipyard_logs.collector import load_config

    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    config = tmp_path / "c.toml"
    config.write_text(
        '[[match]]\npattern = "a"\ntype = "s3"\n[match.s3]\nbucket = "bkt"\nprefix = "p"\n'
        f'secret_access_key_file = "{secret}"\n'
    )
    loaded = load_config(str(config), env={"SHIPYARD_COLLECTOR_MATCH_0_S3_ACCESS_KEY_ID": "id"})
    (match,) = loaded.matches
    assert match.s3 is not None
    assert (match.s3.access_key_id, match.s3.secret_access_key) == ("id", "from-file")
    assert (match.s3.prefix, match.s3.rule_id) == ("p/", "shipyard-archive-logs:p/")
    assert "from-file" not in repr(loaded)
    env = {
        "SHIPYARD_COLLECTOR_S3_BUCKET": "bkt",
        "SHIPYARD_COLLECTOR_S3_PREFIX": "p",
        "SHIPYARD_COLLECTOR_S3_ACCESS_KEY_ID": "id",
        "SHIPYARD_COLLECTOR_S3_SECRET_ACCESS_KEY_FILE": str(secret),
    }
    top = load_config(None, env=env)
    assert top.s3 is not None
    assert (top.s3.access_key_id, top.s3.secret_access_key) == ("id", "from-file")
    assert top.s3.rule_id == "shipyard-archive-logs"  # the rule of today's deployments
    assert not top.routed and top.matches[0].s3 == top.s3

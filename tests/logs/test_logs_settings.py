"""Every setting of the collector, the agent and the rotator is bounded, checked where it is read.

`--check-config` refuses a value outside its rule with exit 78 and a message
that names the key (and the variable, when one set it), and never shows the
value of a secret.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
from logs_harness import COMMON, PYTHON
from shipyard_logs import collector, rotate
from shipyard_logs.agent import config as agent
from shipyard_logs.agent import servers
from shipyard_logs.config import Between, ConfigError, Setting
from shipyard_logs.uploader import S3_DEFAULTS

SOURCE = {"path": "/var/log/a.log", "tag": "apache.access"}
S3_MATCH = {"pattern": "a.**", "type": "s3", "path": "web", "s3": {"bucket": "logs-bkt"}}


def check_config(tmp_path: Path, program: str, config: dict[str, Any], env: dict | None = None):
    path = tmp_path / f"{program}.json"  # JSON: nested tables inside [[match]]
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [PYTHON, "-m", f"shipyard_logs.{program}", "--config", str(path), "--check-config"],
        env={"PYTHONPATH": str(COMMON), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode, proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("program", "config", "message"),
    [
        ("collector", {"max_frame_bytes": 0}, "collector.max_frame_bytes must be between"),
        ("collector", {"max_chunk_ids": 0}, "collector.max_chunk_ids must be between"),
        ("collector", {"chunk_id_retention": 0.0}, "collector.chunk_id_retention must be between"),
        ("collector", {"time_slice_wait": -1.0}, "collector.time_slice_wait must be between"),
        ("collector", {"port": 0}, "collector.port must be between 1 and 65535"),
        ("collector", {"log_level": "LOUD"}, "collector.log_level must be DEBUG, INFO,"),
        ("collector", {"root": "relative/dir"}, "collector.root must be an absolute path"),
        (
            "collector",
            {"time_slice_format": "%Y%m%d/${host}-%H" + "x" * 100},
            "collector.time_slice_format: time_slice_format must be at most 100 characters",
        ),
        (
            "collector",
            {"s3": {"bucket": "logs-bkt", "upload_interval": 0.0}},
            "collector.s3.upload_interval must be between 0.1 and 86400",
        ),
        (
            "collector",
            {"s3": {"bucket": "logs-bkt", "retry_max_interval": 10.0, "upload_interval": 60.0}},
            "collector.s3.retry_max_interval must not be below upload_interval",
        ),
        ("collector", {"s3": {"bucket": "Not_A_Bucket"}}, "collector.s3.bucket must be empty or"),
        (
            "collector",
            {"s3": {"bucket": "logs-bkt", "archive_storage_class": "COLD"}},
            "collector.s3.archive_storage_class must be GLACIER,",
        ),
        (
            "collector",
            {"match": [{**S3_MATCH, "s3": {"bucket": "logs-bkt", "upload_interval": -2.0}}]},
            "collector.match[0].s3.upload_interval must be between",
        ),
        (
            "collector",
            {"match": [{"pattern": "a", "type": "file", "time_slice_wait": -5.0}]},
            "collector.match[0].time_slice_wait must be between 0 and",
        ),
        ("agent", {"ack_timeout": 0.0, "sources": [SOURCE]}, "agent.ack_timeout must be between"),
        ("agent", {"flush_interval": -1.0, "sources": [SOURCE]}, "agent.flush_interval must be"),
        ("agent", {"rotate_wait": -1.0, "sources": [SOURCE]}, "agent.rotate_wait must be between"),
        ("agent", {"max_inflight": 0, "sources": [SOURCE]}, "agent.max_inflight must be between"),
        (
            "agent",
            {"sources": [{**SOURCE, "tag": "../../etc/cron.d/x"}]},
            "sources[0].tag must be dot-separated words",
        ),
        ("agent", {"sources": [{**SOURCE, "tag": "a/b"}]}, "sources[0].tag must be"),
        ("agent", {"sources": [{**SOURCE, "tag": ".hidden"}]}, "sources[0].tag must be"),
        (
            "agent",
            {"sources": [{**SOURCE, "pos_file": "relative.pos"}]},
            "sources[0].pos_file must be empty or an absolute path",
        ),
        ("agent", {"sources": [{**SOURCE, "format": "csv"}]}, "sources[0].format must be"),
        (
            "agent",
            {"servers": [{"host": "log-a"}, {"host": "log-b", "port": 99999}], "sources": [SOURCE]},
            "agent.servers[1].port must be between 1 and 65535",
        ),
        (
            "agent",
            {"servers": [{"host": "log-a", "weight": 0}], "sources": [SOURCE]},
            "agent.servers[0].weight must be between 1 and 100",
        ),
        (
            "agent",
            {"servers": [{"port": 24224}], "sources": [SOURCE]},
            "agent.servers[0].host is required",
        ),
        (
            "agent",
            {"servers": [{"host": "log a"}], "sources": [SOURCE]},
            "agent.servers[0].host must be a host name or an IP address",
        ),
        (
            "agent",
            {"servers": [{"host": "log-a", "prot": 24224}], "sources": [SOURCE]},
            "agent.servers[0]: unknown key",
        ),
        (
            "agent",
            {
                "servers": [{"host": "a", "name": "x"}, {"host": "b", "name": "x"}],
                "sources": [SOURCE],
            },
            "agent.servers[1].name 'x' is used by servers[0]",
        ),
        (
            "agent",
            {"servers": [{"host": "log-a", "standby": True}], "sources": [SOURCE]},
            "agent.servers: every server is a standby",
        ),
        (
            "agent",
            {"servers": {"host": "log-a"}, "sources": [SOURCE]},
            "agent.servers must be an array of tables",
        ),
        (
            "agent",
            {"servers": [], "sources": [SOURCE]},
            "agent.servers: at least one [[servers]] table is required",
        ),
        (
            "agent",
            {"servers": [{"host": "log-a"}], "collector_host": "log-b", "sources": [SOURCE]},
            "agent: give collector_host / collector_port or [[servers]], not both",
        ),
        (
            "agent",
            {"heartbeat_type": "icmp", "sources": [SOURCE]},
            "agent.heartbeat_type must be transport, udp",
        ),
        (
            "agent",
            {"heartbeat_interval": 2.0, "hard_timeout": 1.0, "sources": [SOURCE]},
            "agent.hard_timeout (1 s) must be longer than heartbeat_interval (2 s)",
        ),
        (
            "collector",
            {"collector_name": "a/b"},
            "collector.collector_name must be empty or a name",
        ),
        (
            "collector",
            {"time_slice_format": "%Y%m%d/${host}@%H"},
            "time_slice_format must not contain @",
        ),
        (
            "rotate",
            {"interval": 0.0, "files": [{"path": "/var/log/a.log"}]},
            "rotate.interval must be",
        ),
        ("rotate", {"keep": 0, "files": [{"path": "/var/log/a.log"}]}, "rotate.keep must be"),
    ],
)
def test_an_unbounded_value_is_refused_naming_its_key(tmp_path, program, config, message):
    code, output = check_config(tmp_path, program, config)
    assert code == 78, output
    assert message in output, output


def test_an_environment_value_is_held_to_the_same_rule(tmp_path):
    env = {"SHIPYARD_COLLECTOR_MAX_FRAME_BYTES": "0"}
    code, output = check_config(tmp_path, "collector", {}, env)
    assert code == 78
    assert "collector.max_frame_bytes (from SHIPYARD_COLLECTOR_MAX_FRAME_BYTES) must be" in output


@pytest.mark.parametrize(
    "s3",
    [
        {"bucket": "logs-bkt", "access_key_id": "id", "secret_access_key": 987654321012},
        {
            "bucket": "logs-bkt",
            "access_key_id": "id",
            "secret_access_key": "has space 987654321012",
        },
    ],
)
def test_a_bad_secret_is_named_but_never_shown(tmp_path, s3):
    config = {"match": [{**S3_MATCH, "s3": s3}]}
    code, output = check_config(tmp_path, "collector", config)
    assert code == 78
    assert "collector.match[0].s3.secret_access_key" in output
    assert "987654321012" not in output


def settings_tables() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("collector", collector.DEFAULTS),
        ("collector.s3", S3_DEFAULTS),
        ("agent", agent.DEFAULTS),
        ("agent.sources", agent.SOURCE_DEFAULTS),
        ("agent.servers", servers.SERVER_DEFAULTS),
        ("agent (heartbeats)", servers.HEARTBEAT_DEFAULTS),
        ("rotate", rotate.DEFAULTS),
    ]


@pytest.mark.parametrize(("where", "table"), settings_tables())
def test_every_number_has_both_bounds_and_its_default_keeps_them(where, table):
    for key, spec in table.items():
        setting = spec if isinstance(spec, Setting) else Setting(spec)
        value = setting.default
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        rule = setting.rule
        assert isinstance(rule, Between), f"{where}.{key} has no bounds"
        assert rule(value) is None, f"{where}.{key}: the default breaks its own rule"
        for bad in (-1, 10**12, math.inf, math.nan):
            assert rule(bad) is not None, f"{where}.{key} takes {bad}"


def test_the_defaults_pass_their_rules():
    loaded = collector.load_config(None, env={})
    assert loaded.record_id_key == "_record_id"
    with pytest.raises(ConfigError, match=r"collector\.record_id_key .* must be"):
        collector.load_config(None, env={"SHIPYARD_COLLECTOR_RECORD_ID_KEY": "has space"})
    assert (
        collector.load_config(None, env={"SHIPYARD_COLLECTOR_RECORD_ID_KEY": ""}).record_id_key
        == ""
    )


def test_the_image_defaults_pass_check_config(tmp_path):
    image = Path(COMMON).parent / "log-collector" / "collector.toml"
    code, output = check_config(tmp_path, "collector", _toml(image))
    assert code == 0, output


def _toml(path: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(path.read_text())

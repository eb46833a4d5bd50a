"""The agent's settings: a TOML or JSON file, SHIPYARD_AGENT_<KEY> overrides, checked here.

The keys of the collector's side follow fluentd's out_forward: `[[servers]]`
(or `collector_host` and `collector_port` for one) and the heartbeat keys
(servers.py); `shared_key` (or `shared_key_file`), `username` and `password`
(or `password_file`) for the `<security>` handshake, in which `host` is this
agent's name; `tls` with `tls_ca_path`, `tls_cert_path` and `tls_key_path`,
`tls_verify_hostname`, the same for every server.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import (
    ABSOLUTE_PATH,
    LOG_LEVEL,
    OPTIONAL_PATH,
    PORT,
    Between,
    ConfigError,
    Matches,
    OneOf,
    Setting,
    load_file,
    merge,
)
from ..credentials import secret
from ..handshake import ClientSecurity
from ..parsers import PARSERS, Parser
from .servers import (
    HEARTBEAT_DEFAULTS,
    HOST,
    HeartbeatConfig,
    ServerConfig,
    parse_heartbeat,
    parse_servers,
)

MiB = 1024 * 1024
# Seconds: a floor keeps a zero from turning a wait into a hot loop, a
# ceiling keeps a typo from stalling shipping for days.
DEFAULTS: dict[str, Any] = {
    # One collector; [[servers]] for several (servers.py).
    "collector_host": Setting("127.0.0.1", HOST),
    "collector_port": Setting(24224, PORT),
    **HEARTBEAT_DEFAULTS,
    "pos_dir": Setting("/var/lib/shipyard/log-agent", ABSOLUTE_PATH),
    "host": Setting("", Matches(r"\S*", "empty or a host name", 253)),
    "host_key": Setting("source_host", Matches(r"[A-Za-z_@][A-Za-z0-9_.@-]*", "a record key", 64)),
    "batch_lines": Setting(1000, Between(1, 100_000)),
    "batch_bytes": Setting(1 * MiB, Between(64, 64 * MiB)),
    "flush_interval": Setting(1.0, Between(0.01, 3600)),
    "poll_interval": Setting(0.25, Between(0.01, 60)),
    "refresh_interval": Setting(5.0, Between(0.1, 3600)),
    "rotate_wait": Setting(5.0, Between(0, 3600)),
    "read_from_head": False,
    "connect_timeout": Setting(5.0, Between(0.1, 300)),
    "ack_timeout": Setting(30.0, Between(1, 3600)),
    "retry_max_interval": Setting(30.0, Between(0.1, 3600)),
    "max_inflight": Setting(4, Between(1, 64)),
    "compress": Setting("gzip", OneOf(("gzip", "text"))),
    "max_line_bytes": Setting(1 * MiB, Between(16, 64 * MiB)),
    "log_level": Setting("INFO", LOG_LEVEL),
    # The collector's <security> handshake: on when a shared key is given.
    "shared_key": Setting("", secret=True),
    "shared_key_file": Setting("", OPTIONAL_PATH),
    "username": "",
    "password": Setting("", secret=True),
    "password_file": Setting("", OPTIONAL_PATH),
    # TLS to the collector, verified against tls_ca_path (default: the system's CAs).
    "tls": False,
    "tls_ca_path": Setting("", OPTIONAL_PATH),
    "tls_cert_path": Setting("", OPTIONAL_PATH),  # a client certificate, for client_cert_auth
    "tls_key_path": Setting("", OPTIONAL_PATH),
    "tls_verify_hostname": True,
}
_ONE_SERVER = ("collector_host", "collector_port")
SOURCE_DEFAULTS: dict[str, Any] = {
    "path": None,  # a string (comma-separated) or a list of strings, checked by _paths
    # The tag names the position file <pos_dir>/<tag>.pos: no `/`, no `..`.
    "tag": Setting(
        "",
        Matches(r"([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)?", "dot-separated words of A-Za-z0-9_-", 128),
    ),
    "format": Setting("none", OneOf(tuple(sorted(PARSERS)))),
    "read_from_head": None,
    "pos_file": Setting("", OPTIONAL_PATH),
}


@dataclass(frozen=True)
class Source:
    paths: tuple[str, ...]
    tag: str
    format: str
    read_from_head: bool
    pos_file: Path

    @property
    def parser(self) -> Parser:
        return PARSERS[self.format]


@dataclass(frozen=True)
class AgentConfig:
    servers: tuple[ServerConfig, ...]
    pos_dir: Path
    host: str
    host_key: str
    batch_lines: int
    batch_bytes: int
    flush_interval: float
    poll_interval: float
    refresh_interval: float
    rotate_wait: float
    connect_timeout: float
    ack_timeout: float
    retry_max_interval: float
    max_inflight: int
    compress: bool
    max_line_bytes: int
    log_level: str
    sources: tuple[Source, ...]
    security: ClientSecurity | None = None
    tls: ssl.SSLContext | None = None
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)


def _paths(where: str, given: object) -> tuple[str, ...]:
    """`path`: a glob, several separated by commas, or a list of them."""
    if given is None:
        raise ConfigError(f"{where}.path is required")
    items = given.split(",") if isinstance(given, str) else given
    if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
        raise ConfigError(f"{where}.path must be a string or a list of strings")
    paths = tuple(p.strip() for p in items if p.strip())
    if not paths:
        raise ConfigError(f"{where}.path is required")
    return paths


def _source(index: int, given: object, top: dict[str, Any], pos_dir: Path) -> Source:
    where = f"sources[{index}]"
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a table")
    raw = merge(SOURCE_DEFAULTS, given, "\0", where)  # sources take no env overrides
    paths = _paths(where, raw["path"])
    if not raw["tag"]:
        raise ConfigError(f"{where}.tag is required")
    head = top["read_from_head"] if raw["read_from_head"] is None else bool(raw["read_from_head"])
    pos_file = Path(raw["pos_file"]) if raw["pos_file"] else pos_dir / f"{raw['tag']}.pos"
    return Source(paths, raw["tag"], raw["format"], head, pos_file)


def load_config(path: str | None, env: dict[str, str] | None = None) -> AgentConfig:
    env = dict(os.environ) if env is None else env
    data = load_file(path or env.get("SHIPYARD_AGENT_CONFIG"))
    sources = data.pop("sources", [])
    servers = data.pop("servers", None)
    host_given = any(k in data or f"SHIPYARD_AGENT_{k.upper()}" in env for k in _ONE_SERVER)
    top = merge(DEFAULTS, data, "SHIPYARD_AGENT_", "agent", env)
    if not isinstance(sources, list) or not sources:
        raise ConfigError("agent: at least one [[sources]] entry is required")
    pos_dir = Path(top["pos_dir"])
    host = top["host"] or socket.gethostname()
    security = _security(top, host)
    tls = _tls(top)
    parsed = tuple(_source(i, s, top, pos_dir) for i, s in enumerate(sources))
    if len({s.pos_file for s in parsed}) != len(parsed):
        raise ConfigError("agent: two sources share a pos_file (give each a distinct tag)")
    return AgentConfig(
        servers=parse_servers(
            servers, top["collector_host"], int(top["collector_port"]), host_given
        ),
        pos_dir=pos_dir,
        host=host,
        host_key=top["host_key"],
        batch_lines=int(top["batch_lines"]),
        batch_bytes=int(top["batch_bytes"]),
        flush_interval=float(top["flush_interval"]),
        poll_interval=float(top["poll_interval"]),
        refresh_interval=float(top["refresh_interval"]),
        rotate_wait=float(top["rotate_wait"]),
        connect_timeout=float(top["connect_timeout"]),
        ack_timeout=float(top["ack_timeout"]),
        retry_max_interval=float(top["retry_max_interval"]),
        max_inflight=int(top["max_inflight"]),
        compress=top["compress"] == "gzip",
        max_line_bytes=int(top["max_line_bytes"]),
        log_level=str(top["log_level"]).upper(),
        sources=parsed,
        security=security,
        tls=tls,
        heartbeat=parse_heartbeat(top, tls is not None),
    )


def _security(top: dict[str, Any], host: str) -> ClientSecurity | None:
    key = secret(top, "shared_key", "agent")
    password = secret(top, "password", "agent")
    if not key:
        if top["username"] or password:
            raise ConfigError("agent.username and password need a shared_key (or shared_key_file)")
        return None
    if bool(top["username"]) != bool(password):
        raise ConfigError("agent: username and password (or password_file) go together")
    return ClientSecurity(host, key, top["username"], password)


def _tls(top: dict[str, Any]) -> ssl.SSLContext | None:
    paths = ("tls_ca_path", "tls_cert_path", "tls_key_path")
    if not top["tls"]:
        stray = [key for key in paths if top[key]]
        if stray:
            raise ConfigError(f"agent: {', '.join(stray)} given but tls is false")
        return None
    if bool(top["tls_cert_path"]) != bool(top["tls_key_path"]):
        raise ConfigError("agent: tls_cert_path and tls_key_path go together")
    try:
        context = ssl.create_default_context(cafile=top["tls_ca_path"] or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"agent.tls_ca_path: cannot load {top['tls_ca_path']}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = bool(top["tls_verify_hostname"])
    if top["tls_cert_path"]:
        try:
            context.load_cert_chain(top["tls_cert_path"], top["tls_key_path"])
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"agent.tls_cert_path / tls_key_path: cannot load {top['tls_cert_path']} "
                f"with {top['tls_key_path']}: {exc}"
            ) from exc
    return context

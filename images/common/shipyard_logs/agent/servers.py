"""The collectors an agent ships to: fluentd's out_forward `<server>` sections and heartbeat keys.

    [[servers]]
    name = "log-a"               # in log lines and stats.json; default host:port
    host = "log-a.example.net"
    port = 24224
    weight = 60                  # the share of batches among the regular servers
    standby = false              # used only while regular servers are detached
    tls_server_name = ""         # the name its certificate must hold; default host

Without `[[servers]]` the agent has one server, `collector_host` and
`collector_port`. The heartbeat keys are top-level, as in fluentd:
`heartbeat_type` (transport, udp or none), `heartbeat_interval`,
`phi_failure_detector`, `phi_threshold`, `hard_timeout`, `recover_wait`.
Everything else about the connection (TLS, the shared key, timeouts) is the
same for every server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import PORT, Between, ConfigError, Matches, OneOf, Setting, merge

MAX_SERVERS = 64
HOST = Matches(r"[^\s/]+", "a host name or an IP address", 255)
SERVER_DEFAULTS: dict[str, Any] = {
    "name": Setting("", Matches(r"[!-~]*", "printable ASCII without spaces", 128)),
    "host": Setting("", Matches(r"([^\s/]+)?", "a host name or an IP address", 255)),
    "port": Setting(24224, PORT),
    # fluentd's default weight; a weight is a share, so 1 to 100 is plenty.
    "weight": Setting(60, Between(1, 100)),
    "standby": False,
    "tls_server_name": Setting("", Matches(r"([^\s/]+)?", "empty or a host name", 255)),
}
# Seconds. fluentd's defaults: a heartbeat a second over the forward
# transport itself, a server detached when the phi accrual detector passes 16
# (about 37 s without an answer at a 1 s interval) or after 60 s at the
# latest, and back after answering for 10 s.
HEARTBEAT_DEFAULTS: dict[str, Any] = {
    "heartbeat_type": Setting("transport", OneOf(("transport", "udp", "none"))),
    "heartbeat_interval": Setting(1.0, Between(0.05, 3600)),
    "phi_failure_detector": True,
    "phi_threshold": Setting(16.0, Between(0.1, 1000)),
    "hard_timeout": Setting(60.0, Between(0.1, 86400)),
    "recover_wait": Setting(10.0, Between(0, 86400)),
}


@dataclass(frozen=True)
class ServerConfig:
    """One collector: where it is, its share, and whether it stands by."""

    host: str
    port: int
    name: str = ""
    weight: int = 60
    standby: bool = False
    tls_server_name: str = ""

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def label(self) -> str:
        """How log lines name it: `name (host:port)`, or host:port when it has no name."""
        if not self.name or self.name == self.address:
            return self.address
        return f"{self.name} ({self.address})"

    @property
    def verify_name(self) -> str:
        return self.tls_server_name or self.host


@dataclass(frozen=True)
class HeartbeatConfig:
    type: str = "transport"  # transport | udp | none
    interval: float = 1.0
    phi_failure_detector: bool = True
    phi_threshold: float = 16.0
    hard_timeout: float = 60.0
    recover_wait: float = 10.0


def parse_servers(
    given: object, host: str, port: int, host_given: bool
) -> tuple[ServerConfig, ...]:
    """The `[[servers]]` tables, or the one server collector_host:collector_port."""
    if given is None:
        return (ServerConfig(host, port, name=ServerConfig(host, port).address),)
    if host_given:
        raise ConfigError(
            "agent: give collector_host / collector_port or [[servers]], not both "
            "(a [[servers]] table has host and port)"
        )
    if not isinstance(given, list) or not all(isinstance(s, dict) for s in given):
        raise ConfigError("agent.servers must be an array of tables ([[servers]])")
    if not given:
        raise ConfigError("agent.servers: at least one [[servers]] table is required")
    if len(given) > MAX_SERVERS:
        raise ConfigError(f"agent.servers: at most {MAX_SERVERS} servers, not {len(given)}")
    servers = tuple(_server(i, table) for i, table in enumerate(given))
    names: dict[str, int] = {}
    for index, server in enumerate(servers):
        if server.name in names:
            first = names[server.name]
            raise ConfigError(
                f"agent.servers[{index}].name {server.name!r} is used by servers[{first}]"
            )
        names[server.name] = index
    if all(server.standby for server in servers):
        raise ConfigError("agent.servers: every server is a standby; at least one must not be")
    return servers


def _server(index: int, table: Mapping[str, Any]) -> ServerConfig:
    where = f"agent.servers[{index}]"
    raw = merge(SERVER_DEFAULTS, table, "\0", where)  # servers take no env overrides
    if not raw["host"]:
        raise ConfigError(f"{where}.host is required")
    broken = HOST(raw["host"])
    if broken:
        raise ConfigError(f"{where}.host {broken}, not {raw['host']!r}")
    host, port = raw["host"], int(raw["port"])
    return ServerConfig(
        host=host,
        port=port,
        name=raw["name"] or ServerConfig(host, port).address,
        weight=int(raw["weight"]),
        standby=bool(raw["standby"]),
        tls_server_name=raw["tls_server_name"],
    )


def parse_heartbeat(top: Mapping[str, Any], tls: bool) -> HeartbeatConfig:
    heartbeat = HeartbeatConfig(
        type=top["heartbeat_type"],
        interval=float(top["heartbeat_interval"]),
        phi_failure_detector=bool(top["phi_failure_detector"]),
        phi_threshold=float(top["phi_threshold"]),
        hard_timeout=float(top["hard_timeout"]),
        recover_wait=float(top["recover_wait"]),
    )
    if tls and heartbeat.type == "udp":
        # As fluentd: a UDP answer proves nothing about a TLS listener.
        raise ConfigError("agent.heartbeat_type udp cannot be used with tls: use transport or none")
    if heartbeat.type != "none" and heartbeat.hard_timeout <= heartbeat.interval:
        raise ConfigError(
            f"agent.hard_timeout ({heartbeat.hard_timeout:g} s) must be longer than "
            f"heartbeat_interval ({heartbeat.interval:g} s), or every server is detached"
        )
    return heartbeat

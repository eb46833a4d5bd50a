"""The collector's listeners and the bounds of what it accepts, read from its configuration.

The top-level keys make the main listener (`bind`, `port`, `[security]`,
`[transport]`, ...), so zero configuration is one plain listener on 24224.
Each `[[listeners]]` table adds one more, with the same keys and its own
name, typically a plain listener for Docker's fluentd log driver, which can
do neither the handshake nor TLS, fenced by `allow_peers` and `allow_tags`.

Every number is bounded here, where it is read (config.Setting), and an error
names its key.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import Between, ConfigError, Setting, merge
from .credentials import secret
from .forward import Limits
from .handshake import ServerSecurity, User
from .routing import PatternError, TagMatcher

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_LIMITS = Limits()
MIB = 1024 * 1024

# Keys of one listener; at the top level they describe the main one.
LISTENER_DEFAULTS: dict[str, Any] = {
    "bind": "0.0.0.0",  # noqa: S104 - a collector in a container serves its network
    "port": Setting(24224, Between(1, 65535)),
    "allow_tags": "**",  # fluentd patterns, as in [[match]]
    "allow_peers": None,  # addresses or networks (a list, or separated by commas); none: any
    "max_connections_per_peer": Setting(32, Between(1, 65536)),
    "handshake_timeout": Setting(10.0, Between(0.1, 3600)),  # accept to authenticated
    "frame_timeout": Setting(60.0, Between(0.1, 86400)),  # first byte of a frame to its last
    "idle_timeout": Setting(600.0, Between(0.1, 7 * 86400)),  # between frames
}
# The collector as a whole: connections, the memory of frames being decoded,
# and the decoder's limits (besides max_frame_bytes and max_decompressed_bytes).
# The decoder's bounds keep one step's work small (decoder.py) and every
# record within what json can encode.
SERVER_DEFAULTS: dict[str, Any] = {
    "max_connections": Setting(512, Between(1, 65536)),
    "max_decode_memory": Setting(64 * MIB, Between(MIB, 64 * 1024 * MIB)),
    "max_compression_ratio": Setting(_LIMITS.max_compression_ratio, Between(2, 100_000)),
    "max_string_bytes": Setting(_LIMITS.max_string_bytes, Between(1024, 1024 * MIB)),
    "max_array_length": Setting(_LIMITS.max_array_length, Between(16, 1_000_000)),
    "max_map_length": Setting(_LIMITS.max_map_length, Between(16, 10_000_000)),
    "max_depth": Setting(_LIMITS.max_depth, Between(2, 500)),
}
TOP_DEFAULTS: dict[str, Any] = {**LISTENER_DEFAULTS, **SERVER_DEFAULTS}
SECURITY_DEFAULTS: dict[str, Any] = {
    "self_hostname": "",  # default: the host name
    "shared_key": Setting("", secret=True),
    "shared_key_file": "",
    "user_auth": False,
}
USER_DEFAULTS: dict[str, Any] = {
    "username": "",
    "password": Setting("", secret=True),
    "password_file": "",
}
TRANSPORT_DEFAULTS: dict[str, Any] = {
    "tls": False,
    "cert_path": "",
    "private_key_path": "",
    "ca_path": "",  # the CA that signs client certificates (client_cert_auth)
    "client_cert_auth": False,
}


@dataclass(frozen=True)
class ListenerConfig:
    name: str
    bind: str
    port: int
    allow_tags: TagMatcher | None  # None: every tag
    allow_peers: tuple[Network, ...]  # empty: every address
    max_connections_per_peer: int
    handshake_timeout: float
    frame_timeout: float
    idle_timeout: float
    security: ServerSecurity | None
    tls: ssl.SSLContext | None
    client_cert_auth: bool

    def allows_peer(self, address: str) -> bool:
        if not self.allow_peers:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allow_peers)

    def describe(self) -> str:
        """For the start-up log: what protects this listener."""
        parts = [
            "TLS" + (" with client certificates" if self.client_cert_auth else "")
            if self.tls
            else "plain TCP",
            "shared key" + (" and users" if self.security and self.security.user_auth else "")
            if self.security
            else "no handshake",
        ]
        if self.allow_tags is not None:
            parts.append(f"tags {self.allow_tags.text}")
        if self.allow_peers:
            parts.append("peers " + ", ".join(str(n) for n in self.allow_peers))
        return ", ".join(parts)


def limits_from(top: Mapping[str, Any], where: str = "collector") -> Limits:
    """The decoder's limits from the top-level keys (max_frame_bytes and the keys above)."""
    return Limits(
        max_frame_bytes=int(top["max_frame_bytes"]),
        max_decompressed_bytes=int(top["max_decompressed_bytes"]),
        max_compression_ratio=float(top["max_compression_ratio"]),
        # No string can be longer than its frame anyway.
        max_string_bytes=int(min(top["max_string_bytes"], top["max_frame_bytes"])),
        max_array_length=int(top["max_array_length"]),
        max_map_length=int(top["max_map_length"]),
        max_depth=int(top["max_depth"]),
    )


def parse_listeners(
    top: Mapping[str, Any],
    security: object,
    transport: object,
    extra: object,
    env: Mapping[str, str],
) -> tuple[ListenerConfig, ...]:
    """The main listener (top-level keys, [security], [transport]) and every [[listeners]]."""
    main = _listener(
        "main",
        "collector",
        dict(top),
        _security("collector.security", security, "SHIPYARD_COLLECTOR_SECURITY_", env),
        _transport("collector.transport", transport, "SHIPYARD_COLLECTOR_TRANSPORT_", env),
    )
    found = [main]
    if extra is None:
        extra = []
    if not isinstance(extra, list) or not all(isinstance(t, dict) for t in extra):
        raise ConfigError("collector.listeners must be an array of tables ([[listeners]])")
    for index, table in enumerate(extra):
        where = f"collector.listeners[{index}]"
        table = dict(table)
        sec = table.pop("security", None)
        tra = table.pop("transport", None)
        name = table.pop("name", f"listeners[{index}]")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name must be a non-empty string")
        if "port" not in table:
            raise ConfigError(f"{where}.port is required")
        raw = merge(LISTENER_DEFAULTS, table, "\0", where)  # no environment overrides
        found.append(
            _listener(
                name,
                where,
                raw,
                _security(f"{where}.security", sec, "\0", env),
                _transport(f"{where}.transport", tra, "\0", env),
            )
        )
    seen: dict[tuple[str, int], str] = {}
    for listener in found:
        key = (listener.bind, listener.port)
        if key in seen:
            raise ConfigError(
                f"collector: listeners {seen[key]} and {listener.name} both bind "
                f"{listener.bind}:{listener.port}"
            )
        seen[key] = listener.name
    return tuple(found)


def _listener(
    name: str,
    where: str,
    raw: dict[str, Any],
    security: ServerSecurity | None,
    transport: tuple[ssl.SSLContext | None, bool],
) -> ListenerConfig:
    tags = raw["allow_tags"]
    try:
        matcher = None if tags.split() == ["**"] else TagMatcher(tags)
    except PatternError as exc:
        raise ConfigError(f"{where}.allow_tags: {tags!r} {exc}") from exc
    tls, client_cert_auth = transport
    return ListenerConfig(
        name=name,
        bind=str(raw["bind"]),
        port=int(raw["port"]),
        allow_tags=matcher,
        allow_peers=_networks(f"{where}.allow_peers", raw["allow_peers"]),
        max_connections_per_peer=int(raw["max_connections_per_peer"]),
        handshake_timeout=float(raw["handshake_timeout"]),
        frame_timeout=float(raw["frame_timeout"]),
        idle_timeout=float(raw["idle_timeout"]),
        security=security,
        tls=tls,
        client_cert_auth=client_cert_auth,
    )


def _networks(where: str, given: object) -> tuple[Network, ...]:
    if given is None or given == "":
        return ()
    items = given.replace(",", " ").split() if isinstance(given, str) else given
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{where} must be a list of addresses or networks")
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"{where}: {item!r} is not an address or network") from exc
    return tuple(networks)


def _security(
    where: str, given: object, env_prefix: str, env: Mapping[str, str]
) -> ServerSecurity | None:
    """A listener's [security]: on when it has a shared key."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a table")
    given = dict(given)
    users = given.pop("users", [])
    raw = merge(SECURITY_DEFAULTS, given, env_prefix, where, env)
    key = secret(raw, "shared_key", where)
    if not key:
        if raw["user_auth"] or users or raw["self_hostname"]:
            raise ConfigError(f"{where}.shared_key (or shared_key_file) is required")
        return None
    if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
        raise ConfigError(f"{where}.users must be an array of tables ([[...security.users]])")
    parsed = []
    for index, table in enumerate(users):
        here = f"{where}.users[{index}]"
        user = merge(USER_DEFAULTS, table, "\0", here)
        password = secret(user, "password", here)
        if not user["username"] or not password:
            raise ConfigError(f"{here}: username and password (or password_file) are required")
        parsed.append(User(user["username"], password))
    if raw["user_auth"] and not parsed:
        raise ConfigError(f"{where}.user_auth needs at least one [[users]] entry")
    if parsed and not raw["user_auth"]:
        raise ConfigError(f"{where}.users are given but user_auth is false")
    return ServerSecurity(
        self_hostname=raw["self_hostname"] or socket.gethostname(),
        shared_key=key,
        user_auth=bool(raw["user_auth"]),
        users=tuple(parsed),
    )


def _transport(
    where: str, given: object, env_prefix: str, env: Mapping[str, str]
) -> tuple[ssl.SSLContext | None, bool]:
    """A listener's [transport]: a TLS context loaded now, so a bad file fails the check."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a table")
    raw = merge(TRANSPORT_DEFAULTS, given, env_prefix, where, env)
    if not raw["tls"]:
        stray = [k for k in ("cert_path", "private_key_path", "ca_path") if raw[k]]
        if stray or raw["client_cert_auth"]:
            raise ConfigError(
                f"{where}: {', '.join(stray) or 'client_cert_auth'} given but tls is false"
            )
        return None, False
    for key in ("cert_path", "private_key_path"):
        if not raw[key]:
            raise ConfigError(f"{where}.{key} is required with tls = true")
    if raw["client_cert_auth"] and not raw["ca_path"]:
        raise ConfigError(f"{where}.ca_path is required with client_cert_auth = true")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(raw["cert_path"], raw["private_key_path"])
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{where}.cert_path / private_key_path: cannot load {raw['cert_path']} with "
            f"{raw['private_key_path']}: {_reason(exc)}"
        ) from exc
    if raw["client_cert_auth"]:
        context.verify_mode = ssl.CERT_REQUIRED
    if raw["ca_path"]:
        try:
            context.load_verify_locations(cafile=raw["ca_path"])
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{where}.ca_path: cannot load {raw['ca_path']}: {_reason(exc)}"
            ) from exc
    return context, bool(raw["client_cert_auth"])


def _reason(exc: OSError | ssl.SSLError) -> str:
    return str(getattr(exc, "reason", None) or exc.strerror or exc)

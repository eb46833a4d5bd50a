"""The `<security>` handshake of Forward Protocol v1: HELO, PING, PONG.

Byte for byte as the specification and fluentd's in_forward / out_forward:

    server  ['HELO', {'nonce': nonce, 'auth': auth_salt or '', 'keepalive': true}]
    client  ['PING', client_hostname, shared_key_salt,
             hex(sha512(shared_key_salt + client_hostname + nonce + shared_key)),
             username or '', hex(sha512(auth_salt + username + password)) or '']
    server  ['PONG', true, '', server_hostname,
             hex(sha512(shared_key_salt + server_hostname + nonce + shared_key))]
            or ['PONG', false, reason, '', '']

The server's nonce and auth salt are 16 random bytes (msgpack bin), the
client's salt 32 hex characters, as fluentd makes them. Both sides prove they
hold the shared key without sending it; the nonce makes a recorded PING
useless on another connection, and the PONG's digest lets the client refuse a
server that does not know the key (a man in the middle that would ack what it
never stored). `auth` is non-empty only when the server checks users. Strings
and bins are hashed as their bytes, whichever type the peer used.

This module is only the messages and their checks; collector and agent do
the reading and writing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

# A PING or HELO is a few hundred bytes; more is not a handshake.
MAX_MESSAGE_BYTES = 16 * 1024


class HandshakeError(Exception):
    """A handshake that failed; the message says why, without any secret."""


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise HandshakeError(f"expected a string, got {type(value).__name__}")


def digest(*parts: object) -> str:
    """hex(sha512(a + b + ...)) over the parts' bytes."""
    hasher = hashlib.sha512()
    for part in parts:
        hasher.update(_bytes(part))
    return hasher.hexdigest()


def _same(given: object, expected: str) -> bool:
    return isinstance(given, str | bytes) and hmac.compare_digest(_bytes(given), expected.encode())


@dataclass(frozen=True)
class User:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"User({self.username!r})"


@dataclass(frozen=True)
class ServerSecurity:
    """A listener's `[security]`: who may send, and the name it answers with."""

    self_hostname: str
    shared_key: str
    user_auth: bool = False
    users: tuple[User, ...] = ()

    def __repr__(self) -> str:
        return f"ServerSecurity({self.self_hostname!r}, user_auth={self.user_auth})"


@dataclass(frozen=True)
class ClientSecurity:
    """The agent's side: its name, the shared key, and a user when the server asks."""

    self_hostname: str
    shared_key: str
    username: str = ""
    password: str = ""

    def __repr__(self) -> str:
        return f"ClientSecurity({self.self_hostname!r}, username={self.username!r})"


class ServerHandshake:
    """One connection's server side: helo() to send, then check(ping) for the reply."""

    def __init__(self, security: ServerSecurity) -> None:
        self.security = security
        self.nonce = os.urandom(16)
        self.auth_salt = os.urandom(16) if security.user_auth else b""

    def helo(self) -> list[Any]:
        # The salts are bin, as fluentd's random bytes; no user check is an empty str.
        auth = self.auth_salt if self.security.user_auth else ""
        return ["HELO", {"nonce": self.nonce, "auth": auth, "keepalive": True}]

    def check(self, ping: object) -> tuple[list[Any], str | None]:
        """The PONG to send, and None when the client is in, else why it is not."""
        reason = self._refusal(ping)
        if reason is not None:
            return ["PONG", False, reason, "", ""], reason
        assert isinstance(ping, list)
        salt = ping[2]
        sec = self.security
        proof = digest(salt, sec.self_hostname, self.nonce, sec.shared_key)
        return ["PONG", True, "", sec.self_hostname, proof], None

    def _refusal(self, ping: object) -> str | None:
        if not isinstance(ping, list) or len(ping) != 6 or ping[0] != "PING":
            return "invalid ping message"
        _, hostname, salt, key_digest, username, password_digest = ping
        if not all(isinstance(v, str | bytes) for v in ping[1:]):
            return "invalid ping message"
        sec = self.security
        if not _same(key_digest, digest(salt, hostname, self.nonce, sec.shared_key)):
            return "shared_key mismatch"
        if sec.user_auth:
            name = _bytes(username).decode("utf-8", "replace")
            known = [u for u in sec.users if u.username == name]
            if not any(
                _same(password_digest, digest(self.auth_salt, u.username, u.password))
                for u in known
            ):
                return "username/password mismatch"
        return None


class ClientHandshake:
    """The client side: ping(helo) to answer the server, then check(pong)."""

    def __init__(self, security: ClientSecurity) -> None:
        self.security = security
        self.salt = os.urandom(16).hex()
        self.nonce: bytes = b""

    def ping(self, helo: object) -> list[Any]:
        if not isinstance(helo, list) or len(helo) != 2 or helo[0] != "HELO":
            raise HandshakeError("the server's first message is not a HELO")
        options = helo[1] if isinstance(helo[1], dict) else {}
        self.nonce = _bytes(options.get("nonce") or b"")
        auth = _bytes(options.get("auth") or b"")
        sec = self.security
        ping: list[Any] = [
            "PING",
            sec.self_hostname,
            self.salt,
            digest(self.salt, sec.self_hostname, self.nonce, sec.shared_key),
        ]
        if auth:
            if not sec.username:
                raise HandshakeError("the server asks for a username and password")
            ping += [sec.username, digest(auth, sec.username, sec.password)]
        else:
            ping += ["", ""]
        return ping

    def check(self, pong: object) -> None:
        """Raises HandshakeError unless the PONG proves the server knows the shared key."""
        if not isinstance(pong, list) or len(pong) != 5 or pong[0] != "PONG":
            raise HandshakeError("the server's answer is not a PONG")
        _, ok, reason, hostname, key_digest = pong
        if ok is not True:
            raise HandshakeError(
                f"the server refused: {_bytes(reason or b'').decode(errors='replace')}"
            )
        if not isinstance(hostname, str | bytes):
            raise HandshakeError("the PONG has no server hostname")
        if _bytes(hostname) == _bytes(self.security.self_hostname):
            raise HandshakeError("the server has this client's hostname: invalid configuration")
        expected = digest(self.salt, hostname, self.nonce, self.security.shared_key)
        if not _same(key_digest, expected):
            raise HandshakeError("the server does not know the shared key")

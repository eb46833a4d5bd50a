"""The agent's connection to the collector: TCP, then TLS and the `<security>` handshake.

With `tls`, the collector's certificate is verified against tls_ca_path
(and its name against the server's host, or its tls_server_name, unless
tls_verify_hostname is false),
and a client certificate is shown when one is configured. With a shared
key, the agent answers the collector's HELO and checks its PONG: a collector
that cannot prove it knows the key is refused, so nothing is sent to a
man in the middle that would ack lines it never stored.
"""

from __future__ import annotations

import socket

import msgpack

from .. import forward
from ..handshake import MAX_MESSAGE_BYTES, ClientHandshake, HandshakeError
from .config import AgentConfig
from .servers import ServerConfig

ACK_BUFFER = 1024 * 1024


def open_link(config: AgentConfig, server: ServerConfig) -> tuple[socket.socket, msgpack.Unpacker]:
    """A connection to server ready for frames, and the unpacker to read its acks with."""
    sock = socket.create_connection((server.host, server.port), timeout=config.connect_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if config.tls is not None:
            sock = config.tls.wrap_socket(sock, server_hostname=server.verify_name)
        unpacker = forward.new_unpacker(ACK_BUFFER)
        if config.security is not None:
            handshake = ClientHandshake(config.security)
            helo = _read(sock, unpacker, "a HELO (does the collector have a shared key?)")
            sock.sendall(forward.packb(handshake.ping(helo)))
            handshake.check(_read(sock, unpacker, "a PONG"))
    except BaseException:
        sock.close()
        raise
    return sock, unpacker


def _read(sock: socket.socket, unpacker: msgpack.Unpacker, what: str) -> object:
    """One handshake message, within connect_timeout (the socket's timeout)."""
    received = 0
    while True:
        try:
            return unpacker.unpack()
        except msgpack.OutOfData:
            pass
        try:
            data = sock.recv(MAX_MESSAGE_BYTES)
        except TimeoutError as exc:
            raise HandshakeError(f"no answer from the collector; expected {what}") from exc
        if not data:
            raise HandshakeError(f"the collector closed the connection; expected {what}")
        received += len(data)
        if received > MAX_MESSAGE_BYTES:
            raise HandshakeError(f"the collector sent too much; expected {what}")
        unpacker.feed(data)


def is_helo(reply: object) -> bool:
    """A HELO where an ack was expected: the collector wants a handshake the agent did not do."""
    return isinstance(reply, list) and bool(reply) and reply[0] == "HELO"

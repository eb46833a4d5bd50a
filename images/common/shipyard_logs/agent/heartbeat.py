"""Heartbeats: one thread per collector telling the pool whether it answers.

`heartbeat_type`, as in fluentd's out_forward:

* `transport` (the default): every heartbeat_interval a connection made as
  the batches' are (TCP, TLS, the `<security>` handshake) and closed at once,
  without a frame; one that completes is an answer. It proves what shipping
  needs: the listener accepts this agent, key and certificate included.
* `udp`: one datagram (0x92, what fluentd sends) to the collector's port;
  any datagram back from that address is an answer (shipyard's collector
  echoes it, fluentd's in_forward answers a NUL byte). Not with TLS.
* `none`: no heartbeats; a detached collector is probed with one
  connection, as `transport` makes, once its back-off has passed.

Each collector has its own thread, so one that does not answer (a connect
that waits connect_timeout) never delays another's heartbeats, nor the
shipping thread. The threads only report answers; the pool decides what they
mean (balance.py).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable

import msgpack

from ..forward import ForwardError
from ..handshake import HandshakeError
from .balance import FIRST_RETRY, Node, Pool
from .config import AgentConfig
from .servers import ServerConfig

log = logging.getLogger("shipyard_logs.agent")

FORWARD_HEADER = b"\x92"
MAX_ANSWER = 1024
Connect = Callable[[AgentConfig, ServerConfig], tuple[socket.socket, msgpack.Unpacker]]


class Heartbeats:
    def __init__(
        self, config: AgentConfig, pool: Pool, stop: threading.Event, connect: Connect
    ) -> None:
        self.config = config
        self.pool = pool
        self.stop = stop
        self.connect = connect
        self.threads = [
            threading.Thread(target=self._run, args=(node,), name=f"heartbeat-{i}", daemon=True)
            for i, node in enumerate(pool.nodes)
            if pool.heartbeats
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def _run(self, node: Node) -> None:
        kind = self.config.heartbeat.type
        interval = self.config.heartbeat.interval
        clock = self.pool.clock
        while not self.stop.is_set():
            began = clock()
            if kind == "none":
                if self.pool.probe_due(node, began) and self._probe(node.server):
                    self.pool.heartbeat(node, clock())
                self.stop.wait(FIRST_RETRY)
                continue
            answered = (
                self._probe(node.server)
                if kind == "transport"
                else self._udp(node.server, began + interval)
            )
            if answered:
                self.pool.heartbeat(node, clock())
            self.stop.wait(max(0.0, began + interval - clock()))

    def _probe(self, server: ServerConfig) -> bool:
        try:
            sock, _ = self.connect(self.config, server)
        except (OSError, HandshakeError, ForwardError, ValueError) as exc:
            log.debug("heartbeat to %s: %s", server.label, exc)
            return False
        with contextlib.suppress(OSError):
            sock.close()
        return True

    def _udp(self, server: ServerConfig, until: float) -> bool:
        clock = self.pool.clock
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                server.host, server.port, type=socket.SOCK_DGRAM
            )[0]
            with socket.socket(family, kind, proto) as sock:
                # Connected: only the collector's address answers, and an
                # ICMP port unreachable shows as a refused receive.
                sock.connect(address)
                sock.send(FORWARD_HEADER)
                while (left := until - clock()) > 0 and not self.stop.is_set():
                    if select.select([sock], [], [], min(left, 0.2))[0]:
                        sock.recv(MAX_ANSWER)
                        return True
        except OSError as exc:
            log.debug("heartbeat to %s: %s", server.label, exc)
        return False

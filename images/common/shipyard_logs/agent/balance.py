"""Which collector gets the next batch, and when a collector counts as failed or back.

The rules of fluentd's out_forward, in one place and on an injected clock:

* Every server is *attached* (in the rotation) or *detached*. All start
  attached.
* The rotation is the attached regular servers, plus standby servers while
  regular ones are detached: attached standbys, in file order, join until
  their weights cover the weight of the detached regular servers.
* Batches go round the rotation by weight (smooth weighted round robin:
  weights 60 and 40 send 3 of every 5 batches to the first, interleaved).
* A server is detached by a failure the shipper sees (connect error, send
  error, a connection closed with batches unacked, no ack within
  ack_timeout), or by its heartbeats: the phi accrual failure detector
  passing phi_threshold, or no heartbeat answer for hard_timeout.
* A detached server is attached again by more than recover_wait /
  heartbeat_interval heartbeat answers (fluentd's recover_sample_size), or,
  with heartbeat_type none, by a probe connection once its back-off passed.
* When every server is detached nothing waits for recover_wait: the first
  server that answers a heartbeat, or that the shipper reaches when its
  back-off passed (regular servers first), is attached at once.

Heartbeats run only with two servers or more: with one there is nowhere to
fail over to, and the shipper retries it with back-off, as a lone
out_forward does.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from .servers import HeartbeatConfig, ServerConfig

log = logging.getLogger("shipyard_logs.agent")

Clock = Callable[[], float]
# fluentd's FailureDetector keeps the last 1,000 intervals.
SAMPLE_SIZE = 1000
PHI_FACTOR = 1.0 / math.log(10.0)
FIRST_RETRY = 0.2


class FailureDetector:
    """fluentd's phi accrual failure detector, its arithmetic unchanged (seconds, not µs).

    phi grows linearly with the time since the last heartbeat answer, scaled
    by a weighted mean of the recent intervals between answers (the latest
    weigh most), normalised so that answers one interval apart give a mean
    of 1: at a 1 s interval phi is about 0.43 per second of silence, so the
    default threshold of 16 detaches a server after about 37 s.
    """

    def __init__(self, interval: float, hard_timeout: float, now: float) -> None:
        self.interval = interval
        self.hard_timeout = hard_timeout
        self.last = now
        self.window: deque[float] = deque([interval], maxlen=SAMPLE_SIZE)

    def hard_timed_out(self, now: float) -> bool:
        return now - self.last > self.hard_timeout

    def add(self, now: float) -> None:
        self.window.append(self.interval if not self.window else now - self.last)
        self.last = now

    def phi(self, now: float) -> float:
        if not self.window:
            return 0.0
        weights = range(1, len(self.window) + 1)
        mean_gap = sum(gap * w for gap, w in zip(self.window, weights, strict=True)) / sum(weights)
        mean = max(mean_gap - self.interval + 1.0, 1e-3)
        return PHI_FACTOR * (now - self.last - self.interval + 1.0) / mean

    @property
    def samples(self) -> int:
        return len(self.window)

    def clear(self) -> None:
        self.window.clear()
        self.last = 0.0


class Node:
    """One server's standing: attached or not, its detector, its back-off."""

    def __init__(self, server: ServerConfig, heartbeat: HeartbeatConfig, now: float) -> None:
        self.server = server
        self.available = True
        self.detector = FailureDetector(heartbeat.interval, heartbeat.hard_timeout, now)
        self.failures = 0
        self.retry_at = 0.0
        self.reason = ""  # why it was detached
        self.current = 0  # smooth weighted round robin's running weight

    def __repr__(self) -> str:
        return f"Node({self.server.label}, available={self.available})"


class Pool:
    """The servers' standings; shared by the shipping thread and the heartbeat threads."""

    def __init__(
        self,
        servers: Sequence[ServerConfig],
        heartbeat: HeartbeatConfig,
        retry_max_interval: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.heartbeat_config = heartbeat
        self.retry_max_interval = retry_max_interval
        self.clock = clock
        now = clock()
        self.nodes = [Node(server, heartbeat, now) for server in servers]
        # Heartbeat threads: only with somewhere to fail over to.
        self.heartbeats = len(self.nodes) > 1
        self.recover_samples = (
            heartbeat.recover_wait / heartbeat.interval if heartbeat.type != "none" else 0.0
        )
        self._lock = threading.RLock()
        self._rotation = self._build()

    # -- selection

    def rotation(self) -> list[Node]:
        with self._lock:
            return list(self._rotation)

    def _build(self) -> list[Node]:
        regular = [n for n in self.nodes if not n.server.standby]
        rotation = [n for n in regular if n.available]
        lost = sum(n.server.weight for n in regular if not n.available)
        for node in self.nodes:
            if lost <= 0:
                break
            if node.server.standby and node.available:
                rotation.append(node)
                lost -= node.server.weight
        return rotation

    def _rebuild(self) -> None:
        before = self._rotation
        self._rotation = self._build()
        for node in self.nodes:
            node.current = 0
        for node in self._rotation:
            if node.server.standby and node not in before:
                log.warning("using standby collector %s", node.server.label)
        for node in before:
            if node.server.standby and node not in self._rotation and node.available:
                log.info("standby collector %s is not needed any more", node.server.label)
        if not self._rotation and before:
            log.warning("no collector is attached; retrying them with back-off")

    def select(self) -> Node | None:
        """The server for the next batch, by weight; None while none is attached."""
        with self._lock:
            if not self._rotation:
                return None
            total = 0
            best: Node | None = None
            for node in self._rotation:
                node.current += node.server.weight
                total += node.server.weight
                if best is None or node.current > best.current:
                    best = node
            assert best is not None
            best.current -= total
            return best

    def fallback(self, now: float) -> Node | None:
        """With every server detached: the one to try now (regular ones first), if any is due."""
        with self._lock:
            if self._rotation:
                return None
            due = [n for n in self.nodes if n.retry_at <= now]
            due.sort(key=lambda n: (n.server.standby, n.retry_at))
            return due[0] if due else None

    def next_retry(self) -> float:
        with self._lock:
            return min(n.retry_at for n in self.nodes)

    # -- what the shipper sees

    def failed(self, node: Node, reason: str) -> float:
        """A connect, send or ack failure: detach it and back off; returns the delay."""
        with self._lock:
            node.failures += 1
            delay = min(FIRST_RETRY * 2 ** (node.failures - 1), self.retry_max_interval)
            node.retry_at = self.clock() + delay
            self._detach(node, reason)
            return delay

    def acked(self, node: Node) -> None:
        with self._lock:
            node.failures = 0
            node.retry_at = 0.0

    def connected(self, node: Node) -> None:
        """The shipper reached a server while none was attached: attach it at once."""
        with self._lock:
            if not node.available:
                self._attach(node, "connected")

    # -- heartbeats

    def heartbeat(self, node: Node, now: float) -> None:
        """A heartbeat answer (or, with heartbeat_type none, a probe that connected)."""
        with self._lock:
            node.detector.add(now)
            if node.available:
                return
            if self.heartbeat_config.type == "none":
                self._attach(node, "a probe connected")
            elif node.detector.samples > self.recover_samples:
                wait = self.heartbeat_config.recover_wait
                self._attach(node, f"answered heartbeats for recover_wait ({wait:g} s)")
            elif not self._rotation:
                self._attach(node, "answered a heartbeat while no collector was attached")

    def probe_due(self, node: Node, now: float) -> bool:
        """heartbeat_type none: a detached server is probed once its back-off passed."""
        with self._lock:
            return not node.available and node.retry_at <= now

    def tick(self, now: float) -> list[Node]:
        """Apply the heartbeat deadlines; the servers detached by this call."""
        if not self.heartbeats or self.heartbeat_config.type == "none":
            return []
        detached = []
        with self._lock:
            for node in self.nodes:
                detector = node.detector
                if not node.available:
                    if detector.samples and detector.hard_timed_out(now):
                        detector.clear()  # answers stopped again: recovery starts over
                    continue
                reason = self._missed(node, now)
                if reason is None:
                    continue
                node.retry_at = now
                log.warning("collector %s: %s; detached", node.server.label, reason)
                self._detach(node, reason)
                detached.append(node)
        return detached

    def _missed(self, node: Node, now: float) -> str | None:
        """Why the heartbeats say the server failed, or None."""
        config = self.heartbeat_config
        if node.detector.hard_timed_out(now):
            return f"no heartbeat answer for hard_timeout ({config.hard_timeout:g} s)"
        if not config.phi_failure_detector:
            return None
        phi = node.detector.phi(now)
        if phi > config.phi_threshold:
            return f"missed heartbeats (phi {phi:.1f} > phi_threshold {config.phi_threshold:g})"
        return None

    # -- state changes

    def _detach(self, node: Node, reason: str) -> None:
        node.reason = reason
        if not node.available:
            return
        node.available = False
        node.detector.clear()
        self._rebuild()

    def _attach(self, node: Node, how: str) -> None:
        node.available = True
        node.reason = ""
        node.detector.clear()
        node.detector.add(self.clock())
        log.info("collector %s is back (%s)", node.server.label, how)
        self._rebuild()

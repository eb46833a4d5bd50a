"""Who may write to the collector: the <security> handshake, TLS, and a plain listener fenced in.

The independent client is npm's fluent-logger (tests/logs/interop, installed
by `make venv` with `npm ci`); the agent is the real one; the refusals are
also tried with raw sockets, which is what an attacker would use.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import msgpack
import pytest
from helpers import free_port
from logs_harness import (
    Collector,
    ForwardClient,
    apache_line,
    check_config,
    wait_for,
)
from pki import Pki, make_pki
from shipyard_logs import forward
from shipyard_logs.forward import EventTime
from shipyard_logs.handshake import ClientHandshake, ClientSecurity
from test_logs_agent import Agent, shipped_ids, wait_all

INTEROP = Path(__file__).with_name("interop")
KEY = "a-shared-key-of-this-test-7f3a"
NOW = EventTime(1795449909)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def secret_file(directory: Path, name: str, value: str) -> str:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def secured(tmp_path: Path, pki: Pki | None = None, **security: object) -> dict[str, object]:
    """Collector settings with a shared key (from a file) and, given a pki, TLS."""
    settings: dict[str, object] = {
        "security": {
            "self_hostname": "collector-under-test",
            "shared_key_file": secret_file(tmp_path, "shared_key", KEY),
            **security,
        }
    }
    if pki is not None:
        settings["transport"] = {
            "tls": True,
            "cert_path": str(pki.server.cert),
            "private_key_path": str(pki.server.key),
        }
    return settings


class SecureClient(ForwardClient):
    """A raw client that can do TLS and the handshake, to try what others would."""

    def __init__(
        self,
        port: int,
        key: str | None = None,
        context: ssl.SSLContext | None = None,
        hostname: str = "raw-client",
        user: tuple[str, str] = ("", ""),
    ) -> None:
        super().__init__(port)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.pong: object = None
        if key is not None:
            handshake = ClientHandshake(ClientSecurity(hostname, key, *user))
            self.send(forward.packb(handshake.ping(self.message())))
            self.pong = self.message()

    def message(self) -> object:
        while True:
            try:
                return self.unpacker.unpack()
            except msgpack.OutOfData:
                pass
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the collector closed the connection")
            self.unpacker.feed(data)

    def closed(self) -> bool:
        """The collector has closed the connection (after what it had to say)."""
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        return True


def node(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    """npm's fluent-logger sending FORWARD_COUNT records, waiting for every ack."""
    node_bin = shutil.which("node")
    assert node_bin, "node is missing (Debian: nodejs)"
    assert (INTEROP / "node_modules" / "fluent-logger").is_dir(), (
        "fluent-logger is not installed: `make venv` runs npm ci in tests/logs/interop"
    )
    variables = {f"FORWARD_{k.upper()}": v for k, v in env.items()}
    return subprocess.run(
        [node_bin, str(INTEROP / "send.js")],
        env={**os.environ, "FORWARD_PORT": str(port), **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def node_records(collector: Collector, run: str) -> Counter[int]:
    return Counter(
        json.loads(body)["n"]
        for _, tag, body in collector.lines()
        if tag == "node.interop" and json.loads(body).get("run") == run
    )


# ------------------------------------------------------------------ the handshake


def test_without_the_handshake_or_with_a_wrong_key_nothing_is_written(tmp_path, collector_factory):
    collector = collector_factory(**secured(tmp_path)).start()
    frame = forward.encode_message("t.intruder", NOW, {"m": "sneaked in"}, chunk="x1")
    # A client that knows nothing of <security> sends its frame at once: the
    # collector greets it with HELO and refuses the frame as a PING.
    with SecureClient(collector.port) as plain:
        plain.send(frame)
        helo = plain.message()
        assert isinstance(helo, list) and helo[0] == "HELO"
        assert plain.message() == ["PONG", False, "invalid ping message", "", ""]
        assert plain.closed()
    with SecureClient(collector.port, key="not-the-key") as wrong:
        assert wrong.pong == ["PONG", False, "shared_key mismatch", "", ""]
        with pytest.raises(OSError):
            wrong.send(frame)
            wrong.ack()
    with SecureClient(collector.port, key=KEY) as right:
        assert right.pong[:3] == ["PONG", True, ""]
        right.send(forward.encode_message("t.friend", NOW, {"m": "welcome"}, chunk="ok"))
        assert right.ack() == "ok"
    assert [tag for _, tag, _ in collector.lines()] == ["t.friend"]
    output = collector.output()
    assert "main: refusing 127.0.0.1: the handshake failed: invalid ping message" in output
    assert "main: refusing 127.0.0.1: the handshake failed: shared_key mismatch" in output
    assert KEY not in output


def test_user_authentication_refuses_a_wrong_password(tmp_path, collector_factory):
    users = [{"username": "agent", "password_file": secret_file(tmp_path, "pw", "pw-of-agent")}]
    collector = collector_factory(**secured(tmp_path, user_auth=True, users=users)).start()
    with SecureClient(collector.port, key=KEY, user=("agent", "wrong")) as wrong:
        assert wrong.pong == ["PONG", False, "username/password mismatch", "", ""]
    with SecureClient(collector.port, key=KEY, user=("agent", "pw-of-agent")) as right:
        assert right.pong[1] is True
    proc = node(
        collector.port, shared_key=KEY, username="agent", run="u", **{"password": "pw-of-agent"}
    )
    assert proc.returncode == 0, proc.stderr
    assert node_records(collector, "u") == Counter(range(10))
    assert "pw-of-agent" not in collector.output()


@pytest.mark.parametrize("mode", ["Message", "CompressedPackedForward"])
def test_fluent_logger_for_node_with_the_right_key_and_tls_delivers_exactly_once(
    tmp_path, pki, collector_factory, mode
):
    collector = collector_factory(**secured(tmp_path, pki)).start()
    proc = node(collector.port, shared_key=KEY, ca=str(pki.ca), count="200", mode=mode, run=mode)
    assert proc.returncode == 0, proc.stderr
    assert node_records(collector, mode) == Counter(range(200))


def test_fluent_logger_for_node_with_a_wrong_key_is_refused(tmp_path, collector_factory):
    collector = collector_factory(**secured(tmp_path)).start()
    proc = node(collector.port, shared_key="wrong", run="w")
    assert proc.returncode != 0
    assert "shared_key mismatch" in proc.stderr
    assert not collector.lines()


def test_the_agent_refuses_a_collector_that_cannot_prove_the_key(tmp_path):
    """A man in the middle answers PONG without the key: the agent sends it nothing."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received: list[bytes] = []

    def impostor() -> None:
        server.settimeout(20)
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(forward.packb(["HELO", {"nonce": b"n" * 16, "auth": ""}]))
                conn.recv(4096)  # the PING
                conn.sendall(forward.packb(["PONG", True, "", "impostor", "0" * 128]))
                conn.settimeout(2)
                try:
                    while data := conn.recv(65536):
                        received.append(data)
                except OSError:
                    pass

    threading.Thread(target=impostor, daemon=True).start()
    fake = type("Fake", (), {"port": port})()
    agent = Agent(
        tmp_path, fake, shared_key_file=secret_file(tmp_path, "key", KEY), connect_timeout=2.0
    )
    (agent.logdir / "access.log").write_text(apache_line(1) + "\n")
    agent.start()
    try:
        wait_for(lambda: "does not know the shared key" in agent.output(), 20, "the refusal")
    finally:
        agent.stop()
        server.close()
    assert not received, "the agent sent frames to a server that does not know the key"


# ------------------------------------------------------------------ TLS


def test_the_agent_with_key_and_tls_delivers_exactly_once(tmp_path, pki, collector_factory):
    users = [{"username": "lamp", "password_file": secret_file(tmp_path, "pw", "pw-of-lamp")}]
    settings = secured(tmp_path, pki, user_auth=True, users=users)
    settings["transport"] |= {"ca_path": str(pki.ca), "client_cert_auth": True}  # type: ignore[operator]
    collector = collector_factory(**settings).start()
    agent = Agent(
        tmp_path,
        collector,
        collector_host="localhost",
        shared_key_file=secret_file(tmp_path, "key", KEY),
        username="lamp",
        password_file=str(tmp_path / "pw"),
        tls=True,
        tls_ca_path=str(pki.ca),
        tls_cert_path=str(pki.client.cert),
        tls_key_path=str(pki.client.key),
    )
    total = 5000
    with (agent.logdir / "access.log").open("w") as handle:
        handle.writelines(apache_line(n) + "\n" for n in range(total))
    agent.start()
    try:
        wait_all(collector, total)
        # The statistics file of the stats contract, written every few seconds.
        stats = wait_for(
            lambda: (
                (p := agent.pos_dir / "stats.json").exists()
                and (s := json.loads(p.read_text()))["sources"]["apache.access"]["lines_shipped"]
                == total
                and s
            ),
            20,
            "stats.json to count every line",
        )
    finally:
        agent.stop()
    ids = shipped_ids(collector)
    assert set(ids) == set(range(total)) and set(ids.values()) == {1}
    assert stats["connected"] is True and stats["collector"] == f"localhost:{collector.port}"
    assert stats["sources"]["apache.access"]["bytes_behind"] == 0
    assert stats["sources"]["apache.access"]["files"] == 1
    assert stats["last_ack"].endswith("+00:00") and stats["started"] <= stats["updated"]
    assert KEY not in agent.output() + collector.output()


def test_a_client_that_does_not_trust_the_ca_cannot_connect(tmp_path, pki, collector_factory):
    collector = collector_factory(**secured(tmp_path, pki)).start()
    distrust = ssl.create_default_context(cafile=str(pki.rogue_ca))
    with pytest.raises(ssl.SSLCertVerificationError):
        SecureClient(collector.port, key=KEY, context=distrust)
    proc = node(collector.port, shared_key=KEY, ca=str(pki.rogue_ca), run="r")
    assert proc.returncode != 0
    agent = Agent(
        tmp_path,
        collector,
        collector_host="localhost",
        shared_key_file=secret_file(tmp_path, "key", KEY),
        tls=True,
        tls_ca_path=str(pki.rogue_ca),
    )
    (agent.logdir / "access.log").write_text(apache_line(1) + "\n")
    agent.start()
    try:
        wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in agent.output(), 20, "the agent to refuse")
    finally:
        agent.stop()
    assert not collector.lines()
    assert "main: refusing 127.0.0.1: TLS handshake failed" in collector.output()


def test_the_collector_may_require_a_client_certificate(tmp_path, pki, collector_factory):
    settings = secured(tmp_path, pki)
    settings["transport"] |= {"ca_path": str(pki.ca), "client_cert_auth": True}  # type: ignore[operator]
    collector = collector_factory(**settings).start()
    trust = ssl.create_default_context(cafile=str(pki.ca))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        client = SecureClient(collector.port, key=KEY, context=trust)  # no certificate
        client.send(forward.encode_message("t", NOW, {}, chunk="c"))
        client.ack()
    trust.load_cert_chain(str(pki.client.cert), str(pki.client.key))
    with SecureClient(collector.port, key=KEY, context=trust) as client:
        client.send(forward.encode_message("t.cert", NOW, {}, chunk="c"))
        assert client.ack() == "c"
    assert [tag for _, tag, _ in collector.lines()] == ["t.cert"]


# ------------------------------------------------------------------ the plain listener


def test_a_plain_listener_takes_only_its_tags_from_its_peers(tmp_path, pki, collector_factory):
    from fluent import sender

    plain_port = free_port()
    settings = secured(tmp_path, pki)
    settings["listeners"] = [
        {
            "name": "docker",
            "bind": "127.0.0.1",
            "port": plain_port,
            "allow_tags": "docker.** fluent.*",
            "allow_peers": ["127.0.0.1/32"],
        }
    ]
    collector = collector_factory(**settings).start()
    logger = sender.FluentSender("docker", host="127.0.0.1", port=plain_port, timeout=5)
    try:
        assert logger.emit_with_time("web", NOW.seconds, {"log": "from the driver"})
    finally:
        logger.close()
    wait_for(lambda: collector.lines(), 10, "the allowed tag")
    with ForwardClient(plain_port) as other:
        other.send(forward.encode_message("app.web", NOW, {"m": "not here"}, chunk="a"))
        with pytest.raises(OSError):
            other.ack()
    stranger = socket.socket()
    stranger.bind(("127.0.0.2", 0))
    stranger.settimeout(5)
    stranger.connect(("127.0.0.1", plain_port))
    try:
        stranger.sendall(forward.encode_message("docker.web", NOW, {"m": "stranger"}, chunk="s"))
        assert stranger.recv(100) == b""
    except ConnectionResetError:
        pass
    finally:
        stranger.close()
    assert [tag for _, tag, _ in collector.lines()] == ["docker.web"]
    output = collector.output()
    assert "docker: refusing a frame from 127.0.0.1: the tag 'app.web' is not allowed" in output
    assert (
        "docker: refusing a connection from 127.0.0.2: the address is not in allow_peers" in output
    )


# ------------------------------------------------------------------ settings


def check(program: str, config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "c.toml"
    path.write_text(config)
    return check_config(program, path)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("max_depth = 0", "collector.max_depth must be between 2 and 500"),
        ("max_connections = 0", "collector.max_connections must be between 1"),
        ("max_decode_memory = 10", "collector.max_decode_memory must be between"),
        ("max_compression_ratio = 1", "collector.max_compression_ratio must be between"),
        ("max_string_bytes = 10", "collector.max_string_bytes must be between"),
        ("max_array_length = 0", "collector.max_array_length must be between"),
        ("max_map_length = 0", "collector.max_map_length must be between"),
        ("frame_timeout = 0", "collector.frame_timeout must be between"),
        ("idle_timeout = -1", "collector.idle_timeout must be between"),
        ("handshake_timeout = 0", "collector.handshake_timeout must be between"),
        ("max_connections_per_peer = 0", "collector.max_connections_per_peer must be between"),
        ('allow_peers = ["10.0.0.300"]', "collector.allow_peers: '10.0.0.300' is not an address"),
        ('allow_tags = "a.{b"', "collector.allow_tags: 'a.{b'"),
        (
            "[security]\nuser_auth = true",
            "collector.security.shared_key (or shared_key_file) is required",
        ),
        (
            '[security]\nshared_key_file = "/nonexistent"',
            "collector.security.shared_key_file: cannot read",
        ),
        ('[security]\nshared_key = "k"\nuser_auth = true', "collector.security.user_auth needs"),
        ("[transport]\ntls = true", "collector.transport.cert_path is required with tls = true"),
        ('[transport]\ncert_path = "/x"', "collector.transport: cert_path given but tls is false"),
        (
            '[transport]\ntls = true\ncert_path = "/none"\nprivate_key_path = "/none"',
            "collector.transport.cert_path / private_key_path: cannot load",
        ),
        ('[[listeners]]\nname = "d"', "collector.listeners[0].port is required"),
        ("[[listeners]]\nport = 24224", "both bind 0.0.0.0:24224"),
        ("[[listeners]]\nport = 1\nbogus = 1", "collector.listeners[0]: unknown key(s) bogus"),
    ],
)
def test_bad_collector_settings_are_refused_naming_the_key(tmp_path, config, message):
    proc = check("collector", config + "\n", tmp_path)
    assert proc.returncode == 78, proc.stderr
    assert message in proc.stderr


AGENT_SOURCE = '[[sources]]\npath = "/var/log/x.log"\ntag = "x"\n'


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('username = "u"', "agent.username and password need a shared_key"),
        ('shared_key = "k"\nusername = "u"', "agent: username and password (or password_file) go"),
        ('shared_key_file = "/nonexistent"', "agent.shared_key_file: cannot read /nonexistent"),
        ('tls_ca_path = "/x"', "agent: tls_ca_path given but tls is false"),
        ('tls = true\ntls_ca_path = "/nonexistent"', "agent.tls_ca_path: cannot load /nonexistent"),
        ('tls = true\ntls_cert_path = "/x"', "agent: tls_cert_path and tls_key_path go together"),
    ],
)
def test_bad_agent_security_settings_are_refused_naming_the_key(tmp_path, config, message):
    proc = check("agent", config + "\n" + AGENT_SOURCE, tmp_path)
    assert proc.returncode == 78, proc.stderr
    assert message in proc.stderr


def test_the_agent_over_tls_goes_on_after_idle_times_and_collector_restarts(
    tmp_path, pki, collector_factory
):
    settings = secured(tmp_path, pki)
    settings["transport"] |= {"ca_path": str(pki.ca), "client_cert_auth": True}  # type: ignore[operator]
    collector = collector_factory(**settings).start()
    agent = Agent(
        tmp_path,
        collector,
        collector_host="localhost",
        shared_key_file=secret_file(tmp_path, "key", KEY),
        tls=True,
        tls_ca_path=str(pki.ca),
        tls_cert_path=str(pki.client.cert),
        tls_key_path=str(pki.client.key),
        ack_timeout=30.0,  # a read that waits for nothing would show as this long a stall
    )
    log = agent.logdir / "access.log"
    log.touch()
    agent.start()
    written = 0

    def write(count: int) -> None:
        nonlocal written
        with log.open("a") as handle:
            handle.writelines(apache_line(n) + "\n" for n in range(written, written + count))
        written += count

    try:
        for pause in (0.0, 2.0, 4.0):
            time.sleep(pause)  # idle: nothing in flight, the connection open
            write(200)
            wait_all(collector, written, timeout=10)
        collector.kill()
        write(200)
        collector.start()
        wait_all(collector, written, timeout=20)
    finally:
        agent.stop()
    ids = shipped_ids(collector)
    assert set(ids) == set(range(written)) and set(ids.values()) == {1}

"""Verify who may write to the collector in the containers: shared key, TLS, client certificates.

The role made a CA, certificates and the shared key in the scenario's
.shipyard/secrets and copied them into the containers; the agents of the LAMP
and PostgreSQL images ship with them (test_logging.py's exactly-once run goes
through them). Here, clients without them are refused and nothing of theirs
is written, the secrets sit in the containers with private modes, and neither
the role's output nor the collector's echoes them.
"""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from pathlib import Path

import msgpack
import pytest
from container_checks import address, docker
from shipyard_logs import forward
from shipyard_logs.forward import EventTime
from shipyard_logs.handshake import ClientHandshake, ClientSecurity
from test_logging import COLLECTOR, LAMP, S3_KEYS, local_records, run_role

SECRETS = Path(__file__).resolve().parent.parent / ".shipyard" / "secrets"
RUN = uuid.uuid4().hex[:8]


def secret(name: str) -> str:
    return (SECRETS / name).read_text().strip()


def tls_context(client_cert: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(SECRETS / "forward-ca.crt"))
    if client_cert:
        prefix = SECRETS / f"forward-agent-{LAMP}"
        context.load_cert_chain(f"{prefix}.crt", f"{prefix}.key")
    return context


def connect(context: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection((address(COLLECTOR), 24224), timeout=10)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="log-collector")
    return sock


def read(sock: socket.socket, unpacker: msgpack.Unpacker) -> object:
    while True:
        try:
            return unpacker.unpack()
        except msgpack.OutOfData:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the collector closed the connection") from None
            unpacker.feed(data)


def handshake(sock: socket.socket, key: str) -> tuple[object, msgpack.Unpacker]:
    unpacker = forward.new_unpacker()
    client = ClientHandshake(ClientSecurity("molecule-client", key))
    sock.sendall(forward.packb(client.ping(read(sock, unpacker))))
    return read(sock, unpacker), unpacker


def collector_log(since: str) -> str:
    proc = docker("logs", "--since", since, COLLECTOR)
    return proc.stdout + proc.stderr


def test_clients_without_tls_a_certificate_or_the_key_write_nothing() -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    marker = f"intruder-{RUN}"
    frame = forward.encode_message("apache.access", EventTime(int(time.time())), {"m": marker}, "x")
    # Plain TCP to a TLS listener: the bytes are no TLS handshake.
    with connect(None) as plain:
        plain.sendall(frame)
        plain.settimeout(10)
        with pytest.raises(OSError):
            while plain.recv(4096):
                pass
            raise ConnectionResetError
    # TLS without a client certificate: the collector requires one. In TLS 1.3
    # the client learns it only from the alert that closes the connection.
    try:
        with connect(tls_context(client_cert=False)) as anon:
            anon.sendall(frame)
            assert anon.recv(4096) == b""
    except (ssl.SSLError, OSError):
        pass
    # TLS with a certificate, a frame instead of a PING, then a wrong key.
    with connect(tls_context()) as no_key:
        unpacker = forward.new_unpacker()
        no_key.sendall(frame)
        assert read(no_key, unpacker)[0] == "HELO"  # type: ignore[index]
        assert read(no_key, unpacker) == ["PONG", False, "invalid ping message", "", ""]
    with connect(tls_context()) as wrong_key:
        pong, _ = handshake(wrong_key, "not-the-key")
        assert pong == ["PONG", False, "shared_key mismatch", "", ""]
    # With all of them: accepted.
    with connect(tls_context()) as right:
        pong, unpacker = handshake(right, secret("forward-shared-key"))
        assert pong[:3] == ["PONG", True, ""]  # type: ignore[index]
        right.sendall(
            forward.encode_message("interop.trust", EventTime(int(time.time())), {"m": RUN}, "ok")
        )
        assert forward.decode_ack(read(right, unpacker)) == "ok"
    log = collector_log(since)
    assert "main: refusing" in log and "TLS handshake failed" in log, log
    assert "the handshake failed: shared_key mismatch" in log, log
    assert secret("forward-shared-key") not in log
    records = local_records("other") + local_records()
    assert not any(marker in str(r[2]) for r in records)
    assert any(r[1] == "interop.trust" and r[2].get("m") == RUN for r in records)


def test_the_plain_listener_takes_only_its_tags() -> None:
    with socket.create_connection((address(COLLECTOR), 24225), timeout=10) as sock:
        sock.sendall(forward.encode_message("apache.access", EventTime(int(time.time())), {}, "x"))
        sock.settimeout(10)
        with pytest.raises(OSError):
            if not sock.recv(4096):
                raise ConnectionResetError
    proc = docker("logs", COLLECTOR)
    assert "docker: refusing a frame from" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("container", "path", "mode"),
    [
        (COLLECTOR, "/etc/shipyard/forward-shared-key", "600 999 999"),
        (COLLECTOR, "/etc/shipyard/forward.key", "600 999 999"),
        (COLLECTOR, "/etc/shipyard/forward.crt", "644 999 999"),
        (LAMP, "/etc/shipyard/forward-shared-key", "640 0 4"),
        (LAMP, "/etc/shipyard/forward.key", "640 0 4"),
        (LAMP, "/etc/shipyard/forward-ca.crt", "644 0 4"),
    ],
)
def test_the_secrets_in_the_containers_are_private(container: str, path: str, mode: str) -> None:
    assert docker("exec", container, "stat", "-c", "%a %u %g", path).stdout.strip() == mode
    assert oct(SECRETS.stat().st_mode)[-3:] == "700"
    assert oct((SECRETS / "forward-ca.key").stat().st_mode)[-3:] == "600"


def test_a_refused_setting_is_reported_with_its_secrets_masked() -> None:
    # The collector names the key and echoes the value it refuses: here an
    # S3 secret where a number belongs. The role's message must not show it.
    secret_value = S3_KEYS["aws_secret_access_key"]
    proc = run_role(
        "-e", f'{{"log_shipping_collector_settings": {{"max_depth": "{secret_value}"}}}}'
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "collector.max_depth" in output, output[-3000:]
    assert secret_value not in output
    assert secret("forward-shared-key") not in output

"""The collector as a real process on a free port, against raw and third-party clients."""

import json
import socket
import threading
import time
from collections import Counter
from datetime import datetime

import pytest
from logs_harness import Collector, ForwardClient, forward, wait_for
from shipyard_logs.forward import EventTime

NOW = int(time.time())


def stamp(text: str) -> EventTime:
    return EventTime(int(datetime.fromisoformat(text).timestamp()))


def test_ack_comes_only_after_the_lines_are_in_the_file(collector: Collector):
    slice_file = collector.root / "logs" / "20261120" / "web1-10.log"
    with ForwardClient(collector.port) as client:
        for n in range(30):
            marker = f"marker-{n}"
            entries = [(stamp("2026-11-20T10:00:00+00:00"), {"m": marker, "host": "web1"})] * 3
            mode = n % 3
            if mode == 0:
                data = forward.encode_packed_forward("t.ack", entries, chunk=f"c{n}")
            elif mode == 1:
                data = forward.encode_packed_forward("t.ack", entries, chunk=f"c{n}", compress=True)
            else:
                data = forward.encode_forward("t.ack", entries, chunk=f"c{n}")
            client.send(data)
            assert client.ack() == f"c{n}"
            # Read at ack time: the lines must already be there, all of them.
            assert slice_file.read_text().count(f'"{marker}"') == 3


def test_line_format_and_slices_per_host_and_hour(collector: Collector):
    frames = [
        ("a", stamp("2026-11-20T10:59:59+00:00"), {"source_host": "lamp-1", "host": "10.1.1.1"}),
        ("b", stamp("2026-11-20T11:00:00+00:00"), {"source_host": "lamp-1"}),
        ("c", stamp("2026-11-20T11:30:00+00:00"), {"hostname": "pg-1"}),
        ("d", stamp("2026-11-21T00:00:05+00:00"), {"host": "web/../2"}),
        ("e", EventTime(1795449909, 999), {"k": "no host at all"}),
    ]
    with ForwardClient(collector.port) as client:
        for name, when, record in frames:
            client.send(forward.encode_message(f"t.{name}", when, record, chunk=name))
            assert client.ack() == name
    logs = collector.root / "logs"
    expected = {
        "20261120/lamp-1-10.log": ("2026-11-20T10:59:59+00:00", "t.a"),
        "20261120/lamp-1-11.log": ("2026-11-20T11:00:00+00:00", "t.b"),
        "20261120/pg-1-11.log": ("2026-11-20T11:30:00+00:00", "t.c"),
        "20261121/web_.._2-00.log": ("2026-11-21T00:00:05+00:00", "t.d"),
        "20261123/127.0.0.1-16.log": ("2026-11-23T16:05:09+00:00", "t.e"),
    }
    found = {p.relative_to(logs).as_posix() for p in logs.rglob("*.log")}
    assert found == set(expected)
    for rel, (when, tag) in expected.items():
        (line,) = (logs / rel).read_text().splitlines()
        time_field, tag_field, body = line.split("\t")
        assert (time_field, tag_field) == (when, tag)
        assert isinstance(json.loads(body), dict)


def test_replayed_chunk_is_written_once_even_across_sigkill(collector: Collector):
    when = stamp("2026-11-20T10:00:00+00:00")
    frame = forward.encode_packed_forward("t.replay", [(when, {"m": "once"})] * 5, chunk="R1")
    with ForwardClient(collector.port) as client:
        for _ in range(3):
            client.send(frame)
            assert client.ack() == "R1"
    collector.kill()
    collector.start()
    with ForwardClient(collector.port) as client:
        client.send(frame)
        assert client.ack() == "R1"
        other = forward.encode_message("t.replay", when, {"m": "other"}, chunk="R2")
        client.send(other)
        assert client.ack() == "R2"
    bodies = Counter(json.loads(body)["m"] for _, _, body in collector.lines())
    assert bodies == {"once": 5, "other": 1}


def test_uncommitted_tail_is_cut_on_restart(collector: Collector):
    when = stamp("2026-11-20T10:00:00+00:00")
    with ForwardClient(collector.port) as client:
        client.send(forward.encode_message("t.cut", when, {"m": "kept"}, chunk="K"))
        assert client.ack() == "K"
    collector.kill()
    # What a crash between write and journal leaves: bytes nobody acked.
    (path,) = (collector.root / "logs").rglob("*.log")
    with path.open("a") as handle:
        handle.write('2026-11-20T10:00:00+00:00\tt.cut\t{"m":"torn')
    collector.start()
    with ForwardClient(collector.port) as client:
        client.send(forward.encode_message("t.cut", when, {"m": "after"}, chunk="A"))
        assert client.ack() == "A"
    assert [json.loads(b)["m"] for _, _, b in collector.lines()] == ["kept", "after"]


def stream_records(port: int, count: int, per_frame: int, errors: list[BaseException]) -> None:
    try:
        with ForwardClient(port) as client:
            for first in range(0, count, per_frame):
                entries = [
                    (EventTime(NOW), {"id": i, "source_host": "steady"})
                    for i in range(first, first + per_frame)
                ]
                chunk = f"s{first}"
                client.send(forward.encode_packed_forward("t.steady", entries, chunk, True))
                assert client.ack() == chunk
    except BaseException as exc:
        errors.append(exc)


def send_garbage(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.settimeout(5)
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            return sock.recv(100)  # the collector closes: b""
        except OSError:  # reset, broken pipe or not connected: it closed on us
            return b""


def test_malformed_frames_close_only_their_connection(collector_factory):
    collector = collector_factory(max_frame_bytes=1024 * 1024).start()
    errors: list[BaseException] = []
    total = 20_000
    streamer = threading.Thread(
        target=stream_records, args=(collector.port, total, 100, errors), daemon=True
    )
    streamer.start()
    valid = forward.encode_message("t.bad", EventTime(NOW), {"m": "valid-before-garbage"}, "V")
    garbage = [
        b"\xc1\xc1\xc1\xc1",
        forward.packb({"not": "a frame"}),
        valid + forward.packb(["t.bad", b"\x1f\x8bnot gzip", {"compressed": "gzip"}]),
        forward.packb(["t.bad", [[1, {"blob": "x" * 2_000_000}]]]),  # over max_frame_bytes
        forward.packb(["t.bad", b"\x92" * 64, {"chunk": "zz"}]),
    ]
    for _ in range(3):
        for data in garbage:
            assert send_garbage(collector.port, data) in (b"", forward.encode_ack("V"))
    streamer.join(60)
    assert not streamer.is_alive(), "the steady client stalled"
    assert not errors, errors
    assert collector.alive(), collector.output()
    ids = Counter(json.loads(body)["id"] for _, tag, body in collector.lines() if tag == "t.steady")
    assert len(ids) == total and set(ids.values()) == {1}
    assert sum(1 for _, tag, _ in collector.lines() if tag == "t.bad") == 1  # the valid frame
    assert "main: refusing a frame from 127.0.0.1: " in collector.output()
    with ForwardClient(collector.port) as client:  # still serving
        client.send(forward.encode_message("t.after", EventTime(NOW), {}, chunk="after"))
        assert client.ack() == "after"


def test_heartbeat_is_answered_over_udp(collector: Collector):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(b"\x00", ("127.0.0.1", collector.port))
        data, addr = udp.recvfrom(16)
    assert data == b"\x00"
    assert addr == ("127.0.0.1", collector.port)


def test_fluent_logger_package_delivers_into_the_collector(collector: Collector):
    from fluent import sender

    plain = sender.FluentSender("app", host="127.0.0.1", port=collector.port, timeout=5)
    precise = sender.FluentSender(
        "app", host="127.0.0.1", port=collector.port, timeout=5, nanosecond_precision=True
    )
    try:
        for n in range(20):
            assert plain.emit_with_time("event", 1795449909, {"n": n, "who": "plain"})
            assert precise.emit_with_time("precise", 1795449909.5, {"n": n, "who": "precise"})
    finally:
        plain.close()
        precise.close()

    def arrived() -> list[list[str]]:
        lines = collector.lines()
        return lines if len(lines) == 40 else []

    lines = wait_for(arrived, 10, "40 fluent-logger records")
    tags = Counter(tag for _, tag, _ in lines)
    assert tags == {"app.event": 20, "app.precise": 20}
    assert {t for t, _, _ in lines} == {"2026-11-23T16:05:09+00:00"}
    plain_ns = sorted(json.loads(b)["n"] for _, tag, b in lines if tag == "app.event")
    assert plain_ns == list(range(20))


@pytest.mark.parametrize("bad", ['time_slice_format = "%Y%m%d"', 'port = "x"', "nope = 1"])
def test_bad_configuration_is_refused_with_exit_78(tmp_path, bad):
    import subprocess

    from logs_harness import COMMON, PYTHON

    config = tmp_path / "c.toml"
    config.write_text(bad + "\n")
    proc = subprocess.run(
        [PYTHON, "-m", "shipyard_logs.collector", "--config", str(config), "--check-config"],
        env={"PYTHONPATH": str(COMMON)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 78, proc.stderr
    assert "shipyard-log-collector:" in proc.stderr


def test_zero_configuration_defaults(tmp_path):
    from shipyard_logs.collector import load_config

    config = load_config(None, env={})
    assert (config.bind, config.port, str(config.root)) == ("0.0.0.0", 24224, "/var/log/shipyard")  # noqa: S104
    assert config.s3 is None
    rel = config.layout.relpath(1795449909, "lamp")
    assert rel == "logs/20261123/lamp-16.log"
    assert config.layout.parse(rel) == ("lamp", 1795449909 - 1795449909 % 3600)
    env_config = load_config(
        None, env={"SHIPYARD_COLLECTOR_S3_BUCKET": "bkt", "SHIPYARD_COLLECTOR_PORT": "1"}
    )
    assert env_config.port == 1
    assert env_config.s3 is not None and env_config.s3.bucket == "bkt"
    assert "secret" not in repr(env_config.s3)


def test_sigterm_stops_the_collector_with_exit_0(collector: Collector):
    with ForwardClient(collector.port) as client:  # an idle client must not hold the stop
        client.send(forward.encode_message("t", EventTime(NOW), {}, chunk="idle"))
        assert client.ack() == "idle"
        started = time.monotonic()
        assert collector.stop(timeout=5) == 0
    assert time.monotonic() - started < 3

"""The Forward Protocol codec and the line parsers, in process."""

import gzip
import json
import zlib

import msgpack
import pytest
from logs_harness import forward
from shipyard_logs.decoder import FrameDecoder, decode_all
from shipyard_logs.forward import EventTime, ForwardError, Limits
from shipyard_logs.parsers import parse_apache2, parse_apache_error, parse_json, parse_none

T1 = EventTime(1795435509, 123456789)
T2 = EventTime(1795435510, 0)
ENTRIES = [(T1, {"message": "one", "n": 1}), (T2, {"message": "two", "nested": {"k": [1, 2]}})]


def decode_stream(data: bytes, piece: int = 7) -> list[forward.Frame]:
    """Feed the bytes in small pieces, as a socket may deliver them."""
    decoder = FrameDecoder(Limits())
    frames = []
    for start in range(0, len(data), piece):
        decoder.feed(data[start : start + piece])
        while decoder.busy:
            frames.extend(decoder.step())
    assert not decoder.in_frame, "the data ended inside a frame"
    assert not decoder.invalid, decoder.invalid
    return frames


@pytest.mark.parametrize(
    "encode",
    [
        lambda: forward.encode_forward("app.web", ENTRIES, chunk="c1"),
        lambda: forward.encode_packed_forward("app.web", ENTRIES, chunk="c1"),
        lambda: forward.encode_packed_forward("app.web", ENTRIES, chunk="c1", compress=True),
    ],
    ids=["Forward", "PackedForward", "CompressedPackedForward"],
)
def test_batch_modes_round_trip(encode):
    frames = decode_stream(encode() + encode())
    assert len(frames) == 2
    for frame in frames:
        assert frame.tag == "app.web"
        assert frame.entries == ENTRIES
        assert frame.chunk == "c1"


def test_message_mode_round_trips_with_and_without_option():
    data = forward.encode_message("app.one", T1, {"a": 1}, chunk="x") + forward.encode_message(
        "app.two", T2, {"b": None}
    )
    first, second = decode_stream(data)
    assert (first.tag, first.entries, first.chunk) == ("app.one", [(T1, {"a": 1})], "x")
    assert (second.tag, second.entries, second.chunk) == ("app.two", [(T2, {"b": None})], None)


def test_integer_and_float_times_are_accepted():
    data = msgpack.packb(["t", [[1700000000, {"a": 1}], [1700000000.25, {"a": 2}]]])
    (frame,) = decode_stream(data)
    assert [t for t, _ in frame.entries] == [
        EventTime(1700000000),
        EventTime(1700000000, 250000000),
    ]


def test_event_time_is_ext_type_0_with_big_endian_seconds_and_nanoseconds():
    packed = forward.packb(EventTime(0x01020304, 0x05060708))
    assert packed == b"\xd7\x00\x01\x02\x03\x04\x05\x06\x07\x08"  # fixext 8, type 0
    assert msgpack.unpackb(packed, ext_hook=forward.event_time_hook) == EventTime(
        0x01020304, 0x05060708
    )
    assert float(EventTime(10, 500_000_000)) == 10.5
    with pytest.raises(ForwardError):
        EventTime.from_bytes(b"\x00" * 7)


def test_ack_echoes_the_chunk():
    assert msgpack.unpackb(forward.encode_ack("abc==")) == {"ack": "abc=="}


def test_gzip_payload_of_several_members_is_read_whole():
    stream, _ = forward.pack_entries(ENTRIES)
    more, _ = forward.pack_entries([(T2, {"message": "three"})])
    payload = gzip.compress(stream[:5]) + gzip.compress(stream[5:]) + gzip.compress(more)
    data = msgpack.packb(["t", payload, {"compressed": "gzip", "chunk": "z"}], use_bin_type=True)
    (frame,) = decode_stream(data)
    assert frame.entries == [*ENTRIES, (T2, {"message": "three"})]


def test_packed_stream_sent_as_str_is_accepted():
    stream, _ = forward.pack_entries(ENTRIES)
    data = msgpack.packb(["t", stream], use_bin_type=False)  # old clients: raw, not bin
    (frame,) = decode_stream(data)
    assert frame.entries == ENTRIES


def test_entries_packed_by_hand_are_the_bytes_msgpack_makes():
    # EntryPacker writes the EventTime head itself; msgpack's own packer with
    # the ext hook, and its decoder, are the reference.
    records = [
        {"message": "one", "n": 1, "none": None, "f": 1.5, "list": [1, "a"], "bin": b"\x00"},
        {"path": '/é?q=\\"x', "size": 2**40, "neg": -3, "ok": True},
        {},
    ]
    times = [EventTime(0), EventTime(2**32 - 1, 999_999_999), T1]
    entries = list(zip(times, records, strict=True))
    stream, size = forward.pack_entries(entries)
    packer = msgpack.Packer(default=forward._default, use_bin_type=True)
    assert stream == b"".join(packer.pack([t, r]) for t, r in entries)
    assert size == 3
    unpacker = msgpack.Unpacker(raw=False, ext_hook=forward.event_time_hook)
    unpacker.feed(stream)
    assert [tuple(obj) for obj in unpacker] == entries


@pytest.mark.parametrize("compress", [False, True])
def test_packed_stream_frames_decode_like_packed_forward(compress):
    stream, size = forward.pack_entries(ENTRIES)
    data = forward.encode_packed_stream("app.web", stream, size, chunk="c9", compress=compress)
    assert data == forward.encode_packed_forward("app.web", ENTRIES, "c9", compress)
    (frame,) = decode_stream(data)
    assert (frame.tag, frame.entries, frame.chunk) == ("app.web", ENTRIES, "c9")
    assert frame.option["size"] == 2
    assert frame.option.get("compressed", "text") == ("gzip" if compress else "text")


def test_event_times_decode_exactly_past_the_cache_bound():
    count = forward.MAX_CACHED_EVENT_TIMES + 100
    entries = [(EventTime(T2.seconds + n // 3, n * 7), {"n": n}) for n in range(count)]
    (frame,) = decode_stream(forward.encode_packed_forward("t", entries), piece=4096)
    assert frame.entries == entries
    assert len(forward._event_times) <= forward.MAX_CACHED_EVENT_TIMES


def bad_frames() -> list[tuple[str, bytes]]:
    stream, _ = forward.pack_entries(ENTRIES)
    zipped = gzip.compress(stream)
    pack = forward.packb
    return [
        ("not msgpack", b"\xc1\xc1\xc1"),
        ("map instead of array", pack({"tag": "x"})),
        ("one-item array", pack(["x"])),
        ("five-item array", pack(["x", 1, {}, {}, 5])),
        ("empty tag", pack(["", 1, {}])),
        ("tag not a string", pack([7, 1, {}])),
        ("tag too long", pack(["t" * 1025, 1, {}])),
        ("Message without record", pack(["t", 1])),
        ("option not a map", pack(["t", 1, {}, "opt"])),
        ("items after option", pack(["t", [[1, {}]], {}, 5])),
        ("truncated packed stream", pack(["t", stream[:-3]])),
        ("garbage packed stream", pack(["t", b"\xc1" * 10])),
        ("unknown compression", pack(["t", stream, {"compressed": "lz4"}])),
        ("bad gzip", pack(["t", b"\x1f\x8b\x08garbage", {"compressed": "gzip"}])),
        ("truncated gzip", pack(["t", zipped[:-6], {"compressed": "gzip"}])),
        ("gzip, then garbage", pack(["t", zipped + b"xx", {"compressed": "gzip"}])),
        ("unhashable map key", b"\x93\xa1t\x01\x81\x90\x01"),
    ]


@pytest.mark.parametrize(("why", "data"), bad_frames(), ids=[w for w, _ in bad_frames()])
def test_malformed_frames_raise_forward_error(why, data):
    with pytest.raises(ForwardError):
        decode_stream(data, piece=len(data))


def invalid_events() -> list[tuple[str, bytes, str]]:
    pack = forward.packb
    chunk = pack({"chunk": "c"})
    bad_time = msgpack.ExtType(0, bytes.fromhex("00000001 3b9aca00"))  # 10**9 nanoseconds
    return [
        ("record not a map", pack(["t", 1, "text", {"chunk": "c"}]), "must be a map"),
        ("time not a number", pack(["t", "yesterday", {}, {"chunk": "c"}]), "not a number"),
        ("time a bool", pack(["t", True, {}, {"chunk": "c"}]), "not a number"),
        ("EventTime out of range", pack(["t", bad_time, {}, {"chunk": "c"}]), "not a number"),
        (
            "EventTime of 7 bytes",
            b"\x94\xa1t\xc7\x07\x00" + b"\x00" * 7 + b"\x80" + chunk,
            "number",
        ),
        ("entry of three items", pack(["t", [[1, {}, 3]], {"chunk": "c"}]), "[time, record]"),
    ]


@pytest.mark.parametrize(
    ("why", "data", "reason"), invalid_events(), ids=[w for w, _, _ in invalid_events()]
)
def test_invalid_events_are_dropped_and_their_frame_is_kept(why, data, reason):
    # As fluentd's skip_invalid_event: resending could never succeed, so the
    # frame is answered (its chunk acked) without the event.
    frames, invalid = decode_all(data)
    assert [(f.tag, f.entries, f.chunk) for f in frames] == [("t", [], "c")]
    ((tag, why),) = invalid
    assert tag == "t" and reason in why and invalid[tag, why] == 1, invalid


def test_only_the_invalid_entries_of_a_frame_are_dropped():
    entries = [[1, {"a": 1}], [2, "no map"], [3, {"b": 2}]]
    for data in (
        forward.packb(["t", entries, {"chunk": "c"}]),
        forward.packb(["t", b"".join(forward.packb(e) for e in entries), {"chunk": "c"}]),
    ):
        (frame,), invalid = decode_all(data)
        assert frame.entries == [(EventTime(1), {"a": 1}), (EventTime(3), {"b": 2})]
        assert sum(invalid.values()) == 1


def nested(depth: int) -> dict:
    record: dict = {"leaf": 1}
    for _ in range(depth - 1):
        record = {"n": record}
    return record


def frames_of(mode: str, entries: list) -> bytes:
    """Message frames, a Forward frame, or (mode "stream") a PackedForward stream."""
    packer = msgpack.Packer(default=forward._default, use_bin_type=True)
    if mode == "Message":
        return b"".join(
            packer.pack(["t", t, r, {"chunk": f"m{n}"}]) for n, (t, r) in enumerate(entries)
        )
    if mode == "Forward":
        return packer.pack(["t", [[t, r] for t, r in entries], {"chunk": "f"}])
    return b"".join(packer.pack([t, r]) for t, r in entries)


MODES = ["Message", "Forward", "PackedForward", "CompressedPackedForward"]


@pytest.mark.parametrize("mode", MODES)
def test_a_record_nested_too_deep_is_dropped_cleanly(mode):
    # About 1,000 levels: within msgpack's reach, past json's. msgpack's
    # packer stops at 512 levels, so the deep record is put in by hand.
    too_deep = b"\x81\xa1n" * 999 + b"\x81\xa4leaf\x01"
    marker = {"replace": "me"}
    shallow = [(T1, {"ok": 1}), (T1, nested(64)), (T1, {"l": [[[[1]]]]})]
    entries = [shallow[0], (T1, marker), *shallow[1:]]
    if mode in ("Message", "Forward"):
        data = frames_of(mode, entries).replace(msgpack.packb(marker), too_deep)
    else:
        stream = frames_of("stream", entries).replace(msgpack.packb(marker), too_deep)
        option = {"chunk": "p"}
        if mode == "CompressedPackedForward":
            stream, option = gzip.compress(stream), {"chunk": "p", "compressed": "gzip"}
        data = forward.packb(["t", stream, option])
    frames, invalid = decode_all(data, Limits(max_depth=64))
    kept = [r for f in frames for _, r in f.entries]
    assert kept == [r for _, r in shallow]
    assert invalid == {("t", "the record is nested deeper than max_depth (64)"): 1}
    assert all(f.chunk is not None for f in frames)


def test_nesting_past_what_msgpack_can_hold_closes_the_stream():
    deep = b"\x93\xa1t\x01" + b"\x81\xa1n" * 2000 + b"\x80"
    with pytest.raises(ForwardError):
        decode_all(deep)


def test_frame_over_the_size_limit_is_refused_while_buffering():
    decoder = FrameDecoder(Limits(max_frame_bytes=64 * 1024))
    big = forward.encode_forward("t", [(T1, {"blob": "x" * 100_000})])
    fed = 0
    with pytest.raises(ForwardError, match="max_frame_bytes"):
        for start in range(0, len(big), 8192):
            decoder.feed(big[start : start + 8192])
            fed += 8192
            while decoder.busy:
                decoder.step()
    assert fed <= 64 * 1024 + 2 * 8192  # refused while the frame was arriving


def test_gzip_bomb_is_refused_by_size_and_by_ratio():
    stream, _ = forward.pack_entries([(T1, {"blob": "a" * 2_000_000})])
    data = forward.packb(["t", gzip.compress(stream), {"compressed": "gzip"}])
    with pytest.raises(ForwardError, match="inflates past 1000000"):
        decode_all(data, Limits(max_decompressed_bytes=1_000_000))
    with pytest.raises(ForwardError, match="inflates past"):
        decode_all(data, Limits(max_compression_ratio=50))
    (frame,), _ = decode_all(data, Limits(max_compression_ratio=5000))
    assert frame.entries[0][1]["blob"] == "a" * 2_000_000


def test_a_large_gzip_bomb_is_refused_within_its_first_mebibytes():
    # 300 MiB of one entry again and again, which gzip makes about 300 KiB:
    # refused once the inflated bytes outgrow 100 times the compressed bytes
    # read so far.
    packer = zlib.compressobj(9, wbits=31)
    entries = forward.packb([T1, {"m": "x" * 1000}]) * 1000  # a MiB
    payload = b"".join(packer.compress(entries) for _ in range(300)) + packer.flush()
    assert len(payload) < 2 * 1024 * 1024
    decoder = FrameDecoder(Limits())
    decoder.feed(forward.packb(["t", payload, {"compressed": "gzip", "chunk": "b"}]))
    steps = 0
    with pytest.raises(ForwardError, match="max_compression_ratio"):
        while decoder.busy:
            decoder.step()
            steps += 1
    assert steps <= 40  # each step inflates at most 64 KiB: stopped within 2.5 MiB


def test_a_frame_of_little_but_invalid_events_is_refused():
    for data in (
        forward.packb(["t", bytes(20_000), {"chunk": "z"}]),
        forward.packb(["t", [0] * 20_000, {"chunk": "z"}]),
    ):
        with pytest.raises(ForwardError, match="more than 10000 invalid events in one frame"):
            decode_all(data)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("array", b"\x93\xa1t\x01\x81\xa1k\xdd\xff\xff\xff\xff"),
        ("map", b"\x93\xa1t\x01\xdf\xff\xff\xff\xff"),
        ("entries", b"\x92\xa1t\xdd\x7f\xff\xff\xff"),
        ("ext", b"\x93\xa1t\x01\x81\xa1k\xc9\xff\xff\xff\xff\x00"),
    ],
)
def test_huge_declared_counts_are_refused_before_the_items(name, data):
    decoder = FrameDecoder(Limits())
    decoder.feed(data + b"\x00" * 1024)
    with pytest.raises(ForwardError, match=r"exceeds max_|declares"):
        while decoder.busy:
            decoder.step()
    assert decoder.memory() < 1024 * 1024, name


@pytest.mark.parametrize(("name", "head"), [("str", b"\xdb"), ("bin", b"\xc6")])
def test_huge_declared_sizes_cost_no_more_than_the_bytes_sent(name, head):
    # A string's bytes are not allocated before they arrive: a declared 4 GiB
    # costs what the peer sends, and the frame limit ends it.
    limits = Limits(max_frame_bytes=256 * 1024)
    decoder = FrameDecoder(limits)
    decoder.feed(b"\x93\xa1t\x01\x81\xa1k" + head + b"\xff\xff\xff\xff")
    sent = 0
    with pytest.raises(ForwardError, match="max_frame_bytes"):
        while sent < 10 * limits.max_frame_bytes:
            decoder.feed(b"x" * 8192)
            sent += 8192
            while decoder.busy:
                decoder.step()
            assert decoder.memory() <= sent + 16 * 1024
    assert sent <= limits.max_frame_bytes + 3 * 64 * 1024, name


# ------------------------------------------------------------------ parsers


def test_apache2_matches_fluentds_documented_example():
    line = '192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0"'
    stamp, record = parse_apache2(line)
    assert stamp == EventTime(1362020400)
    assert record == {
        "user": None,
        "method": "GET",
        "code": 200,
        "size": 777,
        "host": "192.168.0.1",
        "path": "/",
        "referer": None,
        "agent": "Opera/12.0",
    }


def test_apache2_common_format_dash_size_and_escaped_quotes():
    stamp, record = parse_apache2(
        '::1 - bob [01/Jan/2026:00:00:01 -0130] "POST /a\\"b c HTTP/1.0" 304 -'
    )
    assert stamp == EventTime(1767225601 + 5400)
    assert record["user"] == "bob"
    assert record["path"] == '/a\\"b c'
    assert (record["code"], record["size"], record["referer"], record["agent"]) == (
        304,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "line",
    [
        "not an access log line",
        '1.2.3.4 - - [31/Feb/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1',
        '1.2.3.4 - - [yesterday] "GET / HTTP/1.1" 200 1',
        "",
    ],
)
def test_apache2_rejects_what_does_not_match(line):
    assert parse_apache2(line) is None


def test_apache_error_24_format(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    line = (
        "[Sun Nov 22 16:05:09.123456 2026] [mpm_event:notice] [pid 12:tid 34] "
        "[client 10.0.0.1:5555] AH00489: Apache/2.4 configured"
    )
    stamp, record = parse_apache_error(line)
    assert stamp == EventTime(1795363509, 123456000)
    assert record == {
        "level": "mpm_event:notice",
        "pid": "12:tid 34",
        "client": "10.0.0.1:5555",
        "message": "AH00489: Apache/2.4 configured",
    }
    _, short = parse_apache_error("[Wed Oct 11 14:32:52 2000] [error] no client here")
    assert short == {"level": "error", "message": "no client here"}


def test_json_and_none():
    stamp, record = parse_json(json.dumps({"time": 1700000000.5, "msg": "hi"}))
    assert (stamp, record) == (EventTime(1700000000, 500000000), {"msg": "hi"})
    assert parse_json("[1, 2]") is None
    assert parse_json("{broken") is None
    _, record = parse_none("anything at all")
    assert record == {"message": "anything at all"}

"""Fluentd Forward Protocol v1: the frames both ends of shipyard's log shipping speak.

Frames (https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1):

    Message                  [tag, time, record, option?]
    Forward                  [tag, [[time, record], ...], option?]
    PackedForward            [tag, bin(msgpack entries back to back), option?]
    CompressedPackedForward  PackedForward with option.compressed == "gzip"

`time` is an integer, a float, or an EventTime (msgpack ext type 0: big-endian
uint32 seconds then uint32 nanoseconds). A frame whose option carries `chunk`
is answered with `{"ack": chunk}` once the receiver has stored it. The
heartbeat is a UDP datagram to the same port, answered with the same bytes.

This module writes frames and defines their limits; decoder.py reads them,
within those limits, a bounded step at a time. handshake.py has the
`<security>` handshake that may come before the first frame.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

EVENT_TIME_EXT = 0
_EVENT_TIME = struct.Struct(">II")


class ForwardError(ValueError):
    """A frame that is not valid Forward Protocol v1 (or exceeds a limit)."""


@dataclass(frozen=True, order=True)
class EventTime:
    """Fluentd's nanosecond event time."""

    seconds: int
    nanoseconds: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.seconds < 2**32 and 0 <= self.nanoseconds < 10**9):
            raise ForwardError(f"event time out of range: {self.seconds}.{self.nanoseconds}")

    @classmethod
    def from_float(cls, value: float) -> EventTime:
        seconds = int(value)
        return cls(seconds, min(round((value - seconds) * 1e9), 999_999_999))

    @classmethod
    def from_bytes(cls, data: bytes) -> EventTime:
        if len(data) != _EVENT_TIME.size:
            raise ForwardError(f"EventTime ext must be 8 bytes, got {len(data)}")
        return cls(*_EVENT_TIME.unpack(data))

    def to_bytes(self) -> bytes:
        return _EVENT_TIME.pack(self.seconds, self.nanoseconds)

    def __float__(self) -> float:
        return self.seconds + self.nanoseconds / 1e9


@dataclass(frozen=True)
class Limits:
    """Bounds that turn a hostile or broken peer into a clean refusal (decoder.py).

    The defaults hold fluentd's and fluent-bit's usual chunks (8 MB, 2 MB)
    with room to spare, while one frame's decoding stays within tens of MB.
    """

    max_frame_bytes: int = 16 * 1024 * 1024  # one frame on the wire
    max_decompressed_bytes: int = 64 * 1024 * 1024  # one gzip payload, inflated
    max_compression_ratio: float = 100.0  # inflated / compressed, past decoder.RATIO_GRACE
    max_string_bytes: int = 4 * 1024 * 1024  # one str or ext value (and bin inside a payload)
    # One array in a record. msgpack allocates a declared array before its
    # items arrive, and arrays nest 1,024 deep: that product (8 MB at most
    # here) is what this bounds, per connection.
    max_array_length: int = 1024
    max_map_length: int = 10_000  # one map: a record's keys
    max_depth: int = 64  # maps and arrays in a record, the record itself counting 1


@dataclass
class Frame:
    """One decoded frame: its tag, its entries (time, record) and its option."""

    tag: str
    entries: list[tuple[EventTime, dict[str, Any]]]
    option: dict[str, Any] = field(default_factory=dict)
    cost: int = 0  # bytes it holds, as the decoder estimated when it completed it

    @property
    def chunk(self) -> Any:  # noqa: ANN401 - a chunk id is whatever the client sent
        return self.option.get("chunk")


# Records of one second carry the same 8 bytes; EventTime is immutable, so one
# instance serves them all and the dataclass and its checks are built once.
_event_times: dict[bytes, EventTime] = {}
MAX_CACHED_EVENT_TIMES = 4096


def event_time_hook(code: int, data: bytes) -> Any:  # noqa: ANN401 - msgpack hook contract
    """msgpack's ext_hook: EventTime for ext type 0, the ExtType itself for anything else.

    An ext 0 that is no valid EventTime stays an ExtType too: raising here
    would leave msgpack's stream state undefined, and the decoder drops that
    event as invalid instead.
    """
    if code == EVENT_TIME_EXT:
        found = _event_times.get(data)
        if found is None:
            try:
                found = EventTime.from_bytes(data)
            except ForwardError:
                return msgpack.ExtType(code, data)
            if len(_event_times) >= MAX_CACHED_EVENT_TIMES:
                _event_times.clear()  # nanosecond times rarely repeat: stay bounded
            _event_times[data] = found
        return found
    return msgpack.ExtType(code, data)


def _default(obj: object) -> Any:  # noqa: ANN401 - msgpack hook contract
    if isinstance(obj, EventTime):
        return msgpack.ExtType(EVENT_TIME_EXT, obj.to_bytes())
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def new_unpacker(max_buffer_size: int = 1024 * 1024) -> msgpack.Unpacker:
    """A streaming unpacker for what a client reads back: acks and handshake messages."""
    return msgpack.Unpacker(
        raw=False,
        ext_hook=event_time_hook,
        strict_map_key=False,
        max_buffer_size=max_buffer_size,
    )


def packb(obj: object) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


# ------------------------------------------------------------------ encoding


def _option(chunk: str | None, extra: dict[str, Any] | None) -> dict[str, Any]:
    option = dict(extra or {})
    if chunk is not None:
        option["chunk"] = chunk
    return option


def encode_message(
    tag: str, time: EventTime, record: dict[str, Any], chunk: str | None = None
) -> bytes:
    option = _option(chunk, None)
    return packb([tag, time, record, option] if option else [tag, time, record])


def encode_forward(
    tag: str, entries: Iterable[tuple[EventTime, dict[str, Any]]], chunk: str | None = None
) -> bytes:
    option = _option(chunk, None)
    frame: list[Any] = [tag, [[t, r] for t, r in entries]]
    return packb([*frame, option] if option else frame)


# fixarray of 2, then fixext 8 of type 0 (EventTime): the head of every packed entry.
_ENTRY_HEAD = b"\x92\xd7" + bytes([EVENT_TIME_EXT])
# Level 1 compresses access logs to about the same size as level 9 at a small
# fraction of the CPU; the agent spends its CPU on parsing instead.
GZIP_LEVEL = 1


class EntryPacker:
    """Packs [EventTime, record] entries without msgpack's per-object `default` hook.

    The hook is a Python call per entry; writing the fixed 10-byte EventTime
    head by hand leaves msgpack only the record, which it packs in C.
    """

    def __init__(self) -> None:
        self._packer = msgpack.Packer(default=_default, use_bin_type=True)
        self._time = _EVENT_TIME.pack

    def pack(self, time: EventTime, record: dict[str, Any]) -> bytes:
        return _ENTRY_HEAD + self._time(time.seconds, time.nanoseconds) + self._packer.pack(record)


def pack_entries(entries: Iterable[tuple[EventTime, dict[str, Any]]]) -> tuple[bytes, int]:
    """The MessagePackEventStream of PackedForward, and how many entries it holds."""
    packer = EntryPacker()
    parts = [packer.pack(t, r) for t, r in entries]
    return b"".join(parts), len(parts)


def encode_packed_stream(
    tag: str, stream: bytes, size: int, chunk: str | None = None, compress: bool = False
) -> bytes:
    """A PackedForward frame around entries already packed back to back."""
    extra: dict[str, Any] = {"size": size}
    if compress:
        # mtime=0 keeps the bytes identical for identical entries, so a resent
        # chunk is byte-for-byte the one first sent.
        stream = gzip.compress(stream, compresslevel=GZIP_LEVEL, mtime=0)
        extra["compressed"] = "gzip"
    return packb([tag, stream, _option(chunk, extra)])


def encode_packed_forward(
    tag: str,
    entries: Iterable[tuple[EventTime, dict[str, Any]]],
    chunk: str | None = None,
    compress: bool = False,
) -> bytes:
    stream, size = pack_entries(entries)
    return encode_packed_stream(tag, stream, size, chunk, compress)


def encode_ack(chunk: Any) -> bytes:  # noqa: ANN401 - echoes the client's chunk id
    return packb({"ack": chunk})


def decode_ack(obj: object) -> Any:  # noqa: ANN401 - echoes the client's chunk id
    if not isinstance(obj, dict) or "ack" not in obj:
        raise ForwardError(f"not an ack: {obj!r:.200}")
    return obj["ack"]

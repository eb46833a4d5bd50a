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

Every decoder here is bounded: a frame, a string, an array or the gzip output
larger than the configured limits raises ForwardError instead of growing the
process without end.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

EVENT_TIME_EXT = 0
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 1_000_000
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
    """Bounds that turn a hostile or broken peer into a clean error."""

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES


@dataclass
class Frame:
    """One decoded frame: its tag, its entries (time, record) and its option."""

    tag: str
    entries: list[tuple[EventTime, dict[str, Any]]]
    option: dict[str, Any] = field(default_factory=dict)

    @property
    def chunk(self) -> Any:  # noqa: ANN401 - a chunk id is whatever the client sent
        return self.option.get("chunk")


# Records of one second carry the same 8 bytes; EventTime is immutable, so one
# instance serves them all and the dataclass and its checks are built once.
_event_times: dict[bytes, EventTime] = {}
MAX_CACHED_EVENT_TIMES = 4096


def _ext_hook(code: int, data: bytes) -> Any:  # noqa: ANN401 - msgpack hook contract
    if code == EVENT_TIME_EXT:
        found = _event_times.get(data)
        if found is None:
            found = EventTime.from_bytes(data)
            if len(_event_times) >= MAX_CACHED_EVENT_TIMES:
                _event_times.clear()  # nanosecond times rarely repeat: stay bounded
            _event_times[data] = found
        return found
    return msgpack.ExtType(code, data)


def _default(obj: object) -> Any:  # noqa: ANN401 - msgpack hook contract
    if isinstance(obj, EventTime):
        return msgpack.ExtType(EVENT_TIME_EXT, obj.to_bytes())
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def new_unpacker(limits: Limits = Limits()) -> msgpack.Unpacker:
    """A streaming unpacker for a connection; strings come back as str.

    Invalid UTF-8 is kept as surrogate escapes: a PackedForward payload sent as
    a msgpack str (older clients do that) must survive as bytes.
    """
    return msgpack.Unpacker(
        raw=False,
        unicode_errors="surrogateescape",
        ext_hook=_ext_hook,
        strict_map_key=False,
        max_buffer_size=limits.max_frame_bytes,
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


# ------------------------------------------------------------------ decoding


def _event_time(value: object) -> EventTime:
    if isinstance(value, EventTime):
        return value
    if isinstance(value, bool):
        raise ForwardError("event time must be a number or EventTime, got bool")
    if isinstance(value, int):
        return EventTime(value, 0)
    if isinstance(value, float):
        return EventTime.from_float(value)
    raise ForwardError(f"event time must be a number or EventTime, got {type(value).__name__}")


def _record(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ForwardError(f"record must be a map, got {type(value).__name__}")
    return value


def _entry(value: object) -> tuple[EventTime, dict[str, Any]]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ForwardError("entry must be [time, record]")
    return _event_time(value[0]), _record(value[1])


def gunzip_members(data: bytes, max_bytes: int) -> bytes:
    """Decompress one or more concatenated gzip members, refusing to exceed max_bytes."""
    out: list[bytes] = []
    total = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            chunk = inflater.decompress(data, max_bytes - total + 1)
        except zlib.error as exc:
            raise ForwardError(f"bad gzip payload: {exc}") from exc
        total += len(chunk)
        if total > max_bytes or inflater.unconsumed_tail:
            raise ForwardError(f"gzip payload inflates past {max_bytes} bytes")
        if not inflater.eof:
            raise ForwardError("truncated gzip payload")
        out.append(chunk)
        data = inflater.unused_data
    return b"".join(out)


def _packed_entries(
    payload: object, option: dict[str, Any], limits: Limits
) -> list[tuple[EventTime, dict[str, Any]]]:
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogateescape")
    if not isinstance(payload, bytes):
        raise ForwardError("PackedForward entries must be bin or str")
    compressed = option.get("compressed", "text")
    if compressed == "gzip":
        payload = gunzip_members(payload, limits.max_decompressed_bytes)
    elif compressed != "text":
        raise ForwardError(f"unsupported compression {compressed!r}")
    unpacker = new_unpacker(Limits(max_frame_bytes=max(len(payload), 1)))
    try:
        unpacker.feed(payload)
        entries, consumed = _stream_entries(unpacker, limits.max_entries)
    except ForwardError:
        raise
    except (ValueError, msgpack.UnpackException) as exc:
        raise ForwardError(f"bad PackedForward stream: {exc!r}") from exc
    # Iteration stops silently on a truncated trailing entry; that is corruption.
    if consumed != len(payload):
        raise ForwardError("PackedForward stream ends inside an entry")
    return entries


def _stream_entries(
    unpacker: msgpack.Unpacker, max_entries: int
) -> tuple[list[tuple[EventTime, dict[str, Any]]], int]:
    """The entries of a PackedForward stream and the bytes they took.

    One loop per entry, so the usual [EventTime, map] is checked inline rather
    than through _entry's calls. The offset is taken after each entry: after a
    truncated one, tell() counts the bytes it did read.
    """
    entries: list[tuple[EventTime, dict[str, Any]]] = []
    append = entries.append
    tell = unpacker.tell
    consumed = 0
    for item in unpacker:
        consumed = tell()
        if type(item) is list and len(item) == 2:
            stamp, record = item
            if type(stamp) is not EventTime or type(record) is not dict:
                stamp, record = _entry(item)
        else:
            stamp, record = _entry(item)
        append((stamp, record))
        if len(entries) > max_entries:
            raise ForwardError(f"more than {max_entries} entries in one frame")
    return entries, consumed


def decode_frame(obj: object, limits: Limits = Limits()) -> Frame:
    """Validate one unpacked object as a frame and return its entries."""
    if not isinstance(obj, list | tuple) or not 2 <= len(obj) <= 4:
        raise ForwardError(f"frame must be an array of 2 to 4 items, got {type(obj).__name__}")
    tag = obj[0]
    if not isinstance(tag, str) or not tag:
        raise ForwardError("tag must be a non-empty string")
    second = obj[1]
    if isinstance(second, list | tuple):  # Forward
        option = _frame_option(obj, 2)
        if len(second) > limits.max_entries:
            raise ForwardError(f"more than {limits.max_entries} entries in one frame")
        entries = [_entry(item) for item in second]
    elif isinstance(second, bytes | str) and len(obj) <= 3:  # (Compressed)PackedForward
        option = _frame_option(obj, 2)
        entries = _packed_entries(second, option, limits)
    else:  # Message
        if len(obj) < 3:
            raise ForwardError("Message frame needs [tag, time, record]")
        option = _frame_option(obj, 3)
        entries = [(_event_time(second), _record(obj[2]))]
    return Frame(tag, entries, option)


def _frame_option(obj: list[Any] | tuple[Any, ...], index: int) -> dict[str, Any]:
    if len(obj) > index + 1:
        raise ForwardError("frame has items after its option")
    if len(obj) <= index or obj[index] is None:
        return {}
    option = obj[index]
    if not isinstance(option, dict):
        raise ForwardError("option must be a map")
    return option


def iter_frames(
    unpacker: msgpack.Unpacker,
    limits: Limits = Limits(),
) -> Iterator[Frame]:
    """Decode every complete frame buffered in unpacker; errors become ForwardError."""
    while True:
        try:
            obj = next(unpacker)
        except StopIteration:
            return
        except (ValueError, msgpack.UnpackException) as exc:
            raise ForwardError(f"undecodable msgpack: {exc!r}") from exc
        yield decode_frame(obj, limits)


def feed(unpacker: msgpack.Unpacker, data: bytes) -> None:
    """Buffer bytes from the socket; a frame over the size limit raises ForwardError."""
    try:
        unpacker.feed(data)
    except msgpack.BufferFull as exc:
        raise ForwardError("frame exceeds max_frame_bytes") from exc

"""Bounded, incremental decoding of one connection's Forward Protocol stream.

A FrameDecoder turns the bytes a peer sends into frames (forward.Frame), a
bounded amount of work at a time: each step() feeds msgpack at most
STEP_BYTES of input (or inflates at most STEP_BYTES of a gzip payload), so a
huge or expensive frame is decoded over many steps and the collector's event
loop serves other connections in between.

Every dimension of the input is bounded by forward.Limits:

- bytes: a frame on the wire (max_frame_bytes), a gzip payload once inflated
  (max_decompressed_bytes, and max_compression_ratio times its compressed size
  once past RATIO_GRACE bytes), one string or ext value (max_string_bytes);
- objects: one array (max_array_length) or map (max_map_length), and the
  decoded objects of the frame in progress, which memory() reports so the
  collector can hold all connections within one budget;
- nesting: a record deeper than max_depth.

Two kinds of refusal, as fluentd's in_forward: a stream that cannot be
decoded, or breaks a limit, raises ForwardError and the connection is closed
unacknowledged; a well-formed event that is not valid (a time that is no
time, a record that is no map or is nested too deep) is dropped with a
reason in `invalid`, and the rest of its frame is kept and acknowledged, since
resending it could never succeed (fluentd's skip_invalid_event).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import msgpack

from .forward import EventTime, ForwardError, Frame, Limits, event_time_hook

# Input handed to msgpack (or inflated) per step: a few milliseconds of work
# even for the costliest structure, so other connections wait at most that.
STEP_BYTES = 64 * 1024
# Memory one decoded object may take in CPython, at most about (an empty dict
# is 64 bytes, a list slot 8 more): memory() multiplies the objects counted.
OBJECT_COST = 72
# Small payloads may compress well past the ratio without being a bomb.
RATIO_GRACE = 1024 * 1024
MAX_TAG_BYTES = 1024

_HEADER, _TAG, _SECOND, _RECORD, _OPTION = range(5)
_DEFAULT_LIMITS = Limits()
Entry = tuple[EventTime, dict[Any, Any]]
_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


class _Count:
    """Objects msgpack built, counted by its container hooks as each container completes.

    An array of n items adds n + 1, a map of n pairs 2n + 1: every scalar is
    an item of some container, so this counts all objects of completed
    containers, and a flat [time, {n pairs}] entry adds exactly 2n + 4.
    """

    __slots__ = ("objects",)

    def __init__(self) -> None:
        self.objects = 0

    def array(self, value: list[Any]) -> list[Any]:
        self.objects += len(value) + 1
        return value

    def map(self, value: dict[Any, Any]) -> dict[Any, Any]:
        self.objects += 2 * len(value) + 1
        return value


def _unpacker(limits: Limits, count: _Count, max_bin: int, max_buffer: int) -> msgpack.Unpacker:
    """Invalid UTF-8 is kept as surrogate escapes: a payload sent as str must survive as bytes."""
    return msgpack.Unpacker(
        raw=False,
        unicode_errors="surrogateescape",
        ext_hook=event_time_hook,
        strict_map_key=False,
        list_hook=count.array,
        object_hook=count.map,
        max_buffer_size=max_buffer,
        max_str_len=limits.max_string_bytes,
        max_bin_len=max_bin,
        max_ext_len=limits.max_string_bytes,
        max_array_len=limits.max_array_length,
        max_map_len=limits.max_map_length,
    )


def too_deep(record: dict[Any, Any], max_depth: int) -> bool:
    """The record (depth 1) holds a map or array deeper than max_depth; no recursion."""
    stack: list[tuple[Any, int]] = [(record, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            return True
        items = value.values() if type(value) is dict else value
        stack.extend((item, depth + 1) for item in items if type(item) in (dict, list))
    return False


def event_time(value: object) -> EventTime | None:
    if type(value) is EventTime:
        return value  # type: ignore[return-value]
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):
            return EventTime(value, 0)
        if isinstance(value, float):
            return EventTime.from_float(value)
    except (ForwardError, ValueError, OverflowError):
        return None
    return None


def check_entry(
    item: object, flat: bool, max_depth: int
) -> tuple[tuple[EventTime, dict[Any, Any]] | None, str]:
    """An entry as (time, record), or None and why it is not a valid event."""
    if type(item) is not list or len(item) != 2:  # type: ignore[arg-type]
        return None, "an entry must be [time, record]"
    stamp = event_time(item[0])  # type: ignore[index]
    if stamp is None:
        kind = type(item[0]).__name__  # type: ignore[index]
        return None, f"the time is a {kind}, not a number or an EventTime"
    record = item[1]  # type: ignore[index]
    if type(record) is not dict:
        return None, f"the record must be a map, got {type(record).__name__}"
    if not flat and too_deep(record, max_depth):
        return None, f"the record is nested deeper than max_depth ({max_depth})"
    return (stamp, record), ""


class _Payload:
    """The entries of one (Compressed)PackedForward payload, inflated and unpacked by steps."""

    def __init__(self, payload: bytes, gzip: bool, limits: Limits, count: _Count) -> None:
        self.data = memoryview(payload)
        self.pos = 0  # next byte of data to give the inflater
        self.limits = limits
        self.inflater = zlib.decompressobj(wbits=31) if gzip and payload else None
        self.inflated = 0
        self.max_inflated = min(
            limits.max_decompressed_bytes,
            max(RATIO_GRACE, int(len(payload) * limits.max_compression_ratio)),
        )
        self.count = count
        self.last = count.objects
        self.unpacker = _unpacker(
            limits, count, limits.max_string_bytes, limits.max_string_bytes + 2 * STEP_BYTES
        )
        self.fed = 0
        self.complete = 0  # where the last whole entry ended in the inflated stream
        self.entries: list[tuple[EventTime, dict[Any, Any]]] = []
        self.invalid: list[str] = []
        self.done = False

    def step(self) -> None:
        data = self._inflate() if self.inflater is not None else self._plain()
        if data:
            try:
                self.unpacker.feed(data)
            except msgpack.BufferFull as exc:
                raise ForwardError(
                    f"an entry exceeds max_string_bytes ({self.limits.max_string_bytes})"
                ) from exc
            self.fed += len(data)
        self._unpack()
        # msgpack takes the bytes of a partial entry in: only whole ones move `complete`.
        if self.done and self.complete != self.fed:
            raise ForwardError("PackedForward stream ends inside an entry")

    def _plain(self) -> bytes:
        chunk = self.data[self.pos : self.pos + STEP_BYTES]
        self.pos += len(chunk)
        self.done = self.pos >= len(self.data)
        return bytes(chunk)

    def _inflate(self) -> bytes:
        assert self.inflater is not None
        out: list[bytes] = []
        room = STEP_BYTES
        try:
            while room > 0:
                if self.inflater.unconsumed_tail:
                    given = self.inflater.unconsumed_tail
                elif self.pos < len(self.data):
                    given = self.data[self.pos : self.pos + STEP_BYTES]
                    self.pos += len(given)
                else:
                    given = b""  # output zlib may still hold for input it has taken
                piece = self.inflater.decompress(given, room)
                out.append(piece)
                room -= len(piece)
                if self.inflater.eof:
                    # Several members back to back: the next starts where this one ended.
                    self.pos -= len(self.inflater.unused_data)
                    if self.pos >= len(self.data):
                        self.done = True
                        break
                    self.inflater = zlib.decompressobj(wbits=31)
                elif not given and not piece:
                    raise ForwardError("truncated gzip payload")
        except zlib.error as exc:
            raise ForwardError(f"bad gzip payload: {exc}") from exc
        data = b"".join(out)
        self.inflated += len(data)
        if self.inflated > self.max_inflated:
            raise ForwardError(
                f"a gzip payload of {len(self.data)} bytes inflates past {self.max_inflated} "
                "bytes (max_decompressed_bytes, max_compression_ratio)"
            )
        return data

    def _unpack(self) -> None:
        """Each entry checked inline for the usual [EventTime, flat map]; others by check_entry."""
        count = self.count
        depth = self.limits.max_depth
        append = self.entries.append
        tell = self.unpacker.tell
        try:
            for item in self.unpacker:
                self.complete = tell()
                objects = count.objects
                delta, self.last = objects - self.last, objects
                if type(item) is list and len(item) == 2:
                    stamp, record = item
                    if (
                        type(stamp) is EventTime
                        and type(record) is dict
                        and (delta == 2 * len(record) + 4 or not too_deep(record, depth))
                    ):
                        append((stamp, record))
                        continue
                entry, why = check_entry(item, False, depth)
                if entry is None:
                    self.invalid.append(why)
                else:
                    append(entry)
        except ForwardError:
            raise
        except _UNPACK_ERRORS as exc:
            raise ForwardError(f"bad PackedForward stream: {exc!r:.200}") from exc

    @property
    def memory(self) -> int:
        return len(self.data) + self.inflated


class FrameDecoder:
    """One connection's frames, decoded a bounded step at a time.

    feed() the bytes read from the socket; call step() while busy; each call
    returns the frames it completed. invalid holds (tag, reason) for events
    dropped since the last step. allow_tag, when given, refuses a frame whose
    tag it rejects as soon as the tag is read.
    """

    def __init__(self, limits: Limits, allow_tag: Callable[[str], bool] | None = None) -> None:
        self.limits = limits
        self.allow_tag = allow_tag
        self.count = _Count()
        self.unpacker = _unpacker(
            limits, self.count, limits.max_frame_bytes, limits.max_frame_bytes + 2 * STEP_BYTES
        )
        self.pending: list[bytes] = []  # read from the socket, not yet fed to msgpack
        self.pending_bytes = 0
        self.fed = 0
        self.hungry = True  # msgpack has nothing left to decode without more input
        self.invalid: list[tuple[str, str]] = []
        self._state = _HEADER
        self._start = 0  # stream offset where the frame in progress began
        self._base = 0  # objects counted before it
        self._size = 0
        self._tag = ""
        self._second: Any = None
        self._record: Any = None
        self._record_base = 0
        self._payload: _Payload | None = None
        self._error: ForwardError | None = None  # raised by the step after the frames before it

    # -- the connection's side

    def feed(self, data: bytes) -> None:
        if data:
            self.pending.append(data)
            self.pending_bytes += len(data)

    @property
    def busy(self) -> bool:
        """step() has work to do (or an error to raise) without more bytes from the peer."""
        return (
            self._error is not None
            or self._payload is not None
            or not self.hungry
            or self.pending_bytes > 0
        )

    @property
    def in_frame(self) -> bool:
        """A frame has begun and not ended: the peer owes the rest of it."""
        return (
            self._state != _HEADER or self._payload is not None or self.fed > self.unpacker.tell()
        )

    def memory(self) -> int:
        """An upper estimate of the bytes this decoder holds for the frame in progress."""
        held = self.pending_bytes + self.fed - self._start
        if self._state != _HEADER or self._payload is not None:
            held += (self.count.objects - self._base) * OBJECT_COST
        if self._payload is not None:
            held += self._payload.memory
        return held

    def step(self) -> list[Frame]:
        """Decode a bounded amount; the frames completed before an error come out first."""
        if self._error is not None:
            raise self._error
        if self._payload is not None:
            frame = self._payload_step()
            return [frame] if frame is not None else []
        if self.hungry:
            if not self.pending:
                return []
            self._feed_some()
        done: list[Frame] = []
        try:
            while not self.hungry:
                frame = self._advance()
                if frame is not None:
                    done.append(frame)
                if self._payload is not None:
                    break  # its entries are the next steps' work
        except msgpack.OutOfData:
            self.hungry = True
        except ForwardError as exc:
            self._error = exc
        except _UNPACK_ERRORS as exc:
            self._error = ForwardError(f"undecodable msgpack: {exc!r:.200}")
        limit = self.limits.max_frame_bytes
        if self._error is None and self.in_frame and self.fed - self._start > limit:
            self._error = ForwardError(f"a frame exceeds max_frame_bytes ({limit})")
        if self._error is not None and not done:
            raise self._error
        return done

    def _feed_some(self) -> None:
        data = self.pending[0]
        if len(data) > STEP_BYTES:
            self.pending[0] = data[STEP_BYTES:]
            data = data[:STEP_BYTES]
        else:
            self.pending.pop(0)
        self.pending_bytes -= len(data)
        try:
            self.unpacker.feed(data)
        except msgpack.BufferFull as exc:
            raise ForwardError(
                f"a frame exceeds max_frame_bytes ({self.limits.max_frame_bytes})"
            ) from exc
        self.fed += len(data)
        self.hungry = False

    # -- the frame, one element at a time

    def _advance(self) -> Frame | None:
        """Decode the next element of the frame; OutOfData leaves the state for a retry."""
        u = self.unpacker
        if self._state == _HEADER:
            start = u.tell()
            if start == self.fed:
                raise msgpack.OutOfData
            try:
                size = u.read_array_header()
            except ValueError as exc:
                raise ForwardError("a frame must be an array") from exc
            if not 2 <= size <= 4:
                raise ForwardError(f"a frame must be an array of 2 to 4 items, not {size}")
            self._start, self._base, self._size = start, self.count.objects, size
            self._state = _TAG
        if self._state == _TAG:
            tag = u.unpack()
            if type(tag) is not str or not tag:
                raise ForwardError("the tag must be a non-empty string")
            if len(tag) > MAX_TAG_BYTES:
                raise ForwardError(f"a tag longer than {MAX_TAG_BYTES} bytes")
            if self.allow_tag is not None and not self.allow_tag(tag):
                raise ForwardError(f"the tag {tag!r} is not allowed on this listener")
            self._tag = tag
            self._record_base = self.count.objects
            self._state = _SECOND
        if self._state == _SECOND:
            self._second = u.unpack()
            # A list is Forward; bin or str PackedForward, unless a fourth item
            # makes it a Message (whose time is then no time).
            packed = isinstance(self._second, bytes | str) and self._size <= 3
            if isinstance(self._second, list) or packed:
                if self._size > 3:
                    raise ForwardError("a frame has items after its option")
                return self._option_or_finish(2)
            if self._size < 3:
                raise ForwardError("a Message frame needs [tag, time, record]")
            self._record_base = self.count.objects
            self._state = _RECORD
        if self._state == _RECORD:
            self._record = u.unpack()
            return self._option_or_finish(3)
        assert self._state == _OPTION
        option = u.unpack()
        if option is None:
            option = {}
        if type(option) is not dict:
            raise ForwardError("the option must be a map")
        return self._finish(option)

    def _option_or_finish(self, index: int) -> Frame | None:
        if self._size > index:
            self._state = _OPTION
            return self._advance()
        return self._finish({})

    def _finish(self, option: dict[Any, Any]) -> Frame | None:
        self._state = _HEADER
        second, self._second = self._second, None
        if isinstance(second, bytes | str) and self._size <= 3:
            self._start_payload(second, option)
            return None
        depth = self.limits.max_depth
        if isinstance(second, list):  # Forward
            flat = self.count.objects - self._record_base == len(second) + 1 + sum(
                2 * len(e[1]) + 4 if type(e) is list and len(e) == 2 and type(e[1]) is dict else 0
                for e in second
            )
            entries = []
            for item in second:
                entry, why = check_entry(item, flat, depth)
                if entry is None:
                    self.invalid.append((self._tag, why))
                else:
                    entries.append(entry)
            return self._frame(entries, option)
        record, self._record = self._record, None  # Message
        counted = self.count.objects - self._record_base
        flat = type(record) is dict and counted == 2 * len(record) + 1
        entry, why = check_entry([second, record], flat, depth)
        if entry is None:
            self.invalid.append((self._tag, why))
        return self._frame([entry] if entry is not None else [], option)

    def _start_payload(self, payload: bytes | str, option: dict[Any, Any]) -> None:
        if isinstance(payload, str):
            payload = payload.encode("utf-8", "surrogateescape")
        compressed = option.get("compressed", "text")
        if compressed not in ("gzip", "text"):
            raise ForwardError(f"unsupported compression {compressed!r:.40}")
        self._payload = _Payload(payload, compressed == "gzip", self.limits, self.count)
        self._option = option

    def _payload_step(self) -> Frame | None:
        payload = self._payload
        assert payload is not None
        payload.step()
        self.invalid.extend((self._tag, why) for why in payload.invalid)
        payload.invalid.clear()
        if not payload.done:
            return None
        self._payload = None
        return self._frame(payload.entries, self._option)

    def _frame(self, entries: list[Entry], option: dict[Any, Any]) -> Frame:
        frame = Frame(self._tag, entries, option, cost=self.memory())
        self._start = self.unpacker.tell()
        self._base = self.count.objects
        return frame


def decode_all(
    data: bytes, limits: Limits = _DEFAULT_LIMITS
) -> tuple[list[Frame], list[tuple[str, str]]]:
    """Every frame in data, with the events dropped as invalid: for tests and tools."""
    decoder = FrameDecoder(limits)
    decoder.feed(data)
    frames: list[Frame] = []
    while decoder.busy:
        frames.extend(decoder.step())
    if decoder.in_frame:
        raise ForwardError("the data ends inside a frame")
    return frames, decoder.invalid

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
reason counted in `invalid`, and the rest of its frame is kept and acknowledged, since
resending it could never succeed (fluentd's skip_invalid_event).
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack

from .forward import EventTime, ForwardError, Frame, Limits, event_time_hook

# Input handed to msgpack (or inflated) per step: a few milliseconds of work
# even for the costliest structure, so other connections wait at most that.
STEP_BYTES = 64 * 1024
# And the time a step may spend checking the entries it unpacked.
STEP_SECONDS = 0.005
# Memory one decoded object may take in CPython, at most about (an empty dict
# is 64 bytes, a list slot 8 more): memory() multiplies the objects counted.
OBJECT_COST = 72
# Small payloads may compress well past the ratio without being a bomb.
RATIO_GRACE = 1024 * 1024
# Invalid events are dropped one by one, but a frame of little else is no
# client's mistake: past this many, the frame is refused whole.
MAX_INVALID_EVENTS = 10_000
MAX_TAG_BYTES = 1024

_HEADER, _TAG, _SECOND, _ENTRIES, _RECORD, _OPTION = range(6)
_FORWARD = object()  # the second item of a Forward frame: its entries are in _checker


class _PausedError(Exception):
    """The step's time is up in the middle of a Forward frame's entries."""


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


def _headers_are_peeked() -> bool:
    """msgpack's C unpacker leaves a header it refuses unread, which _SECOND relies on."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(b"\x01")
    with contextlib.suppress(ValueError):
        unpacker.read_array_header()
    try:
        return unpacker.unpack() == 1
    except (ValueError, msgpack.UnpackException):
        return False


if not _headers_are_peeked():  # pragma: no cover - the pure-Python fallback of msgpack
    raise ImportError("shipyard_logs.decoder needs msgpack's C extension (python3-msgpack)")


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


class _DepthWalk:
    """Whether a record (depth 1) holds a map or array deeper than max_depth, a bit at a time.

    No recursion, and resumable: a record of millions of objects is walked
    over several steps, like its decoding.
    """

    __slots__ = ("max_depth", "stack")

    def __init__(self, record: dict[Any, Any], max_depth: int) -> None:
        self.stack: list[tuple[Any, int]] = [(record, 1)]
        self.max_depth = max_depth

    def run(self, until: float) -> bool | None:
        """True: too deep; False: not; None: `until` came first, run again."""
        stack, max_depth = self.stack, self.max_depth
        visited = 0
        while stack:
            value, depth = stack.pop()
            if depth > max_depth:
                return True
            for item in value.values() if type(value) is dict else value:
                if type(item) is dict or type(item) is list:
                    stack.append((item, depth + 1))
            visited += 1
            if not visited & 255 and time.perf_counter() > until:
                return None
        return False


def too_deep(record: dict[Any, Any], max_depth: int) -> bool:
    return bool(_DepthWalk(record, max_depth).run(float("inf")))


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


def entry_parts(item: object) -> tuple[EventTime, dict[Any, Any]] | str:
    """An entry's (time, record), or why it is not a valid event (its depth aside)."""
    if type(item) is not list or len(item) != 2:  # type: ignore[arg-type]
        return "an entry must be [time, record]"
    stamp = event_time(item[0])  # type: ignore[index]
    if stamp is None:
        kind = type(item[0]).__name__  # type: ignore[index]
        return f"the time is a {kind}, not a number or an EventTime"
    record = item[1]  # type: ignore[index]
    if type(record) is not dict:
        return f"the record must be a map, got {type(record).__name__}"
    return stamp, record


class _Checker:
    """The entries of one frame, checked one by one within each step's time.

    `take` an entry; when a deep walk runs out of time it is kept, and
    `resume` goes on with it in the next step.
    """

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.entries: list[Entry] = []
        self.invalid: Counter[str] = Counter()
        self.dropped = 0
        self._walk: tuple[Entry, _DepthWalk] | None = None

    def take(self, item: object, flat: bool, until: float) -> bool:
        """Check item; False when its walk is unfinished (call resume in the next step)."""
        parts = entry_parts(item)
        if isinstance(parts, str):
            self._drop(parts)
            return True
        if flat:
            self.entries.append(parts)
            return True
        self._walk = (parts, _DepthWalk(parts[1], self.max_depth))
        return self.resume(until)

    def resume(self, until: float) -> bool:
        if self._walk is None:
            return True
        entry, walk = self._walk
        deep = walk.run(until)
        if deep is None:
            return False
        self._walk = None
        if deep:
            self._drop(f"the record is nested deeper than max_depth ({self.max_depth})")
        else:
            self.entries.append(entry)
        return True

    def _drop(self, why: str) -> None:
        self.invalid[why] += 1
        self.dropped += 1
        if self.dropped > MAX_INVALID_EVENTS:
            raise ForwardError(
                f"more than {MAX_INVALID_EVENTS} invalid events in one frame ({why})"
            )


class _Listed:
    """Entries already decoded (a Message's one), checked by steps."""

    def __init__(self, items: list[Any], limits: Limits, flat: bool) -> None:
        self.items = items
        self.index = 0
        self.flat = flat
        self.checker = _Checker(limits.max_depth)
        self.finished = not items

    def step(self) -> None:
        until = time.perf_counter() + STEP_SECONDS
        checker, items = self.checker, self.items
        if not checker.resume(until):
            return
        while self.index < len(items):
            item = items[self.index]
            self.index += 1
            if not checker.take(item, self.flat, until):
                return
            if not self.index & 255 and time.perf_counter() > until:
                return
        self.finished = True
        self.items = []

    @property
    def memory(self) -> int:
        return 0  # already counted as the objects of the frame


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
        self.checker = _Checker(limits.max_depth)
        self.entries = self.checker.entries
        self.backlog = False  # entries inflated and not checked yet: no more input until they are
        self.done = False

    @property
    def finished(self) -> bool:
        return self.done and not self.backlog

    def step(self) -> None:
        until = time.perf_counter() + STEP_SECONDS
        if not self.backlog:
            data = self._inflate() if self.inflater is not None else self._plain()
            if data:
                try:
                    self.unpacker.feed(data)
                except msgpack.BufferFull as exc:
                    raise ForwardError(
                        f"an entry exceeds max_string_bytes ({self.limits.max_string_bytes})"
                    ) from exc
                self.fed += len(data)
        self.backlog = not self._unpack(until)
        if self.finished and not self._whole():
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
        limits = self.limits
        if self.inflated > self.max_inflated:
            raise ForwardError(
                f"a gzip payload of {len(self.data)} bytes inflates past {self.max_inflated} "
                "bytes (max_decompressed_bytes, max_compression_ratio)"
            )
        # The ratio so far, not only the whole payload's: a bomb is stopped
        # within its first MiB, however large it would grow.
        taken = self.pos - len(self.inflater.unconsumed_tail)
        if self.inflated > RATIO_GRACE and self.inflated > taken * limits.max_compression_ratio:
            raise ForwardError(
                f"a gzip payload inflates {self.inflated // max(taken, 1)} times, past "
                f"max_compression_ratio ({limits.max_compression_ratio:g})"
            )
        return data

    def _unpack(self, until: float) -> bool:
        """Check what msgpack has whole; False when the time ran out first.

        The usual [EventTime, flat map] is checked inline: a flat entry's
        containers add exactly 2n + 4 to the count (see _Count).
        """
        checker = self.checker
        if not checker.resume(until):
            return False
        count, append = self.count, self.entries.append
        last, taken = self.last, 0
        try:
            for item in self.unpacker:
                objects = count.objects
                delta, last = objects - last, objects
                taken += 1
                if type(item) is list and len(item) == 2:
                    stamp, record = item
                    if (
                        type(stamp) is EventTime
                        and type(record) is dict
                        and delta == 2 * len(record) + 4
                    ):
                        append((stamp, record))
                        if taken & 255 or time.perf_counter() <= until:
                            continue
                        return False
                if not checker.take(item, False, until):
                    return False
                if not taken & 255 and time.perf_counter() > until:
                    return False
        except ForwardError:
            raise
        except _UNPACK_ERRORS as exc:
            raise ForwardError(f"bad PackedForward stream: {exc!r:.200}") from exc
        finally:
            self.last = last
        return True

    def _whole(self) -> bool:
        """msgpack holds no part of an entry: a nil fed now comes back as itself.

        (Its iteration stops silently before an entry it has only part of,
        and tell() counts the bytes of that part as read.)
        """
        self.unpacker.feed(b"\xc0")
        try:
            return self.unpacker.unpack() is None
        except msgpack.OutOfData:
            return False
        except _UNPACK_ERRORS:
            return False

    @property
    def memory(self) -> int:
        return len(self.data) + self.inflated


class FrameDecoder:
    """One connection's frames, decoded a bounded step at a time.

    feed() the bytes read from the socket; call step() while busy; each call
    returns the frames it completed. invalid counts (tag, reason) of events
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
        self.invalid: Counter[tuple[str, str]] = Counter()
        self._state = _HEADER
        self._start = 0  # stream offset where the frame in progress began
        self._base = 0  # objects counted before it
        self._size = 0
        self._tag = ""
        self._second: Any = None
        self._record: Any = None
        self._record_base = 0
        self._left = 0  # Forward entries still to read
        self._last = 0  # objects counted when the last of them was read
        self._checker: _Checker | None = None  # Forward entries read so far
        self._until = 0.0  # when the step in progress should end
        self._work: _Payload | _Listed | None = None  # entries being checked
        self._option: dict[Any, Any] = {}
        self._error: ForwardError | None = None  # raised by the step after the frames before it

    # -- the connection's side

    def close(self) -> None:
        """Let go of every buffer now: a refused connection may linger in a traceback."""
        self.pending.clear()
        self.pending_bytes = 0
        self.unpacker = msgpack.Unpacker()
        self.fed = self._start = 0
        self.hungry = True
        self._state = _HEADER
        self._second = self._record = self._checker = self._work = None

    def feed(self, data: bytes) -> None:
        if data:
            self.pending.append(data)
            self.pending_bytes += len(data)

    @property
    def busy(self) -> bool:
        """step() has work to do (or an error to raise) without more bytes from the peer."""
        return (
            self._error is not None
            or self._work is not None
            or not self.hungry
            or self.pending_bytes > 0
        )

    @property
    def in_frame(self) -> bool:
        """A frame has begun and not ended: the peer owes the rest of it."""
        return self._state != _HEADER or self._work is not None or self.fed > self.unpacker.tell()

    def memory(self) -> int:
        """An upper estimate of the bytes this decoder holds for the frame in progress."""
        held = self.pending_bytes + self.fed - self._start
        if self._state != _HEADER or self._work is not None:
            held += (self.count.objects - self._base) * OBJECT_COST
        if self._work is not None:
            held += self._work.memory
        return held

    def step(self) -> list[Frame]:
        """Decode a bounded amount; the frames completed before an error come out first."""
        if self._error is not None:
            raise self._error
        self._until = time.perf_counter() + STEP_SECONDS
        if self._work is not None:
            frame = self._work_step()
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
                if self._work is not None:
                    break  # its entries are the next steps' work
        except msgpack.OutOfData:
            self.hungry = True
        except _PausedError:
            pass  # not hungry: the next step goes on where this one stopped
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
            # Forward's entries are read one by one from their count: msgpack
            # would allocate a list of the declared length before any entry.
            try:
                entries = u.read_array_header()
            except ValueError:
                entries = None  # not an array
            if entries is not None:
                if self._size > 3:
                    raise ForwardError("a frame has items after its option")
                if entries > self.limits.max_frame_bytes // 3:  # an entry takes 3 bytes or more
                    raise ForwardError(f"a Forward frame declares {entries} entries")
                self._left, self._last = entries, self.count.objects
                self._checker = _Checker(self.limits.max_depth)
                self._second = _FORWARD
                self._state = _ENTRIES
            else:
                self._second = u.unpack()
                # bin or str is PackedForward, unless a fourth item makes it
                # a Message (whose time is then no time).
                if isinstance(self._second, bytes | str) and self._size <= 3:
                    return self._option_or_finish(2)
                if self._size < 3:
                    raise ForwardError("a Message frame needs [tag, time, record]")
                self._record_base = self.count.objects
                self._state = _RECORD
        if self._state == _ENTRIES:
            self._read_entries()
            return self._option_or_finish(2)
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

    def _read_entries(self) -> None:
        """Forward's entries, checked as they come; OutOfData or _PausedError resume here."""
        u, count, checker, until = self.unpacker, self.count, self._checker, self._until
        assert checker is not None
        if not checker.resume(until):
            raise _PausedError
        append = checker.entries.append
        while self._left:
            item = u.unpack()
            self._left -= 1
            objects = count.objects
            delta, self._last = objects - self._last, objects
            if (
                type(item) is list
                and len(item) == 2
                and type(item[0]) is EventTime
                and type(item[1]) is dict
                and delta == 2 * len(item[1]) + 4
            ):
                append((item[0], item[1]))
            elif not checker.take(item, False, until):
                raise _PausedError
            if not self._left & 255 and time.perf_counter() > until:
                raise _PausedError

    def _finish(self, option: dict[Any, Any]) -> Frame | None:
        """The frame's envelope is read: its entries are checked by the next steps."""
        self._state = _HEADER
        second, self._second = self._second, None
        self._option = option
        if second is _FORWARD:
            checker, self._checker = self._checker, None
            assert checker is not None
            self._collect(checker)
            return self._frame(checker.entries, option)
        if isinstance(second, bytes | str) and self._size <= 3:
            if isinstance(second, str):
                second = second.encode("utf-8", "surrogateescape")
            compressed = option.get("compressed", "text")
            if compressed not in ("gzip", "text"):
                raise ForwardError(f"unsupported compression {compressed!r:.40}")
            self._work = _Payload(second, compressed == "gzip", self.limits, self.count)
        else:  # Message: flat when its containers are the record alone
            record, self._record = self._record, None
            counted = self.count.objects - self._record_base
            flat = type(record) is dict and counted == 2 * len(record) + 1
            self._work = _Listed([[second, record]], self.limits, flat)
        return self._work_step()

    def _work_step(self) -> Frame | None:
        work = self._work
        assert work is not None
        work.step()
        checker = work.checker
        self._collect(checker)
        if not work.finished:
            return None
        self._work = None
        return self._frame(checker.entries, self._option)

    def _collect(self, checker: _Checker) -> None:
        for why, count in checker.invalid.items():
            self.invalid[self._tag, why] += count
        checker.invalid.clear()

    def _frame(self, entries: list[Entry], option: dict[Any, Any]) -> Frame:
        frame = Frame(self._tag, entries, option, cost=self.memory())
        self._start = self.unpacker.tell()
        self._base = self.count.objects
        return frame


def decode_all(
    data: bytes, limits: Limits = _DEFAULT_LIMITS
) -> tuple[list[Frame], Counter[tuple[str, str]]]:
    """Every frame in data, with the events dropped as invalid: for tests and tools."""
    decoder = FrameDecoder(limits)
    decoder.feed(data)
    frames: list[Frame] = []
    while decoder.busy:
        frames.extend(decoder.step())
    if decoder.in_frame:
        raise ForwardError("the data ends inside a frame")
    return frames, decoder.invalid

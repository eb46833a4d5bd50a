"""The frame decoder under atheris (libFuzzer), coverage-guided, in one process.

    .venv/bin/python tests/logs/fuzz_decoder.py -runs=100000 [CORPUS_DIR]

Each input is decoded twice, in one read and cut in two where its first byte
says, and the checks are the decoder's promises: frames of the right types or
a ForwardError and nothing else, memory held within a bound of the bytes
given, and the same outcome however the bytes were cut into reads. A broken
promise is an exception, which libFuzzer reports with the input that made it.
test_logs_decoder_fuzz.py runs this with a corpus of valid frames.
"""

from __future__ import annotations

import sys
from typing import Any

import atheris

with atheris.instrument_imports():
    from shipyard_logs.decoder import OBJECT_COST, FrameDecoder
    from shipyard_logs.forward import EventTime, ForwardError, Limits

# Small limits, so that short inputs reach them.
LIMITS = Limits(
    max_frame_bytes=4096,
    max_decompressed_bytes=8192,
    max_compression_ratio=20.0,
    max_string_bytes=512,
    max_array_length=64,
    max_map_length=32,
    max_depth=6,
)


def decode(data: bytes, cut: int) -> tuple[Any, ...]:
    """(frames, dropped events, outcome) of data fed as data[:cut] then data[cut:]."""
    decoder = FrameDecoder(LIMITS)
    frames: list[Any] = []
    given = 0
    try:
        for piece in (data[:cut], data[cut:]):
            decoder.feed(piece)
            given += len(piece)
            while decoder.busy:
                frames.extend(decoder.step())
                if decoder.memory() > (given + 64) * (OBJECT_COST + 64):
                    raise AssertionError(f"holds {decoder.memory()} bytes for {given} given")
        outcome = "partial" if decoder.in_frame else "whole"
    except ForwardError:
        outcome = "refused"
    for frame in frames:
        if not (isinstance(frame.tag, str) and frame.tag and isinstance(frame.option, dict)):
            raise AssertionError(f"a frame of the wrong shape: {frame!r:.200}")
        for stamp, record in frame.entries:
            if type(stamp) is not EventTime or type(record) is not dict:
                raise AssertionError(f"an entry of the wrong types: {stamp!r:.80} {record!r:.80}")
    return [(f.tag, f.entries, f.option) for f in frames], dict(decoder.invalid), outcome


def one_input(data: bytes) -> None:
    # Compared as text: a record may hold a NaN, which is not equal to itself.
    whole = repr(decode(data, len(data)))
    cut = repr(decode(data, data[0] % (len(data) + 1) if data else 0))
    if whole != cut:
        raise AssertionError(f"the outcome depends on the reads: {whole!r:.300} != {cut!r:.300}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()

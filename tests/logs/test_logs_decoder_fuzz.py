"""A fuzz run of the frame decoder: 100,000 inputs through fuzz_decoder.py (atheris).

The corpus it starts from holds valid frames of every mode, so mutations
reach deep into the decoder quickly. SHIPYARD_FUZZ_RUNS changes the count.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

from shipyard_logs import forward
from shipyard_logs.forward import EventTime

RUNS = int(os.environ.get("SHIPYARD_FUZZ_RUNS", "100000"))
FUZZER = Path(__file__).with_name("fuzz_decoder.py")


def seeds() -> list[bytes]:
    t = EventTime(1795435509, 123456789)
    entries = [(t, {"message": "one", "n": 1, "l": [1, {"k": None}]}), (t, {"m": b"\x00"})]
    stream, size = forward.pack_entries(entries)
    return [
        forward.encode_message("app.web", t, {"a": 1}, chunk="c1"),
        forward.encode_forward("app.web", entries, chunk="c2"),
        forward.encode_packed_forward("app.web", entries, chunk="c3"),
        forward.encode_packed_forward("app.web", entries, chunk="c4", compress=True),
        forward.packb(["t", gzip.compress(stream) + gzip.compress(stream), {"compressed": "gzip"}]),
        forward.packb(["t", 1700000000.5, {"f": 1.5}, None]),
        forward.packb(["t", stream.decode("latin-1"), {"size": size}]),
    ]


def test_a_hundred_thousand_inputs_break_no_promise_of_the_decoder(tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n, seed in enumerate(seeds()):
        (corpus / f"seed{n}").write_bytes(seed)
    proc = subprocess.run(
        [
            sys.executable,
            str(FUZZER),
            f"-runs={RUNS}",
            "-seed=1",
            "-max_len=4096",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = proc.stderr[-4000:]
    assert proc.returncode == 0, report
    assert f"Done {RUNS} runs" in proc.stderr, report

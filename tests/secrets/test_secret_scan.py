"""The scanner finds each secret form wherever it is, and never prints one."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid

import pytest
import secret_scan

SECRET = f"scan-unit-{uuid.uuid4().hex}"


def hits_in(data: bytes, scan: secret_scan.Scan | None = None) -> list[secret_scan.Hit]:
    scan = scan or secret_scan.Scan()
    if not scan.needles:
        scan.secret("unit", SECRET)
    scan.add("unit", secret_scan.text("unit", data.decode("utf-8", "replace")))
    return scan.run()


def test_a_secret_is_found_with_where_and_context_but_never_shown() -> None:
    data = f"before {SECRET} middle {SECRET[:10]} after".encode()
    hits = hits_in(data)
    assert [h.where for h in hits] == ["unit, line 1"]
    assert "<unit>" in hits[0].context and SECRET not in hits[0].context
    report = secret_scan.report(hits, {"unit": len(data)})
    assert "1 hit(s) of a secret, in 1 place(s)" in report and SECRET not in report


def test_gzip_members_are_read_decompressed() -> None:
    scan = secret_scan.Scan()
    scan.secret("unit", SECRET)
    hits = list(secret_scan.find(scan.needles, "slice.gz", gzip.compress(SECRET.encode())))
    assert len(hits) == 1


def test_a_neighbouring_secret_in_the_context_is_masked_too() -> None:
    other = f"scan-other-{uuid.uuid4().hex}"
    scan = secret_scan.Scan()
    scan.secret("unit", SECRET)
    scan.secret("other", other)
    hits = list(secret_scan.find(scan.needles, "x", f"{SECRET}:{other}".encode()))
    assert len(hits) == 2
    for hit in hits:
        assert SECRET not in hit.context and other not in hit.context
        assert SECRET[:8] not in hit.context and other[-8:] not in hit.context


def test_derived_forms_are_found() -> None:
    scan = secret_scan.Scan()
    scan.native_hash("unit", SECRET)
    digest = hashlib.sha1(hashlib.sha1(SECRET.encode()).digest()).hexdigest()  # noqa: S324
    assert len(list(secret_scan.find(scan.needles, "x", f"'*{digest.upper()}'".encode()))) == 1
    scan = secret_scan.Scan()
    scan.scram_verifier("unit", "SCRAM-SHA-256$4096:c2FsdA==$U3RvcmVkS2V5:U2VydmVyS2V5")
    assert (
        len(list(secret_scan.find(scan.needles, "x", json.dumps({"k": "U3RvcmVkS2V5"}).encode())))
        == 1
    )


def test_too_short_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        secret_scan.Scan().secret("unit", "short")


def test_a_missing_log_is_an_error_not_a_clean_scan(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        list(secret_scan.files(tmp_path / "absent.log")())

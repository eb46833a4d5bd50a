"""Restore targets: `latest`, or a time with its UTC offset."""

from __future__ import annotations

from datetime import UTC, datetime

LATEST = "latest"


def parse_target(text: str) -> datetime | None:
    """None for latest; otherwise an aware datetime. A time without an offset is refused."""
    text = text.strip()
    if text in ("", LATEST):
        return None
    try:
        moment = datetime.fromisoformat(text.replace(" UTC", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected 'latest' or a time such as '2026-12-01 12:00:00+00', got {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add one, e.g. '+00'")
    return moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")

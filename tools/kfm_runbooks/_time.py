"""UTC time, always: ISO 8601 with a `Z` suffix, millisecond precision."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    """`2026-11-27T08:25:35.123Z`; refuses naive datetimes (their zone is unknowable)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: attach a timezone before formatting")
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(utc_now())


def parse_iso(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(
            f"timestamp without timezone: {text!r} (use UTC, e.g. 2026-01-31T12:00:00Z)"
        )
    return moment.astimezone(dt.UTC)

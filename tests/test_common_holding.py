"""checks.common.holding: one idempotent hold record, placed and lifted."""

from __future__ import annotations

from typing import Any

from kfm_runbooks.checks.common import holding


def test_place_is_idempotent_and_records_who_when_why() -> None:
    holds: dict[str, Any] = {}
    assert holding.place(holds, "out.parquet", "INC-20260101-001", "drift")
    first = dict(holds["out.parquet"])
    assert set(first) == {"by", "at", "reason"} and first["by"] == "INC-20260101-001"
    assert first["at"].endswith("Z")
    assert not holding.place(holds, "out.parquet", "INC-20260101-002", "again")
    assert holds["out.parquet"] == first  # the first hold stands


def test_lift_deletes_or_nulls_and_reports_a_no_op() -> None:
    holds: dict[str, Any] = {"a": holding.record("INC-20260101-001", "r"), "b": None}
    assert holding.lift(holds, "a") and "a" not in holds
    assert not holding.lift(holds, "a")
    assert not holding.lift(holds, "b")  # null is not a hold
    entry: dict[str, Any] = {"hold": holding.record("INC-20260101-001", "r"), "etag": "x"}
    assert holding.lift(entry, "hold", keep_key=True)
    assert entry == {"hold": None, "etag": "x"}  # the fetcher's persisted shape is kept

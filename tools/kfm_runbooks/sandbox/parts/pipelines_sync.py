"""Sandbox part: smart_sync run receipts of two HTTP sources (six hourly conditional fetches).

Seeded fault (faulty variant): the gauges CSV is served by two origins whose ETags differ
(`"g-a"` / `"g-b"`) for the same bytes, so every conditional fetch gets HTTP 200 and the
pipeline re-materializes identical content five times in a row: the sync never settles
(RBK-pipelines-etag-loop). The landcover index settles (HTTP 304) after its first fetch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

ROOT = "pipelines/sync"
START = dt.datetime(2026, 6, 1, 0, 0, tzinfo=dt.UTC)
RUNS = 6
GAUGES = "https://data.kfm.example/hydro/gauges.csv"
LANDCOVER = "https://data.kfm.example/landcover/index.json"


def _digest(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def _http_date(moment: dt.datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _receipt(slug: str, index: int, source: str, fetch: dict[str, Any]) -> dict[str, Any]:
    run_id = f"run:smart-sync:sbx-{slug}-{index}"
    prior = (
        f"run:smart-sync:sbx-{slug}-{index - 1}" if index > 1 else f"run:smart-sync:sbx-{slug}-0"
    )
    materialize = fetch["status"] == 200 and fetch["decision"] == "materialize"
    sync: dict[str, Any] = {
        "transport": "http_conditional",
        "fetch_time": (START + dt.timedelta(hours=index - 1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source_url": source,
        "http_status": fetch["status"],
        "http_validators": {"request": fetch["request"], "response": fetch["response"]},
        "decision": fetch["decision"],
        "reason": fetch["reason"],
        "prior_run_receipt_ref": prior,
        "prior_content_digest": fetch["prior"],
        "validator_drift": False,
    }
    if fetch["status"] == 200:
        sync["content_digest"] = fetch["content"]
    return {
        "run_id": run_id,
        "stage": "smart_sync",
        "inputs": [f"source-descriptor:sbx-{slug}"],
        "outputs": [f"artifact:sbx-{slug}:r{index}"] if materialize else [],
        "code_ref": "git:5d1c3f0e9a7b2c4d6e8f0a1b3c5d7e9f1a2b4c6d",
        "spec_hash": _digest(f"sbx-smart-sync-spec-{slug}"),
        "source_descriptor_refs": [f"source:sbx-{slug}"],
        "validation_refs": [f"validation:sbx-{slug}-{index}"],
        "smart_sync": sync,
        "outcome": "SUCCESS",
    }


def _history(slug: str, source: str, flapping: bool) -> list[dict[str, Any]]:
    """Six fetches: first a real change, then either 304s or a flapping-ETag loop."""
    before, content = _digest(f"{slug}-v0"), _digest(f"{slug}-v1")
    origins = [
        {"etag": f'"{slug[0]}-a"', "last_modified": _http_date(START)},
        {"etag": f'"{slug[0]}-b"', "last_modified": _http_date(START + dt.timedelta(seconds=7))},
    ]
    sent: dict[str, Any] = {
        "etag": f'"{slug[0]}-0"',
        "last_modified": _http_date(START - dt.timedelta(days=1)),
    }
    receipts = []
    for index in range(1, RUNS + 1):
        fetch: dict[str, Any]
        if index == 1:
            fetch = {
                "status": 200,
                "decision": "materialize",
                "reason": "content_changed",
                "prior": before,
            }
            response = origins[0]
        elif flapping:
            fetch = {
                "status": 200,
                "decision": "materialize",
                "reason": "content_changed",
                "prior": content,
            }
            response = origins[(index - 1) % 2]
        else:
            fetch = {"status": 304, "decision": "no_op", "reason": "not_modified", "prior": content}
            response = dict(sent)
        fetch.update(
            request={**sent, "content_length": 4096},
            response={**response, "content_length": 4096},
            content=content,
        )
        receipts.append(_receipt(slug, index, source, fetch))
        sent = {k: v for k, v in response.items() if k != "content_length"}
    return receipts


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    base = folder / ROOT / "receipts"
    base.mkdir(parents=True, exist_ok=True)
    for slug, source, flapping in (("gauges", GAUGES, not clean), ("landcover", LANDCOVER, False)):
        for receipt in _history(slug, source, flapping):
            name = receipt["run_id"].rsplit(":", 1)[-1] + ".json"
            (base / name).write_text(
                json.dumps(receipt, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
    control = {
        "sources": {s: {"change_detection": "etag", "hold": None} for s in (GAUGES, LANDCOVER)}
    }
    (folder / ROOT / "control.json").write_text(
        json.dumps(control, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    section = {
        "receipts": [f"{ROOT}/receipts"],
        "control": f"{ROOT}/control.json",
        "loop_window": 3,
    }
    faults = (
        []
        if clean
        else [
            f"pipelines: {GAUGES} flips ETag every fetch and re-materializes identical content 5 "
            "times (SYNC_NEVER_SETTLES, SYNC_REMATERIALIZED_UNCHANGED) — RBK-pipelines-etag-loop"
        ]
    )
    return {"pipelines_sync": section}, faults

"""Sandbox part: three scheduled watchers (registry, pinned spec files, runtime state).

Seeded fault (faulty variant): the hourly `kfm.watcher.sbx.hydro_gauges` run that started
at 2026-06-01T06:00Z never finished: its lock is held, its heartbeat stopped and the
gauges source's ingestion lag reaches 32 hours (RBK-pipelines-watcher-stuck).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from ...checks.common.jcs import spec_hash_without

ROOT = "pipelines/watchers"
AS_OF = dt.datetime(2026, 6, 2, 12, 0, tzinfo=dt.UTC)
START = dt.datetime(2026, 6, 1, 0, 0, tzinfo=dt.UTC)
RUN_TIME = dt.timedelta(minutes=20)
DELAY = dt.timedelta(hours=1)
STUCK = "kfm.watcher.sbx.hydro_gauges"
STALL = dt.datetime(2026, 6, 1, 6, 0, tzinfo=dt.UTC)  # the run that never finished

# watcher id, slug, source id, cadence, timeout seconds, lag budget
WATCHERS = [
    ("kfm.watcher.sbx.hydro_gauges", "hydro_gauges", "usgs-nwis-gauges", "PT1H", 900, "PT3H"),
    (
        "kfm.watcher.sbx.landcover_stac",
        "landcover_stac",
        "kfm-landcover-stac",
        "PT6H",
        1800,
        "PT12H",
    ),
    ("kfm.watcher.sbx.soil_ssurgo", "soil_ssurgo", "nrcs-ssurgo", "P1D", 3600, "P2D"),
]
CADENCE = {
    "PT1H": dt.timedelta(hours=1),
    "PT6H": dt.timedelta(hours=6),
    "P1D": dt.timedelta(days=1),
}


def _z(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _canonical_hash(value: dict[str, Any]) -> str:
    return spec_hash_without(value, "spec_hash")


def _floor(moment: dt.datetime, step: dt.timedelta) -> dt.datetime:
    return START + ((moment - START) // step) * step


def _spec(watcher_id: str, source: str, cadence: str) -> dict[str, Any]:
    spec = {
        "object_type": "SandboxWatcherSpec",
        "watcher_id": watcher_id,
        "source_id": source,
        "poll": {"mode": "SCHEDULED", "cadence": cadence},
        "network_mode": "DENY",
        "status": "SANDBOX",
    }
    spec["spec_hash"] = _canonical_hash(spec)
    return spec


def _watcher(
    watcher_id: str, slug: str, cadence: str, timeout: int, spec_sha: str
) -> dict[str, Any]:
    return {
        "activation_ref": f"kfm://activation/sandbox/{slug}",
        "canonical_id": f"kfm://watcher/sandbox/{slug.replace('_', '-')}",
        "capabilities": ["CONDITIONAL_REQUEST", "CONTENT_DIGEST"],
        "endpoint_ref": f"kfm://endpoint/sandbox/{slug}",
        "governance": {
            "promotion_authorized": False,
            "publication_authorized": False,
            "raw_admission_authorized": False,
            "release_authorized": False,
            "source_activated": True,
        },
        "outputs": [
            {
                "contract_ref": "contracts/sandbox/watcher_output.md",
                "output_type": "SOURCE_CHANGE_CANDIDATE",
                "schema_ref": "schemas/sandbox/watcher_output.schema.json",
                "target_zone": "WORK",
            }
        ],
        "policy_ref": "policy/sandbox/watchers.rego",
        "poll": {
            "cadence": cadence,
            "max_attempts": 3,
            "mode": "SCHEDULED",
            "timeout_seconds": timeout,
        },
        "reason_codes": ["SANDBOX_ONLY"],
        "schema_url": "schemas/sandbox/watcher_output.schema.json",
        "signature_ref": f"kfm://signature/sandbox/{slug}",
        "source_descriptor_ref": f"kfm://source/sandbox/{slug}",
        "spec_path": f"pipeline_specs/watchers/{slug}.json",
        "spec_sha256": spec_sha,
        "state": "ACTIVE",
        "version": "1.0.0",
        "watcher_id": watcher_id,
    }


def _state(watcher_id: str, source: str, cadence: str, budget: str, clean: bool) -> dict[str, Any]:
    step = CADENCE[cadence]
    stalled = not clean and watcher_id == STUCK
    samples = []
    moment = START
    while moment <= AS_OF:
        boundary = _floor(moment - RUN_TIME, step)
        if stalled:
            boundary = min(boundary, STALL - step)
        samples.append({"at": _z(moment), "watermark": _z(boundary - DELAY)})
        moment += dt.timedelta(hours=1)
    last_run = _floor(AS_OF - RUN_TIME, step)
    entry: dict[str, Any] = {
        "source_id": source,
        "lag_budget": budget,
        "lag_samples": samples,
        "last_heartbeat": _z(AS_OF - dt.timedelta(minutes=2)),
        "last_success": _z(last_run + RUN_TIME),
        "paused": None,
        "run": None,
    }
    if stalled:
        entry.update(
            last_heartbeat=_z(STALL + dt.timedelta(minutes=5)),
            last_success=_z(STALL - step + RUN_TIME),
            run={
                "run_id": "run:sbx:hydro-gauges:20260601T0600Z",
                "started_at": _z(STALL),
                "status": "running",
            },
        )
    return entry


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    base = folder / ROOT
    (base / "pipeline_specs" / "watchers").mkdir(parents=True, exist_ok=True)
    watchers, state = [], {}
    for watcher_id, slug, source, cadence, timeout, budget in WATCHERS:
        data = _dump(_spec(watcher_id, source, cadence))
        (base / "pipeline_specs" / "watchers" / f"{slug}.json").write_bytes(data)
        spec_sha = "sha256:" + hashlib.sha256(data).hexdigest()
        watchers.append(_watcher(watcher_id, slug, cadence, timeout, spec_sha))
        state[watcher_id] = _state(watcher_id, source, cadence, budget, clean)
    registry: dict[str, Any] = {
        "canonicalization_profile": "RFC8785-JCS",
        "governance": {
            "execution_authorized": False,
            "promotion_authorized": False,
            "publication_authorized": False,
            "raw_admission_authorized": False,
            "release_authorized": False,
            "source_activation_authorized": False,
            "source_authority_created": False,
        },
        "object_type": "WatcherRegistry",
        "registry_id": "kfm://control-plane/watcher-registry/v1",
        "schema_version": "1.0.0",
        "status": "PROPOSED_INACTIVE",
        "watchers": sorted(watchers, key=lambda w: str(w["watcher_id"])),
    }
    registry["spec_hash"] = _canonical_hash(registry)
    (base / "watcher_registry.json").write_bytes(_dump(registry))
    (base / "state.json").write_bytes(_dump({"watchers": state}))
    section = {
        "repo_root": ROOT,
        "registries": [f"{ROOT}/watcher_registry.json"],
        "state": f"{ROOT}/state.json",
        "as_of": _z(AS_OF),
        "grace": 2,
    }
    faults = (
        []
        if clean
        else [
            f"pipelines: watcher {STUCK} stuck in a run since {_z(STALL)}, gauges ingestion lag "
            "32 h (WATCHER_RUN_STUCK, INGESTION_LAG_OVER_BUDGET) — RBK-pipelines-watcher-stuck"
        ]
    )
    return {"pipelines_watchers": section}, faults
